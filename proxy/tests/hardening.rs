//! A misbehaving client costs only its own connection: compression bombs, clients that stop
//! reading, slow-loris frames, acks=0 failures, half-closes, requests for made-up topics. Every
//! scenario runs on the memory back end and, with `IGGY_SERVER_BIN`, on real Iggy.

mod wire;

use std::time::{Duration, Instant};

use bytes::Bytes;
use iggy_testkit::IggyServer;
use kafka_iggy_proxy::config::{BackendKind, Limits};
use kafka_iggy_proxy::Proxy;
use kafka_protocol::messages::*;
use kafka_protocol::records::Compression;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpSocket;
use wire::ops::*;
use wire::{default_request, http_get, Wire};

const MIB: usize = 1024 * 1024;

/// Where the proxies of a scenario keep their data.
#[derive(Clone, Copy)]
enum Store<'a> {
    Memory,
    Iggy(&'a IggyServer),
}

async fn start(store: Store<'_>, limits: Limits) -> Proxy {
    let mut config = match store {
        Store::Memory => wire::local_config(BackendKind::Memory),
        Store::Iggy(server) => {
            let mut config = wire::local_config(BackendKind::Iggy);
            config.iggy.address = server.address().to_string();
            config
        }
    };
    config.limits = limits;
    wire::start_configured(config).await.expect("proxy starts")
}

fn produce_request(topic_name: &str, partition: i32, acks: i16, records: Bytes) -> ProduceRequest {
    ProduceRequest::default()
        .with_acks(acks)
        .with_timeout_ms(5000)
        .with_topic_data(vec![produce_request::TopicProduceData::default()
            .with_name(topic(topic_name))
            .with_partition_data(vec![
                produce_request::PartitionProduceData::default()
                    .with_index(partition)
                    .with_records(Some(records)),
            ])])
}

fn fetch_request(topic_name: &str, offset: i64, max_bytes: i32) -> FetchRequest {
    FetchRequest::default()
        .with_max_wait_ms(0)
        .with_max_bytes(max_bytes)
        .with_topics(vec![fetch_request::FetchTopic::default()
            .with_topic(topic(topic_name))
            .with_partitions(vec![fetch_request::FetchPartition::default()
                .with_partition(0)
                .with_fetch_offset(offset)
                .with_partition_max_bytes(max_bytes)])])
}

async fn closed_on_error(proxy: &Proxy, reason: &str) -> u64 {
    let (_, body) = http_get(proxy, "/metrics").await;
    let needle = format!("kafka_iggy_connections_closed_on_error_total{{reason=\"{reason}\"}} ");
    body.lines()
        .find_map(|l| l.strip_prefix(&needle))
        .map_or(0, |v| v.trim().parse().expect("a counter"))
}

/// `count` records of `size` bytes each, as one uncompressed batch.
fn big_batch(count: usize, size: usize) -> Bytes {
    let value = "x".repeat(size);
    let values: Vec<&str> = (0..count).map(|_| value.as_str()).collect();
    batch(&values, None, Compression::None)
}

/// Creates `name` with 4 MiB of records and a connection (4 KiB receive buffer) that has asked
/// for six Fetches of all of it and reads none: its answers cannot be written. Returns a
/// well-behaved connection and the stalled one.
async fn stalled_reader(proxy: &Proxy, name: &str) -> (Wire, Wire) {
    let mut good = Wire::connect(proxy.kafka_addr).await;
    assert_eq!(create_topic(&mut good, name, 1).await, 0);
    for _ in 0..4 {
        let (code, _) = produce(&mut good, name, 0, big_batch(16, 64 * 1024)).await;
        assert_eq!(code, 0);
    }
    let socket = TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(4096).expect("buffer size");
    let mut slow = Wire::from_stream(socket.connect(proxy.kafka_addr).await.expect("connect"));
    for _ in 0..6 {
        let request = fetch_request(name, 0, 8 * MIB as i32);
        let (_, frame) = slow
            .encode_request(ApiKey::Fetch, 12, &request.into())
            .expect("encodable");
        slow.send_raw(&frame).await;
    }
    (good, slow)
}

