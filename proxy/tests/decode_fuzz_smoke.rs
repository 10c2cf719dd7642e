//! The short, deterministic version of the fuzz targets in `proxy/fuzz` (the long run is
//! `cargo +nightly fuzz run record_batch`, see README): valid record batches for every codec
//! and valid request frames, mutated byte by byte, with batch lengths and checksums fixed up so
//! that decompression and record decoding see the damage. Nothing may panic, and nothing may
//! decode to more than the cap.

use bytes::{Bytes, BytesMut};
use indexmap::IndexMap;
use kafka_iggy_proxy::handlers::records::{decode_produced, DECODED_RECORD_OVERHEAD};
use kafka_iggy_proxy::protocol::codec::{decode_request, peek_prefix};
use kafka_iggy_proxy::test_rng::SeededRng;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Encodable, StrBytes};
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

const CAP: usize = 256 * 1024;
const CASES: u64 = 1000;
const MUTATIONS_PER_CASE: usize = 8;

/// Seeded: a failure reproduces from the printed seed.
struct Rng(SeededRng);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0.next_u64()
    }

    fn below(&mut self, n: u64) -> u64 {
        self.0.below(n)
    }

    fn bytes(&mut self, max: u64) -> Bytes {
        let len = self.below(max + 1) as usize;
        // Runs of one byte compress well, as real bombs do.
        let fill = self.next() as u8;
        (0..len)
            .map(|_| {
                if self.below(4) == 0 {
                    self.next() as u8
                } else {
                    fill
                }
            })
            .collect()
    }
}

fn codec(rng: &mut Rng) -> Compression {
    match rng.below(5) {
        0 => Compression::None,
        1 => Compression::Gzip,
        2 => Compression::Snappy,
        3 => Compression::Lz4,
        _ => Compression::Zstd,
    }
}

fn random_batch(rng: &mut Rng) -> Bytes {
    let count = 1 + rng.below(20) as usize;
    let records: Vec<Record> = (0..count)
        .map(|i| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            sequence: i as i32,
            timestamp: 1_700_000_000_000,
            key: (rng.below(3) != 0).then(|| rng.bytes(64)),
            value: (rng.below(8) != 0).then(|| rng.bytes(4096)),
            headers: (0..rng.below(3))
                .map(|h| (StrBytes::from_string(format!("h{h}")), Some(rng.bytes(16))))
                .collect::<IndexMap<_, _>>(),
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &records,
        &RecordEncodeOptions {
            version: 2,
            compression: codec(rng),
        },
    )
    .expect("encode");
    buf.freeze()
}

/// Rewrites the batch length and CRC-32C so the decoder gets past its checks.
fn fix_up(batch: &mut [u8]) {
    if batch.len() < 61 {
        return;
    }
    let length = (batch.len() - 12) as i32;
    batch[8..12].copy_from_slice(&length.to_be_bytes());
    let crc = crc32c::crc32c(&batch[21..]);
    batch[17..21].copy_from_slice(&crc.to_be_bytes());
}

fn mutate(rng: &mut Rng, bytes: &mut Vec<u8>, from: usize) {
    if bytes.len() <= from {
        return;
    }
    match rng.below(4) {
        0 => {
            let at = from + rng.below((bytes.len() - from) as u64) as usize;
            bytes[at] = rng.next() as u8;
        }
        1 => {
            let at = from + rng.below((bytes.len() - from) as u64) as usize;
            bytes[at] ^= 1 << rng.below(8);
        }
        2 => {
            let keep = from + rng.below((bytes.len() - from) as u64) as usize;
            bytes.truncate(keep);
        }
        _ => {
            // A huge count or length: 0x7fff_ffff somewhere.
            let at = from + rng.below((bytes.len() - from) as u64) as usize;
            let end = (at + 4).min(bytes.len());
            bytes[at..end].copy_from_slice(&[0x7f, 0xff, 0xff, 0xff][..end - at]);
        }
    }
}

