//! Who is who in the (proxy) cluster: which brokers exist, who leads a partition, who may write
//! it, who coordinates a group. Handlers ask here and never assume a single process. A cluster
//! is either this proxy alone or the replicas of a membership log (see [`crate::membership`]).

use std::sync::Arc;

use kafka_protocol::messages::BrokerId;

use crate::membership::view::{Endpoint, ListenerAddresses};
use crate::membership::Membership;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerAddress {
    pub id: i32,
    pub host: String,
    pub port: i32,
}

/// Cheap to clone: replicas share the membership.
#[derive(Clone)]
pub struct Cluster {
    pub cluster_id: String,
    this: BrokerAddress,
    /// This replica's address on each listener.
    listeners: ListenerAddresses,
    membership: Option<Arc<Membership>>,
}

pub use crate::membership::WritePermit;

impl Cluster {
    /// A cluster of exactly this proxy.
    pub fn single(cluster_id: String, this: BrokerAddress) -> Self {
        Self {
            cluster_id,
            this,
            listeners: ListenerAddresses::new(),
            membership: None,
        }
    }

    /// One replica of a cluster whose members meet in a membership log.
    pub fn replicated(
        cluster_id: String,
        this: BrokerAddress,
        membership: Arc<Membership>,
    ) -> Self {
        Self {
            cluster_id,
            this,
            listeners: ListenerAddresses::new(),
            membership: Some(membership),
        }
    }

    /// Names this replica's address on each listener.
    pub fn with_listeners(mut self, listeners: ListenerAddresses) -> Self {
        self.listeners = listeners;
        self
    }

    /// The brokers as clients of `listener` must reach them: each member's address on that
    /// listener (a member that announced none, from before listeners, at its one address).
    pub fn brokers_on(&self, listener: &str) -> Vec<BrokerAddress> {
        let Some(membership) = &self.membership else {
            return vec![on_listener(&self.this, &self.listeners, listener)];
        };
        let view = membership.view();
        if view.members.is_empty() {
            return vec![on_listener(&self.this, &self.listeners, listener)];
        }
        view.members
            .iter()
            .map(|m| {
                let one = BrokerAddress {
                    id: m.id.broker_id,
                    host: m.host.clone(),
                    port: m.port,
                };
                on_listener(&one, &m.listeners, listener)
            })
            .collect()
    }

    /// Broker `id` as clients of `listener` reach it.
    pub fn broker_on(&self, listener: &str, id: i32) -> Option<BrokerAddress> {
        self.brokers_on(listener).into_iter().find(|b| b.id == id)
    }

    pub fn membership(&self) -> Option<&Arc<Membership>> {
        self.membership.as_ref()
    }

    pub fn this_broker(&self) -> &BrokerAddress {
        &self.this
    }

    /// Every live member, in broker-id order; replicas that have read the same log answer
    /// Metadata with the same list. Before anything was read, this replica alone.
    pub fn brokers(&self) -> Vec<BrokerAddress> {
        let Some(membership) = &self.membership else {
            return vec![self.this.clone()];
        };
        let view = membership.view();
        if view.members.is_empty() {
            return vec![self.this.clone()];
        }
        view.members
            .iter()
            .map(|m| BrokerAddress {
                id: m.id.broker_id,
                host: m.host.clone(),
                port: m.port,
            })
            .collect()
    }

    /// The controller shown to admin clients: the lowest live broker id.
    pub fn controller_id(&self) -> BrokerId {
        BrokerId(self.brokers().first().map_or(self.this.id, |b| b.id))
    }

    /// The replica that leads (is the single writer of) a partition in the newest view.
    pub fn partition_leader(&self, topic: &str, partition: i32) -> i32 {
        self.membership
            .as_ref()
            .and_then(|m| m.view().owner(topic, partition).map(|o| o.id.broker_id))
            .unwrap_or(self.this.id)
    }

    /// Whether this replica leads the partition in the newest view (reads are served by it).
    pub fn is_local_leader(&self, topic: &str, partition: i32) -> bool {
        match &self.membership {
            None => true,
            Some(m) => m
                .view()
                .owner(topic, partition)
                .is_some_and(|o| o.id == m.me()),
        }
    }

    /// `Some` when this replica may append to the partition now; checked right before every
    /// append, as the fence that keeps one writer per partition.
    pub fn write_permit(&self, topic: &str, partition: i32) -> Option<WritePermit> {
        match &self.membership {
            None => Some(WritePermit::default()),
            Some(m) => m.write_permit(topic, partition),
        }
    }

    /// The partition of the internal offsets topic that holds `group` (Kafka's
    /// `abs(groupId.hashCode) % offsets.topic.num.partitions`, with a stable hash).
    pub fn offsets_partition(group: &str, partitions: u32) -> i32 {
        (stable_hash(group, 0) % u64::from(partitions.max(1))) as i32
    }

    /// The replica coordinating `group`: the leader of its offsets partition, so the single
    /// writer of a group's offsets is also the one running its membership.
    pub fn group_coordinator(
        &self,
        offsets_topic: &str,
        group: &str,
        partitions: u32,
    ) -> BrokerAddress {
        let leader =
            self.partition_leader(offsets_topic, Self::offsets_partition(group, partitions));
        self.brokers()
            .into_iter()
            .find(|b| b.id == leader)
            .unwrap_or_else(|| self.this.clone())
    }
}

fn on_listener(broker: &BrokerAddress, listeners: &ListenerAddresses, name: &str) -> BrokerAddress {
    match listeners.get(name) {
        Some(Endpoint { host, port }) => BrokerAddress {
            id: broker.id,
            host: host.clone(),
            port: *port,
        },
        None => broker.clone(),
    }
}

/// FNV-1a over a name and a number: deterministic across processes and versions (unlike
/// `std`'s randomized hasher), so every replica computes the same partition for a group.
fn stable_hash(topic: &str, partition: i32) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in topic.bytes().chain(partition.to_be_bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_member_leads_everything() {
        let c = Cluster::single(
            "c".into(),
            BrokerAddress {
                id: 7,
                host: "h".into(),
                port: 1,
            },
        );
        assert_eq!(c.partition_leader("t", 3), 7);
        assert!(c.is_local_leader("anything", 0));
        assert!(c.write_permit("anything", 0).is_some());
        assert_eq!(c.controller_id(), BrokerId(7));
        assert_eq!(c.group_coordinator("__o", "any-group", 16).id, 7);
    }

    #[test]
    fn groups_spread_over_offsets_partitions() {
        let mut seen = std::collections::BTreeSet::new();
        for g in 0..200 {
            let p = Cluster::offsets_partition(&format!("group-{g}"), 16);
            assert!((0..16).contains(&p));
            seen.insert(p);
        }
        assert_eq!(seen.len(), 16);
        assert_eq!(
            Cluster::offsets_partition("g", 16),
            Cluster::offsets_partition("g", 16)
        );
    }

    #[test]
    fn hash_is_stable() {
        assert_eq!(stable_hash("orders", 0), stable_hash("orders", 0));
        assert_ne!(stable_hash("orders", 0), stable_hash("orders", 1));
    }
}
