#!/usr/bin/env bash
# End to end on a real single-node Kubernetes (tests/e2e/cluster.sh: kubelet + containerd):
#   images built here without a registry (tools/images/build.sh) -> helm install of the operator
#   chart -> an Iggy server on this machine, reachable from the pods -> a KafkaBridge with two
#   topics -> Ready -> kcat and the Java kafka-clients driver produce and consume through the
#   bridge's Service -> the Iggy topics have the declared partitions and the records ->
#   Prometheus (kubernetes_sd) sees the proxies' metrics move and a consumer group's lag; every
#   query of the Grafana dashboard runs on it and names metrics of a real scrape -> kubectl scale
#   to 3, clients keep working -> a spec change rolls the pods while a Java producer keeps
#   sending (every record acknowledged) -> Iggy stopped: readiness drops; restarted: it returns
#   -> the bridge deleted: everything it
#   made is gone (deletionPolicy Delete: its Iggy topics too) -> helm uninstall.
# Every step asserts; on failure the pods' logs, descriptions and events are printed.
#
#   bash tests/e2e/run.sh
#
# Needs root, tools/k8s/build.sh's binaries, an Iggy server binary (IGGY_SERVER_BIN, default
# /opt/iggy/bin/iggy-server), kcat, java and mvn. Without them it is SKIPPED loudly, or FAILS
# when CLIENTS_STRICT=1 (as in .ci/run). KAFKA_IGGY_E2E_KEEP=1 leaves the cluster's directory.
set -euo pipefail
repo="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$repo"
export KAFKA_IGGY_K8S_BIN="${KAFKA_IGGY_K8S_BIN:-$HOME/.cache/kafka-iggy/k8s-bin}"
export KAFKA_IGGY_IMAGES="${KAFKA_IGGY_IMAGES:-$HOME/.cache/kafka-iggy/images}"
bin="$KAFKA_IGGY_K8S_BIN"
started_all=$SECONDS

skip() {
  if [[ "${CLIENTS_STRICT:-0}" == 1 ]]; then
    echo "### FAILED: end-to-end test cannot run: $*"; exit 1
  fi
  echo "################################################################################"
  echo "### !!! SKIPPED: end-to-end Kubernetes test (tests/e2e/run.sh): $*"
  echo "################################################################################"
  exit 0
}
if [[ -z "${IGGY_SERVER_BIN:-}" && -x /opt/iggy/bin/iggy-server ]]; then
  export IGGY_SERVER_BIN=/opt/iggy/bin/iggy-server
fi
[[ -n "${IGGY_SERVER_BIN:-}" && -x "${IGGY_SERVER_BIN}" ]] || skip "no Iggy server binary (set IGGY_SERVER_BIN)"
[[ $(id -u) == 0 ]] || skip "not root (containerd, kubelet and iptables need it)"
for tool in kcat java mvn curl python3 openssl; do
  command -v "$tool" >/dev/null || skip "$tool not installed"
done
for tool in etcd kube-apiserver kubectl helm kubelet kube-controller-manager kube-scheduler kube-proxy crictl prometheus pause; do
  [[ -x "$bin/$tool" ]] || skip "$bin/$tool missing (run tools/k8s/build.sh)"
done
[[ -d /sys/fs/cgroup/memory || -f /sys/fs/cgroup/cgroup.controllers ]] || skip "no memory cgroup"

kubectl="$bin/kubectl" helm="$bin/helm"
# One cluster per machine (fixed ports, bridge and directories): a second run waits its turn.
exec 8>/run/kafka-iggy-e2e.lock
if ! flock -n 8; then
  echo "=== another tests/e2e/run.sh is running on this machine: waiting for it"
  flock 8
