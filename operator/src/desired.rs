//! Desired state: a pure function from a `KafkaBridge` to the Kubernetes objects that run it.
//! No I/O, so it is golden-tested (operator/tests/golden) and the reconciler only applies what
//! it returns.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetSpec, StatefulSetUpdateStrategy};
use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMap, ConfigMapVolumeSource, Container, ContainerPort, EnvVar, EnvVarSource,
    HTTPGetAction, KeyToPath, ObjectFieldSelector, PodSecurityContext, PodSpec, PodTemplateSpec,
    Probe, SeccompProfile, SecretKeySelector, SecretVolumeSource, SecurityContext, Service,
    ServiceAccount, ServicePort, ServiceSpec, Volume, VolumeMount,
};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kafka_iggy_proxy::config::{
    BackendKind, IggyTls as IggyTlsConfig, LogFormat, MembershipKind, ProxyConfig,
};
use kube::{Resource, ResourceExt};
use sha2::{Digest, Sha256};

use crate::crd::{AdvertiseMode, KafkaBridge, ListenerStatus, DEFAULT_IMAGE};
use crate::listeners;

pub const CONFIG_HASH_ANNOTATION: &str = "bridge.kafka-iggy.dev/config-hash";
const CONFIG_DIR: &str = "/etc/kafka-iggy";
const CONFIG_FILE: &str = "config.yaml";
/// Where the Iggy CA bundle from `iggy.tls.caSecret` is mounted in the proxy container.
const IGGY_CA_DIR: &str = "/etc/kafka-iggy/iggy-ca";
const IGGY_CA_FILE: &str = "ca.crt";
/// The distroless "nonroot" user.
const RUN_AS_USER: i64 = 65532;
/// Label the StatefulSet controller puts on each pod: its ordinal (Kubernetes >= 1.28), which
/// is the pod's Kafka broker id.
pub const POD_INDEX_LABEL: &str = "apps.kubernetes.io/pod-index";
/// How long a stopping proxy may take beyond its membership lease: it stops accepting, closes
/// its connections and appends one `Leave` entry (well under a second when Iggy answers).
/// Past the lease the other replicas take its partitions over anyway, so waiting longer buys
/// nothing.
const SHUTDOWN_MARGIN_SECONDS: i64 = 5;

