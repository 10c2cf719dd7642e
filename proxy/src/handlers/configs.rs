//! Topic and broker configuration as Kafka tools see and change it: DescribeConfigs,
//! AlterConfigs and IncrementalAlterConfigs. Which topic configs exist and where each is kept
//! is `crate::topic_config`'s business; broker configs are read-only (the proxy's own
//! configuration file decides them).

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult,
};
use kafka_protocol::messages::{
    alter_configs_response, incremental_alter_configs_response, AlterConfigsRequest,
    AlterConfigsResponse, ApiKey, DescribeConfigsRequest, DescribeConfigsResponse,
    IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse,
};
use kafka_protocol::protocol::StrBytes;

use super::tally;
use crate::backend::{BackendError, TopicInfo, TopicSettings};
use crate::broker::{is_internal_topic, Broker};
use crate::error::backend_error_code;
use crate::topic_config::{
    lookup, split_list, TopicConfigs, TOPIC_CONFIGS, TYPE_BOOLEAN, TYPE_INT,
};

const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;
/// `ConfigSource` values.
const SOURCE_TOPIC: i8 = 1;
const SOURCE_DEFAULT: i8 = 5;
/// IncrementalAlterConfigs operations.
const OP_SET: i8 = 0;
const OP_DELETE: i8 = 1;
const OP_APPEND: i8 = 2;
const OP_SUBTRACT: i8 = 3;

type Failure = (i16, Option<String>);

