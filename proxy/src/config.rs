//! Configuration: command-line flags (each with an environment twin) over an optional YAML file
//! over defaults. `ProxyConfig` is also the file format, so the operator can render it.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, ValueEnum};
use serde::{Deserialize, Serialize};

mod listener;
pub use listener::{
    ListenerConfig, ListenerTls, SaslMechanism, SaslSettings, SaslUsers, SecurityProtocol,
};

/// Prefix of every environment variable the proxy reads.
pub const ENV_PREFIX: &str = "KAFKA_IGGY_";

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    /// Apache Iggy over TCP (production).
    Iggy,
    /// In-process memory store (tests, local development; data is lost on exit).
    Memory,
}

/// How replicas find each other.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MembershipKind {
    /// This proxy is the whole cluster: it leads every partition and coordinates every group.
    Single,
    /// Replicas announce themselves in a membership log in the store (an Iggy partition) and
    /// split partitions and groups among the live ones (docs/replicas.md).
    Log,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Plain,
    Json,
}

/// Command line. Every flag is optional so that the YAML file and the defaults fill the gaps.
#[derive(Debug, Parser)]
#[command(
    name = "kafka-iggy-proxy",
    version,
    about = "Kafka wire-protocol proxy that stores data in Apache Iggy",
    long_about = "Unmodified Kafka clients connect to this proxy as if it were a Kafka broker; \
records are stored in Apache Iggy (one Kafka record = one Iggy message, the Kafka value is the \
Iggy payload). Flags override the YAML file given with --config, which overrides defaults. Every \
flag has an environment variable twin (shown below); unknown KAFKA_IGGY_* variables are an error."
)]
pub struct Cli {
    /// Address to accept Kafka clients on [default: 0.0.0.0:9092]
    #[arg(long, env = "KAFKA_IGGY_LISTEN")]
    pub listen: Option<SocketAddr>,

    /// HOST:PORT announced to clients in Metadata [default: the listen address; 0.0.0.0 becomes 127.0.0.1]
    #[arg(long, env = "KAFKA_IGGY_ADVERTISED_ADDRESS")]
    pub advertised_address: Option<String>,

    /// Security of the --listen listener: PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL; several
    /// listeners need the YAML `listeners` list [default: PLAINTEXT]
    #[arg(long, env = "KAFKA_IGGY_SECURITY_PROTOCOL", value_enum)]
    pub security_protocol: Option<SecurityProtocol>,

    /// PEM certificate chain of the --listen listener (SSL, SASL_SSL); re-read when it changes
    #[arg(long, env = "KAFKA_IGGY_TLS_CERT_FILE")]
    pub tls_cert_file: Option<PathBuf>,

    /// PEM private key of the --listen listener (SSL, SASL_SSL); re-read when it changes
    #[arg(long, env = "KAFKA_IGGY_TLS_KEY_FILE")]
    pub tls_key_file: Option<PathBuf>,

    /// PEM CA bundle for client certificates: set, clients must present one (mTLS)
    #[arg(long, env = "KAFKA_IGGY_TLS_CLIENT_CA_FILE")]
    pub tls_client_ca_file: Option<PathBuf>,

    /// SASL mechanisms of the --listen listener, comma separated: PLAIN, SCRAM-SHA-256,
    /// SCRAM-SHA-512 (SASL_PLAINTEXT, SASL_SSL)
    #[arg(long, env = "KAFKA_IGGY_SASL_MECHANISMS", value_delimiter = ',', value_parser = parse_mechanism)]
    pub sasl_mechanisms: Option<Vec<SaslMechanism>>,

    /// Where SASL credentials are checked: `passthrough` (PLAIN as Iggy users) or a SCRAM
    /// users file (see `kafka-iggy-proxy scram-credential`)
    #[arg(long, env = "KAFKA_IGGY_SASL_USERS")]
    pub sasl_users: Option<String>,

    /// Broker id announced for this proxy [default: 0]
    #[arg(long, env = "KAFKA_IGGY_BROKER_ID")]
    pub broker_id: Option<i32>,

