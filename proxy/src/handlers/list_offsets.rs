//! ListOffsets: earliest, latest, max-timestamp and by-timestamp lookups.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ApiKey, ListOffsetsRequest, ListOffsetsResponse};

use super::tally;
use crate::backend::{BackendError, ReadLimits};
use crate::broker::Broker;
use crate::error::backend_error_code;

const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;
/// KIP-405 "earliest local"; without tiered storage it is the earliest offset.
const EARLIEST_LOCAL: i64 = -4;

pub async fn handle(
    broker: &Broker,
    version: i16,
    request: ListOffsetsRequest,
) -> ListOffsetsResponse {
    let mut topics = Vec::with_capacity(request.topics.len());
    for topic in request.topics {
        let name = topic.name.0.to_string();
        let mut partitions = Vec::with_capacity(topic.partitions.len());
        for p in topic.partitions {
            let base = ListOffsetsPartitionResponse::default()
                .with_partition_index(p.partition_index)
                // The field exists from v4; earlier versions must leave the default.
                .with_leader_epoch(if version >= 4 { 0 } else { -1 });
            let response = match lookup(broker, &name, p.partition_index, p.timestamp).await {
                Ok((offset, timestamp)) => base.with_offset(offset).with_timestamp(timestamp),
                Err(code) => base
                    .with_error_code(tally(broker, ApiKey::ListOffsets, code))
                    .with_offset(-1)
                    .with_timestamp(-1),
            };
            partitions.push(response);
        }
        topics.push(
            ListOffsetsTopicResponse::default()
                .with_name(topic.name)
                .with_partitions(partitions),
        );
    }
    ListOffsetsResponse::default().with_topics(topics)
}

/// Returns (offset, timestamp) as Kafka reports them: -1 timestamps for the special lookups,
/// offset -1 when no record is at or after the requested time.
async fn lookup(
    broker: &Broker,
    topic: &str,
    partition: i32,
    timestamp: i64,
) -> Result<(i64, i64), i16> {
    if partition < 0 {
        return Err(ResponseError::UnknownTopicOrPartition.code());
    }
    if !broker.cluster.is_local_leader(topic, partition) {
        return Err(ResponseError::NotLeaderOrFollower.code());
    }
    let p = partition as u32;
    let code = |e: BackendError| backend_error_code(&e);
    match timestamp {
        LATEST => {
            let b = broker.backend.bounds(topic, p).await.map_err(code)?;
            Ok((b.high_watermark, -1))
        }
        EARLIEST | EARLIEST_LOCAL => {
            let b = broker.backend.bounds(topic, p).await.map_err(code)?;
            Ok((b.log_start, -1))
        }
        MAX_TIMESTAMP => {
            // The newest record stands in for the one with the largest timestamp; producers
            // using CreateTime almost always append in time order.
            let b = broker.backend.bounds(topic, p).await.map_err(code)?;
            if b.high_watermark == b.log_start {
                return Ok((-1, -1));
            }
            let last = b.high_watermark - 1;
            let read = broker
                .backend
                .read(
                    topic,
                    p,
                    last,
                    ReadLimits {
                        max_records: 1,
                        max_bytes: 1,
                    },
                )
                .await
                .map_err(code)?;
            Ok(read
                .records
                .first()
                .map_or((-1, -1), |r| (r.offset, r.record.timestamp_ms)))
        }
        t if t >= 0 => Ok(broker
            .backend
            .offset_for_timestamp(topic, p, t)
            .await
            .map_err(code)?
            .unwrap_or((-1, -1))),
        _ => Err(ResponseError::InvalidRequest.code()),
    }
}
