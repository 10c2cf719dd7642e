//! Kafka record ⇄ Iggy message mapping.
//!
//! The goal is that Iggy-native consumers read what Kafka producers wrote, and that every
//! `StoredRecord` comes back exactly as it went in. Most records take the *native* form:
//!
//! * payload = the Kafka value bytes;
//! * user header `kafka.key` (raw bytes) = the Kafka key, absent for a null key;
//! * one user header per Kafka header, same name (string key), raw-bytes value;
//! * `origin_timestamp` = CreateTime in microseconds.
//!
//! Iggy's limits force a few markers, all under the reserved `kafka.` prefix:
//!
//! * `kafka.value` = `"null"` (tombstone) or `"empty"` (zero-length value): Iggy payloads must be
//!   non-empty, so the payload is then the single byte `0x00`.
//! * `kafka.order`: user headers are a sorted map, so when the producer's header order is not
//!   sorted by name, this raw header holds, for each Kafka header in producer order, its index in
//!   name order (one byte each).
//! * `kafka.timestamp` (int64): a CreateTime that has no microsecond `u64` form (zero, negative,
//!   or beyond year 500,000) is kept here verbatim; `origin_timestamp` is then 0.
//!
//! A record that still does not fit (empty or > 255 B key, null/empty/> 255 B header value,
//! empty/> 255 B header name or one starting with `kafka.`, repeated header names, more than 255
//! unsorted headers, or more than 100 000 B of user headers in all) is written whole as an
//! *envelope* (see [`encode_envelope`]) with the single user header `kafka.format` =
//! `"envelope-v1"`.
//!
//! Reading never fails: a message without our markers is a native Iggy message (null key, value =
//! payload, its user headers as Kafka headers) and a marker that does not parse is passed through
//! as an ordinary header, so one odd message cannot wedge a consumer.

use std::collections::BTreeMap;

use bytes::{BufMut, Bytes, BytesMut};
use iggy::prelude::{
    HeaderKey, HeaderKind, HeaderValue, IggyMessage, MAX_PAYLOAD_SIZE, MAX_USER_HEADERS_SIZE,
};

use crate::backend::{BackendError, StoredRecord};

/// Reserved prefix: Kafka headers with this prefix always go into an envelope.
pub(crate) const RESERVED_PREFIX: &str = "kafka.";
pub(crate) const KEY_HEADER: &str = "kafka.key";
pub(crate) const VALUE_HEADER: &str = "kafka.value";
pub(crate) const FORMAT_HEADER: &str = "kafka.format";
pub(crate) const ORDER_HEADER: &str = "kafka.order";
pub(crate) const TIMESTAMP_HEADER: &str = "kafka.timestamp";
pub(crate) const ENVELOPE_V1: &str = "envelope-v1";
const VALUE_NULL: &str = "null";
const VALUE_EMPTY: &str = "empty";
/// Payload standing in for a null or empty value (Iggy rejects empty payloads).
const PLACEHOLDER_PAYLOAD: &[u8] = &[0];
/// Iggy's bound on a user header key or value, in bytes.
const MAX_HEADER_FIELD: usize = 255;
const ENVELOPE_VERSION: u8 = 1;

/// Builds the Iggy message for one Kafka record. Fails only when even the envelope would exceed
/// Iggy's payload limit.
pub(crate) fn encode_record(record: &StoredRecord) -> Result<IggyMessage, BackendError> {
    let (payload, headers, origin) = match native_form(record) {
        Some(native) => native,
        None => envelope_form(record),
    };
    if payload.len() > MAX_PAYLOAD_SIZE as usize {
        return Err(BackendError::InvalidRecord(format!(
            "record of {} bytes exceeds Iggy's payload limit of {MAX_PAYLOAD_SIZE} bytes",
            payload.len()
        )));
    }
    let user_headers = (!headers.is_empty()).then_some(headers);
    let mut message = IggyMessage::builder()
        .payload(payload)
        .maybe_user_headers(user_headers)
        .build()
        .map_err(|e| BackendError::InvalidRecord(format!("iggy rejected the record: {e}")))?;
    message.header.origin_timestamp = origin;
    Ok(message)
}

