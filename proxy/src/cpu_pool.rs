//! Threads for the CPU-heavy work whose size a client chooses: decompressing produced batches and
//! encoding large Fetch answers.
//!
//! A client can send batch after batch that inflate to the cap, or ask for answers of
//! `max_fetch_bytes` in a loop, each costing milliseconds of CPU. Done on the I/O threads, that
//! would stall every other connection. Here it runs on all cores but one, at a lower scheduling
//! priority (nice 10), so the I/O threads and everything else on the machine go first; requests
//! queue for a thread instead of piling up CPU-bound tasks.
#![allow(unsafe_code, reason = "setpriority on the calling thread")]

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, PoisonError};

type Job = Box<dyn FnOnce() + Send>;

/// Niceness of the pool's threads (0 is normal, 19 the lowest).
const NICENESS: libc::c_int = 10;

pub struct CpuPool {
    jobs: Mutex<mpsc::Sender<Job>>,
}

impl CpuPool {
    /// Starts all cores but one (at least one) threads; they end when the pool is dropped.
    pub fn new() -> Self {
        let threads = std::thread::available_parallelism()
            .map_or(1, |n| n.get().saturating_sub(1))
            .max(1);
        let (jobs, queue) = mpsc::channel::<Job>();
        let queue = Arc::new(Mutex::new(queue));
        for i in 0..threads {
            let queue = queue.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("kafka-iggy-cpu-{i}"))
                .spawn(move || {
                    lower_priority();
                    loop {
                        let job = queue.lock().unwrap_or_else(PoisonError::into_inner).recv();
                        match job {
                            Ok(job) => job(),
                            Err(_) => return,
                        }
                    }
                });
            if let Err(e) = spawned {
                tracing::warn!(error = %e, "cannot start a CPU pool thread");
            }
        }
        Self {
            jobs: Mutex::new(jobs),
        }
    }

    /// Runs `work` on a pool thread; `None` if it panicked or no thread is left.
    pub async fn run<R: Send + 'static>(
        &self,
        work: impl FnOnce() -> R + Send + 'static,
    ) -> Option<R> {
        let (done, result) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            let _ = done.send(catch_unwind(AssertUnwindSafe(work)).ok());
        });
        self.jobs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .send(job)
            .ok()?;
        result.await.ok().flatten()
    }
}

impl Default for CpuPool {
    fn default() -> Self {
        Self::new()
    }
}

/// Best effort: a container without the right to change priorities keeps the normal one.
fn lower_priority() {
    // SAFETY: plain system calls on the calling thread's own id; no memory is passed.
    let result = unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        libc::setpriority(libc::PRIO_PROCESS, tid, NICENESS)
    };
    if result != 0 {
        tracing::debug!("could not lower the priority of a CPU pool thread");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn runs_work_and_survives_a_panic() {
        let pool = CpuPool::new();
        assert_eq!(pool.run(|| 6 * 7).await, Some(42));
        assert_eq!(pool.run(|| -> i32 { panic!("boom") }).await, None);
        assert_eq!(pool.run(|| 1).await, Some(1), "the thread is still there");
    }

    #[test]
    fn pool_threads_run_at_lower_priority() {
        lower_priority();
        // SAFETY: as in lower_priority.
        let nice = unsafe {
            let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
            libc::getpriority(libc::PRIO_PROCESS, tid)
        };
        assert_eq!(nice, NICENESS);
    }
}
