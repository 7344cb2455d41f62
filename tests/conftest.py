"""Shared fixtures: an isolated state home and environment for every test."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No test reads the developer's key, state home or backend choice."""
    home = tmp_path / "home"
    monkeypatch.setenv("BATCHRUNNER_HOME", str(home))
    for name in ("ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL", "ANTHROPIC_AUTH_TOKEN", "BATCHRUNNER_BACKEND", "BATCHRUNNER_DEBUG"):
        monkeypatch.delenv(name, raising=False)
    return home
