//! Kafka semantics at the protocol level, where exact answers can be asserted: idempotent
//! retries, sequence errors, long-poll timing, offset range errors, ListOffsets, admin errors.
//! Every scenario runs on the memory back end and, when IGGY_SERVER_BIN is set, on real Iggy.
#![allow(clippy::unwrap_used, reason = "test code: a panic is a failed test")]

mod wire;

use std::time::{Duration, Instant};

use iggy_testkit::IggyServer;
use kafka_iggy_proxy::config::IggyTls;
use kafka_iggy_proxy::Proxy;
use kafka_protocol::messages::*;
use kafka_protocol::records::Compression;
use wire::ops::*;
use wire::Wire;

async fn idempotent_retries_and_sequence_errors(proxy: &Proxy) {
    let mut w = Wire::connect(proxy.kafka_addr).await;
    assert_eq!(create_topic(&mut w, "idem", 2).await, 0);
    let (err, pid, epoch) = init_producer_id(&mut w, None).await;
    assert_eq!((err, epoch), (0, 0));
    assert!(pid >= 0);

    let first = batch(&["a", "b", "c"], Some((pid, 0, 0)), Compression::None);
    assert_eq!(produce(&mut w, "idem", 1, first.clone()).await, (0, 0));
    let second = batch(&["d"], Some((pid, 0, 3)), Compression::Lz4);
    assert_eq!(produce(&mut w, "idem", 1, second.clone()).await, (0, 3));
    // A retry of either batch is answered with its original offset and not written again.
    assert_eq!(produce(&mut w, "idem", 1, first).await, (0, 0));
    assert_eq!(produce(&mut w, "idem", 1, second).await, (0, 3));
    let f = fetch(&mut w, "idem", 1, 0, 0, 1).await;
    let values: Vec<_> = f.records.iter().map(|(_, v)| v.as_str()).collect();
    assert_eq!(values, ["a", "b", "c", "d"]);
    assert_eq!(f.high_watermark, 4);
    // A gap in sequences is OUT_OF_ORDER_SEQUENCE_NUMBER (45) and writes nothing.
    let gap = batch(&["x"], Some((pid, 0, 9)), Compression::None);
    assert_eq!(produce(&mut w, "idem", 1, gap).await.0, 45);
    // An older epoch is fenced: INVALID_PRODUCER_EPOCH (47).
    assert_eq!(bump_producer_epoch(&mut w, None, pid, 0).await, (0, pid, 1));
    let new_epoch = batch(&["e"], Some((pid, 1, 0)), Compression::None);
    assert_eq!(produce(&mut w, "idem", 1, new_epoch).await, (0, 4));
    let stale = batch(&["z"], Some((pid, 0, 4)), Compression::None);
    assert_eq!(produce(&mut w, "idem", 1, stale).await.0, 47);
    assert_eq!(fetch(&mut w, "idem", 1, 0, 0, 1).await.high_watermark, 5);
    // Partition 0 was never written.
    assert_eq!(fetch(&mut w, "idem", 0, 0, 0, 0).await.high_watermark, 0);
}

async fn transactions_are_refused_fast(proxy: &Proxy) {
    let mut w = Wire::connect(proxy.kafka_addr).await;
    let (err, pid, _) = init_producer_id(&mut w, Some("tx-1")).await;
    assert_eq!(err, 53, "TRANSACTIONAL_ID_AUTHORIZATION_FAILED");
    assert_eq!(pid, -1);
}

