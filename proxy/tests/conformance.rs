//! Conformance sweep: every API key and every version kafka-protocol knows gets a well-formed
//! request; the answer must be a well-formed response (and the connection stays usable), or the
//! refusal a Kafka broker gives (KIP-511 fallback for ApiVersions, a closed connection for the
//! rest). Plus hostile frames that must close only their own connection.
#![allow(clippy::unwrap_used, reason = "test code: a panic is a failed test")]

mod wire;

use iggy_testkit::IggyServer;
use kafka_iggy_proxy::protocol::versions::{check, VersionCheck};
use kafka_protocol::messages::*;
use wire::{default_request, start_memory_proxy, Wire};

/// Default requests adjusted where the default would not get a response at all.
fn sweep_request(key: ApiKey) -> RequestKind {
    match key {
        // acks=0 means "no response"; the sweep wants one.
        ApiKey::Produce => RequestKind::Produce(ProduceRequest::default().with_acks(-1)),
        _ => default_request(key),
    }
}

async fn assert_usable(wire: &mut Wire, after: &str) {
    let response = wire
        .call(
            ApiKey::ApiVersions,
            3,
            RequestKind::ApiVersions(ApiVersionsRequest::default()),
        )
        .await;
    let ResponseKind::ApiVersions(v) = response else {
        panic!("wrong response kind")
    };
    assert_eq!(v.error_code, 0, "connection unusable after {after}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_key_and_version_is_answered_or_refused_like_kafka() {
    sweep(&start_memory_proxy().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_key_and_version_on_iggy() {
    let Some(server) = IggyServer::from_env().await else {
        return;
    };
    sweep(&wire::start_iggy_proxy(server.address()).await).await;
}

async fn sweep(proxy: &kafka_iggy_proxy::Proxy) {
    let mut served = 0;
    let mut refused = 0;
    let mut unencodable = Vec::new();
    let mut wire = Wire::connect(proxy.kafka_addr).await;
    for key in ApiKey::iter() {
        let range = key.valid_versions();
        for version in range.min..=range.max {
            let body = sweep_request(key);
            let Some((correlation, frame)) = wire.encode_request(key, version, &body) else {
                unencodable.push(format!("{key:?} v{version}"));
                continue;
            };
            wire.send_raw(&frame).await;
            match check(key, version) {
                VersionCheck::Supported => {
                    let response = wire.read_frame().await.unwrap_or_else(|| {
                        panic!("{key:?} v{version}: served but connection closed")
                    });
                    Wire::decode_response(key, version, correlation, response);
                    assert_usable(&mut wire, &format!("{key:?} v{version}")).await;
                    served += 1;
                }
                VersionCheck::ApiVersionsFallback => {
                    unreachable!("ApiVersions 0..=4 are all served")
                }
                VersionCheck::Close => {
                    assert!(
                        wire.is_closed().await,
                        "{key:?} v{version}: expected the connection to close"
                    );
                    refused += 1;
                    wire = Wire::connect(proxy.kafka_addr).await;
                }
            }
        }
    }
    eprintln!("conformance: {served} served versions answered, {refused} refused by close, {} default bodies not encodable by kafka-protocol: {unencodable:?}", unencodable.len());
    assert!(served >= 60, "served {served}");
    assert!(refused > 100, "refused {refused}");
}

#[tokio::test]
async fn newer_api_versions_gets_kip_511_fallback() {
    let proxy = start_memory_proxy().await;
    let mut wire = Wire::connect(proxy.kafka_addr).await;
    // ApiVersions v99 with a body we cannot know: header v2 (flexible) then junk.
    let mut frame = vec![0, 18, 0, 99, 0, 0, 0, 5, 0, 1, b'x', 0, 0xde, 0xad];
    let mut sized = (frame.len() as i32).to_be_bytes().to_vec();
    sized.append(&mut frame);
    wire.send_raw(&sized).await;
    let response = wire.read_frame().await.expect("fallback response");
    let ResponseKind::ApiVersions(v) = Wire::decode_response(ApiKey::ApiVersions, 0, 5, response)
    else {
        panic!("wrong kind")
    };
    assert_eq!(v.error_code, 35, "UNSUPPORTED_VERSION");
    assert!(v
        .api_keys
        .iter()
        .any(|k| k.api_key == ApiKey::ApiVersions as i16 && k.max_version == 4));
    assert_usable(&mut wire, "fallback").await;
    proxy.shutdown().await;
}

/// Sends `frame` on its own connection and checks that the proxy closes it while a second,
/// already open connection keeps working.
async fn hostile_frame_closes_only_its_connection(
    proxy: &kafka_iggy_proxy::Proxy,
    frame: &[u8],
    what: &str,
) {
    let mut bystander = Wire::connect(proxy.kafka_addr).await;
    assert_usable(&mut bystander, "connect").await;
    let mut attacker = Wire::connect(proxy.kafka_addr).await;
    attacker.send_raw(frame).await;
    assert!(
        attacker.is_closed().await,
        "{what}: connection should be closed"
    );
    assert_usable(&mut bystander, what).await;
    let mut fresh = Wire::connect(proxy.kafka_addr).await;
    assert_usable(&mut fresh, what).await;
}

/// A Produce v9 whose record claims 2^30 headers: the batch is corrupt; the partition gets
/// CORRUPT_MESSAGE and the connection stays open.
async fn huge_record_header_count(proxy: &kafka_iggy_proxy::Proxy) {
    let mut wire = Wire::connect(proxy.kafka_addr).await;
    let mut batch = Vec::new();
    // Record batch v2 header with one record whose header count varint is 2^30.
    let record: Vec<u8> = {
        let mut r = vec![0u8]; // attributes
        r.push(0); // timestamp delta (varint 0)
        r.push(0); // offset delta
        r.push(1); // key length -1 (zigzag 1)
        r.push(2); // value length 1
        r.push(b'v');
        r.extend_from_slice(&[0x80, 0x80, 0x80, 0x80, 0x08]); // header count 2^30 (zigzag)
        let mut framed = vec![(r.len() as u8) * 2];
        framed.extend(r);
        framed
    };
    let after_length = 4 + 1 + 4 + 2 + 4 + 8 + 8 + 8 + 2 + 4 + 4 + record.len();
    batch.extend_from_slice(&0i64.to_be_bytes()); // base offset
    batch.extend_from_slice(&(after_length as i32).to_be_bytes());
    batch.extend_from_slice(&0i32.to_be_bytes()); // leader epoch
    batch.push(2); // magic
    let crc_pos = batch.len();
    batch.extend_from_slice(&0u32.to_be_bytes());
    let crc_start = batch.len();
    batch.extend_from_slice(&0i16.to_be_bytes()); // attributes
    batch.extend_from_slice(&0i32.to_be_bytes()); // last offset delta
    batch.extend_from_slice(&0i64.to_be_bytes()); // first timestamp
    batch.extend_from_slice(&0i64.to_be_bytes()); // max timestamp
    batch.extend_from_slice(&(-1i64).to_be_bytes()); // producer id
    batch.extend_from_slice(&(-1i16).to_be_bytes()); // epoch
    batch.extend_from_slice(&(-1i32).to_be_bytes()); // base sequence
    batch.extend_from_slice(&1i32.to_be_bytes()); // record count
    batch.extend(record);
    let crc = crc32c(&batch[crc_start..]);
    batch[crc_pos..crc_pos + 4].copy_from_slice(&crc.to_be_bytes());

    let create = RequestKind::CreateTopics(CreateTopicsRequest::default().with_topics(vec![
        create_topics_request::CreatableTopic::default()
            .with_name(TopicName("hostile".into()))
            .with_num_partitions(1)
            .with_replication_factor(1),
    ]));
    wire.call(ApiKey::CreateTopics, 7, create).await;
    let produce = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(1000)
        .with_topic_data(vec![produce_request::TopicProduceData::default()
            .with_name(TopicName("hostile".into()))
            .with_partition_data(vec![
                produce_request::PartitionProduceData::default()
                    .with_index(0)
                    .with_records(Some(batch.into())),
            ])]);
    let ResponseKind::Produce(r) = wire
        .call(ApiKey::Produce, 9, RequestKind::Produce(produce))
        .await
    else {
        panic!("wrong kind")
    };
    assert_eq!(
        r.responses[0].partition_responses[0].error_code, 2,
        "CORRUPT_MESSAGE"
    );
    assert_usable(&mut wire, "hostile batch").await;
}

fn crc32c(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in data {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0x82F6_3B78
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn sized(body: &[u8]) -> Vec<u8> {
    let mut frame = (body.len() as i32).to_be_bytes().to_vec();
    frame.extend_from_slice(body);
    frame
}

/// Frames that must close their own connection and nothing else.
fn hostile_frames() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        // Metadata v1: header (key 3, v1, correlation 7, client id ""), topic count 2^30, no data.
        (
            "huge array count",
            sized(&[0, 3, 0, 1, 0, 0, 0, 7, 0, 0, 0x40, 0, 0, 0]),
        ),
        (
            "oversized frame",
            (200 * 1024 * 1024i32).to_be_bytes().to_vec(),
        ),
        ("negative size", (-5i32).to_be_bytes().to_vec()),
        (
            "unknown api key",
            sized(&[0x7f, 0x7f, 0, 0, 0, 0, 0, 1, 0, 0]),
        ),
        // Metadata v1 announcing one topic and then ending.
        (
            "truncated body",
            sized(&[0, 3, 0, 1, 0, 0, 0, 7, 0, 0, 0, 0, 0, 1]),
        ),
        // Produce v2 (message sets v0/v1) is advertised for librdkafka but refused.
        (
            "produce v2",
            sized(&[
                0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0x03, 0xe8, 0, 0, 0, 0,
            ]),
        ),
    ]
}

async fn all_hostile(proxy: &kafka_iggy_proxy::Proxy) {
    for (what, frame) in hostile_frames() {
        hostile_frame_closes_only_its_connection(proxy, &frame, what).await;
    }
    huge_record_header_count(proxy).await;
}

#[tokio::test]
async fn hostile_input_on_memory() {
    all_hostile(&start_memory_proxy().await).await;
}

#[tokio::test]
async fn hostile_input_on_iggy() {
    let Some(server) = IggyServer::from_env().await else {
        return;
    };
    all_hostile(&wire::start_iggy_proxy(server.address()).await).await;
}
