//! What a bridge owns in Iggy, and which Iggy server it is.
//!
//! Deletion policy Delete removes only what the bridge created: the topics (and the stream)
//! it found missing and created, recorded in `status.iggy` the moment it created them. A
//! topic that existed before — created by someone else, by Kafka clients through the proxy, or
//! by another bridge — is never deleted.
//!
//! Two bridges conflict when they provision the same stream on the same server. "Same server"
//! cannot be decided from the address: `127.0.0.1:8090`, `localhost:8090`, a Service name and a
//! pod IP can all be one server. Iggy 0.8 has no server identity of its own (`get_stats` gives
//! hostname, process id and start time, which change on restart or differ between the names
//! of one host; `get_me` describes the connection; the cluster metadata name comes from the
//! server's configuration, the same default everywhere). So the operator keeps a marker on
//! each server: stream [`MARKER_STREAM`] holds one topic named `server-id-<random>`, created by
//! the first operator that finds none. Whoever logs in to that server reads the same name
//! (the topic with the smallest id, should two operators race), whatever address they used.
//! The identity is recorded in `status.iggy.serverId`; a bridge whose identity is not known
//! yet is compared by the resolved IP:port set of its address instead.

use std::collections::BTreeSet;
use std::net::SocketAddr;

use iggy::prelude::{
    Client, CompressionAlgorithm, Identifier, IggyError, IggyExpiry, MaxTopicSize, StreamClient,
    TopicClient,
};
use kube::{Resource, ResourceExt};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::crd::KafkaBridge;
use crate::provision::{self, IggyAccess, ProvisionError, IGGY_TIMEOUT};

/// The stream on every Iggy server that holds the operator's identity marker. Kafka clients
/// never see it (the proxy shows the topics of the bridge's own stream only).
pub const MARKER_STREAM: &str = "kafka-iggy-operator";
const SERVER_ID_PREFIX: &str = "server-id-";

/// `status.iggy`: the server a bridge provisions and what it created there.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IggyOwnership {
    /// Identity of the Iggy server, read from the marker the operator keeps on it. (Fields
    /// here are always serialized: the status is written with a merge patch, which must
    /// replace this record whole.)
    #[serde(default)]
    pub server_id: Option<String>,
    /// The stream did not exist and this bridge created it (Delete removes it once empty).
    #[serde(default)]
    pub created_stream: bool,
    /// Topics this bridge created: the only ones deletion policy Delete removes.
    #[serde(default)]
    pub created_topics: Vec<String>,
}

impl IggyOwnership {
    /// This record with `topics` added (a topic stays owned once created).
    pub fn with_created(mut self, topics: &[String]) -> Self {
        for t in topics {
            if !self.created_topics.contains(t) {
                self.created_topics.push(t.clone());
            }
        }
        self
    }
}

impl IggyOwnership {
    /// Two records of one bridge (its status, and what this process last wrote, which the
    /// status may not show yet): on the same server, everything either says was created;
    /// otherwise `self`, the newer.
    pub fn merge(self, other: IggyOwnership) -> Self {
        if self.server_id != other.server_id {
            return self;
        }
        let created_stream = self.created_stream || other.created_stream;
        IggyOwnership {
            created_stream,
            ..self.with_created(&other.created_topics)
        }
    }
}

/// What one look at the server found: its identity and whether the bridge's stream exists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    pub server_id: String,
    pub stream_exists: bool,
}

fn timeout(access: &IggyAccess) -> ProvisionError {
    ProvisionError::Unreachable(
        access.address.clone(),
        format!("no answer within {IGGY_TIMEOUT:?}"),
    )
}

/// Reads (creating it if needed) the server's identity marker, and whether the bridge's
/// stream exists.
pub async fn probe(access: &IggyAccess) -> Result<Probe, ProvisionError> {
    let client = provision::sdk_client(access).await?;
    let result = tokio::time::timeout(IGGY_TIMEOUT, probe_with(&client, access)).await;
    let _ = client.disconnect().await;
    result.map_err(|_| timeout(access))?
}

async fn probe_with(
    client: &impl StreamAndTopics,
    access: &IggyAccess,
) -> Result<Probe, ProvisionError> {
    let refused = |what: &str, e: IggyError| ProvisionError::Refused(what.into(), e.to_string());
    let marker = Identifier::named(MARKER_STREAM).map_err(|e| refused(MARKER_STREAM, e))?;
    if client
        .get_stream(&marker)
        .await
        .map_err(|e| refused(MARKER_STREAM, e))?
        .is_none()
    {
        match client.create_stream(MARKER_STREAM).await {
            Ok(_) | Err(IggyError::StreamNameAlreadyExists(_)) => {}
            Err(e) => return Err(refused(MARKER_STREAM, e)),
        }
    }
    let server_id = match server_id_of(client, &marker).await? {
        Some(id) => id,
        None => {
            let name = format!("{SERVER_ID_PREFIX}{}", random_hex(&access.address));
            match client
                .create_topic(
                    &marker,
                    &name,
                    1,
                    CompressionAlgorithm::None,
                    None,
                    IggyExpiry::NeverExpire,
                    MaxTopicSize::ServerDefault,
                )
                .await
            {
                Ok(_) | Err(IggyError::TopicNameAlreadyExists(..)) => {}
                Err(e) => return Err(refused(&name, e)),
            }
            // Re-read: should another operator have raced us, the smallest id wins for both.
            server_id_of(client, &marker)
                .await?
                .ok_or_else(|| refused(MARKER_STREAM, IggyError::ResourceNotFound(name)))?
        }
    };
    let stream = Identifier::named(&access.stream).map_err(|e| refused(&access.stream, e))?;
    let stream_exists = client
        .get_stream(&stream)
        .await
        .map_err(|e| refused(&access.stream, e))?
        .is_some();
    Ok(Probe {
        server_id,
        stream_exists,
    })
}

