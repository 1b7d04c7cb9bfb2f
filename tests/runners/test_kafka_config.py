"""KafkaSource's configuration, checked before anything runs: the jobs docs/sources.md
shows are valid, passwords must come from the environment, and what cannot be read
(an unset variable, no broker, no such topic) is refused naming the option."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from skyledger.ledger import ConfigError
from skyledger.runners.embedded import EmbeddedKafka, free_port
from skyledger.runners.job import parse_job
from skyledger.runners.kafka import KafkaSource
from skyledger.runners.kafka_publish import KafkaTarget

ROOT = Path(__file__).resolve().parents[2]


def kafka_jobs() -> list[str]:
    """Return the YAML jobs of docs/sources.md that name a KafkaSource."""
    text = (ROOT / "docs" / "sources.md").read_text()
    blocks = re.findall(r"```yaml\n(.*?)```", text, flags=re.DOTALL)
    return [b for b in blocks if "KafkaSource" in b]


def test_the_kafka_jobs_of_the_docs_are_valid_jobs() -> None:
    jobs = kafka_jobs()
    assert len(jobs) == 2
    for text in jobs:
        job = parse_job(text)
        assert job.sources[0].unit == "KafkaSource"


def test_a_password_written_in_the_job_is_refused_naming_it() -> None:
    text = kafka_jobs()[1].replace("${RUBIN_KAFKA_PASSWORD}", "hunter2")
    with pytest.raises(ConfigError, match=r"sasl\.password: give it as \$\{VARIABLE\}"):
        parse_job(text)


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"bootstrap_servers": "h:1"}, "either topics"),
        ({"bootstrap_servers": "h:1", "topics": ["a"], "pattern": "a"}, "either topics"),
        ({"bootstrap_servers": "h:1", "pattern": "ztf_(("}, "not a regular expression"),
        ({"bootstrap_servers": "h:1", "topics": ["a"], "client": {"group.id": "x"}},
         "group.id: set by the source's own options"),
    ],
)  # fmt: skip
def test_bad_configurations_are_refused(config: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        KafkaSource(config)


def test_an_unset_environment_variable_is_a_problem_before_connecting(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("SKYLEDGER_TEST_UNSET", raising=False)
    source = KafkaSource({"bootstrap_servers": "127.0.0.1:1", "topics": ["a"],
                          "client": {"sasl.password": "${SKYLEDGER_TEST_UNSET}"}})  # fmt: skip
    assert source.problems() == [
        "client.sasl.password: environment variable SKYLEDGER_TEST_UNSET is not set"
    ]


def test_a_kafka_url_must_name_a_topic() -> None:
    assert KafkaTarget.parse("kafka://127.0.0.1:9092/ztf") == KafkaTarget("127.0.0.1:9092", "ztf")
    for url in ("kafka://127.0.0.1:9092", "nats://h:1/t", "kafka:///t"):
        with pytest.raises(ConfigError, match="expected kafka://HOST:PORT/TOPIC"):
            KafkaTarget.parse(url)


@pytest.mark.kafka
def test_no_broker_and_no_topic_are_problems_naming_the_option(
    kafka_server: EmbeddedKafka,
) -> None:
    nowhere = KafkaSource({"bootstrap_servers": f"127.0.0.1:{free_port()}", "topics": ["a"]})
    (problem,) = nowhere.problems()
    assert problem.startswith("bootstrap_servers: no broker answered at 127.0.0.1:")
    missing = KafkaSource({"bootstrap_servers": kafka_server.bootstrap,
                           "topics": ["no_such_topic"]})  # fmt: skip
    assert missing.problems()[0].startswith("topics: no topic 'no_such_topic' on the broker")
    unmatched = KafkaSource({"bootstrap_servers": kafka_server.bootstrap,
                             "pattern": r"ztf_\d{8}_nothing"})  # fmt: skip
    assert unmatched.problems() == [r"pattern: no topic on the broker matches 'ztf_\\d{8}_nothing'"]
