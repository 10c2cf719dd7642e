//! The one place where Iggy errors become `BackendError`s. Iggy reports failures as numeric codes
//! that the SDK turns back into `IggyError` variants (their fields are defaults, not the server's
//! values), so only the variant matters here.

use iggy::prelude::IggyError;

use crate::backend::BackendError;

/// Errors that mean the connection (not the request) failed: the client is rebuilt and the
/// caller sees `Unavailable`, which Kafka clients retry.
pub(crate) fn is_connection_error(err: &IggyError) -> bool {
    matches!(
        err,
        IggyError::Disconnected
            | IggyError::NotConnected
            | IggyError::CannotEstablishConnection
            | IggyError::ConnectionClosed
            | IggyError::EmptyResponse
            | IggyError::TcpError
            | IggyError::StaleClient
            | IggyError::ClientShutdown
            | IggyError::Unauthenticated
            | IggyError::IoError(_)
    )
}

/// Maps an Iggy error about `subject` (a topic, `topic-partition` or stream name) to a
/// `BackendError`.
pub(crate) fn map_error(err: IggyError, subject: &str) -> BackendError {
    use IggyError as E;
    let code = err.as_code();
    match err {
        e if is_connection_error(&e) => BackendError::Unavailable(format!("iggy: {e}")),
        E::ShardCommunicationError | E::TaskTimeout => {
            BackendError::Unavailable(format!("iggy: {err}"))
        }
        E::InvalidCredentials | E::InvalidUsername | E::InvalidPassword | E::UserInactive => {
            BackendError::Unavailable(format!("iggy login failed: {err}"))
        }
        E::StreamIdNotFound(_)
        | E::StreamNameNotFound(_)
        | E::TopicIdNotFound(..)
        | E::TopicNameNotFound(..)
        | E::PartitionNotFound(..)
        | E::NoPartitions(..)
        | E::ShardNotFound(..)
        | E::ResourceNotFound(_) => BackendError::UnknownTopicOrPartition(subject.to_string()),
        E::TopicNameAlreadyExists(..) => BackendError::TopicAlreadyExists(subject.to_string()),
        E::InvalidPartitionsCount | E::TooManyPartitions => {
            BackendError::InvalidPartitions(format!("{subject}: {err}"))
        }
        E::TooBigUserHeaders
        | E::TooBigMessagePayload
        | E::InvalidMessagePayloadLength
        | E::EmptyMessagePayload
        | E::InvalidHeaderKey
        | E::InvalidHeaderValue
        | E::InvalidHeaderKind(_)
        | E::InvalidKeyValueLength
        | E::TooSmallMessage(..) => BackendError::InvalidRecord(format!("{subject}: {err}")),
        E::InvalidTopicSize(..)
        | E::InvalidTopicName
        | E::InvalidStreamName
        | E::InvalidIdentifier
        | E::InvalidReplicationFactor
        | E::InvalidOffset(_)
        | E::InvalidMessagesCount
        | E::TooManyMessages
        | E::InvalidCommand
        | E::InvalidFormat => BackendError::InvalidRequest(format!("{subject}: {err}")),
        other => BackendError::Internal(format!("{subject}: iggy error {code}: {other}")),
    }
}
