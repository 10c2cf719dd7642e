//! Metadata: brokers, and topics with their partition leaders.
//!
//! When the back end cannot list or look up topics (Iggy unreachable), the answer has no
//! brokers and no topics: Java clients ("Ignoring empty metadata response"), librdkafka ("No
//! brokers or topics in metadata: should retry") and kafka-python all discard such a response
//! and keep their previous view, as they do with a broker that is still starting. An empty
//! topic list with brokers would instead read as "every topic is gone", and a pattern
//! subscription would revoke all its partitions.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{ApiKey, BrokerId, MetadataRequest, MetadataResponse, TopicName};
use kafka_protocol::protocol::StrBytes;

use super::tally;
use crate::backend::{BackendError, TopicInfo};
use crate::broker::{validate_topic_name, Broker};
use crate::error::backend_error_code;

/// The authorized-operations bitfield when the client did not ask for it.
const OPERATIONS_NOT_REQUESTED: i32 = i32::MIN;

/// Brokers are announced at their addresses on `listener`, the one the client connected to.
pub async fn handle(
    broker: &Broker,
    listener: &str,
    version: i16,
    request: MetadataRequest,
) -> MetadataResponse {
    // v0 has no way to ask for "all topics" other than an empty list.
    let requested: Option<Vec<String>> = match request.topics {
        None => None,
        Some(topics) if topics.is_empty() && version == 0 => None,
        Some(topics) => Some(
            topics
                .into_iter()
                .filter_map(|t| t.name.map(|n| n.0.to_string()))
                .collect(),
        ),
    };
    // Before v4 there is no flag; auto-creation follows the broker setting.
    let allow_create = version < 4 || request.allow_auto_topic_creation;

    let topics = match requested {
        None => match broker.backend.list_topics().await {
            Ok(all) => all.iter().map(|t| topic_metadata(broker, t)).collect(),
            Err(e) => return unavailable(broker, &e),
        },
        Some(names) => {
            let mut out = Vec::with_capacity(names.len());
            for name in names {
                match named_topic(broker, &name, allow_create).await {
                    Ok(topic) => out.push(topic),
                    Err(e) => return unavailable(broker, &e),
                }
            }
            out
        }
    };

    let brokers = broker
        .cluster
        .brokers_on(listener)
        .iter()
        .map(|b| {
            MetadataResponseBroker::default()
                .with_node_id(BrokerId(b.id))
                .with_host(StrBytes::from_string(b.host.clone()))
                .with_port(b.port)
        })
        .collect();
    MetadataResponse::default()
        .with_brokers(brokers)
        .with_cluster_id(Some(StrBytes::from_string(
            broker.cluster.cluster_id.clone(),
        )))
        .with_controller_id(broker.cluster.controller_id())
        .with_cluster_authorized_operations(OPERATIONS_NOT_REQUESTED)
        .with_topics(topics)
}

/// The answer while topics cannot be looked up: no brokers and no topics (see the module
/// documentation), counted as a KAFKA_STORAGE_ERROR in the error metrics.
fn unavailable(broker: &Broker, e: &BackendError) -> MetadataResponse {
    if e.is_unavailable() {
        tracing::debug!(error = %e, "metadata unavailable");
    } else {
        tracing::warn!(error = %e, "metadata unavailable");
    }
    tally(broker, ApiKey::Metadata, backend_error_code(e));
    MetadataResponse::default()
        .with_controller_id(BrokerId(-1))
        .with_cluster_id(Some(StrBytes::from_string(
            broker.cluster.cluster_id.clone(),
        )))
        .with_cluster_authorized_operations(OPERATIONS_NOT_REQUESTED)
}

/// One requested topic; `Err` when the back end is unavailable.
async fn named_topic(
    broker: &Broker,
    name: &str,
    allow_create: bool,
) -> Result<MetadataResponseTopic, BackendError> {
    let error = |code: ResponseError| {
        MetadataResponseTopic::default()
            .with_name(Some(TopicName(StrBytes::from_string(name.to_string()))))
            .with_error_code(tally(broker, ApiKey::Metadata, code.code()))
            .with_topic_authorized_operations(OPERATIONS_NOT_REQUESTED)
    };
    if validate_topic_name(name).is_err() {
        return Ok(error(ResponseError::InvalidTopicException));
    }
    match broker.topic_or_create(name, allow_create).await {
        Ok(Some(info)) => Ok(topic_metadata(broker, &info)),
        Ok(None) => Ok(error(ResponseError::UnknownTopicOrPartition)),
        Err(e) if e.is_unavailable() => Err(e),
        Err(e) => {
            tracing::warn!(topic = name, error = %e, "topic lookup failed");
            Ok(MetadataResponseTopic::default()
                .with_name(Some(TopicName(StrBytes::from_string(name.to_string()))))
                .with_error_code(tally(broker, ApiKey::Metadata, backend_error_code(&e))))
        }
    }
}

fn topic_metadata(broker: &Broker, info: &TopicInfo) -> MetadataResponseTopic {
    let partitions = (0..info.partitions as i32)
        .map(|p| {
            let leader = BrokerId(broker.cluster.partition_leader(&info.name, p));
            MetadataResponsePartition::default()
                .with_partition_index(p)
                .with_leader_id(leader)
                .with_leader_epoch(0)
                .with_replica_nodes(vec![leader])
                .with_isr_nodes(vec![leader])
        })
        .collect();
    MetadataResponseTopic::default()
        .with_name(Some(TopicName(StrBytes::from_string(info.name.clone()))))
        .with_topic_id(Broker::topic_id(&info.name))
        .with_is_internal(crate::broker::is_internal_topic(&info.name))
        .with_partitions(partitions)
        .with_topic_authorized_operations(OPERATIONS_NOT_REQUESTED)
}
