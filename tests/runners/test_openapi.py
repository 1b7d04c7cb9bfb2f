"""The API's schema is kept in the repository (docs/api/openapi.json): a route or field
that changes without a new version and its note in docs/api/changes.md fails here."""

from __future__ import annotations

import json
import re
from pathlib import Path

from skyledger.runners.server import API_VERSION, ApiSettings, create_app, schema_digest

DOCS = Path(__file__).resolve().parents[2] / "docs" / "api"


def served_schema() -> dict:  # type: ignore[type-arg]
    schema: dict = create_app(ApiSettings(ledger="sqlite:///unused.sqlite")).openapi()  # type: ignore[type-arg]
    return json.loads(json.dumps(schema))


def test_the_kept_schema_is_the_served_one() -> None:
    kept = json.loads((DOCS / "openapi.json").read_text())
    assert kept == served_schema(), (
        "the API's schema changed: run `skyledger serve --print-openapi > "
        "docs/api/openapi.json`, raise API_VERSION and note the change in docs/api/changes.md"
    )


def test_the_schema_of_this_version_is_noted() -> None:
    schema = served_schema()
    assert schema["info"]["version"] == API_VERSION
    notes = (DOCS / "changes.md").read_text()
    sections = dict(re.findall(r"^## (\S+)\n\nSchema digest `([0-9a-f]+)`", notes, re.M))
    assert API_VERSION in sections, f"docs/api/changes.md has no section '## {API_VERSION}'"
    digest = schema_digest(schema)
    assert sections[API_VERSION] == digest, (
        f"the schema of {API_VERSION} changed (digest {digest}, noted "
        f"{sections[API_VERSION]}): raise API_VERSION and note the change"
    )
