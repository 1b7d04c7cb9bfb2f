"""Jobs: the YAML file that names channels, units and configurations, validated before
anything runs.

    name: transients
    channels:
      - name: SN
        filter: {unit: ZtfFilter, config: {min_rb: 0.55}}
        autocomplete: true
    combiner: {unit: LightCurveCombiner}
    t2:
      - unit: T2LightCurveFeatures
      - unit: T2CandidateScore
    t3:
      - unit: ReportReactor
        config: {path: report.html}
        select: {channels: [SN], where: [{unit: T2CandidateScore, key: score, min: 0.3}]}

An invalid job is refused with a ConfigError that names, for every error found, the
file, the line and the field: unknown fields and units, bad configurations, names that
repeat or are unknown, and T2 dependencies that could never be met (listed after the
unit, about another subject, or gated to fewer channel groups).
The job's hash is the hash of its parsed content with every unit's full configuration
(comments, layout and options spelt out at their defaults do not matter).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ledger.errors import ConfigError
from ledger.ids import job_id
from units import load_unit
from units.base import Unit
from units.contracts import Combiner, Filter, Reactor, Shaper, Source, T2Unit

__all__ = ["Job", "UnitRef", "load_job", "parse_job"]

DEFAULT_SHAPERS = {"ztf": "ZtfShaper", "lsst": "LsstShaper", "elasticc": "ElasticcShaper"}


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class UnitRef(_Model):
    """A unit by registered name, with its configuration."""

    unit: str = Field(description="registered unit name")
    config: dict[str, Any] = Field(default_factory=dict, description="the unit's options")


class ChannelSpec(_Model):
    """One science programme: its filter and whether it follows accepted stocks for good."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$", description="channel name")
    filter: UnitRef | None = Field(default=None, description="None accepts every alert")
    autocomplete: bool = Field(
        default=False, description="accept every later alert of a stock accepted once"
    )


class T2Spec(UnitRef):
    """A T2 unit to run on the states of accepted stocks."""

    groups: list[int] | None = Field(
        default=None, description="run only for stocks a channel accepted into these groups"
    )


class ResultCut(_Model):
    """Select stocks by a T2 result: ``unit``'s ``key`` within [min, max]."""

    unit: str
    key: str
    min: float | None = None
    max: float | None = None


class Selection(_Model):
    """Which stocks a T3 unit sees."""

    channels: list[str] | None = Field(default=None, description="None: all channels")
    updated_since_last_run: bool = Field(
        default=True, description="only stocks with new events since this reactor last ran"
    )
    where: list[ResultCut] = Field(default_factory=list)


class T3Spec(UnitRef):
    """A T3 unit and its selection."""

    select: Selection = Field(default_factory=Selection)


class RetryPolicy(_Model):
    """How failed T2 computations are retried: exponential backoff up to a limit."""

    max_attempts: int = Field(default=3, ge=1)
    backoff_s: float = Field(default=0.5, ge=0)
    factor: float = Field(default=2.0, ge=1)


Loc = tuple[int | str, ...]


class JobConflicts(ValueError):
    """Parts of a job that are each valid but do not fit together, with where they are."""

    def __init__(self, found: list[tuple[Loc, str]]) -> None:
        super().__init__("; ".join(f"{_dotted(loc)}: {msg}" for loc, msg in found))
        self.found = found


def _dotted(loc: Loc) -> str:
    return ".".join(str(p) for p in loc) or "(job)"


class Job(_Model):
    """A validated job."""

    name: str = "job"
    channels: list[ChannelSpec] = Field(min_length=1)
    sources: list[UnitRef] = Field(default_factory=list)
    shapers: dict[str, UnitRef] = Field(
        default_factory=lambda: {s: UnitRef(unit=u) for s, u in DEFAULT_SHAPERS.items()}
    )
    combiner: UnitRef = Field(default_factory=lambda: UnitRef(unit="LightCurveCombiner"))
    t2: list[T2Spec] = Field(default_factory=list)
    t3: list[T3Spec] = Field(default_factory=list)
    retry: RetryPolicy = Field(default_factory=RetryPolicy)

    @model_validator(mode="after")
    def _names_are_consistent(self) -> Job:
        found = conflicts(self)
        if found:
            raise JobConflicts(found)
        return self

    @property
    def hash(self) -> str:
        """Return the job's canonical hash."""
        return job_id(self.model_dump(mode="json"))


def _line_of(node: yaml.Node | None, loc: tuple[int | str, ...]) -> int | None:
    """Return the 1-based line of the YAML node at a pydantic error location."""
    line = node.start_mark.line + 1 if node is not None else None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            node = next((v for k, v in node.value if k.value == part), None)
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            node = node.value[part] if part < len(node.value) else None
        else:
            break
        if node is None:
            break
        line = node.start_mark.line + 1
    return line


def conflicts(job: Job) -> list[tuple[Loc, str]]:
    """Return what does not fit together in a job (names that repeat or are unknown)."""
    found: list[tuple[Loc, str]] = []
    names: list[str] = []
    for i, channel in enumerate(job.channels):
        if channel.name in names:
            found.append((("channels", i, "name"), f"channel {channel.name!r} is named twice"))
        names.append(channel.name)
    t2_names: list[str] = []
    for i, spec in enumerate(job.t2):
        if spec.unit in t2_names:
            msg = (
                f"{spec.unit!r} is listed twice; a job runs each T2 unit once "
                "(results and dependencies are found by unit name)"
            )
            found.append((("t2", i, "unit"), msg))
        t2_names.append(spec.unit)
    for i, spec3 in enumerate(job.t3):
        for j, wanted in enumerate(spec3.select.channels or []):
            if wanted not in names:
                found.append((("t3", i, "select", "channels", j), f"no channel {wanted!r}"))
        for j, cut in enumerate(spec3.select.where):
            if cut.unit not in t2_names:
                msg = f"{cut.unit!r} is not a T2 unit of the job"
                found.append((("t3", i, "select", "where", j, "unit"), msg))
    return found


