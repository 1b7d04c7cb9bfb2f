"""Builds a recorder from ledger settings, through eventsourcing's infrastructure factory.

The settings become the library's environment (``PERSISTENCE_MODULE``, ``SQLITE_DBNAME``,
``POSTGRES_*``) with ``APPLICATION_RECORDER_TOPIC`` naming our recorder class, so the
library builds the datastore (pool, WAL mode, lock timeout) and our recorder on it.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import psycopg
from eventsourcing.persistence import InfrastructureFactory, PersistenceError
from eventsourcing.utils import Environment, get_topic

from skyledger.ledger.errors import LedgerUnavailable
from skyledger.ledger.packets import FolderPacketStore, NoPacketStore, PacketStore
from skyledger.ledger.postgres import PostgresLedgerRecorder
from skyledger.ledger.settings import LedgerSettings, PostgresTarget, redact
from skyledger.ledger.sqlite import SqliteLedgerRecorder

__all__ = ["LedgerRecorder", "build_recorder"]

LedgerRecorder = PostgresLedgerRecorder | SqliteLedgerRecorder
LEDGER_TABLE = "skyledger_events"


def _sqlite_env(settings: LedgerSettings, path: str) -> dict[str, str]:
    if path == ":memory:":
        dbname = f"file:skyledger-{uuid.uuid4().hex}?mode=memory&cache=shared"
    else:
        folder = Path(path).parent
        if not folder.exists() and not folder.parent.is_dir():  # one new folder, not a tree
            msg = (
                f"ledger {path}: the folder {folder.parent} does not exist (a mistyped path?); "
                "a new ledger makes its own folder, not the folders above it"
            )
            raise LedgerUnavailable(msg)
        folder.mkdir(exist_ok=True)
        dbname = path
    return {
        "PERSISTENCE_MODULE": "eventsourcing.sqlite",
        "SQLITE_DBNAME": dbname,
        "SQLITE_LOCK_TIMEOUT": str(max(settings.lock_timeout_s, 1)),
        "APPLICATION_RECORDER_TOPIC": get_topic(SqliteLedgerRecorder),
    }


def _postgres_env(settings: LedgerSettings, target: PostgresTarget) -> dict[str, str]:
    return {
        "PERSISTENCE_MODULE": "eventsourcing.postgres",
        "POSTGRES_DBNAME": target.dbname,
        "POSTGRES_HOST": target.host,
        "POSTGRES_PORT": str(target.port),
        "POSTGRES_USER": target.user,
        "POSTGRES_PASSWORD": target.password.get_secret_value(),
        "POSTGRES_SCHEMA": target.schema_name,
        "POSTGRES_CONNECT_TIMEOUT": str(settings.connect_timeout_s),
        "POSTGRES_LOCK_TIMEOUT": str(settings.lock_timeout_s),
        "POSTGRES_POOL_SIZE": str(settings.pool_size),
        "POSTGRES_MAX_OVERFLOW": "10",
        "APPLICATION_RECORDER_TOPIC": get_topic(PostgresLedgerRecorder),
    }


def _probe(settings: LedgerSettings, target: PostgresTarget, create: bool = True) -> None:
    """Connect once, so an unreachable server fails fast with the URL and the cause; when
    the ledger must exist already (``create`` False), check that its table does."""
    try:
        with psycopg.connect(
            host=target.host,
            port=target.port,
            user=target.user,
            password=target.password.get_secret_value(),
            dbname=target.dbname,
            connect_timeout=settings.connect_timeout_s,
        ) as conn:
            table = f'"{target.schema_name}"."{LEDGER_TABLE}"'
            found = conn.execute("SELECT to_regclass(%s)", [table]).fetchone()
    except psycopg.Error as exc:
        cause = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        msg = f"cannot reach the ledger at {redact(settings.ledger)}: {cause}"
        raise LedgerUnavailable(msg) from exc
    if not create and (found is None or found[0] is None):
        msg = (
            f"no ledger at {redact(settings.ledger)}: the database has no {LEDGER_TABLE} "
            "table (commands that only read never make one; `skyledger run` does)"
        )
        raise LedgerUnavailable(msg)


def build_recorder(
    settings: LedgerSettings, create: bool = True
) -> tuple[LedgerRecorder, PacketStore]:
    """Return the recorder and packet store the settings name; the tables are created if
    missing, unless ``create`` is False: then a ledger that does not exist is an error
    (LedgerUnavailable), and nothing is made."""
    target = settings.target()
    env: dict[str, Any]
    if isinstance(target, PostgresTarget):
        _probe(settings, target, create)
        env = _postgres_env(settings, target)
    else:
        if not create and not target.in_memory and not Path(target.path).is_file():
            msg = (
                f"no ledger at {redact(settings.ledger)}: {target.path} does not exist "
                "(commands that only read never make one; `skyledger run` does)"
            )
            raise LedgerUnavailable(msg)
        env = _sqlite_env(settings, target.path)
    if not create:
        env["CREATE_TABLE"] = "no"
    try:
        recorder = InfrastructureFactory.construct(
            Environment("skyledger", env)
        ).application_recorder()
    except PersistenceError as exc:
        msg = f"cannot open the ledger at {redact(settings.ledger)}: {exc}"
        raise LedgerUnavailable(msg) from exc
    if not isinstance(recorder, PostgresLedgerRecorder | SqliteLedgerRecorder):
        msg = f"the factory built {type(recorder).__name__}, not a ledger recorder"
        raise LedgerUnavailable(msg)
    packets: PacketStore
    folder = settings.packet_folder()
    if folder is not None:
        packets = FolderPacketStore(folder)
    else:
        keep_in_db = isinstance(target, PostgresTarget) and settings.packets == "keep"
        packets = NoPacketStore(in_database=keep_in_db)
    return recorder, packets
