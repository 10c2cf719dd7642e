//! Produce: decode batches, check idempotent sequences, append under the partition's writer
//! lock, answer with the real base offsets.
//!
//! A connection may have several Produce requests in flight. Each goes through three steps:
//! 1. [`prepare`], at dispatch and in arrival order: checks what needs no I/O and takes the
//!    request's place in its connection's decoding line.
//! 2. [`execute`], once that place comes: decodes every batch within one reservation of the
//!    memory budget, takes each partition's place in that partition's append line, and lets the
//!    connection's next request go. Requests of one connection therefore reach each partition in
//!    the order they were sent (idempotent producers rely on it), and a request holds a place in
//!    an append line only once its records are decoded and paid for: a request waiting for
//!    memory, or sent by a client that stopped reading, never holds up other producers.
//! 3. The appends, the partitions of one request concurrently.

use std::sync::Arc;

use bytes::Bytes;
use futures::future::join_all;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ApiKey, ProduceRequest, ProduceResponse, ResponseKind, TopicName};
use kafka_protocol::protocol::StrBytes;

use super::records::{decode_produced, BatchError, ProducedBatch};
use super::{tally, ConnectionScope, Outcome};
use crate::backend::{ProducerBatch, ProducerMark, ReadLimits};
use crate::broker::Broker;
use crate::budget::{ConnectionShare, Reservation};
use crate::error::backend_error_code;
use crate::partitions::{PartitionState, SequenceCheck, Turn, WriterState};

type PartitionError = (i16, Option<String>);

/// A Produce request holding its place in its connection's decoding line.
pub struct PreparedProduce {
    acks: i16,
    decoding: Turn,
    memory: ConnectionShare,
    topics: Vec<(TopicName, Vec<PreparedPartition>)>,
}

struct PreparedPartition {
    index: i32,
    /// The batch, or why the partition is refused without decoding.
    work: Result<Bytes, PartitionError>,
}

/// Validates what needs no I/O and takes the request's place in its connection's decoding
/// line. Must be called in request order.
pub fn prepare(
    broker: &Broker,
    connection: &ConnectionScope,
    request: ProduceRequest,
) -> PreparedProduce {
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
    PreparedProduce {
        acks,
        decoding: connection.produce_line.take_turn(),
        memory: connection.memory.clone(),
        topics,
    }
}

fn admit(
    broker: &Broker,
    topic: &str,
    partition: i32,
    records: Option<Bytes>,
) -> Result<Bytes, PartitionError> {
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
    if broker.cluster.write_permit(topic, partition).is_none() {
        return Err((ResponseError::NotLeaderOrFollower.code(), None));
    }
    Ok(records)
}

/// A decoded partition with its place in the partition's append line.
struct Ready {
    batch: ProducedBatch,
    state: Arc<PartitionState>,
    turn: Turn,
}

/// A partition of the request, ready to append or already answered with an error.
type ReadyPartition = (i32, Result<Ready, PartitionError>);