fi
work="$(mktemp -d /tmp/kafka-iggy-e2e.XXXXXX)"
step_started=$SECONDS
passed=0
pass() { echo "PASS  $1 ($((SECONDS - step_started)) s)"; passed=$((passed + 1)); step_started=$SECONDS; }
fail() { echo "FAIL  $1"; exit 1; }
# check DESCRIPTION COMMAND...: the command must succeed.
check() {
  local what="$1"; shift
  if "$@" >"$work/check.out" 2>&1; then pass "$what"; else
    echo "FAIL  $what"; sed 's/^/      /' "$work/check.out" | tail -40; exit 1
  fi
}
# eventually SECONDS DESCRIPTION COMMAND...: retried every 2 s until it succeeds.
eventually() {
  local seconds="$1" what="$2"; shift 2
  local deadline=$((SECONDS + seconds))
  until "$@" >"$work/check.out" 2>&1; do
    if ((SECONDS >= deadline)); then
      echo "FAIL  $what (not within $seconds s)"; sed 's/^/      /' "$work/check.out" | tail -40; exit 1
    fi
    sleep 2
  done
  pass "$what"
}

# ------------------------------------------------------------------------------ build
echo "=== build: release binaries, Kubernetes binaries (cached), images, Java driver"
target="${CARGO_TARGET_DIR:-$repo/target}"
[[ "$target" = /* ]] || target="$repo/$target"
cargo build --release --locked -q -p kafka-iggy-proxy -p kafka-iggy-operator
bash tools/k8s/build.sh >/dev/null
bash tools/images/build.sh
jar="$repo/tests/java/target/kafka-clients-driver.jar"
[[ -f "$jar" ]] || mvn -q -B -f tests/java/pom.xml package
pass "binaries and images built"

# ------------------------------------------------------------------------------ cluster
iggy_pid="" prometheus_pid=""
diagnostics() {
  echo "=== diagnostics"
  "$kubectl" get nodes,pods,svc,statefulsets,ikb -A -o wide 2>&1 | sed 's/^/  /' || true
  "$kubectl" get events -A --sort-by=.lastTimestamp 2>&1 | tail -40 | sed 's/^/  /' || true
  "$kubectl" -n e2e get ikb -o yaml 2>&1 | sed -n '/^  status:/,$p' | head -60 | sed 's/^/  /' || true
  local pod
  for pod in $("$kubectl" get pods -A -o jsonpath='{range .items[*]}{.metadata.namespace}/{.metadata.name} {end}' 2>/dev/null); do
    echo "--- describe $pod"; "$kubectl" -n "${pod%%/*}" describe pod "${pod#*/}" 2>&1 | tail -25 | sed 's/^/  /'
    echo "--- logs $pod"; "$kubectl" -n "${pod%%/*}" logs "${pod#*/}" --all-containers --tail=60 2>&1 | sed 's/^/  /'
  done
  local dir="${KAFKA_IGGY_E2E_DIR:-/var/lib/kafka-iggy-e2e}"
  for log in kubelet containerd kube-controller-manager kube-proxy; do
    echo "--- $log (last lines)"; tail -15 "$dir/logs/$log.log" 2>/dev/null | sed 's/^/  /'
  done
  echo "--- iggy-server (last lines)"; tail -15 "$work/iggy.log" 2>/dev/null | sed 's/^/  /'
}
finish() {
  local rc=$?
  set +e
  ((rc != 0)) && diagnostics
  [[ -n "$prometheus_pid" ]] && kill "$prometheus_pid" 2>/dev/null && wait "$prometheus_pid" 2>/dev/null
  bash "$repo/tests/e2e/cluster.sh" down
  [[ -n "$iggy_pid" ]] && kill "$iggy_pid" 2>/dev/null && wait "$iggy_pid" 2>/dev/null
  rm -rf "$work"
  if ((rc == 0)); then
    echo "### e2e: $passed checks passed in $((SECONDS - started_all)) s"
  else
    echo "### e2e: FAILED after $passed checks ($((SECONDS - started_all)) s)"
  fi
  exit $rc
}
trap finish EXIT

bash tests/e2e/cluster.sh up
eval "$(bash tests/e2e/cluster.sh env)"
node_ip="$(ip -4 -o addr show scope global | awk '{ split($4, a, "/"); print a[1]; exit }')"
pass "cluster up: kubelet, containerd, control plane, kube-proxy"

