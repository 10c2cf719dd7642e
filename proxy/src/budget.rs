//! One memory budget for the whole process (`limits.memory_budget_bytes`).
//!
//! Everything a client can make the proxy hold is reserved here first: request frames from the
//! moment their size is known until their response is written, records decompressed from a
//! produced batch until they are appended, and Fetch responses until they are written. When the
//! budget is used up, reservations wait, and a connection waiting to reserve its next frame does
//! not read its socket: back-pressure instead of growth.
//!
//! The budget is split so that reserving can never deadlock and one kind of client cannot
//! starve the others:
//! - frames take 3/8 (large ones) or 1/8 (small ones, up to [`SMALL_FRAME`]: the requests of
//!   ordinary clients never queue behind someone's 100 MB frames), and wait holding nothing else;
//! - work takes the other half, only for requests whose frames are already held: 1/4 for
//!   decoded produced records, 1/4 for Fetch answers, so that consumers who stop reading their
//!   answers never hold up producers. A records reservation that must grow gives back what it
//!   holds before waiting for the larger amount; a Fetch takes what is free of its size rather
//!   than queueing for all of it. Each connection may hold at most its share of work (the
//!   largest single piece), so a client that stops reading ties up that share, not a whole
//!   pool. The share is always taken before the pool.
//!
//! Any one reservation fits its pool (checked in the configuration), so it is always satisfiable
//! eventually.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Permits count kibibytes, so that a reservation of any allowed size fits a `u32`.
const UNIT: usize = 1024;

/// Frames up to this size take from the pool of small frames.
pub const SMALL_FRAME: usize = 1024 * 1024;

fn units(bytes: usize) -> u32 {
    u32::try_from(bytes.div_ceil(UNIT)).unwrap_or(u32::MAX)
}

/// A pool of kibibyte permits.
#[derive(Debug, Clone)]
struct Pool {
    permits: Arc<Semaphore>,
    units: usize,
}

impl Pool {
    fn new(bytes: usize) -> Self {
        let units = (bytes / UNIT).clamp(1, Semaphore::MAX_PERMITS);
        Self {
            permits: Arc::new(Semaphore::new(units)),
            units,
        }
    }

    /// Waits for `bytes` (at most the whole pool: a mistake must not wait forever).
    async fn take(&self, bytes: usize) -> OwnedSemaphorePermit {
        let n = units(bytes).min(self.units as u32);
        self.permits
            .clone()
            .acquire_many_owned(n)
            .await
            .expect("the budget's semaphores are never closed")
    }

    /// `bytes` if they are free now and nobody waits before us.
    fn try_take(&self, bytes: usize) -> Option<OwnedSemaphorePermit> {
        let n = units(bytes).min(self.units as u32);
        self.permits.clone().try_acquire_many_owned(n).ok()
    }

    fn used_units(&self) -> usize {
        self.units.saturating_sub(self.permits.available_permits())
    }
}

#[derive(Debug)]
pub struct MemoryBudget {
    large_frames: Pool,
    small_frames: Pool,
    records: Pool,
    answers: Pool,
    share_bytes: usize,
}

/// One connection's share of the work pools; see the module docs.
#[derive(Debug, Clone)]
pub struct ConnectionShare(Pool);

/// Bytes held against the budget; given back on drop.
#[derive(Debug, Default)]
pub struct Reservation {
    permits: Vec<OwnedSemaphorePermit>,
}

impl Reservation {
    /// Bytes held against the process budget (rounded up to whole kibibytes).
    pub fn bytes(&self) -> usize {
        self.permits.last().map_or(0, |p| p.num_permits() * UNIT)
    }

    /// Gives back what is held beyond `bytes`.
    pub fn shrink_to(&mut self, bytes: usize) {
        let keep = bytes.div_ceil(UNIT);
        for permit in &mut self.permits {
            let excess = permit.num_permits().saturating_sub(keep);
            if excess > 0 {
                drop(permit.split(excess));
            }
        }
    }
}

impl MemoryBudget {
    /// `share_bytes`: the most work one connection may hold at once.
    pub fn new(total_bytes: usize, share_bytes: usize) -> Self {
        let quarter = total_bytes / 4;
        Self {
            large_frames: Pool::new(total_bytes / 8 * 3),
            small_frames: Pool::new(total_bytes / 8),
            records: Pool::new(quarter),
            answers: Pool::new(quarter),
            share_bytes: share_bytes.min(quarter.max(UNIT)),
        }
    }

    /// A new connection's share of the work pools.
    pub fn connection_share(&self) -> ConnectionShare {
        ConnectionShare(Pool::new(self.share_bytes))
    }

    /// Waits until a request frame of `bytes` may be read.
    pub async fn reserve_frame(&self, bytes: usize) -> Reservation {
        let pool = if bytes <= SMALL_FRAME {
            &self.small_frames
        } else {
            &self.large_frames
        };
        Reservation {
            permits: vec![pool.take(bytes).await],
        }
    }