    /// How replicas find each other: `single` (this proxy alone) or `log` (a membership log in
    /// Iggy; every replica needs its own --broker-id and --advertised-address) [default: single]
    #[arg(long, env = "KAFKA_IGGY_MEMBERSHIP", value_enum)]
    pub membership: Option<MembershipKind>,

    /// With --membership log: how long a replica that stopped heartbeating keeps its partitions
    /// [default: 10000]
    #[arg(long, env = "KAFKA_IGGY_MEMBERSHIP_LEASE_MS")]
    pub membership_lease_ms: Option<u64>,

    /// Storage back end
    #[arg(long, env = "KAFKA_IGGY_BACKEND", value_enum)]
    pub backend: Option<BackendKind>,

    /// Iggy server TCP address [default: 127.0.0.1:8090]
    #[arg(long, env = "KAFKA_IGGY_IGGY_ADDRESS")]
    pub iggy_address: Option<String>,

    /// Iggy user [default: iggy]
    #[arg(long, env = "KAFKA_IGGY_IGGY_USERNAME")]
    pub iggy_username: Option<String>,

    /// Iggy password [default: iggy]
    #[arg(long, env = "KAFKA_IGGY_IGGY_PASSWORD", hide_env_values = true)]
    pub iggy_password: Option<String>,

    /// Logged-in Iggy SDK connections shared by all clients [default: 8]
    #[arg(long, env = "KAFKA_IGGY_IGGY_CONNECTIONS")]
    pub iggy_connections: Option<usize>,

    /// Fsync every appended batch on the Iggy server before acknowledging the Produce, so
    /// acknowledged records survive an Iggy crash (slower) [default: false]
    #[arg(long, env = "KAFKA_IGGY_IGGY_FSYNC_ON_APPEND")]
    pub iggy_fsync_on_append: Option<bool>,

    /// Connect to Iggy over TLS [default: false]
    #[arg(long, env = "KAFKA_IGGY_IGGY_TLS")]
    pub iggy_tls: Option<bool>,

    /// PEM file of the CA certificates that sign the Iggy server's certificate [default: the
    /// Mozilla root store bundled with the proxy]
    #[arg(long, env = "KAFKA_IGGY_IGGY_TLS_CA_FILE")]
    pub iggy_tls_ca_file: Option<PathBuf>,

    /// Name the Iggy server's certificate must be valid for [default: the host of --iggy-address]
    #[arg(long, env = "KAFKA_IGGY_IGGY_TLS_SERVER_NAME")]
    pub iggy_tls_server_name: Option<String>,

    /// Iggy stream holding Kafka topics without an explicit mapping [default: kafka]
    #[arg(long, env = "KAFKA_IGGY_DEFAULT_STREAM")]
    pub default_stream: Option<String>,

    /// Create unknown topics on first use (Metadata with auto-create, Produce) [default: true]
    #[arg(long, env = "KAFKA_IGGY_AUTO_CREATE_TOPICS")]
    pub auto_create_topics: Option<bool>,

    /// Partitions given to auto-created topics and to CreateTopics with -1 [default: 1]
    #[arg(long, env = "KAFKA_IGGY_DEFAULT_PARTITIONS")]
    pub default_partitions: Option<u32>,

    /// Serve Prometheus /metrics, /healthz and /readyz here [default: off]
    #[arg(long, env = "KAFKA_IGGY_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,

    /// Largest accepted request frame in bytes [default: 104857600, as Kafka]
    #[arg(long, env = "KAFKA_IGGY_MAX_FRAME_BYTES")]
    pub max_frame_bytes: Option<usize>,

    /// Bytes the whole proxy may hold for requests, decoded records and unwritten responses;
    /// at the limit it stops reading sockets [default: 536870912]
    #[arg(long, env = "KAFKA_IGGY_MEMORY_BUDGET_BYTES")]
    pub memory_budget_bytes: Option<usize>,

    /// Most bytes one produced batch may decompress and decode to [default: max-frame-bytes]
    #[arg(long, env = "KAFKA_IGGY_MAX_DECOMPRESSED_BYTES")]
    pub max_decompressed_bytes: Option<usize>,

