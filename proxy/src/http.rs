//! /metrics, /healthz and /readyz for Prometheus and Kubernetes probes.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;

use crate::broker::Broker;
use crate::shutdown::Shutdown;

/// /readyz fails when the back end does not answer within this time.
const READY_TIMEOUT: Duration = Duration::from_secs(2);

pub async fn run(broker: Arc<Broker>, listener: TcpListener, mut shutdown: Shutdown) {
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .with_state(broker);
    let result = axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.recv().await })
        .await;
    if let Err(e) = result {
        tracing::error!(error = %e, "metrics server failed");
    }
}

async fn metrics(State(broker): State<Arc<Broker>>) -> String {
    let m = &broker.metrics;
    m.memory_budget_used
        .set(i64::try_from(broker.budget.used_bytes()).unwrap_or(i64::MAX));
    m.memory_budget
        .set(i64::try_from(broker.config.limits.memory_budget_bytes).unwrap_or(i64::MAX));
    m.render()
}

/// Ready: the back end answers and, with replicas, this one has joined the cluster (so a
/// rollout waits for the join before it stops the next pod).
async fn ready(State(broker): State<Arc<Broker>>) -> (StatusCode, String) {
    match tokio::time::timeout(READY_TIMEOUT, broker.backend.health()).await {
        Ok(Ok(())) => match broker.cluster.membership().map(|m| m.readiness()) {
            Some(Err(why)) => (StatusCode::SERVICE_UNAVAILABLE, format!("{why}\n")),
            _ => (StatusCode::OK, "ready\n".into()),
        },
        Ok(Err(e)) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("back end unavailable: {e}\n"),
        ),
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "back end did not answer in time\n".into(),
        ),
    }
}
