use super::*;
use kafka_protocol::records::NO_SEQUENCE;

const LIMIT: usize = 1 << 20;

fn record(offset: i64, key: Option<&'static [u8]>, value: Option<&'static [u8]>) -> Record {
    let mut headers = IndexMap::new();
    headers.insert(
        StrBytes::from_static_str("h1"),
        Some(Bytes::from_static(b"v1")),
    );
    headers.insert(StrBytes::from_static_str("null-header"), None);
    Record {
        transactional: false,
        control: false,
        delete_horizon: false,
        partition_leader_epoch: 0,
        producer_id: 42,
        producer_epoch: 3,
        timestamp_type: TimestampType::Creation,
        offset,
        sequence: 7 + offset as i32,
        timestamp: 1_700_000_000_000 + offset,
        key: key.map(Bytes::from_static),
        value: value.map(Bytes::from_static),
        headers,
    }
}

fn encode(records: &[Record], compression: Compression) -> Bytes {
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        records,
        &RecordEncodeOptions {
            version: 2,
            compression,
        },
    )
    .unwrap();
    buf.freeze()
}

#[test]
fn decodes_every_codec_with_identity() {
    for compression in [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ] {
        let batch = encode(
            &[
                record(0, Some(b"k"), Some(b"v")),
                record(1, None, None),
                record(2, Some(b""), Some(b"")),
            ],
            compression,
        );
        let produced = decode_produced(batch, LIMIT).unwrap();
        assert_eq!(produced.records.len(), 3, "{compression:?}");
        assert_eq!(produced.records[0].key.as_deref(), Some(&b"k"[..]));
        assert_eq!(produced.records[1].value, None, "tombstone survives");
        assert_eq!(produced.records[2].value.as_deref(), Some(&b""[..]));
        assert_eq!(
            produced.records[0].headers[1],
            ("null-header".to_string(), None)
        );
        assert_eq!(produced.records[2].timestamp_ms, 1_700_000_000_002);
        assert_eq!(
            produced.identity,
            Some(BatchIdentity {
                producer_id: 42,
                producer_epoch: 3,
                first_sequence: 7,
                record_count: 3
            })
        );
        assert!(!produced.transactional);
    }
}

#[test]
fn corrupt_batches_are_errors() {
    let batch = encode(&[record(0, Some(b"k"), Some(b"v"))], Compression::None);
    let mut bad = batch.to_vec();
    let last = bad.len() - 1;
    bad[last] ^= 0xff;
    assert!(matches!(
        decode_produced(Bytes::from(bad), LIMIT),
        Err(BatchError::Corrupt(_))
    ));
    assert!(decode_produced(Bytes::from_static(&[0, 0, 0]), LIMIT).is_err());
}

/// Kafka (since Produce v3) refuses a partition entry holding more than one batch with
/// INVALID_RECORD; concatenated batches must not be appended.
#[test]
fn several_batches_in_one_entry_are_refused() {
    let one = encode(&[record(0, Some(b"k"), Some(b"v"))], Compression::None);
    let mut two = one.to_vec();
    two.extend_from_slice(&one);
    assert!(matches!(
        decode_produced(Bytes::from(two), LIMIT),
        Err(BatchError::SeveralBatches)
    ));
}

/// A batch whose records decompress past the cap is refused as too large, for every codec.
#[test]
fn batches_decompressing_past_the_cap_are_too_large() {
    let big: &'static [u8] = Box::leak(vec![7u8; LIMIT + 1].into_boxed_slice());
    for compression in [
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ] {
        let batch = encode(&[record(0, None, Some(big))], compression);
        assert!(batch.len() < LIMIT / 10, "{compression:?} compresses");
        assert!(
            matches!(
                decode_produced(batch.clone(), LIMIT),
                Err(BatchError::TooLarge { .. })
            ),
            "{compression:?}"
        );
        assert_eq!(
            decode_produced(batch, 2 * LIMIT).unwrap().records.len(),
            1,
            "{compression:?} within a larger cap"
        );
    }
}

/// Tiny records cost far more decoded than on the wire: a 1 MiB cap refuses an uncompressed
/// batch of 20,000 small records (under 1 MiB on the wire) from its header alone.
#[test]
fn record_count_counts_against_the_cap() {
    let many: Vec<Record> = (0..20_000).map(|i| record(i, None, Some(b""))).collect();
    let batch = encode(&many, Compression::None);
    assert!(batch.len() < LIMIT);
    const { assert!(20_000 * DECODED_RECORD_OVERHEAD > LIMIT) };
    assert!(matches!(
        decode_produced(batch.clone(), LIMIT),
        Err(BatchError::TooLarge { .. })
    ));
    assert_eq!(
        decode_produced(batch, 20_000 * DECODED_RECORD_OVERHEAD + LIMIT)
            .unwrap()
            .records
            .len(),
        20_000
    );
}

