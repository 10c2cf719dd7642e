//! Running the proxy under test: in this process (default), as a child process from a binary, or
//! an already running one.
//!
//! In-process is the default because it needs no second build and the benchmark measures exactly
//! the library it was compiled with. The proxy gets its own multi-threaded tokio runtime (worker
//! threads named `proxy-worker`, as many as the released binary's `#[tokio::main]` would start:
//! one per core unless `--proxy-threads` says otherwise), separate from the benchmark's client
//! runtime; librdkafka runs on its own threads. So the client and the proxy never share an
//! executor, only the CPU, as they would on one machine with the binary.

use std::fs::{self, File};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use kafka_iggy_proxy::backend::memory::MemoryBackend;
use kafka_iggy_proxy::config::{BackendKind, IggySettings, MembershipKind, ProxyConfig};
use kafka_iggy_proxy::metrics::Metrics;
use kafka_iggy_proxy::Proxy;

use crate::cpu::ProxyCpu;

const START_TIMEOUT: Duration = Duration::from_secs(60);

/// What the proxy stores into.
#[derive(Debug, Clone)]
pub struct BackendChoice {
    pub kind: BackendKind,
    pub iggy_address: String,
    pub username: String,
    pub password: String,
    pub connections: Option<usize>,
    pub default_partitions: u32,
}

enum Handle {
    InProcess {
        runtime: Option<tokio::runtime::Runtime>,
        proxies: Vec<Proxy>,
    },
    Child {
        child: Child,
        dir: PathBuf,
        keep: bool,
    },
    External,
}

pub struct RunningProxy {
    pub bootstrap: String,
    /// How the proxy runs, for the report.
    pub mode: String,
    handle: Handle,
}

impl RunningProxy {
    pub fn in_process(backend: &BackendChoice, threads: usize) -> anyhow::Result<Self> {
        let runtime = proxy_runtime(threads)?;
        let proxy = runtime
            .block_on(Proxy::start(proxy_config(backend)))
            .context("the proxy did not start")?;
        Ok(Self {
            bootstrap: proxy.kafka_addr.to_string(),
            mode: format!("in-process, own tokio runtime with {threads} worker thread(s)"),
            handle: Handle::InProcess {
                runtime: Some(runtime),
                proxies: vec![proxy],
            },
        })
    }

    /// `count` proxies in one runtime that form one cluster (`--membership log`, broker ids
    /// 0..count); the bootstrap is the first, clients follow Metadata to each partition's
    /// leader. On the memory back end they share one store, as replicas share one Iggy.
    pub fn in_process_replicas(
        backend: &BackendChoice,
        threads: usize,
        count: usize,
    ) -> anyhow::Result<Self> {
        let runtime = proxy_runtime(threads)?;
        let shared = Arc::new(MemoryBackend::new());
        let mut proxies = Vec::new();
        for broker_id in 0..count {
            let mut config = proxy_config(backend);
            config.broker_id = broker_id as i32;
            config.cluster.membership = MembershipKind::Log;
            let started = match backend.kind {
                BackendKind::Iggy => runtime.block_on(Proxy::start(config)),
                BackendKind::Memory => runtime.block_on(Proxy::start_with_backend(
                    config,
                    shared.clone(),
                    Arc::new(Metrics::new()),
                )),
            };
            proxies.push(started.context("a replica did not start")?);
        }
        // Clients may only produce once every replica has joined and owns its partitions.
        runtime.block_on(wait_for_members(&proxies))?;
        Ok(Self {
            bootstrap: proxies[0].kafka_addr.to_string(),
            mode: format!(
                "{count} in-process replicas (--membership log), one tokio runtime with {threads} worker thread(s)"
            ),
            handle: Handle::InProcess {
                runtime: Some(runtime),
                proxies,
            },
        })
    }

