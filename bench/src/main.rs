//! `kafka-iggy-bench`: produce and fetch throughput of 1 KiB records with librdkafka through
//! kafka-iggy-proxy, against the Iggy SDK talking to the same Iggy server directly, in one run.
//!
//! Speed is reported as a ratio to the in-process baseline (native Iggy SDK), never as a timed
//! assertion: absolute numbers depend on the machine, the ratio much less. Every read-back is
//! verified (count, order, offsets, sampled contents), and a run that fails verification exits
//! with status 2 instead of reporting a number. `--backend memory` measures only the proxy on its
//! in-memory store, so the command is useful without an Iggy server.

mod cpu;
mod kafka;
mod native;
mod payload;
mod proxy;
mod report;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use clap::Parser;
use iggy_testkit::IggyServer;
use kafka_iggy_proxy::config::BackendKind;

use crate::cpu::{CpuProbe, CpuTimes};
use crate::proxy::{BackendChoice, RunningProxy};
use crate::report::{Outcome, Path, Phase, Report};

#[derive(Debug, Parser)]
#[command(
    name = "kafka-iggy-bench",
    version,
    about = "Produce/fetch throughput of librdkafka through kafka-iggy-proxy versus the Iggy SDK directly",
    long_about = "Measures, in one run, produce and fetch throughput (MB/s, records/s) of fixed-size \
records written with librdkafka through kafka-iggy-proxy and with the Iggy SDK directly against the \
same Iggy server, and prints both and their ratio (proxy/native). MB = 10^6 payload bytes. Each path \
writes to a fresh topic and reads everything back; counts, order, offsets and a sample of contents \
are verified, and a failed verification exits with status 2. With --backend memory only the proxy \
(on its in-memory store) is measured."
)]
struct Args {
    /// Storage behind the proxy: iggy (compared with the Iggy SDK on the same server) or
    /// memory (the proxy alone, no baseline)
    #[arg(long, value_enum, default_value = "iggy")]
    backend: BackendKind,

    /// Iggy server binary to start with a fresh temporary data directory on a free port
    #[arg(long, env = "IGGY_SERVER_BIN")]
    iggy_server_bin: Option<PathBuf>,

    /// Use an already running Iggy server at HOST:PORT (TCP) instead of starting one
    #[arg(long)]
    iggy_address: Option<String>,

    #[arg(long, default_value = "iggy")]
    iggy_username: String,

    #[arg(long, default_value = "iggy", hide_default_value = true)]
    iggy_password: String,

    /// SDK connections in the proxy's pool [default: the proxy's default]
    #[arg(long)]
    iggy_connections: Option<usize>,

    /// Run this proxy binary as a child process instead of the library in-process
    #[arg(long)]
    proxy_bin: Option<PathBuf>,

    /// Use an already running proxy at HOST:PORT (it must store into the same Iggy server)
    #[arg(long)]
    proxy_address: Option<String>,

    /// Worker threads of the in-process proxy's runtime [default: one per core, as the binary]
    #[arg(long)]
    proxy_threads: Option<usize>,

    /// Also measure librdkafka through this many in-process proxy replicas that form one
    /// cluster (`--membership log`, partitions split among them) [default: 1, only the single
    /// proxy]
    #[arg(long, default_value_t = 1)]
    replicas: usize,

    /// Records per path and phase
    #[arg(long, default_value_t = 200_000)]
    records: u64,

    /// Bytes per record (payload only; no key, no headers)
    #[arg(long, default_value_t = 1024)]
    record_size: usize,

    /// Partitions of each topic; record i goes to partition i % partitions
    #[arg(long, default_value_t = 1)]
    partitions: u32,

    /// Native baseline: messages per send_messages and per poll_messages
    #[arg(long, default_value_t = 1000)]
    batch: usize,

    /// librdkafka producer linger.ms
    #[arg(long, default_value_t = 5)]
    linger_ms: u64,

    /// librdkafka producer batch.size in bytes
    #[arg(long, default_value_t = 1024 * 1024)]
    batch_size: usize,

    /// librdkafka producer acks
    #[arg(long, default_value = "all")]
    acks: String,

    /// librdkafka consumer max.partition.fetch.bytes
    #[arg(long, default_value_t = 1024 * 1024)]
    fetch_partition_bytes: usize,

    /// Repetitions; each uses fresh topics, the order of the two paths alternates, and the
    /// median time per path and phase is reported
    #[arg(long, default_value_t = 1)]
    rounds: usize,

    /// Give up on a read that makes no progress for this many seconds
    #[arg(long, default_value_t = 30)]
    stall_timeout_secs: u64,

    /// Print the results as JSON on stdout (progress still goes to stderr)
    #[arg(long)]
    json: bool,

    /// Keep the temporary directories (Iggy data and logs, proxy log)
    #[arg(long)]
    keep_data: bool,
}

