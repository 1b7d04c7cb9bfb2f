"""Kafka sources: alerts from Apache Kafka topics, as ZTF and Rubin publish them.

ZTF publishes one Avro container per message on a topic a night
(``ztf_YYYYMMDD_programid1``); Rubin frames each alert in the Confluent wire format (a
zero byte, a 4-byte schema-registry id, a schemaless Avro body) and its brokers ask for
SASL/SCRAM over TLS. :class:`KafkaSource` reads both with confluent-kafka (librdkafka)
and hands each message on undecoded (:class:`~units.contracts.Message`), to be decoded
by the same shapers as files, in worker processes if there are any.

Where the runner is in each partition is kept in the ledger, not in Kafka
(``projections.t0``): when partitions are assigned to this process, the stream asks the
runner (``start``) where each one stands and reads on from there; offsets are committed
to Kafka too, after the ledger holds them, so that monitoring tools see the group's lag.

A consumer, a producer and a network are not science: like the simulator, this lives
with the runners, and the job names it as any other source (entry point ``KafkaSource``).
"""

from __future__ import annotations

import base64
import json
import logging
import os
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, ClassVar, Literal

from confluent_kafka import (
    OFFSET_BEGINNING,
    OFFSET_END,
    Consumer,
    KafkaError,
    KafkaException,
    TopicPartition,
)
from confluent_kafka import (
    Message as KafkaMessage,
)
from confluent_kafka.admin import AdminClient
from pydantic import Field, field_validator, model_validator

from skyledger.ledger.errors import ConfigError
from skyledger.units.alerts import Alert, Blob, Unreadable
from skyledger.units.base import UnitConfig
from skyledger.units.contracts import Message, StreamSource
from skyledger.units.packets.confluent import LSST_SCHEMA_IDS
from skyledger.units.packets.decode import unreadable
from skyledger.units.sources import iter_decoded

__all__ = [
    "REACH_S",
    "KafkaSource",
    "KafkaStream",
    "log",
]

log = logging.getLogger("skyledger.kafka")
log.addHandler(logging.NullHandler())  # the client's complaints go to the run's notes

SECRET_SETTINGS = frozenset(
    {"sasl.password", "ssl.key.password", "ssl.keystore.password", "sasl.oauthbearer.client.secret"}
)
"""Client settings that must come from the environment (``${NAME}``), never the job."""
OWN_SETTINGS = frozenset(
    {"bootstrap.servers", "group.id", "enable.auto.commit", "enable.auto.offset.store",
     "enable.partition.eof", "auto.offset.reset"}
)  # fmt: skip
"""Client settings the source sets itself, from its own options."""
_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
REACH_S = 10.0  # how long problems(), open() and making a topic wait for the broker to answer
_ASSIGN_S = 30.0  # a run that is assigned no partition for this long stops
_PATTERN_S = 30.0  # how often the topics are listed again for a pattern


def _expand(value: str) -> str:
    """Return ``value`` with every ``${NAME}`` replaced by the environment's NAME."""
    return _ENV.sub(lambda m: os.environ.get(m.group(1), ""), value)