#[test]
fn mutated_record_batches_never_panic_or_exceed_the_cap() {
    let mut rng = Rng(SeededRng::new(0x5eed_1234_abcd_0001));
    let (mut ok, mut refused) = (0u64, 0u64);
    for case in 0..CASES {
        let batch = random_batch(&mut rng);
        for _ in 0..MUTATIONS_PER_CASE {
            let mut bytes = batch.to_vec();
            for _ in 0..=rng.below(3) {
                // Mutations start after the CRC field; the attributes (codec) may change too.
                mutate(&mut rng, &mut bytes, 21);
            }
            fix_up(&mut bytes);
            let seed = rng.0.state();
            match decode_produced(Bytes::from(bytes), CAP) {
                Ok(produced) => {
                    ok += 1;
                    let decoded: usize = produced.records.iter().map(|r| r.approx_size()).sum();
                    assert!(
                        decoded <= CAP + produced.records.len() * DECODED_RECORD_OVERHEAD,
                        "case {case} (rng state {seed:#x}): {decoded} bytes decoded"
                    );
                }
                Err(_) => refused += 1,
            }
        }
    }
    println!("record batches: {ok} decoded, {refused} refused");
    assert!(ok > 0 && refused > 0, "the mutations reach both outcomes");
}

fn encode_request(key: ApiKey, version: i16, body: &RequestKind) -> Vec<u8> {
    let header = RequestHeader::default()
        .with_request_api_key(key as i16)
        .with_request_api_version(version)
        .with_correlation_id(7)
        .with_client_id(Some(StrBytes::from_static_str("smoke")));
    let mut buf = BytesMut::new();
    header
        .encode(&mut buf, key.request_header_version(version))
        .expect("header");
    body.encode(&mut buf, version).expect("body");
    buf.to_vec()
}

#[test]
fn mutated_request_frames_never_panic() {
    let mut rng = Rng(SeededRng::new(0x5eed_1234_abcd_0002));
    let produce = ProduceRequest::default()
        .with_acks(-1)
        .with_topic_data(vec![produce_request::TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_static_str("t")))
            .with_partition_data(vec![
                produce_request::PartitionProduceData::default()
                    .with_records(Some(random_batch(&mut rng))),
            ])]);
    let metadata = MetadataRequest::default()
        .with_topics(Some(vec![metadata_request::MetadataRequestTopic::default(
        )
        .with_name(Some(TopicName(StrBytes::from_static_str("t"))))]));
    let templates = [
        encode_request(ApiKey::Produce, 9, &produce.into()),
        encode_request(ApiKey::Produce, 3, &random_produce(&mut rng).into()),
        encode_request(ApiKey::Metadata, 12, &metadata.clone().into()),
        encode_request(ApiKey::Metadata, 1, &metadata.into()),
        encode_request(
            ApiKey::ApiVersions,
            3,
            &ApiVersionsRequest::default().into(),
        ),
    ];
    let mut decoded = 0u64;
    for _ in 0..CASES * 4 {
        let mut frame = templates[rng.below(templates.len() as u64) as usize].clone();
        for _ in 0..=rng.below(3) {
            mutate(&mut rng, &mut frame, 4);
        }
        let frame = Bytes::from(frame);
        let Ok(prefix) = peek_prefix(&frame) else {
            continue;
        };
        if let Ok((_, RequestKind::Produce(p))) = decode_request(prefix, frame) {
            decoded += 1;
            for records in p
                .topic_data
                .into_iter()
                .flat_map(|t| t.partition_data)
                .filter_map(|p| p.records)
            {
                let _ = decode_produced(records, CAP);
            }
        }
    }
    println!("request frames: {decoded} produce requests decoded");
}

fn random_produce(rng: &mut Rng) -> ProduceRequest {
    ProduceRequest::default().with_acks(1).with_topic_data(vec![
        produce_request::TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_static_str("other")))
            .with_partition_data(vec![produce_request::PartitionProduceData::default()
                .with_index(3)
                .with_records(Some(random_batch(rng)))]),
    ])
}
