//! Kafka's authorization answers from a principal's [`Grants`], as a filter around the
//! handlers: [`restrict`] takes out of a request what the principal may not do (or answers it
//! outright), the handler serves the rest, and [`complete`] adds the refused parts back into
//! the response with TOPIC_AUTHORIZATION_FAILED, GROUP_AUTHORIZATION_FAILED or
//! CLUSTER_AUTHORIZATION_FAILED, as Kafka's broker splits authorized and unauthorized parts.
//!
//! Topics: Describe for Metadata, ListOffsets and DescribeConfigs (Metadata for all topics
//! lists only those the principal may describe); Read for Fetch and OffsetCommit; Write for
//! Produce; manage for CreateTopics (on the stream), DeleteTopics, CreatePartitions,
//! DeleteRecords and config changes, and for Metadata's auto-creation. Consumer groups are not
//! in Iggy's permissions (Iggy ties them to reading topics): group requests are allowed to a
//! principal that may read some topic, refused otherwise. Broker configs: Iggy `read_servers`
//! to describe, `manage_servers` to alter.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

use super::grants::{Grants, Rights};

const TOPIC: i16 = 29; // TOPIC_AUTHORIZATION_FAILED
const GROUP: i16 = 30; // GROUP_AUTHORIZATION_FAILED
const CLUSTER: i16 = 31; // CLUSTER_AUTHORIZATION_FAILED
const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;

/// What [`restrict`] decided.
#[allow(
    clippy::large_enum_variant,
    reason = "one short-lived value per request, as RequestKind itself"
)]
pub enum Gate {
    /// Serve this (possibly smaller) request, then [`complete`] its response with `Denied`.
    Pass(RequestKind, Denied),
    /// Nothing of it may be served: this is the answer.
    Answer(ResponseKind),
}

/// The parts of a request taken out, to be answered as refused.
#[derive(Debug, Default)]
pub enum Denied {
    #[default]
    Nothing,
    /// Topic name → partitions (Produce, Fetch, ListOffsets, DeleteRecords, OffsetCommit).
    Partitions(Vec<(TopicName, Vec<i32>)>),
    /// Whole topics (Metadata, CreateTopics, DeleteTopics, CreatePartitions).
    Topics(Vec<TopicName>),
    /// Metadata for all topics: keep those the principal may describe.
    UndescribableTopics,
    /// Config resources: (type, name, error code).
    Resources(Vec<(i8, StrBytes, i16)>),
}

fn name_of(t: &TopicName) -> &str {
    t.0.as_str()
}

/// Splits `items` by whether `allowed` holds for their topic.
fn split<T>(
    items: Vec<T>,
    topic: impl Fn(&T) -> &TopicName,
    allowed: impl Fn(&str) -> bool,
) -> (Vec<T>, Vec<T>) {
    items
        .into_iter()
        .partition(|item| allowed(name_of(topic(item))))
}

fn rights(grants: &Grants, topic: &str) -> Rights {
    grants.kafka_topic(topic)
}

