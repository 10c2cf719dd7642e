//! In-memory back end for tests and local development. Same semantics as the Iggy back end
//! (0-based contiguous offsets, OffsetOutOfRange outside `[log_start, high_watermark]`), data is
//! lost when the process exits.

use std::collections::BTreeMap;

use async_trait::async_trait;
use tokio::sync::RwLock;

use super::{
    Backend, BackendError, BackendResult, FetchedRecord, PartitionBounds, ProducerBatch,
    ProducerMark, ReadLimits, ReadResult, StoredRecord, TopicInfo, TopicSettings,
};

#[derive(Default)]
struct Partition {
    records: Vec<StoredRecord>,
    producers: Vec<Option<ProducerMark>>,
    /// When each record was appended (ms since the epoch), as Iggy stamps its messages.
    appended_ms: Vec<i64>,
}

struct Topic {
    info: TopicInfo,
    partitions: Vec<Partition>,
}

#[derive(Default)]
pub struct MemoryBackend {
    topics: RwLock<BTreeMap<String, Topic>>,
}

impl MemoryBackend {
    pub fn new() -> Self {
        Self::default()
    }
}

fn unknown(topic: &str, partition: Option<u32>) -> BackendError {
    match partition {
        Some(p) => BackendError::UnknownTopicOrPartition(format!("{topic}-{p}")),
        None => BackendError::UnknownTopicOrPartition(topic.to_string()),
    }
}

#[async_trait]
impl Backend for MemoryBackend {
    fn kind(&self) -> &'static str {
        "memory"
    }

    async fn health(&self) -> BackendResult<()> {
        Ok(())
    }

    async fn list_topics(&self) -> BackendResult<Vec<TopicInfo>> {
        Ok(self
            .topics
            .read()
            .await
            .values()
            .map(|t| t.info.clone())
            .collect())
    }

    async fn describe_topic(&self, topic: &str) -> BackendResult<Option<TopicInfo>> {
        Ok(self.topics.read().await.get(topic).map(|t| t.info.clone()))
    }

    async fn create_topic(&self, topic: &str, settings: &TopicSettings) -> BackendResult<()> {
        if settings.partitions == 0 {
            return Err(BackendError::InvalidPartitions(
                "a topic needs at least one partition".into(),
            ));
        }
        let mut topics = self.topics.write().await;
        if topics.contains_key(topic) {
            return Err(BackendError::TopicAlreadyExists(topic.to_string()));
        }
        topics.insert(
            topic.to_string(),
            Topic {
                info: TopicInfo {
                    name: topic.to_string(),
                    partitions: settings.partitions,
                    retention_ms: settings.retention_ms.filter(|ms| *ms > 0),
                    max_bytes: settings.max_bytes,
                },
                partitions: (0..settings.partitions)
                    .map(|_| Partition::default())
                    .collect(),
            },
        );
        Ok(())
    }

    async fn delete_topic(&self, topic: &str) -> BackendResult<()> {
        self.topics
            .write()
            .await
            .remove(topic)
            .map(|_| ())
            .ok_or_else(|| unknown(topic, None))
    }

    async fn create_partitions(&self, topic: &str, total: u32) -> BackendResult<()> {
        let mut topics = self.topics.write().await;
        let t = topics.get_mut(topic).ok_or_else(|| unknown(topic, None))?;
        if total < t.info.partitions {
            return Err(BackendError::InvalidPartitions(format!(
                "topic {topic} has {} partitions; it can only grow",
                t.info.partitions
            )));
        }
        t.partitions.resize_with(total as usize, Partition::default);
        t.info.partitions = total;
        Ok(())
    }

    async fn alter_topic(&self, topic: &str, settings: &TopicSettings) -> BackendResult<()> {
        let mut topics = self.topics.write().await;
        let t = topics.get_mut(topic).ok_or_else(|| unknown(topic, None))?;
        t.info.retention_ms = settings.retention_ms.filter(|ms| *ms > 0);
        t.info.max_bytes = settings.max_bytes;
        Ok(())
    }

    async fn append_batch(
        &self,
        topic: &str,
        partition: u32,
        records: Vec<StoredRecord>,
        producer: Option<ProducerBatch>,
    ) -> BackendResult<i64> {
        let mut topics = self.topics.write().await;
        let p = topics
            .get_mut(topic)
            .and_then(|t| t.partitions.get_mut(partition as usize))
            .ok_or_else(|| unknown(topic, Some(partition)))?;
        let base = p.records.len() as i64;
        let now = crate::groups::offsets_log::now_ms();
        p.appended_ms
            .extend(std::iter::repeat_n(now, records.len()));
        p.producers
            .extend((0..records.len()).map(|i| producer.map(|b| b.mark(i))));
        p.records.extend(records);
        Ok(base)
    }

    async fn read(
        &self,
        topic: &str,
        partition: u32,
        offset: i64,
        limits: ReadLimits,
    ) -> BackendResult<ReadResult> {
        let topics = self.topics.read().await;
        let p = topics
            .get(topic)
            .and_then(|t| t.partitions.get(partition as usize))
            .ok_or_else(|| unknown(topic, Some(partition)))?;
        let bounds = PartitionBounds {
            log_start: 0,
            high_watermark: p.records.len() as i64,
        };
        if offset < bounds.log_start || offset > bounds.high_watermark {
            return Err(BackendError::OffsetOutOfRange {
                offset,
                log_start: bounds.log_start,
                high_watermark: bounds.high_watermark,
            });
        }
        let mut records = Vec::new();
        let mut bytes = 0;
        for (i, r) in p.records[offset as usize..].iter().enumerate() {
            if records.len() >= limits.max_records as usize
                || (!records.is_empty() && bytes >= limits.max_bytes)
            {
                break;
            }
            bytes += r.approx_size();
            records.push(FetchedRecord {
                offset: offset + i as i64,
                record: r.clone(),
                append_time_ms: p.appended_ms[offset as usize + i],
                producer: p.producers[offset as usize + i],
            });
        }
        Ok(ReadResult { records, bounds })
    }

    /// The memory back end has no users: every principal may do everything.
    async fn grants(
        &self,
        _username: &str,
    ) -> BackendResult<Option<crate::security::grants::Grants>> {
        Ok(Some(crate::security::grants::Grants::everything()))
    }

    async fn bounds(&self, topic: &str, partition: u32) -> BackendResult<PartitionBounds> {
        let topics = self.topics.read().await;
        let p = topics
            .get(topic)
            .and_then(|t| t.partitions.get(partition as usize))
            .ok_or_else(|| unknown(topic, Some(partition)))?;
        Ok(PartitionBounds {
            log_start: 0,
            high_watermark: p.records.len() as i64,
        })
    }

    async fn offset_for_timestamp(
        &self,
        topic: &str,
        partition: u32,
        timestamp_ms: i64,
    ) -> BackendResult<Option<(i64, i64)>> {
        let topics = self.topics.read().await;
        let p = topics
            .get(topic)
            .and_then(|t| t.partitions.get(partition as usize))
            .ok_or_else(|| unknown(topic, Some(partition)))?;
        Ok(p.records
            .iter()
            .enumerate()
            .find(|(_, r)| r.timestamp_ms >= timestamp_ms)
            .map(|(i, r)| (i as i64, r.timestamp_ms)))
    }
}
