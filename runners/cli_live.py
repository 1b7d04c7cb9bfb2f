"""The live commands: ``relay``, ``worker`` and ``live`` (a relay and workers of every
tier as processes of this machine), on PostgreSQL and NATS JetStream."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from skyledger.ledger.errors import ConfigError
from skyledger.ledger.settings import DEFAULT_LEDGER_URL, redact
from skyledger.runners.cli_common import (
    DEFAULT_NATS_URL,
    ImportOption,
    JsonOption,
    LedgerOption,
    NatsOption,
    PrefixOption,
    console,
    import_modules,
    open_ledger,
    out,
    print_json,
)

if TYPE_CHECKING:
    from skyledger.runners.metrics import LiveMetrics

__all__ = ["live", "relay", "worker"]


MetricsOption = Annotated[
    int,
    typer.Option(
        "--metrics-port",
        envvar="SKYLEDGER_METRICS_PORT",
        min=0,
        help="serve /metrics (Prometheus) and /healthz on this port (0: not at all)",
    ),
]
MetricsHostOption = Annotated[
    str, typer.Option("--metrics-host", help="the address /metrics and /healthz listen on")
]


def _live_ledger(url: str) -> None:
    """Refuse a ledger live mode cannot use (before opening it: nothing is made)."""
    from skyledger.ledger import LedgerSettings
    from skyledger.ledger.settings import PostgresTarget

    if not isinstance(LedgerSettings.load(ledger=url).target(), PostgresTarget):
        raise ConfigError(f"--ledger {redact(url)}: live mode needs a PostgreSQL ledger")


@contextmanager
def _metrics(tier: str, port: int, host: str) -> Iterator[LiveMetrics]:
    """Make a live process's metrics, served on ``host:port`` while it runs if a port
    is given."""
    from skyledger.runners.metrics import LiveMetrics, serve

    metrics = LiveMetrics(tier)
    server = serve(metrics, port, host) if port else None
    try:
        yield metrics
    finally:
        if server is not None:
            server.close()


def relay(
    ledger: LedgerOption = DEFAULT_LEDGER_URL,
    nats_url: NatsOption = DEFAULT_NATS_URL,
    prefix: PrefixOption = "skyledger",
    shards: Annotated[
        int,
        typer.Option(
            min=1, help="shards of the ledger's streams (fixed when the bus is first made)"
        ),
    ] = 16,
    metrics_port: MetricsOption = 0,
    metrics_host: MetricsHostOption = "127.0.0.1",
    as_json: JsonOption = False,
) -> None:
    """Follow a PostgreSQL ledger and publish where it grew to NATS JetStream (live mode)."""
    from skyledger.runners.bus import Bus
    from skyledger.runners.live import run_until_signal
    from skyledger.runners.relay import Relay

    _live_ledger(ledger)
    with open_ledger(ledger) as opened:
        bus = Bus(nats_url, prefix=prefix, shards=shards)
        with _metrics("relay", metrics_port, metrics_host) as metrics:
            stats = run_until_signal(Relay(opened, bus, metrics=metrics).run)
    if as_json:
        print_json(stats.__dict__)
    else:
        out.print(f"relay stopped at position {stats.position}: {stats.events} events, "
                  f"{stats.published} messages", highlight=False)  # fmt: skip


def worker(
    tier: Annotated[str, typer.Argument(help="t0, t1, t2 or t3", metavar="TIER")],
    job: Annotated[Path, typer.Argument(help="the job file (YAML)", metavar="JOB")],
    ledger: LedgerOption = DEFAULT_LEDGER_URL,
    nats_url: NatsOption = DEFAULT_NATS_URL,
    prefix: PrefixOption = "skyledger",
    subject: Annotated[
        str | None,
        typer.Option(help="t0: the subject alert packets arrive on (default PREFIX.alerts)"),
    ] = None,
    ack_wait: Annotated[
        float,
        typer.Option(
            min=0.5,
            help="seconds before JetStream gives an unacknowledged message to another "
            "worker (a worker that died); long work tells it it is still going",
        ),
    ] = 30.0,
    stuck_after: Annotated[
        float,
        typer.Option(
            min=0,
            help="seconds one batch may take before the worker takes it for stuck: it "
            "writes its threads' stacks to the log, /healthz answers 503, and the batch's "
            "messages go to other workers (0: never)",
        ),
    ] = 900.0,
    heartbeat: Annotated[
        float,
        typer.Option(
            min=0.01,
            help="seconds between the worker's heartbeats (RunHeartbeat events): `skyledger "
            "runs` shows a worker whose heartbeats stopped for 3 of them as gone",
        ),
    ] = 30.0,
    imports: ImportOption = None,
    metrics_port: MetricsOption = 0,
    metrics_host: MetricsHostOption = "127.0.0.1",
    as_json: JsonOption = False,
) -> None:
    """Run one worker of a tier of a job on NATS JetStream (add more to share the work);
    SIGTERM finishes the batch in hand, acknowledges it and exits."""
    from skyledger.runners.bus import Bus
    from skyledger.runners.live import run_until_signal
    from skyledger.runners.tiers import TIERS
    from skyledger.runners.worker import TierWorker

    if tier not in TIERS:
        raise ConfigError(f"TIER {tier!r}: one of {', '.join(TIERS)}")
    import_modules(imports)
    from skyledger.runners.job import load_job

    parsed, text = load_job(job)
    _live_ledger(ledger)
    with open_ledger(ledger) as opened, _metrics(tier, metrics_port, metrics_host) as metrics:
        work = TierWorker(parsed, text, opened, Bus(nats_url, prefix=prefix), tier,
                          alerts_subject=subject, ack_wait_s=ack_wait,
                          metrics=metrics, stuck_after_s=stuck_after,
                          heartbeat_s=heartbeat)  # fmt: skip
        stats = run_until_signal(work.run)
    if as_json:
        print_json(stats.as_dict())
    else:
        out.print(f"{tier} worker stopped: {stats.as_dict()}", highlight=False)


def live(
    job: Annotated[Path, typer.Argument(help="the job file (YAML)", metavar="JOB")],
    ledger: Annotated[
        str | None,
        typer.Option(
            "--ledger",
            envvar="SKYLEDGER_LIVE_LEDGER",
            help="a PostgreSQL ledger postgresql://...; none: an embedded, throwaway one",
        ),
    ] = None,
    nats_url: Annotated[
        str | None,
        typer.Option(
            "--nats", envvar="SKYLEDGER_NATS", help="nats://HOST:PORT; none: an embedded one"
        ),
    ] = None,
    prefix: PrefixOption = "skyledger",
    shards: Annotated[
        int, typer.Option(min=1, help="shards of the work (fixed when the bus is first made)")
    ] = 16,
    source: Annotated[
        list[str] | None,
        typer.Option(
            "--source", "-s", help="alert files, folders or archives to publish onto the bus"
        ),
    ] = None,
    rate: Annotated[
        float | None, typer.Option(min=0.001, help="alerts per second to publish them at")
    ] = None,
    workers: Annotated[
        list[str] | None,
        typer.Option(
            "--workers", help="worker processes of a tier, as TIER=N (default 1 each; repeat)"
        ),
    ] = None,
    until_idle: Annotated[
        bool,
        typer.Option("--until-idle", help="stop once everything published went through every tier"),
    ] = False,
    logs: Annotated[Path, typer.Option(help="folder for the processes' logs")] = Path(
        "skyledger-data/live-logs"
    ),
    as_json: JsonOption = False,
) -> None:
    """Run a job live: the relay and a worker per tier as processes on NATS JetStream and
    PostgreSQL (embedded ones when no URLs are given), showing each tier's lag; Ctrl-C or
    SIGTERM stops them (each finishes its batch). Alerts arrive on the bus: publish them
    with --source here, or with `skyledger simulate --to NATS_URL`."""
    import signal
    import threading

    from rich.live import Live
    from rich.table import Table

    from skyledger.runners.job import load_job
    from skyledger.runners.live import TierLag, run_live
    from skyledger.runners.tiers import TIERS

    parsed, _ = load_job(job)
    counts = dict.fromkeys(TIERS, 1)
    for spec in workers or []:
        tier, _, n = spec.partition("=")
        if tier not in TIERS or not n.isdigit() or int(n) < 1:
            raise ConfigError(f"--workers {spec}: give TIER=N with TIER one of {', '.join(TIERS)}")
        counts[tier] = int(n)
    missing = [p for p in source or [] if not Path(p).exists()]
    if missing:
        raise ConfigError("\n".join(f"--source {p}: no such file or directory" for p in missing))
    logs.mkdir(parents=True, exist_ok=True)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    display = Live(console=console, transient=False, auto_refresh=False) if not as_json else None

    def show(found: list[TierLag], pending: int, urls: dict[str, str]) -> None:
        if display is None:
            return
        table = Table(title=f"skyledger live: {parsed.name} ({urls['ledger']}, {urls['nats']})")
        for column in ("tier", "processes", "position", "head", "lag"):
            table.add_column(column, justify="left" if column == "tier" else "right")
        table.add_row("alerts", "", "", "", f"{pending} to ingest")
        for t in found:
            table.add_row(t.tier, str(counts[t.tier]), str(t.position), str(t.head), str(t.lag))
        display.update(table, refresh=True)

    with display if display is not None else contextlib.nullcontext():
        outcome = run_live(
            str(job), parsed, ledger, nats_url, prefix=prefix, shards=shards, workers=counts,
            sources=list(source or []), rate=rate, until_idle=until_idle, log_dir=str(logs),
            show=show, stop=stop,
        )  # fmt: skip
    if display is not None:
        console.print()  # the table ends its line only on a terminal
    failed = {role: code for role, code in outcome.exit_codes.items() if code}
    if as_json:
        print_json(
            {"ledger": outcome.ledger, "nats": outcome.nats, "published": outcome.published,
             "lags": [t.__dict__ | {"lag": t.lag} for t in outcome.lags],
             "exit_codes": outcome.exit_codes}
        )  # fmt: skip
    else:
        out.print(f"stopped: {outcome.published} alerts published; processes' logs in {logs}",
                  highlight=False)  # fmt: skip
    if failed:
        console.print(f"processes that did not stop cleanly: {failed} (see {logs})")
        raise typer.Exit(1)
