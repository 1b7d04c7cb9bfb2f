"""The event vocabulary: validation names the field, ids ignore the envelope, old events
stay readable (stored fixtures of each release, and upcasting)."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any, ClassVar

import pytest

from skyledger.ledger import bodies_id
from skyledger.ledger.codec import decode, encode, register_event_type, topic_of
from skyledger.ledger.errors import EventRejected, UnknownEventType
from skyledger.ledger.events import (
    AlertReceived,
    DatapointAdded,
    Event,
    FilterDecided,
    ReactionIssued,
    ResultDerived,
    RunStarted,
    StateCombined,
)
from tests.ledger.samples import one_of_each

FIXTURES = Path(__file__).parent / "fixtures"


def test_a_missing_field_is_refused_naming_it() -> None:
    with pytest.raises(EventRejected, match=r"DatapointAdded: datapoint_id: Field required"):
        DatapointAdded(stream="ZTF1", kind="detection", body={})  # type: ignore[call-arg]


def test_a_naive_time_and_an_empty_stream_are_refused_naming_both() -> None:
    with pytest.raises(EventRejected) as info:
        DatapointAdded(
            stream="",
            datapoint_id="x",
            kind="detection",
            body={},
            time=dt.datetime(2026, 1, 1),  # noqa: DTZ001
        )
    assert "stream:" in str(info.value)
    assert "time: Input should have timezone info" in str(info.value)


def test_unknown_fields_are_refused() -> None:
    with pytest.raises(EventRejected, match=r"colour: Extra inputs are not permitted"):
        DatapointAdded(stream="s", datapoint_id="x", kind="detection", body={}, colour="red")  # type: ignore[call-arg]


def test_events_are_frozen() -> None:
    event = one_of_each()[3]
    with pytest.raises(Exception, match="frozen"):
        event.stream = "other"  # type: ignore[misc]


def test_the_id_ignores_the_envelope_but_not_the_content() -> None:
    a = DatapointAdded(stream="s", datapoint_id="x", kind="detection", body={"m": 1.0})
    b = DatapointAdded(stream="s", datapoint_id="x", kind="detection", body={"m": 1.0}, run_id="r2")
    c = DatapointAdded(stream="s", datapoint_id="x", kind="detection", body={"m": 1.5})
    assert a.id == b.id != c.id
    assert a.id == a.compute_id()


def test_derived_events_carry_provenance() -> None:
    result = next(e for e in one_of_each() if isinstance(e, ResultDerived))
    assert result.provenance.unit == "T2LightCurveFeatures"
    assert result.provenance.unit_version == "1.0"
    assert result.provenance.config == "c" * 32
    assert result.causation  # derived from the state event


@pytest.mark.parametrize("event", one_of_each(), ids=lambda e: type(e).__name__)
def test_every_event_type_round_trips(event: Event) -> None:
    row = encode(event)
    back = decode(row.id, row.topic, row.state, row.stream, 42)
    assert back.position == 42
    assert back.model_dump() == event.model_dump()
    assert back.id == back.compute_id()


def _fixture(release: str) -> list[Event]:
    lines = (FIXTURES / f"events-{release}.jsonl").read_text().splitlines()
    return [
        decode(row["id"], row["topic"], row["state"].encode(), row["stream"], n)
        for n, row in enumerate(map(json.loads, lines), 1)
    ]


def test_events_stored_by_release_0_1_still_load() -> None:
    events = _fixture("0.1")
    assert [type(e).__name__ for e in events] == [
        "RunStarted", "ConfigurationRegistered", "AlertReceived", "DatapointAdded",
        "FilterDecided", "StateCombined", "ResultDerived", "ResultFailed", "ReactionIssued",
        "RunFinished",
    ]  # fmt: skip
    for event in events:
        if isinstance(event, FilterDecided | StateCombined):
            # Their identity gained fields in schema 2: the stored id is kept, and a
            # decision or state made now is a new event beside the old one.
            assert event.id != event.compute_id()
        else:
            assert event.id == event.compute_id()  # content and id still agree
    [reaction] = [e for e in events if isinstance(e, ReactionIssued)]
    assert reaction.stock == "ZTF21abiuvdk"  # version 1 had it in the payload only
    [state] = [e for e in events if isinstance(e, StateCombined)]
    [dp] = [e for e in events if isinstance(e, DatapointAdded)]
    assert (state.alert, state.bodies) == (None, bodies_id([dp.id]))  # from its causation
    [decision] = [e for e in events if isinstance(e, FilterDecided)]
    assert decision.alert == events[2].id
    assert decision.alert_position is None
    [run] = [e for e in events if isinstance(e, RunStarted)]
    assert run.units == ()


def test_events_stored_by_release_0_2_still_load() -> None:
    events = _fixture("0.2")
    assert [type(e) for e in events] == [type(e) for e in one_of_each()]
    for event, made in zip(events, one_of_each(), strict=True):
        assert event.id == event.compute_id() == made.id
        assert event.model_dump() == made.model_dump()


def test_reactions_of_version_1_without_a_stock_in_the_payload_have_none() -> None:
    state = (
        b'{"v":1,"time":"2026-11-25T12:00:00Z","run_id":null,"causation":[],'
        b'"idempotency_key":"k","target":"report.html","payload":{"report":"nightly"},'
        b'"outcome":"delivered","detail":"","attempt":1,"provenance":{"unit":"R",'
        b'"unit_version":"1","unit_digest":"d","config":"c","duration_s":0.0}}'
    )
    event = decode("0" * 32, topic_of(ReactionIssued), state, "reaction:k", 1)
    assert isinstance(event, ReactionIssued)
    assert event.stock is None
    assert encode(event).state.startswith(b'{"v":2,')


class NoteTaken(Event):
    """A test event at schema version 2: ``text`` was called ``note`` in version 1."""

    schema_version: ClassVar[int] = 2
    identity = ("text",)
    text: str
    words: int

    @staticmethod
    def _v1(data: dict[str, Any]) -> dict[str, Any]:
        data["text"] = data.pop("note")
        data["words"] = len(data["text"].split())
        return data

    upcasters = {1: _v1}


def test_old_schema_versions_are_upcast_on_read() -> None:
    topic = register_event_type(NoteTaken)
    v1_state = b'{"v":1,"time":"2026-01-01T00:00:00Z","run_id":null,"causation":[],"note":"a b c"}'
    event = decode("0" * 32, topic, v1_state, "notes", 7)
    assert isinstance(event, NoteTaken)
    assert (event.text, event.words, event.position) == ("a b c", 3, 7)
    assert encode(event).state.startswith(b'{"v":2,')


def test_a_missing_upcaster_is_a_clear_error() -> None:
    topic = register_event_type(NoteTaken)
    NoteTaken.upcasters = {}
    try:
        with pytest.raises(UnknownEventType, match="no upcaster from schema version 1"):
            decode("0" * 32, topic, b'{"v":1,"note":"x"}', "notes", 1)
    finally:
        NoteTaken.upcasters = {1: NoteTaken._v1}


@pytest.mark.parametrize("event", one_of_each(), ids=lambda e: type(e).__name__)
def test_an_event_is_found_by_its_identity_alone(event: Event) -> None:
    cls = type(event)
    fields = {name: event.__dict__[name] for name in cls.identity}
    if "provenance" in fields or (cls is AlertReceived and event.error is not None):
        return  # derived with provenance, or unreadable: found by what refers to them
    if cls is DatapointAdded and event.shaper is not None:
        return
    assert cls.id_for(**fields) == event.id
    with pytest.raises(TypeError, match=f"{cls.__name__} is identified by"):
        cls.id_for(**fields, extra="x")


def test_topics_name_the_folders_and_read_under_the_package_too() -> None:
    assert topic_of(AlertReceived) == "ledger.events:AlertReceived"
    row = encode(RunStarted(stream="run:r", run="r", job_hash="j", job_text="", packages={},
                            host="h", user="u"))  # fmt: skip
    assert row.topic == "ledger.events:RunStarted"
    again = decode(row.id, "skyledger." + row.topic, row.state, row.stream, 1)
    assert isinstance(again, RunStarted)
    assert again.id == row.id


def test_an_unknown_topic_is_a_clear_error() -> None:
    with pytest.raises(UnknownEventType, match=r"nowhere\.module:Gone"):
        decode("0" * 32, "nowhere.module:Gone", b'{"v":1}', "s", 1)


@pytest.mark.parametrize("event", one_of_each(), ids=lambda e: type(e).__name__)
def test_trusted_decoding_equals_validated_decoding(event: Event) -> None:
    row = encode(event)
    fast = decode(row.id, row.topic, row.state, row.stream, 9)
    data = json.loads(row.state)
    data.pop("v")
    slow = type(event).model_validate({**data, "id": row.id, "stream": row.stream, "position": 9})
    assert fast == slow
    assert {k: type(v) for k, v in fast.__dict__.items()} == {
        k: type(v) for k, v in slow.__dict__.items()
    }


def test_one_measurement_in_two_stocks_is_two_events() -> None:
    # ZTF histories of neighbouring objects share candids: each stock must keep its copy.
    a = DatapointAdded(stream="ZTF1", datapoint_id="x", kind="detection", body={"m": 1.0})
    b = DatapointAdded(stream="ZTF2", datapoint_id="x", kind="detection", body={"m": 1.0})
    assert a.id != b.id


def test_unreadable_packets_without_bytes_stay_distinct() -> None:
    def unreadable(where: str, why: str) -> AlertReceived:
        return AlertReceived(
            stream="unreadable", digest="e" * 32, source="s", locator=where, error=why
        )

    assert len({unreadable("a", "x").id, unreadable("b", "x").id, unreadable("a", "y").id}) == 3
    read = AlertReceived(stream="ZTF1", digest="e" * 32, source="s", locator="a")
    again = AlertReceived(stream="ZTF1", digest="e" * 32, source="other", locator="b")
    assert read.id == again.id  # the same packet from another file is the same alert


def test_the_measured_duration_is_not_part_of_the_identity() -> None:
    from skyledger.ledger.events import Provenance

    def state(duration: float) -> StateCombined:
        prov = Provenance(
            unit="C", unit_version="1", unit_digest="d", config="c", duration_s=duration
        )
        return StateCombined(
            stream="s", state_id="x", datapoint_ids=("a",), bodies="b", provenance=prov
        )

    assert state(0.01).id == state(0.5).id
    other = Provenance(unit="C", unit_version="2", unit_digest="d", config="c")
    assert (
        state(0.01).id
        != StateCombined(
            stream="s", state_id="x", datapoint_ids=("a",), bodies="b", provenance=other
        ).id
    )
