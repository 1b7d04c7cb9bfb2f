"""What the built-in reactors share: result look-ups, photometry rows, keys, atomic writes."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ledger.canonical import content_hash
from units.shapers.photometry import number
from units.views import LightCurve, StockSummary

__all__ = ["photometry", "reaction_key", "result_value", "summary", "write_atomic"]


def result_value(stock: StockSummary, key: str) -> float | None:
    """Return the number at ``UNIT.field[.field...]`` in a stock's results, or None."""
    unit, _, path = key.partition(".")
    value: Any = stock.results.get(unit)
    for part in path.split(".") if path else ():
        value = value.get(part) if isinstance(value, Mapping) else None
    return number(value)


def photometry(curve: LightCurve) -> list[dict[str, Any]]:
    """Return the light curve as JSON rows (jd, band, kind, mag, magerr, limmag), by time."""
    rows = []
    for dp in (*curve.detections, *curve.upper_limits, *curve.forced):
        body = dp.body
        jd = number(body.get("jd"))
        if jd is None:
            continue
        rows.append(
            {
                "jd": jd,
                "band": str(body.get("band") or "?"),
                "kind": dp.kind,
                "mag": number(body.get("mag")),
                "magerr": number(body.get("magerr")),
                "limmag": number(body.get("limmag")),
            }
        )
    rows.sort(key=lambda r: (r["jd"], r["kind"], r["band"], r["mag"] or 0.0, r["limmag"] or 0.0))
    return rows


def summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Return counts, bands, first/last detection and the brightest and latest detection."""
    detections = [r for r in rows if r["kind"] == "detection" and r["mag"] is not None]
    if not detections:
        return {"ndet": 0, "bands": [], "first_jd": None, "last_jd": None}
    brightest = min(detections, key=lambda r: (r["mag"], r["jd"]))
    latest = detections[-1]
    return {
        "ndet": len(detections),
        "bands": sorted({r["band"] for r in detections}),
        "first_jd": detections[0]["jd"],
        "last_jd": latest["jd"],
        "brightest": {k: brightest[k] for k in ("jd", "band", "mag")},
        "latest": {k: latest[k] for k in ("jd", "band", "mag")},
    }


def reaction_key(reactor: str, version: str, target: str, content: Any) -> str:
    """Return the idempotency key of delivering ``content`` to ``target`` by a reactor."""
    return content_hash(
        "reaction", {"reactor": reactor, "version": version, "target": target, "content": content}
    )


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; a report is meant to be read
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