async fn long_poll_waits_and_wakes(proxy: &Proxy) {
    let mut w = Wire::connect(proxy.kafka_addr).await;
    assert_eq!(create_topic(&mut w, "poll", 1).await, 0);
    // Nothing to read: the answer comes after about max_wait_ms, empty.
    let started = Instant::now();
    let f = fetch(&mut w, "poll", 0, 0, 400, 1).await;
    let waited = started.elapsed();
    assert!(f.records.is_empty());
    assert_eq!(f.error_code, 0);
    assert!(
        waited >= Duration::from_millis(380),
        "returned after {waited:?}"
    );
    // min_bytes 0 answers at once.
    let started = Instant::now();
    fetch(&mut w, "poll", 0, 0, 5000, 0).await;
    assert!(started.elapsed() < Duration::from_millis(2000));
    // A produce on another connection ends a long wait early.
    let addr = proxy.kafka_addr;
    let producer = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let mut p = Wire::connect(addr).await;
        produce(&mut p, "poll", 0, batch(&["late"], None, Compression::None)).await
    });
    let started = Instant::now();
    let f = fetch(&mut w, "poll", 0, 0, 20_000, 1).await;
    assert_eq!(f.records, vec![(0, "late".to_string())]);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "woke after {:?}",
        started.elapsed()
    );
    assert_eq!(producer.await.unwrap(), (0, 0));
}

async fn offsets_and_ranges(proxy: &Proxy) {
    let mut w = Wire::connect(proxy.kafka_addr).await;
    assert_eq!(create_topic(&mut w, "ranges", 1).await, 0);
    assert_eq!(list_offset(&mut w, "ranges", 0, -2).await, (0, 0, -1));
    assert_eq!(list_offset(&mut w, "ranges", 0, -1).await, (0, 0, -1));
    for chunk in [["r0", "r1"], ["r2", "r3"]] {
        produce(&mut w, "ranges", 0, batch(&chunk, None, Compression::Zstd)).await;
    }
    assert_eq!(list_offset(&mut w, "ranges", 0, -2).await, (0, 0, -1));
    assert_eq!(list_offset(&mut w, "ranges", 0, -1).await, (0, 4, -1));
    // Timestamp lookups: a time before everything finds offset 0; after everything finds none.
    assert_eq!(list_offset(&mut w, "ranges", 0, 0).await.1, 0);
    assert_eq!(list_offset(&mut w, "ranges", 0, i64::MAX / 2).await.1, -1);
    // Reading at the high watermark is empty, above it is OFFSET_OUT_OF_RANGE (1).
    let at_end = fetch(&mut w, "ranges", 0, 4, 0, 0).await;
    assert_eq!((at_end.error_code, at_end.records.len()), (0, 0));
    let past = fetch(&mut w, "ranges", 0, 5, 1000, 1).await;
    assert_eq!(past.error_code, 1);
    assert_eq!(past.high_watermark, 4);
    let middle = fetch(&mut w, "ranges", 0, 2, 0, 1).await;
    assert_eq!(middle.records, vec![(2, "r2".into()), (3, "r3".into())]);
    assert_eq!(middle.log_start_offset, 0);
    // Unknown topics and partitions.
    assert_eq!(fetch(&mut w, "ranges", 7, 0, 0, 1).await.error_code, 3);
    assert_eq!(
        produce(&mut w, "nope", 0, batch(&["x"], None, Compression::None))
            .await
            .0,
        3
    );
    assert_eq!(list_offset(&mut w, "nope", 0, -1).await.0, 3);
}

