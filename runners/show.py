"""What the commands print for people: tables of a run's summary, a stock, runs, failures,
configurations and units. (``--json`` prints the same data as JSON instead.)"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

if TYPE_CHECKING:  # the command line imports this module on every start: keep it light
    from skyledger.projections.lineage import Lineage, Step
    from skyledger.projections.queries import (
        ConfigRow,
        JournalRow,
        ReactionRow,
        ResultRow,
        RunView,
        StateRow,
        StockRow,
        StockView,
    )
    from skyledger.runners.summary import RunSummary

__all__ = [
    "BODY_CHARS",
    "JOURNAL_LINES",
    "show_configs",
    "show_failures",
    "show_journal",
    "show_lineage",
    "show_options",
    "show_reactions",
    "show_results",
    "show_runs",
    "show_stock",
    "show_stocks",
    "show_summary",
    "show_units",
]

BODY_CHARS = 120
"""Characters of a result's body shown in a table without ``--full``."""
JOURNAL_LINES = 40
"""Journal lines shown without ``--journal N`` or ``--full``."""


def _replayed(row: Callable[..., None], replay: dict[str, Any]) -> None:
    """Add a replay's limits and what its decisions went over to a summary table."""
    limits = replay["limits"]
    bounds = [f"{k} {limits[k]}" for k in ("since", "until") if limits[k] is not None]
    if limits["stocks"] is not None:
        n = len(limits["stocks"])
        bounds.append(f"{n} stock{'' if n == 1 else 's'}")
    row("replayed over", escape(", ".join(bounds) or "the whole ledger"))
    row("  channels", escape(", ".join(replay["channels"])))
    row("  alerts read by the decisions (0: filters unchanged)",
        str(replay["alerts_gone_over"]))  # fmt: skip
    reshaped = replay.get("reshaped")
    if reshaped:
        shapers = ", ".join(f"{k} {v}" for k, v in reshaped["shapers"].items())
        row(f"  alerts shaped again ({escape(shapers)})", str(reshaped["alerts"]))
        row("    their datapoints", str(reshaped["datapoints"]))
        if reshaped["failed"]:
            row("    the shaper failed on", str(reshaped["failed"]))
    row("  reactions", "delivered" if replay["deliver"] else "recorded, not delivered")


def _ingested(row: Callable[..., None], summary: RunSummary, below: list[str]) -> None:
    """Add what a run's ingest read and what the ledger gained of it to a summary table;
    what names paths (sources, unreadable inputs) and notes go ``below`` it, as lines
    never wrapped, whatever the terminal's width or the path's length."""
    alerts, bad = summary.alerts, summary.unreadable
    row("alerts read", str(alerts["read"]))
    if alerts["new"] is not None:
        row("  new to the ledger", str(alerts["new"]))
        row("  in the ledger already", str(alerts["already_in_ledger"]))
    for i, source in enumerate(summary.sources, start=1):
        resumed = source["resumed_after"]
        if resumed is not None:
            at = f"item {resumed['item']}" + (
                f", record {resumed['record']}" if resumed["record"] else ""
            )
            row(f"  resumed source {i} after {at}", str(source["read"]))
            below.append(f"source {i}: {source['source']}")
    partitions = list(summary.partitions.items())
    for partition, offset in partitions[:8]:
        _, topic, number = partition.rsplit(":", 2)  # kafka:<cluster id>:<topic>:<number>
        row(f"  resumed {escape(topic)}/{number} at offset {offset}", "")
    if len(partitions) > 8:
        row(f"  and {len(partitions) - 8} more partitions resumed (--json lists them)", "")
    below += [f"note: {note}" for note in summary.notes]
    row("unreadable", str(bad["read"]))
    for reason, n in bad["reasons"].items():
        row(f"  {escape(reason)}", str(n))
    below += [f"unreadable: {where}" for where in bad["inputs"]]
    if bad.get("inputs_not_shown"):
        more = bad["inputs_not_shown"]
        below.append(f"unreadable: and {more} more (--json lists the first ones)")
    for kind, counts in summary.datapoints.items():
        row(f"datapoints new to their stock: {kind}", str(counts["new"]))
        if counts["new_bodies"]:
            row(f"  new bodies of {kind}s the stock had", str(counts["new_bodies"]))
    row("stocks", str(summary.stocks))


