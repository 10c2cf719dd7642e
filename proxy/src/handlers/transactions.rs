//! The transaction-tooling APIs that have answers without a transaction coordinator:
//! DescribeProducers (the idempotent producers a partition's leader remembers, as
//! `kafka-transactions.sh describe-producers` shows them) and ListTransactions, which finds
//! none because the proxy refuses transactional producers (see `producer_id`). Tools that
//! survey transactions (`kafka-transactions.sh list`, find-hanging) then get Kafka's answer for
//! a cluster without any, instead of a closed connection. DescribeTransactions is never
//! reached: its coordinator lookup already fails (see `coordinator`).

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_producers_response::{
    PartitionResponse, ProducerState, TopicResponse,
};
use kafka_protocol::messages::{
    ApiKey, DescribeProducersRequest, DescribeProducersResponse, ListTransactionsRequest,
    ListTransactionsResponse, ProducerId,
};

use super::produce::lock_writer;
use super::tally;
use crate::broker::Broker;
use crate::error::backend_error;
use crate::partitions::ActiveProducer;

pub async fn describe_producers(
    broker: &Broker,
    request: DescribeProducersRequest,
) -> DescribeProducersResponse {
    let mut topics = Vec::with_capacity(request.topics.len());
    for topic in request.topics {
        let name = topic.name.0.to_string();
        let mut partitions = Vec::with_capacity(topic.partition_indexes.len());
        for index in topic.partition_indexes {
            let answer = PartitionResponse::default().with_partition_index(index);
            partitions.push(match active_producers(broker, &name, index).await {
                Ok(producers) => {
                    answer.with_active_producers(producers.iter().map(producer_state).collect())
                }
                Err(error) => answer
                    .with_error_code(tally(broker, ApiKey::DescribeProducers, error.code()))
                    .with_error_message(None),
            });
        }
        topics.push(
            TopicResponse::default()
                .with_name(topic.name)
                .with_partitions(partitions),
        );
    }
    DescribeProducersResponse::default().with_topics(topics)
}

/// What the partition's leader remembers (it reads the producers' recent batches back from
/// the log first if it has not yet in its current run of leadership).
async fn active_producers(
    broker: &Broker,
    topic: &str,
    partition: i32,
) -> Result<Vec<ActiveProducer>, ResponseError> {
    if partition < 0 {
        return Err(ResponseError::UnknownTopicOrPartition);
    }
    if !broker.cluster.is_local_leader(topic, partition) {
        return Err(ResponseError::NotLeaderOrFollower);
    }
    // Checked first so that made-up topics leave no partition state behind.
    broker
        .backend
        .bounds(topic, partition as u32)
        .await
        .map_err(|e| backend_error(&e))?;
    let state = broker.partitions.get(topic, partition);
    let writer = lock_writer(broker, topic, partition, &state)
        .await
        .ok_or(ResponseError::NotLeaderOrFollower)?;
    Ok(writer.active_producers())
}

fn producer_state(p: &ActiveProducer) -> ProducerState {
    ProducerState::default()
        .with_producer_id(ProducerId(p.producer_id))
        .with_producer_epoch(i32::from(p.epoch))
        .with_last_sequence(p.last_sequence)
        .with_last_timestamp(p.last_append_ms)
        // No transaction coordinator: no coordinator epoch, no open transaction.
        .with_coordinator_epoch(-1)
        .with_current_txn_start_offset(-1)
}

pub fn list_transactions(request: &ListTransactionsRequest) -> ListTransactionsResponse {
    // Kafka reports filter states it does not know; these are the states it does.
    const STATES: &[&str] = &[
        "Empty",
        "Ongoing",
        "PrepareCommit",
        "PrepareAbort",
        "CompleteCommit",
        "CompleteAbort",
        "Dead",
        "PrepareEpochFence",
    ];
    let unknown = request
        .state_filters
        .iter()
        .filter(|s| !STATES.contains(&s.as_str()))
        .cloned()
        .collect();
    ListTransactionsResponse::default().with_unknown_state_filters(unknown)
}
