//! Message ids that let an append find where its batch was stored.
//!
//! Iggy 0.8 answers a send with nothing, and other writers may append to the same partition at
//! any time: another replica, the pod a rollout is replacing, a native Iggy producer, a second
//! bridge. The offset an append expects is therefore a guess until checked. Every message the
//! proxy sends carries an id (Iggy's `u128` message id is the client's to choose, and the server
//! keeps non-zero ids as given) that no other writer uses: the high 64 bits are drawn at random
//! when the back end starts, the low 64 count messages. A batch's ids are consecutive, so its
//! first id names it; `log::locate_batch` looks for it after the send.
//!
//! Records of an idempotent producer's batch carry the producer instead (`producer_id`): a
//! marker, the epoch, the producer id, a batch-start flag and the sequence. Those ids are unique
//! as long as the producer's sequences are, and they let the partition's next leader rebuild
//! the producer's recent batches from the log (`ProducerMark`).

use std::sync::atomic::{AtomicU64, Ordering};

use crate::backend::ProducerMark;

/// Top 16 bits of an id that carries a producer ("KI"). Another writer's random id has it with
/// odds of 1 in 65,536; misreading one only adds a producer nobody uses.
const PRODUCER_MARKER: u128 = 0x4B49;
const BATCH_START: u128 = 1 << 31;

/// The id of a record of an idempotent batch.
pub(crate) fn producer_id(mark: ProducerMark) -> u128 {
    (PRODUCER_MARKER << 112)
        | (u128::from(mark.epoch as u16) << 96)
        | (u128::from(mark.producer_id as u64) << 32)
        | if mark.batch_start { BATCH_START } else { 0 }
        | u128::from(mark.sequence as u32 & 0x7fff_ffff)
}

/// The producer an id carries, if it carries one.
pub(crate) fn producer_mark(id: u128) -> Option<ProducerMark> {
    (id >> 112 == PRODUCER_MARKER).then_some(ProducerMark {
        epoch: (id >> 96) as u16 as i16,
        producer_id: (id >> 32) as u64 as i64,
        batch_start: id & BATCH_START != 0,
        sequence: (id & 0x7fff_ffff) as i32,
    })
}

pub(crate) struct Stamps {
    /// Random, never 0 (an id of 0 asks the server to pick one).
    prefix: u64,
    sent: AtomicU64,
}

impl Stamps {
    pub(crate) fn new() -> Self {
        let (mut prefix, _) = uuid::Uuid::new_v4().as_u64_pair();
        if u128::from(prefix >> 48) == PRODUCER_MARKER {
            prefix ^= 1 << 63;
        }
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
    fn producer_ids_round_trip_and_other_ids_carry_none() {
        let marks = [
            ProducerMark {
                producer_id: i64::MAX,
                epoch: i16::MAX,
                sequence: i32::MAX,
                batch_start: true,
            },
            ProducerMark {
                producer_id: 0,
                epoch: 0,
                sequence: 0,
                batch_start: false,
            },
            ProducerMark {
                producer_id: 7 << 52 | 12_345,
                epoch: 3,
                sequence: 99,
                batch_start: false,
            },
        ];
        for mark in marks {
            assert_eq!(producer_mark(producer_id(mark)), Some(mark));
        }
        assert_eq!(producer_mark(Stamps::new().reserve(1)), None);
        assert_eq!(producer_mark(0), None);
    }

    #[test]
    fn two_back_ends_do_not_share_ids() {
        assert_ne!(Stamps::new().reserve(1), Stamps::new().reserve(1));
    }
}
