//! The group coordinator: Kafka's classic consumer-group protocol run inside the proxy, with
//! committed offsets kept in Iggy (the internal `__consumer_offsets` topic, see
//! docs/consumer-groups.md).
//!
//! Each group belongs to one partition of the offsets topic; the replica owning that partition
//! (see [`crate::cluster::Cluster::group_coordinator`]) coordinates the group and is the single
//! writer of its offsets. A partition is replayed into memory the first time one of its groups
//! is used, so a restarted proxy resumes from what was committed.

pub mod offsets_log;
pub mod state;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use kafka_protocol::error::ResponseError;

use crate::backend::{ReadLimits, SharedBackend, TopicSettings};
use crate::cluster::Cluster;
use crate::config::GroupSettings;
use crate::metrics::Metrics;
use offsets_log::{now_ms, CommittedOffset, OffsetEntry, OFFSETS_TOPIC};
use state::{Group, GroupState, JoinOutcome, JoinRequest, Reply, Rules, SyncOutcome};

pub type SharedGroup = Arc<Mutex<Group>>;

/// How often timers (session expiry, end of join phases) are checked.
const TICK: Duration = Duration::from_millis(100);
/// How often consumer lag is recomputed for the metrics.
const LAG_INTERVAL: Duration = Duration::from_secs(5);
/// How often offsets are expired and refreshed.
const HOUSEKEEPING_INTERVAL: Duration = Duration::from_secs(60);

struct OffsetsPartition {
    loaded: tokio::sync::OnceCell<()>,
    /// Appends to one offsets partition happen one at a time, in the order the commits are
    /// applied in memory.
    write: tokio::sync::Mutex<()>,
}

pub struct GroupCoordinator {
    settings: GroupSettings,
    rules: Rules,
    backend: SharedBackend,
    metrics: Arc<Metrics>,
    groups: Mutex<HashMap<String, SharedGroup>>,
    topic_ready: tokio::sync::OnceCell<()>,
    partitions: Vec<OffsetsPartition>,
    /// Lag series reported last time, so vanished ones are removed.
    lag_series: Mutex<BTreeSet<(String, String, String)>>,
    /// Member-count series reported last time.
    member_series: Mutex<BTreeSet<String>>,
}

/// A committed offset as OffsetFetch reports it.
pub type GroupOffsets = BTreeMap<(String, i32), CommittedOffset>;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding a group lock is a bug; the state is still usable for others.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Failing to load group state is tried again on the next group request; while Iggy is
/// unreachable (logged once by the back end) that is not worth a warning per request.
fn log_load_failure(e: &crate::backend::BackendError, partition: Option<u32>) {
    if e.is_unavailable() {
        tracing::debug!(?partition, error = %e, "cannot load committed offsets yet");
    } else {
        tracing::warn!(?partition, error = %e, "cannot load committed offsets");
    }
}

impl GroupCoordinator {
    pub fn new(settings: GroupSettings, backend: SharedBackend, metrics: Arc<Metrics>) -> Self {
        let rules = Rules {
            min_session_timeout: Duration::from_millis(settings.min_session_timeout_ms),
            max_session_timeout: Duration::from_millis(settings.max_session_timeout_ms),
            initial_rebalance_delay: Duration::from_millis(settings.initial_rebalance_delay_ms),
            max_members: settings.max_members_per_group,
            max_member_metadata_bytes: settings.max_member_metadata_bytes,
        };
        let partitions = (0..settings.offsets_topic_partitions)
            .map(|_| OffsetsPartition {
                loaded: tokio::sync::OnceCell::new(),
                write: tokio::sync::Mutex::new(()),
            })
            .collect();
        Self {
            settings,
            rules,
            backend,
            metrics,
            groups: Mutex::new(HashMap::new()),
            topic_ready: tokio::sync::OnceCell::new(),
            partitions,
            lag_series: Mutex::new(BTreeSet::new()),
            member_series: Mutex::new(BTreeSet::new()),
        }
    }

