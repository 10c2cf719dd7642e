//! The group coordinator: Kafka's classic consumer-group protocol run inside the proxy, with
//! committed offsets kept in Iggy (the internal `__consumer_offsets` topic, see
//! docs/consumer-groups.md).
//!
//! Each group belongs to one partition of the offsets topic; the replica owning that partition
//! (see [`crate::cluster::Cluster::group_coordinator`]) coordinates the group and is the single
//! writer of its offsets. A partition is replayed into memory the first time one of its groups
//! is used, so a restarted proxy resumes from what was committed.

mod loading;
pub mod offsets_log;
pub mod state;
mod upkeep;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use kafka_protocol::error::ResponseError;

use crate::backend::{SharedBackend, TopicSettings};
use crate::cluster::{Cluster, WritePermit};
use crate::config::GroupSettings;
use crate::metrics::Metrics;
use offsets_log::{CommittedOffset, OffsetEntry, OFFSETS_TOPIC};
use state::{Group, GroupState, JoinOutcome, JoinRequest, Reply, Rules, SyncOutcome};

pub type SharedGroup = Arc<Mutex<Group>>;

/// How often timers (session expiry, end of join phases) are checked.
const TICK: Duration = Duration::from_millis(100);
/// How often consumer lag is recomputed for the metrics.
const LAG_INTERVAL: Duration = Duration::from_secs(5);
/// Offsets are expired and refreshed every quarter of the retention, at most this far apart.
const MAX_HOUSEKEEPING_INTERVAL: Duration = Duration::from_secs(60);

struct OffsetsPartition {
    /// Held while the partition is replayed, so that one replay serves all waiting requests.
    loading: tokio::sync::Mutex<()>,
    /// The run of ownership the partition's groups were loaded in; `None`: not loaded. With
    /// replicas, a partition that changed hands is replayed again when it comes back, since
    /// another coordinator may have committed to it meanwhile.
    loaded_under: Mutex<Option<WritePermit>>,
    /// Appends to one offsets partition happen one at a time, in the order the commits are
    /// applied in memory.
    write: tokio::sync::Mutex<()>,
}

pub struct GroupCoordinator {
    settings: GroupSettings,
    rules: Rules,
    backend: SharedBackend,
    metrics: Arc<Metrics>,
    /// Which offsets partitions this replica may write, i.e. which groups it coordinates.
    cluster: Cluster,
    registry: Mutex<Registry>,
    /// Evicted groups are read back one at a time.
    reloading: tokio::sync::Mutex<()>,
    topic_ready: tokio::sync::OnceCell<()>,
    partitions: Vec<OffsetsPartition>,
    /// Lag series reported last time, so vanished ones are removed.
    lag_series: Mutex<BTreeSet<(String, String, String)>>,
    /// Member-count series reported last time.
    member_series: Mutex<BTreeSet<String>>,
}

