//! One memory budget for the whole process (`limits.memory_budget_bytes`).
//!
//! Everything a client can make the proxy hold is reserved here first: request frames from the
//! moment their size is known until their response is written, records decompressed from a
//! produced batch until they are appended, and Fetch responses until they are written. When the
//! budget is used up, reservations wait, and a connection waiting to reserve its next frame does
//! not read its socket: back-pressure instead of growth.
//!
//! The budget is split in two halves so that reserving can never deadlock. Frames take from one
//! half and wait while holding nothing else. Work (decompressed records, Fetch responses) takes
//! from the other half, only for requests whose frames are already held; it is released when
//! the work is answered, and a reservation that must grow gives back what it holds before
//! waiting for the larger amount. Any one reservation is at most half the budget (checked in
//! the configuration), so it is always satisfiable eventually.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Permits count kibibytes, so that a reservation of any allowed size fits a `u32`.
const UNIT: usize = 1024;

fn units(bytes: usize) -> u32 {
    u32::try_from(bytes.div_ceil(UNIT)).unwrap_or(u32::MAX)
}

#[derive(Debug)]
pub struct MemoryBudget {
    frames: Arc<Semaphore>,
    work: Arc<Semaphore>,
    half_units: usize,
}

/// Bytes held against the budget; given back on drop.
#[derive(Debug, Default)]
pub struct Reservation {
    permit: Option<OwnedSemaphorePermit>,
}

impl Reservation {
    /// Bytes held (rounded up to whole kibibytes).
    pub fn bytes(&self) -> usize {
        self.permit.as_ref().map_or(0, |p| p.num_permits() * UNIT)
    }

    /// Gives back what is held beyond `bytes`.
    pub fn shrink_to(&mut self, bytes: usize) {
        let keep = bytes.div_ceil(UNIT);
        if let Some(permit) = self.permit.as_mut() {
            let excess = permit.num_permits().saturating_sub(keep);
            if excess > 0 {
                drop(permit.split(excess));
            }
        }
    }
}

impl MemoryBudget {
    pub fn new(total_bytes: usize) -> Self {
        let half_units = (total_bytes / 2 / UNIT).clamp(1, Semaphore::MAX_PERMITS);
        Self {
            frames: Arc::new(Semaphore::new(half_units)),
            work: Arc::new(Semaphore::new(half_units)),
            half_units,
        }
    }

    /// Waits until a request frame of `bytes` may be read.
    pub async fn reserve_frame(&self, bytes: usize) -> Reservation {
        Self::reserve(&self.frames, self.half_units, bytes).await
    }

    /// Waits until `bytes` of decompressed records or response may be held.
    pub async fn reserve_work(&self, bytes: usize) -> Reservation {
        Self::reserve(&self.work, self.half_units, bytes).await
    }

    /// `bytes` of work if they are free now (for optional work such as read-ahead).
    pub fn try_reserve_work(&self, bytes: usize) -> Option<Reservation> {
        let n = units(bytes).min(self.half_units as u32);
        self.work
            .clone()
            .try_acquire_many_owned(n)
            .ok()
            .map(|permit| Reservation {
                permit: Some(permit),
            })
    }

    /// The largest reservation of either kind that can be granted.
    pub fn half_bytes(&self) -> usize {
        self.half_units * UNIT
    }

    /// Bytes currently reserved, frames and work together.
    pub fn used_bytes(&self) -> usize {
        let free = self.frames.available_permits() + self.work.available_permits();
        (2 * self.half_units).saturating_sub(free) * UNIT
    }

    async fn reserve(pool: &Arc<Semaphore>, half_units: usize, bytes: usize) -> Reservation {
        // Larger than half the budget cannot be granted; the configuration check keeps every
        // caller below that, and capping here keeps a mistake from waiting forever.
        let n = units(bytes).min(half_units as u32);
        let permit = pool
            .clone()
            .acquire_many_owned(n)
            .await
            .expect("the budget's semaphores are never closed");
        Reservation {
            permit: Some(permit),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn frames_wait_for_room_and_work_has_its_own_half() {
        let budget = Arc::new(MemoryBudget::new(4 * 1024 * 1024));
        let first = budget.reserve_frame(2 * 1024 * 1024).await;
        assert_eq!(budget.used_bytes(), 2 * 1024 * 1024);
        let waiting = {
            let budget = budget.clone();
            tokio::spawn(async move { budget.reserve_frame(1).await })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiting.is_finished(), "the frames half is full");
        // Work is not blocked by frames.
        let work = budget.reserve_work(2 * 1024 * 1024).await;
        assert!(budget.try_reserve_work(1).is_none());
        drop(first);
        let second = tokio::time::timeout(Duration::from_secs(1), waiting)
            .await
            .expect("room was given back")
            .unwrap();
        assert_eq!(second.bytes(), 1024);
        drop(work);
        assert!(budget.try_reserve_work(1024 * 1024).is_some());
    }

    #[tokio::test]
    async fn shrinking_gives_back_exactly() {
        let budget = MemoryBudget::new(8 * 1024 * 1024);
        let mut held = budget.reserve_work(3 * 1024 * 1024).await;
        held.shrink_to(1000);
        assert_eq!(held.bytes(), 1024);
        assert_eq!(budget.used_bytes(), 1024);
        drop(held);
        assert_eq!(budget.used_bytes(), 0);
    }
}
