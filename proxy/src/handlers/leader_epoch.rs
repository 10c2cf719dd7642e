//! OffsetForLeaderEpoch (KIP-101/KIP-320): consumers ask, after a leader change, where the
//! epoch they last fetched in ends, to detect a log truncated under them.
//!
//! Every replica fronts the same Iggy partition, so a partition has one history that is never
//! truncated by a leader change: there is a single leader epoch, 0 (what Metadata, Fetch and
//! ListOffsets report), and it ends at the log end offset. A consumer validating its position
//! is therefore always told its position is good, which is the truth.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use kafka_protocol::messages::{ApiKey, OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse};

use super::tally;
use crate::broker::Broker;
use crate::error::backend_error;

/// The one leader epoch of every partition.
pub const LEADER_EPOCH: i32 = 0;
/// Kafka's answer for an epoch it has no record of (UNDEFINED_EPOCH / UNDEFINED_EPOCH_OFFSET).
const UNDEFINED: (i32, i64) = (-1, -1);

pub async fn handle(
    broker: &Broker,
    request: OffsetForLeaderEpochRequest,
) -> OffsetForLeaderEpochResponse {
    let mut topics = Vec::with_capacity(request.topics.len());
    for topic in request.topics {
        let name = topic.topic.0.to_string();
        let mut partitions = Vec::with_capacity(topic.partitions.len());
        for p in topic.partitions {
            let answer = EpochEndOffset::default().with_partition(p.partition);
            partitions.push(
                match end_of_epoch(
                    broker,
                    &name,
                    p.partition,
                    p.current_leader_epoch,
                    p.leader_epoch,
                )
                .await
                {
                    Ok((epoch, end)) => answer.with_leader_epoch(epoch).with_end_offset(end),
                    Err(error) => answer
                        .with_error_code(tally(broker, ApiKey::OffsetForLeaderEpoch, error.code()))
                        .with_leader_epoch(UNDEFINED.0)
                        .with_end_offset(UNDEFINED.1),
                },
            );
        }
        topics.push(
            OffsetForLeaderTopicResult::default()
                .with_topic(topic.topic)
                .with_partitions(partitions),
        );
    }
    OffsetForLeaderEpochResponse::default().with_topics(topics)
}

/// (epoch, end offset) for `requested`, checked as a Kafka leader checks: the caller's idea of
/// the current epoch (-1 when it has none) must be ours.
async fn end_of_epoch(
    broker: &Broker,
    topic: &str,
    partition: i32,
    current_leader_epoch: i32,
    requested: i32,
) -> Result<(i32, i64), ResponseError> {
    if partition < 0 {
        return Err(ResponseError::UnknownTopicOrPartition);
    }
    if !broker.cluster.is_local_leader(topic, partition) {
        return Err(ResponseError::NotLeaderOrFollower);
    }
    if current_leader_epoch > LEADER_EPOCH {
        return Err(ResponseError::UnknownLeaderEpoch);
    }
    let bounds = broker
        .backend
        .bounds(topic, partition as u32)
        .await
        .map_err(|e| backend_error(&e))?;
    if requested != LEADER_EPOCH {
        // An epoch this log never had (a client from another cluster, or a bug).
        return Ok(UNDEFINED);
    }
    Ok((LEADER_EPOCH, bounds.high_watermark))
}