fn failure(code: ResponseError, message: impl Into<String>) -> Failure {
    (code.code(), Some(message.into()))
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
        let name = resource.resource_name.as_str();
        let entries = match resource.resource_type {
            RESOURCE_TOPIC => match current(broker, name).await {
                Ok((_, configs)) => Ok(topic_configs(&configs)),
                Err((code, _)) => Err(code),
            },
            RESOURCE_BROKER if name.is_empty() || name == broker.config.broker_id.to_string() => {
                Ok(broker_configs(broker))
            }
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

/// AlterConfigs: the configs given replace every topic-level config of the resource.
pub async fn alter_configs(broker: &Broker, request: AlterConfigsRequest) -> AlterConfigsResponse {
    let mut responses = Vec::with_capacity(request.resources.len());
    for resource in request.resources {
        let given: Vec<(String, Option<String>)> = resource
            .configs
            .iter()
            .map(|c| (c.name.to_string(), c.value.as_ref().map(|v| v.to_string())))
            .collect();
        let outcome = alter(
            broker,
            resource.resource_type,
            resource.resource_name.as_str(),
            &given,
            request.validate_only,
            |configs| {
                *configs = TopicConfigs::parse(
                    given
                        .iter()
                        .map(|(name, value)| (name.as_str(), value.as_deref())),
                )
                .map_err(|m| failure(ResponseError::InvalidConfig, m))?;
                Ok(())
            },
        )
        .await;
        let (code, message) = outcome.err().unwrap_or((0, None));
        responses.push(
            alter_configs_response::AlterConfigsResourceResponse::default()
                .with_resource_type(resource.resource_type)
                .with_resource_name(resource.resource_name)
                .with_error_code(tally(broker, ApiKey::AlterConfigs, code))
                .with_error_message(message.map(StrBytes::from_string)),
        );
    }
    AlterConfigsResponse::default().with_responses(responses)
}

/// IncrementalAlterConfigs: SET, DELETE (back to default), APPEND and SUBTRACT (list configs
/// only) applied to the topic's current configs.
pub async fn incremental_alter_configs(
    broker: &Broker,
    request: IncrementalAlterConfigsRequest,
) -> IncrementalAlterConfigsResponse {
    let mut responses = Vec::with_capacity(request.resources.len());
    for resource in request.resources {
        let ops: Vec<(String, i8, Option<String>)> = resource
            .configs
            .iter()
            .map(|c| {
                (
                    c.name.to_string(),
                    c.config_operation,
                    c.value.as_ref().map(|v| v.to_string()),
                )
            })
            .collect();
        let given: Vec<(String, Option<String>)> = ops
            .iter()
            .map(|(name, _, value)| (name.clone(), value.clone()))
            .collect();
        let outcome = alter(
            broker,
            resource.resource_type,
            resource.resource_name.as_str(),
            &given,
            request.validate_only,
            |configs| {
                for (i, (name, _, _)) in ops.iter().enumerate() {
                    if ops[..i].iter().any(|(n, _, _)| n == name) {
                        return Err(failure(
                            ResponseError::InvalidRequest,
                            format!("Error due to duplicate config keys: {name}"),
                        ));
                    }
                }
                for (name, op, value) in &ops {
                    apply_op(configs, name, *op, value.as_deref())?;
                }
                Ok(())
            },
        )
        .await;
        let (code, message) = outcome.err().unwrap_or((0, None));
        responses.push(
            incremental_alter_configs_response::AlterConfigsResourceResponse::default()
                .with_resource_type(resource.resource_type)
                .with_resource_name(resource.resource_name)
                .with_error_code(tally(broker, ApiKey::IncrementalAlterConfigs, code))
                .with_error_message(message.map(StrBytes::from_string)),
        );
    }
    IncrementalAlterConfigsResponse::default().with_responses(responses)
}

fn apply_op(
    configs: &mut TopicConfigs,
    name: &str,
    op: i8,
    value: Option<&str>,
) -> Result<(), Failure> {
    let invalid = |m: String| failure(ResponseError::InvalidConfig, m);
    let def = lookup(name).ok_or_else(|| invalid(format!("Unknown topic config name: {name}")))?;
    let current = || split_list(&configs.get(name).unwrap_or_else(|| def.default.to_string()));
    match op {
        OP_SET => configs
            .set(name, value.unwrap_or_default())
            .map_err(invalid),
        OP_DELETE => configs.unset(name).map_err(invalid),
        OP_APPEND | OP_SUBTRACT if !def.is_list() => Err(invalid(format!(
            "Can't {} to key {name} because its type is not LIST.",
            if op == OP_APPEND {
                "APPEND"
            } else {
                "SUBTRACT"
            }
        ))),
        OP_APPEND => {
            let mut items = current();
            items.extend(split_list(value.unwrap_or_default()));
            configs.set(name, &items.join(",")).map_err(invalid)
        }
        OP_SUBTRACT => {
            let removed = split_list(value.unwrap_or_default());
            let items: Vec<String> = current()
                .into_iter()
                .filter(|i| !removed.contains(i))
                .collect();
            configs.set(name, &items.join(",")).map_err(invalid)
        }
        other => Err(failure(
            ResponseError::InvalidRequest,
            format!("Unknown config operation {other}"),
        )),
    }
}

/// Changes one resource's configs with `change`, or only checks the change when
/// `validate_only`. Refusals are logged at info with the reason.
async fn alter(
    broker: &Broker,
    resource_type: i8,
    name: &str,
    given: &[(String, Option<String>)],
    validate_only: bool,
    change: impl FnOnce(&mut TopicConfigs) -> Result<(), Failure>,
) -> Result<(), Failure> {
    let outcome = alter_resource(broker, resource_type, name, validate_only, change).await;
    if let Err((code, message)) = &outcome {
        tracing::info!(
            resource_type,
            resource = name,
            configs = ?given,
            error = %crate::error::error_name(*code),
            reason = message.as_deref().unwrap_or(""),
            "refused a config change"
        );
    }
    outcome
}

async fn alter_resource(
    broker: &Broker,
    resource_type: i8,
    name: &str,
    validate_only: bool,
    change: impl FnOnce(&mut TopicConfigs) -> Result<(), Failure>,
) -> Result<(), Failure> {
    match resource_type {
        RESOURCE_TOPIC => {}
        // Broker configs come from the proxy's configuration file; Kafka answers the same for
        // configs that cannot be updated dynamically.
        RESOURCE_BROKER => {
            return Err(failure(
                ResponseError::InvalidRequest,
                "Cannot update these configs dynamically: broker configs of the Iggy proxy are \
                 read-only (set them in the proxy's configuration)",
            ))
        }
        other => {
            return Err(failure(
                ResponseError::InvalidRequest,
                format!("resource type {other} cannot be altered"),
            ))
        }
    }
    if is_internal_topic(name) {
        return Err(failure(
            ResponseError::InvalidRequest,
            format!("{name} is internal to the proxy and cannot be changed"),
        ));
    }
    let (_, mut configs) = current(broker, name).await?;
    change(&mut configs)?;
    if validate_only {
        return Ok(());
    }
    let settings = TopicSettings {
        partitions: 0,
        retention_ms: configs.retention_ms,
        max_bytes: configs.iggy_max_bytes(),
        configs: configs.kept,
    };
    broker
        .backend
        .alter_topic(name, &settings)
        .await
        .map_err(|e| match e {
            // The store refused the settings (Iggy: a maximum size below one segment).
            BackendError::InvalidRequest(m) => failure(ResponseError::InvalidConfig, m),
            other => (backend_error_code(&other), Some(other.to_string())),
        })?;
    tracing::info!(topic = name, ?settings, "altered topic configs");
    Ok(())
}

/// The topic and its topic-level configs: retention from Iggy, the rest from the topic state.
async fn current(broker: &Broker, name: &str) -> Result<(TopicInfo, TopicConfigs), Failure> {
    let backend_failure = |e: BackendError| (backend_error_code(&e), Some(e.to_string()));
    let info = broker
        .backend
        .describe_topic(name)
        .await
        .map_err(backend_failure)?
        .ok_or_else(|| {
            failure(
                ResponseError::UnknownTopicOrPartition,
                format!("topic '{name}' does not exist"),
            )
        })?;
    let kept = broker
        .topic_state
        .configs(name)
        .await
        .map_err(backend_failure)?;
    let configs = TopicConfigs {
        retention_ms: info.retention_ms,
        retention_bytes: info.max_bytes.and_then(|b| i64::try_from(b).ok()),
        kept,
    };
    Ok((info, configs))
}

fn entry(name: &str, value: String, source: i8, config_type: i8) -> DescribeConfigsResourceResult {
    DescribeConfigsResourceResult::default()
        .with_name(StrBytes::from_string(name.to_string()))
        .with_value(Some(StrBytes::from_string(value)))
        .with_read_only(true)
        .with_config_source(source)
        .with_config_type(config_type)
}

/// Every Kafka topic config: the topic-level value where one is set, Kafka's default otherwise.
fn topic_configs(configs: &TopicConfigs) -> Vec<DescribeConfigsResourceResult> {
    TOPIC_CONFIGS
        .iter()
        .map(|def| {
            let (value, source) = match configs.get(def.name) {
                Some(v) => (v, SOURCE_TOPIC),
                None => (def.default.to_string(), SOURCE_DEFAULT),
            };
            entry(def.name, value, source, def.config_type()).with_read_only(false)
        })
        .collect()
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
            TYPE_BOOLEAN,
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
    use crate::topic_config::{RETENTION_BYTES, RETENTION_MS};

    #[test]
    fn incremental_operations() {
        let mut c = TopicConfigs::default();
        apply_op(&mut c, "cleanup.policy", OP_APPEND, Some("compact")).unwrap();
        assert_eq!(c.get("cleanup.policy").as_deref(), Some("delete,compact"));
        apply_op(&mut c, "cleanup.policy", OP_SUBTRACT, Some("delete")).unwrap();
        assert_eq!(c.get("cleanup.policy").as_deref(), Some("compact"));
        // Subtracting the last item leaves an empty list, which Kafka refuses.
        assert!(apply_op(&mut c, "cleanup.policy", OP_SUBTRACT, Some("compact")).is_err());
        apply_op(&mut c, RETENTION_MS, OP_SET, Some("1000")).unwrap();
        assert_eq!(c.retention_ms, Some(1000));
        apply_op(&mut c, RETENTION_MS, OP_DELETE, None).unwrap();
        assert_eq!(c.retention_ms, None);
        let (code, _) = apply_op(&mut c, RETENTION_BYTES, OP_APPEND, Some("1")).unwrap_err();
        assert_eq!(code, ResponseError::InvalidConfig.code());
        let (code, _) = apply_op(&mut c, "bogus", OP_SET, Some("1")).unwrap_err();
        assert_eq!(code, ResponseError::InvalidConfig.code());
        let (code, _) = apply_op(&mut c, RETENTION_MS, 9, Some("1")).unwrap_err();
        assert_eq!(code, ResponseError::InvalidRequest.code());
    }
}
