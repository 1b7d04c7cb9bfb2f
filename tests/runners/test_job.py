"""Jobs are validated before anything runs; errors name the file, line and field."""

from __future__ import annotations

import pytest

import tests.runners.pipeline_units  # noqa: F401  (registers the test units)
from ledger import ConfigError
from runners.job import parse_job

GOOD = """
name: ok
channels:
  - name: MANY
    filter: {unit: MinDetections, config: {n: 3}}
combiner: {unit: AllPoints}
t2:
  - unit: CountPoints
  - unit: TotalFromCounts
"""


def test_a_valid_job_loads_with_defaults() -> None:
    job = parse_job(GOOD)
    assert [c.name for c in job.channels] == ["MANY"]
    assert job.shapers["ztf"].unit == "ZtfShaper"
    assert job.retry.max_attempts == 3


def test_the_hash_ignores_layout_and_comments() -> None:
    relaid = GOOD.replace(
        "combiner: {unit: AllPoints}", "# a comment\ncombiner:\n  unit: AllPoints"
    )
    assert parse_job(GOOD).hash == parse_job(relaid).hash
    assert parse_job(GOOD).hash != parse_job(GOOD.replace("n: 3", "n: 4")).hash


@pytest.mark.parametrize(
    ("broken", "expected"),
    [
        (
            GOOD.replace("n: 3", "n: three"),
            r"job line 5: channels\.0\.filter\.config: .*n: Input should be a valid integer",
        ),
        (GOOD.replace("n: 3", "m: 3"), r"line 5: .*m: Extra inputs are not permitted"),
        (
            GOOD.replace("unit: AllPoints", "unit: NoSuchUnit"),
            r"line 6: combiner\.unit: unknown unit 'NoSuchUnit'",
        ),
        (
            GOOD.replace("unit: AllPoints", "unit: CountPoints"),
            r"line 6: combiner\.unit: 'CountPoints' is not a Combiner",
        ),
        (
            GOOD.replace("  - unit: CountPoints\n", ""),
            r"line 8: t2\.0\.unit: 'TotalFromCounts' depends on 'CountPoints'",
        ),
        (
            GOOD.replace("name: MANY", "name: 'bad name'"),
            r"line 4: channels\.0\.name: String should match pattern",
        ),
        (GOOD.replace("channels:", "chanels:"), r"channels: Field required"),
        ("[1, 2", r"not valid YAML"),
        ("just a string", r"a job is a mapping"),
    ],
)
def test_an_invalid_job_is_refused_naming_line_and_field(broken: str, expected: str) -> None:
    with pytest.raises(ConfigError, match=expected):
        parse_job(broken)
