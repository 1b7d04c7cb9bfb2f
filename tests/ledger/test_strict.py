"""The strict fast path of event construction gives exactly pydantic's events and errors.

``Event(**data)`` fills the instance directly when every value already has its field's
exact type (ledger.strict) and validates with pydantic otherwise. Whatever the input,
the two must agree: the same fields (and id), or both refusing it.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from skyledger.ledger import strict
from skyledger.ledger.errors import EventRejected
from skyledger.ledger.events import (
    EVENT_TYPES,
    DatapointAdded,
    Event,
    FilterDecided,
    Provenance,
    ReactionIssued,
    ResultFailed,
    StateCombined,
)
from skyledger.ledger.strict import filler_for

PROV = Provenance(unit="U", unit_version="1", unit_digest="d", config="c")
UTC_TIME = dt.datetime(2026, 11, 25, 12, 0, tzinfo=dt.UTC)

# Values of many types, right and wrong for the fields below.
values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-3, max_value=3),
    st.floats(allow_nan=True, allow_infinity=False, width=32),
    st.text(max_size=3),
    st.sampled_from(["ZTF1", "detection", "delivered", "skipped", "x"]),
    st.just(UTC_TIME),
    st.just(dt.datetime(2026, 1, 1)),  # noqa: DTZ001 - naive, must be refused
    st.just(PROV),
    st.just(PROV.model_dump()),  # a dict where a model belongs: pydantic builds one
    st.dictionaries(st.text(max_size=2), st.integers(), max_size=2),
    st.dictionaries(st.integers(), st.integers(), min_size=1, max_size=2),
    st.tuples(st.text(max_size=2)),
    st.lists(st.text(max_size=2), max_size=2),
    st.tuples(st.integers()),
)
FIELDS = {
    DatapointAdded: ["stream", "datapoint_id", "kind", "body", "run_id", "causation", "time"],
    FilterDecided: [
        "stream",
        "channel",
        "alert_digest",
        "accepted",
        "code",
        "group",
        "reason",
        "provenance",
        "causation",
    ],
    StateCombined: ["stream", "state_id", "datapoint_ids", "channels", "provenance"],
    ResultFailed: [
        "stream",
        "result_id",
        "subject",
        "attempt",
        "error",
        "traceback",
        "retry_after_s",
        "provenance",
    ],
    ReactionIssued: [
        "stream",
        "idempotency_key",
        "target",
        "payload",
        "outcome",
        "detail",
        "attempt",
        "provenance",
    ],
}


def validated(cls: type[Event], data: dict[str, Any]) -> Event | str:
    """Return pydantic's event for ``data`` (with the strict path switched off)."""
    kept = strict._FILLERS[cls]
    strict._FILLERS[cls] = None
    try:
        return cls(**data)
    except EventRejected as exc:
        return f"rejected: {exc}"
    except Exception as exc:  # e.g. EncodingError while hashing
        return f"error: {type(exc).__name__}"
    finally:
        strict._FILLERS[cls] = kept


def built(cls: type[Event], data: dict[str, Any]) -> Event | str:
    try:
        return cls(**data)
    except EventRejected:
        return "rejected"
    except Exception as exc:  # e.g. EncodingError while hashing
        return f"error: {type(exc).__name__}"


@st.composite
def inputs(draw: st.DrawFn) -> tuple[type[Event], dict[str, Any]]:
    cls = draw(st.sampled_from(sorted(FIELDS, key=lambda c: c.__name__)))
    names = draw(st.lists(st.sampled_from(FIELDS[cls]), unique=True))
    data = {name: draw(values) for name in names}
    if draw(st.booleans()):
        data["colour"] = "red"  # an unknown field
    return cls, data


@settings(max_examples=600, deadline=None)
@given(inputs())
def test_the_strict_path_and_pydantic_agree_on_any_input(
    case: tuple[type[Event], dict[str, Any]],
) -> None:
    cls, data = case
    data.setdefault("time", UTC_TIME)  # the default time is "now": pin it for comparison
    ours = built(cls, dict(data))  # first, so that the class has its filler
    theirs = validated(cls, dict(data))
    if isinstance(theirs, str):
        assert isinstance(ours, str), f"strict path accepted what pydantic refused: {theirs}"
        assert ours == theirs.split(":")[0]
        return
    assert not isinstance(ours, str), f"strict path refused what pydantic accepted: {ours}"
    assert ours.__dict__ == theirs.__dict__
    assert list(ours.__dict__) == list(theirs.__dict__)  # same order: same stored bytes
    assert ours.model_fields_set == theirs.model_fields_set


def test_well_typed_values_take_the_strict_path() -> None:
    event = DatapointAdded(stream="ZTF1", datapoint_id="d", kind="detection", body={"a": 1})
    assert event.__pydantic_fields_set__ == {"stream", "datapoint_id", "kind", "body"}
    fill = filler_for(DatapointAdded)
    assert fill is not None
    fresh = object.__new__(DatapointAdded)
    assert fill(fresh, {"stream": "ZTF1", "datapoint_id": "d", "kind": "detection", "body": {}})
    assert not fill(fresh, {"stream": "ZTF1", "datapoint_id": "d", "kind": "detection"})
    assert not fill(fresh, {"stream": "", "datapoint_id": "d", "kind": "x", "body": {}})


@pytest.mark.parametrize("cls", EVENT_TYPES, ids=lambda c: c.__name__)
def test_every_event_type_has_a_strict_path(cls: type[Event]) -> None:
    assert filler_for(cls) is not None


def test_an_event_from_the_strict_path_is_still_frozen() -> None:
    event = DatapointAdded(stream="ZTF1", datapoint_id="d", kind="detection", body={})
    with pytest.raises(ValidationError):
        event.kind = "forced"  # type: ignore[misc]