    /// Starts `binary` (e.g. target/release/kafka-iggy-proxy) on a free loopback port.
    pub fn spawn(binary: &Path, backend: &BackendChoice, keep: bool) -> anyhow::Result<Self> {
        if !binary.is_file() {
            bail!("proxy binary {} does not exist", binary.display());
        }
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let listen = SocketAddr::from(([127, 0, 0, 1], port));
        let dir = iggy_testkit::temp_dir("kafka-iggy-bench-proxy")?;
        let log_path = dir.join("proxy.log");
        let log = File::create(&log_path)?;
        let mut command = Command::new(binary);
        command
            .arg("--listen")
            .arg(listen.to_string())
            .arg("--backend")
            .arg(match backend.kind {
                BackendKind::Iggy => "iggy",
                BackendKind::Memory => "memory",
            })
            .arg("--default-partitions")
            .arg(backend.default_partitions.to_string());
        if backend.kind == BackendKind::Iggy {
            command
                .arg("--iggy-address")
                .arg(&backend.iggy_address)
                .arg("--iggy-username")
                .arg(&backend.username)
                .arg("--iggy-password")
                .arg(&backend.password);
            if let Some(connections) = backend.connections {
                command
                    .arg("--iggy-connections")
                    .arg(connections.to_string());
            }
        }
        let child = command
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("cannot start {}", binary.display()))?;
        let mut running = Self {
            bootstrap: listen.to_string(),
            mode: format!("child process {} (pid {})", binary.display(), child.id()),
            handle: Handle::Child { child, dir, keep },
        };
        running.wait_until_listening(listen, &log_path)?;
        Ok(running)
    }

    /// A proxy someone else runs; it must store into the same Iggy server as the baseline.
    pub fn external(address: &str) -> Self {
        Self {
            bootstrap: address.to_string(),
            mode: format!("external at {address}"),
            handle: Handle::External,
        }
    }

    fn wait_until_listening(&mut self, listen: SocketAddr, log: &Path) -> anyhow::Result<()> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Handle::Child { child, .. } = &mut self.handle {
                if let Some(status) = child.try_wait()? {
                    bail!(
                        "the proxy exited during startup ({status}); last lines of {}:\n{}",
                        log.display(),
                        iggy_testkit::tail(log, 20)
                    );
                }
            }
            if TcpStream::connect_timeout(&listen, Duration::from_millis(500)).is_ok() {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("the proxy did not listen on {listen} within {START_TIMEOUT:?}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Where the proxy's CPU time can be read.
    pub fn cpu(&self) -> ProxyCpu {
        match &self.handle {
            Handle::InProcess { .. } => ProxyCpu::Threads,
            Handle::Child { child, .. } => ProxyCpu::Process(child.id()),
            Handle::External => ProxyCpu::Unknown,
        }
    }

    /// Stops a proxy this process started.
    pub fn stop(mut self) {
        self.stop_inner();
    }

    fn stop_inner(&mut self) {
        match &mut self.handle {
            Handle::InProcess { runtime, proxies } => {
                if let Some(runtime) = runtime.as_ref() {
                    for proxy in proxies.drain(..) {
                        runtime.block_on(async {
                            let _ = tokio::time::timeout(Duration::from_secs(10), proxy.shutdown())
                                .await;
                        });
                    }
                }
                if let Some(runtime) = runtime.take() {
                    runtime.shutdown_timeout(Duration::from_secs(5));
                }
            }
            Handle::Child { child, dir, keep } => {
                let _ = child.kill();
                let _ = child.wait();
                if !*keep {
                    let _ = fs::remove_dir_all(&*dir);
                }
            }
            Handle::External => {}
        }
    }
}

/// A runtime of its own for in-process proxies (threads named `proxy-worker`, whose CPU time
/// is the proxy's).
fn proxy_runtime(threads: usize) -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.max(1))
        .thread_name("proxy-worker")
        .enable_all()
        .build()
        .context("cannot build the proxy runtime")
}

fn proxy_config(backend: &BackendChoice) -> ProxyConfig {
    let mut config = ProxyConfig {
        backend: backend.kind,
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        iggy: IggySettings {
            address: backend.iggy_address.clone(),
            username: backend.username.clone(),
            password: backend.password.clone(),
            ..IggySettings::default()
        },
        default_partitions: backend.default_partitions,
        ..ProxyConfig::default()
    };
    if let Some(connections) = backend.connections {
        config.iggy.connections = connections;
    }
    config
}

/// Waits until every replica sees all of them as members.
async fn wait_for_members(proxies: &[Proxy]) -> anyhow::Result<()> {
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        let joined = proxies
            .iter()
            .all(|p| p.broker.cluster.brokers().len() == proxies.len());
        if joined {
            // One more lease-free moment for the hand-off acknowledgements (a heartbeat).
            tokio::time::sleep(Duration::from_secs(2)).await;
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("the replicas did not all join within {START_TIMEOUT:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

impl Drop for RunningProxy {
    fn drop(&mut self) {
        self.stop_inner();
    }
}