    /// Upper bound on a Fetch's max_bytes and per-partition max_bytes [default: 57671680]
    #[arg(long, env = "KAFKA_IGGY_MAX_FETCH_BYTES")]
    pub max_fetch_bytes: Option<usize>,

    /// Most simultaneous client connections; further ones are closed at once [default: 10000]
    #[arg(long, env = "KAFKA_IGGY_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,

    /// How long the first rebalance of a new consumer group waits for more members
    /// [default: 3000, as Kafka]
    #[arg(long, env = "KAFKA_IGGY_GROUP_INITIAL_REBALANCE_DELAY_MS")]
    pub group_initial_rebalance_delay_ms: Option<u64>,

    /// Smallest consumer session.timeout.ms accepted [default: 6000, as Kafka]
    #[arg(long, env = "KAFKA_IGGY_GROUP_MIN_SESSION_TIMEOUT_MS")]
    pub group_min_session_timeout_ms: Option<u64>,

    /// Consumer groups without members kept in memory; the least recently used beyond it are
    /// read back from the offsets log when used again [default: 10000]
    #[arg(long, env = "KAFKA_IGGY_GROUP_MAX_EMPTY_GROUPS")]
    pub group_max_empty_groups: Option<usize>,

    /// Log format
    #[arg(long, env = "KAFKA_IGGY_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,

    /// YAML configuration file (see README for the schema)
    #[arg(long, env = "KAFKA_IGGY_CONFIG")]
    pub config: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Tools besides running the proxy.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Print a SASL users file entry (SCRAM salt, iterations, StoredKey, ServerKey) for a user,
    /// to add under `users:` in the file named by --sasl-users
    ScramCredential(ScramCredentialArgs),
}

#[derive(Debug, clap::Args)]
pub struct ScramCredentialArgs {
    /// SCRAM-SHA-256 or SCRAM-SHA-512; repeat for both
    #[arg(long = "mechanism", required = true, value_parser = parse_mechanism)]
    pub mechanisms: Vec<SaslMechanism>,
    #[arg(long)]
    pub user: String,
    /// File holding the password (its trailing newline is ignored); `-` reads standard input
    #[arg(long)]
    pub password_file: PathBuf,
    /// PBKDF2 iterations [default: 4096, as Kafka]
    #[arg(long, default_value_t = 4096)]
    pub iterations: u32,
}

fn parse_mechanism(name: &str) -> Result<SaslMechanism, String> {
    SaslMechanism::parse(name.trim()).ok_or_else(|| {
        format!("unknown SASL mechanism {name:?} (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512)")
    })
}

/// Where a Kafka topic lives in Iggy when it is not `<default stream>/<topic>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopicMapping {
    pub stream: String,
    /// Iggy topic name [default: the Kafka topic name]
    #[serde(default)]
    pub topic: Option<String>,
}

/// Explicit resource limits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    pub max_frame_bytes: usize,
    pub max_connections: usize,
    /// Requests decoded ahead of the one being answered on a connection.
    pub max_in_flight_per_connection: usize,
    /// Upper bound applied to a Fetch's max_wait_ms.
    pub max_fetch_wait_ms: u64,
    /// Most bytes one produced record batch may decompress to [default: max_frame_bytes];
    /// beyond it the partition is answered MESSAGE_TOO_LARGE.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_decompressed_bytes: Option<usize>,
    /// Upper bound applied to a Fetch's max_bytes and to each partition's max_bytes
    /// (Kafka's broker setting fetch.max.bytes).
    pub max_fetch_bytes: usize,
    /// Bytes of requests read and not yet answered, of decompressed records and of responses
    /// not yet written, for the whole process. At the limit the proxy stops reading sockets
    /// until memory is given back.
    pub memory_budget_bytes: usize,
    /// A connection whose responses make no write progress for this long is closed.
    pub write_timeout_ms: u64,
    /// A request frame must arrive in full within this long of its first byte (slow-loris).
    pub request_read_timeout_ms: u64,
    /// A connection with no request for this long is closed (Kafka's connections.max.idle.ms).
    pub idle_timeout_ms: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_frame_bytes: 100 * 1024 * 1024,
            max_connections: 10_000,
            max_in_flight_per_connection: 16,
            max_fetch_wait_ms: 30_000,
            max_decompressed_bytes: None,
            max_fetch_bytes: 55 * 1024 * 1024,
            memory_budget_bytes: 512 * 1024 * 1024,
            write_timeout_ms: 30_000,
            request_read_timeout_ms: 30_000,
            idle_timeout_ms: 600_000,
        }
    }
}

