"""Which survey a decoded record comes from, its stock, alert id and schema label.

The survey is decided from the record's shape, since Spark-written (Fink) files rename
every schema to ``topLevelRecord``:

* ZTF: top-level ``objectId`` and ``candidate`` (with ``prv_candidates``).
* ELAsTiCC: ``diaSource`` and a schema named ``elasticc...``; without a name, an
  ``alertId`` with a DPDD-era ``diaSource`` (``midPointTai``, ``filterName``).
* LSST: ``diaSource`` and ``prvDiaSources`` otherwise.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from skyledger.ledger.canonical import digest_bytes
from skyledger.units.alerts import Alert, Survey, Unreadable
from skyledger.units.packets.decode import Decoded, unreadable

__all__ = ["identify"]

_SHOWN_FIELDS = 12


def identify(decoded: Decoded) -> Alert | Unreadable:
    """Return the alert a decoded record is, or an Unreadable naming what was seen."""
    record = decoded.record
    if not isinstance(record, Mapping):
        return _bad(decoded, f"decoded value is a {type(record).__name__}, not a record")
    if "objectId" in record and "candidate" in record:
        return _ztf(decoded, record)
    if "diaSource" in record:
        if _is_elasticc(decoded.schema_name, record):
            return _elasticc(decoded, record)
        if "prvDiaSources" in record:
            return _lsst(decoded, record)
    fields = sorted(str(key) for key in record)
    shown = ", ".join(fields[:_SHOWN_FIELDS]) + (", ..." if len(fields) > _SHOWN_FIELDS else "")
    name = decoded.schema_name or "(unnamed)"
    return _bad(
        decoded,
        f"unknown alert schema {name!r}: top-level fields [{shown}] match neither ZTF "
        "(objectId, candidate) nor LSST/ELAsTiCC (diaSource, prvDiaSources)",
    )


def _bad(decoded: Decoded, reason: str) -> Unreadable:
    return unreadable(decoded.packet, decoded.locator, reason)


def _alert(decoded: Decoded, survey: Survey, stock: str, alert_id: object, schema: str) -> Alert:
    return Alert(
        stock=stock,
        survey=survey,
        alert_id=str(alert_id),
        digest=digest_bytes(decoded.packet),
        locator=decoded.locator,
        schema=schema,
        payload=decoded.record,
        packet=decoded.packet,
    )


def _ztf(decoded: Decoded, record: Mapping[str, Any]) -> Alert | Unreadable:
    object_id = record.get("objectId")
    candidate = record.get("candidate")
    if not isinstance(object_id, str) or not object_id:
        return _bad(decoded, f"ZTF alert without an objectId (got {object_id!r})")
    if not isinstance(candidate, Mapping):
        return _bad(decoded, f"ZTF alert {object_id} without a candidate record")
    candid = candidate.get("candid")
    if candid is None:
        candid = record.get("candid")
    if candid is None:
        return _bad(decoded, f"ZTF alert {object_id} without candidate.candid")
    version = record.get("schemavsn") or decoded.schema_version or "unknown"
    return _alert(decoded, "ztf", object_id, candid, f"ztf-{version}")


def _is_elasticc(schema_name: str, record: Mapping[str, Any]) -> bool:
    if schema_name.startswith("elasticc"):
        return True
    if schema_name.startswith("lsst"):
        return False
    source = record.get("diaSource")
    return (
        "alertId" in record
        and isinstance(source, Mapping)
        and "midPointTai" in source
        and "filterName" in source
    )


def _label(schema_name: str, record: Mapping[str, Any], prefix: str) -> str:
    if schema_name.startswith(prefix):
        return schema_name.removesuffix(".alert")
    given = record.get("lsst_schema_version")
    if isinstance(given, str) and given.startswith(prefix):
        return given
    return f"{prefix}.unknown"


def _nonzero(value: object) -> bool:
    return value is not None and value != 0 and value != ""


def _lsst(decoded: Decoded, record: Mapping[str, Any]) -> Alert | Unreadable:
    source = record.get("diaSource")
    if not isinstance(source, Mapping):
        return _bad(decoded, "LSST alert without a diaSource record")
    dia_object = record.get("diaObject") or {}
    ss_source = record.get("ssSource") or {}
    object_id = source.get("diaObjectId") or dia_object.get("diaObjectId")
    ss_object_id = source.get("ssObjectId") or ss_source.get("ssObjectId")
    if _nonzero(object_id):
        stock = f"lsst:{object_id}"
    elif _nonzero(ss_object_id):
        stock = f"lsst-ss:{ss_object_id}"
    else:
        return _bad(decoded, "LSST alert with neither a diaObjectId nor an ssObjectId")
    alert_id = record.get("alertId") or record.get("diaSourceId") or source.get("diaSourceId")
    if alert_id is None:
        return _bad(decoded, f"LSST alert of {stock} without a diaSourceId")
    return _alert(decoded, "lsst", stock, alert_id, _label(decoded.schema_name, record, "lsst"))


def _elasticc(decoded: Decoded, record: Mapping[str, Any]) -> Alert | Unreadable:
    source = record.get("diaSource")
    if not isinstance(source, Mapping):
        return _bad(decoded, "ELAsTiCC alert without a diaSource record")
    object_id = source.get("diaObjectId") or (record.get("diaObject") or {}).get("diaObjectId")
    if not _nonzero(object_id):
        return _bad(decoded, "ELAsTiCC alert without a diaObjectId")
    alert_id = record.get("alertId") or source.get("diaSourceId")
    if alert_id is None:
        return _bad(decoded, f"ELAsTiCC alert of diaObject {object_id} without an alertId")
    label = _label(decoded.schema_name, record, "elasticc")
    return _alert(decoded, "elasticc", f"elasticc:{object_id}", alert_id, label)
