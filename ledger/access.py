"""Who may read what: grants, channel policies and personal access tokens, as events.

Access is recorded in the ledger like everything else, so who could see a channel, from
when and by whose grant, is audited the way results are. Members are identities with
AMPEL's meaning: ``user:NAME``, ``org:NAME``, ``team:ORG/TEAM``. A token's secret is never
stored: only its SHA-256 digest, beside a public id that names it.

Streams: ``access:<channel>`` (grants, revocations, the channel's policy) and
``token:<id>`` (a token's issue and revocation).
"""

from __future__ import annotations

import re

from pydantic import AwareDatetime, Field

from skyledger.ledger.errors import ConfigError
from skyledger.ledger.events import Event

__all__ = [
    "ACCESS_EVENT_TYPES",
    "MEMBER",
    "AccessGranted",
    "AccessRevoked",
    "ChannelPolicySet",
    "TokenIssued",
    "TokenRevoked",
    "check_member",
]

MEMBER = re.compile(r"^(user:[^\s/:]+|org:[^\s/:]+|team:[^\s/:]+/[^\s/:]+)$")
"""An identity: ``user:NAME``, ``org:NAME`` or ``team:ORG/TEAM``."""


def check_member(value: str) -> str:
    """Return an identity, or raise ConfigError saying what one looks like (events are
    not validated on their fast path: callers check what people give)."""
    if not MEMBER.match(value):
        msg = f"{value!r} is not an identity: give user:NAME, org:NAME or team:ORG/TEAM"
        raise ConfigError(msg)
    return value


class AccessGranted(Event):
    """A member may read a channel's stocks, results and reactions from now on."""

    identity = ("channel", "member", "time")

    channel: str = Field(min_length=1)
    member: str = Field(description="user:NAME, org:NAME or team:ORG/TEAM")
    by: str = Field(description="who granted it")
    reason: str = ""


class AccessRevoked(Event):
    """A member may no longer read a channel (from this position on)."""

    identity = ("channel", "member", "time")

    channel: str = Field(min_length=1)
    member: str
    by: str
    reason: str = ""


class ChannelPolicySet(Event):
    """A channel's reading policy: public (anyone, without a credential) or members only,
    and the survey data rights its readers have (ZTF programids; None: all)."""

    identity = ("channel", "time")

    channel: str = Field(min_length=1)
    public: bool = False
    programids: tuple[int, ...] | None = Field(
        default=None, description="the ZTF programids its readers see (1: public data)"
    )
    by: str


class TokenIssued(Event):
    """A personal access token was made for an identity: its public id, the digest of its
    secret, the channels it is limited to (None: all its owner may read) and its expiry."""

    identity = ("token_id",)

    token_id: str = Field(pattern=r"^[0-9a-f]{16}$")
    digest: str = Field(pattern=r"^[0-9a-f]{64}$", description="SHA-256 of the whole token")
    owner: str = Field(description="the identity it acts as")
    name: str = ""
    channels: tuple[str, ...] | None = None
    expires: AwareDatetime
    by: str
    identities: tuple[str, ...] | None = Field(
        default=None, description="the identities it acts with (a signed-in user's, as their "
        "identity provider gave them when it was made); None: its owner alone"
    )

    unstored_if_none = ("identities",)


class TokenRevoked(Event):
    """A personal access token may no longer be used."""

    identity = ("token_id",)

    token_id: str
    by: str


ACCESS_EVENT_TYPES: tuple[type[Event], ...] = (
    AccessGranted,
    AccessRevoked,
    ChannelPolicySet,
    TokenIssued,
    TokenRevoked,
)
