//! A proxy started before Iggy: it serves at once with retriable errors, says why it is not
//! ready, answers Metadata so that clients keep what they knew, and starts working once Iggy
//! appears (without a restart). The binary does not exit either.
#![allow(clippy::unwrap_used, reason = "test code: a panic is a failed test")]

mod wire;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use iggy_testkit::IggyServer;
use kafka_iggy_proxy::config::{BackendKind, ProxyConfig};
use kafka_iggy_proxy::Proxy;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::Compression;
use wire::ops::*;
use wire::{http_get, Wire};

/// A port nothing listens on (bound, then released).
fn free_address() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().to_string()
}

async fn start_proxy(iggy_address: &str) -> Proxy {
    let mut config = ProxyConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        backend: BackendKind::Iggy,
        metrics_listen: Some("127.0.0.1:0".parse().unwrap()),
        ..ProxyConfig::default()
    };
    config.iggy.address = iggy_address.to_string();
    config.iggy.connections = 2;
    Proxy::start(config)
        .await
        .expect("the proxy starts without Iggy")
}

/// Metadata v12; `topics: None` asks for all topics.
async fn metadata(w: &mut Wire, topics: Option<&[&str]>) -> MetadataResponse {
    let request = MetadataRequest::default().with_topics(topics.map(|names| {
        names
            .iter()
            .map(|n| metadata_request::MetadataRequestTopic::default().with_name(Some(topic(n))))
            .collect()
    }));
    let ResponseKind::Metadata(r) = w.call(ApiKey::Metadata, 12, request.into()).await else {
        panic!("kind")
    };
    r
}

async fn find_coordinator(w: &mut Wire, group: &str) -> i16 {
    let request =
        FindCoordinatorRequest::default().with_key(StrBytes::from_string(group.to_string()));
    let ResponseKind::FindCoordinator(r) = w.call(ApiKey::FindCoordinator, 3, request.into()).await
    else {
        panic!("kind")
    };
    r.error_code
}

fn retriable(code: i16) -> bool {
    ResponseError::try_from_code(code).is_some_and(|e| e.is_retriable())
}

/// What clients see while Iggy cannot be reached: retriable errors everywhere, and Metadata
/// without brokers or topics (which Kafka clients discard, keeping their previous view)
/// rather than an empty topic list that reads as "every topic was deleted".
async fn unavailable_answers(proxy: &Proxy) {
    let (status, body) = http_get(proxy, "/readyz").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("Iggy unreachable"), "{body}");
    assert_eq!(http_get(proxy, "/healthz").await.0, 200);

    let mut w = Wire::connect(proxy.kafka_addr).await;
    for topics in [None, Some(&["orders"][..])] {
        let m = metadata(&mut w, topics).await;
        assert!(
            m.brokers.is_empty() && m.topics.is_empty(),
            "{topics:?}: {m:?}"
        );
    }
    let (code, _) = produce(&mut w, "orders", 0, batch(&["a"], None, Compression::None)).await;
    assert!(retriable(code), "produce: {code}");
    let code = fetch(&mut w, "orders", 0, 0, 0, 1).await.error_code;
    assert!(retriable(code), "fetch: {code}");
    assert_eq!(
        find_coordinator(&mut w, "group").await,
        ResponseError::CoordinatorNotAvailable.code()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_retriable_errors_while_iggy_is_unreachable() {
    let started = Instant::now();
    let proxy = start_proxy(&free_address()).await;
    assert!(started.elapsed() < Duration::from_secs(5), "startup waited");
    unavailable_answers(&proxy).await;
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_started_before_iggy_on_iggy() {
    if std::env::var_os(iggy_testkit::ENV_BIN).is_none() {
        eprintln!("SKIPPED: {} not set", iggy_testkit::ENV_BIN);
        return;
    }
    let address = free_address();
    let proxy = start_proxy(&address).await;
    unavailable_answers(&proxy).await;

    let server = IggyServer::from_env_at(&address).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (status, body) = http_get(&proxy, "/readyz").await;
        if status == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "not ready with Iggy up: {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let mut w = Wire::connect(proxy.kafka_addr).await;
    assert_eq!(create_topic(&mut w, "late", 1).await, 0);
    let (code, base) = produce(
        &mut w,
        "late",
        0,
        batch(&["x", "y"], None, Compression::None),
    )
    .await;
    assert_eq!((code, base), (0, 0));
    let fetched = fetch(&mut w, "late", 0, 0, 0, 1).await;
    let values: Vec<&str> = fetched.records.iter().map(|(_, v)| v.as_str()).collect();
    assert_eq!(values, ["x", "y"]);
    let m = metadata(&mut w, None).await;
    assert_eq!(m.brokers.len(), 1);
    assert!(m
        .topics
        .iter()
        .any(|t| t.name.as_ref().is_some_and(|n| n.as_str() == "late")));
    // Group state is loaded from Iggy now that it is there.
    assert_eq!(find_coordinator(&mut w, "group").await, 0);

    // Iggy going away again makes the proxy not ready, with the reason.
    drop(server);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (status, body) = http_get(&proxy, "/readyz").await;
        if status == 503 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still ready without Iggy: {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A client that knew topic "late" must not be told it is gone (pattern subscriptions
    // would revoke it): no brokers and no topics, which clients ignore.
    let m = metadata(&mut w, None).await;
    assert!(m.brokers.is_empty() && m.topics.is_empty(), "{m:?}");
    proxy.shutdown().await;
}

/// The release binary started while Iggy is down keeps running (not ready) instead of exiting,
/// and says why once, not once per attempt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_keeps_running_while_iggy_is_down() {
    let metrics = free_address();
    let mut command = Command::new(env!("CARGO_BIN_EXE_kafka-iggy-proxy"));
    // The proxy refuses unknown KAFKA_IGGY_* variables; the test run may have some of its own
    // (KAFKA_IGGY_K8S_BIN in CI).
    for (name, _) in std::env::vars().filter(|(k, _)| k.starts_with("KAFKA_IGGY_")) {
        command.env_remove(name);
    }
    let mut child = command
        .args(["--listen", "127.0.0.1:0", "--metrics-listen", &metrics])
        .args(["--iggy-address", &free_address(), "--log-format", "plain"])
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Long enough for several reconnection attempts (backoff starts at 100 ms).
    tokio::time::sleep(Duration::from_secs(3)).await;
    let running = child.try_wait().unwrap().is_none();
    let readyz = readyz_status(&metrics).await;
    let _ = child.kill();
    let output = child.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    assert!(running, "the proxy exited:\n{log}");
    assert_eq!(readyz, Some(503), "{log}");
    assert_eq!(log.matches("Iggy unreachable").count(), 1, "{log}");
}

/// Status code of GET /readyz on `address`.
async fn readyz_status(address: &str) -> Option<u16> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(address).await.ok()?;
    let request = format!("GET /readyz HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await.ok()?;
    response.split_whitespace().nth(1)?.parse().ok()
}
