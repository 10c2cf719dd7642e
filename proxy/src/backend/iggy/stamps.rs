//! Message ids that let an append find where its batch was stored.
//!
//! Iggy 0.8 answers a send with nothing, and other writers may append to the same partition at
//! any time: another replica, the pod a rollout is replacing, a native Iggy producer, a second
//! bridge. The offset an append expects is therefore a guess until checked. Every message the
//! proxy sends carries an id (Iggy's `u128` message id is the client's to choose, and the server
//! keeps non-zero ids as given) that no other writer uses: the high 64 bits are drawn at random
//! when the back end starts, the low 64 count messages. A batch's ids are consecutive, so its
//! first id names it; `log::locate_batch` looks for it after the send.

use std::sync::atomic::{AtomicU64, Ordering};

pub(crate) struct Stamps {
    /// Random, never 0 (an id of 0 asks the server to pick one).
    prefix: u64,
    sent: AtomicU64,
}

impl Stamps {
    pub(crate) fn new() -> Self {
        let (prefix, _) = uuid::Uuid::new_v4().as_u64_pair();
        Self::with_prefix(prefix.max(1))
    }

    fn with_prefix(prefix: u64) -> Self {
        Self {
            prefix,
            sent: AtomicU64::new(0),
        }
    }

    /// The first of `count` consecutive ids, used by no other batch of this process.
    pub(crate) fn reserve(&self, count: u64) -> u128 {
        let first = self.sent.fetch_add(count, Ordering::Relaxed);
        (u128::from(self.prefix) << 64) | u128::from(first)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_get_disjoint_nonzero_ids() {
        let stamps = Stamps::with_prefix(7);
        let a = stamps.reserve(3);
        let b = stamps.reserve(2);
        assert_eq!(a, 7u128 << 64);
        assert_eq!(
            b,
            a + 3,
            "the next batch starts after the last id of the one before"
        );
        assert_ne!(Stamps::new().reserve(1) >> 64, 0);
    }

    #[test]
    fn two_back_ends_do_not_share_ids() {
        assert_ne!(Stamps::new().reserve(1), Stamps::new().reserve(1));
    }
}
