//! Collected measurements, and their table and JSON forms.

use std::fmt::Write as _;

use serde_json::{json, Value};

use crate::cpu::CpuTimes;
use crate::{Timed, Workload};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Path {
    /// Iggy SDK straight to the server.
    Native,
    /// librdkafka through the proxy.
    Proxy,
    /// librdkafka through several proxy replicas forming one cluster.
    Replicas,
}

impl Path {
    fn label(self) -> &'static str {
        match self {
            Path::Native => "iggy sdk (native)",
            Path::Proxy => "librdkafka via proxy",
            Path::Replicas => "librdkafka via replicas",
        }
    }

    pub fn key(self) -> &'static str {
        match self {
            Path::Native => "native",
            Path::Proxy => "proxy",
            Path::Replicas => "replicas",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Produce,
    Fetch,
}

impl Phase {
    fn key(self) -> &'static str {
        match self {
            Phase::Produce => "produce",
            Phase::Fetch => "fetch",
        }
    }
}

#[derive(Debug, Clone)]
pub enum Outcome {
    /// Completed and, for fetches, verified (with the verifier's summary).
    Done(Timed, Option<String>),
    Failed(String),
}

impl Outcome {
    pub fn from_time(result: anyhow::Result<Timed>) -> Self {
        match result {
            Ok(timed) => Outcome::Done(timed, None),
            Err(e) => Outcome::Failed(format!("{e:#}")),
        }
    }

    pub fn from_fetch(result: anyhow::Result<(Timed, Result<String, String>)>) -> Self {
        match result {
            Ok((timed, Ok(summary))) => Outcome::Done(timed, Some(summary)),
            Ok((_, Err(problems))) => Outcome::Failed(format!("verification failed: {problems}")),
            Err(e) => Outcome::Failed(format!("{e:#}")),
        }
    }
}

struct Entry {
    round: usize,
    path: Path,
    phase: Phase,
    outcome: Outcome,
}

/// Median throughput of one path and phase over the rounds, and the mean CPU seconds each
/// party spent in it.
#[derive(Debug, Clone, Copy)]
struct Rate {
    seconds: f64,
    mb_per_s: f64,
    records_per_s: f64,
    cpu: CpuTimes,
}

pub struct Report {
    workload: Workload,
    rounds: usize,
    librdkafka: String,
    pub backend: String,
    pub iggy_server: Option<String>,
    pub proxy_mode: String,
    /// How the replicas ran, when `--replicas` asked for them.
    pub replicas_mode: Option<String>,
    entries: Vec<Entry>,
}

impl Report {
    pub fn new(workload: &Workload, rounds: usize, librdkafka: &str) -> Self {
        Self {
            workload: workload.clone(),
            rounds,
            librdkafka: librdkafka.to_string(),
            backend: String::new(),
            iggy_server: None,
            proxy_mode: String::new(),
            replicas_mode: None,
            entries: Vec::new(),
        }
    }

    fn bytes(&self) -> f64 {
        self.workload.records as f64 * self.workload.record_size as f64
    }

    /// Stores one result and tells the user on stderr.
    pub fn record(&mut self, path: Path, phase: Phase, mut outcome: Outcome) {
        if let (Path::Native, Outcome::Done(timed, _)) = (path, &mut outcome) {
            // The proxy sits idle while the baseline runs.
            timed.cpu.proxy = None;
        }
        let round = self
            .entries
            .iter()
            .filter(|e| e.path == path && e.phase == phase)
            .count()
            + 1;
        match &outcome {
            Outcome::Done(timed, summary) => {
                let secs = timed.elapsed.as_secs_f64();
                eprintln!(
                    "round {round}: {} {}: {secs:.3} s, {:.1} MB/s, cpu s client {}{}",
                    path.label(),
                    phase.key(),
                    self.bytes() / secs / 1e6,
                    cpu_text(&timed.cpu),
                    summary
                        .as_ref()
                        .map(|s| format!(" ({s})"))
                        .unwrap_or_default()
                );
            }
            Outcome::Failed(why) => {
                eprintln!(
                    "round {round}: {} {} FAILED: {why}",
                    path.label(),
                    phase.key()
                );
            }
        }
        self.entries.push(Entry {
            round,
            path,
            phase,
            outcome,
        });
    }

    pub fn ok(&self) -> bool {
        self.entries
            .iter()
            .all(|e| matches!(e.outcome, Outcome::Done(..)))
    }

