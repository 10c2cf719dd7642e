"""Consumer groups with librdkafka (confluent-kafka) and kafka-python: members share the
partitions of a topic, a killed member's partitions move to the others, committed offsets are
where consumption resumes (after a consumer restart, and after a proxy restart on real Iggy),
and the proxy's metrics show groups, commits and lag. Members run as separate processes
(group_member.py) so one can be killed like a crashed application."""

from __future__ import annotations

import json
import re
import sys
import time
import urllib.request
from collections import Counter, defaultdict
from pathlib import Path

import pytest

import harness
from harness import Record

# Short initial delay and session timeouts keep the scenarios quick; the protocol is the same.
GROUP_ARGS = ["--group-initial-rebalance-delay-ms", "300", "--group-min-session-timeout-ms", "1000"]
MEMBER_SCRIPT = Path(__file__).with_name("group_member.py")
CLIENTS = [
    pytest.param("confluent", marks=pytest.mark.client("confluent-kafka groups"), id="confluent"),
    pytest.param("kafka-python", marks=pytest.mark.client("kafka-python groups"), id="kafka-python"),
    # Java with its default-in-4.x cooperative-sticky assignor (incremental rebalances).
    pytest.param("java", marks=pytest.mark.client("java-kafka-clients groups"), id="java"),
]


class Member:
    """A group member in its own process (group_member.py, or the Java driver's group-consume,
    which print the same JSON events) and what it printed."""

    def __init__(self, client: str, bootstrap: str, topic: str, group: str, workdir: Path,
                 name: str, *, session_ms: int = 3000, delay_ms: float = 0, idle_s: float = 6,
                 assignor: str | None = None, instance_id: str | None = None, java_jar=None):
        self.name = name
        if client == "java":
            cmd = ["java", "-jar", str(java_jar), "group-consume", f"bootstrap={bootstrap}",
                   f"topic={topic}", f"group={group}", f"session_ms={session_ms}",
                   f"delay_ms={int(delay_ms)}", f"idle_ms={int(idle_s * 1000)}",
                   f"assignor={assignor or 'cooperative-sticky'}"]
            if instance_id:
                cmd.append(f"instance_id={instance_id}")
        else:
            harness.require_module("confluent_kafka" if client == "confluent" else "kafka")
            cmd = [sys.executable, str(MEMBER_SCRIPT), client, bootstrap, topic, group,
                   "--session-ms", str(session_ms), "--delay-ms", str(delay_ms),
                   "--idle-exit-s", str(idle_s), "--assignor", assignor or "range"]
            if instance_id:
                cmd += ["--instance-id", instance_id]
        self.process = harness.ManagedProcess(name, cmd, workdir / f"{name}.log")

    def events(self) -> list[dict]:
        out = []
        for line in self.process.log_text().splitlines():
            if line.startswith("{"):
                try:
                    out.append(json.loads(line))
                except json.JSONDecodeError:
                    pass  # a line cut short by a kill
        return out

    def records(self) -> list[tuple[int, int, str]]:
        return [(e["p"], e["o"], e["k"]) for e in self.events() if e["e"] == "rec"]

    def last_commits(self) -> dict[int, int]:
        commits: dict[int, int] = {}
        for e in self.events():
            if e["e"] == "commit":
                commits[e["p"]] = max(commits.get(e["p"], 0), e["o"])
        return commits

    def assignment(self) -> set[int]:
        """Partitions of the last assignment (each `assigned` event carries the whole set; the
        revocation on close is not counted)."""
        held: set[int] = set()
        for e in self.events():
            if e["e"] == "assigned":
                held = set(e["ps"])
        return held

    def wait_exit(self, timeout: float) -> None:
        harness.wait_until(lambda: not self.process.alive(), timeout, f"{self.name} to exit")

    def stop(self) -> None:
        self.process.stop(graceful=True)


