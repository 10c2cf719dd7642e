"""Kafka Connect in distributed mode (connect-runtime + connect-file from Maven Central, class
path in tests/java-connect): the worker keeps its connector configs, source offsets and statuses
in compacted topics it creates through the proxy. A file source connector reads lines into a
topic and a file sink writes them out; the worker is stopped, more lines are written, and a new
worker picks the connectors and the source position up from those topics: nothing is lost."""

from __future__ import annotations

import json
import time
import urllib.request
from pathlib import Path

import pytest

import harness

pytestmark = pytest.mark.client("java-kafka-connect")

SETTLE_S = 120.0


def start_worker(tmp_path: Path, name: str, bootstrap: str, group: str, rest_port: int):
    java = harness.require_tool("java")
    props = tmp_path / f"{name}.properties"
    props.write_text("\n".join([
        f"bootstrap.servers={bootstrap}",
        f"group.id={group}",
        "key.converter=org.apache.kafka.connect.storage.StringConverter",
        "value.converter=org.apache.kafka.connect.storage.StringConverter",
        f"config.storage.topic={group}-configs",
        f"offset.storage.topic={group}-offsets",
        f"status.storage.topic={group}-status",
        "config.storage.replication.factor=1",
        "offset.storage.replication.factor=1",
        "status.storage.replication.factor=1",
        "offset.flush.interval.ms=1000",
        f"listeners=http://127.0.0.1:{rest_port}",
        "rest.advertised.host.name=127.0.0.1",
        "",
    ]))
    cmd = [java, "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn",
           "-cp", harness.kafka_connect_classpath(),
           "org.apache.kafka.connect.cli.ConnectDistributed", str(props)]
    worker = harness.ManagedProcess(name, cmd, tmp_path / f"{name}.log")
    url = f"http://127.0.0.1:{rest_port}"
    harness.wait_until(lambda: rest(url, "GET", "/connectors") is not None, SETTLE_S,
                       f"{name}'s REST API", worker, interval=0.5)
    return worker, url


def rest(url: str, method: str, path: str, body: dict | None = None):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read() or b"null")


def running(url: str, connector: str) -> bool:
    status = rest(url, "GET", f"/connectors/{connector}/status")
    tasks = status.get("tasks", [])
    return status["connector"]["state"] == "RUNNING" and tasks and all(
        t["state"] == "RUNNING" for t in tasks)


def lines_of(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def wait_for_lines(path: Path, expected: list[str], worker) -> None:
    def arrived() -> bool:
        got = lines_of(path)
        assert set(got) <= set(expected), f"unexpected lines {set(got) - set(expected)}"
        return set(got) == set(expected)
    harness.wait_until(arrived, SETTLE_S, f"{len(expected)} lines in {path.name}", worker,
                       interval=0.5)


def test_file_source_and_sink_survive_worker_restart(backend, proxy, java_streams_jar, tmp_path):
    group = harness.unique_name("connect")
    topic = f"{group}-lines"
    source, sink = tmp_path / "in.txt", tmp_path / "out.txt"
    first = [f"line {i}" for i in range(50)]
    source.write_text("".join(f"{line}\n" for line in first))

    worker, url = start_worker(tmp_path, "worker-1", proxy, group, harness.free_port())
    try:
        rest(url, "POST", "/connectors", {"name": "src", "config": {
            "connector.class": "org.apache.kafka.connect.file.FileStreamSourceConnector",
            "tasks.max": "1", "file": str(source), "topic": topic}})
        rest(url, "POST", "/connectors", {"name": "sink", "config": {
            "connector.class": "org.apache.kafka.connect.file.FileStreamSinkConnector",
            "tasks.max": "1", "file": str(sink), "topics": topic}})
        harness.wait_until(lambda: running(url, "src") and running(url, "sink"), SETTLE_S,
                           "the connectors to run", worker, interval=0.5)
        wait_for_lines(sink, first, worker)
        # The worker's own topics are compacted, as Connect requires.
        internal = {line["topic"]: line["cleanup_policy"]
                    for line in harness.java_driver(java_streams_jar, "log-starts",
                                                    bootstrap=proxy, prefix=f"{group}-")}
        for suffix in ("configs", "offsets", "status"):
            assert internal[f"{group}-{suffix}"] == "compact", internal
    finally:
        worker.stop(graceful=True, grace_s=30)

    second = [f"after restart {i}" for i in range(20)]
    with source.open("a") as f:
        f.write("".join(f"{line}\n" for line in second))
    worker, url = start_worker(tmp_path, "worker-2", proxy, group, harness.free_port())
    try:
        # The connectors come back from the config topic, the source resumes from its offset.
        harness.wait_until(lambda: sorted(rest(url, "GET", "/connectors")) == ["sink", "src"],
                           SETTLE_S, "the connectors to be restored", worker, interval=0.5)
        wait_for_lines(sink, first + second, worker)
    finally:
        worker.stop(graceful=True, grace_s=30)