async fn admin_errors(proxy: &Proxy) {
    let mut w = Wire::connect(proxy.kafka_addr).await;
    assert_eq!(create_topic(&mut w, "adm", 2).await, 0);
    assert_eq!(
        create_topic(&mut w, "adm", 2).await,
        36,
        "TOPIC_ALREADY_EXISTS"
    );
    assert_eq!(
        create_topic(&mut w, "bad name!", 1).await,
        17,
        "INVALID_TOPIC_EXCEPTION"
    );
    assert_eq!(
        create_topic(&mut w, "zero", 0).await,
        37,
        "INVALID_PARTITIONS"
    );
    let grow = |count| {
        RequestKind::CreatePartitions(
            CreatePartitionsRequest::default()
                .with_timeout_ms(5000)
                .with_topics(vec![
                    create_partitions_request::CreatePartitionsTopic::default()
                        .with_name(topic("adm"))
                        .with_count(count),
                ]),
        )
    };
    let ResponseKind::CreatePartitions(r) = w.call(ApiKey::CreatePartitions, 3, grow(5)).await
    else {
        panic!()
    };
    assert_eq!(r.results[0].error_code, 0);
    let ResponseKind::CreatePartitions(r) = w.call(ApiKey::CreatePartitions, 3, grow(3)).await
    else {
        panic!()
    };
    assert_eq!(
        r.results[0].error_code, 37,
        "shrinking is INVALID_PARTITIONS"
    );
    let metadata = MetadataRequest::default().with_topics(Some(vec![
        metadata_request::MetadataRequestTopic::default().with_name(Some(topic("adm"))),
    ]));
    let ResponseKind::Metadata(m) = w.call(ApiKey::Metadata, 12, metadata.into()).await else {
        panic!()
    };
    assert_eq!(m.topics[0].partitions.len(), 5);
    assert!(!m.topics[0].topic_id.is_nil());
    let delete = DeleteTopicsRequest::default().with_topics(vec![
        delete_topics_request::DeleteTopicState::default().with_name(Some(topic("adm"))),
    ]);
    let ResponseKind::DeleteTopics(d) =
        w.call(ApiKey::DeleteTopics, 6, delete.clone().into()).await
    else {
        panic!()
    };
    assert_eq!(d.responses[0].error_code, 0);
    let ResponseKind::DeleteTopics(d) = w.call(ApiKey::DeleteTopics, 6, delete.into()).await else {
        panic!()
    };
    assert_eq!(d.responses[0].error_code, 3);
}

async fn acks_zero_gets_no_response(proxy: &Proxy) {
    let mut w = Wire::connect(proxy.kafka_addr).await;
    assert_eq!(create_topic(&mut w, "fire", 1).await, 0);
    let request = ProduceRequest::default()
        .with_acks(0)
        .with_timeout_ms(1000)
        .with_topic_data(vec![produce_request::TopicProduceData::default()
            .with_name(topic("fire"))
            .with_partition_data(vec![
                produce_request::PartitionProduceData::default()
                    .with_index(0)
                    .with_records(Some(batch(&["f"], None, Compression::Gzip))),
            ])]);
    let (_, frame) = w
        .encode_request(ApiKey::Produce, 9, &request.into())
        .unwrap();
    w.send_raw(&frame).await;
    // The next response on the connection belongs to the next request.
    let f = fetch(&mut w, "fire", 0, 0, 1000, 1).await;
    assert_eq!(f.records, vec![(0, "f".to_string())]);
}

/// Many Produce requests in flight on one connection (as librdkafka and the Java producer send
/// them): answers come back in request order and each partition's appends keep request order,
/// so an idempotent producer's sequences are accepted.
async fn pipelined_produces_keep_order(proxy: &Proxy) {
    let mut w = Wire::connect(proxy.kafka_addr).await;
    assert_eq!(create_topic(&mut w, "pipe", 2).await, 0);
    let (_, pid, _) = init_producer_id(&mut w, None).await;
    let mut sent = Vec::new();
    let mut sequences = [0i32; 2];
    for i in 0..40 {
        // Each request writes both partitions, with a different number of records.
        let mut topic = produce_request::TopicProduceData::default().with_name(topic("pipe"));
        for (partition, sequence) in sequences.iter_mut().enumerate() {
            let values: Vec<String> = (0..(1 + (i + partition) % 3))
                .map(|j| format!("{i}-{partition}-{j}"))
                .collect();
            let refs: Vec<&str> = values.iter().map(String::as_str).collect();
            let seq = *sequence;
            *sequence += refs.len() as i32;
            topic.partition_data.push(
                produce_request::PartitionProduceData::default()
                    .with_index(partition as i32)
                    .with_records(Some(batch(&refs, Some((pid, 0, seq)), Compression::Lz4))),
            );
        }
        let request = ProduceRequest::default()
            .with_acks(-1)
            .with_timeout_ms(5000)
            .with_topic_data(vec![topic]);
        let (correlation, frame) = w
            .encode_request(ApiKey::Produce, 9, &request.into())
            .unwrap();
        w.send_raw(&frame).await;
        sent.push(correlation);
    }
    let mut next = [0i64; 2];
    for correlation in sent {
        let frame = w.read_frame().await.expect("response");
        let ResponseKind::Produce(r) =
            Wire::decode_response(ApiKey::Produce, 9, correlation, frame)
        else {
            panic!("kind")
        };
        for p in &r.responses[0].partition_responses {
            assert_eq!(
                p.error_code, 0,
                "partition {} of request {correlation}",
                p.index
            );
            assert_eq!(
                p.base_offset, next[p.index as usize],
                "offsets follow request order"
            );
            next[p.index as usize] = p.base_offset + 1 + i64::from((correlation - 3 + p.index) % 3);
        }
    }
    for partition in 0..2 {
        let f = fetch(&mut w, "pipe", partition, 0, 0, 1).await;
        assert_eq!(f.high_watermark, i64::from(sequences[partition as usize]));
        let firsts: Vec<_> = f
            .records
            .iter()
            .map(|(_, v)| v.split('-').next().unwrap().parse::<i32>().unwrap())
            .collect();
        assert!(
            firsts.windows(2).all(|w| w[0] <= w[1]),
            "records in request order: {firsts:?}"
        );
    }
}

