//! Per-partition state owned by the partition's leader: the writer lock that orders appends,
//! the run of ownership the writer is in (`WriterState::hold`, with the `WritePermit` the
//! cluster gives right before each append), idempotent-producer sequence tracking (rebuilt from
//! the log when a run begins), and the wake-up that ends Fetch long-polls early.
//!
//! Where the rest of a partition's truth lives: who leads it is `cluster::Cluster` (from the
//! membership log, `membership::view`); the offset a batch got is what the back end found it
//! stored at (`backend::iggy::log::locate_batch`), never a count kept here; the next offset
//! the Iggy back end expects (`backend::iggy::offsets`) is only a guess that makes the
//! common case one poll.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use crate::backend::ProducerMark;
use crate::cluster::WritePermit;

/// Kafka keeps the last five batches per producer to answer retries (max.in.flight <= 5).
const RETAINED_BATCHES: usize = 5;
/// Producers remembered per partition; the least recently used is forgotten beyond this.
const MAX_PRODUCERS_PER_PARTITION: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct BatchRecord {
    first_sequence: i32,
    last_sequence: i32,
    base_offset: i64,
}

#[derive(Debug)]
struct ProducerState {
    epoch: i16,
    batches: VecDeque<BatchRecord>,
    last_used: u64,
    /// When its last batch was appended here (ms since the epoch); -1 when only read back
    /// from the log.
    last_append_ms: i64,
}

/// An idempotent producer as DescribeProducers reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ActiveProducer {
    pub producer_id: i64,
    pub epoch: i16,
    pub last_sequence: i32,
    pub last_append_ms: i64,
}

/// Identity of an idempotent batch, as carried in the record batch header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchIdentity {
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub first_sequence: i32,
    pub record_count: i32,
}

impl BatchIdentity {
    fn last_sequence(&self) -> i32 {
        // Sequences wrap from i32::MAX to 0.
        ((i64::from(self.first_sequence) + i64::from(self.record_count) - 1) % (1i64 << 31)) as i32
    }
}

/// What to do with an idempotent batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SequenceCheck {
    /// New and in order: append it, then call `WriterState::record`.
    Append,
    /// A retry of a batch already written at this offset: answer with it, write nothing.
    Duplicate {
        base_offset: i64,
    },
    OutOfOrder,
    /// The producer's epoch is older than one already seen.
    Fenced,
}

/// Guarded by the partition's writer lock.
#[derive(Debug, Default)]
pub struct WriterState {
    producers: HashMap<i64, ProducerState>,
    clock: u64,
    /// The ownership run the producer state was kept in.
    permit: Option<WritePermit>,
    /// Set when a new run begins: the state is read back from the log before the next append.
    needs_rebuild: bool,
}

impl WriterState {
    /// Starts writing under `permit`. A new run of ownership (this process just started, or
    /// another replica had the partition in between) needs the producers' recent batches read
    /// back from the log (`rebuild`): what this replica remembers may be out of date.
    pub fn hold(&mut self, permit: WritePermit) {
        let continued = self.permit.is_some_and(|held| permit.continues(&held));
        if !continued {
            self.producers.clear();
            self.needs_rebuild = true;
        }
        self.permit = Some(permit);
    }

    pub fn needs_rebuild(&self) -> bool {
        self.needs_rebuild
    }

    /// Rebuilds the producers' recent batches from the marks of the partition's last records,
    /// in offset order. A batch whose first record is not among them is left out: a retry of it
    /// is then appended again rather than refused as out of order.
    pub fn rebuild(&mut self, records: impl IntoIterator<Item = (i64, ProducerMark)>) {
        self.producers.clear();
        self.needs_rebuild = false;
        // (identity so far, base offset, offset of its last record)
        let mut open: Option<(BatchIdentity, i64, i64)> = None;
        for (offset, mark) in records {
            let continues = open.as_ref().is_some_and(|(batch, _, last)| {
                !mark.batch_start
                    && mark.producer_id == batch.producer_id
                    && mark.epoch == batch.producer_epoch
                    && mark.sequence == next_sequence(batch.last_sequence())
                    && offset == last + 1
            });
            if continues {
                if let Some((batch, _, last)) = open.as_mut() {
                    batch.record_count += 1;
                    *last = offset;
                }
                continue;
            }
            if let Some((batch, base, _)) = open.take() {
                self.remember(&batch, base, -1);
            }
            if mark.batch_start {
                let batch = BatchIdentity {
                    producer_id: mark.producer_id,
                    producer_epoch: mark.epoch,
                    first_sequence: mark.sequence,
                    record_count: 1,
                };
                open = Some((batch, offset, offset));
            }
        }
        if let Some((batch, base, _)) = open {
            self.remember(&batch, base, -1);
        }
    }