/// Everything one bridge consists of in Kubernetes. Nothing here depends on `spec.replicas`
/// except the StatefulSet's replica count, so scaling adds or removes pods and never rolls the
/// others.
#[derive(Debug, Clone, PartialEq)]
pub struct Desired {
    pub config_map: ConfigMap,
    /// The proxy pods' own identity: no Kubernetes API rights, no token mounted.
    pub service_account: ServiceAccount,
    pub stateful_set: StatefulSet,
    pub bootstrap_service: Service,
    /// Governs the StatefulSet: per-pod DNS names, published before the pods are ready.
    pub headless_service: Service,
    /// `maxUnavailable: 1` for every bridge (see [`desired`]).
    pub pod_disruption_budget: PodDisruptionBudget,
    /// `monitoring.coreos.com/v1` ServiceMonitor, when asked for (applied only if its CRD exists).
    pub service_monitor: Option<serde_json::Value>,
    pub config_hash: String,
    /// Label selector of the pods, as the status and the scale subresource report it.
    pub selector: String,
    pub bootstrap_address: String,
    /// The Kafka listeners with their bootstrap addresses (empty without `kafka.listeners`).
    pub listeners: Vec<ListenerStatus>,
    /// Why this spec cannot work as asked (the reconciler reports it as Degraded), if so.
    pub problem: Option<String>,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum DesiredError {
    #[error("the resource has no {0} yet")]
    Missing(&'static str),
    #[error("invalid spec: {0}")]
    Invalid(&'static str),
    #[error("cannot render the proxy configuration: {0}")]
    Config(String),
}

/// Names of the child objects, derived from the bridge's name (≤ 40 characters by the CRD's
/// validation, so every derived name stays a valid DNS label).
pub struct Names {
    /// The StatefulSet (and the Deployment earlier operator versions created).
    pub workload: String,
    pub config_map: String,
    pub service_account: String,
    pub bootstrap_service: String,
    pub headless_service: String,
    pub pdb: String,
}

impl Names {
    pub fn of(bridge: &str) -> Self {
        Self {
            workload: bridge.to_string(),
            service_account: format!("{bridge}-proxy"),
            config_map: format!("{bridge}-config"),
            bootstrap_service: bridge.to_string(),
            headless_service: format!("{bridge}-brokers"),
            pdb: bridge.to_string(),
        }
    }
}

/// Labels every child carries; the first two select the pods.
pub fn selector_labels(name: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (
            "app.kubernetes.io/name".to_string(),
            "kafka-iggy-proxy".to_string(),
        ),
        ("app.kubernetes.io/instance".to_string(), name.to_string()),
    ])
}

/// Selects every object this operator manages (the controller watches only these).
pub const MANAGED_BY_SELECTOR: &str = "app.kubernetes.io/managed-by=kafka-iggy-operator";

fn common_labels(name: &str) -> BTreeMap<String, String> {
    let mut labels = selector_labels(name);
    labels.insert(
        "app.kubernetes.io/managed-by".into(),
        "kafka-iggy-operator".into(),
    );
    labels.insert("app.kubernetes.io/component".into(), "kafka-bridge".into());
    labels
}

pub fn desired(kb: &KafkaBridge) -> Result<Desired, DesiredError> {
    let name = kb.name_any();
    let namespace = kb.namespace().ok_or(DesiredError::Missing("namespace"))?;
    let owner = owner_reference(kb)?;
    let names = Names::of(&name);
    let spec = &kb.spec;
    let meta = |object_name: &str| ObjectMeta {
        name: Some(object_name.to_string()),
        namespace: Some(namespace.clone()),
        labels: Some(common_labels(&name)),
        owner_references: Some(vec![owner.clone()]),
        ..ObjectMeta::default()
    };

    let bootstrap_address = match (&spec.kafka.advertise, &spec.kafka.advertised_address) {
        (AdvertiseMode::Explicit, Some(address)) => address.clone(),
        (AdvertiseMode::Explicit, None) => {
            return Err(DesiredError::Invalid(
                "kafka.advertise is Explicit but kafka.advertisedAddress is not set",
            ))
        }
        _ => format!(
            "{}.{namespace}.svc:{}",
            names.bootstrap_service, spec.kafka.port
        ),
    };
    let listener_statuses = listener_statuses(kb, &names, &namespace)?;
    let bootstrap_address = listener_statuses
        .first()
        .map_or(bootstrap_address, |l| l.bootstrap_address.clone());
    let config = proxy_config(kb, &bootstrap_address);
    let config_yaml = render_config(kb, &config, &listener_statuses)?;
    let config_hash = hex_sha256(config_yaml.as_bytes());

    let config_map = ConfigMap {
        metadata: meta(&names.config_map),
        data: Some(BTreeMap::from([(CONFIG_FILE.to_string(), config_yaml)])),
        ..ConfigMap::default()
    };

    let mut pod_labels = spec.pod_template.labels.clone();
    pod_labels.extend(common_labels(&name));
    let mut pod_annotations = spec.pod_template.annotations.clone();
    pod_annotations.insert(CONFIG_HASH_ANNOTATION.into(), config_hash.clone());

    let stateful_set = StatefulSet {
        metadata: meta(&names.workload),
        spec: Some(StatefulSetSpec {
            replicas: Some(spec.replicas),
            selector: LabelSelector {
                match_labels: Some(selector_labels(&name)),
                ..LabelSelector::default()
            },
            service_name: Some(names.headless_service.clone()),
            // Scaling starts or stops all the pods it concerns at once: replicas do not depend
            // on each other's order, the membership log hands partitions over.
            pod_management_policy: Some("Parallel".into()),
            // One pod at a time, highest ordinal first, each replaced under the same name (so
            // the same broker id) after the previous one is ready again.
            update_strategy: Some(StatefulSetUpdateStrategy {
                type_: Some("RollingUpdate".into()),
                rolling_update: None,
            }),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(pod_labels),
                    annotations: Some(pod_annotations),
                    ..ObjectMeta::default()
                }),
                spec: Some(pod_spec(kb, &names, &namespace, &config)),
            },
            ..StatefulSetSpec::default()
        }),
        ..StatefulSet::default()
    };
    let service_account = ServiceAccount {
        metadata: meta(&names.service_account),
        automount_service_account_token: Some(false),
        ..ServiceAccount::default()
    };

    let ports: Vec<ServicePort> = kafka_ports(kb)
        .into_iter()
        .chain([("metrics".to_string(), spec.metrics.port)])
        .map(|(name, port)| service_port(&name, port))
        .collect();
    let bootstrap_service = Service {
        metadata: meta(&names.bootstrap_service),
        spec: Some(ServiceSpec {
            selector: Some(selector_labels(&name)),
            ports: Some(ports.clone()),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    };
    let headless_service = Service {
        metadata: meta(&names.headless_service),
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".into()),
            // Per-pod discovery must see pods before they are ready (peers find each other).
            publish_not_ready_addresses: Some(true),
            selector: Some(selector_labels(&name)),
            ports: Some(ports),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    };
    // Always, whatever the replica count: with one replica it still lets a node drain evict the
    // pod (maxUnavailable 1 never blocks), and an object that came and went with the replica
    // count would make scaling more than adding or removing pods.
    let pod_disruption_budget = PodDisruptionBudget {
        metadata: meta(&names.pdb),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(1)),
            selector: Some(LabelSelector {
                match_labels: Some(selector_labels(&name)),
                ..LabelSelector::default()
            }),
            ..PodDisruptionBudgetSpec::default()
        }),
        ..PodDisruptionBudget::default()
    };
    let service_monitor = spec
        .metrics
        .service_monitor
        .enabled
        .then(|| service_monitor(kb, &names, &namespace, &owner));

    Ok(Desired {
        config_map,
        service_account,
        stateful_set,
        bootstrap_service,
        headless_service,
        pod_disruption_budget,
        service_monitor,
        config_hash,
        selector: selector_labels(&name)
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(","),
        bootstrap_address,
        listeners: listener_statuses,
        problem: shared_address_problem(kb),
    })
}

