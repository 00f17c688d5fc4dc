"""The ``earmark`` console script: every command group, the API's ``serve`` first.

The one module that composes the CLI (earmark.cli) with the API (earmark.api.command):
neither package imports the other.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from earmark.api.command import add_serve
from earmark.cli.main import COMMANDS
from earmark.cli.main import main as cli_main


def main(argv: Sequence[str] | None = None) -> int:
    return cli_main(argv, [add_serve, *COMMANDS])


if __name__ == "__main__":
    sys.exit(main())
