#!/usr/bin/env bash
# Builds the container images WITHOUT a registry: the final stage of proxy/Containerfile and
# operator/Containerfile, assembled FROM scratch by buildah around binaries built on this host
# (`cargo build --release`), with the shared libraries `ldd` lists copied from the host (what
# gcr.io/distroless/cc holds: glibc, libgcc), CA certificates and an /etc/passwd naming the
# non-root user 65532. Also the pod sandbox image (tools/k8s/pause, a static Go binary).
#
#   tools/images/build.sh [--import]
#
# Writes OCI archives to $KAFKA_IGGY_IMAGES (default ~/.cache/kafka-iggy/images):
#   kafka-iggy-proxy.oci.tar     ghcr.io/kafka-iggy/kafka-iggy-proxy:$VERSION
#   kafka-iggy-operator.oci.tar  ghcr.io/kafka-iggy/kafka-iggy-operator:$VERSION
#   pause.oci.tar                localhost/kafka-iggy/pause:1
# --import loads them into containerd's k8s.io namespace (`ctr images import`; the socket is
# $CONTAINERD_ADDRESS, default /run/containerd/containerd.sock), where the kubelet finds them
# (imagePullPolicy IfNotPresent/Never). With a registry, build the Containerfiles instead
# (README, "Container images").
# Inputs: PROXY_BIN / OPERATOR_BIN (default $CARGO_TARGET_DIR/release/...), PAUSE_BIN (default
# $KAFKA_IGGY_K8S_BIN/pause), IMAGE_REPOSITORY (default ghcr.io/kafka-iggy), IMAGE_TAG (default
# the crates' version).
set -euo pipefail
repo="$(cd "$(dirname "$0")/../.." && pwd)"
target="${CARGO_TARGET_DIR:-$repo/target}"
[[ "$target" = /* ]] || target="$repo/$target"
out="${KAFKA_IGGY_IMAGES:-$HOME/.cache/kafka-iggy/images}"
k8s_bin="${KAFKA_IGGY_K8S_BIN:-$HOME/.cache/kafka-iggy/k8s-bin}"
registry="${IMAGE_REPOSITORY:-ghcr.io/kafka-iggy}"
version="$(sed -n 's/^version = "\(.*\)"/\1/p' "$repo/proxy/Cargo.toml" | head -1)"
tag="${IMAGE_TAG:-$version}"
import=0
[[ "${1:-}" == --import ]] && import=1

for tool in buildah ldd; do
  command -v "$tool" >/dev/null || { echo "tools/images/build.sh: $tool missing (apt-get install buildah)" >&2; exit 1; }
done
mkdir -p "$out"
# buildah's own storage, apart from any the machine has (vfs: no overlay mounts to clean up).
storage=(--root "$out/storage" --runroot "/run/kafka-iggy-buildah" --storage-driver vfs)

# rootfs DIR BINARY NAME: the binary as /usr/local/bin/NAME plus what it needs at run time.
rootfs() {
  local dir="$1" binary="$2" name="$3"
  rm -rf "$dir"
  install -D -m 0755 "$binary" "$dir/usr/local/bin/$name"
  # Debug line tables stay on the host (function names remain for backtraces): about 5x smaller.
  if command -v strip >/dev/null; then strip --strip-debug "$dir/usr/local/bin/$name"; fi
  # Every shared object the binary loads, at the same path as on the host (Debian 12, the base
  # of distroless/cc-debian12).
  { ldd "$binary" 2>/dev/null || true; } | awk '/=> \// { print $3 } /^\t\// { print $1 }' | while read -r lib; do
    install -D -m 0755 "$(readlink -f "$lib")" "$dir$lib"
  done
  install -d -m 0755 "$dir/etc" "$dir/etc/ssl/certs"
  install -d -m 1777 "$dir/tmp"
  printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' > "$dir/etc/passwd"
  printf 'root:x:0:\nnonroot:x:65532:\n' > "$dir/etc/group"
  if [[ -f /etc/ssl/certs/ca-certificates.crt ]]; then
    cp /etc/ssl/certs/ca-certificates.crt "$dir/etc/ssl/certs/"
  fi
}

# image NAME REF ROOTFS ENTRYPOINT USER PORTS...: commits ROOTFS as REF into NAME.oci.tar.
image() {
  local name="$1" ref="$2" dir="$3" entrypoint="$4" user="$5"; shift 5
  local started=$SECONDS ctr
  ctr="$(buildah "${storage[@]}" from scratch)"
  buildah "${storage[@]}" copy "$ctr" "$dir" / >/dev/null
  local config=(--entrypoint "[\"$entrypoint\"]" --cmd '' --user "$user" --workingdir /
    --label "org.opencontainers.image.title=$name"
    --label "org.opencontainers.image.version=$tag"
    --label "org.opencontainers.image.licenses=Apache-2.0"
    --label "org.opencontainers.image.revision=$(git -C "$repo" rev-parse HEAD 2>/dev/null || echo unknown)"
    --label "org.opencontainers.image.created=$(date -u +%Y-%m-%dT%H:%M:%SZ)")
  local port
  for port in "$@"; do config+=(--port "$port"); done
  buildah "${storage[@]}" config "${config[@]}" "$ctr"
  rm -f "$out/$name.oci.tar"
  buildah "${storage[@]}" commit --quiet --rm --format oci "$ctr" "$ref" >/dev/null
  buildah "${storage[@]}" push --quiet "$ref" "oci-archive:$out/$name.oci.tar:$ref"
  buildah "${storage[@]}" rmi "$ref" >/dev/null 2>&1 || true
  echo "=== $ref -> $out/$name.oci.tar ($(du -h "$out/$name.oci.tar" | cut -f1), $((SECONDS - started)) s)"
}

proxy_bin="${PROXY_BIN:-$target/release/kafka-iggy-proxy}"
operator_bin="${OPERATOR_BIN:-$target/release/kafka-iggy-operator}"
pause_bin="${PAUSE_BIN:-$k8s_bin/pause}"
for binary in "$proxy_bin" "$operator_bin" "$pause_bin"; do
  [[ -x "$binary" ]] || { echo "tools/images/build.sh: $binary missing (cargo build --release -p kafka-iggy-proxy -p kafka-iggy-operator; tools/k8s/build.sh)" >&2; exit 1; }
done

stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT
rootfs "$stage/proxy" "$proxy_bin" kafka-iggy-proxy
image kafka-iggy-proxy "$registry/kafka-iggy-proxy:$tag" "$stage/proxy" \
  /usr/local/bin/kafka-iggy-proxy 65532:65532 9092 9644
rootfs "$stage/operator" "$operator_bin" kafka-iggy-operator
image kafka-iggy-operator "$registry/kafka-iggy-operator:$tag" "$stage/operator" \
  /usr/local/bin/kafka-iggy-operator 65532:65532 8080
install -D -m 0755 "$pause_bin" "$stage/pause/pause"
image pause localhost/kafka-iggy/pause:1 "$stage/pause" /pause 65535:65535

if ((import)); then
  for name in kafka-iggy-proxy kafka-iggy-operator pause; do
    ctr -n k8s.io images import "$out/$name.oci.tar" >/dev/null
  done
  ctr -n k8s.io images ls -q | grep -E 'kafka-iggy' | sed 's/^/=== imported /'
fi
