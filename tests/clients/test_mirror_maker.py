"""MirrorMaker 2 (connect-mirror 4.3.1) from a real Apache Kafka broker (KRaft, Maven jars in
tests/java-mirror) into the proxy: the migration path. Records arrive with keys, headers and
timestamps; a consumer group's committed offsets on Kafka are translated into the proxy
(checkpoints, sync.group.offsets.enabled), so the group resumes on the proxy where it left off
on Kafka."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

import harness
from test_java_clients import as_record

pytestmark = pytest.mark.client("mirror-maker-2")

PARTITIONS = 2
SETTLE_S = 180.0


@pytest.fixture(autouse=True)
def _confluent_kafka_installed():
    harness.require_module("confluent_kafka")


@pytest.fixture
def kafka(tmp_path):
    broker = harness.KafkaBroker(tmp_path / "kafka")
    broker.workdir.mkdir()
    broker.start()
    yield broker
    broker.stop()


def start_mirror(tmp_path: Path, source: str, target: str, topic: str, group: str):
    java = harness.require_tool("java")
    props = tmp_path / "mm2.properties"
    props.write_text("\n".join([
        "clusters=kafka,bridge",
        f"kafka.bootstrap.servers={source}",
        f"bridge.bootstrap.servers={target}",
        "kafka->bridge.enabled=true",
        f"kafka->bridge.topics={topic}",
        f"kafka->bridge.groups={group}",
        "bridge->kafka.enabled=false",
        "replication.factor=1",
        "checkpoints.topic.replication.factor=1",
        "heartbeats.topic.replication.factor=1",
        "offset-syncs.topic.replication.factor=1",
        "offset.storage.replication.factor=1",
        "status.storage.replication.factor=1",
        "config.storage.replication.factor=1",
        "sync.topic.acls.enabled=false",
        "sync.group.offsets.enabled=true",
        "sync.group.offsets.interval.seconds=1",
        "emit.checkpoints.interval.seconds=1",
        "refresh.topics.interval.seconds=2",
        "refresh.groups.interval.seconds=2",
        "offset.lag.max=0",
        "",
    ]))
    cmd = [java, "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn", "-cp",
           harness.kafka_mirror_classpath(), "org.apache.kafka.connect.mirror.MirrorMaker",
           str(props)]
    return harness.ManagedProcess("mirror-maker", cmd, tmp_path / "mirror-maker.log")


def end_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    from confluent_kafka import TopicPartition

    consumer = harness.ck_consumer(bootstrap)
    try:
        return {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
                for p in range(PARTITIONS)}
    finally:
        consumer.close()


def committed(bootstrap: str, group: str, topic: str) -> dict[int, int]:
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer(harness.ck_config(bootstrap, **{"group.id": group}))
    try:
        parts = consumer.committed([TopicPartition(topic, p) for p in range(PARTITIONS)], timeout=10)
        return {tp.partition: tp.offset for tp in parts}
    finally:
        consumer.close()


def test_mirror_maker_migrates_records_and_group_offsets(backend, proxy, kafka, java_jar, tmp_path):
    from confluent_kafka import Consumer, TopicPartition

    topic, group = harness.unique_name("mm2"), harness.unique_name("mm2-group")
    mirrored = f"kafka.{topic}"
    harness.java_driver(java_jar, "create-topic", bootstrap=kafka.bootstrap, topic=topic,
                        partitions=PARTITIONS)
    produced = [as_record(line) for line in harness.java_driver(
        java_jar, "produce", bootstrap=kafka.bootstrap, topic=topic, partitions=PARTITIONS, count=40)]
    # The group read everything on Kafka and committed.
    ends = end_offsets(kafka.bootstrap, topic)
    consumer = Consumer(harness.ck_config(kafka.bootstrap, **{"group.id": group}))
    try:
        # The broker's first group creates __consumer_offsets: NOT_COORDINATOR until it is ready.
        harness.wait_until(lambda: consumer.commit(
            offsets=[TopicPartition(topic, p, o) for p, o in ends.items()], asynchronous=False),
            60, "the commit on Kafka", interval=0.5)
    finally:
        consumer.close()

    mirror = start_mirror(tmp_path, kafka.bootstrap, proxy, topic, group)
    try:
        harness.wait_until(lambda: end_offsets(proxy, mirrored) == ends, SETTLE_S,
                           f"{mirrored} to hold every record", mirror, interval=1.0)
        arrived = [as_record(line) for line in harness.java_driver(
            java_jar, "consume", bootstrap=proxy, topic=mirrored, partitions=PARTITIONS,
            expect=len(produced))]
        harness.assert_same_records(produced, arrived)

        # Checkpoints: the group's position is translated into the proxy.
        harness.wait_until(lambda: committed(proxy, group, mirrored) == ends, SETTLE_S,
                           f"{group}'s offsets to be translated", mirror, interval=1.0)

        more = [as_record(line) for line in harness.java_driver(
            java_jar, "produce", bootstrap=kafka.bootstrap, topic=topic, partitions=PARTITIONS,
            count=10)]
        later = end_offsets(kafka.bootstrap, topic)
        harness.wait_until(lambda: end_offsets(proxy, mirrored) == later, SETTLE_S,
                           f"{mirrored} to hold the new records", mirror, interval=1.0)
    finally:
        mirror.stop(graceful=True, grace_s=30)

    # The group moves to the proxy and reads only what it had not read on Kafka.
    consumer = Consumer(harness.ck_config(proxy, **{"group.id": group, "auto.offset.reset": "earliest",
                                                    "enable.auto.commit": False}))
    consumer.subscribe([mirrored])
    values = []
    deadline = time.monotonic() + 60
    try:
        while len(values) < len(more) and time.monotonic() < deadline:
            msg = consumer.poll(1.0)
            if msg is not None and msg.error() is None:
                values.append(msg.value())
        extra = consumer.poll(3.0)
    finally:
        consumer.close()
    assert sorted(values) == sorted(r.value for r in more)
    assert extra is None or extra.error() is not None, "read a record it had read on Kafka"