    pub fn settings(&self) -> &GroupSettings {
        &self.settings
    }

    fn partition_of(&self, group: &str) -> u32 {
        Cluster::offsets_partition(group, self.settings.offsets_topic_partitions) as u32
    }

    /// Makes sure the offsets topic exists and the group's partition was replayed. Errors are
    /// retriable for clients (COORDINATOR_LOAD_IN_PROGRESS / COORDINATOR_NOT_AVAILABLE).
    pub async fn ready(&self, group: &str) -> Result<(), ResponseError> {
        self.topic_ready
            .get_or_try_init(|| self.ensure_offsets_topic())
            .await
            .map_err(|e| {
                log_load_failure(&e, None);
                ResponseError::CoordinatorNotAvailable
            })?;
        let p = self.partition_of(group);
        let partition = &self.partitions[p as usize];
        partition
            .loaded
            .get_or_try_init(|| self.load_partition(p))
            .await
            .map_err(|e| {
                log_load_failure(&e, Some(p));
                ResponseError::CoordinatorNotAvailable
            })?;
        Ok(())
    }

    async fn ensure_offsets_topic(&self) -> Result<(), crate::backend::BackendError> {
        let wanted = self.settings.offsets_topic_partitions;
        match self.backend.describe_topic(OFFSETS_TOPIC).await? {
            Some(info) if info.partitions >= wanted => Ok(()),
            Some(_) => self.backend.create_partitions(OFFSETS_TOPIC, wanted).await,
            None => {
                let settings = TopicSettings {
                    partitions: wanted,
                    retention_ms: Some(self.settings.offsets_retention_ms as i64),
                    max_bytes: None,
                };
                match self.backend.create_topic(OFFSETS_TOPIC, &settings).await {
                    Ok(()) | Err(crate::backend::BackendError::TopicAlreadyExists(_)) => {
                        tracing::info!(partitions = wanted, "created the offsets topic");
                        Ok(())
                    }
                    Err(e) => Err(e),
                }
            }
        }
    }

    /// Replays one offsets partition into memory: the last entry per key wins; entries older
    /// than the retention are dropped.
    async fn load_partition(&self, p: u32) -> Result<(), crate::backend::BackendError> {
        let started = Instant::now();
        let bounds = self.backend.bounds(OFFSETS_TOPIC, p).await?;
        let oldest_kept = now_ms() - self.settings.offsets_retention_ms as i64;
        let mut offset = bounds.log_start;
        let mut loaded: HashMap<String, GroupOffsets> = HashMap::new();
        let mut records = 0u64;
        while offset < bounds.high_watermark {
            let limits = ReadLimits {
                max_records: 10_000,
                max_bytes: 4 * 1024 * 1024,
            };
            let read = self.backend.read(OFFSETS_TOPIC, p, offset, limits).await?;
            let Some(last) = read.records.last() else {
                break;
            };
            offset = last.offset + 1;
            for fetched in &read.records {
                records += 1;
                let entry = match OffsetEntry::from_record(&fetched.record) {
                    Ok(e) => e,
                    Err(e) => {
                        tracing::warn!(partition = p, offset = fetched.offset, error = %e, "skipping offsets record");
                        continue;
                    }
                };
                let offsets = loaded.entry(entry.group).or_default();
                let key = (entry.topic, entry.partition);
                match entry.offset {
                    Some(c) if fetched.record.timestamp_ms >= oldest_kept => {
                        offsets.insert(key, c);
                    }
                    _ => {
                        offsets.remove(&key);
                    }
                }
            }
        }
        let now = Instant::now();
        let mut groups = lock(&self.groups);
        let mut restored = 0;
        for (id, offsets) in loaded {
            if offsets.is_empty() {
                continue;
            }
            restored += 1;
            let group = groups
                .entry(id.clone())
                .or_insert_with(|| Arc::new(Mutex::new(Group::new(id, now))));
            let mut g = lock(group);
            for (k, v) in offsets {
                g.offsets.entry(k).or_insert(v);
            }
        }
        tracing::info!(
            partition = p,
            records,
            groups = restored,
            ms = started.elapsed().as_millis() as u64,
            "loaded committed offsets"
        );
        Ok(())
    }