def show_summary(out: Console, summary: RunSummary) -> None:
    """Print a run's summary as a table (the facts first, then the tiers' work)."""
    what = "run" if summary.variant is None else f"replay as variant {summary.variant}:"
    table = Table(title=f"{what} {summary.run_id[:12]} (job {summary.job_hash[:12]})")
    table.add_column("what")
    table.add_column("count", justify="right")
    row = table.add_row
    below: list[str] = []
    if summary.replay is not None:
        _replayed(row, summary.replay)
    else:
        _ingested(row, summary, below)
    decided = summary.replay is None or summary.replay["alerts_gone_over"]
    for channel, made in sorted(summary.decisions.items()) if decided else ():
        row(f"accepted by {channel}", str(made["accepted"]))
        for code, rejected in made["rejected"].items():
            row(f"rejected by {channel}: {code}, {escape(rejected['reason'])}",
                str(rejected["count"]))  # fmt: skip
    states = summary.states
    if states:
        row("T1 alerts combined", str(states["alerts"]))
        row("T1 states new", str(states["new"]))
        if states["made_before"]:
            row("T1 states made before", str(states["made_before"]))
    for entry, outcomes in summary.results.items():
        for outcome, n in outcomes.items():
            row(f"T2 {entry}: {outcome}", str(n))
    names = [r["reactor"] for r in summary.reactions]
    for reactor in summary.reactions:
        label = reactor["reactor"]
        if names.count(label) > 1:  # the same reactor in two entries: say which
            label += f" (t3 entry {reactor['index']})"
        for key, n in reactor.items():
            if key not in ("reactor", "index") and n:
                row(f"T3 {label}: {key.replace('_', ' ')}", str(n))
    row("events appended", str(summary.appended))
    out.print(table)
    for line in below:
        out.print(escape(line), highlight=False, soft_wrap=True)
    for unit in summary.changed_units:
        out.print(
            f"[yellow]unit {unit['unit']} {unit['version']}: its code changed without a "
            "new version; its results are computed again[/yellow]"
        )
    for failure in summary.failures:
        on = failure["stock"] or "(no stock)"
        to = f" delivering to {failure['target']}" if failure.get("target") else ""
        out.print(f"[red]{failure['tier']} {escape(failure['unit'])} failed on {escape(on)}"
                  f"{escape(to)}: {escape(failure['error'])}[/red]", highlight=False)  # fmt: skip
    out.print(f"status: {summary.status}; ledger: {summary.ledger}", highlight=False)


def _id(value: str, whole: bool, width: int = 12) -> str:
    return value if whole else value[:width]


def _place(s: StockRow) -> str:
    if s.ra is None or s.dec is None:
        return "no position"
    return f"RA {s.ra:.6f}, Dec {s.dec:+.6f}"


def show_stock(
    out: Console, view: StockView, full: bool = False, journal: int = 0, whole_ids: bool = False
) -> None:
    """Print a stock: light curve, states, results (unit entry, version, configuration,
    the state it is about, the body), reactions and journal. Without ``full``, bodies are
    cut at :data:`BODY_CHARS` and the journal shows its last ``journal`` lines, and the
    tables say so; ids are cut to 12 characters unless ``whole_ids``."""
    s = view.stock
    channels = ", ".join(s.channels) or "none"
    out.print(
        f"[bold]{s.stock}[/bold] ({_place(s)}): {s.n_alerts} alerts, {s.n_detections} "
        f"detections, {s.n_upper_limits} upper limits, {s.n_forced} forced; channels: "
        f"{channels}", highlight=False,
    )  # fmt: skip
    curve = Table("jd", "band", "kind", "mag", "err", "limit", title="light curve")
    for d in view.datapoints:
        curve.add_row(
            _jd(d.jd), d.band or "-", d.kind, _num(d.mag), _num(d.magerr), _num(d.limmag)
        )  # fmt: skip
    out.print(curve)
    if view.upper_limits:
        limits = Table("jd", "band", "limiting mag", title="upper limits")
        for d in view.upper_limits:
            limits.add_row(_jd(d.jd), d.band or "-", _num(d.limmag))
        out.print(limits)
    states = Table("state", "combiner", "datapoints", "at alert", "channels", "left out",
                   title="states")  # fmt: skip
    for st in view.states:
        states.add_row(_id(st.state_id, whole_ids), f"{st.unit}@{st.unit_version}",
                       str(st.n_datapoints), str(st.alert_position or "-"),
                       ", ".join(st.channels), _left_out(st))  # fmt: skip
    out.print(states)
    late = sum(1 for st in view.states if st.late)
    if late:
        out.print(f"{late} states marked LATE lack datapoints observed before their alert "
                  "that reached the ledger after it, in packets received later")  # fmt: skip
    cut = 0
    results = Table("result", "entry", "unit", "configuration", "about", "status", "body or error",
                    title="results")  # fmt: skip
    for r in view.results:
        text = json.dumps(r.body) if r.status == "ok" else (r.error or "")
        if not full and len(text) > BODY_CHARS:
            text, cut = text[:BODY_CHARS] + " …", cut + 1
        results.add_row(
            _id(r.result_id, whole_ids), ", ".join(r.entries) or r.unit,
            f"{r.unit}@{r.unit_version}", _config(r), _about(r, view.stock.stock, whole_ids),
            r.status, escape(text),
        )  # fmt: skip
    out.print(results)
    if cut:
        out.print(f"{cut} bodies cut at {BODY_CHARS} characters: --full shows them whole, "
                  "--json too")  # fmt: skip
    if view.reactions:
        reactions = Table("key", "unit", "target", "status", "attempts", title="reactions")
        for x in view.reactions:
            reactions.add_row(_id(x.idempotency_key, whole_ids, 16), x.unit, x.target, x.status,
                              str(x.attempts))  # fmt: skip
        out.print(reactions)
    lines = view.journal if full or journal <= 0 else view.journal[-journal:]
    show_journal(out, lines)
    if len(lines) < len(view.journal):
        out.print(f"the last {len(lines)} of {len(view.journal)} journal lines: "
                  "--journal N shows more, --full all")  # fmt: skip


