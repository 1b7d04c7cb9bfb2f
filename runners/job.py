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

import difflib
import typing
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from skyledger.ledger.errors import ConfigError
from skyledger.ledger.ids import job_id
from skyledger.units import load_unit
from skyledger.units.base import Unit
from skyledger.units.contracts import Combiner, Filter, Reactor, Shaper, Source, T2Unit

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
    """A T2 unit to run on the job's states, under an entry name."""

    name: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9_.-]+$",
        description="the entry's name (default: the unit's); results, dependencies, cuts "
        "and reports refer to it, so one unit can run under several names and configurations",
    )
    groups: list[int] | None = Field(
        default=None, description="run only for stocks a channel accepted into these groups"
    )
    depends: dict[str, str] = Field(
        default_factory=dict,
        description="for each dependency the unit declares, the entry that fills it "
        "(default: the entry named like the dependency)",
    )

    @property
    def entry(self) -> str:
        """Return the entry's name: ``name``, or the unit's name."""
        return self.name or self.unit


class ResultCut(_Model):
    """Select stocks by a T2 result: the ``unit`` entry's ``key`` within [min, max]."""

    unit: str = Field(description="a T2 entry of the job, by its name")
    key: str
    min: float | None = None
    max: float | None = None


class Selection(_Model):
    """Which stocks a T3 unit sees."""

    channels: list[str] | None = Field(default=None, description="None: all channels")
    updated_since_last_run: bool = Field(
        default=True,
        description="false: a reactor of a selection (a report) sees every stock its "
        "channels follow at each run, not only those updated since it last ran",
    )
    where: list[ResultCut] = Field(default_factory=list)


class T3Spec(UnitRef):
    """A T3 unit and its selection."""

    select: Selection = Field(default_factory=Selection)


class RetryPolicy(_Model):
    """How failed T2 computations and T3 deliveries are retried: exponential backoff up
    to a limit."""

    max_attempts: int = Field(default=3, ge=1, description="attempts in all, per run")
    backoff_s: float = Field(default=0.5, ge=0, description="wait after the first failure")
    factor: float = Field(default=2.0, ge=1, description="each later wait is this much longer")
    lease_s: float = Field(
        default=10.0,
        ge=0,
        description="a delivery another process began and left without an outcome for "
        "this long is taken to have died with it, and is tried again with the same key",
    )


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
        if spec.entry in t2_names:
            where = "name" if spec.name else "unit"
            msg = (
                f"entry {spec.entry!r} is listed twice; give each entry of a unit its own "
                "'name' (results, dependencies and cuts refer to entries by name)"
            )
            found.append((("t2", i, where), msg))
        t2_names.append(spec.entry)
    for i, spec3 in enumerate(job.t3):
        for j, wanted in enumerate(spec3.select.channels or []):
            if wanted not in names:
                found.append((("t3", i, "select", "channels", j), f"no channel {wanted!r}"))
        for j, cut in enumerate(spec3.select.where):
            if cut.unit not in t2_names:
                msg = f"{cut.unit!r} is not a T2 entry of the job (entries: {t2_names})"
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
        msg = err["msg"]
        if err["type"] == "extra_forbidden" and loc and isinstance(loc[-1], str):
            known = _fields_at(Job, loc[:-1])
            near = difflib.get_close_matches(loc[-1], known, n=1)
            msg = f"no such key ({'did you mean ' + repr(near[0]) + '? ' if near else ''}" \
                  f"the keys here: {', '.join(known)})" if known else msg  # fmt: skip
        lines.append(_at(tree, where, loc, msg))
    return "\n".join(lines)


def _fields_at(model: Any, loc: Loc) -> list[str]:
    """Return the keys a job allows at a location (following its models' fields)."""
    for part in loc:
        if isinstance(part, int):
            continue
        field = getattr(model, "model_fields", {}).get(part)
        if field is None:
            return []
        model = _model_in(field.annotation)
    return sorted(getattr(model, "model_fields", {}))


def _model_in(annotation: Any) -> Any:
    """Return the pydantic model an annotation holds (in a list, a union, ...), if one."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


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
        for dependency in spec.depends:
            if dependency not in cls.depends_on:
                declared = ", ".join(map(repr, cls.depends_on)) or "none"
                msg = (
                    f"{spec.unit!r} declares no dependency {dependency!r} (it declares {declared})"
                )
                found.append((("t2", i, "depends", dependency), msg))
        for dependency in cls.depends_on:
            filled_by = spec.depends.get(dependency, dependency)
            problem = _unmet(spec, cls, dependency, filled_by, seen.get(filled_by))
            if problem:
                where = ("depends", dependency) if dependency in spec.depends else ("unit",)
                found.append((("t2", i, *where), problem))
        seen[spec.entry] = (cls, spec)
    for i, spec3 in enumerate(job.t3):
        cls3 = _check(spec3, Reactor, ("t3", i), found, effective)
        if cls3 is not None and cls3.scope == "state" and not spec3.select.updated_since_last_run:
            msg = (
                f"{spec3.unit!r} reacts to each new state of a stock; "
                "'updated_since_last_run: false' applies to reactors of a selection (reports)"
            )
            found.append((("t3", i, "select", "updated_since_last_run"), msg))
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
    filled_by: str,
    listed: tuple[type[T2Unit], T2Spec] | None,
) -> str | None:
    """Return why a T2 unit's dependency could never give it a result, or None."""
    name = spec.entry
    if listed is None:
        return (
            f"{name!r} depends on {dependency!r}: an entry {filled_by!r} must be listed "
            "before it in t2 (or 'depends' must name the entry that fills it)"
        )
    dep_cls, dep_spec = listed
    if dep_cls.name != dependency:
        return f"{name!r} depends on {dependency!r}, but entry {filled_by!r} runs {dep_cls.name!r}"
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
            f"{name!r} runs for {mine} but its dependency {filled_by!r} only for groups "
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