    fn failures(&self) -> Vec<String> {
        self.entries
            .iter()
            .filter_map(|e| match &e.outcome {
                Outcome::Failed(why) => Some(format!(
                    "round {}: {} {}: {why}",
                    e.round,
                    e.path.label(),
                    e.phase.key()
                )),
                Outcome::Done(..) => None,
            })
            .collect()
    }

    /// Median rate, or None when the path was not run or any round of it failed (a broken run
    /// must not show up as a number).
    fn rate(&self, path: Path, phase: Phase) -> Option<Rate> {
        let mut secs = Vec::new();
        let mut cpus = Vec::new();
        for e in self
            .entries
            .iter()
            .filter(|e| e.path == path && e.phase == phase)
        {
            match &e.outcome {
                Outcome::Done(timed, _) => {
                    secs.push(timed.elapsed.as_secs_f64());
                    cpus.push(timed.cpu);
                }
                Outcome::Failed(_) => return None,
            }
        }
        if secs.len() != self.rounds {
            return None;
        }
        secs.sort_by(f64::total_cmp);
        let n = secs.len();
        let seconds = if n % 2 == 1 {
            secs[n / 2]
        } else {
            (secs[n / 2 - 1] + secs[n / 2]) / 2.0
        };
        Some(Rate {
            seconds,
            mb_per_s: self.bytes() / seconds / 1e6,
            records_per_s: self.workload.records as f64 / seconds,
            cpu: mean_cpu(&cpus),
        })
    }

    /// Throughput of `path` over the native baseline's.
    fn ratio(&self, path: Path, phase: Phase) -> Option<f64> {
        let native = self.rate(Path::Native, phase)?;
        let measured = self.rate(path, phase)?;
        Some(measured.mb_per_s / native.mb_per_s)
    }

    /// The paths measured through the proxy.
    fn proxy_paths(&self) -> Vec<Path> {
        let mut paths = vec![Path::Proxy];
        if self.replicas_mode.is_some() {
            paths.push(Path::Replicas);
        }
        paths
    }

