//! Topic administration (CreateTopics, DeleteTopics, CreatePartitions), DescribeCluster and
//! ElectLeaders.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::create_topics_response::CreatableTopicResult;
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::elect_leaders_response::{PartitionResult, ReplicaElectionResult};
use kafka_protocol::messages::{
    ApiKey, BrokerId, CreatePartitionsRequest, CreatePartitionsResponse, CreateTopicsRequest,
    CreateTopicsResponse, DeleteTopicsRequest, DeleteTopicsResponse, DescribeClusterRequest,
    DescribeClusterResponse, ElectLeadersRequest, ElectLeadersResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use super::tally;
use crate::backend::{BackendError, TopicSettings};
use crate::broker::{validate_topic_name, Broker};
use crate::error::backend_error_code;
use crate::topic_config::TopicConfigs;

type Failure = (i16, Option<String>);

fn failure(code: ResponseError, message: impl Into<String>) -> Failure {
    (code.code(), Some(message.into()))
}

fn from_backend(e: BackendError) -> Failure {
    (backend_error_code(&e), Some(e.to_string()))
}

pub async fn create_topics(
    broker: &Broker,
    _version: i16,
    request: CreateTopicsRequest,
) -> CreateTopicsResponse {
    let mut results = Vec::with_capacity(request.topics.len());
    for topic in request.topics {
        let name = topic.name.clone();
        let outcome = create_topic(broker, &topic, request.validate_only).await;
        if let Err((code, message)) = &outcome {
            tracing::info!(
                topic = name.as_str(),
                error = %crate::error::error_name(*code),
                reason = message.as_deref().unwrap_or(""),
                "refused a topic creation"
            );
        }
        let result = match outcome {
            Ok(partitions) => CreatableTopicResult::default()
                .with_name(name.clone())
                .with_topic_id(Broker::topic_id(&name.0))
                .with_num_partitions(partitions)
                .with_replication_factor(1),
            Err((code, message)) => CreatableTopicResult::default()
                .with_name(name)
                .with_error_code(tally(broker, ApiKey::CreateTopics, code))
                .with_error_message(message.map(StrBytes::from_string))
                .with_num_partitions(-1)
                .with_replication_factor(-1),
        };
        results.push(result);
    }
    CreateTopicsResponse::default().with_topics(results)
}

/// Replication is Iggy's business: any requested replication factor is accepted and reported
/// as 1, the proxy's view.
async fn create_topic(
    broker: &Broker,
    topic: &CreatableTopic,
    validate_only: bool,
) -> Result<i32, Failure> {
    let name = topic.name.0.as_str();
    validate_topic_name(name).map_err(|m| failure(ResponseError::InvalidTopicException, m))?;
    let partitions = match topic.num_partitions {
        -1 if topic.assignments.is_empty() => broker.config.default_partitions,
        -1 => u32::try_from(topic.assignments.len()).unwrap_or(u32::MAX),
        n if n >= 1 => n as u32,
        n => {
            return Err(failure(
                ResponseError::InvalidPartitions,
                format!("number of partitions must be at least 1, got {n}"),
            ))
        }
    };
    if topic.replication_factor == 0 || topic.replication_factor < -1 {
        return Err(failure(
            ResponseError::InvalidReplicationFactor,
            "replication factor must be -1 or at least 1",
        ));
    }
    let configs = TopicConfigs::parse(
        topic
            .configs
            .iter()
            .map(|c| (c.name.as_str(), c.value.as_ref().map(|v| v.as_str()))),
    )
    .map_err(|m| failure(ResponseError::InvalidConfig, m))?;
    let settings = TopicSettings {
        partitions,
        retention_ms: configs.retention_ms,
        max_bytes: configs.iggy_max_bytes(),
        configs: configs.kept,
    };
    if broker
        .backend
        .describe_topic(name)
        .await
        .map_err(from_backend)?
        .is_some()
    {
        return Err(failure(
            ResponseError::TopicAlreadyExists,
            format!("topic '{name}' already exists"),
        ));
    }
    if !validate_only {
        broker
            .backend
            .create_topic(name, &settings)
            .await
            .map_err(|e| match e {
                // The store refused the settings (Iggy: a maximum size below one segment).
                BackendError::InvalidRequest(m) => failure(ResponseError::InvalidConfig, m),
                other => from_backend(other),
            })?;
        tracing::info!(topic = name, partitions, "created topic");
    }
    Ok(partitions as i32)
}

pub async fn delete_topics(
    broker: &Broker,
    _version: i16,
    request: DeleteTopicsRequest,
) -> DeleteTopicsResponse {
    // v0-v5 name topics in `topic_names`; v6 uses `topics` with a name or an id.
    let mut targets: Vec<(Option<TopicName>, uuid::Uuid)> = request
        .topic_names
        .into_iter()
        .map(|n| (Some(n), uuid::Uuid::nil()))
        .collect();
    targets.extend(request.topics.into_iter().map(|t| (t.name, t.topic_id)));

    let mut results = Vec::with_capacity(targets.len());
    for (name, id) in targets {
        let resolved = match name {
            Some(n) => Ok(n.0.to_string()),
            None => resolve_topic_id(broker, id).await,
        };
        let outcome = match &resolved {
            Ok(n) if crate::broker::is_internal_topic(n) => Err(failure(
                ResponseError::InvalidTopicException,
                format!("{n} is internal and cannot be deleted"),
            )),
            Ok(n) => match broker.backend.delete_topic(n).await {
                Ok(()) => {
                    // As Kafka: a deleted topic's committed offsets go with it, so a topic
                    // created again under the same name starts without stale positions.
                    broker.groups.forget_topic(n).await;
                    Ok(())
                }
                Err(e) => Err(from_backend(e)),
            },
            Err(f) => Err(f.clone()),
        };
        let mut result = DeletableTopicResult::default()
            .with_name(
                resolved
                    .as_ref()
                    .ok()
                    .map(|n| TopicName(StrBytes::from_string(n.clone()))),
            )
            .with_topic_id(id);
        match outcome {
            Ok(()) => {
                if let Ok(n) = &resolved {
                    broker.partitions.forget_topic(n);
                    tracing::info!(topic = n.as_str(), "deleted topic");
                }
            }
            Err((code, message)) => {
                result = result
                    .with_error_code(tally(broker, ApiKey::DeleteTopics, code))
                    .with_error_message(message.map(StrBytes::from_string));
            }
        }
        results.push(result);
    }
    DeleteTopicsResponse::default().with_responses(results)
}

async fn resolve_topic_id(broker: &Broker, id: uuid::Uuid) -> Result<String, Failure> {
    let topics = broker.backend.list_topics().await.map_err(from_backend)?;
    topics
        .into_iter()
        .map(|t| t.name)
        .find(|n| Broker::topic_id(n) == id)
        .ok_or_else(|| {
            failure(
                ResponseError::UnknownTopicId,
                format!("no topic with id {id}"),
            )
        })
}

pub async fn create_partitions(
    broker: &Broker,
    request: CreatePartitionsRequest,
) -> CreatePartitionsResponse {
    let mut results = Vec::with_capacity(request.topics.len());
    for topic in request.topics {
        let outcome = grow(
            broker,
            topic.name.0.as_str(),
            topic.count,
            request.validate_only,
        )
        .await;
        let mut result = CreatePartitionsTopicResult::default().with_name(topic.name);
        if let Err((code, message)) = outcome {
            result = result
                .with_error_code(tally(broker, ApiKey::CreatePartitions, code))
                .with_error_message(message.map(StrBytes::from_string));
        }
        results.push(result);
    }
    CreatePartitionsResponse::default().with_results(results)
}

async fn grow(broker: &Broker, name: &str, count: i32, validate_only: bool) -> Result<(), Failure> {
    if crate::broker::is_internal_topic(name) {
        return Err(failure(
            ResponseError::InvalidTopicException,
            format!("{name} is internal and cannot be changed"),
        ));
    }
    let info = broker
        .backend
        .describe_topic(name)
        .await
        .map_err(from_backend)?
        .ok_or_else(|| {
            failure(
                ResponseError::UnknownTopicOrPartition,
                format!("topic '{name}' does not exist"),
            )
        })?;
    let current = info.partitions as i32;
    if count <= current {
        return Err(failure(
            ResponseError::InvalidPartitions,
            format!("topic currently has {current} partitions, which is higher than or equal to the requested {count}"),
        ));
    }
    if !validate_only {
        broker
            .backend
            .create_partitions(name, count as u32)
            .await
            .map_err(from_backend)?;
        tracing::info!(topic = name, from = current, to = count, "grew topic");
    }
    Ok(())
}

/// The brokers as seen from `listener`, the one the client connected to.
pub fn describe_cluster(
    broker: &Broker,
    listener: &str,
    _request: DescribeClusterRequest,
) -> DescribeClusterResponse {
    let brokers = broker
        .cluster
        .brokers_on(listener)
        .iter()
        .map(|b| {
            DescribeClusterBroker::default()
                .with_broker_id(BrokerId(b.id))
                .with_host(StrBytes::from_string(b.host.clone()))
                .with_port(b.port)
        })
        .collect();
    DescribeClusterResponse::default()
        .with_cluster_id(StrBytes::from_string(broker.cluster.cluster_id.clone()))
        .with_controller_id(broker.cluster.controller_id())
        .with_cluster_authorized_operations(i32::MIN)
        .with_brokers(brokers)
}

/// ElectLeaders (`kafka-leader-election.sh`, Cruise Control): a partition's leader is always the
/// replica the membership log assigns it to, and every replica serves the same Iggy partition,
/// so there is never another leader to elect. Named partitions get ELECTION_NOT_NEEDED, as
/// Kafka answers for a partition already led by its preferred replica; "all partitions" gets
/// an empty list, as Kafka leaves those out.
pub async fn elect_leaders(broker: &Broker, request: ElectLeadersRequest) -> ElectLeadersResponse {
    let mut results = Vec::new();
    for topic in request.topic_partitions.unwrap_or_default() {
        let name = topic.topic.0.to_string();
        let mut partitions = Vec::with_capacity(topic.partitions.len());
        for p in topic.partitions {
            let exists = match u32::try_from(p) {
                Ok(index) => broker.backend.bounds(&name, index).await.map(|_| ()),
                Err(_) => Err(BackendError::UnknownTopicOrPartition(name.clone())),
            };
            let (code, message) = match exists {
                Ok(()) => failure(
                    ResponseError::ElectionNotNeeded,
                    "the partition already has its leader (kafka-iggy-proxy replicas share one log)",
                ),
                Err(e) => from_backend(e),
            };
            partitions.push(
                PartitionResult::default()
                    .with_partition_id(p)
                    .with_error_code(tally(broker, ApiKey::ElectLeaders, code))
                    .with_error_message(message.map(StrBytes::from_string)),
            );
        }
        results.push(
            ReplicaElectionResult::default()
                .with_topic(topic.topic)
                .with_partition_result(partitions),
        );
    }
    ElectLeadersResponse::default().with_replica_election_results(results)
}
