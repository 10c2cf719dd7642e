//! Produce: decode batches, check idempotent sequences, append under the partition's writer
//! lock, answer with the real base offsets.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ApiKey, ProduceRequest, ProduceResponse};
use kafka_protocol::protocol::StrBytes;

use super::records::{decode_produced, ProducedBatch};
use super::tally;
use crate::broker::Broker;
use crate::error::backend_error_code;
use crate::partitions::SequenceCheck;

/// `None` when acks=0 (no response is sent).
pub async fn handle(
    broker: &Broker,
    _version: i16,
    request: ProduceRequest,
) -> Option<ProduceResponse> {
    let acks = request.acks;
    let mut responses = Vec::with_capacity(request.topic_data.len());
    for topic in request.topic_data {
        let name = topic.name.0.to_string();
        let mut partitions = Vec::with_capacity(topic.partition_data.len());
        for data in topic.partition_data {
            let result = if !matches!(acks, -1..=1) {
                Err((ResponseError::InvalidRequiredAcks.code(), None))
            } else if request.transactional_id.is_some() {
                Err((
                    ResponseError::TransactionalIdAuthorizationFailed.code(),
                    Some("transactions are not supported by this proxy".to_string()),
                ))
            } else {
                produce_partition(broker, &name, data.index, data.records).await
            };
            let response = match result {
                Ok(base_offset) => PartitionProduceResponse::default()
                    .with_index(data.index)
                    .with_base_offset(base_offset)
                    .with_log_start_offset(0),
                Err((code, message)) => PartitionProduceResponse::default()
                    .with_index(data.index)
                    .with_error_code(tally(broker, ApiKey::Produce, code))
                    .with_base_offset(-1)
                    .with_error_message(message.map(StrBytes::from_string)),
            };
            partitions.push(response);
        }
        responses.push(
            TopicProduceResponse::default()
                .with_name(topic.name)
                .with_partition_responses(partitions),
        );
    }
    (acks != 0).then(|| ProduceResponse::default().with_responses(responses))
}

type PartitionError = (i16, Option<String>);

async fn produce_partition(
    broker: &Broker,
    topic: &str,
    partition: i32,
    records: Option<bytes::Bytes>,
) -> Result<i64, PartitionError> {
    let Some(records) = records else {
        return Err((
            ResponseError::CorruptMessage.code(),
            Some("no records".into()),
        ));
    };
    if partition < 0 {
        return Err((ResponseError::UnknownTopicOrPartition.code(), None));
    }
    if !broker.cluster.is_local_leader(topic, partition) {
        return Err((ResponseError::NotLeaderOrFollower.code(), None));
    }
    let batch = decode_produced(records).map_err(|e| {
        tracing::debug!(topic, partition, error = %e, "rejected produce batch");
        (ResponseError::CorruptMessage.code(), Some(e.to_string()))
    })?;
    if batch.transactional {
        return Err((
            ResponseError::InvalidTxnState.code(),
            Some("transactional batches are not supported".into()),
        ));
    }
    append(broker, topic, partition, batch).await
}

async fn append(
    broker: &Broker,
    topic: &str,
    partition: i32,
    batch: ProducedBatch,
) -> Result<i64, PartitionError> {
    let state = broker.partitions.get(topic, partition);
    let mut writer = state.writer.lock().await;
    if let Some(identity) = &batch.identity {
        match writer.check(identity) {
            SequenceCheck::Append => {}
            SequenceCheck::Duplicate { base_offset } => {
                tracing::debug!(
                    topic,
                    partition,
                    base_offset,
                    "duplicate batch answered from cache"
                );
                return Ok(base_offset);
            }
            SequenceCheck::OutOfOrder => {
                return Err((ResponseError::OutOfOrderSequenceNumber.code(), None));
            }
            SequenceCheck::Fenced => {
                return Err((ResponseError::InvalidProducerEpoch.code(), None));
            }
        }
    }
    let count = batch.records.len() as u64;
    let bytes = batch.payload_bytes as u64;
    let base_offset = broker
        .backend
        .append(topic, partition as u32, batch.records)
        .await
        .map_err(|e| {
            tracing::debug!(topic, partition, error = %e, "append failed");
            (backend_error_code(&e), Some(e.to_string()))
        })?;
    if let Some(identity) = &batch.identity {
        writer.record(identity, base_offset);
    }
    drop(writer);
    state.appended.notify_waiters();
    broker.metrics.records_in.inc_by(count);
    broker.metrics.record_bytes_in.inc_by(bytes);
    Ok(base_offset)
}