    /// The producers whose batches this partition remembers, by producer id.
    pub fn active_producers(&self) -> Vec<ActiveProducer> {
        let mut producers: Vec<ActiveProducer> = self
            .producers
            .iter()
            .filter_map(|(id, state)| {
                let last = state.batches.back()?;
                Some(ActiveProducer {
                    producer_id: *id,
                    epoch: state.epoch,
                    last_sequence: last.last_sequence,
                    last_append_ms: state.last_append_ms,
                })
            })
            .collect();
        producers.sort_unstable_by_key(|p| p.producer_id);
        producers
    }

    pub fn check(&self, batch: &BatchIdentity) -> SequenceCheck {
        let Some(state) = self.producers.get(&batch.producer_id) else {
            // Unknown producer (new, or forgotten across a proxy restart): accept its sequence as
            // the starting point rather than fencing every producer after a restart.
            return SequenceCheck::Append;
        };
        if batch.producer_epoch < state.epoch {
            return SequenceCheck::Fenced;
        }
        if batch.producer_epoch > state.epoch {
            return SequenceCheck::Append;
        }
        let last = batch.last_sequence();
        if let Some(seen) = state
            .batches
            .iter()
            .find(|b| b.first_sequence == batch.first_sequence && b.last_sequence == last)
        {
            return SequenceCheck::Duplicate {
                base_offset: seen.base_offset,
            };
        }
        match state.batches.back() {
            Some(prev) if next_sequence(prev.last_sequence) != batch.first_sequence => {
                SequenceCheck::OutOfOrder
            }
            _ => SequenceCheck::Append,
        }
    }

    /// Remembers a batch that was appended at `base_offset` just now.
    pub fn record(&mut self, batch: &BatchIdentity, base_offset: i64) {
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(-1, |d| d.as_millis() as i64);
        self.remember(batch, base_offset, now_ms);
    }

    fn remember(&mut self, batch: &BatchIdentity, base_offset: i64, appended_ms: i64) {
        self.clock += 1;
        let clock = self.clock;
        let state = self
            .producers
            .entry(batch.producer_id)
            .or_insert_with(|| ProducerState {
                epoch: batch.producer_epoch,
                batches: VecDeque::new(),
                last_used: clock,
                last_append_ms: appended_ms,
            });
        if batch.producer_epoch != state.epoch {
            state.epoch = batch.producer_epoch;
            state.batches.clear();
        }
        state.last_used = clock;
        state.last_append_ms = appended_ms;
        if state.batches.len() == RETAINED_BATCHES {
            state.batches.pop_front();
        }
        state.batches.push_back(BatchRecord {
            first_sequence: batch.first_sequence,
            last_sequence: batch.last_sequence(),
            base_offset,
        });
        if self.producers.len() > MAX_PRODUCERS_PER_PARTITION {
            if let Some(oldest) = self
                .producers
                .iter()
                .min_by_key(|(_, s)| s.last_used)
                .map(|(id, _)| *id)
            {
                self.producers.remove(&oldest);
            }
        }
    }
}

fn next_sequence(seq: i32) -> i32 {
    if seq == i32::MAX {
        0
    } else {
        seq + 1
    }
}

/// State of one partition on its leader.
#[derive(Debug, Default)]
pub struct PartitionState {
    /// Held across check → append → record so that offsets and sequences stay consistent.
    pub writer: tokio::sync::Mutex<WriterState>,
    /// Signalled after every append; Fetch long-polls wait on it.
    pub appended: Notify,
    /// Places in line for appends, taken once a request's records are decoded.
    pub appends: Arc<Line>,
    /// Last log start offset read from the back end, and when.
    log_start: Mutex<Option<(i64, Instant)>>,
}

/// How long a partition's log start offset is reused in Produce answers before it is re-read.
const LOG_START_MAX_AGE: Duration = Duration::from_secs(5);

impl PartitionState {
    /// The log start offset if it was read recently.
    pub fn cached_log_start(&self) -> Option<i64> {
        let cached = *self
            .log_start
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        cached.and_then(|(offset, at)| (at.elapsed() < LOG_START_MAX_AGE).then_some(offset))
    }

    pub fn cache_log_start(&self, offset: i64) {
        *self
            .log_start
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some((offset, Instant::now()));
    }

    /// The last log start offset read, however old (0 before the first read).
    pub fn last_log_start(&self) -> i64 {
        self.log_start
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .map_or(0, |(offset, _)| offset)
    }
}

/// A first-come, first-served line. Work is done concurrently, but some steps must happen in
/// the order the requests arrived: appends to one partition (an idempotent producer with several
/// requests in flight relies on it), and, per connection, the decoding of Produce requests that
/// comes before them. A place is taken synchronously, in arrival order, and the step waits for
/// it.
#[derive(Debug, Default)]
pub struct Line {
    order: Mutex<LineOrder>,
    changed: Notify,
}

