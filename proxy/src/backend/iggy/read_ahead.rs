//! Read-ahead for sequential readers. A Kafka consumer sends its next Fetch for a partition
//! only after the previous answer arrived, so without help every Fetch waits for a full Iggy
//! round trip. After a read that stopped at its byte or record limit with more data behind it,
//! the poll the next read would make (same offset, same count) starts in the background; the
//! next read at that offset takes its result instead of polling.
//!
//! A prefetched poll is exactly the poll the reader would have made, only earlier, so the
//! answer is the same but for a slightly older high watermark. Bounds: the bytes held (in
//! flight or done) stay under a budget; an unclaimed poll is dropped after `MAX_AGE`; topics
//! deleted or created through this proxy are forgotten at once (one deleted and re-created by
//! another Iggy client can be read from its old contents for at most `MAX_AGE`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use iggy::prelude::{IggyError, PolledMessages};
use tokio::task::JoinHandle;

use super::offsets::PartitionKey;

/// How long a prefetched poll waits for its reader. Consumers fetch again within
/// milliseconds; a reader that did not come back by then has moved on or stopped.
const MAX_AGE: Duration = Duration::from_secs(2);

type Poll = JoinHandle<Result<PolledMessages, IggyError>>;

struct Entry {
    /// The expected size until the poll finished, then the size of what it returned.
    bytes: Arc<AtomicUsize>,
    started: Instant,
    task: Poll,
}

impl Entry {
    fn bytes(&self) -> usize {
        self.bytes.load(Ordering::Relaxed)
    }
}

pub(super) struct ReadAhead {
    budget: usize,
    state: Mutex<State>,
    /// Reads answered from a prefetched poll.
    hits: AtomicU64,
}

#[derive(Default)]
struct State {
    /// Keyed by partition and start offset: several readers of one partition at different
    /// positions (two consumer groups) each keep their own.
    entries: HashMap<(PartitionKey, u64), Entry>,
}

impl State {
    fn remove(&mut self, key: &(PartitionKey, u64)) -> Option<Entry> {
        self.entries.remove(key)
    }

    /// Bytes held: few entries exist at once, so they are summed rather than tracked.
    fn held(&self) -> usize {
        self.entries.values().map(Entry::bytes).sum()
    }

    fn drop_where(&mut self, stale: impl Fn(&(PartitionKey, u64), &Entry) -> bool) {
        let keys: Vec<_> = self
            .entries
            .iter()
            .filter(|(k, e)| stale(k, e))
            .map(|(k, _)| k.clone())
            .collect();
        for key in keys {
            if let Some(entry) = self.remove(&key) {
                entry.task.abort();
            }
        }
    }
}

