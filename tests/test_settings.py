"""Settings from the environment: what an operator's shell or container file sets."""

from __future__ import annotations

import pytest

from earmark.settings import Settings


def test_an_empty_variable_means_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    """`EARMARK_REDIS_URL=` (a blanked line in an env file) is no URL at all: the embedded
    store and the default record, not a Redis at '' and a database at ''."""
    monkeypatch.setenv("EARMARK_REDIS_URL", "")
    monkeypatch.setenv("EARMARK_DATABASE_URL", "")
    settings = Settings()
    assert settings.redis_url is None and settings.embedded
    assert settings.database_url == Settings.model_fields["database_url"].default