#[derive(Debug, Default)]
struct LineOrder {
    next_ticket: u64,
    serving: u64,
    /// Places given up before their turn came (their request failed early).
    finished_early: std::collections::BTreeSet<u64>,
}

impl Line {
    /// Takes the next place in line. Synchronous, so callers take places in request order.
    pub fn take_turn(self: &Arc<Self>) -> Turn {
        let mut order = self.order.lock().unwrap_or_else(PoisonError::into_inner);
        let ticket = order.next_ticket;
        order.next_ticket += 1;
        Turn {
            line: self.clone(),
            ticket,
        }
    }
}

/// A place in a line; dropping it lets the next one go.
#[derive(Debug)]
pub struct Turn {
    line: Arc<Line>,
    ticket: u64,
}

impl Turn {
    /// Resolves once every earlier place in line has been used or given up.
    pub async fn ready(&self) {
        loop {
            let changed = self.line.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if self
                .line
                .order
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .serving
                == self.ticket
            {
                return;
            }
            changed.await;
        }
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        let mut order = self
            .line
            .order
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if order.serving == self.ticket {
            order.serving += 1;
            loop {
                let next = order.serving;
                if !order.finished_early.remove(&next) {
                    break;
                }
                order.serving += 1;
            }
        } else {
            order.finished_early.insert(self.ticket);
        }
        drop(order);
        self.line.changed.notify_waiters();
    }
}

/// All partitions this proxy has touched.
#[derive(Debug, Default)]
pub struct PartitionRegistry {
    partitions: Mutex<HashMap<(String, i32), Arc<PartitionState>>>,
}

impl PartitionRegistry {
    pub fn get(&self, topic: &str, partition: i32) -> Arc<PartitionState> {
        let mut map = self
            .partitions
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(state) = map.get(&(topic.to_string(), partition)) {
            return state.clone();
        }
        map.entry((topic.to_string(), partition))
            .or_default()
            .clone()
    }

    /// Forgets a partition that turned out not to exist, unless a request still uses it, so
    /// that requests for made-up topics leave no state behind.
    pub fn forget_if_unused(&self, topic: &str, partition: i32) {
        let mut map = self
            .partitions
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let key = (topic.to_string(), partition);
        if map
            .get(&key)
            .is_some_and(|state| Arc::strong_count(state) == 1)
        {
            map.remove(&key);
        }
    }

