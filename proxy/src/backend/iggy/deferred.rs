//! The Iggy back end as the proxy runs it: connected in the background, so a proxy started
//! before Iggy serves (with retriable errors) and becomes ready once Iggy is there, instead of
//! exiting and crash-looping.

use std::sync::{Arc, OnceLock, Weak};

use async_trait::async_trait;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::reachability::{Backoff, Failure, Reachability};
use super::{IggyBackend, IggyConfig};
use crate::backend::{
    Backend, BackendError, BackendResult, PartitionBounds, ProducerBatch, ReadLimits, ReadResult,
    StoredRecord, TopicInfo, TopicSettings,
};

/// An [`IggyBackend`] still being connected; every call fails with
/// [`BackendError::Unavailable`] (which Kafka clients retry) until it is.
pub struct DeferredIggy {
    backend: OnceLock<IggyBackend>,
    reachability: Arc<Reachability>,
    task: std::sync::Mutex<Option<JoinHandle<()>>>,
}

/// Outcome of the first connection attempt: `Err` only for a setup that cannot work (Iggy
/// reached, TLS handshake failed), which the caller should treat as fatal.
pub type FirstAttempt = oneshot::Receiver<Result<(), String>>;

impl DeferredIggy {
    /// Starts connecting in the background, retrying with backoff until it succeeds.
    pub fn spawn(config: IggyConfig) -> (Arc<Self>, FirstAttempt) {
        let this = Arc::new(Self {
            backend: OnceLock::new(),
            reachability: Arc::new(Reachability::new(&config.address)),
            task: std::sync::Mutex::new(None),
        });
        let (first_tx, first_rx) = oneshot::channel();
        let task = tokio::spawn(connect(Arc::downgrade(&this), config, first_tx));
        *this.task.lock().unwrap_or_else(|p| p.into_inner()) = Some(task);
        (this, first_rx)
    }

    fn get(&self) -> BackendResult<&IggyBackend> {
        self.backend.get().ok_or_else(|| {
            let reason = self.reachability.unavailable().unwrap_or_default();
            BackendError::Unavailable(reason)
        })
    }
}

impl Drop for DeferredIggy {
    fn drop(&mut self) {
        if let Some(task) = self.task.get_mut().ok().and_then(Option::take) {
            task.abort();
        }
    }
}

async fn connect(
    this: Weak<DeferredIggy>,
    config: IggyConfig,
    first: oneshot::Sender<Result<(), String>>,
) {
    let mut first = Some(first);
    let mut backoff = Backoff::default();
    loop {
        let Some(reachability) = this.upgrade().map(|t| t.reachability.clone()) else {
            return;
        };
        match IggyBackend::connect_with(config.clone(), reachability.clone()).await {
            Ok(backend) => {
                reachability.up();
                if let Some(this) = this.upgrade() {
                    let _ = this.backend.set(backend);
                }
                if let Some(first) = first.take() {
                    let _ = first.send(Ok(()));
                }
                return;
            }
            Err(e) => {
                // Connection failures were diagnosed by the pool; anything else (the default
                // stream cannot be created, say) is reported here.
                if !reachability.is_down() {
                    reachability.down(Failure {
                        reason: e.to_string(),
                        setup: false,
                    });
                }
                if let Some(first) = first.take() {
                    match reachability.setup_failure() {
                        Some(reason) => {
                            let _ = first.send(Err(reason));
                            return;
                        }
                        None => {
                            let _ = first.send(Ok(()));
                        }
                    }
                }
            }
        }
        tokio::time::sleep(backoff.next_delay()).await;
    }
}

#[async_trait]
impl Backend for DeferredIggy {
    fn kind(&self) -> &'static str {
        "iggy"
    }

    /// Not ready while connecting or while the pool finds Iggy unreachable, with the reason.
    async fn health(&self) -> BackendResult<()> {
        let backend = self.get()?;
        if let Some(reason) = self.reachability.unavailable() {
            return Err(BackendError::Unavailable(reason));
        }
        backend.health().await
    }

    async fn list_topics(&self) -> BackendResult<Vec<TopicInfo>> {
        self.get()?.list_topics().await
    }

    async fn grants(
        &self,
        username: &str,
    ) -> BackendResult<Option<crate::security::grants::Grants>> {
        self.get()?.grants(username).await
    }

    async fn describe_topic(&self, topic: &str) -> BackendResult<Option<TopicInfo>> {
        self.get()?.describe_topic(topic).await
    }

    async fn create_topic(&self, topic: &str, settings: &TopicSettings) -> BackendResult<()> {
        self.get()?.create_topic(topic, settings).await
    }

    async fn delete_topic(&self, topic: &str) -> BackendResult<()> {
        self.get()?.delete_topic(topic).await
    }

    async fn create_partitions(&self, topic: &str, total: u32) -> BackendResult<()> {
        self.get()?.create_partitions(topic, total).await
    }

    async fn alter_topic(&self, topic: &str, settings: &TopicSettings) -> BackendResult<()> {
        self.get()?.alter_topic(topic, settings).await
    }

    async fn append_batch(
        &self,
        topic: &str,
        partition: u32,
        records: Vec<StoredRecord>,
        producer: Option<ProducerBatch>,
    ) -> BackendResult<i64> {
        self.get()?
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
        self.get()?.read(topic, partition, offset, limits).await
    }

    async fn bounds(&self, topic: &str, partition: u32) -> BackendResult<PartitionBounds> {
        self.get()?.bounds(topic, partition).await
    }

    async fn offset_for_timestamp(
        &self,
        topic: &str,
        partition: u32,
        timestamp_ms: i64,
    ) -> BackendResult<Option<(i64, i64)>> {
        self.get()?
            .offset_for_timestamp(topic, partition, timestamp_ms)
            .await
    }
}
