//! Runs a real Iggy server as a child process and kills it when dropped.
//!
//! Each server gets a fresh data directory under the system temp dir, root credentials
//! (`iggy`/`iggy` unless [`Options`] say otherwise), TCP on `127.0.0.1:0` (or the address
//! [`Options`] name) and every other transport off. With port 0 the server binds an ephemeral
//! port and writes the bound address to `<data>/runtime/current_config.toml`, which is read
//! back here, so parallel tests never race for ports. Startup is ready once a login succeeds (Iggy 0.8: about 0.2 s to bind plus one
//! Argon2 login).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::tls::{issue_server_certificate, TlsFiles};
use crate::{connect_with, tail, temp_dir};

/// The variable naming the server binary for [`IggyServer::from_env`].
pub const ENV_BIN: &str = "IGGY_SERVER_BIN";
pub const USERNAME: &str = "iggy";
pub const PASSWORD: &str = "iggy";
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);
const LOG_TAIL_LINES: usize = 40;

/// How [`IggyServer::start`] runs the server.
#[derive(Debug, Clone)]
pub struct Options {
    /// Root user the server creates on first start.
    pub username: String,
    pub password: String,
    /// Extra `IGGY_*` configuration variables, applied after the defaults set here.
    pub env: Vec<(String, String)>,
    /// Keep the directory (data and `server.log`) after the server is dropped. It is always
    /// kept when the drop happens during a panic.
    pub keep_data: bool,
    /// Start of the temporary directory's name.
    pub dir_prefix: String,
    /// Serve TCP over TLS only, with a certificate from a fresh test CA
    /// ([`IggyServer::tls_ca_file`]).
    pub tls: bool,
    /// TCP address to serve on; `None` for a free port on 127.0.0.1.
    pub tcp_address: Option<String>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            username: USERNAME.to_string(),
            password: PASSWORD.to_string(),
            env: Vec::new(),
            keep_data: false,
            dir_prefix: "iggy-test".to_string(),
            tls: false,
            tcp_address: None,
        }
    }
}

pub struct IggyServer {
    child: Child,
    binary: PathBuf,
    options: Options,
    dir: PathBuf,
    address: String,
    tls: Option<TlsFiles>,
}

impl IggyServer {
    /// Starts the server named by `IGGY_SERVER_BIN`, or prints the skip notice and returns
    /// `None` when it is unset. Panics when it is set but the server does not come up.
    pub async fn from_env() -> Option<Self> {
        Self::from_env_with(&[]).await
    }

    /// Like [`IggyServer::from_env`], with extra `IGGY_*` configuration variables.
    pub async fn from_env_with(env: &[(&str, &str)]) -> Option<Self> {
        Self::from_env_options(Options {
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..Options::default()
        })
        .await
    }

    /// Like [`IggyServer::from_env`], serving TCP over TLS only.
    pub async fn from_env_tls() -> Option<Self> {
        Self::from_env_options(Options {
            tls: true,
            ..Options::default()
        })
        .await
    }

    /// Like [`IggyServer::from_env`], serving TCP on `address` (for a client started before
    /// the server, that must find it there).
    pub async fn from_env_at(address: &str) -> Option<Self> {
        Self::from_env_options(Options {
            tcp_address: Some(address.to_string()),
            ..Options::default()
        })
        .await
    }

    async fn from_env_options(options: Options) -> Option<Self> {
        let Some(binary) = std::env::var_os(ENV_BIN) else {
            eprintln!("SKIPPED: {ENV_BIN} not set");
            return None;
        };
        let started = Instant::now();
        match Self::start(Path::new(&binary), options).await {
            Ok(server) => {
                server.announce(started);
                Some(server)
            }
            Err(e) => panic!("cannot start Iggy server {binary:?}: {e}"),
        }
    }

    /// Starts `binary` in a fresh temporary directory and waits until it accepts a login.
    pub async fn start(binary: &Path, options: Options) -> Result<Self, String> {
        if !binary.is_file() {
            return Err(format!(
                "Iggy server binary {} does not exist",
                binary.display()
            ));
        }
        let dir = temp_dir(&options.dir_prefix).map_err(|e| e.to_string())?;
        let tls = if options.tls {
            Some(issue_server_certificate(&dir)?)
        } else {
            None
        };
        let tcp_address = options.tcp_address.clone();
        let bind = tcp_address.as_deref().unwrap_or("127.0.0.1:0");
        let child = spawn(binary, &options, tls.as_ref(), &dir, bind)?;
        let mut server = Self {
            child,
            binary: binary.to_path_buf(),
            options,
            dir,
            address: String::new(),
            tls,
        };
        server.address = server.wait_ready(tcp_address).await?;
        Ok(server)
    }

    /// Stops the server and starts it again on the same data directory and address.
    /// `graceful` sends SIGTERM (the server saves buffered messages); otherwise SIGKILL, as in
    /// a crash.
    pub async fn restart(&mut self, graceful: bool) -> Result<(), String> {
        self.stop(graceful);
        let started = Instant::now();
        self.child = spawn(
            &self.binary,
            &self.options,
            self.tls.as_ref(),
            &self.dir,
            &self.address,
        )?;
        let address = self.address.clone();
        self.wait_ready(Some(address)).await?;
        self.announce(started);
        Ok(())
    }