/// What of `request` the principal with `grants` may have served.
pub fn restrict(grants: &Grants, request: RequestKind) -> Gate {
    let describe = |t: &str| rights(grants, t).describe;
    let read = |t: &str| rights(grants, t).read;
    let write = |t: &str| rights(grants, t).write;
    let manage = |t: &str| rights(grants, t).manage;
    let partitions = |denied: Vec<(TopicName, Vec<i32>)>| Denied::Partitions(denied);
    match request {
        RequestKind::Produce(mut r) => {
            let (ok, no) = split(r.topic_data, |t| &t.name, write);
            r.topic_data = ok;
            let no = no
                .into_iter()
                .map(|t| (t.name, t.partition_data.iter().map(|p| p.index).collect()))
                .collect();
            Gate::Pass(RequestKind::Produce(r), partitions(no))
        }
        RequestKind::Fetch(mut r) => {
            let (ok, no) = split(r.topics, |t| &t.topic, read);
            r.topics = ok;
            let no = no
                .into_iter()
                .map(|t| (t.topic, t.partitions.iter().map(|p| p.partition).collect()))
                .collect();
            Gate::Pass(RequestKind::Fetch(r), partitions(no))
        }
        RequestKind::ListOffsets(mut r) => {
            let (ok, no) = split(r.topics, |t| &t.name, describe);
            r.topics = ok;
            let no = no
                .into_iter()
                .map(|t| {
                    (
                        t.name,
                        t.partitions.iter().map(|p| p.partition_index).collect(),
                    )
                })
                .collect();
            Gate::Pass(RequestKind::ListOffsets(r), partitions(no))
        }
        RequestKind::DeleteRecords(mut r) => {
            let (ok, no) = split(r.topics, |t| &t.name, manage);
            r.topics = ok;
            let no = no
                .into_iter()
                .map(|t| {
                    (
                        t.name,
                        t.partitions.iter().map(|p| p.partition_index).collect(),
                    )
                })
                .collect();
            Gate::Pass(RequestKind::DeleteRecords(r), partitions(no))
        }
        RequestKind::OffsetCommit(mut r) => {
            if !grants.reads_anything() {
                let topics = r
                    .topics
                    .into_iter()
                    .map(|t| {
                        (
                            t.name,
                            t.partitions.iter().map(|p| p.partition_index).collect(),
                        )
                    })
                    .collect();
                return Gate::Answer(ResponseKind::OffsetCommit(complete_offset_commit(
                    OffsetCommitResponse::default(),
                    topics,
                    GROUP,
                )));
            }
            let (ok, no) = split(r.topics, |t| &t.name, read);
            r.topics = ok;
            let no = no
                .into_iter()
                .map(|t| {
                    (
                        t.name,
                        t.partitions.iter().map(|p| p.partition_index).collect(),
                    )
                })
                .collect();
            Gate::Pass(RequestKind::OffsetCommit(r), partitions(no))
        }
        RequestKind::Metadata(mut r) => {
            let Some(topics) = r.topics.take() else {
                return Gate::Pass(RequestKind::Metadata(r), Denied::UndescribableTopics);
            };
            let (ok, no): (Vec<_>, Vec<_>) = topics
                .into_iter()
                .partition(|t| t.name.as_ref().is_none_or(|n| describe(name_of(n))));
            // Creating a topic on first use takes the right to create it.
            if ok.iter().any(|t| {
                t.name
                    .as_ref()
                    .is_some_and(|n| !grants.may_create(name_of(n)))
            }) {
                r.allow_auto_topic_creation = false;
            }
            let empty_now = ok.is_empty() && !no.is_empty();
            r.topics = Some(ok);
            let no: Vec<TopicName> = no.into_iter().filter_map(|t| t.name).collect();
            if empty_now {
                // An empty list would mean "all topics" to old versions.
                return Gate::Answer(ResponseKind::Metadata(complete_metadata(
                    grants,
                    MetadataResponse::default(),
                    Denied::Topics(no),
                )));
            }
            Gate::Pass(RequestKind::Metadata(r), Denied::Topics(no))
        }
        RequestKind::CreateTopics(mut r) => {
            let (ok, no) = r
                .topics
                .into_iter()
                .partition(|t| grants.may_create(name_of(&t.name)));
            r.topics = ok;
            let no = no.into_iter().map(|t| t.name).collect();
            Gate::Pass(RequestKind::CreateTopics(r), Denied::Topics(no))
        }
        RequestKind::DeleteTopics(mut r) => {
            let (ok, no) = r.topic_names.into_iter().partition(|t| manage(name_of(t)));
            r.topic_names = ok;
            let mut denied: Vec<TopicName> = no;
            let (ok, no): (Vec<_>, Vec<_>) = r
                .topics
                .into_iter()
                .partition(|t| t.name.as_ref().is_none_or(|n| manage(name_of(n))));
            r.topics = ok;
            denied.extend(no.into_iter().filter_map(|t| t.name));
            Gate::Pass(RequestKind::DeleteTopics(r), Denied::Topics(denied))
        }
        RequestKind::CreatePartitions(mut r) => {
            let (ok, no) = split(r.topics, |t| &t.name, manage);
            r.topics = ok;
            let no = no.into_iter().map(|t| t.name).collect();
            Gate::Pass(RequestKind::CreatePartitions(r), Denied::Topics(no))
        }
        RequestKind::DescribeConfigs(mut r) => {
            let (ok, no) = r
                .resources
                .into_iter()
                .partition(|c| config_allowed(grants, c.resource_type, &c.resource_name, false));
            r.resources = ok;
            Gate::Pass(
                RequestKind::DescribeConfigs(r),
                resources(no, |c| (c.resource_type, c.resource_name)),
            )
        }
        RequestKind::AlterConfigs(mut r) => {
            let (ok, no) = r
                .resources
                .into_iter()
                .partition(|c| config_allowed(grants, c.resource_type, &c.resource_name, true));
            r.resources = ok;
            Gate::Pass(
                RequestKind::AlterConfigs(r),
                resources(no, |c| (c.resource_type, c.resource_name)),
            )
        }
        RequestKind::IncrementalAlterConfigs(mut r) => {
            let (ok, no) = r
                .resources
                .into_iter()
                .partition(|c| config_allowed(grants, c.resource_type, &c.resource_name, true));
            r.resources = ok;
            Gate::Pass(
                RequestKind::IncrementalAlterConfigs(r),
                resources(no, |c| (c.resource_type, c.resource_name)),
            )
        }
        RequestKind::OffsetForLeaderEpoch(mut r) => {
            let (ok, no) = split(r.topics, |t| &t.topic, describe);
            r.topics = ok;
            let no = no
                .into_iter()
                .map(|t| (t.topic, t.partitions.iter().map(|p| p.partition).collect()))
                .collect();
            Gate::Pass(RequestKind::OffsetForLeaderEpoch(r), partitions(no))
        }
        RequestKind::DescribeProducers(mut r) => {
            let (ok, no) = split(r.topics, |t| &t.name, read);
            r.topics = ok;
            let no = no
                .into_iter()
                .map(|t| (t.name, t.partition_indexes))
                .collect();
            Gate::Pass(RequestKind::DescribeProducers(r), partitions(no))
        }
        // Kafka asks for ALTER on the cluster; every named partition is refused.
        RequestKind::ElectLeaders(r) if !grants.cluster_alter => {
            let results = r
                .topic_partitions
                .unwrap_or_default()
                .into_iter()
                .map(|t| {
                    elect_leaders_response::ReplicaElectionResult::default()
                        .with_topic(t.topic)
                        .with_partition_result(
                            t.partitions
                                .into_iter()
                                .map(|p| {
                                    elect_leaders_response::PartitionResult::default()
                                        .with_partition_id(p)
                                        .with_error_code(CLUSTER)
                                })
                                .collect(),
                        )
                })
                .collect();
            Gate::Answer(ResponseKind::ElectLeaders(
                ElectLeadersResponse::default()
                    .with_error_code(CLUSTER)
                    .with_replica_election_results(results),
            ))
        }
        other if !grants.reads_anything() => refuse_group(other),
        other => Gate::Pass(other, Denied::Nothing),
    }
}