    fn status(&self, path: Path) -> &'static str {
        let mut any = false;
        for e in self.entries.iter().filter(|e| e.path == path) {
            any = true;
            if matches!(e.outcome, Outcome::Failed(_)) {
                return "FAILED";
            }
        }
        if any {
            "n/a"
        } else {
            "not run"
        }
    }

    pub fn to_table(&self) -> String {
        let w = &self.workload;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "\nkafka-iggy-bench: {} records x {} B = {:.1} MB per path and phase, {} partition(s), {} round(s){}",
            w.records,
            w.record_size,
            self.bytes() / 1e6,
            w.partitions,
            self.rounds,
            if self.rounds > 1 { " (medians)" } else { "" }
        );
        if let Some(server) = &self.iggy_server {
            let _ = writeln!(out, "iggy server: {server}");
        }
        let _ = writeln!(
            out,
            "proxy:       {}, backend {}",
            self.proxy_mode, self.backend
        );
        if let Some(replicas) = &self.replicas_mode {
            let _ = writeln!(out, "replicas:    {replicas}");
        }
        let _ = writeln!(
            out,
            "kafka path:  librdkafka {}, linger.ms={} batch.size={} acks={} compression=none; assign() from beginning, max.partition.fetch.bytes={}",
            self.librdkafka, w.linger_ms, w.kafka_batch_size, w.acks, w.fetch_partition_bytes
        );
        if self.iggy_server.is_some() {
            let _ = writeln!(
                out,
                "native path: iggy SDK 0.10.0, one TCP client, {} messages per send and per poll",
                w.batch
            );
        }
        let _ =
            writeln!(
            out,
            "MB = 10^6 payload bytes; cpu s = CPU seconds spent in the timed phase by the client \
             (librdkafka or Iggy SDK, plus the verifier), the proxy and the Iggy server{}\n",
            if self.rounds > 1 { " (mean over rounds)" } else { "" }
        );
        let _ = writeln!(
            out,
            "{:<8} {:<22} {:>9} {:>10} {:>12} | {:>13} {:>7} {:>7}",
            "phase", "path", "seconds", "MB/s", "records/s", "cpu s: client", "proxy", "server"
        );
        for phase in [Phase::Produce, Phase::Fetch] {
            let mut paths = vec![Path::Native];
            paths.extend(self.proxy_paths());
            for path in paths {
                match self.rate(path, phase) {
                    Some(r) => {
                        let opt = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.2}"));
                        let _ = writeln!(
                            out,
                            "{:<8} {:<22} {:>9.3} {:>10.1} {:>12.0} | {:>13.2} {:>7} {:>7}",
                            phase.key(),
                            path.label(),
                            r.seconds,
                            r.mb_per_s,
                            r.records_per_s,
                            r.cpu.client,
                            opt(r.cpu.proxy),
                            opt(r.cpu.server),
                        );
                    }
                    None => {
                        let status = self.status(path);
                        let _ = writeln!(
                            out,
                            "{:<8} {:<22} {:>9} {:>10} {:>12}",
                            phase.key(),
                            path.label(),
                            status,
                            status,
                            status
                        );
                    }
                }
            }
            for path in self.proxy_paths() {
                let label = format!("ratio {}/native", path.key());
                let ratio = self
                    .ratio(path, phase)
                    .map_or_else(|| "n/a".to_string(), |r| format!("{r:.2}"));
                let _ = writeln!(
                    out,
                    "{:<8} {:<22} {:>9} {:>10} {:>12}",
                    phase.key(),
                    label,
                    "",
                    ratio,
                    ratio
                );
            }
        }
        let failures = self.failures();
        if failures.is_empty() {
            let _ = writeln!(out, "\nverification: ok (every record read back in order at its offset; sampled contents compared)");
        } else {
            let _ = writeln!(out, "\nverification: FAILED");
            for f in failures {
                let _ = writeln!(out, "  - {f}");
            }
        }
        out
    }

    pub fn to_json(&self) -> String {
        let w = &self.workload;
        let rate = |r: Option<Rate>| -> Value {
            match r {
                Some(r) => json!({
                    "seconds": r.seconds,
                    "mb_per_s": r.mb_per_s,
                    "records_per_s": r.records_per_s,
                    "cpu_seconds": cpu_json(&r.cpu),
                }),
                None => Value::Null,
            }
        };
        let phase = |p: Phase| {
            json!({
                "native": rate(self.rate(Path::Native, p)),
                "proxy": rate(self.rate(Path::Proxy, p)),
                "replicas": rate(self.rate(Path::Replicas, p)),
                "ratio_proxy_over_native": self.ratio(Path::Proxy, p),
                "ratio_replicas_over_native": self.ratio(Path::Replicas, p),
            })
        };
        let rounds: Vec<Value> = self
            .entries
            .iter()
            .map(|e| match &e.outcome {
                Outcome::Done(timed, summary) => json!({
                    "round": e.round,
                    "path": e.path.key(),
                    "phase": e.phase.key(),
                    "seconds": timed.elapsed.as_secs_f64(),
                    "cpu_seconds": cpu_json(&timed.cpu),
                    "verification": summary,
                }),
                Outcome::Failed(why) => json!({
                    "round": e.round,
                    "path": e.path.key(),
                    "phase": e.phase.key(),
                    "error": why,
                }),
            })
            .collect();
        let value = json!({
            "ok": self.ok(),
            "mb": "10^6 payload bytes",
            "workload": {
                "records": w.records,
                "record_size": w.record_size,
                "partitions": w.partitions,
                "rounds": self.rounds,
                "native_batch": w.batch,
                "linger_ms": w.linger_ms,
                "batch_size": w.kafka_batch_size,
                "acks": w.acks,
                "compression": "none",
                "max_partition_fetch_bytes": w.fetch_partition_bytes,
            },
            "backend": self.backend,
            "iggy_server": self.iggy_server,
            "proxy": self.proxy_mode,
            "replicas": self.replicas_mode,
            "librdkafka": self.librdkafka,
            "produce": phase(Phase::Produce),
            "fetch": phase(Phase::Fetch),
            "runs": rounds,
            "failures": self.failures(),
        });
        serde_json::to_string_pretty(&value).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }
}

fn mean_cpu(all: &[CpuTimes]) -> CpuTimes {
    let n = all.len().max(1) as f64;
    let mean = |f: &dyn Fn(&CpuTimes) -> Option<f64>| -> Option<f64> {
        let values: Option<Vec<f64>> = all.iter().map(f).collect();
        values.map(|v| v.iter().sum::<f64>() / n)
    };
    CpuTimes {
        client: all.iter().map(|c| c.client).sum::<f64>() / n,
        proxy: mean(&|c| c.proxy),
        server: mean(&|c| c.server),
    }
}

fn cpu_text(cpu: &CpuTimes) -> String {
    let opt = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.2}"));
    format!(
        "{:.2}, proxy {}, server {}",
        cpu.client,
        opt(cpu.proxy),
        opt(cpu.server)
    )
}

fn cpu_json(cpu: &CpuTimes) -> Value {
    json!({
        "client": cpu.client,
        "proxy": cpu.proxy,
        "server": cpu.server,
    })
}
