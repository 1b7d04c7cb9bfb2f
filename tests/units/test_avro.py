"""Decoding of Avro containers and Confluent-framed packets, on real and crafted bytes."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import fastavro
import pytest
from fastavro.schema import load_schema

from skyledger.ledger.canonical import digest_bytes
from skyledger.units.alerts import Unreadable
from skyledger.units.packets.confluent import LSST_SCHEMA_IDS, frame_confluent, registry_schema
from skyledger.units.packets.containers import CONTAINER_MAGIC, PACKET_SYNC
from skyledger.units.packets.decode import Decoded, _careful_container, _quick_container, decode

RUBIN_VERSIONS = [("v9_0", 900), ("v10_0", 1000), ("v11_0", 1100)]


def _decoded(items: list[Decoded | Unreadable]) -> list[Decoded]:
    return [item for item in items if isinstance(item, Decoded)]


def _records(data: bytes) -> list[Any]:
    return list(fastavro.reader(io.BytesIO(data)))


def test_registry_ids_are_major_times_100_plus_minor() -> None:
    schema_root = Path(__file__).resolve().parents[2] / "units" / "packets" / "schemas" / "lsst"
    for folder in sorted(schema_root.iterdir()):
        major, minor = (int(part) for part in folder.name.removeprefix("v").split("_"))
        label = LSST_SCHEMA_IDS[major * 100 + minor]
        assert label == f"lsst.{folder.name}"
        schema = registry_schema(major * 100 + minor)
        assert schema is not None
        assert schema["name"] == f"{label}.alert"
    assert registry_schema(4242) is None


def test_single_record_container_is_its_own_packet(shared_data: Path) -> None:
    path = sorted((shared_data / "ztf" / "ZTF21abiuvdk").glob("*.avro"))[0]
    data = path.read_bytes()
    (item,) = decode(data, str(path))
    assert isinstance(item, Decoded)
    assert item.packet == data
    assert item.locator == f"{path}#0"
    assert item.record == _records(data)[0]


def test_multi_record_packets_are_deterministic_and_decode_alone(shared_data: Path) -> None:
    path = shared_data / "ztf" / "night" / "fink-client_sample_part-00001_n54.avro"
    data = path.read_bytes()
    first = _decoded(list(decode(data, "x")))
    second = _decoded(list(decode(bytes(data), "x")))
    expected = _records(data)
    assert len(first) == len(expected) == 54
    assert [digest_bytes(d.packet) for d in first] == [digest_bytes(d.packet) for d in second]
    assert len({d.packet for d in first}) == 54
    for item, record in zip(first, expected, strict=True):
        assert item.packet.startswith(b"Obj\x01")
        assert item.packet.endswith(PACKET_SYNC)
        assert _records(item.packet) == [record]
        assert item.record == record


@pytest.mark.parametrize(("version", "schema_id"), RUBIN_VERSIONS)
def test_confluent_framed_fake_alert_decodes(
    shared_data: Path, version: str, schema_id: int
) -> None:
    folder = shared_data / "lsst" / "schema" / version
    record = _records((folder / "fakeAlert.avro").read_bytes())[0]
    schema = load_schema(str(folder / f"lsst.{version}.alert.avsc"))
    body = io.BytesIO()
    fastavro.schemaless_writer(body, schema, record)
    framed = b"\x00" + schema_id.to_bytes(4, "big") + body.getvalue()
    (item,) = decode(framed, "topic:0")
    assert isinstance(item, Decoded)
    assert item.record == record
    assert item.packet == framed
    assert item.schema_name == f"lsst.{version}.alert"
    assert frame_confluent(schema_id, record) == framed


def test_unknown_schema_id_is_unreadable(shared_data: Path) -> None:
    record = _records((shared_data / "lsst/schema/v10_0/fakeAlert.avro").read_bytes())[0]
    framed = b"\x00" + (4242).to_bytes(4, "big") + frame_confluent(1000, record)[5:]
    (item,) = decode(framed, "topic:7")
    assert isinstance(item, Unreadable)
    assert "unknown schema id 4242" in item.reason
    assert item.packet == framed
    assert item.digest == digest_bytes(framed)


def test_concatenated_frames_and_trailing_bytes(shared_data: Path) -> None:
    record = _records((shared_data / "lsst/schema/v9_0/fakeAlert.avro").read_bytes())[0]
    frame = frame_confluent(900, record)
    items = list(decode(frame + frame + b"\x07junk", "f"))
    assert [type(item).__name__ for item in items] == ["Decoded", "Decoded", "Unreadable"]
    assert [item.locator for item in items] == ["f#0", "f#1", "f#2"]
    assert items[0].packet == frame
    assert isinstance(items[2], Unreadable)
    assert "5 trailing bytes after 2 Confluent-framed packets" in items[2].reason


def test_malformed_files_are_unreadable_with_a_reason(shared_data: Path) -> None:
    paths = sorted((shared_data / "ztf" / "malformed").glob("*.avro"))
    assert len(paths) == 5
    for path in paths:
        data = path.read_bytes()
        (item,) = decode(data, str(path))
        assert isinstance(item, Unreadable)
        assert "sync marker not found after block 1" in item.reason
        assert "0 records read" in item.reason
        assert item.packet == data
        assert item.digest == digest_bytes(data)


def test_truncated_container_yields_the_records_before_the_break(shared_data: Path) -> None:
    data = (shared_data / "ztf" / "night" / "ztf_fink_distribute_29a1c440_n482.avro").read_bytes()
    cut = data[: len(data) * 3 // 5]
    expected = 0
    stream = io.BytesIO(cut)
    try:
        for block in fastavro.block_reader(stream):
            expected += block.num_records
    except (ValueError, EOFError):
        pass
    assert 0 < expected < 482
    items = list(decode(cut, "cut.avro"))
    assert len(_decoded(items)) == expected
    last = items[-1]
    assert isinstance(last, Unreadable)
    assert last.reason.startswith("truncated Avro container")
    assert f"{expected} records read before it" in last.reason
    assert last.locator == f"cut.avro#{expected}"
    assert 0 < len(last.packet) < len(cut)
    assert cut.endswith(last.packet)


def test_undecodable_record_in_a_sound_block() -> None:
    schema = {"type": "record", "name": "x", "fields": [{"name": "a", "type": "string"}]}
    out = io.BytesIO()
    fastavro.writer(out, schema, [{"a": "hello"}], sync_marker=b"S" * 16)
    data = out.getvalue()
    count_at = data.index(b"S" * 16) + 16
    assert data[count_at] == 2  # zig-zag 1
    broken = data[:count_at] + b"\x04" + data[count_at + 1 :]  # claims 2 records
    items = list(decode(broken, "b"))
    assert [type(item).__name__ for item in items] == ["Decoded", "Unreadable"]
    assert isinstance(items[1], Unreadable)
    assert "cannot decode record 2 (in block 1)" in items[1].reason


@pytest.mark.parametrize(
    ("data", "reason"),
    [(b"", "empty file"), (b"hello world", "neither an Avro container")],
)
def test_not_a_packet(data: bytes, reason: str) -> None:
    (item,) = decode(data, "f")
    assert isinstance(item, Unreadable)
    assert reason in item.reason


def test_frame_confluent_rejects_unknown_ids() -> None:
    with pytest.raises(ValueError, match="unknown schema id 1"):
        frame_confluent(1, {})


def test_the_quick_and_the_careful_container_readers_agree(shared_data: Path) -> None:
    """Every container in the shared data (sound or not) gives the same records, packets,
    locators and schema labels whichever reader takes it; a corrupt one is left to the
    careful reader, which names the problem."""
    files = [p for p in sorted(shared_data.rglob("*")) if p.is_file()]
    containers = [p for p in files if p.read_bytes()[:4] == CONTAINER_MAGIC]
    assert len(containers) > 20
    declined = 0
    for path in containers:
        data = path.read_bytes()
        quick = _quick_container(data, str(path))
        careful = list(_careful_container(data, str(path)))
        if quick is None:
            declined += 1
            assert any(isinstance(item, Unreadable) for item in careful), path
            continue
        assert [_seen(d) for d in quick] == [_seen(d) for d in careful], path
    assert 0 < declined < len(containers)


def _seen(item: Decoded | Unreadable) -> tuple[object, ...]:
    if isinstance(item, Unreadable):
        return ("unreadable", item.locator)
    # repr: records hold NaN, which is not equal to itself
    return (repr(item.record), item.packet, item.locator, item.schema_name, item.schema_version)
