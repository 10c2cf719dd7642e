"""Proxy restart on real Iggy: every record acknowledged before the proxy stops (gracefully or
killed) is readable through a new proxy at the same offsets, and new records continue at the
next offsets."""

import pytest

import harness
from harness import Record

pytestmark = [pytest.mark.client("restart (confluent-kafka)"), pytest.mark.iggy_only]

PARTITIONS = 3


@pytest.fixture(autouse=True)
def _confluent_kafka_installed():
    harness.require_module("confluent_kafka")


def batch(start: int, count: int, tag: str) -> list[Record]:
    return [Record(i % PARTITIONS, f"key-{i}".encode(), f"{tag} value {i}".encode(),
                   (("phase", tag.encode()),)) for i in range(start, start + count)]


@pytest.mark.parametrize("stop", ["sigterm", "sigkill"])
def test_acknowledged_records_survive_proxy_restart(backend, proxy_factory, stop):
    from confluent_kafka import TopicPartition

    topic = harness.unique_name(f"restart-{stop}")
    before = proxy_factory(name="proxy-before")
    harness.ck_create_topic(before.bootstrap, topic, PARTITIONS)
    acked = harness.ck_produce(before.bootstrap, topic, batch(0, 60, "before"),
                               **{"enable.idempotence": True})
    harness.assert_contiguous_offsets(acked)
    before.stop(graceful=(stop == "sigterm"))

    after = proxy_factory(name="proxy-after")
    consumed = harness.ck_consume(after.bootstrap, topic, PARTITIONS, len(acked))
    harness.assert_same_records(acked, consumed)

    per_partition = {p: sum(1 for r in acked if r.partition == p) for p in range(PARTITIONS)}
    more = harness.ck_produce(after.bootstrap, topic, batch(60, 15, "after"),
                              **{"enable.idempotence": True})
    harness.assert_contiguous_offsets(more, start=per_partition)

    everything = harness.ck_consume(after.bootstrap, topic, PARTITIONS, len(acked) + len(more))
    harness.assert_same_records(acked + more, everything)

    consumer = harness.ck_consumer(after.bootstrap)
    try:
        for p in range(PARTITIONS):
            expected_high = per_partition[p] + sum(1 for r in more if r.partition == p)
            assert consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=15) == (0, expected_high)
    finally:
        consumer.close()
