"""The query commands as a new user meets them: stocks and results listings with their
filters and cursors, ids by prefix, output piped to a file, and the small refusals a
user met (a mistyped ledger path, a misspelt job key, a run that read nothing)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.runners.test_cli import ROOT, skyledger

PIPED = {k: v for k, v in os.environ.items() if k != "COLUMNS"}  # no width asked for


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Return a folder whose default ledger holds the demo's run."""
    folder = tmp_path_factory.mktemp("demo")
    done = skyledger("demo", "--json", cwd=folder)
    assert done.returncode == 0, done.stderr
    return folder


def as_json(*args: str, cwd: Path) -> dict:  # type: ignore[type-arg]
    done = skyledger(*args, "--json", cwd=cwd)
    assert done.returncode == 0, done.stderr
    data: dict = json.loads(done.stdout)  # type: ignore[type-arg]
    return data


def test_stocks_pages_filters_and_cone(demo: Path) -> None:
    every = as_json("stocks", "--limit", "1000", cwd=demo)
    assert every["next"] is None
    assert len(every["items"]) == 103  # the demo's stocks
    pages, cursor = [], None
    while True:
        more = ["--cursor", cursor] if cursor else []
        page = as_json("stocks", "--limit", "40", *more, cwd=demo)
        assert page["position"] == every["position"]
        pages += page["items"]
        cursor = page["next"]
        if cursor is None:
            break
    assert pages == every["items"]
    transients = as_json("stocks", "--channel", "TRANSIENTS", "--limit", "1000", cwd=demo)
    assert 0 < len(transients["items"]) < len(every["items"])
    assert all("TRANSIENTS" in s["channels"] for s in transients["items"])
    near = as_json("stocks", "--cone", "0.8143", "16.1457", "10", cwd=demo)
    assert [s["stock"] for s in near["items"]] == ["ZTF21abiuvdk"]
    table = skyledger("stocks", "--cone", "0.8143", "16.1457", "10", cwd=demo, env=PIPED)
    assert "ZTF21abiuvdk │ 0.814285 │ +16.145687" in table.stdout
    assert "1 stocks, as of position" in table.stdout
    bad = skyledger("stocks", "--cone", "0.8", "95", "10", cwd=demo)
    assert bad.returncode == 2
    assert "dec 95.0 is not in [-90, 90]" in bad.stderr


def test_results_by_value_and_ids_by_prefix(demo: Path) -> None:
    found = as_json("results", "--entry", "T2CandidateScore", "--path", "score", "--min",
                    "0.5", "--latest", "--limit", "1000", cwd=demo)  # fmt: skip
    scores = [r["value"] for r in found["items"]]
    assert scores
    assert scores == sorted(scores, reverse=True)
    assert min(scores) >= 0.5
    assert len({r["stock"] for r in found["items"]}) == len(scores)
    best = found["items"][0]["result_id"]
    why = skyledger("why", best[:12], cwd=demo)  # as the tables print it
    assert why.returncode == 0, why.stderr
    assert why.stdout.startswith(f"ResultDerived result {best[:12]}")
    several = skyledger("why", best[:1], cwd=demo)
    assert several.returncode == 2
    assert "is the start of several ids" in several.stderr
    view = as_json("stock", "ZTF21abiu", cwd=demo)
    assert view["stock"]["stock"] == "ZTF21abiuvdk"
    assert view["stock"]["ra"] == pytest.approx(0.814285, abs=1e-5)
    unknown = skyledger("failures", "--stock", "ZTF99nothing", cwd=demo)
    assert unknown.returncode == 2
    assert "no stock 'ZTF99nothing'" in unknown.stderr
    nope = skyledger("results", "--entry", "Nope", cwd=demo)
    assert "no T2 entry 'Nope'" in nope.stderr
    runs = skyledger("runs", cwd=demo)
    assert "demo " in runs.stdout  # the job's name beside its hash


def test_stock_piped_to_a_file_keeps_ids_whole_and_lines_unwrapped(demo: Path) -> None:
    out = demo / "stock.txt"
    script = shutil.which("skyledger", path=str(Path(sys.executable).parent))
    assert script, "the skyledger console script is installed with the package"
    command = f"{script} stock ZTF21abiuvdk > {out}"
    subprocess.run(command, shell=True, cwd=demo, check=True, timeout=300,
                   env=PIPED)  # fmt: skip
    text = out.read_text()
    view = as_json("stock", "ZTF21abiuvdk", cwd=demo)
    for result in view["results"]:
        assert result["result_id"] in text  # whole, on one line
    assert "RA 0.814285, Dec +16.145687" in text.splitlines()[0]
    body_lines = [line for line in text.splitlines() if '"score"' in line]
    assert body_lines
    assert all(line.count("{") >= 1 for line in body_lines)  # a body is not cut into words


def test_small_refusals_a_new_user_met(tmp_path: Path) -> None:
    typo = skyledger("run", str(ROOT / "examples" / "demo.yaml"), "--source",
                     str(ROOT / "examples" / "data" / "ztf" / "ZTF21abiuvdk"),
                     "--ledger", str(tmp_path / "nope" / "deeper" / "ledger.sqlite"),
                     cwd=tmp_path)  # fmt: skip
    assert typo.returncode == 2
    assert "does not exist (a mistyped path?)" in typo.stderr
    assert not (tmp_path / "nope").exists()
    job = tmp_path / "job.yaml"
    job.write_text("name: x\nchannels: [{name: A, filtr: {unit: ZtfFilter}}]\n")
    misspelt = skyledger("run", str(job), "--source", str(tmp_path), cwd=tmp_path)
    assert misspelt.returncode == 2
    assert "channels.0.filtr: no such key (did you mean 'filter'?" in misspelt.stderr
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "a.avro").write_bytes(b"not an avro file at all")
    job.write_text("name: x\nchannels: [{name: A}]\n")
    nothing = skyledger("run", str(job), "--source", str(bad), "--strict", cwd=tmp_path)
    assert nothing.returncode == 1
    assert "every input was unreadable (1)" in nothing.stderr
    options = skyledger("units", "ZtfFilter", cwd=tmp_path, env=PIPED)
    assert options.returncode == 0
    assert "min_rb" in options.stdout
    assert "minimum real/bogus score" in options.stdout


def test_reactions_of_the_demo(demo: Path) -> None:
    every = as_json("reactions", cwd=demo)
    assert [(x["unit"], x["status"], x["stock"], x["channels"]) for x in every["items"]] == [
        ("ReportReactor", "delivered", None, ["TRANSIENTS"])]  # fmt: skip
    assert as_json("reactions", "--channel", "BRIGHT", cwd=demo)["items"] == []
    assert as_json("reactions", "--status", "failed", cwd=demo)["items"] == []
    table = skyledger("reactions", cwd=demo, env=PIPED)
    assert "ReportReactor" in table.stdout
    assert "1 reactions, as of position" in table.stdout
    bad = skyledger("reactions", "--status", "sent", cwd=demo)
    assert bad.returncode == 2
    assert "status" in bad.stderr