impl ReadAhead {
    /// `budget` bytes may be held at once; 0 turns read-ahead off.
    pub(super) fn new(budget: usize) -> Self {
        Self {
            budget,
            state: Mutex::new(State::default()),
            hits: AtomicU64::new(0),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts `poll` for `offset` of `partition` unless one is there already or `bytes` (the
    /// expected size) does not fit the budget.
    pub(super) fn start(
        &self,
        partition: PartitionKey,
        offset: u64,
        bytes: usize,
        poll: impl std::future::Future<Output = Result<PolledMessages, IggyError>> + Send + 'static,
    ) {
        if self.budget == 0 {
            return;
        }
        let mut state = self.state();
        state.drop_where(|_, e| e.started.elapsed() > MAX_AGE);
        let key = (partition, offset);
        if state.entries.contains_key(&key) || state.held() + bytes > self.budget {
            return;
        }
        let size = Arc::new(AtomicUsize::new(bytes));
        let actual = size.clone();
        let entry = Entry {
            bytes: size,
            started: Instant::now(),
            task: tokio::spawn(async move {
                let polled = poll.await;
                if let Ok(polled) = &polled {
                    actual.store(polled_bytes(polled), Ordering::Relaxed);
                }
                polled
            }),
        };
        state.entries.insert(key, entry);
    }

    /// The prefetched poll of `partition` at `offset`, if one was started recently and
    /// succeeded with messages; otherwise `None` and the caller polls itself.
    pub(super) async fn take(
        &self,
        partition: &PartitionKey,
        offset: u64,
    ) -> Option<PolledMessages> {
        if self.budget == 0 {
            return None;
        }
        let entry = self.state().remove(&(partition.clone(), offset))?;
        if entry.started.elapsed() > MAX_AGE {
            entry.task.abort();
            return None;
        }
        match entry.task.await {
            Ok(Ok(polled)) if !polled.messages.is_empty() => {
                self.hits.fetch_add(1, Ordering::Relaxed);
                Some(polled)
            }
            _ => None,
        }
    }

    pub(super) fn hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }

    /// Drops everything prefetched from one Iggy topic (it was deleted or created).
    pub(super) fn forget_topic(&self, stream: &str, topic: &str) {
        self.state()
            .drop_where(|(k, _), _| k.stream == stream && k.topic == topic);
    }

    /// Bytes held now (for tests).
    #[cfg(test)]
    pub(super) fn held(&self) -> usize {
        self.state().held()
    }
}

/// What a finished poll holds: payloads and user headers.
fn polled_bytes(polled: &PolledMessages) -> usize {
    polled
        .messages
        .iter()
        .map(|m| m.payload.len() + m.user_headers.as_ref().map_or(0, |h| h.len()))
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(topic: &str) -> PartitionKey {
        PartitionKey {
            stream: "s".into(),
            topic: topic.into(),
            partition: 0,
        }
    }

    fn polled(offsets: &[u64]) -> PolledMessages {
        PolledMessages {
            partition_id: 0,
            current_offset: offsets.last().copied().unwrap_or(0),
            count: offsets.len() as u32,
            messages: offsets
                .iter()
                .map(|&o| {
                    let mut m = iggy::prelude::IggyMessage::builder()
                        .payload(bytes::Bytes::from_static(b"v"))
                        .build()
                        .unwrap();
                    m.header.offset = o;
                    m
                })
                .collect(),
        }
    }

    #[tokio::test]
    async fn a_prefetched_poll_is_taken_once_at_its_offset() {
        let ra = ReadAhead::new(1000);
        ra.start(key("t"), 10, 100, async { Ok(polled(&[10, 11])) });
        assert!(ra.take(&key("t"), 9).await.is_none(), "other offset");
        assert!(ra.take(&key("other"), 10).await.is_none(), "other topic");
        let got = ra.take(&key("t"), 10).await.expect("prefetched");
        assert_eq!(got.messages.len(), 2);
        assert!(ra.take(&key("t"), 10).await.is_none(), "taken once");
        assert_eq!(ra.held(), 0);
    }

    #[tokio::test]
    async fn failures_and_empty_answers_are_not_used() {
        let ra = ReadAhead::new(1000);
        ra.start(key("t"), 1, 10, async { Err(IggyError::Disconnected) });
        ra.start(key("t"), 2, 10, async { Ok(polled(&[])) });
        assert!(ra.take(&key("t"), 1).await.is_none());
        assert!(ra.take(&key("t"), 2).await.is_none());
    }

    #[tokio::test]
    async fn the_budget_bounds_what_is_held() {
        let ra = ReadAhead::new(150);
        ra.start(key("a"), 0, 100, async { Ok(polled(&[0])) });
        ra.start(key("b"), 0, 100, async { Ok(polled(&[0])) });
        assert_eq!(ra.held(), 100, "the second does not fit");
        assert!(ra.take(&key("b"), 0).await.is_none());
        assert!(ra.take(&key("a"), 0).await.is_some());
        ra.start(key("b"), 0, 100, async { Ok(polled(&[0])) });
        assert_eq!(ra.held(), 100, "room again once taken");
        let off = ReadAhead::new(0);
        off.start(key("a"), 0, 1, async { Ok(polled(&[0])) });
        assert_eq!(off.held(), 0, "budget 0 is off");
    }

    /// A poll expected to be small that returns much more counts what it returned, so no
    /// further read-ahead starts until it is taken.
    #[tokio::test]
    async fn finished_polls_count_what_they_returned() {
        let ra = ReadAhead::new(150);
        ra.start(key("a"), 0, 1, async {
            Ok(polled(&(0..120).collect::<Vec<_>>()))
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(ra.held(), 120, "one byte of payload per message");
        ra.start(key("b"), 0, 40, async { Ok(polled(&[0])) });
        assert!(ra.take(&key("b"), 0).await.is_none(), "over the budget");
        assert_eq!(ra.take(&key("a"), 0).await.unwrap().messages.len(), 120);
        assert_eq!(ra.held(), 0);
    }

    #[tokio::test]
    async fn deleted_topics_are_forgotten() {
        let ra = ReadAhead::new(1000);
        ra.start(key("gone"), 0, 10, async { Ok(polled(&[0])) });
        ra.start(key("kept"), 0, 10, async { Ok(polled(&[0])) });
        ra.forget_topic("s", "gone");
        assert!(ra.take(&key("gone"), 0).await.is_none());
        assert!(ra.take(&key("kept"), 0).await.is_some());
        assert_eq!(ra.held(), 0);
    }
}
