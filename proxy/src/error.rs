//! Kafka error codes: the single place where back-end failures become Kafka codes.

use kafka_protocol::error::ResponseError;

use crate::backend::BackendError;

/// Kafka error code for a back-end failure.
pub fn backend_error_code(e: &BackendError) -> i16 {
    backend_error(e).code()
}

/// Kafka error for a back-end failure.
pub fn backend_error(e: &BackendError) -> ResponseError {
    match e {
        BackendError::UnknownTopicOrPartition(_) => ResponseError::UnknownTopicOrPartition,
        BackendError::TopicAlreadyExists(_) => ResponseError::TopicAlreadyExists,
        BackendError::InvalidPartitions(_) => ResponseError::InvalidPartitions,
        BackendError::OffsetOutOfRange { .. } => ResponseError::OffsetOutOfRange,
        BackendError::InvalidRecord(_) => ResponseError::InvalidRecord,
        BackendError::InvalidRequest(_) => ResponseError::InvalidRequest,
        // Retriable: clients back off and retry, as they would while a broker restarts.
        BackendError::Unavailable(_) | BackendError::OutcomeUnknown(_) => {
            ResponseError::KafkaStorageError
        }
        BackendError::Internal(_) => ResponseError::UnknownServerError,
    }
}

/// Name of an error code for metrics and logs (`UnknownTopicOrPartition`).
pub fn error_name(code: i16) -> String {
    match ResponseError::try_from_code(code) {
        // `Unknown(1234)` for codes the crate does not know.
        Some(e) => format!("{e:?}"),
        None => "None".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(error_name(3), "UnknownTopicOrPartition");
        assert_eq!(error_name(0), "None");
    }

    #[test]
    fn unavailable_is_retriable() {
        let code = backend_error_code(&BackendError::Unavailable("down".into()));
        assert!(ResponseError::try_from_code(code).unwrap().is_retriable());
    }
}