/// A connection that asks for several large Fetch responses and then a Produce, and never reads
/// an answer. Its Produce has taken its place in the partition's append line; other producers
/// of that partition must still be served promptly.
async fn slow_reader_does_not_stall_other_producers(store: Store<'_>) {
    let limits = Limits {
        write_timeout_ms: 60_000,
        ..Limits::default()
    };
    let proxy = start(store, limits).await;
    let name = format!("slow-reader-{}", std::process::id());
    let (mut good, mut slow) = stalled_reader(&proxy, &name).await;
    let request = produce_request(&name, 0, -1, batch(&["from-slow"], None, Compression::None));
    let (_, frame) = slow
        .encode_request(ApiKey::Produce, 9, &request.into())
        .expect("encodable");
    slow.send_raw(&frame).await;
    tokio::time::sleep(Duration::from_millis(500)).await;

    let started = Instant::now();
    for i in 0..5 {
        let value = format!("good-{i}");
        let (code, _) = tokio::time::timeout(
            Duration::from_secs(5),
            produce(
                &mut good,
                &name,
                0,
                batch(&[&value], None, Compression::None),
            ),
        )
        .await
        .expect("a producer of the same partition is not held up by a client that stopped reading");
        assert_eq!(code, 0);
    }
    println!(
        "5 produces next to a stalled reader took {:?}",
        started.elapsed()
    );
    let records = fetch(&mut good, &name, 0, 64, 0, 0).await.records;
    assert!(
        records.iter().any(|(_, v)| v == "from-slow"),
        "the stalled client's produce was appended"
    );
    drop(slow);
    proxy.shutdown().await;
}