/// The Kafka ports of the proxy container, by port name: one per listener, or `kafka`.
fn kafka_ports(kb: &KafkaBridge) -> Vec<(String, i32)> {
    let listeners = &kb.spec.kafka.listeners;
    if listeners.is_empty() {
        return vec![("kafka".into(), kb.spec.kafka.port)];
    }
    listeners
        .iter()
        .map(|l| (listeners::port_name(&l.name), l.port))
        .collect()
}

/// Each listener with the address its clients bootstrap from: the bootstrap Service's name
/// with the listener's port, or with `advertise: Explicit` the listener's own address (else
/// the host of `kafka.advertisedAddress` with the listener's port).
fn listener_statuses(
    kb: &KafkaBridge,
    names: &Names,
    namespace: &str,
) -> Result<Vec<ListenerStatus>, DesiredError> {
    let kafka = &kb.spec.kafka;
    let mut ports: Vec<i32> = vec![kb.spec.metrics.port];
    let mut out = Vec::new();
    for l in &kafka.listeners {
        if ports.contains(&l.port) {
            return Err(DesiredError::Invalid(
                "two kafka.listeners (or a listener and metrics.port) share a port",
            ));
        }
        ports.push(l.port);
        if out.iter().any(|o: &ListenerStatus| {
            listeners::port_name(&o.name) == listeners::port_name(&l.name)
        }) {
            return Err(DesiredError::Invalid(
                "two kafka.listeners have the same name (compared in lower case, _ as -)",
            ));
        }
        let bootstrap_address = match (&kafka.advertise, &l.advertised_address) {
            (AdvertiseMode::Explicit, Some(address)) => address.clone(),
            (AdvertiseMode::Explicit, None) => {
                let host = kafka
                    .advertised_address
                    .as_deref()
                    .and_then(|a| a.rsplit_once(':'))
                    .map(|(host, _)| host)
                    .ok_or(DesiredError::Invalid(
                        "kafka.advertise is Explicit but kafka.advertisedAddress is not set",
                    ))?;
                format!("{host}:{}", l.port)
            }
            _ => format!("{}.{namespace}.svc:{}", names.bootstrap_service, l.port),
        };
        out.push(ListenerStatus {
            name: l.name.clone(),
            security_protocol: l.security_protocol,
            bootstrap_address,
        });
    }
    Ok(out)
}

