"""Jobs are validated before anything runs; errors name the file, line and field."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import pytest

import tests.runners.pipeline_units  # noqa: F401  (registers the test units)
from skyledger.ledger import ConfigError
from skyledger.runners.job import parse_job
from skyledger.units import T2Unit, T2View, register_unit


@register_unit
class PerPointFromCounts(T2Unit):
    """Bound to datapoints but tied to a unit whose results are about states."""

    version = "1"
    binds: ClassVar = "datapoint"
    depends_on = ("CountPoints",)

    def process(self, view: T2View) -> Mapping[str, Any]:
        return {}


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
    defaults_spelt_out = GOOD.replace("unit: AllPoints", "unit: AllPoints, config: {}")
    assert parse_job(GOOD).hash == parse_job(defaults_spelt_out).hash
    no_filter_config = GOOD.replace(", config: {n: 3}", "")
    assert parse_job(no_filter_config).hash == parse_job(GOOD.replace("n: 3", "n: 2")).hash
    assert parse_job(no_filter_config).channels[0].filter.config == {"n": 2}  # type: ignore[union-attr]
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
            r"line 8: t2\.0\.unit: 'TotalFromCounts' depends on 'CountPoints': an entry "
            r"'CountPoints' must be listed before it",
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


def test_every_error_is_reported_each_with_its_line() -> None:
    broken = GOOD.replace("n: 3", "n: three").replace("unit: AllPoints", "unit: NoSuchUnit")
    structure = broken.replace("name: ok", "name: [ok]") + "retry: {max_attempts: 0}\n"
    with pytest.raises(ConfigError) as caught:
        parse_job(structure)
    lines = str(caught.value).splitlines()
    assert len(lines) == 2, lines  # the units are checked once the structure is valid
    assert lines[0].startswith("job line 2: name: ")
    assert lines[1].startswith("job line 10: retry.max_attempts: ")
    with pytest.raises(ConfigError) as caught:
        parse_job(broken)
    lines = str(caught.value).splitlines()
    assert [line.split(": ")[1] for line in lines] == [
        "channels.0.filter.config",
        "combiner.unit",
    ]


T3 = """
t3:
  - unit: CollectReactor
    select:
      channels: [MANY, FEW]
      where: [{unit: CountPoints, key: g}, {unit: Nothing, key: x}]
"""


@pytest.mark.parametrize(
    ("broken", "expected"),
    [
        (
            GOOD + "  - unit: CountPoints\n",
            r"job line 10: t2\.2\.unit: entry 'CountPoints' is listed twice; give each entry",
        ),
        (
            GOOD + T3,
            r"job line 14: t3\.0\.select\.channels\.1: no channel 'FEW'\n"
            r"job line 15: t3\.0\.select\.where\.1\.unit: 'Nothing' is not a T2 entry",
        ),
        (
            GOOD.replace("filter:", "autocomplete: true\n  - name: MANY\n    filter:"),
            r"job line 6: channels\.1\.name: channel 'MANY' is named twice",
        ),
        (
            GOOD.replace("unit: TotalFromCounts", "unit: PerPointFromCounts"),
            r"line 9: t2\.1\.unit: 'PerPointFromCounts' \(binds 'datapoint'\) depends on "
            r"'CountPoints' \(binds 'lightcurve'\): a dependency's results must be about",
        ),
        (
            GOOD.replace("- unit: CountPoints", "- unit: CountPoints\n    groups: [1]"),
            r"line 10: t2\.1\.unit: 'TotalFromCounts' runs for every group but its "
            r"dependency 'CountPoints' only for groups \[1\]",
        ),
        (
            GOOD.replace("- unit: CountPoints", "- unit: CountPoints\n    groups: [1]")
            + "    groups: [1, 2]\n",
            r"'TotalFromCounts' runs for groups \[1, 2\] but its dependency",
        ),
    ],
)
def test_parts_that_do_not_fit_together_are_refused_where_they_are(
    broken: str, expected: str
) -> None:
    with pytest.raises(ConfigError, match=expected):
        parse_job(broken)


def test_dependencies_that_can_be_met_are_accepted() -> None:
    gated = GOOD.replace("- unit: CountPoints", "- unit: CountPoints\n    groups: [1, 2]")
    assert parse_job(gated + "    groups: [2]\n").t2[1].groups == [2]


TWICE = """
name: twice
channels: [{name: ALL}]
combiner: {unit: AllPoints}
t2:
  - {unit: CountPoints, name: counts_a}
  - {unit: CountPoints, name: counts_b, config: {}}
  - {unit: TotalFromCounts, depends: {CountPoints: counts_b}}
t3:
  - unit: CollectReactor
    config: {path: out.txt}
    select: {where: [{unit: counts_a, key: g, min: 1}]}
"""


def test_one_unit_runs_under_several_entry_names() -> None:
    job = parse_job(TWICE)
    assert [t.entry for t in job.t2] == ["counts_a", "counts_b", "TotalFromCounts"]
    assert job.t2[2].depends == {"CountPoints": "counts_b"}


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            ("depends: {CountPoints: counts_b}", "depends: {CountPoints: nothing}"),
            r"line 8: t2\.2\.depends\.CountPoints: 'TotalFromCounts' depends on 'CountPoints': "
            r"an entry 'nothing' must be listed before it",
        ),
        (
            ("depends: {CountPoints: counts_b}", "depends: {Other: counts_b}"),
            r"line 8: t2\.2\.depends\.Other: 'TotalFromCounts' declares no dependency 'Other'",
        ),
        (
            ("depends: {CountPoints: counts_b}", "depends: {}"),
            r"t2\.2\.unit: 'TotalFromCounts' depends on 'CountPoints': an entry 'CountPoints'",
        ),
        (
            (
                "{unit: CountPoints, name: counts_b, config: {}}",
                "{unit: AlwaysFails, name: counts_b}",
            ),
            r"'TotalFromCounts' depends on 'CountPoints', but entry 'counts_b' runs 'AlwaysFails'",
        ),
        (("name: counts_b", "name: counts_a"), r"t2\.1\.name: entry 'counts_a' is listed twice"),
        (
            ("key: g, min: 1", "key: g, min: 1}, {unit: CountPoints, key: r"),
            r"'CountPoints' is not a T2 entry",
        ),
    ],
)
def test_entries_and_their_dependencies_are_checked(change: tuple[str, str], expected: str) -> None:
    with pytest.raises(ConfigError, match=expected):
        parse_job(TWICE.replace(*change))


def test_a_state_reactor_cannot_ask_for_every_stock() -> None:
    broken = TWICE.replace("select: {where", "select: {updated_since_last_run: false, where")
    with pytest.raises(ConfigError, match=r"t3\.0\.select\.updated_since_last_run: "
                       r"'CollectReactor' reacts to each new state"):  # fmt: skip
        parse_job(broken)
