//! Fetch with Kafka's long-poll: answer as soon as `min_bytes` are available, otherwise wait
//! up to `max_wait_ms`, woken by appends through this proxy and re-polling the back end
//! periodically for records written by Iggy-native producers.

use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::future::{join_all, select_all};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::fetch_request::FetchPartition;
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::{ApiKey, FetchRequest, FetchResponse};

use super::records::encode_fetched;
use super::tally;
use crate::backend::{BackendError, FetchedRecord, ReadLimits};
use crate::broker::Broker;
use crate::budget::{ConnectionShare, Reservation};
use crate::error::backend_error_code;

/// How often a waiting Fetch re-reads the back end for records not written through us.
const REPOLL_INTERVAL: Duration = Duration::from_millis(100);
/// Records read per partition per round; bounded again by bytes.
const MAX_RECORDS_PER_READ: u32 = 10_000;

/// Answers a Fetch, with the memory budget its records hold until the response is written.
/// The request's `max_bytes` and each partition's are capped at `limits.max_fetch_bytes`.
pub async fn handle(
    broker: &Broker,
    memory: &ConnectionShare,
    _version: i16,
    mut request: FetchRequest,
) -> (FetchResponse, Reservation) {
    cap_sizes(&mut request, broker.config.limits.max_fetch_bytes);
    let started = Instant::now();
    let max_wait = Duration::from_millis(u64::try_from(request.max_wait_ms.max(0)).unwrap_or(0))
        .min(Duration::from_millis(
            broker.config.limits.max_fetch_wait_ms,
        ));
    let deadline = started + max_wait;
    let min_bytes = usize::try_from(request.min_bytes.max(0)).unwrap_or(0);
    loop {
        // Register interest before reading so an append between the read and the wait is not
        // missed.
        let states: Vec<_> = request
            .topics
            .iter()
            .flat_map(|t| {
                t.partitions
                    .iter()
                    .map(|p| broker.partitions.get(&t.topic.0, p.partition))
            })
            .collect();
        let mut waiters: Vec<_> = states
            .iter()
            .map(|s| Box::pin(s.appended.notified()))
            .collect();
        for w in &mut waiters {
            w.as_mut().enable();
        }

        let (response, bytes, any_error, budget) = read_once(broker, memory, &request).await;
        let now = Instant::now();
        if bytes >= min_bytes || any_error || now >= deadline || waiters.is_empty() {
            if bytes == 0 {
                broker
                    .metrics
                    .fetch_wait_seconds
                    .observe(started.elapsed().as_secs_f64());
            }
            drop(waiters);
            drop(states);
            forget_unknown_partitions(broker, &response);
            return (response, budget);
        }
        // Nothing held while waiting: an idle long-poll costs no budget.
        drop((response, budget));
        let nap = (deadline - now).min(REPOLL_INTERVAL);
        let _ = tokio::time::timeout(nap, select_all(waiters)).await;
    }
}

/// Partitions answered UNKNOWN_TOPIC_OR_PARTITION keep no state behind.
fn forget_unknown_partitions(broker: &Broker, response: &FetchResponse) {
    let unknown = ResponseError::UnknownTopicOrPartition.code();
    for topic in &response.responses {
        for p in topic.partitions.iter().filter(|p| p.error_code == unknown) {
            broker
                .partitions
                .forget_if_unused(&topic.topic.0, p.partition_index);
        }
    }
}

fn cap_sizes(request: &mut FetchRequest, cap: usize) {
    let cap = i32::try_from(cap).unwrap_or(i32::MAX);
    request.max_bytes = request.max_bytes.clamp(0, cap);
    for p in request
        .topics
        .iter_mut()
        .flat_map(|t| t.partitions.iter_mut())
    {
        p.partition_max_bytes = p.partition_max_bytes.clamp(0, cap);
    }
}

/// One pass over the requested partitions. Returns the response, the record bytes in it,
/// whether any partition carries an error (which Kafka answers immediately), and the budget
/// reserved for the records (reserved before reading, shrunk to what was read).
///
/// When every partition's limit fits in the request's `max_bytes` (the usual case: 50 MiB
/// against 1 MiB per partition), partitions are read concurrently; otherwise in order, each
/// taking what the budget has left, as Kafka fills a response.
async fn read_once(
    broker: &Broker,
    memory: &ConnectionShare,
    request: &FetchRequest,
) -> (FetchResponse, usize, bool, Reservation) {
    let budget = usize::try_from(request.max_bytes.max(0)).unwrap_or(0);
    let mut items: Vec<(&str, &FetchPartition)> = Vec::new();
    for topic in &request.topics {
        for p in &topic.partitions {
            items.push((topic.topic.0.as_str(), p));
        }
    }
    let wanted: usize = items.iter().map(|(_, p)| partition_limit(p)).sum();
    // Room for the answer: what is free of the wanted size, at least a little (Kafka may
    // answer with less than max_bytes; one record past the limit is still returned).
    const LEAST: usize = 64 * 1024;
    let mut reservation = broker
        .budget
        .reserve_answer(memory, wanted.min(budget), LEAST)
        .await;
    let budget = budget.min(reservation.bytes().max(1));

    let mut results: Vec<PartitionRead> = Vec::new();
    if wanted <= budget {
        // Kafka returns at least one record even past the limits (so a large record makes
        // progress), for the first partition.
        results = join_all(items.into_iter().enumerate().map(|(i, (name, p))| {
            let limit = if i == 0 {
                partition_limit(p).max(1)
            } else {
                partition_limit(p)
            };
            read_partition(broker, name, p, limit)
        }))
        .await;
    } else {
        let mut left = budget;
        for (name, p) in items {
            let nothing_yet = results.iter().all(|r| r.bytes == 0);
            let limit = partition_limit(p).min(left).max(usize::from(nothing_yet));
            let read = read_partition(broker, name, p, limit).await;
            left = left.saturating_sub(read.bytes);
            results.push(read);
        }
    }

    let total = results.iter().map(|r| r.bytes).sum();
    reservation.shrink_to(total);
    let any_error = results.iter().any(|r| r.error);
    let mut results = results.into_iter();
    let topics = request
        .topics
        .iter()
        .map(|topic| {
            FetchableTopicResponse::default()
                .with_topic(topic.topic.clone())
                .with_topic_id(topic.topic_id)
                .with_partitions(
                    results
                        .by_ref()
                        .take(topic.partitions.len())
                        .map(|r| r.data)
                        .collect(),
                )
        })
        .collect();
    (
        FetchResponse::default().with_responses(topics),
        total,
        any_error,
        reservation,
    )
}

