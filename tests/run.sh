#!/usr/bin/env bash
# Runs every test of the workspace, assuming the prerequisites are installed (.ci/run installs
# them, then calls this):
#   0. rustfmt and clippy (warnings are errors)
#   1. Rust unit and integration tests (cargo test --workspace --locked), including the
#      operator against a real kube-apiserver + etcd (tests named *on_kube*)
#   2. the Helm chart and plain manifests against a real API server (tests/k8s/run.sh)
#   3. the release build of the proxy
#   4. the real-client scenarios (pytest, tests/clients), whose summary is the last output.
# Kubernetes binaries: tools/k8s/build.sh puts them in $KAFKA_IGGY_K8S_BIN (default
# ~/.cache/kafka-iggy/k8s-bin); without them those tests are skipped loudly (failed in CI).
# Real Iggy: IGGY_SERVER_BIN names an Iggy 0.8 server binary (default: /opt/iggy/bin/iggy-server
# when it exists); without one, every Iggy scenario is skipped and the summary says so.
# Extra arguments go to pytest (e.g. `bash tests/run.sh -k kcat`).
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ -z "${IGGY_SERVER_BIN:-}" && -x /opt/iggy/bin/iggy-server ]]; then
  export IGGY_SERVER_BIN=/opt/iggy/bin/iggy-server
fi
if [[ -n "${IGGY_SERVER_BIN:-}" ]]; then
  echo "################################################################################"
  echo "### REAL IGGY: tests run against ${IGGY_SERVER_BIN}"
  echo "################################################################################"
else
  echo "################################################################################"
  echo "### !!! NO REAL IGGY: IGGY_SERVER_BIN not set and /opt/iggy/bin/iggy-server absent"
  echo "### !!! Only the memory back end is tested; every Iggy scenario is SKIPPED."
  echo "################################################################################"
fi

# Kubernetes API server tests (names contain `on_kube`) need tools/k8s/build.sh's binaries.
export KAFKA_IGGY_K8S_BIN="${KAFKA_IGGY_K8S_BIN:-$HOME/.cache/kafka-iggy/k8s-bin}"
skips=()
if [[ -z "${IGGY_SERVER_BIN:-}" ]]; then
  # Without a server the Rust tests that need one (every name contains `on_iggy`) are left out
  # rather than counted as passed.
  skips+=(--skip on_iggy)
fi
if [[ -x "$KAFKA_IGGY_K8S_BIN/kube-apiserver" && -x "$KAFKA_IGGY_K8S_BIN/etcd" ]]; then
  echo "### REAL KUBERNETES API SERVER: $KAFKA_IGGY_K8S_BIN"
elif [[ "${CLIENTS_STRICT:-0}" == 1 ]]; then
  echo "### FAILED: kube-apiserver/etcd missing in $KAFKA_IGGY_K8S_BIN"; exit 1
else
  skips+=(--skip on_kube)
fi
stage_started=$SECONDS
took() { echo "### took $((SECONDS - stage_started)) s: $1"; stage_started=$SECONDS; }
# Lints first: they are quick once the tests' dependencies are built, and a lint is a failure.
if cargo fmt --version >/dev/null 2>&1 && cargo clippy --version >/dev/null 2>&1; then
  echo "=== cargo fmt --check; cargo clippy --workspace --all-targets --locked -D warnings"
  cargo fmt --all -- --check
  cargo clippy --workspace --all-targets --locked -- -D warnings
  took "fmt + clippy"
else
  echo "### !!! SKIPPED: lints (rustfmt or clippy not installed: rustup component add rustfmt clippy)"
fi
echo "=== cargo test --workspace --locked -- ${skips[*]}"
cargo test --workspace --locked -- "${skips[@]}"
took "cargo test"
[[ -z "${IGGY_SERVER_BIN:-}" ]] && echo "### !!! SKIPPED: every Rust test named *on_iggy* (IGGY_SERVER_BIN not set)"
[[ " ${skips[*]} " == *" on_kube "* ]] && echo "### !!! SKIPPED: every Rust test named *on_kube* (no kube-apiserver/etcd in $KAFKA_IGGY_K8S_BIN; run tools/k8s/build.sh)"

echo "=== Kubernetes chart and manifests (tests/k8s/run.sh)"
bash tests/k8s/run.sh
took "tests/k8s/run.sh"

echo "=== cargo build --release -p kafka-iggy-proxy"
cargo build --release -p kafka-iggy-proxy
took "cargo build --release"
# cargo builds into CARGO_TARGET_DIR when set (relative paths are from the workspace root).
target_dir="${CARGO_TARGET_DIR:-target}"
[[ "$target_dir" = /* ]] || target_dir="$PWD/$target_dir"
export PROXY_BIN="$target_dir/release/kafka-iggy-proxy"

echo "=== client scenarios (pytest tests/clients)"
cd tests/clients
# pytest prints its own duration last.
exec python3 -m pytest "$@"
