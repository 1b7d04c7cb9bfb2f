"""Shards: PostgreSQL selects a shard's events as Python assigns streams to shards."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from skyledger.ledger import DatapointAdded, Ledger, Shard, shard_of


@given(stream=st.text(max_size=40), count=st.integers(min_value=1, max_value=64))
def test_every_stream_has_one_shard_in_range(stream: str, count: int) -> None:
    shard = shard_of(stream, count)
    assert 0 <= shard < count
    assert [s.holds(stream) for s in Shard.all(count)].count(True) == 1


def test_a_shard_is_named_after_its_projector() -> None:
    assert Shard(2, 8).name_of("t1:abc") == "t1:abc@2/8"
    with pytest.raises(ValueError, match="need 0 <= index < count"):
        Shard(8, 8)


def test_the_database_and_python_agree_on_every_streams_shard(ledger: Ledger) -> None:
    streams = [f"ZTF{i:02d}ab{chr(97 + i % 26)}é" for i in range(60)] + ["unreadable"]
    ledger.append(
        DatapointAdded(stream=s, datapoint_id=f"d{i}", kind="detection", body={"i": i})
        for i, s in enumerate(streams)
    )
    everything = ledger.read_batch(1, None, [DatapointAdded], 1000)
    assert len(everything) == len(streams)
    for count in (2, 3, 7):
        for shard in Shard.all(count):
            got = ledger.read_batch(1, None, [DatapointAdded], 1000, shard)
            assert got == [e for e in everything if shard.holds(e.stream)]
            first = ledger.read_batch(1, None, [DatapointAdded], 2, shard)
            assert first == got[:2]
