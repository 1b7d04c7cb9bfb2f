"""The command line: ``skyledger demo | run | stock | units | ledger``.

The CLI only parses arguments, builds settings and hands over to the runners. Every
option with an environment fallback shows it in ``--help``.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from ledger import ConfigError, Ledger, LedgerSettings, SkyledgerError
from ledger.settings import DEFAULT_LEDGER_URL, redact
from runners.job import load_job
from runners.local import LocalRunner, RunSummary
from units import Alert, available_units
from units.sources import FileSource

__all__ = ["app", "main"]

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help=__doc__.split("\n")[0],
)
console = Console(stderr=True)
out = Console()

LedgerOption = Annotated[
    str,
    typer.Option(
        "--ledger", envvar="SKYLEDGER_LEDGER", help="ledger URL: sqlite:///PATH or postgresql://..."
    ),
]
EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _open(url: str) -> Ledger:
    return Ledger.open(LedgerSettings.load(ledger=url))


def _run(
    job_path: Path, sources: list[str], url: str, as_json: bool, workers: int = 1
) -> RunSummary:
    job, text = load_job(job_path)
    file_sources = [FileSource({"paths": sources})] if sources else []
    with (
        _open(url) as ledger,
        Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
            TimeElapsedColumn(), console=console, transient=True, disable=as_json,
        ) as bar,
    ):  # fmt: skip
        tasks: dict[str, Any] = {}

        def progress(stage: str, done: int, total: int | None) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(stage, total=total)
            bar.update(tasks[stage], completed=done, total=total)

        runner = LocalRunner(job, text, ledger, file_sources, progress, workers=workers)
        summary = runner.run()
    if as_json:
        out.print_json(json.dumps(summary.as_dict()))
    else:
        show_summary(summary)
    return summary


def show_summary(summary: RunSummary) -> None:
    """Print a run's summary as a table."""
    table = Table(title=f"run {summary.run_id[:12]} (job {summary.job_hash[:12]})")
    table.add_column("what")
    table.add_column("count", justify="right")
    table.add_row("alerts read", str(summary.alerts))
    table.add_row("unreadable", str(summary.unreadable))
    for reason, n in summary.unreadable_reasons.items():
        table.add_row(f"  {reason}", str(n))
    for source, where in summary.resumed.items():
        after = f"item {where['item']}" + (f", record {where['record']}" if where["record"] else "")
        what = "read after it" if where["read"] else "nothing new after it: read to its end before"
        table.add_row(f"{source}: resumed after {after}; {what}", str(where["read"]))
    for kind, n in sorted(summary.datapoints.items()):
        table.add_row(f"datapoints: {kind}", str(n))
    table.add_row("stocks", str(summary.stocks))
    for channel, made in sorted(summary.decisions.items()):
        table.add_row(f"accepted by {channel}", str(made["accepted"]))
        for code, rejected in made["rejected"].items():
            why = f": {rejected['reason']}" if rejected["reason"] else ""
            table.add_row(f"rejected by {channel}, code {code}{why}", str(rejected["count"]))
    for key, n in summary.states.items():
        table.add_row(f"T1 {key}", str(n))
    for entry, outcomes in summary.results.items():
        for outcome, n in outcomes.items():
            table.add_row(f"T2 {entry} {outcome}", str(n))
    for reactor, counts in summary.reactions.items():
        for key, n in counts.items():
            table.add_row(f"T3 {reactor} {key}", str(n))
    table.add_row("events appended", str(summary.appended))
    out.print(table)
    for unit in summary.changed_units:
        out.print(
            f"[yellow]unit {unit['unit']} {unit['version']}: its code changed without a "
            "new version; its results are computed again[/yellow]"
        )
    for failure in summary.failures:
        on = failure["stock"] or "(no stock)"
        to = f" delivering to {failure['target']}" if failure.get("target") else ""
        out.print(f"[red]{failure['tier']} {failure['unit']} failed on {on}{to}: "
                  f"{failure['error']}[/red]", markup=True, highlight=False)  # fmt: skip
    out.print(f"status: {summary.status}; ledger: {summary.ledger}")


@app.command()
def run(
    job: Annotated[Path, typer.Argument(help="the job file (YAML)")],
    source: Annotated[
        list[str] | None, typer.Option("--source", "-s", help="alert files, folders, archives")
    ] = None,
    ledger: LedgerOption = DEFAULT_LEDGER_URL,
    as_json: Annotated[bool, typer.Option("--json", help="print the summary as JSON")] = False,
    workers: Annotated[
        int,
        typer.Option(
            min=1,
            help="processes for the CPU work of T0 (decoding, shaping, filtering), T1 and "
            "T2; 1: this process only",
        ),
    ] = 1,
) -> None:
    """Run a job locally: all tiers in sequence, with a progress bar and a summary."""
    _run(job, list(source or []), ledger, as_json, workers)


@app.command()
def demo(
    ledger: LedgerOption = DEFAULT_LEDGER_URL,
    as_json: Annotated[bool, typer.Option("--json", help="print the summary as JSON")] = False,
) -> None:
    """Run the example job on real ZTF alerts shipped with skyledger, and write a report."""
    job = EXAMPLES / "demo.yaml"
    data = EXAMPLES / "data" / "ztf"
    _run(job, [str(data)], ledger, as_json)
    if not as_json:
        console.print("report: skyledger-data/report.html (see the demo job for its path)")


