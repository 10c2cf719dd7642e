//! FindCoordinator: which replica coordinates a consumer group (v0-3 one key, v4+ a batch).
//!
//! Transactions are not served: a transaction-coordinator lookup gets the fatal
//! TRANSACTIONAL_ID_AUTHORIZATION_FAILED, so transactional producers fail at once instead of
//! retrying a retriable COORDINATOR_NOT_AVAILABLE forever.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{ApiKey, BrokerId, FindCoordinatorRequest, FindCoordinatorResponse};
use kafka_protocol::protocol::StrBytes;

use super::groups::coordinate;
use super::tally;
use crate::broker::Broker;
use crate::groups::offsets_log::OFFSETS_TOPIC;

const KEY_GROUP: i8 = 0;
const KEY_TRANSACTION: i8 = 1;

/// Lookup result for one key: the coordinator's address, or an error with a message.
async fn find(broker: &Broker, listener: &str, key_type: i8, key: &str) -> Coordinator {
    let base = Coordinator::default()
        .with_key(StrBytes::from_string(key.to_string()))
        .with_node_id(BrokerId(-1))
        .with_port(-1);
    let fail = |e: ResponseError, message: &str| {
        base.clone()
            .with_error_code(tally(broker, ApiKey::FindCoordinator, e.code()))
            .with_error_message(Some(StrBytes::from_string(message.to_string())))
    };
    match key_type {
        KEY_GROUP => {}
        KEY_TRANSACTION => {
            return fail(
                ResponseError::TransactionalIdAuthorizationFailed,
                "transactions are not supported by kafka-iggy-proxy",
            )
        }
        other => {
            return fail(
                ResponseError::InvalidRequest,
                &format!("unsupported key type {other}"),
            )
        }
    }
    let coordinator = broker
        .cluster
        .group_coordinator(
            OFFSETS_TOPIC,
            key,
            broker.config.groups.offsets_topic_partitions,
        )
        .clone();
    let coordinator = broker
        .cluster
        .broker_on(listener, coordinator.id)
        .unwrap_or(coordinator);
    if coordinator.id == broker.cluster.this_broker().id {
        // Load the group's offsets now, so the client's next request does not wait for it.
        if let Err(e) = coordinate(broker, key).await {
            return fail(e, "the group coordinator is not available yet");
        }
    }
    base.with_node_id(BrokerId(coordinator.id))
        .with_host(StrBytes::from_string(coordinator.host))
        .with_port(coordinator.port)
}

/// The coordinator's address is the one on `listener`, the listener the client connected to.
pub async fn find_coordinator(
    broker: &Broker,
    listener: &str,
    version: i16,
    r: FindCoordinatorRequest,
) -> FindCoordinatorResponse {
    if version >= 4 {
        let mut coordinators = Vec::with_capacity(r.coordinator_keys.len());
        for key in &r.coordinator_keys {
            coordinators.push(find(broker, listener, r.key_type, key.as_str()).await);
        }
        return FindCoordinatorResponse::default().with_coordinators(coordinators);
    }
    let c = find(broker, listener, r.key_type, r.key.as_str()).await;
    let response = FindCoordinatorResponse::default()
        .with_error_code(c.error_code)
        .with_node_id(c.node_id)
        .with_host(c.host)
        .with_port(c.port);
    if version >= 1 {
        response.with_error_message(c.error_message)
    } else {
        response
    }
}