# ------------------------------------------------------------------------------ Iggy
iggy_port=18090 iggy_http=18088
start_iggy() {
  # Only our IGGY_* variables: the server takes every one as configuration.
  # exec: $iggy_pid is the server itself, so that `kill` stops it.
  (cd "$work" && exec env $(env | sed -n 's/^\(IGGY_[A-Z_]*\)=.*/-u \1/p') \
    IGGY_ROOT_USERNAME=iggy IGGY_ROOT_PASSWORD=iggy IGGY_SYSTEM_PATH="$work/iggy-data" \
    IGGY_TCP_ADDRESS="$node_ip:$iggy_port" IGGY_HTTP_ENABLED=true IGGY_HTTP_ADDRESS="127.0.0.1:$iggy_http" \
    IGGY_QUIC_ENABLED=false IGGY_WEBSOCKET_ENABLED=false \
    "$IGGY_SERVER_BIN" >>"$work/iggy.log" 2>&1) &
  iggy_pid=$!
}
iggy_token() {
  curl -sf -X POST "http://127.0.0.1:$iggy_http/users/login" -H 'content-type: application/json' \
    -d '{"username":"iggy","password":"iggy"}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"]["token"])'
}
iggy_get() { curl -sf -H "Authorization: Bearer $(iggy_token)" "http://127.0.0.1:$iggy_http$1"; }
start_iggy
eventually 60 "Iggy server answers on $node_ip:$iggy_port (HTTP on 127.0.0.1:$iggy_http)" iggy_token

# ------------------------------------------------------------------------------ operator
ns=e2e
"$kubectl" create namespace "$ns" >/dev/null
chart_args=(--set image.pullPolicy=Never)
# Charts with secretAccess (operator security): the operator may read Secrets of namespace e2e
# only, and only those labelled for it.
if grep -q '^secretAccess:' charts/kafka-iggy-operator/values.yaml; then
  chart_args+=(--set "secretAccess.namespaces={$ns}")
fi
check "helm install the operator chart (local images, pullPolicy Never)" \
  "$helm" install kafka-iggy-operator charts/kafka-iggy-operator -n kafka-iggy-system --create-namespace \
  "${chart_args[@]}" --wait --timeout 180s
"$kubectl" -n "$ns" create secret generic iggy-credentials --from-literal=username=iggy --from-literal=password=iggy >/dev/null
"$kubectl" -n "$ns" label secret iggy-credentials kafka-iggy.dev/bridge-access=true >/dev/null
bridge_yaml() { # bridge_yaml REVISION
  cat <<EOF
apiVersion: bridge.kafka-iggy.dev/v1alpha1
kind: KafkaBridge
metadata: {name: bridge, namespace: $ns}
spec:
  replicas: 1
  image: ghcr.io/kafka-iggy/kafka-iggy-proxy:0.1.0
  imagePullPolicy: Never
  resources: {requests: {cpu: 50m, memory: 64Mi}, limits: {memory: 512Mi}}
  kafka: {port: 9092, advertise: PodIP}
  iggy:
    address: "$node_ip:$iggy_port"
    stream: e2e
    credentialsSecret: {name: iggy-credentials}
  topics:
    - {name: orders, partitions: 3}
    - {name: payments, partitions: 2}
  metrics: {port: 9644}
  podTemplate:
    annotations: {e2e.kafka-iggy.dev/revision: "$1"}
  deletionPolicy: Delete
EOF
}
bridge_yaml 1 > "$work/bridge.yaml"
check "kubectl apply a KafkaBridge with two topics" "$kubectl" apply -f "$work/bridge.yaml"
ready() { "$kubectl" -n "$ns" wait ikb/bridge --for=condition=Ready --timeout=5s; }
eventually 240 "the KafkaBridge is Ready" ready

