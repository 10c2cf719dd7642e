#!/usr/bin/env bash
# Builds the Kubernetes test peers from the Go module proxy (no other network, no Docker):
# kube-apiserver (k8s.io/kubernetes, staging modules replaced by their published versions),
# etcd, kubectl and helm. Binaries go OUTSIDE the repository, into $KAFKA_IGGY_K8S_BIN
# (default ~/.cache/kafka-iggy/k8s-bin); a binary already built for the pinned version is kept.
# The tests (testkit/src/kube.rs, tests/k8s/run.sh) find them there.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="${KAFKA_IGGY_K8S_BIN:-$HOME/.cache/kafka-iggy/k8s-bin}"
mkdir -p "$out"
export GOFLAGS="${GOFLAGS:-} -mod=readonly"

HELM_VERSION=v3.22.0

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

if [[ -x "$out/helm" && "$(cat "$out/helm.stamp" 2>/dev/null)" == "$HELM_VERSION" ]]; then
  echo "=== helm: up to date"
else
  echo "=== building helm $HELM_VERSION"
  start=$SECONDS
  GOBIN="$out" GOFLAGS= go install -trimpath "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
  echo "$HELM_VERSION" > "$out/helm.stamp"
  echo "=== helm built in $((SECONDS - start)) s"
fi
ls -la "$out"
