//! Explicit mapping cases: each form, each fallback, each limit on both sides.

use std::collections::BTreeMap;

use bytes::Bytes;
use iggy::prelude::{HeaderKey, HeaderValue, IggyMessage};

use super::*;
use crate::backend::iggy::mapping::*;

#[test]
fn plain_value_is_the_payload_with_no_headers() {
    let r = record(None, Some(b"hello"), &[]);
    let m = encode_record(&r).expect("encode");
    assert_eq!(m.payload.as_ref(), b"hello");
    assert!(m.user_headers.is_none());
    assert_eq!(m.header.origin_timestamp, TS as u64 * 1000);
    assert_eq!(round_trip(&r), r);
}

#[test]
fn key_and_headers_become_user_headers() {
    let r = record(
        Some(b"k1"),
        Some(b"v"),
        &[("a", Some(b"1")), ("b", Some(b"\x00\xff"))],
    );
    let m = encode_record(&r).expect("encode");
    let h = user_headers(&m);
    assert_eq!(header(&h, KEY_HEADER), Some(&b"k1"[..]));
    assert_eq!(header(&h, "a"), Some(&b"1"[..]));
    assert_eq!(header(&h, "b"), Some(&b"\x00\xff"[..]));
    assert_eq!(header(&h, ORDER_HEADER), None, "already in name order");
    assert_eq!(h.len(), 3);
    assert_eq!(m.payload.as_ref(), b"v");
    assert_eq!(round_trip(&r), r);
}

#[test]
fn unsorted_headers_keep_producer_order() {
    let r = record(
        None,
        Some(b"v"),
        &[
            ("zeta", Some(b"1")),
            ("alpha", Some(b"2")),
            ("mid", Some(b"3")),
        ],
    );
    let m = encode_record(&r).expect("encode");
    assert!(!is_envelope(&m));
    assert_eq!(
        header(&user_headers(&m), ORDER_HEADER),
        Some(&[2u8, 0, 1][..])
    );
    assert_eq!(round_trip(&r), r);
}

#[test]
fn tombstone_and_empty_value_use_a_placeholder_payload() {
    for (value, marker) in [(None, "null"), (Some(&b""[..]), "empty")] {
        let r = record(Some(b"k"), value, &[]);
        let m = encode_record(&r).expect("encode");
        assert_eq!(m.payload.as_ref(), &[0u8]);
        assert_eq!(
            header(&user_headers(&m), VALUE_HEADER),
            Some(marker.as_bytes())
        );
        assert_eq!(round_trip(&r), r);
    }
}

#[test]
fn a_value_of_one_zero_byte_is_not_a_tombstone() {
    let r = record(None, Some(&[0]), &[]);
    assert_eq!(round_trip(&r), r);
}

#[test]
fn what_does_not_fit_goes_into_an_envelope() {
    let long = vec![b'x'; 256];
    let max = vec![b'x'; 255];
    let many_unsorted: Vec<(String, Option<&[u8]>)> = (0..256)
        .rev()
        .map(|i| (format!("h{i:03}"), Some(&b"v"[..])))
        .collect();
    let many_unsorted: Vec<(&str, Option<&[u8]>)> = many_unsorted
        .iter()
        .map(|(n, v)| (n.as_str(), *v))
        .collect();
    let big_names: Vec<String> = (0..400).map(|i| format!("header-{i:04}")).collect();
    let too_big: Vec<(&str, Option<&[u8]>)> = big_names
        .iter()
        .map(|n| (n.as_str(), Some(&max[..])))
        .collect();
    let long_name = "n".repeat(256);
    let cases: Vec<(&str, StoredRecord)> = vec![
        ("empty key", record(Some(b""), Some(b"v"), &[])),
        ("256-byte key", record(Some(&long), Some(b"v"), &[])),
        (
            "null header value",
            record(None, Some(b"v"), &[("h", None)]),
        ),
        (
            "empty header value",
            record(None, Some(b"v"), &[("h", Some(b""))]),
        ),
        (
            "256-byte header value",
            record(None, Some(b"v"), &[("h", Some(&long))]),
        ),
        (
            "empty header name",
            record(None, Some(b"v"), &[("", Some(b"1"))]),
        ),
        (
            "256-byte header name",
            record(None, Some(b"v"), &[(&long_name, Some(b"1"))]),
        ),
        (
            "reserved header name",
            record(None, Some(b"v"), &[("kafka.key", Some(b"1"))]),
        ),
        (
            "reserved prefix",
            record(None, Some(b"v"), &[("kafka.other", Some(b"1"))]),
        ),
        (
            "duplicate names",
            record(None, Some(b"v"), &[("h", Some(b"1")), ("h", Some(b"2"))]),
        ),
        (
            "256 unsorted headers",
            record(None, Some(b"v"), &many_unsorted),
        ),
        (
            "user headers over 100 kB",
            record(None, Some(b"v"), &too_big),
        ),
        (
            "tombstone with duplicates",
            record(None, None, &[("h", Some(b"1")), ("h", None)]),
        ),
    ];
    for (name, r) in cases {
        let m = encode_record(&r).expect("encode");
        assert!(is_envelope(&m), "{name}: expected an envelope");
        assert_eq!(user_headers(&m).len(), 1, "{name}: only the format header");
        assert_eq!(round_trip(&r), r, "{name}");
    }
}

