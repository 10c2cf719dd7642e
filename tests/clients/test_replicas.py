"""Replicas as one cluster (real Iggy, real processes): proxies started with `--membership log`
split partitions and groups, while idempotent producers (librdkafka and Java) and a
three-member consumer group (two confluent-kafka members, one Java) run through the changes a
platform team causes: scale 1 -> 3, a replica paused for longer than its lease and resumed (a
zombie), one killed, one stopped, back to 1.

Afterwards: no acknowledged record is lost or stored twice, every delivery report names the
offset where a consumer finds the record, the group consumed every record at least once, and
the paused replica noticed on waking that its lease was gone.

And a group whose coordinator is stopped (a rollout or scale-down) moves to another replica
without a rebalance: its members see no revocation and keep consuming; an acks=0 producer whose
partition moved to another replica is disconnected, refreshes its metadata and loses nothing
it sends afterwards."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

import harness
from test_groups import GROUP_ARGS, Member, simple_commit

pytestmark = [pytest.mark.client("replicas (confluent-kafka, java)"), pytest.mark.iggy_only]

LEASE_MS = 3000
PARTITIONS = 6


def replica_args(broker_id: int) -> list[str]:
    return ["--membership", "log", "--broker-id", str(broker_id),
            "--membership-lease-ms", str(LEASE_MS), *GROUP_ARGS]


class JavaSteadyProducer(threading.Thread):
    """The Java driver's `produce-steady` (kafka-clients defaults: idempotence on, acks=all) for
    `duration_s`; keeps every delivery report."""

    def __init__(self, jar, bootstrap: str, topic: str, duration_s: float):
        super().__init__(daemon=True)
        self.args = dict(bootstrap=bootstrap, topic=topic, duration_ms=int(duration_s * 1000))
        self.jar = jar
        self.timeout = duration_s + 180
        self.reports: dict[bytes, tuple[int, int]] = {}
        self.errors: list[str] = []

    def run(self) -> None:
        try:
            lines = harness.java_driver(self.jar, "produce-steady", timeout=self.timeout, **self.args)
            self.reports = {line["value"].encode(): (line["partition"], line["offset"]) for line in lines}
        except BaseException as e:  # noqa: BLE001 - reported by the test
            self.errors.append(repr(e))


class SteadyProducer(threading.Thread):
    """An idempotent producer sending numbered records (about 200 a second) until stopped;
    keeps every delivery report."""

    def __init__(self, bootstrap: str, topic: str):
        super().__init__(daemon=True)
        self.bootstrap, self.topic = bootstrap, topic
        self.stop_event = threading.Event()
        self.reports: dict[bytes, tuple[int, int]] = {}
        self.errors: list[str] = []
        self.sent = 0

    def run(self) -> None:
        from confluent_kafka import Producer

        producer = Producer(harness.ck_config(self.bootstrap, **{
            "enable.idempotence": True, "acks": "all", "linger.ms": 5,
            "message.timeout.ms": 60_000}))

        def delivered(err, msg):
            if err is not None:
                self.errors.append(f"{msg.value()!r}: {err}")
            else:
                self.reports[msg.value()] = (msg.partition(), msg.offset())

        while not self.stop_event.is_set():
            for _ in range(10):
                value = f"record-{self.sent}".encode()
                producer.produce(self.topic, key=value, value=value, on_delivery=delivered)
                self.sent += 1
            producer.poll(0)
            time.sleep(0.05)
        remaining = producer.flush(90)
        if remaining:
            self.errors.append(f"{remaining} records undelivered after the final flush")


def test_scale_pause_kill_and_stop_replicas_under_load(backend, proxy_factory, tmp_path, java_jar):
    harness.require_module("confluent_kafka")
    a = proxy_factory(name="replica-0", extra_args=replica_args(0))
    topic, group = harness.unique_name("replicated"), harness.unique_name("replicated-group")
    harness.ck_create_topic(a.bootstrap, topic, PARTITIONS)

    producer = SteadyProducer(a.bootstrap, topic)
    producer.start()
    # The chaos below takes about 25 s; the Java producer runs through all of it.
    java_producer = JavaSteadyProducer(java_jar, a.bootstrap, topic, duration_s=27)
    java_producer.start()
    # librdkafka's and Java's range assignors share the protocol name: one mixed group.
    members = [Member("confluent", a.bootstrap, topic, group, tmp_path, f"member-{i}",
                      session_ms=6000, idle_s=15) for i in range(2)]
    members.append(Member("java", a.bootstrap, topic, group, tmp_path, "member-java",
                          session_ms=6000, idle_s=15, assignor="range", java_jar=java_jar))
    try:
        time.sleep(2)
        # 1 -> 3 replicas.
        b = proxy_factory(name="replica-1", extra_args=replica_args(1))
        c = proxy_factory(name="replica-2", extra_args=replica_args(2))
        time.sleep(5)
        # A zombie: replica 1 paused for twice its lease, then resumed.
        os.killpg(b.process.pid, signal.SIGSTOP)
        time.sleep(2 * LEASE_MS / 1000)
        os.killpg(b.process.pid, signal.SIGCONT)
        time.sleep(4)
        # 3 -> 2: replica 2 crashes.
        c.stop(graceful=False)
        time.sleep(LEASE_MS / 1000 + 3)
        # 2 -> 1: replica 1 is stopped (a scale-down).
        b.stop(graceful=True)
        time.sleep(3)
    finally:
        producer.stop_event.set()
        producer.join(120)

    java_producer.join(java_producer.timeout)
    assert not producer.is_alive() and not java_producer.is_alive(), "a producer did not finish"
    assert not producer.errors, producer.errors[:5]
    assert not java_producer.errors, java_producer.errors
    assert len(producer.reports) == producer.sent, "every librdkafka record was acknowledged"
    assert len(java_producer.reports) > 1000, len(java_producer.reports)
    acknowledged = {**producer.reports, **java_producer.reports}

    # What a consumer reads back decides: every acknowledged record is where it was reported.
    stored: dict[bytes, list[tuple[int, int]]] = {}
    high = {}
    from confluent_kafka import Consumer, TopicPartition
    probe = Consumer(harness.ck_config(a.bootstrap, **{"group.id": harness.unique_name("probe")}))
    try:
        for p in range(PARTITIONS):
            high[p] = probe.get_watermark_offsets(TopicPartition(topic, p), timeout=30)[1]
    finally:
        probe.close()
    for r in harness.ck_consume(a.bootstrap, topic, PARTITIONS, sum(high.values())):
        stored.setdefault(r.value, []).append((r.partition, r.offset))
    lost = [v for v in acknowledged if v not in stored]
    assert not lost, f"{len(lost)} acknowledged records lost, e.g. {lost[:5]}"
    wrong = [(v, where, stored[v]) for v, where in acknowledged.items() if where not in stored[v]]
    assert not wrong, f"{len(wrong)} delivery reports name the wrong offset, e.g. {wrong[:5]}"
    # An idempotent producer's retries after a hand-off or a crash are answered as duplicates:
    # the new leader reads the producer's recent batches back from the log.
    duplicates = {v: places for v, places in stored.items() if len(places) > 1}
    print(f"{producer.sent} records from librdkafka, {len(java_producer.reports)} from Java, "
          f"{len(duplicates)} stored more than once")
    assert not duplicates, f"{len(duplicates)} records stored twice, e.g. {list(duplicates.items())[:5]}"

    # The group consumed everything at least once.
    for m in members:
        m.wait_exit(90)
    consumed = {key.encode() for m in members for (_, _, key) in m.records()}
    missing = [v for v in acknowledged if v not in consumed]
    assert not missing, f"the group never consumed {len(missing)} records, e.g. {missing[:5]}"

    # The paused replica woke up without permission and joined again.
    assert "membership lease lapsed" in b.log_text(), b.process.tail(40)


def coordinator_of(bootstrap: str, group: str) -> int | None:
    """The group's coordinator as kafka-consumer-groups --describe --state reports it."""
    out = harness.kafka_consumer_groups(bootstrap, "--describe", "--group", group, "--state",
                                        check=False).stdout
    for line in out.splitlines():
        cols = line.split()
        if cols and cols[0] == group:
            # GROUP  COORDINATOR (ID)  ASSIGNMENT-STRATEGY  STATE  #MEMBERS, the coordinator
            # shown as host:port  (id)
            for col in cols:
                if col.startswith("(") and col.endswith(")") and col[1:-1].isdigit():
                    return int(col[1:-1])
    return None


