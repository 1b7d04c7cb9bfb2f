"""The command line, run as a user would: the installed ``skyledger`` script."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def skyledger(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    script = shutil.which("skyledger", path=str(Path(sys.executable).parent))
    assert script, "the skyledger console script is installed with the package"
    return subprocess.run(
        [script, *args], cwd=cwd, capture_output=True, text=True, timeout=300, env=env
    )


def test_demo_runs_all_tiers_on_real_alerts_and_writes_the_report(tmp_path: Path) -> None:
    done = skyledger("demo", "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    # 34 ZTF21abiuvdk alerts + 106 in the night container, all new to the ledger
    assert summary["alerts"] == {"read": 140, "new": 140, "already_in_ledger": 0}
    assert summary["unreadable"]["read"] == 0
    assert summary["datapoints"]["detection"]["new"] > 0
    assert summary["results"]["T2LightCurveFeatures"]["ok"] > 0
    [report] = summary["reactions"]
    assert (report["reactor"], report["delivered"]) == ("ReportReactor", 1)
    report = (tmp_path / "skyledger-data" / "report.html").read_text()
    assert "ZTF21abiuvdk" in report
    assert report.count("data:image/png;base64,") >= 1
    # The stock's view comes from the read model, built from the ledger.
    view = json.loads(skyledger("stock", "ZTF21abiuvdk", "--json", cwd=tmp_path).stdout)
    assert view["stock"]["n_alerts"] == 34
    assert len([d for d in view["datapoints"] if d["kind"] == "detection"]) == 34
    assert {d["kind"] for d in view["datapoints"]} == {"detection"}  # upper limits apart
    assert len(view["upper_limits"]) == view["stock"]["n_upper_limits"] > 0
    assert {d["kind"] for d in view["upper_limits"]} == {"upper_limit"}
    shown = skyledger("stock", "ZTF21abiuvdk", cwd=tmp_path).stdout
    curve, limits = shown.split("light curve")[1].split("upper limits")
    assert "upper_limit" not in curve
    assert "detection" in curve
    assert "limiting mag" in limits
    assert "detection" not in limits.split("states")[0]
    assert {r["unit"] for r in view["results"]} == {"T2LightCurveFeatures", "T2CandidateScore"}
    assert "TRANSIENTS" in view["stock"]["channels"]
    missing = skyledger("stock", "ZTF99nothing", cwd=tmp_path)
    assert missing.returncode == 2
    assert "no stock 'ZTF99nothing'" in missing.stderr
    # Run again: nothing new to do, nothing delivered twice.
    again = json.loads(skyledger("demo", "--json", cwd=tmp_path).stdout)
    assert again["appended"] == 2  # RunStarted and RunFinished only
    assert again["reactions"][0].get("delivered", 0) == 0


def test_run_refuses_an_invalid_job_before_anything_runs(tmp_path: Path) -> None:
    job = tmp_path / "job.yaml"
    job.write_text(
        "channels:\n  - name: X\n    filter: {unit: ZtfFilter, config: {min_rb: high}}\n"
    )
    done = skyledger("run", str(job), "--source", str(ROOT / "examples"), cwd=tmp_path)
    assert done.returncode == 2
    assert "job.yaml line 3: channels.0.filter.config" in done.stderr
    assert "min_rb" in done.stderr
    assert not (tmp_path / "skyledger-data").exists()  # refused before the ledger was opened


def test_an_unreachable_ledger_is_one_clear_line(tmp_path: Path) -> None:
    env = {"SKYLEDGER_LEDGER": "postgresql://u:secret@127.0.0.1:1/x", "PATH": ""}
    done = skyledger("ledger", cwd=tmp_path, env=env)
    assert done.returncode == 2
    assert "postgresql://u:***@127.0.0.1:1/x" in done.stderr
    assert "secret" not in done.stderr


@pytest.mark.parametrize("command", ["units", "--help"])
def test_informational_commands_work(tmp_path: Path, command: str) -> None:
    done = skyledger(command, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    if command == "units":
        assert "T2LightCurveFeatures" in done.stdout


STUCK = """\
import asyncio, sys, time
from skyledger.runners.live import run_until_signal

async def work(stop: asyncio.Event) -> int:
    print("ready", flush=True)
    time.sleep(4)  # the event loop blocked, as by a call that hangs
    await stop.wait()
    return 0

sys.exit(run_until_signal(work))
"""


def test_sigusr1_writes_the_stacks_of_a_blocked_process_which_goes_on(tmp_path: Path) -> None:
    script = tmp_path / "stuck.py"
    script.write_text(STUCK)
    proc = subprocess.Popen(
        [sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        cwd=Path(__file__).resolve().parents[2], text=True,
    )  # fmt: skip
    assert proc.stdout is not None
    assert proc.stdout.readline() == "ready\n"
    time.sleep(0.5)
    proc.send_signal(signal.SIGUSR1)  # while the loop is blocked in time.sleep
    proc.send_signal(signal.SIGTERM)  # handled once the loop runs again
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "most recent call first" in err
    assert 'stuck.py", line 6 in work' in err, err
