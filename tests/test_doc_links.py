"""Every relative link in README.md and docs/**.md leads somewhere: the file (or folder)
exists, and a ``#fragment`` into a markdown file names one of its headings. Links into
``artifacts/`` name files the tests write (the console's screenshots), not files in git."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
ARTIFACTS = ROOT / "artifacts"
CONSOLE_TEST = ROOT / "tests" / "console" / "test_console.py"

LINK = re.compile(r"(?<!\!)\[[^\]]*\]\(([^)\s]+)\)|!\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.DOTALL | re.MULTILINE)
HEADING = re.compile(r"^#{1,6}\s+(.*?)\s*#*\s*$", re.MULTILINE)


def links(document: Path) -> list[str]:
    text = FENCE.sub("", document.read_text())
    text = re.sub(r"`[^`\n]*`", "", text)  # code spans are not links
    return [a or b for a, b in LINK.findall(text)]


def is_relative(target: str) -> bool:
    return not re.match(r"^[a-z][a-z0-9+.-]*:", target, re.IGNORECASE)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to dashes."""
    text = re.sub(r"`|\*|_(?=\W|$)|(?<=\W)_", "", heading.strip().lower())
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(document: Path) -> set[str]:
    text = FENCE.sub("", document.read_text())
    seen: dict[str, int] = {}
    found: set[str] = set()
    for heading in HEADING.findall(text):
        base = slug(heading)
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return found


def cases() -> list[tuple[Path, str]]:
    return [(doc, target) for doc in DOCUMENTS for target in links(doc) if is_relative(target)]


def test_the_documents_have_relative_links() -> None:
    # the parametrised test below would pass vacuously if the link pattern stopped matching
    targets = {target for _, target in cases()}
    assert "docs/operating.md" in targets
    assert "docs/design/architecture.md" in targets


@pytest.mark.parametrize(
    ("document", "target"),
    cases(),
    ids=[f"{doc.relative_to(ROOT)}->{target}" for doc, target in cases()],
)
def test_a_relative_link_resolves(document: Path, target: str) -> None:
    path_part, _, fragment = target.partition("#")
    resolved = (document.parent / path_part).resolve() if path_part else document
    if resolved.is_relative_to(ARTIFACTS):
        # written by the browser tests, kept as CI artefacts; a test must write it
        name = resolved.relative_to(ARTIFACTS / "console").as_posix()
        assert f'SCREENSHOTS / "{name}"' in CONSOLE_TEST.read_text(), target
        return
    assert resolved.exists(), f"{document.relative_to(ROOT)} links to missing {target}"
    if fragment and resolved.suffix == ".md":
        assert fragment in anchors(resolved), f"no heading #{fragment} in {path_part or 'itself'}"


def test_a_broken_link_is_caught(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("# Title\n\nSee [gone](gone.md), [here](#title) and `[no](x.md)`.\n")
    assert links(page) == ["gone.md", "#title"]
    assert not (tmp_path / "gone.md").exists()
    assert anchors(page) == {"title"}