fn partition_limit(p: &FetchPartition) -> usize {
    usize::try_from(p.partition_max_bytes.max(0)).unwrap_or(0)
}

/// What reading one partition gave: its response entry, the record bytes in it, and whether it
/// carries an error.
struct PartitionRead {
    data: PartitionData,
    bytes: usize,
    error: bool,
}

async fn read_partition(
    broker: &Broker,
    name: &str,
    p: &FetchPartition,
    limit: usize,
) -> PartitionRead {
    let mut data = PartitionData::default().with_partition_index(p.partition);
    let failed = |data: PartitionData, code: i16| PartitionRead {
        data: data.with_error_code(tally(broker, ApiKey::Fetch, code)),
        bytes: 0,
        error: true,
    };
    if p.partition < 0 {
        return failed(data, ResponseError::UnknownTopicOrPartition.code());
    }
    if !broker.cluster.is_local_leader(name, p.partition) {
        return failed(data, ResponseError::NotLeaderOrFollower.code());
    }
    if limit == 0 {
        return PartitionRead {
            data: with_bounds(broker, name, p.partition, data).await,
            bytes: 0,
            error: false,
        };
    }
    let limits = ReadLimits {
        max_records: MAX_RECORDS_PER_READ,
        max_bytes: limit,
    };
    match broker
        .backend
        .read(name, p.partition as u32, p.fetch_offset, limits)
        .await
    {
        Ok(read) => {
            data = data
                .with_high_watermark(read.bounds.high_watermark)
                .with_last_stable_offset(read.bounds.high_watermark)
                .with_log_start_offset(read.bounds.log_start);
            if read.records.is_empty() {
                return PartitionRead {
                    data,
                    bytes: 0,
                    error: false,
                };
            }
            let count = read.records.len() as u64;
            match encode(broker, read.records).await {
                Ok(bytes) => {
                    broker.metrics.records_out.inc_by(count);
                    broker.metrics.record_bytes_out.inc_by(bytes.len() as u64);
                    let size = bytes.len();
                    PartitionRead {
                        data: data.with_records(Some(bytes)),
                        bytes: size,
                        error: false,
                    }
                }
                Err(e) => {
                    tracing::warn!(topic = name, partition = p.partition, error = %e, "encoding fetched records failed");
                    failed(data, ResponseError::UnknownServerError.code())
                }
            }
        }
        Err(e) => {
            if let BackendError::OffsetOutOfRange {
                log_start,
                high_watermark,
                ..
            } = &e
            {
                data = data
                    .with_high_watermark(*high_watermark)
                    .with_log_start_offset(*log_start);
            }
            failed(data, backend_error_code(&e))
        }
    }
}

/// Encodes fetched records as a Kafka batch; large answers on the CPU pool, off the I/O threads.
async fn encode(broker: &Broker, records: Vec<FetchedRecord>) -> anyhow::Result<Bytes> {
    const ON_POOL_FROM: usize = 256 * 1024;
    let size: usize = records.iter().map(|r| r.record.approx_size()).sum();
    if size < ON_POOL_FROM {
        return encode_fetched(&records);
    }
    broker
        .cpu_pool
        .run(move || encode_fetched(&records))
        .await
        .unwrap_or_else(|| Err(anyhow::anyhow!("encoding the answer failed")))
}

/// A partition skipped for lack of budget still reports its watermarks.
async fn with_bounds(
    broker: &Broker,
    topic: &str,
    partition: i32,
    data: PartitionData,
) -> PartitionData {
    match broker.backend.bounds(topic, partition as u32).await {
        Ok(b) => data
            .with_high_watermark(b.high_watermark)
            .with_last_stable_offset(b.high_watermark)
            .with_log_start_offset(b.log_start),
        Err(e) => data.with_error_code(tally(broker, ApiKey::Fetch, backend_error_code(&e))),
    }
}
