#![allow(clippy::unwrap_used, reason = "test code: a panic is a failed test")]

use std::future::IntoFuture;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;

/// A plain HTTP/1.1 GET: status code and body.
async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap();
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

#[tokio::test]
async fn health_readiness_and_metrics_endpoints() {
    let metrics = Arc::new(OperatorMetrics::new().unwrap());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(axum::serve(listener, router(metrics.clone())).into_future());

    assert_eq!(get(addr, "/healthz").await.0, 200);
    assert_eq!(
        get(addr, "/readyz").await.0,
        503,
        "not ready before the API server answered"
    );
    metrics.ready.store(true, Ordering::Relaxed);
    assert_eq!(get(addr, "/readyz").await.0, 200);

    metrics.reconciles.with_label_values(&["ok"]).inc();
    metrics
        .reconcile_errors
        .with_label_values(&["IggyUnreachable"])
        .inc();
    metrics.reconcile_seconds.observe(0.25);
    let (status, body) = get(addr, "/metrics").await;
    assert_eq!(status, 200);
    for line in [
        "kafka_iggy_operator_reconciles_total{result=\"ok\"} 1",
        "kafka_iggy_operator_reconcile_errors_total{reason=\"IggyUnreachable\"} 1",
        "kafka_iggy_operator_reconcile_duration_seconds_count 1",
        "kafka_iggy_operator_leader 0",
    ] {
        assert!(body.contains(line), "missing {line:?} in:\n{body}");
    }
    assert_eq!(get(addr, "/nope").await.0, 404);
}
