//! One consumer group's membership state machine: Kafka's classic group protocol (the
//! `GroupCoordinator` of Kafka 2.x–3.x), without I/O. Every method runs under the group's lock
//! and finishes at once; requests that must wait (JoinGroup until the join phase ends, SyncGroup
//! until the leader's assignment) get a oneshot receiver, completed here when the state moves on.
//! Time is passed in, so the state machine is tested without sleeping.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use tokio::sync::oneshot;

use super::offsets_log::CommittedOffset;

/// Kafka's group states, named as DescribeGroups and ListGroups report them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum GroupState {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
    Dead,
}

impl GroupState {
    pub const ALL: [GroupState; 5] = [
        GroupState::Empty,
        GroupState::PreparingRebalance,
        GroupState::CompletingRebalance,
        GroupState::Stable,
        GroupState::Dead,
    ];

    pub fn name(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
            GroupState::Dead => "Dead",
        }
    }
}

/// Limits and timings the state machine enforces (from `GroupSettings`).
#[derive(Debug, Clone)]
pub struct Rules {
    pub min_session_timeout: Duration,
    pub max_session_timeout: Duration,
    pub initial_rebalance_delay: Duration,
    pub max_members: usize,
    pub max_member_metadata_bytes: usize,
}

/// A JoinGroup, version differences already resolved by the handler.
#[derive(Debug, Clone)]
pub struct JoinRequest {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout: Duration,
    pub rebalance_timeout: Duration,
    pub protocol_type: String,
    pub protocols: Vec<(String, Bytes)>,
    /// JoinGroup v4+: an unknown member first gets its id with MEMBER_ID_REQUIRED (KIP-394).
    pub require_known_member_id: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinedMember {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub metadata: Bytes,
}

/// What a JoinGroup is answered with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinOutcome {
    pub error: i16,
    pub generation: i32,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub leader: String,
    pub member_id: String,
    /// Only the leader gets the members (with their metadata for the chosen protocol).
    pub members: Vec<JoinedMember>,
    /// JoinGroup v9: a static leader that rejoined without a rebalance must not reassign.
    pub skip_assignment: bool,
}

