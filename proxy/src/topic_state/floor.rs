//! A back end seen through the topic state: no offset below a partition's log start offset
//! (as moved by DeleteRecords) is ever read, reported or found by timestamp; topic creation
//! and deletion are recorded in the state log; the state log's own topic is invisible.

use std::sync::Arc;

use async_trait::async_trait;

use super::{TopicState, STATE_TOPIC};
use crate::backend::{
    Backend, BackendError, BackendResult, PartitionBounds, ProducerBatch, ReadLimits, ReadResult,
    SharedBackend, StoredRecord, TopicInfo, TopicSettings,
};

pub struct LogStartFloor {
    inner: SharedBackend,
    state: Arc<TopicState>,
}

impl LogStartFloor {
    pub fn wrap(inner: SharedBackend, state: Arc<TopicState>) -> SharedBackend {
        Arc::new(Self { inner, state })
    }
}

/// Refuses names that address the state log.
fn visible(topic: &str) -> BackendResult<()> {
    if topic == STATE_TOPIC {
        return Err(BackendError::UnknownTopicOrPartition(topic.to_string()));
    }
    Ok(())
}

/// `bounds` with the log start raised to `floor` (never above the high watermark).
fn raised(bounds: PartitionBounds, floor: i64) -> PartitionBounds {
    PartitionBounds {
        log_start: bounds.log_start.max(floor.min(bounds.high_watermark)),
        high_watermark: bounds.high_watermark,
    }
}

#[async_trait]
impl Backend for LogStartFloor {
    fn kind(&self) -> &'static str {
        self.inner.kind()
    }

    async fn health(&self) -> BackendResult<()> {
        self.inner.health().await
    }

    async fn list_topics(&self) -> BackendResult<Vec<TopicInfo>> {
        let mut topics = self.inner.list_topics().await?;
        topics.retain(|t| t.name != STATE_TOPIC);
        Ok(topics)
    }

    async fn describe_topic(&self, topic: &str) -> BackendResult<Option<TopicInfo>> {
        if topic == STATE_TOPIC {
            return Ok(None);
        }
        self.inner.describe_topic(topic).await
    }

    async fn create_topic(&self, topic: &str, settings: &TopicSettings) -> BackendResult<()> {
        if topic == STATE_TOPIC {
            return Err(BackendError::InvalidRequest(format!(
                "{topic} is reserved for the proxy"
            )));
        }
        self.inner.create_topic(topic, settings).await?;
        self.state
            .topic_created(topic, settings.configs.clone())
            .await
    }

    async fn delete_topic(&self, topic: &str) -> BackendResult<()> {
        visible(topic)?;
        self.inner.delete_topic(topic).await?;
        if let Err(e) = self.state.topic_deleted(topic).await {
            // The next creation of the name forgets it too (`topic_created`).
            tracing::warn!(topic, error = %e, "cannot record the deletion in the topic state log");
        }
        Ok(())
    }

    async fn create_partitions(&self, topic: &str, total: u32) -> BackendResult<()> {
        visible(topic)?;
        self.inner.create_partitions(topic, total).await
    }

    async fn alter_topic(&self, topic: &str, settings: &TopicSettings) -> BackendResult<()> {
        visible(topic)?;
        self.inner.alter_topic(topic, settings).await?;
        self.state
            .set_configs(topic, settings.configs.clone())
            .await
    }

    async fn append_batch(
        &self,
        topic: &str,
        partition: u32,
        records: Vec<StoredRecord>,
        producer: Option<ProducerBatch>,
    ) -> BackendResult<i64> {
        visible(topic)?;
        self.inner
            .append_batch(topic, partition, records, producer)
            .await
    }

    async fn read(
        &self,
        topic: &str,
        partition: u32,
        offset: i64,
        limits: ReadLimits,
    ) -> BackendResult<ReadResult> {
        visible(topic)?;
        let floor = self.state.log_start(topic, partition).await;
        if offset < floor {
            let bounds = raised(self.inner.bounds(topic, partition).await?, floor);
            return Err(BackendError::OffsetOutOfRange {
                offset,
                log_start: bounds.log_start,
                high_watermark: bounds.high_watermark,
            });
        }
        let mut read = self.inner.read(topic, partition, offset, limits).await?;
        read.bounds = raised(read.bounds, floor);
        Ok(read)
    }

    async fn grants(
        &self,
        username: &str,
    ) -> BackendResult<Option<crate::security::grants::Grants>> {
        self.inner.grants(username).await
    }

    async fn bounds(&self, topic: &str, partition: u32) -> BackendResult<PartitionBounds> {
        visible(topic)?;
        let floor = self.state.log_start(topic, partition).await;
        Ok(raised(self.inner.bounds(topic, partition).await?, floor))
    }

    async fn offset_for_timestamp(
        &self,
        topic: &str,
        partition: u32,
        timestamp_ms: i64,
    ) -> BackendResult<Option<(i64, i64)>> {
        visible(topic)?;
        let found = self
            .inner
            .offset_for_timestamp(topic, partition, timestamp_ms)
            .await?;
        let floor = self.state.log_start(topic, partition).await;
        match found {
            Some((offset, _)) if offset < floor => {
                // The first record at or after the timestamp was deleted: answer with the first
                // one kept (its own timestamp), as close as the back end lets us look.
                let one = ReadLimits {
                    max_records: 1,
                    max_bytes: 1,
                };
                let read = self.read(topic, partition, floor, one).await?;
                Ok(read
                    .records
                    .first()
                    .map(|r| (r.offset, r.record.timestamp_ms)))
            }
            other => Ok(other),
        }
    }
}
