"""Checks the chart's rendered RBAC (helm template output on stdin) for Secret access.

usage: helm template ... | python3 tests/k8s/rbac_check.py MODE [NAMESPACE...]
  cluster    no Role or ClusterRole bound cluster-wide grants anything on Secrets; the
             -secret-reader ClusterRole is bound only by RoleBindings, in exactly NAMESPACE...
  namespace  no ClusterRole grants anything on Secrets or KafkaBridges; a Role in the release
             namespace (NAMESPACE) grants get on Secrets; the operator watches that namespace.
"""
import sys

import yaml


def secret_rules(role):
    return [
        r for r in role.get("rules", [])
        if "" in r.get("apiGroups", []) and ({"secrets", "*"} & set(r.get("resources", [])))
    ]


def main():
    mode, namespaces = sys.argv[1], sys.argv[2:]
    docs = [d for d in yaml.safe_load_all(sys.stdin) if d]
    by_kind = lambda kind: [d for d in docs if d["kind"] == kind]
    cluster_roles = {d["metadata"]["name"]: d for d in by_kind("ClusterRole")}
    problems = []
    for binding in by_kind("ClusterRoleBinding"):
        role = cluster_roles.get(binding["roleRef"]["name"], {})
        if secret_rules(role):
            problems.append(f"ClusterRoleBinding {binding['metadata']['name']} grants Secrets cluster-wide")
    if mode == "cluster":
        readers = sorted(
            b["metadata"]["namespace"] for b in by_kind("RoleBinding")
            if b["roleRef"]["kind"] == "ClusterRole" and secret_rules(cluster_roles.get(b["roleRef"]["name"], {}))
        )
        if readers != sorted(namespaces):
            problems.append(f"Secret reads granted in {readers}, expected {sorted(namespaces)}")
        if any(secret_rules(r) for r in by_kind("Role")):
            problems.append("a Role grants Secrets")
    elif mode == "namespace":
        for name, role in cluster_roles.items():
            granted = {res for r in role.get("rules", []) for res in r.get("resources", [])}
            if granted & {"secrets", "*", "kafkabridges", "statefulsets", "configmaps", "services"}:
                problems.append(f"ClusterRole {name} grants {sorted(granted)}")
        roles = [r for r in by_kind("Role") if secret_rules(r)]
        if [r["metadata"]["namespace"] for r in roles] != namespaces:
            problems.append(f"Secret Roles in {[r['metadata']['namespace'] for r in roles]}, expected {namespaces}")
        env = [
            e for d in by_kind("Deployment") for c in d["spec"]["template"]["spec"]["containers"]
            for e in c.get("env", []) if e["name"] == "WATCH_NAMESPACE"
        ]
        if not env:
            problems.append("the operator does not get WATCH_NAMESPACE")
    else:
        problems.append(f"unknown mode {mode}")
    for p in problems:
        print(p)
    sys.exit(1 if problems else 0)


main()
