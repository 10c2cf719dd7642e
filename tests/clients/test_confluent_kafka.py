"""confluent-kafka (librdkafka) from PyPI: idempotent producer with every compression codec,
keyed records with headers and explicit timestamps over 3 partitions, a tombstone; consume by
assign from the beginning and compare record by record; offsets (watermarks, ListOffsets,
offsets_for_times, out-of-range fetch) and the admin API."""

import time

import pytest

import harness
from harness import Record

pytestmark = pytest.mark.client("confluent-kafka")

CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]
PARTITIONS = 3


@pytest.fixture(autouse=True)
def _confluent_kafka_installed():
    harness.require_module("confluent_kafka")


def keyed_records(count: int, codec: str) -> list[Record]:
    """Records spread over the partitions with keys, headers and explicit CreateTimes; record 7
    is a tombstone (null value)."""
    base = int(time.time() * 1000) - 60_000
    records = []
    for i in range(count):
        value = None if i == 7 else f"value {i} ({codec}) ".encode() * (1 + i % 5)
        headers = (("codec", codec.encode()), ("index", str(i).encode()), ("bin", bytes([i, 0, 255])))
        records.append(Record(partition=i % PARTITIONS, key=f"key-{i}".encode(), value=value,
                              headers=headers, timestamp=base + i * 10))
    return records


@pytest.mark.parametrize("codec", CODECS)
def test_idempotent_produce_and_consume_record_by_record(backend, proxy, codec):
    topic = harness.unique_name(f"ck-{codec}")
    harness.ck_create_topic(proxy, topic, PARTITIONS)

    produced = harness.ck_produce(proxy, topic, keyed_records(40, codec),
                                  **{"enable.idempotence": True, "compression.type": codec})
    harness.assert_contiguous_offsets(produced)

    consumed = harness.ck_consume(proxy, topic, PARTITIONS, len(produced))
    harness.assert_same_records(produced, consumed)


def test_edge_case_records_round_trip(backend, proxy):
    """Records that do not fit Iggy user headers one-to-one: null key, empty value, empty and
    null header values, long keys and header values (> 255 bytes), binary data."""
    topic = harness.unique_name("ck-edge")
    records = [
        Record(0, None, b"null key"),
        Record(0, b"empty value", b""),
        Record(0, b"tombstone without headers", None),
        Record(0, b"empty header value", b"v", (("empty", b""),)),
        Record(0, b"null header value", b"v", (("null", None),)),
        Record(0, b"k" * 300, b"long key"),
        Record(0, b"long header", b"v", (("long", b"h" * 1000),)),
        Record(0, bytes(range(256)), bytes(range(255, -1, -1)), (("bin", bytes(range(256))),)),
        Record(0, b"", b"empty key"),
        Record(0, b"many headers", b"v", tuple((f"h{i}", str(i).encode()) for i in range(50))),
        Record(0, b"kafka-prefixed header", b"v", (("kafka.key", b"not the key"),)),
        Record(0, b"big value", b"x" * 200_000),
    ]
    produced = harness.ck_produce(proxy, topic, records, **{"enable.idempotence": True})
    harness.assert_contiguous_offsets(produced)
    consumed = harness.ck_consume(proxy, topic, [0], len(produced))
    harness.assert_same_records(produced, consumed)


def test_offsets_watermarks_times_and_out_of_range(backend, proxy):
    from confluent_kafka import KafkaError, TopicPartition
    from confluent_kafka.admin import OffsetSpec

    topic = harness.unique_name("ck-offsets")
    harness.ck_create_topic(proxy, topic, 1)
    first = harness.ck_produce(proxy, topic, [Record(0, b"a%d" % i, b"first") for i in range(5)])
    time.sleep(1.0)
    middle_ms = int(time.time() * 1000)
    time.sleep(1.0)
    second = harness.ck_produce(proxy, topic, [Record(0, b"b%d" % i, b"second") for i in range(5)])
    harness.assert_contiguous_offsets(first + second)

    consumer = harness.ck_consumer(proxy)
    try:
        tp = TopicPartition(topic, 0)
        assert consumer.get_watermark_offsets(tp, timeout=15) == (0, 10)
        # Timestamps are the producer's CreateTime (now); records 5.. are the first after middle_ms.
        [found] = consumer.offsets_for_times([TopicPartition(topic, 0, middle_ms)], timeout=15)
        assert found.error is None and found.offset == 5, found
        [beyond] = consumer.offsets_for_times(
            [TopicPartition(topic, 0, int(time.time() * 1000) + 3_600_000)], timeout=15)
        assert beyond.error is None and beyond.offset == -1, beyond
    finally:
        consumer.close()

    admin = harness.ck_admin(proxy)
    tp = TopicPartition(topic, 0)
    for spec, expected in [(OffsetSpec.earliest(), 0), (OffsetSpec.latest(), 10),
                           (OffsetSpec.for_timestamp(middle_ms), 5)]:
        result = harness.ck_result(admin.list_offsets({tp: spec}, request_timeout=15)[tp],
                                   f"list_offsets {spec}")
        assert result.offset == expected, (spec, result)

    # Reading from past the end with auto.offset.reset=error surfaces OFFSET_OUT_OF_RANGE.
    consumer = harness.ck_consumer(proxy, **{"auto.offset.reset": "error"})
    try:
        consumer.assign([TopicPartition(topic, 0, 25)])
        deadline = time.monotonic() + 30
        error = None
        while error is None and time.monotonic() < deadline:
            msg = consumer.poll(1.0)
            if msg is not None:
                assert msg.error() is not None, f"unexpected record past the end: offset {msg.offset()}"
                error = msg.error()
        assert error is not None, "no error for a fetch past the end of the partition"
        assert error.code() == KafkaError._AUTO_OFFSET_RESET, error
        assert "out of range" in error.str().lower() or "OFFSET_OUT_OF_RANGE" in error.str(), error
    finally:
        consumer.close()

    # ...and a fetch from the last offset returns the remaining records only.
    tail = harness.ck_consume(proxy, topic, [0], 2, start=8)
    assert [(r.offset, r.key) for r in tail] == [(8, b"b3"), (9, b"b4")]


