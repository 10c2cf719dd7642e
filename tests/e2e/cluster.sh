#!/usr/bin/env bash
# A real single-node Kubernetes as plain processes, for tests/e2e/run.sh:
#   etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubelet and kube-proxy
#   (built by tools/k8s/build.sh from the Go module proxy, K8S_VERSION there), containerd and runc
#   (Debian), pod networking by the CNI bridge plugin (Debian containernetworking-plugins),
#   Services by kube-proxy in iptables mode. No DNS add-on: bridges in the test advertise their
#   pod IPs (kafka.advertise: PodIP), which the host routes to.
#
#   tests/e2e/cluster.sh up      install what is missing (apt-get), start everything, import the
#                                images of $KAFKA_IGGY_IMAGES (tools/images/build.sh), wait for
#                                the node to be Ready; prints the kubeconfig path
#   tests/e2e/cluster.sh down    stop everything, kill the pods' processes, unmount, remove the
#                                bridge, iptables chains and cgroups it made; restore ip_forward
#   tests/e2e/cluster.sh env     print `export KUBECONFIG=...` (and CONTAINERD_ADDRESS)
#
# What it changes on the machine, all undone by `down`: a bridge `kiggy0` (10.244.0.0/24),
# net.ipv4.ip_forward=1 (the bridge plugin's gateway), KUBE-* iptables chains (kube-proxy's and
# the kubelet's; `down` removes every KUBE-* chain, so do not run it beside a real node), the
# cgroups /kubepods in each v1 hierarchy, mounts under $KAFKA_IGGY_E2E_DIR. Its own containerd
# (socket /run/kafka-iggy-e2e/containerd.sock) leaves any other containerd alone.
# Facts of the machines this runs on (cgroup v1 only, containerd 1.6): the kubelet of 1.34 runs on
# cgroup v1 (failCgroupV1=false); containerd restricts oom_score_adj (negative values are refused
# here); the kubelet would set vm.overcommit_memory, vm.panic_on_oom, kernel.panic,
# kernel.panic_on_oops and kernel.keys.* for the whole machine, so it runs in a mount namespace of
# its own where those /proc/sys files are bind-mounted copies; its pod directory is a shared mount
# so containerd (in the machine's namespace) sees the volumes it mounts. Pod processes live in
# /kubepods cgroups, outside the caller's: `down` kills them by PID.
set -euo pipefail
repo="$(cd "$(dirname "$0")/../.." && pwd)"
bin="${KAFKA_IGGY_K8S_BIN:-$HOME/.cache/kafka-iggy/k8s-bin}"
images="${KAFKA_IGGY_IMAGES:-$HOME/.cache/kafka-iggy/images}"
dir="${KAFKA_IGGY_E2E_DIR:-/var/lib/kafka-iggy-e2e}"
run=/run/kafka-iggy-e2e
node=kafka-iggy-e2e
bridge=kiggy0
pod_cidr=10.244.0.0/24
service_cidr=10.96.0.0/24
# Fixed ports below the ephemeral range, apart from the defaults a machine may already use.
etcd_port=12379 etcd_peer_port=12380 api_port=16443 kubelet_port=11250
export CONTAINERD_ADDRESS="$run/containerd.sock"
export PATH="$bin:$PATH"

log() { echo "=== e2e cluster: $*"; }
die() { echo "### e2e cluster FAILED: $*" >&2; exit 1; }

node_ip() {
  ip -4 -o addr show scope global | awk '{ split($4, a, "/"); print a[1]; exit }'
}