#[test]
fn limits_that_still_fit_stay_native() {
    let max = vec![b'x'; 255];
    let max_name = "n".repeat(255);
    let sorted_names: Vec<String> = (0..300).map(|i| format!("h{i:03}")).collect();
    let sorted: Vec<(&str, Option<&[u8]>)> = sorted_names
        .iter()
        .map(|n| (n.as_str(), Some(&b"v"[..])))
        .collect();
    let unsorted_255: Vec<(&str, Option<&[u8]>)> = sorted.iter().take(255).rev().cloned().collect();
    let cases = vec![
        ("255-byte key", record(Some(&max), Some(b"v"), &[])),
        (
            "255-byte header value and name",
            record(None, Some(b"v"), &[(&max_name, Some(&max))]),
        ),
        ("300 sorted headers", record(None, Some(b"v"), &sorted)),
        (
            "255 unsorted headers",
            record(None, Some(b"v"), &unsorted_255),
        ),
    ];
    for (name, r) in cases {
        let m = encode_record(&r).expect("encode");
        assert!(!is_envelope(&m), "{name}: expected native form");
        assert_eq!(m.payload.as_ref(), b"v", "{name}");
        assert_eq!(round_trip(&r), r, "{name}");
    }
}

#[test]
fn timestamps_without_a_microsecond_form_travel_in_a_header() {
    let limit = (u64::MAX / 1000) as i64;
    for ts in [0, -1, i64::MIN, i64::MAX, limit + 1] {
        let mut r = record(None, Some(b"v"), &[]);
        r.timestamp_ms = ts;
        let m = encode_record(&r).expect("encode");
        assert_eq!(m.header.origin_timestamp, 0, "{ts}");
        assert!(
            header(&user_headers(&m), TIMESTAMP_HEADER).is_some(),
            "{ts}"
        );
        assert_eq!(round_trip(&r), r, "{ts}");
    }
    for ts in [1, limit] {
        let mut r = record(None, Some(b"v"), &[]);
        r.timestamp_ms = ts;
        let m = encode_record(&r).expect("encode");
        assert_eq!(m.header.origin_timestamp, ts as u64 * 1000);
        assert!(m.user_headers.is_none());
        assert_eq!(round_trip(&r), r, "{ts}");
    }
}

#[test]
fn values_beyond_the_payload_limit_are_rejected() {
    let r = record(
        None,
        Some(&vec![1u8; iggy::prelude::MAX_PAYLOAD_SIZE as usize + 1]),
        &[],
    );
    assert!(matches!(
        encode_record(&r),
        Err(BackendError::InvalidRecord(_))
    ));
}

#[test]
fn native_iggy_messages_read_as_keyless_records() {
    let headers = BTreeMap::from([
        (
            HeaderKey::try_from("content-type").expect("valid"),
            HeaderValue::try_from("text/plain").expect("valid"),
        ),
        (
            HeaderKey::try_from("count").expect("valid"),
            HeaderValue::from(7u32),
        ),
        (
            HeaderKey::try_from("flag").expect("valid"),
            HeaderValue::from(true),
        ),
        (
            HeaderKey::try_from("raw").expect("valid"),
            HeaderValue::try_from(&[1u8, 2][..]).expect("valid"),
        ),
    ]);
    let mut m = IggyMessage::builder()
        .payload(Bytes::from_static(b"native"))
        .user_headers(headers)
        .build()
        .expect("message");
    m.header.origin_timestamp = 1_650_000_000_000_999;
    let r = decode_message(&through_server(&m, 3));
    assert_eq!(r.key, None);
    assert_eq!(r.value.as_deref(), Some(&b"native"[..]));
    assert_eq!(r.timestamp_ms, 1_650_000_000_000, "µs truncate to ms");
    let expected: Vec<(String, Option<Bytes>)> = vec![
        (
            "content-type".into(),
            Some(Bytes::from_static(b"text/plain")),
        ),
        (
            "count".into(),
            Some(Bytes::copy_from_slice(&7u32.to_le_bytes())),
        ),
        ("flag".into(), Some(Bytes::from_static(&[1]))),
        ("raw".into(), Some(Bytes::from_static(&[1, 2]))),
    ];
    let mut got = r.headers.clone();
    got.sort();
    assert_eq!(got, expected);

    m.header.origin_timestamp = 0;
    let r = decode_message(&through_server(&m, 3));
    assert_eq!(
        r.timestamp_ms,
        (SERVER_TIME_US / 1000) as i64,
        "append time when no origin"
    );
}