/// Reads a Kafka record back from an Iggy message (ours or written natively).
pub(crate) fn decode_message(message: &IggyMessage) -> StoredRecord {
    let headers = message
        .user_headers_map()
        .ok()
        .flatten()
        .unwrap_or_default();
    let reserved = |name: &str| headers.get(&string_key(name)?);
    if reserved(FORMAT_HEADER).map(HeaderValue::as_bytes) == Some(ENVELOPE_V1.as_bytes()) {
        if let Some(record) = decode_envelope(&message.payload) {
            return record;
        }
    }

    let mut consumed: Vec<&'static str> = Vec::new();
    let key = reserved(KEY_HEADER).map(|k| {
        consumed.push(KEY_HEADER);
        k.value()
    });
    let value = match reserved(VALUE_HEADER).map(HeaderValue::as_bytes) {
        Some(v) if v == VALUE_NULL.as_bytes() => {
            consumed.push(VALUE_HEADER);
            None
        }
        Some(v) if v == VALUE_EMPTY.as_bytes() => {
            consumed.push(VALUE_HEADER);
            Some(Bytes::new())
        }
        _ => Some(message.payload.clone()),
    };
    let timestamp_ms = match reserved(TIMESTAMP_HEADER).map(HeaderValue::as_int64) {
        Some(Ok(ms)) => {
            consumed.push(TIMESTAMP_HEADER);
            ms
        }
        _ => {
            let micros = match message.header.origin_timestamp {
                0 => message.header.timestamp,
                origin => origin,
            };
            (micros / 1000) as i64
        }
    };

    let plain = |skip: &[&str]| -> Vec<(String, Option<Bytes>)> {
        headers
            .iter()
            .filter(|(k, _)| !skip.iter().any(|name| is_string_key(k, name)))
            .map(|(k, v)| (header_name(k), Some(v.value())))
            .collect()
    };
    let mut kafka_headers = plain(&consumed);
    if let Some(order) = reserved(ORDER_HEADER).and_then(|v| v.as_raw().ok()) {
        consumed.push(ORDER_HEADER);
        // An order that does not fit stays an ordinary header (it was not written by us).
        if let Some(ordered) = apply_order(plain(&consumed), order) {
            kafka_headers = ordered;
        }
    }
    StoredRecord {
        key,
        value,
        headers: kafka_headers,
        timestamp_ms,
    }
}

type Encoded = (Bytes, BTreeMap<HeaderKey, HeaderValue>, u64);

fn native_form(record: &StoredRecord) -> Option<Encoded> {
    let mut headers = BTreeMap::new();
    if let Some(key) = &record.key {
        headers.insert(string_key(KEY_HEADER)?, raw_value(key)?);
    }
    for (name, value) in &record.headers {
        if name.starts_with(RESERVED_PREFIX) {
            return None;
        }
        let value = raw_value(value.as_ref()?)?;
        if headers.insert(string_key(name)?, value).is_some() {
            return None;
        }
    }
    let payload = match &record.value {
        None => {
            headers.insert(string_key(VALUE_HEADER)?, string_value(VALUE_NULL)?);
            Bytes::from_static(PLACEHOLDER_PAYLOAD)
        }
        Some(v) if v.is_empty() => {
            headers.insert(string_key(VALUE_HEADER)?, string_value(VALUE_EMPTY)?);
            Bytes::from_static(PLACEHOLDER_PAYLOAD)
        }
        Some(v) => v.clone(),
    };
    if let Some(order) = header_order(&record.headers)? {
        headers.insert(string_key(ORDER_HEADER)?, raw_value(&order)?);
    }
    let origin = match origin_micros(record.timestamp_ms) {
        Some(micros) => micros,
        None => {
            headers.insert(
                string_key(TIMESTAMP_HEADER)?,
                HeaderValue::from(record.timestamp_ms),
            );
            0
        }
    };
    if user_headers_size(&headers) > MAX_USER_HEADERS_SIZE as usize {
        return None;
    }
    Some((payload, headers, origin))
}

fn envelope_form(record: &StoredRecord) -> Encoded {
    let mut headers = BTreeMap::new();
    if let (Some(k), Some(v)) = (string_key(FORMAT_HEADER), string_value(ENVELOPE_V1)) {
        headers.insert(k, v);
    }
    let origin = origin_micros(record.timestamp_ms).unwrap_or(0);
    (encode_envelope(record), headers, origin)
}

/// CreateTime as `origin_timestamp` microseconds; `None` when it has no faithful `u64` form.
/// Zero is excluded because a zero `origin_timestamp` means "not set" to Iggy readers.
fn origin_micros(timestamp_ms: i64) -> Option<u64> {
    u64::try_from(timestamp_ms)
        .ok()
        .filter(|ms| *ms > 0)
        .and_then(|ms| ms.checked_mul(1000))
}

/// The `kafka.order` value: `Some(None)` when the headers are already in name order (nothing to
/// record), `None` when there are too many to index with one byte each in a 255-byte value.
/// Names are unique here.
fn header_order(headers: &[(String, Option<Bytes>)]) -> Option<Option<Vec<u8>>> {
    if headers.windows(2).all(|w| w[0].0 <= w[1].0) {
        return Some(None);
    }
    if headers.len() > MAX_HEADER_FIELD {
        return None;
    }
    let mut sorted: Vec<&str> = headers.iter().map(|(n, _)| n.as_str()).collect();
    sorted.sort_unstable();
    let order = headers
        .iter()
        .map(|(n, _)| sorted.binary_search(&n.as_str()).ok().map(|i| i as u8))
        .collect::<Option<Vec<u8>>>()?;
    Some(Some(order))
}

/// Reorders headers (given in name order) by a `kafka.order` value; `None` if it is not a
/// permutation of the right length.
fn apply_order(
    sorted: Vec<(String, Option<Bytes>)>,
    order: &[u8],
) -> Option<Vec<(String, Option<Bytes>)>> {
    if order.len() != sorted.len() {
        return None;
    }
    let mut slots: Vec<Option<(String, Option<Bytes>)>> = sorted.into_iter().map(Some).collect();
    order
        .iter()
        .map(|&i| slots.get_mut(i as usize)?.take())
        .collect()
}

