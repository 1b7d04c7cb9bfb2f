"""The command line: skyledger run, demo, replay, diff, simulate, units and ledger here;
the reading commands in runners.cli_query, the live ones in runners.cli_live, the HTTP
and access ones in runners.cli_api. It parses arguments, builds settings and hands over
to the runners; what it prints for people is in runners.show and runners.show_diff.
Every command takes --json (errors included) and -h; options with an environment
fallback show it in their help."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from skyledger.ledger.errors import ConfigError, SkyledgerError
from skyledger.ledger.settings import DEFAULT_LEDGER_URL
from skyledger.ledger.when import position_or_time
from skyledger.runners.cli_api import access_app, serve, token_app
from skyledger.runners.cli_common import (
    AsOfOption,
    JsonOption,
    LedgerOption,
    PrefixOption,
    console,
    open_ledger,
    out,
    position_of,
    print_json,
)
from skyledger.runners.cli_live import live, relay, worker
from skyledger.runners.cli_query import (
    config,
    failures,
    reactions,
    results,
    runs,
    stock,
    stocks,
    why,
)
from skyledger.runners.show import (
    show_options,
    show_summary,
    show_units,
)
from skyledger.runners.show_diff import show_diff

# The store, the read model and the units are imported by the commands that use them:
# every command (and --version, -h) starts in a fraction of a second.
if TYPE_CHECKING:
    from skyledger.ledger import Ledger
    from skyledger.runners.summary import RunSummary
    from skyledger.units import Alert

__all__ = ["app", "main"]

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
    help="skyledger: event-sourced analysis of astronomical alert streams (ZTF, Rubin/LSST). "
    "Every command takes -h for its options.",
)
EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _package_version() -> str:
    try:
        return version("skyledger")
    except PackageNotFoundError:
        return "unknown (not installed)"


def _show_version(value: bool) -> None:
    if value:
        out.print(f"skyledger {_package_version()}", highlight=False)
        raise typer.Exit


@app.callback()
def _main(
    show_version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_show_version, is_eager=True, help="print the version and exit"
        ),
    ] = False,
) -> None:
    """skyledger: event-sourced analysis of astronomical alert streams (ZTF, Rubin/LSST)."""


class _Rate(ProgressColumn):
    """Events (or alerts) per second of a stage, as rich measures it."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text("" if speed is None else f"{speed:,.0f}/s", style="progress.data.speed")


@contextmanager
def _progress(as_json: bool) -> Iterator[Callable[[str, int, int | None], None]]:
    """Show a bar per stage (done of total, rate, time taken and left) on a terminal."""
    with Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), _Rate(),
        TimeElapsedColumn(), TimeRemainingColumn(), console=console, transient=True,
        disable=as_json or not console.is_terminal,
    ) as bar:  # fmt: skip
        tasks: dict[str, Any] = {}

        def progress(stage: str, done: int, total: int | None) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(stage, total=total)
            bar.update(tasks[stage], completed=done, total=total)

        yield progress


def _show(summary: RunSummary, as_json: bool) -> None:
    if as_json:
        print_json(summary.as_dict())
    else:
        show_summary(out, summary)


def _run(
    job_path: Path,
    sources: list[str],
    url: str,
    as_json: bool,
    workers: int,
    max_alerts: int | None = None,
    until: str | None = None,
) -> RunSummary:
    from skyledger.runners.job import load_job
    from skyledger.runners.local import LocalRunner
    from skyledger.units.contracts import StreamSource
    from skyledger.units.sources import FileSource

    job, text = load_job(job_path)
    missing = [path for path in sources if not Path(path).exists()]
    if missing:
        raise ConfigError("\n".join(f"--source {p}: no such file or directory" for p in missing))
    until_ms = None
    if until is not None:
        when = position_or_time("--until", until)
        if isinstance(when, int):
            raise ConfigError(f"--until: {until!r} is not a time (ISO 8601, for example "
                              "2026-12-01T09:30:00Z)")  # fmt: skip
        until_ms = int(when.timestamp() * 1000)
    file_sources = [FileSource({"paths": sources})] if sources else []
    with open_ledger(url) as ledger, _progress(as_json) as progress:
        runner = LocalRunner(job, text, ledger, file_sources, progress, workers=workers)
        streams = any(isinstance(s, StreamSource) for s in runner.sources)
        if (max_alerts is not None or until is not None) and not streams:
            raise ConfigError("--max-alerts and --until stop stream sources (Kafka); this "
                              "run reads files, which it reads to the end")  # fmt: skip
        runner.max_alerts, runner.until_ms = max_alerts, until_ms
        summary = runner.run()
    _show(summary, as_json)
    return summary


