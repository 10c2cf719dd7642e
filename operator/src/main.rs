use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};
use k8s_openapi::api::coordination::v1::Lease;
use kafka_iggy_operator::crd::crd_yaml;
use kafka_iggy_operator::leader::LeaderElector;
use kafka_iggy_operator::metrics::{self, OperatorMetrics};
use kafka_iggy_operator::reconcile::{self, Context};
use kube::{Api, Client};

/// Kubernetes operator for kafka-iggy-proxy: KafkaBridge resources (bridge.kafka-iggy.dev)
/// become proxy StatefulSets, Services and provisioned Iggy topics.
#[derive(Parser)]
#[command(version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the KafkaBridge CustomResourceDefinition (YAML), as committed in crds/
    Crd,
    /// Run the controller (uses the in-cluster config or $KUBECONFIG)
    Run {
        /// Serve /metrics, /healthz and /readyz here
        #[arg(long, env = "OPERATOR_METRICS_LISTEN", default_value = "0.0.0.0:8080")]
        metrics_listen: SocketAddr,
        /// Namespace of the leader-election Lease (default: the pod's namespace)
        #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
        lease_namespace: String,
        /// Name of the leader-election Lease
        #[arg(long, default_value = "kafka-iggy-operator")]
        lease_name: String,
        /// This replica's identity in the Lease (default: $HOSTNAME, the pod name, else one
        /// unique to this process: two replicas must never share one)
        #[arg(long, env = "POD_NAME")]
        identity: Option<String>,
        /// Run without leader election (a single replica only)
        #[arg(long)]
        no_leader_election: bool,
        /// Watch KafkaBridges in this namespace only (the chart's namespace-scoped install
        /// mode, with a Role instead of a ClusterRole); unset = every namespace
        #[arg(long, env = "WATCH_NAMESPACE")]
        namespace: Option<String>,
        /// Seconds between periodic resyncs of every KafkaBridge
        #[arg(long, default_value_t = 300)]
        resync_seconds: u64,
        /// Seconds a KafkaBridge with deletionPolicy Delete waits for its Iggy cleanup before
        /// it is released anyway (topics left in place), so namespace deletion never hangs
        #[arg(long, default_value_t = 600)]
        iggy_cleanup_timeout_seconds: u64,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    kafka_iggy_operator::install_crypto_provider();
    match cli.command {
        Command::Crd => {
            use std::io::Write;
            let yaml = crd_yaml()?;
            match std::io::stdout().write_all(yaml.as_bytes()) {
                Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
                _ => Ok(()),
            }
        }
        Command::Run {
            metrics_listen,
            lease_namespace,
            lease_name,
            identity,
            no_leader_election,
            resync_seconds,
            iggy_cleanup_timeout_seconds,
            namespace,
        } => {
            tracing_subscriber::fmt()
                .with_env_filter(
                    tracing_subscriber::EnvFilter::try_from_default_env()
                        .unwrap_or_else(|_| "info,iggy=off,server=off".into()),
                )
                .json()
                .init();
            let metrics = Arc::new(OperatorMetrics::new()?);
            tokio::spawn({
                let metrics = metrics.clone();
                async move {
                    if let Err(e) = metrics::serve(metrics_listen, metrics).await {
                        tracing::error!(error = %e, "metrics listener failed");
                        std::process::exit(1);
                    }
                }
            });
            let client = Client::try_default().await?;
            client.apiserver_version().await?;
            metrics.ready.store(true, Ordering::Relaxed);
            let ctx = Arc::new(
                Context::new(
                    client.clone(),
                    metrics.clone(),
                    Duration::from_secs(resync_seconds),
                )
                .with_cleanup_timeout(Duration::from_secs(iggy_cleanup_timeout_seconds))
                .with_namespace(namespace.filter(|n| !n.is_empty())),
            );
            if no_leader_election {
                metrics.leader.set(1);
                reconcile::run(ctx).await;
                return Ok(());
            }
            let identity = identity.unwrap_or_else(default_identity);
            let elector = LeaderElector::new(
                Api::<Lease>::namespaced(client, &lease_namespace),
                &lease_name,
                &identity,
                Duration::from_secs(15),
            );
            tracing::info!(%identity, lease = %lease_name, "waiting for leadership");
            tokio::select! {
                () = elector.acquire() => {}
                () = shutdown_signal() => return Ok(()),
            }
            metrics.leader.set(1);
            tracing::info!(%identity, "leading");
            tokio::select! {
                // Ends on SIGTERM/Ctrl-C once in-flight reconciles are done.
                () = reconcile::run(ctx) => {
                    if let Err(e) = elector.release().await {
                        tracing::warn!(error = %e, "could not release the leader lease");
                    }
                    Ok(())
                }
                () = elector.hold() => {
                    // Another replica may act now: stop at once rather than act twice.
                    tracing::error!("lost the leader lease; exiting");
                    std::process::exit(1);
                }
            }
        }
    }
}

/// SIGTERM (Kubernetes stopping the pod) or Ctrl-C.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

fn default_identity() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.subsec_nanos())
                .unwrap_or(0);
            format!("kafka-iggy-operator-{}-{nanos}", std::process::id())
        })
}
