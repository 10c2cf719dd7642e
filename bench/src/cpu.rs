//! CPU time spent by each party during a timed phase, from /proc (Linux only; elsewhere the
//! figures are simply absent).
//!
//! On a small machine the client, the proxy and the server share the cores, so wall-clock
//! throughput alone does not say who the bottleneck is; CPU seconds per phase do. The proxy is
//! the `proxy-worker` threads when in-process, or the child process; the client is everything
//! else in this process (librdkafka's threads, the Iggy SDK, the verifier); the server is the
//! spawned Iggy server.

use std::fs;
use std::process::Command;

#[derive(Debug, Clone, Copy, Default)]
pub struct CpuTimes {
    pub client: f64,
    pub proxy: Option<f64>,
    pub server: Option<f64>,
}

impl CpuTimes {
    pub fn since(&self, start: &CpuTimes) -> CpuTimes {
        let diff = |a: Option<f64>, b: Option<f64>| Some(a? - b?);
        CpuTimes {
            client: self.client - start.client,
            proxy: diff(self.proxy, start.proxy),
            server: diff(self.server, start.server),
        }
    }
}

/// Where the proxy runs, for attributing CPU time.
#[derive(Debug, Clone, Copy)]
pub enum ProxyCpu {
    /// Threads of this process named `proxy-worker`.
    Threads,
    /// A child process.
    Process(u32),
    /// Elsewhere: not measured.
    Unknown,
}

#[derive(Debug, Clone)]
pub struct CpuProbe {
    proxy: ProxyCpu,
    server: Option<u32>,
    tick: f64,
}

impl CpuProbe {
    pub fn new(proxy: ProxyCpu, server: Option<u32>) -> Self {
        let ticks = Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse::<f64>().ok())
            .filter(|&t| t > 0.0)
            .unwrap_or(100.0);
        Self {
            proxy,
            server,
            tick: 1.0 / ticks,
        }
    }

    pub fn sample(&self) -> CpuTimes {
        // The process total includes threads that have exited (a dropped producer's), which a
        // sum over live threads would lose.
        let total = process_ticks("self").unwrap_or(0) as f64 * self.tick;
        let (client, proxy) = match self.proxy {
            ProxyCpu::Threads => {
                let proxy = proxy_thread_ticks() as f64 * self.tick;
                (total - proxy, Some(proxy))
            }
            ProxyCpu::Process(pid) => (
                total,
                process_ticks(&pid.to_string()).map(|t| t as f64 * self.tick),
            ),
            ProxyCpu::Unknown => (total, None),
        };
        let server = self
            .server
            .and_then(|pid| process_ticks(&pid.to_string()))
            .map(|t| t as f64 * self.tick);
        CpuTimes {
            client,
            proxy,
            server,
        }
    }
}

/// utime + stime of a `stat` line, and the command name.
fn parse_stat(stat: &str) -> Option<(&str, u64)> {
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = &stat[open + 1..close];
    let mut fields = stat[close + 1..].split_whitespace();
    // After the name: state(3) ... utime(14) stime(15), 1-based as in proc(5).
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((comm, utime + stime))
}

fn process_ticks(pid: &str) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&stat).map(|(_, ticks)| ticks)
}

fn proxy_thread_ticks() -> u64 {
    let Ok(tasks) = fs::read_dir("/proc/self/task") else {
        return 0;
    };
    tasks
        .filter_map(|task| fs::read_to_string(task.ok()?.path().join("stat")).ok())
        .filter_map(|stat| {
            parse_stat(&stat)
                .filter(|(comm, _)| comm.starts_with("proxy-worker"))
                .map(|(_, ticks)| ticks)
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_lines() {
        let line = "4242 (proxy-worker) S 1 2 3 4 5 6 7 8 9 10 120 30 0 0 20 0 1 0";
        assert_eq!(parse_stat(line), Some(("proxy-worker", 150)));
        let odd = "7 (a) b (c)) R 1 2 3 4 5 6 7 8 9 10 1 2 0 0";
        assert_eq!(parse_stat(odd), Some(("a) b (c)", 3)));
    }
}