/// A client that stops reading is disconnected once its responses made no progress for
/// `write_timeout_ms`, which gives its memory back.
async fn non_reading_client_is_closed_after_write_timeout(store: Store<'_>) {
    let limits = Limits {
        write_timeout_ms: 1000,
        ..Limits::default()
    };
    let proxy = start(store, limits).await;
    let name = format!("write-timeout-{}", std::process::id());
    let (_good, _slow) = stalled_reader(&proxy, &name).await;
    // Generous: on a loaded machine a debug build takes seconds to encode the answers.
    let deadline = Instant::now() + Duration::from_secs(30);
    while closed_on_error(&proxy, "write_timeout").await == 0 {
        assert!(
            Instant::now() < deadline,
            "the non-reading client was not closed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Everything the closed connection held (frames, unwritten answers) is given back.
    budget_given_back(&proxy).await;
    proxy.shutdown().await;
}

/// A frame that starts and never finishes (slow-loris) is cut off after
/// `request_read_timeout_ms`; a connection that is merely idle between frames is not.
async fn partial_frames_time_out(store: Store<'_>) {
    let limits = Limits {
        request_read_timeout_ms: 500,
        ..Limits::default()
    };
    let proxy = start(store, limits).await;
    let mut loris = Wire::connect(proxy.kafka_addr).await;
    loris.send_raw(&[0, 0, 1, 0, 0, 18, 0, 3]).await;
    let mut idle = Wire::connect(proxy.kafka_addr).await;
    let started = Instant::now();
    assert!(loris.is_closed().await, "a partial frame is cut off");
    println!("partial frame closed after {:?}", started.elapsed());
    // The counter is bumped as the connection's tasks wind down, just after the close.
    let deadline = Instant::now() + Duration::from_secs(2);
    while closed_on_error(&proxy, "request_read_timeout").await == 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(closed_on_error(&proxy, "request_read_timeout").await, 1);
    let ResponseKind::ApiVersions(v) = idle
        .call(ApiKey::ApiVersions, 3, default_request(ApiKey::ApiVersions))
        .await
    else {
        panic!("kind")
    };
    assert_eq!(v.error_code, 0, "an idle connection is still served");
    proxy.shutdown().await;
}

/// A batch that decompresses past `max_decompressed_bytes` is refused with MESSAGE_TOO_LARGE
/// and a message, for every codec; the connection stays usable.
async fn decompression_is_capped(store: Store<'_>) {
    let limits = Limits {
        max_decompressed_bytes: Some(MIB),
        ..Limits::default()
    };
    let proxy = start(store, limits).await;
    let name = format!("bombs-{}", std::process::id());
    let mut wire = Wire::connect(proxy.kafka_addr).await;
    assert_eq!(create_topic(&mut wire, &name, 1).await, 0);
    let zeros = "\0".repeat(2 * MIB);
    for codec in [
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ] {
        let bomb = batch(&[&zeros], None, codec);
        assert!(bomb.len() < 200 * 1024, "{codec:?} compresses");
        let request = produce_request(&name, 0, -1, bomb);
        let ResponseKind::Produce(r) = wire.call(ApiKey::Produce, 9, request.into()).await else {
            panic!("kind")
        };
        let p = &r.responses[0].partition_responses[0];
        assert_eq!(p.error_code, 10, "{codec:?}: MESSAGE_TOO_LARGE");
        let message = p
            .error_message
            .as_ref()
            .map(|m| m.to_string())
            .unwrap_or_default();
        assert!(message.contains("1048576"), "{codec:?}: {message}");
        let small = batch(&["fine"], None, codec);
        assert_eq!(produce(&mut wire, &name, 0, small).await.0, 0, "{codec:?}");
    }
    let records = fetch(&mut wire, &name, 0, 0, 0, 0).await.records;
    assert_eq!(records.len(), 4, "only the small batches were stored");
    proxy.shutdown().await;
}

/// Two batches concatenated in one partition entry: INVALID_RECORD, nothing stored.
async fn several_batches_in_one_entry_are_invalid(store: Store<'_>) {
    let proxy = start(store, Limits::default()).await;
    let name = format!("two-batches-{}", std::process::id());
    let mut wire = Wire::connect(proxy.kafka_addr).await;
    assert_eq!(create_topic(&mut wire, &name, 1).await, 0);
    let mut two = batch(&["a"], None, Compression::None).to_vec();
    two.extend_from_slice(&batch(&["b"], None, Compression::None));
    let (code, _) = produce(&mut wire, &name, 0, Bytes::from(two)).await;
    assert_eq!(code, 87, "INVALID_RECORD");
    assert!(fetch(&mut wire, &name, 0, 0, 0, 0).await.records.is_empty());
    proxy.shutdown().await;
}

/// acks=0 gets no answer, but a failed acks=0 produce closes the connection (as Kafka does), so
/// the client notices and refreshes its metadata.
async fn failed_acks_zero_produce_closes_the_connection(store: Store<'_>) {
    let proxy = start(store, Limits::default()).await;
    let mut wire = Wire::connect(proxy.kafka_addr).await;
    let request = produce_request(
        "__consumer_offsets",
        0,
        0,
        batch(&["x"], None, Compression::None),
    );
    let (_, frame) = wire
        .encode_request(ApiKey::Produce, 9, &request.into())
        .expect("encodable");
    wire.send_raw(&frame).await;
    assert!(
        wire.is_closed().await,
        "closed after the failed acks=0 produce"
    );
    proxy.shutdown().await;
}

/// Requests sent before the client shut down its sending side are still carried out and
/// answered: here ten produces queued behind a Fetch that long-polls for a second.
async fn half_closed_client_gets_its_produces_done(store: Store<'_>) {
    let proxy = start(store, Limits::default()).await;
    let name = format!("half-close-{}", std::process::id());
    let mut wire = Wire::connect(proxy.kafka_addr).await;
    assert_eq!(create_topic(&mut wire, &name, 2).await, 0);
    let long_poll = fetch_request(&name, 0, MIB as i32)
        .with_max_wait_ms(1000)
        .with_min_bytes(1);
    let (_, frame) = wire
        .encode_request(ApiKey::Fetch, 12, &long_poll.into())
        .expect("encodable");
    wire.send_raw(&frame).await;
    for i in 0..10 {
        let value = format!("v{i}");
        let request = produce_request(&name, 1, -1, batch(&[&value], None, Compression::None));
        let (_, frame) = wire
            .encode_request(ApiKey::Produce, 9, &request.into())
            .expect("encodable");
        wire.send_raw(&frame).await;
    }
    wire.stream.shutdown().await.expect("half-close");
    let mut answers = 0;
    while wire.read_frame().await.is_some() {
        answers += 1;
    }
    assert_eq!(
        answers, 11,
        "every request sent before the half-close was answered"
    );
    let mut reader = Wire::connect(proxy.kafka_addr).await;
    assert_eq!(
        fetch(&mut reader, &name, 1, 0, 0, 0).await.records.len(),
        10
    );
    proxy.shutdown().await;
}

/// Produce and Fetch for topics that do not exist leave no per-partition state behind.
async fn made_up_topics_leave_no_state(store: Store<'_>) {
    let config_limits = Limits {
        max_fetch_wait_ms: 100,
        ..Limits::default()
    };
    let proxy = start(store, config_limits).await;
    let mut wire = Wire::connect(proxy.kafka_addr).await;
    let before = proxy.broker.partitions.len();
    for i in 0..50 {
        let name = format!("no-such-topic-{i}");
        let request = produce_request(&name, 0, -1, batch(&["x"], None, Compression::None));
        let ResponseKind::Produce(r) = wire.call(ApiKey::Produce, 9, request.into()).await else {
            panic!("kind")
        };
        assert_ne!(r.responses[0].partition_responses[0].error_code, 0);
        let f = fetch(&mut wire, &name, 0, 0, 0, 0).await;
        assert_eq!(f.error_code, 3, "UNKNOWN_TOPIC_OR_PARTITION");
    }
    assert_eq!(proxy.broker.partitions.len(), before);
    proxy.shutdown().await;
}

/// Fetch max_bytes is capped by `max_fetch_bytes`, however much a client asks for.
async fn fetch_size_is_capped(store: Store<'_>) {
    let limits = Limits {
        max_fetch_bytes: 2 * MIB,
        ..Limits::default()
    };
    let proxy = start(store, limits).await;
    let name = format!("fetch-cap-{}", std::process::id());
    let mut wire = Wire::connect(proxy.kafka_addr).await;
    assert_eq!(create_topic(&mut wire, &name, 1).await, 0);
    for _ in 0..8 {
        assert_eq!(
            produce(&mut wire, &name, 0, big_batch(16, 64 * 1024))
                .await
                .0,
            0
        );
    }
    let request = fetch_request(&name, 0, i32::MAX);
    let ResponseKind::Fetch(r) = wire.call(ApiKey::Fetch, 12, request.into()).await else {
        panic!("kind")
    };
    let records = r.responses[0].partitions[0]
        .records
        .as_ref()
        .expect("records");
    assert!(
        records.len() > MIB,
        "a full answer ({} bytes)",
        records.len()
    );
    assert!(
        records.len() <= 2 * MIB + 64 * 1024 + 1024,
        "{} bytes for a 2 MiB cap",
        records.len()
    );
    proxy.shutdown().await;
}

/// Many connections pipelining compressed batches to one partition while the memory budget
/// fits only one decoded request at a time: every request completes, in order per connection.
/// (A request holds its place in the partition's append line only once its records are decoded
/// and paid for, so requests waiting for memory never hold up the ones that have it.)
async fn tight_budget_many_producers_of_one_partition(store: Store<'_>) {
    let limits = Limits {
        memory_budget_bytes: 8 * MIB,
        max_frame_bytes: 2 * MIB,
        max_decompressed_bytes: Some(2 * MIB),
        max_fetch_bytes: 2 * MIB,
        ..Limits::default()
    };
    let proxy = start(store, limits).await;
    let name = format!("tight-budget-{}", std::process::id());
    let mut admin = Wire::connect(proxy.kafka_addr).await;
    assert_eq!(create_topic(&mut admin, &name, 1).await, 0);
    // Key and value (the helper keys each record by its value): about 1.8 MiB decoded.
    let big = "y".repeat(900 * 1024);
    let producers = (0..8).map(|c| {
        let name = name.clone();
        let big = big.clone();
        let addr = proxy.kafka_addr;
        tokio::spawn(async move {
            let mut wire = Wire::connect(addr).await;
            let mut sent = Vec::new();
            for r in 0..6 {
                let marker = format!("{c}-{r}");
                let records = batch(&[&marker, &big], None, Compression::Zstd);
                let request = produce_request(&name, 0, -1, records);
                let (correlation, frame) = wire
                    .encode_request(ApiKey::Produce, 9, &request.into())
                    .expect("encodable");
                wire.send_raw(&frame).await;
                sent.push(correlation);
            }
            let mut offsets = Vec::new();
            for correlation in sent {
                let frame = wire.read_frame().await.expect("answer");
                let ResponseKind::Produce(r) =
                    Wire::decode_response(ApiKey::Produce, 9, correlation, frame)
                else {
                    panic!("kind")
                };
                let p = &r.responses[0].partition_responses[0];
                assert_eq!(p.error_code, 0, "{:?}", p.error_message);
                offsets.push(p.base_offset);
            }
            assert!(
                offsets.windows(2).all(|w| w[0] < w[1]),
                "in order: {offsets:?}"
            );
            offsets
        })
    });
    let all = tokio::time::timeout(
        Duration::from_secs(60),
        futures::future::join_all(producers),
    )
    .await
    .expect("every producer finishes");
    let mut offsets: Vec<i64> = all.into_iter().flat_map(|r| r.expect("producer")).collect();
    offsets.sort_unstable();
    offsets.dedup();
    assert_eq!(offsets.len(), 48, "48 batches at distinct offsets");
    budget_given_back(&proxy).await;
    proxy.shutdown().await;
}

/// Everything reserved is given back: at once in practice, but a response's reservation is
/// dropped by the writer task just after the client could already read the bytes.
async fn budget_given_back(proxy: &Proxy) {
    let deadline = Instant::now() + Duration::from_secs(2);
    while proxy.broker.budget.used_bytes() != 0 {
        assert!(
            Instant::now() < deadline,
            "{} bytes of the budget still held",
            proxy.broker.budget.used_bytes()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn all_scenarios(store: Store<'_>) {
    tight_budget_many_producers_of_one_partition(store).await;
    decompression_is_capped(store).await;
    several_batches_in_one_entry_are_invalid(store).await;
    failed_acks_zero_produce_closes_the_connection(store).await;
    half_closed_client_gets_its_produces_done(store).await;
    made_up_topics_leave_no_state(store).await;
    fetch_size_is_capped(store).await;
    partial_frames_time_out(store).await;
    slow_reader_does_not_stall_other_producers(store).await;
    non_reading_client_is_closed_after_write_timeout(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hardening_on_memory() {
    all_scenarios(Store::Memory).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hardening_on_iggy() {
    let Some(server) = IggyServer::from_env().await else {
        return;
    };
    all_scenarios(Store::Iggy(&server)).await;
}
