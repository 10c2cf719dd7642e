//! Spawns a throwaway Iggy server: fresh data directory, TCP only, on a port the server picks.
//!
//! The server binds `127.0.0.1:0` and, once bound, writes the configuration in force (with the
//! real address) to `<system.path>/runtime/current_config.toml`; that file is read back to learn
//! the port, so there is no race between choosing a free port and binding it. QUIC, HTTP and
//! WebSocket are switched off. Root credentials come from `IGGY_ROOT_USERNAME`/`_PASSWORD`.

use std::fs::{self, File};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

const START_TIMEOUT: Duration = Duration::from_secs(60);

pub struct IggyServer {
    child: Child,
    pub address: SocketAddr,
    pub dir: PathBuf,
    keep: bool,
}

impl IggyServer {
    /// Starts `binary` with a data directory in a new temporary directory and waits until its
    /// TCP transport accepts connections.
    pub fn spawn(
        binary: &Path,
        username: &str,
        password: &str,
        keep: bool,
    ) -> anyhow::Result<Self> {
        if !binary.is_file() {
            bail!("Iggy server binary {} does not exist", binary.display());
        }
        let dir = crate::temp_dir("iggy")?;
        let data = dir.join("data");
        let log_path = dir.join("server.log");
        let log = File::create(&log_path)
            .with_context(|| format!("cannot create {}", log_path.display()))?;
        let mut command = Command::new(binary);
        // The server reads every IGGY_* variable as configuration (IGGY_SERVER_BIN included, or
        // an IGGY_CONFIG_PATH replacing the embedded defaults): pass only the ones set here.
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("IGGY_") {
                command.env_remove(name);
            }
        }
        let child = command
            // No config.toml is found from here, so the embedded defaults apply.
            .current_dir(&dir)
            .env("IGGY_SYSTEM_PATH", &data)
            .env("IGGY_TCP_ADDRESS", "127.0.0.1:0")
            .env("IGGY_QUIC_ENABLED", "false")
            .env("IGGY_HTTP_ENABLED", "false")
            .env("IGGY_WEBSOCKET_ENABLED", "false")
            .env("IGGY_ROOT_USERNAME", username)
            .env("IGGY_ROOT_PASSWORD", password)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("cannot start {}", binary.display()))?;
        let mut server = Self {
            child,
            address: SocketAddr::from(([127, 0, 0, 1], 0)),
            dir,
            keep,
        };
        server.address = server.wait_for_address(&data.join("runtime/current_config.toml"))?;
        Ok(server)
    }

    fn wait_for_address(&mut self, config: &Path) -> anyhow::Result<SocketAddr> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "Iggy server exited during startup ({status}); last lines of {}:\n{}",
                    self.log_path().display(),
                    tail(&self.log_path(), 20)
                );
            }
            if let Some(address) = fs::read_to_string(config)
                .ok()
                .and_then(|text| tcp_address(&text))
            {
                if TcpStream::connect_timeout(&address, Duration::from_millis(500)).is_ok() {
                    return Ok(address);
                }
            }
            if Instant::now() > deadline {
                bail!(
                    "Iggy server did not accept TCP connections within {START_TIMEOUT:?}; last lines of {}:\n{}",
                    self.log_path().display(),
                    tail(&self.log_path(), 20)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.join("server.log")
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for IggyServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if !self.keep {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

/// The bound TCP address from a `current_config.toml`: `address` under the `[tcp]` table, with a
/// non-zero port.
fn tcp_address(config: &str) -> Option<SocketAddr> {
    let mut in_tcp = false;
    for line in config.lines().map(str::trim) {
        if line.starts_with('[') {
            in_tcp = line == "[tcp]";
            continue;
        }
        if !in_tcp {
            continue;
        }
        if let Some(value) = line.strip_prefix("address") {
            let value = value
                .trim_start()
                .strip_prefix('=')?
                .trim()
                .trim_matches('"');
            let address: SocketAddr = value.parse().ok()?;
            return (address.port() != 0).then_some(address);
        }
    }
    None
}

pub fn tail(path: &Path, lines: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_bound_tcp_address() {
        let text = "[http]\naddress = \"127.0.0.1:3000\"\n\n[tcp]\nenabled = true\naddress = \"127.0.0.1:49789\"\n\n[tcp.tls]\nenabled = false\n";
        assert_eq!(
            tcp_address(text),
            Some("127.0.0.1:49789".parse().expect("addr"))
        );
        assert_eq!(tcp_address("[tcp]\naddress = \"127.0.0.1:0\"\n"), None);
        assert_eq!(tcp_address("[quic]\naddress = \"127.0.0.1:8080\"\n"), None);
    }
}
