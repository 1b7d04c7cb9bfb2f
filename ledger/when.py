"""A point in the ledger as people give it: a position (digits) or a time (ISO 8601)."""

from __future__ import annotations

import datetime as dt

from skyledger.ledger.errors import ConfigError

__all__ = ["position_or_time"]


def position_or_time(option: str, value: str) -> int | dt.datetime:
    """Return a position or an aware time (UTC if none given), or refuse the value,
    naming the option (or query parameter) it came in."""
    text = value.strip()
    if text.isascii() and text.isdigit():  # not "²": str.isdigit takes superscripts
        return int(text)
    try:
        found = dt.datetime.fromisoformat(text)
    except ValueError:
        raise ConfigError(
            f"{option}: {value!r} is neither a position nor a time (ISO 8601, for example "
            "2026-12-01T09:30:00Z)"
        ) from None
    return found if found.tzinfo is not None else found.replace(tzinfo=dt.UTC)
