"""Shared helpers of the client scenarios, so the test modules only describe scenarios:

- processes: free ports, waiting, subprocesses with timeouts, the Iggy server, the proxy;
- client tools: presence checks, the Java driver (tests/java);
- records: one comparable `Record` type and the offset/record-by-record assertions;
- confluent-kafka and Iggy-SDK calls used by several modules (client libraries are imported
  lazily, so a missing one only skips the scenarios that need it).

Every wait has a deadline; every subprocess and client call has a timeout.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

REPO_ROOT = Path(__file__).resolve().parents[2]
JAVA_PROJECT = REPO_ROOT / "tests" / "java"
JAVA_STREAMS_PROJECT = REPO_ROOT / "tests" / "java-streams"

# Iggy stream holding the Kafka topics (passed to every proxy as --default-stream).
DEFAULT_STREAM = "kafka"

IGGY_USERNAME = "iggy"
IGGY_PASSWORD = "iggy"

# How long one client call (a subprocess, a flush, a poll loop) may take before the test fails.
CLIENT_TIMEOUT_S = 60.0
STARTUP_TIMEOUT_S = 60.0


class HarnessError(RuntimeError):
    """The harness could not do its part (a process did not start, a wait ran out)."""


def strict() -> bool:
    """In strict mode (CLIENTS_STRICT=1, set by .ci/run after installing the clients) a missing tool
    fails the test instead of skipping it, so a broken install cannot pass as green."""
    return os.environ.get("CLIENTS_STRICT", "") not in ("", "0", "false")


def unique_name(prefix: str) -> str:
    """A topic name no other test uses (letters first, so Iggy never reads it as a number)."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


