//! Starts a test Kubernetes API server (etcd + kube-apiserver) for shell-level tests (helm,
//! kubectl; tests/k8s/run.sh): writes the admin kubeconfig to the path given as the first
//! argument, then runs until its standard input closes or it gets SIGTERM/SIGINT; either way
//! etcd and kube-apiserver are stopped before it exits (a SIGKILL would orphan them).
//!
//!     cargo run -p iggy-testkit --example kube-cluster -- /tmp/kubeconfig < fifo
#![allow(
    clippy::unwrap_used,
    reason = "a test helper: failing loudly is the point"
)]

use std::io::Read;

#[tokio::main]
async fn main() {
    let target = std::env::args()
        .nth(1)
        .expect("usage: kube-cluster KUBECONFIG_OUT");
    let cluster = match iggy_testkit::kube::KubeTestCluster::start().await {
        Ok(Some(c)) => c,
        Ok(None) => std::process::exit(3),
        Err(e) => {
            eprintln!("cannot start the test cluster: {e}");
            std::process::exit(1);
        }
    };
    let tmp = format!("{target}.tmp");
    std::fs::copy(cluster.kubeconfig_path(), &tmp).unwrap();
    std::fs::rename(&tmp, &target).unwrap();
    eprintln!("kubeconfig written to {target}; running until stdin closes or SIGTERM");
    let stdin_closed = tokio::task::spawn_blocking(|| {
        let mut sink = Vec::new();
        let _ = std::io::stdin().read_to_end(&mut sink);
    });
    let mut terminate =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).unwrap();
    tokio::select! {
        _ = stdin_closed => {}
        _ = terminate.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    drop(cluster);
    // The blocking stdin reader may still be waiting; do not wait for it.
    std::process::exit(0);
}
