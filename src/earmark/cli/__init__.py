"""The ``earmark`` command: one module per command group (see ``main``)."""

from earmark.cli.main import main

__all__ = ["main"]
