//! Desired state: a pure function from a `KafkaBridge` to the Kubernetes objects that run it.
//! No I/O, so it is golden-tested (operator/tests/golden) and the reconciler only applies what
//! it returns.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment,
};
use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMap, ConfigMapVolumeSource, Container, ContainerPort, EnvVar, EnvVarSource,
    HTTPGetAction, KeyToPath, ObjectFieldSelector, PodSecurityContext, PodSpec, PodTemplateSpec,
    Probe, SeccompProfile, SecretKeySelector, SecretVolumeSource, SecurityContext, Service,
    ServicePort, ServiceSpec, Volume, VolumeMount,
};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kafka_iggy_proxy::config::{BackendKind, IggyTls as IggyTlsConfig, LogFormat, ProxyConfig};
use kube::{Resource, ResourceExt};
use sha2::{Digest, Sha256};

use crate::crd::{AdvertiseMode, KafkaBridge, DEFAULT_IMAGE};

pub const CONFIG_HASH_ANNOTATION: &str = "bridge.kafka-iggy.dev/config-hash";
const CONFIG_DIR: &str = "/etc/kafka-iggy";
const CONFIG_FILE: &str = "config.yaml";
/// Where the Iggy CA bundle from `iggy.tls.caSecret` is mounted in the proxy container.
const IGGY_CA_DIR: &str = "/etc/kafka-iggy/iggy-ca";
const IGGY_CA_FILE: &str = "ca.crt";
/// The distroless "nonroot" user.
const RUN_AS_USER: i64 = 65532;

/// Everything one bridge consists of in Kubernetes.
#[derive(Debug, Clone, PartialEq)]
pub struct Desired {
    pub config_map: ConfigMap,
    pub deployment: Deployment,
    pub bootstrap_service: Service,
    pub headless_service: Service,
    pub pod_disruption_budget: PodDisruptionBudget,
    /// `monitoring.coreos.com/v1` ServiceMonitor, when asked for (applied only if its CRD exists).
    pub service_monitor: Option<serde_json::Value>,
    pub config_hash: String,
    /// Label selector of the pods, as the status and the scale subresource report it.
    pub selector: String,
    pub bootstrap_address: String,
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
    pub deployment: String,
    pub config_map: String,
    pub bootstrap_service: String,
    pub headless_service: String,
    pub pdb: String,
}

impl Names {
    pub fn of(bridge: &str) -> Self {
        Self {
            deployment: bridge.to_string(),
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
    let config_yaml = proxy_config_yaml(kb, &bootstrap_address)?;
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

    let deployment = Deployment {
        metadata: meta(&names.deployment),
        spec: Some(DeploymentSpec {
            replicas: Some(spec.replicas),
            selector: LabelSelector {
                match_labels: Some(selector_labels(&name)),
                ..LabelSelector::default()
            },
            // Never fewer ready proxies than asked for during a rollout.
            strategy: Some(DeploymentStrategy {
                type_: Some("RollingUpdate".into()),
                rolling_update: Some(RollingUpdateDeployment {
                    max_unavailable: Some(IntOrString::Int(0)),
                    max_surge: Some(IntOrString::Int(1)),
                }),
            }),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(pod_labels),
                    annotations: Some(pod_annotations),
                    ..ObjectMeta::default()
                }),
                spec: Some(pod_spec(kb, &names)),
            },
            ..DeploymentSpec::default()
        }),
        ..Deployment::default()
    };

    let ports = vec![
        service_port("kafka", spec.kafka.port),
        service_port("metrics", spec.metrics.port),
    ];
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
        deployment,
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

/// The proxy's own configuration file, rendered from the shared `ProxyConfig` type. Credentials
/// are not in it: they come from the Secret as environment variables.
fn proxy_config_yaml(kb: &KafkaBridge, bootstrap_address: &str) -> Result<String, DesiredError> {
    let spec = &kb.spec;
    let mut config = ProxyConfig {
        listen: ([0, 0, 0, 0], port(spec.kafka.port)).into(),
        advertised_address: match spec.kafka.advertise {
            // Set per pod from its IP (KAFKA_IGGY_ADVERTISED_ADDRESS).
            AdvertiseMode::PodIP => None,
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
    config.iggy.address = spec.iggy.address.clone();
    config.iggy.username = String::new();
    config.iggy.password = String::new();
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
    serde_yaml::to_string(&config).map_err(|e| DesiredError::Config(e.to_string()))
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

fn pod_spec(kb: &KafkaBridge, names: &Names) -> PodSpec {
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
    if spec.kafka.advertise == AdvertiseMode::PodIP {
        envs.push(EnvVar {
            name: "POD_IP".into(),
            value_from: Some(EnvVarSource {
                field_ref: Some(ObjectFieldSelector {
                    field_path: "status.podIP".into(),
                    ..ObjectFieldSelector::default()
                }),
                ..EnvVarSource::default()
            }),
            ..EnvVar::default()
        });
        envs.push(env(
            "KAFKA_IGGY_ADVERTISED_ADDRESS",
            &format!("$(POD_IP):{}", spec.kafka.port),
        ));
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
    let container = Container {
        name: "proxy".into(),
        image: Some(spec.image.clone().unwrap_or_else(|| DEFAULT_IMAGE.into())),
        image_pull_policy: spec.image_pull_policy.map(|p| p.as_str().to_string()),
        args: Some(vec![
            "--config".into(),
            format!("{CONFIG_DIR}/{CONFIG_FILE}"),
        ]),
        ports: Some(vec![
            ContainerPort {
                name: Some("kafka".into()),
                container_port: spec.kafka.port,
                protocol: Some("TCP".into()),
                ..ContainerPort::default()
            },
            ContainerPort {
                name: Some("metrics".into()),
                container_port: spec.metrics.port,
                protocol: Some("TCP".into()),
                ..ContainerPort::default()
            },
        ]),
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
        automount_service_account_token: Some(false),
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
