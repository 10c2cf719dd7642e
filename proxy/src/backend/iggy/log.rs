//! Reading and writing partitions.
//!
//! Iggy 0.8 facts this code leans on: polling by offset above `current_offset` returns nothing;
//! polling below the first retained offset silently starts at the first retained one;
//! `current_offset` is 0 both for an empty partition and for one holding a single message; a
//! send returns no offsets; timestamps used for lookups are the server's append times (µs).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use iggy::prelude::{
    Consumer, Identifier, IggyError, IggyMessage, IggyTimestamp, MessageClient, Partitioning,
    PolledMessages, PollingStrategy, TcpClient,
};

use super::error::map_error;
use super::mapping::{decode_message, encode_record};
use super::offsets::Known;
use super::pool::{Lane, Retry, Runner, BULK_BYTES};
use super::stamps::{producer_id, producer_mark};
use super::{IggyBackend, Target};
use crate::backend::{
    BackendError, BackendResult, FetchedRecord, PartitionBounds, ProducerBatch, ReadLimits,
    ReadResult, StoredRecord,
};

/// Messages asked for by the first poll of a partition. Later polls are sized from the largest
/// record seen on it (not the average: a partition of small records with a few large ones would
/// otherwise pull thousands of large ones), because Iggy has no byte limit on a poll and large
/// messages times a large count would make the server load far more than the client asked for.
const FIRST_POLL: u32 = 64;
const MAX_POLL: u32 = 5000;
/// How long a cached first retained offset is trusted in read results.
const LOG_START_TTL: Duration = Duration::from_secs(10);
/// A search for a batch that another writer displaced polls at most this many messages at a
/// time, and at most about this many bytes (by the batch's largest message).
const SEARCH_WINDOW: usize = 256;
const SEARCH_BYTES: usize = 8 * 1024 * 1024;
/// Messages looked through before a search gives up and the Produce fails retriably.
const MAX_SEARCHED: u64 = 1_000_000;

/// What `locate_batch` needs to know about a batch it looks for.
struct StoredBatch {
    first_id: u128,
    count: u64,
    largest: usize,
}

impl IggyBackend {
    pub(super) async fn append_impl(
        &self,
        topic: &str,
        partition: u32,
        records: Vec<StoredRecord>,
        producer: Option<ProducerBatch>,
    ) -> BackendResult<i64> {
        let target = self.target(topic)?;
        let subject = format!("{topic}-{partition}");
        // Encode first, so an unstorable record fails the batch before anything is sent.
        let mut messages = records
            .iter()
            .map(encode_record)
            .collect::<BackendResult<Vec<IggyMessage>>>()?;
        let count = messages.len() as u64;
        match producer {
            Some(batch) => {
                for (i, message) in messages.iter_mut().enumerate() {
                    message.header.id = producer_id(batch.mark(i));
                }
            }
            None => {
                let first_id = self.stamps.reserve(count);
                for (id, message) in (first_id..).zip(messages.iter_mut()) {
                    message.header.id = id;
                }
            }
        }
        let first_id = messages.first().map_or(0, |m| m.header.id);

        let cell = self.offsets.cell(&target.key(partition));
        let mut state = cell.lock().await;
        // Read before syncing, so a loss during the sync invalidates what it learns.
        let losses = self.pool.losses();
        let expected = match Known::current(*state, losses) {
            Some(offset) => offset,
            None => self.fresh_bounds(&target, partition).await?.high_watermark as u64,
        };
        if count == 0 {
            *state = Some(Known {
                next: expected,
                losses,
            });
            return Ok(expected as i64);
        }

        // Forget the cached offset while the send is under way: if this future is dropped
        // mid-send (client gone, shutdown), whether the batch landed is unknown and the next
        // append must ask the server.
        *state = None;
        let (stream_id, topic_id) = (&target.stream_id, &target.topic_id);
        let partitioning = Partitioning::partition_id(partition);
        let partitioning = &partitioning;
        // Handed to the one attempt a send gets (`Retry::Never`).
        let largest = messages.iter().map(|m| m.payload.len()).max().unwrap_or(0);
        let bulk = messages.iter().map(|m| m.payload.len()).sum::<usize>() >= BULK_BYTES;
        let lane = if bulk { Lane::Bulk } else { Lane::Any };
        let batch = Mutex::new(Some(messages));
        let batch = &batch;
        let send = |c: Arc<TcpClient>| {
            let messages = batch.lock().unwrap_or_else(|e| e.into_inner()).take();
            async move {
                let mut messages = messages.ok_or(IggyError::InvalidCommand)?;
                c.send_messages(stream_id, topic_id, partitioning, &mut messages)
                    .await
            }
        };
        let sent = if bulk {
            self.pool.run_bulk(Retry::Never, send).await
        } else {
            self.pool.run(Retry::Never, send).await
        };
        let sent = match sent {
            Ok(()) if self.fsync_on_append => {
                self.pool
                    .run(Retry::Once, |c| async move {
                        c.flush_unsaved_buffer(stream_id, topic_id, partition, true)
                            .await
                    })
                    .await
            }
            other => other,
        };
        if let Err(e) = sent {
            // The batch may or may not have been appended: ask the server next time.
            return Err(map_error(e, &subject));
        }
        let stored = StoredBatch {
            first_id,
            count,
            largest,
        };
        let (base, next) = self
            .locate_batch(&target, partition, &stored, expected, lane)
            .await?;
        *state = Some(Known { next, losses });
        Ok(base as i64)
    }

