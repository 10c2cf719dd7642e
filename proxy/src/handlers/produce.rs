//! Produce: decode batches, check idempotent sequences, append under the partition's writer
//! lock, answer with the real base offsets.
//!
//! Handling is split in two so a connection can have several Produce requests in flight:
//! [`prepare`] runs at dispatch, in arrival order, and takes each partition's place in its append
//! line; [`execute`] does the work, the partitions of one request concurrently.

use bytes::Bytes;
use futures::future::join_all;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ApiKey, ProduceRequest, ProduceResponse, ResponseKind, TopicName};
use kafka_protocol::protocol::StrBytes;

use super::records::{decode_produced, BatchError, ProducedBatch};
use super::{tally, Outcome};
use crate::broker::Broker;
use crate::budget::Reservation;
use crate::error::backend_error_code;
use crate::partitions::{PartitionState, SequenceCheck, Turn};

type PartitionError = (i16, Option<String>);

/// A Produce request whose partitions hold their places in line.
pub struct PreparedProduce {
    acks: i16,
    topics: Vec<(TopicName, Vec<PreparedPartition>)>,
}

struct PreparedPartition {
    index: i32,
    /// The records and the place in line, or why the partition is refused without appending.
    work: Result<(Bytes, Turn), PartitionError>,
}

/// Validates what needs no I/O and takes the append turns. Must be called in request order.
pub fn prepare(broker: &Broker, request: ProduceRequest) -> PreparedProduce {
    let acks = request.acks;
    let refusal = if !matches!(acks, -1..=1) {
        Some((ResponseError::InvalidRequiredAcks.code(), None))
    } else if request.transactional_id.is_some() {
        Some((
            ResponseError::TransactionalIdAuthorizationFailed.code(),
            Some("transactions are not supported by this proxy".to_string()),
        ))
    } else {
        None
    };
    let topics = request
        .topic_data
        .into_iter()
        .map(|topic| {
            let partitions = topic
                .partition_data
                .into_iter()
                .map(|data| PreparedPartition {
                    index: data.index,
                    work: match &refusal {
                        Some(refused) => Err(refused.clone()),
                        None => admit(broker, &topic.name.0, data.index, data.records),
                    },
                })
                .collect();
            (topic.name, partitions)
        })
        .collect();
    PreparedProduce { acks, topics }
}

fn admit(
    broker: &Broker,
    topic: &str,
    partition: i32,
    records: Option<Bytes>,
) -> Result<(Bytes, Turn), PartitionError> {
    let Some(records) = records else {
        return Err((
            ResponseError::CorruptMessage.code(),
            Some("no records".into()),
        ));
    };
    if partition < 0 {
        return Err((ResponseError::UnknownTopicOrPartition.code(), None));
    }
    if crate::broker::is_internal_topic(topic) {
        // Kafka refuses client writes to __consumer_offsets the same way.
        return Err((
            ResponseError::InvalidTopicException.code(),
            Some(format!(
                "{topic} is internal; commit offsets with OffsetCommit"
            )),
        ));
    }
    if !broker.cluster.is_local_leader(topic, partition) {
        return Err((ResponseError::NotLeaderOrFollower.code(), None));
    }
    Ok((records, broker.partitions.get(topic, partition).take_turn()))
}

/// Appends every admitted partition and answers. With acks=0 nothing is sent back, unless a
/// partition failed: then the connection is closed, as Kafka does, so that the client notices
/// and refreshes its metadata.
pub async fn execute(broker: &Broker, prepared: PreparedProduce) -> Outcome {
    let mut responses = Vec::with_capacity(prepared.topics.len());
    for (name, partitions) in prepared.topics {
        let topic = name.0.as_str();
        let results = join_all(partitions.into_iter().map(|p| async move {
            let result = match p.work {
                Ok((records, turn)) => {
                    produce_partition(broker, topic, p.index, records, turn).await
                }
                Err(refused) => Err(refused),
            };
            partition_response(broker, p.index, result)
        }))
        .await;
        responses.push(
            TopicProduceResponse::default()
                .with_name(name.clone())
                .with_partition_responses(results),
        );
    }
    if prepared.acks != 0 {
        return Outcome::Respond(ResponseKind::Produce(
            ProduceResponse::default().with_responses(responses),
        ));
    }
    let failed = responses.iter().find_map(|t| {
        t.partition_responses
            .iter()
            .find(|p| p.error_code != 0)
            .map(|p| (t.name.0.as_str(), p.index, p.error_code))
    });
    match failed {
        Some((topic, partition, code)) => Outcome::Close(format!(
            "acks=0 produce to {topic}-{partition} failed with error {code}"
        )),
        None => Outcome::NoResponse,
    }
}

