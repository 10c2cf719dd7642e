//! Unit tests that need no server: record mapping (explicit edge cases in `mapping`, a seeded
//! random round trip in `random`), error mapping and bound derivation (here).

mod mapping;
mod random;

use std::collections::BTreeMap;

use bytes::Bytes;
use iggy::prelude::{HeaderKey, HeaderValue, IggyError, IggyMessage, PolledMessages};

use super::error::map_error;
use super::log::bounds_from_first_poll;
use super::mapping::{decode_message, encode_record, ENVELOPE_V1, FORMAT_HEADER};
use crate::backend::{BackendError, StoredRecord};

const TS: i64 = 1_700_000_000_123;
/// What the server stamps as append time in these tests (µs).
const SERVER_TIME_US: u64 = 1_800_000_000_000_000;

fn record(
    key: Option<&[u8]>,
    value: Option<&[u8]>,
    headers: &[(&str, Option<&[u8]>)],
) -> StoredRecord {
    StoredRecord {
        key: key.map(Bytes::copy_from_slice),
        value: value.map(Bytes::copy_from_slice),
        headers: headers
            .iter()
            .map(|(n, v)| (n.to_string(), v.map(Bytes::copy_from_slice)))
            .collect(),
        timestamp_ms: TS,
    }
}

/// What a consumer gets back: the message goes through the wire format, as it would through
/// the server, which stamps offset and append time.
fn through_server(message: &IggyMessage, offset: u64) -> IggyMessage {
    let mut m = IggyMessage::from_bytes(message.to_bytes()).expect("wire round trip");
    m.header.offset = offset;
    m.header.timestamp = SERVER_TIME_US;
    m
}

fn round_trip(r: &StoredRecord) -> StoredRecord {
    let message = encode_record(r).expect("encodable");
    decode_message(&through_server(&message, 7))
}

fn user_headers(m: &IggyMessage) -> BTreeMap<HeaderKey, HeaderValue> {
    m.user_headers_map()
        .expect("headers parse")
        .unwrap_or_default()
}

fn header<'a>(headers: &'a BTreeMap<HeaderKey, HeaderValue>, name: &str) -> Option<&'a [u8]> {
    headers
        .get(&HeaderKey::try_from(name).expect("key"))
        .map(|v| v.as_bytes())
}

fn is_envelope(m: &IggyMessage) -> bool {
    header(&user_headers(m), FORMAT_HEADER) == Some(ENVELOPE_V1.as_bytes())
}

#[test]
fn errors_map_by_kind() {
    use iggy::prelude::Identifier;
    let id = || Identifier::named("t").expect("id");
    assert!(matches!(
        map_error(IggyError::Disconnected, "t"),
        BackendError::Unavailable(_)
    ));
    assert!(matches!(
        map_error(IggyError::CannotEstablishConnection, "t"),
        BackendError::Unavailable(_)
    ));
    assert!(matches!(
        map_error(IggyError::TopicIdNotFound(id(), id()), "t"),
        BackendError::UnknownTopicOrPartition(s) if s == "t"
    ));
    assert!(matches!(
        map_error(IggyError::PartitionNotFound(3, id(), id()), "t-3"),
        BackendError::UnknownTopicOrPartition(s) if s == "t-3"
    ));
    assert!(matches!(
        map_error(IggyError::TopicNameAlreadyExists("t".into(), id()), "t"),
        BackendError::TopicAlreadyExists(_)
    ));
    assert!(matches!(
        map_error(IggyError::InvalidPartitionsCount, "t"),
        BackendError::InvalidPartitions(_)
    ));
    assert!(matches!(
        map_error(IggyError::TooBigUserHeaders, "t"),
        BackendError::InvalidRecord(_)
    ));
    assert!(matches!(
        map_error(IggyError::Unauthorized, "t"),
        BackendError::Internal(_)
    ));
    // Codes from the server arrive as variants with default fields.
    assert!(matches!(
        map_error(IggyError::from_code(2010), "t"),
        BackendError::UnknownTopicOrPartition(_)
    ));
}

fn polled(current_offset: u64, first: Option<u64>) -> PolledMessages {
    let messages = first
        .map(|offset| {
            let mut m = IggyMessage::builder()
                .payload(Bytes::from_static(b"x"))
                .build()
                .expect("message");
            m.header.offset = offset;
            vec![m]
        })
        .unwrap_or_default();
    PolledMessages {
        partition_id: 0,
        current_offset,
        count: messages.len() as u32,
        messages,
    }
}

#[test]
fn bounds_tell_empty_from_single_message_partitions() {
    let b = bounds_from_first_poll(&polled(0, None));
    assert_eq!((b.log_start, b.high_watermark), (0, 0));
    let b = bounds_from_first_poll(&polled(0, Some(0)));
    assert_eq!((b.log_start, b.high_watermark), (0, 1));
    let b = bounds_from_first_poll(&polled(9, Some(4)));
    assert_eq!((b.log_start, b.high_watermark), (4, 10));
    let b = bounds_from_first_poll(&polled(9, None));
    assert_eq!(
        (b.log_start, b.high_watermark),
        (10, 10),
        "everything expired"
    );
}