def show_journal(out: Console, lines: Sequence[JournalRow]) -> None:
    """Print journal lines a line each (position, time, event type, summary), never
    wrapped: a summary names paths and ids whole, whatever the terminal's width."""
    out.print("[bold]journal[/bold] (position, time, event, summary)", highlight=False)
    at = max((len(str(j.position)) for j in lines), default=0)
    kind = max((len(j.event_type) for j in lines), default=0)
    for j in lines:
        when = j.time.strftime("%Y-%m-%d %H:%M:%S")
        out.print(escape(f"{j.position:>{at}}  {when}  {j.event_type:<{kind}}  {j.summary}"),
                  highlight=False, soft_wrap=True)  # fmt: skip


def _left_out(st: StateRow) -> str:
    """Return what a state lacks: datapoints its combiner set aside, by reason, and
    those that came late."""
    parts = [f"{n} {why.replace('_', ' ')}" for why, n in (st.set_aside or {}).items()]
    if st.late:
        parts.append(f"LATE: {st.late}")
    return ", ".join(parts) or "-"


def _config(r: ResultRow) -> str:
    if r.config_values is None:
        return r.config[:12]
    return escape(json.dumps(r.config_values, sort_keys=True)) or "{}"


def _about(r: ResultRow, stock: str, whole_ids: bool = False) -> str:
    if r.subject == stock:
        return "the stock"
    if r.state_alert_position is not None:
        return f"state {_id(r.subject, whole_ids)} (alert at {r.state_alert_position})"
    return _id(r.subject, whole_ids)


def _jd(value: float | None) -> str:
    return f"{value:.5f}" if value else "-"


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def show_runs(out: Console, runs: Sequence[RunView]) -> None:
    """Print runs: id, start, job name, variant, status and what each appended (--json
    has the job's hash and text, the host and the rest)."""
    table = Table("run", "started (UTC)", "job", "variant", "status", "alerts new", "events",
                  title="runs, latest first")  # fmt: skip
    for r in runs:
        started = r.started.strftime("%Y-%m-%d %H:%M:%S") if r.started else "-"
        alerts = (r.summary or {}).get("alerts", {})
        new = alerts.get("new") if isinstance(alerts, dict) else None
        status = r.status
        if status == "gone" and r.last_seen is not None:
            status = f"gone (last seen {r.last_seen:%Y-%m-%d %H:%M:%S})"
        table.add_row(r.run_id[:12], started, escape(r.job_name or "?"),
                      escape(r.variant or "-"), status, "-" if new is None else str(new),
                      str(sum(r.counts.values())))  # fmt: skip
    out.print(table)