def produce_keyed(bootstrap: str, topic: str, partitions: int, count: int) -> list[Record]:
    records = [Record(i % partitions, f"key-{i}".encode(), f"value-{i}".encode())
               for i in range(count)]
    return harness.ck_produce(bootstrap, topic, records, **{"linger.ms": 20})


def simple_commit(bootstrap: str, group: str, offsets: list[tuple[str, int, int]], metadata=None) -> None:
    """Commits offsets for `group` without joining it (generation -1), failing on any error."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer(harness.ck_config(bootstrap, **{"group.id": group}))
    try:
        tps = [TopicPartition(t, p, o) if metadata is None else TopicPartition(t, p, o, metadata=metadata)
               for t, p, o in offsets]
        result = consumer.commit(offsets=tps, asynchronous=False)
        errors = [(tp.partition, tp.error) for tp in result if tp.error is not None]
        assert not errors, f"commit for {group} failed: {errors}"
    finally:
        consumer.close()


def committed(bootstrap: str, topic: str, group: str, partitions: int) -> dict[int, int]:
    """The group's committed offsets as OffsetFetch reports them (-1001 = none)."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer(harness.ck_config(bootstrap, **{"group.id": group}))
    try:
        tps = consumer.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=30)
        return {tp.partition: tp.offset for tp in tps}
    finally:
        consumer.close()


@pytest.mark.parametrize("client", CLIENTS)
def test_three_members_share_partitions_and_take_over_from_a_killed_one(
        backend, proxy_factory, tmp_path, client, request):
    partitions, total = 6, 10_000
    proxy = proxy_factory(extra_args=GROUP_ARGS)
    topic, group = harness.unique_name("grp"), harness.unique_name(f"g-{client}")
    harness.ck_create_topic(proxy.bootstrap, topic, partitions)
    produced = produce_keyed(proxy.bootstrap, topic, partitions, total)
    per_partition = Counter(r.partition for r in produced)

    jar = request.getfixturevalue("java_jar") if client == "java" else None
    members = [Member(client, proxy.bootstrap, topic, group, tmp_path, f"member-{i}",
                      delay_ms=0.5, idle_s=15, java_jar=jar)
               for i in range(3)]
    victim, survivors = members[0], members[1:]
    try:
        harness.wait_until(lambda: len(victim.records()) >= 300, 90,
                           "the first member to consume 300 records", proc=victim.process)
        victim.process.stop(graceful=False)  # SIGKILL: no LeaveGroup, no final commit
        killed_commits = victim.last_commits()
        killed_records = set((p, o) for p, o, _ in victim.records())

        def all_consumed() -> bool:
            keys = {k for m in members for _, _, k in m.records()}
            return len(keys) == total

        harness.wait_until(all_consumed, 150, "every record to be consumed by the group")
        # Both survivors are still members here (they leave only after idling).
        final = [m.assignment() for m in survivors]
        for m in survivors:
            m.wait_exit(60)
    finally:
        for m in members:
            m.stop()

    # After the kill the survivors hold every partition, each exactly once.
    assert final[0].isdisjoint(final[1]), final
    assert final[0] | final[1] == set(range(partitions)), final

    reads = Counter((p, o) for m in members for p, o, _ in m.records())
    assert len(reads) == total
    readers: dict[tuple[int, int], list[Member]] = defaultdict(list)
    for m in members:
        for p, o, _ in m.records():
            readers[(p, o)].append(m)
    commits = {m.name: m.last_commits() for m in members}
    for (p, o), times in reads.items():
        if times > 1:
            # At-least-once: a record may come again when its reader died or its commit failed
            # (e.g. RebalanceInProgress). It must never be read again after it was committed:
            # then two of its readers would each have committed past it.
            committed_past = {m.name for m in readers[(p, o)] if commits[m.name].get(p, 0) > o}
            assert len(committed_past) <= 1, (
                f"record {p}/{o} was read by {sorted(m.name for m in readers[(p, o)])} and "
                f"committed past by {sorted(committed_past)}")
    duplicates = sum(t - 1 for t in reads.values())
    print(f"{duplicates} records read twice (uncommitted when their reader died or was rebalanced)")

    # What the group committed is exactly the end of every partition.
    assert committed(proxy.bootstrap, topic, group, partitions) == dict(per_partition)