    /// Where a batch just sent was stored, and the partition's end seen while finding out.
    ///
    /// One poll of one message checks the expected place. When another writer appended since
    /// this proxy last knew the partition's end, the batch is elsewhere: it is then searched
    /// for from the end backwards, since it was appended moments ago and only what others
    /// appended since can be behind it. Iggy appends a batch as one run of offsets, so its
    /// first id gives its base offset.
    async fn locate_batch(
        &self,
        target: &Target,
        partition: u32,
        batch: &StoredBatch,
        expected: u64,
        lane: Lane,
    ) -> BackendResult<(u64, u64)> {
        let at_expected = self
            .poll(
                target,
                partition,
                PollingStrategy::offset(expected),
                1,
                lane,
            )
            .await
            .map_err(|e| unverified(target, partition, &e))?;
        let found = |polled: &PolledMessages| {
            polled
                .messages
                .iter()
                .find(|m| m.header.id == batch.first_id)
                .map(|m| (m.header.offset, polled.current_offset + 1))
        };
        if let Some(found) = found(&at_expected).filter(|(base, _)| *base == expected) {
            return Ok(found);
        }

        // Polls of the search hold at most about SEARCH_BYTES of the largest size in sight.
        let window = (SEARCH_BYTES / batch.largest.max(1)).clamp(1, SEARCH_WINDOW) as u64;
        // The highest offset the batch can start at, given the end the check saw.
        let mut upper = (at_expected.current_offset + 1).saturating_sub(batch.count);
        let mut searched = 0u64;
        loop {
            let lower = upper.saturating_sub(window - 1);
            let polled = self
                .poll(
                    target,
                    partition,
                    PollingStrategy::offset(lower),
                    (upper - lower + 1) as u32,
                    lane,
                )
                .await
                .map_err(|e| unverified(target, partition, &e))?;
            if let Some((base, next)) = found(&polled) {
                tracing::debug!(
                    partition = %format_args!("{}-{partition}", target.topic),
                    expected,
                    base,
                    "another writer appended to the partition; batch found by its id"
                );
                return Ok((base, next.max(base + batch.count)));
            }
            searched += upper - lower + 1;
            // Below the first retained offset Iggy answers from it: nothing further back.
            let reached_start = polled
                .messages
                .first()
                .is_none_or(|m| m.header.offset > lower);
            if lower == 0 || reached_start || searched >= MAX_SEARCHED {
                return Err(BackendError::OutcomeUnknown(format!(
                    "{}-{partition}: the batch sent was not found among the last {searched} \
                     messages (expected at offset {expected})",
                    target.topic
                )));
            }
            upper = lower - 1;
        }
    }

