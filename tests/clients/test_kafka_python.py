"""kafka-python (pure-Python client) from PyPI: producer with keys and headers (idempotent by
default in 3.x), consumer with assign + seek_to_beginning, KafkaAdminClient create/delete."""

import pytest

import harness
from harness import Record

pytestmark = pytest.mark.client("kafka-python")

PARTITIONS = 3
TIMEOUT_MS = 15_000


@pytest.fixture(autouse=True)
def _kafka_python_installed():
    harness.require_module("kafka")


def admin_client(bootstrap: str):
    from kafka import KafkaAdminClient

    return KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=TIMEOUT_MS,
                            client_id="kafka-python-admin")


def create_topic(bootstrap: str, topic: str, partitions: int) -> None:
    from kafka.admin import NewTopic

    admin = admin_client(bootstrap)
    try:
        admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)],
                            timeout_ms=TIMEOUT_MS)
    finally:
        admin.close()


def produce(bootstrap: str, topic: str, records: list[Record]) -> list[Record]:
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5,
                             request_timeout_ms=TIMEOUT_MS, max_block_ms=TIMEOUT_MS)
    try:
        futures = [producer.send(topic, key=r.key, value=r.value, headers=list(r.headers),
                                 partition=r.partition, timestamp_ms=r.timestamp)
                   for r in records]
        producer.flush(timeout=harness.CLIENT_TIMEOUT_S)
        out = []
        for r, future in zip(records, futures, strict=True):
            meta = future.get(timeout=harness.CLIENT_TIMEOUT_S)
            assert meta.partition == r.partition, (r, meta)
            out.append(r.with_offset(meta.offset, meta.timestamp if r.timestamp is None else None))
        return out
    finally:
        producer.close(timeout=10)


def consume_all(bootstrap: str, topic: str, partitions: int, count: int) -> list[Record]:
    import time

    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                             request_timeout_ms=TIMEOUT_MS + 5_000, fetch_max_wait_ms=200)
    try:
        assignment = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(assignment)
        consumer.seek_to_beginning(*assignment)
        records: list[Record] = []
        deadline = time.monotonic() + harness.CLIENT_TIMEOUT_S
        while len(records) < count:
            assert time.monotonic() < deadline, f"consumed {len(records)} of {count} records"
            batches = consumer.poll(timeout_ms=500)
            for tp in sorted(batches, key=lambda t: t.partition):
                for m in batches[tp]:
                    records.append(Record(m.partition, m.key, m.value, tuple(m.headers or ()),
                                          m.timestamp, m.offset))
        return records
    finally:
        consumer.close()


def test_produce_with_keys_and_headers_then_assign_and_read(backend, proxy):
    topic = harness.unique_name("kp")
    create_topic(proxy, topic, PARTITIONS)
    records = [Record(i % PARTITIONS, f"key-{i}".encode(), f"kafka-python value {i}".encode(),
                      (("client", b"kafka-python"), ("index", str(i).encode())))
               for i in range(30)]
    produced = produce(proxy, topic, records)
    harness.assert_contiguous_offsets(produced)
    consumed = consume_all(proxy, topic, PARTITIONS, len(produced))
    harness.assert_same_records(produced, consumed)


def test_admin_create_and_delete_topic(backend, proxy):
    import time

    topic = harness.unique_name("kp-admin")
    create_topic(proxy, topic, PARTITIONS)
    admin = admin_client(proxy)
    try:
        assert topic in admin.list_topics()
        [description] = admin.describe_topics([topic])
        assert len(description["partitions"]) == PARTITIONS, description
        admin.delete_topics([topic], timeout_ms=TIMEOUT_MS)
        deadline = time.monotonic() + 30
        while topic in admin.list_topics():
            assert time.monotonic() < deadline, f"{topic} still listed after delete_topics"
            time.sleep(0.2)
    finally:
        admin.close()
