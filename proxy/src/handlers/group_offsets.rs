//! Committed offsets: OffsetCommit, OffsetFetch (single group, and the v8+ multi-group form)
//! and OffsetDelete. Storage is the group coordinator's offsets log.

use std::collections::HashMap;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{
    ApiKey, OffsetCommitRequest, OffsetCommitResponse, OffsetDeleteRequest, OffsetDeleteResponse,
    OffsetFetchRequest, OffsetFetchResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use super::groups::{code, coordinate};
use super::tally;
use crate::broker::Broker;
use crate::groups::offsets_log::{now_ms, CommittedOffset};

/// Per partition of one topic: the commit to store, or the error to answer with.
type PlannedTopic = (
    TopicName,
    Vec<(i32, Result<CommittedOffset, ResponseError>)>,
);
/// A topic's partitions with what is committed for each (`None`: nothing).
type TopicOffsets = (String, Vec<(i32, Option<CommittedOffset>)>);

/// Partition counts of the topics named in one request, looked up once each.
struct TopicSizes<'a> {
    broker: &'a Broker,
    known: HashMap<String, Option<u32>>,
}

impl<'a> TopicSizes<'a> {
    fn new(broker: &'a Broker) -> Self {
        Self {
            broker,
            known: HashMap::new(),
        }
    }

    /// UNKNOWN_TOPIC_OR_PARTITION unless the partition exists.
    async fn check(&mut self, topic: &str, partition: i32) -> Result<(), ResponseError> {
        if !self.known.contains_key(topic) {
            let partitions = match self.broker.backend.describe_topic(topic).await {
                Ok(info) => info.map(|i| i.partitions),
                Err(_) => return Err(ResponseError::CoordinatorNotAvailable),
            };
            self.known.insert(topic.to_string(), partitions);
        }
        match self.known.get(topic).copied().flatten() {
            Some(n) if partition >= 0 && (partition as u32) < n => Ok(()),
            _ => Err(ResponseError::UnknownTopicOrPartition),
        }
    }
}

pub async fn offset_commit(broker: &Broker, r: OffsetCommitRequest) -> OffsetCommitResponse {
    let group = r.group_id.0.to_string();
    let max_metadata = broker.config.groups.max_offset_metadata_bytes;
    let group_error = coordinate(broker, &group).await.err();
    // Per partition: Ok(commit) to store, or the error to answer with.
    let mut sizes = TopicSizes::new(broker);
    let mut planned: Vec<PlannedTopic> = Vec::with_capacity(r.topics.len());
    let now = now_ms();
    for topic in r.topics {
        let mut partitions = Vec::with_capacity(topic.partitions.len());
        for p in topic.partitions {
            let result = match group_error {
                Some(e) => Err(e),
                None => match sizes.check(topic.name.as_str(), p.partition_index).await {
                    Err(e) => Err(e),
                    Ok(())
                        if p.committed_metadata
                            .as_ref()
                            .is_some_and(|m| m.len() > max_metadata) =>
                    {
                        Err(ResponseError::OffsetMetadataTooLarge)
                    }
                    Ok(()) => Ok(CommittedOffset {
                        offset: p.committed_offset,
                        leader_epoch: p.committed_leader_epoch,
                        metadata: p.committed_metadata.map(|m| m.to_string()),
                        commit_timestamp_ms: now,
                        written_ms: now,
                    }),
                },
            };
            partitions.push((p.partition_index, result));
        }
        planned.push((topic.name, partitions));
    }
    let commits: Vec<((String, i32), CommittedOffset)> = planned
        .iter()
        .flat_map(|(topic, partitions)| {
            partitions.iter().filter_map(move |(p, result)| {
                result
                    .as_ref()
                    .ok()
                    .map(|c| ((topic.to_string(), *p), c.clone()))
            })
        })
        .collect();
    let stored = if commits.is_empty() {
        Ok(())
    } else {
        broker
            .groups
            .commit(
                &group,
                r.member_id.as_str(),
                r.group_instance_id.as_ref().map(|s| s.as_str()),
                r.generation_id_or_member_epoch,
                commits,
            )
            .await
    };
    let topics = planned
        .into_iter()
        .map(|(name, partitions)| {
            OffsetCommitResponseTopic::default()
                .with_name(name)
                .with_partitions(
                    partitions
                        .into_iter()
                        .map(|(index, result)| {
                            let result = result.map(|_| ()).and(stored);
                            OffsetCommitResponsePartition::default()
                                .with_partition_index(index)
                                .with_error_code(code(broker, ApiKey::OffsetCommit, result))
                        })
                        .collect(),
                )
        })
        .collect();
    OffsetCommitResponse::default().with_topics(topics)
}

/// One group's answer: the group error, and per requested (or every committed) partition
/// (topic, partition, offset) with -1 for "nothing committed".
struct FetchedGroup {
    error: Option<ResponseError>,
    topics: Vec<TopicOffsets>,
}