# ----------------------------------------------------------------------------- ports, waiting


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(predicate, timeout: float, what: str, proc: "ManagedProcess | None" = None,
               interval: float = 0.05):
    """Calls predicate() until it returns a truthy value; fails after `timeout` seconds or as
    soon as `proc` exits, with the process's log tail in the message."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while True:
        if proc is not None and not proc.alive():
            raise HarnessError(f"{proc.name} exited with {proc.returncode()} while waiting for "
                               f"{what}\n--- {proc.name} log ---\n{proc.tail()}")
        try:
            value = predicate()
            if value:
                return value
        except Exception as e:  # noqa: BLE001 - any failure of a probe means "not yet"
            last_error = e
        if time.monotonic() > deadline:
            detail = f" (last error: {last_error})" if last_error else ""
            log = f"\n--- {proc.name} log ---\n{proc.tail()}" if proc else ""
            raise HarnessError(f"timed out after {timeout:.0f}s waiting for {what}{detail}{log}")
        time.sleep(interval)


def port_accepts(host: str, port: int) -> bool:
    with socket.create_connection((host, port), timeout=1.0):
        return True


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2.0) as resp:
            return resp.status == 200
    except urllib.error.HTTPError:
        return False


# ----------------------------------------------------------------------------- subprocesses


def run(cmd: Sequence[str], *, timeout: float = CLIENT_TIMEOUT_S, input: bytes | None = None,
        env: Mapping[str, str] | None = None, cwd: Path | None = None,
        check: bool = True) -> subprocess.CompletedProcess:
    """Runs a command to completion with a timeout; on failure or timeout raises with the
    command, exit code, stdout and stderr in the message."""
    full_env = dict(os.environ)
    if env:
        full_env.update(env)
    try:
        result = subprocess.run(list(cmd), input=input, capture_output=True, timeout=timeout,
                                env=full_env, cwd=cwd)
    except subprocess.TimeoutExpired as e:
        raise HarnessError(
            f"timed out after {timeout:.0f}s: {' '.join(cmd)}\n"
            f"--- stdout ---\n{_text(e.stdout)}\n--- stderr ---\n{_text(e.stderr)}") from None
    if check and result.returncode != 0:
        raise HarnessError(
            f"exit {result.returncode}: {' '.join(cmd)}\n"
            f"--- stdout ---\n{_text(result.stdout)}\n--- stderr ---\n{_text(result.stderr)}")
    return result


def _text(data: bytes | str | None, limit: int = 20_000) -> str:
    if data is None:
        return ""
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
    return text if len(text) <= limit else "...\n" + text[-limit:]


class ManagedProcess:
    """A long-running child process whose output goes to a log file.

    Started in its own process group so that stop() ends it and anything it started, and
    nothing else."""

    def __init__(self, name: str, cmd: Sequence[str], log_path: Path, *,
                 env: Mapping[str, str] | None = None, cwd: Path | None = None):
        self.name = name
        self.cmd = list(cmd)
        self.log_path = log_path
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(log_path, "ab")
        self._log.write(f"$ {' '.join(self.cmd)}\n".encode())
        self._log.flush()
        self.proc = subprocess.Popen(self.cmd, stdin=subprocess.DEVNULL, stdout=self._log,
                                     stderr=subprocess.STDOUT, env=dict(env) if env is not None else None,
                                     cwd=cwd, start_new_session=True)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def returncode(self) -> int | None:
        return self.proc.poll()

    def stop(self, graceful: bool = True, grace_s: float = 10.0) -> int | None:
        """SIGTERM (when graceful) then SIGKILL after `grace_s`; returns the exit code."""
        if self.alive():
            sig = signal.SIGTERM if graceful else signal.SIGKILL
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=grace_s if graceful else 5.0)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait(timeout=10.0)
        if not self._log.closed:
            self._log.close()
        return self.proc.returncode

    def log_text(self) -> str:
        try:
            return self.log_path.read_text("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def tail(self, lines: int = 60) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])


# ----------------------------------------------------------------------------- the proxy binary


def proxy_binary() -> Path:
    """The proxy to test: $PROXY_BIN when set, otherwise a fresh release build of the workspace
    (cargo does nothing when it is up to date)."""
    given = os.environ.get("PROXY_BIN")
    if given:
        path = Path(given)
        if not path.is_file() or not os.access(path, os.X_OK):
            raise HarnessError(f"PROXY_BIN={given} is not an executable file")
        return path
    cargo = shutil.which("cargo")
    if cargo is None:
        raise HarnessError("cargo not found and PROXY_BIN not set: cannot build the proxy")
    run([cargo, "build", "--release", "-p", "kafka-iggy-proxy"], cwd=REPO_ROOT, timeout=3600)
    # cargo puts it where CARGO_TARGET_DIR says (relative to the workspace), target/ otherwise.
    path = REPO_ROOT / os.environ.get("CARGO_TARGET_DIR", "target") / "release" / "kafka-iggy-proxy"
    if not path.is_file():
        raise HarnessError(f"cargo build succeeded but {path} does not exist")
    return path


# ----------------------------------------------------------------------------- Iggy server


def start_with_retries(child, attempts: int, what: str):
    """Runs `child._start_once()` until it succeeds, at most `attempts` times: a free port can be
    taken between picking it and the child binding it. A failed attempt's process is killed."""
    last: Exception | None = None
    for _ in range(attempts):
        try:
            return child._start_once()
        except HarnessError as e:
            last = e
            if child.process is not None:
                child.process.stop(graceful=False)
    raise HarnessError(f"{what} did not start after {attempts} attempts: {last}")


