//! What the proxy knows about Kafka topics beyond what Iggy holds: topic configs Iggy has no
//! setting for (cleanup.policy, max.message.bytes, ...) and log start offsets moved by
//! DeleteRecords. It lives in Iggy, in the one-partition internal topic [`STATE_TOPIC`] of the
//! default stream (see `record` for its format), so it survives restarts and every replica
//! reads the same. Each replica keeps a replayed copy in memory and catches up with the log
//! at most every [`REFRESH`] on reads, and at once before and after each of its own writes.
//!
//! [`LogStartFloor`] puts the log starts in front of the back end, so Fetch, ListOffsets and
//! Produce answers never show an offset below them; it also hides the state topic from clients.

mod floor;
mod record;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

pub use self::floor::LogStartFloor;
pub use self::record::StateEntry;
use crate::backend::{BackendError, BackendResult, ReadLimits, SharedBackend, TopicSettings};

/// Name of the internal topic holding the state log. Hidden from Kafka clients.
pub const STATE_TOPIC: &str = "__kafka_bridge_topic_state";

/// How old the replayed copy may be before a read catches up with the log.
pub const REFRESH: Duration = Duration::from_secs(1);

/// What the log says, replayed.
#[derive(Debug, Default)]
struct View {
    configs: HashMap<String, BTreeMap<String, String>>,
    log_starts: HashMap<String, BTreeMap<u32, i64>>,
    refreshed: Option<Instant>,
    /// The log's topic was seen to exist.
    log_exists: bool,
}

impl View {
    fn apply(&mut self, entry: StateEntry) {
        match entry {
            StateEntry::Configs { topic, configs } => {
                self.configs.insert(topic, configs);
            }
            StateEntry::Forget { topic } => {
                self.configs.remove(&topic);
                self.log_starts.remove(&topic);
            }
            StateEntry::LogStart {
                topic,
                partition,
                offset,
            } => {
                // Only moves up: two writers racing leave the higher one.
                let slot = self
                    .log_starts
                    .entry(topic)
                    .or_default()
                    .entry(partition)
                    .or_insert(offset);
                *slot = (*slot).max(offset);
            }
        }
    }

    fn knows(&self, topic: &str) -> bool {
        self.configs.contains_key(topic) || self.log_starts.contains_key(topic)
    }
}

pub struct TopicState {
    /// The back end the log is kept in (not the floored one: the log itself is never trimmed).
    backend: SharedBackend,
    view: Mutex<View>,
    /// Offset of the next log record to replay; held while catching up, so one replay runs at
    /// a time.
    next: tokio::sync::Mutex<i64>,
}

impl TopicState {
    pub fn new(backend: SharedBackend) -> Self {
        Self {
            backend,
            view: Mutex::default(),
            next: tokio::sync::Mutex::new(0),
        }
    }

    fn view(&self) -> std::sync::MutexGuard<'_, View> {
        self.view.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The configs set at topic level for `topic` (besides those Iggy holds).
    pub async fn configs(&self, topic: &str) -> BackendResult<BTreeMap<String, String>> {
        self.refresh_if_due().await?;
        Ok(self.view().configs.get(topic).cloned().unwrap_or_default())
    }

    /// The partition's log start offset as moved by DeleteRecords (0 when never moved).
    /// Reads go on with the copy in memory when the log cannot be read just now.
    pub async fn log_start(&self, topic: &str, partition: u32) -> i64 {
        if let Err(e) = self.refresh_if_due().await {
            tracing::debug!(error = %e, "cannot catch up with the topic state log");
        }
        self.view()
            .log_starts
            .get(topic)
            .and_then(|p| p.get(&partition))
            .copied()
            .unwrap_or(0)
    }

    /// Replaces the topic's configs.
    pub async fn set_configs(
        &self,
        topic: &str,
        configs: BTreeMap<String, String>,
    ) -> BackendResult<()> {
        self.write(vec![StateEntry::Configs {
            topic: topic.to_string(),
            configs,
        }])
        .await
    }

    /// Moves the partition's log start up to `offset` (never down).
    pub async fn advance_log_start(
        &self,
        topic: &str,
        partition: u32,
        offset: i64,
    ) -> BackendResult<()> {
        self.write(vec![StateEntry::LogStart {
            topic: topic.to_string(),
            partition,
            offset,
        }])
        .await
    }