impl Limits {
    /// The effective decompression cap.
    pub fn decompressed_cap(&self) -> usize {
        self.max_decompressed_bytes.unwrap_or(self.max_frame_bytes)
    }
}

/// Consumer-group coordination (Kafka's `group.*` and `offsets.*` broker settings).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GroupSettings {
    /// Smallest session.timeout.ms a member may ask for (Kafka: group.min.session.timeout.ms).
    pub min_session_timeout_ms: u64,
    /// Largest session.timeout.ms a member may ask for (Kafka: group.max.session.timeout.ms).
    pub max_session_timeout_ms: u64,
    /// How long the first rebalance of an empty group waits for more members
    /// (Kafka: group.initial.rebalance.delay.ms).
    pub initial_rebalance_delay_ms: u64,
    /// Groups with members this proxy coordinates at most; the first member of one more gets
    /// POLICY_VIOLATION. Groups without members do not count (see `max_empty_groups`).
    pub max_groups: usize,
    /// Groups without members (only committed offsets) held in memory at most; beyond it the
    /// least recently used leave memory. Their offsets stay in the offsets log and are read
    /// back when the group is used again.
    pub max_empty_groups: usize,
    /// Members per group (Kafka: group.max.size); one more gets GROUP_MAX_SIZE_REACHED.
    pub max_members_per_group: usize,
    /// Largest commit metadata string (Kafka: offset.metadata.max.bytes).
    pub max_offset_metadata_bytes: usize,
    /// Largest JoinGroup protocol metadata of one member (subscriptions, owned partitions).
    pub max_member_metadata_bytes: usize,
    /// Partitions of the internal offsets topic; a group's coordinator is the owner of its
    /// partition. Fixed once offsets were written: changing it orphans committed offsets.
    pub offsets_topic_partitions: u32,
    /// How long committed offsets of a group without members are kept
    /// (Kafka: offsets.retention.minutes, 7 days).
    pub offsets_retention_ms: u64,
}

impl Default for GroupSettings {
    fn default() -> Self {
        Self {
            min_session_timeout_ms: 6_000,
            max_session_timeout_ms: 1_800_000,
            initial_rebalance_delay_ms: 3_000,
            max_groups: 10_000,
            max_empty_groups: 10_000,
            max_members_per_group: 1_000,
            max_offset_metadata_bytes: 4_096,
            max_member_metadata_bytes: 1024 * 1024,
            offsets_topic_partitions: 16,
            offsets_retention_ms: 7 * 24 * 3_600_000,
        }
    }
}

/// Replicas: see docs/replicas.md.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterSettings {
    pub membership: MembershipKind,
    pub lease_ms: u64,
    pub heartbeat_interval_ms: u64,
}

