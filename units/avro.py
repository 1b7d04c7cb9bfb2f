"""Decoding of Avro alert packets: object container files and Confluent-framed packets.

* An object container file (magic ``Obj\\x01``) holds one or many records. A file with
  exactly one record is its own packet. Each record of a multi-record file is repacked
  as a single-record container: the writer schema text as found, codec ``null``, the
  fixed sync marker :data:`PACKET_SYNC` and the record's own encoded bytes (sliced from
  the decompressed block, not re-encoded), so its bytes and digest are the same in every
  run. A corrupt or truncated container yields the records that decode, then one
  :class:`~units.alerts.Unreadable` for the rest.
* A Confluent-framed packet (Rubin's live stream) is a zero byte, a 4-byte big-endian
  schema-registry id, then a schemaless Avro body; the id selects an official Rubin
  schema from :data:`LSST_SCHEMA_IDS`. Several framed packets may follow each other.
"""

from __future__ import annotations

import io
import json
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache, lru_cache
from pathlib import Path
from typing import Any

import fastavro
from fastavro.schema import load_schema

from ledger.canonical import digest_bytes
from units.alerts import Unreadable

__all__ = [
    "CONTAINER_MAGIC",
    "LSST_SCHEMA_IDS",
    "PACKET_SYNC",
    "Decoded",
    "container_header",
    "decode",
    "frame_confluent",
    "registry_schema",
]

CONTAINER_MAGIC = b"Obj\x01"
PACKET_SYNC = b"skyledger-sync-1"
"""Sync marker of repacked single-record containers (16 bytes, fixed on purpose)."""

LSST_SCHEMA_IDS: dict[int, str] = {900: "lsst.v9_0", 1000: "lsst.v10_0", 1100: "lsst.v11_0"}
"""Rubin schema-registry ids: ``major * 100 + minor`` (lsst/alert_packet,
``bin/syncAllSchemasToRegistry.py``, which zero-pads the minor version to two digits)."""

_SCHEMA_ROOT = Path(__file__).resolve().parent / "schemas" / "lsst"
_SYNC_SIZE = 16


@dataclass(frozen=True, slots=True)
class Decoded:
    """One record decoded from a packet, before the survey is known."""

    record: Any = field(repr=False)
    """The decoded value: a dict for every alert schema (checked by the caller)."""
    packet: bytes = field(repr=False)
    locator: str
    schema_name: str
    """Writer schema's full name, or the registry label for Confluent packets."""
    schema_version: str | None = None
    """The writer schema's ``version`` attribute, if it has one (old ZTF files)."""


def unreadable(packet: bytes, locator: str, reason: str) -> Unreadable:
    """Return an :class:`Unreadable` for ``packet`` with its digest filled in."""
    return Unreadable(digest=digest_bytes(packet), locator=locator, reason=reason, packet=packet)


def decode(data: bytes, locator: str) -> Iterator[Decoded | Unreadable]:
    """Yield the records of a container or Confluent-framed blob; never raises on bad bytes."""
    if data.startswith(CONTAINER_MAGIC):
        yield from _decode_container(data, locator)
    elif len(data) >= 5 and data[0] == 0:
        yield from _decode_confluent(data, locator)
    elif not data:
        yield unreadable(data, locator, "empty file: no Avro packet in it")
    else:
        yield unreadable(
            data,
            locator,
            f"neither an Avro container (magic {CONTAINER_MAGIC!r}) nor a Confluent-framed "
            f"packet (zero byte + schema id); starts with {data[:8]!r}",
        )


@cache
def registry_schema(schema_id: int) -> Any | None:
    """Return the parsed official Rubin schema registered under ``schema_id``, or None."""
    label = LSST_SCHEMA_IDS.get(schema_id)
    if label is None:
        return None
    version = label.split(".", 1)[1]
    return load_schema(str(_SCHEMA_ROOT / version / f"{label}.alert.avsc"))


def frame_confluent(schema_id: int, record: dict[str, Any]) -> bytes:
    """Return ``record`` in the Confluent wire format with a registered Rubin schema."""
    schema = registry_schema(schema_id)
    if schema is None:
        msg = f"unknown schema id {schema_id}; known: {sorted(LSST_SCHEMA_IDS)}"
        raise ValueError(msg)
    out = io.BytesIO()
    out.write(b"\x00" + schema_id.to_bytes(4, "big"))
    fastavro.schemaless_writer(out, schema, record)
    return out.getvalue()


