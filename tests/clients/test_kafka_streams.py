"""Kafka Streams 4.x (Maven Central kafka-streams, app in tests/java-streams): a stateful word
count whose groupBy goes through a repartition topic and whose count store has a compacted
changelog topic, at-least-once, two instances in one application id.

The counts must be exact; after both instances stop and their local state is wiped, new
instances restore the store from the changelog and continue counting exactly; the repartition
topic is purged by Streams (DeleteRecords moves its log start offset). Exactly-once needs
transactions, which the proxy refuses: the app must fail at once with a clear error."""

from __future__ import annotations

import json
import shutil
import time
from collections import Counter
from pathlib import Path

import pytest

import harness

pytestmark = pytest.mark.client("java-kafka-streams")

# Startup (group join, internal topic creation) and catching up, generously.
SETTLE_S = 120.0
FIRST = ["the quick brown fox", "jumps over the lazy dog", "the dog sleeps", "a fox runs"] * 5
SECOND = ["the end of the story", "a lazy fox and a quick dog"] * 4
# A refusal is immediate; a hang would last until Streams' own timeouts (minutes).
FAST_S = 60.0


def word_counts(lines) -> dict[str, int]:
    return dict(Counter(w for line in lines for w in line.lower().split()))


def app(jar: Path, command: str, **args) -> list[dict]:
    return harness.java_driver(jar, command, **args)


def start_instance(jar: Path, tmp_path: Path, name: str, bootstrap: str, app_id: str,
                   state_dir: Path, **extra) -> harness.ManagedProcess:
    java = harness.require_tool("java")
    args = dict(bootstrap=bootstrap, app_id=app_id, input=f"{app_id}-in", output=f"{app_id}-out",
                state_dir=state_dir, **extra)
    cmd = [java, "-jar", str(jar), "run", *(f"{k}={v}" for k, v in args.items())]
    return harness.ManagedProcess(name, cmd, tmp_path / f"{name}.log")


def events(instance: harness.ManagedProcess) -> list[dict]:
    out = []
    for line in instance.log_text().splitlines():
        if line.startswith("{"):
            try:
                out.append(json.loads(line))
            except ValueError:
                pass
    return out


def wait_for_counts(jar: Path, bootstrap: str, topic: str, expected: dict[str, int],
                    instances) -> None:
    """Reads the output until its last count per word is `expected`; an instance that exits
    fails the test at once."""
    deadline = time.monotonic() + SETTLE_S
    seen: object = None
    while True:
        for i in instances:
            assert i.alive(), f"{i.name} exited with {i.returncode()}:\n{i.tail()}"
        try:
            [line] = app(jar, "counts", bootstrap=bootstrap, topic=topic)
            seen = line["counts"]
        except harness.HarnessError as e:
            seen = f"unreadable: {e}"
        if seen == expected:
            return
        if time.monotonic() > deadline:
            logs = "\n".join(f"--- {i.name}\n{i.tail(40)}" for i in instances)
            raise AssertionError(f"counts {seen} != expected {expected}\n{logs}")
        time.sleep(1.0)


def repartition_log_starts(jar: Path, bootstrap: str, app_id: str) -> list[dict]:
    return [line for line in app(jar, "log-starts", bootstrap=bootstrap, prefix=app_id)
            if line["topic"].endswith("-repartition")]


def test_word_count_two_instances_restore_and_purge(backend, proxy, java_streams_jar, tmp_path):
    jar = java_streams_jar
    app_id = harness.unique_name("wc")
    app(jar, "create-topics", bootstrap=proxy, topics=f"{app_id}-in:2,{app_id}-out:2")
    app(jar, "produce", bootstrap=proxy, topic=f"{app_id}-in", lines="|".join(FIRST))

    states = [tmp_path / "state-a", tmp_path / "state-b"]
    instances = [start_instance(jar, tmp_path, f"streams-{i}", proxy, app_id, states[i])
                 for i in range(2)]
    try:
        wait_for_counts(jar, proxy, f"{app_id}-out", word_counts(FIRST), instances)
        # Streams purges what it consumed from its repartition topic (DeleteRecords) after
        # commits; the log start moves but never passes the end.
        def purged() -> bool:
            starts = repartition_log_starts(jar, proxy, app_id)
            assert starts, "no repartition topic"
            return sum(s["log_start"] for s in starts) > 0
        harness.wait_until(purged, SETTLE_S, "the repartition topic to be purged", interval=1.0)
        topics = {line["topic"]: line for line in app(jar, "log-starts", bootstrap=proxy, prefix=app_id)}
        changelog = f"{app_id}-counts-store-changelog"
        assert topics[changelog]["cleanup_policy"] == "compact", topics[changelog]
        for line in topics.values():
            assert 0 <= line["log_start"] <= line["end"], line
    finally:
        for i in instances:
            i.stop(graceful=True, grace_s=40)

    for state in states:
        shutil.rmtree(state, ignore_errors=True)
    app(jar, "produce", bootstrap=proxy, topic=f"{app_id}-in", lines="|".join(SECOND))
    instances = [start_instance(jar, tmp_path, f"streams-again-{i}", proxy, app_id, states[i])
                 for i in range(2)]
    try:
        wait_for_counts(jar, proxy, f"{app_id}-out", word_counts(FIRST + SECOND), instances)
    finally:
        for i in instances:
            i.stop(graceful=True, grace_s=40)


def test_exactly_once_is_refused_fast(backend, proxy, java_streams_jar, tmp_path):
    jar = java_streams_jar
    app_id = harness.unique_name("eos")
    app(jar, "create-topics", bootstrap=proxy, topics=f"{app_id}-in:1,{app_id}-out:1")
    app(jar, "produce", bootstrap=proxy, topic=f"{app_id}-in", lines="one line")
    started = time.monotonic()
    instance = start_instance(jar, tmp_path, "streams-eos", proxy, app_id, tmp_path / "state",
                              guarantee="exactly_once_v2")
    try:
        harness.wait_until(lambda: not instance.alive(), FAST_S, "the exactly-once app to stop",
                           interval=0.2)
    finally:
        code = instance.stop(graceful=True)
    elapsed = time.monotonic() - started
    errors = [e for e in events(instance) if e.get("event") == "error"]
    assert code == 3, f"exit {code}\n{instance.tail()}"
    assert errors, instance.tail()
    # The producer's transactional.id is refused: a fatal authorization error naming it.
    assert "TransactionalIdAuthorizationException" in errors[0]["error"], errors[0]
    assert elapsed < FAST_S, f"took {elapsed:.1f}s"