def show_stocks(out: Console, rows: Sequence[StockRow], whole_ids: bool = False) -> None:
    """Print a page of stocks: id, position, counts, last change and channels."""
    table = Table(title="stocks")
    table.add_column("stock", no_wrap=True)
    for head in ("RA", "Dec", "alerts", "det.", "limits", "changed"):
        table.add_column(head, justify="right", no_wrap=True)
    table.add_column("channels")
    for s in rows:
        table.add_row(
            escape(s.stock), "-" if s.ra is None else f"{s.ra:.6f}",
            "-" if s.dec is None else f"{s.dec:+.6f}", str(s.n_alerts), str(s.n_detections),
            str(s.n_upper_limits), str(s.last_position), escape(", ".join(s.channels)),
        )  # fmt: skip
    out.print(table)


def show_results(
    out: Console, rows: Sequence[ResultRow], path: str | None, whole_ids: bool = False
) -> None:
    """Print a page of results: id, stock, unit, the value (if one was asked for), what
    it is about and where in the ledger (``--json`` gives the bodies)."""
    table = Table(title="results")
    for head in ("result", "stock", "unit", *([path] if path else []), "about", "position"):
        table.add_column(head, no_wrap=True, justify="right" if head == path else "left")
    for r in rows:
        value = [f"{r.value:.6g}" if r.value is not None else "-"] if path else []
        shown = r.error or "" if r.status == "failed" else ""
        table.add_row(
            _id(r.result_id, whole_ids), escape(r.stock), f"{r.unit}@{r.unit_version}", *value,
            _about(r, r.stock, whole_ids) + (f" {escape(shown[:60])}" if shown else ""),
            str(r.position),
        )  # fmt: skip
    out.print(table)


def show_reactions(out: Console, rows: Sequence[ReactionRow], whole_ids: bool = False) -> None:
    """Print a page of reactions: key, stock, unit, target, status, attempts, channels."""
    table = Table(title="reactions")
    for head in ("reaction", "stock", "unit", "target", "status", "attempts", "channels",
                 "position"):  # fmt: skip
        table.add_column(head, no_wrap=True, justify="right" if head == "attempts" else "left")
    for x in rows:
        table.add_row(
            _id(x.idempotency_key, whole_ids), escape(x.stock or "(several)"), escape(x.unit),
            escape(x.target), escape(x.status), str(x.attempts),
            escape(", ".join(x.channels or ())), str(x.position),
        )  # fmt: skip
    out.print(table)


def show_failures(out: Console, results: Sequence[ResultRow]) -> None:
    """Print failed results, each with its unit, stock, error and traceback."""
    if not results:
        out.print("no failed results")
    for r in results:
        entry = ", ".join(r.entries) or r.unit
        out.rule(f"{entry} ({r.unit}@{r.unit_version}) on {r.subject[:12]}, stock {r.stock}")
        attempts = f"attempt {r.attempt}" if r.attempt else "not attempted"
        retry = "given up" if r.retry_after_s is None else f"retry after {r.retry_after_s} s"
        out.print(f"result {r.result_id}: {attempts}, {retry}", highlight=False)
        out.print(escape(r.error or ""), highlight=False)
        if r.traceback:
            out.print(escape(r.traceback.rstrip()), highlight=False)


def show_configs(out: Console, configs: Sequence[ConfigRow]) -> None:
    """Print configurations: hash, unit and values."""
    for c in configs:
        out.print(f"{c.config_hash} {c.unit}", highlight=False)
        out.print_json(json.dumps(c.config, sort_keys=True))


def show_options(out: Console, described: dict[str, Any]) -> None:
    """Print one unit: tier, version, description and a table of its options."""
    out.print(f"{described['unit']} ({described['tier']}, version {described['version']})",
              highlight=False)  # fmt: skip
    if described["description"]:
        out.print(escape(described["description"]), highlight=False)
    table = Table("option", "type", "default", "description", title="options")
    for o in described["options"]:
        default = "(required)" if o.get("required") else json.dumps(o.get("default"))
        table.add_row(o["option"], escape(o["type"]), escape(default), escape(o["description"]))
    out.print(table)


def show_units(out: Console, rows: Sequence[dict[str, Any]]) -> None:
    """Print the units jobs can name, a line each (never cut, for grep): name, tier,
    version, package and where defined."""
    heads = ("unit", "tier", "version", "package", "defined in")
    lines = [heads] + [
        (r["unit"], r["tier"], r["version"], r["package"], r["defined_in"]) for r in rows
    ]
    widths = [max(len(line[i]) for line in lines) for i in range(len(heads) - 1)]
    for line in lines:
        cells = [cell.ljust(width) for cell, width in zip(line, widths, strict=False)]
        out.print(escape("  ".join([*cells, line[-1]])), highlight=False, soft_wrap=True)
    for r in rows:
        if "error" in r:
            out.print(f"{r['unit']}: {escape(r['error'])}", highlight=False, soft_wrap=True)