def _strict(summary: RunSummary, strict: bool) -> None:
    bad = summary.unreadable.get("read", 0)
    if bad and not summary.alerts.get("read"):
        console.print(f"every input was unreadable ({bad})", highlight=False)
        if strict:
            console.print("--strict: no alert could be read", highlight=False)
            raise typer.Exit(1)
    if strict and summary.status != "ok":
        console.print(f"--strict: the run ended with status {summary.status!r}", highlight=False)
        raise typer.Exit(1)


StrictOption = Annotated[
    bool,
    typer.Option(
        "--strict", help="exit with code 1 if the run did not end 'ok' (a unit gave up on input)"
    ),
]


@app.command()
def run(
    job: Annotated[Path, typer.Argument(help="the job file (YAML)", metavar="JOB")],
    source: Annotated[
        list[str] | None,
        typer.Option(
            "--source",
            "-s",
            help="alert files, folders or archives to read (repeat for more); "
            "instead of the job's sources",
        ),
    ] = None,
    ledger: LedgerOption = DEFAULT_LEDGER_URL,
    as_json: JsonOption = False,
    workers: Annotated[
        int,
        typer.Option(
            min=1,
            help="processes for the CPU work of T0 (decoding, shaping, filtering), T1 and "
            "T2; 1: this process only",
        ),
    ] = 1,
    strict: StrictOption = False,
    max_alerts: Annotated[
        int | None,
        typer.Option(min=1, help="stream sources (Kafka): stop after this many messages"),
    ] = None,
    until: Annotated[
        str | None,
        typer.Option(
            help="stream sources (Kafka): stop each partition at its first message written "
            "at or after this time (ISO 8601)"
        ),
    ] = None,
) -> None:
    """Run a job locally: every tier in turn, with progress bars, then a summary. Files
    are read to their end, Kafka topics to the end of their partitions (or --max-alerts,
    --until)."""
    summary = _run(job, list(source or []), ledger, as_json, workers, max_alerts, until)
    _strict(summary, strict)


@app.command()
def demo(
    ledger: LedgerOption = DEFAULT_LEDGER_URL,
    as_json: JsonOption = False,
    strict: StrictOption = False,
) -> None:
    """Run the example job on real ZTF alerts shipped with skyledger, and write a report."""
    summary = _run(EXAMPLES / "demo.yaml", [str(EXAMPLES / "data" / "ztf")], ledger, as_json, 1)
    if not as_json:
        console.print("report: skyledger-data/report.html (see the demo job for its path)")
    _strict(summary, strict)


def _position(ledger: Ledger, option: str, value: str | None) -> int | None:
    """Return a --since/--until value as a ledger position (a time maps to the last
    position appended then)."""
    if value is None:
        return None
    at = position_or_time(option, value)
    if isinstance(at, int):
        return at
    found = ledger.position_at(at)
    return found + 1 if option == "--since" else found  # since: what came after then


@app.command()
def replay(
    job: Annotated[Path, typer.Argument(help="the job file (YAML)", metavar="JOB")],
    variant: Annotated[
        str, typer.Option(help="the name its output is recorded under, beside other variants")
    ],
    since: Annotated[
        str | None, typer.Option(help="only alerts from this position or time (ISO 8601) on")
    ] = None,
    until: Annotated[
        str | None, typer.Option(help="only alerts up to this position or time (ISO 8601)")
    ] = None,
    stock: Annotated[
        list[str] | None, typer.Option("--stock", help="only this stock (repeat for more)")
    ] = None,
    channel: Annotated[
        list[str] | None,
        typer.Option("--channel", help="only this channel of the job (repeat for more)"),
    ] = None,
    deliver: Annotated[
        bool,
        typer.Option(
            "--deliver", help="deliver the reactions too (default: record them as intents only)"
        ),
    ] = False,
    ledger: LedgerOption = DEFAULT_LEDGER_URL,
    as_json: JsonOption = False,
    workers: Annotated[
        int, typer.Option(min=1, help="processes for the CPU work of the tiers; 1: this one only")
    ] = 1,
    strict: StrictOption = False,
) -> None:
    """Replay a job over the ledger as a named variant: only what the job changes is
    computed again; an interrupted replay resumes where it stopped."""
    from skyledger.projections.limits import Limits
    from skyledger.runners.job import load_job
    from skyledger.runners.replay import ReplayRunner, only_channels

    spec, text = load_job(job)
    if channel:
        only_channels(spec, channel)  # refuse a channel the job does not have, first
    with open_ledger(ledger, create=False) as store:
        try:
            limits = Limits(_position(store, "--since", since), _position(store, "--until", until),
                            frozenset(stock) if stock else None)  # fmt: skip
        except ValueError as exc:
            raise ConfigError(f"--since/--until: {exc}") from None
        with _progress(as_json) as progress:
            runner = ReplayRunner(spec, text, store, variant, limits, deliver, progress,
                                  workers=workers, channels=channel)  # fmt: skip
            summary = runner.run()
    _show(summary, as_json)
    _strict(summary, strict)