    /// The group, created (Empty) when `create` is true and the group limit allows.
    fn group(&self, id: &str, create: bool) -> Result<Option<SharedGroup>, ResponseError> {
        let mut groups = lock(&self.groups);
        if let Some(g) = groups.get(id) {
            if lock(g).state != GroupState::Dead {
                return Ok(Some(g.clone()));
            }
        }
        if !create {
            return Ok(None);
        }
        if groups.len() >= self.settings.max_groups {
            tracing::warn!(
                group = id,
                max = self.settings.max_groups,
                "group limit reached"
            );
            return Err(ResponseError::PolicyViolation);
        }
        let g = Arc::new(Mutex::new(Group::new(id.to_string(), Instant::now())));
        groups.insert(id.to_string(), g.clone());
        Ok(Some(g))
    }

    pub async fn join(&self, group_id: &str, req: JoinRequest) -> JoinOutcome {
        let member_id = req.member_id.clone();
        let group = match self.group(group_id, req.member_id.is_empty()) {
            Ok(Some(g)) => g,
            Ok(None) => return JoinOutcome::error(ResponseError::UnknownMemberId, &member_id),
            Err(e) => return JoinOutcome::error(e, &member_id),
        };
        let reply = lock(&group).join(req, &self.rules, Instant::now());
        match reply {
            Reply::Now(outcome) => outcome,
            Reply::Wait(rx) => rx.await.unwrap_or_else(|_| {
                JoinOutcome::error(ResponseError::CoordinatorNotAvailable, &member_id)
            }),
        }
    }

