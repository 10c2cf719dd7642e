//! Where the next append to each partition is expected.
//!
//! Iggy 0.8 answers a send with nothing, yet a Kafka Produce response must carry the base
//! offset. Each partition has a `next_offset`, guarded by an async mutex that an append holds
//! across its send, so this process's appends reach the server in order. The value is only the
//! expectation: other writers (another replica, a native Iggy producer) may have appended since,
//! so every append checks where its batch really landed (`log::locate_batch`, by the ids of
//! `stamps`) and stores the end it saw. The value is learned lazily from the server and
//! forgotten after any failed send (the send may or may not have been appended), and after any
//! lost connection: a restarted server may have dropped messages it had acknowledged but not yet
//! saved.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::Mutex as AsyncMutex;

/// Identifies an Iggy partition by names (ids are reused after deletion, names are what we use).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct PartitionKey {
    pub stream: String,
    pub topic: String,
    pub partition: u32,
}

/// What an append needs to know about its partition; `None` = ask the server first.
pub(crate) type NextOffset = Arc<AsyncMutex<Option<Known>>>;

/// The next offset, valid while the pool has lost no connection since `losses` was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Known {
    pub next: u64,
    pub losses: u64,
}

impl Known {
    /// The next offset if it can still be trusted after `losses_now` lost connections.
    pub(crate) fn current(state: Option<Known>, losses_now: u64) -> Option<u64> {
        state.filter(|k| k.losses == losses_now).map(|k| k.next)
    }
}

#[derive(Default)]
pub(crate) struct OffsetTable {
    partitions: Mutex<HashMap<PartitionKey, NextOffset>>,
}

impl OffsetTable {
    /// The cell for a partition, created empty on first use. Callers lock it for the whole
    /// append.
    pub(crate) fn cell(&self, key: &PartitionKey) -> NextOffset {
        let mut map = self.partitions.lock().unwrap_or_else(|e| e.into_inner());
        map.entry(key.clone()).or_default().clone()
    }

    /// Forgets every partition of a topic, e.g. when it is deleted: a topic re-created under the
    /// same name starts again from the server's view. An append still holding an old cell
    /// finishes against a cell nobody will read again.
    pub(crate) fn forget_topic(&self, stream: &str, topic: &str) {
        let mut map = self.partitions.lock().unwrap_or_else(|e| e.into_inner());
        map.retain(|k, _| !(k.stream == stream && k.topic == topic));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(topic: &str, partition: u32) -> PartitionKey {
        PartitionKey {
            stream: "kafka".into(),
            topic: topic.into(),
            partition,
        }
    }

    #[tokio::test]
    async fn cells_are_shared_per_partition_and_forgotten_per_topic() {
        let table = OffsetTable::default();
        let known = |next| Some(Known { next, losses: 0 });
        *table.cell(&key("a", 0)).lock().await = known(5);
        *table.cell(&key("a", 1)).lock().await = known(7);
        *table.cell(&key("b", 0)).lock().await = known(9);
        assert_eq!(*table.cell(&key("a", 0)).lock().await, known(5));

        table.forget_topic("kafka", "a");
        assert_eq!(*table.cell(&key("a", 0)).lock().await, None);
        assert_eq!(*table.cell(&key("a", 1)).lock().await, None);
        assert_eq!(*table.cell(&key("b", 0)).lock().await, known(9));
    }

    #[test]
    fn a_lost_connection_invalidates_known_offsets() {
        let known = Some(Known { next: 4, losses: 2 });
        assert_eq!(Known::current(known, 2), Some(4));
        assert_eq!(Known::current(known, 3), None);
        assert_eq!(Known::current(None, 0), None);
    }
}
