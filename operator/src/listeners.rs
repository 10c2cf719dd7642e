//! Kafka listeners of a bridge (`spec.kafka.listeners`): the CRD types and what they become in
//! the proxy pods — one `listeners:` entry each in the proxy's configuration file, a container
//! port and a Service port each, and the listener's Secrets mounted read-only under
//! [`LISTENERS_DIR`]`/<name>/`.
//!
//! The operator never reads these Secrets: the kubelet mounts them, and the proxy reloads the
//! files when they change (cert-manager renews certificates in place). The configuration file
//! holds only their paths, so a renewed certificate does not change the config hash and does not
//! roll the pods.

use k8s_openapi::api::core::v1::{SecretVolumeSource, Volume, VolumeMount};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::crd::CaSecret;

/// Where each listener's Secrets are mounted in the proxy container.
pub const LISTENERS_DIR: &str = "/etc/kafka-iggy/listeners";

/// One Kafka listener: port, security protocol, TLS and SASL.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "(self.securityProtocol == 'SSL' || self.securityProtocol == 'SASL_SSL') == has(self.tls)",
     "message": "tls is required with securityProtocol SSL or SASL_SSL, and only used with them"},
    {"rule": "(self.securityProtocol == 'SASL_PLAINTEXT' || self.securityProtocol == 'SASL_SSL') == has(self.authentication)",
     "message": "authentication is required with securityProtocol SASL_PLAINTEXT or SASL_SSL, and only used with them"}
]))]
pub struct ListenerSpec {
    /// Kafka listener name, unique in the bridge (e.g. PLAIN, TLS, SASL_SSL). Lower-cased, with
    /// `_` as `-`, it also names the container and Service port.
    #[schemars(
        length(min = 1, max = 15),
        regex(pattern = r"^[A-Za-z][A-Za-z0-9]*(_[A-Za-z0-9]+)*$")
    )]
    pub name: String,
    #[schemars(range(min = 1, max = 65535))]
    pub port: i32,
    pub security_protocol: SecurityProtocol,
    /// Server certificate (SSL, SASL_SSL), optionally with a client CA (mutual TLS).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<ListenerTls>,
    /// SASL (SASL_PLAINTEXT, SASL_SSL).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authentication: Option<ListenerAuthentication>,
    /// `HOST:PORT` every pod announces on this listener with `kafka.advertise: Explicit`
    /// (default: the host of `kafka.advertisedAddress` with this listener's port).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 3, max = 259), regex(pattern = r"^[^\s:]+:[0-9]{1,5}$"))]
    pub advertised_address: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[allow(non_camel_case_types, reason = "Kafka's own spelling of the protocols")]
#[allow(
    clippy::upper_case_acronyms,
    reason = "Kafka's own spelling of the protocols"
)]
pub enum SecurityProtocol {
    PLAINTEXT,
    SSL,
    SASL_PLAINTEXT,
    SASL_SSL,
}

impl SecurityProtocol {
    pub fn as_str(self) -> &'static str {
        match self {
            SecurityProtocol::PLAINTEXT => "PLAINTEXT",
            SecurityProtocol::SSL => "SSL",
            SecurityProtocol::SASL_PLAINTEXT => "SASL_PLAINTEXT",
            SecurityProtocol::SASL_SSL => "SASL_SSL",
        }
    }
}

/// TLS of one listener. The Secret is mounted, not read by the operator: a cert-manager
/// Certificate's Secret (type kubernetes.io/tls) fits as it is.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ListenerTls {
    /// Secret in the bridge's namespace with `tls.crt` and `tls.key` (PEM).
    #[schemars(length(min = 1, max = 253))]
    pub secret_name: String,
    /// Secret with the PEM bundle of CAs that sign client certificates: set = mutual TLS,
    /// clients without a certificate it trusts are refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_ca: Option<CaSecret>,
}

/// SASL on one listener: the mechanisms offered and where the users come from, either
/// `passthrough: true` (PLAIN only: the Kafka username and password are an Iggy user's, and
/// Iggy's permissions apply) or `usersSecret` (a file of SCRAM users, mounted).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "self.passthrough != has(self.usersSecret)",
     "message": "set exactly one of authentication.passthrough: true and authentication.usersSecret"},
    {"rule": "!self.passthrough || self.mechanisms.all(m, m == 'PLAIN')",
     "message": "passthrough works with the PLAIN mechanism only (SCRAM never reveals the password)"}
]))]
pub struct ListenerAuthentication {
    #[schemars(length(min = 1, max = 3))]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    pub mechanisms: Vec<SaslMechanism>,
    #[serde(default)]
    pub passthrough: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub users_secret: Option<UsersSecret>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum SaslMechanism {
    #[serde(rename = "PLAIN")]
    Plain,
    #[serde(rename = "SCRAM-SHA-256")]
    ScramSha256,
    #[serde(rename = "SCRAM-SHA-512")]
    ScramSha512,
}

/// A Secret key holding the proxy's SCRAM users file (format: the proxy's `--sasl-users`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UsersSecret {
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    #[serde(default = "default_users_key")]
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}

