//! The Apache Iggy back end (server 0.8, SDK crate `iggy` 0.10).
//!
//! Kafka topic `T` is Iggy topic `T` in the configured default stream unless an override names
//! another stream/topic; Kafka partition `p` is Iggy partition `p` (0-based since Iggy 0.8);
//! a Kafka offset is the Iggy message offset, one record per message (see `mapping` for how
//! records become messages). Names are always sent as `Identifier::named`, because a
//! numeric-looking string would otherwise address a numeric id.
//!
//! Work is split by concern: `pool` keeps logged-in SDK clients, `offsets` caches where the next
//! append is expected, `stamps` gives every sent message an id that finds it again, `log` reads
//! and writes partitions, `admin` manages topics, and `error` is the one mapping from Iggy
//! errors to `BackendError`.

mod admin;
mod deferred;
mod error;
mod log;
mod mapping;
mod offsets;
mod pool;
mod reachability;
mod read_ahead;
mod stamps;
#[cfg(test)]
mod tests;
mod users;

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use async_trait::async_trait;
use iggy::prelude::{Consumer, Identifier, StreamClient, SystemClient};

pub use self::deferred::DeferredIggy;
use self::error::map_error;
use self::offsets::{OffsetTable, PartitionKey};
pub use self::pool::Credentials;
use self::pool::{Pool, Retry};
use self::reachability::Reachability;
use self::read_ahead::ReadAhead;
use self::stamps::Stamps;
use super::{
    Backend, BackendError, BackendResult, PartitionBounds, ProducerBatch, ReadLimits, ReadResult,
    StoredRecord, TopicInfo, TopicSettings,
};
use crate::config::IggyTls;

/// SDK clients in the pool unless configured otherwise.
pub const DEFAULT_CONNECTIONS: usize = 8;
/// Read-ahead budget unless configured otherwise.
pub const DEFAULT_READ_AHEAD_BYTES: usize = 64 * 1024 * 1024;
/// Stream holding Kafka topics unless configured otherwise.
pub const DEFAULT_STREAM: &str = "kafka";
/// Name of the Iggy consumer used for reads. Reads never commit offsets, so it leaves no state.
const READER_NAME: &str = "kafka-iggy-proxy";

/// How to reach Iggy and where Kafka topics live. `Debug` hides the password.
#[derive(Clone)]
pub struct IggyConfig {
    /// `host:port` of the server's TCP transport.
    pub address: String,
    pub username: String,
    pub password: String,
    /// Stream holding every Kafka topic that has no override; created on connect if missing.
    pub default_stream: String,
    /// Kafka topic name → Iggy stream/topic, for topics that live elsewhere.
    pub topic_overrides: HashMap<String, IggyTarget>,
    /// SDK clients in the pool (each carries one request at a time).
    pub connections: usize,
    /// After every append, ask the server to write the partition's buffer to disk with fsync
    /// before the Produce is acknowledged. Iggy 0.8 acknowledges once a batch is in memory
    /// and saves on thresholds, so without this a server crash loses acknowledged records.
    pub fsync_on_append: bool,
    pub tls: IggyTls,
    /// Bytes of polls done ahead of sequential readers held at most (0: off); see
    /// `read_ahead`.
    pub read_ahead_bytes: usize,
}

/// Where one Kafka topic lives in Iggy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IggyTarget {
    pub stream: String,
    pub topic: String,
}

impl Default for IggyConfig {
    fn default() -> Self {
        Self {
            address: "127.0.0.1:8090".into(),
            username: "iggy".into(),
            password: "iggy".into(),
            default_stream: DEFAULT_STREAM.into(),
            topic_overrides: HashMap::new(),
            connections: DEFAULT_CONNECTIONS,
            fsync_on_append: false,
            tls: IggyTls::default(),
            read_ahead_bytes: DEFAULT_READ_AHEAD_BYTES,
        }
    }
}

impl fmt::Debug for IggyConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IggyConfig")
            .field("address", &self.address)
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .field("default_stream", &self.default_stream)
            .field("topic_overrides", &self.topic_overrides)
            .field("connections", &self.connections)
            .field("fsync_on_append", &self.fsync_on_append)
            .field("tls", &self.tls)
            .field("read_ahead_bytes", &self.read_ahead_bytes)
            .finish()
    }
}

pub struct IggyBackend {
    pool: Pool,
    default_stream: String,
    overrides: HashMap<String, IggyTarget>,
    fsync_on_append: bool,
    offsets: OffsetTable,
    /// Ids that make this process's batches findable after a send (see `stamps`).
    stamps: Stamps,
    /// Recently seen first retained offsets, so a read need not ask for it every time (it only
    /// moves forward, so a slightly old value is a safe lower bound).
    log_starts: Mutex<HashMap<PartitionKey, (u64, Instant)>>,
    /// Average record size last read from each partition, so the first poll of a read can ask
    /// for as many messages as the byte limit allows: one Iggy round trip per Fetch.
    record_size_hints: Mutex<HashMap<PartitionKey, usize>>,
    read_ahead: ReadAhead,
    reader: Consumer,
}

/// A Kafka topic resolved to Iggy names and identifiers.
struct Target {
    stream: String,
    topic: String,
    stream_id: Identifier,
    topic_id: Identifier,
}

impl Target {
    fn key(&self, partition: u32) -> PartitionKey {
        PartitionKey {
            stream: self.stream.clone(),
            topic: self.topic.clone(),
            partition,
        }
    }
}

