//! Iggy provisioning through the proxy's own Iggy back end (the iggy SDK underneath), so the
//! operator creates topics exactly as the proxy names and configures them.
//!
//! Idempotent: existing topics keep their data, partitions only ever grow, and message expiry
//! and maximum size follow the spec where it sets them; a requested partition decrease is
//! reported and that topic is not touched at all.
//!
//! Settings of an existing topic are changed with the iggy SDK directly: the proxy's back end
//! has no "alter topic" (Kafka clients cannot change those settings through the proxy).

use std::time::Duration;

use iggy::prelude::{
    Client, Identifier, IggyDuration, IggyExpiry, MaxTopicSize, TcpClient, TopicClient,
};
use kafka_iggy_proxy::backend::iggy::{Credentials, IggyBackend, IggyConfig};
use kafka_iggy_proxy::backend::{Backend, BackendError, TopicInfo, TopicSettings};
use kafka_iggy_proxy::config::IggyTls;

use crate::crd::TopicSpec;

/// How long one provisioning pass may wait for Iggy before it is reported unreachable.
pub const IGGY_TIMEOUT: Duration = Duration::from_secs(15);

/// How to reach and log in to one bridge's Iggy. `Debug` hides the password.
#[derive(Clone)]
pub struct IggyAccess {
    pub address: String,
    pub username: String,
    pub password: String,
    pub stream: String,
    /// TLS as the proxy does it; `ca_file` is the operator's own copy of the CA Secret.
    pub tls: IggyTls,
}

impl std::fmt::Debug for IggyAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Credentials' Debug hides the password.
        f.debug_struct("IggyAccess")
            .field("iggy", &self.credentials())
            .field("stream", &self.stream)
            .finish()
    }
}

impl IggyAccess {
    fn credentials(&self) -> Credentials {
        Credentials {
            address: self.address.clone(),
            username: self.username.clone(),
            password: self.password.clone(),
            tls: self.tls.clone(),
        }
    }
}

/// What one provisioning pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    pub created: Vec<String>,
    /// (topic, partitions before, after)
    pub grown: Vec<(String, u32, u32)>,
    /// (topic, partitions in Iggy, partitions asked for): never shrunk.
    pub decrease_refused: Vec<(String, u32, u32)>,
    /// (topic, what changed): message expiry or maximum size brought in line with the spec.
    pub settings_updated: Vec<(String, String)>,
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
        tls: access.tls.clone(),
        read_ahead_bytes: 0,
    };
    match tokio::time::timeout(IGGY_TIMEOUT, IggyBackend::connect(config)).await {
        Ok(Ok(backend)) => Ok(backend),
        Ok(Err(e)) => Err(ProvisionError::Unreachable(
            access.address.clone(),
            format!("{e}{}", access.tls.describe()),
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
                    ..TopicSettings::default()
                };
                match backend.create_topic(name, &settings).await {
                    Ok(()) => report.created.push(name.clone()),
                    // Someone else created it meanwhile: not ours.
                    Err(BackendError::TopicAlreadyExists(_)) => {}
                    Err(e) => return Err(refused(name, e)),
                }
            }
            Some(info) if info.partitions > topic.partitions => {
                report
                    .decrease_refused
                    .push((name.clone(), info.partitions, topic.partitions));
            }
            Some(info) => {
                if info.partitions < topic.partitions {
                    backend
                        .create_partitions(name, topic.partitions)
                        .await
                        .map_err(|e| refused(name, e))?;
                    report
                        .grown
                        .push((name.clone(), info.partitions, topic.partitions));
                }
                if let Some(change) = settings_change(&info, topic) {
                    update_settings(access, topic).await?;
                    report.settings_updated.push((name.clone(), change));
                }
            }
        }
    }
    Ok(report)
}

/// What differs between a topic in Iggy and its spec, among the settings the spec sets (an
/// unset field leaves Iggy's value alone).
fn settings_change(info: &TopicInfo, topic: &TopicSpec) -> Option<String> {
    let mut changes = Vec::new();
    if let Some(want) = topic
        .message_expiry_ms
        .filter(|w| Some(*w) != info.retention_ms)
    {
        changes.push(format!(
            "message expiry {} -> {want} ms",
            info.retention_ms
                .map_or("never".to_string(), |ms| ms.to_string())
        ));
    }
    if let Some(want) = topic.max_size_bytes.filter(|w| Some(*w) != info.max_bytes) {
        changes.push(format!(
            "max size {} -> {want} bytes",
            info.max_bytes
                .map_or("unlimited".to_string(), |b| b.to_string())
        ));
    }
    (!changes.is_empty()).then(|| changes.join(", "))
}