fn default_users_key() -> String {
    "users.yaml".into()
}

/// One listener as the status reports it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ListenerStatus {
    pub name: String,
    pub security_protocol: SecurityProtocol,
    /// What clients of this listener put in bootstrap.servers.
    pub bootstrap_address: String,
}

/// Port and volume names of a listener: lower case, `_` as `-` (both must be DNS labels; a
/// port name at most 15 characters, which the CRD's name length guarantees).
pub fn port_name(listener: &str) -> String {
    listener.to_ascii_lowercase().replace('_', "-")
}

fn dir(listener: &ListenerSpec) -> String {
    format!("{LISTENERS_DIR}/{}", port_name(&listener.name))
}

/// The `listeners:` entry of the proxy configuration for one listener (the contract with the
/// proxy's config file). `advertised` is the address pods announce on it: the same for all,
/// or `${POD_HOST}:port`, which each proxy expands from its environment.
pub fn config_entry(listener: &ListenerSpec, advertised: Option<String>) -> serde_yaml::Value {
    let mut entry = serde_yaml::Mapping::new();
    let mut put = |k: &str, v: serde_yaml::Value| {
        entry.insert(k.into(), v);
    };
    put("name", listener.name.clone().into());
    put("listen", format!("0.0.0.0:{}", listener.port).into());
    if let Some(address) = advertised {
        put("advertised_address", address.into());
    }
    put(
        "security_protocol",
        listener.security_protocol.as_str().into(),
    );
    if let Some(tls) = &listener.tls {
        let base = dir(listener);
        let mut t = serde_yaml::Mapping::new();
        t.insert("cert_file".into(), format!("{base}/tls/tls.crt").into());
        t.insert("key_file".into(), format!("{base}/tls/tls.key").into());
        if let Some(ca) = &tls.client_ca {
            t.insert(
                "client_ca_file".into(),
                format!("{base}/client-ca/{}", ca.key).into(),
            );
        }
        put("tls", t.into());
    }
    if let Some(auth) = &listener.authentication {
        let mut s = serde_yaml::Mapping::new();
        let mechanisms: Vec<serde_yaml::Value> = auth
            .mechanisms
            .iter()
            .map(|m| serde_yaml::to_value(m).unwrap_or_default())
            .collect();
        s.insert("mechanisms".into(), mechanisms.into());
        let users = match &auth.users_secret {
            Some(users) if !auth.passthrough => format!("{}/users/{}", dir(listener), users.key),
            _ => "passthrough".to_string(),
        };
        s.insert("users".into(), users.into());
        put("sasl", s.into());
    }
    entry.into()
}

/// The read-only Secret volumes of one listener and where they are mounted. Whole Secrets are
/// mounted (no `subPath`, no `items`), so the kubelet updates the files in place when a Secret
/// changes, under the Secret's own key names.
pub fn volumes(listener: &ListenerSpec) -> Vec<(Volume, VolumeMount)> {
    let base = dir(listener);
    let id = port_name(&listener.name);
    let secret_volume = |suffix: &str, secret: &str| {
        let name = format!("listener-{id}-{suffix}");
        (
            Volume {
                name: name.clone(),
                secret: Some(SecretVolumeSource {
                    secret_name: Some(secret.into()),
                    ..SecretVolumeSource::default()
                }),
                ..Volume::default()
            },
            VolumeMount {
                name,
                mount_path: format!("{base}/{suffix}"),
                read_only: Some(true),
                ..VolumeMount::default()
            },
        )
    };
    let mut out = Vec::new();
    if let Some(tls) = &listener.tls {
        out.push(secret_volume("tls", &tls.secret_name));
        if let Some(ca) = &tls.client_ca {
            out.push(secret_volume("client-ca", &ca.name));
        }
    }
    if let Some(users) = listener
        .authentication
        .as_ref()
        .filter(|a| !a.passthrough)
        .and_then(|a| a.users_secret.as_ref())
    {
        out.push(secret_volume("users", &users.name));
    }
    out
}
