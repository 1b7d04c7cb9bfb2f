"""The simulator on real ZTF alerts: new ids, same content, stable bytes, paced streams."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator, Mapping
from itertools import groupby
from pathlib import Path
from typing import Any

import pytest

from skyledger.ledger.errors import ConfigError
from skyledger.runners.simulate import (
    CANDID_BASE,
    Restamper,
    SimulatedSource,
    copy_object_id,
    write_alerts,
)
from skyledger.units.alerts import Alert, Unreadable
from skyledger.units.packets.containers import read_packet
from skyledger.units.shapers.ztf import ZtfShaper
from skyledger.units.sources import iter_blob, iter_packets

ZTF_ID = re.compile(r"ZTF\d\d[a-z]{7}")


def _alerts(*paths: Path) -> list[Alert]:
    items = list(iter_packets(paths))
    assert not [item for item in items if isinstance(item, Unreadable)]
    return [item for item in items if isinstance(item, Alert)]


def _schema_text(alert: Alert) -> str:
    return read_packet(alert.packet)[0]


def _candids(payload: Mapping[str, Any]) -> list[int]:
    entries = [payload["candidate"], *(payload.get("prv_candidates") or [])]
    return [e["candid"] for e in entries if e is not None and e.get("candid") is not None]


@pytest.fixture(scope="module")
def night(shared_data: Path) -> list[Alert]:
    return _alerts(shared_data / "ztf" / "night")


@pytest.fixture(scope="module")
def lightcurve(shared_data: Path) -> list[Alert]:
    return _alerts(shared_data / "ztf" / "ZTF21abiuvdk")


@pytest.fixture(scope="module")
def night_copies(night: list[Alert]) -> dict[int, list[Alert]]:
    restamper = Restamper(night, shift_days=1.5)
    return {k: [restamper.restamp(alert, k) for alert in night] for k in range(4)}


def test_copy_zero_is_the_original(night: list[Alert]) -> None:
    restamper = Restamper(night)
    assert all(restamper.restamp(alert, 0) is alert for alert in night[:20])


def test_copies_are_new_alerts_of_new_stocks(night_copies: dict[int, list[Alert]]) -> None:
    seen_stocks: set[str] = set()
    seen_candids: set[int] = set()
    for alerts in night_copies.values():
        stocks = {alert.stock for alert in alerts}
        candids = {c for alert in alerts for c in _candids(alert.payload)}
        assert not stocks & seen_stocks
        assert not candids & seen_candids
        assert len(Counter(a.alert_id for a in alerts)) == len(alerts)
        seen_stocks |= stocks
        seen_candids |= candids
        assert all(0 < c < 2**63 for c in candids)
        assert all(ZTF_ID.fullmatch(alert.stock) for alert in alerts)
        originals = night_copies[0]
        assert [a.stock[:5] for a in alerts] == [a.stock[:5] for a in originals]  # year kept
        same_stock = {(o.stock, a.stock) for o, a in zip(originals, alerts, strict=True)}
        assert len(same_stock) == len(stocks) == len({o.stock for o in originals})
    assert len({a.digest for alerts in night_copies.values() for a in alerts}) == 4 * 699


def test_history_is_new_to_the_ledger(night_copies: dict[int, list[Alert]]) -> None:
    shaper = ZtfShaper()
    ids = [{p.id for a in night_copies[k] for p in shaper.shape(a)} for k in range(3)]
    assert len(ids[0]) == len(ids[1]) == len(ids[2])
    assert not ids[0] & ids[1]
    assert not ids[0] & ids[2]
    assert not ids[1] & ids[2]


def test_packets_decode_to_the_restamped_payload(night_copies: dict[int, list[Alert]]) -> None:
    for copy in night_copies[2]:
        (back,) = iter_blob(copy.packet, copy.locator)
        assert isinstance(back, Alert)
        assert back.payload == copy.payload
        assert (back.stock, back.alert_id, back.digest) == (copy.stock, copy.alert_id, copy.digest)
        assert back.schema == copy.schema


def test_history_kept_and_times_shifted(night_copies: dict[int, list[Alert]]) -> None:
    for original, copy in zip(night_copies[0], night_copies[3], strict=True):
        before, after = original.payload, copy.payload
        assert len(after["prv_candidates"] or []) == len(before["prv_candidates"] or [])
        assert after["candidate"]["jd"] == pytest.approx(before["candidate"]["jd"] + 4.5)
        assert after["candidate"]["jdstarthist"] == pytest.approx(
            before["candidate"]["jdstarthist"] + 4.5
        )
        pairs = zip(before["prv_candidates"] or [], after["prv_candidates"] or [], strict=True)
        for old, new in pairs:
            assert new["jd"] == pytest.approx(old["jd"] + 4.5)
            assert (new["candid"] is None) == (old["candid"] is None)
            assert new["magpsf"] == old["magpsf"]
        assert after["candidate"]["magpsf"] == before["candidate"]["magpsf"]


def test_copies_move_across_the_sky_with_a_step(night: list[Alert]) -> None:
    step = 137.50776405003785
    restamper = Restamper(night, sky_step_deg=step)
    moved_entries = 0
    for original in night:
        copy = restamper.restamp(original, 3)
        (back,) = iter_blob(copy.packet, copy.locator)
        assert isinstance(back, Alert)
        assert back.payload == copy.payload  # the packet carries the new positions
        before, after = original.payload, copy.payload
        turn = (3 * step) % 360.0
        assert after["candidate"]["ra"] == pytest.approx((before["candidate"]["ra"] + turn) % 360)
        assert after["candidate"]["dec"] == before["candidate"]["dec"]
        pairs = zip(before["prv_candidates"] or [], after["prv_candidates"] or [], strict=True)
        for old, new in pairs:
            if old.get("ra") is None:
                assert new.get("ra") is None
                continue
            moved_entries += 1
            assert new["ra"] == pytest.approx((old["ra"] + turn) % 360)
            assert new["dec"] == old["dec"]
    assert moved_entries > 100  # detections in the histories moved with their alert
    same = Restamper(night).restamp(night[0], 3).payload["candidate"]["ra"]
    assert same == night[0].payload["candidate"]["ra"]  # no step: the original's place


def test_digests_do_not_depend_on_run_or_order(night: list[Alert]) -> None:
    one, two = Restamper(night), Restamper(list(reversed(night)))
    sample = night[::50]
    assert [one.restamp(a, 7).digest for a in sample] == [two.restamp(a, 7).digest for a in sample]
    assert [one.restamp(a, 7).packet for a in sample] == [two.restamp(a, 7).packet for a in sample]


def test_a_light_curve_stays_one_stock_with_shared_history(lightcurve: list[Alert]) -> None:
    restamper = Restamper(lightcurve, cutouts=False)
    copies = [restamper.restamp(alert, 5) for alert in lightcurve]
    assert {copy.stock for copy in copies} == {copy_object_id("ZTF21abiuvdk", 4)}
    mapping: dict[int, int] = {}
    for original, copy in zip(lightcurve, copies, strict=True):
        for old, new in zip(_candids(original.payload), _candids(copy.payload), strict=True):
            assert mapping.setdefault(old, new) == new
        assert copy.payload["cutoutScience"] is None
        (back,) = iter_blob(copy.packet, "copy")
        assert isinstance(back, Alert)
        assert back.payload == copy.payload
    assert len(set(mapping.values())) == len(mapping)
    assert min(mapping.values()) >= CANDID_BASE


def test_object_ids_and_limits() -> None:
    assert copy_object_id("ZTF21abiuvdk", 0) == "ZTF21baaaaaa"
    assert copy_object_id("ZTF18aaaaaaa", 27) == "ZTF18baaaabb"
    assert copy_object_id("ZTF18aaaaaaa", 25 * 26**6 - 1) == "ZTF18zzzzzzz"
    with pytest.raises(ValueError, match="outside"):
        copy_object_id("ZTF18aaaaaaa", 25 * 26**6)


def test_refuses_what_it_cannot_copy(shared_data: Path, lightcurve: list[Alert]) -> None:
    restamper = Restamper(lightcurve)
    with pytest.raises(ValueError, match="outside"):
        restamper.restamp(lightcurve[0], restamper.max_copy + 1)
    with pytest.raises(ValueError, match="not one of the originals"):
        Restamper(lightcurve[:1]).restamp(_alerts(shared_data / "ztf" / "samples")[0], 1)
    lsst = _alerts(shared_data / "lsst" / "real")
    with pytest.raises(ValueError, match="only ZTF alerts"):
        Restamper(lsst)
    copied = Restamper(lightcurve).restamp(lightcurve[0], 1)
    with pytest.raises(ValueError, match="starting with 'a'"):
        Restamper([copied])
    source = SimulatedSource({"paths": [str(shared_data / "lsst" / "real")], "copies": 2})
    with pytest.raises(ConfigError, match="only ZTF alerts"):
        next(source.packets())
    single = SimulatedSource({"paths": [str(shared_data / "lsst" / "real")]})
    assert len(list(single.packets())) == 7


@pytest.mark.parametrize("bad", [{"copies": 0}, {"rate": 0}, {"shift_days": float("inf")}])
def test_config_is_checked(bad: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        SimulatedSource({"paths": ["x"], **bad})


def test_source_order_and_unreadables_once(
    shared_data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    paths = [shared_data / "ztf" / "ZTF21abiuvdk", shared_data / "ztf" / "malformed"]
    reads: list[object] = []

    def counting(items: Any) -> Iterator[Alert | Unreadable]:
        reads.append(items)
        return iter_packets(items)

    monkeypatch.setattr("skyledger.runners.simulate.iter_packets", counting)
    source = SimulatedSource({"paths": [str(p) for p in paths], "copies": 3})
    items = list(source.packets())
    bad = [item for item in items if isinstance(item, Unreadable)]
    alerts = [item for item in items if isinstance(item, Alert)]
    assert len(bad) == 5
    assert len(alerts) == 3 * 34
    assert all(isinstance(item, Alert) for item in items[len(bad) + 34 :])
    assert [a.locator for a in alerts[34:68]] == [f"{a.locator}@copy1" for a in alerts[:34]]
    assert len({a.stock for a in alerts}) == 3
    again = [item.digest for item in source.packets()]
    assert again == [item.digest for item in items]
    assert len(reads) == 1


class FakeClock:
    """A monotonic clock that moves ``step`` seconds per reading and by every sleep."""

    def __init__(self, step: float) -> None:
        self.now, self.step = 1000.0, step
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        self.now += self.step
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.mark.parametrize(("step", "expected"), [(0.0, 0.1), (0.04, 0.06), (0.3, None)])
def test_rate_paces_with_the_clock(shared_data: Path, step: float, expected: float | None) -> None:
    clock = FakeClock(step)
    config = {"paths": [str(shared_data / "ztf" / "ZTF21abiuvdk")], "copies": 2, "rate": 10.0}
    source = SimulatedSource(config, clock=clock, sleep=clock.sleep)
    assert len(list(source.packets())) == 68
    if expected is None:
        assert clock.sleeps == []
    else:
        assert clock.sleeps == pytest.approx([expected] * 67)


def test_write_alerts_reads_back_the_same_packets_in_the_same_order(
    tmp_path: Path, night_copies: dict[int, list[Alert]], lightcurve: list[Alert]
) -> None:
    # The lightcurve's packets are files of their own (their writers' codecs and sync
    # markers): each is written as it is. The copies are in skyledger's own form: runs of
    # one writer schema share a file, a new one starting when the schema changes.
    alerts = [*lightcurve, *night_copies[1], *night_copies[0][:3]]
    files = write_alerts(alerts, tmp_path / "out", per_file=200)
    assert files == sorted(files)
    runs = [len(list(g)) for _, g in groupby(alerts[len(lightcurve) :], key=_schema_text)]
    assert len(files) == len(lightcurve) + sum(-(-n // 200) for n in runs)
    back = _alerts(tmp_path / "out")
    assert [a.packet for a in back] == [a.packet for a in alerts]
    assert [a.digest for a in back] == [a.digest for a in alerts]
    with pytest.raises(ValueError, match=f"already holds {len(files)} packet files"):
        write_alerts(alerts, tmp_path / "out")


def test_write_alerts_deflate_keeps_order(tmp_path: Path, lightcurve: list[Alert]) -> None:
    copies = [Restamper(lightcurve).restamp(alert, 1) for alert in lightcurve]
    files = write_alerts(copies, tmp_path, per_file=10, codec="deflate")
    assert [p.name for p in files] == [f"{n:06d}-ztf-3.3.avro" for n in range(4)]
    assert [a.packet for a in _alerts(tmp_path)] == [a.packet for a in copies]


def test_every_ztf_schema_version_restamps(shared_data: Path) -> None:
    samples = _alerts(shared_data / "ztf" / "samples")
    assert len({a.schema for a in samples}) == 5
    restamper = Restamper(samples, shift_days=-2.0, cutouts=False)
    for alert in samples:
        copy = restamper.restamp(alert, 2)
        (back,) = iter_blob(copy.packet, copy.locator)
        assert isinstance(back, Alert)
        assert back.payload == copy.payload
        assert copy.payload["cutoutDifference"] is None
        assert copy.payload["candidate"]["jd"] == alert.payload["candidate"]["jd"] - 4.0
        if alert.payload["cutoutDifference"] is not None:
            assert len(copy.packet) < len(alert.packet) - 1000
