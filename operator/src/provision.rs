//! Iggy provisioning through the proxy's own Iggy back end (the iggy SDK underneath), so the
//! operator creates topics exactly as the proxy names and configures them.
//!
//! Idempotent: existing topics are left alone, partitions only ever grow; a requested decrease
//! is reported (and nothing is touched).

use std::time::Duration;

use kafka_iggy_proxy::backend::iggy::{IggyBackend, IggyConfig};
use kafka_iggy_proxy::backend::{Backend, BackendError, TopicSettings};

use crate::crd::TopicSpec;

/// How long one provisioning pass may wait for Iggy before it is reported unreachable.
pub const IGGY_TIMEOUT: Duration = Duration::from_secs(15);

#[derive(Debug, Clone)]
pub struct IggyAccess {
    pub address: String,
    pub username: String,
    pub password: String,
    pub stream: String,
}

/// What one provisioning pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    pub created: Vec<String>,
    /// (topic, partitions before, after)
    pub grown: Vec<(String, u32, u32)>,
    /// (topic, partitions in Iggy, partitions asked for): never shrunk.
    pub decrease_refused: Vec<(String, u32, u32)>,
}

#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    #[error("Iggy at {0} is unreachable: {1}")]
    Unreachable(String, String),
    #[error("Iggy refused {0}: {1}")]
    Refused(String, String),
}

async fn connect(access: &IggyAccess) -> Result<IggyBackend, ProvisionError> {
    let config = IggyConfig {
        address: access.address.clone(),
        username: access.username.clone(),
        password: access.password.clone(),
        default_stream: access.stream.clone(),
        topic_overrides: Default::default(),
        connections: 1,
        fsync_on_append: false,
    };
    match tokio::time::timeout(IGGY_TIMEOUT, IggyBackend::connect(config)).await {
        Ok(Ok(backend)) => Ok(backend),
        Ok(Err(e)) => Err(ProvisionError::Unreachable(
            access.address.clone(),
            e.to_string(),
        )),
        Err(_) => Err(ProvisionError::Unreachable(
            access.address.clone(),
            format!("no answer within {IGGY_TIMEOUT:?}"),
        )),
    }
}

fn refused(what: &str, e: BackendError) -> ProvisionError {
    match e {
        BackendError::Unavailable(m) => ProvisionError::Unreachable(what.into(), m),
        other => ProvisionError::Refused(what.into(), other.to_string()),
    }
}

/// Creates the stream (on connect) and every topic, grows partitions, reports decreases.
pub async fn provision(
    access: &IggyAccess,
    topics: &[TopicSpec],
) -> Result<Report, ProvisionError> {
    let backend = connect(access).await?;
    let mut report = Report::default();
    for topic in topics {
        let name = &topic.name;
        let existing = tokio::time::timeout(IGGY_TIMEOUT, backend.describe_topic(name))
            .await
            .map_err(|_| ProvisionError::Unreachable(access.address.clone(), "timeout".into()))?
            .map_err(|e| refused(name, e))?;
        match existing {
            None => {
                let settings = TopicSettings {
                    partitions: topic.partitions,
                    retention_ms: topic.message_expiry_ms,
                    max_bytes: topic.max_size_bytes,
                };
                match backend.create_topic(name, &settings).await {
                    Ok(()) | Err(BackendError::TopicAlreadyExists(_)) => {
                        report.created.push(name.clone())
                    }
                    Err(e) => return Err(refused(name, e)),
                }
            }
            Some(info) if info.partitions < topic.partitions => {
                backend
                    .create_partitions(name, topic.partitions)
                    .await
                    .map_err(|e| refused(name, e))?;
                report
                    .grown
                    .push((name.clone(), info.partitions, topic.partitions));
            }
            Some(info) if info.partitions > topic.partitions => {
                report
                    .decrease_refused
                    .push((name.clone(), info.partitions, topic.partitions));
            }
            Some(_) => {}
        }
    }
    Ok(report)
}

/// Deletes the given topics (deletion policy `Delete`); missing topics are fine.
pub async fn delete_topics(
    access: &IggyAccess,
    topics: &[TopicSpec],
) -> Result<(), ProvisionError> {
    let backend = connect(access).await?;
    for topic in topics {
        match backend.delete_topic(&topic.name).await {
            Ok(()) | Err(BackendError::UnknownTopicOrPartition(_)) => {}
            Err(e) => return Err(refused(&topic.name, e)),
        }
    }
    Ok(())
}

/// Partition counts of the given topics as Iggy has them (for tests and status).
pub async fn partitions(access: &IggyAccess, topic: &str) -> Result<Option<u32>, ProvisionError> {
    let backend = connect(access).await?;
    backend
        .describe_topic(topic)
        .await
        .map(|t| t.map(|t| t.partitions))
        .map_err(|e| refused(topic, e))
}