#[test]
fn foreign_markers_that_do_not_parse_pass_through() {
    let headers = BTreeMap::from([
        (
            HeaderKey::try_from(ORDER_HEADER).expect("valid"),
            HeaderValue::try_from(&[5u8][..]).expect("valid"),
        ),
        (
            HeaderKey::try_from(VALUE_HEADER).expect("valid"),
            HeaderValue::try_from("other").expect("valid"),
        ),
        (
            HeaderKey::try_from(TIMESTAMP_HEADER).expect("valid"),
            HeaderValue::try_from("soon").expect("valid"),
        ),
        (
            HeaderKey::try_from(FORMAT_HEADER).expect("valid"),
            HeaderValue::try_from(ENVELOPE_V1).expect("valid"),
        ),
    ]);
    let m = IggyMessage::builder()
        .payload(Bytes::from_static(b"not an envelope"))
        .user_headers(headers)
        .build()
        .expect("message");
    let r = decode_message(&through_server(&m, 0));
    assert_eq!(r.value.as_deref(), Some(&b"not an envelope"[..]));
    let names: Vec<&str> = r.headers.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [FORMAT_HEADER, ORDER_HEADER, TIMESTAMP_HEADER, VALUE_HEADER]
    );
}

#[test]
fn envelope_layout_is_stable() {
    let mut r = record(Some(b"k"), None, &[("h", None), ("h", Some(b"v"))]);
    r.timestamp_ms = 2;
    let expected: &[u8] = &[
        1, // version
        0, 0, 0, 0, 0, 0, 0, 2, // timestamp
        0, 0, 0, 1, b'k', // key
        0xff, 0xff, 0xff, 0xff, // null value
        0, 0, 0, 2, // header count
        0, 0, 0, 1, b'h', 0xff, 0xff, 0xff, 0xff, // h = null
        0, 0, 0, 1, b'h', 0, 0, 0, 1, b'v', // h = "v"
    ];
    assert_eq!(encode_envelope(&r).as_ref(), expected);
    assert_eq!(decode_envelope(&Bytes::from_static(expected)), Some(r));
}

#[test]
fn malformed_envelopes_are_rejected() {
    let good = encode_envelope(&record(Some(b"k"), Some(b"v"), &[("h", Some(b"1"))]));
    for len in 0..good.len() {
        assert_eq!(
            decode_envelope(&good.slice(..len)),
            None,
            "truncated at {len}"
        );
    }
    let mut trailing = good.to_vec();
    trailing.push(0);
    assert_eq!(decode_envelope(&Bytes::from(trailing)), None);
    let mut version = good.to_vec();
    version[0] = 2;
    assert_eq!(decode_envelope(&Bytes::from(version)), None);
    // A huge header count in a tiny payload must fail without allocating for it.
    let mut huge = vec![
        1u8, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    ];
    huge.extend_from_slice(&[0xff, 0xff, 0xff, 0xff]);
    assert_eq!(decode_envelope(&Bytes::from(huge)), None);
    let bad_utf8: &[u8] = &[
        1, 0, 0, 0, 0, 0, 0, 0, 0, 255, 255, 255, 255, 255, 255, 255, 255, 0, 0, 0, 1, 0, 0, 0, 1,
        0xc3, 255, 255, 255, 255,
    ];
    assert_eq!(decode_envelope(&Bytes::from_static(bad_utf8)), None);
    let negative_len: &[u8] = &[1, 0, 0, 0, 0, 0, 0, 0, 0, 255, 255, 255, 254];
    assert_eq!(decode_envelope(&Bytes::from_static(negative_len)), None);
}