def describe_partitions(admin, topic: str) -> int:
    """Partition count via DescribeTopics (a Metadata request that never auto-creates)."""
    from confluent_kafka import TopicCollection

    future = admin.describe_topics(TopicCollection([topic]), request_timeout=15)[topic]
    return len(future.result(timeout=30).partitions)


def test_admin_create_partitions_configs_cluster_delete(backend, proxy):
    from confluent_kafka import KafkaError
    from confluent_kafka.admin import ConfigResource, NewPartitions, NewTopic

    admin = harness.ck_admin(proxy)
    topic = harness.unique_name("ck-admin")
    harness.ck_create_topic(proxy, topic, PARTITIONS)
    assert describe_partitions(admin, topic) == PARTITIONS

    # Creating it again is refused with TOPIC_ALREADY_EXISTS.
    again = admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)],
                                request_timeout=15)[topic]
    with pytest.raises(Exception) as excinfo:
        again.result(timeout=30)
    assert excinfo.value.args[0].code() == KafkaError.TOPIC_ALREADY_EXISTS, excinfo.value

    # Grow to 5 partitions; the new partition takes records.
    harness.ck_result(admin.create_partitions([NewPartitions(topic, 5)], request_timeout=15)[topic],
                      "create_partitions")
    harness.wait_until(lambda: describe_partitions(admin, topic) == 5, 30, "5 partitions in metadata")
    produced = harness.ck_produce(proxy, topic, [Record(4, b"k", b"in partition 4")])
    assert [(r.partition, r.offset) for r in produced] == [(4, 0)]
    harness.assert_same_records(produced, harness.ck_consume(proxy, topic, [4], 1))

    # Topic configs are described.
    resource = ConfigResource(ConfigResource.Type.TOPIC, topic)
    configs = harness.ck_result(admin.describe_configs([resource], request_timeout=15)[resource],
                                "describe_configs")
    assert configs, "describe_configs returned no entries"
    assert "cleanup.policy" in configs or "retention.ms" in configs, sorted(configs)

    # The cluster is one broker: the proxy itself.
    cluster = harness.ck_result(admin.describe_cluster(request_timeout=15), "describe_cluster")
    assert cluster.cluster_id
    host, port = proxy.rsplit(":", 1)
    assert [(n.id, n.host, n.port) for n in cluster.nodes] == [(0, host, int(port))]
    assert cluster.controller is not None and cluster.controller.id == 0

    # Delete: the topic is then unknown.
    harness.ck_result(admin.delete_topics([topic], request_timeout=15)[topic], "delete_topics")

    def unknown() -> bool:
        try:
            describe_partitions(admin, topic)
            return False
        except Exception as e:  # noqa: BLE001 - the expected outcome is an exception
            return e.args[0].code() == KafkaError.UNKNOWN_TOPIC_OR_PART

    harness.wait_until(unknown, 30, "deleted topic to be unknown")


def test_list_all_topics(backend, proxy):
    """AdminClient.list_topics() without a topic: a Metadata request for all topics."""
    topics = [harness.unique_name("ck-list") for _ in range(2)]
    for topic in topics:
        harness.ck_create_topic(proxy, topic, 2)
    metadata = harness.ck_admin(proxy).list_topics(timeout=15)
    for topic in topics:
        assert topic in metadata.topics, sorted(metadata.topics)
        assert sorted(metadata.topics[topic].partitions) == [0, 1]
