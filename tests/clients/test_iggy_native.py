"""Interop with Iggy-native clients (real Iggy only): what a Kafka producer writes through the
proxy, the Iggy Python SDK (apache-iggy 0.8.0, same release as server 0.8.0) reads as the raw
payloads at the same partitions and offsets; what the Iggy SDK writes, a Kafka consumer reads
through the proxy as records with a null key and the payload as value.

The Python SDK 0.8 exposes neither user headers nor origin timestamps, so those parts of the
mapping (kafka.key header, CreateTime) are checked by the Rust tests, not here."""

import time

import pytest

import harness
from harness import DEFAULT_STREAM, Record

pytestmark = [pytest.mark.client("iggy-native (apache-iggy)"), pytest.mark.iggy_only]


@pytest.fixture(autouse=True)
def _clients_installed():
    harness.require_module("apache_iggy")
    harness.require_module("confluent_kafka")


def poll_partition(server, topic: str, partition: int, count: int) -> list[tuple[int, bytes]]:
    """(offset, payload) of the first `count` messages of an Iggy partition, via the Iggy SDK."""
    from apache_iggy import PollingStrategy

    async def action(client):
        messages = []
        deadline = time.monotonic() + harness.CLIENT_TIMEOUT_S / 2
        while len(messages) < count and time.monotonic() < deadline:
            batch = await client.poll_messages(DEFAULT_STREAM, topic, partition,
                                               PollingStrategy.Offset(len(messages)),
                                               count - len(messages), False)
            messages.extend(batch)
        for m in messages:
            assert m.partition_id() == partition, (m.partition_id(), partition)
        return [(m.offset(), m.payload()) for m in messages]

    return harness.iggy_native(server, action)


def test_kafka_producer_to_iggy_native_consumer(backend, proxy):
    topic = harness.unique_name("to-iggy")
    harness.ck_create_topic(proxy, topic, 2)
    records = [Record(i % 2, f"key-{i}".encode(), f"payload {i} from kafka".encode(),
                      (("origin", b"kafka"),)) for i in range(20)]
    produced = harness.ck_produce(proxy, topic, records, **{"enable.idempotence": True})
    harness.assert_contiguous_offsets(produced)

    for partition in (0, 1):
        want = [(r.offset, r.value) for r in produced if r.partition == partition]
        got = poll_partition(backend.iggy, topic, partition, len(want))
        assert got == want, f"partition {partition}: Iggy-native reader saw {got}, Kafka wrote {want}"


def test_iggy_native_producer_to_kafka_consumer(backend, proxy):
    from apache_iggy import SendMessage

    topic = harness.unique_name("from-iggy")
    payloads = {0: [f"iggy p0 #{i}".encode() for i in range(7)],
                1: [f"iggy p1 #{i}".encode() for i in range(4)]}

    async def write(client):
        # The proxy created its stream at startup; the topic is made natively, behind its back.
        await client.create_topic(DEFAULT_STREAM, topic, 2)
        for partition, values in payloads.items():
            await client.send_messages(DEFAULT_STREAM, topic, partition,
                                       [SendMessage(v) for v in values])

    before_ms = int(time.time() * 1000)
    harness.iggy_native(backend.iggy, write)
    after_ms = int(time.time() * 1000)

    total = sum(len(v) for v in payloads.values())
    consumed = harness.ck_consume(proxy, topic, 2, total)
    expected = [Record(p, None, v, (), None, offset)
                for p, values in payloads.items() for offset, v in enumerate(values)]
    harness.assert_same_records(expected, consumed, check_timestamps=False)
    for r in consumed:
        assert before_ms - 5_000 <= r.timestamp <= after_ms + 5_000, (
            f"timestamp {r.timestamp} of {r} is not the Iggy message time "
            f"(written between {before_ms} and {after_ms})")


def test_offsets_exact_with_two_proxies_and_a_native_producer(backend, proxy_factory):
    """Two proxies in front of one Iggy (as during every rollout) and a native Iggy producer
    write to one partition at the same time: every offset a delivery report gives is where a
    consumer finds that record."""
    import asyncio
    import threading

    from apache_iggy import SendMessage

    a, b = proxy_factory(name="proxy-a"), proxy_factory(name="proxy-b")
    topic = harness.unique_name("shared")
    harness.ck_create_topic(a.bootstrap, topic, 1)
    per_producer, native_sends, per_send = 400, 40, 3
    produced: dict[str, list[Record]] = {}
    failures: list[BaseException] = []

    def produce(name: str, bootstrap: str):
        try:
            records = [Record(0, None, f"{name}-{i}".encode()) for i in range(per_producer)]
            # Small lingers and batches make many Produce requests, interleaved with the others.
            produced[name] = harness.ck_produce(bootstrap, topic, records,
                                                **{"linger.ms": 1, "batch.num.messages": 7})
        except BaseException as e:  # noqa: BLE001 - reported by the main thread
            failures.append(e)

    async def native_writes(client):
        for i in range(native_sends):
            await client.send_messages(DEFAULT_STREAM, topic, 0,
                                       [SendMessage(f"native-{i}-{j}".encode()) for j in range(per_send)])
            await asyncio.sleep(0.005)

    threads = [threading.Thread(target=produce, args=("a", a.bootstrap)),
               threading.Thread(target=produce, args=("b", b.bootstrap))]
    for t in threads:
        t.start()
    harness.iggy_native(backend.iggy, native_writes)
    for t in threads:
        t.join(harness.CLIENT_TIMEOUT_S)
    assert not failures, failures
    assert not any(t.is_alive() for t in threads), "a producer did not finish"

    total = 2 * per_producer + native_sends * per_send
    stored = {r.value: r.offset for r in harness.ck_consume(b.bootstrap, topic, 1, total)}
    assert len(stored) == total, "every record is stored once"
    wrong = [(r.value, r.offset, stored[r.value]) for records in produced.values()
             for r in records if stored[r.value] != r.offset]
    assert not wrong, f"{len(wrong)} delivery reports name the wrong offset, e.g. {wrong[:5]}"
    # The writers really took turns: each proxy's records are spread among the others'.
    for name, records in produced.items():
        offsets = [r.offset for r in records]
        assert max(offsets) - min(offsets) >= per_producer, f"{name} was never interleaved"
