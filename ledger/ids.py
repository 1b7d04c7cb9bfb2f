"""Content-addressed ids of datapoints, states, results, configurations and jobs.

Every id is a 128-bit BLAKE2b digest (32 hex digits) of canonical content
(:mod:`ledger.canonical`), separated by kind. Equal content gives equal ids in every
process and run; any change of content, unit version or configuration gives another id.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from skyledger.ledger.canonical import content_hash

__all__ = [
    "bodies_id",
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


def bodies_id(datapoint_events: Iterable[str]) -> str:
    """Return the hash of the ids of the events that added a state's datapoints: unlike
    the state id, it changes when any datapoint's body does."""
    return content_hash("bodies", sorted(set(datapoint_events)))


def config_id(config: Mapping[str, Any]) -> str:
    """Return a configuration's hash (the key of the configuration registry)."""
    return content_hash("config", dict(config))


def result_id(
    *, unit: str, unit_version: str, unit_digest: str, config: str, inputs: Iterable[str]
) -> str:
    """Return a derived result's id from the unit, its version, the digest of its code,
    its configuration hash and the ids of its inputs (a state and its bodies, a
    datapoint's event, other results); input order does not matter, so pass ids, not
    positions. A code change without a version bump gives other ids: old results are
    never reused for new code."""
    return content_hash(
        "result",
        {
            "config": config,
            "inputs": sorted(set(inputs)),
            "unit": unit,
            "unit_digest": unit_digest,
            "unit_version": unit_version,
        },
    )


def job_id(job: Mapping[str, Any]) -> str:
    """Return a job's canonical hash from its parsed (not textual) content."""
    return content_hash("job", dict(job))
