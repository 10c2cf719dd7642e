//! Request decoding and response encoding on top of kafka-protocol.

use bytes::{Buf, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind, ResponseHeader, ResponseKind};
use kafka_protocol::protocol::{Decodable, Encodable};

use super::alloc_guard;

/// Why a request could not be decoded. The connection is closed, as a Kafka broker does.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("frame too short for a request header")]
    Short,
    #[error("unknown api key {0}")]
    UnknownApiKey(i16),
    #[error("malformed {key:?} v{version}: {reason}")]
    Malformed {
        key: ApiKey,
        version: i16,
        reason: String,
    },
}

/// The first four bytes of a request: enough to decide how to treat it before decoding more.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestPrefix {
    pub key: ApiKey,
    pub raw_key: i16,
    pub version: i16,
}

pub fn peek_prefix(frame: &[u8]) -> Result<RequestPrefix, DecodeError> {
    if frame.len() < 8 {
        return Err(DecodeError::Short);
    }
    let raw_key = i16::from_be_bytes([frame[0], frame[1]]);
    let version = i16::from_be_bytes([frame[2], frame[3]]);
    let key = ApiKey::try_from(raw_key).map_err(|_| DecodeError::UnknownApiKey(raw_key))?;
    Ok(RequestPrefix {
        key,
        raw_key,
        version,
    })
}

/// The correlation id sits right after key and version in every header version.
pub fn correlation_id(frame: &[u8]) -> Option<i32> {
    frame
        .get(4..8)
        .map(|b| i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

/// Decodes the header and body of a request whose version was already checked as served.
/// Bytes after the body are ignored, as Kafka brokers ignore them: librdkafka 2.16 sends
/// Metadata v12 requests with three extra bytes after the tagged fields, and a broker that
/// refused them would be unusable for every librdkafka client.
pub fn decode_request(
    prefix: RequestPrefix,
    mut frame: Bytes,
) -> Result<(RequestHeader, RequestKind), DecodeError> {
    let malformed = |e: anyhow::Error| DecodeError::Malformed {
        key: prefix.key,
        version: prefix.version,
        reason: e.to_string(),
    };
    let header_version = prefix.key.request_header_version(prefix.version);
    let (header, body) = alloc_guard::untrusted(|| {
        let header = RequestHeader::decode(&mut frame, header_version).map_err(malformed)?;
        let body =
            RequestKind::decode(prefix.key, &mut frame, prefix.version).map_err(malformed)?;
        Ok::<_, DecodeError>((header, body))
    })?;
    if frame.has_remaining() {
        tracing::debug!(
            api = ?prefix.key,
            version = prefix.version,
            trailing = frame.remaining(),
            "ignoring bytes after the request body"
        );
    }
    Ok((header, body))
}

/// Encodes a full response frame (size prefix, header, body). Fetch responses are sized from
/// their records up front so that large ones are not built by repeated doubling.
pub fn encode_response(
    key: ApiKey,
    version: i16,
    correlation_id: i32,
    body: &ResponseKind,
) -> anyhow::Result<Bytes> {
    let header_version = key.response_header_version(version);
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    let mut buf = BytesMut::with_capacity(size_hint(body));
    buf.extend_from_slice(&[0; 4]);
    header.encode(&mut buf, header_version)?;
    body.encode(&mut buf, version)?;
    let size = i32::try_from(buf.len() - 4)?;
    buf[..4].copy_from_slice(&size.to_be_bytes());
    Ok(buf.freeze())
}

/// Bytes a response will about take: its records plus some framing per partition.
fn size_hint(body: &ResponseKind) -> usize {
    const SMALL: usize = 256;
    const PER_PARTITION: usize = 128;
    match body {
        ResponseKind::Fetch(fetch) => {
            fetch
                .responses
                .iter()
                .flat_map(|t| &t.partitions)
                .map(|p| p.records.as_ref().map_or(0, |r| r.len()) + PER_PARTITION)
                .sum::<usize>()
                + SMALL
        }
        _ => SMALL,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_and_unknown_frames() {
        assert!(matches!(peek_prefix(&[0, 18]), Err(DecodeError::Short)));
        assert!(matches!(
            peek_prefix(&[0x7f, 0, 0, 0, 0, 0, 0, 1]),
            Err(DecodeError::UnknownApiKey(0x7f00))
        ));
    }

    /// A Metadata v1 request whose topic array claims 2^30 entries in a few bytes must be an
    /// error, not an abort from a huge allocation.
    #[test]
    fn huge_array_count_in_tiny_frame_is_an_error() {
        let mut frame = vec![0, 3, 0, 1, 0, 0, 0, 7, 0, 0];
        frame.extend_from_slice(&0x4000_0000i32.to_be_bytes());
        let frame = Bytes::from(frame);
        let prefix = peek_prefix(&frame).unwrap();
        let err = decode_request(prefix, frame).unwrap_err();
        assert!(matches!(err, DecodeError::Malformed { .. }), "{err}");
    }

    /// The same with a compact (flexible) array: Metadata v9 claiming 2^31 topics.
    #[test]
    fn huge_compact_array_count_is_an_error() {
        // key 3, version 9, correlation 7, client id null (-1), header tagged fields 0,
        // then topics as an unsigned varint of 2^31 + 1.
        let frame = Bytes::from(vec![
            0, 3, 0, 9, 0, 0, 0, 7, 0xff, 0xff, 0, 0x81, 0x80, 0x80, 0x80, 0x08,
        ]);
        let prefix = peek_prefix(&frame).unwrap();
        assert!(decode_request(prefix, frame).is_err());
    }

    /// What librdkafka 2.16 (confluent-kafka 2.16.1) sends for `list_topics()`: Metadata v12
    /// with all topics, followed by three bytes Kafka ignores.
    #[test]
    fn librdkafka_metadata_v12_with_trailing_bytes_decodes() {
        let frame = Bytes::from(vec![
            0x00, 0x03, 0x00, 0x0c, 0x00, 0x00, 0x00, 0x03, 0x00, 0x07, b'r', b'd', b'k', b'a',
            b'f', b'k', b'a', 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00,
        ]);
        let prefix = peek_prefix(&frame).unwrap();
        let (header, body) = decode_request(prefix, frame).unwrap();
        assert_eq!(header.correlation_id, 3);
        let RequestKind::Metadata(metadata) = body else {
            panic!("not metadata")
        };
        assert_eq!(metadata.topics, None, "all topics");
    }
}
