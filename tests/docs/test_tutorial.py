"""docs/tutorial.md works as written: its package installs, its tests pass, a job runs it.

The tutorial marks each file a reader writes with ``<!-- file: PATH -->`` before the
fenced block (the grammar of tests/docs/test_console.py, which runs the whole tutorial as
written; this module checks specific facts of it on ZTF21abiuvdk alone).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TUTORIAL = ROOT / "docs" / "tutorial.md"
ALERTS = ROOT / "examples" / "data" / "ztf" / "ZTF21abiuvdk"
FILE_BLOCK = re.compile(r"^<!-- file: (?P<path>\S+) -->\n```\w*\n(?P<text>.*?)^```$", re.S | re.M)
CONSOLE_BLOCK = re.compile(r"^```console\n(?P<text>.*?)^```$", re.S | re.M)
PACKAGE = "mygroup-units"


def tutorial_files() -> dict[str, str]:
    """Return the files the tutorial has the reader write, by path (the first version of
    each: the package as step 2 and 3 write it, the job as step 6 writes it)."""
    files: dict[str, str] = {}
    for m in FILE_BLOCK.finditer(TUTORIAL.read_text()):
        files.setdefault(m["path"], m["text"])
    return files


def shown_output(command: str) -> list[str]:
    """Return the output the tutorial shows for a command that is alone in its console
    block, line by line."""
    for m in CONSOLE_BLOCK.finditer(TUTORIAL.read_text()):
        lines = m["text"].splitlines()
        if lines[0] == f"$ {command}":
            return lines[1:]
    raise AssertionError(f"docs/tutorial.md shows no output of {command!r}")


def run(args: list[str], cwd: Path, site: Path) -> subprocess.CompletedProcess[str]:
    """Run a command with the installed package and skyledger importable, no SKYLEDGER_*."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SKYLEDGER_")}
    env["PYTHONPATH"] = os.pathsep.join([str(site), str(ROOT)])
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def skyledger() -> str:
    script = shutil.which("skyledger", path=str(Path(sys.executable).parent))
    assert script, "the skyledger console script is installed with the package"
    return script


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Return a folder holding the tutorial's files, as a reader would have written them."""
    folder = tmp_path_factory.mktemp("tutorial")
    for path, text in tutorial_files().items():
        (folder / path).parent.mkdir(parents=True, exist_ok=True)
        (folder / path).write_text(text)
    (folder / PACKAGE / "mygroup_units" / "__init__.py").write_text("")
    shutil.copytree(ALERTS, folder / PACKAGE / "tests" / "data" / "ZTF21abiuvdk")
    return folder


@pytest.fixture(scope="module")
def site(work: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Return a folder the tutorial's package is installed into (as pip installs it)."""
    target = tmp_path_factory.mktemp("site")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
         "--target", str(target), str(work / PACKAGE)],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    return target


def test_the_tutorial_writes_a_package_a_job_and_scripts() -> None:
    assert {
        f"{PACKAGE}/pyproject.toml",
        f"{PACKAGE}/mygroup_units/colour.py",
        f"{PACKAGE}/mygroup_units/trend.py",
        f"{PACKAGE}/tests/test_colour.py",
        "job.yaml",
        "results.py",
        "versions.py",
        "failures.py",
    } <= set(tutorial_files())


def test_the_tutorials_own_tests_pass(work: Path, site: Path) -> None:
    done = run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"],
        cwd=work / PACKAGE,
        site=site,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert re.search(r"^7 passed", done.stdout, re.M), done.stdout


def test_skyledger_lists_the_installed_units(work: Path, site: Path) -> None:
    done = run([skyledger(), "units"], cwd=work, site=site)
    assert done.returncode == 0, done.stderr
    assert "mygroup_units.colour:T2ColourEvolution" in done.stdout
    assert "mygroup_units.trend:T2ColourTrend" in done.stdout


def test_the_tutorial_job_runs_the_units_on_real_alerts(work: Path, site: Path) -> None:
    args = [skyledger(), "run", "job.yaml", "--source", str(ALERTS), "--json",
            "--ledger", "sqlite:///skyledger-data/ledger.sqlite"]  # fmt: skip
    done = run(args, cwd=work, site=site)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["alerts"] == {"read": 34, "new": 34, "already_in_ledger": 0}
    # The first alert (one detection) is rejected and the filter accepts the other 33;
    # T1 makes a state at each of them, and T2 runs both units on every state.
    assert summary["states"] == {"alerts": 33, "new": 33, "made_before": 0}
    assert summary["results"] == {"T2ColourEvolution": {"ok": 33}, "T2ColourTrend": {"ok": 33}}
    assert summary["status"] == "ok"

    shown = run([sys.executable, "results.py"], cwd=work, site=site)
    assert shown.returncode == 0, shown.stderr
    printed = [line.rstrip() for line in shown.stdout.splitlines()]
    assert printed == shown_output("python results.py")  # one line per state, alert order
    assert len(printed) == 33
