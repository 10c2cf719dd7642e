//! Replica membership: which proxies form the cluster, and which of them may write each
//! partition and coordinate each group. See docs/replicas.md.
//!
//! Every replica appends a heartbeat to one Iggy partition (`log::MEMBERS_TOPIC`) every
//! `heartbeat_interval_ms` and reads that partition continuously; `view::Ledger` turns what was
//! read into views and write permissions. This module adds what a pure function of the log
//! cannot know: the replica's own lease. A replica writes only while its last heartbeat that it
//! has read back, timed from before it was sent, is younger than the lease minus a margin, so a process paused for longer than its lease (GC, SIGSTOP, a frozen VM)
//! finds its permission gone when it wakes, before anyone else could have taken over.

pub mod log;
pub mod view;

/// Permission to write a partition now, naming the run of ownership it belongs to: state kept
/// for the partition while writing it (idempotent producers' sequences, loaded groups) is
/// valid only within one run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WritePermit {
    pub incarnation: u64,
    /// Where the run began, as far as the views still kept show.
    pub since: i64,
    /// The last log entry read when the permit was given.
    pub seen_at: i64,
}

impl WritePermit {
    /// Whether ownership was not interrupted between `earlier` and this permit: same
    /// incarnation, and this run began no later than what was read when `earlier` was given.
    pub fn continues(&self, earlier: &WritePermit) -> bool {
        self.incarnation == earlier.incarnation && self.since <= earlier.seen_at
    }
}

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use self::log::MEMBERS_TOPIC;
use self::view::{Entry, Ledger, ListenerAddresses, MemberId, View};
use crate::backend::{BackendError, ReadLimits, SharedBackend, TopicSettings};
use crate::config::ClusterSettings;
use crate::groups::offsets_log::now_ms;
use crate::shutdown::Shutdown;

/// How often the log is read between heartbeats.
const POLL_INTERVAL: Duration = Duration::from_millis(100);
/// Entries read per poll.
const READ_LIMITS: ReadLimits = ReadLimits {
    max_records: 1000,
    max_bytes: 1024 * 1024,
};
/// The membership log keeps at least this much history (Iggy deletes whole segments past it).
const MIN_RETENTION_MS: u64 = 3_600_000;

/// This replica's standing in the log.
struct State {
    ledger: Ledger,
    me: MemberId,
    joined_at: Option<i64>,
    /// Offset of the last heartbeat the log took, and when it was sent.
    last_beat: Option<(i64, Instant)>,
    /// The last heartbeat also read back: the lease runs from when it was sent.
    confirmed_beat: Option<(i64, Instant)>,
    /// The next offset to read.
    next: i64,
    /// Set on shutdown before the `Leave` entry is sent: nothing more is written.
    leaving: bool,
}

pub struct Membership {
    backend: SharedBackend,
    broker_id: i32,
    host: String,
    port: i32,
    listeners: ListenerAddresses,
    lease: Duration,
    heartbeat_interval: Duration,
    state: Mutex<State>,
}

