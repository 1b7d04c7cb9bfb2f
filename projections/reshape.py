"""A replayed shaper: the stored packets shaped again into a variant's own datapoints.

A projector consuming AlertReceived events, for a replay whose job names another
shaper for a survey than the one that made the ledger's datapoints at ingest. For every
readable alert of such a survey, in log order, the packet's stored bytes are decoded
again and shaped by the job's shaper; each datapoint is appended with the shaper's tag
(``DatapointAdded.shaper``) and the alert as its cause. The job's T1 reads only those
datapoints for the survey (``projections.stocks.Shaping``): the variant's states never
take in ingest's datapoints, and no other job's take in these.

An alert ingest could not shape (recorded with an error) is not shaped again here: it
has no stock to follow, so no decision was made on it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence

from skyledger.ledger import (
    AlertReceived,
    DatapointAdded,
    Event,
    Ledger,
    ProjectionError,
    content_hash,
)
from skyledger.ledger.codec import StoredRow, encode
from skyledger.projections.identity import tracking_name, unit_identity
from skyledger.projections.projector import Projector
from skyledger.projections.stocks import Shaping
from skyledger.projections.t0 import stored_schema
from skyledger.units import Alert, Shaper, survey_of
from skyledger.units.sources import iter_blob

__all__ = ["Reshape", "shaper_tag"]


def shaper_tag(shaper: Shaper) -> str:
    """Return the tag of a shaper's datapoints: a hash of its identity (name, version,
    code digest, configuration)."""
    return content_hash("shaper", unit_identity(shaper))[:16]


class Reshape(Projector):
    """Shapes the stored packets again with a replay's own shapers (module doc)."""

    topics = (AlertReceived,)

    def __init__(
        self,
        ledger: Ledger,
        shapers: Mapping[str, Shaper],
        shaping: Shaping,
        run_id: str,
        batch_size: int = 500,
    ) -> None:
        self.ledger = ledger
        tags = dict(shaping.tags)
        self.shapers = {survey: s for survey, s in shapers.items() if survey in tags}
        self.shaping = shaping
        self.run_id = run_id
        self.batch_size = batch_size
        identities = {survey: unit_identity(s) for survey, s in sorted(self.shapers.items())}
        self.name = tracking_name("t0-reshape", shaping.as_json(), identities)
        self.counts: Counter[str] = Counter()  # alerts shaped, datapoints, failures
        self.failures: list[str] = []  # where, and why (the first hundred)

    def process(self, events: Sequence[Event], bound: int) -> list[StoredRow]:
        """Return the datapoints the job's shapers make of the batch's alerts."""
        rows: list[StoredRow] = []
        for alert in events:
            if not isinstance(alert, AlertReceived) or alert.error is not None:
                continue
            tag = self.shaping.tag_of(alert.stream)
            shaper = self.shapers.get(survey_of(alert.stream))
            if tag is None or shaper is None:
                continue
            packet = self._packet(alert)
            try:
                points = shaper.shape(packet)
            except Exception as exc:  # recorded in the summary; the stream goes on
                self.counts["failed"] += 1
                if len(self.failures) < 100:
                    self.failures.append(f"{alert.locator}: {type(exc).__name__}: {exc}")
                continue
            self.counts["alerts"] += 1
            self.counts["datapoints"] += len(points)
            for point in points:
                rows.append(encode(DatapointAdded(
                    stream=point.stock, datapoint_id=point.id, kind=point.kind,
                    body=point.body, shaper=tag, causation=(alert.id,), run_id=self.run_id,
                )))  # fmt: skip
        return rows

    def _packet(self, alert: AlertReceived) -> Alert:
        """Return the alert decoded again from its stored packet."""
        data = self.ledger.packet(alert.digest)
        if data is None:
            msg = (
                f"cannot shape alert {alert.alert_id} ({alert.locator}) again: its packet "
                f"{alert.digest} is not kept (the ledger's packets setting is 'digest')"
            )
            raise ProjectionError(msg)
        schema = stored_schema(self.ledger, alert)
        found = [a for a in iter_blob(data, alert.locator, schema) if isinstance(a, Alert)]
        if len(found) != 1 or found[0].stock != alert.stream:
            raise ProjectionError(f"the stored packet {alert.digest} no longer decodes as it did")
        return found[0]
