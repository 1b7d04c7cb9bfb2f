"""Suite-wide fixtures: the real alert data in tests/data, throwaway PostgreSQL, NATS and
Kafka servers and a Dex OpenID Connect provider, and a fresh ledger per test on each
backend; and the rule that a skipped test fails the run (every test runs on a fresh clone
with nothing beside it)."""

from __future__ import annotations

import itertools
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from skyledger.ledger import Ledger, LedgerSettings
from skyledger.runners.embedded import EmbeddedKafka, EmbeddedNats, EmbeddedPostgres, kafka_problem
from skyledger.runners.oidc_provider import DexClient, DexUser, EmbeddedDex, dex_problem

_db_numbers = itertools.count()

DATA = Path(__file__).resolve().parent / "data"

_skipped: dict[str, str] = {}


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Return tests/data, the real alert packets kept in the repository (ztf/, lsst/,
    elasticc/; see tests/data/README.md). Missing data is an error, never a skip."""
    if not (DATA / "ztf" / "night").is_dir():
        pytest.fail(
            f"real alert data not found at {DATA}: it is part of the repository "
            "(tests/data/README.md); restore it with git, e.g. `git checkout -- tests/data`",
            pytrace=False,
        )
    return DATA


LONGEST_FIRST = (
    "runners/test_kafka.py",
    "runners/test_live_faults.py",
    "docs/test_console.py",
    "runners/test_replay.py",
    "runners/test_cli_query.py",
    "runners/test_live_network.py",
    "runners/test_simulate_outputs.py",
    "runners/test_tiers.py",
    "runners/test_live.py",
    "runners/test_determinism.py",
    "units/test_determinism_harness.py",
    "test_architecture.py",
    "runners/test_api.py",
    "runners/test_api_access.py",
    "runners/test_web.py",
    "runners/test_local.py",
    "ledger/test_faults.py",
)
"""Test files that take longest (a minute or more on a 2-core machine), longest first.
pytest-xdist hands out whole files (``--dist loadfile`` in pyproject.toml: a module's
fixtures are made once), in collection order: these start first, so that the run does
not end with one worker on a long file while the other has nothing left to do."""


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Put the files of LONGEST_FIRST first, in its order; the rest keep theirs."""
    rank = {str(Path(__file__).parent / name): i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(str(item.path), len(rank)))


def _is_worker(config: pytest.Config) -> bool:
    """True in a pytest-xdist worker: the controller sees every report and decides."""
    return hasattr(config, "workerinput")


def _record_skip(report: pytest.CollectReport | pytest.TestReport) -> None:
    if not report.skipped or hasattr(report, "wasxfail"):  # an xfail is not a skip
        return
    if "privileged" in report.keywords:  # needs root (network namespaces): said, not failed
        return
    if "kafka" in report.keywords and shutil.which("java") is None:  # no JVM here: said
        return
    longrepr = report.longrepr
    if isinstance(longrepr, tuple):  # (path, lineno, "Skipped: reason")
        where, reason = f"{longrepr[0]}:{longrepr[1]}", longrepr[2]
    else:
        where, reason = "?", str(longrepr)
    _skipped.setdefault(report.nodeid or where, f"{reason} ({where})")


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    _record_skip(report)


def pytest_collectreport(report: pytest.CollectReport) -> None:
    _record_skip(report)


def pytest_sessionfinish(session: pytest.Session) -> None:
    """A run with any skipped test fails (exit 1); another failure code (5: no tests
    collected, 2: interrupted, ...) is kept as it is."""
    if _skipped and not _is_worker(session.config) and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not _skipped or _is_worker(terminalreporter.config):
        return
    terminalreporter.section("skipped tests fail this suite", sep="=", red=True, bold=True)
    for nodeid, reason in sorted(_skipped.items()):
        terminalreporter.write_line(f"SKIPPED {nodeid}: {reason}", red=True)
    terminalreporter.write_line(
        f"{len(_skipped)} skipped: every test must run, so this run fails (tests/conftest.py)",
        red=True,
    )


@pytest.fixture(scope="session")
def pg_server() -> Iterator[EmbeddedPostgres]:
    """Start one PostgreSQL server for the whole session (fsync off: tests, not durability)."""
    with EmbeddedPostgres(fsync=False) as server:
        yield server


@pytest.fixture(scope="session")
def nats_server() -> Iterator[EmbeddedNats]:
    """Start one NATS server with JetStream for the whole session."""
    with EmbeddedNats() as server:
        yield server


@pytest.fixture(scope="session")
def kafka_server() -> Iterator[EmbeddedKafka]:
    """Start one Apache Kafka broker (KRaft) for the whole session. Without Java the
    Kafka tests are skipped, saying so; without the broker's jars they fail, naming the
    install step that fetches them."""
    problem = kafka_problem()
    if problem is not None and shutil.which("java") is None:
        pytest.skip(problem)
    if problem is not None:
        pytest.fail(problem, pytrace=False)
    with EmbeddedKafka() as server:
        yield server


DEX_USERS = (
    DexUser("alice@example.org", "alice", "alice-password", groups=("ampelproject:dev", "zwicky")),
    DexUser("bob@example.org", "bob", "bob-password"),
)
DEX_CLIENTS = (
    DexClient("skyledger-api", "api-secret"),
    DexClient("other-app", "other-secret"),
    DexClient("skyledger-web", "", redirect_uris=(), public=True),  # the pages' sign-in
)


@pytest.fixture(scope="session")
def dex() -> Iterator[EmbeddedDex]:
    """Start one Dex OpenID Connect provider for the whole session, with the users
    DEX_USERS and the clients DEX_CLIENTS. Without its binary the tests fail, naming the
    install step that builds it."""
    problem = dex_problem()
    if problem is not None:
        pytest.fail(problem, pytrace=False)
    with EmbeddedDex(DEX_USERS, DEX_CLIENTS) as server:
        yield server


@pytest.fixture
def pg_url(pg_server: EmbeddedPostgres, worker_id: str) -> str:
    """Return the URL of a fresh, empty PostgreSQL database."""
    return pg_server.create_database(f"t_{worker_id}_{next(_db_numbers)}")


@pytest.fixture(params=["sqlite", "postgres"])
def ledger_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Return the URL of a fresh, empty ledger, once per backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/ledger.sqlite"
    request.applymarker(pytest.mark.postgres)
    url: str = request.getfixturevalue("pg_url")
    return url


@pytest.fixture
def ledger(ledger_url: str) -> Iterator[Ledger]:
    """Open a fresh ledger (SQLite file or PostgreSQL database) and close it afterwards."""
    with Ledger.open(LedgerSettings.load(ledger=ledger_url)) as opened:
        yield opened