/// `max_bytes` smaller than the partitions' limits: partitions are filled in order and the first
/// record is returned even though it exceeds the limit, as Kafka does.
async fn fetch_budget_fills_partitions_in_order(proxy: &Proxy) {
    let mut w = Wire::connect(proxy.kafka_addr).await;
    assert_eq!(create_topic(&mut w, "budget", 2).await, 0);
    for partition in 0..2 {
        produce(
            &mut w,
            "budget",
            partition,
            batch(&["aaaa", "bbbb"], None, Compression::None),
        )
        .await;
    }
    let request = FetchRequest::default()
        .with_max_wait_ms(0)
        .with_min_bytes(1)
        .with_max_bytes(1)
        .with_topics(vec![fetch_request::FetchTopic::default()
            .with_topic(topic("budget"))
            .with_partitions(
                (0..2)
                    .map(|p| {
                        fetch_request::FetchPartition::default()
                            .with_partition(p)
                            .with_fetch_offset(0)
                            .with_partition_max_bytes(1024 * 1024)
                    })
                    .collect(),
            )]);
    let ResponseKind::Fetch(r) = w.call(ApiKey::Fetch, 12, request.into()).await else {
        panic!("kind")
    };
    let parts = &r.responses[0].partitions;
    let count = |i: usize| {
        parts[i].records.clone().map_or(0, |mut b| {
            kafka_protocol::records::RecordBatchDecoder::decode_all(&mut b)
                .unwrap()
                .iter()
                .map(|s| s.records.len())
                .sum::<usize>()
        })
    };
    assert_eq!(
        count(0),
        1,
        "one record from the first partition despite max_bytes=1"
    );
    assert_eq!(count(1), 0, "nothing left for the second");
    assert_eq!(parts[1].high_watermark, 2, "watermarks are still reported");
}

