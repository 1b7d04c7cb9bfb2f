"""Avro object container files: their header read and written, packets taken apart, files
put together.

A container file is the magic :data:`CONTAINER_MAGIC`, a metadata map (``avro.schema``,
the writer schema's JSON text; ``avro.codec``), a 16-byte sync marker, then blocks: a
record count, a byte size, the (compressed) encoded records and the sync marker again.

skyledger's own containers use the fixed sync marker :data:`PACKET_SYNC`, so the same
records always give the same bytes: :func:`single_record_packet` makes the packet of one
record (as :mod:`units.packets.decode` repacks the records of a multi-record file),
:func:`container` joins encoded records into a file. :func:`read_packet` returns the
writer schema text and the encoded record of such a packet (or of any single-record
file, with any codec).
"""

from __future__ import annotations

import io
import zlib
from collections.abc import Sequence
from typing import Literal

import fastavro

from skyledger.units.packets.binary import encode_long, read_bytes, read_long

__all__ = [
    "CONTAINER_MAGIC",
    "PACKET_SYNC",
    "SYNC_SIZE",
    "Codec",
    "container",
    "container_header",
    "make_header",
    "read_packet",
    "single_record_packet",
]

CONTAINER_MAGIC = b"Obj\x01"
"""The first four bytes of every Avro object container file."""
PACKET_SYNC = b"skyledger-sync-1"
"""Sync marker of repacked single-record containers (16 bytes, fixed on purpose)."""
SYNC_SIZE = 16
"""Length of a container's sync marker, in bytes."""

Codec = Literal["null", "deflate"]
"""The block codecs :func:`container` writes."""


def container_header(data: bytes) -> tuple[dict[str, bytes], int]:
    """Return a container's metadata (``avro.schema``, ``avro.codec``, ...) and the
    position of its first block, after the sync marker; IndexError if it is cut off."""
    pos = len(CONTAINER_MAGIC)
    meta: dict[str, bytes] = {}
    while True:
        count, pos = read_long(data, pos)
        if count == 0:
            break
        if count < 0:  # a negative count is followed by the block's size in bytes
            count = -count
            _size, pos = read_long(data, pos)
        for _ in range(count):
            key, pos = read_bytes(data, pos)
            meta[key.decode()], pos = read_bytes(data, pos)
    if pos + SYNC_SIZE > len(data):
        raise IndexError("container header cut off before its sync marker")
    return meta, pos + SYNC_SIZE


def make_header(schema_text: str, codec: Codec = "null") -> bytes:
    """Return the header of a container of records written with ``schema_text``: the
    magic, the metadata (codec, then writer schema) and the fixed sync marker."""
    meta = {"avro.codec": codec.encode(), "avro.schema": schema_text.encode()}
    header = bytearray(CONTAINER_MAGIC)
    header += encode_long(len(meta))
    for key, value in meta.items():
        header += encode_long(len(key)) + key.encode() + encode_long(len(value)) + value
    header += encode_long(0) + PACKET_SYNC
    return bytes(header)


def single_record_packet(header: bytes, record: bytes) -> bytes:
    """Return one encoded record as a single-record container, after ``header`` (a
    :func:`make_header` of codec null): one block of one record, then the sync marker."""
    return b"".join((header, encode_long(1), encode_long(len(record)), record, PACKET_SYNC))


def read_packet(packet: bytes) -> tuple[str, bytes]:
    """Return the writer schema text and the record bytes of a single-record container."""
    if not packet.startswith(CONTAINER_MAGIC):
        raise ValueError("not an Avro container packet (Confluent-framed packets have no schema)")
    meta, pos = container_header(packet)
    count, pos = read_long(packet, pos)
    size, pos = read_long(packet, pos)
    if count != 1:
        raise ValueError(f"container packet holds {count} records in its first block, not 1")
    codec, block = meta.get("avro.codec", b"null"), packet[pos : pos + size]
    if codec == b"deflate":
        block = zlib.decompress(block, -15)
    elif codec != b"null":  # any other codec fastavro reads: let it decompress
        first = next(iter(fastavro.block_reader(io.BytesIO(packet))))
        block = first.bytes_.getvalue()  # type: ignore[attr-defined]  # decompressed
    return meta["avro.schema"].decode(), block


def container(
    schema_text: str, records: Sequence[bytes], codec: Codec = "null", per_block: int = 100
) -> bytes:
    """Return an Avro container file of encoded ``records`` (fixed sync marker, so stable)."""
    out = bytearray(make_header(schema_text, codec))
    for start in range(0, len(records), per_block):
        block = records[start : start + per_block]
        data = b"".join(block)
        if codec == "deflate":
            squeeze = zlib.compressobj(6, zlib.DEFLATED, -15)
            data = squeeze.compress(data) + squeeze.flush()
        out += encode_long(len(block)) + encode_long(len(data)) + data + PACKET_SYNC
    return bytes(out)