/// The proxy's configuration file. Without `kafka.listeners` it is `ProxyConfig` as it is;
/// with them, its `listen` and `advertised_address` give way to a `listeners:` list.
fn render_config(
    kb: &KafkaBridge,
    config: &ProxyConfig,
    statuses: &[ListenerStatus],
) -> Result<String, DesiredError> {
    let error = |e: serde_yaml::Error| DesiredError::Config(e.to_string());
    let listeners = &kb.spec.kafka.listeners;
    if listeners.is_empty() {
        return serde_yaml::to_string(config).map_err(error);
    }
    // Through the text, so the keys keep ProxyConfig's order.
    let text = serde_yaml::to_string(config).map_err(error)?;
    let serde_yaml::Value::Mapping(rest) = serde_yaml::from_str(&text).map_err(error)? else {
        return Err(DesiredError::Config("not a mapping".into()));
    };
    let shared = kb.spec.kafka.advertise.is_shared();
    // Per-pod addresses: the proxy expands `${POD_HOST_VAR}` from the pod's environment, so
    // every replica reads the same file.
    let entries: Vec<serde_yaml::Value> = listeners
        .iter()
        .zip(statuses)
        .map(|(l, status)| {
            let advertised = if shared {
                status.bootstrap_address.clone()
            } else {
                format!("${{{POD_HOST_VAR}}}:{}", l.port)
            };
            listeners::config_entry(l, Some(advertised))
        })
        .collect();
    let mut file = serde_yaml::Mapping::new();
    file.insert("listeners".into(), entries.into());
    file.extend(
        rest.into_iter()
            .filter(|(k, _)| k != "listen" && k != "advertised_address"),
    );
    serde_yaml::to_string(&file).map_err(error)
}

/// With more than one replica every pod must announce its own address: clients connect to the
/// leader of each partition directly, and an address shared by all pods reaches any of them.
fn shared_address_problem(kb: &KafkaBridge) -> Option<String> {
    let kafka = &kb.spec.kafka;
    (kb.spec.replicas > 1 && kafka.advertise.is_shared()).then(|| {
        format!(
            "kafka.advertise is {:?}: every pod announces the same address, so Kafka clients \
             cannot reach the leader of each partition with {} replicas; use PodDNS or PodIP, \
             or scale to 1",
            kafka.advertise, kb.spec.replicas
        )
    })
}

fn owner_reference(kb: &KafkaBridge) -> Result<OwnerReference, DesiredError> {
    let uid = kb.meta().uid.clone().ok_or(DesiredError::Missing("uid"))?;
    Ok(OwnerReference {
        api_version: KafkaBridge::api_version(&()).into_owned(),
        kind: KafkaBridge::kind(&()).into_owned(),
        name: kb.name_any(),
        uid,
        controller: Some(true),
        block_owner_deletion: Some(true),
    })
}

/// The pod's own host name or IP, for listeners' per-pod advertised addresses.
const POD_HOST_VAR: &str = "POD_HOST";

/// The proxy's own configuration, rendered into the ConfigMap from the shared `ProxyConfig`
/// type. Credentials are not in it: they come from the Secret as environment variables; nor is
/// anything that differs between pods (broker id, per-pod address): those come from the pod's
/// environment, so every replica reads the same file and scaling changes no configuration.
fn proxy_config(kb: &KafkaBridge, bootstrap_address: &str) -> ProxyConfig {
    let spec = &kb.spec;
    let mut config = ProxyConfig {
        listen: ([0, 0, 0, 0], port(spec.kafka.port)).into(),
        advertised_address: match spec.kafka.advertise {
            // Set per pod (KAFKA_IGGY_ADVERTISED_ADDRESS).
            AdvertiseMode::PodDNS | AdvertiseMode::PodIP => None,
            // The Service's name, or the explicit address (both already in bootstrap_address).
            AdvertiseMode::Service | AdvertiseMode::Explicit => Some(bootstrap_address.to_string()),
        },
        cluster_id: format!("{}.{}", kb.name_any(), kb.namespace().unwrap_or_default()),
        backend: BackendKind::Iggy,
        default_stream: spec.iggy.stream.clone(),
        auto_create_topics: spec.auto_create_topics,
        metrics_listen: Some(([0, 0, 0, 0], port(spec.metrics.port)).into()),
        log_format: LogFormat::Json,
        ..ProxyConfig::default()
    };
    // Every bridge, also with one replica: scaling then only adds or removes members.
    config.cluster.membership = MembershipKind::Log;
    config.iggy.address = spec.iggy.address.clone();
    config.iggy.username = String::new();
    config.iggy.password = String::new();
    config.iggy.fsync_on_append = spec.iggy.fsync_on_append;
    config.iggy.tls = IggyTlsConfig {
        enabled: spec.iggy.tls.enabled,
        ca_file: spec
            .iggy
            .tls
            .ca_secret
            .as_ref()
            .map(|_| format!("{IGGY_CA_DIR}/{IGGY_CA_FILE}").into()),
        server_name: spec.iggy.tls.server_name.clone(),
    };
    config
}

