//! Who is in the cluster and who may write what, computed from the membership log alone.
//!
//! Every replica reads the same log (one Iggy partition, so one order) and applies the same
//! pure rules to it, so replicas that have read the same prefix agree on everything here. They
//! read at different speeds, though, so the rules are built to stay safe while views differ:
//!
//! - The view at an entry is every member with a heartbeat no older than the lease (by the
//!   log's own append times) that has not left. Two incarnations claiming one broker id (a pod
//!   restarted before its lease ran out): the one that joined first (earlier `joined_at`) keeps
//!   it; the other waits.
//! - A heartbeat names the time of its sender's previous one. One that comes more than a lease
//!   after it (a paused process waking up) bans its incarnation for good: everyone has already
//!   dropped it, and it must join again as a new incarnation, behind whoever holds its id.
//! - A partition's owner in a view is picked by rendezvous hashing over the view's broker ids,
//!   so a change of membership moves only the partitions of the member that came or went.
//! - Heartbeats carry how far their sender has read (`applied`). The committed point of a
//!   replica that has read up to `L` is the furthest entry every other member of the view at
//!   `L` has acknowledged. A replica may write a partition only if it owns it in every view
//!   from its committed point to `L`. Two replicas that both pass this test would each have to
//!   own the partition in the view at the larger of their committed points, which is
//!   impossible (docs/replicas.md has the argument). Members that stopped acknowledging are
//!   dropped once their lease is over, and they stop writing before that themselves
//!   (`Membership::lease_valid`).

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::Arc;

/// One process of the cluster: broker id plus a random incarnation drawn at startup, so that a
/// restarted replica is told apart from its predecessor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MemberId {
    pub broker_id: i32,
    pub incarnation: u64,
}

/// Where a member takes clients on one listener.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Endpoint {
    pub host: String,
    pub port: i32,
}

/// A member's address per listener name. Empty from replicas that predate listeners: they
/// have one, at `host`/`port`.
pub type ListenerAddresses = BTreeMap<String, Endpoint>;

/// A member as Metadata shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub id: MemberId,
    /// The address on the first listener.
    pub host: String,
    pub port: i32,
    pub listeners: ListenerAddresses,
    /// Offset of this incarnation's first heartbeat: who claimed a broker id first.
    pub joined_at: i64,
}

/// An entry of the membership log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    Heartbeat {
        id: MemberId,
        host: String,
        port: i32,
        listeners: ListenerAddresses,
        /// Offset of the sender's first heartbeat; `None` in that first heartbeat itself.
        joined_at: Option<i64>,
        /// Offset and log time of the sender's previous heartbeat; `None` in the first.
        previous: Option<(i64, i64)>,
        /// The last entry the sender had applied when it sent this one (-1: none).
        applied: i64,
    },
    /// Sent on shutdown, after the sender stopped writing: its partitions move at once instead
    /// of after its lease.
    Leave { id: MemberId },
}

/// The members at one point of the log, one per broker id, in broker-id order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct View {
    pub members: Vec<Member>,
}

impl View {
    /// The member owning (the single writer of) a partition; `None` in an empty view.
    pub fn owner(&self, topic: &str, partition: i32) -> Option<&Member> {
        self.members
            .iter()
            .max_by_key(|m| (weight(topic, partition, m.id.broker_id), m.id.broker_id))
    }

    pub fn contains(&self, id: MemberId) -> bool {
        self.members.iter().any(|m| m.id == id)
    }
}

/// Rendezvous weight of a broker for a partition (FNV-1a: the same in every process and build).
pub fn weight(topic: &str, partition: i32, broker_id: i32) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let bytes = topic
        .bytes()
        .chain(partition.to_be_bytes())
        .chain(broker_id.to_be_bytes());
    for byte in bytes {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    // FNV's low bits mix poorly for inputs that differ only at the end: finish with a
    // multiply-xorshift so that neighbouring broker ids get unrelated weights.
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xff51_afd7_ed55_8ccd);
    hash ^ (hash >> 33)
}

