//! The `KafkaBridge` custom resource (`bridge.kafka-iggy.dev/v1alpha1`). The CRD YAML in
//! `crds/` is generated from these types (`kafka-iggy-operator crd`); a test fails on drift.
//!
//! Group and short name are our own: Strimzi owns kind KafkaBridge in `kafka.strimzi.io` with
//! short name `kb`.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Affinity, PodSecurityContext, ResourceRequirements, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use crate::listeners::{
    ListenerAuthentication, ListenerSpec, ListenerStatus, ListenerTls, SaslMechanism,
    SecurityProtocol, UsersSecret,
};
pub use crate::ownership::IggyOwnership;

pub const GROUP: &str = "bridge.kafka-iggy.dev";
pub const DEFAULT_IMAGE: &str = "ghcr.io/kafka-iggy/kafka-iggy-proxy:0.1.0";

/// Desired state of one bridge: proxy workload, how clients reach it, which Iggy it talks to
/// and what is provisioned there.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "bridge.kafka-iggy.dev",
    version = "v1alpha1",
    kind = "KafkaBridge",
    plural = "kafkabridges",
    shortname = "ikb",
    namespaced,
    status = "KafkaBridgeStatus",
    scale = r#"{"specReplicasPath":".spec.replicas","statusReplicasPath":".status.replicas","labelSelectorPath":".status.selector"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Replicas","type":"integer","jsonPath":".status.readyReplicas"}"#,
    printcolumn = r#"{"name":"Bootstrap","type":"string","jsonPath":".status.bootstrapAddress"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    validation = "size(self.metadata.name) <= 40"
)]
#[serde(rename_all = "camelCase")]
pub struct KafkaBridgeSpec {
    /// Proxy replicas, one Kafka broker each (broker id = pod ordinal); they split partitions
    /// and groups among themselves. Scale with `kubectl scale ikb/NAME --replicas=N`: only pods
    /// are added or removed, and partitions move by hand-off.
    #[serde(default = "default_replicas")]
    #[schemars(range(min = 0, max = 100))]
    pub replicas: i32,
    /// Proxy container image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_policy: Option<PullPolicy>,
    /// Proxy container resources. Default: requests 100m CPU and 128Mi, memory limit the proxy's
    /// memory bound at its default limits with 1,000 connections (703Mi; see the README's
    /// "Memory bound").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    #[serde(default)]
    pub kafka: KafkaListener,
    pub iggy: IggyConnection,
    /// Topics to provision in the Iggy stream (a map keyed by name, so each topic's partition
    /// count can be checked against its previous value).
    #[serde(default)]
    #[schemars(length(max = 1000))]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub topics: Vec<TopicSpec>,
    /// Let Kafka clients create topics (Metadata auto-create, CreateTopics).
    #[serde(default = "default_true")]
    pub auto_create_topics: bool,
    #[serde(default)]
    pub metrics: MetricsSpec,
    #[serde(default)]
    pub pod_template: PodOverrides,
    /// What happens to the Iggy topics when the KafkaBridge is deleted.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
}

fn default_replicas() -> i32 {
    1
}

fn default_true() -> bool {
    true
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum PullPolicy {
    Always,
    IfNotPresent,
    Never,
}

impl PullPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            PullPolicy::Always => "Always",
            PullPolicy::IfNotPresent => "IfNotPresent",
            PullPolicy::Never => "Never",
        }
    }
}

/// The Kafka listener and the address each pod announces in Metadata.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "self.advertise != 'Explicit' || has(self.advertisedAddress)",
     "message": "kafka.advertisedAddress is required when kafka.advertise is Explicit"},
    {"rule": "self.advertise == 'Explicit' || !has(self.advertisedAddress)",
     "message": "kafka.advertisedAddress is only used when kafka.advertise is Explicit"}
]))]
pub struct KafkaListener {
    #[serde(default = "default_kafka_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: i32,
    #[serde(default)]
    pub advertise: AdvertiseMode,
    /// `HOST:PORT` every pod announces with `advertise: Explicit`, e.g. a load balancer's name
    /// that reaches the bootstrap Service from outside the cluster (one replica only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 3, max = 259), regex(pattern = r"^[^\s:]+:[0-9]{1,5}$"))]
    pub advertised_address: Option<String>,
    /// Kafka listeners, each with its own port and security protocol (as Kafka's `listeners`).
    /// Empty = one PLAINTEXT listener on `kafka.port`; when set, `kafka.port` is not used.
    /// TLS and SCRAM-user Secrets are mounted into the proxy pods, never read by the operator.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 8))]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub listeners: Vec<ListenerSpec>,
}

impl Default for KafkaListener {
    fn default() -> Self {
        Self {
            port: default_kafka_port(),
            advertise: AdvertiseMode::default(),
            advertised_address: None,
            listeners: Vec::new(),
        }
    }
}

fn default_kafka_port() -> i32 {
    9092
}

/// How a pod tells clients where to reach it. Kafka clients connect to the leader of each
/// partition directly, so with more than one replica every pod must announce an address of its
/// own: `PodDNS` and `PodIP` do; `Service` and `Explicit` announce one address for all pods and
/// work with one replica only (the Degraded condition says so when replicas > 1).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum AdvertiseMode {
    /// The pod's stable DNS name through the headless Service,
    /// `POD.NAME-brokers.NAMESPACE.svc:PORT` (clients inside the cluster; survives restarts).
    #[default]
    PodDNS,
    /// The pod's own IP (clients inside the cluster that do not use its DNS).
    PodIP,
    /// The bootstrap Service's DNS name, the same for every pod (one replica only).
    Service,
    /// `kafka.advertisedAddress`, the same for every pod (one replica only: clients outside
    /// the cluster, through a load balancer or ingress that forwards to the bootstrap Service).
    Explicit,
}