fn partition_response(
    broker: &Broker,
    index: i32,
    result: Result<Appended, PartitionError>,
) -> PartitionProduceResponse {
    match result {
        Ok(Appended {
            base_offset,
            log_start_offset,
        }) => PartitionProduceResponse::default()
            .with_index(index)
            .with_base_offset(base_offset)
            .with_log_start_offset(log_start_offset),
        Err((code, message)) => PartitionProduceResponse::default()
            .with_index(index)
            .with_error_code(tally(broker, ApiKey::Produce, code))
            .with_base_offset(-1)
            .with_error_message(message.map(StrBytes::from_string)),
    }
}

/// Where a batch went, for the partition's answer.
struct Appended {
    base_offset: i64,
    log_start_offset: i64,
}

async fn produce_partition(
    broker: &Broker,
    topic: &str,
    partition: i32,
    records: Bytes,
    turn: Turn,
) -> Result<Appended, PartitionError> {
    // Decoding (checksums, decompression) happens before waiting for the turn, so it overlaps
    // with the appends of earlier requests. The decompressed records are held against the
    // memory budget until they are appended.
    let (batch, _decoded) = decode(broker, records).await.map_err(|e| {
        tracing::debug!(topic, partition, error = %e, "rejected produce batch");
        let code = match e {
            BatchError::TooLarge { .. } => ResponseError::MessageTooLarge,
            BatchError::SeveralBatches => ResponseError::InvalidRecord,
            BatchError::Corrupt(_) | BatchError::Empty => ResponseError::CorruptMessage,
        };
        (code.code(), Some(e.to_string()))
    })?;
    if batch.transactional {
        return Err((
            ResponseError::InvalidTxnState.code(),
            Some("transactional batches are not supported".into()),
        ));
    }
    turn.ready().await;
    let state = turn.partition().clone();
    let result = append(broker, topic, partition, batch, &state).await;
    drop(turn);
    match result {
        Ok(base_offset) => Ok(Appended {
            base_offset,
            log_start_offset: log_start(broker, topic, partition, &state).await,
        }),
        Err(e) => {
            if e.0 == ResponseError::UnknownTopicOrPartition.code() {
                drop(state);
                broker.partitions.forget_if_unused(topic, partition);
            }
            Err(e)
        }
    }
}

/// Decodes a partition's batch with room reserved for its records. The first reservation is a
/// guess from the compressed size; a batch that decompresses to more gives it back and waits
/// for a larger one (never holding one while waiting for another), up to the cap.
async fn decode(
    broker: &Broker,
    records: Bytes,
) -> Result<(ProducedBatch, Reservation), BatchError> {
    const FIRST_GUESS_RATIO: usize = 8;
    const MIN_GUESS: usize = 64 * 1024;
    let cap = broker.config.limits.decompressed_cap();
    let compressed = is_compressed(&records);
    let mut room = (records.len() * FIRST_GUESS_RATIO).clamp(MIN_GUESS, cap);
    loop {
        let reservation = broker.budget.reserve_work(room).await;
        let limit = room;
        let bytes = records.clone();
        // Inflating megabytes takes milliseconds of CPU: keep it off the I/O threads.
        let decoded = if compressed {
            tokio::task::spawn_blocking(move || decode_produced(bytes, limit))
                .await
                .unwrap_or_else(|e| Err(BatchError::Corrupt(format!("decoder failed: {e}"))))
        } else {
            decode_produced(bytes, limit)
        };
        match decoded {
            Err(BatchError::TooLarge { .. }) if room < cap => {
                drop(reservation);
                room = room.saturating_mul(FIRST_GUESS_RATIO).min(cap);
            }
            Err(BatchError::TooLarge { .. }) => return Err(BatchError::TooLarge { limit: cap }),
            other => return other.map(|batch| (batch, reservation)),
        }
    }
}

/// The compression bits of a v2 record batch's attributes (at byte 22 of the batch).
fn is_compressed(batch: &[u8]) -> bool {
    batch
        .get(22)
        .is_some_and(|attributes| attributes & 0x07 != 0)
}

/// The partition's log start offset, re-read from the back end at most every few seconds
/// (Kafka reports it in every Produce answer; it moves only with retention).
async fn log_start(broker: &Broker, topic: &str, partition: i32, state: &PartitionState) -> i64 {
    if let Some(cached) = state.cached_log_start() {
        return cached;
    }
    match broker.backend.bounds(topic, partition as u32).await {
        Ok(bounds) => {
            state.cache_log_start(bounds.log_start);
            bounds.log_start
        }
        Err(_) => state.last_log_start(),
    }
}

async fn append(
    broker: &Broker,
    topic: &str,
    partition: i32,
    batch: ProducedBatch,
    state: &PartitionState,
) -> Result<i64, PartitionError> {
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
