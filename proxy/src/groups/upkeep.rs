//! What the coordinator rewrites in the offsets log besides commits: offsets of live groups
//! before they would expire, all of a group's offsets when its last member leaves, and each
//! group's generation when it becomes Stable or Empty (and before this replica leaves).

use std::time::Duration;

use super::offsets_log::{now_ms, CommittedOffset, GroupSnapshot, OffsetEntry};
use super::state::Group;
use super::{lock, GroupCoordinator, SharedGroup, MAX_HOUSEKEEPING_INTERVAL, TICK};

impl GroupCoordinator {
    /// On shutdown, once connections are closed (nothing changes the groups any more) and
    /// before leaving the cluster: writes the generations not yet in the log, so that the
    /// replicas taking this one's groups over restore the current generation (no rebalance on
    /// a rollout or scale-down).
    pub async fn persist_before_leaving(&self) {
        for group in self.in_memory() {
            let due = {
                let g = lock(&group);
                g.snapshots_due != g.snapshots_persisted
            };
            if due {
                self.keep_offsets(&group).await;
            }
        }
    }

    /// Offsets of groups with members are rewritten once half the retention has passed since
    /// they were written; checking every quarter of the retention keeps the newest record of
    /// each younger than three quarters of it.
    pub(super) fn housekeeping_interval(&self) -> Duration {
        Duration::from_millis(self.settings.offsets_retention_ms / 4)
            .clamp(TICK, MAX_HOUSEKEEPING_INTERVAL)
    }

    /// Offset expiry, Kafka's rule: offsets of a group with members never expire; those of a
    /// group without members expire `offsets_retention_ms` after it became empty or after their
    /// last commit, whichever is later. Both instants are the entry's `written_ms`, because
    /// [`Self::keep_offsets`] rewrites a group's offsets when its last member leaves. Here,
    /// expired offsets leave memory (and evicted groups whose offsets expired are forgotten),
    /// and the offsets of groups with members are refreshed in the log.
    pub(super) async fn housekeeping(&self) {
        let retention = self.settings.offsets_retention_ms as i64;
        let now = now_ms();
        lock(&self.registry)
            .evicted
            .retain(|_, expires_ms| *expires_ms > now);
        for group in self.in_memory() {
            {
                let mut g = lock(&group);
                if g.members.is_empty() && g.emptiness_changes == g.emptiness_changes_persisted {
                    g.offsets.retain(|_, c| c.written_ms + retention > now);
                }
            }
            self.keep_offsets(&group).await;
        }
    }

    /// The partitions of `g` whose log records must be rewritten at `now` so that replay after a
    /// restart, and the offsets topic's own message expiry, keep them as long as they must live:
    /// for a group with members, those written half the retention ago or earlier (so the newest
    /// record of each stays younger than the retention while the group lives); for a group whose
    /// last member left since its offsets were last kept, all of them (their retention counts
    /// from now).
    pub(super) fn offsets_to_keep(g: &Group, now: i64, retention: i64) -> Vec<(String, i32)> {
        let emptied = g.emptiness_changes != g.emptiness_changes_persisted;
        g.offsets
            .iter()
            .filter(|(_, c)| {
                if g.members.is_empty() {
                    emptied
                } else {
                    c.written_ms + retention / 2 <= now
                }
            })
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// Whether the group's generation must be written: it reached a new one (Stable or Empty)
    /// since the last snapshot, or, while it has members, its snapshot is half a retention old
    /// (so that replay and the offsets topic's message expiry keep it while the group lives).
    pub(super) fn snapshot_due(g: &Group, now: i64, retention: i64) -> bool {
        g.snapshots_due != g.snapshots_persisted
            || (!g.members.is_empty()
                && g.snapshot_written_ms
                    .is_some_and(|written| written + retention / 2 <= now))
    }

    /// Rewrites [`Self::offsets_to_keep`] with the current time as their log timestamp (the
    /// values unchanged), and the group's generation when [`Self::snapshot_due`]. Runs under
    /// the partition's write lock, so no commit can come between reading an offset and
    /// rewriting it (which would bring back the older value). A failure is logged by `append`
    /// and retried at the next tick or housekeeping.
    pub(super) async fn keep_offsets(&self, group: &SharedGroup) {
        let retention = self.settings.offsets_retention_ms as i64;
        let (id, due) = {
            let g = lock(group);
            let now = now_ms();
            let due = g.emptiness_changes != g.emptiness_changes_persisted
                || Self::snapshot_due(&g, now, retention)
                || !Self::offsets_to_keep(&g, now, retention).is_empty();
            (g.id.clone(), due)
        };
        if !due {
            return;
        }
        let p = self.partition_of(&id);
        let _turn = self.partitions[p as usize].write.lock().await;
        let now = now_ms();
        let (changes, snapshots, entries, snapshot) = {
            let g = lock(group);
            let entries: Vec<OffsetEntry> = Self::offsets_to_keep(&g, now, retention)
                .into_iter()
                .map(|(topic, partition)| {
                    let kept = g.offsets[&(topic.clone(), partition)].clone();
                    OffsetEntry {
                        group: id.clone(),
                        topic,
                        partition,
                        offset: Some(CommittedOffset {
                            written_ms: now,
                            ..kept
                        }),
                    }
                })
                .collect();
            // Mid-rebalance there is nothing to write; the rebalance's end is due again.
            let snapshot = Self::snapshot_due(&g, now, retention)
                .then(|| g.snapshot(now))
                .flatten();
            (g.emptiness_changes, g.snapshots_due, entries, snapshot)
        };
        let mut records: Vec<_> = entries.iter().map(OffsetEntry::to_record).collect();
        records.extend(snapshot.as_ref().map(GroupSnapshot::to_record));
        if !records.is_empty() && self.append(p, &id, records).await.is_err() {
            return;
        }
        let mut g = lock(group);
        for e in &entries {
            if let Some(c) = g.offsets.get_mut(&(e.topic.clone(), e.partition)) {
                c.written_ms = now;
            }
        }
        g.emptiness_changes_persisted = changes;
        if snapshot.is_some() {
            g.snapshot_written_ms = Some(now);
            g.snapshots_persisted = snapshots;
        }
    }
}