impl Entry {
    pub fn id(&self) -> MemberId {
        match self {
            Self::Heartbeat { id, .. } | Self::Leave { id } => *id,
        }
    }
}

#[derive(Debug, Clone)]
struct Logged {
    offset: i64,
    time_ms: i64,
    entry: Entry,
}

/// What one replica knows of the membership log: the entries within the lease of the newest,
/// the views from its committed point on, and every member's acknowledgement.
#[derive(Debug)]
pub struct Ledger {
    lease_ms: i64,
    window: VecDeque<Logged>,
    /// Views in effect from an offset on, with the log time they took effect; the first may
    /// start before `known_from`.
    changes: VecDeque<(i64, Arc<View>)>,
    change_times: VecDeque<i64>,
    acks: HashMap<MemberId, i64>,
    /// Incarnations that came back after their lease ran out; forgotten once out of the window.
    banned: HashSet<MemberId>,
    /// Views at offsets from here on are exact: the entries a lease before them were read.
    known_from: Option<i64>,
    first_time_ms: Option<i64>,
    last: Option<i64>,
    newest_time_ms: i64,
}

impl Ledger {
    pub fn new(lease_ms: i64) -> Self {
        Self {
            lease_ms,
            window: VecDeque::new(),
            changes: VecDeque::new(),
            change_times: VecDeque::new(),
            acks: HashMap::new(),
            banned: HashSet::new(),
            known_from: None,
            first_time_ms: None,
            last: None,
            newest_time_ms: i64::MIN,
        }
    }

    /// The last entry applied (-1 before any).
    pub fn applied(&self) -> i64 {
        self.last.unwrap_or(-1)
    }

    /// Applies the entry at `offset`, appended at `time_ms` (the log's clock). Entries must
    /// come in offset order; a repeated or older offset is ignored.
    pub fn apply(&mut self, offset: i64, time_ms: i64, entry: Entry) {
        if self.last.is_some_and(|last| offset <= last) {
            return;
        }
        self.last = Some(offset);
        // Append times may step back slightly (clock adjustments): never let "now" go back.
        self.newest_time_ms = self.newest_time_ms.max(time_ms);
        let now = self.newest_time_ms;
        let first_time = *self.first_time_ms.get_or_insert(now);
        if self.known_from.is_none() && now - first_time >= self.lease_ms {
            self.known_from = Some(offset);
        }
        if let Entry::Heartbeat {
            id,
            applied,
            previous,
            ..
        } = &entry
        {
            let returned = previous.is_some_and(|(_, at)| time_ms - at > self.lease_ms);
            let rejoined = previous.is_none() && self.window_members().contains_key(id);
            if returned || rejoined {
                self.banned.insert(*id);
            }
            if !self.banned.contains(id) {
                let ack = self.acks.entry(*id).or_insert(-1);
                *ack = (*ack).max(*applied);
            }
        }
        self.window.push_back(Logged {
            offset,
            time_ms,
            entry,
        });
        while self
            .window
            .front()
            .is_some_and(|e| e.time_ms < now - self.lease_ms)
        {
            self.window.pop_front();
        }
        let view = self.view_of_window();
        if self.changes.back().is_none_or(|(_, v)| **v != view) {
            self.changes.push_back((offset, Arc::new(view)));
            self.change_times.push_back(now);
        }
        let present: HashSet<MemberId> = self.window_members().into_keys().collect();
        self.acks.retain(|id, _| present.contains(id));
        let in_window: HashSet<MemberId> = self.window.iter().map(|e| e.entry.id()).collect();
        self.banned.retain(|id| in_window.contains(id));
        self.forget_settled_views();
    }

    /// Declares that reading started at the log's first entry ever: nothing is missing, so views
    /// are exact from the start.
    pub fn assume_complete(&mut self) {
        if self.last.is_none() {
            self.known_from = Some(-1);
        }
    }

    /// Log time of an entry still in the window (a member looks up its own last heartbeat).
    pub fn time_of(&self, offset: i64) -> Option<i64> {
        self.window
            .iter()
            .find(|e| e.offset == offset)
            .map(|e| e.time_ms)
    }

