//! Prometheus metrics. One registry per proxy process (tests run several proxies in one process,
//! so nothing is registered globally).

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

pub struct Metrics {
    registry: Registry,
    pub requests: IntCounterVec,
    pub errors: IntCounterVec,
    pub request_seconds: HistogramVec,
    pub network_bytes_in: IntCounter,
    pub network_bytes_out: IntCounter,
    pub records_in: IntCounter,
    pub records_out: IntCounter,
    pub record_bytes_in: IntCounter,
    pub record_bytes_out: IntCounter,
    pub connections_open: IntGauge,
    pub connections_total: IntCounter,
    pub connections_rejected: IntCounter,
    pub connections_closed_on_error: IntCounterVec,
    pub backend_seconds: HistogramVec,
    pub backend_errors: IntCounterVec,
    pub fetch_wait_seconds: Histogram,
    pub groups: IntGaugeVec,
    pub group_members: IntGaugeVec,
    pub group_rebalances: IntCounterVec,
    pub offset_commits: IntCounterVec,
    pub consumer_lag: IntGaugeVec,
    pub memory_budget_used: IntGauge,
    pub memory_budget: IntGauge,
}

fn must<T>(r: prometheus::Result<T>) -> T {
    // Metric definitions are static; a failure here is a programming error caught by tests.
    r.unwrap_or_else(|e| panic!("invalid metric definition: {e}"))
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new_custom(Some("kafka_iggy".into()), None)
            .unwrap_or_else(|e| panic!("registry: {e}"));
        let latency_buckets = vec![
            0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
            2.5, 5.0, 10.0, 30.0,
        ];
        let m = Self {
            requests: must(IntCounterVec::new(
                Opts::new("requests_total", "Kafka requests handled, by API"),
                &["api"],
            )),
            errors: must(IntCounterVec::new(
                Opts::new(
                    "errors_total",
                    "Kafka error codes returned (request, topic or partition level), by API and error",
                ),
                &["api", "error"],
            )),
            request_seconds: must(HistogramVec::new(
                HistogramOpts::new("request_duration_seconds", "Time to handle a request, by API")
                    .buckets(latency_buckets.clone()),
                &["api"],
            )),
            network_bytes_in: must(IntCounter::new(
                "network_bytes_in_total",
                "Request bytes read from Kafka clients",
            )),
            network_bytes_out: must(IntCounter::new(
                "network_bytes_out_total",
                "Response bytes written to Kafka clients",
            )),
            records_in: must(IntCounter::new("records_in_total", "Records produced")),
            records_out: must(IntCounter::new("records_out_total", "Records fetched")),
            record_bytes_in: must(IntCounter::new(
                "record_bytes_in_total",
                "Key, value and header bytes of produced records",
            )),
            record_bytes_out: must(IntCounter::new(
                "record_bytes_out_total",
                "Key, value and header bytes of fetched records",
            )),
            connections_open: must(IntGauge::new("connections_open", "Open client connections")),
            connections_total: must(IntCounter::new(
                "connections_total",
                "Client connections accepted",
            )),
            connections_rejected: must(IntCounter::new(
                "connections_rejected_total",
                "Client connections closed at once because max_connections was reached",
            )),
            connections_closed_on_error: must(IntCounterVec::new(
                Opts::new(
                    "connections_closed_on_error_total",
                    "Connections closed because of a protocol violation, by reason",
                ),
                &["reason"],
            )),
            backend_seconds: must(HistogramVec::new(
                HistogramOpts::new("backend_call_duration_seconds", "Storage back-end call latency")
                    .buckets(latency_buckets),
                &["op"],
            )),
            backend_errors: must(IntCounterVec::new(
                Opts::new("backend_errors_total", "Storage back-end call failures"),
                &["op", "kind"],
            )),
            fetch_wait_seconds: must(Histogram::with_opts(HistogramOpts::new(
                "fetch_wait_seconds",
                "Time Fetch requests spent long-polling for data",
            ))),
            groups: must(IntGaugeVec::new(
                Opts::new("groups", "Consumer groups coordinated here, by state"),
                &["state"],
            )),
            group_members: must(IntGaugeVec::new(
                Opts::new("group_members", "Members of each consumer group"),
                &["group"],
            )),
            group_rebalances: must(IntCounterVec::new(
                Opts::new(
                    "group_rebalances_total",
                    "Completed rebalances (join phases) of each consumer group",
                ),
                &["group"],
            )),
            offset_commits: must(IntCounterVec::new(
                Opts::new(
                    "offset_commits_total",
                    "Partition offsets committed, by consumer group",
                ),
                &["group"],
            )),
            consumer_lag: must(IntGaugeVec::new(
                Opts::new(
                    "consumer_lag",
                    "High watermark minus committed offset, per group and partition \
                     (refreshed every few seconds)",
                ),
                &["group", "topic", "partition"],
            )),
            memory_budget_used: must(IntGauge::new(
                "memory_budget_used_bytes",
                "Bytes reserved from limits.memory_budget_bytes (requests, decoded records, \
                 unwritten responses); at the budget the proxy stops reading sockets",
            )),
            memory_budget: must(IntGauge::new(
                "memory_budget_bytes",
                "limits.memory_budget_bytes",
            )),
            registry,
        };
        m.register_all();
        m
    }

    fn register_all(&self) {
        let r = &self.registry;
        must(r.register(Box::new(self.requests.clone())));
        must(r.register(Box::new(self.errors.clone())));
        must(r.register(Box::new(self.request_seconds.clone())));
        must(r.register(Box::new(self.network_bytes_in.clone())));
        must(r.register(Box::new(self.network_bytes_out.clone())));
        must(r.register(Box::new(self.records_in.clone())));
        must(r.register(Box::new(self.records_out.clone())));
        must(r.register(Box::new(self.record_bytes_in.clone())));
        must(r.register(Box::new(self.record_bytes_out.clone())));
        must(r.register(Box::new(self.connections_open.clone())));
        must(r.register(Box::new(self.connections_total.clone())));
        must(r.register(Box::new(self.connections_rejected.clone())));
        must(r.register(Box::new(self.connections_closed_on_error.clone())));
        must(r.register(Box::new(self.backend_seconds.clone())));
        must(r.register(Box::new(self.backend_errors.clone())));
        must(r.register(Box::new(self.fetch_wait_seconds.clone())));
        must(r.register(Box::new(self.groups.clone())));
        must(r.register(Box::new(self.group_members.clone())));
        must(r.register(Box::new(self.group_rebalances.clone())));
        must(r.register(Box::new(self.offset_commits.clone())));
        must(r.register(Box::new(self.consumer_lag.clone())));
        must(r.register(Box::new(self.memory_budget_used.clone())));
        must(r.register(Box::new(self.memory_budget.clone())));
    }

    /// Counts a non-zero Kafka error code returned by `api`.
    pub fn error(&self, api: &str, code: i16) {
        if code != 0 {
            let name = crate::error::error_name(code);
            self.errors.with_label_values(&[api, &name]).inc();
        }
    }

    /// Text exposition format for /metrics.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            return format!("# encoding failed: {e}\n");
        }
        String::from_utf8_lossy(&out).into_owned()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_registered_metrics() {
        let m = Metrics::new();
        m.requests.with_label_values(&["Produce"]).inc();
        m.error("Produce", 3);
        let text = m.render();
        assert!(
            text.contains("kafka_iggy_requests_total{api=\"Produce\"} 1"),
            "{text}"
        );
        assert!(text.contains("error=\"UnknownTopicOrPartition\""), "{text}");
        assert!(text.contains("kafka_iggy_connections_open 0"), "{text}");
    }
}
