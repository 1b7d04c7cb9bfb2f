"""Shards: a fixed split of the ledger's streams, so that several processes can share a
projector's work while each stream (a stock, say) is always handled by one of them.

A stream's shard is a hash of its name modulo the number of shards, the same in Python
and in PostgreSQL (the first 32 bits of its MD5, big-endian), so that a shard's events
are selected by the database and not fetched to be thrown away. A sharded projector
keeps one tracking position per shard, under its name with ``@INDEX/COUNT`` appended.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

__all__ = ["Shard", "shard_of"]


def shard_of(stream: str, count: int) -> int:
    """Return the shard (0 to ``count - 1``) that a stream belongs to."""
    if count <= 1:
        return 0
    return int.from_bytes(hashlib.md5(stream.encode(), usedforsecurity=False).digest()[:4]) % count


@dataclass(frozen=True, slots=True)
class Shard:
    """One of ``count`` shards."""

    index: int
    count: int

    def __post_init__(self) -> None:
        if self.count < 1 or not 0 <= self.index < self.count:
            raise ValueError(f"shard {self.index} of {self.count}: need 0 <= index < count")

    def holds(self, stream: str) -> bool:
        """Return whether a stream belongs to this shard."""
        return shard_of(stream, self.count) == self.index

    def name_of(self, name: str) -> str:
        """Return the tracking name of a projector's position in this shard."""
        return f"{name}@{self.index}/{self.count}"

    @classmethod
    def all(cls, count: int) -> tuple[Shard, ...]:
        """Return every shard of a split into ``count``."""
        return tuple(cls(i, count) for i in range(count))