/// Connections a proxy pod is sized for when the bridge does not say.
const SIZED_FOR_CONNECTIONS: usize = 1000;

/// Resources of a proxy pod when the KafkaBridge gives none: the memory limit is the proxy's
/// documented memory bound at its default limits with [`SIZED_FOR_CONNECTIONS`] clients, so the
/// pod is never OOM-killed by what clients send; the request is what an idle proxy uses.
fn default_proxy_resources() -> ResourceRequirements {
    const MIB: usize = 1024 * 1024;
    let bound = ProxyConfig::default().memory_bound_bytes(SIZED_FOR_CONNECTIONS);
    let limit = format!("{}Mi", bound.div_ceil(MIB));
    ResourceRequirements {
        requests: Some(BTreeMap::from([
            ("cpu".to_string(), Quantity("100m".into())),
            ("memory".to_string(), Quantity("128Mi".into())),
        ])),
        limits: Some(BTreeMap::from([("memory".to_string(), Quantity(limit))])),
        ..ResourceRequirements::default()
    }
}

fn port(p: i32) -> u16 {
    u16::try_from(p).unwrap_or(0)
}

fn service_port(name: &str, port: i32) -> ServicePort {
    ServicePort {
        name: Some(name.into()),
        port,
        target_port: Some(IntOrString::String(name.into())),
        protocol: Some("TCP".into()),
        ..ServicePort::default()
    }
}

fn env(name: &str, value: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: Some(value.into()),
        ..EnvVar::default()
    }
}

fn env_from_field(name: &str, field_path: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: field_path.into(),
                ..ObjectFieldSelector::default()
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    }
}

fn env_from_secret(name: &str, secret: &str, key: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: secret.into(),
                key: key.into(),
                optional: Some(false),
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    }
}