impl Membership {
    pub fn new(
        backend: SharedBackend,
        settings: &ClusterSettings,
        broker_id: i32,
        host: String,
        port: i32,
        listeners: ListenerAddresses,
    ) -> Self {
        let lease_ms = settings.lease_ms as i64;
        Self {
            backend,
            broker_id,
            host,
            port,
            listeners,
            lease: Duration::from_millis(settings.lease_ms),
            heartbeat_interval: Duration::from_millis(settings.heartbeat_interval_ms),
            state: Mutex::new(State {
                ledger: Ledger::new(lease_ms),
                me: new_incarnation(broker_id),
                joined_at: None,
                last_beat: None,
                confirmed_beat: None,
                next: -1,
                leaving: false,
            }),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The view at the newest entry read: the brokers clients are told about.
    pub fn view(&self) -> Arc<View> {
        self.state().ledger.latest()
    }

    pub fn me(&self) -> MemberId {
        self.state().me
    }

    /// `Ok` once this replica is a member: its heartbeat was read back, its lease holds, and the
    /// newest view has it (a replica waiting for its broker id to be free is not).
    pub fn readiness(&self) -> Result<(), String> {
        let state = self.state();
        if state.leaving {
            return Err("leaving the cluster".into());
        }
        let Some((_, sent)) = state.confirmed_beat else {
            return Err("joining the cluster: no heartbeat read back yet".into());
        };
        if sent.elapsed() >= self.lease - self.margin() {
            return Err("membership lease lapsed; joining again".into());
        }
        if !state.ledger.latest().contains(state.me) {
            return Err(format!(
                "waiting for broker id {} (held by another process until it leaves or its lease ends)",
                self.broker_id
            ));
        }
        Ok(())
    }

    /// `Some` when this replica may append to the partition now, naming this incarnation and
    /// where its current run of ownership began.
    pub fn write_permit(&self, topic: &str, partition: i32) -> Option<WritePermit> {
        let state = self.state();
        let (_, sent) = state.confirmed_beat?;
        let lease_left = sent.elapsed() < self.lease - self.margin();
        if state.leaving || !lease_left || state.ledger.is_banned(state.me) {
            return None;
        }
        let since = state.ledger.may_write(state.me, topic, partition)?;
        Some(WritePermit {
            incarnation: state.me.incarnation,
            since,
            seen_at: state.ledger.applied(),
        })
    }

    /// Time kept between the end of this replica's own lease and when others may take over:
    /// covers a send already on its way and clock-rate differences.
    fn margin(&self) -> Duration {
        self.lease / 5
    }

    /// Reads and heartbeats until shutdown, then leaves.
    pub async fn run(self: Arc<Self>, mut shutdown: Shutdown) {
        let mut last_beat_attempt: Option<Instant> = None;
        let mut reported: Option<String> = None;
        loop {
            let step = async {
                self.read_new().await?;
                if last_beat_attempt.is_none_or(|t| t.elapsed() >= self.heartbeat_interval) {
                    last_beat_attempt = Some(Instant::now());
                    self.heartbeat().await?;
                }
                Ok::<(), BackendError>(())
            };
            match step.await {
                Ok(()) => reported = None,
                // Iggy being unreachable is reported by the back end, once.
                Err(e) if e.is_unavailable() => {
                    tracing::debug!(error = %e, "membership log unavailable");
                }
                Err(e) => {
                    let reason = e.to_string();
                    if reported.as_ref() != Some(&reason) {
                        tracing::warn!(error = %reason, "membership log unavailable");
                        reported = Some(reason);
                    }
                }
            }
            tokio::select! {
                () = shutdown.recv() => break,
                () = tokio::time::sleep(POLL_INTERVAL) => {}
            }
        }
        self.leave().await;
    }

    /// Creates the log if needed and picks where to start reading: a few leases back, so that
    /// views are exact after one pass over what was read.
    async fn start_position(&self) -> Result<i64, BackendError> {
        let retention = MIN_RETENTION_MS.max(self.lease.as_millis() as u64 * 100);
        let settings = TopicSettings {
            partitions: 1,
            retention_ms: Some(retention as i64),
            ..TopicSettings::default()
        };
        match self.backend.create_topic(MEMBERS_TOPIC, &settings).await {
            Ok(()) | Err(BackendError::TopicAlreadyExists(_)) => {}
            Err(e) => return Err(e),
        }
        let since = now_ms() - 3 * self.lease.as_millis() as i64;
        let bounds = self.backend.bounds(MEMBERS_TOPIC, 0).await?;
        let start = match self
            .backend
            .offset_for_timestamp(MEMBERS_TOPIC, 0, since)
            .await?
        {
            Some((offset, _)) => offset,
            None => bounds.high_watermark,
        };
        // Reading from the very first entry there ever was, nothing before is missing.
        if start == 0 && bounds.log_start == 0 {
            self.state().ledger.assume_complete();
        }
        Ok(start)
    }

    async fn read_new(&self) -> Result<(), BackendError> {
        let mut next = self.state().next;
        if next < 0 {
            next = self.start_position().await?;
            self.state().next = next;
        }
        loop {
            let read = self.backend.read(MEMBERS_TOPIC, 0, next, READ_LIMITS).await;
            let records = match read {
                Ok(result) => result.records,
                Err(BackendError::OffsetOutOfRange { .. }) => {
                    // Fell behind retention (a very long pause): start over as a new reader.
                    tracing::warn!("membership log moved past this replica; reading it anew");
                    let mut state = self.state();
                    state.ledger = Ledger::new(self.lease.as_millis() as i64);
                    state.next = -1;
                    return Ok(());
                }
                Err(e) => return Err(e),
            };
            if records.is_empty() {
                return Ok(());
            }
            let before = self.view();
            {
                let mut state = self.state();
                for fetched in &records {
                    if let Some(entry) = log::from_record(&fetched.record) {
                        state
                            .ledger
                            .apply(fetched.offset, fetched.append_time_ms, entry);
                    }
                    next = fetched.offset + 1;
                }
                state.next = next;
                if let Some(beat) = state.last_beat {
                    if state.ledger.applied() >= beat.0 {
                        state.confirmed_beat = Some(beat);
                    }
                }
            }
            let after = self.view();
            if before != after {
                let members: Vec<String> = after
                    .members
                    .iter()
                    .map(|m| format!("{}@{}:{}", m.id.broker_id, m.host, m.port))
                    .collect();
                tracing::info!(members = ?members, "cluster membership changed");
            }
        }
    }

    async fn heartbeat(&self) -> Result<(), BackendError> {
        let entry = {
            let mut state = self.state();
            if state.leaving || state.next < 0 {
                return Ok(());
            }
            let lapsed = state
                .last_beat
                .is_some_and(|(_, sent)| sent.elapsed() >= self.lease - self.margin());
            if lapsed || state.ledger.is_banned(state.me) {
                // Everyone has dropped this incarnation (or will before it could write again):
                // join again as a new one, behind whoever holds the broker id now.
                tracing::warn!(
                    broker_id = self.broker_id,
                    "membership lease lapsed; joining again as a new incarnation"
                );
                state.me = new_incarnation(self.broker_id);
                state.joined_at = None;
                state.last_beat = None;
                state.confirmed_beat = None;
            }
            let previous = match state.last_beat {
                None => None,
                Some((offset, _)) => match state.ledger.time_of(offset) {
                    Some(time) => Some((offset, time)),
                    // Not read back yet: wait for it rather than send without it.
                    None => return Ok(()),
                },
            };
            Entry::Heartbeat {
                id: state.me,
                host: self.host.clone(),
                port: self.port,
                listeners: self.listeners.clone(),
                joined_at: state.joined_at,
                previous,
                applied: state.ledger.applied(),
            }
        };
        let sent = Instant::now();
        let offset = self
            .backend
            .append(MEMBERS_TOPIC, 0, vec![log::to_record(&entry, now_ms())])
            .await?;
        let mut state = self.state();
        if entry.id() == state.me {
            state.joined_at.get_or_insert(offset);
            state.last_beat = Some((offset, sent));
        }
        Ok(())
    }

    /// Stops writing, then tells the others, so that this replica's partitions move at once.
    async fn leave(&self) {
        let id = {
            let mut state = self.state();
            state.leaving = true;
            if state.last_beat.is_none() {
                return;
            }
            state.me
        };
        let record = log::to_record(&Entry::Leave { id }, now_ms());
        if let Err(e) = self.backend.append(MEMBERS_TOPIC, 0, vec![record]).await {
            tracing::warn!(error = %e, "could not announce leaving the cluster; partitions move after the lease");
        }
    }
}

fn new_incarnation(broker_id: i32) -> MemberId {
    MemberId {
        broker_id,
        incarnation: uuid::Uuid::new_v4().as_u64_pair().0,
    }
}
