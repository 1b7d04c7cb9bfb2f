"""Helpers shared by the shapers: cleaning bodies, magnitudes and fluxes, ids.

Fluxes are in nJy and magnitudes AB with the zero point 31.4 (``m = 31.4 - 2.5 log10 f``);
the magnitude error is ``2.5 / ln 10 * ferr / f`` (about ``1.0857 * ferr / f``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from math import isfinite
from typing import Any

import orjson

from ledger.ids import datapoint_id
from units.alerts import DatapointKind

__all__ = [
    "MAG_PER_LN",
    "MJD_TO_JD",
    "ZERO_POINT_NJY",
    "clean",
    "content_id",
    "first",
    "flux_from_mag",
    "mag_from_flux",
    "number",
    "records",
    "with_normalised",
]

ZERO_POINT_NJY = 31.4
MAG_PER_LN = 2.5 / math.log(10)
MJD_TO_JD = 2400000.5

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


def number(value: Any) -> float | None:
    """Return ``value`` as a finite float, or None (for None, NaN, bools and non-numbers)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    result = float(value)
    return result if math.isfinite(result) else None


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


def mag_from_flux(flux: Any, fluxerr: Any) -> tuple[float | None, float | None]:
    """Return (mag, magerr) for a flux in nJy; (None, None) when the flux is not positive."""
    f = number(flux)
    if f is None or f <= 0:
        return None, None
    ferr = number(fluxerr)
    magerr = None if ferr is None else MAG_PER_LN * ferr / f
    return ZERO_POINT_NJY - 2.5 * math.log10(f), magerr


def flux_from_mag(
    mag: Any, magerr: Any, *, negative: bool = False
) -> tuple[float | None, float | None]:
    """Return (flux, fluxerr) in nJy for an AB magnitude; negative for a negative difference."""
    m = number(mag)
    if m is None:
        return None, None
    flux = 10 ** (-0.4 * (m - ZERO_POINT_NJY))
    merr = number(magerr)
    fluxerr = None if merr is None else flux * merr / MAG_PER_LN
    return (-flux if negative else flux), fluxerr


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
