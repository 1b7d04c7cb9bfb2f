"""Canonical encoding and content hashing: the one place where ids are made.

Encoding (version 1, recorded as ``CANONICAL_VERSION``):

* JSON produced by orjson with keys sorted (``OPT_SORT_KEYS``), no whitespace, UTF-8.
* Floats are written as the shortest decimal that round-trips (orjson, like ``repr``);
  ``1`` and ``1.0`` are different content. ``-0.0`` stays ``-0.0``.
* Non-finite floats (NaN, +/-inf) are written as ``null``: NaN means "missing" in alert
  packets, so NaN and None are the same content. Callers that need to tell them apart
  must encode them themselves (for example as strings).
* Times are ISO 8601 / RFC 3339 in UTC with a ``Z`` suffix and microseconds where
  non-zero (``2026-11-25T13:35:07.123456Z``). Naive datetimes are refused.
* Tuples are lists; sets are refused (no order); bytes are refused (use their digest).
* Dict keys must be strings; integers must fit in 64 bits (signed or unsigned).

Hash: BLAKE2b with a 16-byte (128-bit) digest, shown as 32 lowercase hex digits, over a
domain-separated message ``kind + "\\x00" + canonical bytes`` so that a datapoint and a
result with the same body never share an id.
"""

from __future__ import annotations

from hashlib import blake2b
from typing import Any

import orjson

from skyledger.ledger.errors import EncodingError

__all__ = [
    "CANONICAL_VERSION",
    "DIGEST_BYTES",
    "canonical_bytes",
    "content_hash",
    "digest_bytes",
]

CANONICAL_VERSION = 1
DIGEST_BYTES = 16
_OPTIONS = orjson.OPT_SORT_KEYS | orjson.OPT_UTC_Z | orjson.OPT_NAIVE_UTC


_PREFIXES: dict[str, Any] = {}


def _default(value: Any) -> Any:
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, set | frozenset):
        msg = f"sets have no canonical order; got {value!r:.80}"
        raise TypeError(msg)
    if isinstance(value, bytes | bytearray | memoryview):
        msg = "bytes are not canonical content; store their digest instead"
        raise TypeError(msg)
    dump = getattr(value, "model_dump", None)
    if dump is not None:
        return dump(mode="json")
    msg = f"cannot encode {type(value).__name__} canonically"
    raise TypeError(msg)


def canonical_bytes(content: Any) -> bytes:
    """Return the canonical JSON bytes of ``content`` (see the module docstring)."""
    try:
        return orjson.dumps(content, default=_default, option=_OPTIONS)
    except (TypeError, orjson.JSONEncodeError) as exc:
        raise EncodingError(f"cannot encode content canonically: {exc}") from exc


def digest_bytes(data: bytes) -> str:
    """Return the 128-bit BLAKE2b hex digest of raw bytes (packets are keyed by it)."""
    return blake2b(data, digest_size=DIGEST_BYTES).hexdigest()


def content_hash(kind: str, content: Any) -> str:
    """Return the 128-bit BLAKE2b hex id of ``content``, separated by ``kind``.

    ``kind`` names what is hashed (``"datapoint"``, ``"state"``, ``"result"``, ...), so
    equal bodies of different kinds get different ids.
    """
    prefix = _PREFIXES.get(kind)
    if prefix is None:
        prefix = _PREFIXES[kind] = blake2b(kind.encode() + b"\x00", digest_size=DIGEST_BYTES)
    h = prefix.copy()
    h.update(canonical_bytes(content))
    return h.hexdigest()
