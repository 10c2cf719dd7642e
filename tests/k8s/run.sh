#!/usr/bin/env bash
# Chart and manifests against a real Kubernetes API server (etcd + kube-apiserver as processes,
# see testkit/src/kube.rs): drift of crds/, the chart's CRD copy and deploy/; helm lint and
# template; helm install; the operator's RBAC checked with `kubectl auth can-i`; kubectl apply of
# deploy/ and the examples. Binaries: tools/k8s/build.sh. Without them the suite is SKIPPED
# loudly, or FAILS when CLIENTS_STRICT=1 (as in CI, where .ci/run builds them).
set -euo pipefail
repo="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$repo"
bin="${KAFKA_IGGY_K8S_BIN:-$HOME/.cache/kafka-iggy/k8s-bin}"
export KAFKA_IGGY_K8S_BIN="$bin"
helm="$bin/helm" kubectl="$bin/kubectl"
for tool in helm kubectl kube-apiserver etcd; do
  if [[ ! -x "$bin/$tool" ]]; then
    if [[ "${CLIENTS_STRICT:-0}" == 1 ]]; then
      echo "### FAILED: $bin/$tool missing (tools/k8s/build.sh should have built it)"; exit 1
    fi
    echo "### !!! SKIPPED: Kubernetes chart/manifest tests: $bin/$tool missing (run tools/k8s/build.sh)"
    exit 0
  fi
done

passed=0
check() { # check DESCRIPTION COMMAND...: runs the command, counts and reports it
  local what="$1"; shift
  if "$@" >/tmp/k8s-check.out 2>&1; then
    echo "PASS  $what"; passed=$((passed + 1))
  else
    echo "FAIL  $what"; sed 's/^/      /' /tmp/k8s-check.out | tail -30; exit 1
  fi
}
refuse() { # refuse DESCRIPTION COMMAND...: the command must fail
  local what="$1"; shift
  if "$@" >/tmp/k8s-check.out 2>&1; then
    echo "FAIL  $what (unexpectedly succeeded)"; cat /tmp/k8s-check.out; exit 1
  else
    echo "PASS  $what"; passed=$((passed + 1))
  fi
}

