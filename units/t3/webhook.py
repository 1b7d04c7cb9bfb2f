"""WebhookReactor: POSTs a JSON summary of each selected stock to a URL."""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Iterable
from typing import Any, ClassVar

import orjson
from pydantic import Field, field_validator

from skyledger.ledger.errors import UnitError
from skyledger.units.base import UnitConfig
from skyledger.units.contracts import Reactor
from skyledger.units.photometry import lightcurve_rows, lightcurve_summary
from skyledger.units.t3.common import reaction_key, result_value
from skyledger.units.views import Reaction, StockSummary

__all__ = ["WebhookReactor"]

_EXCERPT = 200


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Refuses redirects: a redirected POST would silently become a GET."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirect())


class WebhookReactor(Reactor):
    """Posts one JSON document per selected stock, with an ``Idempotency-Key`` header.

    The key hashes the reactor, its version, the URL and the document (the stock, its
    channels, its photometry summary and the chosen results), so a stock is posted again
    only when something about it changed. Any answer other than 2xx, a redirect
    included, is a failed delivery.

    Delivery is at least once: a POST cut by a crash before its outcome was recorded is
    made again, with the same key, once its claim is older than the job's
    ``retry.lease_s`` (10 s by default; ``projections.outbox``). A receiver must treat
    the ``Idempotency-Key`` header as a dedupe key (answer 2xx, act once).
    """

    version: ClassVar[str] = "1.0"

    class Config(UnitConfig):
        """Options of the webhook."""

        url: str = Field(description="http(s) URL to POST to")
        timeout_seconds: float = Field(10.0, gt=0, description="timeout of one POST, seconds")
        results: tuple[str, ...] | None = Field(
            None, description="T2 units whose results are sent (null: all of them)"
        )
        select_by: str = Field(
            "T2CandidateScore.score", description="result value that `min_value` applies to"
        )
        min_value: float | None = Field(
            None, description="only post stocks whose `select_by` value is at least this"
        )

        @field_validator("url")
        @classmethod
        def _http(cls, url: str) -> str:
            if not url.startswith(("http://", "https://")):
                raise ValueError(f"must be an http:// or https:// URL, got {url!r}")
            return url

    config: Config

    def react(self, stocks: Iterable[StockSummary]) -> list[Reaction]:
        """Return one reaction per selected stock, in stock order."""
        cfg = self.config
        reactions = []
        for stock in sorted(stocks, key=lambda s: s.stock):
            if cfg.min_value is not None:
                value = result_value(stock, cfg.select_by)
                if value is None or value < cfg.min_value:
                    continue
            names = sorted(stock.results if cfg.results is None else cfg.results)
            document = {
                "stock": stock.stock,
                "channels": sorted(stock.channels),
                "summary": lightcurve_summary(lightcurve_rows(stock.lightcurve)),
                "results": {n: stock.results[n] for n in names if n in stock.results},
            }
            key = reaction_key(self.name, self.version, cfg.url, document)
            reactions.append(Reaction(target=cfg.url, key=key, payload=document, stock=stock.stock))
        return reactions

    def deliver(self, reaction: Reaction) -> str:
        """POST the document as JSON; return the status, or raise UnitError on failure."""
        body = orjson.dumps(dict(reaction.payload), option=orjson.OPT_SORT_KEYS)
        request = urllib.request.Request(
            reaction.target,
            data=body,
            method="POST",
            headers={
                "Content-Type": "application/json",
                "Idempotency-Key": reaction.key,
                "User-Agent": f"skyledger-{self.name}/{self.version}",
            },
        )
        try:
            with _OPENER.open(request, timeout=self.config.timeout_seconds) as response:
                status = response.status
                excerpt = response.read(_EXCERPT).decode("utf-8", "replace")
        except urllib.error.HTTPError as exc:
            with exc:  # the error is the response: close it
                status, excerpt = exc.code, exc.read(_EXCERPT).decode("utf-8", "replace")
        except (urllib.error.URLError, TimeoutError, OSError) as exc:
            msg = f"POST {reaction.target} failed: {exc}"
            raise UnitError(msg, unit=self.name) from exc
        if not 200 <= status < 300:
            msg = f"POST {reaction.target} answered {status}: {excerpt!r}"
            raise UnitError(msg, unit=self.name)
        return f"POST {reaction.target}: {status}"