impl IggyBackend {
    /// Logs in `config.connections` clients and makes sure the default stream exists.
    pub async fn connect(config: IggyConfig) -> Result<Self, BackendError> {
        let reachability = Arc::new(Reachability::new(&config.address));
        Self::connect_with(config, reachability).await
    }

    /// [`IggyBackend::connect`] reporting connection failures, then and later, to
    /// `reachability`.
    async fn connect_with(
        config: IggyConfig,
        reachability: Arc<Reachability>,
    ) -> Result<Self, BackendError> {
        let credentials = Credentials {
            address: config.address.clone(),
            username: config.username.clone(),
            password: config.password.clone(),
            tls: config.tls.clone(),
        };
        let pool = Pool::connect(credentials, config.connections, reachability)
            .await
            .map_err(|e| map_error(e, &config.address))?;
        let reader = Consumer::new(named(READER_NAME)?);
        let backend = Self {
            pool,
            default_stream: config.default_stream,
            overrides: config.topic_overrides,
            fsync_on_append: config.fsync_on_append,
            offsets: OffsetTable::default(),
            stamps: Stamps::new(),
            log_starts: Mutex::new(HashMap::new()),
            record_size_hints: Mutex::new(HashMap::new()),
            read_ahead: ReadAhead::new(config.read_ahead_bytes),
            reader,
        };
        backend.ensure_stream(&backend.default_stream).await?;
        tracing::debug!(
            address = %config.address,
            stream = %backend.default_stream,
            connections = config.connections.max(1),
            "iggy back end ready"
        );
        Ok(backend)
    }

    /// Reads answered from a poll done ahead (diagnostics and tests).
    pub fn read_ahead_hits(&self) -> u64 {
        self.read_ahead.hits()
    }

    fn target(&self, kafka_topic: &str) -> BackendResult<Target> {
        let (stream, topic) = match self.overrides.get(kafka_topic) {
            Some(t) => (t.stream.clone(), t.topic.clone()),
            None => (self.default_stream.clone(), kafka_topic.to_string()),
        };
        Ok(Target {
            stream_id: named(&stream)?,
            topic_id: named(&topic)?,
            stream,
            topic,
        })
    }

    /// Creates a stream unless it exists; another proxy creating it first is fine.
    async fn ensure_stream(&self, stream: &str) -> BackendResult<()> {
        let id = named(stream)?;
        let id = &id;
        let existing = self
            .pool
            .run(Retry::Once, |c| async move { c.get_stream(id).await })
            .await
            .map_err(|e| map_error(e, stream))?;
        if existing.is_some() {
            return Ok(());
        }
        match self
            .pool
            .run(
                Retry::Once,
                |c| async move { c.create_stream(stream).await },
            )
            .await
        {
            Ok(_) => {
                tracing::info!(stream, "created iggy stream");
                Ok(())
            }
            Err(iggy::prelude::IggyError::StreamNameAlreadyExists(_)) => Ok(()),
            Err(e) => Err(map_error(e, stream)),
        }
    }
}

/// `Identifier::named`, which rejects empty and over-long (> 255 bytes) names.
fn named(name: &str) -> BackendResult<Identifier> {
    Identifier::named(name)
        .map_err(|_| BackendError::InvalidRequest(format!("invalid Iggy name: {name:?}")))
}

#[async_trait]
impl Backend for IggyBackend {
    fn kind(&self) -> &'static str {
        "iggy"
    }

    async fn health(&self) -> BackendResult<()> {
        self.pool
            .run(Retry::Once, |c| async move { c.ping().await })
            .await
            .map_err(|e| map_error(e, "ping"))
    }

    async fn list_topics(&self) -> BackendResult<Vec<TopicInfo>> {
        self.list_topics_impl().await
    }

    async fn describe_topic(&self, topic: &str) -> BackendResult<Option<TopicInfo>> {
        self.describe_topic_impl(topic).await
    }

    async fn create_topic(&self, topic: &str, settings: &TopicSettings) -> BackendResult<()> {
        self.create_topic_impl(topic, settings).await
    }

    async fn delete_topic(&self, topic: &str) -> BackendResult<()> {
        self.delete_topic_impl(topic).await
    }

    async fn create_partitions(&self, topic: &str, total: u32) -> BackendResult<()> {
        self.create_partitions_impl(topic, total).await
    }

    async fn alter_topic(&self, topic: &str, settings: &TopicSettings) -> BackendResult<()> {
        self.alter_topic_impl(topic, settings).await
    }

    async fn append_batch(
        &self,
        topic: &str,
        partition: u32,
        records: Vec<StoredRecord>,
        producer: Option<ProducerBatch>,
    ) -> BackendResult<i64> {
        self.append_impl(topic, partition, records, producer).await
    }

    async fn read(
        &self,
        topic: &str,
        partition: u32,
        offset: i64,
        limits: ReadLimits,
    ) -> BackendResult<ReadResult> {
        self.read_impl(topic, partition, offset, limits).await
    }

    async fn grants(
        &self,
        username: &str,
    ) -> BackendResult<Option<crate::security::grants::Grants>> {
        self.grants_impl(username).await
    }

    async fn bounds(&self, topic: &str, partition: u32) -> BackendResult<PartitionBounds> {
        let target = self.target(topic)?;
        self.fresh_bounds(&target, partition).await
    }

    async fn offset_for_timestamp(
        &self,
        topic: &str,
        partition: u32,
        timestamp_ms: i64,
    ) -> BackendResult<Option<(i64, i64)>> {
        self.offset_for_timestamp_impl(topic, partition, timestamp_ms)
            .await
    }
}
