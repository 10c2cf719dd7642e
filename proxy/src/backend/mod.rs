//! Storage back ends. The `Backend` trait is the only door to storage: handlers speak Kafka
//! concepts (topic, partition, offset, record) and never see Iggy types.
//!
//! Offset assignment lives behind `Backend::append`: it returns the offset of the first record it
//! wrote. Iggy 0.8 does not report offsets for a send, so `IggyBackend` keeps a per-partition
//! `next_offset` as the single writer; later Iggy servers that return offsets only change that
//! implementation.

pub mod iggy;
pub mod instrumented;
pub mod memory;

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;

/// A Kafka record as stored: what survives the round trip through any back end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRecord {
    /// `None` is a Kafka null key.
    pub key: Option<Bytes>,
    /// `None` is a tombstone (null value).
    pub value: Option<Bytes>,
    /// Kafka headers in producer order; names may repeat, values may be null.
    pub headers: Vec<(String, Option<Bytes>)>,
    /// CreateTime in milliseconds since the epoch.
    pub timestamp_ms: i64,
}

impl StoredRecord {
    /// Approximate size for `ReadLimits::max_bytes` and metrics: key, value and header bytes plus
    /// a fixed per-record overhead. Every back end counts the same way.
    pub fn approx_size(&self) -> usize {
        let header_bytes: usize = self
            .headers
            .iter()
            .map(|(k, v)| k.len() + v.as_ref().map_or(0, |v| v.len()))
            .sum();
        self.key.as_ref().map_or(0, |k| k.len())
            + self.value.as_ref().map_or(0, |v| v.len())
            + header_bytes
            + 16
    }
}

/// A record read back from a partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedRecord {
    pub offset: i64,
    pub record: StoredRecord,
    /// The idempotent producer that wrote it, when the store kept that.
    pub producer: Option<ProducerMark>,
    /// When the store appended it (ms since the epoch, the store's clock): the membership log
    /// measures leases with it, so that all replicas use one clock.
    pub append_time_ms: i64,
}

/// An idempotent producer's batch, as its record batch header names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducerBatch {
    pub producer_id: i64,
    pub epoch: i16,
    pub first_sequence: i32,
}

impl ProducerBatch {
    /// The mark of the batch's `index`-th record (sequences wrap from i32::MAX to 0).
    pub fn mark(&self, index: usize) -> ProducerMark {
        let sequence = (i64::from(self.first_sequence) + index as i64) % (1i64 << 31);
        ProducerMark {
            producer_id: self.producer_id,
            epoch: self.epoch,
            sequence: sequence as i32,
            batch_start: index == 0,
        }
    }
}

/// What the store keeps with each record of an idempotent batch, so that whoever leads the
/// partition next can rebuild the producer's recent batches from the log (a retry of a batch
/// stored before a crash or hand-off is then answered as a duplicate, not stored twice).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducerMark {
    pub producer_id: i64,
    pub epoch: i16,
    pub sequence: i32,
    /// First record of its batch.
    pub batch_start: bool,
}

/// Everything a Kafka client needs to know about a topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicInfo {
    pub name: String,
    pub partitions: u32,
    /// Retention in milliseconds (`None` = unlimited).
    pub retention_ms: Option<i64>,
    /// Maximum topic size in bytes (`None` = unlimited).
    pub max_bytes: Option<u64>,
}

/// Settings given when a topic is created or altered.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TopicSettings {
    /// Partition count at creation (ignored when altering).
    pub partitions: u32,
    /// Retention in milliseconds; `None` is the store's default, 0 or less is unlimited.
    pub retention_ms: Option<i64>,
    pub max_bytes: Option<u64>,
    /// Kafka topic configs the store has no setting for, kept in the topic state log (see
    /// `crate::topic_state`); back ends ignore them.
    pub configs: std::collections::BTreeMap<String, String>,
}

/// The readable range of a partition: `[log_start, high_watermark)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionBounds {
    pub log_start: i64,
    pub high_watermark: i64,
}

/// Result of a read: records starting at the requested offset (possibly empty when the offset
/// equals the high watermark) plus the bounds observed while reading.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadResult {
    pub records: Vec<FetchedRecord>,
    pub bounds: PartitionBounds,
}