async fn fetch_group(
    broker: &Broker,
    group: &str,
    wanted: Option<Vec<(String, Vec<i32>)>>,
) -> FetchedGroup {
    let committed = match coordinate(broker, group).await {
        Ok(()) => broker.groups.fetch_offsets(group),
        Err(e) => Err(e),
    };
    let committed = match committed {
        Ok(committed) => committed,
        Err(e) => {
            return FetchedGroup {
                error: Some(e),
                topics: wanted
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(t, ps)| (t, ps.into_iter().map(|p| (p, None)).collect()))
                    .collect(),
            }
        }
    };
    let topics = match wanted {
        Some(wanted) => wanted
            .into_iter()
            .map(|(topic, partitions)| {
                let offsets = partitions
                    .into_iter()
                    .map(|p| (p, committed.get(&(topic.clone(), p)).cloned()))
                    .collect();
                (topic, offsets)
            })
            .collect(),
        None => {
            let mut by_topic: Vec<TopicOffsets> = Vec::new();
            for ((topic, p), c) in committed {
                match by_topic.last_mut() {
                    Some((t, ps)) if *t == topic => ps.push((p, Some(c))),
                    _ => by_topic.push((topic, vec![(p, Some(c))])),
                }
            }
            by_topic
        }
    };
    FetchedGroup {
        error: None,
        topics,
    }
}

/// The committed offset fields of a partition: (offset, leader epoch, metadata).
fn offset_fields(c: Option<CommittedOffset>) -> (i64, i32, Option<StrBytes>) {
    match c {
        Some(c) => (
            c.offset,
            c.leader_epoch,
            Some(StrBytes::from_string(c.metadata.unwrap_or_default())),
        ),
        None => (-1, -1, Some(StrBytes::default())),
    }
}

pub async fn offset_fetch(
    broker: &Broker,
    version: i16,
    r: OffsetFetchRequest,
) -> OffsetFetchResponse {
    if version >= 8 {
        let mut groups = Vec::with_capacity(r.groups.len());
        for g in r.groups {
            let wanted = g.topics.map(|ts| {
                ts.into_iter()
                    .map(|t| (t.name.to_string(), t.partition_indexes))
                    .collect()
            });
            let fetched = fetch_group(broker, g.group_id.as_str(), wanted).await;
            let topics = fetched
                .topics
                .into_iter()
                .map(|(name, partitions)| {
                    OffsetFetchResponseTopics::default()
                        .with_name(TopicName(StrBytes::from_string(name)))
                        .with_partitions(
                            partitions
                                .into_iter()
                                .map(|(index, c)| {
                                    let (offset, epoch, metadata) = offset_fields(c);
                                    OffsetFetchResponsePartitions::default()
                                        .with_partition_index(index)
                                        .with_committed_offset(offset)
                                        .with_committed_leader_epoch(epoch)
                                        .with_metadata(metadata)
                                })
                                .collect(),
                        )
                })
                .collect();
            groups.push(
                OffsetFetchResponseGroup::default()
                    .with_group_id(g.group_id)
                    .with_error_code(code(
                        broker,
                        ApiKey::OffsetFetch,
                        fetched.error.map_or(Ok(()), Err),
                    ))
                    .with_topics(topics),
            );
        }
        return OffsetFetchResponse::default().with_groups(groups);
    }
    let wanted = r.topics.map(|ts| {
        ts.into_iter()
            .map(|t| (t.name.to_string(), t.partition_indexes))
            .collect()
    });
    let fetched = fetch_group(broker, r.group_id.as_str(), wanted).await;
    let error = fetched.error.map_or(0, |e| e.code());
    let topics = fetched
        .topics
        .into_iter()
        .map(|(name, partitions)| {
            OffsetFetchResponseTopic::default()
                .with_name(TopicName(StrBytes::from_string(name)))
                .with_partitions(
                    partitions
                        .into_iter()
                        .map(|(index, c)| {
                            let (offset, epoch, metadata) = offset_fields(c);
                            OffsetFetchResponsePartition::default()
                                .with_partition_index(index)
                                .with_committed_offset(offset)
                                .with_committed_leader_epoch(if version >= 5 { epoch } else { -1 })
                                .with_metadata(metadata)
                                // v0-1 have no group-level error: it goes on each partition.
                                .with_error_code(if version < 2 { error } else { 0 })
                        })
                        .collect(),
                )
        })
        .collect();
    let response = OffsetFetchResponse::default().with_topics(topics);
    if version >= 2 {
        response.with_error_code(tally(broker, ApiKey::OffsetFetch, error))
    } else {
        tally(broker, ApiKey::OffsetFetch, error);
        response
    }
}

pub async fn offset_delete(broker: &Broker, r: OffsetDeleteRequest) -> OffsetDeleteResponse {
    let group = r.group_id.0.to_string();
    let requested: Vec<(String, i32)> = r
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions
                .iter()
                .map(move |p| (t.name.to_string(), p.partition_index))
        })
        .collect();
    let result = match coordinate(broker, &group).await {
        Err(e) => Err(e),
        Ok(()) => broker.groups.delete_offsets(&group, &requested).await,
    };
    let codes = match result {
        Ok(codes) => codes,
        Err(e) => {
            return OffsetDeleteResponse::default().with_error_code(tally(
                broker,
                ApiKey::OffsetDelete,
                e.code(),
            ))
        }
    };
    let mut codes = codes.into_iter();
    let topics = r
        .topics
        .into_iter()
        .map(|t| {
            OffsetDeleteResponseTopic::default()
                .with_name(t.name)
                .with_partitions(
                    t.partitions
                        .into_iter()
                        .map(|p| {
                            OffsetDeleteResponsePartition::default()
                                .with_partition_index(p.partition_index)
                                .with_error_code(tally(
                                    broker,
                                    ApiKey::OffsetDelete,
                                    codes.next().unwrap_or(0),
                                ))
                        })
                        .collect(),
                )
        })
        .collect();
    OffsetDeleteResponse::default().with_topics(topics)
}