    pub(super) async fn read_impl(
        &self,
        topic: &str,
        partition: u32,
        offset: i64,
        limits: ReadLimits,
    ) -> BackendResult<ReadResult> {
        let target = self.target(topic)?;
        let Ok(start) = u64::try_from(offset) else {
            return Err(out_of_range(
                offset,
                self.fresh_bounds(&target, partition).await?,
            ));
        };
        let max_records = limits.max_records.max(1) as usize;
        let first_count = self
            .first_poll_count(&target, partition, limits.max_bytes)
            .min(max_records as u32);
        // Readers asking for megabytes use the bulk lane of the pool, off the connections kept
        // for small requests.
        let lane = if limits.max_bytes >= BULK_BYTES {
            Lane::Bulk
        } else {
            Lane::Any
        };
        let first = match self.read_ahead.take(&target.key(partition), start).await {
            Some(prefetched) => prefetched,
            None => {
                self.poll(
                    &target,
                    partition,
                    PollingStrategy::offset(start),
                    first_count,
                    lane,
                )
                .await?
            }
        };
        match first.messages.first() {
            None => {
                // Fast path for a consumer waiting at the end of a non-empty partition.
                if first.current_offset > 0 && start == first.current_offset + 1 {
                    let high_watermark = offset;
                    let log_start = self.log_start(&target, partition, high_watermark).await?;
                    return Ok(ReadResult {
                        records: Vec::new(),
                        bounds: PartitionBounds {
                            log_start,
                            high_watermark,
                        },
                    });
                }
                let bounds = self.fresh_bounds(&target, partition).await?;
                if offset < bounds.log_start || offset > bounds.high_watermark {
                    return Err(out_of_range(offset, bounds));
                }
                return Ok(ReadResult {
                    records: Vec::new(),
                    bounds,
                });
            }
            Some(m) if m.header.offset > start => {
                let log_start = m.header.offset;
                self.remember_log_start(&target, partition, log_start);
                return Err(out_of_range(
                    offset,
                    PartitionBounds {
                        log_start: log_start as i64,
                        high_watermark: first.current_offset as i64 + 1,
                    },
                ));
            }
            Some(_) => {}
        }

        let mut records = Vec::new();
        let mut bytes = 0usize;
        let mut largest = 1usize;
        let mut next = start;
        let mut polled = first;
        loop {
            let asked = polled.messages.len();
            let current_offset = polled.current_offset;
            for message in &polled.messages {
                if message.header.offset < next {
                    continue;
                }
                if records.len() >= max_records
                    || (!records.is_empty() && bytes >= limits.max_bytes)
                {
                    break;
                }
                let record = decode_message(message);
                let size = record.approx_size();
                bytes += size;
                largest = largest.max(size);
                next = message.header.offset + 1;
                records.push(FetchedRecord {
                    offset: message.header.offset as i64,
                    record,
                    append_time_ms: (message.header.timestamp / 1000) as i64,
                    producer: producer_mark(message.header.id),
                });
            }
            let high_watermark = current_offset as i64 + 1;
            let done = records.len() >= max_records
                || bytes >= limits.max_bytes
                || asked == 0
                || next > current_offset;
            if done {
                if !records.is_empty() {
                    self.remember_record_size(&target, partition, largest);
                    if next <= current_offset {
                        // Stopped at a limit with more behind: the reader will be back for it.
                        self.read_ahead_from(&target, partition, next, limits, largest);
                    }
                }
                let log_start = self.log_start(&target, partition, offset).await?;
                return Ok(ReadResult {
                    records,
                    bounds: PartitionBounds {
                        log_start,
                        high_watermark,
                    },
                });
            }
            let by_bytes = ((limits.max_bytes - bytes) / largest).saturating_add(1);
            let count = by_bytes
                .min(max_records - records.len())
                .min(MAX_POLL as usize) as u32;
            polled = self
                .poll(
                    &target,
                    partition,
                    PollingStrategy::offset(next),
                    count,
                    lane,
                )
                .await?;
        }
    }

    /// Starts, in the background, the first poll the next read at `offset` will make.
    fn read_ahead_from(
        &self,
        target: &Target,
        partition: u32,
        offset: u64,
        limits: ReadLimits,
        record_size: usize,
    ) {
        let count = self
            .first_poll_count(target, partition, limits.max_bytes)
            .min(limits.max_records.max(1));
        let expected_bytes = (count as usize).saturating_mul(record_size);
        let runner = self.pool.runner();
        let (stream_id, topic_id) = (target.stream_id.clone(), target.topic_id.clone());
        let reader = self.reader.clone();
        self.read_ahead
            .start(target.key(partition), offset, expected_bytes, async move {
                let at = PartitionAt {
                    stream_id: &stream_id,
                    topic_id: &topic_id,
                    partition,
                    reader: &reader,
                };
                at.poll(&runner, Lane::Bulk, PollingStrategy::offset(offset), count)
                    .await
            });
    }

