"""Retry policy for units that raise (T2) and reactions that fail to deliver (T3)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Retry"]


@dataclass(frozen=True)
class Retry:
    """``max_attempts`` in all, waiting ``backoff_s * factor**(n-1)`` after attempt n.

    ``lease_s``: how long a delivery attempt claimed by another process may go without
    an outcome before it is taken to have died with that process and tried again.
    """

    max_attempts: int = 3
    backoff_s: float = 0.5
    factor: float = 2.0
    lease_s: float = 10.0

    def wait_after(self, attempt: int) -> float | None:
        """Return the wait before the next attempt, or None when no attempt is left."""
        if attempt >= self.max_attempts:
            return None
        return self.backoff_s * self.factor ** (attempt - 1)