class KafkaSource(StreamSource):
    """Alerts from Kafka topics: ZTF's Avro containers, Rubin's Confluent-framed packets.

    Each message is one packet (or several: a container may hold many records). The
    position in each partition is kept in the ledger with what T0 appended from it, so
    a crash neither loses nor doubles an alert; processes in one ``group_id`` split the
    partitions between them.
    """

    version: ClassVar[str] = "1.0"

    class Config(UnitConfig):
        """Where the alerts are, and how to connect."""

        bootstrap_servers: str = Field(
            description="the brokers to connect to first, HOST:PORT[,HOST:PORT...]"
        )
        topics: list[str] = Field(default_factory=list, description="topics to read")
        pattern: str | None = Field(
            default=None,
            description="instead of topics: a regular expression for topic names, matched "
            r"whole (ZTF's nightly topics: 'ztf_\d{8}_programid1'); topics created later "
            "are read too",
        )
        group_id: str = Field(
            default="skyledger",
            description="the consumer group: its processes split the partitions",
        )
        start: Literal["earliest", "latest"] = Field(
            default="earliest",
            description="where to begin a partition the ledger holds no position for",
        )
        schema_registry: str | None = Field(
            default=None,
            description="URL of a schema registry to fetch the writer schema of a "
            "Confluent-framed packet whose id is not one of the official Rubin schemas "
            "shipped with skyledger (once per id); ${NAME} is read from the environment",
        )
        client: dict[str, str] = Field(
            default_factory=dict,
            description="librdkafka settings passed to the consumer as they are "
            "(security.protocol, sasl.mechanism, sasl.username, ssl.ca.location...); "
            "${NAME} in a value is read from the environment, and passwords must be given "
            "that way: the job is recorded in the ledger",
        )

        @model_validator(mode="after")
        def _one_of_topics_or_pattern(self) -> KafkaSource.Config:
            if bool(self.topics) == (self.pattern is not None):
                raise ValueError("give either topics (a list) or pattern, not both or neither")
            return self

        @field_validator("pattern")
        @classmethod
        def _compiles(cls, value: str | None) -> str | None:
            if value is not None:
                try:
                    re.compile(value)
                except re.error as exc:
                    raise ValueError(f"not a regular expression: {exc}") from None
            return value

        @field_validator("client")
        @classmethod
        def _client_settings(cls, value: dict[str, str]) -> dict[str, str]:
            for key, setting in value.items():
                if key in OWN_SETTINGS:
                    raise ValueError(f"{key}: set by the source's own options, not here")
                if key in SECRET_SETTINGS and not _ENV.fullmatch(setting):
                    raise ValueError(
                        f"{key}: give it as ${{VARIABLE}}, read from the environment; a "
                        "job's configuration is recorded in the ledger"
                    )
            return value

    config: KafkaSource.Config

    def label(self) -> str:
        """Return what AlertReceived.source records: the brokers and the topics."""
        topics = ",".join(self.config.topics) or f"/{self.config.pattern}/"
        return f"{self.name}:{self.config.bootstrap_servers}/{topics}"

    def settings(self) -> dict[str, Any]:
        """Return the consumer's librdkafka settings (secrets read from the environment)."""
        return {
            "bootstrap.servers": self.config.bootstrap_servers,
            "group.id": self.config.group_id,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "enable.partition.eof": True,
            "auto.offset.reset": self.config.start,
            "client.id": "skyledger",
            "logger": log,
            **{key: _expand(value) for key, value in self.config.client.items()},
        }

    def problems(self) -> list[str]:
        """Return what keeps the source from being read: an unset environment variable,
        no broker answering, a topic the broker does not have, a pattern no topic matches."""
        found = []
        texts = [("bootstrap_servers", self.config.bootstrap_servers)]
        texts += [(f"client.{key}", value) for key, value in self.config.client.items()]
        if self.config.schema_registry:
            texts.append(("schema_registry", self.config.schema_registry))
        for field, text in texts:
            for name in _ENV.findall(text):
                if name not in os.environ:
                    found.append(f"{field}: environment variable {name} is not set")
        if found:
            return found
        try:
            topics = _topics(self)
        except KafkaException as exc:
            return [f"bootstrap_servers: no broker answered at {self.config.bootstrap_servers} "
                    f"within {REACH_S:.0f} s ({exc.args[0]})"]  # fmt: skip
        for topic in self.config.topics:
            if topic not in topics:
                there = ", ".join(sorted(t for t in topics if not t.startswith("__"))[:10])
                found.append(f"topics: no topic {topic!r} on the broker (there: {there or 'none'})")
        if self.config.pattern is not None and not any(
            re.fullmatch(self.config.pattern, t) for t in topics
        ):
            found.append(f"pattern: no topic on the broker matches {self.config.pattern!r}")
        return found

    def open(self, start: Callable[[Sequence[str]], Mapping[str, int]]) -> KafkaStream:
        """Join the group and return the stream (see :class:`KafkaStream`)."""
        return KafkaStream(self, start)

    def packets(self) -> Iterator[Alert | Unreadable]:
        """Yield every packet from the source's own start to the end of the partitions
        assigned to this process (no ledger: positions are not kept)."""
        stream = self.open(lambda partitions: {})
        try:
            while not stream.at_end():
                yield from iter_decoded(m.blob for m in stream.poll(500, 0.5))
        finally:
            stream.close()

    def key(self) -> str:
        """Return the source's name and what it reads (not the group or the client's
        settings: positions are kept per partition, whoever reads it)."""
        topics = ",".join(sorted(self.config.topics)) or f"/{self.config.pattern}/"
        return f"{self.name}:{self.config.bootstrap_servers}:{topics}"


