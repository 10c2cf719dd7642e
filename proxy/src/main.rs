//! The `kafka-iggy-proxy` binary: configuration → listeners (the back end connects in the
//! background) → run until signalled.

use clap::Parser;
use kafka_iggy_proxy::config::{Cli, Command, LogFormat, ProxyConfig, ScramCredentialArgs};
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
    let mut cli = Cli::parse();
    if let Some(Command::ScramCredential(args)) = cli.command.take() {
        return scram_credential(&args);
    }
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
    for (listener, (name, addr)) in proxy
        .broker
        .config
        .listeners()
        .iter()
        .zip(&proxy.listener_addrs)
    {
        let (host, port) = listener.advertised().unwrap_or_default();
        tracing::info!(
            listener = %name,
            kafka = %addr,
            advertised = %format!("{host}:{port}"),
            security_protocol = listener.security_protocol.name(),
            "listening for Kafka clients"
        );
    }
    tracing::info!(
        kafka = %proxy.kafka_addr,
        metrics = ?proxy.metrics_addr,
        backend = ?backend,
        "kafka-iggy-proxy listening"
    );
    wait_for_signal().await;
    tracing::info!("shutting down");
    proxy.shutdown().await;
    std::process::ExitCode::SUCCESS
}

/// `scram-credential`: prints a users file entry, never the password.
fn scram_credential(args: &ScramCredentialArgs) -> std::process::ExitCode {
    let password = if args.password_file.as_os_str() == "-" {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut text).map(|_| text)
    } else {
        std::fs::read_to_string(&args.password_file)
    };
    let password = match password {
        Ok(p) => p.trim_end_matches(['\n', '\r']).to_string(),
        Err(e) => {
            eprintln!("kafka-iggy-proxy: {}: {e}", args.password_file.display());
            return std::process::ExitCode::from(2);
        }
    };
    match kafka_iggy_proxy::security::users::credential_entry(
        &args.user,
        password.as_bytes(),
        &args.mechanisms,
        args.iterations,
    ) {
        Ok(yaml) => {
            print!("{yaml}");
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("kafka-iggy-proxy: {e}");
            std::process::ExitCode::from(2)
        }
    }
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
