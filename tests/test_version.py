"""One version: pyproject.toml's, seen by the package, the CLI and the API."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import earmark
from earmark import console

ROOT = Path(__file__).resolve().parents[1]


def pyproject_version() -> str:
    with (ROOT / "pyproject.toml").open("rb") as file:
        version: str = tomllib.load(file)["project"]["version"]
    return version


def test_the_package_version_is_pyprojects() -> None:
    assert earmark.__version__ == pyproject_version()


def test_earmark_version_prints_it(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        console.main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out == f"earmark {pyproject_version()}\n"


def test_earmark_version_runs_as_a_program() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "earmark", "--version"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert (result.returncode, result.stdout) == (0, f"earmark {pyproject_version()}\n")
