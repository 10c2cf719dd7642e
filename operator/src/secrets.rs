//! The only Secrets the operator reads: the Iggy credentials (`iggy.credentialsSecret`) and the
//! Iggy CA bundle (`iggy.tls.caSecret`) a KafkaBridge names, and only when the Secret opted
//! in with the label [`ACCESS_LABEL`]`: "true"`.
//!
//! The opt-in is checked on the Secret's metadata alone (a `PartialObjectMetadata` GET, which
//! carries no `data`): the keys of a Secret that did not opt in never reach the operator. A
//! KafkaBridge can therefore not be used to make the operator read (and log in to Iggy with)
//! a Secret its owner did not hand over. Which namespaces the operator may read Secrets in at
//! all is decided by its RBAC (see the chart's `secretAccess` values): by default none.
//!
//! Listener Secrets (TLS, SCRAM users) are not read at all: they are mounted into the proxy pods.

use std::path::PathBuf;

use k8s_openapi::api::core::v1::Secret;
use kafka_iggy_proxy::config::IggyTls;
use kube::{Api, Client, ResourceExt};

use crate::crd::{CaSecret, KafkaBridge};
use crate::provision::IggyAccess;

/// The label a Secret must carry, with value "true", for the operator to read it.
pub const ACCESS_LABEL: &str = "kafka-iggy.dev/bridge-access";

/// Why a Secret a bridge names was not used; `reason` becomes the condition's reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct SecretError {
    pub reason: &'static str,
    pub message: String,
}

impl SecretError {
    fn new(reason: &'static str, message: String) -> Self {
        Self { reason, message }
    }
}

fn opted_in(labels: &std::collections::BTreeMap<String, String>) -> bool {
    labels.get(ACCESS_LABEL).map(String::as_str) == Some("true")
}

/// The Secret `name` of namespace `ns`, if it opted in. Its metadata is read first; the
/// Secret itself only when it carries the label (checked again on what was read, in case the
/// label was removed in between).
pub async fn read_opted_in(client: &Client, ns: &str, name: &str) -> Result<Secret, SecretError> {
    let api = Api::<Secret>::namespaced(client.clone(), ns);
    let unavailable = |e: kube::Error| match e {
        kube::Error::Api(s) if s.code == 403 => SecretError::new(
            "SecretAccessDenied",
            format!(
                "the operator may not read Secrets in namespace {ns} (grant it with a \
                 RoleBinding, see the chart's secretAccess values): {}",
                s.message
            ),
        ),
        other => SecretError::new(
            "SecretUnavailable",
            format!("cannot read Secret {name}: {other}"),
        ),
    };
    let not_opted_in = || {
        SecretError::new(
            "SecretNotOptedIn",
            format!(
                "Secret {name} is not labelled {ACCESS_LABEL}=true, so the operator does not \
                 read it; label it to let KafkaBridges in this namespace use it"
            ),
        )
    };
    let not_found = || SecretError::new("SecretNotFound", format!("Secret {name} not found"));
    let meta = api
        .get_metadata_opt(name)
        .await
        .map_err(unavailable)?
        .ok_or_else(not_found)?;
    if !opted_in(meta.labels()) {
        return Err(not_opted_in());
    }
    let secret = api
        .get_opt(name)
        .await
        .map_err(unavailable)?
        .ok_or_else(not_found)?;
    if !opted_in(secret.labels()) {
        return Err(not_opted_in());
    }
    Ok(secret)
}

fn key<'a>(secret: &'a Secret, name: &str, key: &str) -> Result<&'a [u8], SecretError> {
    secret
        .data
        .as_ref()
        .and_then(|d| d.get(key))
        .map(|v| v.0.as_slice())
        .ok_or_else(|| {
            SecretError::new(
                "SecretKeyMissing",
                format!("Secret {name} has no key {key}"),
            )
        })
}

/// How the operator reaches the bridge's Iggy: address, credentials from the opted-in
/// Secret, and TLS with the operator's copy of the CA bundle.
pub async fn iggy_access(kb: &KafkaBridge, client: &Client) -> Result<IggyAccess, SecretError> {
    let ns = kb.namespace().unwrap_or_default();
    let keys = &kb.spec.iggy.credentials_secret;
    let secret = read_opted_in(client, &ns, &keys.name).await?;
    let field = |k: &str| -> Result<String, SecretError> {
        String::from_utf8(key(&secret, &keys.name, k)?.to_vec()).map_err(|_| {
            SecretError::new(
                "SecretKeyMissing",
                format!("Secret {} key {k} is not UTF-8", keys.name),
            )
        })
    };
    let tls = &kb.spec.iggy.tls;
    let ca_file = match tls.ca_secret.as_ref().filter(|_| tls.enabled) {
        Some(ca) => Some(ca_file(kb, client, &ns, ca).await?),
        None => None,
    };
    Ok(IggyAccess {
        address: kb.spec.iggy.address.clone(),
        username: field(&keys.username_key)?,
        password: field(&keys.password_key)?,
        stream: kb.spec.iggy.stream.clone(),
        tls: IggyTls {
            enabled: tls.enabled,
            ca_file,
            server_name: tls.server_name.clone(),
        },
    })
}

/// Where the operator keeps its copy of one bridge's Iggy CA bundle.
pub fn ca_file_path(ns: &str, name: &str) -> PathBuf {
    std::env::temp_dir()
        .join("kafka-iggy-operator")
        .join(format!("{ns}.{name}.ca.pem"))
}

/// The bridge's Iggy CA bundle, copied from its Secret into a file of the operator's temp
/// directory: the SDK reads CA certificates only from a file. Rewritten on every pass, so a
/// rotated CA is used by the next provisioning.
async fn ca_file(
    kb: &KafkaBridge,
    client: &Client,
    ns: &str,
    ca: &CaSecret,
) -> Result<PathBuf, SecretError> {
    let secret = read_opted_in(client, ns, &ca.name).await?;
    let pem = key(&secret, &ca.name, &ca.key)?;
    let path = ca_file_path(ns, &kb.name_any());
    let staged = path.with_extension("pem.tmp");
    let write = || -> std::io::Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(&staged, pem)?;
        std::fs::rename(&staged, &path)
    };
    write().map_err(|e| {
        SecretError::new(
            "CaBundleUnwritable",
            format!("cannot write the CA bundle to {}: {e}", path.display()),
        )
    })?;
    Ok(path)
}
