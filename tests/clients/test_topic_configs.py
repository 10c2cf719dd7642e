"""Topic configs and DeleteRecords through a real AdminClient (confluent-kafka): compacted topics
are created with their configs and reported back, IncrementalAlterConfigs changes them
(validate_only changes nothing, broker configs are refused), DeleteRecords moves the log start
that consumers and ListOffsets see; on Iggy all of it survives a proxy restart."""

import pytest

import harness
from harness import Record

pytestmark = pytest.mark.client("confluent-kafka admin (configs, DeleteRecords)")


@pytest.fixture(autouse=True)
def _confluent_kafka_installed():
    harness.require_module("confluent_kafka")


def topic_configs(bootstrap: str, topic: str) -> dict:
    from confluent_kafka.admin import ConfigResource, ResourceType

    admin = harness.ck_admin(bootstrap)
    resource = ConfigResource(ResourceType.TOPIC, topic)
    entries = harness.ck_result(admin.describe_configs([resource], request_timeout=15)[resource],
                                "describe_configs")
    return {name: (e.value, e.source) for name, e in entries.items()}


def incremental(bootstrap: str, resource, validate_only: bool = False):
    admin = harness.ck_admin(bootstrap)
    futures = admin.incremental_alter_configs([resource], validate_only=validate_only,
                                              request_timeout=15)
    return futures[resource].result(timeout=harness.CLIENT_TIMEOUT_S)


def test_compacted_topic_configs_and_delete_records_survive_restart(backend, proxy_factory):
    from confluent_kafka import KafkaException, TopicPartition
    from confluent_kafka.admin import (AlterConfigOpType, ConfigEntry, ConfigResource,
                                       ConfigSource, NewTopic, ResourceType)

    topic = harness.unique_name("compacted")
    first = proxy_factory(name="proxy-first")
    admin = harness.ck_admin(first.bootstrap)
    configs = {"cleanup.policy": "compact,delete", "min.cleanable.dirty.ratio": "0.01",
               "segment.ms": "100", "delete.retention.ms": "100", "retention.ms": "86400000"}
    harness.ck_result(admin.create_topics([NewTopic(topic, 1, 1, config=configs)],
                                          operation_timeout=30)[topic], "create compacted topic")
    refused = admin.create_topics([NewTopic(harness.unique_name("bad"), 1, 1,
                                            config={"cleanup.policy": "shrink"})])
    with pytest.raises(KafkaException) as raised:
        list(refused.values())[0].result(timeout=30)
    assert raised.value.args[0].name() == "INVALID_CONFIG"

    described = topic_configs(first.bootstrap, topic)
    for name, value in configs.items():
        assert described[name] == (value, ConfigSource.DYNAMIC_TOPIC_CONFIG.value), name

    # validate_only changes nothing; then a real SET and an APPEND.
    change = ConfigResource(ResourceType.TOPIC, topic, incremental_configs=[
        ConfigEntry("max.message.bytes", "2000000",
                    incremental_operation=AlterConfigOpType.SET)])
    incremental(first.bootstrap, change, validate_only=True)
    assert topic_configs(first.bootstrap, topic)["max.message.bytes"][0] == "1048588"
    incremental(first.bootstrap, change)
    assert topic_configs(first.bootstrap, topic)["max.message.bytes"][0] == "2000000"
    broker = ConfigResource(ResourceType.BROKER, "0", incremental_configs=[
        ConfigEntry("num.partitions", "3", incremental_operation=AlterConfigOpType.SET)])
    with pytest.raises(KafkaException) as raised:
        incremental(first.bootstrap, broker)
    assert raised.value.args[0].name() == "INVALID_REQUEST"

    # Tombstones are kept in a compacted topic; DeleteRecords moves the log start.
    records = [Record(0, f"k{i % 3}".encode(), None if i == 5 else f"v{i}".encode())
               for i in range(10)]
    harness.ck_produce(first.bootstrap, topic, records)
    consumed = harness.ck_consume(first.bootstrap, topic, [0], 10)
    assert consumed[5].value is None and consumed[5].key == b"k2"
    deleted = harness.ck_result(
        admin.delete_records([TopicPartition(topic, 0, 4)], request_timeout=15)[TopicPartition(topic, 0)],
        "delete_records")
    assert deleted.low_watermark == 4
    if backend.kind == "iggy":
        # Everything is kept in Iggy: a new proxy knows it (the memory back end dies with its
        # proxy, so there the same proxy answers).
        first.stop(graceful=True)
        second = proxy_factory(name="proxy-second")
    else:
        second = first
    consumer = harness.ck_consumer(second.bootstrap)
    try:
        assert consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=15) == (4, 10)
    finally:
        consumer.close()
    from_start = harness.ck_consume(second.bootstrap, topic, [0], 6)
    assert [r.offset for r in from_start] == list(range(4, 10))
    assert topic_configs(second.bootstrap, topic)["cleanup.policy"][0] == "compact,delete"
    assert topic_configs(second.bootstrap, topic)["max.message.bytes"][0] == "2000000"