impl Default for ClusterSettings {
    fn default() -> Self {
        Self {
            membership: MembershipKind::Single,
            lease_ms: 10_000,
            heartbeat_interval_ms: 1_000,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IggySettings {
    pub address: String,
    pub username: String,
    pub password: String,
    pub connections: usize,
    /// Fsync each appended batch before acknowledging it (slower; survives Iggy crashes).
    pub fsync_on_append: bool,
    #[serde(skip_serializing_if = "IggyTls::is_off")]
    pub tls: IggyTls,
    /// Bytes of partition reads done ahead of sequential consumers held at most; 0 turns
    /// read-ahead off.
    pub read_ahead_bytes: usize,
}

/// TLS on the connections to Iggy's TCP transport. The server's certificate is always
/// verified: against `ca_file` when given, otherwise against the bundled Mozilla roots.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IggyTls {
    pub enabled: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// Name the certificate must be valid for, when the address's host is not it (an IP
    /// address, a Service name behind a differently named certificate).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_name: Option<String>,
}

impl IggyTls {
    fn is_off(&self) -> bool {
        *self == Self::default()
    }

    /// How TLS is set up, to follow "cannot connect" errors (a failed handshake says little
    /// by itself); empty without TLS.
    pub fn describe(&self) -> String {
        if !self.enabled {
            return String::new();
        }
        let ca = self.ca_file.as_ref().map_or_else(
            || "the bundled Mozilla roots".to_string(),
            |p| p.display().to_string(),
        );
        let name = self.server_name.as_deref().unwrap_or("the address's host");
        format!(" over TLS (certificate checked against {ca} for {name})")
    }

    /// Problems that would otherwise only show as a failed handshake, reported at startup:
    /// settings without `enabled`, a CA file that cannot be read or holds no certificate.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if !self.enabled && (self.ca_file.is_some() || self.server_name.is_some()) {
            problems.push(
                "iggy.tls.ca_file and iggy.tls.server_name need iggy.tls.enabled: true".into(),
            );
        }
        if let Some(path) = &self.ca_file {
            match std::fs::read_to_string(path) {
                Err(e) => problems.push(format!("iggy.tls.ca_file {}: {e}", path.display())),
                Ok(pem) if !pem.contains("-----BEGIN CERTIFICATE-----") => problems.push(format!(
                    "iggy.tls.ca_file {}: no PEM certificate (-----BEGIN CERTIFICATE-----) in it",
                    path.display()
                )),
                Ok(_) => {}
            }
        }
        if self.server_name.as_deref() == Some("") {
            problems.push("iggy.tls.server_name must not be empty".into());
        }
        problems
    }
}

impl Default for IggySettings {
    fn default() -> Self {
        Self {
            address: "127.0.0.1:8090".into(),
            username: "iggy".into(),
            password: "iggy".into(),
            connections: 8,
            fsync_on_append: false,
            tls: IggyTls::default(),
            read_ahead_bytes: crate::backend::iggy::DEFAULT_READ_AHEAD_BYTES,
        }
    }
}

impl Limits {
    /// The budget must fit the largest single piece of work, or that work could never start.
    fn budget_problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let budget = self.memory_budget_bytes;
        // The pools of the budget (see budget.rs): 3/8 for large frames, 1/4 for decoded
        // records, 1/4 for Fetch answers.
        for (name, value, eighths) in [
            ("max_frame_bytes", self.max_frame_bytes, 3),
            ("max_decompressed_bytes", self.decompressed_cap(), 2),
            ("max_fetch_bytes", self.max_fetch_bytes, 2),
        ] {
            if value > budget / 8 * eighths {
                problems.push(format!(
                    "limits.{name} ({value}) must be at most {eighths}/8 of limits.memory_budget_bytes ({budget})"
                ));
            }
        }
        if self.max_fetch_bytes < 1024 || self.decompressed_cap() < 1024 {
            problems.push(
                "limits.max_fetch_bytes and max_decompressed_bytes must be at least 1024".into(),
            );
        }
        if self.write_timeout_ms == 0
            || self.request_read_timeout_ms == 0
            || self.idle_timeout_ms == 0
        {
            problems.push(
                "limits.write_timeout_ms, request_read_timeout_ms and idle_timeout_ms must be at least 1"
                    .into(),
            );
        }
        problems
    }
}