@dataclass
class IggyServer:
    """A real Iggy server (the binary named by IGGY_SERVER_BIN) on a fresh data directory,
    TCP only, on a free port of 127.0.0.1, root user iggy/iggy."""

    binary: Path
    workdir: Path
    host: str = "127.0.0.1"
    port: int = 0
    process: ManagedProcess | None = field(default=None, repr=False)

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def data_dir(self) -> Path:
        return self.workdir / "data"

    def start(self, attempts: int = 3) -> "IggyServer":
        return start_with_retries(self, attempts, "Iggy server")

    def _start_once(self) -> "IggyServer":
        self.port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("IGGY_")}
        # The server reads every IGGY_* variable as configuration (and warns about unknown
        # ones such as IGGY_SERVER_BIN): pass only these. Its working directory holds no
        # config.toml, so the embedded defaults plus these variables are the whole config.
        env.update({
            "IGGY_ROOT_USERNAME": IGGY_USERNAME,
            "IGGY_ROOT_PASSWORD": IGGY_PASSWORD,
            "IGGY_SYSTEM_PATH": str(self.data_dir),
            "IGGY_TCP_ENABLED": "true",
            "IGGY_TCP_ADDRESS": self.address,
            "IGGY_HTTP_ENABLED": "false",
            "IGGY_QUIC_ENABLED": "false",
            "IGGY_WEBSOCKET_ENABLED": "false",
        })
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.process = ManagedProcess("iggy-server", [str(self.binary)],
                                      self.workdir / "iggy-server.log", env=env,
                                      cwd=self.workdir)
        wait_until(lambda: port_accepts(self.host, self.port), STARTUP_TIMEOUT_S,
                   f"Iggy server TCP port {self.address}", proc=self.process)
        return self

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop(graceful=True)


# ----------------------------------------------------------------------------- the proxy


@dataclass
class Backend:
    """Which storage the proxy uses: 'memory', or 'iggy' with a running server."""

    kind: str
    iggy: IggyServer | None = None

    def proxy_args(self) -> list[str]:
        if self.kind == "memory":
            return ["--backend", "memory"]
        assert self.iggy is not None
        return ["--backend", "iggy", "--iggy-address", self.iggy.address,
                "--iggy-username", IGGY_USERNAME, "--iggy-password", IGGY_PASSWORD]


class Proxy:
    """One kafka-iggy-proxy process on free ports, ready once /readyz answers 200."""

    def __init__(self, binary: Path, backend: Backend, workdir: Path, name: str = "proxy",
                 extra_args: Sequence[str] = ()):
        self.binary = binary
        self.backend = backend
        self.workdir = workdir
        self.name = name
        self.extra_args = list(extra_args)
        self.port = 0
        self.metrics_port = 0
        self.process: ManagedProcess | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}"

    def start(self, attempts: int = 3) -> "Proxy":
        return start_with_retries(self, attempts, "proxy")

    def _start_once(self) -> "Proxy":
        self.port, self.metrics_port = free_port(), free_port()
        cmd = [str(self.binary),
               "--listen", self.bootstrap,
               "--advertised-address", self.bootstrap,
               "--metrics-listen", f"127.0.0.1:{self.metrics_port}",
               *self.backend.proxy_args(),
               "--default-stream", DEFAULT_STREAM,
               "--log-format", "plain",
               *self.extra_args]
        env = {k: v for k, v in os.environ.items() if not k.startswith("KAFKA_IGGY_")}
        env.setdefault("RUST_LOG", "info")
        env["NO_COLOR"] = "1"
        env["RUST_BACKTRACE"] = "1"
        self.process = ManagedProcess(self.name, cmd, self.workdir / f"{self.name}.log", env=env)
        wait_until(lambda: http_ok(f"{self.metrics_url}/readyz"), STARTUP_TIMEOUT_S,
                   f"{self.name} /readyz", proc=self.process)
        wait_until(lambda: port_accepts("127.0.0.1", self.port), 10,
                   f"{self.name} Kafka port", proc=self.process)
        return self

    def stop(self, graceful: bool = True) -> None:
        if self.process is not None:
            self.process.stop(graceful=graceful)

    def log_text(self) -> str:
        return self.process.log_text() if self.process else ""

    def panic_excerpt(self) -> str | None:
        """The log lines around the first 'panicked', or None when the proxy never panicked."""
        lines = self.log_text().splitlines()
        for i, line in enumerate(lines):
            if "panicked" in line:
                return "\n".join(lines[max(0, i - 5):i + 30])
        return None


# ----------------------------------------------------------------------------- client tools


