"""What a caller may see: the channels whose stocks, results and reactions it reads.

Every query of the query layer takes a :class:`Scope`. The default, every channel, is
the operator's on the ledger's own machine; the HTTP API gives each caller the scope of
its credential.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

from skyledger.ledger.errors import NotFound

__all__ = ["NOT_A_PROGRAMME", "Scope", "programme_of"]

NOT_A_PROGRAMME = -1
"""The programme recorded for a ``programid`` that is not a whole number (no caller's)."""


def programme_of(body: dict[str, Any]) -> int | None:
    """Return the survey programme (ZTF ``programid``) a datapoint's body names; None if
    it names none (other surveys: everyone's data)."""
    found = body.get("programid")
    if found is None:
        return None
    return found if type(found) is int else NOT_A_PROGRAMME


class Scope(BaseModel):
    """The channels a caller may see (``channels`` None: every channel, and stocks that no
    channel follows)."""

    model_config = ConfigDict(frozen=True)

    channels: frozenset[str] | None = None
    programids: frozenset[int] | None = None
    """The ZTF programmes whose datapoints it may see (None: all; 1 is public data)."""

    def may_see(self, body: dict[str, Any]) -> bool:
        """Return True if a datapoint's body is of a programme the caller has rights to."""
        programid = programme_of(body)
        return self.programids is None or programid is None or programid in self.programids

    def allows(self, channel: str) -> bool:
        """Return True if the caller may see this channel."""
        return self.channels is None or channel in self.channels

    def narrow(self, channel: str | None) -> frozenset[str] | None:
        """Return the channels a query asking for ``channel`` (None: any) reads; None
        means every channel. A channel the caller may not see is refused as unknown."""
        if channel is None:
            return self.channels
        if not self.allows(channel):
            raise NotFound(f"no channel {channel!r}")
        return frozenset({channel})
