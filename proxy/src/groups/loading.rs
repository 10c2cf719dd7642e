//! Which offsets partitions this replica holds, and reading them into memory: a partition is
//! replayed from Iggy when this replica starts coordinating its groups (committed offsets and
//! each group's last generation), and forgotten when another replica takes it over.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use kafka_protocol::error::ResponseError;

use super::offsets_log::{now_ms, GroupSnapshot, LogEntry, OFFSETS_TOPIC};
use super::state::Group;
use super::{lock, GroupCoordinator, GroupOffsets, SharedGroup};
use crate::backend::ReadLimits;

/// What replaying an offsets partition found.
#[derive(Default)]
pub(super) struct Replayed {
    offsets: HashMap<String, GroupOffsets>,
    /// Each group's last generation.
    snapshots: HashMap<String, GroupSnapshot>,
    records: u64,
}

impl GroupCoordinator {
    /// Forgets the groups of an offsets partition this replica no longer coordinates (their
    /// members are told NOT_COORDINATOR and find the new coordinator).
    pub(super) fn unload(&self, p: u32) {
        let mut registry = lock(&self.registry);
        let before = registry.groups.len() + registry.evicted.len();
        let ids: Vec<String> = registry
            .groups
            .keys()
            .filter(|id| self.partition_of(id) == p)
            .cloned()
            .collect();
        let moved: Vec<SharedGroup> = ids
            .iter()
            .filter_map(|id| registry.groups.remove(id))
            .collect();
        registry.evicted.retain(|id, _| self.partition_of(id) != p);
        let dropped = before - registry.groups.len() - registry.evicted.len();
        drop(registry);
        // Members waiting in JoinGroup or SyncGroup are answered now: nothing here drives
        // their rebalance any more, and a Java consumer would otherwise wait for its request
        // timeout (max.poll.interval.ms + 5 s) before looking for the new coordinator.
        for group in moved {
            lock(&group).mark_dead(ResponseError::NotCoordinator);
        }
        if dropped > 0 {
            tracing::info!(
                partition = p,
                groups = dropped,
                "handed off consumer groups"
            );
        }
    }

    /// Unloads the offsets partitions whose ownership run ended (another replica coordinates
    /// their groups now, or will once this one's lease is over).
    pub(super) fn release_lost_partitions(&self) {
        for (p, partition) in self.partitions.iter().enumerate() {
            let mut loaded = lock(&partition.loaded_under);
            let Some(held) = *loaded else { continue };
            match self.cluster.write_permit(OFFSETS_TOPIC, p as i32) {
                Some(now) if now.continues(&held) => *loaded = Some(now),
                _ => {
                    *loaded = None;
                    drop(loaded);
                    self.unload(p as u32);
                }
            }
        }
    }

    /// Replays one offsets partition into memory: committed offsets, and each group's last
    /// generation (so its members carry on without a rebalance).
    pub(super) async fn load_partition(&self, p: u32) -> Result<(), crate::backend::BackendError> {
        let started = Instant::now();
        let Replayed {
            offsets: loaded,
            mut snapshots,
            records,
        } = self.replay(p, None).await?;
        let now = Instant::now();
        let mut registry = lock(&self.registry);
        let mut restored = 0;
        for (id, offsets) in loaded {
            let snapshot = snapshots.remove(&id);
            if offsets.is_empty() && snapshot.as_ref().is_none_or(|s| s.members.is_empty()) {
                continue;
            }
            restored += 1;
            let group = registry
                .groups
                .entry(id.clone())
                .or_insert_with(|| Arc::new(Mutex::new(Group::new(id, now))));
            let mut g = lock(group);
            for (k, v) in offsets {
                g.offsets.entry(k).or_insert(v);
            }
            if let Some(snapshot) = snapshot {
                g.restore(snapshot, now);
            }
        }
        // Groups with members that have committed nothing yet.
        for (id, snapshot) in snapshots {
            if snapshot.members.is_empty() {
                continue;
            }
            restored += 1;
            let group = registry
                .groups
                .entry(id.clone())
                .or_insert_with(|| Arc::new(Mutex::new(Group::new(id, now))));
            lock(group).restore(snapshot, now);
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

    /// Brings an evicted group back into memory from its offsets partition. Every request for
    /// the group waits in `ready` until it is back, so nothing changes its offsets meanwhile.
    pub(super) async fn reload(
        &self,
        group: &str,
        p: u32,
    ) -> Result<(), crate::backend::BackendError> {
        let _one_at_a_time = self.reloading.lock().await;
        if !lock(&self.registry).evicted.contains_key(group) {
            return Ok(()); // read back while this request waited
        }
        let started = Instant::now();
        let Replayed {
            offsets: mut loaded,
            records,
            ..
        } = self.replay(p, Some(group)).await?;
        let offsets = loaded.remove(group).unwrap_or_default();
        let mut registry = lock(&self.registry);
        registry.evicted.remove(group);
        if !offsets.is_empty() {
            let mut g = Group::new(group.to_string(), Instant::now());
            g.offsets = offsets;
            registry
                .groups
                .insert(group.to_string(), Arc::new(Mutex::new(g)));
        }
        tracing::info!(
            group,
            partition = p,
            records,
            ms = started.elapsed().as_millis() as u64,
            "read back an evicted group's offsets"
        );
        Ok(())
    }

    /// Reads one offsets partition from its start (only `only`'s entries when given): the last
    /// entry per key wins; entries older than the retention are dropped.
    pub(super) async fn replay(
        &self,
        p: u32,
        only: Option<&str>,
    ) -> Result<Replayed, crate::backend::BackendError> {
        let bounds = self.backend.bounds(OFFSETS_TOPIC, p).await?;
        let oldest_kept = now_ms() - self.settings.offsets_retention_ms as i64;
        let mut offset = bounds.log_start;
        let mut replayed = Replayed::default();
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
                replayed.records += 1;
                let entry = match LogEntry::from_record(&fetched.record) {
                    Ok(e) => e,
                    Err(e) => {
                        tracing::warn!(partition = p, offset = fetched.offset, error = %e, "skipping offsets record");
                        continue;
                    }
                };
                let fresh = fetched.record.timestamp_ms >= oldest_kept;
                match entry {
                    LogEntry::Offset(entry) => {
                        if only.is_some_and(|g| g != entry.group) {
                            continue;
                        }
                        let offsets = replayed.offsets.entry(entry.group).or_default();
                        let key = (entry.topic, entry.partition);
                        match entry.offset {
                            Some(c) if fresh => {
                                offsets.insert(key, c);
                            }
                            _ => {
                                offsets.remove(&key);
                            }
                        }
                    }
                    LogEntry::Group(snapshot) => {
                        if only.is_some_and(|g| g != snapshot.group) {
                            continue;
                        }
                        if fresh {
                            replayed.snapshots.insert(snapshot.group.clone(), snapshot);
                        } else {
                            replayed.snapshots.remove(&snapshot.group);
                        }
                    }
                }
            }
        }
        Ok(replayed)
    }
}