    fn stop(&mut self, graceful: bool) {
        if graceful {
            let _ = Command::new("kill")
                .args(["-TERM", &self.child.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = self.child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// `host:port` of the TCP transport.
    pub fn address(&self) -> &str {
        &self.address
    }

    pub fn username(&self) -> &str {
        &self.options.username
    }

    pub fn password(&self) -> &str {
        &self.options.password
    }

    /// The CA certificate (PEM) that signed the server's certificate, for a TLS server.
    pub fn tls_ca_file(&self) -> Option<&Path> {
        self.tls.as_ref().map(|t| t.ca_cert.as_path())
    }

    /// Process id of the running server (it changes with [`IggyServer::restart`]).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The temporary directory: `data/` and `server.log`.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.join("server.log")
    }

    /// The last lines the server printed, for failure messages.
    pub fn log_tail(&self) -> String {
        tail(&self.log_path(), LOG_TAIL_LINES)
    }

    fn announce(&self, started: Instant) {
        eprintln!(
            "iggy server up at {} in {:?} (data in {:?})",
            self.address,
            started.elapsed(),
            self.dir
        );
    }

    /// Waits until a login succeeds: at `known` or, for a server started on port 0, at the
    /// address it writes to its runtime config (re-read on every attempt, so a half-written
    /// file only costs a retry).
    async fn wait_ready(&mut self, known: Option<String>) -> Result<String, String> {
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        let config = self.data_dir().join("runtime/current_config.toml");
        let mut last_error = String::from("no TCP address written yet");
        loop {
            if let Err(e) = self.check_running() {
                last_error = e;
                break;
            }
            let address = known.clone().or_else(|| {
                fs::read_to_string(&config)
                    .ok()
                    .and_then(|t| tcp_address(&t))
            });
            if let Some(address) = address {
                let ca = self.tls_ca_file().map(Path::to_path_buf);
                match connect_with(&address, self.username(), self.password(), ca.as_deref()).await
                {
                    Ok(_) => return Ok(address),
                    Err(e) => last_error = error_chain(&e),
                }
            }
            if Instant::now() > deadline {
                last_error = format!("not ready after {STARTUP_TIMEOUT:?}: {last_error}");
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        Err(format!(
            "{last_error}\n--- server log ({:?}) ---\n{}",
            self.log_path(),
            self.log_tail()
        ))
    }

    fn check_running(&mut self) -> Result<(), String> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => Err(format!("server exited early: {status}")),
            Err(e) => Err(format!("cannot check server process: {e}")),
        }
    }
}

impl Drop for IggyServer {
    fn drop(&mut self) {
        self.stop(false);
        if std::thread::panicking() {
            eprintln!(
                "iggy server data and log kept in {:?}; last log lines:\n{}",
                self.dir,
                self.log_tail()
            );
        } else if !self.options.keep_data {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

/// Runs the server on `dir` (data in `dir/data`, output appended to `dir/server.log`).
fn spawn(
    binary: &Path,
    options: &Options,
    tls: Option<&TlsFiles>,
    dir: &Path,
    tcp_address: &str,
) -> Result<Child, String> {
    let log_path = dir.join("server.log");
    let log = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(|e| format!("{log_path:?}: {e}"))?;
    let log_err = log.try_clone().map_err(|e| e.to_string())?;
    let mut command = Command::new(binary);
    // The server treats every IGGY_* variable as configuration (and warns about unknown ones,
    // such as IGGY_SERVER_BIN itself, or an IGGY_CONFIG_PATH would replace the embedded
    // defaults): pass only ours.
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("IGGY_") {
            command.env_remove(name);
        }
    }
    command
        // Relative config lookups (core/server/config.toml, searched upwards) find nothing
        // here, so the embedded defaults plus the variables below are the whole config.
        .current_dir(dir)
        .env("IGGY_ROOT_USERNAME", &options.username)
        .env("IGGY_ROOT_PASSWORD", &options.password)
        .env("IGGY_SYSTEM_PATH", dir.join("data"))
        .env("IGGY_TCP_ADDRESS", tcp_address)
        .env("IGGY_HTTP_ENABLED", "false")
        .env("IGGY_QUIC_ENABLED", "false")
        .env("IGGY_WEBSOCKET_ENABLED", "false")
        .envs(tls.into_iter().flat_map(|t| {
            [
                ("IGGY_TCP_TLS_ENABLED", "true".into()),
                ("IGGY_TCP_TLS_SELF_SIGNED", "false".into()),
                ("IGGY_TCP_TLS_CERT_FILE", t.server_cert.clone()),
                ("IGGY_TCP_TLS_KEY_FILE", t.server_key.clone()),
            ]
            .map(|(k, v): (&str, PathBuf)| (k, v.into_os_string()))
        }))
        .envs(options.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err);
    command
        .spawn()
        .map_err(|e| format!("cannot run {binary:?}: {e}"))
}

/// `error: source: source…` on one line.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        text.push_str(&format!(": {e}"));
        source = e.source();
    }
    text
}

/// `address` under `[tcp]` in the server's runtime config, once it has a real port (a flat
/// scan; no TOML parser needed).
fn tcp_address(toml: &str) -> Option<String> {
    let mut in_tcp = false;
    for line in toml.lines().map(str::trim) {
        if line.starts_with('[') {
            in_tcp = line == "[tcp]";
        } else if in_tcp {
            if let Some(value) = line.strip_prefix("address") {
                let value = value
                    .trim_start()
                    .strip_prefix('=')?
                    .trim()
                    .trim_matches('"');
                return (!value.ends_with(":0")).then(|| value.to_string());
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_bound_tcp_address() {
        let text = "[http]\naddress = \"127.0.0.1:3000\"\n\n[tcp]\nenabled = true\naddress = \"127.0.0.1:49789\"\n\n[tcp.tls]\nenabled = false\n";
        assert_eq!(tcp_address(text).as_deref(), Some("127.0.0.1:49789"));
        assert_eq!(tcp_address("[tcp]\naddress = \"127.0.0.1:0\"\n"), None);
        assert_eq!(tcp_address("[quic]\naddress = \"127.0.0.1:8080\"\n"), None);
    }
}
