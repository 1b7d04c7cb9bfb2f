"""Positions and times as people give them (--as-of, ?as_of=)."""

from __future__ import annotations

import datetime as dt

import pytest

from skyledger.ledger.errors import ConfigError
from skyledger.ledger.when import position_or_time


def test_digits_are_a_position_and_iso_8601_a_time() -> None:
    assert position_or_time("--as-of", " 42 ") == 42
    assert position_or_time("as_of", "2026-12-01T09:30:00Z") == dt.datetime(
        2026, 12, 1, 9, 30, tzinfo=dt.UTC
    )
    assert position_or_time("as_of", "2026-12-01T09:30:00").tzinfo == dt.UTC  # type: ignore[union-attr]


@pytest.mark.parametrize("value", ["²", "٣", "12a", "", "yesterday"])
def test_anything_else_is_refused_naming_the_option(value: str) -> None:
    with pytest.raises(ConfigError, match=r"as_of: .* is neither a position nor a time"):
        position_or_time("as_of", value)