/// Size of the user headers on the wire: kind (1) + length (4) + bytes, for key and value.
fn user_headers_size(headers: &BTreeMap<HeaderKey, HeaderValue>) -> usize {
    headers
        .iter()
        .map(|(k, v)| 10 + k.as_bytes().len() + v.as_bytes().len())
        .sum()
}

fn string_key(name: &str) -> Option<HeaderKey> {
    HeaderKey::try_from(name).ok()
}

fn string_value(value: &str) -> Option<HeaderValue> {
    HeaderValue::try_from(value).ok()
}

/// Raw header value of 1..=255 bytes.
fn raw_value(bytes: &[u8]) -> Option<HeaderValue> {
    HeaderValue::try_from(bytes).ok()
}

fn is_string_key(key: &HeaderKey, name: &str) -> bool {
    key.kind() == HeaderKind::String && key.as_bytes() == name.as_bytes()
}

/// Kafka header name for an Iggy user header key of any kind.
fn header_name(key: &HeaderKey) -> String {
    match key.kind() {
        HeaderKind::String | HeaderKind::Raw => String::from_utf8_lossy(key.as_bytes()).into(),
        _ => key.to_string_value(),
    }
}

/// Serializes a whole record into the envelope-v1 payload. All integers are big-endian:
///
/// ```text
/// u8   version (1)
/// i64  timestamp_ms
/// i32  key length (-1 = null), then the key bytes
/// i32  value length (-1 = null), then the value bytes
/// u32  header count, then per header:
///      u32 name length, name (UTF-8); i32 value length (-1 = null), value bytes
/// ```
///
/// Nothing may follow the last header. The user header `kafka.format` = `"envelope-v1"` names
/// the format; the leading version byte lets a future format be told apart inside the payload.
pub(crate) fn encode_envelope(record: &StoredRecord) -> Bytes {
    let size = 1
        + 8
        + 8
        + record.key.as_ref().map_or(0, Bytes::len)
        + record.value.as_ref().map_or(0, Bytes::len)
        + 4
        + record
            .headers
            .iter()
            .map(|(n, v)| 8 + n.len() + v.as_ref().map_or(0, Bytes::len))
            .sum::<usize>();
    let mut buf = BytesMut::with_capacity(size);
    buf.put_u8(ENVELOPE_VERSION);
    buf.put_i64(record.timestamp_ms);
    put_nullable(&mut buf, record.key.as_deref());
    put_nullable(&mut buf, record.value.as_deref());
    buf.put_u32(record.headers.len() as u32);
    for (name, value) in &record.headers {
        buf.put_u32(name.len() as u32);
        buf.put_slice(name.as_bytes());
        put_nullable(&mut buf, value.as_deref());
    }
    buf.freeze()
}

fn put_nullable(buf: &mut BytesMut, bytes: Option<&[u8]>) {
    match bytes {
        None => buf.put_i32(-1),
        Some(b) => {
            buf.put_i32(b.len() as i32);
            buf.put_slice(b);
        }
    }
}

/// Parses an envelope-v1 payload; `None` when it is malformed in any way (short, trailing bytes,
/// bad lengths, non-UTF-8 names, unknown version).
pub(crate) fn decode_envelope(payload: &Bytes) -> Option<StoredRecord> {
    let mut r = Reader {
        buf: payload,
        pos: 0,
    };
    if r.take(1)?[0] != ENVELOPE_VERSION {
        return None;
    }
    let timestamp_ms = i64::from_be_bytes(r.take(8)?.try_into().ok()?);
    let key = r.nullable()?;
    let value = r.nullable()?;
    let count = r.u32()? as usize;
    // Each header needs at least 8 bytes, so a count the payload cannot hold is rejected before
    // anything is allocated for it.
    if count > r.remaining() / 8 {
        return None;
    }
    let mut headers = Vec::with_capacity(count);
    for _ in 0..count {
        let len = r.u32()? as usize;
        let name = std::str::from_utf8(r.take(len)?).ok()?.to_string();
        headers.push((name, r.nullable()?));
    }
    if r.remaining() != 0 {
        return None;
    }
    Some(StoredRecord {
        key,
        value,
        headers,
        timestamp_ms,
    })
}

struct Reader<'a> {
    buf: &'a Bytes,
    pos: usize,
}

impl Reader<'_> {
    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn take(&mut self, n: usize) -> Option<&[u8]> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|end| *end <= self.buf.len())?;
        let slice = &self.buf[self.pos..end];
        self.pos = end;
        Some(slice)
    }

    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_be_bytes(self.take(4)?.try_into().ok()?))
    }

    /// `Some(None)` for a null (-1) field, `None` when malformed.
    fn nullable(&mut self) -> Option<Option<Bytes>> {
        let len = i32::from_be_bytes(self.take(4)?.try_into().ok()?);
        if len == -1 {
            return Some(None);
        }
        let len = usize::try_from(len).ok()?;
        let start = self.pos;
        self.take(len)?;
        Some(Some(self.buf.slice(start..start + len)))
    }
}
