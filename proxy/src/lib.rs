//! `kafka-iggy-proxy`: a Kafka wire-protocol server that stores records in Apache Iggy.
//!
//! Data flow: [`server`] accepts → [`connection`] frames and decodes ([`protocol`]) → one
//! [`handlers`] module per API family → the [`backend::Backend`] trait → Iggy or memory.

pub mod backend;
pub mod broker;
pub mod budget;
pub mod cluster;
pub mod config;
pub mod connection;
pub mod cpu_pool;
pub mod error;
pub mod groups;
pub mod handlers;
pub mod http;
pub mod membership;
pub mod metrics;
pub mod partitions;
pub mod protocol;
pub mod security;
pub mod server;
pub mod shutdown;
#[doc(hidden)]
pub mod test_rng;
pub mod topic_config;
pub mod topic_state;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;

use crate::backend::iggy::{Credentials, DeferredIggy, IggyConfig, IggyTarget};
use crate::backend::instrumented::Instrumented;
use crate::backend::memory::MemoryBackend;
use crate::backend::SharedBackend;
use crate::broker::Broker;
use crate::config::{BackendKind, ProxyConfig};
use crate::metrics::Metrics;
use crate::security::ListenerSecurity;
use crate::shutdown::ShutdownTrigger;

/// Guards every allocation against hostile element counts; see [`protocol::alloc_guard`].
#[global_allocator]
static ALLOCATOR: protocol::alloc_guard::GuardedAllocator = protocol::alloc_guard::GuardedAllocator;

/// A running proxy. Dropping it does not stop it; call [`Proxy::shutdown`].
pub struct Proxy {
    /// Where the first listener was bound.
    pub kafka_addr: SocketAddr,
    /// Every listener's name and bound address, in configuration order.
    pub listener_addrs: Vec<(String, SocketAddr)>,
    pub metrics_addr: Option<SocketAddr>,
    pub broker: Arc<Broker>,
    trigger: ShutdownTrigger,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// Stopped last: the replica keeps its partitions' write permits (heartbeats) until
    /// everything else, the group coordinator's last writes included, has finished.
    membership: Option<(ShutdownTrigger, tokio::task::JoinHandle<()>)>,
}

impl Proxy {
    /// Binds the listeners and starts serving. The Iggy back end connects in the background:
    /// until it has, clients get retriable errors and /readyz says why it is not ready. Only a
    /// setup that cannot work (Iggy reached but the TLS handshake failed) stops startup.
    pub async fn start(config: ProxyConfig) -> anyhow::Result<Self> {
        let metrics = Arc::new(Metrics::new());
        if config.backend == BackendKind::Memory {
            return Self::start_with_backend(config, Arc::new(MemoryBackend::new()), metrics).await;
        }
        let (backend, first_attempt) = DeferredIggy::spawn(iggy_config(&config));
        let failed = |reason: String| {
            anyhow::anyhow!(
                "cannot connect to Iggy at {}{}: {reason}",
                config.iggy.address,
                config.iggy.tls.describe()
            )
        };
        let proxy = Self::start_with_backend(config.clone(), backend, metrics).await?;
        match first_attempt.await {
            Ok(Err(reason)) => {
                proxy.shutdown().await;
                Err(failed(reason))
            }
            _ => Ok(proxy),
        }
    }

    /// As [`Proxy::start`] with a back end the caller built (tests share one between proxies).
    pub async fn start_with_backend(
        mut config: ProxyConfig,
        backend: SharedBackend,
        metrics: Arc<Metrics>,
    ) -> anyhow::Result<Self> {
        let iggy = (config.backend == BackendKind::Iggy).then(|| Credentials {
            address: config.iggy.address.clone(),
            username: config.iggy.username.clone(),
            password: config.iggy.password.clone(),
            tls: config.iggy.tls.clone(),
        });
        let mut listener_configs = config.listeners();
        let mut listeners = Vec::with_capacity(listener_configs.len());
        for l in &mut listener_configs {
            let security = ListenerSecurity::new(l, iggy.clone()).map_err(anyhow::Error::msg)?;
            let socket = TcpListener::bind(l.listen).await.map_err(|e| {
                anyhow::anyhow!("cannot listen on {} (listener {}): {e}", l.listen, l.name)
            })?;
            // Port 0 means "pick one": advertise what was actually bound.
            if l.listen.port() == 0 {
                l.listen = socket.local_addr()?;
            }
            listeners.push((socket, Arc::new(security)));
        }
        if config.listeners.is_empty() {
            config.listen = listener_configs[0].listen;
        } else {
            config.listeners.clone_from(&listener_configs);
        }
        let listener_addrs: Vec<(String, SocketAddr)> = listener_configs
            .iter()
            .map(|l| (l.name.clone(), l.listen))
            .collect();
        let kafka_addr = listener_addrs[0].1;
        let metrics_listener = match config.metrics_listen {
            Some(addr) => Some(
                TcpListener::bind(addr)
                    .await
                    .map_err(|e| anyhow::anyhow!("cannot listen on {addr} for metrics: {e}"))?,
            ),
            None => None,
        };
        let metrics_addr = metrics_listener
            .as_ref()
            .map(|l| l.local_addr())
            .transpose()?;
        let backend = Instrumented::wrap(backend, metrics.clone());
        let broker = Arc::new(Broker::new(config, backend, metrics).map_err(anyhow::Error::msg)?);
        let (trigger, shutdown) = shutdown::channel();
        let limit = Arc::new(tokio::sync::Semaphore::new(
            broker.config.limits.max_connections,
        ));
        let mut tasks: Vec<_> = listeners
            .into_iter()
            .map(|(socket, security)| {
                tokio::spawn(server::run(
                    broker.clone(),
                    socket,
                    security,
                    limit.clone(),
                    shutdown.clone(),
                ))
            })
            .collect();
        tasks.push(tokio::spawn(broker.groups.clone().run(shutdown.clone())));
        let membership = broker.cluster.membership().map(|membership| {
            let (trigger, shutdown) = shutdown::channel();
            (trigger, tokio::spawn(membership.clone().run(shutdown)))
        });
        if let Some(l) = metrics_listener {
            tasks.push(tokio::spawn(http::run(broker.clone(), l, shutdown)));
        }
        Ok(Self {
            kafka_addr,
            listener_addrs,
            metrics_addr,
            broker,
            trigger,
            tasks,
            membership,
        })
    }

    /// Stops accepting, closes connections and waits for the tasks to end; then leaves the
    /// cluster (replicas take over this one's partitions and groups).
    pub async fn shutdown(self) {
        self.trigger.trigger();
        for task in self.tasks {
            let _ = task.await;
        }
        self.broker.groups.persist_before_leaving().await;
        if let Some((trigger, task)) = self.membership {
            trigger.trigger();
            let _ = task.await;
        }
    }
}

fn iggy_config(config: &ProxyConfig) -> IggyConfig {
    IggyConfig {
        address: config.iggy.address.clone(),
        username: config.iggy.username.clone(),
        password: config.iggy.password.clone(),
        default_stream: config.default_stream.clone(),
        topic_overrides: config
            .topics
            .iter()
            .map(|(kafka, m)| {
                (
                    kafka.clone(),
                    IggyTarget {
                        stream: m.stream.clone(),
                        topic: m.topic.clone().unwrap_or_else(|| kafka.clone()),
                    },
                )
            })
            .collect(),
        connections: config.iggy.connections,
        fsync_on_append: config.iggy.fsync_on_append,
        tls: config.iggy.tls.clone(),
        read_ahead_bytes: config.iggy.read_ahead_bytes,
    }
}
