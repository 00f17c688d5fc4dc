"""``earmark serve`` as it would run without ``tune_gc``: the same app and uvicorn
options, CPython's default collector. The baseline of ``loadtests.bench_servers``; not
for serving. Settings from ``EARMARK_*`` as for serve.

    python -m loadtests.serve_default_gc
"""

from __future__ import annotations

import uvicorn

from earmark.api.app import create_app
from earmark.api.server import uvicorn_options
from earmark.settings import get_settings


def main() -> None:
    settings = get_settings()
    uvicorn.run(create_app(settings), **uvicorn_options(settings))


if __name__ == "__main__":
    main()
