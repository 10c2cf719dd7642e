//! The operator's view of a running proxy: /healthz, /readyz (ready means the back end answers)
//! and the Prometheus metrics the README promises, moved by real requests.
#![allow(clippy::unwrap_used, reason = "test code: a panic is a failed test")]

mod wire;

use iggy_testkit::IggyServer;
use kafka_iggy_proxy::Proxy;
use kafka_protocol::records::Compression;
use wire::ops::*;
use wire::{http_get, Wire};

/// The value of the first sample line starting with `series`.
fn sample(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .find(|l| l.starts_with(series))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no sample {series} in:\n{metrics}"))
}

async fn probes_and_metrics(proxy: &Proxy) {
    assert_eq!(http_get(proxy, "/healthz").await.0, 200);
    assert_eq!(http_get(proxy, "/readyz").await.0, 200);

    let mut w = Wire::connect(proxy.kafka_addr).await;
    assert_eq!(create_topic(&mut w, "observed", 1).await, 0);
    produce(
        &mut w,
        "observed",
        0,
        batch(&["a", "b", "c"], None, Compression::None),
    )
    .await;
    assert_eq!(fetch(&mut w, "observed", 0, 0, 0, 1).await.records.len(), 3);
    assert_eq!(fetch(&mut w, "observed", 0, 99, 0, 1).await.error_code, 1);

    let (status, metrics) = http_get(proxy, "/metrics").await;
    assert_eq!(status, 200);
    assert_eq!(
        sample(&metrics, "kafka_iggy_requests_total{api=\"Produce\"}"),
        1.0
    );
    assert_eq!(
        sample(&metrics, "kafka_iggy_requests_total{api=\"Fetch\"}"),
        2.0
    );
    assert_eq!(
        sample(
            &metrics,
            "kafka_iggy_errors_total{api=\"Fetch\",error=\"OffsetOutOfRange\"}"
        ),
        1.0
    );
    assert_eq!(sample(&metrics, "kafka_iggy_records_in_total"), 3.0);
    assert_eq!(sample(&metrics, "kafka_iggy_records_out_total"), 3.0);
    assert_eq!(sample(&metrics, "kafka_iggy_connections_open"), 1.0);
    assert!(sample(&metrics, "kafka_iggy_network_bytes_in_total") > 0.0);
    assert!(
        sample(
            &metrics,
            "kafka_iggy_request_duration_seconds_count{api=\"Produce\"}"
        ) >= 1.0
    );
    assert!(
        sample(
            &metrics,
            "kafka_iggy_backend_call_duration_seconds_count{op=\"append\"}"
        ) >= 1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_and_metrics_on_memory() {
    let proxy = wire::start_memory_proxy().await;
    probes_and_metrics(&proxy).await;
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_and_metrics_on_iggy() {
    let Some(server) = IggyServer::from_env().await else {
        return;
    };
    let proxy = wire::start_iggy_proxy(server.address()).await;
    probes_and_metrics(&proxy).await;
    // Without its back end the proxy is alive but not ready, so Kubernetes stops routing to it.
    drop(server);
    let (status, body) = http_get(&proxy, "/readyz").await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(http_get(&proxy, "/healthz").await.0, 200);
    proxy.shutdown().await;
}
