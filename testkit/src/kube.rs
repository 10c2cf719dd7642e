//! A real Kubernetes API server for tests, as controller-runtime's envtest runs one: etcd and
//! kube-apiserver as child processes on free loopback ports, no nodes, no controllers, no pods.
//! Binaries come from `tools/k8s/build.sh` (built from the Go module proxy) in
//! `$KAFKA_IGGY_K8S_BIN` (default `~/.cache/kafka-iggy/k8s-bin`).
//!
//! Authentication is a static bearer token for an admin in `system:masters`; authorization is
//! RBAC, so least-privilege roles can be checked with impersonation.

use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kube::config::{
    AuthInfo, Cluster, Context, KubeConfigOptions, Kubeconfig, NamedAuthInfo, NamedCluster,
    NamedContext,
};
use kube::Client;

use crate::files::{tail, temp_dir};

pub const ENV_K8S_BIN: &str = "KAFKA_IGGY_K8S_BIN";
const ADMIN_TOKEN: &str = "kafka-iggy-test-admin-token";
const START_TIMEOUT: Duration = Duration::from_secs(90);

/// Where the test binaries are looked for.
pub fn bin_dir() -> PathBuf {
    match std::env::var_os(ENV_K8S_BIN) {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
            .join(".cache/kafka-iggy/k8s-bin"),
    }
}

/// etcd + kube-apiserver, stopped (and their data removed) on drop.
pub struct KubeTestCluster {
    etcd: Child,
    apiserver: Child,
    dir: PathBuf,
    url: String,
    kubeconfig: PathBuf,
}

fn free_port() -> Result<u16, String> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| e.to_string())
}

fn spawn(binary: &Path, args: &[String], log: &Path) -> Result<Child, String> {
    let out = fs::File::create(log).map_err(|e| e.to_string())?;
    let err = out.try_clone().map_err(|e| e.to_string())?;
    Command::new(binary)
        .args(args)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", binary.display()))
}

impl KubeTestCluster {
    /// Starts a cluster, or prints a loud skip notice and returns `Ok(None)` when the binaries
    /// are missing.
    pub async fn start() -> Result<Option<Self>, String> {
        let bin = bin_dir();
        let (etcd_bin, apiserver_bin) = (bin.join("etcd"), bin.join("kube-apiserver"));
        if !etcd_bin.is_file() || !apiserver_bin.is_file() {
            eprintln!(
                "SKIPPED: kube-apiserver/etcd not found in {} (run tools/k8s/build.sh or set {ENV_K8S_BIN})",
                bin.display()
            );
            return Ok(None);
        }
        let started = Instant::now();
        let dir = temp_dir("kube-test").map_err(|e| e.to_string())?;
        let (client_port, peer_port, api_port) = (free_port()?, free_port()?, free_port()?);
        let etcd_url = format!("http://127.0.0.1:{client_port}");
        let peer_url = format!("http://127.0.0.1:{peer_port}");
        let etcd = spawn(
            &etcd_bin,
            &[
                format!("--data-dir={}", dir.join("etcd").display()),
                format!("--listen-client-urls={etcd_url}"),
                format!("--advertise-client-urls={etcd_url}"),
                format!("--listen-peer-urls={peer_url}"),
                format!("--initial-advertise-peer-urls={peer_url}"),
                format!("--initial-cluster=default={peer_url}"),
                "--name=default".into(),
                // Test data: durability is not needed, speed is.
                "--unsafe-no-fsync".into(),
            ],
            &dir.join("etcd.log"),
        )?;
        let sa_key = dir.join("sa.key");
        let status = Command::new("openssl")
            .args(["genrsa", "-out"])
            .arg(&sa_key)
            .arg("2048")
            .stderr(Stdio::null())
            .status()
            .map_err(|e| format!("openssl: {e}"))?;
        if !status.success() {
            return Err("openssl genrsa failed".into());
        }
        fs::write(
            dir.join("tokens.csv"),
            format!("{ADMIN_TOKEN},test-admin,test-admin,\"system:masters\"\n"),
        )
        .map_err(|e| e.to_string())?;
        let apiserver = spawn(
            &apiserver_bin,
            &[
                format!("--etcd-servers={etcd_url}"),
                format!("--cert-dir={}", dir.join("certs").display()),
                "--bind-address=127.0.0.1".into(),
                "--advertise-address=127.0.0.1".into(),
                format!("--secure-port={api_port}"),
                format!("--token-auth-file={}", dir.join("tokens.csv").display()),
                "--authorization-mode=RBAC".into(),
                format!("--service-account-key-file={}", sa_key.display()),
                format!("--service-account-signing-key-file={}", sa_key.display()),
                "--service-account-issuer=https://kubernetes.default.svc".into(),
                "--service-cluster-ip-range=10.96.0.0/24".into(),
                "--allow-privileged=true".into(),
            ],
            &dir.join("kube-apiserver.log"),
        )?;
        let url = format!("https://127.0.0.1:{api_port}");
        let kubeconfig = dir.join("kubeconfig");
        let mut cluster = Self {
            etcd,
            apiserver,
            dir,
            url,
            kubeconfig,
        };
        cluster.write_kubeconfig()?;
        cluster.wait_ready().await?;
        eprintln!(
            "kube test cluster: {} ready in {:.1}s (kubeconfig {})",
            cluster.url,
            started.elapsed().as_secs_f64(),
            cluster.kubeconfig.display()
        );
        Ok(Some(cluster))
    }

