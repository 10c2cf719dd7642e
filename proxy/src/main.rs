//! The `kafka-iggy-proxy` binary: configuration → listeners (the back end connects in the
//! background) → run until signalled.

use clap::Parser;
use kafka_iggy_proxy::config::{Cli, LogFormat, ProxyConfig};
use kafka_iggy_proxy::Proxy;
use tracing_subscriber::EnvFilter;

fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(
        |_| // The iggy SDK logs every error reply (a missing topic during auto-creation, say) at
        // error level; the back end reports what matters itself.
        EnvFilter::new("info,iggy=off,iggy_common=off,iggy_binary_protocol=off"),
    );
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match format {
        LogFormat::Plain => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let config = match ProxyConfig::resolve(cli, std::env::vars()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("kafka-iggy-proxy: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    init_logging(config.log_format);
    let backend = config.backend;
    let proxy = match Proxy::start(config).await {
        Ok(p) => p,
        Err(e) => {
            tracing::error!(error = %e, "startup failed");
            return std::process::ExitCode::FAILURE;
        }
    };
    let (host, port) = proxy.broker.config.advertised().unwrap_or_default();
    tracing::info!(
        kafka = %proxy.kafka_addr,
        advertised = %format!("{host}:{port}"),
        metrics = ?proxy.metrics_addr,
        backend = ?backend,
        "kafka-iggy-proxy listening"
    );
    wait_for_signal().await;
    tracing::info!("shutting down");
    proxy.shutdown().await;
    std::process::ExitCode::SUCCESS
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
