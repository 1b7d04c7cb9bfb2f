"""The fast datapoint encoder gives what the event path gives: the same id, a row that
decodes to the same event, and the same bytes for bodies in canonical key order."""

from __future__ import annotations

import datetime as dt
from typing import Any

import orjson
from hypothesis import given
from hypothesis import strategies as st

from skyledger.ledger import DatapointAdded
from skyledger.ledger.codec import decode, encode, encode_datapoint

T = dt.datetime(2026, 12, 1, 6, 0, 0, 123456, tzinfo=dt.UTC)

values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(max_size=8)
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: st.lists(inner, max_size=3)
    | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=12,
)  # fmt: skip
bodies = st.dictionaries(st.text(max_size=8), values, max_size=12)


def event_row(stream: str, dp: str, kind: str, body: dict[str, Any], run: str | None) -> Any:
    made = DatapointAdded(stream=stream, datapoint_id=dp, kind=kind, body=body,
                          causation=("a" * 32,), run_id=run, time=T)  # fmt: skip
    return made, encode(made)


@given(
    stream=st.text(min_size=1, max_size=12),
    dp=st.text(max_size=32),
    kind=st.sampled_from(["detection", "upper_limit", "forced", "other"]),
    body=bodies,
    run=st.none() | st.text(max_size=8),
)
def test_the_fast_row_is_the_event_row(
    stream: str, dp: str, kind: str, body: dict[str, Any], run: str | None
) -> None:
    made, slow = event_row(stream, dp, kind, body, run)
    fast = encode_datapoint(stream, dp, kind, body, ("a" * 32,), run, T)
    assert fast.id == slow.id == made.id
    assert (fast.topic, fast.stream) == (slow.topic, slow.stream)
    assert decode(*fast, position=3) == decode(*slow, position=3)
    canonical = orjson.loads(orjson.dumps(body, option=orjson.OPT_SORT_KEYS))
    if orjson.dumps(canonical) == orjson.dumps(body):  # keys in canonical order already
        assert fast.state == slow.state


def test_nan_and_unsorted_keys_store_as_the_id_sees_them() -> None:
    body = {"z": float("nan"), "a": (1, 2), "m": {"y": 1, "b": 2}}
    made, _ = event_row("ZTF1", "d", "detection", body, "r")
    fast = encode_datapoint("ZTF1", "d", "detection", body, ("a" * 32,), "r", T)
    back = decode(*fast, position=1)
    assert back.id == made.id
    assert back.body == {"a": [1, 2], "m": {"b": 2, "y": 1}, "z": None}  # type: ignore[attr-defined]
    assert list(back.body) == ["a", "m", "z"]  # type: ignore[attr-defined]
