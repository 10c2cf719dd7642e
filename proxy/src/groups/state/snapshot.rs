//! A group's generation as a [`GroupSnapshot`] for the offsets log, and back. A coordinator
//! that takes a group over (after a hand-off between replicas or a restart) restores the last
//! Stable generation: members keep heartbeating and committing with the generation and
//! assignment they have, so the move costs no rebalance. Members that are gone expire after
//! their session timeout, as they would have on the old coordinator.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::{Group, GroupState, Member};
use crate::groups::offsets_log::{GroupSnapshot, MemberSnapshot};

impl Group {
    /// The group's generation if it is worth persisting now: Stable (members with their
    /// assignments) or Empty (only the generation, so numbering continues).
    pub fn snapshot(&self, written_ms: i64) -> Option<GroupSnapshot> {
        let members = match self.state {
            GroupState::Stable => self.members.values().map(member_snapshot(self)).collect(),
            GroupState::Empty => Vec::new(),
            _ => return None,
        };
        Some(GroupSnapshot {
            group: self.id.clone(),
            generation: self.generation,
            protocol_type: self.protocol_type.clone(),
            protocol: self.protocol.clone(),
            leader: self.leader.clone(),
            members,
            written_ms,
        })
    }

    /// Takes over `snapshot` in a group that nothing has happened to since it was loaded
    /// (Empty, no members). A snapshot without members only carries the generation on.
    pub fn restore(&mut self, snapshot: GroupSnapshot, now: Instant) {
        if self.state != GroupState::Empty || !self.is_empty() {
            return;
        }
        self.generation = self.generation.max(snapshot.generation);
        self.snapshot_written_ms = Some(snapshot.written_ms);
        if snapshot.members.is_empty() {
            return;
        }
        let protocol = snapshot.protocol.clone().unwrap_or_default();
        let protocol_type = snapshot.protocol_type.clone().unwrap_or_default();
        self.members = BTreeMap::new();
        for (seq, m) in snapshot.members.into_iter().enumerate() {
            if let Some(instance) = &m.instance_id {
                self.static_members.insert(instance.clone(), m.id.clone());
            }
            let member = Member {
                id: m.id.clone(),
                instance_id: m.instance_id,
                client_id: m.client_id,
                client_host: m.client_host,
                session_timeout: millis(m.session_timeout_ms),
                rebalance_timeout: millis(m.rebalance_timeout_ms),
                protocol_type: protocol_type.clone(),
                protocols: vec![(protocol.clone(), m.subscription)],
                assignment: m.assignment,
                // A full session to find this coordinator.
                last_heartbeat: now,
                joined_seq: seq as u64,
                join_waiter: None,
                sync_waiter: None,
                synced: true,
            };
            self.members.insert(m.id, member);
        }
        self.next_seq = self.members.len() as u64;
        self.protocol_type = snapshot.protocol_type;
        self.protocol = snapshot.protocol;
        self.leader = snapshot.leader.filter(|l| self.members.contains_key(l));
        self.state = GroupState::Stable;
        self.empty_since = None;
        // Offsets of a group with members are kept alive; the snapshot itself is current.
        self.emptiness_changes += 1;
        self.snapshots_persisted = self.snapshots_due;
        tracing::info!(
            group = %self.id,
            generation = self.generation,
            members = self.members.len(),
            "restored the group's generation from the offsets log"
        );
    }
}

fn member_snapshot(group: &Group) -> impl Fn(&Member) -> MemberSnapshot + '_ {
    let protocol = group.protocol.as_deref().unwrap_or_default();
    move |m| MemberSnapshot {
        id: m.id.clone(),
        instance_id: m.instance_id.clone(),
        client_id: m.client_id.clone(),
        client_host: m.client_host.clone(),
        session_timeout_ms: m.session_timeout.as_millis().min(i32::MAX as u128) as i32,
        rebalance_timeout_ms: m.rebalance_timeout.as_millis().min(i32::MAX as u128) as i32,
        subscription: m.metadata(protocol),
        assignment: m.assignment.clone(),
    }
}

fn millis(ms: i32) -> Duration {
    Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}