def _decode_confluent(data: bytes, locator: str) -> Iterator[Decoded | Unreadable]:
    stream = io.BytesIO(data)
    pos = index = 0
    while pos < len(data):
        here = f"{locator}#{index}"
        if len(data) - pos < 5 or data[pos] != 0:
            reason = f"{len(data) - pos} trailing bytes after {index} Confluent-framed packets"
            yield unreadable(data[pos:], here, reason)
            return
        schema_id = int.from_bytes(data[pos + 1 : pos + 5], "big")
        schema = registry_schema(schema_id)
        if schema is None:
            known = ", ".join(f"{k} ({v})" for k, v in LSST_SCHEMA_IDS.items())
            reason = f"unknown schema id {schema_id} in Confluent-framed packet; known: {known}"
            yield unreadable(data[pos:], here, reason)
            return
        stream.seek(pos + 5)
        try:
            record = fastavro.schemaless_reader(stream, schema, None)
        except Exception as exc:  # any decoding failure is reported, not raised
            label = LSST_SCHEMA_IDS[schema_id]
            reason = (
                f"cannot decode Confluent-framed packet with schema id {schema_id} "
                f"({label}): {exc!r}"
            )
            yield unreadable(data[pos:], here, reason)
            return
        end = stream.tell()
        name = LSST_SCHEMA_IDS[schema_id] + ".alert"
        yield Decoded(record=record, packet=data[pos:end], locator=here, schema_name=name)
        pos, index = end, index + 1


def _decode_container(data: bytes, locator: str) -> Iterator[Decoded | Unreadable]:
    quick = _quick_container(data, locator)
    if quick is not None:
        yield from quick
        return
    yield from _careful_container(data, locator)


@lru_cache(maxsize=64)
def _writer_schema(schema_json: str) -> tuple[Any, str, str | None]:
    """Return a writer schema parsed (once per process), with its name and version."""
    schema = fastavro.parse_schema(json.loads(schema_json))
    return (schema, *_schema_name(schema))


def _quick_container(data: bytes, locator: str) -> list[Decoded] | None:
    """Return every record of a well-formed container (codec null or deflate), or None.

    Alert packets are mostly one record each, and fastavro's readers parse the writer
    schema anew for every file, which costs as much as decoding a ZTF record. Here the
    header is read by hand and each schema is parsed once per process. Anything
    unexpected gives None, and the careful reader below decodes the packet and names
    what is wrong.
    """
    try:
        meta, pos = container_header(data)
        sync = data[pos - _SYNC_SIZE : pos]
        codec = meta.get("avro.codec", b"null")
        if codec not in (b"null", b"deflate"):
            return None
        schema_json = meta["avro.schema"].decode()
        schema, name, version = _writer_schema(schema_json)
        found: list[Decoded] = []
        header = b""
        while pos < len(data):
            count, pos = _read_long(data, pos)
            size, pos = _read_long(data, pos)
            end = pos + size
            if count < 0 or size < 0 or data[end : end + _SYNC_SIZE] != sync:
                return None
            raw = data[pos:end] if codec == b"null" else zlib.decompress(data[pos:end], -15)
            single = not found and count == 1 and end + _SYNC_SIZE == len(data)
            body = io.BytesIO(raw)
            for _ in range(count):
                begin = body.tell()
                record = fastavro.schemaless_reader(body, schema, None)
                if single:
                    packet = data
                else:
                    header = header or _packet_header(schema_json)
                    packet = _packet(header, raw[begin : body.tell()])
                found.append(Decoded(record, packet, f"{locator}#{len(found)}", name, version))
            if body.tell() != len(raw):
                return None
            pos = end + _SYNC_SIZE
    except Exception:
        return None
    return found


def container_header(data: bytes) -> tuple[dict[str, bytes], int]:
    """Return a container's metadata (``avro.schema``, ``avro.codec``, ...) and the
    position of its first block, after the sync marker; IndexError if it is cut off."""
    pos = len(CONTAINER_MAGIC)
    meta: dict[str, bytes] = {}
    while True:
        count, pos = _read_long(data, pos)
        if count == 0:
            break
        if count < 0:  # a negative count is followed by the block's size in bytes
            count = -count
            _size, pos = _read_long(data, pos)
        for _ in range(count):
            key, pos = _read_bytes(data, pos)
            meta[key.decode()], pos = _read_bytes(data, pos)
    if pos + _SYNC_SIZE > len(data):
        raise IndexError("container header cut off before its sync marker")
    return meta, pos + _SYNC_SIZE


