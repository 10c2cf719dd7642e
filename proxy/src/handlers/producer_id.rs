//! InitProducerId for idempotent producers. Transactional ids are refused with a fatal error so
//! transactional clients fail fast instead of retrying forever.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{ApiKey, InitProducerIdRequest, InitProducerIdResponse, ProducerId};

use super::tally;
use crate::broker::Broker;

pub fn handle(broker: &Broker, request: InitProducerIdRequest) -> InitProducerIdResponse {
    if let Some(id) = &request.transactional_id {
        // As Kafka's transaction coordinator: an empty id is an invalid request.
        let error = if id.0.is_empty() {
            ResponseError::InvalidRequest
        } else {
            ResponseError::TransactionalIdAuthorizationFailed
        };
        return InitProducerIdResponse::default()
            .with_error_code(tally(broker, ApiKey::InitProducerId, error.code()))
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1);
    }
    // KIP-360: a producer that already has an id asks for an epoch bump after an error.
    let (id, epoch) = if request.producer_id.0 >= 0
        && request.producer_epoch >= 0
        && request.producer_epoch < i16::MAX - 1
    {
        (request.producer_id.0, request.producer_epoch + 1)
    } else {
        (broker.next_producer_id(), 0)
    };
    InitProducerIdResponse::default()
        .with_producer_id(ProducerId(id))
        .with_producer_epoch(epoch)
}