work="$(mktemp -d)"
cluster_pid=""
cleanup() {
  # Closing the keepalive descriptor (or SIGTERM) makes the cluster helper stop etcd and
  # kube-apiserver before it exits; wait for that so no server outlives the run.
  exec 9>&- 2>/dev/null || true
  if [[ -n "$cluster_pid" ]]; then
    kill -TERM "$cluster_pid" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$cluster_pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$cluster_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

echo "=== generated files are up to date (tools/k8s/render-deploy.sh)"
tools/k8s/render-deploy.sh "$work/rendered" >/dev/null
check "crds/ matches the Rust types" diff -u crds/kafkabridges.bridge.kafka-iggy.dev.yaml "$work/rendered/crds/kafkabridges.bridge.kafka-iggy.dev.yaml"
check "the chart's CRD copy matches crds/" diff -u crds/kafkabridges.bridge.kafka-iggy.dev.yaml charts/kafka-iggy-operator/crds/kafkabridges.bridge.kafka-iggy.dev.yaml
check "deploy/ matches the chart" diff -u deploy/kafka-iggy-operator.yaml "$work/rendered/deploy/kafka-iggy-operator.yaml"

echo "=== helm lint / template"
check "helm lint --strict" "$helm" lint --strict charts/kafka-iggy-operator
check "helm template (defaults)" "$helm" template t charts/kafka-iggy-operator --kube-version 1.34.4
check "helm template (no leader election, 2 replicas)" "$helm" template t charts/kafka-iggy-operator --kube-version 1.34.4 --set leaderElection.enabled=false --set replicaCount=2
refuse "values.schema.json rejects unknown values" "$helm" template t charts/kafka-iggy-operator --kube-version 1.34.4 --set replicas=3
rbac() { "$helm" template t charts/kafka-iggy-operator --kube-version 1.34.4 --namespace ops "${@:2}" | python3 tests/k8s/rbac_check.py $1; }
check "default RBAC: no Secret reads anywhere (no ClusterRole binding grants Secrets)" rbac cluster
check "secretAccess.namespaces: Secret reads by RoleBinding in those namespaces only" rbac "cluster team-a team-b" --set 'secretAccess.namespaces={team-a,team-b}'
refuse "secretAccess.clusterWide is what grants cluster-wide Secret reads" rbac cluster --set secretAccess.clusterWide=true
check "scope=namespace: a Role in the release namespace, no cluster-wide rights on Secrets or bridges" rbac "namespace ops" --set scope=namespace
refuse "values.schema.json rejects an unknown scope" "$helm" template t charts/kafka-iggy-operator --kube-version 1.34.4 --set scope=everywhere
refuse "values.schema.json rejects a bad pull policy" "$helm" template t charts/kafka-iggy-operator --kube-version 1.34.4 --set image.pullPolicy=Sometimes
check "helm template (Grafana dashboard ConfigMap)" sh -c "\"$helm\" template t charts/kafka-iggy-operator --kube-version 1.34.4 --set grafanaDashboard.enabled=true --show-only templates/grafana-dashboard.yaml | grep -q 'grafana_dashboard: \"1\"'"
check "the Grafana dashboard names only metrics the proxy exports" python3 tests/e2e/check_dashboard.py

echo "=== a real API server"
# Builds go where cargo puts them (CARGO_TARGET_DIR when set, as with several worktrees).
target="${CARGO_TARGET_DIR:-$repo/target}"
mkfifo "$work/keepalive"
cargo build -q --locked -p iggy-testkit --example kube-cluster
"$target/debug/examples/kube-cluster" "$work/kubeconfig" < "$work/keepalive" 2>"$work/cluster.log" &
cluster_pid=$!
exec 9>"$work/keepalive"   # the cluster runs until this descriptor closes
for _ in $(seq 1 120); do [[ -f "$work/kubeconfig" ]] && break; sleep 1; done
[[ -f "$work/kubeconfig" ]] || { echo "FAIL  test API server did not start"; cat "$work/cluster.log"; exit 1; }
export KUBECONFIG="$work/kubeconfig"

ns=kafka-iggy-system
sa="system:serviceaccount:$ns:kafka-iggy-operator"
check "helm install" "$helm" install kafka-iggy-operator charts/kafka-iggy-operator --namespace "$ns" --create-namespace
check "CRD installed by the chart" "$kubectl" get crd kafkabridges.bridge.kafka-iggy.dev
check "operator Deployment created" "$kubectl" -n "$ns" get deployment kafka-iggy-operator
check "short name ikb and printer columns" "$kubectl" get ikb -A
can() { "$kubectl" auth can-i --as="$sa" "$@" | grep -qx yes; }
check "RBAC: operator may watch KafkaBridges" can watch kafkabridges.bridge.kafka-iggy.dev --all-namespaces
check "RBAC: operator may patch KafkaBridge status" can patch kafkabridges.bridge.kafka-iggy.dev --subresource=status -n default
check "RBAC: operator may patch StatefulSets" can patch statefulsets.apps -n default
check "RBAC: operator may watch StatefulSets" can watch statefulsets.apps --all-namespaces
check "RBAC: operator may create ServiceAccounts" can create serviceaccounts -n default
check "RBAC: operator may patch PodDisruptionBudgets" can patch poddisruptionbudgets.policy -n default
check "RBAC: operator may delete Deployments (earlier versions' proxies)" can delete deployments.apps -n default
refuse "RBAC: operator may not read Secrets by default (opt-in per namespace)" can get secrets -n default
refuse "RBAC: operator may not read Secrets cluster-wide" can get secrets --all-namespaces
check "RBAC: operator may update its Lease" can update leases.coordination.k8s.io -n "$ns"
refuse "RBAC: operator may not create Secrets" can create secrets -n default
refuse "RBAC: operator may not delete pods" can delete pods -n default
refuse "RBAC: operator may not list Secrets" can list secrets --all-namespaces
refuse "RBAC: operator may not update Leases elsewhere" can update leases.coordination.k8s.io -n default
refuse "RBAC: operator may not create Deployments" can create deployments.apps -n default
refuse "RBAC: operator may not patch Deployments" can patch deployments.apps -n default
refuse "RBAC: operator may not delete StatefulSets" can delete statefulsets.apps -n default
refuse "RBAC: operator may not create ServiceAccount tokens" can create serviceaccounts --subresource=token -n default
refuse "RBAC: operator may not bind roles" can create rolebindings.rbac.authorization.k8s.io -n default
check "helm uninstall" "$helm" uninstall kafka-iggy-operator --namespace "$ns"
check "helm install scope=namespace" "$helm" install scoped charts/kafka-iggy-operator --namespace team --create-namespace --set scope=namespace --skip-crds
scoped_sa="system:serviceaccount:team:scoped-kafka-iggy-operator"
check "scope=namespace: operator may read Secrets in its namespace" "$kubectl" auth can-i --as="$scoped_sa" get secrets -n team
check "scope=namespace: operator may patch StatefulSets in its namespace" "$kubectl" auth can-i --as="$scoped_sa" patch statefulsets.apps -n team
refuse "scope=namespace: operator may not read Secrets elsewhere" "$kubectl" auth can-i --as="$scoped_sa" get secrets -n default
refuse "scope=namespace: operator may not watch KafkaBridges cluster-wide" "$kubectl" auth can-i --as="$scoped_sa" watch kafkabridges.bridge.kafka-iggy.dev --all-namespaces
check "helm uninstall scope=namespace" "$helm" uninstall scoped --namespace team

echo "=== plain manifests"
check "kubectl apply --server-side -f deploy/" "$kubectl" apply --server-side --force-conflicts -f deploy/kafka-iggy-operator.yaml
check "CRD established" "$kubectl" wait --for=condition=Established crd/kafkabridges.bridge.kafka-iggy.dev --timeout=60s
check "kubectl apply -f deploy/examples/" "$kubectl" apply -n default -f deploy/examples/
check "the example bridges exist" sh -c "\"$kubectl\" get ikb -n default -o name | grep -c kafkabridge | grep -qx 3"
bad="$work/bad.yaml"
sed 's/partitions: 6/partitions: 0/' deploy/examples/kafkabridge-full.yaml > "$bad"
refuse "the schema refuses 0 partitions" "$kubectl" apply -n default --dry-run=server -f "$bad"
sed 's/partitions: 6/partitions: 2/' deploy/examples/kafkabridge-full.yaml > "$bad"
refuse "CEL refuses decreasing partitions" "$kubectl" apply -n default -f "$bad"
sed 's/securityProtocol: SASL_SSL/securityProtocol: SASL_PLAINTEXT/' deploy/examples/kafkabridge-secure.yaml > "$bad"
refuse "CEL refuses a TLS Secret on a listener without TLS" "$kubectl" apply -n default --dry-run=server -f "$bad"
sed 's/passthrough: true/passthrough: true, usersSecret: {name: x}/' deploy/examples/kafkabridge-secure.yaml > "$bad"
refuse "CEL refuses both SASL user sources" "$kubectl" apply -n default --dry-run=server -f "$bad"
# What an operator version before StatefulSets left for the example bridge "kafka": its proxies
# in a Deployment the bridge controls. The operator below must remove it.
uid="$("$kubectl" -n default get ikb kafka -o jsonpath='{.metadata.uid}')"
labels="{app.kubernetes.io/name: kafka-iggy-proxy, app.kubernetes.io/instance: kafka}"
cat > "$work/old-deployment.yaml" <<YAML
apiVersion: apps/v1
kind: Deployment
metadata:
  name: kafka
  labels: $labels
  ownerReferences:
    - {apiVersion: bridge.kafka-iggy.dev/v1alpha1, kind: KafkaBridge, name: kafka, uid: "$uid", controller: true, blockOwnerDeletion: true}
spec:
  replicas: 1
  selector: {matchLabels: $labels}
  template:
    metadata: {labels: $labels}
    spec: {containers: [{name: proxy, image: "ghcr.io/kafka-iggy/kafka-iggy-proxy:0.1.0"}]}
YAML
check "an earlier operator's Deployment for the example bridge" "$kubectl" -n default apply -f "$work/old-deployment.yaml"

echo "=== the operator, running with exactly the chart's RBAC (impersonating its ServiceAccount)"
cargo build -q --locked -p kafka-iggy-operator
sed "s|^    token: \(.*\)$|    token: \1\n    as: $sa|" "$KUBECONFIG" > "$work/kubeconfig-sa"
grep -q "as: $sa" "$work/kubeconfig-sa" || { echo "FAIL  could not write the impersonating kubeconfig"; cat "$KUBECONFIG"; exit 1; }
metrics_port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
KUBECONFIG="$work/kubeconfig-sa" POD_NAMESPACE="$ns" POD_NAME=operator-test RUST_LOG=info \
  "$target/debug/kafka-iggy-operator" run --metrics-listen "127.0.0.1:$metrics_port" > "$work/operator.log" 2>&1 &
operator_pid=$!
trap 'kill $operator_pid 2>/dev/null || true; cleanup' EXIT
wait_for() { # wait_for DESCRIPTION COMMAND...: retries for up to 60 s
  local what="$1"; shift
  for _ in $(seq 1 120); do
    if "$@" >/dev/null 2>&1; then echo "PASS  $what"; passed=$((passed + 1)); return; fi
    sleep 0.5
  done
  echo "FAIL  $what"; tail -30 "$work/operator.log"; exit 1
}
wait_for "operator holds the leader Lease" sh -c "\"$kubectl\" -n $ns get lease kafka-iggy-operator -o jsonpath='{.spec.holderIdentity}' | grep -qx operator-test"
wait_for "operator deletes the earlier Deployment (in the foreground)" sh -c "\"$kubectl\" -n default get deployment kafka -o jsonpath='{.metadata.deletionTimestamp}' | grep -q ."
check "no StatefulSet while the earlier Deployment's pods may run" sh -c "! \"$kubectl\" -n default get statefulset kafka"
# This API server runs no garbage collector: do its part (pods gone, finalizer removed).
check "the earlier Deployment's pods are gone (garbage collector's part)" "$kubectl" -n default patch deployment kafka --type=merge -p '{"metadata":{"finalizers":null}}'
wait_for "operator created the example's StatefulSet" "$kubectl" -n default get statefulset kafka
wait_for "operator created the proxies' ServiceAccount, without token" sh -c "\"$kubectl\" -n default get serviceaccount kafka-proxy -o jsonpath='{.automountServiceAccountToken}' | grep -qx false"
wait_for "operator created the PodDisruptionBudget" "$kubectl" -n default get poddisruptionbudget kafka
wait_for "operator created the example's Services" "$kubectl" -n default get service kafka kafka-brokers
wait_for "status conditions written" sh -c "\"$kubectl\" -n default get ikb kafka -o jsonpath='{.status.conditions[*].type}' | grep -q IggyProvisioned"
wait_for "ServiceMonitor asked for without its CRD is reported" sh -c "\"$kubectl\" -n default get ikb orders -o jsonpath='{.status.conditions[?(@.type==\"Degraded\")].reason}' | grep -q ServiceMonitorCrdMissing"
reason_is() { [[ "$("$kubectl" -n default get ikb "$1" -o jsonpath='{.status.conditions[?(@.type=="IggyProvisioned")].reason}')" == "$2" ]]; }
wait_for "default RBAC: the operator cannot read the example's Secret (SecretAccessDenied)" reason_is kafka SecretAccessDenied
check "a namespace opts in: RoleBinding to the secret-reader ClusterRole" "$kubectl" -n default create rolebinding kafka-iggy-operator-secret-reader --clusterrole=kafka-iggy-operator-secret-reader --serviceaccount="$ns:kafka-iggy-operator"
wait_for "the labelled Secret is read once the namespace opted in (Iggy is tried: IggyUnreachable)" reason_is kafka IggyUnreachable
check "the Secret's opt-in label removed" "$kubectl" -n default label secret iggy-credentials kafka-iggy.dev/bridge-access-
wait_for "a Secret without the label is not read (SecretNotOptedIn)" reason_is kafka SecretNotOptedIn
wait_for "status lists the secure example's listeners" sh -c "\"$kubectl\" -n default get ikb secure -o jsonpath='{.status.listeners[*].bootstrapAddress}' | grep -qx 'secure.default.svc:9092 secure.default.svc:9093 secure.default.svc:9094 secure.default.svc:9095'"
wait_for "events recorded" sh -c "\"$kubectl\" -n default get events.events.k8s.io -o name | grep -q ."
check "operator /metrics counts reconciles" sh -c "curl -sf http://127.0.0.1:$metrics_port/metrics | grep -q kafka_iggy_operator_reconciles_total"
check "operator /readyz" curl -sf "http://127.0.0.1:$metrics_port/readyz"
check "kubectl scale through the scale subresource" "$kubectl" -n default scale ikb kafka --replicas=2
wait_for "the StatefulSet follows the scale" sh -c "\"$kubectl\" -n default get statefulset kafka -o jsonpath='{.spec.replicas}' | grep -qx 2"
if grep -qi forbidden "$work/operator.log"; then
  echo "FAIL  the operator hit RBAC denials:"; grep -i forbidden "$work/operator.log" | head; exit 1
fi
echo "PASS  no RBAC denials in the operator log"; passed=$((passed + 1))
echo "=== Kubernetes chart/manifest tests: $passed passed"
