//! SaslHandshake and SaslAuthenticate: the Kafka messages around a connection's SASL exchange
//! (`security::sasl` runs the exchange itself). On a listener without SASL both are answered
//! ILLEGAL_SASL_STATE, as Kafka answers them on a PLAINTEXT listener.

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{
    ApiKey, SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest,
    SaslHandshakeResponse,
};
use kafka_protocol::protocol::StrBytes;

use super::tally;
use crate::broker::Broker;
use crate::security::Session;

pub fn handshake(
    broker: &Broker,
    session: &Session,
    request: SaslHandshakeRequest,
) -> SaslHandshakeResponse {
    let Some(sasl) = &session.sasl else {
        let code = ResponseError::IllegalSaslState.code();
        return SaslHandshakeResponse::default().with_error_code(tally(
            broker,
            ApiKey::SaslHandshake,
            code,
        ));
    };
    let code = sasl
        .handshake(request.mechanism.as_str())
        .map_or_else(|e| e.code(), |_| 0);
    SaslHandshakeResponse::default()
        .with_error_code(tally(broker, ApiKey::SaslHandshake, code))
        .with_mechanisms(sasl.mechanisms().map(StrBytes::from_static_str).collect())
}

pub async fn authenticate(
    broker: &Broker,
    session: &Session,
    request: SaslAuthenticateRequest,
) -> SaslAuthenticateResponse {
    let Some(sasl) = &session.sasl else {
        let code = ResponseError::IllegalSaslState.code();
        return SaslAuthenticateResponse::default()
            .with_error_code(tally(broker, ApiKey::SaslAuthenticate, code))
            .with_error_message(Some(StrBytes::from_static_str(
                "SASL is not enabled on this listener",
            )));
    };
    let reply = sasl.authenticate(&request.auth_bytes).await;
    if let Some(user) = &reply.iggy_user {
        // From now on the Iggy user's permissions apply (`security::access`).
        session.access.act_as(user);
        session.access.refresh(&*broker.backend).await;
    }
    let (code, message) = match reply.error {
        None => (0, None),
        Some((error, message)) => {
            tracing::debug!(listener = %session.listener, error = %message, "SASL authentication failed");
            (error.code(), Some(StrBytes::from_string(message)))
        }
    };
    SaslAuthenticateResponse::default()
        .with_error_code(tally(broker, ApiKey::SaslAuthenticate, code))
        .with_error_message(message)
        .with_auth_bytes(Bytes::from(reply.bytes))
        .with_session_lifetime_ms(reply.session_lifetime_ms)
}