def test_a_group_moves_between_replicas_without_a_rebalance(backend, proxy_factory, tmp_path,
                                                            java_jar):
    """A rollout or scale-down moves groups to other replicas; the new coordinator restores the
    group's generation from the offsets log, so members (librdkafka and Java) keep their
    assignment: no revocation, no new assignment, consumption goes on."""
    harness.require_module("confluent_kafka")
    replicas = [proxy_factory(name=f"replica-{i}", extra_args=replica_args(i)) for i in range(2)]
    bootstrap = ",".join(r.bootstrap for r in replicas)
    topic = harness.unique_name("moving")
    harness.ck_create_topic(replicas[0].bootstrap, topic, PARTITIONS)
    # Both replicas in the cluster, then a group coordinated by replica 0 (a simple commit
    # makes a group exist to describe; one made while the coordinators move may be refused).
    from confluent_kafka.admin import AdminClient

    def brokers() -> int:
        return len(AdminClient(harness.ck_config(bootstrap)).list_topics(timeout=10).brokers)

    harness.wait_until(lambda: brokers() == 2, 30, "both replicas in the cluster")
    group = None
    for attempt in range(40):
        candidate = harness.unique_name(f"moving-group-{attempt}")
        try:
            simple_commit(replicas[0].bootstrap, candidate, [(topic, 0, 0)])
        except Exception:  # noqa: BLE001 - refused (assertion) or failed (KafkaException)
            time.sleep(0.5)
            continue
        if coordinator_of(replicas[0].bootstrap, candidate) == 0:
            group = candidate
            break
    assert group is not None, "no group name is coordinated by replica 0"

    def produce(n: int, tag: str) -> None:
        from harness import Record
        records = [Record(i % PARTITIONS, f"{tag}-{i}".encode(), f"{tag}-{i}".encode())
                   for i in range(n)]
        harness.ck_produce(bootstrap, topic, records)

    produce(600, "before")
    members = [Member("confluent", bootstrap, topic, group, tmp_path, f"member-{i}",
                      session_ms=6000, idle_s=60) for i in range(2)]
    members.append(Member("java", bootstrap, topic, group, tmp_path, "member-java",
                          session_ms=6000, idle_s=60, assignor="range", java_jar=java_jar))
    try:
        def keys() -> set[str]:
            return {k for m in members for (_, _, k) in m.records()}

        def settled() -> bool:
            held = [m.assignment() for m in members]
            return (all(held) and set().union(*held) == set(range(PARTITIONS))
                    and sum(len(h) for h in held) == PARTITIONS)

        harness.wait_until(settled, 90, "the three members to share the partitions")
        harness.wait_until(lambda: len(keys()) == 600, 90, "the first records to be consumed")
        def rebalance_events() -> list[int]:
            return [sum(1 for e in m.events() if e["e"] in ("assigned", "revoked")) for m in members]

        before = rebalance_events()

        # Replica 0, the group's coordinator, is stopped (a scale-down, or a rollout's pod).
        replicas[0].stop(graceful=True)
        survivor = replicas[1].bootstrap
        harness.wait_until(lambda: coordinator_of(survivor, group) == 1, 60,
                           "replica 1 to coordinate the group")
        produce(600, "after")
        harness.wait_until(lambda: len(keys()) == 1200, 90, "the later records to be consumed")

        # No member saw a revocation or a new assignment across the move.
        assert rebalance_events() == before, (before, rebalance_events())
        assert "restored the group's generation" in replicas[1].log_text()
    finally:
        for m in members:
            m.stop()