    fn kubeconfig_value(&self, user: &str, token: &str, impersonate: Option<&str>) -> Kubeconfig {
        Kubeconfig {
            clusters: vec![NamedCluster {
                name: "test".into(),
                cluster: Some(Cluster {
                    server: Some(self.url.clone()),
                    insecure_skip_tls_verify: Some(true),
                    ..Cluster::default()
                }),
            }],
            auth_infos: vec![NamedAuthInfo {
                name: user.into(),
                auth_info: Some(AuthInfo {
                    token: Some(token.to_string().into()),
                    impersonate: impersonate.map(str::to_string),
                    ..AuthInfo::default()
                }),
            }],
            contexts: vec![NamedContext {
                name: "test".into(),
                context: Some(Context {
                    cluster: "test".into(),
                    user: Some(user.into()),
                    namespace: Some("default".into()),
                    ..Context::default()
                }),
            }],
            current_context: Some("test".into()),
            ..Kubeconfig::default()
        }
    }

    fn write_kubeconfig(&self) -> Result<(), String> {
        let yaml = kubeconfig_yaml(&self.kubeconfig_value("admin", ADMIN_TOKEN, None))?;
        fs::write(&self.kubeconfig, yaml).map_err(|e| e.to_string())
    }

    async fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(Some(status)) = self.apiserver.try_wait() {
                return Err(format!(
                    "kube-apiserver exited ({status}):\n{}",
                    self.log_tail()
                ));
            }
            if let Ok(Some(status)) = self.etcd.try_wait() {
                return Err(format!(
                    "etcd exited ({status}):\n{}",
                    tail(&self.dir.join("etcd.log"), 30)
                ));
            }
            if let Ok(client) = self.client().await {
                // /readyz covers etcd and the bootstrap controllers (default namespace, RBAC roles).
                let request = http::Request::get("/readyz")
                    .body(Vec::new())
                    .map_err(|e| e.to_string())?;
                if let Ok(text) = client.request_text(request).await {
                    if text.trim() == "ok" {
                        return Ok(());
                    }
                }
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "kube-apiserver not ready after {START_TIMEOUT:?}:\n{}",
                    self.log_tail()
                ));
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// A client acting as the admin.
    pub async fn client(&self) -> Result<Client, String> {
        self.client_for(None).await
    }

    /// A client impersonating `user` (e.g. `system:serviceaccount:ns:name`), to check RBAC.
    pub async fn client_as(&self, user: &str) -> Result<Client, String> {
        self.client_for(Some(user)).await
    }

    async fn client_for(&self, impersonate: Option<&str>) -> Result<Client, String> {
        // kube (aws-lc-rs) and the iggy SDK (ring) both enable a rustls provider: pick one.
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let kubeconfig = self.kubeconfig_value("admin", ADMIN_TOKEN, impersonate);
        let config =
            kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
                .await
                .map_err(|e| e.to_string())?;
        Client::try_from(config).map_err(|e| e.to_string())
    }

    /// Admin kubeconfig file, for kubectl and helm.
    pub fn kubeconfig_path(&self) -> &Path {
        &self.kubeconfig
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn log_tail(&self) -> String {
        tail(&self.dir.join("kube-apiserver.log"), 40)
    }
}

/// Kubeconfig as YAML (kube's types serialize with serde).
fn kubeconfig_yaml(k: &Kubeconfig) -> Result<String, String> {
    serde_yaml::to_string(k).map_err(|e| e.to_string())
}

impl Drop for KubeTestCluster {
    fn drop(&mut self) {
        for child in [&mut self.apiserver, &mut self.etcd] {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::env::var_os("KAFKA_IGGY_KEEP_TEST_DIRS").is_none() {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}