    /// A topic was created: whatever was known about an earlier topic of that name goes, and
    /// `configs` are recorded.
    pub async fn topic_created(
        &self,
        topic: &str,
        configs: BTreeMap<String, String>,
    ) -> BackendResult<()> {
        self.catch_up().await?;
        let mut entries = Vec::new();
        if self.view().knows(topic) {
            entries.push(StateEntry::Forget {
                topic: topic.to_string(),
            });
        }
        if !configs.is_empty() {
            entries.push(StateEntry::Configs {
                topic: topic.to_string(),
                configs,
            });
        }
        self.write(entries).await
    }

    /// A topic was deleted: forget it.
    pub async fn topic_deleted(&self, topic: &str) -> BackendResult<()> {
        self.catch_up().await?;
        if !self.view().knows(topic) {
            return Ok(());
        }
        self.write(vec![StateEntry::Forget {
            topic: topic.to_string(),
        }])
        .await
    }

    async fn write(&self, entries: Vec<StateEntry>) -> BackendResult<()> {
        if entries.is_empty() {
            return Ok(());
        }
        self.ensure_topic().await?;
        let records = entries.iter().map(StateEntry::to_record).collect();
        self.backend.append(STATE_TOPIC, 0, records).await?;
        // Read back through the log rather than applying locally, so this replica sees its
        // write in the order every other replica does.
        self.catch_up().await
    }

    async fn ensure_topic(&self) -> BackendResult<()> {
        if self.backend.describe_topic(STATE_TOPIC).await?.is_some() {
            return Ok(());
        }
        let settings = TopicSettings {
            partitions: 1,
            // Never expire: the log is the only copy of this state.
            retention_ms: Some(-1),
            ..TopicSettings::default()
        };
        match self.backend.create_topic(STATE_TOPIC, &settings).await {
            Ok(()) => {
                tracing::info!(topic = STATE_TOPIC, "created the topic state log");
                Ok(())
            }
            Err(BackendError::TopicAlreadyExists(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn refresh_if_due(&self) -> BackendResult<()> {
        let refreshed = self.view().refreshed;
        match refreshed {
            Some(at) if at.elapsed() < REFRESH => Ok(()),
            // Another task catching up right now makes a copy that was read once fresh enough.
            Some(_) => match self.next.try_lock() {
                Ok(next) => self.catch_up_locked(next).await,
                Err(_) => Ok(()),
            },
            // Never read: nobody may go on without it (a log start of 0 would be a lie).
            None => self.catch_up().await,
        }
    }

    /// Replays what was appended to the log since the last replay.
    pub async fn catch_up(&self) -> BackendResult<()> {
        let next = self.next.lock().await;
        self.catch_up_locked(next).await
    }

    async fn catch_up_locked(
        &self,
        mut next: tokio::sync::MutexGuard<'_, i64>,
    ) -> BackendResult<()> {
        // Until the log exists, look it up rather than read it: Iggy logs every failed poll as
        // an error, and a proxy that never wrote state would otherwise cause one a second.
        let seen = self.view().log_exists;
        if !seen && self.backend.describe_topic(STATE_TOPIC).await?.is_none() {
            self.view().refreshed = Some(Instant::now());
            return Ok(());
        }
        self.view().log_exists = true;
        let bounds = match self.backend.bounds(STATE_TOPIC, 0).await {
            Ok(b) => b,
            // Never written: nothing to know.
            Err(BackendError::UnknownTopicOrPartition(_)) => {
                *next = 0;
                *self.view() = View {
                    refreshed: Some(Instant::now()),
                    ..View::default()
                };
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        if *next > bounds.high_watermark || *next < bounds.log_start {
            // The log was deleted and created again (or trimmed from outside): start over.
            tracing::warn!(
                topic = STATE_TOPIC,
                "the topic state log changed underneath; replaying it again"
            );
            *next = bounds.log_start;
            *self.view() = View {
                log_exists: true,
                ..View::default()
            };
        }
        while *next < bounds.high_watermark {
            let limits = ReadLimits {
                max_records: 10_000,
                max_bytes: 4 * 1024 * 1024,
            };
            let read = self.backend.read(STATE_TOPIC, 0, *next, limits).await?;
            let Some(last) = read.records.last() else {
                break;
            };
            let last = last.offset;
            let mut view = self.view();
            for fetched in read.records {
                match StateEntry::from_record(&fetched.record) {
                    Ok(entry) => view.apply(entry),
                    Err(e) => {
                        tracing::warn!(offset = fetched.offset, error = %e, "skipping topic state record");
                    }
                }
            }
            *next = last + 1;
        }
        self.view().refreshed = Some(Instant::now());
        Ok(())
    }
}