# ------------------------------------------------------------------------------ clients
service_ip="$("$kubectl" -n "$ns" get svc bridge -o jsonpath='{.spec.clusterIP}')"
bootstrap="$service_ip:9092"
echo "=== bootstrap through the Service: $bootstrap"
produced_orders=0 produced_payments=0
# Ready pods reach the Service's iptables rules a moment later (EndpointSlice, then kube-proxy).
metadata() { kcat -b "$bootstrap" -L -m 5 | grep -q 'topic "orders" with 3 partitions'; }
eventually 60 "the Service routes to the bridge (kcat -L lists orders with 3 partitions)" metadata
kcat_round() { # kcat_round TAG: kcat produces 30 keyed records to orders, reads them all back
  local tag="$1"
  seq 1 30 | awk -v t="$tag" '{ print t "-key-" $1 ":" t "-value-" $1 }' \
    | kcat -b "$bootstrap" -P -t orders -K : -X socket.timeout.ms=20000 -X message.timeout.ms=60000
  produced_orders=$((produced_orders + 30))
  local got
  got="$(kcat -b "$bootstrap" -C -t orders -o beginning -e -q -f '%s\n' -X socket.timeout.ms=20000 | grep -c "^$tag-value-" || true)"
  [[ "$got" == 30 ]] || { echo "kcat read $got records tagged $tag, expected 30"; return 1; }
}
java_round() { # java_round: the Java producer (idempotent, acks=all) and consumer on payments
  java -jar "$jar" produce bootstrap="$bootstrap" topic=payments partitions=2 count=20 > "$work/java-produce.out"
  [[ "$(grep -c '"offset"' "$work/java-produce.out")" == 20 ]] || { cat "$work/java-produce.out"; return 1; }
  produced_payments=$((produced_payments + 20))
  java -jar "$jar" consume bootstrap="$bootstrap" topic=payments partitions=2 expect="$produced_payments" > "$work/java-consume.out"
  local got; got="$(grep -c . "$work/java-consume.out")"
  [[ "$got" == "$produced_payments" ]] || { echo "Java consumer read $got records, expected $produced_payments"; return 1; }
}
check "kcat produces and consumes through the Service (1 replica)" kcat_round r1
check "the Java client produces and consumes through the Service (1 replica)" java_round

has_partitions() { # has_partitions TOPIC N: the Iggy topic exists with N partitions
  local count
  count="$(iggy_get "/streams/e2e/topics/$1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["partitions_count"])')"
  [[ "$count" == "$2" ]] || { echo "Iggy topic $1 has $count partitions, expected $2"; return 1; }
}
check "Iggy: topic e2e/orders exists with 3 partitions" has_partitions orders 3
check "Iggy: topic e2e/payments exists with 2 partitions" has_partitions payments 2
stored() { # stored TOPIC N: Iggy holds at least N messages in the topic
  local count
  count="$(iggy_get "/streams/e2e/topics/$1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["messages_count"])')"
  ((count >= $2)) || { echo "Iggy topic $1 holds $count messages, expected at least $2"; return 1; }
}
both_stored() { stored orders "$produced_orders" && stored payments "$produced_payments"; }
check "Iggy: the records are stored in e2e/orders and e2e/payments" both_stored

# ------------------------------------------------------------------------------ Prometheus
prom_port=19090
cat > "$work/prometheus.yml" <<YAML
global: {scrape_interval: 2s, evaluation_interval: 2s}
scrape_configs:
  # What the bridge's ServiceMonitor asks of the Prometheus operator, as plain service discovery:
  # every proxy pod's port named metrics.
  - job_name: kafka-iggy-proxy
    kubernetes_sd_configs:
      - {role: pod, kubeconfig_file: "$KUBECONFIG", namespaces: {names: [$ns]}}
    relabel_configs:
      - {source_labels: [__meta_kubernetes_pod_label_app_kubernetes_io_name], regex: kafka-iggy-proxy, action: keep}
      - {source_labels: [__meta_kubernetes_pod_container_port_name], regex: metrics, action: keep}
      - {source_labels: [__meta_kubernetes_namespace], target_label: namespace}
      - {source_labels: [__meta_kubernetes_pod_name], target_label: pod}
YAML
"$bin/prometheus" --config.file="$work/prometheus.yml" --storage.tsdb.path="$work/prometheus" \
  --web.listen-address="127.0.0.1:$prom_port" > "$work/prometheus.log" 2>&1 &
prometheus_pid=$!
promql() { # promql EXPR: prints the first sample's value (nothing when the result is empty)
  curl -sf "http://127.0.0.1:$prom_port/api/v1/query" --data-urlencode "query=$1" \
    | python3 -c 'import json,sys; r=json.load(sys.stdin)["data"]["result"]; print(r[0]["value"][1] if r else "")'
}
prom_at_least() { # prom_at_least EXPR MIN
  local value; value="$(promql "$1")"
  python3 -c "import sys; sys.exit(0 if '$value' and float('$value') >= $2 else 1)" \
    || { echo "$1 = '${value}', expected >= $2"; return 1; }
}
targets_up() { # targets_up N: N proxy targets, all up
  prom_at_least "count(up{job=\"kafka-iggy-proxy\"} == 1)" "$1"
}
eventually 90 "Prometheus discovers the proxy pod and scrapes it" targets_up 1
eventually 60 "Prometheus: records produced through the bridge are counted" \
  prom_at_least "sum(kafka_iggy_records_in_total{namespace=\"$ns\"})" 50
