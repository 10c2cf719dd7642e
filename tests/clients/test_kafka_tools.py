"""Kafka's own admin tools for transactions and leadership, run as kafka-transactions.sh and
kafka-leader-election.sh run them (classes of Maven Central's kafka-tools): the idempotent
producers of a partition are described, there are no transactions to list, and no leader
needs electing; none of them fails on a closed connection or an unsupported API."""

import pytest

import harness
from harness import Record

pytestmark = pytest.mark.client("kafka-tools (transactions, leader election)")

TRANSACTIONS = "org.apache.kafka.tools.TransactionsCommand"
LEADER_ELECTION = "org.apache.kafka.tools.LeaderElectionCommand"


def table(out: str) -> list[dict[str, str]]:
    """Rows of the tools' tab/space-separated tables, keyed by the header line's columns."""
    lines = [line.split() for line in out.splitlines() if line.strip()]
    if not lines:
        return []
    header, rows = lines[0], lines[1:]
    return [dict(zip(header, row)) for row in rows]


def test_describe_producers_and_list_transactions(proxy):
    harness.require_module("confluent_kafka")
    topic = harness.unique_name("tools")
    harness.ck_create_topic(proxy, topic, 2)
    records = [Record(0, f"k{i}".encode(), f"v{i}".encode()) for i in range(10)]
    harness.ck_produce(proxy, topic, records, **{"enable.idempotence": True, "linger.ms": 50})

    out = harness.kafka_tool(TRANSACTIONS, proxy, "describe-producers", "--topic", topic,
                             "--partition", "0").stdout
    producers = table(out)
    assert len(producers) == 1, out
    producer = producers[0]
    assert int(producer["ProducerId"]) >= 0, out
    # Ten records with sequences 0..9, in however many batches the producer made.
    assert producer["LastSequence"] == "9", out
    assert producer["CurrentTransactionStartOffset"] == "None", out
    # Partition 1 has had no producer.
    out = harness.kafka_tool(TRANSACTIONS, proxy, "describe-producers", "--topic", topic,
                             "--partition", "1").stdout
    assert table(out) == [], out

    out = harness.kafka_tool(TRANSACTIONS, proxy, "list").stdout
    assert table(out) == [], out
    # find-hanging asks every broker for its producers and transactions: none hang.
    out = harness.kafka_tool(TRANSACTIONS, proxy, "find-hanging", "--broker-id", "0").stdout
    assert table(out) == [], out


def test_leader_election_is_never_needed(proxy):
    harness.require_module("confluent_kafka")
    topic = harness.unique_name("elect")
    harness.ck_create_topic(proxy, topic, 2)
    done = harness.kafka_tool(LEADER_ELECTION, proxy, "--election-type", "PREFERRED",
                              "--topic", topic, "--partition", "1")
    assert f"Valid replica already elected for partitions {topic}-1" in done.stdout, done.stdout
    everything = harness.kafka_tool(LEADER_ELECTION, proxy, "--election-type", "PREFERRED",
                                    "--all-topic-partitions")
    assert "Valid replica already elected" not in everything.stdout, everything.stdout
    unknown = harness.kafka_tool(LEADER_ELECTION, proxy, "--election-type", "PREFERRED",
                                 "--topic", topic, "--partition", "7", check=False)
    assert unknown.returncode != 0
    assert "UnknownTopicOrPartition" in unknown.stdout + unknown.stderr, unknown
