"""ReportReactor: one HTML (and optionally Markdown) report of the selected stocks, ranked."""

from __future__ import annotations

import heapq
from collections.abc import Iterable
from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field

from skyledger.ledger.errors import UnitError
from skyledger.units.base import UnitConfig
from skyledger.units.contracts import Reactor
from skyledger.units.photometry import lightcurve_rows, lightcurve_summary
from skyledger.units.t3.common import reaction_key, result_value, write_atomic
from skyledger.units.t3.render import plot_png, render_html, render_markdown
from skyledger.units.views import Reaction, StockSummary

__all__ = ["ReportReactor"]


class ReportReactor(Reactor):
    """Writes one self-contained report of the selected stocks, ranked by a result value.

    ``react`` is pure: it ranks the stocks and puts everything the report shows into the
    payload of ONE reaction (nothing when no stock is left after ``min_value`` and
    ``limit``). ``deliver`` renders that payload (one light-curve plot per candidate,
    its features table and the score's reasons) and replaces the file atomically.
    The key hashes the reactor, its version, the path and the payload, so the same
    stocks with the same results give the same key.
    """

    version: ClassVar[str] = "1.0"
    scope: ClassVar[Literal["state", "selection"]] = "selection"

    class Config(UnitConfig):
        """Options of the report."""

        path: str = Field("skyledger-report.html", min_length=1, description="HTML file to write")
        markdown: bool = Field(
            False, description="also write a Markdown version beside it (suffix .md)"
        )
        title: str = Field("skyledger candidates", description="heading of the report")
        rank_by: str = Field(
            "T2CandidateScore.score",
            pattern=r"^[^.]+(\.[^.]+)+$",
            description="result value to rank by: UNIT.key[.key...]",
        )
        descending: bool = Field(True, description="rank the largest value first")
        min_value: float | None = Field(
            None, description="leave out stocks whose rank value is below this (or missing)"
        )
        limit: int | None = Field(50, ge=1, description="most candidates in the report")
        features_unit: str = Field(
            "T2LightCurveFeatures", description="T2 unit whose result fills the features table"
        )

    config: Config

    def react(self, stocks: Iterable[StockSummary]) -> list[Reaction]:
        """Return one reaction carrying the ranked candidates, or none if there are none."""
        cfg = self.config
        ranked = self._rank(stocks)
        if not ranked:
            return []
        entries = []
        for rank, (value, stock) in enumerate(ranked, start=1):
            rows = lightcurve_rows(stock.lightcurve)
            entries.append(
                {
                    "rank": rank,
                    "stock": stock.stock,
                    "channels": sorted(stock.channels),
                    "value": value,
                    "summary": lightcurve_summary(rows),
                    "photometry": rows,
                    "results": {name: stock.results[name] for name in sorted(stock.results)},
                }
            )
        payload = {
            "format": "html",
            "title": cfg.title,
            "rank_by": cfg.rank_by,
            "descending": cfg.descending,
            "features_unit": cfg.features_unit,
            "markdown": cfg.markdown,
            "stocks": entries,
        }
        key = reaction_key(self.name, self.version, cfg.path, payload)
        about = tuple(stock.stock for _, stock in ranked)
        return [Reaction(target=cfg.path, key=key, payload=payload, about=about)]

    def _rank(self, stocks: Iterable[StockSummary]) -> list[tuple[float | None, StockSummary]]:
        """Return (value, stock) pairs in report order: by value, then by stock id; with
        a ``limit``, only that many are ever kept (the stocks are read once, in turn)."""
        cfg = self.config
        valued: Iterable[tuple[float | None, StockSummary]] = (
            (result_value(s, cfg.rank_by), s) for s in stocks
        )
        if cfg.min_value is not None:
            minimum = cfg.min_value
            valued = ((v, s) for v, s in valued if v is not None and v >= minimum)
        sign = -1.0 if cfg.descending else 1.0

        def order(vs: tuple[float | None, StockSummary]) -> tuple[bool, float, str]:
            return vs[0] is None, sign * (vs[0] or 0.0), vs[1].stock

        if cfg.limit is not None:
            return heapq.nsmallest(cfg.limit, valued, key=order)
        return sorted(valued, key=order)

    def deliver(self, reaction: Reaction) -> str:
        """Render the report and replace the file; return what was written where."""
        payload = reaction.payload
        if payload.get("format") != "html":
            msg = f"unknown report format {payload.get('format')!r}"
            raise UnitError(msg, unit=self.name)
        stocks = payload["stocks"]
        pngs = [plot_png(entry["stock"], entry["photometry"]) for entry in stocks]
        path = Path(reaction.target)
        write_atomic(path, render_html(payload, pngs).encode("utf-8"))
        written = str(path)
        if payload.get("markdown"):
            md_path = path.with_suffix(".md")
            write_atomic(md_path, render_markdown(payload, pngs).encode("utf-8"))
            written += f" and {md_path}"
        return f"wrote {len(stocks)} candidates to {written}"
