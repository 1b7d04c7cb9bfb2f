"""Fixtures for the unit tests: the shared real alert data."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Return the shared real-alert folder, or skip if this checkout has none beside it."""
    path = Path(__file__).resolve().parents[3] / "shared" / "data"
    if not path.is_dir():
        pytest.skip(f"real alert data not found at {path} (see docs/sources.md)")
    return path