#[test]
fn fetched_records_encode_as_one_batch_that_decodes_back() {
    let fetched: Vec<FetchedRecord> = (10..15)
        .map(|offset| FetchedRecord {
            offset,
            append_time_ms: 0,
            producer: None,
            record: StoredRecord {
                key: Some(Bytes::from(format!("k{offset}"))),
                value: if offset == 12 {
                    None
                } else {
                    Some(Bytes::from_static(b"value"))
                },
                headers: vec![("a".into(), Some(Bytes::from_static(b"1")))],
                timestamp_ms: 1000 + offset,
            },
        })
        .collect();
    let mut bytes = encode_fetched(&fetched).unwrap();
    let info = RecordBatchDecoder::decode_batch_info(&mut bytes.clone()).unwrap();
    assert_eq!(info.len(), 1, "one batch");
    assert_eq!(info[0].min_offset, 10);
    assert_eq!(info[0].producer_id, NO_PRODUCER_ID);
    let sets = RecordBatchDecoder::decode_all(&mut bytes).unwrap();
    let back: Vec<_> = sets.into_iter().flat_map(|s| s.records).collect();
    assert_eq!(back.len(), 5);
    for (r, f) in back.iter().zip(&fetched) {
        assert_eq!(r.offset, f.offset);
        assert_eq!(r.key, f.record.key);
        assert_eq!(r.value, f.record.value);
        assert_eq!(r.timestamp, f.record.timestamp_ms);
    }
    let _ = NO_SEQUENCE;
}

/// Found by the `record_batch` fuzz target (its input, with length and CRC fixed up as the
/// target does): a 150-byte uncompressed batch whose record claims millions of headers.
/// kafka-protocol would size and initialise a header map for them, gigabytes of resident
/// memory; it must be refused as corrupt before decoding.
#[test]
fn huge_header_counts_are_refused_before_decoding() {
    let batch: &[u8] = &[
        0x33, 0x00, 0xff, 0xff, 0xff, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x8a, 0x00, 0x00, 0x00,
        0x00, 0x02, 0xf9, 0x47, 0x6d, 0x80, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02,
        0x02, 0x02, 0x02, 0xff, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x08, 0x00, 0x00,
        0x00, 0xe8, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x34, 0x3e, 0x07, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x28, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x20, 0x00, 0x00, 0x00, 0x02, 0xff, 0x00, 0xfe, 0xff, 0xff, 0xff, 0xff,
        0xff, 0xff, 0x08, 0x00, 0x00, 0x00, 0xe8, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x01, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x34, 0x3e, 0x07, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x00,
    ];
    match decode_produced(Bytes::copy_from_slice(batch), LIMIT) {
        Err(BatchError::Corrupt(message)) => assert!(message.contains("headers"), "{message}"),
        other => panic!("not refused as corrupt: {other:?}"),
    }
}

/// The second fuzz finding: the same header-count bomb behind a timestamp varlong of more than
/// ten bytes, which kafka-protocol reads leniently (it stops after ten bytes without an error);
/// the check must read varints exactly as the decoder does, or it skips the record.
#[test]
fn header_count_check_reads_varints_as_the_decoder_does() {
    let batch: &[u8] = &[
        0x33, 0x00, 0x2d, 0xff, 0xff, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x64, 0xff, 0xff, 0xff,
        0x00, 0x02, 0x6f, 0x6d, 0xcf, 0x2a, 0x00, 0x00, 0x00, 0x00, 0x3b, 0x3e, 0xab, 0xd2, 0xd2,
        0xd2, 0xd2, 0xd2, 0xd2, 0xd2, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x08, 0x00, 0x00,
        0x00, 0xe8, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x33, 0x3e, 0xab, 0xd2, 0xd2, 0xd2, 0xd2, 0xd2, 0xd2, 0xd2, 0xd2, 0xd2, 0xd2, 0xd2, 0xd2,
        0xd2, 0xd2, 0xd2, 0x00, 0x00, 0xd2, 0xd2, 0xd2, 0xd2, 0xd2, 0xd2, 0xff, 0xff, 0x00, 0x04,
        0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x3e, 0xff, 0xff, 0xff,
        0xff, 0xff, 0xf3, 0xf3, 0xf3, 0xf3, 0x40,
    ];
    match decode_produced(Bytes::copy_from_slice(batch), LIMIT) {
        Err(BatchError::Corrupt(message)) => assert!(message.contains("headers"), "{message}"),
        other => panic!("not refused as corrupt: {other:?}"),
    }
}
