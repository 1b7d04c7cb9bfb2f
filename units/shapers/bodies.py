"""What the shapers share: survey fields read, datapoint bodies cleaned, normalised and
identified.

A datapoint body is the survey's own fields of one measurement, cleaned to what the
ledger gives back on replay (JSON types only), plus the normalised photometry keys that
:mod:`units.photometry` describes and converts.
"""

from __future__ import annotations

from collections.abc import Mapping
from math import isfinite
from typing import Any

import orjson

from skyledger.ledger.ids import datapoint_id
from skyledger.units.alerts import DatapointKind

__all__ = ["clean", "content_id", "first", "records", "with_normalised"]

_SORTED = orjson.OPT_SORT_KEYS
_BYTES = (bytes, bytearray, memoryview)
_SCALARS = (int, str, bool, type(None))


def clean(value: Any) -> Any:
    """Return ``value`` with NaN and infinities as None and bytes (cutouts) dropped."""
    kind = type(value)
    if kind is float:
        return value if isfinite(value) else None
    if kind is dict or isinstance(value, Mapping):
        return _clean_mapping(value)
    if kind is list or kind is tuple:
        return [clean(item) for item in value if type(item) not in _BYTES]
    return value


def _clean_mapping(value: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, item in value.items():
        kind = type(item)
        if kind is float:
            out[key] = item if isfinite(item) else None
        elif kind in _SCALARS:
            out[key] = item
        elif kind not in _BYTES:
            out[key] = clean(item)
    return out


def first(entry: Mapping[str, Any], *names: str) -> Any:
    """Return the first of ``names`` that ``entry`` holds with a value other than None."""
    for name in names:
        value = entry.get(name)
        if value is not None:
            return value
    return None


def records(value: Any) -> list[Mapping[str, Any]]:
    """Return the records of a nullable array field (None and non-records give nothing)."""
    if not isinstance(value, list | tuple):
        return []
    return [item for item in value if isinstance(item, Mapping)]


def with_normalised(
    entry: Mapping[str, Any],
    *,
    jd: float | None,
    band: str | None,
    mag: float | None = None,
    magerr: float | None = None,
    flux: float | None = None,
    fluxerr: float | None = None,
    limmag: float | None = None,
) -> dict[str, Any]:
    """Return the cleaned survey fields of ``entry`` plus the normalised keys, in key order.

    The body is what the ledger will give back on replay: JSON types only (NaN and
    infinities as None, tuples as lists), keys sorted, bytes (cutouts) dropped. Most
    entries hold no bytes; they take one orjson round trip, several times faster than
    cleaning field by field in Python.
    """
    normal = {"jd": jd, "band": band, "mag": mag, "magerr": magerr, "flux": flux}
    normal.update(fluxerr=fluxerr, limmag=limmag)
    try:
        body: dict[str, Any] = orjson.loads(orjson.dumps({**entry, **normal}, option=_SORTED))
    except (TypeError, orjson.JSONEncodeError):  # bytes, non-string keys, huge integers
        body = clean(entry)
        body.update(normal)
        body = dict(sorted(body.items()))
    return body


def content_id(survey: str, kind: DatapointKind, stock: str, **keys: Any) -> str:
    """Return a datapoint id from content: the survey, kind, stock and identifying keys."""
    return datapoint_id({"survey": survey, "kind": kind, "stock": stock, **keys})
