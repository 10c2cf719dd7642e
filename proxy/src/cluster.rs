//! Who is who in the (proxy) cluster. Today there is one proxy, but every question that will
//! have a different answer with several replicas (which brokers exist, who leads a partition, who
//! coordinates a group) is asked here, so handlers never assume a single process.

use kafka_protocol::messages::BrokerId;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerAddress {
    pub id: i32,
    pub host: String,
    pub port: i32,
}

#[derive(Debug, Clone)]
pub struct Cluster {
    pub cluster_id: String,
    this: BrokerAddress,
    members: Vec<BrokerAddress>,
}

impl Cluster {
    /// A cluster of exactly this proxy.
    pub fn single(cluster_id: String, this: BrokerAddress) -> Self {
        Self {
            cluster_id,
            members: vec![this.clone()],
            this,
        }
    }

    /// A cluster of several replicas (every replica must be given the same `members`).
    pub fn with_members(
        cluster_id: String,
        this: BrokerAddress,
        mut members: Vec<BrokerAddress>,
    ) -> Self {
        if !members.contains(&this) {
            members.push(this.clone());
        }
        members.sort_by_key(|b| b.id);
        Self {
            cluster_id,
            members,
            this,
        }
    }

    pub fn this_broker(&self) -> &BrokerAddress {
        &self.this
    }

    /// Every member, in broker-id order; all replicas answer Metadata with this same list.
    pub fn brokers(&self) -> &[BrokerAddress] {
        &self.members
    }

    /// The controller shown to admin clients.
    pub fn controller_id(&self) -> BrokerId {
        BrokerId(self.members.first().map_or(self.this.id, |b| b.id))
    }

    /// The replica that owns (is the single writer of) a partition.
    pub fn partition_leader(&self, topic: &str, partition: i32) -> i32 {
        let index = stable_hash(topic, partition) % self.members.len() as u64;
        self.members[index as usize].id
    }

    pub fn is_local_leader(&self, topic: &str, partition: i32) -> bool {
        self.partition_leader(topic, partition) == self.this.id
    }

    /// The partition of the internal offsets topic that holds `group` (Kafka's
    /// `abs(groupId.hashCode) % offsets.topic.num.partitions`, with a stable hash).
    pub fn offsets_partition(group: &str, partitions: u32) -> i32 {
        (stable_hash(group, 0) % u64::from(partitions.max(1))) as i32
    }

    /// The replica coordinating `group`: the owner of its offsets partition, so the single
    /// writer of a group's offsets is also the one running its membership.
    pub fn group_coordinator(
        &self,
        offsets_topic: &str,
        group: &str,
        partitions: u32,
    ) -> &BrokerAddress {
        let leader =
            self.partition_leader(offsets_topic, Self::offsets_partition(group, partitions));
        self.members
            .iter()
            .find(|b| b.id == leader)
            .unwrap_or(&self.this)
    }
}

/// FNV-1a over topic and partition: deterministic across processes and versions (unlike
/// `std`'s randomized hasher), so every replica computes the same owner.
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
        assert_eq!(c.controller_id(), BrokerId(7));
        assert_eq!(c.group_coordinator("__o", "any-group", 16).id, 7);
    }

    #[test]
    fn each_group_has_exactly_one_coordinator_among_replicas() {
        let members: Vec<BrokerAddress> = (0..3)
            .map(|id| BrokerAddress {
                id,
                host: format!("proxy-{id}"),
                port: 9092,
            })
            .collect();
        let views: Vec<Cluster> = members
            .iter()
            .map(|m| Cluster::with_members("c".into(), m.clone(), members.clone()))
            .collect();
        let mut per_replica = [0; 3];
        for g in 0..300 {
            let group = format!("group-{g}");
            let answers: Vec<i32> = views
                .iter()
                .map(|v| v.group_coordinator("__consumer_offsets", &group, 16).id)
                .collect();
            // Every replica names the same coordinator ...
            assert!(
                answers.iter().all(|a| *a == answers[0]),
                "{group}: {answers:?}"
            );
            per_replica[answers[0] as usize] += 1;
        }
        // ... and the groups are spread over the replicas.
        assert!(per_replica.iter().all(|n| *n > 0), "{per_replica:?}");
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