impl JoinOutcome {
    pub fn error(error: ResponseError, member_id: &str) -> Self {
        Self {
            error: error.code(),
            generation: -1,
            protocol_type: None,
            protocol_name: None,
            leader: String::new(),
            member_id: member_id.to_string(),
            members: Vec::new(),
            skip_assignment: false,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncOutcome {
    pub error: i16,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub assignment: Bytes,
}

impl SyncOutcome {
    pub fn error(error: ResponseError) -> Self {
        Self {
            error: error.code(),
            protocol_type: None,
            protocol_name: None,
            assignment: Bytes::new(),
        }
    }
}

/// Either an answer now, or one that arrives when the group moves on.
pub enum Reply<T> {
    Now(T),
    Wait(oneshot::Receiver<T>),
}

#[derive(Debug)]
pub struct Member {
    pub id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout: Duration,
    pub rebalance_timeout: Duration,
    pub protocol_type: String,
    pub protocols: Vec<(String, Bytes)>,
    pub assignment: Bytes,
    last_heartbeat: Instant,
    /// Order of joining: the first member becomes leader when there is none.
    joined_seq: u64,
    join_waiter: Option<oneshot::Sender<JoinOutcome>>,
    sync_waiter: Option<oneshot::Sender<SyncOutcome>>,
    /// Sent SyncGroup in the current generation.
    synced: bool,
}

impl Member {
    /// Metadata this member sent for `protocol`.
    pub fn metadata(&self, protocol: &str) -> Bytes {
        self.protocols
            .iter()
            .find(|(name, _)| name == protocol)
            .map(|(_, m)| m.clone())
            .unwrap_or_default()
    }

    fn same_protocols(&self, protocols: &[(String, Bytes)]) -> bool {
        self.protocols == protocols
    }
}

/// One group. `offsets` lives here too so membership and committed offsets are changed under
/// one lock.
#[derive(Debug)]
pub struct Group {
    pub id: String,
    pub state: GroupState,
    pub generation: i32,
    pub protocol_type: Option<String>,
    pub protocol: Option<String>,
    pub leader: Option<String>,
    pub members: BTreeMap<String, Member>,
    /// Members told MEMBER_ID_REQUIRED, with the moment their id expires unless they rejoin.
    pending: HashMap<String, Instant>,
    /// group.instance.id → member id.
    static_members: HashMap<String, String>,
    /// When the current join phase (PreparingRebalance) or sync phase (CompletingRebalance)
    /// gives up on members that have not answered.
    phase_deadline: Option<Instant>,
    /// The first rebalance of an empty group waits `initial_rebalance_delay` for more
    /// members, extended by new joins up to this instant.
    initial_delay_limit: Option<Instant>,
    next_seq: u64,
    member_counter: u64,
    /// Rebalances completed since this proxy started coordinating the group.
    pub rebalances: u64,
    /// `rebalances` already added to the metrics.
    pub rebalances_reported: u64,
    pub offsets: BTreeMap<(String, i32), CommittedOffset>,
    /// When the group last became Empty (for offset expiry).
    pub empty_since: Option<Instant>,
    /// Times the group went from no members to some or back. The coordinator rewrites the
    /// offsets' log timestamps after each change (see `GroupCoordinator::keep_offsets`), then
    /// sets `emptiness_changes_persisted` to the value it handled.
    pub emptiness_changes: u64,
    pub emptiness_changes_persisted: u64,
    /// Times the group reached a generation worth persisting (Stable, or Empty); the
    /// coordinator writes a [`GroupSnapshot`](super::offsets_log::GroupSnapshot) and sets
    /// `snapshots_persisted` to the value it handled.
    pub snapshots_due: u64,
    pub snapshots_persisted: u64,
    /// When the group's snapshot was last written (ms since the epoch), if ever.
    pub snapshot_written_ms: Option<i64>,
    /// Last request for this group; the least recently used empty groups leave memory first.
    pub last_used: Instant,
}

impl Group {
    pub fn new(id: String, now: Instant) -> Self {
        Self {
            id,
            state: GroupState::Empty,
            generation: 0,
            protocol_type: None,
            protocol: None,
            leader: None,
            members: BTreeMap::new(),
            pending: HashMap::new(),
            static_members: HashMap::new(),
            phase_deadline: None,
            initial_delay_limit: None,
            next_seq: 0,
            member_counter: 0,
            rebalances: 0,
            rebalances_reported: 0,
            offsets: BTreeMap::new(),
            empty_since: Some(now),
            emptiness_changes: 0,
            emptiness_changes_persisted: 0,
            snapshots_due: 0,
            snapshots_persisted: 0,
            snapshot_written_ms: None,
            last_used: now,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty() && self.pending.is_empty()
    }

    /// `<client id>-<random>` as Kafka makes them; the random part keeps ids unique across
    /// proxy restarts, so an id from before a restart is never mistaken for a new member.
    fn new_member_id(&mut self, client_id: &str) -> String {
        use std::hash::{BuildHasher, Hasher};
        self.member_counter += 1;
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u64(self.member_counter);
        let prefix: String = client_id.chars().take(64).collect();
        format!(
            "{prefix}-{:016x}{:04x}",
            hasher.finish(),
            self.member_counter & 0xffff
        )
    }

    /// JoinGroup.
    pub fn join(&mut self, req: JoinRequest, rules: &Rules, now: Instant) -> Reply<JoinOutcome> {
        let fail = |e: ResponseError| Reply::Now(JoinOutcome::error(e, &req.member_id));
        if req.session_timeout < rules.min_session_timeout
            || req.session_timeout > rules.max_session_timeout
        {
            return fail(ResponseError::InvalidSessionTimeout);
        }
        let metadata_bytes: usize = req.protocols.iter().map(|(n, m)| n.len() + m.len()).sum();
        if req.protocols.is_empty()
            || req.protocol_type.is_empty()
            || metadata_bytes > rules.max_member_metadata_bytes
        {
            return fail(ResponseError::InconsistentGroupProtocol);
        }
        if self.state == GroupState::Dead {
            return fail(ResponseError::CoordinatorNotAvailable);
        }
        if !self.supports(&req) {
            return fail(ResponseError::InconsistentGroupProtocol);
        }
        if req.member_id.is_empty() {
            self.join_unknown_member(req, rules, now)
        } else {
            self.join_known_member(req, rules, now)
        }
    }

    /// A member may join if its protocol type matches and it shares a protocol with everyone.
    fn supports(&self, req: &JoinRequest) -> bool {
        if self.members.is_empty() {
            return true;
        }
        if self.protocol_type.as_deref() != Some(req.protocol_type.as_str()) {
            return false;
        }
        self.candidate_protocols()
            .iter()
            .any(|p| req.protocols.iter().any(|(name, _)| name == p))
    }

    /// Protocols every current member supports.
    fn candidate_protocols(&self) -> Vec<String> {
        let mut members = self.members.values();
        let Some(first) = members.next() else {
            return Vec::new();
        };
        let mut candidates: Vec<String> = first.protocols.iter().map(|(n, _)| n.clone()).collect();
        for m in members {
            candidates.retain(|c| m.protocols.iter().any(|(n, _)| n == c));
        }
        candidates
    }

    fn join_unknown_member(
        &mut self,
        req: JoinRequest,
        rules: &Rules,
        now: Instant,
    ) -> Reply<JoinOutcome> {
        if let Some(instance) = req.instance_id.clone() {
            if let Some(old_id) = self.static_members.get(&instance).cloned() {
                return self.replace_static_member(old_id, req, now);
            }
        }
        if self.members.len() + self.pending.len() >= rules.max_members {
            return Reply::Now(JoinOutcome::error(
                ResponseError::GroupMaxSizeReached,
                &req.member_id,
            ));
        }
        let member_id = self.new_member_id(&req.client_id);
        if req.require_known_member_id && req.instance_id.is_none() {
            // KIP-394: the client retries with this id; until then it is only pending.
            self.pending
                .insert(member_id.clone(), now + req.session_timeout);
            return Reply::Now(JoinOutcome::error(
                ResponseError::MemberIdRequired,
                &member_id,
            ));
        }
        self.add_member(member_id, req, rules, now)
    }

    fn join_known_member(
        &mut self,
        req: JoinRequest,
        rules: &Rules,
        now: Instant,
    ) -> Reply<JoinOutcome> {
        if self.pending.remove(&req.member_id).is_some() {
            return self.add_member(req.member_id.clone(), req, rules, now);
        }
        if let Err(e) = self.check_member(&req.member_id, req.instance_id.as_deref()) {
            return Reply::Now(JoinOutcome::error(e, &req.member_id));
        }
        let member_id = req.member_id.clone();
        match self.state {
            GroupState::PreparingRebalance => {
                self.update_member(&member_id, req, now);
                self.wait_for_join(&member_id, now)
            }
            GroupState::CompletingRebalance | GroupState::Stable => {
                let unchanged = self
                    .members
                    .get(&member_id)
                    .is_some_and(|m| m.same_protocols(&req.protocols));
                let is_leader = self.leader.as_deref() == Some(member_id.as_str());
                if unchanged && (self.state == GroupState::CompletingRebalance || !is_leader) {
                    // Nothing changed: answer with the current generation so it can SyncGroup.
                    if let Some(m) = self.members.get_mut(&member_id) {
                        m.last_heartbeat = now;
                    }
                    return Reply::Now(self.join_outcome(&member_id));
                }
                self.update_member(&member_id, req, now);
                self.prepare_rebalance(now);
                self.wait_for_join(&member_id, now)
            }
            GroupState::Empty | GroupState::Dead => Reply::Now(JoinOutcome::error(
                ResponseError::UnknownMemberId,
                &member_id,
            )),
        }
    }

    fn add_member(
        &mut self,
        member_id: String,
        req: JoinRequest,
        rules: &Rules,
        now: Instant,
    ) -> Reply<JoinOutcome> {
        if self.members.len() >= rules.max_members {
            return Reply::Now(JoinOutcome::error(
                ResponseError::GroupMaxSizeReached,
                &member_id,
            ));
        }
        if self.members.is_empty() {
            self.protocol_type = Some(req.protocol_type.clone());
        }
        if let Some(instance) = &req.instance_id {
            self.static_members
                .insert(instance.clone(), member_id.clone());
        }
        self.next_seq += 1;
        let was_empty = self.state == GroupState::Empty;
        if self.members.is_empty() {
            self.emptiness_changes += 1;
        }
        self.members.insert(
            member_id.clone(),
            Member {
                id: member_id.clone(),
                instance_id: req.instance_id,
                client_id: req.client_id,
                client_host: req.client_host,
                session_timeout: req.session_timeout,
                rebalance_timeout: req.rebalance_timeout,
                protocol_type: req.protocol_type,
                protocols: req.protocols,
                assignment: Bytes::new(),
                last_heartbeat: now,
                joined_seq: self.next_seq,
                join_waiter: None,
                sync_waiter: None,
                synced: false,
            },
        );
        self.empty_since = None;
        if was_empty {
            // Kafka's InitialDelayedJoin: give other members of a starting group a moment.
            self.state = GroupState::PreparingRebalance;
            self.cancel_sync_waiters();
            let rebalance_timeout = self.max_rebalance_timeout();
            self.initial_delay_limit = Some(now + rebalance_timeout);
            self.phase_deadline = Some(now + rules.initial_rebalance_delay.min(rebalance_timeout));
        } else if let Some(limit) = self.initial_delay_limit {
            // A new member during the initial delay extends it, within the rebalance timeout.
            self.phase_deadline = Some((now + rules.initial_rebalance_delay).min(limit));
        } else {
            self.prepare_rebalance(now);
        }
        self.wait_for_join(&member_id, now)
    }

    /// A static member came back with a new member id: the old id is fenced, the new one takes
    /// its place. Kafka keeps a stable group stable when nothing about the member changed.
    fn replace_static_member(
        &mut self,
        old_id: String,
        req: JoinRequest,
        now: Instant,
    ) -> Reply<JoinOutcome> {
        let new_id = self.new_member_id(&req.client_id);
        let Some(mut member) = self.members.remove(&old_id) else {
            return Reply::Now(JoinOutcome::error(
                ResponseError::UnknownMemberId,
                &req.member_id,
            ));
        };
        if let Some(w) = member.join_waiter.take() {
            let _ = w.send(JoinOutcome::error(ResponseError::FencedInstanceId, &old_id));
        }
        if let Some(w) = member.sync_waiter.take() {
            let _ = w.send(SyncOutcome::error(ResponseError::FencedInstanceId));
        }
        member.protocols = req.protocols.clone();
        member.id = new_id.clone();
        member.client_id = req.client_id.clone();
        member.client_host = req.client_host.clone();
        member.session_timeout = req.session_timeout;
        member.rebalance_timeout = req.rebalance_timeout;
        member.last_heartbeat = now;
        self.members.insert(new_id.clone(), member);
        if let Some(instance) = &req.instance_id {
            self.static_members.insert(instance.clone(), new_id.clone());
        }
        let was_leader = self.leader.as_deref() == Some(old_id.as_str());
        if was_leader {
            self.leader = Some(new_id.clone());
        }
        // As Kafka: only a change of the group's protocol needs a rebalance. A restarted
        // client's subscription bytes differ anyway (Java's carry its owned partitions and
        // generation); they are kept for the next rebalance.
        let unchanged = self.select_protocol() == self.protocol;
        match self.state {
            GroupState::Stable if unchanged => {
                if let Some(m) = self.members.get_mut(&new_id) {
                    m.synced = true;
                }
                let mut outcome = self.join_outcome(&new_id);
                outcome.skip_assignment = was_leader;
                Reply::Now(outcome)
            }
            GroupState::PreparingRebalance => {
                self.update_member(&new_id, req, now);
                self.wait_for_join(&new_id, now)
            }
            _ => {
                self.update_member(&new_id, req, now);
                self.prepare_rebalance(now);
                self.wait_for_join(&new_id, now)
            }
        }
    }

    fn update_member(&mut self, member_id: &str, req: JoinRequest, now: Instant) {
        if let Some(m) = self.members.get_mut(member_id) {
            m.protocols = req.protocols;
            m.session_timeout = req.session_timeout;
            m.rebalance_timeout = req.rebalance_timeout;
            m.client_id = req.client_id;
            m.client_host = req.client_host;
            m.last_heartbeat = now;
        }
    }

    fn wait_for_join(&mut self, member_id: &str, now: Instant) -> Reply<JoinOutcome> {
        let (tx, rx) = oneshot::channel();
        if let Some(m) = self.members.get_mut(member_id) {
            if let Some(old) = m.join_waiter.replace(tx) {
                let _ = old.send(JoinOutcome::error(
                    ResponseError::RebalanceInProgress,
                    member_id,
                ));
            }
        }
        self.maybe_complete_join(now);
        Reply::Wait(rx)
    }

    /// Starts a rebalance: everyone must rejoin within the rebalance timeout.
    fn prepare_rebalance(&mut self, now: Instant) {
        if self.state == GroupState::PreparingRebalance {
            return;
        }
        tracing::info!(group = %self.id, generation = self.generation, from = self.state.name(), "preparing rebalance");
        self.cancel_sync_waiters();
        self.state = GroupState::PreparingRebalance;
        self.initial_delay_limit = None;
        self.phase_deadline = Some(now + self.max_rebalance_timeout());
    }

    fn cancel_sync_waiters(&mut self) {
        for m in self.members.values_mut() {
            if let Some(w) = m.sync_waiter.take() {
                let _ = w.send(SyncOutcome::error(ResponseError::RebalanceInProgress));
            }
        }
    }

    fn max_rebalance_timeout(&self) -> Duration {
        self.members
            .values()
            .map(|m| m.rebalance_timeout)
            .max()
            .unwrap_or(Duration::ZERO)
    }

    /// Ends the join phase once every member rejoined (and no id handed out with
    /// MEMBER_ID_REQUIRED is still expected), unless the initial delay is running.
    fn maybe_complete_join(&mut self, now: Instant) {
        if self.state != GroupState::PreparingRebalance || self.initial_delay_limit.is_some() {
            return;
        }
        let all_joined = self.members.values().all(|m| m.join_waiter.is_some());
        if all_joined && self.pending.is_empty() {
            self.complete_join(now);
        }
    }

    /// Kafka's onCompleteJoin: drops members that did not rejoin, starts the next generation,
    /// answers every waiting JoinGroup (the leader gets the member list).
    fn complete_join(&mut self, now: Instant) {
        let gone: Vec<String> = self
            .members
            .values()
            .filter(|m| m.join_waiter.is_none())
            .map(|m| m.id.clone())
            .collect();
        for id in gone {
            self.remove_member_entry(&id);
        }
        self.pending.clear();
        self.initial_delay_limit = None;
        self.generation += 1;
        self.rebalances += 1;
        if self.members.is_empty() {
            self.become_empty(now);
            return;
        }
        self.protocol = self.select_protocol();
        if self
            .leader
            .as_ref()
            .is_none_or(|l| !self.members.contains_key(l))
        {
            self.leader = self
                .members
                .values()
                .min_by_key(|m| m.joined_seq)
                .map(|m| m.id.clone());
        }
        self.state = GroupState::CompletingRebalance;
        tracing::info!(
            group = %self.id,
            generation = self.generation,
            members = self.members.len(),
            leader = self.leader.as_deref().unwrap_or(""),
            protocol = self.protocol.as_deref().unwrap_or(""),
            "rebalance completed"
        );
        let rebalance_timeout = self.max_rebalance_timeout();
        self.phase_deadline = Some(now + rebalance_timeout);
        let ids: Vec<String> = self.members.keys().cloned().collect();
        for id in ids {
            let outcome = self.join_outcome(&id);
            if let Some(m) = self.members.get_mut(&id) {
                m.synced = false;
                m.assignment = Bytes::new();
                m.last_heartbeat = now;
                if let Some(w) = m.join_waiter.take() {
                    let _ = w.send(outcome);
                }
            }
        }
    }

    fn become_empty(&mut self, now: Instant) {
        self.state = GroupState::Empty;
        self.protocol = None;
        self.protocol_type = if self.offsets.is_empty() {
            None
        } else {
            self.protocol_type.take()
        };
        self.leader = None;
        self.phase_deadline = None;
        self.initial_delay_limit = None;
        self.empty_since = Some(now);
        self.emptiness_changes += 1;
        self.snapshots_due += 1;
    }

    /// The protocol most members prefer among those all support (Kafka's vote).
    fn select_protocol(&self) -> Option<String> {
        let candidates = self.candidate_protocols();
        let mut votes: HashMap<&str, usize> = HashMap::new();
        for m in self.members.values() {
            if let Some((name, _)) = m.protocols.iter().find(|(n, _)| candidates.contains(n)) {
                *votes.entry(name.as_str()).or_default() += 1;
            }
        }
        let mut best: Option<(&String, usize)> = None;
        for c in &candidates {
            let v = votes.get(c.as_str()).copied().unwrap_or(0);
            if best.is_none_or(|(_, most)| v > most) {
                best = Some((c, v));
            }
        }
        best.map(|(c, _)| c.clone())
    }

    fn join_outcome(&self, member_id: &str) -> JoinOutcome {
        let protocol = self.protocol.clone().unwrap_or_default();
        let leader = self.leader.clone().unwrap_or_default();
        let members = if leader == member_id {
            let mut ms: Vec<&Member> = self.members.values().collect();
            ms.sort_by_key(|m| m.joined_seq);
            ms.into_iter()
                .map(|m| JoinedMember {
                    member_id: m.id.clone(),
                    instance_id: m.instance_id.clone(),
                    metadata: m.metadata(&protocol),
                })
                .collect()
        } else {
            Vec::new()
        };
        JoinOutcome {
            error: 0,
            generation: self.generation,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol.clone(),
            leader,
            member_id: member_id.to_string(),
            members,
            skip_assignment: false,
        }
    }

    /// Checks that `member_id` is a member and, for static members, that it is the current
    /// holder of its instance id.
    fn check_member(
        &self,
        member_id: &str,
        instance_id: Option<&str>,
    ) -> Result<(), ResponseError> {
        if let Some(instance) = instance_id {
            match self.static_members.get(instance) {
                Some(current) if current == member_id => return Ok(()),
                Some(_) => return Err(ResponseError::FencedInstanceId),
                None => return Err(ResponseError::UnknownMemberId),
            }
        }
        if self.members.contains_key(member_id) {
            Ok(())
        } else {
            Err(ResponseError::UnknownMemberId)
        }
    }

    /// SyncGroup.
    #[allow(
        clippy::too_many_arguments,
        reason = "mirrors the SyncGroup request fields"
    )]
    pub fn sync(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        protocol_type: Option<&str>,
        protocol_name: Option<&str>,
        assignments: Vec<(String, Bytes)>,
        now: Instant,
    ) -> Reply<SyncOutcome> {
        let fail = |e: ResponseError| Reply::Now(SyncOutcome::error(e));
        if matches!(self.state, GroupState::Empty | GroupState::Dead) {
            return fail(ResponseError::UnknownMemberId);
        }
        if let Err(e) = self.check_member(member_id, instance_id) {
            return fail(e);
        }
        if generation != self.generation {
            return fail(ResponseError::IllegalGeneration);
        }
        if protocol_type.is_some_and(|t| Some(t) != self.protocol_type.as_deref())
            || protocol_name.is_some_and(|n| Some(n) != self.protocol.as_deref())
        {
            return fail(ResponseError::InconsistentGroupProtocol);
        }
        if let Some(m) = self.members.get_mut(member_id) {
            m.last_heartbeat = now;
            m.synced = true;
        }
        match self.state {
            GroupState::PreparingRebalance => fail(ResponseError::RebalanceInProgress),
            GroupState::CompletingRebalance => {
                let (tx, rx) = oneshot::channel();
                if let Some(m) = self.members.get_mut(member_id) {
                    m.sync_waiter = Some(tx);
                }
                if self.leader.as_deref() == Some(member_id) {
                    let mut given: HashMap<String, Bytes> = assignments.into_iter().collect();
                    for m in self.members.values_mut() {
                        m.assignment = given.remove(&m.id).unwrap_or_default();
                    }
                    self.state = GroupState::Stable;
                    self.phase_deadline = None;
                    self.snapshots_due += 1;
                    let (pt, pn) = (self.protocol_type.clone(), self.protocol.clone());
                    for m in self.members.values_mut() {
                        if let Some(w) = m.sync_waiter.take() {
                            let _ = w.send(SyncOutcome {
                                error: 0,
                                protocol_type: pt.clone(),
                                protocol_name: pn.clone(),
                                assignment: m.assignment.clone(),
                            });
                        }
                    }
                }
                Reply::Wait(rx)
            }
            GroupState::Stable => Reply::Now(SyncOutcome {
                error: 0,
                protocol_type: self.protocol_type.clone(),
                protocol_name: self.protocol.clone(),
                assignment: self
                    .members
                    .get(member_id)
                    .map(|m| m.assignment.clone())
                    .unwrap_or_default(),
            }),
            GroupState::Empty | GroupState::Dead => fail(ResponseError::UnknownMemberId),
        }
    }

    /// May this OffsetCommit be applied? Kafka's rules: a commit without generation is a
    /// "simple" commit (assign() consumers, admin tools), allowed only while nobody is a member;
    /// otherwise the member and generation must be current.
    pub fn check_commit(
        &self,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
    ) -> Result<(), ResponseError> {
        if self.state == GroupState::Dead {
            return Err(ResponseError::CoordinatorNotAvailable);
        }
        if generation < 0 && self.state == GroupState::Empty {
            return Ok(());
        }
        if let Some(instance) = instance_id {
            if self
                .static_members
                .get(instance)
                .is_some_and(|current| current != member_id)
            {
                return Err(ResponseError::FencedInstanceId);
            }
        }
        if self.state == GroupState::CompletingRebalance {
            return Err(ResponseError::RebalanceInProgress);
        }
        if !self.members.contains_key(member_id) {
            return Err(ResponseError::UnknownMemberId);
        }
        if generation != self.generation {
            return Err(ResponseError::IllegalGeneration);
        }
        Ok(())
    }

    /// Heartbeat: error code.
    pub fn heartbeat(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        now: Instant,
    ) -> Result<(), ResponseError> {
        if matches!(self.state, GroupState::Empty | GroupState::Dead) {
            return Err(ResponseError::UnknownMemberId);
        }
        self.check_member(member_id, instance_id)?;
        if let Some(m) = self.members.get_mut(member_id) {
            m.last_heartbeat = now;
        }
        if generation != self.generation {
            return Err(ResponseError::IllegalGeneration);
        }
        match self.state {
            GroupState::PreparingRebalance => Err(ResponseError::RebalanceInProgress),
            _ => Ok(()),
        }
    }

    /// LeaveGroup for one member (v3+ names members by id and/or instance id).
    pub fn leave(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        now: Instant,
    ) -> Result<(), ResponseError> {
        if self.pending.remove(member_id).is_some() {
            self.maybe_complete_join(now);
            return Ok(());
        }
        let id = match instance_id {
            Some(instance) => match self.static_members.get(instance) {
                Some(current) if member_id.is_empty() || current == member_id => current.clone(),
                Some(_) => return Err(ResponseError::FencedInstanceId),
                None => return Err(ResponseError::UnknownMemberId),
            },
            None => member_id.to_string(),
        };
        if !self.members.contains_key(&id) {
            return Err(ResponseError::UnknownMemberId);
        }
        self.remove_member(&id, ResponseError::UnknownMemberId, now);
        Ok(())
    }

    /// Removes a member and rebalances the rest (leave, session expiry).
    fn remove_member(&mut self, id: &str, waiter_error: ResponseError, now: Instant) {
        tracing::info!(group = %self.id, member = %id, state = self.state.name(), "member leaves");
        if let Some(mut m) = self.members.remove(id) {
            if let Some(w) = m.join_waiter.take() {
                let _ = w.send(JoinOutcome::error(waiter_error, id));
            }
            if let Some(w) = m.sync_waiter.take() {
                let _ = w.send(SyncOutcome::error(waiter_error));
            }
            if let Some(instance) = &m.instance_id {
                if self.static_members.get(instance).map(String::as_str) == Some(id) {
                    self.static_members.remove(instance);
                }
            }
        }
        if self.leader.as_deref() == Some(id) {
            self.leader = None;
        }
        match self.state {
            GroupState::Stable | GroupState::CompletingRebalance => {
                if self.members.is_empty() {
                    self.generation += 1;
                    self.become_empty(now);
                } else {
                    self.prepare_rebalance(now);
                }
            }
            GroupState::PreparingRebalance => {
                if self.members.is_empty() && self.pending.is_empty() {
                    self.generation += 1;
                    self.become_empty(now);
                } else {
                    self.maybe_complete_join(now);
                }
            }
            GroupState::Empty | GroupState::Dead => {}
        }
    }

    fn remove_member_entry(&mut self, id: &str) {
        tracing::info!(group = %self.id, member = %id, "member did not rejoin in time; removed");
        if let Some(m) = self.members.remove(id) {
            if let Some(instance) = &m.instance_id {
                if self.static_members.get(instance).map(String::as_str) == Some(id) {
                    self.static_members.remove(instance);
                }
            }
        }
        if self.leader.as_deref() == Some(id) {
            self.leader = None;
        }
    }

    /// Advances timers: session expiry, the end of the join phase, members that never synced.
    /// Returns true when something changed.
    pub fn tick(&mut self, now: Instant) -> bool {
        let mut changed = false;
        let expired_pending: Vec<String> = self
            .pending
            .iter()
            .filter(|(_, deadline)| **deadline <= now)
            .map(|(id, _)| id.clone())
            .collect();
        for id in expired_pending {
            self.pending.remove(&id);
            changed = true;
        }
        // Members waiting in JoinGroup or SyncGroup are alive: their request is the heartbeat.
        let expired: Vec<String> = self
            .members
            .values()
            .filter(|m| m.join_waiter.is_none() && m.sync_waiter.is_none())
            .filter(|m| now.duration_since(m.last_heartbeat) >= m.session_timeout)
            .map(|m| m.id.clone())
            .collect();
        for id in expired {
            tracing::info!(group = %self.id, member = %id, "member session expired");
            self.remove_member(&id, ResponseError::UnknownMemberId, now);
            changed = true;
        }
        if let Some(deadline) = self.phase_deadline {
            if deadline <= now {
                changed = true;
                match self.state {
                    GroupState::PreparingRebalance => {
                        if let Some(limit) = self.initial_delay_limit {
                            if self.members.values().all(|m| m.join_waiter.is_some())
                                || limit <= now
                            {
                                self.initial_delay_limit = None;
                            } else {
                                self.phase_deadline = Some(limit);
                                return changed;
                            }
                        }
                        self.complete_join(now);
                    }
                    GroupState::CompletingRebalance => {
                        // The leader never sent its assignment (or members never synced):
                        // drop those that did not sync and start over.
                        let unsynced: Vec<String> = self
                            .members
                            .values()
                            .filter(|m| !m.synced)
                            .map(|m| m.id.clone())
                            .collect();
                        for id in unsynced {
                            self.remove_member(&id, ResponseError::RebalanceInProgress, now);
                        }
                        if self.state == GroupState::CompletingRebalance {
                            self.prepare_rebalance(now);
                        }
                    }
                    _ => self.phase_deadline = None,
                }
            }
        } else if self.state == GroupState::PreparingRebalance {
            self.maybe_complete_join(now);
        }
        if !self.pending.is_empty() || changed {
            self.maybe_complete_join(now);
        }
        changed
    }

    /// Members and their subscribed topics (consumer protocol), for OffsetDelete.
    pub fn subscribed_topics(&self) -> Vec<String> {
        use kafka_protocol::messages::ConsumerProtocolSubscription;
        use kafka_protocol::protocol::Decodable;
        let Some(protocol) = &self.protocol else {
            return Vec::new();
        };
        if self.protocol_type.as_deref() != Some("consumer") {
            return Vec::new();
        }
        let mut topics = Vec::new();
        for m in self.members.values() {
            let mut metadata = m.metadata(protocol);
            if metadata.len() < 2 {
                continue;
            }
            let version = i16::from_be_bytes([metadata[0], metadata[1]]);
            let mut body = metadata.split_off(2);
            let version = version.clamp(0, 3);
            if let Ok(sub) = ConsumerProtocolSubscription::decode(&mut body, version) {
                topics.extend(sub.topics.into_iter().map(|t| t.to_string()));
            }
        }
        topics.sort();
        topics.dedup();
        topics
    }

    /// Marks the group dead (deleted, or moved to another replica); members waiting in
    /// JoinGroup or SyncGroup are answered with `error`.
    pub fn mark_dead(&mut self, error: ResponseError) {
        for m in self.members.values_mut() {
            if let Some(w) = m.join_waiter.take() {
                let _ = w.send(JoinOutcome::error(error, &m.id));
            }
            if let Some(w) = m.sync_waiter.take() {
                let _ = w.send(SyncOutcome::error(error));
            }
        }
        self.state = GroupState::Dead;
    }
}

mod snapshot;

#[cfg(test)]
mod tests;