/// Limits for a single read. `max_bytes` is approximate, counted over keys, values and headers;
/// at least one record is returned when any is available (as Kafka does).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadLimits {
    pub max_records: u32,
    pub max_bytes: usize,
}

/// What went wrong in a back end, in terms the Kafka handlers can map to error codes.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("unknown topic or partition: {0}")]
    UnknownTopicOrPartition(String),
    #[error("topic already exists: {0}")]
    TopicAlreadyExists(String),
    #[error("invalid partition count: {0}")]
    InvalidPartitions(String),
    #[error("offset {offset} out of range [{log_start}, {high_watermark}]")]
    OffsetOutOfRange {
        offset: i64,
        log_start: i64,
        high_watermark: i64,
    },
    #[error("record cannot be stored: {0}")]
    InvalidRecord(String),
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// A write may or may not have been stored, or was stored where it cannot be found: the
    /// client must retry rather than be given a guessed offset.
    #[error("write outcome unknown: {0}")]
    OutcomeUnknown(String),
    #[error("storage error: {0}")]
    Internal(String),
}

impl BackendError {
    /// Storage cannot be reached (rather than refusing this request): clients should retry
    /// and logs should not repeat it per request.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Self::Unavailable(_))
    }
}

pub type BackendResult<T> = Result<T, BackendError>;

/// The storage seam. Object safe: the server holds an `Arc<dyn Backend>`.
///
/// Partition numbers are Kafka's (0-based). Appends to one partition must not be issued
/// concurrently by callers that need ordered offsets; the proxy serializes them per partition, and
/// implementations must still return correct offsets if they are not.
#[async_trait]
pub trait Backend: Send + Sync + 'static {
    /// Short name for logs and metrics (`memory`, `iggy`).
    fn kind(&self) -> &'static str;

    /// Answers when the store is reachable; used by /readyz.
    async fn health(&self) -> BackendResult<()>;

    async fn list_topics(&self) -> BackendResult<Vec<TopicInfo>>;

    /// `Ok(None)` when the topic does not exist.
    async fn describe_topic(&self, topic: &str) -> BackendResult<Option<TopicInfo>>;

    async fn create_topic(&self, topic: &str, settings: &TopicSettings) -> BackendResult<()>;

    async fn delete_topic(&self, topic: &str) -> BackendResult<()>;

    /// Grows a topic to `total` partitions; never shrinks.
    async fn create_partitions(&self, topic: &str, total: u32) -> BackendResult<()>;

    /// Changes a topic's retention and maximum size (`settings.partitions` is ignored).
    async fn alter_topic(&self, topic: &str, settings: &TopicSettings) -> BackendResult<()>;

    /// Appends records in order and returns the offset given to the first one.
    async fn append(
        &self,
        topic: &str,
        partition: u32,
        records: Vec<StoredRecord>,
    ) -> BackendResult<i64> {
        self.append_batch(topic, partition, records, None).await
    }

    /// As `append`; for an idempotent producer's batch the store keeps `producer` with the
    /// records (read back as `FetchedRecord::producer`).
    async fn append_batch(
        &self,
        topic: &str,
        partition: u32,
        records: Vec<StoredRecord>,
        producer: Option<ProducerBatch>,
    ) -> BackendResult<i64>;

    /// Reads from `offset` (inclusive). An offset below log start or above the high watermark is
    /// `BackendError::OffsetOutOfRange`; an offset equal to the high watermark returns no records.
    async fn read(
        &self,
        topic: &str,
        partition: u32,
        offset: i64,
        limits: ReadLimits,
    ) -> BackendResult<ReadResult>;

    async fn bounds(&self, topic: &str, partition: u32) -> BackendResult<PartitionBounds>;

    /// The first offset whose timestamp is at or after `timestamp_ms`, with that timestamp;
    /// `None` when every record is older.
    async fn offset_for_timestamp(
        &self,
        topic: &str,
        partition: u32,
        timestamp_ms: i64,
    ) -> BackendResult<Option<(i64, i64)>>;

    /// What user `username` of the store may do (`security::grants`); `Ok(None)` when there is
    /// no such user.
    async fn grants(
        &self,
        username: &str,
    ) -> BackendResult<Option<crate::security::grants::Grants>>;
}

pub type SharedBackend = Arc<dyn Backend>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backend_is_object_safe() {
        fn takes(_: Option<&dyn Backend>) {}
        takes(None);
    }
}