@app.command("diff")
def diff_variants(
    a: Annotated[str, typer.Argument(help="a variant's name, a run id or a job file", metavar="A")],
    b: Annotated[str, typer.Argument(help="the same, for the other side", metavar="B")],
    ledger: LedgerOption = DEFAULT_LEDGER_URL,
    limit: Annotated[
        int, typer.Option(min=0, help="changes listed per entry (--json lists all)")
    ] = 10,
    as_json: JsonOption = False,
    as_of: AsOfOption = None,
) -> None:
    """Compare two variants: per T2 entry and stock, results added, removed or changed
    (with numeric deltas and rank moves), and the stocks each channel accepted; of a
    limited replay, only what its limits cover; with --as-of, as the ledger stood then."""
    from skyledger.projections.diff import diff
    from skyledger.runners.replay import side_of

    with open_ledger(ledger, create=False) as store:
        until = position_of(store, "--as-of", as_of)
        found = diff(store, side_of(store, a)[0], side_of(store, b)[0], until=until)
    if as_json:
        print_json(found.as_dict())
        return
    for note in found.notes:
        console.print(f"note: {note}", highlight=False, markup=False)
    show_diff(out, found, limit)


@app.command()
def simulate(
    paths: Annotated[
        list[Path], typer.Argument(help="real ZTF alert files, folders or archives", metavar="PATH")
    ],
    out_dir: Annotated[
        Path | None, typer.Option("--out", "-o", help="folder to write into (new or empty)")
    ] = None,
    to: Annotated[
        str | None,
        typer.Option(
            "--to",
            help="publish them instead, one per message: to NATS (nats://HOST:PORT) or to a "
            "Kafka topic (kafka://HOST:PORT/TOPIC; ZTF alerts as Avro containers, Rubin "
            "alerts Confluent-framed, keyed by object)",
        ),
    ] = None,
    partitions: Annotated[
        int, typer.Option(min=1, help="--to kafka: partitions of a topic it makes")
    ] = 4,
    rate: Annotated[
        float | None, typer.Option(min=0.001, help="--to: alerts per second (default: at once)")
    ] = None,
    prefix: PrefixOption = "skyledger",
    copies: Annotated[int, typer.Option(min=1, help="times each alert is replayed")] = 10,
    shift_days: Annotated[
        float, typer.Option(help="copy k is moved k times this many days later")
    ] = 0.0,
    sky_step: Annotated[
        float,
        typer.Option(
            min=0.0,
            max=359.999,
            help="copy k is moved k times this many degrees in "
            "RA (137.5: copies spread over the sky; 0: at their original's place)",
        ),
    ] = 0.0,
    cutouts: Annotated[
        bool, typer.Option("--cutouts/--no-cutouts", help="keep the image cutouts, or drop them")
    ] = True,
    per_file: Annotated[int, typer.Option(min=1, help="alerts per Avro file written")] = 1000,
    as_json: JsonOption = False,
) -> None:
    """Replay real ZTF alerts as new ones (new stocks, new ids, shifted times) into files,
    or onto NATS or a Kafka topic (--to) at a rate, for `skyledger live`, workers or a job
    with a KafkaSource to ingest.

    For a paced stream inside a local job, name SimulatedSource with a rate in its sources.
    """
    from skyledger.runners.simulate import SimulatedSource, write_alerts
    from skyledger.units import Alert

    missing = [p for p in paths if not p.exists()]
    if missing:
        raise ConfigError("\n".join(f"PATH {p}: no such file or directory" for p in missing))
    if (out_dir is None) == (to is None):
        raise ConfigError(
            "give one of --out FOLDER (files), --to nats://HOST:PORT or --to "
            "kafka://HOST:PORT/TOPIC (a stream)"
        )
    source = SimulatedSource(
        {"paths": [str(p) for p in paths], "copies": copies, "shift_days": shift_days,
         "cutouts": cutouts, "sky_step_deg": sky_step}
    )  # fmt: skip
    with _progress(as_json) as progress:

        def alerts() -> Iterator[Alert]:
            for n, packet in enumerate(source.packets(), 1):
                progress("simulating", n, None)
                if isinstance(packet, Alert):
                    yield packet

        if to is not None and to.startswith("kafka:"):
            from skyledger.runners.kafka_publish import KafkaTarget, kafka_packet, publish_kafka

            target = KafkaTarget.parse(to)
            try:
                sent = publish_kafka(
                    target, ((a.stock, kafka_packet(a)) for a in alerts()), rate=rate,
                    partitions=partitions,
                )  # fmt: skip
            except ValueError as exc:
                raise ConfigError(f"PATH: {exc}") from None
            if as_json:
                print_json({"to": to, "topic": target.topic, "published": sent})
            else:
                out.print(f"published {sent} alerts to {to}", highlight=False)
            return
        if to is not None:
            import asyncio

            from skyledger.runners.bus import Bus
            from skyledger.runners.live import publish_packets

            bus = Bus(to, prefix=prefix)
            sent = asyncio.run(publish_packets(bus, (a.packet for a in alerts()), rate=rate))
            if as_json:
                print_json({"to": to, "subject": bus.alerts_subject, "published": sent})
            else:
                out.print(f"published {sent} alerts to {to} ({bus.alerts_subject})",
                          highlight=False)  # fmt: skip
            return
        assert out_dir is not None
        try:
            files = write_alerts(alerts(), out_dir, per_file)
        except ValueError as exc:
            raise ConfigError(f"--out {out_dir}: {exc}") from None
    if as_json:
        print_json({"out": str(out_dir), "files": [str(f) for f in files]})
    else:
        out.print(f"wrote {len(files)} files to {out_dir}", highlight=False)


