"""Transactional producers: the proxy has no transaction coordinator, so a transactional producer
must fail fast with a clear, fatal Kafka error instead of hanging in retries."""

import time

import pytest

import harness

pytestmark = pytest.mark.client("confluent-kafka")

# A hang would show up as the client's own transaction timeout; a refusal is immediate.
FAST_S = 10.0


@pytest.fixture(autouse=True)
def _confluent_kafka_installed():
    harness.require_module("confluent_kafka")


def test_transactional_producer_fails_fast(proxy):
    from confluent_kafka import KafkaException, Producer

    producer = Producer(harness.ck_config(proxy, **{"transactional.id": harness.unique_name("tx")}))
    started = time.monotonic()
    with pytest.raises(KafkaException) as raised:
        producer.init_transactions(30)
    elapsed = time.monotonic() - started
    error = raised.value.args[0]
    assert elapsed < FAST_S, f"init_transactions took {elapsed:.1f}s"
    # librdkafka finds none of the transaction APIs (AddPartitionsToTxn, EndTxn, ...) advertised
    # and reports _UNSUPPORTED_FEATURE as a fatal error: the application stops instead of
    # retrying. (A transaction-coordinator lookup would get the fatal
    # TRANSACTIONAL_ID_AUTHORIZATION_FAILED; see test_java_clients.py.)
    assert error.fatal(), error
    assert "not supported" in error.str(), error
