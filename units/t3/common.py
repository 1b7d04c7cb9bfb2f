"""What the built-in reactors share: result look-ups, idempotency keys, atomic writes.

Photometry rows and their summary are in :mod:`units.photometry`.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from skyledger.ledger.canonical import content_hash
from skyledger.units.photometry import number
from skyledger.units.views import StockSummary

__all__ = ["reaction_key", "result_value", "write_atomic"]


def result_value(stock: StockSummary, key: str) -> float | None:
    """Return the number at ``UNIT.field[.field...]`` in a stock's results, or None."""
    unit, _, path = key.partition(".")
    value: Any = stock.results.get(unit)
    for part in path.split(".") if path else ():
        value = value.get(part) if isinstance(value, Mapping) else None
    return number(value)


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