def require_tool(name: str) -> str:
    """Path of an executable client tool; skips the test when it is missing (fails instead in
    strict mode, where .ci/run has installed everything)."""
    import pytest

    path = shutil.which(name)
    if path is None:
        message = f"{name} not installed (.ci/run installs it)"
        if strict():
            pytest.fail(message)
        pytest.skip(message)
    return path


def require_module(name: str):
    """Imports a Python client library; skips (strict: fails) when it is not installed."""
    import importlib

    import pytest

    try:
        return importlib.import_module(name)
    except ImportError as e:
        message = f"Python module {name} not installed (pip install -r tests/clients/requirements.txt): {e}"
        if strict():
            pytest.fail(message)
        pytest.skip(message)


def maven_jar(project: Path, name: str) -> Path:
    """Builds a Maven project of tests/ and returns its shaded jar target/`name`."""
    mvn = shutil.which("mvn")
    if mvn is None:
        raise HarnessError("mvn not found")
    run([mvn, "-q", "-B", "package"], cwd=project, timeout=900)
    jar = project / "target" / name
    if not jar.is_file():
        raise HarnessError(f"mvn package succeeded but {jar} does not exist")
    return jar


def java_driver_jar() -> Path:
    """The Java kafka-clients driver (tests/java)."""
    return maven_jar(JAVA_PROJECT, "kafka-clients-driver.jar")


def java_streams_jar() -> Path:
    """The Kafka Streams word count (tests/java-streams)."""
    return maven_jar(JAVA_STREAMS_PROJECT, "kafka-streams-app.jar")


def java_driver(jar: Path, command: str, timeout: float = CLIENT_TIMEOUT_S, **args) -> list[dict]:
    """Runs one command of the Java driver (tests/java) and returns its JSON output lines."""
    import json

    java = shutil.which("java")
    if java is None:
        raise HarnessError("java not found")
    cmd = [java, "-jar", str(jar), command, *(f"{k}={v}" for k, v in args.items())]
    result = run(cmd, timeout=timeout)
    return [json.loads(line) for line in result.stdout.decode().splitlines() if line.strip()]


# ----------------------------------------------------------------------------- records


@dataclass(frozen=True)
class Record:
    """One Kafka record as the scenarios compare it. `offset` is None before it is produced."""

    partition: int
    key: bytes | None
    value: bytes | None
    headers: tuple = ()  # ((name: str, value: bytes | None), ...)
    timestamp: int | None = None  # CreateTime, ms
    offset: int | None = None

    def with_offset(self, offset: int, timestamp: int | None = None) -> "Record":
        return Record(self.partition, self.key, self.value, self.headers,
                      self.timestamp if timestamp is None else timestamp, offset)


def assert_contiguous_offsets(records: Sequence[Record], start: Mapping[int, int] | None = None) -> None:
    """Per partition, the offsets in the given order are start, start+1, ... (0 by default):
    the real offsets, in send order, without gaps."""
    by_partition: dict[int, list[int]] = {}
    for r in records:
        by_partition.setdefault(r.partition, []).append(r.offset)
    for partition, offsets in by_partition.items():
        first = (start or {}).get(partition, 0)
        expected = list(range(first, first + len(offsets)))
        assert offsets == expected, (
            f"partition {partition}: offsets {offsets} are not the contiguous {expected}")


