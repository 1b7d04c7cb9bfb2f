"""Answers as JSON or CSV (``?format=csv`` or ``Accept: text/csv``).

A CSV answer has a row per item of a listing, with one column per field; nested
values (a result's body, a stock's channels) are written as JSON in their cell. The
page's position and next cursor travel in the ``Skyledger-Position`` and
``Skyledger-Next`` headers.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from typing import Any, Literal

import orjson
from fastapi import Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel

__all__ = ["Format", "answer", "wants_csv"]

Format = Literal["json", "csv"]


def wants_csv(request: Request, given: Format | None) -> bool:
    """Return True if the caller asked for CSV."""
    if given is not None:
        return given == "csv"
    return "text/csv" in request.headers.get("accept", "")


def _cell(value: Any) -> Any:
    if isinstance(value, dict | list | tuple):
        return orjson.dumps(value).decode()
    return "" if value is None else value


def to_csv(items: Sequence[dict[str, Any]]) -> str:
    """Return items as CSV with a header of every field seen, in order."""
    columns: dict[str, None] = {}
    for item in items:
        columns.update(dict.fromkeys(item))
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(list(columns))
    for item in items:
        writer.writerow([_cell(item.get(c)) for c in columns])
    return text.getvalue()


def answer(
    request: Request, found: BaseModel | dict[str, Any], given: Format | None,
    items: str = "items",
) -> Response:  # fmt: skip
    """Return a page (with its ``items``, ``position`` and ``next``) or a view as JSON
    (a model serialised by pydantic at once), or a page's items as CSV with its position
    and cursor in headers."""
    if not wants_csv(request, given):
        if isinstance(found, BaseModel):
            return Response(found.model_dump_json(), media_type="application/json")
        return JSONResponse(found)
    data = found.model_dump(mode="json") if isinstance(found, BaseModel) else found
    headers = {"Skyledger-Position": str(data.get("position", ""))}
    if data.get("next"):
        headers["Skyledger-Next"] = str(data["next"])
    return Response(to_csv(data[items]), media_type="text/csv; charset=utf-8", headers=headers)