def parse_job(text: str, where: str = "job") -> Job:
    """Return the validated job in ``text``, or raise ConfigError naming, for every
    error found, its line and field (one error per line of the message)."""
    try:
        data = yaml.safe_load(text)
        tree = yaml.compose(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{where}: not valid YAML: {exc}") from None
    if not isinstance(data, dict) or tree is None:
        raise ConfigError(f"{where}: a job is a mapping with at least 'channels'")
    try:
        job = Job.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_errors(exc, tree, where)) from None
    effective: dict[Loc, dict[str, Any]] = {}
    found = _check_units(job, effective)
    if found:
        raise ConfigError("\n".join(_at(tree, where, loc, msg) for loc, msg in found))
    return _with_effective_configs(job, effective)


def _at(tree: yaml.Node, where: str, loc: Loc, msg: str) -> str:
    line = _line_of(tree, loc)
    return f"{where}{f' line {line}' if line else ''}: {_dotted(loc)}: {msg}"


def _errors(exc: ValidationError, tree: yaml.Node, where: str) -> str:
    """Return every validation error of a job, one a line, each with its line and field."""
    lines = []
    for err in exc.errors():
        conflict = (err.get("ctx") or {}).get("error")
        if isinstance(conflict, JobConflicts):
            lines += [_at(tree, where, loc, msg) for loc, msg in conflict.found]
            continue
        loc = tuple(p for p in err["loc"] if not isinstance(p, str) or p[:1] != "[")
        lines.append(_at(tree, where, loc, err["msg"]))
    return "\n".join(lines)


def _check(
    ref: UnitRef,
    contract: type[Unit],
    loc: Loc,
    found: list[tuple[Loc, str]],
    effective: dict[Loc, dict[str, Any]],
) -> Any:
    """Return the unit class ``ref`` names, or None with what is wrong added to ``found``;
    its full configuration (defaults included) goes to ``effective``."""
    try:
        cls = load_unit(ref.unit)
    except ConfigError as exc:
        found.append(((*loc, "unit"), str(exc)))
        return None
    if not issubclass(cls, contract):
        found.append(((*loc, "unit"), f"{ref.unit!r} is not a {contract.__name__}"))
        return None
    try:
        effective[loc] = cls.validate_config(ref.config).model_dump(mode="json")
    except ConfigError as exc:
        found.append(((*loc, "config"), str(exc)))
    return cls


def _check_units(job: Job, effective: dict[Loc, dict[str, Any]]) -> list[tuple[Loc, str]]:
    """Return what is wrong with the job's units: unknown, of the wrong tier, badly
    configured, or T2 dependencies that could never be met; fill ``effective``."""
    found: list[tuple[Loc, str]] = []
    for i, channel in enumerate(job.channels):
        if channel.filter is not None:
            _check(channel.filter, Filter, ("channels", i, "filter"), found, effective)
    for i, ref in enumerate(job.sources):
        _check(ref, Source, ("sources", i), found, effective)
    for survey, ref in job.shapers.items():
        _check(ref, Shaper, ("shapers", survey), found, effective)
    _check(job.combiner, Combiner, ("combiner",), found, effective)
    seen: dict[str, tuple[type[T2Unit], T2Spec]] = {}
    for i, spec in enumerate(job.t2):
        cls = _check(spec, T2Unit, ("t2", i), found, effective)
        if cls is None:
            continue
        for dependency in cls.depends_on:
            problem = _unmet(spec, cls, dependency, seen.get(dependency))
            if problem:
                found.append((("t2", i, "unit"), problem))
        seen[spec.unit] = (cls, spec)
    for i, spec3 in enumerate(job.t3):
        _check(spec3, Reactor, ("t3", i), found, effective)
    return found


def _with_effective_configs(job: Job, effective: dict[Loc, dict[str, Any]]) -> Job:
    """Return the job with every unit's full configuration, defaults included, so that
    a job that spells out a default has the same hash as one that leaves it out."""
    data = job.model_dump(mode="json")
    for loc, config in effective.items():
        node: Any = data
        for part in loc:
            node = node[part]
        node["config"] = config
    return Job.model_validate(data)


def _unmet(
    spec: T2Spec,
    cls: type[T2Unit],
    dependency: str,
    listed: tuple[type[T2Unit], T2Spec] | None,
) -> str | None:
    """Return why a T2 unit's dependency could never give it a result, or None."""
    name = spec.unit
    if listed is None:
        return f"{name!r} depends on {dependency!r}, which must be listed before it in t2"
    dep_cls, dep_spec = listed
    if cls.subject() != dep_cls.subject():
        return (
            f"{name!r} (binds {cls.binds!r}) depends on {dependency!r} (binds "
            f"{dep_cls.binds!r}): a dependency's results must be about the same subject "
            f"({cls.subject()}s)"
        )
    if dep_spec.groups is not None and (
        spec.groups is None or not set(spec.groups) <= set(dep_spec.groups)
    ):
        mine = "every group" if spec.groups is None else f"groups {spec.groups}"
        return (
            f"{name!r} runs for {mine} but its dependency {dependency!r} only for groups "
            f"{dep_spec.groups}: give {name!r} a subset of them in 'groups'"
        )
    return None


def load_job(path: str | Path) -> tuple[Job, str]:
    """Return the validated job in a YAML file and the file's text."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read job file {path}: {exc.strerror}") from None
    return parse_job(text, str(path)), text
