//! DeleteRecords: moves partitions' log start offsets up. The new log start is written to the
//! topic state log in Iggy (see `crate::topic_state`), from where every replica reads it;
//! Fetch below it answers OFFSET_OUT_OF_RANGE and ListOffsets/Produce report it as the log
//! start. The records below it stay in Iggy until Iggy's own retention removes them (Iggy 0.8
//! tells no segment boundaries, so the proxy cannot tell which segments lie wholly below).

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::delete_records_request::DeleteRecordsPartition;
use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::{ApiKey, DeleteRecordsRequest, DeleteRecordsResponse};

use super::tally;
use crate::backend::TopicInfo;
use crate::broker::{is_internal_topic, Broker};
use crate::error::backend_error_code;

/// The offset in a request meaning "up to the high watermark".
const HIGH_WATERMARK: i64 = -1;

pub async fn handle(broker: &Broker, request: DeleteRecordsRequest) -> DeleteRecordsResponse {
    let mut topics = Vec::with_capacity(request.topics.len());
    for topic in request.topics {
        let name = topic.name.0.as_str();
        let info = if is_internal_topic(name) {
            Err(ResponseError::InvalidTopicException.code())
        } else {
            match broker.backend.describe_topic(name).await {
                Ok(Some(info)) => Ok(info),
                Ok(None) => Err(ResponseError::UnknownTopicOrPartition.code()),
                Err(e) => Err(backend_error_code(&e)),
            }
        };
        let mut partitions = Vec::with_capacity(topic.partitions.len());
        for p in &topic.partitions {
            let outcome = match &info {
                Ok(info) => delete_below(broker, info, p).await,
                Err(code) => Err(*code),
            };
            let result =
                DeleteRecordsPartitionResult::default().with_partition_index(p.partition_index);
            partitions.push(match outcome {
                Ok(low_watermark) => result.with_low_watermark(low_watermark),
                Err(code) => {
                    tracing::info!(
                        topic = name,
                        partition = p.partition_index,
                        offset = p.offset,
                        error = %crate::error::error_name(code),
                        "refused to delete records"
                    );
                    result.with_low_watermark(-1).with_error_code(tally(
                        broker,
                        ApiKey::DeleteRecords,
                        code,
                    ))
                }
            });
        }
        topics.push(
            DeleteRecordsTopicResult::default()
                .with_name(topic.name)
                .with_partitions(partitions),
        );
    }
    DeleteRecordsResponse::default().with_topics(topics)
}

/// Moves one partition's log start to the requested offset and returns the new log start.
async fn delete_below(
    broker: &Broker,
    info: &TopicInfo,
    request: &DeleteRecordsPartition,
) -> Result<i64, i16> {
    let index = request.partition_index;
    let partition = u32::try_from(index)
        .ok()
        .filter(|p| *p < info.partitions)
        .ok_or(ResponseError::UnknownTopicOrPartition.code())?;
    let topic = info.name.as_str();
    // Kafka sends DeleteRecords to each partition's leader; another replica sends it there.
    if !broker.cluster.is_local_leader(topic, index) {
        return Err(ResponseError::NotLeaderOrFollower.code());
    }
    let bounds = broker
        .backend
        .bounds(topic, partition)
        .await
        .map_err(|e| backend_error_code(&e))?;
    let offset = match request.offset {
        HIGH_WATERMARK => bounds.high_watermark,
        o if (0..=bounds.high_watermark).contains(&o) => o,
        _ => return Err(ResponseError::OffsetOutOfRange.code()),
    };
    if offset <= bounds.log_start {
        return Ok(bounds.log_start);
    }
    broker
        .topic_state
        .advance_log_start(topic, partition, offset)
        .await
        .map_err(|e| backend_error_code(&e))?;
    // Produce answers report the new log start at once.
    broker.partitions.get(topic, index).cache_log_start(offset);
    tracing::debug!(topic, partition, offset, "moved the log start offset");
    Ok(offset)
}