/// The SDK traits probing needs (the TCP client in production).
trait StreamAndTopics: StreamClient + TopicClient {}
impl<T: StreamClient + TopicClient> StreamAndTopics for T {}

async fn server_id_of(
    client: &impl StreamAndTopics,
    marker: &Identifier,
) -> Result<Option<String>, ProvisionError> {
    let topics = client
        .get_topics(marker)
        .await
        .map_err(|e| ProvisionError::Refused(MARKER_STREAM.into(), e.to_string()))?;
    Ok(topics
        .into_iter()
        .filter(|t| t.name.starts_with(SERVER_ID_PREFIX))
        .min_by_key(|t| t.id)
        .map(|t| t.name[SERVER_ID_PREFIX.len()..].to_string()))
}

/// 16 hex digits that differ between processes and calls (no RNG crate needed for a marker).
fn random_hex(seed: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let digest = Sha256::digest(format!("{seed}/{}/{nanos}", std::process::id()));
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

/// The IP:port set an `host:port` address resolves to (empty if it does not resolve).
pub async fn resolve(address: &str) -> BTreeSet<SocketAddr> {
    match tokio::net::lookup_host(address).await {
        Ok(addrs) => addrs.collect(),
        Err(_) => BTreeSet::new(),
    }
}

/// Whether two bridges name the same Iggy server: by the recorded identities when both are
/// known, else by the addresses resolving to overlapping IP:port sets (or being equal).
pub async fn same_server(mine: &KafkaBridge, my_id: Option<&str>, other: &KafkaBridge) -> bool {
    let other_id = other
        .status
        .as_ref()
        .and_then(|s| s.iggy.as_ref())
        .and_then(|i| i.server_id.as_deref());
    if let (Some(a), Some(b)) = (my_id, other_id) {
        return a == b;
    }
    let (a, b) = (&mine.spec.iggy.address, &other.spec.iggy.address);
    if a == b {
        return true;
    }
    let (a, b) = (resolve(a).await, resolve(b).await);
    !a.is_disjoint(&b)
}

/// The earlier-created bridge among `others` that provisions the same stream on the same
/// server as `kb`, if any: `kb` is then in conflict and neither provisions nor deletes
/// anything. Creation times have one-second resolution; ties go to the smaller
/// namespace/name, so every reconcile of either bridge reaches the same verdict.
pub async fn conflicting(
    kb: &KafkaBridge,
    my_id: Option<&str>,
    others: &[KafkaBridge],
) -> Option<String> {
    let me = (kb.creation_timestamp(), kb.namespace(), kb.name_any());
    for o in others {
        let candidate = o.uid() != kb.uid()
            && o.meta().deletion_timestamp.is_none()
            && o.spec.iggy.stream == kb.spec.iggy.stream
            && (o.creation_timestamp(), o.namespace(), o.name_any()) < me;
        if candidate && same_server(kb, my_id, o).await {
            return Some(format!(
                "{}/{}",
                o.namespace().unwrap_or_default(),
                o.name_any()
            ));
        }
    }
    None
}

/// Deletion policy Delete: removes what `owned` records (topics, the membership log, and the
/// stream if the bridge created it and nothing else is left in it) — only after checking that
/// the server at the bridge's address is the one it provisioned. Returns the topics deleted.
pub async fn delete_owned(
    access: &IggyAccess,
    owned: &IggyOwnership,
) -> Result<Vec<String>, ProvisionError> {
    let Some(recorded) = owned.server_id.as_deref() else {
        return Ok(Vec::new());
    };
    let found = probe(access).await?;
    if found.server_id != recorded {
        return Err(ProvisionError::Refused(
            "cleanup".into(),
            format!(
                "the Iggy server at {} is {}, not {recorded} where this bridge created its \
                 topics; nothing deleted",
                access.address, found.server_id
            ),
        ));
    }
    provision::delete_topics(access, &owned.created_topics).await?;
    if owned.created_stream {
        delete_stream_if_empty(access).await?;
    }
    Ok(owned.created_topics.clone())
}

async fn delete_stream_if_empty(access: &IggyAccess) -> Result<(), ProvisionError> {
    let refused = |e: IggyError| ProvisionError::Refused(access.stream.clone(), e.to_string());
    let client = provision::sdk_client(access).await?;
    let work = async {
        let stream = Identifier::named(&access.stream).map_err(refused)?;
        let Some(details) = client.get_stream(&stream).await.map_err(refused)? else {
            return Ok(());
        };
        if details.topics_count == 0 {
            match client.delete_stream(&stream).await {
                Ok(()) | Err(IggyError::StreamNameNotFound(_)) => {}
                Err(e) => return Err(refused(e)),
            }
        }
        Ok(())
    };
    let result = tokio::time::timeout(IGGY_TIMEOUT, work).await;
    let _ = client.disconnect().await;
    result.map_err(|_| timeout(access))?
}

#[cfg(test)]
mod tests;
