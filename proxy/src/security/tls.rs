//! TLS on a Kafka listener, with certificates re-read when their files change.
//!
//! cert-manager and similar tools replace certificate files in place (a Secret volume swaps a
//! symlink). The proxy checks the files' contents every `reload_interval_ms`, at the next
//! handshake after the interval: a changed set that loads becomes the configuration for new
//! handshakes (open connections keep theirs); one that does not load (a key from another
//! certificate, a half-written file) is reported once and the previous one stays in use.
//!
//! The crypto provider is named here (aws-lc-rs, as the operator) rather than installed for
//! the process: the iggy SDK compiles in ring as well, and rustls refuses to pick one itself.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use tokio_rustls::TlsAcceptor;

use crate::config::ListenerTls;

/// The acceptor of one listener; cheap to share.
pub struct TlsSource {
    settings: ListenerTls,
    interval: Duration,
    state: Mutex<State>,
}

struct State {
    acceptor: TlsAcceptor,
    /// The file contents `acceptor` was built from, or that last failed to load.
    files: Vec<Vec<u8>>,
    checked: Instant,
}

impl TlsSource {
    /// Loads the files; fails with a readable message if they do not make a configuration.
    pub fn load(settings: &ListenerTls) -> Result<Self, String> {
        let files = read_files(settings)?;
        let acceptor = build(settings, &files)?;
        Ok(Self {
            settings: settings.clone(),
            interval: Duration::from_millis(settings.reload_interval_ms),
            state: Mutex::new(State {
                acceptor,
                files,
                checked: Instant::now(),
            }),
        })
    }

    /// Whether clients must present a certificate.
    pub fn requires_client_cert(&self) -> bool {
        self.settings.client_ca_file.is_some()
    }

    /// The acceptor for a new connection, after re-reading the files if the interval passed.
    pub fn acceptor(&self) -> TlsAcceptor {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if state.checked.elapsed() >= self.interval {
            state.checked = Instant::now();
            self.reload(&mut state);
        }
        state.acceptor.clone()
    }

    fn reload(&self, state: &mut State) {
        let files = match read_files(&self.settings) {
            Ok(files) => files,
            // A file missing for a moment while a Secret volume is swapped: try again later.
            Err(e) => {
                tracing::debug!(error = %e, "TLS files not readable; keeping the loaded ones");
                return;
            }
        };
        if files == state.files {
            return;
        }
        match build(&self.settings, &files) {
            Ok(acceptor) => {
                tracing::info!(cert = %self.settings.cert_file.display(), "TLS certificate reloaded");
                state.acceptor = acceptor;
            }
            Err(e) => {
                tracing::warn!(error = %e, "changed TLS files cannot be used; keeping the certificate loaded before")
            }
        }
        state.files = files;
    }
}

fn read_files(settings: &ListenerTls) -> Result<Vec<Vec<u8>>, String> {
    let mut paths = vec![&settings.cert_file, &settings.key_file];
    paths.extend(&settings.client_ca_file);
    paths
        .into_iter()
        .map(|p| std::fs::read(p).map_err(|e| format!("{}: {e}", p.display())))
        .collect()
}

fn certificates(path: &Path, pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "{}: no PEM certificate (-----BEGIN CERTIFICATE-----) in it",
            path.display()
        ));
    }
    Ok(certs)
}

fn build(settings: &ListenerTls, files: &[Vec<u8>]) -> Result<TlsAcceptor, String> {
    let certs = certificates(&settings.cert_file, &files[0])?;
    let key = PrivateKeyDer::from_pem_slice(&files[1]).map_err(|e| {
        format!(
            "{}: no usable private key: {e}",
            settings.key_file.display()
        )
    })?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let builder = match (&settings.client_ca_file, files.get(2)) {
        (Some(path), Some(pem)) => {
            let mut roots = RootCertStore::empty();
            for cert in certificates(path, pem)? {
                roots
                    .add(cert)
                    .map_err(|e| format!("{}: {e}", path.display()))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| format!("{}: {e}", path.display()))?;
            builder.with_client_cert_verifier(verifier)
        }
        _ => builder.with_no_client_auth(),
    };
    let config = builder.with_single_cert(certs, key).map_err(|e| {
        format!(
            "{} and {}: {e}",
            settings.cert_file.display(),
            settings.key_file.display()
        )
    })?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Who a verified client certificate names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateIdentity {
    /// Kafka's principal, `User:CN=alice,O=example`.
    pub principal: String,
    /// The subject's common name: the Iggy user the connection acts for.
    pub common_name: Option<String>,
}

impl CertificateIdentity {
    pub fn of(der: &[u8]) -> Option<Self> {
        let principal = certificate_principal(der)?;
        let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
        let common_name = cert
            .subject()
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .map(str::to_string);
        Some(Self {
            principal,
            common_name,
        })
    }
}

/// Kafka's principal for a client certificate: `User:` and the subject's distinguished name
/// (most specific attribute first, as RFC 2253 writes it: `CN=alice,O=example`).
pub fn certificate_principal(der: &[u8]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let mut parts: Vec<String> = Vec::new();
    for rdn in cert.subject().iter_rdn() {
        for attr in rdn.iter() {
            let name = x509_parser::objects::oid2abbrev(
                attr.attr_type(),
                x509_parser::objects::oid_registry(),
            )
            .map_or_else(|_| attr.attr_type().to_id_string(), str::to_string);
            let value = attr.as_str().ok()?;
            parts.push(format!("{name}={value}"));
        }
    }
    parts.reverse();
    Some(format!("User:{}", parts.join(",")))
}
