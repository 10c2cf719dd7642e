//! The operator's own Prometheus metrics and its HTTP endpoints (/metrics, /healthz, /readyz).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounterVec, IntGauge, Opts, Registry, TextEncoder,
};

pub struct OperatorMetrics {
    registry: Registry,
    pub reconciles: IntCounterVec,
    pub reconcile_errors: IntCounterVec,
    pub reconcile_seconds: Histogram,
    pub leader: IntGauge,
    /// Set once the operator has talked to the API server.
    pub ready: AtomicBool,
}

impl OperatorMetrics {
    pub fn new() -> anyhow::Result<Self> {
        let registry = Registry::new_custom(Some("kafka_iggy_operator".into()), None)?;
        let reconciles = IntCounterVec::new(
            Opts::new("reconciles_total", "Reconciliations, by result"),
            &["result"],
        )?;
        let reconcile_errors = IntCounterVec::new(
            Opts::new(
                "reconcile_errors_total",
                "Failed reconciliations, by reason",
            ),
            &["reason"],
        )?;
        let reconcile_seconds = Histogram::with_opts(HistogramOpts::new(
            "reconcile_duration_seconds",
            "Time per reconciliation",
        ))?;
        let leader = IntGauge::new("leader", "1 while this replica holds the leader lease")?;
        registry.register(Box::new(reconciles.clone()))?;
        registry.register(Box::new(reconcile_errors.clone()))?;
        registry.register(Box::new(reconcile_seconds.clone()))?;
        registry.register(Box::new(leader.clone()))?;
        Ok(Self {
            registry,
            reconciles,
            reconcile_errors,
            reconcile_seconds,
            leader,
            ready: AtomicBool::new(false),
        })
    }

    pub fn render(&self) -> String {
        let mut out = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            return format!("# encoding failed: {e}\n");
        }
        String::from_utf8_lossy(&out).into_owned()
    }
}

/// Serves /metrics, /healthz (the process is alive) and /readyz (it reached the API server).
pub async fn serve(addr: SocketAddr, metrics: Arc<OperatorMetrics>) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(addr = %listener.local_addr()?, "serving /metrics, /healthz, /readyz");
    axum::serve(listener, router(metrics)).await?;
    Ok(())
}

pub fn router(metrics: Arc<OperatorMetrics>) -> Router {
    Router::new()
        .route(
            "/metrics",
            get(|State(m): State<Arc<OperatorMetrics>>| async move { m.render() }),
        )
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/readyz",
            get(|State(m): State<Arc<OperatorMetrics>>| async move {
                if m.ready.load(Ordering::Relaxed) {
                    (StatusCode::OK, "ready")
                } else {
                    (
                        StatusCode::SERVICE_UNAVAILABLE,
                        "not connected to the API server yet",
                    )
                }
            }),
        )
        .with_state(metrics)
}

#[cfg(test)]
mod tests;