# ------------------------------------------------------------------------------ prerequisites
install_packages() {
  local missing=()
  command -v containerd >/dev/null || missing+=(containerd)
  command -v runc >/dev/null || missing+=(runc)
  [[ -x /usr/lib/cni/bridge ]] || missing+=(containernetworking-plugins)
  command -v iptables >/dev/null || missing+=(iptables)
  command -v conntrack >/dev/null || missing+=(conntrack)
  command -v buildah >/dev/null || missing+=(buildah)
  command -v openssl >/dev/null || missing+=(openssl)
  command -v unshare >/dev/null || missing+=(util-linux)
  command -v curl >/dev/null || missing+=(curl)
  if ((${#missing[@]})); then
    log "apt-get install ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >/dev/null
    apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
  fi
}

check_prerequisites() {
  [[ $(id -u) == 0 ]] || die "must run as root (containerd, kubelet, iptables)"
  local tool
  for tool in etcd kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl crictl; do
    [[ -x "$bin/$tool" ]] || die "$bin/$tool missing (run tools/k8s/build.sh)"
  done
  [[ -f "$images/pause.oci.tar" ]] || die "$images/pause.oci.tar missing (run tools/images/build.sh)"
  [[ -n "$(node_ip)" ]] || die "no global IPv4 address on this machine for the node"
}

# ------------------------------------------------------------------------------ processes
# start NAME COMMAND...: runs it in the background, logs to $dir/logs/NAME.log, pid in $dir/pids.
start() {
  local name="$1"; shift
  "$@" >"$dir/logs/$name.log" 2>&1 &
  echo $! > "$dir/pids/$name"
}

wait_for() { # wait_for SECONDS DESCRIPTION COMMAND...
  local seconds="$1" what="$2"; shift 2
  local deadline=$((SECONDS + seconds))
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || die "$what: not within $seconds s"
    sleep 1
  done
}

stop_pid() { # stop_pid NAME: SIGTERM, then SIGKILL after 10 s
  local file="$dir/pids/$1" pid
  [[ -f "$file" ]] || return 0
  pid="$(cat "$file")"
  if kill -TERM "$pid" 2>/dev/null; then
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$file"
}

# ------------------------------------------------------------------------------ configuration
certificates() {
  local ip="$1" pki="$dir/pki"
  mkdir -p "$pki"
  openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=kafka-iggy-e2e-ca" \
    -keyout "$pki/ca.key" -out "$pki/ca.crt" 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -subj "/CN=kube-apiserver" \
    -keyout "$pki/apiserver.key" -out "$pki/apiserver.csr" 2>/dev/null
  printf 'subjectAltName=IP:%s,IP:10.96.0.1,IP:127.0.0.1,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,DNS:localhost\n' "$ip" > "$pki/san.ext"
  openssl x509 -req -in "$pki/apiserver.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" -CAcreateserial \
    -days 2 -extfile "$pki/san.ext" -out "$pki/apiserver.crt" 2>/dev/null
  openssl genrsa -out "$pki/sa.key" 2048 2>/dev/null
  # One token in group system:masters for kubectl and every component: a test cluster.
  openssl rand -hex 24 > "$pki/admin.token"
  echo "$(cat "$pki/admin.token"),kafka-iggy-e2e-admin,kafka-iggy-e2e-admin,\"system:masters\"" > "$pki/tokens.csv"
  cat > "$dir/kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: e2e
  cluster: {server: "https://$ip:$api_port", certificate-authority: "$pki/ca.crt"}
users:
- name: admin
  user: {token: "$(cat "$pki/admin.token")"}
contexts:
- name: e2e
  context: {cluster: e2e, user: admin, namespace: default}
current-context: e2e
EOF
}

containerd_config() {
  mkdir -p "$dir/containerd" "$run" "$dir/cni/net.d"
  local snapshotter=native
  grep -qw overlay /proc/filesystems && snapshotter=overlayfs
  cat > "$dir/containerd.toml" <<EOF
version = 2
root = "$dir/containerd"
state = "$run/containerd"
[grpc]
  address = "$run/containerd.sock"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "localhost/kafka-iggy/pause:1"
  # A negative oom_score_adj (the kubelet's for Guaranteed pods) is refused on these machines.
  restrict_oom_score_adj = true
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "$snapshotter"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$dir/cni/net.d"
EOF
  # The bridge plugin: pods on $bridge, host-local addresses, the host as their gateway. No IP
  # masquerading: pods only talk to this machine and to each other.
  cat > "$dir/cni/net.d/10-kafka-iggy-e2e.conflist" <<EOF
{
  "cniVersion": "0.4.0",
  "name": "kafka-iggy-e2e",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$bridge",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "ranges": [[{"subnet": "$pod_cidr"}]],
        "routes": [{"dst": "0.0.0.0/0"}],
        "dataDir": "$dir/cni/ipam"
      }
    }
  ]
}
EOF
}

