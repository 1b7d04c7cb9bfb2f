"""The command line: skyledger run, demo, simulate, stock, runs, failures, config, units,
ledger. It parses arguments, builds settings and hands over to the runners; what it
prints for people is in runners.show. Every command takes --json (errors included) and
-h; options with an environment fallback show it in their help."""

from __future__ import annotations

import contextlib
import datetime as dt
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

from ledger.errors import ConfigError, NotFound, SkyledgerError
from ledger.settings import DEFAULT_LEDGER_URL, redact
from ledger.when import position_or_time
from runners.cli_api import access_app, serve, token_app
from runners.cli_common import (
    PIPED,
    AsOfOption,
    CursorOption,
    ImportOption,
    JsonOption,
    LedgerOption,
    LimitOption,
    console,
    import_modules,
    open_ledger,
    out,
    page_end,
    position_of,
    print_json,
    read_model,
)
from runners.cli_query import reactions, runs, why
from runners.show import (
    JOURNAL_LINES,
    show_configs,
    show_diff,
    show_failures,
    show_options,
    show_results,
    show_stock,
    show_stocks,
    show_summary,
    show_units,
)

# The store, the read model and the units are imported by the commands that use them:
# every command (and --version, -h) starts in a fraction of a second.
if TYPE_CHECKING:
    from ledger import Ledger
    from runners.metrics import LiveMetrics
    from runners.summary import RunSummary
    from units import Alert

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
NatsOption = Annotated[
    str,
    typer.Option("--nats", envvar="SKYLEDGER_NATS", help="the NATS server: nats://HOST:PORT"),
]
PrefixOption = Annotated[
    str,
    typer.Option(
        "--prefix",
        envvar="SKYLEDGER_BUS_PREFIX",
        help="names of skyledger's streams and subjects on NATS (one per deployment)",
    ),
]
DEFAULT_NATS_URL = "nats://127.0.0.1:4222"
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
    from runners.job import load_job
    from runners.local import LocalRunner
    from units.contracts import StreamSource
    from units.sources import FileSource

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
    from projections.limits import Limits
    from runners.job import load_job
    from runners.replay import ReplayRunner, only_channels

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
    from projections.diff import diff
    from runners.replay import side_of

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
    from runners.simulate import SimulatedSource, write_alerts
    from units import Alert

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
            from runners.kafka import KafkaTarget, kafka_packet, publish_kafka

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

            from runners.bus import Bus
            from runners.live import publish_packets

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


@app.command()
def stock(
    stock_id: Annotated[str, typer.Argument(metavar="STOCK", help="e.g. ZTF21abiuvdk, lsst:123")],
    ledger: LedgerOption = DEFAULT_LEDGER_URL,
    as_json: JsonOption = False,
    full: Annotated[
        bool, typer.Option("--full", help="show result bodies whole and the whole journal")
    ] = False,
    journal: Annotated[
        int, typer.Option(min=0, help="journal lines to show, the latest (0: all)")
    ] = JOURNAL_LINES,
    as_of: AsOfOption = None,
    variant: Annotated[
        str | None, typer.Option("--variant", help="only the results of this variant's entries")
    ] = None,
) -> None:
    """Show a stock: light curve, states, results (entry, version, configuration, the state
    they are about, body), reactions and its journal; with --as-of, as they stood then.
    STOCK may be any unique start of a stock's id."""
    from projections import queries
    from projections.asof import stock_as_of
    from projections.listing import variant_keys
    from projections.prefixes import expand

    when = _as_of(as_of)
    position: int | None = None
    opened, model = read_model(ledger)
    with opened, model:
        view = queries.stock_view(model, stock_id)
        if view is None:
            with contextlib.suppress(NotFound):  # else: no such stock, said below
                _, stock_id = expand(model, stock_id, ["stock"])
                view = queries.stock_view(model, stock_id)
        mine = None if variant is None else variant_keys(model, variant)
        if when is not None:
            position = when if isinstance(when, int) else opened.position_at(when)
            position = min(position, opened.head())
            if view is not None:
                keys = [r.idempotency_key for r in view.reactions]
                view = stock_as_of(opened, stock_id, position, keys)
    then = "" if position is None else f" as of position {position}"
    if position is not None and not isinstance(when, int):
        then += f" ({as_of})"
    if view is None:
        raise ConfigError(f"no stock {stock_id!r} in {redact(ledger)}{then}")
    if mine is not None:
        kept = tuple(r for r in view.results if r.key() in mine)
        view = view.model_copy(update={"results": kept})
    if as_json:
        data = view.model_dump(mode="json")
        print_json(data if position is None else {"as_of": position, **data})
        return
    if position is not None:
        out.print(f"{stock_id}{then}: what the ledger held then", highlight=False)
    show_stock(out, view, full, journal, whole_ids=PIPED)


