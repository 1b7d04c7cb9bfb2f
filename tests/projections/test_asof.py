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
from typing import Any

import pytest

import tests.runners.pipeline_units  # noqa: F401  (registers the test units)
from skyledger.ledger import Ledger
from skyledger.projections.asof import runs_as_of, stock_as_of
from skyledger.projections.changes import changes
from skyledger.projections.lineage import Lineage, lineage, resolve
from skyledger.projections.queries import RunView, StockView, event_ids_of, list_runs, stock_view
from skyledger.projections.readmodel import ReadModel, readmodel_url
from skyledger.projections.scope import Scope
from skyledger.runners.job import parse_job
from skyledger.runners.local import LocalRunner
from skyledger.units.sources import FileSource

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


def run_first(ledger: Ledger, tmp_path: Path, count: int = 12) -> tuple[str, list[Path], int]:
    """Run the job on the stock's first ``count`` alerts; return the job's text, every
    alert file and the ledger's head after."""
    files = sorted(SN.glob("*.avro"))
    text = JOB.replace("OUT", str(tmp_path / "out.txt"))
    run(ledger, text, files[:count])
    return text, files, ledger.head()


def keys(view: StockView | None) -> list[str]:
    return [r.idempotency_key for r in view.reactions] if view else []


def test_a_stock_as_of_a_position_is_what_the_ledger_showed_then(
    ledger: Ledger, tmp_path: Path
) -> None:
    text, files, middle = run_first(ledger, tmp_path)
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


def reads(ledger: Ledger, until: int | None = None) -> dict[str, Any]:
    """Return the runs, the change feed and every result's and state's lineage, now or
    (with ``until``) as of a position."""
    model = ReadModel(readmodel_url(ledger.settings.ledger))
    with model:
        model.create()
        model.catch_up(ledger)
        runs = list_runs(model) if until is None else runs_as_of(model, ledger, until)
        feed = changes(model, ledger, Scope(), 0, 10_000, until)
        ids = sorted({c["result_id"] for c in feed[0] if c["kind"] == "result"}
                     | {c["state_id"] for c in feed[0] if c["kind"] == "state"})  # fmt: skip

        def why(ident: str) -> Lineage | None:
            found = resolve(ledger, ident, lambda i: event_ids_of(model, i), until)
            return lineage(ledger, found[0], until=until) if found else None

        return {"runs": runs, "changes": feed, "lineage": {i: why(i) for i in ids}}


def test_runs_lineage_and_the_change_feed_as_of_a_position_are_what_they_were_then(
    ledger: Ledger, tmp_path: Path
) -> None:
    text, files, middle = run_first(ledger, tmp_path)
    then = reads(ledger)
    assert [r.status for r in then["runs"]] == ["ok"]
    assert {c["kind"] for c in then["changes"][0]} == {"state", "result", "reaction"}
    assert then["changes"][1] == middle
    run(ledger, text, files[12:])
    now = reads(ledger)
    assert len(now["runs"]) == 2
    assert set(now["lineage"]) > set(then["lineage"])  # new states and results since
    past = reads(ledger, middle)
    assert past == then
    later = sorted(set(now["lineage"]) - set(then["lineage"]))
    assert all(reads_one(ledger, i, middle) is None for i in later[:3])  # made later: none
    # A run still going at the position is shown as it stood: running, its events then.
    first = now["runs"][1]
    assert first.start_position is not None
    assert first.finish_position is not None
    going = runs_as_of_model(ledger, first.finish_position - 1)
    assert (going.status, going.finished, going.summary) == ("running", None, None)
    assert sum(going.counts.values()) == sum(first.counts.values()) - 1  # all but RunFinished


def reads_one(ledger: Ledger, ident: str, until: int) -> Lineage | None:
    found = resolve(ledger, ident, None, until)
    return lineage(ledger, found[0], until=until) if found else None


def runs_as_of_model(ledger: Ledger, position: int) -> RunView:
    model = ReadModel(readmodel_url(ledger.settings.ledger))
    with model:
        model.create()
        model.catch_up(ledger)
        [found] = runs_as_of(model, ledger, position)
        return found


def test_runs_and_why_as_of_on_the_command_line(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/ledger.sqlite"
    files = sorted(SN.glob("*.avro"))
    text = JOB.replace("OUT", str(tmp_path / "out.txt"))

    def cli(*args: str) -> Any:
        done = skyledger(*args, "--ledger", url, "--json", cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    with Ledger.open(url) as ledger:
        run(ledger, text, files[:5])
        middle = ledger.head()
    runs_then = cli("runs")
    result = cli("results", "--limit", "1")["items"][0]["result_id"]
    why_then = cli("why", result)
    with Ledger.open(url) as ledger:
        run(ledger, text, files[5:])
    assert len(cli("runs")) == 2
    assert cli("runs", "--as-of", str(middle)) == runs_then
    assert cli("why", result, "--as-of", str(middle)) == why_then
    newest = cli("results", "--limit", "1")["items"][0]["result_id"]
    missing = skyledger("why", newest, "--ledger", url, "--as-of", str(middle), cwd=tmp_path)
    assert missing.returncode == 2
    assert f"as of position {middle} has the id" in missing.stderr
