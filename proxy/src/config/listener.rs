//! Kafka listeners: where clients connect and how they prove who they are. Kafka's own
//! `listeners` list, as YAML. The keys are a contract with the operator, which renders them.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::PathBuf;

use clap::ValueEnum;
use serde::{Deserialize, Serialize};

/// Kafka's `security.protocol`: transport encryption and whether SASL runs first.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
pub enum SecurityProtocol {
    #[default]
    #[serde(rename = "PLAINTEXT")]
    #[value(name = "PLAINTEXT")]
    Plaintext,
    #[serde(rename = "SSL")]
    #[value(name = "SSL")]
    Ssl,
    #[serde(rename = "SASL_PLAINTEXT")]
    #[value(name = "SASL_PLAINTEXT")]
    SaslPlaintext,
    #[serde(rename = "SASL_SSL")]
    #[value(name = "SASL_SSL")]
    SaslSsl,
}

impl SecurityProtocol {
    pub fn uses_tls(self) -> bool {
        matches!(self, Self::Ssl | Self::SaslSsl)
    }

    pub fn uses_sasl(self) -> bool {
        matches!(self, Self::SaslPlaintext | Self::SaslSsl)
    }

    /// The name Kafka uses, also the default listener name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Plaintext => "PLAINTEXT",
            Self::Ssl => "SSL",
            Self::SaslPlaintext => "SASL_PLAINTEXT",
            Self::SaslSsl => "SASL_SSL",
        }
    }
}

/// Certificates of a TLS listener, PEM files re-read when they change (see `security::tls`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerTls {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    /// CA bundle client certificates must chain to. When set, clients must present one (mTLS)
    /// and its subject becomes the connection's principal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_ca_file: Option<PathBuf>,
    /// How often the files are checked for changes.
    #[serde(default = "default_reload_interval_ms")]
    pub reload_interval_ms: u64,
}

fn default_reload_interval_ms() -> u64 {
    5_000
}

impl ListenerTls {
    /// TLS with this certificate and key, no client certificates, the default reload interval.
    pub fn new(cert_file: PathBuf, key_file: PathBuf) -> Self {
        Self {
            cert_file,
            key_file,
            client_ca_file: None,
            reload_interval_ms: default_reload_interval_ms(),
        }
    }
}

/// SASL mechanisms served.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum SaslMechanism {
    #[serde(rename = "PLAIN")]
    Plain,
    #[serde(rename = "SCRAM-SHA-256")]
    ScramSha256,
    #[serde(rename = "SCRAM-SHA-512")]
    ScramSha512,
}

impl SaslMechanism {
    pub const ALL: [SaslMechanism; 3] = [Self::Plain, Self::ScramSha256, Self::ScramSha512];

    pub fn name(self) -> &'static str {
        match self {
            Self::Plain => "PLAIN",
            Self::ScramSha256 => "SCRAM-SHA-256",
            Self::ScramSha512 => "SCRAM-SHA-512",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.name() == name)
    }
}

/// Where SASL credentials are checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SaslUsers {
    /// PLAIN only: the Kafka username and password are an Iggy user's, checked by logging in
    /// to Iggy with them.
    Passthrough,
    /// A YAML file of SCRAM credentials (see `security::users`), re-read when it changes.
    File(PathBuf),
}

impl Serialize for SaslUsers {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Passthrough => s.serialize_str("passthrough"),
            Self::File(p) => s.serialize_str(&p.to_string_lossy()),
        }
    }
}

impl<'de> Deserialize<'de> for SaslUsers {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Self::parse(&String::deserialize(d)?))
    }
}