def _read_bytes(data: bytes, pos: int) -> tuple[bytes, int]:
    size, pos = _read_long(data, pos)
    if size < 0 or pos + size > len(data):
        raise IndexError("bytes run past the end")
    return data[pos : pos + size], pos + size


def _careful_container(data: bytes, locator: str) -> Iterator[Decoded | Unreadable]:
    stream = io.BytesIO(data)
    try:
        blocks = fastavro.block_reader(stream)
        schema_json = str(blocks.metadata["avro.schema"])
        schema = fastavro.parse_schema(json.loads(schema_json))
    except Exception as exc:
        yield unreadable(data, f"{locator}#0", f"unreadable Avro container header: {exc!r}")
        return
    name, version = _schema_name(blocks.writer_schema)
    sync = data[stream.tell() - _SYNC_SIZE : stream.tell()]
    header = b""
    read = block_no = 0
    iterator = iter(blocks)
    while True:
        start = stream.tell()
        try:
            block = next(iterator)
        except StopIteration:
            return
        except Exception as exc:
            reason = _diagnose(data, start, sync, block_no + 1, read, exc)
            yield unreadable(data if read == 0 else data[start:], f"{locator}#{read}", reason)
            return
        block_no += 1
        single = block_no == 1 and block.num_records == 1 and stream.tell() == len(data)
        body: io.BytesIO = block.bytes_  # type: ignore[attr-defined]  # decompressed block
        raw = body.getvalue()
        for _ in range(block.num_records):
            begin = body.tell()
            try:
                record = fastavro.schemaless_reader(body, schema, None)
            except Exception as exc:
                reason = (
                    f"cannot decode record {read + 1} (in block {block_no}) of the Avro "
                    f"container; {read} records read before it: {exc!r}"
                )
                yield unreadable(data if read == 0 else data[start:], f"{locator}#{read}", reason)
                return
            if single:
                packet = data
            else:
                header = header or _packet_header(schema_json)
                packet = _packet(header, raw[begin : body.tell()])
            yield Decoded(record, packet, f"{locator}#{read}", name, version)
            read += 1


def _schema_name(schema: Any) -> tuple[str, str | None]:
    if isinstance(schema, dict):
        version = schema.get("version")
        return str(schema.get("name", "")), None if version is None else str(version)
    return "", None


def _diagnose(
    data: bytes, start: int, sync: bytes, block_no: int, read: int, exc: Exception
) -> str:
    """Return why block ``block_no`` starting at byte ``start`` could not be read."""
    after = f"{read} records read before it"
    try:
        _count, pos = _read_long(data, start)
        size, pos = _read_long(data, pos)
    except IndexError:
        return (
            f"truncated Avro container: block {block_no} header cut off at byte {start} ({after})"
        )
    end = pos + size
    if data[end : end + _SYNC_SIZE] == sync:
        return f"corrupt Avro block {block_no} ({after}): {exc!r}"
    found = data.find(sync, pos)
    if found == -1:
        return (
            f"truncated Avro container: sync marker not found after block {block_no}; the "
            f"block declares {size} bytes, {len(data) - pos} remain ({after})"
        )
    return (
        f"corrupt Avro container: sync marker not found after block {block_no}; the block "
        f"declares {size} bytes but the next sync marker follows after {found - pos} ({after})"
    )


def _read_long(data: bytes, pos: int) -> tuple[int, int]:
    """Return the zig-zag varint long at ``pos`` and the position after it."""
    shift = value = 0
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return (value >> 1) ^ -(value & 1), pos


def _long(value: int) -> bytes:
    """Return ``value`` as an Avro zig-zag varint long."""
    n = (value << 1) ^ (value >> 63)
    out = bytearray()
    while n & ~0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _packet_header(schema_json: str) -> bytes:
    """Return the header of a single-record container: writer schema, codec null, fixed sync."""
    meta = {"avro.codec": b"null", "avro.schema": schema_json.encode()}
    header = bytearray(CONTAINER_MAGIC)
    header += _long(len(meta))
    for key, value in meta.items():
        header += _long(len(key)) + key.encode() + _long(len(value)) + value
    header += _long(0) + PACKET_SYNC
    return bytes(header)


def _packet(header: bytes, record: bytes) -> bytes:
    """Return one encoded record as a single-record container."""
    return b"".join((header, _long(1), _long(len(record)), record, PACKET_SYNC))
