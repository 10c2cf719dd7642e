//! Wraps any back end to time every call and count failures by kind.

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;

use super::{
    Backend, BackendError, BackendResult, PartitionBounds, ProducerBatch, ReadLimits, ReadResult,
    SharedBackend, StoredRecord, TopicInfo, TopicSettings,
};
use crate::metrics::Metrics;

pub struct Instrumented {
    inner: SharedBackend,
    metrics: Arc<Metrics>,
}

impl Instrumented {
    pub fn wrap(inner: SharedBackend, metrics: Arc<Metrics>) -> SharedBackend {
        Arc::new(Self { inner, metrics })
    }

    async fn timed<T>(
        &self,
        op: &str,
        call: impl Future<Output = BackendResult<T>>,
    ) -> BackendResult<T> {
        let started = Instant::now();
        let result = call.await;
        self.metrics
            .backend_seconds
            .with_label_values(&[op])
            .observe(started.elapsed().as_secs_f64());
        if let Err(e) = &result {
            self.metrics
                .backend_errors
                .with_label_values(&[op, error_kind(e)])
                .inc();
        }
        result
    }
}

fn error_kind(e: &BackendError) -> &'static str {
    match e {
        BackendError::UnknownTopicOrPartition(_) => "unknown_topic_or_partition",
        BackendError::TopicAlreadyExists(_) => "topic_already_exists",
        BackendError::InvalidPartitions(_) => "invalid_partitions",
        BackendError::OffsetOutOfRange { .. } => "offset_out_of_range",
        BackendError::InvalidRecord(_) => "invalid_record",
        BackendError::InvalidRequest(_) => "invalid_request",
        BackendError::Unavailable(_) => "unavailable",
        BackendError::Internal(_) => "internal",
        BackendError::OutcomeUnknown(_) => "outcome_unknown",
    }
}

#[async_trait]
impl Backend for Instrumented {
    fn kind(&self) -> &'static str {
        self.inner.kind()
    }
    async fn health(&self) -> BackendResult<()> {
        self.timed("health", self.inner.health()).await
    }
    async fn list_topics(&self) -> BackendResult<Vec<TopicInfo>> {
        self.timed("list_topics", self.inner.list_topics()).await
    }
    async fn describe_topic(&self, topic: &str) -> BackendResult<Option<TopicInfo>> {
        self.timed("describe_topic", self.inner.describe_topic(topic))
            .await
    }
    async fn create_topic(&self, topic: &str, settings: &TopicSettings) -> BackendResult<()> {
        self.timed("create_topic", self.inner.create_topic(topic, settings))
            .await
    }
    async fn delete_topic(&self, topic: &str) -> BackendResult<()> {
        self.timed("delete_topic", self.inner.delete_topic(topic))
            .await
    }
    async fn create_partitions(&self, topic: &str, total: u32) -> BackendResult<()> {
        self.timed(
            "create_partitions",
            self.inner.create_partitions(topic, total),
        )
        .await
    }
    async fn alter_topic(&self, topic: &str, settings: &TopicSettings) -> BackendResult<()> {
        self.timed("alter_topic", self.inner.alter_topic(topic, settings))
            .await
    }
    async fn append_batch(
        &self,
        topic: &str,
        partition: u32,
        records: Vec<StoredRecord>,
        producer: Option<ProducerBatch>,
    ) -> BackendResult<i64> {
        let append = self.inner.append_batch(topic, partition, records, producer);
        self.timed("append", append).await
    }
    async fn read(
        &self,
        topic: &str,
        partition: u32,
        offset: i64,
        limits: ReadLimits,
    ) -> BackendResult<ReadResult> {
        self.timed("read", self.inner.read(topic, partition, offset, limits))
            .await
    }
    async fn grants(
        &self,
        username: &str,
    ) -> BackendResult<Option<crate::security::grants::Grants>> {
        self.timed("grants", self.inner.grants(username)).await
    }
    async fn bounds(&self, topic: &str, partition: u32) -> BackendResult<PartitionBounds> {
        self.timed("bounds", self.inner.bounds(topic, partition))
            .await
    }
    async fn offset_for_timestamp(
        &self,
        topic: &str,
        partition: u32,
        timestamp_ms: i64,
    ) -> BackendResult<Option<(i64, i64)>> {
        self.timed(
            "offset_for_timestamp",
            self.inner
                .offset_for_timestamp(topic, partition, timestamp_ms),
        )
        .await
    }
}
