"""Simulated streams: real ZTF alerts replayed as copies that are new alerts of new stocks.

Copy 0 of an alert is the alert itself. Copy ``k > 0`` is re-stamped by a
:class:`Restamper` built from the whole set of originals:

* **objectId**: ``"ZTF" + YY + 7 letters``, the year ``YY`` kept from the original. The
  letters spell ``26**6 + (k - 1) * S + i`` in base 26 (``a`` = 0), where ``S`` is the
  number of distinct original objectIds and ``i`` the rank of the original's among them
  (sorted). Real ZTF ids start with ``a`` (fewer than 26**6 objects a year; the
  originals are checked), copies start with ``b`` to ``z``: no copy meets an original
  or another copy. Every alert of one original stock goes to the same copy stock.
* **candid** (``candidate``, every ``prv_candidates`` entry that has one, and the
  top-level ``candid``): ``2**62 + (k - 1) * J + j``, where ``J`` is the number of
  distinct candids in the originals and ``j`` the rank of the original candid. Real
  candids are checked to lie below ``2**62`` (the largest in ``ztf/night`` is about
  ``3.2e18``); copies stay below ``2**63``. A candid shared by two originals (a
  detection seen again in a later alert's history) stays shared in every copy.
  ``candid + k * 10**13`` is not collision-free: ``ztf/night`` holds a pair of real
  candids exactly ``k * 10**13`` apart for a ``k`` below 150.
* **times**: every Julian date (``jd`` of the candidate and of every ``prv_candidates``
  and ``fp_hists`` entry; ``jdstarthist``, ``jdendhist``, ``jdstartref``,
  ``jdendref``) moves by ``k * shift_days``, so all intervals are kept.
* **sky**: with ``sky_step_deg``, copy ``k`` is moved ``k * sky_step_deg`` degrees in
  right ascension (``ra`` of the candidate and of every ``prv_candidates`` entry, modulo
  360), so that many copies are many positions on the sky, each keeping its
  declination and its detections' scatter (a step near the golden angle, 137.5 degrees,
  spreads them evenly); without it copies share their original's position.
* **cutouts**: kept, or written as null with ``cutouts=False``.

Ids depend on the set of originals, not on their order. The packet of a copy is a
single-record container with the original's writer schema text, codec ``null`` and the
fixed sync marker (as :mod:`units.packets.decode` repacks records), so its digest is the
same in every run. It is made by splicing the new values into the original record's bytes
(:mod:`units.packets.splice`): about 30 times faster than encoding the payload with
fastavro (``bench/simulate_rate.py``).

:func:`write_alerts` writes a stream (copies or not) as container files
(``skyledger simulate``). The simulator is a tool, not a science unit: it paces with a
clock and writes files, so it lives with the runners; :class:`SimulatedSource` is still a
:class:`~units.contracts.Source`, found by a job through its entry point.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from string import ascii_lowercase
from typing import Any, ClassVar

from pydantic import BaseModel, Field

from skyledger.ledger.canonical import digest_bytes
from skyledger.ledger.errors import ConfigError
from skyledger.units.alerts import Alert, Unreadable
from skyledger.units.base import UnitConfig
from skyledger.units.contracts import Source
from skyledger.units.packets.containers import (
    Codec,
    container,
    make_header,
    read_packet,
    single_record_packet,
)
from skyledger.units.packets.splice import Plan, Spec, Template, compile_plan
from skyledger.units.sources import PACKET_SUFFIXES, iter_packets

__all__ = ["CANDID_BASE", "Restamper", "SimulatedSource", "copy_object_id", "write_alerts"]

CANDID_BASE = 2**62
"""Copies' candids start here; every real candid must lie below."""
_SPAN = 26**6  # ZTF ids of one year whose letters start with "a"
_COPY_IDS = 25 * _SPAN  # letters "baaaaaa" to "zzzzzzz"
_JD_FIELDS = ("jd", "jdstarthist", "jdendhist", "jdstartref", "jdendref")
_CUTOUTS = frozenset({"cutoutScience", "cutoutTemplate", "cutoutDifference"})
_MAX_FILES = 10**6  # write_alerts numbers files with 6 digits, so that they sort


