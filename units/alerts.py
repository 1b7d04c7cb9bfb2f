"""Alerts, unreadable packets and datapoints: the values sources and shapers pass on.

A source turns bytes into :class:`Alert` (one decoded packet) or :class:`Unreadable`
(bytes that could not be decoded, with the reason); a shaper turns an alert into
:class:`Datapoint` values. All three are immutable and carry no behaviour.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["Alert", "Blob", "Datapoint", "DatapointKind", "Survey", "Unreadable", "survey_of"]

Survey = Literal["ztf", "lsst", "elasticc"]
DatapointKind = Literal["detection", "upper_limit", "forced"]


@dataclass(frozen=True, slots=True)
class Alert:
    """One decoded alert packet and where its bytes came from.

    Attributes:
        stock: The object followed through time: ZTF ``objectId``,
            ``lsst:<diaObjectId>``, ``lsst-ss:<ssObjectId>`` or ``elasticc:<diaObjectId>``.
        survey: ``"ztf"``, ``"lsst"`` or ``"elasticc"``.
        alert_id: The survey's id of the alert (ZTF ``candidate.candid``, LSST
            ``diaSourceId``, ELAsTiCC ``alertId``), as a string.
        digest: ``ledger.canonical.digest_bytes(packet)``.
        locator: Where the packet was read, e.g. ``/data/night/x.avro#3`` or
            ``night.tar!x.avro#0``.
        schema: Schema label, e.g. ``ztf-4.02``, ``lsst.v10_0``, ``elasticc.v0_9``.
        payload: The decoded record (cutouts included).
        packet: Bytes of this one packet that decode on their own.
    """

    stock: str
    survey: Survey
    alert_id: str
    digest: str
    locator: str
    schema: str
    payload: Mapping[str, Any] = field(repr=False)
    packet: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class Blob:
    """Bytes a source read and did not decode: a file, an archive member or a message,
    holding one packet or several (an Avro container, a run of Confluent-framed packets).
    ``units.sources.iter_blob`` decodes it, in whichever process has the spare core.

    Attributes:
        data: The bytes (gzip-compressed or not).
        locator: Where they were read, e.g. ``/data/night/x.avro`` or ``night.tar!x.avro``.
        schema: For Confluent-framed bytes whose schema id is not one of the official
            schemas shipped with skyledger: the writer schema (JSON text) registered
            under that id, as a schema registry gave it; None otherwise.
    """

    data: bytes = field(repr=False)
    locator: str
    schema: str | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class Unreadable:
    """Bytes that could not be decoded into an alert, and why.

    Attributes:
        digest: ``ledger.canonical.digest_bytes(packet)``.
        locator: Where the bytes were read.
        reason: A sentence a person can act on, e.g.
            ``"corrupt Avro container: sync marker not found after block 1 (0 records read)"``.
        packet: The bytes that could not be read (the whole file when nothing in it
            decoded, otherwise the remainder from the first bad block on).
    """

    digest: str
    locator: str
    reason: str
    packet: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class Datapoint:
    """One measurement of a stock: a detection, an upper limit or forced photometry.

    Attributes:
        id: Content-addressed id (``ledger.ids.datapoint_id``); see ``docs/sources.md``.
        stock: The stock the measurement belongs to.
        kind: ``"detection"``, ``"upper_limit"`` or ``"forced"``.
        body: The survey's own fields plus the normalised keys ``jd``, ``band``,
            ``mag``, ``magerr``, ``flux``, ``fluxerr``, ``limmag``.
    """

    id: str
    stock: str
    kind: DatapointKind
    body: dict[str, Any] = field(repr=False)


def survey_of(stock: str) -> Survey:
    """Return the survey of a stock by its name (:attr:`Alert.stock`): ``lsst:`` and
    ``lsst-ss:`` are Rubin's, ``elasticc:`` ELAsTiCC's, any other ZTF's."""
    if stock.startswith(("lsst:", "lsst-ss:")):
        return "lsst"
    return "elasticc" if stock.startswith("elasticc:") else "ztf"