fn config_allowed(grants: &Grants, kind: i8, name: &StrBytes, alter: bool) -> bool {
    match kind {
        RESOURCE_TOPIC => {
            let r = grants.kafka_topic(name.as_str());
            if alter {
                r.manage
            } else {
                r.describe
            }
        }
        RESOURCE_BROKER => {
            if alter {
                grants.cluster_alter
            } else {
                grants.cluster_describe
            }
        }
        _ => true,
    }
}

fn resources<T>(denied: Vec<T>, key: impl Fn(T) -> (i8, StrBytes)) -> Denied {
    Denied::Resources(
        denied
            .into_iter()
            .map(key)
            .map(|(kind, name)| {
                let code = if kind == RESOURCE_TOPIC {
                    TOPIC
                } else {
                    CLUSTER
                };
                (kind, name, code)
            })
            .collect(),
    )
}

/// The GROUP_AUTHORIZATION_FAILED answer to a group request; other requests pass.
fn refuse_group(request: RequestKind) -> Gate {
    Gate::Answer(match request {
        RequestKind::FindCoordinator(r) => {
            let refused = FindCoordinatorResponse::default()
                .with_error_code(GROUP)
                .with_node_id(BrokerId(-1))
                .with_port(-1);
            // v4+ answers per key; before, one key at the top level.
            let coordinators: Vec<_> = r
                .coordinator_keys
                .into_iter()
                .map(|k| {
                    find_coordinator_response::Coordinator::default()
                        .with_key(k)
                        .with_node_id(BrokerId(-1))
                        .with_port(-1)
                        .with_error_code(GROUP)
                })
                .collect();
            ResponseKind::FindCoordinator(if coordinators.is_empty() {
                refused
            } else {
                FindCoordinatorResponse::default().with_coordinators(coordinators)
            })
        }
        RequestKind::JoinGroup(_) => {
            ResponseKind::JoinGroup(JoinGroupResponse::default().with_error_code(GROUP))
        }
        RequestKind::SyncGroup(_) => {
            ResponseKind::SyncGroup(SyncGroupResponse::default().with_error_code(GROUP))
        }
        RequestKind::Heartbeat(_) => {
            ResponseKind::Heartbeat(HeartbeatResponse::default().with_error_code(GROUP))
        }
        RequestKind::LeaveGroup(_) => {
            ResponseKind::LeaveGroup(LeaveGroupResponse::default().with_error_code(GROUP))
        }
        RequestKind::OffsetDelete(_) => {
            ResponseKind::OffsetDelete(OffsetDeleteResponse::default().with_error_code(GROUP))
        }
        RequestKind::OffsetFetch(r) => ResponseKind::OffsetFetch(
            OffsetFetchResponse::default()
                .with_error_code(GROUP)
                .with_groups(
                    r.groups
                        .into_iter()
                        .map(|g| {
                            offset_fetch_response::OffsetFetchResponseGroup::default()
                                .with_group_id(g.group_id)
                                .with_error_code(GROUP)
                        })
                        .collect(),
                ),
        ),
        RequestKind::DescribeGroups(r) => ResponseKind::DescribeGroups(
            DescribeGroupsResponse::default().with_groups(
                r.groups
                    .into_iter()
                    .map(|g| {
                        describe_groups_response::DescribedGroup::default()
                            .with_group_id(g)
                            .with_error_code(GROUP)
                    })
                    .collect(),
            ),
        ),
        RequestKind::DeleteGroups(r) => ResponseKind::DeleteGroups(
            DeleteGroupsResponse::default().with_results(
                r.groups_names
                    .into_iter()
                    .map(|g| {
                        delete_groups_response::DeletableGroupResult::default()
                            .with_group_id(g)
                            .with_error_code(GROUP)
                    })
                    .collect(),
            ),
        ),
        // Kafka lists only the groups the principal may describe: none.
        RequestKind::ListGroups(_) => ResponseKind::ListGroups(ListGroupsResponse::default()),
        other => return Gate::Pass(other, Denied::Nothing),
    })
}

