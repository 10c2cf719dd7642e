"""One consumer-group member as its own process, so a test can kill it like a crashed app.

    python3 group_member.py CLIENT BOOTSTRAP TOPIC GROUP [--assignor A] [--session-ms N]
                            [--delay-ms N] [--idle-exit-s N] [--instance-id ID]

CLIENT is `confluent` (librdkafka) or `kafka-python`. The member subscribes, and for every
record prints `{"e":"rec","p":P,"o":O,"k":KEY}` (processing), then commits synchronously and
prints `{"e":"commit","p":P,"o":NEXT}` once the commit succeeded (a commit refused during a
rebalance is retried, for the positions of all assigned partitions, after the next poll); assignment changes print
`{"e":"assigned","ps":[...]}` / `{"e":"revoked","ps":[...]}`. Lines are flushed at once. It exits
after `--idle-exit-s` seconds without records (once it received some), closing cleanly.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time

# SIGTERM ends the member like an application shutting down: leave the loop, close (LeaveGroup).
STOP = threading.Event()
signal.signal(signal.SIGTERM, lambda *_: STOP.set())


def emit(**fields) -> None:
    sys.stdout.write(json.dumps(fields) + "\n")
    sys.stdout.flush()


def run_confluent(a) -> None:
    from confluent_kafka import Consumer, TopicPartition

    config = {
        "bootstrap.servers": a.bootstrap,
        "group.id": a.group,
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
        "session.timeout.ms": a.session_ms,
        "heartbeat.interval.ms": max(100, a.session_ms // 6),
        "partition.assignment.strategy": a.assignor,
    }
    if a.instance_id:
        config["group.instance.id"] = a.instance_id
    consumer = Consumer(config)

    def on_assign(c, partitions):
        emit(e="assigned", ps=sorted(p.partition for p in partitions))
        if a.assignor == "cooperative-sticky":
            c.incremental_assign(partitions)
        else:
            c.assign(partitions)

    def on_revoke(c, partitions):
        emit(e="revoked", ps=sorted(p.partition for p in partitions))
        if a.assignor == "cooperative-sticky":
            c.incremental_unassign(partitions)
        else:
            c.unassign()

    consumer.subscribe([a.topic], on_assign=on_assign, on_revoke=on_revoke)

    def commit_positions() -> bool:
        """Commits the position of every assigned partition (retry of refused commits)."""
        try:
            positions = [tp for tp in consumer.position(consumer.assignment()) if tp.offset >= 0]
            if positions:
                consumer.commit(offsets=positions, asynchronous=False)
        except Exception:  # still rebalancing: try again after the next poll
            return False
        for tp in positions:
            emit(e="commit", p=tp.partition, o=tp.offset)
        return True

    last = time.monotonic()
    received = False
    uncommitted = False
    try:
        while not STOP.is_set():
            msg = consumer.poll(0.2)
            if uncommitted:
                uncommitted = not commit_positions()
            if msg is None:
                if received and time.monotonic() - last > a.idle_exit_s:
                    break
                continue
            if msg.error():
                emit(e="error", msg=str(msg.error()))
                continue
            received, last = True, time.monotonic()
            emit(e="rec", p=msg.partition(), o=msg.offset(), k=(msg.key() or b"").decode())
            if a.delay_ms:
                time.sleep(a.delay_ms / 1000)
            tp = TopicPartition(a.topic, msg.partition(), msg.offset() + 1)
            try:
                consumer.commit(offsets=[tp], asynchronous=False)
                emit(e="commit", p=msg.partition(), o=msg.offset() + 1)
            except Exception as exc:  # a commit refused during a rebalance: retried after the next poll
                uncommitted = True
                emit(e="commit-failed", p=msg.partition(), o=msg.offset() + 1, msg=str(exc))
        deadline = time.monotonic() + 30
        while uncommitted and time.monotonic() < deadline:
            consumer.poll(0.2)
            uncommitted = not commit_positions()
    finally:
        consumer.close()


def run_kafka_python(a) -> None:
    from kafka import KafkaConsumer, TopicPartition
    from kafka.consumer.subscription_state import ConsumerRebalanceListener
    from kafka.structs import OffsetAndMetadata

    import kafka.coordinator.assignors.range as r
    import kafka.coordinator.assignors.roundrobin as rr
    import kafka.coordinator.assignors.sticky.sticky_assignor as st
    assignor = {"range": r.RangePartitionAssignor, "roundrobin": rr.RoundRobinPartitionAssignor,
                "cooperative-sticky": st.StickyPartitionAssignor}[a.assignor]

    consumer = KafkaConsumer(
        bootstrap_servers=a.bootstrap, group_id=a.group, auto_offset_reset="earliest",
        enable_auto_commit=False, session_timeout_ms=a.session_ms,
        heartbeat_interval_ms=max(100, a.session_ms // 6),
        partition_assignment_strategy=[assignor],
        **({"group_instance_id": a.instance_id} if a.instance_id else {}))

    class Listener(ConsumerRebalanceListener):
        def on_partitions_revoked(self, revoked):
            emit(e="revoked", ps=sorted(p.partition for p in revoked))

        def on_partitions_assigned(self, assigned):
            emit(e="assigned", ps=sorted(p.partition for p in assigned))

    consumer.subscribe([a.topic], listener=Listener())

    def commit_positions() -> bool:
        """Commits the position of every assigned partition (retry of refused commits)."""
        try:
            positions = {tp: OffsetAndMetadata(consumer.position(tp), "", -1)
                         for tp in consumer.assignment()}
            if positions:
                consumer.commit(positions)
        except Exception:
            return False
        for tp, om in positions.items():
            emit(e="commit", p=tp.partition, o=om.offset)
        return True

    last = time.monotonic()
    received = False
    uncommitted = False
    try:
        while not STOP.is_set():
            batches = consumer.poll(timeout_ms=200)
            if uncommitted:
                uncommitted = not commit_positions()
            if not batches:
                if received and time.monotonic() - last > a.idle_exit_s:
                    break
                continue
            received, last = True, time.monotonic()
            for tp, messages in batches.items():
                for msg in messages:
                    emit(e="rec", p=msg.partition, o=msg.offset, k=(msg.key or b"").decode())
                    if a.delay_ms:
                        time.sleep(a.delay_ms / 1000)
                    try:
                        consumer.commit({TopicPartition(a.topic, msg.partition):
                                         OffsetAndMetadata(msg.offset + 1, "", -1)})
                        emit(e="commit", p=msg.partition, o=msg.offset + 1)
                    except Exception as exc:
                        uncommitted = True
                        emit(e="commit-failed", p=msg.partition, o=msg.offset + 1, msg=str(exc))
        deadline = time.monotonic() + 30
        while uncommitted and time.monotonic() < deadline:
            consumer.poll(timeout_ms=200)
            uncommitted = not commit_positions()
    finally:
        consumer.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("client", choices=["confluent", "kafka-python"])
    parser.add_argument("bootstrap")
    parser.add_argument("topic")
    parser.add_argument("group")
    parser.add_argument("--assignor", default="range")
    parser.add_argument("--session-ms", type=int, default=3000)
    parser.add_argument("--delay-ms", type=float, default=0)
    parser.add_argument("--idle-exit-s", type=float, default=6)
    parser.add_argument("--instance-id")
    a = parser.parse_args()
    {"confluent": run_confluent, "kafka-python": run_kafka_python}[a.client](a)
    emit(e="closed")


if __name__ == "__main__":
    main()
