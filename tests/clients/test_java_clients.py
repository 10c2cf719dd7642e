"""Java kafka-clients 4.x from Maven Central (driver in tests/java): the default producer
(idempotence on, acks=all) sends keyed records with headers to 3 partitions, a consumer with
assign/seek reads them back; AdminClient create/delete topic and describeCluster."""

import pytest

import harness
from harness import Record

pytestmark = pytest.mark.client("java-kafka-clients")

PARTITIONS = 3


def as_record(line: dict) -> Record:
    def utf8(value):
        return None if value is None else value.encode()

    headers = tuple((name, utf8(value)) for name, value in line["headers"])
    return Record(line["partition"], utf8(line["key"]), utf8(line["value"]), headers,
                  line["timestamp"], line["offset"])


def test_default_producer_and_assign_seek_consumer(backend, proxy, java_jar):
    topic = harness.unique_name("java")
    harness.java_driver(java_jar, "create-topic", bootstrap=proxy, topic=topic, partitions=PARTITIONS)

    count = 30
    produced = [as_record(line) for line in harness.java_driver(
        java_jar, "produce", bootstrap=proxy, topic=topic, partitions=PARTITIONS, count=count)]
    assert len(produced) == count
    assert [r.partition for r in produced] == [i % PARTITIONS for i in range(count)]
    harness.assert_contiguous_offsets(produced)

    consumed = [as_record(line) for line in harness.java_driver(
        java_jar, "consume", bootstrap=proxy, topic=topic, partitions=PARTITIONS, expect=count)]
    harness.assert_same_records(produced, consumed)


def test_admin_create_describe_delete_topic_and_cluster(backend, proxy, java_jar):
    topic = harness.unique_name("java-admin")
    harness.java_driver(java_jar, "create-topic", bootstrap=proxy, topic=topic, partitions=PARTITIONS)

    [listing] = harness.java_driver(java_jar, "list-topics", bootstrap=proxy)
    assert topic in listing["topics"]
    [description] = harness.java_driver(java_jar, "describe-topic", bootstrap=proxy, topic=topic)
    assert description["partitions"] == PARTITIONS

    [cluster] = harness.java_driver(java_jar, "describe-cluster", bootstrap=proxy)
    host, port = proxy.rsplit(":", 1)
    assert cluster["cluster_id"]
    assert cluster["nodes"] == [{"id": 0, "host": host, "port": int(port)}]
    assert cluster["controller"] == 0

    harness.java_driver(java_jar, "delete-topic", bootstrap=proxy, topic=topic)
    harness.wait_until(
        lambda: topic not in harness.java_driver(java_jar, "list-topics", bootstrap=proxy)[0]["topics"],
        30, f"{topic} to leave the topic list")


def test_transactional_producer_fails_fast(backend, proxy, java_jar):
    """No transaction coordinator: initTransactions() must fail at once with a fatal error (the
    proxy answers transaction-coordinator lookups with TRANSACTIONAL_ID_AUTHORIZATION_FAILED),
    not block until max.block.ms retrying a retriable one."""
    [result] = harness.java_driver(java_jar, "init-transactions", bootstrap=proxy,
                                   transactional_id=harness.unique_name("java-tx"))
    assert result["error"] == "TransactionalIdAuthorizationException", result
    assert result["elapsed_ms"] < 10_000, result