kubelet_config() {
  local ip="$1"
  cat > "$dir/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: "$ip"
port: $kubelet_port
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 11248
# Test node: the API server reaches logs and exec without a client certificate.
authentication: {anonymous: {enabled: true}, webhook: {enabled: false}}
authorization: {mode: AlwaysAllow}
containerRuntimeEndpoint: "unix://$run/containerd.sock"
cgroupDriver: cgroupfs
failCgroupV1: false
failSwapOn: false
podLogsDir: "$dir/pod-logs"
resolvConf: /etc/resolv.conf
clusterDomain: cluster.local
# Shared machine: do not evict the test's pods because other work fills the disk.
evictionHard: {memory.available: "100Mi", nodefs.available: "1%", imagefs.available: "1%", nodefs.inodesFree: "1%"}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
serializeImagePulls: false
maxPods: 30
EOF
}

# ------------------------------------------------------------------------------ up
up() {
  install_packages
  check_prerequisites
  if [[ -f "$dir/pids/kube-apiserver" ]] && kill -0 "$(cat "$dir/pids/kube-apiserver")" 2>/dev/null; then
    die "already running ($dir); run: tests/e2e/cluster.sh down"
  fi
  local ip started=$SECONDS
  ip="$(node_ip)"
  [[ -d "$dir" ]] && down
  rm -rf "$dir"
  mkdir -p "$dir/logs" "$dir/pids" "$dir/pod-logs" "$run"
  cat /proc/sys/net/ipv4/ip_forward > "$dir/ip_forward.saved"
  log "node $node at $ip, state in $dir"
  certificates "$ip"
  local pki="$dir/pki" kubeconfig="$dir/kubeconfig"

  start etcd "$bin/etcd" --data-dir="$dir/etcd" --name=default --unsafe-no-fsync \
    --listen-client-urls="http://127.0.0.1:$etcd_port" --advertise-client-urls="http://127.0.0.1:$etcd_port" \
    --listen-peer-urls="http://127.0.0.1:$etcd_peer_port" --initial-advertise-peer-urls="http://127.0.0.1:$etcd_peer_port" \
    --initial-cluster="default=http://127.0.0.1:$etcd_peer_port"
  start kube-apiserver "$bin/kube-apiserver" --etcd-servers="http://127.0.0.1:$etcd_port" \
    --bind-address="$ip" --advertise-address="$ip" --secure-port="$api_port" \
    --tls-cert-file="$pki/apiserver.crt" --tls-private-key-file="$pki/apiserver.key" \
    --client-ca-file="$pki/ca.crt" --token-auth-file="$pki/tokens.csv" --authorization-mode=RBAC \
    --service-account-key-file="$pki/sa.key" --service-account-signing-key-file="$pki/sa.key" \
    --service-account-issuer=https://kubernetes.default.svc --service-cluster-ip-range="$service_cidr" \
    --allow-privileged=true --kubelet-preferred-address-types=InternalIP
  containerd_config
  start containerd containerd --config "$dir/containerd.toml"
  wait_for 60 "etcd and kube-apiserver ready" kubectl --kubeconfig "$kubeconfig" get --raw /readyz
  wait_for 30 "containerd answers" crictl --runtime-endpoint "unix://$run/containerd.sock" version
  log "API server and containerd up after $((SECONDS - started)) s"

  local archive
  for archive in "$images"/*.oci.tar; do
    ctr -n k8s.io images import "$archive" >/dev/null || die "ctr images import $archive"
  done
  log "images: $(ctr -n k8s.io images ls -q | grep -v '^sha256:' | tr '\n' ' ')"

  start kube-controller-manager "$bin/kube-controller-manager" --kubeconfig="$kubeconfig" \
    --bind-address=127.0.0.1 --secure-port=11257 --leader-elect=false \
    --service-account-private-key-file="$pki/sa.key" --root-ca-file="$pki/ca.crt" \
    --use-service-account-credentials=false --service-cluster-ip-range="$service_cidr" \
    --cluster-signing-cert-file="$pki/ca.crt" --cluster-signing-key-file="$pki/ca.key"
  start kube-scheduler "$bin/kube-scheduler" --kubeconfig="$kubeconfig" \
    --bind-address=127.0.0.1 --secure-port=11259 --leader-elect=false

  # The kubelet's own mount namespace: the sysctls it sets land in copies; its pod directory is
  # a shared mount, so what it mounts there (Secrets, ConfigMaps, tokens) reaches containerd.
  kubelet_config "$ip"
  mkdir -p "$dir/kubelet" "$dir/sysctl"
  mount --bind "$dir/kubelet" "$dir/kubelet"
  mount --make-rshared "$dir/kubelet"
  local sysctls="vm/overcommit_memory vm/panic_on_oom kernel/panic kernel/panic_on_oops kernel/keys/root_maxkeys kernel/keys/root_maxbytes"
  local binds="" f
  for f in $sysctls; do
    cp "/proc/sys/$f" "$dir/sysctl/${f//\//.}"
    binds+="mount --bind '$dir/sysctl/${f//\//.}' '/proc/sys/$f' && "
  done
  start kubelet unshare --mount --propagation unchanged -- sh -c "mount --make-rprivate /proc && ${binds} exec '$bin/kubelet' \
    --config='$dir/kubelet.yaml' --kubeconfig='$kubeconfig' --root-dir='$dir/kubelet' \
    --hostname-override=$node --node-ip=$ip --cert-dir='$dir/kubelet-pki'"

  # kube-proxy in the machine's network namespace: leave its conntrack sysctls alone (0) and
  # route_localnet too (no NodePorts on localhost).
  start kube-proxy "$bin/kube-proxy" --kubeconfig="$kubeconfig" --proxy-mode=iptables \
    --hostname-override=$node --cluster-cidr=10.244.0.0/16 --masquerade-all \
    --metrics-bind-address=127.0.0.1:11249 --healthz-bind-address=127.0.0.1:11256 \
    --conntrack-max-per-core=0 --conntrack-tcp-timeout-established=0s --conntrack-tcp-timeout-close-wait=0s \
    --iptables-localhost-nodeports=false

  node_ready() {
    kubectl --kubeconfig "$kubeconfig" get node "$node" \
      -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' | grep -qx True
  }
  wait_for 120 "node $node Ready" node_ready
  # kube-proxy's rules route the kubernetes Service's cluster IP to the API server.
  wait_for 60 "the kubernetes Service answers on 10.96.0.1:443 (kube-proxy)" \
    curl -sf --cacert "$pki/ca.crt" https://10.96.0.1/readyz
  # The default ServiceAccount exists once the controller manager runs (pods need it).
  wait_for 60 "ServiceAccount default/default" kubectl --kubeconfig "$kubeconfig" -n default get serviceaccount default
  log "ready after $((SECONDS - started)) s: export KUBECONFIG=$kubeconfig"
}

# ------------------------------------------------------------------------------ down
# PIDs of every process in the /kubepods cgroups (the pods' containers and sandboxes).
pod_pids() {
  local hierarchy
  for hierarchy in /sys/fs/cgroup/*/; do
    [[ -d "$hierarchy/kubepods" ]] || continue
    find "$hierarchy/kubepods" -name cgroup.procs -exec cat {} + 2>/dev/null
  done | sort -u
}

