"""Errors as RFC 9457 problem documents (``application/problem+json``).

Every error the API gives has ``type``, ``title``, ``status`` and ``detail``; a refused
credential also says why in ``detail`` (never repeating the credential), and a rate
limit adds ``Retry-After``.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ledger.errors import ConfigError, LedgerUnavailable, NotFound, QueryError, SkyledgerError

__all__ = ["MEDIA_TYPE", "Problem", "install", "problem"]

MEDIA_TYPE = "application/problem+json"
_TYPES = "https://skyledger.readthedocs.io/problems/"


class Problem(Exception):
    """An error to answer with a problem document."""

    def __init__(
        self, status: int, title: str, detail: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(detail)
        self.status, self.title, self.detail = status, title, detail
        self.headers = headers or {}


def problem(
    status: int, title: str, detail: str, headers: dict[str, str] | None = None, **extra: Any
) -> JSONResponse:
    """Return a problem document response."""
    slug = title.lower().replace(" ", "-")
    body = {"type": _TYPES + slug, "title": title, "status": status, "detail": detail, **extra}
    return JSONResponse(body, status_code=status, media_type=MEDIA_TYPE, headers=headers)


def _of_error(exc: SkyledgerError) -> JSONResponse:
    if isinstance(exc, NotFound):
        return problem(404, "Not found", str(exc))
    if isinstance(exc, QueryError | ConfigError):
        return problem(400, "Bad request", str(exc))
    if isinstance(exc, LedgerUnavailable):
        return problem(503, "Ledger unavailable", str(exc))
    return problem(500, "Server error", f"{type(exc).__name__}: {exc}")


def install(app: FastAPI) -> None:
    """Answer every error of the app with a problem document."""

    async def on_problem(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, Problem)
        return problem(exc.status, exc.title, exc.detail, exc.headers)

    async def on_ours(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, SkyledgerError)
        return _of_error(exc)

    async def on_invalid(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        where = [
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        ]
        return problem(400, "Bad request", "; ".join(where))

    async def on_http(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        title = {404: "Not found", 405: "Method not allowed"}.get(exc.status_code, "Error")
        return problem(exc.status_code, title, str(exc.detail), dict(exc.headers or {}))

    app.add_exception_handler(Problem, on_problem)
    app.add_exception_handler(SkyledgerError, on_ours)
    app.add_exception_handler(RequestValidationError, on_invalid)
    app.add_exception_handler(StarletteHTTPException, on_http)