def _topics(source: KafkaSource) -> set[str]:
    """Return the topics a broker has; raise KafkaException if none answers in time, with
    the client's own last complaint (refused credentials, say) when it made one."""
    heard = _Heard()
    listening = logging.Logger("skyledger.kafka.check", logging.WARNING)
    listening.addHandler(heard)
    settings: dict[str, Any] = {"bootstrap.servers": source.config.bootstrap_servers}
    settings |= {key: _expand(value) for key, value in source.config.client.items()}
    admin = AdminClient(settings | {"logger": listening})
    try:
        return set(admin.list_topics(timeout=REACH_S).topics)
    except KafkaException as exc:
        admin.poll(1.0)  # the client's logs are handed over here
        error = exc.args[0]
        text = error.str() if isinstance(error, KafkaError) else str(error)
        raise KafkaException(f"{text}; {heard.last}" if heard.last else text) from None


class _Heard(logging.Handler):
    """Keeps the last thing a client complained of."""

    last = ""

    def emit(self, record: logging.LogRecord) -> None:
        self.last = record.getMessage()


class KafkaStream:
    """A consumer in the source's group, reading each assigned partition from the
    offset the runner's ``start`` gives (the ledger's position), else from the source's
    ``start`` (earliest or latest).

    Partition names are ``kafka:<cluster id>:<topic>:<partition>``: offsets mean
    something only within one cluster. Messages carry the locator
    ``kafka:<topic>/<partition>@<offset>``.
    """

    def __init__(self, source: KafkaSource, start: Callable[[Sequence[str]], Mapping[str, int]]):
        self.source = source
        self._start = start
        self.errors: list[str] = []  # transient client errors, latest last (at most 100)
        self._consumer = Consumer(source.settings() | {"error_cb": self._client_error})
        self.cluster = self._cluster()
        self._assigned: dict[str, TopicPartition] = {}  # partition name -> topic partition
        self._at_end: set[str] = set()
        self._held: set[str] = set()
        self._schemas: dict[int, tuple[str | None, str, float]] = {}  # id -> text, error, when
        self._unassigned_since = time.monotonic()  # when this process last held none
        self._topics: list[str] = []
        self._listed = 0.0
        self._subscribe()

    def _subscribe(self) -> None:
        """Subscribe to the topics, or to those matching the pattern now (matched here:
        librdkafka's own regular expressions lack much of Python's, ``\\d`` for one)."""
        config = self.source.config
        topics = config.topics
        if config.pattern is not None:
            try:
                listed = self._consumer.list_topics(timeout=REACH_S).topics
            except KafkaException as exc:
                self._error(f"listing topics: {exc.args[0]}")
                return
            finally:
                self._listed = time.monotonic()
            topics = sorted(t for t in listed if re.fullmatch(config.pattern, t))
        if topics and topics != self._topics:
            self._consumer.subscribe(
                topics, on_assign=self._on_assign, on_revoke=self._on_revoke,
                on_lost=self._on_revoke,
            )  # fmt: skip
            self._topics = topics

    def _cluster(self) -> str:
        """Return the cluster's id (waiting for a broker to answer, up to a minute)."""
        deadline = time.monotonic() + 6 * REACH_S
        while True:
            try:
                metadata = self._consumer.list_topics(timeout=REACH_S)
                return str(metadata.cluster_id or self.source.config.bootstrap_servers)
            except KafkaException as exc:
                if time.monotonic() > deadline:
                    self._consumer.close()
                    servers = self.source.config.bootstrap_servers
                    raise ConfigError(f"bootstrap_servers: no broker answered at {servers}: "
                                      f"{exc.args[0]}") from None  # fmt: skip

    def name(self, topic: str, partition: int) -> str:
        """Return a partition's name (see the class)."""
        return f"kafka:{self.cluster}:{topic}:{partition}"

    def _offsets(self, partitions: Sequence[TopicPartition]) -> list[TopicPartition]:
        """Return the partitions with the offsets to read them from."""
        names = [self.name(tp.topic, tp.partition) for tp in partitions]
        known = self._start(names)
        default = OFFSET_BEGINNING if self.source.config.start == "earliest" else OFFSET_END
        placed = []
        for tp, name in zip(partitions, names, strict=True):
            offset = known.get(name)
            placed.append(TopicPartition(tp.topic, tp.partition, default if offset is None
                                         else offset))  # fmt: skip
            self._assigned[name] = placed[-1]
            self._at_end.discard(name)
        return placed

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        placed = self._offsets(partitions)
        log.info("assigned %s", ", ".join(f"{p.topic}/{p.partition}@{p.offset}" for p in placed))
        consumer.assign(placed)
        held = [tp for name, tp in self._assigned.items() if name in self._held]
        if held:
            consumer.pause(held)

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            name = self.name(tp.topic, tp.partition)
            self._assigned.pop(name, None)
            self._at_end.discard(name)
        if not self._assigned:
            self._unassigned_since = time.monotonic()
        log.info("revoked %s", ", ".join(f"{p.topic}/{p.partition}" for p in partitions))

    @property
    def assigned(self) -> list[str]:
        """Return the names of the partitions assigned to this process."""
        return list(self._assigned)

    def poll(self, max_messages: int, timeout_s: float) -> list[Message]:
        """Return up to ``max_messages`` messages; errors of the client are logged and
        kept in :attr:`errors` (librdkafka reconnects by itself), fatal ones raised."""
        if self.source.config.pattern is not None and (
            time.monotonic() - self._listed > (_PATTERN_S if self._topics else 1.0)
        ):
            self._subscribe()  # a topic that began since (ZTF's next night)
        if not self._topics:
            time.sleep(timeout_s)
            return []
        got: list[KafkaMessage] = self._consumer.consume(max_messages, timeout_s)
        messages = []
        for raw in got:
            error = raw.error()
            topic, partition = raw.topic() or "", raw.partition() or 0
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    self._at_end.add(self.name(topic, partition))
                    continue
                if error.fatal():
                    raise KafkaException(error)
                self._error(f"{topic}/{partition}: {error.str()}")
                continue
            name = self.name(topic, partition)
            if name in self._held or name not in self._assigned:
                continue  # fetched before it was held or handed to another process
            self._at_end.discard(name)
            offset = raw.offset() or 0
            kind, stamp = raw.timestamp()
            messages.append(Message(
                partition=name, offset=offset, blob=self._blob(raw.value() or b"",
                f"kafka:{topic}/{partition}@{offset}"),
                timestamp_ms=stamp if kind != 0 else None,
            ))  # fmt: skip
        return messages

    def _client_error(self, error: KafkaError) -> None:
        """Keep an error the client reports (a broker away: it reconnects by itself)."""
        if error.fatal():
            log.error("kafka: fatal: %s", error.str())
        self._error(error.str())

    def _error(self, text: str) -> None:
        log.warning("kafka: %s", text)
        self.errors = [*self.errors[-99:], text]

    def _blob(self, data: bytes, locator: str) -> Blob | Unreadable:
        """Return a message's bytes, with the registry's schema for a framed packet whose
        id is not an official one (fetched once per id)."""
        registry = self.source.config.schema_registry
        if registry is None or len(data) < 5 or data[0] != 0:
            return Blob(data, locator)
        schema_id = int.from_bytes(data[1:5], "big")
        if schema_id in LSST_SCHEMA_IDS:
            return Blob(data, locator)
        text, error, when = self._schemas.get(schema_id, (None, "", 0.0))
        if text is None and (not error or time.monotonic() - when > 60):
            try:
                text, error = fetch_schema(_expand(registry), schema_id), ""
            except (OSError, ValueError, KeyError) as exc:
                text, error = None, str(exc)
            self._schemas[schema_id] = (text, error, time.monotonic())
        if text is None:
            return unreadable(data, locator, f"schema id {schema_id}: {error}")
        return Blob(data, locator, text)

    def at_end(self) -> bool:
        """Return whether every assigned partition is at its end or held; also True when
        this process has held no partition for 30 s (others of the group hold them all)."""
        if not self._assigned:
            return time.monotonic() - self._unassigned_since > _ASSIGN_S
        return all(name in self._at_end or name in self._held for name in self._assigned)

    def hold(self, partition: str) -> None:
        """Stop reading a partition (see :class:`~units.contracts.Stream`)."""
        self._held.add(partition)
        tp = self._assigned.get(partition)
        if tp is not None:
            self._consumer.pause([tp])

    def rewind(self) -> None:
        """Read every assigned partition again from where ``start`` says now."""
        if not self._assigned:
            return
        current = [TopicPartition(tp.topic, tp.partition) for tp in self._assigned.values()]
        self._assigned.clear()
        self._consumer.assign(self._offsets(current))

    def stored(self, positions: Mapping[str, int]) -> None:
        """Commit the offsets the ledger holds to Kafka (asynchronously; for monitoring)."""
        offsets = [
            TopicPartition(tp.topic, tp.partition, positions[name])
            for name, tp in self._assigned.items()
            if name in positions
        ]
        if offsets:
            try:
                self._consumer.commit(offsets=offsets, asynchronous=True)
            except KafkaException as exc:  # a rebalance under way: the next commit tells
                self._error(f"commit: {exc.args[0]}")

    def close(self) -> None:
        """Leave the group."""
        try:
            self._consumer.close()
        except (KafkaException, RuntimeError) as exc:
            log.warning("kafka: closing the consumer: %s", exc)


