//! Topic administration: Kafka topics are Iggy topics in the default stream, plus overrides.

use std::time::Duration;

use iggy::prelude::{
    CompressionAlgorithm, IggyDuration, IggyError, IggyExpiry, MaxTopicSize, PartitionClient,
    TopicClient,
};

use super::error::map_error;
use super::pool::Retry;
use super::{named, IggyBackend};
use crate::backend::{BackendError, BackendResult, TopicInfo, TopicSettings};

impl IggyBackend {
    pub(super) async fn list_topics_impl(&self) -> BackendResult<Vec<TopicInfo>> {
        let stream_id = named(&self.default_stream)?;
        let stream_id = &stream_id;
        let topics = match self
            .pool
            .run(
                Retry::Once,
                |c| async move { c.get_topics(stream_id).await },
            )
            .await
        {
            Ok(topics) => topics,
            Err(e) if is_missing(&e) => Vec::new(),
            Err(e) => return Err(map_error(e, &self.default_stream)),
        };
        // A default-stream topic whose name is overridden is not reachable under that name.
        let mut infos: Vec<TopicInfo> = topics
            .into_iter()
            .filter(|t| !self.overrides.contains_key(&t.name))
            .map(|t| {
                topic_info(
                    t.name,
                    t.partitions_count,
                    t.message_expiry,
                    t.max_topic_size,
                )
            })
            .collect();
        let mut overridden: Vec<&String> = self.overrides.keys().collect();
        overridden.sort();
        for name in overridden {
            if let Some(info) = self.describe_topic_impl(name).await? {
                infos.push(info);
            }
        }
        infos.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(infos)
    }

    pub(super) async fn describe_topic_impl(
        &self,
        topic: &str,
    ) -> BackendResult<Option<TopicInfo>> {
        let target = self.target(topic)?;
        let (stream_id, topic_id) = (&target.stream_id, &target.topic_id);
        match self
            .pool
            .run(Retry::Once, |c| async move {
                c.get_topic(stream_id, topic_id).await
            })
            .await
        {
            Ok(details) => Ok(details.map(|d| {
                topic_info(
                    topic.to_string(),
                    d.partitions_count,
                    d.message_expiry,
                    d.max_topic_size,
                )
            })),
            Err(e) if is_missing(&e) => Ok(None),
            Err(e) => Err(map_error(e, topic)),
        }
    }

    pub(super) async fn create_topic_impl(
        &self,
        topic: &str,
        settings: &TopicSettings,
    ) -> BackendResult<()> {
        if settings.partitions == 0 {
            return Err(BackendError::InvalidPartitions(
                "a topic needs at least one partition".into(),
            ));
        }
        let target = self.target(topic)?;
        let (expiry, max_size) = iggy_limits(settings);
        let stream_id = &target.stream_id;
        let name = target.topic.as_str();
        let partitions = settings.partitions;
        let create = || {
            self.pool.run(Retry::Once, |c| async move {
                c.create_topic(
                    stream_id,
                    name,
                    partitions,
                    CompressionAlgorithm::None,
                    None,
                    expiry,
                    max_size,
                )
                .await
            })
        };
        let result = match create().await {
            // The stream of an override may not have been provisioned yet.
            Err(e) if is_missing(&e) => {
                self.ensure_stream(&target.stream).await?;
                create().await
            }
            other => other,
        };
        match result {
            Ok(_) => {
                self.offsets.forget_topic(&target.stream, &target.topic);
                self.read_ahead.forget_topic(&target.stream, &target.topic);
                tracing::info!(topic, partitions, "created iggy topic");
                Ok(())
            }
            // A lost reply to a create that was retried also lands here.
            Err(IggyError::TopicNameAlreadyExists(..)) => {
                Err(BackendError::TopicAlreadyExists(topic.to_string()))
            }
            Err(e) => Err(map_error(e, topic)),
        }
    }

    pub(super) async fn delete_topic_impl(&self, topic: &str) -> BackendResult<()> {
        let target = self.target(topic)?;
        let (stream_id, topic_id) = (&target.stream_id, &target.topic_id);
        let result = self
            .pool
            .run(Retry::Once, |c| async move {
                c.delete_topic(stream_id, topic_id).await
            })
            .await;
        self.offsets.forget_topic(&target.stream, &target.topic);
        self.forget_log_starts(&target.stream, &target.topic);
        result.map_err(|e| map_error(e, topic))?;
        tracing::info!(topic, "deleted iggy topic");
        Ok(())
    }

