#!/usr/bin/env python3
"""Checks the chart's Grafana dashboard against the metrics the proxy exports.

    python3 tests/e2e/check_dashboard.py [--scrape FILE]

Every PromQL query of the dashboard (panel targets and template variables) may only name metrics
registered in proxy/src/metrics.rs (with the registry's `kafka_iggy_` prefix; `_bucket`, `_sum`
and `_count` only on histograms) and only group or match by labels those metrics have, or the
labels a Kubernetes scrape adds (namespace, pod, ...). With --scrape FILE (a real /metrics
answer), every metric the dashboard names must also be one the running proxy declares, except
labelled families that are still empty (Prometheus client libraries omit a vector until its first
child). With --prometheus URL every query is evaluated on a real Prometheus (it must parse and run;
how many returned data is printed). Exits non-zero and lists what is wrong.
"""
import argparse
import json
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DASHBOARD = REPO / "charts/kafka-iggy-operator/dashboards/kafka-iggy-proxy.json"
METRICS_RS = REPO / "proxy/src/metrics.rs"
PREFIX = "kafka_iggy_"
# Labels that scraping adds (kubernetes_sd relabelling, ServiceMonitor) and the histogram's `le`.
TARGET_LABELS = {"namespace", "pod", "instance", "job", "service", "container", "endpoint", "le"}
FUNCTIONS_AND_KEYWORDS = {
    "sum", "max", "min", "avg", "count", "rate", "irate", "increase", "histogram_quantile", "by",
    "without", "label_values", "topk", "bottomk", "on", "ignoring", "group_left", "group_right",
}


def exported_metrics() -> dict[str, tuple[str, set[str]]]:
    """name -> (kind, labels) from the constructors in metrics.rs."""
    source = METRICS_RS.read_text()
    metrics = {}
    constructor = re.compile(r"\b(IntCounterVec|IntGaugeVec|HistogramVec|IntCounter|IntGauge|Histogram)::(?:new|with_opts)\(")
    found = list(constructor.finditer(source))
    for i, match in enumerate(found):
        # The text up to the next constructor holds this metric's name and, for vectors, labels.
        chunk = source[match.end(): found[i + 1].start() if i + 1 < len(found) else len(source)]
        name = re.search(r"\"([a-z_]+)\"", chunk)
        if name is None:
            continue
        kind, labels = match.group(1), set()
        if kind.endswith("Vec"):
            label_list = re.search(r"&\[([^\]]*)\]", chunk)
            labels = set(re.findall(r"\"([a-z_]+)\"", label_list.group(1))) if label_list else set()
        metrics[PREFIX + name.group(1)] = ("histogram" if kind.startswith("Histogram") else kind.lower(), labels)
    if len(metrics) < 20:
        sys.exit(f"check_dashboard: only {len(metrics)} metrics parsed from {METRICS_RS}: parser out of date")
    return metrics


def queries(dashboard: dict) -> list[tuple[str, str]]:
    """(where, expr) of every panel target and every query variable."""
    found = []

    def panels(items):
        for panel in items:
            yield panel
            yield from panels(panel.get("panels", []))

    for panel in panels(dashboard.get("panels", [])):
        for target in panel.get("targets", []):
            found.append((f"panel {panel.get('title')!r}", target["expr"]))
    for variable in dashboard.get("templating", {}).get("list", []):
        if variable.get("type") == "query":
            query = variable["query"]
            found.append((f"variable ${variable['name']}", query["query"] if isinstance(query, dict) else query))
    return found


def base_name(name: str, metrics: dict) -> str | None:
    if name in metrics:
        return name
    for suffix in ("_bucket", "_sum", "_count"):
        if name.endswith(suffix) and metrics.get(name[: -len(suffix)], ("",))[0] == "histogram":
            return name[: -len(suffix)]
    return None


def scraped_names(path: Path) -> set[str]:
    return {line.split()[2] for line in path.read_text().splitlines() if line.startswith("# TYPE ")}