    /// Waits until the connection holding `share` may hold `bytes` more of decoded records:
    /// first within its share, then within the pool.
    pub async fn reserve_records(&self, share: &ConnectionShare, bytes: usize) -> Reservation {
        Self::reserve(&self.records, share, bytes).await
    }

    /// Room for a Fetch answer: as much of `bytes` as is free now, halving down to `least`;
    /// waits only for `least`. A Fetch may answer with fewer records, so it never queues for a
    /// large amount ahead of other clients' small ones.
    pub async fn reserve_answer(
        &self,
        share: &ConnectionShare,
        bytes: usize,
        least: usize,
    ) -> Reservation {
        let mut want = bytes;
        while want > least {
            if let Some(own) = share.0.try_take(want) {
                if let Some(pooled) = self.answers.try_take(want) {
                    return Reservation {
                        permits: vec![own, pooled],
                    };
                }
            }
            want /= 2;
        }
        Self::reserve(&self.answers, share, bytes.min(least)).await
    }

    async fn reserve(pool: &Pool, share: &ConnectionShare, bytes: usize) -> Reservation {
        let own = share.0.take(bytes).await;
        let pooled = pool.take(bytes).await;
        Reservation {
            permits: vec![own, pooled],
        }
    }

    /// The largest records reservation one connection can be granted.
    pub fn largest_records(&self) -> usize {
        self.share_bytes
    }

    /// Bytes currently reserved, frames and work together.
    pub fn used_bytes(&self) -> usize {
        [
            &self.large_frames,
            &self.small_frames,
            &self.records,
            &self.answers,
        ]
        .iter()
        .map(|p| p.used_units())
        .sum::<usize>()
            * UNIT
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const MIB: usize = 1024 * 1024;

    #[tokio::test]
    async fn large_frames_wait_for_room_and_small_ones_do_not_queue_behind_them() {
        let budget = Arc::new(MemoryBudget::new(16 * MIB, 4 * MIB));
        let first = budget.reserve_frame(5 * MIB).await;
        assert_eq!(budget.used_bytes(), 5 * MIB);
        let waiting = {
            let budget = budget.clone();
            tokio::spawn(async move { budget.reserve_frame(2 * MIB).await })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            !waiting.is_finished(),
            "the large-frame pool (6 MiB) is full"
        );
        let small = tokio::time::timeout(Duration::from_secs(1), budget.reserve_frame(MIB))
            .await
            .expect("a small frame has its own pool");
        drop(first);
        let second = tokio::time::timeout(Duration::from_secs(1), waiting)
            .await
            .expect("room was given back")
            .unwrap();
        assert_eq!(second.bytes(), 2 * MIB);
        drop((small, second));
        assert_eq!(budget.used_bytes(), 0);
    }

    #[tokio::test]
    async fn a_connection_holds_at_most_its_share_of_the_work() {
        let budget = Arc::new(MemoryBudget::new(32 * MIB, 3 * MIB));
        let slow = budget.connection_share();
        let held = budget.reserve_records(&slow, 3 * MIB).await;
        let more = {
            let (budget, slow) = (budget.clone(), slow.clone());
            tokio::spawn(async move { budget.reserve_answer(&slow, MIB, MIB).await })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!more.is_finished(), "the connection's share is used up");
        let other = budget.connection_share();
        let theirs = tokio::time::timeout(
            Duration::from_secs(1),
            budget.reserve_records(&other, 3 * MIB),
        )
        .await
        .expect("another connection is not held up");
        drop((held, theirs));
        more.await.unwrap();
    }

    #[tokio::test]
    async fn answers_take_what_is_free_and_never_hold_up_records() {
        let budget = MemoryBudget::new(32 * MIB, 8 * MIB);
        let (a, b) = (budget.connection_share(), budget.connection_share());
        let held = budget.reserve_answer(&a, 7 * MIB, 64 * 1024).await;
        assert_eq!(held.bytes(), 7 * MIB);
        let some = budget.reserve_answer(&b, 8 * MIB, 64 * 1024).await;
        assert_eq!(some.bytes(), MIB, "halved until it fit the 1 MiB left");
        let records = tokio::time::timeout(
            Duration::from_secs(1),
            budget.reserve_records(&budget.connection_share(), 8 * MIB),
        )
        .await
        .expect("answers held by slow readers do not hold up producers");
        drop((held, some, records));
        let all = budget.reserve_answer(&b, 8 * MIB, 64 * 1024).await;
        assert_eq!(all.bytes(), 8 * MIB);
    }

    #[tokio::test]
    async fn shrinking_gives_back_exactly() {
        let budget = MemoryBudget::new(8 * MIB, 4 * MIB);
        let share = budget.connection_share();
        let mut held = budget.reserve_records(&share, 3 * MIB).await;
        held.shrink_to(1000);
        assert_eq!(held.bytes(), 1024);
        assert_eq!(budget.used_bytes(), 1024);
        drop(held);
        assert_eq!(budget.used_bytes(), 0);
    }
}