/// The resolved configuration, and the YAML file schema.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProxyConfig {
    /// The listener when `listeners` is empty (with `security_protocol`, `tls`, `sasl`).
    pub listen: SocketAddr,
    pub advertised_address: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub security_protocol: Option<SecurityProtocol>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<ListenerTls>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sasl: Option<SaslSettings>,
    /// Several listeners, as Kafka's `listeners`; replaces the five keys above. The first is
    /// the one replicas of older versions see.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub listeners: Vec<ListenerConfig>,
    pub broker_id: i32,
    pub cluster_id: String,
    pub cluster: ClusterSettings,
    pub backend: BackendKind,
    pub iggy: IggySettings,
    pub default_stream: String,
    pub auto_create_topics: bool,
    pub default_partitions: u32,
    /// Kafka topic name → Iggy location.
    pub topics: BTreeMap<String, TopicMapping>,
    pub metrics_listen: Option<SocketAddr>,
    pub log_format: LogFormat,
    pub limits: Limits,
    pub groups: GroupSettings,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 9092)),
            advertised_address: None,
            security_protocol: None,
            tls: None,
            sasl: None,
            listeners: Vec::new(),
            broker_id: 0,
            cluster_id: "kafka-iggy-proxy".into(),
            cluster: ClusterSettings::default(),
            backend: BackendKind::Iggy,
            iggy: IggySettings::default(),
            default_stream: "kafka".into(),
            auto_create_topics: true,
            default_partitions: 1,
            topics: BTreeMap::new(),
            metrics_listen: None,
            log_format: LogFormat::Plain,
            limits: Limits::default(),
            groups: GroupSettings::default(),
        }
    }
}

/// What the process needs besides its budgets: the runtime, Iggy connections, metrics and
/// group state at their default limits.
pub const MEMORY_BASELINE_BYTES: usize = 64 * 1024 * 1024;
/// What an open client connection costs besides the budget (task, buffers, channels).
pub const MEMORY_PER_CONNECTION_BYTES: usize = 64 * 1024;

impl ProxyConfig {
    /// The documented upper bound of the proxy's resident memory with `connections` clients
    /// (README, "Memory bound"), leaving out the one-record overshoot a Fetch may take.
    pub fn memory_bound_bytes(&self, connections: usize) -> usize {
        MEMORY_BASELINE_BYTES
            + self.limits.memory_budget_bytes
            + self.iggy.read_ahead_bytes
            + connections.saturating_mul(MEMORY_PER_CONNECTION_BYTES)
    }
}

/// A configuration problem, reported all at once in readable form.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration:\n  - {}", .0.join("\n  - "))]
pub struct ConfigError(pub Vec<String>);

