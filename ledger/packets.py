"""Packet stores: every received packet's bytes kept once, by digest (brief invariant 8).

With PostgreSQL the bytes go into the ledger's own database, in the same transaction as
the events that refer to them. With SQLite they go into a folder beside the file
(``<digest[:2]>/<digest>``, written atomically) before the events are appended, so an
event never refers to bytes that are missing. ``SKYLEDGER_PACKETS=digest`` keeps digests
only: the events still record each digest, the bytes are dropped.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

__all__ = ["FolderPacketStore", "NoPacketStore", "PacketStore"]


class PacketStore(Protocol):
    """Keeps packet bytes by digest."""

    in_database: bool

    def put(self, packets: Sequence[tuple[str, bytes]]) -> None:
        """Store packets not yet stored (a no-op for stores kept in the database)."""

    def get(self, digest: str) -> bytes | None:
        """Return a packet's bytes, or None if they are not kept."""


class FolderPacketStore:
    """Keeps packet bytes as files in a folder, two hex digits per subfolder."""

    in_database = False

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, digest: str) -> Path:
        """Return where a packet's bytes are (or would be) kept."""
        return self.root / digest[:2] / digest

    def put(self, packets: Sequence[tuple[str, bytes]]) -> None:
        """Write each packet not yet present, atomically (temporary file, then rename)."""
        for digest, data in packets:
            target = self.path(digest)
            if target.exists():
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.replace(tmp, target)

    def get(self, digest: str) -> bytes | None:
        """Return a packet's bytes, or None."""
        try:
            return self.path(digest).read_bytes()
        except FileNotFoundError:
            return None


class NoPacketStore:
    """Keeps no bytes: digests only (or the bytes live in the database)."""

    def __init__(self, *, in_database: bool = False) -> None:
        self.in_database = in_database

    def put(self, packets: Sequence[tuple[str, bytes]]) -> None:
        """Drop the bytes."""

    def get(self, digest: str) -> bytes | None:
        """Return None: no bytes are kept here."""
        return None