impl SaslUsers {
    pub fn parse(value: &str) -> Self {
        if value == "passthrough" {
            Self::Passthrough
        } else {
            Self::File(PathBuf::from(value))
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SaslSettings {
    pub mechanisms: Vec<SaslMechanism>,
    pub users: SaslUsers,
    /// Longest an authentication holds (Kafka's connections.max.reauth.ms): clients that
    /// support KIP-368 re-authenticate before it ends, and a connection that has not is
    /// closed at its next request. Absent or 0: sessions do not expire.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_lifetime_ms: Option<u64>,
}

/// One Kafka listener.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerConfig {
    /// Kafka listener name, unique.
    pub name: String,
    pub listen: SocketAddr,
    /// HOST:PORT announced to clients of this listener [default: the listen address;
    /// 0.0.0.0 becomes 127.0.0.1].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub advertised_address: Option<String>,
    #[serde(default)]
    pub security_protocol: SecurityProtocol,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<ListenerTls>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sasl: Option<SaslSettings>,
}

impl ListenerConfig {
    /// The host and port announced in Metadata to clients of this listener.
    pub fn advertised(&self) -> Result<(String, i32), String> {
        advertised(self.listen, self.advertised_address.as_deref())
    }

    /// What is wrong with this listener, each problem named after it.
    pub fn problems(&self) -> Vec<String> {
        let name = &self.name;
        let protocol = self.security_protocol.name();
        let mut problems = Vec::new();
        if let Err(e) = self.advertised() {
            problems.push(format!("listener {name}: {e}"));
        }
        match (&self.tls, self.security_protocol.uses_tls()) {
            (None, true) => problems.push(format!(
                "listener {name}: security_protocol {protocol} needs tls.cert_file and tls.key_file"
            )),
            (Some(_), false) => problems.push(format!(
                "listener {name}: tls settings need security_protocol SSL or SASL_SSL, not {protocol}"
            )),
            (Some(tls), true) => {
                if tls.reload_interval_ms < 100 {
                    problems.push(format!(
                        "listener {name}: tls.reload_interval_ms must be at least 100"
                    ));
                }
                let files = [Some(&tls.cert_file), Some(&tls.key_file)];
                for file in files.into_iter().chain([tls.client_ca_file.as_ref()]).flatten() {
                    if let Err(e) = std::fs::metadata(file) {
                        problems.push(format!("listener {name}: {}: {e}", file.display()));
                    }
                }
            }
            (None, false) => {}
        }
        match (&self.sasl, self.security_protocol.uses_sasl()) {
            (None, true) => problems.push(format!(
                "listener {name}: security_protocol {protocol} needs sasl.mechanisms and sasl.users"
            )),
            (Some(_), false) => problems.push(format!(
                "listener {name}: sasl settings need security_protocol SASL_PLAINTEXT or SASL_SSL, not {protocol}"
            )),
            (Some(sasl), true) => problems.extend(sasl_problems(name, sasl)),
            (None, false) => {}
        }
        problems
    }
}

fn sasl_problems(name: &str, sasl: &SaslSettings) -> Vec<String> {
    let mut problems = Vec::new();
    if sasl.mechanisms.is_empty() {
        problems.push(format!(
            "listener {name}: sasl.mechanisms must name at least one of PLAIN, SCRAM-SHA-256, SCRAM-SHA-512"
        ));
    }
    match &sasl.users {
        SaslUsers::Passthrough => {
            if let Some(m) = sasl.mechanisms.iter().find(|m| **m != SaslMechanism::Plain) {
                problems.push(format!(
                    "listener {name}: sasl.users passthrough works with PLAIN only ({} never reveals the password to log in to Iggy with); use a users file",
                    m.name()
                ));
            }
        }
        SaslUsers::File(path) => {
            if let Err(e) = crate::security::users::UsersFile::load(path) {
                problems.push(format!("listener {name}: sasl.users {e}"));
            }
        }
    }
    problems
}

/// Problems across listeners: none at all, duplicate names or addresses.
pub fn list_problems(listeners: &[ListenerConfig]) -> Vec<String> {
    let mut problems = Vec::new();
    if listeners.is_empty() {
        problems.push("listeners must not be empty".into());
    }
    let mut names = BTreeSet::new();
    let mut ports = BTreeSet::new();
    for l in listeners {
        if l.name.is_empty()
            || !l
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            problems.push(format!(
                "listener name {:?} must be non-empty letters, digits, '_' or '-'",
                l.name
            ));
        }
        if !names.insert(l.name.as_str()) {
            problems.push(format!("listener name {} is used twice", l.name));
        }
        if l.listen.port() != 0 && !ports.insert(l.listen.port()) {
            problems.push(format!(
                "listener {}: port {} is used by another listener",
                l.name,
                l.listen.port()
            ));
        }
        problems.extend(l.problems());
    }
    problems
}

/// Replaces each `${NAME}` in `value` by the environment variable NAME: a shared file (a
/// ConfigMap) names per-pod addresses as `${POD_NAME}.bridge-headless.ns.svc:9094`.
pub fn expand_env(value: &str, env: &[(String, String)]) -> Result<String, String> {
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let Some(end) = rest[start..].find('}') else {
            return Err(format!("{value:?}: unclosed ${{"));
        };
        let name = &rest[start + 2..start + end];
        let Some((_, v)) = env.iter().find(|(k, _)| k == name) else {
            return Err(format!("{value:?}: environment variable {name} is not set"));
        };
        out.push_str(v);
        rest = &rest[start + end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// HOST:PORT announced for a listen address: the advertised address when given, else the
/// listen address (0.0.0.0 becomes 127.0.0.1).
pub fn advertised(listen: SocketAddr, advertised: Option<&str>) -> Result<(String, i32), String> {
    let Some(addr) = advertised else {
        let host = if listen.ip().is_unspecified() {
            "127.0.0.1".to_string()
        } else {
            listen.ip().to_string()
        };
        return Ok((host, i32::from(listen.port())));
    };
    let (host, port) = addr
        .rsplit_once(':')
        .ok_or_else(|| format!("advertised address {addr:?} is not HOST:PORT"))?;
    let port: u16 = port
        .parse()
        .map_err(|_| format!("advertised address {addr:?} has an invalid port"))?;
    if host.is_empty() {
        return Err(format!("advertised address {addr:?} has no host"));
    }
    Ok((host.trim_matches(['[', ']']).to_string(), i32::from(port)))
}
