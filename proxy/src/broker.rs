//! The state every handler shares: configuration, storage, cluster view, partition state and
//! metrics. One `Broker` per proxy process.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use uuid::Uuid;

use crate::backend::{BackendResult, SharedBackend, TopicInfo, TopicSettings};
use crate::budget::MemoryBudget;
use crate::cluster::{BrokerAddress, Cluster};
use crate::config::{MembershipKind, ProxyConfig};
use crate::cpu_pool::CpuPool;
use crate::groups::GroupCoordinator;
use crate::membership::view::{Endpoint, ListenerAddresses};
use crate::membership::Membership;
use crate::metrics::Metrics;
use crate::partitions::PartitionRegistry;
use crate::topic_state::{LogStartFloor, TopicState, STATE_TOPIC};

pub struct Broker {
    pub config: ProxyConfig,
    /// The store, seen through `topic_state` (log start offsets applied, state log hidden).
    pub backend: SharedBackend,
    /// Topic configs and log start offsets the proxy keeps in Iggy.
    pub topic_state: Arc<TopicState>,
    pub cluster: Cluster,
    pub partitions: PartitionRegistry,
    pub groups: Arc<GroupCoordinator>,
    pub metrics: Arc<Metrics>,
    /// Memory every connection reserves from before holding client-driven bytes.
    pub budget: MemoryBudget,
    /// Where produced batches are decompressed and large answers encoded (see [`CpuPool`]).
    pub cpu_pool: CpuPool,
    producer_ids: AtomicI64,
}

/// Namespace for topic ids: ids are derived from the topic name so every replica agrees.
const TOPIC_ID_NAMESPACE: Uuid = Uuid::from_u128(0x6b61_666b_612d_6967_6779_2d74_6f70_6963);

impl Broker {
    pub fn new(
        config: ProxyConfig,
        backend: SharedBackend,
        metrics: Arc<Metrics>,
    ) -> Result<Self, String> {
        let (host, port) = config.advertised()?;
        let this = BrokerAddress {
            id: config.broker_id,
            host,
            port,
        };
        let mut listeners = ListenerAddresses::new();
        for listener in config.listeners() {
            let (host, port) = listener.advertised()?;
            listeners.insert(listener.name, Endpoint { host, port });
        }
        let cluster = match config.cluster.membership {
            MembershipKind::Single => Cluster::single(config.cluster_id.clone(), this),
            MembershipKind::Log => {
                let membership = Membership::new(
                    backend.clone(),
                    &config.cluster,
                    this.id,
                    this.host.clone(),
                    this.port,
                    listeners.clone(),
                );
                Cluster::replicated(config.cluster_id.clone(), this, Arc::new(membership))
            }
        }
        .with_listeners(listeners);
        let topic_state = Arc::new(TopicState::new(backend.clone()));
        let backend = LogStartFloor::wrap(backend, topic_state.clone());
        let groups = Arc::new(GroupCoordinator::new(
            config.groups.clone(),
            backend.clone(),
            metrics.clone(),
            cluster.clone(),
        ));
        Ok(Self {
            producer_ids: AtomicI64::new(first_producer_id(config.broker_id)),
            groups,
            budget: MemoryBudget::new(
                config.limits.memory_budget_bytes,
                config
                    .limits
                    .max_fetch_bytes
                    .max(config.limits.decompressed_cap()),
            ),
            cpu_pool: CpuPool::new(),
            config,
            backend,
            topic_state,
            cluster,
            partitions: PartitionRegistry::default(),
            metrics,
        })
    }

    /// A fresh producer id, unique across replicas (broker id in the top bits) and restarts
    /// (start time in the middle bits).
    pub fn next_producer_id(&self) -> i64 {
        self.producer_ids.fetch_add(1, Ordering::Relaxed)
    }

    pub fn topic_id(name: &str) -> Uuid {
        Uuid::new_v5(&TOPIC_ID_NAMESPACE, name.as_bytes())
    }

    /// Looks a topic up, creating it with the default partition count when `create` is true and
    /// auto-creation is enabled.
    pub async fn topic_or_create(
        &self,
        name: &str,
        create: bool,
    ) -> BackendResult<Option<TopicInfo>> {
        if let Some(info) = self.backend.describe_topic(name).await? {
            return Ok(Some(info));
        }
        if !(create && self.config.auto_create_topics) || validate_topic_name(name).is_err() {
            return Ok(None);
        }
        let settings = TopicSettings {
            partitions: self.config.default_partitions,
            ..TopicSettings::default()
        };
        match self.backend.create_topic(name, &settings).await {
            Ok(()) | Err(crate::backend::BackendError::TopicAlreadyExists(_)) => {
                tracing::info!(
                    topic = name,
                    partitions = settings.partitions,
                    "auto-created topic"
                );
                self.backend.describe_topic(name).await
            }
            Err(e) => Err(e),
        }
    }
}

fn first_producer_id(broker_id: i32) -> i64 {
    let start_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    // 10 bits of broker id, then milliseconds since the epoch shifted to leave room for ids
    // handed out before the next restart.
    (i64::from(broker_id) & 0x3ff) << 52 | (start_ms & 0xff_ffff_ffff) << 10
}

/// Topics the proxy keeps for itself (committed offsets, the membership log, topic state).
/// Clients may read the first two and see them flagged internal in Metadata (the topic state log
/// is hidden), but never write, delete, grow or trim them.
pub fn is_internal_topic(name: &str) -> bool {
    name == crate::groups::offsets_log::OFFSETS_TOPIC
        || name == crate::membership::log::MEMBERS_TOPIC
        || name == STATE_TOPIC
}

/// Kafka's topic name rules: 1..=249 characters of `[a-zA-Z0-9._-]`, not `.` or `..`.
pub fn validate_topic_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 249 {
        return Err(format!(
            "topic name must be 1..=249 characters, got {}",
            name.len()
        ));
    }
    if name == "." || name == ".." {
        return Err("topic name cannot be '.' or '..'".into());
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!("topic name contains illegal character {c:?}"));
    }
    Ok(())
}

/// Milliseconds since `start`, saturating.
pub fn elapsed_ms(start: Instant) -> u64 {
    start.elapsed().as_millis().try_into().unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names() {
        assert!(validate_topic_name("orders.v2_x-1").is_ok());
        assert!(validate_topic_name("").is_err());
        assert!(validate_topic_name("..").is_err());
        assert!(validate_topic_name("a b").is_err());
        assert!(validate_topic_name(&"x".repeat(250)).is_err());
    }

    #[test]
    fn topic_ids_are_stable_and_distinct() {
        assert_eq!(Broker::topic_id("a"), Broker::topic_id("a"));
        assert_ne!(Broker::topic_id("a"), Broker::topic_id("b"));
        assert!(!Broker::topic_id("a").is_nil());
    }

    #[test]
    fn producer_ids_differ_per_broker() {
        assert_ne!(first_producer_id(0) >> 52, first_producer_id(1) >> 52);
        assert!(first_producer_id(1023) > 0);
    }
}
