"""Confluent-framed packets, as Rubin's live stream sends them.

A framed packet is a zero byte, a 4-byte big-endian schema-registry id, then a
schemaless Avro body. The id selects an official Rubin schema from
:data:`LSST_SCHEMA_IDS`, shipped in ``units/packets/schemas/lsst/`` (see its README).
:mod:`units.packets.decode` reads such packets; :func:`frame_confluent` writes one.
"""

from __future__ import annotations

import io
from functools import cache
from pathlib import Path
from typing import Any

import fastavro
from fastavro.schema import load_schema

__all__ = ["LSST_SCHEMA_IDS", "SCHEMA_ROOT", "frame_confluent", "registry_schema"]

LSST_SCHEMA_IDS: dict[int, str] = {900: "lsst.v9_0", 1000: "lsst.v10_0", 1100: "lsst.v11_0"}
"""Rubin schema-registry ids: ``major * 100 + minor`` (lsst/alert_packet,
``bin/syncAllSchemasToRegistry.py``, which zero-pads the minor version to two digits)."""

SCHEMA_ROOT = Path(__file__).resolve().parent / "schemas" / "lsst"
"""The folder of the official Rubin schemas, one subfolder per version (``v10_0``)."""


@cache
def registry_schema(schema_id: int) -> Any | None:
    """Return the parsed official Rubin schema registered under ``schema_id``, or None."""
    label = LSST_SCHEMA_IDS.get(schema_id)
    if label is None:
        return None
    version = label.split(".", 1)[1]
    return load_schema(str(SCHEMA_ROOT / version / f"{label}.alert.avsc"))


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
