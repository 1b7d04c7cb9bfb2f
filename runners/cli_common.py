"""What the command line's modules share: the consoles, common options, opening a ledger
and its read model, printing JSON and reading positions or times."""

from __future__ import annotations

import importlib
import json
import os
import sys
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console

if TYPE_CHECKING:
    from skyledger.ledger import Ledger
    from skyledger.projections.readmodel import ReadModel

__all__ = [
    "DEFAULT_NATS_URL",
    "PIPED",
    "AsOfOption",
    "CursorOption",
    "ImportOption",
    "JsonOption",
    "LedgerOption",
    "LimitOption",
    "NatsOption",
    "PrefixOption",
    "console",
    "import_modules",
    "model_of",
    "open_ledger",
    "out",
    "page_end",
    "position_of",
    "print_json",
    "read_model",
]

console = Console(stderr=True)
PIPED = not sys.stdout.isatty() and not os.environ.get("COLUMNS")
"""Output goes to a file or a program and no width was asked for: nothing is wrapped,
ids are printed whole. (On a terminal, or with COLUMNS set, tables fit the width.)"""
out = Console(width=100_000 if PIPED else None)

LimitOption = Annotated[int, typer.Option(min=1, max=1000, help="rows per page")]
CursorOption = Annotated[
    str | None, typer.Option("--cursor", help="the next page: the cursor the last page gave")
]


def page_end(page: Any, what: str) -> None:
    """Say where a page was read and how to get the next one."""
    out.print(f"{len(page.items)} {what}, as of position {page.position}", highlight=False)
    if page.next:
        out.print(f"next page: --cursor {page.next}", highlight=False, soft_wrap=True)


LedgerOption = Annotated[
    str,
    typer.Option(
        "--ledger",
        envvar="SKYLEDGER_LEDGER",
        help="the ledger: sqlite:///PATH, a plain file path (SQLite), or "
        "postgresql://USER:PASSWORD@HOST:PORT/DB",
    ),
]
JsonOption = Annotated[
    bool, typer.Option("--json", help="print JSON for machines instead of tables (errors too)")
]

ImportOption = Annotated[
    list[str] | None,
    typer.Option(
        "--import",
        help="a module to import first, for units it registers that are not installed "
        "as entry points (repeat for more)",
    ),
]


def import_modules(modules: list[str] | None) -> None:
    """Import the modules of ``--import`` (ConfigError for one that cannot be imported)."""
    from skyledger.ledger.errors import ConfigError

    for module in modules or []:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise ConfigError(f"--import {module}: {exc}") from None


AsOfOption = Annotated[
    str | None,
    typer.Option(
        "--as-of",
        metavar="POSITION|TIME",
        help="as the ledger held it at a position, or at a time (ISO 8601; UTC if no zone)",
    ),
]


def position_of(ledger: Ledger, option: str, value: str | None) -> int | None:
    """Return a --as-of or --since as a position (a time: the ledger's position then)."""
    from skyledger.ledger.when import position_or_time

    when = None if value is None else position_or_time(option, value)
    if when is None or isinstance(when, int):
        return when
    return ledger.position_at(when)


def open_ledger(url: str, create: bool = True) -> Ledger:
    """Open a ledger (making it, if ``create``)."""
    from skyledger.ledger import Ledger, LedgerSettings

    return Ledger.open(LedgerSettings.load(ledger=url), create=create)


def print_json(data: Any) -> None:
    """Print data as JSON on standard output."""
    out.print_json(json.dumps(data, default=str))


def read_model(url: str) -> tuple[Ledger, ReadModel]:
    """Open an existing ledger (never making one) and its read model, caught up."""
    ledger = open_ledger(url, create=False)
    return ledger, model_of(ledger)


def model_of(ledger: Ledger) -> ReadModel:
    """Return a ledger's read model, caught up."""
    from skyledger.projections.readmodel import ReadModel, readmodel_url

    model = ReadModel(readmodel_url(ledger.settings.ledger))
    model.create()
    model.catch_up(ledger)
    return model


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
