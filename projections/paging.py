"""Keyset paging pinned to a ledger position.

A listing's first page is read as of a position P (the read model's, or the ``as_of``
asked for); its cursor carries P, the sort key of the last row given and a digest of the
query, so every later page is read as of the same P and starts right after that key:
what the ledger gains meanwhile neither shifts nor repeats a row. A cursor given with
another query is refused.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from hashlib import blake2b
from typing import Any, Generic, TypeVar

import orjson
from pydantic import BaseModel, ConfigDict

from skyledger.ledger.errors import QueryError

__all__ = ["MAX_POSITION", "Cursor", "Page", "query_digest"]

T = TypeVar("T")
MAX_POSITION = 2**63 - 1
"""The largest ledger position (a 64-bit integer); a larger one is refused."""
Key = tuple[Any, ...]
_VERSION = 1


def query_digest(**filters: Any) -> str:
    """Return a short digest of a listing's filters (what a cursor is valid for)."""
    text = orjson.dumps(filters, option=orjson.OPT_SORT_KEYS, default=str)
    return blake2b(text, digest_size=8).hexdigest()


class Cursor(BaseModel):
    """Where the next page starts: the pinned position, the last key given, the query."""

    model_config = ConfigDict(frozen=True)

    position: int
    after: tuple[Any, ...]
    query: str

    def encode(self) -> str:
        """Return the cursor as an opaque URL-safe string."""
        data = {"v": _VERSION, "p": self.position, "a": list(self.after), "q": self.query}
        return base64.urlsafe_b64encode(orjson.dumps(data)).decode().rstrip("=")

    @classmethod
    def decode(cls, text: str, query: str) -> Cursor:
        """Return the cursor a string encodes, or refuse it (malformed, or of another query)."""
        try:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
            data = orjson.loads(raw)
            found = cls(position=int(data["p"]), after=tuple(data["a"]), query=str(data["q"]))
            if data.get("v") != _VERSION:
                raise ValueError("version")
            too_large = [a for a in found.after if isinstance(a, int) and abs(a) > MAX_POSITION]
            if not 0 <= found.position <= MAX_POSITION or too_large:
                raise ValueError("out of range")
        except (ValueError, KeyError, TypeError, binascii.Error, orjson.JSONDecodeError):
            raise QueryError(f"cursor {text[:40]!r} is not one this listing gave") from None
        if found.query != query:
            msg = "cursor: it was given for a listing with other filters; start again without it"
            raise QueryError(msg)
        return found


class Page(BaseModel, Generic[T]):
    """One page of a listing: its rows, the ledger position they are read as of, and the
    cursor of the next page (None on the last one)."""

    model_config = ConfigDict(frozen=True)

    items: tuple[T, ...]
    position: int
    next: str | None = None

    @classmethod
    def of(
        cls, rows: Sequence[T], keys: Sequence[Key], limit: int, position: int, query: str
    ) -> Page[T]:
        """Return the page of the first ``limit`` rows (``rows`` may hold one more, which
        tells that a next page exists), with the cursor after the last one given."""
        taken = tuple(rows[:limit])
        if len(rows) <= limit:
            return cls(items=taken, position=position)
        after = Cursor(position=position, after=tuple(keys[limit - 1]), query=query)
        return cls(items=taken, position=position, next=after.encode())