def assert_same_records(expected: Sequence[Record], actual: Sequence[Record], *,
                        check_timestamps: bool = True) -> None:
    """`actual` (in the order a consumer delivered them) holds exactly the `expected` records:
    same partition, offset, key, value, headers (and timestamp), and each partition's records
    arrived in offset order."""
    per_partition: dict[int, list[int]] = {}
    for r in actual:
        per_partition.setdefault(r.partition, []).append(r.offset)
    for partition, offsets in per_partition.items():
        assert offsets == sorted(offsets) and len(set(offsets)) == len(offsets), (
            f"partition {partition}: records arrived out of order or twice: offsets {offsets}")

    def norm(r: Record) -> Record:
        return r if check_timestamps else Record(r.partition, r.key, r.value, r.headers, None, r.offset)

    want = {(r.partition, r.offset): norm(r) for r in expected}
    got = {(r.partition, r.offset): norm(r) for r in actual}
    missing = sorted(set(want) - set(got))
    extra = sorted(set(got) - set(want))
    differing = [(want[k], got[k]) for k in sorted(set(want) & set(got)) if want[k] != got[k]]
    problems = []
    if missing:
        problems.append(f"{len(missing)} records missing (partition, offset): {missing[:20]}")
    if extra:
        problems.append(f"{len(extra)} unexpected records: {[got[k] for k in extra[:10]]}")
    for w, g in differing[:10]:
        problems.append(f"record differs at partition {w.partition} offset {w.offset}:\n"
                        f"  expected {w}\n  got      {g}")
    if len(differing) > 10:
        problems.append(f"... and {len(differing) - 10} more differing records")
    assert not problems, "\n".join(problems)


# ----------------------------------------------------------------------------- confluent-kafka