    /// Partitions with state, for tests and metrics.
    pub fn len(&self) -> usize {
        self.partitions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Forgets a deleted topic's partitions (a recreated topic starts clean).
    pub fn forget_topic(&self, topic: &str) {
        self.partitions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|(t, _), _| t != topic);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(pid: i64, epoch: i16, first: i32, count: i32) -> BatchIdentity {
        BatchIdentity {
            producer_id: pid,
            producer_epoch: epoch,
            first_sequence: first,
            record_count: count,
        }
    }

    #[test]
    fn in_order_duplicate_and_out_of_order() {
        let mut w = WriterState::default();
        let b0 = batch(1, 0, 0, 10);
        assert_eq!(w.check(&b0), SequenceCheck::Append);
        w.record(&b0, 100);
        let b1 = batch(1, 0, 10, 5);
        assert_eq!(w.check(&b1), SequenceCheck::Append);
        w.record(&b1, 110);
        assert_eq!(w.check(&b0), SequenceCheck::Duplicate { base_offset: 100 });
        assert_eq!(w.check(&b1), SequenceCheck::Duplicate { base_offset: 110 });
        assert_eq!(w.check(&batch(1, 0, 20, 1)), SequenceCheck::OutOfOrder);
        assert_eq!(w.check(&batch(1, 0, 15, 1)), SequenceCheck::Append);
    }

    /// The marks the store keeps for `batch` appended at `base`.
    fn marks(b: BatchIdentity, base: i64) -> Vec<(i64, ProducerMark)> {
        let producer = crate::backend::ProducerBatch {
            producer_id: b.producer_id,
            epoch: b.producer_epoch,
            first_sequence: b.first_sequence,
        };
        (0..b.record_count as usize)
            .map(|i| (base + i as i64, producer.mark(i)))
            .collect()
    }

    #[test]
    fn a_new_run_rebuilds_producer_batches_from_the_log() {
        let (a0, a1, b0) = (batch(1, 0, 0, 3), batch(1, 0, 3, 2), batch(2, 5, 7, 1));
        let mut w = WriterState::default();
        w.hold(WritePermit::default());
        assert!(w.needs_rebuild(), "a fresh process reads the log first");
        // The log's tail starts in the middle of a batch of producer 3, then a0, b0, a1
        // (another leader appended them), with a record of no producer in between.
        let mut tail = marks(batch(3, 0, 0, 4), 10)[2..].to_vec();
        tail.extend(marks(a0, 20));
        tail.extend(marks(b0, 23));
        tail.extend(marks(a1, 25));
        w.rebuild(tail);
        assert!(!w.needs_rebuild());
        assert_eq!(w.check(&a0), SequenceCheck::Duplicate { base_offset: 20 });
        assert_eq!(w.check(&a1), SequenceCheck::Duplicate { base_offset: 25 });
        assert_eq!(w.check(&b0), SequenceCheck::Duplicate { base_offset: 23 });
        assert_eq!(w.check(&batch(1, 0, 5, 1)), SequenceCheck::Append);
        assert_eq!(w.check(&batch(1, 0, 9, 1)), SequenceCheck::OutOfOrder);
        // The batch cut off at the start of the tail is unknown: its retry is appended.
        assert_eq!(w.check(&batch(3, 0, 0, 4)), SequenceCheck::Append);

        // The same run goes on without reading again; a new one reads again.
        let held = WritePermit {
            incarnation: 1,
            since: 4,
            seen_at: 9,
        };
        w.hold(held);
        assert!(w.needs_rebuild());
        w.rebuild(Vec::new());
        w.hold(WritePermit {
            seen_at: 12,
            ..held
        });
        assert!(
            !w.needs_rebuild(),
            "a run that began before what was last seen continues"
        );
        w.hold(WritePermit {
            since: 13,
            seen_at: 14,
            ..held
        });
        assert!(
            w.needs_rebuild(),
            "a run that began after: the partition changed hands"
        );
    }

    #[test]
    fn epochs_fence_and_reset() {
        let mut w = WriterState::default();
        w.record(&batch(1, 3, 0, 1), 0);
        assert_eq!(w.check(&batch(1, 2, 1, 1)), SequenceCheck::Fenced);
        assert_eq!(w.check(&batch(1, 4, 0, 1)), SequenceCheck::Append);
        w.record(&batch(1, 4, 0, 1), 1);
        assert_eq!(w.check(&batch(1, 4, 1, 1)), SequenceCheck::Append);
    }

    #[test]
    fn only_five_batches_are_remembered() {
        let mut w = WriterState::default();
        for i in 0..6 {
            w.record(&batch(1, 0, i, 1), i64::from(i));
        }
        // The first batch fell out of the window: a retry of it is now out of order.
        assert_eq!(w.check(&batch(1, 0, 0, 1)), SequenceCheck::OutOfOrder);
        assert_eq!(
            w.check(&batch(1, 0, 5, 1)),
            SequenceCheck::Duplicate { base_offset: 5 }
        );
    }

    #[test]
    fn sequences_wrap() {
        let mut w = WriterState::default();
        w.record(&batch(1, 0, i32::MAX - 1, 2), 0);
        assert_eq!(w.check(&batch(1, 0, 0, 1)), SequenceCheck::Append);
    }

    #[test]
    fn producer_count_is_bounded() {
        let mut w = WriterState::default();
        for pid in 0..(MAX_PRODUCERS_PER_PARTITION as i64 + 10) {
            w.record(&batch(pid, 0, 0, 1), pid);
        }
        assert!(w.producers.len() <= MAX_PRODUCERS_PER_PARTITION);
    }

    #[tokio::test]
    async fn turns_are_served_in_the_order_taken() {
        let line = Arc::new(Line::default());
        let first = line.take_turn();
        let second = line.take_turn();
        let third = line.take_turn();
        let log = Arc::new(Mutex::new(Vec::new()));
        let spawn = |turn: Turn, name: &'static str| {
            let log = log.clone();
            tokio::spawn(async move {
                turn.ready().await;
                log.lock().unwrap().push(name);
            })
        };
        let c = spawn(third, "third");
        let b = spawn(second, "second");
        tokio::task::yield_now().await;
        assert!(
            log.lock().unwrap().is_empty(),
            "nobody goes before the first place"
        );
        first.ready().await;
        drop(first);
        b.await.unwrap();
        c.await.unwrap();
        assert_eq!(*log.lock().unwrap(), ["second", "third"]);
    }

    #[tokio::test]
    async fn a_place_given_up_early_does_not_block_the_line() {
        let line = Arc::new(Line::default());
        let first = line.take_turn();
        let second = line.take_turn();
        let third = line.take_turn();
        drop(second); // failed before its turn
        drop(first);
        tokio::time::timeout(std::time::Duration::from_secs(1), third.ready())
            .await
            .expect("third is served");
    }
}
