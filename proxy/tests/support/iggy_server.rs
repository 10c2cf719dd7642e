//! Runs a real Iggy server (the binary named by `IGGY_SERVER_BIN`) as a child process for one
//! test, and kills it when dropped.
//!
//! Each server gets a fresh data directory under the system temp dir, root credentials
//! `iggy`/`iggy`, TCP on `127.0.0.1:0` and every other transport off. With port 0 the server
//! binds an ephemeral port and writes the bound address to `<data>/runtime/current_config.toml`,
//! which is read back here, so parallel tests never race for ports. Startup is ready once a
//! login succeeds (Iggy 0.8: about 0.2 s to bind plus one Argon2 login).
//!
//! ```ignore
//! mod support;
//! let Some(server) = support::iggy_server::IggyServer::from_env().await else { return };
//! // connect to server.address() as server.username / server.password
//! ```

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use iggy::prelude::{Client, TcpClient, TcpClientConfig, TcpClientReconnectionConfig, UserClient};

pub const ENV_BIN: &str = "IGGY_SERVER_BIN";
pub const USERNAME: &str = "iggy";
pub const PASSWORD: &str = "iggy";
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);

pub struct IggyServer {
    child: Child,
    binary: PathBuf,
    env: Vec<(String, String)>,
    dir: PathBuf,
    address: String,
    pub username: &'static str,
    pub password: &'static str,
}

impl IggyServer {
    /// Starts the server named by `IGGY_SERVER_BIN`, or prints the skip notice and returns
    /// `None` when it is unset. Panics when it is set but the server does not come up.
    pub async fn from_env() -> Option<Self> {
        Self::from_env_with(&[]).await
    }

    /// Like [`IggyServer::from_env`], with extra `IGGY_*` configuration variables.
    pub async fn from_env_with(env: &[(&str, &str)]) -> Option<Self> {
        let Some(binary) = std::env::var_os(ENV_BIN) else {
            eprintln!("SKIPPED: {ENV_BIN} not set");
            return None;
        };
        match Self::start(Path::new(&binary), env).await {
            Ok(server) => Some(server),
            Err(e) => panic!("cannot start Iggy server {binary:?}: {e}"),
        }
    }

    /// Starts `binary` with a fresh data directory and waits until it accepts a login.
    pub async fn start(binary: &Path, env: &[(&str, &str)]) -> Result<Self, String> {
        let dir = unique_dir()?;
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let child = spawn(binary, &env, &dir, "127.0.0.1:0")?;
        let mut server = Self {
            child,
            binary: binary.to_path_buf(),
            env,
            dir,
            address: String::new(),
            username: USERNAME,
            password: PASSWORD,
        };
        server.address = server.wait_ready(None).await?;
        Ok(server)
    }

    /// Stops the server and starts it again on the same data directory and address.
    /// `graceful` sends SIGTERM (the server saves buffered messages); otherwise SIGKILL, as in
    /// a crash.
    pub async fn restart(&mut self, graceful: bool) -> Result<(), String> {
        self.stop(graceful);
        self.child = spawn(&self.binary, &self.env, &self.dir, &self.address)?;
        let address = self.address.clone();
        self.wait_ready(Some(address)).await.map(|_| ())
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

    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// The last lines the server printed, for failure messages.
    pub fn log_tail(&self) -> String {
        let text = fs::read_to_string(self.dir.join("server.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// Waits until a login succeeds: at `known` or, for a server started on port 0, at the
    /// address it writes to its runtime config (re-read on every attempt, so a half-written
    /// file only costs a retry).
    async fn wait_ready(&mut self, known: Option<String>) -> Result<String, String> {
        let started = Instant::now();
        let deadline = started + STARTUP_TIMEOUT;
        let config = self.dir.join("data/runtime/current_config.toml");
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
                match login(&address).await {
                    Ok(()) => {
                        eprintln!(
                            "iggy server up at {address} in {:?} (data in {:?})",
                            started.elapsed(),
                            self.dir
                        );
                        return Ok(address);
                    }
                    Err(e) => last_error = format!("login to {address}: {e}"),
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
            self.dir.join("server.log"),
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
        } else {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

/// Runs the server on `dir` (data in `dir/data`, output appended to `dir/server.log`).
fn spawn(
    binary: &Path,
    env: &[(String, String)],
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
    // such as IGGY_SERVER_BIN itself): pass only ours.
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("IGGY_") {
            command.env_remove(name);
        }
    }
    command
        // Relative config lookups (core/server/config.toml, searched upwards) find nothing
        // here, so the embedded defaults plus the variables below are the whole config.
        .current_dir(dir)
        .env("IGGY_ROOT_USERNAME", USERNAME)
        .env("IGGY_ROOT_PASSWORD", PASSWORD)
        .env("IGGY_SYSTEM_PATH", dir.join("data"))
        .env("IGGY_TCP_ADDRESS", tcp_address)
        .env("IGGY_HTTP_ENABLED", "false")
        .env("IGGY_QUIC_ENABLED", "false")
        .env("IGGY_WEBSOCKET_ENABLED", "false")
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err);
    command
        .spawn()
        .map_err(|e| format!("cannot run {binary:?}: {e}"))
}

async fn login(address: &str) -> Result<(), String> {
    let config = TcpClientConfig {
        server_address: address.to_string(),
        reconnection: TcpClientReconnectionConfig {
            enabled: false,
            ..TcpClientReconnectionConfig::default()
        },
        ..TcpClientConfig::default()
    };
    let client = TcpClient::create(Arc::new(config)).map_err(|e| e.to_string())?;
    Client::connect(&client).await.map_err(|e| e.to_string())?;
    client
        .login_user(USERNAME, PASSWORD)
        .await
        .map_err(|e| e.to_string())?;
    Ok(())
}

/// `address` under `[tcp]` in the server's runtime config (a flat scan; no TOML parser needed).
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

fn unique_dir() -> Result<PathBuf, String> {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let dir = std::env::temp_dir().join(format!(
        "iggy-test-{}-{}-{nanos}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    fs::create_dir_all(&dir).map_err(|e| format!("{dir:?}: {e}"))?;
    Ok(dir)
}
