"""A property-based run against the API's own schema (schemathesis): whatever a client
sends that the schema allows, or nearly allows, no route answers with a server error."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import tests.runners.pipeline_units  # noqa: F401  (registers the test units)
from skyledger.ledger import Ledger
from skyledger.ledger.access import AccessGranted
from skyledger.runners.job import parse_job
from skyledger.runners.local import LocalRunner
from skyledger.runners.server import ApiSettings, create_app
from skyledger.units.sources import FileSource
from tests.runners.api_kit import issue_token, serving

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = ROOT / "docs" / "api" / "openapi.json"
SN = sorted((Path(__file__).resolve().parents[1] / "data" / "ztf" / "ZTF21abiuvdk").glob("*"))
JOB = "name: x\nchannels: [{name: A}]\ncombiner: {unit: AllPoints}\nt2: [{unit: CountPoints}]\n"


def test_no_route_answers_with_a_server_error(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'ledger.sqlite'}"
    with Ledger.open(url) as ledger:
        source = FileSource({"paths": [str(f) for f in SN[:5]]})
        LocalRunner(parse_job(JOB), JOB, ledger, [source], read_model=False).run()
        ledger.append([AccessGranted(stream="access:A", channel="A", member="user:x", by="t")])
        token = issue_token(ledger, "user:x")
    app = create_app(ApiSettings(ledger=url, rate=10_000, burst=10_000))
    with serving(app) as client:
        done = subprocess.run(
            [sys.executable, "-m", "tests.runners.api_fuzz", str(client.base_url), token,
             str(SCHEMA)], cwd=ROOT, capture_output=True, text=True, timeout=600,
        )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "no server error" in done.stdout
