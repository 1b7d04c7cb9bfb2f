"""Suite-wide fixtures: a throwaway PostgreSQL and NATS server, and a fresh ledger per test
on each backend."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest

from ledger import Ledger, LedgerSettings
from runners.embedded import EmbeddedNats, EmbeddedPostgres

_db_numbers = itertools.count()


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Return the shared real-alert folder beside the checkout (CI has it), or skip."""
    path = Path(__file__).resolve().parents[2] / "shared" / "data"
    if not path.is_dir():
        pytest.skip(f"real alert data not found at {path} (see docs/sources.md)")
    return path


@pytest.fixture(scope="session")
def pg_server() -> Iterator[EmbeddedPostgres]:
    """Start one PostgreSQL server for the whole session (fsync off: tests, not durability)."""
    with EmbeddedPostgres(fsync=False) as server:
        yield server


@pytest.fixture(scope="session")
def nats_server() -> Iterator[EmbeddedNats]:
    """Start one NATS server with JetStream for the whole session."""
    with EmbeddedNats() as server:
        yield server


@pytest.fixture
def pg_url(pg_server: EmbeddedPostgres, worker_id: str) -> str:
    """Return the URL of a fresh, empty PostgreSQL database."""
    return pg_server.create_database(f"t_{worker_id}_{next(_db_numbers)}")


@pytest.fixture(params=["sqlite", "postgres"])
def ledger_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Return the URL of a fresh, empty ledger, once per backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/ledger.sqlite"
    request.applymarker(pytest.mark.postgres)
    url: str = request.getfixturevalue("pg_url")
    return url


@pytest.fixture
def ledger(ledger_url: str) -> Iterator[Ledger]:
    """Open a fresh ledger (SQLite file or PostgreSQL database) and close it afterwards."""
    with Ledger.open(LedgerSettings.load(ledger=ledger_url)) as opened:
        yield opened
