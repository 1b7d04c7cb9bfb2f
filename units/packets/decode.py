"""Alert packets decoded into records: object container files and Confluent-framed packets.

* An object container file (:mod:`units.packets.containers`) holds one or many records.
  A file with exactly one record is its own packet. Each record of a multi-record file is
  repacked as a single-record container: the writer schema text as found, codec ``null``,
  the fixed sync marker :data:`~units.packets.containers.PACKET_SYNC` and the record's own
  encoded bytes (sliced from the decompressed block, not re-encoded), so its bytes and
  digest are the same in every run. A corrupt or truncated container yields the records
  that decode, then one :class:`~units.alerts.Unreadable` for the rest.
* A Confluent-framed packet (Rubin's live stream, :mod:`units.packets.confluent`) is a
  zero byte, a 4-byte big-endian schema-registry id, then a schemaless Avro body; the id
  selects an official Rubin schema. Several framed packets may follow each other.

Which survey, stock and alert a decoded record is, is :mod:`units.packets.identify`'s job.
"""

from __future__ import annotations

import io
import json
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import fastavro

from skyledger.ledger.canonical import digest_bytes
from skyledger.units.alerts import Unreadable
from skyledger.units.packets.binary import read_long
from skyledger.units.packets.confluent import LSST_SCHEMA_IDS, registry_schema
from skyledger.units.packets.containers import (
    CONTAINER_MAGIC,
    SYNC_SIZE,
    container_header,
    make_header,
    single_record_packet,
)

__all__ = ["Decoded", "decode", "unreadable"]


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


def decode(data: bytes, locator: str, schema: str | None = None) -> Iterator[Decoded | Unreadable]:
    """Yield the records of a container or Confluent-framed blob; never raises on bad bytes.

    ``schema`` is the writer schema (JSON text) of Confluent-framed packets whose id is
    not an official Rubin one, as a schema registry gave it."""
    if data.startswith(CONTAINER_MAGIC):
        yield from _decode_container(data, locator)
    elif len(data) >= 5 and data[0] == 0:
        yield from _decode_confluent(data, locator, schema)
    elif not data:
        yield unreadable(data, locator, "empty file: no Avro packet in it")
    else:
        yield unreadable(
            data,
            locator,
            f"neither an Avro container (magic {CONTAINER_MAGIC!r}) nor a Confluent-framed "
            f"packet (zero byte + schema id); starts with {data[:8]!r}",
        )


def _decode_confluent(
    data: bytes, locator: str, given: str | None = None
) -> Iterator[Decoded | Unreadable]:
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
        label = LSST_SCHEMA_IDS.get(schema_id, f"registry id {schema_id}")
        name = label + ".alert"
        if schema is None and given is not None:
            try:
                schema, name, _ = _writer_schema(given)
            except Exception as exc:  # a registry's schema that does not parse
                reason = f"schema id {schema_id} from the registry does not parse: {exc!r}"
                yield unreadable(data[pos:], here, reason)
                return
        if schema is None:
            known = ", ".join(f"{k} ({v})" for k, v in LSST_SCHEMA_IDS.items())
            reason = (
                f"unknown schema id {schema_id} in Confluent-framed packet; known: {known} "
                "(a source with a schema registry fetches others)"
            )
            yield unreadable(data[pos:], here, reason)
            return
        stream.seek(pos + 5)
        try:
            record = fastavro.schemaless_reader(stream, schema, None)
        except Exception as exc:  # any decoding failure is reported, not raised
            reason = (
                f"cannot decode Confluent-framed packet with schema id {schema_id} "
                f"({label}): {exc!r}"
            )
            yield unreadable(data[pos:], here, reason)
            return
        end = stream.tell()
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
        sync = data[pos - SYNC_SIZE : pos]
        codec = meta.get("avro.codec", b"null")
        if codec not in (b"null", b"deflate"):
            return None
        schema_json = meta["avro.schema"].decode()
        schema, name, version = _writer_schema(schema_json)
        found: list[Decoded] = []
        header = b""
        while pos < len(data):
            count, pos = read_long(data, pos)
            size, pos = read_long(data, pos)
            end = pos + size
            if count < 0 or size < 0 or data[end : end + SYNC_SIZE] != sync:
                return None
            raw = data[pos:end] if codec == b"null" else zlib.decompress(data[pos:end], -15)
            single = not found and count == 1 and end + SYNC_SIZE == len(data)
            body = io.BytesIO(raw)
            for _ in range(count):
                begin = body.tell()
                record = fastavro.schemaless_reader(body, schema, None)
                if single:
                    packet = data
                else:
                    header = header or make_header(schema_json)
                    packet = single_record_packet(header, raw[begin : body.tell()])
                found.append(Decoded(record, packet, f"{locator}#{len(found)}", name, version))
            if body.tell() != len(raw):
                return None
            pos = end + SYNC_SIZE
    except Exception:
        return None
    return found


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
    sync = data[stream.tell() - SYNC_SIZE : stream.tell()]
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
                header = header or make_header(schema_json)
                packet = single_record_packet(header, raw[begin : body.tell()])
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
        _count, pos = read_long(data, start)
        size, pos = read_long(data, pos)
    except IndexError:
        return (
            f"truncated Avro container: block {block_no} header cut off at byte {start} ({after})"
        )
    end = pos + size
    if data[end : end + SYNC_SIZE] == sync:
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
