"""Time travel on real ZTF alerts: a stock as of a position (or a time) is what the read
model showed when the ledger stood there, on both backends, and the CLI says so."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

import tests.runners.pipeline_units  # noqa: F401  (registers the test units)
from ledger import Ledger
from projections.asof import stock_as_of
from projections.queries import StockView, stock_view
from projections.readmodel import ReadModel, readmodel_url
from runners.job import parse_job
from runners.local import LocalRunner
from units.sources import FileSource

ROOT = Path(__file__).resolve().parents[2]
SN = ROOT / "examples" / "data" / "ztf" / "ZTF21abiuvdk"
STOCK = "ZTF21abiuvdk"

JOB = """
name: asof
channels: [{name: MANY, filter: {unit: MinDetections, config: {n: 3}}, autocomplete: true}]
combiner: {unit: AllPoints}
t2: [{unit: CountPoints}, {unit: TotalFromCounts}]
t3: [{unit: CollectReactor, config: {path: "OUT"}}]
"""


def run(ledger: Ledger, text: str, files: list[Path]) -> None:
    source = FileSource({"paths": [str(f) for f in files]})
    LocalRunner(parse_job(text), text, ledger, [source], read_model=False).run()


def view_now(ledger: Ledger) -> StockView | None:
    model = ReadModel(readmodel_url(ledger.settings.ledger))
    with model:
        model.create()
        model.catch_up(ledger)
        return stock_view(model, STOCK)


def keys(view: StockView | None) -> list[str]:
    return [r.idempotency_key for r in view.reactions] if view else []


def test_a_stock_as_of_a_position_is_what_the_ledger_showed_then(
    ledger: Ledger, tmp_path: Path
) -> None:
    files = sorted(SN.glob("*.avro"))
    text = JOB.replace("OUT", str(tmp_path / "out.txt"))
    run(ledger, text, files[:12])
    middle = ledger.head()
    then = view_now(ledger)
    assert then is not None
    assert then.stock.n_alerts == 12
    time.sleep(0.05)
    between = dt.datetime.now(dt.UTC)
    time.sleep(0.05)
    run(ledger, text, files[12:])
    now = view_now(ledger)
    assert now is not None
    assert now.stock.n_alerts == 34
    assert now.reactions  # the reaction of the later alerts, intended after ``middle``

    past = stock_as_of(ledger, STOCK, middle, keys(now))
    assert past == then
    assert stock_as_of(ledger, STOCK, ledger.head(), keys(now)) == now
    assert stock_as_of(ledger, STOCK, 1, keys(now)) is None  # not known yet
    # Times map to positions through the commit time of each append.
    assert ledger.position_at(between) == middle
    assert ledger.position_at(between - dt.timedelta(days=1)) == 0
    assert ledger.position_at(dt.datetime.now(dt.UTC)) == ledger.head()


def skyledger(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    script = shutil.which("skyledger", path=str(Path(sys.executable).parent))
    assert script
    return subprocess.run([script, *args], cwd=cwd, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("how", ["position", "time"])
def test_stock_as_of_on_the_command_line(tmp_path: Path, how: str) -> None:
    url = f"sqlite:///{tmp_path}/ledger.sqlite"
    files = sorted(SN.glob("*.avro"))
    text = JOB.replace("OUT", str(tmp_path / "out.txt"))
    with Ledger.open(url) as ledger:
        run(ledger, text, files[:5])
        middle = ledger.head()
        time.sleep(0.05)
        between = dt.datetime.now(dt.UTC)
        time.sleep(0.05)
        run(ledger, text, files[5:])
    as_of = str(middle) if how == "position" else between.isoformat()
    done = skyledger("stock", STOCK, "--ledger", url, "--as-of", as_of, "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    view = json.loads(done.stdout)
    assert view["stock"]["n_alerts"] == 5
    assert view["as_of"] == middle
    shown = skyledger("stock", STOCK, "--ledger", url, "--as-of", as_of, cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert f"as of position {middle}" in shown.stdout
    assert "5 alerts" in shown.stdout
    early = skyledger("stock", STOCK, "--ledger", url, "--as-of", "2001-01-01", cwd=tmp_path)
    assert early.returncode == 2
    assert "no stock 'ZTF21abiuvdk'" in early.stderr
    assert "as of position 0" in early.stderr
    bad = skyledger("stock", STOCK, "--ledger", url, "--as-of", "yesterday", cwd=tmp_path)
    assert bad.returncode == 2
    assert "--as-of" in bad.stderr
