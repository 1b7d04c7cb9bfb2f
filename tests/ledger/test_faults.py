"""Faults: an unreachable store, bad settings, and a writer killed with SIGKILL mid-batch."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from skyledger.ledger import ConfigError, Ledger, LedgerSettings, LedgerUnavailable, SkyledgerError
from skyledger.runners.embedded import free_port

WRITER = Path(__file__).parent / "writer_process.py"


def test_an_unreachable_store_names_the_url_without_the_password() -> None:
    url = f"postgresql://alice:hunter2@127.0.0.1:{free_port()}/sky"
    with pytest.raises(LedgerUnavailable) as info:
        Ledger.open(LedgerSettings.load(ledger=url, connect_timeout_s=2))
    message = str(info.value)
    assert f"postgresql://alice:***@127.0.0.1:{url.split(':')[3].split('/')[0]}/sky" in message
    assert "hunter2" not in message
    assert "refused" in message.lower() or "connect" in message.lower()  # the cause


def test_a_missing_database_is_named(pg_server: object, pg_url: str) -> None:
    url = pg_url.rsplit("/", 1)[0] + "/no_such_db"
    with pytest.raises(
        LedgerUnavailable, match=r'no_such_db.*database "no_such_db" does not exist'
    ):
        Ledger.open(url)


def test_an_unwritable_sqlite_path_is_named(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises((LedgerUnavailable, OSError)):
        Ledger.open(f"sqlite:///{blocker}/sub/ledger.sqlite")


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({"ledger": "mysql://localhost/x"}, "ledger"),
        ({"ledger": "postgresql:///nohost"}, "ledger"),
        ({"packets": "sometimes"}, "packets"),
        ({"pool_size": 0}, "pool_size"),
    ],
)
def test_bad_settings_are_refused_naming_the_field(values: dict[str, object], field: str) -> None:
    with pytest.raises(ConfigError, match=f"'{field}'"):
        LedgerSettings.load(**values)


def test_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SKYLEDGER_LEDGER", "sqlite:///elsewhere.sqlite")
    monkeypatch.setenv("SKYLEDGER_PACKETS", "digest")
    settings = LedgerSettings.load()
    assert (settings.ledger, settings.packets) == ("sqlite:///elsewhere.sqlite", "digest")


def test_all_errors_share_one_root() -> None:
    import skyledger.ledger.errors as errors

    classes = [getattr(errors, name) for name in errors.__all__]
    assert all(issubclass(cls, SkyledgerError) for cls in classes)


@pytest.mark.slow
@pytest.mark.parametrize("fraction", [0.3, 0.6, 0.9])
def test_a_writer_killed_mid_batch_leaves_each_batch_whole_or_absent(
    ledger_url: str, fraction: float
) -> None:
    # The kill comes at a fraction of the time the previous append took, so it lands in
    # the middle of the next append (encoding, then the transaction).
    size = 30_000
    committed: list[int] = []
    in_flight = -1
    took = 0.0
    with subprocess.Popen(
        [sys.executable, str(WRITER), ledger_url, "0", "50", str(size)],
        stdout=subprocess.PIPE,
        text=True,
    ) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            word, *rest = line.split()
            if word == "committed":
                committed.append(int(rest[0]))
                took = float(rest[3])
            if word == "appending" and int(rest[0]) == 1:
                in_flight = 1
                time.sleep(took * fraction)
                os.kill(proc.pid, signal.SIGKILL)
                break
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert committed == [0]
    assert in_flight == 1

    with Ledger.open(ledger_url) as ledger:
        per_batch = Counter(e.stream for e in ledger.read())
    assert per_batch["batch-0"] == size  # committed before the kill: all there
    assert per_batch["batch-1"] in (0, size)  # killed mid-batch: all or nothing
    assert set(per_batch) <= {"batch-0", "batch-1"}

    # The ledger is usable afterwards and the interrupted batch can be appended again.
    rerun = subprocess.run(
        [sys.executable, str(WRITER), ledger_url, "1", "1", str(size)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert f"committed 1 {size - per_batch['batch-1']} {per_batch['batch-1']} " in rerun.stdout
