"""Ledger settings: which store, where the packets go. The only module that reads the environment.

``SKYLEDGER_LEDGER`` holds the store URL:

* ``sqlite:///relative/path.sqlite`` or ``sqlite:////absolute/path.sqlite`` (the embedded
  default, ``sqlite:///skyledger-data/ledger.sqlite``); ``sqlite:///:memory:`` for tests;
  a plain file path (``ledger.sqlite``, ``/data/ledger.sqlite``) means the same;
* ``postgresql://user:password@host:port/dbname`` (``?schema=NAME`` selects a schema, made
  if missing).

``SKYLEDGER_PACKETS`` is ``keep`` (store every packet's bytes once, by digest) or ``digest``
(record digests only, where storage is short).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal
from urllib.parse import parse_qs, unquote, urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from skyledger.ledger.errors import ConfigError

__all__ = ["DEFAULT_LEDGER_URL", "LedgerSettings", "PostgresTarget", "SqliteTarget", "redact"]

DEFAULT_LEDGER_URL = "sqlite:///skyledger-data/ledger.sqlite"


class SqliteTarget(BaseModel):
    """Where a SQLite ledger lives."""

    model_config = ConfigDict(frozen=True)

    path: str = Field(description="database file, or ':memory:'")

    @property
    def in_memory(self) -> bool:
        """Return True for an in-memory database."""
        return self.path == ":memory:"


class PostgresTarget(BaseModel):
    """Where a PostgreSQL ledger lives."""

    model_config = ConfigDict(frozen=True)

    host: str
    port: int
    user: str
    password: SecretStr
    dbname: str
    schema_name: str = "public"


class LedgerSettings(BaseSettings):
    """Settings of the ledger, from arguments or ``SKYLEDGER_*`` environment variables."""

    model_config = SettingsConfigDict(env_prefix="SKYLEDGER_", frozen=True, extra="forbid")

    ledger: str = Field(default=DEFAULT_LEDGER_URL, description="store URL (sqlite or postgresql)")
    packets: Literal["keep", "digest"] = Field(
        default="keep", description="keep packet bytes by digest, or digests only"
    )
    packet_dir: str | None = Field(
        default=None, description="folder for packet bytes with SQLite (default: beside the file)"
    )
    lock_timeout_s: int = Field(default=5, ge=0, description="give up waiting for the write lock")
    connect_timeout_s: int = Field(default=5, ge=1, description="give up connecting to the store")
    pool_size: int = Field(default=5, ge=1, description="PostgreSQL connections kept open")

    @field_validator("ledger")
    @classmethod
    def _plain_path_is_sqlite(cls, url: str) -> str:
        """A plain file path (no ``scheme://``) names a SQLite file."""
        if url and "://" not in url and ":" not in url.split("/")[0]:
            return f"sqlite:///{url}"
        return url

    @classmethod
    def load(cls, **values: object) -> LedgerSettings:
        """Return validated settings, or raise ConfigError naming the offending field."""
        try:
            settings = cls(**values)  # type: ignore[arg-type]
            settings.target()
        except ValidationError as exc:
            err = exc.errors()[0]
            field = ".".join(str(p) for p in err["loc"])
            msg = f"setting {field!r} (env SKYLEDGER_{field.upper()}): {err['msg']}"
            raise ConfigError(msg) from None
        return settings

    def target(self) -> SqliteTarget | PostgresTarget:
        """Return the parsed store URL."""
        return parse_url(self.ledger)

    def packet_folder(self) -> Path | None:
        """Return the folder for packet bytes (SQLite only; None keeps them in PostgreSQL)."""
        target = self.target()
        if isinstance(target, PostgresTarget) or self.packets == "digest":
            return None
        if self.packet_dir:
            return Path(self.packet_dir)
        if target.in_memory:
            return None
        return Path(target.path).with_suffix(".packets")


def parse_url(url: str) -> SqliteTarget | PostgresTarget:
    """Return the target a store URL names, or raise ConfigError saying what is wrong."""
    parts = urlsplit(url)
    if parts.scheme == "sqlite":
        path = unquote(parts.path[1:] if parts.path.startswith("/") else parts.path)
        if parts.netloc or not path:
            msg = f"setting 'ledger': {redact(url)!r} is not sqlite:///PATH"
            raise ConfigError(msg)
        return SqliteTarget(path=path)
    if parts.scheme in ("postgresql", "postgres", "postgresql+psycopg"):
        query = parse_qs(parts.query)
        dbname = unquote(parts.path.lstrip("/"))
        if not parts.hostname or not dbname:
            msg = f"setting 'ledger': {redact(url)!r} needs a host and a database name"
            raise ConfigError(msg)
        try:
            port = parts.port or 5432
        except ValueError as exc:
            raise ConfigError(f"setting 'ledger': bad port in {redact(url)!r}") from exc
        return PostgresTarget(
            host=parts.hostname,
            port=port,
            user=unquote(parts.username or "postgres"),
            password=SecretStr(unquote(parts.password or "")),
            dbname=dbname,
            schema_name=query.get("schema", ["public"])[0],
        )
    msg = (
        f"setting 'ledger': unknown store {parts.scheme!r} in {redact(url)!r}; "
        "use sqlite or postgresql"
    )
    raise ConfigError(msg)


def redact(url: str) -> str:
    """Return the URL with any password replaced by ``***``."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()