/// A logged-in SDK client (the proxy's own settings), for what its back end does not offer.
pub(crate) async fn sdk_client(access: &IggyAccess) -> Result<TcpClient, ProvisionError> {
    let unreachable = |e: String| ProvisionError::Unreachable(access.address.clone(), e);
    match tokio::time::timeout(IGGY_TIMEOUT, access.credentials().login()).await {
        Ok(Ok(client)) => Ok(client),
        Ok(Err(e)) => Err(unreachable(format!("{e}{}", access.tls.describe()))),
        Err(_) => Err(unreachable(format!("no answer within {IGGY_TIMEOUT:?}"))),
    }
}

/// Sets the topic's message expiry and maximum size to what the spec asks for, keeping its
/// name, compression and replication factor.
async fn update_settings(access: &IggyAccess, topic: &TopicSpec) -> Result<(), ProvisionError> {
    let name = &topic.name;
    let rejected =
        |e: iggy::prelude::IggyError| ProvisionError::Refused(name.clone(), e.to_string());
    let client = sdk_client(access).await?;
    let stream_id = Identifier::named(&access.stream).map_err(rejected)?;
    let topic_id = Identifier::named(name).map_err(rejected)?;
    let update = async {
        let Some(details) = client.get_topic(&stream_id, &topic_id).await? else {
            return Ok(());
        };
        let expiry = topic
            .message_expiry_ms
            .map_or(details.message_expiry, |ms| {
                IggyExpiry::ExpireDuration(IggyDuration::new(Duration::from_millis(
                    u64::try_from(ms).unwrap_or(1),
                )))
            });
        let max_size = topic
            .max_size_bytes
            .map_or(details.max_topic_size, MaxTopicSize::from);
        client
            .update_topic(
                &stream_id,
                &topic_id,
                &details.name,
                details.compression_algorithm,
                (details.replication_factor > 0).then_some(details.replication_factor),
                expiry,
                max_size,
            )
            .await
    };
    let result = tokio::time::timeout(IGGY_TIMEOUT, update).await;
    let _ = client.disconnect().await;
    match result {
        Ok(result) => result.map_err(rejected),
        Err(_) => Err(ProvisionError::Unreachable(
            access.address.clone(),
            format!("no answer within {IGGY_TIMEOUT:?}"),
        )),
    }
}

/// Deletes the given topics and the replicas' membership log (deletion policy `Delete`);
/// missing topics are fine. Only ever called with the topics a bridge created
/// ([`crate::ownership`]).
pub async fn delete_topics(access: &IggyAccess, topics: &[String]) -> Result<(), ProvisionError> {
    let backend = connect(access).await?;
    let names = topics.iter().map(String::as_str);
    for name in names.chain(REPLICA_TOPICS.iter().copied()) {
        match backend.delete_topic(name).await {
            Ok(()) | Err(BackendError::UnknownTopicOrPartition(_)) => {}
            Err(e) => return Err(refused(name, e)),
        }
    }
    Ok(())
}

/// Topics the bridge's proxies create for themselves in its stream and that mean nothing
/// without the bridge: the replicas' membership log.
pub const REPLICA_TOPICS: &[&str] = &[kafka_iggy_proxy::membership::log::MEMBERS_TOPIC];

/// A topic as Iggy has it (partitions, expiry, max size), for tests and diagnostics.
pub async fn describe(
    access: &IggyAccess,
    topic: &str,
) -> Result<Option<TopicInfo>, ProvisionError> {
    let backend = connect(access).await?;
    backend
        .describe_topic(topic)
        .await
        .map_err(|e| refused(topic, e))
}

/// The partition count of a topic as Iggy has it.
pub async fn partitions(access: &IggyAccess, topic: &str) -> Result<Option<u32>, ProvisionError> {
    Ok(describe(access, topic).await?.map(|t| t.partitions))
}