def evaluate(url: str, all_queries: list[tuple[str, str]], namespace: str) -> list[str]:
    """Runs every query on a real Prometheus (Grafana's variables filled in): each must parse and
    evaluate; prints how many returned data."""
    import urllib.error
    import urllib.parse
    import urllib.request

    problems, with_data, empty = [], 0, []
    for where, expr in all_queries:
        if expr.startswith("label_values("):
            # Grafana's own function: ask for the series it would read the label from.
            inner = re.match(r"label_values\((.*),\s*\w+\)$", expr)
            expr = inner.group(1) if inner else expr
        query = (expr.replace("$__rate_interval", "1m").replace("$namespace", namespace)
                 .replace("$pod", ".*").replace("$group", ".*"))
        request = f"{url}/api/v1/query?" + urllib.parse.urlencode({"query": query})
        try:
            with urllib.request.urlopen(request, timeout=10) as answer:
                body = json.load(answer)
        except urllib.error.HTTPError as e:
            problems.append(f"{where}: Prometheus refused {query!r}: {e.read().decode(errors='replace')[:300]}")
            continue
        if body.get("status") != "success":
            problems.append(f"{where}: {query!r}: {body}")
        elif body["data"]["result"]:
            with_data += 1
        else:
            empty.append(where)
    print(f"check_dashboard: {len(all_queries)} queries evaluated on {url}: {with_data} returned data"
          + (f"; empty: {', '.join(sorted(set(empty)))}" if empty else ""))
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scrape", type=Path, help="a /metrics answer of a running proxy")
    parser.add_argument("--prometheus", help="a Prometheus URL: every query must evaluate there")
    parser.add_argument("--namespace", default=".*", help="$namespace for --prometheus")
    args = parser.parse_args()
    metrics = exported_metrics()
    dashboard = json.loads(DASHBOARD.read_text())
    problems, used = [], set()
    all_queries = queries(dashboard)
    if len(all_queries) < 10:
        problems.append(f"only {len(all_queries)} queries found in {DASHBOARD}")
    for where, expr in all_queries:
        # Strip Grafana variables and string literals before looking for names.
        bare = re.sub(r'"[^"]*"', '""', expr.replace("$__rate_interval", "5m"))
        names = set(re.findall(r"\bkafka_iggy_[a-z_]+", bare))
        if not names:
            problems.append(f"{where}: names no kafka_iggy_ metric: {expr}")
        allowed_labels = set(TARGET_LABELS)
        for name in names:
            base = base_name(name, metrics)
            if base is None:
                problems.append(f"{where}: {name} is not exported by the proxy (proxy/src/metrics.rs)")
                continue
            used.add(base)
            allowed_labels |= metrics[base][1]
        grouped = re.findall(r"\b(?:by|without)\s*\(([^)]*)\)", bare)
        matched = re.findall(r"([a-z_]+)\s*(?:=~|!~|!=|=)\s*\"", bare)
        for label in [l.strip() for g in grouped for l in g.split(",") if l.strip()] + matched:
            if label not in allowed_labels:
                problems.append(f"{where}: label {label!r} is not one of {sorted(allowed_labels)}")
    if args.scrape:
        declared = scraped_names(args.scrape)
        for name in sorted(used):
            kind, labels = metrics[name]
            if name not in declared and not labels:
                problems.append(f"{name}: not in the scraped /metrics ({args.scrape})")
        missing_vecs = sorted(n for n in used if n not in declared and metrics[n][1])
        if missing_vecs:
            print(f"check_dashboard: still empty in the scrape (no child yet): {', '.join(missing_vecs)}")
    if args.prometheus:
        problems += evaluate(args.prometheus, all_queries, args.namespace)
    unused = sorted(set(metrics) - used)
    for problem in problems:
        print(f"FAIL  dashboard: {problem}")
    if problems:
        return 1
    print(f"check_dashboard: {len(all_queries)} queries name {len(used)} of the proxy's {len(metrics)} metrics"
          + (f"; not on the dashboard: {', '.join(unused)}" if unused else "")
          + (f"; all declared by the scraped proxy" if args.scrape else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