@pytest.mark.parametrize("client", CLIENTS)
def test_a_restarted_consumer_resumes_from_its_commits(backend, proxy_factory, tmp_path, client,
                                                        request):
    jar = request.getfixturevalue("java_jar") if client == "java" else None
    proxy = proxy_factory(extra_args=GROUP_ARGS)
    topic, group = harness.unique_name("resume"), harness.unique_name("g-resume")
    harness.ck_create_topic(proxy.bootstrap, topic, 2)
    produce_keyed(proxy.bootstrap, topic, 2, 200)
    first = Member(client, proxy.bootstrap, topic, group, tmp_path, "first", idle_s=3,
                   java_jar=jar)
    first.wait_exit(90)
    assert len(first.records()) == 200
    assert committed(proxy.bootstrap, topic, group, 2) == {0: 100, 1: 100}

    produce_keyed(proxy.bootstrap, topic, 2, 50)
    second = Member(client, proxy.bootstrap, topic, group, tmp_path, "second", idle_s=3,
                    java_jar=jar)
    second.wait_exit(90)
    got = sorted((p, o) for p, o, _ in second.records())
    assert got == sorted([(0, o) for o in range(100, 125)] + [(1, o) for o in range(100, 125)])


@pytest.mark.iggy_only
def test_committed_offsets_survive_a_proxy_restart(backend, proxy_factory, tmp_path):
    before = proxy_factory(name="proxy-before", extra_args=GROUP_ARGS)
    topic, group = harness.unique_name("restart"), harness.unique_name("g-restart")
    harness.ck_create_topic(before.bootstrap, topic, 3)
    produce_keyed(before.bootstrap, topic, 3, 300)
    first = Member("confluent", before.bootstrap, topic, group, tmp_path, "first", idle_s=3)
    first.wait_exit(90)
    assert len(first.records()) == 300
    # Commit metadata survives too: set it with a simple commit on partition 2.
    simple_commit(before.bootstrap, group, [(topic, 2, 90)], metadata="checkpoint-7")
    before.stop(graceful=False)

    after = proxy_factory(name="proxy-after", extra_args=GROUP_ARGS)
    assert committed(after.bootstrap, topic, group, 3) == {0: 100, 1: 100, 2: 90}
    from confluent_kafka import Consumer, TopicPartition
    c = Consumer(harness.ck_config(after.bootstrap, **{"group.id": group}))
    try:
        [tp] = c.committed([TopicPartition(topic, 2)], timeout=30)
        assert tp.metadata == "checkpoint-7"
    finally:
        c.close()
    second = Member("confluent", after.bootstrap, topic, group, tmp_path, "second", idle_s=3)
    second.wait_exit(90)
    assert sorted((p, o) for p, o, _ in second.records()) == [(2, o) for o in range(90, 100)]


def metric_values(url: str, name: str) -> dict[str, float]:
    text = urllib.request.urlopen(f"{url}/metrics", timeout=10).read().decode()
    values = {}
    for line in text.splitlines():
        m = re.match(rf"^{name}(\{{.*\}})? (\S+)$", line)
        if m:
            values[m.group(1) or ""] = float(m.group(2))
    return values


