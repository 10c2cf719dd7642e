//! Topic and broker configuration as Kafka tools see it, and the Kafka topic configs that
//! CreateTopics accepts.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult,
};
use kafka_protocol::messages::{ApiKey, DescribeConfigsRequest, DescribeConfigsResponse};
use kafka_protocol::protocol::StrBytes;

use super::tally;
use crate::backend::{TopicInfo, TopicSettings};
use crate::broker::Broker;
use crate::error::backend_error_code;

const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;
/// `ConfigSource` values.
const SOURCE_TOPIC: i8 = 1;
const SOURCE_DEFAULT: i8 = 5;
/// `ConfigType` values.
const TYPE_STRING: i8 = 2;
const TYPE_INT: i8 = 3;
const TYPE_LONG: i8 = 5;

/// Kafka topic configs accepted at creation. Retention maps to Iggy's message expiry and
/// retention.bytes to Iggy's maximum topic size (for the whole topic, not per partition);
/// the others are accepted only with values the proxy actually honours.
pub fn topic_settings_from_configs<'a>(
    configs: impl Iterator<Item = (&'a str, Option<&'a str>)>,
) -> Result<TopicSettings, String> {
    let mut settings = TopicSettings::default();
    for (name, value) in configs {
        let Some(value) = value else { continue };
        match name {
            "retention.ms" => {
                let ms: i64 = value
                    .parse()
                    .map_err(|_| format!("retention.ms must be an integer, got {value:?}"))?;
                settings.retention_ms = (ms >= 0).then_some(ms);
            }
            "retention.bytes" => {
                let bytes: i64 = value
                    .parse()
                    .map_err(|_| format!("retention.bytes must be an integer, got {value:?}"))?;
                settings.max_bytes = u64::try_from(bytes).ok().filter(|b| *b > 0);
            }
            "cleanup.policy" if value == "delete" => {}
            "message.timestamp.type" if value == "CreateTime" => {}
            "compression.type"
            | "min.insync.replicas"
            | "max.message.bytes"
            | "segment.bytes"
            | "segment.ms"
            | "unclean.leader.election.enable" => {}
            "cleanup.policy" | "message.timestamp.type" => {
                return Err(format!("{name}={value} is not supported by the Iggy proxy"));
            }
            other => return Err(format!("unknown or unsupported topic config {other:?}")),
        }
    }
    Ok(settings)
}

pub async fn describe_configs(
    broker: &Broker,
    request: DescribeConfigsRequest,
) -> DescribeConfigsResponse {
    let mut results = Vec::with_capacity(request.resources.len());
    for resource in request.resources {
        let keys: Option<Vec<String>> = resource
            .configuration_keys
            .as_ref()
            .map(|k| k.iter().map(|s| s.to_string()).collect());
        let name = resource.resource_name.as_str().to_string();
        let entries = match resource.resource_type {
            RESOURCE_TOPIC => match broker.backend.describe_topic(&name).await {
                Ok(Some(info)) => Ok(topic_configs(&info)),
                Ok(None) => Err(ResponseError::UnknownTopicOrPartition.code()),
                Err(e) => Err(backend_error_code(&e)),
            },
            RESOURCE_BROKER if name.is_empty() || name == broker.config.broker_id.to_string() => {
                Ok(broker_configs(broker))
            }
            RESOURCE_BROKER => Err(ResponseError::InvalidRequest.code()),
            _ => Err(ResponseError::InvalidRequest.code()),
        };
        let mut result = DescribeConfigsResult::default()
            .with_resource_type(resource.resource_type)
            .with_resource_name(resource.resource_name);
        match entries {
            Ok(entries) => {
                let configs = entries
                    .into_iter()
                    .filter(|e| {
                        keys.as_ref()
                            .is_none_or(|k| k.iter().any(|k| k == e.name.as_str()))
                    })
                    .collect();
                result = result.with_configs(configs);
            }
            Err(code) => {
                result = result.with_error_code(tally(broker, ApiKey::DescribeConfigs, code));
            }
        }
        results.push(result);
    }
    DescribeConfigsResponse::default().with_results(results)
}

fn entry(name: &str, value: String, source: i8, config_type: i8) -> DescribeConfigsResourceResult {
    DescribeConfigsResourceResult::default()
        .with_name(StrBytes::from_string(name.to_string()))
        .with_value(Some(StrBytes::from_string(value)))
        .with_read_only(true)
        .with_config_source(source)
        .with_config_type(config_type)
}

fn topic_configs(info: &TopicInfo) -> Vec<DescribeConfigsResourceResult> {
    let (retention, retention_source) = match info.retention_ms {
        Some(ms) => (ms.to_string(), SOURCE_TOPIC),
        None => ("-1".to_string(), SOURCE_DEFAULT),
    };
    let (bytes, bytes_source) = match info.max_bytes {
        Some(b) => (b.to_string(), SOURCE_TOPIC),
        None => ("-1".to_string(), SOURCE_DEFAULT),
    };
    vec![
        entry("retention.ms", retention, retention_source, TYPE_LONG),
        entry("retention.bytes", bytes, bytes_source, TYPE_LONG),
        entry(
            "cleanup.policy",
            "delete".into(),
            SOURCE_DEFAULT,
            TYPE_STRING,
        ),
        entry(
            "compression.type",
            "producer".into(),
            SOURCE_DEFAULT,
            TYPE_STRING,
        ),
        entry(
            "message.timestamp.type",
            "CreateTime".into(),
            SOURCE_DEFAULT,
            TYPE_STRING,
        ),
        entry("min.insync.replicas", "1".into(), SOURCE_DEFAULT, TYPE_INT),
    ]
}

fn broker_configs(broker: &Broker) -> Vec<DescribeConfigsResourceResult> {
    let c = &broker.config;
    vec![
        entry(
            "num.partitions",
            c.default_partitions.to_string(),
            SOURCE_DEFAULT,
            TYPE_INT,
        ),
        entry(
            "auto.create.topics.enable",
            c.auto_create_topics.to_string(),
            SOURCE_DEFAULT,
            1,
        ),
        entry(
            "socket.request.max.bytes",
            c.limits.max_frame_bytes.to_string(),
            SOURCE_DEFAULT,
            TYPE_INT,
        ),
        entry(
            "broker.id",
            c.broker_id.to_string(),
            SOURCE_DEFAULT,
            TYPE_INT,
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepted_and_refused_configs() {
        let s = topic_settings_from_configs(
            [
                ("retention.ms", Some("60000")),
                ("retention.bytes", Some("1048576")),
                ("cleanup.policy", Some("delete")),
            ]
            .into_iter(),
        )
        .unwrap();
        assert_eq!(s.retention_ms, Some(60000));
        assert_eq!(s.max_bytes, Some(1_048_576));
        assert!(
            topic_settings_from_configs([("cleanup.policy", Some("compact"))].into_iter()).is_err()
        );
        assert!(topic_settings_from_configs([("retention.ms", Some("soon"))].into_iter()).is_err());
        assert!(topic_settings_from_configs([("bogus", Some("1"))].into_iter()).is_err());
    }
}