def show_lineage(out: Console, found: Lineage, packages: bool = False) -> None:
    """Print a lineage: the tree of events (what each is, position, time, run, and the
    unit, version, code digest, configuration and duration that made it), then the
    configurations in full and the runs (job hash and text, host, user, command, and the
    package versions with ``packages``, else their count)."""
    # Drawn line by line, never wrapped: a long path stays whole on its line (a terminal
    # folds it), whatever its length.
    stack: list[tuple[Step, str, str]] = [(found.root, "", "")]  # step, first, then
    while stack:
        step, first, then = stack.pop()
        head, where = _step_label(step, found)
        out.print(escape(first) + head, highlight=False, soft_wrap=True)
        if where:
            out.print(escape(then) + f"[dim]{where}[/dim]", highlight=False, soft_wrap=True)
        last = len(step.causes) - 1
        for i, cause in reversed(list(enumerate(step.causes))):
            more = "    " if i == last else "│   "
            stack.append((cause, then + ("└── " if i == last else "├── "), then + more))
    out.print(f"{found.steps} events; {len(found.packets)} packets; "
              f"{len(found.configs)} configurations; {len(found.runs)} runs")  # fmt: skip
    for config_hash, c in found.configs.items():
        units = escape(", ".join(c.units))
        out.print(
            f"[bold]configuration[/bold] {config_hash} of {units}", highlight=False, soft_wrap=True
        )
        values = (
            "(not registered in this ledger)"
            if c.config is None
            else json.dumps(c.config, sort_keys=True)
        )
        out.print(escape(values), highlight=False, soft_wrap=True)
    for r in found.runs.values():
        if not r.found:
            out.print(
                f"[bold]run[/bold] {r.run}: no RunStarted in this ledger",
                highlight=False,
                soft_wrap=True,
            )
            continue
        started = r.started.strftime("%Y-%m-%d %H:%M:%S") if r.started else "?"
        what = "run" if r.variant is None else f"replay as variant {escape(r.variant)}:"
        out.print(
            f"[bold]{what}[/bold] {r.run} started {started} UTC by {escape(r.user)} on "
            f"{escape(r.host)}, {r.status or 'not finished'}; job {r.job_hash}",
            highlight=False,
            soft_wrap=True,
        )
        out.print(escape("  " + " ".join(r.argv)), highlight=False, soft_wrap=True)
        out.print(escape(r.job_text.rstrip()), highlight=False, soft_wrap=True)
        if packages:
            listed = ", ".join(f"{k}=={v}" for k, v in r.packages.items())
            out.print(escape(f"packages: {listed}"), highlight=False, soft_wrap=True)
        else:
            out.print(
                f"{len(r.packages)} packages (--packages lists them)",
                highlight=False,
                soft_wrap=True,
            )


def _step_label(step: Step, found: Lineage) -> tuple[str, str]:
    """Return a step's two lines (markup): what it is, then where, when and what made it
    (empty for a step shown above or missing)."""
    head = f"[bold]{step.type}[/bold] {escape(step.what)}"
    if step.missing:
        return f"{head} {step.id}", ""
    if step.shown_above:  # its id, not its words again
        return f"[bold]{step.type}[/bold] {step.id[:12]} [dim](shown above)[/dim]", ""
    where = f"{step.id[:12]} at {step.position} {step.time:%Y-%m-%d %H:%M:%S}"
    if step.run:
        where += f" run {step.run[:12]}"
    made = step.made_by
    if made is not None:
        where += (
            f" by {escape(made.unit)}@{escape(made.version)} code {made.code_digest[:12]}"
            f" config {made.config[:12]} in {made.duration_s * 1000:.1f} ms"
        )
    digest = step.fields.get("digest")
    if step.type == "AlertReceived" and isinstance(digest, str) and digest in found.packets:
        size = found.packets[digest].size
        kept = "digest only" if size is None else f"{size:,} bytes"
        where += f"; packet {digest[:16]} ({kept}) from {escape(str(step.fields.get('source')))}"
    return head, where