    /// Grows the topic to `total` partitions. Asking for the current count is a no-op, as in the
    /// in-memory back end.
    pub(super) async fn create_partitions_impl(
        &self,
        topic: &str,
        total: u32,
    ) -> BackendResult<()> {
        let current = self
            .describe_topic_impl(topic)
            .await?
            .ok_or_else(|| BackendError::UnknownTopicOrPartition(topic.to_string()))?
            .partitions;
        if total < current {
            return Err(BackendError::InvalidPartitions(format!(
                "topic {topic} has {current} partitions; it can only grow"
            )));
        }
        if total == current {
            return Ok(());
        }
        let target = self.target(topic)?;
        let (stream_id, topic_id) = (&target.stream_id, &target.topic_id);
        // Not retried: a lost reply would add the partitions twice.
        self.pool
            .run(Retry::Never, |c| async move {
                c.create_partitions(stream_id, topic_id, total - current)
                    .await
            })
            .await
            .map_err(|e| map_error(e, topic))?;
        tracing::info!(topic, from = current, to = total, "added iggy partitions");
        Ok(())
    }

    /// Changes the topic's message expiry and maximum size, keeping its name, compression and
    /// replication factor.
    pub(super) async fn alter_topic_impl(
        &self,
        topic: &str,
        settings: &TopicSettings,
    ) -> BackendResult<()> {
        let target = self.target(topic)?;
        let (stream_id, topic_id) = (&target.stream_id, &target.topic_id);
        let details = self
            .pool
            .run(Retry::Once, |c| async move {
                c.get_topic(stream_id, topic_id).await
            })
            .await
            .map_err(|e| map_error(e, topic))?
            .ok_or_else(|| BackendError::UnknownTopicOrPartition(topic.to_string()))?;
        let (expiry, max_size) = iggy_limits(settings);
        let details = &details;
        self.pool
            .run(Retry::Once, |c| async move {
                c.update_topic(
                    stream_id,
                    topic_id,
                    &details.name,
                    details.compression_algorithm,
                    Some(details.replication_factor).filter(|r| *r > 0),
                    expiry,
                    max_size,
                )
                .await
            })
            .await
            .map_err(|e| map_error(e, topic))?;
        tracing::info!(topic, ?expiry, ?max_size, "updated iggy topic");
        Ok(())
    }

    /// Drops what was learned about a deleted topic's partitions (first retained offsets,
    /// record sizes, reads done ahead), so a topic recreated under the same name starts clean.
    pub(super) fn forget_log_starts(&self, stream: &str, topic: &str) {
        self.read_ahead.forget_topic(stream, topic);
        let same = |k: &super::PartitionKey| k.stream == stream && k.topic == topic;
        let mut map = self.log_starts.lock().unwrap_or_else(|e| e.into_inner());
        map.retain(|k, _| !same(k));
        let mut hints = self
            .record_size_hints
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        hints.retain(|k, _| !same(k));
    }
}

/// Stream or topic absent: listing and describing treat these as "no topic".
fn is_missing(e: &IggyError) -> bool {
    matches!(
        e,
        IggyError::StreamIdNotFound(_)
            | IggyError::StreamNameNotFound(_)
            | IggyError::TopicIdNotFound(..)
            | IggyError::TopicNameNotFound(..)
    )
}

/// Iggy's message expiry and maximum topic size for Kafka's retention.ms and retention.bytes.
fn iggy_limits(settings: &TopicSettings) -> (IggyExpiry, MaxTopicSize) {
    let expiry = match settings.retention_ms {
        None => IggyExpiry::ServerDefault,
        Some(ms) if ms <= 0 => IggyExpiry::NeverExpire,
        Some(ms) => IggyExpiry::ExpireDuration(IggyDuration::new(Duration::from_millis(ms as u64))),
    };
    let max_size = match settings.max_bytes {
        None => MaxTopicSize::ServerDefault,
        Some(bytes) => MaxTopicSize::from(bytes),
    };
    (expiry, max_size)
}

fn topic_info(
    name: String,
    partitions: u32,
    expiry: IggyExpiry,
    max_size: MaxTopicSize,
) -> TopicInfo {
    TopicInfo {
        name,
        partitions,
        retention_ms: match expiry {
            IggyExpiry::ExpireDuration(d) => Some((d.as_micros() / 1000) as i64),
            IggyExpiry::NeverExpire | IggyExpiry::ServerDefault => None,
        },
        max_bytes: match max_size {
            MaxTopicSize::Custom(size) => Some(size.as_bytes_u64()),
            MaxTopicSize::Unlimited | MaxTopicSize::ServerDefault => None,
        },
    }
}