impl ProxyConfig {
    /// Builds the configuration from flags, the file they name, and `env` (the process
    /// environment in production, a map in tests) for rejecting unknown variables.
    pub fn resolve(
        cli: Cli,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let env: Vec<(String, String)> = env.into_iter().collect();
        let mut problems = unknown_env_vars(env.iter().cloned());
        let mut config = match &cli.config {
            Some(path) => match std::fs::read_to_string(path) {
                Ok(text) => match serde_yaml::from_str::<ProxyConfig>(&text) {
                    Ok(c) => c,
                    Err(e) => {
                        problems.push(format!("{}: {e}", path.display()));
                        ProxyConfig::default()
                    }
                },
                Err(e) => {
                    problems.push(format!("cannot read {}: {e}", path.display()));
                    ProxyConfig::default()
                }
            },
            None => ProxyConfig::default(),
        };
        let cli_tls_ca = cli.tls_client_ca_file.is_some();
        config.apply(cli);
        for l in &mut config.listeners {
            if let Some(address) = &mut l.advertised_address {
                match listener::expand_env(address, &env) {
                    Ok(expanded) => *address = expanded,
                    Err(e) => problems.push(format!("listener {}: advertised_address {e}", l.name)),
                }
            }
        }
        problems.extend(config.listener_problems(cli_tls_ca));
        problems.extend(config.validate());
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError(problems))
        }
    }

    fn apply(&mut self, cli: Cli) {
        self.apply_listener_flags(&cli);
        fn set<T>(slot: &mut T, value: Option<T>) {
            if let Some(v) = value {
                *slot = v;
            }
        }
        set(&mut self.listen, cli.listen);
        if cli.advertised_address.is_some() {
            self.advertised_address = cli.advertised_address;
        }
        set(&mut self.broker_id, cli.broker_id);
        set(&mut self.cluster.membership, cli.membership);
        set(&mut self.cluster.lease_ms, cli.membership_lease_ms);
        set(&mut self.backend, cli.backend);
        set(&mut self.iggy.address, cli.iggy_address);
        set(&mut self.iggy.username, cli.iggy_username);
        set(&mut self.iggy.password, cli.iggy_password);
        set(&mut self.iggy.connections, cli.iggy_connections);
        set(&mut self.iggy.fsync_on_append, cli.iggy_fsync_on_append);
        set(&mut self.iggy.tls.enabled, cli.iggy_tls);
        if cli.iggy_tls_ca_file.is_some() {
            self.iggy.tls.ca_file = cli.iggy_tls_ca_file;
        }
        if cli.iggy_tls_server_name.is_some() {
            self.iggy.tls.server_name = cli.iggy_tls_server_name;
        }
        set(&mut self.default_stream, cli.default_stream);
        set(&mut self.auto_create_topics, cli.auto_create_topics);
        set(&mut self.default_partitions, cli.default_partitions);
        if cli.metrics_listen.is_some() {
            self.metrics_listen = cli.metrics_listen;
        }
        set(&mut self.limits.max_frame_bytes, cli.max_frame_bytes);
        set(&mut self.limits.max_connections, cli.max_connections);
        set(
            &mut self.limits.memory_budget_bytes,
            cli.memory_budget_bytes,
        );
        set(&mut self.limits.max_fetch_bytes, cli.max_fetch_bytes);
        if cli.max_decompressed_bytes.is_some() {
            self.limits.max_decompressed_bytes = cli.max_decompressed_bytes;
        }
        set(&mut self.log_format, cli.log_format);
        set(
            &mut self.groups.initial_rebalance_delay_ms,
            cli.group_initial_rebalance_delay_ms,
        );
        set(
            &mut self.groups.min_session_timeout_ms,
            cli.group_min_session_timeout_ms,
        );
        set(
            &mut self.groups.max_empty_groups,
            cli.group_max_empty_groups,
        );
    }

    /// The single-listener flags fill the top-level keys; `tls` is made when a file is named.
    fn apply_listener_flags(&mut self, cli: &Cli) {
        if cli.security_protocol.is_some() {
            self.security_protocol = cli.security_protocol;
        }
        if cli.tls_cert_file.is_some() || cli.tls_key_file.is_some() {
            let tls = self
                .tls
                .get_or_insert_with(|| ListenerTls::new(PathBuf::new(), PathBuf::new()));
            if let Some(f) = &cli.tls_cert_file {
                tls.cert_file.clone_from(f);
            }
            if let Some(f) = &cli.tls_key_file {
                tls.key_file.clone_from(f);
            }
        }
        if let (Some(tls), Some(ca)) = (&mut self.tls, &cli.tls_client_ca_file) {
            tls.client_ca_file = Some(ca.clone());
        }
        if cli.sasl_mechanisms.is_some() || cli.sasl_users.is_some() {
            let sasl = self.sasl.get_or_insert_with(|| SaslSettings {
                mechanisms: Vec::new(),
                users: SaslUsers::Passthrough,
                session_lifetime_ms: None,
            });
            if let Some(m) = &cli.sasl_mechanisms {
                sasl.mechanisms.clone_from(m);
            }
            if let Some(u) = &cli.sasl_users {
                sasl.users = SaslUsers::parse(u);
            }
        }
    }

    /// The listeners to open: `listeners`, or one made of the top-level keys, named after its
    /// security protocol.
    pub fn listeners(&self) -> Vec<ListenerConfig> {
        if !self.listeners.is_empty() {
            return self.listeners.clone();
        }
        let protocol = self.security_protocol.unwrap_or_default();
        vec![ListenerConfig {
            name: protocol.name().to_string(),
            listen: self.listen,
            advertised_address: self.advertised_address.clone(),
            security_protocol: protocol,
            tls: self.tls.clone(),
            sasl: self.sasl.clone(),
        }]
    }

    fn listener_problems(&self, cli_tls_ca: bool) -> Vec<String> {
        let mut problems = Vec::new();
        if !self.listeners.is_empty() {
            let single = self.listen != ProxyConfig::default().listen
                || self.advertised_address.is_some()
                || self.security_protocol.is_some()
                || self.tls.is_some()
                || self.sasl.is_some();
            if single {
                problems.push(
                    "listen, advertised_address, security_protocol, tls and sasl (and their flags) describe the one listener used without `listeners`; with `listeners`, set them per listener".into(),
                );
            }
        }
        if cli_tls_ca && self.tls.is_none() {
            problems.push("--tls-client-ca-file needs --tls-cert-file and --tls-key-file".into());
        }
        problems.extend(listener::list_problems(&self.listeners()));
        problems
    }

    fn validate(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.default_partitions == 0 {
            problems.push("default_partitions must be at least 1".into());
        }
        let c = &self.cluster;
        if c.heartbeat_interval_ms < 100 || c.lease_ms < 3 * c.heartbeat_interval_ms {
            problems.push(format!(
                "cluster.heartbeat_interval_ms ({}) must be at least 100 and cluster.lease_ms ({}) at least three heartbeat intervals",
                c.heartbeat_interval_ms, c.lease_ms
            ));
        }
        if self.iggy.connections == 0 {
            problems.push("iggy.connections must be at least 1".into());
        }
        if self.backend == BackendKind::Iggy {
            problems.extend(self.iggy.tls.problems());
        }
        if self.limits.max_frame_bytes < 1024 || self.limits.max_frame_bytes > i32::MAX as usize {
            problems.push("limits.max_frame_bytes must be within 1024..=2147483647".into());
        }
        problems.extend(self.limits.budget_problems());
        if self.limits.max_connections == 0 || self.limits.max_in_flight_per_connection == 0 {
            problems.push(
                "limits.max_connections and max_in_flight_per_connection must be at least 1".into(),
            );
        }
        if self.default_stream.is_empty() || self.default_stream.len() > 255 {
            problems.push("default_stream must be 1..=255 bytes".into());
        }
        let g = &self.groups;
        if g.min_session_timeout_ms == 0 || g.min_session_timeout_ms > g.max_session_timeout_ms {
            problems.push(
                "groups.min_session_timeout_ms must be at least 1 and at most max_session_timeout_ms"
                    .into(),
            );
        }
        if g.max_groups == 0 || g.max_empty_groups == 0 || g.max_members_per_group == 0 {
            problems.push(
                "groups.max_groups, max_empty_groups and max_members_per_group must be at least 1"
                    .into(),
            );
        }
        if g.offsets_topic_partitions == 0 || g.offsets_topic_partitions > 1000 {
            problems.push("groups.offsets_topic_partitions must be within 1..=1000".into());
        }
        if g.offsets_retention_ms < 60_000 {
            problems.push("groups.offsets_retention_ms must be at least 60000".into());
        }
        for (topic, mapping) in &self.topics {
            if mapping.stream.is_empty() {
                problems.push(format!("topics.{topic}.stream must not be empty"));
            }
        }
        problems
    }

    /// The host and port announced in Metadata on the first listener.
    pub fn advertised(&self) -> Result<(String, i32), String> {
        self.listeners().first().map_or_else(
            || Err("no listener".to_string()),
            ListenerConfig::advertised,
        )
    }
}

/// Every `KAFKA_IGGY_*` variable must be one clap knows, so a typo is not silently ignored.
fn unknown_env_vars(env: impl IntoIterator<Item = (String, String)>) -> Vec<String> {
    use clap::CommandFactory;
    let command = Cli::command();
    let known: Vec<String> = command
        .get_arguments()
        .filter_map(|a| a.get_env().map(|e| e.to_string_lossy().into_owned()))
        .collect();
    env.into_iter()
        .filter(|(k, _)| k.starts_with(ENV_PREFIX) && !known.contains(k))
        .map(|(k, _)| format!("unknown environment variable {k}"))
        .collect()
}

#[cfg(test)]
mod tests;