def copy_object_id(original: str, number: int) -> str:
    """Return ``original``'s year with the letters of ``26**6 + number`` (a copy's id)."""
    if not 0 <= number < _COPY_IDS:
        raise ValueError(f"copy number {number} outside 0..{_COPY_IDS - 1}")
    value, letters = _SPAN + number, []
    for _ in range(7):
        value, digit = divmod(value, 26)
        letters.append(ascii_lowercase[digit])
    return original[:5] + "".join(reversed(letters))


def _is_real_ztf_id(object_id: str) -> bool:
    return (
        len(object_id) == 12
        and object_id.startswith("ZTF")
        and object_id[3:5].isdigit()
        and object_id[5] == "a"
        and all(c in ascii_lowercase for c in object_id[6:])
    )


def _candids(payload: Mapping[str, Any]) -> Iterator[int]:
    yield payload["candidate"]["candid"]
    if payload.get("candid") is not None:
        yield payload["candid"]
    for entry in payload.get("prv_candidates") or ():
        if entry is not None and entry.get("candid") is not None:
            yield entry["candid"]


class Restamper:
    """Makes copies of a fixed set of ZTF alerts (the scheme is in the module docstring)."""

    def __init__(
        self,
        originals: Iterable[Alert],
        *,
        shift_days: float = 0.0,
        cutouts: bool = True,
        sky_step_deg: float = 0.0,
    ) -> None:
        stocks: set[str] = set()
        candids: set[int] = set()
        for alert in originals:
            if alert.survey != "ztf":
                msg = f"only ZTF alerts can be re-stamped; {alert.locator} is {alert.survey}"
                raise ValueError(msg)
            if not _is_real_ztf_id(alert.stock):
                msg = (
                    f"objectId {alert.stock!r} ({alert.locator}) is not 'ZTF' + year + 7 "
                    "letters starting with 'a': copies could collide with it"
                )
                raise ValueError(msg)
            for candid in _candids(alert.payload):
                if not 0 < candid < CANDID_BASE:
                    msg = f"candid {candid} ({alert.locator}) is outside 1..2**62-1"
                    raise ValueError(msg)
                candids.add(candid)
            stocks.add(alert.stock)
        self._stocks = {stock: i for i, stock in enumerate(sorted(stocks))}
        self._candids = {candid: j for j, candid in enumerate(sorted(candids))}
        self._shift = shift_days
        self._sky = sky_step_deg
        self.max_copy = min(_COPY_IDS // max(len(stocks), 1), CANDID_BASE // max(len(candids), 1))
        """The largest copy number whose ids are still in range."""
        times = frozenset(_JD_FIELDS if shift_days else ())
        moved = frozenset({"ra"} if sky_step_deg else ())
        children = {
            "candidate": Spec(times | moved | {"candid"}),
            "prv_candidates": Spec(frozenset({"candid"}) | (times & {"jd"}) | moved),
        }
        if shift_days:
            children["fp_hists"] = Spec(frozenset({"jd"}))
        self._spec = Spec(
            frozenset({"objectId", "candid"}), frozenset() if cutouts else _CUTOUTS, children
        )
        self._cutouts = cutouts
        self._plans: dict[str, Plan] = {}
        self._templates: dict[str, tuple[bytes, Template]] = {}

    def restamp(self, alert: Alert, copy: int) -> Alert:
        """Return copy ``copy`` of ``alert`` (one of the originals); copy 0 is ``alert``."""
        if copy == 0:
            return alert
        if not 0 < copy <= self.max_copy:
            raise ValueError(f"copy {copy} outside 0..{self.max_copy}")
        index = self._stocks.get(alert.stock)
        if index is None:
            raise ValueError(f"{alert.locator} ({alert.stock}) is not one of the originals")
        object_id = copy_object_id(alert.stock, (copy - 1) * len(self._stocks) + index)
        try:
            payload = self._payload(alert.payload, object_id, copy)
        except KeyError as exc:
            raise ValueError(f"{alert.locator}: candid {exc} is not in the originals") from None
        header, template = self._template(alert)
        packet = single_record_packet(header, template.fill(payload))
        return Alert(
            stock=object_id,
            survey="ztf",
            alert_id=str(payload["candidate"]["candid"]),
            digest=digest_bytes(packet),
            locator=f"{alert.locator}@copy{copy}",
            schema=alert.schema,
            payload=payload,
            packet=packet,
        )

    def _payload(self, original: Mapping[str, Any], object_id: str, copy: int) -> dict[str, Any]:
        """Return the re-stamped payload: shallow copies of the records that change."""
        offset, candids = CANDID_BASE + (copy - 1) * len(self._candids), self._candids
        shift = copy * self._shift
        payload = dict(original)
        payload["objectId"] = object_id
        if payload.get("candid") is not None:
            payload["candid"] = offset + candids[payload["candid"]]
        candidate = payload["candidate"] = dict(original["candidate"])
        candidate["candid"] = offset + candids[candidate["candid"]]
        if shift:
            for key in _JD_FIELDS:
                if candidate.get(key) is not None:
                    candidate[key] += shift
        turn = (copy * self._sky) % 360.0
        if turn and candidate.get("ra") is not None:
            candidate["ra"] = (candidate["ra"] + turn) % 360.0
        for name, has_candid in (("prv_candidates", True), ("fp_hists", False)):
            entries = original.get(name)
            if entries and (has_candid or shift):
                payload[name] = [
                    None if entry is None else self._entry(entry, offset, shift,
                                                           turn if has_candid else 0.0)
                    for entry in entries
                ]  # fmt: skip
        if not self._cutouts:
            payload.update(dict.fromkeys(_CUTOUTS & payload.keys()))
        return payload

    def _entry(
        self, entry: Mapping[str, Any], offset: int, shift: float, turn: float
    ) -> dict[str, Any]:
        copied = dict(entry)
        if copied.get("candid") is not None:
            copied["candid"] = offset + self._candids[copied["candid"]]
        if shift and copied.get("jd") is not None:
            copied["jd"] += shift
        if turn and copied.get("ra") is not None:
            copied["ra"] = (copied["ra"] + turn) % 360.0
        return copied

    def _template(self, alert: Alert) -> tuple[bytes, Template]:
        found = self._templates.get(alert.digest)
        if found is None:
            schema_text, record = read_packet(alert.packet)
            plan = self._plans.get(schema_text)
            if plan is None:
                plan = self._plans[schema_text] = compile_plan(schema_text, self._spec)
            found = self._templates[alert.digest] = (make_header(schema_text), plan.cut(record))
        return found


class SimulatedSource(Source):
    """Real alerts replayed ``copies`` times as new alerts of new stocks, optionally paced.

    Order: every original packet as read (copy 0, Unreadables included), then copy 1 of
    every readable alert in the same order, then copy 2, and so on. The originals are
    decoded once and kept in memory. Only ZTF alerts can be copied: with ``copies > 1``
    any other survey's alert is a ConfigError, raised before anything is yielded.
    """

    version: ClassVar[str] = "1.0"

    class Config(UnitConfig):
        """The real packets to replay, how often and how fast."""

        paths: list[str] = Field(
            description="Files, directories or tar archives of real alerts (as FileSource)."
        )
        copies: int = Field(
            1, ge=1, description="Times each alert is replayed: alerts = readable x copies."
        )
        rate: float | None = Field(
            None, gt=0, description="Alerts per second to pace the stream; None: no pacing."
        )
        shift_days: float = Field(
            0.0, allow_inf_nan=False, description="Days copy k is moved by, times k."
        )
        cutouts: bool = Field(True, description="Keep image cutouts in copies (else null).")
        sky_step_deg: float = Field(
            0.0, ge=0.0, lt=360.0, allow_inf_nan=False,
            description="Degrees of right ascension copy k is moved by, times k (0: kept).",
        )  # fmt: skip

    config: SimulatedSource.Config

    def __init__(
        self,
        config: BaseModel | Mapping[str, Any] | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        super().__init__(config)
        self._clock, self._sleep = clock, sleep
        self._originals: list[Alert | Unreadable] | None = None
        self._restamper: Restamper | None = None

    def packets(self) -> Iterator[Alert | Unreadable]:
        """Yield the originals, then each further copy of them, paced to ``rate``."""
        stream = self._stream()
        return stream if self.config.rate is None else self._paced(stream, self.config.rate)

    def _stream(self) -> Iterator[Alert | Unreadable]:
        if self._originals is None:
            self._originals = list(iter_packets(self.config.paths))
        alerts = [item for item in self._originals if isinstance(item, Alert)]
        restamper = self._restamper
        if restamper is None and self.config.copies > 1:
            try:
                restamper = Restamper(
                    alerts, shift_days=self.config.shift_days, cutouts=self.config.cutouts,
                    sky_step_deg=self.config.sky_step_deg,
                )  # fmt: skip
            except ValueError as exc:
                raise ConfigError(f"unit {self.name!r}: {exc}") from None
            if self.config.copies - 1 > restamper.max_copy:
                msg = f"unit {self.name!r}: copies: at most {restamper.max_copy + 1} for this input"
                raise ConfigError(msg)
            self._restamper = restamper
        yield from self._originals
        if restamper is None:
            return
        for copy in range(1, self.config.copies):
            for alert in alerts:
                yield restamper.restamp(alert, copy)

    def _paced(
        self, items: Iterator[Alert | Unreadable], rate: float
    ) -> Iterator[Alert | Unreadable]:
        """Yield ``items``, the n-th alert not before ``n / rate`` seconds after the first."""
        start: float | None = None
        count = 0
        for item in items:
            if isinstance(item, Alert):
                now = self._clock()
                if start is None:
                    start = now
                due = start + count / rate
                if due > now:
                    self._sleep(due - now)
                count += 1
            yield item


def write_alerts(
    alerts: Iterable[Alert], out_dir: Path, per_file: int = 1000, *, codec: Codec = "null"
) -> list[Path]:
    """Write ``alerts`` as container files in ``out_dir`` (new or empty); return the files.

    :func:`~units.sources.iter_packets` over ``out_dir`` reads back the same packets, byte
    for byte, in the same order (so a run over the folder makes the same ids as a run over
    the stream). Files are named ``<number>-<schema label>.avro`` and their names sort in
    stream order. A packet in skyledger's own single-record form (as
    :mod:`units.packets.decode` repacks records and a :class:`Restamper` makes copies) is
    joined to a run of such packets of the same writer schema: a new file starts when the
    schema changes or after ``per_file`` records, and each record is read back repacked
    as it was. Any other packet (an original that was a file of its own, with its own
    codec or sync marker) is written as it is, as a file of its own, which reads back as
    that packet; so is a run of one record. ValueError for a packet that is not an Avro
    container.
    """
    if per_file < 1:
        raise ValueError(f"per_file must be at least 1, got {per_file}")
    out_dir.mkdir(parents=True, exist_ok=True)
    existing = sorted(p.name for p in out_dir.iterdir() if p.name.lower().endswith(PACKET_SUFFIXES))
    if existing:
        msg = f"{out_dir} already holds {len(existing)} packet files ({existing[0]}, ...)"
        raise ValueError(msg)
    written: list[Path] = []
    run: list[Alert] = []  # consecutive packets in skyledger's form, of one writer schema
    run_schema = ""
    headers: dict[str, bytes] = {}

    def write(label: str, data: bytes) -> None:
        if len(written) >= _MAX_FILES:
            raise ValueError(f"more than {_MAX_FILES} files: give a larger per_file")
        path = out_dir / f"{len(written):06d}-{label}.avro"
        path.write_bytes(data)
        written.append(path)

    def flush() -> None:
        if len(run) == 1:  # a container of one record is read back as the file itself
            write(run[0].schema, run[0].packet)
        elif run:
            records = [read_packet(alert.packet)[1] for alert in run]
            write(run[0].schema, container(run_schema, records, codec))
        run.clear()

    for alert in alerts:
        try:
            schema_text, record = read_packet(alert.packet)
        except (ValueError, IndexError) as exc:
            raise ValueError(f"{alert.locator}: {exc}") from None
        header = headers.get(schema_text)
        if header is None:
            header = headers[schema_text] = make_header(schema_text)
        if single_record_packet(header, record) != alert.packet:  # its own bytes: as is
            flush()
            write(alert.schema, alert.packet)
            continue
        if schema_text != run_schema or len(run) >= per_file:
            flush()
            run_schema = schema_text
        run.append(alert)
    flush()
    return written