# PIDs of containerd shims started by our containerd (their command line names its socket).
shim_pids() {
  local p
  for p in /proc/[0-9]*; do
    { tr '\0' ' ' < "$p/cmdline"; } 2>/dev/null | grep -q -- "-address $run/containerd.sock" && basename "$p"
  done
  return 0
}

# What kube-proxy --cleanup leaves: the kubelet's KUBE-FIREWALL (martian packets to 127/8),
# KUBE-KUBELET-CANARY and KUBE-IPTABLES-HINT chains, in IPv4 and IPv6.
remove_kube_chains() {
  local cmd table rule chain
  for cmd in iptables ip6tables; do
    command -v "$cmd" >/dev/null || continue
    for table in filter nat mangle; do
      "$cmd" -t "$table" -S 2>/dev/null | grep -E '^-A (INPUT|OUTPUT|FORWARD|PREROUTING|POSTROUTING) .*-j KUBE-' \
        | while read -r rule; do
            # shellcheck disable=SC2086
            "$cmd" -t "$table" -D ${rule#-A } 2>/dev/null || true
          done || true
      for chain in $("$cmd" -t "$table" -S 2>/dev/null | awk '$1 == "-N" && $2 ~ /^KUBE-/ { print $2 }'); do
        "$cmd" -t "$table" -F "$chain" 2>/dev/null || true
      done
      for chain in $("$cmd" -t "$table" -S 2>/dev/null | awk '$1 == "-N" && $2 ~ /^KUBE-/ { print $2 }'); do
        "$cmd" -t "$table" -X "$chain" 2>/dev/null || true
      done
    done
  done
}

down() {
  [[ $(id -u) == 0 ]] || die "must run as root"
  [[ -d "$dir" ]] || { log "nothing to stop ($dir absent)"; return 0; }
  log "stopping"
  stop_pid kubelet
  if [[ -S "$run/containerd.sock" ]]; then
    # Stop and remove every pod sandbox: containers stop, CNI releases the addresses.
    timeout 60 "$bin/crictl" --runtime-endpoint "unix://$run/containerd.sock" rmp -fa >/dev/null 2>&1 || true
  fi
  stop_pid kube-proxy
  # kube-proxy --cleanup removes its iptables chains (KUBE-*).
  [[ -x "$bin/kube-proxy" ]] && "$bin/kube-proxy" --cleanup >/dev/null 2>&1 || true
  stop_pid kube-scheduler
  stop_pid kube-controller-manager
  stop_pid containerd
  # Whatever is left of the pods: processes outside our session's cgroup, killed by PID.
  local pids
  for _ in 1 2 3; do
    pids="$(pod_pids; shim_pids)"
    [[ -z "$pids" ]] && break
    # shellcheck disable=SC2086
    kill -KILL $pids 2>/dev/null || true
    sleep 1
  done
  stop_pid kube-apiserver
  stop_pid etcd
  # Mounts below our directories, deepest first.
  local mounts
  mounts="$(findmnt -rn -o TARGET | grep -E "^($dir|$run)(/|$)" | sort -r || true)"
  [[ -n "$mounts" ]] && echo "$mounts" | xargs -r -n1 umount -l 2>/dev/null || true
  # The pods' cgroups (empty now), deepest first.
  local hierarchy
  for hierarchy in /sys/fs/cgroup/*/; do
    [[ -d "$hierarchy/kubepods" ]] && find "$hierarchy/kubepods" -depth -type d -exec rmdir {} \; 2>/dev/null
  done
  remove_kube_chains
  ip link delete "$bridge" 2>/dev/null || true
  rm -rf /var/lib/cni/results/kafka-iggy-e2e-* 2>/dev/null || true
  rmdir /var/lib/cni/results /var/lib/cni 2>/dev/null || true
  # The kubelet's links to container logs (its /var/log/containers is not configurable).
  local link
  for link in /var/log/containers/*.log; do
    [[ -L "$link" && "$(readlink "$link")" == "$dir/"* ]] && rm -f "$link"
  done
  if [[ -f "$dir/ip_forward.saved" ]]; then
    cat "$dir/ip_forward.saved" > /proc/sys/net/ipv4/ip_forward
  fi
  if [[ -n "${KAFKA_IGGY_E2E_KEEP:-}" ]]; then
    log "kept $dir (KAFKA_IGGY_E2E_KEEP)"
  else
    rm -rf "$dir" "$run"
  fi
  log "stopped"
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  env) echo "export KUBECONFIG=$dir/kubeconfig CONTAINERD_ADDRESS=$run/containerd.sock" ;;
  *) echo "usage: $0 up|down|env" >&2; exit 2 ;;
esac