@pytest.mark.client("confluent-kafka groups")
def test_group_metrics_show_state_commits_and_lag(backend, proxy_factory, tmp_path):
    from confluent_kafka import Consumer, TopicPartition

    proxy = proxy_factory(extra_args=GROUP_ARGS)
    topic, group = harness.unique_name("lag"), harness.unique_name("g-lag")
    harness.ck_create_topic(proxy.bootstrap, topic, 2)
    produce_keyed(proxy.bootstrap, topic, 2, 200)
    simple_commit(proxy.bootstrap, group, [(topic, 0, 60), (topic, 1, 100)])
    labels0 = f'{{group="{group}",partition="0",topic="{topic}"}}'
    labels1 = f'{{group="{group}",partition="1",topic="{topic}"}}'

    def lag_reported() -> bool:
        lag = metric_values(proxy.metrics_url, "kafka_iggy_consumer_lag")
        return lag.get(labels0) == 40 and lag.get(labels1) == 0

    harness.wait_until(lag_reported, 20, "consumer lag 40 and 0 in /metrics")
    commits = metric_values(proxy.metrics_url, "kafka_iggy_offset_commits_total")
    assert commits[f'{{group="{group}"}}'] == 2

    member = Member("confluent", proxy.bootstrap, topic, group, tmp_path, "member", idle_s=30)
    try:
        harness.wait_until(lambda: len(member.records()) == 40, 60, "the uncommitted 40 records")

        def stable() -> bool:
            states = metric_values(proxy.metrics_url, "kafka_iggy_groups")
            members = metric_values(proxy.metrics_url, "kafka_iggy_group_members")
            return states.get('{state="Stable"}', 0) >= 1 and members.get(f'{{group="{group}"}}') == 1

        harness.wait_until(stable, 20, "a Stable group with one member in /metrics")
        rebalances = metric_values(proxy.metrics_url, "kafka_iggy_group_rebalances_total")
        assert rebalances[f'{{group="{group}"}}'] >= 1
        harness.wait_until(lambda: metric_values(proxy.metrics_url, "kafka_iggy_consumer_lag")
                           .get(labels0) == 0, 20, "lag 0 once everything is committed")
    finally:
        member.stop()


@pytest.mark.client("confluent-kafka groups")
@pytest.mark.parametrize("mode", ["auto-commit", "async-commit"])
def test_auto_and_async_commits_are_where_the_next_consumer_starts(backend, proxy_factory, mode):
    from confluent_kafka import Consumer

    proxy = proxy_factory(extra_args=GROUP_ARGS)
    topic, group = harness.unique_name(mode), harness.unique_name(f"g-{mode}")
    harness.ck_create_topic(proxy.bootstrap, topic, 2)
    produce_keyed(proxy.bootstrap, topic, 2, 120)
    settings = {"group.id": group, "auto.offset.reset": "earliest",
                "session.timeout.ms": 6000, "enable.auto.commit": mode == "auto-commit",
                "auto.commit.interval.ms": 200}
    consumer = Consumer(harness.ck_config(proxy.bootstrap, **settings))
    consumer.subscribe([topic])
    got = 0
    deadline = time.monotonic() + 60
    try:
        while got < 120 and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None or msg.error():
                continue
            got += 1
            if mode == "async-commit":
                consumer.commit(message=msg, asynchronous=True)
        assert got == 120
        if mode == "auto-commit":
            harness.wait_until(lambda: committed(proxy.bootstrap, topic, group, 2) == {0: 60, 1: 60},
                               20, "auto-commit to reach the end of both partitions")
    finally:
        consumer.close()  # flushes outstanding async commits and leaves the group
    assert committed(proxy.bootstrap, topic, group, 2) == {0: 60, 1: 60}


ASSIGNOR_CASES = [
    pytest.param("confluent", "roundrobin", marks=pytest.mark.client("confluent-kafka groups"), id="confluent-roundrobin"),
    pytest.param("kafka-python", "roundrobin", marks=pytest.mark.client("kafka-python groups"), id="kafka-python-roundrobin"),
    pytest.param("java", "range", marks=pytest.mark.client("java-kafka-clients groups"), id="java-range"),
    pytest.param("java", "roundrobin", marks=pytest.mark.client("java-kafka-clients groups"), id="java-roundrobin"),
]


