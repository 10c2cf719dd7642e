//! Fetch with Kafka's long-poll: answer as soon as `min_bytes` are available, otherwise wait
//! up to `max_wait_ms`, woken by appends through this proxy and re-polling the back end
//! periodically for records written by Iggy-native producers.

use std::time::{Duration, Instant};

use futures::future::select_all;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::{ApiKey, FetchRequest, FetchResponse};

use super::records::encode_fetched;
use super::tally;
use crate::backend::{BackendError, ReadLimits};
use crate::broker::Broker;
use crate::error::backend_error_code;

/// How often a waiting Fetch re-reads the back end for records not written through us.
const REPOLL_INTERVAL: Duration = Duration::from_millis(100);
/// Records read per partition per round; bounded again by bytes.
const MAX_RECORDS_PER_READ: u32 = 10_000;

pub async fn handle(broker: &Broker, _version: i16, request: FetchRequest) -> FetchResponse {
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

        let (response, bytes, any_error) = read_once(broker, &request).await;
        let now = Instant::now();
        if bytes >= min_bytes || any_error || now >= deadline || waiters.is_empty() {
            if bytes == 0 {
                broker
                    .metrics
                    .fetch_wait_seconds
                    .observe(started.elapsed().as_secs_f64());
            }
            return response;
        }
        let nap = (deadline - now).min(REPOLL_INTERVAL);
        let _ = tokio::time::timeout(nap, select_all(waiters)).await;
    }
}

/// One pass over the requested partitions. Returns the response, the record bytes in it, and
/// whether any partition carries an error (which Kafka answers immediately).
async fn read_once(broker: &Broker, request: &FetchRequest) -> (FetchResponse, usize, bool) {
    let mut budget = usize::try_from(request.max_bytes.max(0)).unwrap_or(0);
    let mut total = 0usize;
    let mut any_error = false;
    let mut topics = Vec::with_capacity(request.topics.len());
    for topic in &request.topics {
        let name = topic.topic.0.as_str();
        let mut partitions = Vec::with_capacity(topic.partitions.len());
        for p in &topic.partitions {
            let mut data = PartitionData::default().with_partition_index(p.partition);
            if !broker.cluster.is_local_leader(name, p.partition) || p.partition < 0 {
                let code = if p.partition < 0 {
                    ResponseError::UnknownTopicOrPartition
                } else {
                    ResponseError::NotLeaderOrFollower
                };
                data = data.with_error_code(tally(broker, ApiKey::Fetch, code.code()));
                any_error = true;
                partitions.push(data);
                continue;
            }
            let partition_max = usize::try_from(p.partition_max_bytes.max(0)).unwrap_or(0);
            // Kafka returns at least one record even past the limits (so large records make
            // progress), but only for the first partition that has data.
            let limit = partition_max
                .min(budget)
                .max(if total == 0 { 1 } else { 0 });
            if limit == 0 {
                partitions.push(with_bounds(broker, name, p.partition, data).await);
                continue;
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
                    if !read.records.is_empty() {
                        match encode_fetched(&read.records) {
                            Ok(bytes) => {
                                total += bytes.len();
                                budget = budget.saturating_sub(bytes.len());
                                broker.metrics.records_out.inc_by(read.records.len() as u64);
                                broker.metrics.record_bytes_out.inc_by(bytes.len() as u64);
                                data = data.with_records(Some(bytes));
                            }
                            Err(e) => {
                                tracing::warn!(topic = name, partition = p.partition, error = %e, "encoding fetched records failed");
                                data = data.with_error_code(tally(
                                    broker,
                                    ApiKey::Fetch,
                                    ResponseError::UnknownServerError.code(),
                                ));
                                any_error = true;
                            }
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
                    data =
                        data.with_error_code(tally(broker, ApiKey::Fetch, backend_error_code(&e)));
                    any_error = true;
                }
            }
            partitions.push(data);
        }
        topics.push(
            FetchableTopicResponse::default()
                .with_topic(topic.topic.clone())
                .with_topic_id(topic.topic_id)
                .with_partitions(partitions),
        );
    }
    (
        FetchResponse::default().with_responses(topics),
        total,
        any_error,
    )
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
