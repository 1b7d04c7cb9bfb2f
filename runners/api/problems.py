"""Errors as RFC 9457 problem documents (``application/problem+json``).

Every error the API gives has ``type``, ``title``, ``status`` and ``detail``; a refused
credential also says why in ``detail`` (never repeating the credential), and a rate
limit adds ``Retry-After``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from skyledger.ledger.errors import (
    ConfigError,
    LedgerUnavailable,
    NotFound,
    QueryError,
    SkyledgerError,
)

__all__ = ["MEDIA_TYPE", "PageError", "Problem", "install", "problem"]

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


PageError = Callable[[Request, Problem], Response]
"""How the pages answer an error (an HTML page, or a way to sign in), in place of a
problem document: for every path outside ``/api/``."""


def _of_error(exc: SkyledgerError) -> Problem:
    if isinstance(exc, NotFound):
        return Problem(404, "Not found", str(exc))
    if isinstance(exc, QueryError | ConfigError):
        return Problem(400, "Bad request", str(exc))
    if isinstance(exc, LedgerUnavailable):
        return Problem(503, "Ledger unavailable", str(exc))
    return Problem(500, "Server error", f"{type(exc).__name__}: {exc}")


def install(app: FastAPI, pages: PageError | None = None) -> None:
    """Answer every error of the app with a problem document (or, outside ``/api/``,
    as ``pages`` says)."""

    def answer(request: Request, found: Problem) -> Response:
        if pages is not None and not request.url.path.startswith("/api/"):
            return pages(request, found)
        return problem(found.status, found.title, found.detail, found.headers)

    async def on_problem(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, Problem)
        return answer(request, exc)

    async def on_ours(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, SkyledgerError)
        return answer(request, _of_error(exc))

    async def on_invalid(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        where = [f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()]
        return answer(request, Problem(400, "Bad request", "; ".join(where)))

    async def on_http(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        title = {404: "Not found", 405: "Method not allowed"}.get(exc.status_code, "Error")
        found = Problem(exc.status_code, title, str(exc.detail), dict(exc.headers or {}))
        return answer(request, found)

    app.add_exception_handler(Problem, on_problem)
    app.add_exception_handler(SkyledgerError, on_ours)
    app.add_exception_handler(RequestValidationError, on_invalid)
    app.add_exception_handler(StarletteHTTPException, on_http)