/// Adds the refused parts to the response of what was served.
pub fn complete(grants: &Grants, response: ResponseKind, denied: Denied) -> ResponseKind {
    let partitions = |denied: &Denied| match denied {
        Denied::Partitions(p) => p.clone(),
        _ => Vec::new(),
    };
    let topics = |denied: &Denied| match denied {
        Denied::Topics(t) => t.clone(),
        _ => Vec::new(),
    };
    if matches!(denied, Denied::Nothing) {
        return response;
    }
    match response {
        ResponseKind::Produce(mut r) => {
            for (name, parts) in partitions(&denied) {
                r.responses.push(
                    produce_response::TopicProduceResponse::default()
                        .with_name(name)
                        .with_partition_responses(
                            parts
                                .into_iter()
                                .map(|p| {
                                    produce_response::PartitionProduceResponse::default()
                                        .with_index(p)
                                        .with_error_code(TOPIC)
                                        .with_base_offset(-1)
                                        .with_log_append_time_ms(-1)
                                        .with_log_start_offset(-1)
                                })
                                .collect(),
                        ),
                );
            }
            ResponseKind::Produce(r)
        }
        ResponseKind::Fetch(mut r) => {
            for (name, parts) in partitions(&denied) {
                r.responses.push(
                    fetch_response::FetchableTopicResponse::default()
                        .with_topic(name)
                        .with_partitions(
                            parts
                                .into_iter()
                                .map(|p| {
                                    fetch_response::PartitionData::default()
                                        .with_partition_index(p)
                                        .with_error_code(TOPIC)
                                        .with_high_watermark(-1)
                                        .with_last_stable_offset(-1)
                                        .with_log_start_offset(-1)
                                })
                                .collect(),
                        ),
                );
            }
            ResponseKind::Fetch(r)
        }
        ResponseKind::ListOffsets(mut r) => {
            for (name, parts) in partitions(&denied) {
                r.topics.push(
                    list_offsets_response::ListOffsetsTopicResponse::default()
                        .with_name(name)
                        .with_partitions(
                            parts
                                .into_iter()
                                .map(|p| {
                                    list_offsets_response::ListOffsetsPartitionResponse::default()
                                        .with_partition_index(p)
                                        .with_error_code(TOPIC)
                                        .with_timestamp(-1)
                                        .with_offset(-1)
                                        .with_leader_epoch(-1)
                                })
                                .collect(),
                        ),
                );
            }
            ResponseKind::ListOffsets(r)
        }
        ResponseKind::DeleteRecords(mut r) => {
            for (name, parts) in partitions(&denied) {
                r.topics.push(
                    delete_records_response::DeleteRecordsTopicResult::default()
                        .with_name(name)
                        .with_partitions(
                            parts
                                .into_iter()
                                .map(|p| {
                                    delete_records_response::DeleteRecordsPartitionResult::default()
                                        .with_partition_index(p)
                                        .with_low_watermark(-1)
                                        .with_error_code(TOPIC)
                                })
                                .collect(),
                        ),
                );
            }
            ResponseKind::DeleteRecords(r)
        }
        ResponseKind::OffsetCommit(r) => {
            ResponseKind::OffsetCommit(complete_offset_commit(r, partitions(&denied), TOPIC))
        }
        ResponseKind::OffsetForLeaderEpoch(mut r) => {
            for (name, parts) in partitions(&denied) {
                r.topics.push(
                    offset_for_leader_epoch_response::OffsetForLeaderTopicResult::default()
                        .with_topic(name)
                        .with_partitions(
                            parts
                                .into_iter()
                                .map(|p| {
                                    offset_for_leader_epoch_response::EpochEndOffset::default()
                                        .with_partition(p)
                                        .with_error_code(TOPIC)
                                        .with_leader_epoch(-1)
                                        .with_end_offset(-1)
                                })
                                .collect(),
                        ),
                );
            }
            ResponseKind::OffsetForLeaderEpoch(r)
        }
        ResponseKind::DescribeProducers(mut r) => {
            for (name, parts) in partitions(&denied) {
                r.topics.push(
                    describe_producers_response::TopicResponse::default()
                        .with_name(name)
                        .with_partitions(
                            parts
                                .into_iter()
                                .map(|p| {
                                    describe_producers_response::PartitionResponse::default()
                                        .with_partition_index(p)
                                        .with_error_code(TOPIC)
                                })
                                .collect(),
                        ),
                );
            }
            ResponseKind::DescribeProducers(r)
        }
        ResponseKind::Metadata(r) => ResponseKind::Metadata(complete_metadata(grants, r, denied)),
        ResponseKind::CreateTopics(mut r) => {
            for name in topics(&denied) {
                r.topics.push(
                    create_topics_response::CreatableTopicResult::default()
                        .with_name(name)
                        .with_error_code(TOPIC)
                        .with_error_message(Some(StrBytes::from_static_str(
                            "not allowed to create topics in this Iggy stream",
                        )))
                        .with_num_partitions(-1)
                        .with_replication_factor(-1),
                );
            }
            ResponseKind::CreateTopics(r)
        }
        ResponseKind::DeleteTopics(mut r) => {
            for name in topics(&denied) {
                r.responses.push(
                    delete_topics_response::DeletableTopicResult::default()
                        .with_name(Some(name))
                        .with_error_code(TOPIC),
                );
            }
            ResponseKind::DeleteTopics(r)
        }
        ResponseKind::CreatePartitions(mut r) => {
            for name in topics(&denied) {
                r.results.push(
                    create_partitions_response::CreatePartitionsTopicResult::default()
                        .with_name(name)
                        .with_error_code(TOPIC),
                );
            }
            ResponseKind::CreatePartitions(r)
        }
        ResponseKind::DescribeConfigs(mut r) => {
            if let Denied::Resources(denied) = denied {
                for (kind, name, code) in denied {
                    r.results.push(
                        describe_configs_response::DescribeConfigsResult::default()
                            .with_resource_type(kind)
                            .with_resource_name(name)
                            .with_error_code(code),
                    );
                }
            }
            ResponseKind::DescribeConfigs(r)
        }
        ResponseKind::AlterConfigs(mut r) => {
            if let Denied::Resources(denied) = denied {
                for (kind, name, code) in denied {
                    r.responses.push(
                        alter_configs_response::AlterConfigsResourceResponse::default()
                            .with_resource_type(kind)
                            .with_resource_name(name)
                            .with_error_code(code),
                    );
                }
            }
            ResponseKind::AlterConfigs(r)
        }
        ResponseKind::IncrementalAlterConfigs(mut r) => {
            if let Denied::Resources(denied) = denied {
                for (kind, name, code) in denied {
                    r.responses.push(
                        incremental_alter_configs_response::AlterConfigsResourceResponse::default()
                            .with_resource_type(kind)
                            .with_resource_name(name)
                            .with_error_code(code),
                    );
                }
            }
            ResponseKind::IncrementalAlterConfigs(r)
        }
        other => other,
    }
}