app.command()(stock)
app.command()(stocks)
app.command()(results)
app.command()(runs)
app.command()(failures)
app.command()(config)
app.command()(why)
app.command()(reactions)


@app.command()
def units(
    name: Annotated[
        str | None, typer.Argument(metavar="[NAME]", help="one unit: its options")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """List the units jobs can name: tier, version, package and where each is defined;
    with NAME, that unit's options (type, default, description)."""
    from skyledger.units.registry import describe_options, describe_units

    if name is not None:
        described = describe_options(name)
        if as_json:
            print_json(described)
        else:
            show_options(out, described)
        return
    found = describe_units()
    if as_json:
        print_json(found)
    else:
        show_units(out, found)


@app.command("ledger")
def ledger_info(ledger: LedgerOption = DEFAULT_LEDGER_URL, as_json: JsonOption = False) -> None:
    """Show where the ledger is, its store and its head position (never makes a ledger)."""
    with open_ledger(ledger, create=False) as opened:
        info = {"ledger": opened.url, "backend": opened.backend, "head": opened.head()}
    if as_json:
        print_json(info)
    else:
        out.print(f"{info['ledger']}: {info['backend']}, head position {info['head']}",
                  highlight=False)  # fmt: skip


app.command()(relay)
app.command()(worker)
app.command()(live)
app.command()(serve)
app.add_typer(access_app, name="access")
app.add_typer(token_app, name="token")


def main() -> None:
    """Run the CLI; errors of ours are one clear line (JSON with --json) and exit code 2."""
    try:
        app()
    except SkyledgerError as exc:
        if "--json" in sys.argv[1:]:
            print(json.dumps({"error": str(exc), "kind": type(exc).__name__}))
        else:
            print(f"error: {exc}", file=sys.stderr)  # unwrapped lines, for people and scripts
        raise SystemExit(2) from None
    except KeyboardInterrupt:
        command = sys.argv[1] if len(sys.argv) > 1 else ""
        if command in _RESUMABLE:
            print(
                "interrupted: what was appended is kept (a run is recorded as 'interrupted'); "
                "give the same command again to go on: alerts already in the ledger are not "
                "added again, and each tier takes up from where it stood", file=sys.stderr,
            )  # fmt: skip
        else:
            print("interrupted", file=sys.stderr)
        raise SystemExit(130) from None


_RESUMABLE = ("run", "demo", "replay", "live", "worker", "relay")

if __name__ == "__main__":
    main()
