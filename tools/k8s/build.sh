#!/usr/bin/env bash
# Builds the Kubernetes test peers from the Go module proxy (no other network, no Docker):
# kube-apiserver (k8s.io/kubernetes, staging modules replaced by their published versions),
# etcd, kubectl and helm, and for the end-to-end cluster kubelet, kube-controller-manager,
# kube-scheduler and kube-proxy (tools/k8s/kube-node), crictl, Prometheus and a pause image binary. Binaries go OUTSIDE the repository, into $KAFKA_IGGY_K8S_BIN
# (default ~/.cache/kafka-iggy/k8s-bin); a binary already built for the pinned version is kept.
# The tests (testkit/src/kube.rs, tests/k8s/run.sh) find them there.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="${KAFKA_IGGY_K8S_BIN:-$HOME/.cache/kafka-iggy/k8s-bin}"
mkdir -p "$out"
export GOFLAGS="${GOFLAGS:-} -mod=readonly"

HELM_VERSION=v3.22.0
CRICTL_VERSION=v1.34.0
PROMETHEUS_VERSION=v0.316.0

# Each wrapper module pins its version in go.mod/go.sum; the stamp file records what was built.
build_wrapper() {
  local name="$1" dir="$here/$1" ldflags="${2:-}"
  local stamp
  stamp="$( (cat "$dir/go.mod" "$dir/go.sum" "$dir/main.go"; echo "$ldflags") | sha256sum | cut -c1-16)"
  if [[ -x "$out/$name" && "$(cat "$out/$name.stamp" 2>/dev/null)" == "$stamp" ]]; then
    echo "=== $name: up to date"
    return
  fi
  echo "=== building $name"
  local start=$SECONDS
  (cd "$dir" && go build -trimpath -ldflags "$ldflags" -o "$out/$name.tmp" .)
  mv "$out/$name.tmp" "$out/$name"
  echo "$stamp" > "$out/$name.stamp"
  echo "=== $name built in $((SECONDS - start)) s"
}

# Without these the binaries report version v0.0.0-master and helm refuses the chart's
# kubeVersion constraint.
K8S_VERSION=v1.34.4
k8s_version_flags="-X k8s.io/component-base/version.gitVersion=$K8S_VERSION -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=34"
build_wrapper kube-apiserver "$k8s_version_flags"
build_wrapper etcd
build_wrapper kubectl "$k8s_version_flags"
# Tools installed as published modules: the version is the stamp.
go_install() { # go_install NAME PACKAGE VERSION
  local name="$1" package="$2" version="$3"
  if [[ -x "$out/$name" && "$(cat "$out/$name.stamp" 2>/dev/null)" == "$version" ]]; then
    echo "=== $name: up to date"
    return
  fi
  echo "=== building $name $version"
  local start=$SECONDS
  GOBIN="$out" GOFLAGS= go install -trimpath "$package@$version"
  echo "$version" > "$out/$name.stamp"
  echo "=== $name built in $((SECONDS - start)) s"
}
go_install helm helm.sh/helm/v3/cmd/helm "$HELM_VERSION"

# Only the end-to-end cluster (tests/e2e/) needs these; KAFKA_IGGY_E2E_TOOLS=0 leaves them out.
if [[ "${KAFKA_IGGY_E2E_TOOLS:-1}" == 1 ]]; then
  # kubelet, kube-controller-manager, kube-scheduler and kube-proxy for the end-to-end cluster
  # (tests/e2e/): one multi-call binary, called through symlinks. The kubelet of 1.34 still runs on
  # cgroup v1 (from 1.35 on it refuses unless failCgroupV1=false).
  build_wrapper kube-node "$k8s_version_flags"
  for component in kubelet kube-controller-manager kube-scheduler kube-proxy; do
    ln -sfn kube-node "$out/$component"
  done
  # The pod sandbox process of containerd's sandbox_image: static, so the image is one file.
  CGO_ENABLED=0 build_wrapper pause "-s -w"
  # CRI client for the harness (listing and removing pods at teardown).
  go_install crictl sigs.k8s.io/cri-tools/cmd/crictl "$CRICTL_VERSION"
  # Prometheus 3 (Go module versions v0.3xx.y): the end-to-end test scrapes the proxies with it.
  go_install prometheus github.com/prometheus/prometheus/cmd/prometheus "$PROMETHEUS_VERSION"
fi
ls -la "$out"