/// What each path writes and reads.
#[derive(Debug, Clone)]
pub struct Workload {
    pub records: u64,
    pub record_size: usize,
    pub partitions: u32,
    pub batch: usize,
    pub linger_ms: u64,
    pub kafka_batch_size: usize,
    pub acks: String,
    pub fetch_partition_bytes: usize,
    pub stall_timeout: Duration,
}

/// Wall-clock time of a phase and the CPU time each party spent in it.
#[derive(Debug, Clone, Copy)]
pub struct Timed {
    pub elapsed: Duration,
    pub cpu: CpuTimes,
}

impl Timed {
    /// Ends a phase that started at `started` with CPU times `cpu_start`.
    pub fn since(started: Instant, probe: &CpuProbe, cpu_start: &CpuTimes) -> Self {
        let elapsed = started.elapsed();
        Self {
            elapsed,
            cpu: probe.sample().since(cpu_start),
        }
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .try_init();
    }
    match run(args) {
        Ok(report) if report.ok() => ExitCode::SUCCESS,
        Ok(_) => ExitCode::from(2),
        Err(e) => {
            eprintln!("kafka-iggy-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn validate(args: &Args) -> anyhow::Result<()> {
    if args.records == 0 {
        bail!("--records must be at least 1");
    }
    if args.record_size < payload::MIN_RECORD_SIZE {
        bail!(
            "--record-size must be at least {}",
            payload::MIN_RECORD_SIZE
        );
    }
    if args.partitions == 0 || args.batch == 0 || args.rounds == 0 {
        bail!("--partitions, --batch and --rounds must be at least 1");
    }
    if args.backend == BackendKind::Memory && args.iggy_address.is_some() {
        bail!("--iggy-address makes no sense with --backend memory");
    }
    if args.replicas == 0 {
        bail!("--replicas must be at least 1");
    }
    Ok(())
}

fn run(args: Args) -> anyhow::Result<Report> {
    validate(&args)?;
    if cfg!(debug_assertions) {
        eprintln!("warning: this is a debug build; build with --release for meaningful numbers");
    }
    let workload = Workload {
        records: args.records,
        record_size: args.record_size,
        partitions: args.partitions,
        batch: args.batch,
        linger_ms: args.linger_ms,
        kafka_batch_size: args.batch_size,
        acks: args.acks.clone(),
        fetch_partition_bytes: args.fetch_partition_bytes,
        stall_timeout: Duration::from_secs(args.stall_timeout_secs),
    };
    // The benchmark's own async work (Iggy SDK baseline, Kafka admin calls) runs here; the
    // in-process proxy has a runtime of its own.
    let client_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("bench-client")
        .enable_all()
        .build()
        .context("cannot build the client runtime")?;

    // Iggy server: an address given wins over a binary to start.
    let mut server: Option<IggyServer> = None;
    let (iggy_address, server_desc) = match args.backend {
        BackendKind::Memory => (String::new(), None),
        BackendKind::Iggy => match (&args.iggy_address, &args.iggy_server_bin) {
            (Some(address), _) => (address.clone(), Some(format!("external at {address}"))),
            (None, Some(bin)) => {
                eprintln!("starting {} ...", bin.display());
                let options = iggy_testkit::Options {
                    username: args.iggy_username.clone(),
                    password: args.iggy_password.clone(),
                    keep_data: args.keep_data,
                    dir_prefix: "kafka-iggy-bench-iggy".to_string(),
                    ..iggy_testkit::Options::default()
                };
                let s = client_rt
                    .block_on(IggyServer::start(bin, options))
                    .map_err(anyhow::Error::msg)?;
                let desc = format!(
                    "spawned {} (pid {}) at {}, data in {}",
                    bin.display(),
                    s.pid(),
                    s.address(),
                    s.dir().display()
                );
                let address = s.address().to_string();
                server = Some(s);
                (address, Some(desc))
            }
            (None, None) => bail!(
                "no Iggy server: give --iggy-server-bin PATH (or IGGY_SERVER_BIN), \
                 --iggy-address HOST:PORT, or use --backend memory"
            ),
        },
    };

    let backend = BackendChoice {
        kind: match args.backend {
            BackendKind::Iggy => BackendKind::Iggy,
            BackendKind::Memory => BackendKind::Memory,
        },
        iggy_address: iggy_address.clone(),
        username: args.iggy_username.clone(),
        password: args.iggy_password.clone(),
        connections: args.iggy_connections,
        default_partitions: args.partitions,
    };
    let threads = args.proxy_threads.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2)
    });
    let proxy = match (&args.proxy_address, &args.proxy_bin) {
        (Some(address), _) => RunningProxy::external(address),
        (None, Some(bin)) => RunningProxy::spawn(bin, &backend, args.keep_data)?,
        (None, None) => RunningProxy::in_process(&backend, threads)?,
    };
    eprintln!("proxy: {} on {}", proxy.mode, proxy.bootstrap);
    let replicas = if args.replicas > 1 {
        let replicas = RunningProxy::in_process_replicas(&backend, threads, args.replicas)?;
        eprintln!("replicas: {} on {}", replicas.mode, replicas.bootstrap);
        Some(replicas)
    } else {
        None
    };
    let cpu = CpuProbe::new(proxy.cpu(), server.as_ref().map(IggyServer::pid));