/// The proxy pod. Its identity comes from the StatefulSet: the broker id is the pod's ordinal
/// (label [`POD_INDEX_LABEL`]), the advertised address its DNS name or IP.
fn pod_spec(kb: &KafkaBridge, names: &Names, namespace: &str, config: &ProxyConfig) -> PodSpec {
    let spec = &kb.spec;
    let secret = &spec.iggy.credentials_secret;
    let mut envs = vec![
        env_from_secret(
            "KAFKA_IGGY_IGGY_USERNAME",
            &secret.name,
            &secret.username_key,
        ),
        env_from_secret(
            "KAFKA_IGGY_IGGY_PASSWORD",
            &secret.name,
            &secret.password_key,
        ),
    ];
    envs.push(env_from_field(
        "KAFKA_IGGY_BROKER_ID",
        &format!("metadata.labels['{POD_INDEX_LABEL}']"),
    ));
    // `$(VAR)` refers to a variable defined earlier in the list; Kubernetes expands it.
    let per_pod_host = match spec.kafka.advertise {
        AdvertiseMode::PodDNS => Some((
            env_from_field("POD_NAME", "metadata.name"),
            format!("$(POD_NAME).{}.{namespace}.svc", names.headless_service),
        )),
        AdvertiseMode::PodIP => Some((
            env_from_field("POD_IP", "status.podIP"),
            "$(POD_IP)".to_string(),
        )),
        // One address for all pods, in the configuration file.
        AdvertiseMode::Service | AdvertiseMode::Explicit => None,
    };
    if let Some((source, host)) = per_pod_host {
        envs.push(source);
        if spec.kafka.listeners.is_empty() {
            envs.push(env(
                "KAFKA_IGGY_ADVERTISED_ADDRESS",
                &format!("{host}:{}", spec.kafka.port),
            ));
        } else {
            // Each listener's `advertised_address` in the file names this host with its port.
            envs.push(env(POD_HOST_VAR, &host));
        }
    }
    let probe = |path: &str, period: i32| Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::String("metrics".into()),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(period),
        failure_threshold: Some(3),
        ..Probe::default()
    };
    let mut mounts = vec![VolumeMount {
        name: "config".into(),
        mount_path: CONFIG_DIR.into(),
        read_only: Some(true),
        ..VolumeMount::default()
    }];
    let mut volumes = vec![Volume {
        name: "config".into(),
        config_map: Some(ConfigMapVolumeSource {
            name: names.config_map.clone(),
            ..ConfigMapVolumeSource::default()
        }),
        ..Volume::default()
    }];
    if let Some(ca) = spec
        .iggy
        .tls
        .ca_secret
        .as_ref()
        .filter(|_| spec.iggy.tls.enabled)
    {
        mounts.push(VolumeMount {
            name: "iggy-ca".into(),
            mount_path: IGGY_CA_DIR.into(),
            read_only: Some(true),
            ..VolumeMount::default()
        });
        volumes.push(Volume {
            name: "iggy-ca".into(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(ca.name.clone()),
                items: Some(vec![KeyToPath {
                    key: ca.key.clone(),
                    path: IGGY_CA_FILE.into(),
                    ..KeyToPath::default()
                }]),
                ..SecretVolumeSource::default()
            }),
            ..Volume::default()
        });
    }
    for listener in &spec.kafka.listeners {
        for (volume, mount) in listeners::volumes(listener) {
            volumes.push(volume);
            mounts.push(mount);
        }
    }
    let container = Container {
        name: "proxy".into(),
        image: Some(spec.image.clone().unwrap_or_else(|| DEFAULT_IMAGE.into())),
        image_pull_policy: spec.image_pull_policy.map(|p| p.as_str().to_string()),
        args: Some(vec![
            "--config".into(),
            format!("{CONFIG_DIR}/{CONFIG_FILE}"),
        ]),
        ports: Some(
            kafka_ports(kb)
                .into_iter()
                .chain([("metrics".to_string(), spec.metrics.port)])
                .map(|(name, port)| ContainerPort {
                    name: Some(name),
                    container_port: port,
                    protocol: Some("TCP".into()),
                    ..ContainerPort::default()
                })
                .collect(),
        ),
        env: Some(envs),
        resources: Some(
            spec.resources
                .clone()
                .unwrap_or_else(default_proxy_resources),
        ),
        liveness_probe: Some(probe("/healthz", 10)),
        readiness_probe: Some(probe("/readyz", 5)),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            run_as_non_root: Some(true),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".into()]),
                ..Capabilities::default()
            }),
            ..SecurityContext::default()
        }),
        volume_mounts: Some(mounts),
        ..Container::default()
    };
    let overrides = &spec.pod_template;
    PodSpec {
        containers: vec![container],
        volumes: Some(volumes),
        security_context: Some(
            overrides
                .security_context
                .clone()
                .unwrap_or(PodSecurityContext {
                    run_as_non_root: Some(true),
                    run_as_user: Some(RUN_AS_USER),
                    run_as_group: Some(RUN_AS_USER),
                    seccomp_profile: Some(SeccompProfile {
                        type_: "RuntimeDefault".into(),
                        ..SeccompProfile::default()
                    }),
                    ..PodSecurityContext::default()
                }),
        ),
        node_selector: (!overrides.node_selector.is_empty())
            .then(|| overrides.node_selector.clone()),
        tolerations: (!overrides.tolerations.is_empty()).then(|| overrides.tolerations.clone()),
        affinity: overrides.affinity.clone(),
        service_account_name: Some(names.service_account.clone()),
        automount_service_account_token: Some(false),
        termination_grace_period_seconds: Some(
            i64::try_from(config.cluster.lease_ms.div_ceil(1000)).unwrap_or(i64::MAX / 2)
                + SHUTDOWN_MARGIN_SECONDS,
        ),
        ..PodSpec::default()
    }
}

fn service_monitor(
    kb: &KafkaBridge,
    names: &Names,
    namespace: &str,
    owner: &OwnerReference,
) -> serde_json::Value {
    let sm = &kb.spec.metrics.service_monitor;
    let mut labels = common_labels(&kb.name_any());
    labels.extend(sm.labels.clone());
    let mut endpoint = serde_json::json!({"port": "metrics", "path": "/metrics"});
    if let Some(interval) = &sm.interval {
        endpoint["interval"] = serde_json::Value::String(interval.clone());
    }
    serde_json::json!({
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "ServiceMonitor",
        "metadata": {
            "name": names.bootstrap_service,
            "namespace": namespace,
            "labels": labels,
            "ownerReferences": [owner],
        },
        "spec": {
            "selector": {"matchLabels": common_labels(&kb.name_any())},
            "endpoints": [endpoint],
        }
    })
}

fn hex_sha256(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
