"""Who computed what: provenance records of units, and names that follow from them.

A unit's identity is its name, version, the digest of its code and the hash of its full
configuration. Provenance adds the measured duration. Tracking names are hashes of the
identities of a projector's units and of the projectors upstream of it, so a change to
any of them (a new version, an edited module, another option) starts a new position,
and nothing else does (not the sources, not the job's file).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from skyledger.ledger import Provenance, content_hash
from skyledger.units import Unit

__all__ = ["ACCEPT_ALL", "provenance", "tracking_name", "unit_identity"]

ACCEPT_ALL = Provenance(unit="(no filter)", unit_version="-", unit_digest="-", config="-")
"""The provenance of a channel without a filter: it accepts every alert."""


def provenance(unit: Unit, duration_s: float = 0.0) -> Provenance:
    """Return the provenance record of a unit instance."""
    return Provenance(
        unit=unit.name,
        unit_version=unit.version,
        unit_digest=unit.digest(),
        config=unit.config_hash,
        duration_s=round(duration_s, 6),
    )


def unit_identity(unit: Unit | None) -> dict[str, str]:
    """Return what identifies a unit's computation (ACCEPT_ALL's for None)."""
    return (ACCEPT_ALL if unit is None else provenance(unit)).identity()


def tracking_name(tier: str, *parts: Any, upstream: Iterable[str] = ()) -> str:
    """Return ``tier:<hash>``: the hash of ``parts`` (unit identities and options) and of
    the upstream projectors' names."""
    digest = content_hash("tracking", {"parts": list(parts), "upstream": sorted(upstream)})
    return f"{tier}:{digest[:16]}"