def fetch_schema(registry: str, schema_id: int, timeout_s: float = 10.0) -> str:
    """Return the schema (JSON text) a Confluent schema registry has under ``schema_id``
    (``GET <registry>/schemas/ids/<id>``; user and password in the URL are sent as basic
    authentication). Raise OSError (naming the URL) or ValueError."""
    parts = urllib.parse.urlsplit(registry)
    netloc = parts.hostname or ""
    if parts.port:
        netloc += f":{parts.port}"
    base = urllib.parse.urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))
    url = f"{base}/schemas/ids/{schema_id}"
    request = urllib.request.Request(url, headers={"Accept": "application/json"})
    if parts.username:
        user, password = urllib.parse.unquote(parts.username), parts.password or ""
        token = f"{user}:{urllib.parse.unquote(password)}"
        request.add_header("Authorization", "Basic " + base64.b64encode(token.encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            body = json.loads(response.read())
    except urllib.error.HTTPError as exc:
        raise OSError(f"the schema registry at {base} answered HTTP {exc.code} for {url}") from None
    except urllib.error.URLError as exc:
        raise OSError(f"cannot reach the schema registry at {base}: {exc.reason}") from None
    schema = body["schema"] if isinstance(body, dict) else None
    if not isinstance(schema, str):
        raise ValueError(f"the schema registry at {base} gave no schema for id {schema_id}")
    return schema