before="$(promql "sum(kafka_iggy_records_in_total{namespace=\"$ns\"})")"
check "kcat produces and consumes again" kcat_round r2
eventually 60 "Prometheus: the produced-records counter moves ($before -> +30)" \
  prom_at_least "sum(kafka_iggy_records_in_total{namespace=\"$ns\"})" "$((${before%.*} + 30))"
eventually 30 "Prometheus: requests per API and Iggy round-trip latency are scraped" \
  prom_at_least "count(sum by (op) (kafka_iggy_backend_call_duration_seconds_count{namespace=\"$ns\"})) + count(sum by (api) (kafka_iggy_requests_total{namespace=\"$ns\"}))" 4
# A consumer group (kcat's balanced consumer, committing): the lag and commit metrics per group.
group_consume() {
  timeout 60 kcat -b "$bootstrap" -G e2e-group -o beginning -e -q -X auto.commit.interval.ms=500 \
    -X enable.auto.commit=true orders > "$work/group.out" || true
  [[ "$(grep -c . "$work/group.out")" -ge "$produced_orders" ]] \
    || { echo "the group read $(grep -c . "$work/group.out") records, expected $produced_orders"; return 1; }
}
check "kcat consumes orders in consumer group e2e-group" group_consume
eventually 60 "Prometheus: offset commits and consumer lag of e2e-group per partition (3 series)" \
  prom_at_least "count(kafka_iggy_consumer_lag{namespace=\"$ns\", group=\"e2e-group\", topic=\"orders\"}) + 0 * sum(kafka_iggy_offset_commits_total{group=\"e2e-group\"})" 3
check "every query of the Grafana dashboard runs on the real Prometheus" \
  python3 tests/e2e/check_dashboard.py --prometheus "http://127.0.0.1:$prom_port" --namespace "$ns"
sed 's/^/    /' "$work/check.out" | grep 'queries evaluated' || true
pod_ip="$("$kubectl" -n "$ns" get pod bridge-0 -o jsonpath='{.status.podIP}')"
curl -sf "http://$pod_ip:9644/metrics" > "$work/scrape.txt"
check "the Grafana dashboard names only metrics a running proxy declares" \
  python3 tests/e2e/check_dashboard.py --scrape "$work/scrape.txt"

# ------------------------------------------------------------------------------ scale
ready_pods() {
  "$kubectl" -n "$ns" get pods -l app.kubernetes.io/instance=bridge \
    -o jsonpath='{range .items[*]}{.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}' | grep -c '^True$' || true
}
pods_ready() { # pods_ready N: N proxy pods, all Ready, and the bridge Ready with N ready replicas
  local ready total
  ready="$(ready_pods)"
  total="$("$kubectl" -n "$ns" get pods -l app.kubernetes.io/instance=bridge --no-headers | wc -l)"
  [[ "$ready" == "$1" && "$total" == "$1" ]] || { echo "$ready of $total pods ready, want $1"; return 1; }
  [[ "$("$kubectl" -n "$ns" get ikb bridge -o jsonpath='{.status.readyReplicas}')" == "$1" ]] || return 1
  "$kubectl" -n "$ns" wait ikb/bridge --for=condition=Ready --timeout=2s
}
check "kubectl scale ikb bridge --replicas=3" "$kubectl" -n "$ns" scale ikb bridge --replicas=3
eventually 240 "3 proxy pods Ready, the bridge Ready with 3 replicas" pods_ready 3
eventually 90 "Prometheus scrapes all 3 pods" targets_up 3
check "kcat produces and consumes with 3 replicas" kcat_round r3
check "the Java client produces and consumes with 3 replicas" java_round

# ------------------------------------------------------------------------------ rollout
uids_before="$("$kubectl" -n "$ns" get pods -l app.kubernetes.io/instance=bridge -o jsonpath='{.items[*].metadata.uid}')"
bridge_yaml 2 | sed 's/replicas: 1/replicas: 3/' > "$work/bridge.yaml"
# A Java producer (idempotent, acks=all) keeps sending to payments through the whole rollout;
# every record must be acknowledged.
java -jar "$jar" produce-steady bootstrap="$bootstrap" topic=payments duration_ms=40000 \
  > "$work/steady.out" 2> "$work/steady.err" &
steady_pid=$!
sleep 3
check "a spec change (pod template annotation) is applied" "$kubectl" apply -f "$work/bridge.yaml"
rolled() { # every pod replaced, all 3 Ready on the new revision
  local current update updated uid
  read -r current update updated <<<"$("$kubectl" -n "$ns" get statefulset bridge \
    -o jsonpath='{.status.currentRevision} {.status.updateRevision} {.status.updatedReplicas}')"
  [[ "$current" == "$update" && "$updated" == 3 ]] || { echo "revisions $current -> $update, $updated updated"; return 1; }
  for uid in $("$kubectl" -n "$ns" get pods -l app.kubernetes.io/instance=bridge -o jsonpath='{.items[*].metadata.uid}'); do
    [[ " $uids_before " != *" $uid "* ]] || { echo "pod $uid not replaced yet"; return 1; }
  done
  pods_ready 3
}
eventually 300 "the pods roll one by one and are all Ready again" rolled
steady_done() {
  wait "$steady_pid" || { tail -20 "$work/steady.err"; return 1; }
  local sent; sent="$(grep -c '"offset"' "$work/steady.out" || true)"
  ((sent > 0)) || { echo "no record acknowledged"; return 1; }
  produced_payments=$((produced_payments + sent))
  echo "$sent records acknowledged" > "$work/steady.count"
}
check "a Java producer sending throughout the rollout had every record acknowledged" steady_done
echo "    ($(cat "$work/steady.count"))"
check "kcat produces and consumes after the rollout" kcat_round r4
check "the Java client produces and consumes after the rollout" java_round

# ------------------------------------------------------------------------------ readiness
none_ready() {
  local ready; ready="$(ready_pods)"
  [[ "$ready" == 0 ]] || { echo "$ready pods still ready"; return 1; }
}
kill "$iggy_pid"; wait "$iggy_pid" 2>/dev/null || true; iggy_pid=""
pass "Iggy server stopped"
eventually 120 "readiness drops on every pod while Iggy is down (/readyz)" none_ready
start_iggy
eventually 60 "Iggy server restarted on the same data" iggy_token
eventually 180 "readiness returns once Iggy is back" pods_ready 3
check "kcat produces and consumes after Iggy came back" kcat_round r5

# ------------------------------------------------------------------------------ deletion
check "kubectl delete the KafkaBridge" "$kubectl" -n "$ns" delete ikb bridge --wait --timeout=180s
all_gone() {
  local left
  left="$("$kubectl" -n "$ns" get statefulsets,services,configmaps,serviceaccounts,poddisruptionbudgets,pods \
    -l app.kubernetes.io/instance=bridge -o name)"
  [[ -z "$left" ]] || { echo "left: $left"; return 1; }
  # Objects the bridge owned, whatever their labels.
  left="$("$kubectl" -n "$ns" get statefulsets,services,configmaps,serviceaccounts,poddisruptionbudgets \
    -o jsonpath='{range .items[*]}{.kind}/{.metadata.name} {.metadata.ownerReferences[*].kind}{"\n"}{end}' | grep KafkaBridge || true)"
  [[ -z "$left" ]] || { echo "owned by a KafkaBridge: $left"; return 1; }
}
eventually 120 "everything the bridge made is gone (StatefulSet, Services, ConfigMap, ServiceAccount, PDB, pods)" all_gone
topic_gone() { ! iggy_get "/streams/e2e/topics/$1" >/dev/null; }
check "Iggy: topic orders deleted with the bridge (deletionPolicy Delete)" topic_gone orders
check "Iggy: topic payments deleted with the bridge (deletionPolicy Delete)" topic_gone payments
check "helm uninstall" "$helm" uninstall kafka-iggy-operator -n kafka-iggy-system --wait --timeout 120s