    /// Whether an incarnation was banned for coming back after its lease ran out.
    pub fn is_banned(&self, id: MemberId) -> bool {
        self.banned.contains(&id)
    }

    /// The view at the last applied entry.
    pub fn latest(&self) -> Arc<View> {
        self.changes
            .back()
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    }

    /// Whether views are exact yet (a lease of log has been read).
    pub fn is_settled(&self) -> bool {
        self.known_from.is_some()
    }

    /// The furthest entry every other member of the latest view has acknowledged.
    pub fn committed(&self, me: MemberId) -> i64 {
        let latest = self.latest();
        latest
            .members
            .iter()
            .filter(|m| m.id != me)
            .map(|m| self.acks.get(&m.id).copied().unwrap_or(-1))
            .min()
            .unwrap_or(i64::MAX)
            .min(self.applied())
    }

    /// Whether `me` may append to a partition now: it owns it in every view from its committed
    /// point to the last entry applied, and those views are exactly known. `Some` holds where
    /// its current run of ownership began (in the views still kept), so that state tied to the
    /// partition can tell a run it did not see end.
    pub fn may_write(&self, me: MemberId, topic: &str, partition: i32) -> Option<i64> {
        let committed = self.committed(me);
        if self.known_from.is_none_or(|known| committed < known) {
            return None;
        }
        let owns = |view: &View| view.owner(topic, partition).is_some_and(|m| m.id == me);
        // The view in effect at `committed` is the last change at or before it.
        let start = self.changes.iter().rposition(|(at, _)| *at <= committed)?;
        if !self.changes.iter().skip(start).all(|(_, view)| owns(view)) {
            return None;
        }
        let run = self
            .changes
            .iter()
            .take(start)
            .rev()
            .take_while(|(_, view)| owns(view))
            .count();
        Some(self.changes[start - run].0)
    }

    /// Heartbeating members in the window: latest address, earliest `joined_at`, minus those
    /// that left.
    fn window_members(&self) -> BTreeMap<MemberId, Member> {
        let mut members: BTreeMap<MemberId, Member> = BTreeMap::new();
        let mut left = HashSet::new();
        for logged in &self.window {
            match &logged.entry {
                Entry::Heartbeat {
                    id,
                    host,
                    port,
                    listeners,
                    joined_at,
                    ..
                } => {
                    let joined_at = joined_at.unwrap_or(logged.offset);
                    let member = members.entry(*id).or_insert_with(|| Member {
                        id: *id,
                        host: host.clone(),
                        port: *port,
                        listeners: listeners.clone(),
                        joined_at,
                    });
                    member.host.clone_from(host);
                    member.port = *port;
                    member.listeners.clone_from(listeners);
                    member.joined_at = member.joined_at.min(joined_at);
                }
                Entry::Leave { id } => {
                    left.insert(*id);
                }
            }
        }
        members.retain(|id, _| !left.contains(id) && !self.banned.contains(id));
        members
    }

    fn view_of_window(&self) -> View {
        let mut by_broker: BTreeMap<i32, Member> = BTreeMap::new();
        for member in self.window_members().into_values() {
            match by_broker.get(&member.id.broker_id) {
                Some(holder) if (holder.joined_at, holder.id) <= (member.joined_at, member.id) => {}
                _ => {
                    by_broker.insert(member.id.broker_id, member);
                }
            }
        }
        View {
            members: by_broker.into_values().collect(),
        }
    }

    /// Views before the one in effect at the lowest point anyone may still be at are not
    /// needed for permissions: drop them (keeping at least the latest) once they are also a
    /// lease old, so that the start of an ownership run stays put while its holder keeps
    /// checking (see `WritePermit::continues`).
    fn forget_settled_views(&mut self) {
        let lowest_ack = self.acks.values().copied().min().unwrap_or(self.applied());
        let old = self.newest_time_ms - self.lease_ms;
        while self.changes.len() > 1
            && self.changes[1].0 <= lowest_ack
            && self.change_times[1] < old
        {
            self.changes.pop_front();
            self.change_times.pop_front();
        }
    }
}

#[cfg(test)]
mod tests;
