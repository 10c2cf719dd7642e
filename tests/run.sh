#!/usr/bin/env bash
# Runs every test of the workspace, assuming the prerequisites are installed (.ci/run installs
# them, then calls this):
#   1. Rust unit and integration tests (cargo test --workspace --locked)
#   2. the release build of the proxy
#   3. the real-client scenarios (pytest, tests/clients), whose summary is the last output.
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

if [[ -n "${IGGY_SERVER_BIN:-}" ]]; then
  echo "=== cargo test --workspace --locked"
  cargo test --workspace --locked
else
  # Without a server the Rust tests that need one (every name contains `on_iggy`) are left out
  # rather than counted as passed.
  echo "=== cargo test --workspace --locked -- --skip on_iggy"
  cargo test --workspace --locked -- --skip on_iggy
  echo "### !!! SKIPPED: every Rust test named *on_iggy* (IGGY_SERVER_BIN not set)"
fi

echo "=== cargo build --release -p kafka-iggy-proxy"
cargo build --release -p kafka-iggy-proxy
export PROXY_BIN="$PWD/target/release/kafka-iggy-proxy"

echo "=== client scenarios (pytest tests/clients)"
cd tests/clients
exec python3 -m pytest "$@"