@app.command()
def stocks(
    ledger: LedgerOption = DEFAULT_LEDGER_URL,
    as_json: JsonOption = False,
    channel: Annotated[str | None, typer.Option(help="only stocks this channel follows")] = None,
    cone: Annotated[
        tuple[float, float, float] | None,
        typer.Option(metavar="RA DEC RADIUS", help="within RADIUS arcseconds of RA, DEC (deg)"),
    ] = None,
    since: Annotated[
        str | None,
        typer.Option(metavar="POSITION|TIME", help="only stocks changed after this"),
    ] = None,
    order: Annotated[
        str | None,
        typer.Option(help="last_change (latest first), stock, or distance (a cone's default)"),
    ] = None,
    variant: Annotated[
        str | None, typer.Option(help="only stocks a channel of this replay's variant accepted")
    ] = None,
    as_of: AsOfOption = None,
    cursor: CursorOption = None,
    limit: LimitOption = 50,
) -> None:
    """List stocks by channel, position on the sky, time of their last change and variant,
    a page at a time, each page as of one ledger position (pages never shift as the ledger
    grows)."""
    from projections.listing import StockQuery, list_stocks

    opened, model = read_model(ledger)
    with opened, model:
        query = StockQuery.parse({
            "channel": channel, "since": position_of(opened, "--since", since), "order": order,
            "variant": variant,
            **(dict(zip(("ra", "dec", "radius_arcsec"), cone, strict=True)) if cone else {}),
        })  # fmt: skip
        page = list_stocks(model, opened, query, as_of=position_of(opened, "--as-of", as_of),
                           cursor=cursor, limit=limit)  # fmt: skip
    if as_json:
        print_json(page.model_dump(mode="json"))
        return
    show_stocks(out, page.items, whole_ids=PIPED)
    page_end(page, "stocks")


@app.command()
def results(
    ledger: LedgerOption = DEFAULT_LEDGER_URL,
    as_json: JsonOption = False,
    entry: Annotated[str | None, typer.Option(help="a job's T2 entry name")] = None,
    unit: Annotated[str | None, typer.Option(help="a T2 unit's name")] = None,
    variant: Annotated[str | None, typer.Option(help="a replay's variant")] = None,
    channel: Annotated[str | None, typer.Option(help="only this channel's results")] = None,
    stock_id: Annotated[str | None, typer.Option("--stock", help="only this stock's")] = None,
    path: Annotated[
        str | None, typer.Option(help="a number in the body to sort by: keys joined by dots")
    ] = None,
    low: Annotated[float | None, typer.Option("--min", help="the value at least this")] = None,
    high: Annotated[float | None, typer.Option("--max", help="the value at most this")] = None,
    ascending: Annotated[
        bool, typer.Option("--ascending", help="smallest value first (default: largest)")
    ] = False,
    latest: Annotated[
        bool, typer.Option("--latest", help="each stock's latest result only")
    ] = False,
    failed: Annotated[bool, typer.Option("--failed", help="failed results instead")] = False,
    as_of: AsOfOption = None,
    cursor: CursorOption = None,
    limit: LimitOption = 50,
) -> None:
    """List T2 results by entry, variant, channel and a value in their bodies (a range,
    sorted either way), a page at a time, each page as of one ledger position."""
    from projections.listing import ResultQuery, list_results

    opened, model = read_model(ledger)
    with opened, model:
        query = ResultQuery.parse({
            "entry": entry, "unit": unit, "variant": variant, "channel": channel,
            "stock": stock_id, "path": path, "min": low, "max": high, "latest": latest,
            "order": "asc" if ascending else "desc", "status": "failed" if failed else "ok",
        })  # fmt: skip
        page = list_results(model, query, as_of=position_of(opened, "--as-of", as_of),
                            cursor=cursor, limit=limit)  # fmt: skip
    if as_json:
        print_json(page.model_dump(mode="json"))
        return
    show_results(out, page.items, path, whole_ids=PIPED)
    page_end(page, "results")