async fn all_scenarios(proxy: &Proxy) {
    fetch_budget_fills_partitions_in_order(proxy).await;
    pipelined_produces_keep_order(proxy).await;
    idempotent_retries_and_sequence_errors(proxy).await;
    transactions_are_refused_fast(proxy).await;
    long_poll_waits_and_wakes(proxy).await;
    offsets_and_ranges(proxy).await;
    admin_errors(proxy).await;
    acks_zero_gets_no_response(proxy).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn semantics_on_memory() {
    let proxy = wire::start_memory_proxy().await;
    all_scenarios(&proxy).await;
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn semantics_on_iggy() {
    let Some(server) = IggyServer::from_env().await else {
        return;
    };
    let proxy = wire::start_iggy_proxy(server.address()).await;
    all_scenarios(&proxy).await;
    proxy.shutdown().await;
}

/// The whole scenario set with the proxy talking TLS to Iggy (a certificate from a test CA).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn semantics_over_tls_on_iggy() {
    let Some(server) = IggyServer::from_env_tls().await else {
        return;
    };
    let tls = IggyTls {
        enabled: true,
        ca_file: server.tls_ca_file().map(Into::into),
        server_name: None,
    };
    let proxy = wire::start_iggy_proxy_with(server.address(), tls)
        .await
        .expect("proxy starts over TLS");
    all_scenarios(&proxy).await;
    proxy.shutdown().await;
}

/// A TLS setup that cannot work fails the proxy's startup with an error naming the address and
/// how TLS was set up; it never starts half-connected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_misconfiguration_fails_startup_on_iggy() {
    let Some(server) = IggyServer::from_env_tls().await else {
        return;
    };
    let dir = iggy_testkit::temp_dir("tls-misconfig").unwrap();
    let unrelated = dir.join("unrelated-ca.pem");
    std::fs::write(&unrelated, iggy_testkit::tls::unrelated_ca_pem().unwrap()).unwrap();
    let trusted = server.tls_ca_file().map(std::path::PathBuf::from);
    let tls = |ca_file: Option<std::path::PathBuf>, server_name: Option<&str>| IggyTls {
        enabled: true,
        ca_file,
        server_name: server_name.map(Into::into),
    };
    let cases = [
        ("plain TCP to a TLS listener", IggyTls::default()),
        (
            "a CA that did not sign the server",
            tls(Some(unrelated), None),
        ),
        ("the bundled public roots", tls(None, None)),
        (
            "a name the certificate is not for",
            tls(trusted, Some("iggy.example.com")),
        ),
    ];
    for (case, settings) in cases {
        let uses_tls = settings.enabled;
        let started = Instant::now();
        let error = match wire::start_iggy_proxy_with(server.address(), settings).await {
            Ok(proxy) => {
                proxy.shutdown().await;
                panic!("{case}: the proxy started");
            }
            Err(e) => format!("{e:#}"),
        };
        eprintln!("{case}: {error}");
        assert!(
            error.contains(server.address()) && (!uses_tls || error.contains("over TLS")),
            "{case}: {error}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{case}: took {:?}",
            started.elapsed()
        );
    }
    let _ = std::fs::remove_dir_all(dir);
}

/// Records acknowledged before a proxy restart are all readable after it, and new records
/// continue at the next offset (offsets are re-read from Iggy, not remembered by the proxy).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_restart_on_iggy() {
    let Some(server) = IggyServer::from_env().await else {
        return;
    };
    let proxy = wire::start_iggy_proxy(server.address()).await;
    let mut w = Wire::connect(proxy.kafka_addr).await;
    assert_eq!(create_topic(&mut w, "durable", 2).await, 0);
    let mut acknowledged = Vec::new();
    for i in 0..20 {
        let value = format!("before-{i}");
        let (err, offset) = produce(
            &mut w,
            "durable",
            i % 2,
            batch(&[&value], None, Compression::Snappy),
        )
        .await;
        assert_eq!(err, 0);
        acknowledged.push((i % 2, offset, value));
    }
    drop(w);
    proxy.shutdown().await;

    let proxy = wire::start_iggy_proxy(server.address()).await;
    let mut w = Wire::connect(proxy.kafka_addr).await;
    for partition in 0..2 {
        let f = fetch(&mut w, "durable", partition, 0, 0, 1).await;
        let expected: Vec<(i64, String)> = acknowledged
            .iter()
            .filter(|(p, _, _)| *p == partition)
            .map(|(_, o, v)| (*o, v.clone()))
            .collect();
        assert_eq!(f.records, expected, "partition {partition} after restart");
        let (err, next) = produce(
            &mut w,
            "durable",
            partition,
            batch(&["after"], None, Compression::None),
        )
        .await;
        assert_eq!(
            (err, next),
            (0, 10),
            "partition {partition} continues at the next offset"
        );
    }
    proxy.shutdown().await;
}