    /// Messages to ask for in the first poll of a read: what fits in `max_bytes` at the largest
    /// record size last seen on this partition, or a modest default before anything was read.
    fn first_poll_count(&self, target: &Target, partition: u32, max_bytes: usize) -> u32 {
        let hint = self
            .record_size_hints
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&target.key(partition))
            .copied();
        match hint {
            Some(size) => (max_bytes / size.max(1))
                .saturating_add(1)
                .min(MAX_POLL as usize) as u32,
            None => FIRST_POLL,
        }
    }

    fn remember_record_size(&self, target: &Target, partition: u32, largest: usize) {
        self.record_size_hints
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(target.key(partition), largest.max(1));
    }

    /// Bounds read from the server now: the first retained offset by polling `first`, the high
    /// watermark from `current_offset`, disambiguated by whether anything was returned.
    pub(super) async fn fresh_bounds(
        &self,
        target: &Target,
        partition: u32,
    ) -> BackendResult<PartitionBounds> {
        let polled = self
            .poll(target, partition, PollingStrategy::first(), 1, Lane::Any)
            .await?;
        let bounds = bounds_from_first_poll(&polled);
        self.remember_log_start(target, partition, bounds.log_start as u64);
        Ok(bounds)
    }

    pub(super) async fn offset_for_timestamp_impl(
        &self,
        topic: &str,
        partition: u32,
        timestamp_ms: i64,
    ) -> BackendResult<Option<(i64, i64)>> {
        let target = self.target(topic)?;
        let micros = u64::try_from(timestamp_ms)
            .unwrap_or(0)
            .saturating_mul(1000);
        let strategy = PollingStrategy::timestamp(IggyTimestamp::from(micros));
        let polled = self
            .poll(&target, partition, strategy, 1, Lane::Any)
            .await?;
        // The search is by append time, so the append time is what is reported: it is at or
        // after the requested time, as the Kafka contract promises.
        Ok(polled
            .messages
            .first()
            .map(|m| (m.header.offset as i64, (m.header.timestamp / 1000) as i64)))
    }

    async fn poll(
        &self,
        target: &Target,
        partition: u32,
        strategy: PollingStrategy,
        count: u32,
        lane: Lane,
    ) -> BackendResult<PolledMessages> {
        let at = PartitionAt {
            stream_id: &target.stream_id,
            topic_id: &target.topic_id,
            partition,
            reader: &self.reader,
        };
        at.poll(&self.pool.runner(), lane, strategy, count)
            .await
            .map_err(|e| map_error(e, &format!("{}-{partition}", target.topic)))
    }

    /// First retained offset for a read result: cached when recent, otherwise asked for.
    async fn log_start(&self, target: &Target, partition: u32, at_most: i64) -> BackendResult<i64> {
        let key = target.key(partition);
        let cached = {
            let map = self.log_starts.lock().unwrap_or_else(|e| e.into_inner());
            map.get(&key)
                .filter(|(_, at)| at.elapsed() < LOG_START_TTL)
                .map(|(offset, _)| *offset)
        };
        let log_start = match cached {
            Some(offset) => offset as i64,
            None => self.fresh_bounds(target, partition).await?.log_start,
        };
        Ok(log_start.min(at_most))
    }

    fn remember_log_start(&self, target: &Target, partition: u32, log_start: u64) {
        let mut map = self.log_starts.lock().unwrap_or_else(|e| e.into_inner());
        map.insert(target.key(partition), (log_start, Instant::now()));
    }
}

/// One partition as the reader polls it.
struct PartitionAt<'a> {
    stream_id: &'a Identifier,
    topic_id: &'a Identifier,
    partition: u32,
    reader: &'a Consumer,
}

impl PartitionAt<'_> {
    /// One poll (never committing offsets), retried once on a fresh connection.
    async fn poll(
        &self,
        runner: &Runner,
        lane: Lane,
        strategy: PollingStrategy,
        count: u32,
    ) -> Result<PolledMessages, IggyError> {
        let strategy = &strategy;
        runner
            .run(lane, Retry::Once, |c| async move {
                c.poll_messages(
                    self.stream_id,
                    self.topic_id,
                    Some(self.partition),
                    self.reader,
                    strategy,
                    count,
                    false,
                )
                .await
            })
            .await
    }
}

/// Bounds from a `first` poll of one message. An empty answer with `current_offset` 0 is an
/// empty partition; with a larger `current_offset` every message has expired.
pub(crate) fn bounds_from_first_poll(polled: &PolledMessages) -> PartitionBounds {
    match polled.messages.first() {
        Some(m) => PartitionBounds {
            log_start: m.header.offset as i64,
            high_watermark: polled.current_offset as i64 + 1,
        },
        None => {
            let high_watermark = match polled.current_offset {
                0 => 0,
                current => current as i64 + 1,
            };
            PartitionBounds {
                log_start: high_watermark,
                high_watermark,
            }
        }
    }
}

/// A batch was sent, but where it was stored could not be checked: the client retries.
fn unverified(target: &Target, partition: u32, e: &BackendError) -> BackendError {
    BackendError::OutcomeUnknown(format!(
        "{}-{partition}: stored, but its offset could not be checked: {e}",
        target.topic
    ))
}

fn out_of_range(offset: i64, bounds: PartitionBounds) -> BackendError {
    BackendError::OffsetOutOfRange {
        offset,
        log_start: bounds.log_start,
        high_watermark: bounds.high_watermark,
    }
}