/// The groups this coordinator knows. One lock, so a group is in exactly one of the two maps.
#[derive(Default)]
struct Registry {
    /// Groups in memory: all with members, and the most recently used without.
    groups: HashMap<String, SharedGroup>,
    /// Groups without members moved out of memory (`max_empty_groups`), with the time (ms) their
    /// newest offset expires. Their offsets are in the offsets log; `ready` reads them back.
    evicted: HashMap<String, i64>,
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
    pub fn new(
        settings: GroupSettings,
        backend: SharedBackend,
        metrics: Arc<Metrics>,
        cluster: Cluster,
    ) -> Self {
        let rules = Rules {
            min_session_timeout: Duration::from_millis(settings.min_session_timeout_ms),
            max_session_timeout: Duration::from_millis(settings.max_session_timeout_ms),
            initial_rebalance_delay: Duration::from_millis(settings.initial_rebalance_delay_ms),
            max_members: settings.max_members_per_group,
            max_member_metadata_bytes: settings.max_member_metadata_bytes,
        };
        let partitions = (0..settings.offsets_topic_partitions)
            .map(|_| OffsetsPartition {
                loading: tokio::sync::Mutex::new(()),
                loaded_under: Mutex::new(None),
                write: tokio::sync::Mutex::new(()),
            })
            .collect();
        Self {
            settings,
            rules,
            backend,
            metrics,
            cluster,
            registry: Mutex::new(Registry::default()),
            reloading: tokio::sync::Mutex::new(()),
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

    /// Makes sure the offsets topic exists, the group's partition was replayed and, if the group
    /// was evicted, that it is back in memory. Errors are retriable for clients
    /// (COORDINATOR_LOAD_IN_PROGRESS / COORDINATOR_NOT_AVAILABLE).
    pub async fn ready(&self, group: &str) -> Result<(), ResponseError> {
        self.topic_ready
            .get_or_try_init(|| self.ensure_offsets_topic())
            .await
            .map_err(|e| {
                log_load_failure(&e, None);
                ResponseError::CoordinatorNotAvailable
            })?;
        let p = self.partition_of(group);
        let Some(permit) = self.cluster.write_permit(OFFSETS_TOPIC, p as i32) else {
            // The newest view names this replica but the hand-off is not over: ask again soon.
            return Err(if self.cluster.is_local_leader(OFFSETS_TOPIC, p as i32) {
                ResponseError::CoordinatorNotAvailable
            } else {
                ResponseError::NotCoordinator
            });
        };
        let partition = &self.partitions[p as usize];
        let current = |partition: &OffsetsPartition| {
            lock(&partition.loaded_under).is_some_and(|held| permit.continues(&held))
        };
        if !current(partition) {
            let _loading = partition.loading.lock().await;
            if !current(partition) {
                self.unload(p);
                *lock(&partition.loaded_under) = None;
                self.load_partition(p).await.map_err(|e| {
                    log_load_failure(&e, Some(p));
                    ResponseError::CoordinatorNotAvailable
                })?;
                *lock(&partition.loaded_under) = Some(permit);
            }
        }
        if lock(&self.registry).evicted.contains_key(group) {
            self.reload(group, p).await.map_err(|e| {
                tracing::warn!(group, error = %e, "cannot read back committed offsets");
                ResponseError::CoordinatorNotAvailable
            })?;
        }
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
                    ..TopicSettings::default()
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

    /// The group, created (Empty) when `create` is true. Marks it used, so it is the last to be
    /// evicted.
    fn group(&self, id: &str, create: bool) -> Result<Option<SharedGroup>, ResponseError> {
        let mut registry = lock(&self.registry);
        if let Some(g) = registry.groups.get(id) {
            let mut locked = lock(g);
            if locked.state != GroupState::Dead {
                locked.last_used = Instant::now();
                return Ok(Some(g.clone()));
            }
        }
        if registry.evicted.contains_key(id) {
            // Evicted again right after `ready` read it back: the client retries, and `ready`
            // reads it back again. Creating it afresh would hide its offsets.
            return Err(ResponseError::CoordinatorLoadInProgress);
        }
        if !create {
            return Ok(None);
        }
        let g = Arc::new(Mutex::new(Group::new(id.to_string(), Instant::now())));
        registry.groups.insert(id.to_string(), g.clone());
        Ok(Some(g))
    }

    /// Groups with members (or members being admitted), not counting `except`, whose lock the
    /// caller holds.
    fn groups_with_members(registry: &Registry, except: &SharedGroup) -> usize {
        registry
            .groups
            .values()
            .filter(|g| !Arc::ptr_eq(g, except) && !lock(g).is_empty())
            .count()
    }

    pub async fn join(&self, group_id: &str, req: JoinRequest) -> JoinOutcome {
        let member_id = req.member_id.clone();
        let group = match self.group(group_id, req.member_id.is_empty()) {
            Ok(Some(g)) => g,
            Ok(None) => return JoinOutcome::error(ResponseError::UnknownMemberId, &member_id),
            Err(e) => return JoinOutcome::error(e, &member_id),
        };
        let reply = {
            // The registry stays locked while a group gains its first member, so first joins of
            // different groups at the same time count each other.
            let registry = lock(&self.registry);
            let mut g = lock(&group);
            if g.is_empty()
                && req.member_id.is_empty()
                && Self::groups_with_members(&registry, &group) >= self.settings.max_groups
            {
                tracing::warn!(
                    group = group_id,
                    max = self.settings.max_groups,
                    "limit of groups with members reached"
                );
                return JoinOutcome::error(ResponseError::PolicyViolation, &member_id);
            }
            drop(registry);
            g.join(req, &self.rules, Instant::now())
        };
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
        self.append(p, group_id, records).await?;
        apply();
        Ok(())
    }

    /// Appends to offsets partition `p`; the caller holds that partition's write lock.
    async fn append(
        &self,
        p: u32,
        group_id: &str,
        records: Vec<crate::backend::StoredRecord>,
    ) -> Result<(), ResponseError> {
        // The fence: only within the run of ownership the partition was loaded in.
        let permit = self.cluster.write_permit(OFFSETS_TOPIC, p as i32);
        let held = *lock(&self.partitions[p as usize].loaded_under);
        if !permit
            .zip(held)
            .is_some_and(|(now, held)| now.continues(&held))
        {
            return Err(ResponseError::NotCoordinator);
        }
        if let Err(e) = self.backend.append(OFFSETS_TOPIC, p, records).await {
            tracing::warn!(group = group_id, error = %e, "cannot store committed offsets");
            return Err(ResponseError::CoordinatorNotAvailable);
        }
        Ok(())
    }

    /// Committed offsets of a group (none for an unknown group).
    pub fn fetch_offsets(&self, group_id: &str) -> Result<GroupOffsets, ResponseError> {
        Ok(match self.group(group_id, false)? {
            Some(g) => lock(&g).offsets.clone(),
            None => GroupOffsets::new(),
        })
    }

    /// Groups with their state and protocol type (ListGroups); evicted groups are Empty.
    pub fn list(&self) -> Vec<(String, GroupState, String)> {
        let (groups, evicted): (Vec<SharedGroup>, Vec<String>) = {
            let registry = lock(&self.registry);
            let groups = registry.groups.values().cloned().collect();
            (groups, registry.evicted.keys().cloned().collect())
        };
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
            .chain(
                evicted
                    .into_iter()
                    .map(|id| (id, GroupState::Empty, String::new())),
            )
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
                g.mark_dead(ResponseError::CoordinatorNotAvailable);
            }
            // Lock order is always map, then group: the group lock is released first.
            lock(&self.registry).groups.remove(group_id);
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
    /// Evicted groups are not read back for this: theirs come back with them.
    pub async fn forget_topic(&self, topic: &str) {
        let groups = self.in_memory();
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

    /// Background work: timers every 100 ms (with the offsets of groups whose members came or
    /// all left kept at once, and empty groups beyond the limit evicted), lag metrics every few
    /// seconds, offset expiry and refresh every quarter of the retention. Ends when `shutdown`
    /// fires.
    pub async fn run(self: Arc<Self>, mut shutdown: crate::shutdown::Shutdown) {
        let mut ticker = tokio::time::interval(TICK);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_lag = Instant::now();
        let mut last_housekeeping = Instant::now();
        let housekeeping_interval = self.housekeeping_interval();
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                () = shutdown.recv() => return,
            }
            if self.cluster.membership().is_some() {
                self.release_lost_partitions();
            }
            for group in self.tick(Instant::now()) {
                self.keep_offsets(&group).await;
            }
            if last_lag.elapsed() >= LAG_INTERVAL {
                last_lag = Instant::now();
                self.update_lag().await;
            }
            if last_housekeeping.elapsed() >= housekeeping_interval {
                last_housekeeping = Instant::now();
                self.housekeeping().await;
            }
        }
    }

    fn in_memory(&self) -> Vec<SharedGroup> {
        lock(&self.registry).groups.values().cloned().collect()
    }

    /// Advances every group's timers, refreshes the state gauges, forgets groups with nothing
    /// left and evicts empty groups beyond `max_empty_groups`. Returns the groups that gained
    /// their first member or lost their last since their offsets were last kept
    /// ([`Self::keep_offsets`] is due for them).
    pub fn tick(&self, now: Instant) -> Vec<SharedGroup> {
        let groups = self.in_memory();
        let mut by_state: HashMap<GroupState, i64> = HashMap::new();
        let mut members = BTreeSet::new();
        let mut dead = Vec::new();
        let mut changed = Vec::new();
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
            if g.state == GroupState::Empty && g.offsets.is_empty() && g.is_empty() {
                // Nothing left to remember: forget the group, as Kafka does. Not while a member
                // given its id (KIP-394) has yet to rejoin: it would get UNKNOWN_MEMBER_ID.
                dead.push(g.id.clone());
            } else {
                self.metrics
                    .group_members
                    .with_label_values(&[&g.id])
                    .set(g.members.len() as i64);
                members.insert(g.id.clone());
                if g.emptiness_changes != g.emptiness_changes_persisted
                    || g.snapshots_due != g.snapshots_persisted
                {
                    drop(g);
                    changed.push(group);
                }
            }
        }
        if !dead.is_empty() {
            let mut registry = lock(&self.registry);
            for id in dead {
                let remove = registry.groups.get(&id).is_some_and(|g| {
                    let g = lock(g);
                    g.state == GroupState::Empty && g.offsets.is_empty() && g.is_empty()
                });
                if remove {
                    registry.groups.remove(&id);
                    self.forget_metrics(&id);
                }
            }
        }
        let empty = by_state.get(&GroupState::Empty).copied().unwrap_or(0);
        if empty > self.settings.max_empty_groups as i64 {
            self.evict_empty_groups();
        }
        *by_state.entry(GroupState::Empty).or_default() +=
            lock(&self.registry).evicted.len() as i64;
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
        changed
    }

    fn forget_metrics(&self, id: &str) {
        self.metrics
            .group_rebalances
            .remove_label_values(&[id])
            .ok();
        self.metrics.offset_commits.remove_label_values(&[id]).ok();
    }

    /// Moves the least recently used groups without members out of memory while more than
    /// `max_empty_groups` are held. Their offsets stay in the offsets log and [`Self::ready`]
    /// reads them back when the group is used again; memory keeps only the id and when its
    /// offsets expire (for ListGroups, and to know that a read-back is needed). Groups a request
    /// is using, and groups whose offsets were not yet kept after their last member left, stay.
    fn evict_empty_groups(&self) {
        let retention = self.settings.offsets_retention_ms as i64;
        let mut registry = lock(&self.registry);
        let mut empty = 0usize;
        let mut candidates: Vec<(Instant, String, i64)> = Vec::new();
        for (id, group) in &registry.groups {
            let g = lock(group);
            if g.state != GroupState::Empty || !g.is_empty() {
                continue;
            }
            empty += 1;
            // Only the registry holds it: no request is using it, and none can pick it up
            // while the registry is locked.
            if Arc::strong_count(group) == 1 && g.emptiness_changes == g.emptiness_changes_persisted
            {
                let newest = g.offsets.values().map(|c| c.written_ms).max();
                candidates.push((g.last_used, id.clone(), newest.unwrap_or(0) + retention));
            }
        }
        let excess = empty.saturating_sub(self.settings.max_empty_groups);
        if excess == 0 {
            return;
        }
        candidates.sort_unstable();
        for (_, id, expires_ms) in candidates.into_iter().take(excess) {
            registry.groups.remove(&id);
            self.forget_metrics(&id);
            registry.evicted.insert(id, expires_ms);
        }
    }

    /// Recomputes consumer lag (high watermark − committed offset) for every committed
    /// partition.
    pub async fn update_lag(&self) {
        let groups = self.in_memory();
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
}

#[cfg(test)]
mod tests;