@pytest.mark.parametrize("client,assignor", ASSIGNOR_CASES)
def test_every_assignor_gives_each_partition_to_exactly_one_member(
        backend, proxy_factory, tmp_path, client, assignor, request):
    jar = request.getfixturevalue("java_jar") if client == "java" else None
    proxy = proxy_factory(extra_args=GROUP_ARGS)
    topic, group = harness.unique_name("assign"), harness.unique_name(f"g-{assignor}")
    harness.ck_create_topic(proxy.bootstrap, topic, 6)
    produce_keyed(proxy.bootstrap, topic, 6, 1200)
    members = [Member(client, proxy.bootstrap, topic, group, tmp_path, f"m{i}", assignor=assignor,
                      delay_ms=2, idle_s=5, java_jar=jar) for i in range(2)]
    try:
        # Both members hold partitions of the same generation: the group settled with two
        # members, each partition held once. (A member's events lag behind the group: right
        # after the rebalance one may still show the previous generation's assignment, so an
        # overlap is waited out; one that lasts fails here.)
        def settled():
            held = [m.assignment() for m in members]
            covered = all(held) and held[0] | held[1] == set(range(6))
            return held if covered and held[0].isdisjoint(held[1]) else None

        harness.wait_until(settled, 60, "two members sharing all 6 partitions, each held once")
        harness.wait_until(lambda: len({k for m in members for _, _, k in m.records()}) == 1200,
                           90, "every record consumed")
    finally:
        for m in members:
            m.stop()
    reads = Counter((p, o) for m in members for p, o, _ in m.records())
    assert max(reads.values()) == 1, "a record was read twice without any member failing"


@pytest.mark.parametrize("client", [
    pytest.param("confluent", marks=pytest.mark.client("confluent-kafka groups"), id="confluent"),
    pytest.param("java", marks=pytest.mark.client("java-kafka-clients groups"), id="java"),
])
def test_a_static_member_restarted_within_its_session_keeps_its_partitions(
        backend, proxy_factory, tmp_path, client, request):
    jar = request.getfixturevalue("java_jar") if client == "java" else None
    proxy = proxy_factory(extra_args=GROUP_ARGS)
    topic, group = harness.unique_name("static"), harness.unique_name("g-static")
    harness.ck_create_topic(proxy.bootstrap, topic, 4)
    produce_keyed(proxy.bootstrap, topic, 4, 400)
    opts = dict(assignor="range", session_ms=20_000, idle_s=60, java_jar=jar)
    a = Member(client, proxy.bootstrap, topic, group, tmp_path, "static-a", instance_id="host-a", **opts)
    b = Member(client, proxy.bootstrap, topic, group, tmp_path, "static-b", instance_id="host-b", **opts)
    restarted = None
    try:
        harness.wait_until(lambda: a.assignment() and b.assignment()
                           and a.assignment() | b.assignment() == set(range(4)), 60,
                           "both static members assigned")
        harness.wait_until(lambda: len({k for m in (a, b) for _, _, k in m.records()}) == 400, 60,
                           "every record consumed")
        held_by_a = a.assignment()
        b_events = len([e for e in b.events() if e["e"] in ("assigned", "revoked")])
        a.process.stop(graceful=False)  # a crash: a static member sends no LeaveGroup anyway
        restarted = Member(client, proxy.bootstrap, topic, group, tmp_path, "static-a-again",
                           instance_id="host-a", **opts)
        harness.wait_until(lambda: restarted.assignment(), 30, "the restarted member's assignment")
        assert restarted.assignment() == held_by_a
        time.sleep(2)
        assert len([e for e in b.events() if e["e"] in ("assigned", "revoked")]) == b_events, (
            "the other member was rebalanced although a static member came back in time")
        produce_keyed(proxy.bootstrap, topic, 4, 40)
        # The restarted member resumes from its predecessor's commits: only new records.
        harness.wait_until(lambda: len(restarted.records()) == 10 * len(held_by_a), 30,
                           "the new records of its partitions")
        assert all(o >= 100 for _, o, _ in restarted.records())
    finally:
        for m in (a, b, restarted):
            if m is not None:
                m.stop()


