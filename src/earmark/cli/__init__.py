"""The ``earmark`` command groups, one module each (``earmark.console`` composes them
with the API's ``serve``)."""