class _StderrAtEmit(logging.Handler):
    """Writes to whatever sys.stderr is when a record arrives (pytest's per-test capture)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stderr.write(self.format(record) + "\n")
        except Exception:  # noqa: BLE001 - logging must never fail a test
            pass


def _rdkafka_logger() -> logging.Logger:
    """librdkafka's log lines go through this logger: they are delivered only while the client
    is polled, so they land in the test's captured stderr instead of being printed by client
    threads that outlive the test (after pytest's summary)."""
    logger = logging.getLogger("kafka-iggy-tests.librdkafka")
    if not logger.handlers:
        handler = _StderrAtEmit()
        handler.setFormatter(logging.Formatter("librdkafka %(levelname)s %(message)s"))
        logger.addHandler(handler)
        logger.propagate = False
        logger.setLevel(logging.INFO)
    return logger


def ck_config(bootstrap: str, **extra) -> dict:
    """librdkafka settings shared by every confluent-kafka client here (short timeouts)."""
    config = {
        "bootstrap.servers": bootstrap,
        "logger": _rdkafka_logger(),
        "socket.timeout.ms": 10_000,
        "socket.connection.setup.timeout.ms": 10_000,
        "topic.metadata.refresh.interval.ms": 5_000,
    }
    config.update(extra)
    return config


def ck_admin(bootstrap: str):
    from confluent_kafka.admin import AdminClient

    # No auto-creation from the admin handle's own metadata refreshes (a deleted topic would
    # come back).
    return AdminClient(ck_config(bootstrap, **{"allow.auto.create.topics": False}))


def ck_result(future, what: str, timeout: float = CLIENT_TIMEOUT_S):
    """The result of an AdminClient future, with a timeout and the operation in the error."""
    try:
        return future.result(timeout=timeout)
    except Exception as e:  # noqa: BLE001 - re-raised with context
        raise AssertionError(f"{what} failed: {e!r}") from e


def ck_create_topic(bootstrap: str, topic: str, partitions: int) -> None:
    from confluent_kafka.admin import NewTopic

    admin = ck_admin(bootstrap)  # keep the handle alive until the future resolves
    futures = admin.create_topics(
        [NewTopic(topic, num_partitions=partitions, replication_factor=1)],
        operation_timeout=30, request_timeout=30)
    ck_result(futures[topic], f"create_topics({topic}, {partitions} partitions)")


def ck_produce(bootstrap: str, topic: str, records: Sequence[Record], *,
               timeout: float = CLIENT_TIMEOUT_S, **producer_config) -> list[Record]:
    """Produces `records` (to their partitions, with their keys, headers and timestamps) and
    returns them in send order with the offsets (and timestamps) the delivery reports gave."""
    from confluent_kafka import Producer

    config = ck_config(bootstrap, **{"acks": "all", "linger.ms": 5,
                                     "message.timeout.ms": int(timeout * 1000) // 2})
    config.update(producer_config)
    producer = Producer(config)
    reports: dict[int, tuple] = {}

    def delivered(index):
        def callback(err, msg):
            reports[index] = (err, msg.partition(), msg.offset(), msg.timestamp())
        return callback

    for i, r in enumerate(records):
        kwargs = {"partition": r.partition, "key": r.key, "value": r.value,
                  "on_delivery": delivered(i)}
        if r.headers:
            kwargs["headers"] = list(r.headers)
        if r.timestamp is not None:
            kwargs["timestamp"] = r.timestamp
        producer.produce(topic, **kwargs)
        producer.poll(0)
    remaining = producer.flush(timeout)
    assert remaining == 0, f"{remaining} records still undelivered after {timeout}s"
    out = []
    for i, r in enumerate(records):
        err, partition, offset, (ts_type, ts) = reports[i]
        assert err is None, f"delivery of record {i} ({r}) failed: {err}"
        assert partition == r.partition, f"record {i} went to partition {partition}, not {r.partition}"
        out.append(r.with_offset(offset, ts if r.timestamp is None else None))
    return out


def ck_consumer(bootstrap: str, **extra):
    """A confluent-kafka consumer for assign()/seek() use. librdkafka insists on a group.id, but
    nothing here subscribes or commits, so no group request is needed."""
    from confluent_kafka import Consumer

    config = ck_config(bootstrap, **{"group.id": unique_name("unused-group"),
                                     "enable.auto.commit": False,
                                     "enable.auto.offset.store": False,
                                     "fetch.wait.max.ms": 200})
    config.update(extra)
    return Consumer(config)


def ck_message_record(msg) -> Record:
    _, ts = msg.timestamp()
    return Record(msg.partition(), msg.key(), msg.value(), tuple(msg.headers() or ()), ts, msg.offset())


def ck_consume(bootstrap: str, topic: str, partitions: Sequence[int] | int, count: int, *,
               start: int | Mapping[int, int] | None = None,
               timeout: float = CLIENT_TIMEOUT_S, **consumer_config) -> list[Record]:
    """Assigns the partitions (all of 0..n-1 when an int) from `start` (default: beginning) and
    returns the first `count` records in arrival order. Fails on any consumer error or when
    fewer arrive within `timeout`. `consumer_config` adds librdkafka settings (security)."""
    from confluent_kafka import OFFSET_BEGINNING, TopicPartition

    if isinstance(partitions, int):
        partitions = range(partitions)
    consumer = ck_consumer(bootstrap, **consumer_config)
    try:
        def offset_for(p):
            if start is None:
                return OFFSET_BEGINNING
            return start[p] if isinstance(start, Mapping) else start

        consumer.assign([TopicPartition(topic, p, offset_for(p)) for p in partitions])
        records: list[Record] = []
        deadline = time.monotonic() + timeout
        while len(records) < count:
            remaining = deadline - time.monotonic()
            assert remaining > 0, (f"consumed {len(records)} of {count} records of {topic} "
                                   f"within {timeout}s: {records[-5:]}")
            msg = consumer.poll(min(1.0, remaining))
            if msg is None:
                continue
            assert msg.error() is None, f"consumer error: {msg.error()!r}"
            records.append(ck_message_record(msg))
        return records
    finally:
        consumer.close()


# ----------------------------------------------------------------------------- Iggy native client


def iggy_native(server: IggyServer, action, timeout: float = CLIENT_TIMEOUT_S):
    """Runs `await action(client)` with an Iggy SDK client (apache-iggy) logged in to `server`,
    under a timeout."""
    import asyncio

    from apache_iggy import IggyClient

    async def main():
        client = IggyClient(server.address)
        await client.connect()
        await client.login_user(IGGY_USERNAME, IGGY_PASSWORD)
        return await action(client)

    async def bounded():
        return await asyncio.wait_for(main(), timeout)

    return asyncio.run(bounded())


# ----------------------------------------------------------------------------- Kafka CLI tools

JAVA_TOOLS_PROJECT = REPO_ROOT / "tests" / "java-tools"


def maven_classpath(project: Path) -> str:
    """Class path of a dependency-only Maven project of tests/, resolved once by Maven."""
    out = project / "target" / "classpath.txt"
    if not out.is_file():
        mvn = require_tool("mvn")
        run([mvn, "-q", "-B", "-f", str(project / "pom.xml"), "dependency:build-classpath"],
            timeout=900)
    return out.read_text().strip()


def kafka_tools_classpath() -> str:
    """Class path of org.apache.kafka:kafka-tools (tests/java-tools); the real
    kafka-consumer-groups.sh runs org.apache.kafka.tools.consumer.group.ConsumerGroupCommand
    from it."""
    return maven_classpath(JAVA_TOOLS_PROJECT)


JAVA_CONNECT_PROJECT = REPO_ROOT / "tests" / "java-connect"


def kafka_connect_classpath() -> str:
    """Class path of connect-runtime and connect-file (tests/java-connect)."""
    return maven_classpath(JAVA_CONNECT_PROJECT)


JAVA_MIRROR_PROJECT = REPO_ROOT / "tests" / "java-mirror"


def kafka_mirror_classpath() -> str:
    """Class path of a Kafka broker (kafka_2.13) and MirrorMaker 2 (tests/java-mirror)."""
    return maven_classpath(JAVA_MIRROR_PROJECT)


class KafkaBroker:
    """A real Apache Kafka 4.x broker (KRaft, one node as broker and controller) from the Maven
    jars of tests/java-mirror, on free ports, data in `workdir`."""

    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.port = free_port()
        self.controller_port = free_port()
        self.proc: ManagedProcess | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> "KafkaBroker":
        import base64

        java = require_tool("java")
        classpath = kafka_mirror_classpath()
        props = self.workdir / "server.properties"
        props.write_text("\n".join([
            "process.roles=broker,controller",
            "node.id=1",
            f"controller.quorum.voters=1@127.0.0.1:{self.controller_port}",
            f"listeners=PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}",
            f"advertised.listeners=PLAINTEXT://127.0.0.1:{self.port}",
            "controller.listener.names=CONTROLLER",
            "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            f"log.dirs={self.workdir / 'data'}",
            "offsets.topic.replication.factor=1",
            "transaction.state.log.replication.factor=1",
            "transaction.state.log.min.isr=1",
            "group.initial.rebalance.delay.ms=0",
            "",
        ]))
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        run([java, "-cp", classpath, "kafka.tools.StorageTool", "format", "-t", cluster_id,
             "-c", str(props)], timeout=120)
        self.proc = ManagedProcess("kafka-broker", [
            java, "-Xmx512m", "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn", "-cp", classpath,
            "kafka.Kafka", str(props)], self.workdir / "broker.log")
        wait_until(lambda: port_accepts("127.0.0.1", self.port), STARTUP_TIMEOUT_S,
                   "the Kafka broker to listen", self.proc, interval=0.2)
        return self

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop(graceful=True, grace_s=30)


def kafka_tool(main_class: str, bootstrap: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """Runs one of Kafka's own command-line tools (a class of kafka-tools, as the kafka-*.sh
    scripts do) against `bootstrap`; returns the completed process (text output)."""
    java = require_tool("java")
    proc = subprocess.run(
        [java, "-cp", kafka_tools_classpath(), main_class, "--bootstrap-server", bootstrap, *args],
        capture_output=True, text=True, timeout=CLIENT_TIMEOUT_S)
    if check and proc.returncode != 0:
        raise AssertionError(f"{main_class.rsplit('.', 1)[-1]} {' '.join(args)} failed "
                             f"({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def kafka_consumer_groups(bootstrap: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """Runs the real kafka-consumer-groups tool; returns the completed process (text output)."""
    return kafka_tool("org.apache.kafka.tools.consumer.group.ConsumerGroupCommand", bootstrap,
                      *args, check=check)