impl AdvertiseMode {
    /// Whether every pod announces the same address (so only one replica can be reached as
    /// the leader of its partitions).
    pub fn is_shared(&self) -> bool {
        matches!(self, AdvertiseMode::Service | AdvertiseMode::Explicit)
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IggyConnection {
    /// `host:port` of the Iggy server's TCP transport.
    #[schemars(length(min = 3, max = 253))]
    pub address: String,
    /// Secret in the same namespace holding the Iggy username and password.
    pub credentials_secret: SecretKeys,
    /// The Iggy stream that holds this bridge's topics. Cannot change after creation.
    #[schemars(length(min = 1, max = 255))]
    #[schemars(extend("x-kubernetes-validations" = [{"rule": "self == oldSelf", "message": "iggy.stream is immutable"}]))]
    pub stream: String,
    #[serde(default)]
    pub tls: IggyTls,
    /// Durability: when true the proxy asks Iggy to write every produced batch to disk and
    /// fsync it before answering the producer (Iggy's `flush_unsaved_buffer` with fsync), so an
    /// acknowledged record survives a power loss of the Iggy host. It costs a disk flush per
    /// produce request (latency and throughput bound by the disk). False (default): Iggy
    /// acknowledges once the batch is in its memory and writes it on its own thresholds; a
    /// crash of the Iggy process or host can lose the most recent acknowledged records.
    #[serde(default)]
    pub fsync_on_append: bool,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeys {
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    #[serde(default = "default_username_key")]
    pub username_key: String,
    #[serde(default = "default_password_key")]
    pub password_key: String,
}

fn default_username_key() -> String {
    "username".into()
}

fn default_password_key() -> String {
    "password".into()
}

/// TLS on the connections to Iggy's TCP transport (proxy and operator alike). The server's
/// certificate is always verified.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{"rule": "self.enabled || (!has(self.caSecret) && !has(self.serverName))", "message": "iggy.tls.caSecret and iggy.tls.serverName need iggy.tls.enabled: true"}]))]
pub struct IggyTls {
    #[serde(default)]
    pub enabled: bool,
    /// Secret in the same namespace holding the PEM CA bundle that signs the Iggy server's
    /// certificate; unset = the Mozilla roots bundled with the proxy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_secret: Option<CaSecret>,
    /// Name the certificate must be valid for; unset = the host of `iggy.address`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub server_name: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CaSecret {
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Key of the PEM bundle in the Secret.
    #[serde(default = "default_ca_key")]
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}

fn default_ca_key() -> String {
    "ca.crt".into()
}

/// One Iggy topic (= Kafka topic) to provision.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{"rule": "self.partitions >= oldSelf.partitions", "message": "partitions can only grow"}]))]
pub struct TopicSpec {
    /// Kafka topic name (1-249 of `[a-zA-Z0-9._-]`).
    #[schemars(length(min = 1, max = 249), regex(pattern = r"^[a-zA-Z0-9._-]+$"))]
    pub name: String,
    #[schemars(range(min = 1, max = 100000))]
    pub partitions: u32,
    /// Message expiry in milliseconds (Kafka retention.ms); unset = never.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub message_expiry_ms: Option<i64>,
    /// Maximum topic size in bytes (Iggy's max topic size); unset = unlimited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_size_bytes: Option<u64>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MetricsSpec {
    #[serde(default = "default_metrics_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: i32,
    #[serde(default)]
    pub service_monitor: ServiceMonitorSpec,
}

impl Default for MetricsSpec {
    fn default() -> Self {
        Self {
            port: default_metrics_port(),
            service_monitor: ServiceMonitorSpec::default(),
        }
    }
}

fn default_metrics_port() -> i32 {
    9644
}

/// A Prometheus-operator ServiceMonitor, created only when enabled and its CRD exists.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceMonitorSpec {
    #[serde(default)]
    pub enabled: bool,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<String>,
}

/// Overrides merged into the proxy pods.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PodOverrides {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,
    /// Replaces the restricted pod security context the operator sets by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security_context: Option<PodSecurityContext>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum DeletionPolicy {
    /// Keep the Iggy topics (and their data) when the KafkaBridge is deleted.
    #[default]
    Keep,
    /// Delete the provisioned Iggy topics and the replicas' membership log (a finalizer holds
    /// the resource until done).
    Delete,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KafkaBridgeStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default)]
    pub replicas: i32,
    #[serde(default)]
    pub ready_replicas: i32,
    /// Label selector of the proxy pods (for the scale subresource and HPAs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    /// What Kafka clients put in bootstrap.servers (the first listener's, with listeners).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bootstrap_address: Option<String>,
    /// Every Kafka listener the proxies open, with its bootstrap address.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub listeners: Vec<ListenerStatus>,
    /// Which Iggy server this bridge provisions and what it created there: deletion policy
    /// Delete removes only what is listed here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iggy: Option<IggyOwnership>,
    /// Ready, IggyProvisioned, Progressing, Degraded.
    #[serde(default)]
    pub conditions: Vec<Condition>,
}

/// The CRD as YAML, as committed in `crds/`.
pub fn crd_yaml() -> Result<String, serde_yaml::Error> {
    use kube::CustomResourceExt;
    let header =
        "# Generated by `kafka-iggy-operator crd` from operator/src/crd.rs; do not edit.\n";
    Ok(format!(
        "{header}{}",
        serde_yaml::to_string(&KafkaBridge::crd())?
    ))
}