def _as_of(value: str | None) -> int | dt.datetime | None:
    """Return --as-of as a position or an aware time, or refuse it, naming the option."""
    return None if value is None else position_or_time("--as-of", value)


app.command()(runs)


@app.command()
def failures(
    ledger: LedgerOption = DEFAULT_LEDGER_URL,
    as_json: JsonOption = False,
    stock_id: Annotated[
        str | None, typer.Option("--stock", help="only this stock's failures")
    ] = None,
    run_id: Annotated[str | None, typer.Option("--run", help="only this run's failures")] = None,
    limit: Annotated[int, typer.Option(min=1, help="the latest failures to show")] = 20,
) -> None:
    """List T2 results that failed, with their errors and tracebacks."""
    from projections import queries
    from projections.prefixes import expand

    opened, model = read_model(ledger)
    with opened, model:
        whole = {}
        for kind, given in (("stock", stock_id), ("run", run_id)):
            try:
                whole[kind] = None if given is None else expand(model, given, [kind])[1]
            except NotFound:
                raise ConfigError(f"no {kind} {given!r} in {redact(ledger)}") from None
        stock_id, run_id = whole["stock"], whole["run"]
        found = queries.failed_results(model, stock_id, run_id, limit)
    if as_json:
        print_json([r.model_dump(mode="json") for r in found])
    else:
        show_failures(out, found)


@app.command()
def config(
    config_hash: Annotated[
        str, typer.Argument(metavar="HASH", help="a configuration hash, or its first digits")
    ],
    ledger: LedgerOption = DEFAULT_LEDGER_URL,
    as_json: JsonOption = False,
) -> None:
    """Print a unit configuration recorded under its hash (runs and results show hashes)."""
    from projections import queries

    opened, model = read_model(ledger)
    with opened, model:
        found = queries.find_configs(model, config_hash.lower())
    if not found:
        raise ConfigError(f"no configuration {config_hash!r} in {redact(ledger)}")
    if as_json:
        print_json([c.model_dump(mode="json") for c in found])
    else:
        show_configs(out, found)


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
    from units.registry import describe_options, describe_units

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
    from ledger import LedgerSettings
    from ledger.settings import PostgresTarget

    if not isinstance(LedgerSettings.load(ledger=url).target(), PostgresTarget):
        raise ConfigError(f"--ledger {redact(url)}: live mode needs a PostgreSQL ledger")


@contextmanager
def _metrics(tier: str, port: int, host: str) -> Iterator[LiveMetrics]:
    """Make a live process's metrics, served on ``host:port`` while it runs if a port
    is given."""
    from runners.metrics import LiveMetrics, serve

    metrics = LiveMetrics(tier)
    server = serve(metrics, port, host) if port else None
    try:
        yield metrics
    finally:
        if server is not None:
            server.close()


@app.command()
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
    from runners.bus import Bus
    from runners.live import run_until_signal
    from runners.relay import Relay

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


@app.command()
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
    from runners.bus import Bus
    from runners.live import run_until_signal
    from runners.tiers import TIERS
    from runners.worker import TierWorker

    if tier not in TIERS:
        raise ConfigError(f"TIER {tier!r}: one of {', '.join(TIERS)}")
    import_modules(imports)
    from runners.job import load_job

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


@app.command()
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

    from runners.job import load_job
    from runners.live import TierLag, run_live
    from runners.tiers import TIERS

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