/// Decodes, appends every admitted partition and answers. With acks=0 nothing is sent back,
/// unless a partition failed: then the connection is closed, as Kafka does, so that the client
/// notices and refreshes its metadata.
pub async fn execute(broker: &Broker, prepared: PreparedProduce) -> Outcome {
    let PreparedProduce {
        acks,
        decoding,
        memory,
        topics,
    } = prepared;
    decoding.ready().await;
    let admitted: Vec<Bytes> = topics
        .iter()
        .flat_map(|(_, partitions)| partitions.iter())
        .filter_map(|p| p.work.as_ref().ok().cloned())
        .collect();
    let (decoded, _records_budget) = decode_within_budget(broker, &memory, admitted).await;
    let mut decoded = decoded.into_iter();
    let topics: Vec<(TopicName, Vec<ReadyPartition>)> = topics
        .into_iter()
        .map(|(name, partitions)| {
            let ready = partitions
                .into_iter()
                .map(|p| {
                    let work = p.work.and_then(|_| {
                        let batch = decoded.next().unwrap_or(Err(BatchError::Empty));
                        line_up(broker, &name.0, p.index, batch)
                    });
                    (p.index, work)
                })
                .collect();
            (name, ready)
        })
        .collect();
    // Every partition of this request has its place: the connection's next request may decode.
    drop(decoding);

    let mut responses = Vec::with_capacity(topics.len());
    for (name, partitions) in topics {
        let topic = name.0.as_str();
        let results = join_all(partitions.into_iter().map(|(index, work)| async move {
            let result = match work {
                Ok(ready) => produce_partition(broker, topic, index, ready).await,
                Err(refused) => Err(refused),
            };
            partition_response(broker, index, result)
        }))
        .await;
        responses.push(
            TopicProduceResponse::default()
                .with_name(name.clone())
                .with_partition_responses(results),
        );
    }
    if acks != 0 {
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

/// Turns a decoded batch into a place in its partition's append line, or the error to answer.
fn line_up(
    broker: &Broker,
    topic: &str,
    partition: i32,
    batch: Result<ProducedBatch, BatchError>,
) -> Result<Ready, PartitionError> {
    let batch = batch.map_err(|e| {
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
    let state = broker.partitions.get(topic, partition);
    let turn = state.appends.take_turn();
    Ok(Ready { batch, state, turn })
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
    ready: Ready,
) -> Result<Appended, PartitionError> {
    let Ready { batch, state, turn } = ready;
    turn.ready().await;
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

/// Decodes a request's batches, in order, within one reservation of the memory budget, which
/// the caller holds until the records are appended. The first reservation is a guess from the
/// batches' size on the wire; when the decoded records need more, everything is given back and
/// an eight times larger one is waited for (never holding one reservation while waiting for
/// another, so requests cannot deadlock on the budget), up to the connection's share. A batch
/// past the decompression cap, or past what is left of that share, is refused as too large.
async fn decode_within_budget(
    broker: &Broker,
    memory: &ConnectionShare,
    batches: Vec<Bytes>,
) -> (Vec<Result<ProducedBatch, BatchError>>, Reservation) {
    const GUESS_RATIO: usize = 8;
    const MIN_GUESS: usize = 64 * 1024;
    let cap = broker.config.limits.decompressed_cap();
    let most = broker.budget.largest_records();
    let on_wire: usize = batches.iter().map(Bytes::len).sum();
    let compressed = batches.iter().any(|b| is_compressed(b));
    let batches = Arc::new(batches);
    let mut room = on_wire
        .saturating_mul(GUESS_RATIO)
        .clamp(MIN_GUESS.min(most), most);
    loop {
        let reservation = broker.budget.reserve_records(memory, room).await;
        let can_grow = room < most;
        let attempt = {
            let batches = batches.clone();
            move || decode_into(&batches, room, cap, can_grow)
        };
        // Inflating megabytes takes milliseconds of CPU: keep it off the I/O threads.
        let decoded = if compressed {
            broker.cpu_pool.run(attempt).await.unwrap_or_else(|| {
                let failed = || Err(BatchError::Corrupt("the decoder failed".into()));
                Some(batches.iter().map(|_| failed()).collect())
            })
        } else {
            attempt()
        };
        match decoded {
            Some(results) => return (results, reservation),
            None => {
                drop(reservation);
                room = room.saturating_mul(GUESS_RATIO).min(most);
            }
        }
    }
}

/// Decodes `batches` into `room` bytes; `None` when one did not fit in what was left of the
/// room but would have within the cap, and `can_grow` says a larger room may be asked for.
fn decode_into(
    batches: &[Bytes],
    room: usize,
    cap: usize,
    can_grow: bool,
) -> Option<Vec<Result<ProducedBatch, BatchError>>> {
    let mut left = room;
    let mut results = Vec::with_capacity(batches.len());
    for batch in batches {
        let limit = left.min(cap);
        let result = match decode_produced(batch.clone(), limit) {
            Ok(batch) => {
                left = left.saturating_sub(batch.decoded_bytes());
                Ok(batch)
            }
            Err(BatchError::TooLarge { .. }) if limit < cap && can_grow => return None,
            Err(BatchError::TooLarge { .. }) => Err(BatchError::TooLarge { limit }),
            Err(other) => Err(other),
        };
        results.push(result);
    }
    Some(results)
}

/// The compression bits of a v2 record batch's attributes (at byte 22 of the batch).
fn is_compressed(batch: &[u8]) -> bool {
    batch
        .get(22)
        .is_some_and(|attributes| attributes & 0x07 != 0)
}

/// Records read back from the end of a partition to rebuild its producers' state.
const TAIL_RECORDS: i64 = 4096;
const TAIL_BYTES: usize = 8 * 1024 * 1024;

/// The idempotent producers' marks on the partition's last records (up to `TAIL_RECORDS`,
/// about `TAIL_BYTES`). Kafka keeps the last five batches per producer; reading them back lets
/// the new leader of a partition (or a restarted proxy) answer a retry of a batch stored before
/// the change as a duplicate. If they cannot be read, producers start afresh.
async fn producer_marks_of_tail(
    broker: &Broker,
    topic: &str,
    partition: i32,
) -> Vec<(i64, ProducerMark)> {
    let read = async {
        let bounds = broker.backend.bounds(topic, partition as u32).await?;
        let mut offset = bounds.log_start.max(bounds.high_watermark - TAIL_RECORDS);
        let mut marks = Vec::new();
        let mut bytes = 0;
        while offset < bounds.high_watermark && bytes < TAIL_BYTES {
            let limits = ReadLimits {
                max_records: (bounds.high_watermark - offset) as u32,
                max_bytes: TAIL_BYTES - bytes,
            };
            let read = broker
                .backend
                .read(topic, partition as u32, offset, limits)
                .await?;
            let Some(last) = read.records.last() else {
                break;
            };
            offset = last.offset + 1;
            for r in &read.records {
                bytes += r.record.approx_size();
                marks.extend(r.producer.map(|mark| (r.offset, mark)));
            }
        }
        Ok::<_, crate::backend::BackendError>(marks)
    };
    match read.await {
        Ok(marks) => marks,
        Err(e) => {
            tracing::debug!(topic, partition, error = %e, "producer state not read back");
            Vec::new()
        }
    }
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

/// The partition's writer state, locked, if this replica may write the partition now. Producer
/// sequences kept under another permit (before this replica lost the partition and got it
/// back) say nothing about what was appended meanwhile: they are read back from the log first.
pub(crate) async fn lock_writer<'a>(
    broker: &Broker,
    topic: &str,
    partition: i32,
    state: &'a PartitionState,
) -> Option<tokio::sync::MutexGuard<'a, WriterState>> {
    let mut writer = state.writer.lock().await;
    let permit = broker.cluster.write_permit(topic, partition)?;
    writer.hold(permit);
    if writer.needs_rebuild() {
        writer.rebuild(producer_marks_of_tail(broker, topic, partition).await);
    }
    Some(writer)
}

async fn append(
    broker: &Broker,
    topic: &str,
    partition: i32,
    batch: ProducedBatch,
    state: &PartitionState,
) -> Result<i64, PartitionError> {
    // The fence: checked again here, after waiting for the partition's turn, right before the
    // append.
    let Some(mut writer) = lock_writer(broker, topic, partition, state).await else {
        return Err((ResponseError::NotLeaderOrFollower.code(), None));
    };
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
    let producer = batch.identity.as_ref().map(|b| ProducerBatch {
        producer_id: b.producer_id,
        epoch: b.producer_epoch,
        first_sequence: b.first_sequence,
    });
    let base_offset = broker
        .backend
        .append_batch(topic, partition as u32, batch.records, producer)
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