@app.command()
def simulate(
    paths: Annotated[list[Path], typer.Argument(help="real alert files, folders, archives")],
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="folder to write (new or empty)")],
    copies: Annotated[int, typer.Option(min=1, help="times each alert is replayed")] = 10,
    shift_days: Annotated[float, typer.Option(help="copy k is moved by k times this")] = 0.0,
    cutouts: Annotated[bool, typer.Option("--cutouts/--no-cutouts")] = True,
    per_file: Annotated[int, typer.Option(min=1, help="alerts per Avro file")] = 1000,
) -> None:
    """Replay real ZTF alerts as new ones (new stocks, new ids, shifted times) into files.

    For a paced live stream, name SimulatedSource with a rate in a job's sources.
    """
    from units.simulate import SimulatedSource, write_alerts

    source = SimulatedSource(
        {"paths": [str(p) for p in paths], "copies": copies, "shift_days": shift_days,
         "cutouts": cutouts}
    )  # fmt: skip
    with Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
        TimeElapsedColumn(), console=console, transient=True,
    ) as bar:  # fmt: skip
        task = bar.add_task("simulating", total=None)

        def alerts() -> Iterator[Alert]:
            for n, packet in enumerate(source.packets(), 1):
                bar.update(task, completed=n)
                if isinstance(packet, Alert):
                    yield packet

        try:
            files = write_alerts(alerts(), out_dir, per_file)
        except ValueError as exc:
            raise ConfigError(f"--out {out_dir}: {exc}") from None
    out.print(f"wrote {len(files)} files to {out_dir}")


@app.command()
def stock(
    stock_id: Annotated[str, typer.Argument(metavar="STOCK", help="e.g. ZTF21abiuvdk, lsst:123")],
    ledger: LedgerOption = DEFAULT_LEDGER_URL,
    as_json: Annotated[bool, typer.Option("--json", help="print the view as JSON")] = False,
) -> None:
    """Show a stock: light curve, states, results, reactions and its journal."""
    from projections.queries import stock_view
    from projections.readmodel import ReadModel, readmodel_url

    with _open(ledger) as opened, ReadModel(readmodel_url(opened.settings.ledger)) as model:
        model.create()
        model.catch_up(opened)
        view = stock_view(model, stock_id)
    if view is None:
        raise ConfigError(f"no stock {stock_id!r} in {redact(ledger)}")
    if as_json:
        out.print_json(view.model_dump_json())
        return
    show_stock(view)


def show_stock(view: Any) -> None:
    """Print a stock view as tables."""
    s = view.stock
    out.print(
        f"[bold]{s.stock}[/bold]: {s.n_alerts} alerts, {s.n_detections} detections, "
        f"{s.n_upper_limits} upper limits, {s.n_forced} forced; "
        f"channels: {', '.join(s.channels) or 'none'}"
    )
    curve = Table("jd", "band", "kind", "mag", "err", "limit", title="light curve")
    for d in view.datapoints:
        curve.add_row(
            f"{d.jd:.5f}" if d.jd else "-", d.band or "-", d.kind, _num(d.mag), _num(d.magerr),
            _num(d.limmag),
        )  # fmt: skip
    out.print(curve)
    states = Table("state", "combiner", "datapoints", "at alert", "channels", title="states")
    for st in view.states:
        states.add_row(st.state_id[:12], f"{st.unit}@{st.unit_version}", str(st.n_datapoints),
                       str(st.alert_position or "-"), ", ".join(st.channels))  # fmt: skip
    out.print(states)
    results = Table("result", "unit", "status", "body or error", title="results")
    for r in view.results:
        what = json.dumps(r.body)[:90] if r.status == "ok" else (r.error or "")[:90]
        results.add_row(r.result_id[:12], f"{r.unit}@{r.unit_version}", r.status, what)
    out.print(results)
    if view.reactions:
        reactions = Table("key", "unit", "target", "status", "attempts", title="reactions")
        for x in view.reactions:
            reactions.add_row(x.idempotency_key[:16], x.unit, x.target, x.status, str(x.attempts))
        out.print(reactions)
    journal = Table("position", "time", "event", "summary", title="journal")
    for j in view.journal[-40:]:
        journal.add_row(str(j.position), j.time.strftime("%Y-%m-%d %H:%M:%S"), j.event_type,
                        j.summary[:80])  # fmt: skip
    out.print(journal)


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


@app.command()
def units() -> None:
    """List the units that jobs can name (installed through entry points or registered)."""
    table = Table("unit", "defined in")
    for name, where in available_units().items():
        table.add_row(name, where)
    out.print(table)


@app.command("ledger")
def ledger_info(ledger: LedgerOption = DEFAULT_LEDGER_URL) -> None:
    """Show where the ledger is and how many events it holds."""
    with _open(ledger) as opened:
        out.print(f"{opened.url}: {opened.backend}, head position {opened.head()}")


def main() -> None:
    """Run the CLI; errors of ours are shown as one clear line and exit code 2."""
    try:
        app()
    except SkyledgerError as exc:
        print(f"error: {exc}", file=sys.stderr)  # one unwrapped line, for people and scripts
        raise SystemExit(2) from None