    let native_client = match args.backend {
        BackendKind::Iggy => Some(client_rt.block_on(iggy_testkit::connect(
            &iggy_address,
            &args.iggy_username,
            &args.iggy_password,
        ))?),
        BackendKind::Memory => None,
    };

    let (_, librdkafka) = rdkafka::util::get_rdkafka_version();
    let mut report = Report::new(&workload, args.rounds, &librdkafka);
    report.backend = format!("{:?}", args.backend).to_lowercase();
    report.iggy_server = server_desc;
    report.proxy_mode = proxy.mode.clone();
    report.replicas_mode = replicas.as_ref().map(|r| r.mode.clone());

    let base = format!(
        "{}-{}",
        std::process::id(),
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0)
    );
    for round in 0..args.rounds {
        let run_id = format!("{base}-{round}");
        // Alternate which path goes first, so server state left by one (buffers, segments,
        // page cache) does not always favour the same path.
        let proxy_first = round % 2 == 1;
        let mut order = vec![Path::Native, Path::Proxy];
        if replicas.is_some() {
            order.push(Path::Replicas);
        }
        if proxy_first {
            order.reverse();
        }
        for path in order {
            match path {
                Path::Native => {
                    if let Some(client) = &native_client {
                        run_native(&client_rt, client, &run_id, &workload, &cpu, &mut report);
                    }
                }
                Path::Proxy | Path::Replicas => {
                    let bootstrap = match (&replicas, path) {
                        (Some(replicas), Path::Replicas) => &replicas.bootstrap,
                        _ => &proxy.bootstrap,
                    };
                    let run_id = format!("{run_id}-{}", path.key());
                    run_proxy(
                        &client_rt,
                        bootstrap,
                        path,
                        &run_id,
                        &workload,
                        &cpu,
                        &mut report,
                    );
                }
            }
        }
    }

    proxy.stop();
    if let Some(replicas) = replicas {
        replicas.stop();
    }
    drop(native_client);
    drop(server);

    if args.json {
        println!("{}", report.to_json());
    } else {
        print!("{}", report.to_table());
    }
    Ok(report)
}

fn run_native(
    rt: &tokio::runtime::Runtime,
    client: &iggy::prelude::TcpClient,
    run_id: &str,
    w: &Workload,
    cpu: &CpuProbe,
    report: &mut Report,
) {
    let stream = format!("bench-native-{run_id}");
    let topic = "records";
    rt.block_on(async {
        if let Err(e) = native::create_topic(client, &stream, topic, w.partitions).await {
            report.record(
                Path::Native,
                Phase::Produce,
                Outcome::Failed(format!("{e:#}")),
            );
            return;
        }
        let produced = native::produce(client, &stream, topic, w, cpu).await;
        let ok = produced.is_ok();
        report.record(Path::Native, Phase::Produce, Outcome::from_time(produced));
        if ok {
            let fetched = native::fetch(client, &stream, topic, w, cpu).await;
            report.record(Path::Native, Phase::Fetch, Outcome::from_fetch(fetched));
        }
        if let Err(e) = native::delete_stream(client, &stream).await {
            eprintln!("warning: cannot delete Iggy stream {stream}: {e:#}");
        }
    });
}

fn run_proxy(
    rt: &tokio::runtime::Runtime,
    bootstrap: &str,
    path: Path,
    run_id: &str,
    w: &Workload,
    cpu: &CpuProbe,
    report: &mut Report,
) {
    let topic = format!("bench-kafka-{run_id}");
    if let Err(e) = rt.block_on(kafka::create_topic(bootstrap, &topic, w.partitions)) {
        report.record(path, Phase::Produce, Outcome::Failed(format!("{e:#}")));
        return;
    }
    let produced = kafka::produce(bootstrap, &topic, w, cpu);
    let ok = produced.is_ok();
    report.record(path, Phase::Produce, Outcome::from_time(produced));
    if ok {
        let fetched = kafka::fetch(bootstrap, &topic, w, cpu);
        report.record(path, Phase::Fetch, Outcome::from_fetch(fetched));
    }
    if let Err(e) = rt.block_on(kafka::delete_topic(bootstrap, &topic)) {
        eprintln!("warning: cannot delete topic {topic} through the proxy: {e:#}");
    }
}