fn complete_offset_commit(
    mut r: OffsetCommitResponse,
    denied: Vec<(TopicName, Vec<i32>)>,
    code: i16,
) -> OffsetCommitResponse {
    for (name, parts) in denied {
        r.topics.push(
            offset_commit_response::OffsetCommitResponseTopic::default()
                .with_name(name)
                .with_partitions(
                    parts
                        .into_iter()
                        .map(|p| {
                            offset_commit_response::OffsetCommitResponsePartition::default()
                                .with_partition_index(p)
                                .with_error_code(code)
                        })
                        .collect(),
                ),
        );
    }
    r
}

fn complete_metadata(grants: &Grants, mut r: MetadataResponse, denied: Denied) -> MetadataResponse {
    match denied {
        Denied::UndescribableTopics => r.topics.retain(|t| {
            t.name
                .as_ref()
                .is_some_and(|n| grants.kafka_topic(name_of(n)).describe)
        }),
        Denied::Topics(names) => {
            for name in names {
                r.topics.push(
                    metadata_response::MetadataResponseTopic::default()
                        .with_name(Some(name))
                        .with_error_code(TOPIC)
                        .with_topic_authorized_operations(i32::MIN),
                );
            }
        }
        _ => {}
    }
    r
}

/// Kafka's code for "no authorizer configured", for DescribeAcls on an unauthenticated
/// connection.
pub fn security_disabled() -> i16 {
    ResponseError::SecurityDisabled.code()
}
