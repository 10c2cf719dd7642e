//! Certificates for TLS tests, made fresh per server: a private CA and a server certificate it
//! signs for `localhost` and `127.0.0.1`, written as PEM files.

use std::fs;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
};

/// PEM files of one test CA and the server certificate it issued.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// The CA certificate clients trust.
    pub ca_cert: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
}

fn ca_params(name: &str) -> Result<CertificateParams, rcgen::Error> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    Ok(params)
}

/// Writes a new CA and a server certificate for `localhost`/`127.0.0.1` into `dir`.
pub fn issue_server_certificate(dir: &Path) -> Result<TlsFiles, String> {
    let fail = |e: rcgen::Error| format!("cannot make test certificates: {e}");
    let ca_key = KeyPair::generate().map_err(fail)?;
    let ca = CertifiedIssuer::self_signed(ca_params("kafka-iggy test CA").map_err(fail)?, ca_key)
        .map_err(fail)?;
    let mut params = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
        .map_err(fail)?;
    params
        .distinguished_name
        .push(DnType::CommonName, "iggy test server");
    let key = KeyPair::generate().map_err(fail)?;
    let cert = params.signed_by(&key, &ca).map_err(fail)?;
    let files = TlsFiles {
        ca_cert: dir.join("ca.pem"),
        server_cert: dir.join("server.pem"),
        server_key: dir.join("server.key"),
    };
    let write = |path: &Path, text: String| {
        fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))
    };
    write(&files.ca_cert, ca.pem())?;
    write(&files.server_cert, cert.pem())?;
    write(&files.server_key, key.serialize_pem())?;
    Ok(files)
}

/// The PEM of a CA that signed nothing: trusting it alone must make a handshake fail.
pub fn unrelated_ca_pem() -> Result<String, String> {
    let fail = |e: rcgen::Error| format!("cannot make a test CA: {e}");
    let key = KeyPair::generate().map_err(fail)?;
    let ca = CertifiedIssuer::self_signed(ca_params("unrelated test CA").map_err(fail)?, key)
        .map_err(fail)?;
    Ok(ca.pem())
}
