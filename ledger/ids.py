"""Content-addressed ids of datapoints, states, results, configurations and jobs.

Every id is a 128-bit BLAKE2b digest (32 hex digits) of canonical content
(:mod:`ledger.canonical`), separated by kind. Equal content gives equal ids in every
process and run; any change of content, unit version or configuration gives another id.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ledger.canonical import content_hash

__all__ = [
    "config_id",
    "datapoint_id",
    "job_id",
    "result_id",
    "state_id",
]


def datapoint_id(body: Mapping[str, Any], *, survey_id: str | int | None = None) -> str:
    """Return a datapoint's id: from the survey's own stable id if given, else from its body.

    ``survey_id`` is a survey identifier that is unique and stable for the measurement
    (ZTF ``candid``, LSST ``diaSourceId``); it must be namespaced by the caller if two
    surveys could share numbers (for example ``"ztf:123"``).
    """
    if survey_id is not None:
        return content_hash("datapoint", {"survey_id": str(survey_id)})
    return content_hash("datapoint", dict(body))


def state_id(datapoint_ids: Iterable[str]) -> str:
    """Return a state's id from its datapoint ids; order and repeats do not matter."""
    return content_hash("state", sorted(set(datapoint_ids)))


def config_id(config: Mapping[str, Any]) -> str:
    """Return a configuration's hash (the key of the configuration registry)."""
    return content_hash("config", dict(config))


def result_id(*, unit: str, unit_version: str, config: str, inputs: Iterable[str]) -> str:
    """Return a derived result's id from the unit, its version, its configuration hash
    and the ids of its inputs (a state, datapoints, other results); input order matters
    only through sorting, so pass ids, not positions."""
    return content_hash(
        "result",
        {
            "config": config,
            "inputs": sorted(set(inputs)),
            "unit": unit,
            "unit_version": unit_version,
        },
    )


def job_id(job: Mapping[str, Any]) -> str:
    """Return a job's canonical hash from its parsed (not textual) content."""
    return content_hash("job", dict(job))