@pytest.mark.client("kafka-consumer-groups (kafka-tools)")
def test_kafka_consumer_groups_tool(backend, proxy_factory, tmp_path, java_jar):
    proxy = proxy_factory(extra_args=GROUP_ARGS)
    bs = proxy.bootstrap
    topic, group = harness.unique_name("tool"), harness.unique_name("g-tool")
    harness.ck_create_topic(bs, topic, 3)
    produce_keyed(bs, topic, 3, 300)
    simple_commit(bs, group, [(topic, 0, 60), (topic, 1, 100)])

    assert group in harness.kafka_consumer_groups(bs, "--list").stdout.split()

    def describe() -> dict[int, list[str]]:
        out = harness.kafka_consumer_groups(bs, "--describe", "--group", group).stdout
        rows = {}
        for line in out.splitlines():
            cols = line.split()
            if len(cols) >= 6 and cols[0] == group and cols[1] == topic:
                rows[int(cols[2])] = cols[3:6]  # CURRENT-OFFSET LOG-END-OFFSET LAG
        return rows

    rows = describe()
    assert rows[0] == ["60", "100", "40"], rows
    assert rows[1] == ["100", "100", "0"], rows

    # With a running member: members, assignment and the member's host are shown.
    member = Member("confluent", bs, topic, group, tmp_path, "member", idle_s=60)
    try:
        harness.wait_until(lambda: len(member.assignment()) == 3, 30, "the member's assignment")
        harness.wait_until(lambda: len(member.records()) == 140, 30, "the uncommitted records")
        members = harness.kafka_consumer_groups(bs, "--describe", "--group", group, "--members",
                                                "--verbose").stdout
        assert "/127.0.0.1" in members and "rdkafka" in members, members
        refused = harness.kafka_consumer_groups(bs, "--delete", "--group", group, check=False)
        assert "not empty" in (refused.stdout + refused.stderr).lower() or refused.returncode != 0, refused
    finally:
        member.stop()  # SIGTERM: the member closes and leaves the group
    def no_active_members() -> bool:
        out = harness.kafka_consumer_groups(bs, "--describe", "--group", group)
        return "has no active members" in out.stdout + out.stderr

    harness.wait_until(no_active_members, 30, "the group to be empty")
    harness.wait_until(lambda: all(r[2] == "0" for r in describe().values()) and len(describe()) == 3,
                       30, "lag 0 on every partition after the member committed everything")

    # Reset to the beginning: the next member reads everything again.
    out = harness.kafka_consumer_groups(bs, "--reset-offsets", "--group", group, "--topic", topic,
                                        "--to-earliest", "--execute").stdout
    assert out.count(" 0") >= 3, out
    assert all(r[0] == "0" and r[2] == "100" for r in describe().values()), describe()

    # Delete the offsets of one partition, then the whole group.
    harness.kafka_consumer_groups(bs, "--delete-offsets", "--group", group, "--topic", f"{topic}:0")
    assert sorted(describe()) == [1, 2]
    harness.kafka_consumer_groups(bs, "--delete", "--group", group)
    assert group not in harness.kafka_consumer_groups(bs, "--list").stdout.split()


@pytest.mark.client("java-kafka-clients groups")
def test_admin_client_group_operations(backend, proxy_factory, tmp_path, java_jar):
    proxy = proxy_factory(extra_args=GROUP_ARGS)
    topic, group = harness.unique_name("admin"), harness.unique_name("g-admin")
    harness.ck_create_topic(proxy.bootstrap, topic, 2)
    produce_keyed(proxy.bootstrap, topic, 2, 20)
    first = Member("java", proxy.bootstrap, topic, group, tmp_path, "java-member", idle_s=2,
                   java_jar=java_jar)
    first.wait_exit(90)
    [result] = harness.java_driver(java_jar, "group-admin", bootstrap=proxy.bootstrap, group=group,
                                   topic=topic)
    assert group in result["groups"]
    assert result["state"] == "EMPTY" or result["state"].lower() == "empty", result
    assert result["members"] == 0
    assert result["offsets"] == {"0": 10, "1": 10}, result
    assert result["after_delete"] == 1, result
