"""Single-record container packets taken apart, and container files put together.

:func:`read_packet` returns the writer schema text and the encoded record of a packet
as :mod:`units.avro` makes them (or of a single-record file, with any codec);
:func:`container` joins encoded records into a container file with the fixed sync
marker :data:`~units.avro.PACKET_SYNC`, so the same records give the same bytes;
:func:`write_alerts` writes alerts as such files, without re-encoding them.
"""

from __future__ import annotations

import io
import zlib
from collections import defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Literal

import fastavro

from units.alerts import Alert
from units.avro import CONTAINER_MAGIC, PACKET_SYNC, _long, _read_long, container_header
from units.sources import PACKET_SUFFIXES

__all__ = ["Codec", "container", "read_packet", "write_alerts"]

Codec = Literal["null", "deflate"]


def read_packet(packet: bytes) -> tuple[str, bytes]:
    """Return the writer schema text and the record bytes of a single-record container."""
    if not packet.startswith(CONTAINER_MAGIC):
        raise ValueError("not an Avro container packet (Confluent-framed packets have no schema)")
    meta, pos = container_header(packet)
    count, pos = _read_long(packet, pos)
    size, pos = _read_long(packet, pos)
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
    meta = {"avro.codec": codec.encode(), "avro.schema": schema_text.encode()}
    out = bytearray(CONTAINER_MAGIC) + _long(len(meta))
    for key, value in meta.items():
        out += _long(len(key)) + key.encode() + _long(len(value)) + value
    out += _long(0) + PACKET_SYNC
    for start in range(0, len(records), per_block):
        block = records[start : start + per_block]
        data = b"".join(block)
        if codec == "deflate":
            squeeze = zlib.compressobj(6, zlib.DEFLATED, -15)
            data = squeeze.compress(data) + squeeze.flush()
        out += _long(len(block)) + _long(len(data)) + data + PACKET_SYNC
    return bytes(out)


def write_alerts(
    alerts: Iterable[Alert], out_dir: Path, per_file: int = 1000, *, codec: Codec = "null"
) -> list[Path]:
    """Write ``alerts`` as container files in ``out_dir`` (new or empty); return the files.

    Files hold ``per_file`` records of one writer schema each and are named
    ``<number>-<schema label>.avro``, numbered in the order they fill up; records keep
    their order within a writer schema. The records are the packets' own bytes, so
    :func:`~units.sources.iter_packets` reads back the same payloads (and, for packets
    made by :mod:`units.avro` or a :class:`Restamper`, the same digests).
    """
    if per_file < 1:
        raise ValueError(f"per_file must be at least 1, got {per_file}")
    out_dir.mkdir(parents=True, exist_ok=True)
    existing = sorted(p.name for p in out_dir.iterdir() if p.name.lower().endswith(PACKET_SUFFIXES))
    if existing:
        msg = f"{out_dir} already holds {len(existing)} packet files ({existing[0]}, ...)"
        raise ValueError(msg)
    written: list[Path] = []
    pending: dict[str, tuple[str, list[bytes]]] = defaultdict(lambda: ("", []))

    def flush(schema_text: str) -> None:
        label, records = pending.pop(schema_text)
        path = out_dir / f"{len(written):06d}-{label}.avro"
        path.write_bytes(container(schema_text, records, codec))
        written.append(path)

    for alert in alerts:
        try:
            schema_text, record = read_packet(alert.packet)
        except ValueError as exc:
            raise ValueError(f"{alert.locator}: {exc}") from None
        label, records = pending[schema_text]
        pending[schema_text] = (label or alert.schema, records)
        records.append(record)
        if len(records) >= per_file:
            flush(schema_text)
    for schema_text in list(pending):
        flush(schema_text)
    return written