    #[allow(
        clippy::too_many_arguments,
        reason = "mirrors the SyncGroup request fields"
    )]
    pub async fn sync(
        &self,
        group_id: &str,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        protocol_type: Option<&str>,
        protocol_name: Option<&str>,
        assignments: Vec<(String, bytes::Bytes)>,
    ) -> SyncOutcome {
        let group = match self.group(group_id, false) {
            Ok(Some(g)) => g,
            _ => return SyncOutcome::error(ResponseError::UnknownMemberId),
        };
        let reply = lock(&group).sync(
            member_id,
            instance_id,
            generation,
            protocol_type,
            protocol_name,
            assignments,
            Instant::now(),
        );
        match reply {
            Reply::Now(outcome) => outcome,
            Reply::Wait(rx) => rx
                .await
                .unwrap_or_else(|_| SyncOutcome::error(ResponseError::CoordinatorNotAvailable)),
        }
    }

    pub fn heartbeat(
        &self,
        group_id: &str,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
    ) -> Result<(), ResponseError> {
        match self.group(group_id, false) {
            Ok(Some(g)) => lock(&g).heartbeat(member_id, instance_id, generation, Instant::now()),
            _ => Err(ResponseError::UnknownMemberId),
        }
    }

    pub fn leave(
        &self,
        group_id: &str,
        member_id: &str,
        instance_id: Option<&str>,
    ) -> Result<(), ResponseError> {
        match self.group(group_id, false) {
            Ok(Some(g)) => lock(&g).leave(member_id, instance_id, Instant::now()),
            _ => Err(ResponseError::UnknownMemberId),
        }
    }

    /// OffsetCommit for partitions already validated by the handler. The error applies to
    /// every partition of the request.
    pub async fn commit(
        &self,
        group_id: &str,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        commits: Vec<((String, i32), CommittedOffset)>,
    ) -> Result<(), ResponseError> {
        let group = match self.group(group_id, generation < 0)? {
            Some(g) => g,
            // A commit from a generation this coordinator does not know (e.g. from before a
            // proxy restart): the member must rejoin.
            None => return Err(ResponseError::IllegalGeneration),
        };
        lock(&group).check_commit(member_id, instance_id, generation)?;
        if commits.is_empty() {
            return Ok(());
        }
        let entries: Vec<OffsetEntry> = commits
            .iter()
            .map(|((topic, partition), c)| OffsetEntry {
                group: group_id.to_string(),
                topic: topic.clone(),
                partition: *partition,
                offset: Some(c.clone()),
            })
            .collect();
        self.write(group_id, &entries, || {
            let mut g = lock(&group);
            let count = commits.len() as u64;
            for (k, v) in commits {
                g.offsets.insert(k, v);
            }
            self.metrics
                .offset_commits
                .with_label_values(&[group_id])
                .inc_by(count);
        })
        .await
    }

    /// Appends `entries` to the group's offsets partition, then applies them in memory with
    /// `apply` while still holding the partition's write lock (so memory follows log order).
    async fn write(
        &self,
        group_id: &str,
        entries: &[OffsetEntry],
        apply: impl FnOnce(),
    ) -> Result<(), ResponseError> {
        if entries.is_empty() {
            apply();
            return Ok(());
        }
        let p = self.partition_of(group_id);
        let _turn = self.partitions[p as usize].write.lock().await;
        let records = entries.iter().map(OffsetEntry::to_record).collect();
        if let Err(e) = self.backend.append(OFFSETS_TOPIC, p, records).await {
            tracing::warn!(group = group_id, error = %e, "cannot store committed offsets");
            return Err(ResponseError::CoordinatorNotAvailable);
        }
        apply();
        Ok(())
    }

    /// Committed offsets of a group, all or those of `topics`.
    pub fn fetch_offsets(&self, group_id: &str) -> GroupOffsets {
        match self.group(group_id, false) {
            Ok(Some(g)) => lock(&g).offsets.clone(),
            _ => GroupOffsets::new(),
        }
    }

    /// Groups with their state and protocol type (ListGroups).
    pub fn list(&self) -> Vec<(String, GroupState, String)> {
        let groups: Vec<SharedGroup> = lock(&self.groups).values().cloned().collect();
        let mut out: Vec<_> = groups
            .iter()
            .map(|g| {
                let g = lock(g);
                (
                    g.id.clone(),
                    g.state,
                    g.protocol_type.clone().unwrap_or_default(),
                )
            })
            .filter(|(_, state, _)| *state != GroupState::Dead)
            .collect();
        out.sort();
        out
    }

    /// Runs `f` on the group, if it exists.
    pub fn with_group<T>(&self, group_id: &str, f: impl FnOnce(&Group) -> T) -> Option<T> {
        match self.group(group_id, false) {
            Ok(Some(g)) => Some(f(&lock(&g))),
            _ => None,
        }
    }

    /// DeleteGroups for one group: only groups without members; their offsets are deleted.
    pub async fn delete_group(&self, group_id: &str) -> Result<(), ResponseError> {
        let Ok(Some(group)) = self.group(group_id, false) else {
            return Err(ResponseError::GroupIdNotFound);
        };
        let entries: Vec<OffsetEntry> = {
            let g = lock(&group);
            if !g.is_empty() {
                return Err(ResponseError::NonEmptyGroup);
            }
            g.offsets
                .keys()
                .map(|(topic, partition)| OffsetEntry {
                    group: group_id.to_string(),
                    topic: topic.clone(),
                    partition: *partition,
                    offset: None,
                })
                .collect()
        };
        self.write(group_id, &entries, || {
            {
                let mut g = lock(&group);
                g.offsets.clear();
                g.mark_dead();
            }
            // Lock order is always map, then group: the group lock is released first.
            lock(&self.groups).remove(group_id);
        })
        .await
    }

    /// OffsetDelete: removes committed offsets of partitions whose topic no member subscribes
    /// to. Returns the group error, and per partition an error.
    pub async fn delete_offsets(
        &self,
        group_id: &str,
        partitions: &[(String, i32)],
    ) -> Result<Vec<i16>, ResponseError> {
        let Ok(Some(group)) = self.group(group_id, false) else {
            return Err(ResponseError::GroupIdNotFound);
        };
        let (errors, entries) = {
            let g = lock(&group);
            let subscribed = if g.members.is_empty() {
                Vec::new()
            } else {
                g.subscribed_topics()
            };
            let mut errors = Vec::new();
            let mut entries = Vec::new();
            for (topic, partition) in partitions {
                if subscribed.contains(topic) {
                    errors.push(ResponseError::GroupSubscribedToTopic.code());
                } else {
                    errors.push(0);
                    if g.offsets.contains_key(&(topic.clone(), *partition)) {
                        entries.push(OffsetEntry {
                            group: group_id.to_string(),
                            topic: topic.clone(),
                            partition: *partition,
                            offset: None,
                        });
                    }
                }
            }
            (errors, entries)
        };
        if !entries.is_empty() {
            self.write(group_id, &entries, || {
                let mut g = lock(&group);
                for e in &entries {
                    g.offsets.remove(&(e.topic.clone(), e.partition));
                }
            })
            .await?;
        }
        Ok(errors)
    }

    /// Deletes every group's committed offsets of a deleted topic (best effort: a failure is
    /// logged, and replay would bring those offsets back only for a topic that no longer exists).
    pub async fn forget_topic(&self, topic: &str) {
        let groups: Vec<SharedGroup> = lock(&self.groups).values().cloned().collect();
        for group in groups {
            let (id, entries) = {
                let g = lock(&group);
                let entries: Vec<OffsetEntry> = g
                    .offsets
                    .keys()
                    .filter(|(t, _)| t == topic)
                    .map(|(t, p)| OffsetEntry {
                        group: g.id.clone(),
                        topic: t.clone(),
                        partition: *p,
                        offset: None,
                    })
                    .collect();
                (g.id.clone(), entries)
            };
            let result = self
                .write(&id, &entries, || {
                    let mut g = lock(&group);
                    g.offsets.retain(|(t, _), _| t != topic);
                })
                .await;
            if result.is_err() {
                tracing::warn!(group = %id, topic, "could not delete offsets of a deleted topic");
            }
        }
    }

    /// Background work: timers every 100 ms, lag metrics every few seconds, offset expiry and
    /// refresh every minute. Ends when `shutdown` fires.
    pub async fn run(self: Arc<Self>, mut shutdown: crate::shutdown::Shutdown) {
        let mut ticker = tokio::time::interval(TICK);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_lag = Instant::now();
        let mut last_housekeeping = Instant::now();
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                () = shutdown.recv() => return,
            }
            self.tick(Instant::now());
            if last_lag.elapsed() >= LAG_INTERVAL {
                last_lag = Instant::now();
                self.update_lag().await;
            }
            if last_housekeeping.elapsed() >= HOUSEKEEPING_INTERVAL {
                last_housekeeping = Instant::now();
                self.housekeeping().await;
            }
        }
    }

    /// Advances every group's timers and refreshes the state gauges.
    pub fn tick(&self, now: Instant) {
        let groups: Vec<SharedGroup> = lock(&self.groups).values().cloned().collect();
        let mut by_state: HashMap<GroupState, i64> = HashMap::new();
        let mut members = BTreeSet::new();
        let mut dead = Vec::new();
        for group in groups {
            let mut g = lock(&group);
            g.tick(now);
            *by_state.entry(g.state).or_default() += 1;
            let reported = g.rebalances_reported;
            if g.rebalances > reported {
                self.metrics
                    .group_rebalances
                    .with_label_values(&[&g.id])
                    .inc_by(g.rebalances - reported);
                g.rebalances_reported = g.rebalances;
            }
            if g.state == GroupState::Empty && g.offsets.is_empty() {
                // Nothing left to remember: forget the group, as Kafka does.
                dead.push(g.id.clone());
            } else {
                self.metrics
                    .group_members
                    .with_label_values(&[&g.id])
                    .set(g.members.len() as i64);
                members.insert(g.id.clone());
            }
        }
        if !dead.is_empty() {
            let mut map = lock(&self.groups);
            for id in dead {
                let remove = map.get(&id).is_some_and(|g| {
                    let g = lock(g);
                    g.state == GroupState::Empty && g.offsets.is_empty()
                });
                if remove {
                    map.remove(&id);
                    self.metrics
                        .group_rebalances
                        .remove_label_values(&[&id])
                        .ok();
                    self.metrics.offset_commits.remove_label_values(&[&id]).ok();
                }
            }
        }
        for state in GroupState::ALL {
            self.metrics
                .groups
                .with_label_values(&[state.name()])
                .set(by_state.get(&state).copied().unwrap_or(0));
        }
        let mut previous = lock(&self.member_series);
        for gone in previous.difference(&members) {
            self.metrics.group_members.remove_label_values(&[gone]).ok();
        }
        *previous = members;
    }

    /// Recomputes consumer lag (high watermark − committed offset) for every committed
    /// partition.
    pub async fn update_lag(&self) {
        let groups: Vec<SharedGroup> = lock(&self.groups).values().cloned().collect();
        let mut committed: Vec<(String, String, i32, i64)> = Vec::new();
        for g in groups {
            let g = lock(&g);
            for ((topic, partition), c) in &g.offsets {
                committed.push((g.id.clone(), topic.clone(), *partition, c.offset));
            }
        }
        let mut watermarks: HashMap<(String, i32), Option<i64>> = HashMap::new();
        let mut series = BTreeSet::new();
        for (group, topic, partition, offset) in committed {
            let key = (topic.clone(), partition);
            if !watermarks.contains_key(&key) {
                let hw = match u32::try_from(partition) {
                    Ok(p) => self
                        .backend
                        .bounds(&topic, p)
                        .await
                        .ok()
                        .map(|b| b.high_watermark),
                    Err(_) => None,
                };
                watermarks.insert(key.clone(), hw);
            }
            if let Some(Some(hw)) = watermarks.get(&key) {
                let p = partition.to_string();
                self.metrics
                    .consumer_lag
                    .with_label_values(&[&group, &topic, &p])
                    .set((hw - offset).max(0));
                series.insert((group, topic, p));
            }
        }
        let mut previous = lock(&self.lag_series);
        for (g, t, p) in previous.difference(&series) {
            self.metrics
                .consumer_lag
                .remove_label_values(&[g, t, p])
                .ok();
        }
        *previous = series;
    }

    /// Offsets of groups without members expire `offsets_retention_ms` after their last
    /// write; those of groups with members are rewritten before the offsets topic's own
    /// retention would drop them.
    async fn housekeeping(&self) {
        let retention = self.settings.offsets_retention_ms as i64;
        let now = now_ms();
        let groups: Vec<SharedGroup> = lock(&self.groups).values().cloned().collect();
        for group in groups {
            let (id, refresh) = {
                let mut g = lock(&group);
                if g.members.is_empty() {
                    g.offsets
                        .retain(|_, c| c.written_ms.max(c.commit_timestamp_ms) + retention > now);
                    continue;
                }
                let refresh: Vec<OffsetEntry> = g
                    .offsets
                    .iter()
                    .filter(|(_, c)| c.written_ms + retention / 2 < now)
                    .map(|((topic, partition), c)| OffsetEntry {
                        group: g.id.clone(),
                        topic: topic.clone(),
                        partition: *partition,
                        offset: Some(c.clone()),
                    })
                    .collect();
                (g.id.clone(), refresh)
            };
            if refresh.is_empty() {
                continue;
            }
            let _ = self
                .write(&id, &refresh, || {
                    let mut g = lock(&group);
                    for e in &refresh {
                        if let Some(c) = g.offsets.get_mut(&(e.topic.clone(), e.partition)) {
                            c.written_ms = now;
                        }
                    }
                })
                .await;
        }
    }
}

#[cfg(test)]
mod tests;