def test_fire_and_forget_producer_follows_a_moved_leader(backend, proxy_factory):
    """acks=0 gets no answers, so a producer whose metadata names a replica that no longer
    leads a partition would lose every record it sends there. As Kafka does, the replica closes
    the connection of an acks=0 produce it refuses: librdkafka refreshes its metadata and its
    later records reach the new leader."""
    harness.require_module("confluent_kafka")
    from confluent_kafka import Producer

    first = proxy_factory(name="replica-0", extra_args=replica_args(0))
    topic = harness.unique_name("acks0")
    harness.ck_create_topic(first.bootstrap, topic, PARTITIONS)
    producer = Producer(harness.ck_config(first.bootstrap, **{
        "acks": 0, "linger.ms": 5, "topic.metadata.refresh.interval.ms": 300_000}))

    sent: list[tuple[int, bytes]] = []

    def send(count: int, tag: str) -> None:
        for i in range(count):
            value = f"{tag}-{i}".encode()
            producer.produce(topic, value=value, partition=i % PARTITIONS)
            sent.append((i % PARTITIONS, value))
            producer.poll(0)
            time.sleep(0.005)
        producer.flush(30)

    send(120, "alone")
    # A second replica takes over some partitions; the producer's metadata still says replica 0.
    second = proxy_factory(name="replica-1", extra_args=replica_args(1))
    both = f"{first.bootstrap},{second.bootstrap}"

    def leaders() -> set[int]:
        from confluent_kafka.admin import AdminClient
        md = AdminClient(harness.ck_config(both)).list_topics(topic, timeout=10)
        return {p.leader for p in md.topics[topic].partitions.values()}

    harness.wait_until(lambda: leaders() == {0, 1}, 30, "partitions led by both replicas")
    # Records sent while the producer finds out may be lost (acks=0); after a few seconds every
    # record must arrive wherever its partition's leader now is.
    send(300, "moving")
    send(300, "after")
    expected = [v for _, v in sent if v.startswith(b"after-")]
    from confluent_kafka import Consumer, TopicPartition
    probe = Consumer(harness.ck_config(both, **{"group.id": harness.unique_name("probe")}))
    try:
        total = sum(probe.get_watermark_offsets(TopicPartition(topic, p), timeout=30)[1]
                    for p in range(PARTITIONS))
    finally:
        probe.close()
    stored = {r.value for r in harness.ck_consume(both, topic, PARTITIONS, total)}
    lost = [v for v in expected if v not in stored]
    assert not lost, f"{len(lost)} of {len(expected)} later records lost, e.g. {lost[:5]}"
