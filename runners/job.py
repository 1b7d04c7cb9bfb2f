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

An invalid job is refused with a ConfigError that names the file, the line and the field.
The job's hash is the hash of its parsed content (comments and layout do not matter).
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
        names = [c.name for c in self.channels]
        if len(set(names)) != len(names):
            raise ValueError(f"channel names repeat: {names}")
        t2_names = [t.unit for t in self.t2]
        for i, spec in enumerate(self.t3):
            for channel in spec.select.channels or []:
                if channel not in names:
                    raise ValueError(f"t3.{i}.select.channels: no channel {channel!r}")
            for cut in spec.select.where:
                if cut.unit not in t2_names:
                    raise ValueError(
                        f"t3.{i}.select.where: {cut.unit!r} is not a T2 unit of the job"
                    )
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


def parse_job(text: str, where: str = "job") -> Job:
    """Return the validated job in ``text``, or raise ConfigError naming line and field."""
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
        err = exc.errors()[0]
        loc = tuple(p for p in err["loc"] if not isinstance(p, str) or p[:1] != "[")
        field = ".".join(str(p) for p in loc) or "(job)"
        line = _line_of(tree, loc)
        at = f" line {line}" if line else ""
        raise ConfigError(f"{where}{at}: {field}: {err['msg']}") from None
    _check_units(job, tree, where)
    return job


def _check(
    ref: UnitRef, contract: type[Unit], loc: tuple[int | str, ...], tree: yaml.Node, where: str
) -> type[Unit]:
    line = _line_of(tree, loc)
    at = f"{where} line {line}" if line else where
    field = ".".join(str(p) for p in loc)
    try:
        cls = load_unit(ref.unit)
    except ConfigError as exc:
        raise ConfigError(f"{at}: {field}.unit: {exc}") from None
    if not issubclass(cls, contract):
        msg = f"{at}: {field}.unit: {ref.unit!r} is not a {contract.__name__}"
        raise ConfigError(msg)
    try:
        cls.validate_config(ref.config)
    except ConfigError as exc:
        raise ConfigError(f"{at}: {field}.config: {exc}") from None
    return cls


def _check_units(job: Job, tree: yaml.Node, where: str) -> None:
    for i, channel in enumerate(job.channels):
        if channel.filter is not None:
            _check(channel.filter, Filter, ("channels", i, "filter"), tree, where)
    for i, ref in enumerate(job.sources):
        _check(ref, Source, ("sources", i), tree, where)
    for survey, ref in job.shapers.items():
        _check(ref, Shaper, ("shapers", survey), tree, where)
    _check(job.combiner, Combiner, ("combiner",), tree, where)
    seen: list[str] = []
    for i, spec in enumerate(job.t2):
        cls = _check(spec, T2Unit, ("t2", i), tree, where)
        assert issubclass(cls, T2Unit)
        for dependency in cls.depends_on:
            if dependency not in seen:
                line = _line_of(tree, ("t2", i))
                msg = (
                    f"{where} line {line}: t2.{i}.unit: {spec.unit!r} depends on "
                    f"{dependency!r}, which must be listed before it in t2"
                )
                raise ConfigError(msg)
        seen.append(spec.unit)
    for i, spec3 in enumerate(job.t3):
        _check(spec3, Reactor, ("t3", i), tree, where)


def load_job(path: str | Path) -> tuple[Job, str]:
    """Return the validated job in a YAML file and the file's text."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read job file {path}: {exc.strerror}") from None
    return parse_job(text, str(path)), text
