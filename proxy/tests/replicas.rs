//! Replicas as one cluster (membership log): several proxies in front of one store split the
//! partitions and groups among themselves, every replica answers Metadata and FindCoordinator
//! the same way, only the leader accepts a partition's produces, and a replica that leaves
//! hands its partitions over. Runs on a shared memory back end (proxies in one process) and,
//! with IGGY_SERVER_BIN, on real Iggy.

mod wire;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use iggy_testkit::IggyServer;
use kafka_iggy_proxy::backend::memory::MemoryBackend;
use kafka_iggy_proxy::config::{BackendKind, MembershipKind};
use kafka_iggy_proxy::metrics::Metrics;
use kafka_iggy_proxy::Proxy;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::Compression;
use wire::ops::*;
use wire::Wire;

const PARTITIONS: i32 = 12;
/// Generous: a hand-off takes a heartbeat or two (300 ms each here).
const SETTLE: Duration = Duration::from_secs(15);

enum Store<'a> {
    Memory(Arc<MemoryBackend>),
    Iggy(&'a IggyServer),
}

async fn replica(store: &Store<'_>, broker_id: i32) -> Proxy {
    let kind = match store {
        Store::Memory(_) => BackendKind::Memory,
        Store::Iggy(_) => BackendKind::Iggy,
    };
    let mut config = wire::local_config(kind);
    config.broker_id = broker_id;
    config.cluster.membership = MembershipKind::Log;
    config.cluster.lease_ms = 1_500;
    config.cluster.heartbeat_interval_ms = 300;
    config.groups.initial_rebalance_delay_ms = 0;
    match store {
        Store::Memory(shared) => {
            Proxy::start_with_backend(config, shared.clone(), Arc::new(Metrics::new()))
                .await
                .expect("replica starts")
        }
        Store::Iggy(server) => {
            config.iggy.address = server.address().to_string();
            Proxy::start(config).await.expect("replica starts on Iggy")
        }
    }
}

/// (broker ids, leader of each partition) as one replica answers Metadata.
async fn metadata(wire: &mut Wire, name: &str) -> (Vec<i32>, Vec<i32>) {
    let request = MetadataRequest::default().with_topics(Some(vec![
        metadata_request::MetadataRequestTopic::default().with_name(Some(topic(name))),
    ]));
    let ResponseKind::Metadata(r) = wire.call(ApiKey::Metadata, 12, request.into()).await else {
        panic!("kind")
    };
    let brokers = r.brokers.iter().map(|b| b.node_id.0).collect();
    let mut leaders: Vec<(i32, i32)> = r
        .topics
        .iter()
        .flat_map(|t| t.partitions.iter())
        .map(|p| (p.partition_index, p.leader_id.0))
        .collect();
    leaders.sort_unstable();
    (brokers, leaders.into_iter().map(|(_, l)| l).collect())
}

async fn coordinator_of(wire: &mut Wire, group: &str) -> (i16, i32) {
    let request = FindCoordinatorRequest::default()
        .with_key_type(0)
        .with_coordinator_keys(vec![StrBytes::from_string(group.to_string())]);
    let ResponseKind::FindCoordinator(r) =
        wire.call(ApiKey::FindCoordinator, 4, request.into()).await
    else {
        panic!("kind")
    };
    let c = &r.coordinators[0];
    (c.error_code, c.node_id.0)
}

/// Waits until every replica answers Metadata with `brokers` and the same leaders; returns
/// the leaders.
async fn settled(wires: &mut [Wire], name: &str, partitions: i32, brokers: &[i32]) -> Vec<i32> {
    let deadline = Instant::now() + SETTLE;
    loop {
        let mut answers = Vec::new();
        for wire in wires.iter_mut() {
            answers.push(metadata(wire, name).await);
        }
        let agreed = answers.windows(2).all(|w| w[0] == w[1]);
        if agreed && answers[0].0 == brokers && answers[0].1.len() == partitions as usize {
            return answers.remove(0).1;
        }
        assert!(
            Instant::now() < deadline,
            "replicas did not settle on {brokers:?}: {answers:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Produces one record through `wire`, retrying while the hand-off to this leader is under way.
async fn produce_eventually(wire: &mut Wire, name: &str, partition: i32, value: &str) -> i64 {
    let deadline = Instant::now() + SETTLE;
    loop {
        let records = batch(&[value], None, Compression::None);
        let (code, base) = produce(wire, name, partition, records).await;
        if code == 0 {
            return base;
        }
        assert_eq!(
            code,
            ResponseError::NotLeaderOrFollower.code(),
            "partition {partition}"
        );
        assert!(
            Instant::now() < deadline,
            "partition {partition} never accepted the produce"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn replicas_split_partitions_and_hand_them_over(store: Store<'_>) {
    let name = "replicated";
    let mut proxies = vec![replica(&store, 0).await];
    let mut first = Wire::connect(proxies[0].kafka_addr).await;
    settled(std::slice::from_mut(&mut first), "first", 1, &[0]).await;
    assert_eq!(create_topic(&mut first, name, PARTITIONS).await, 0);
    drop(first);
    proxies.push(replica(&store, 1).await);
    proxies.push(replica(&store, 2).await);
    let mut wires = Vec::new();
    for proxy in &proxies {
        wires.push(Wire::connect(proxy.kafka_addr).await);
    }

    // Every replica names the same three brokers and the same leader for each partition.
    let leaders = settled(&mut wires, name, PARTITIONS, &[0, 1, 2]).await;
    let distinct: BTreeSet<i32> = leaders.iter().copied().collect();
    assert!(
        distinct.len() >= 2,
        "partitions spread over replicas: {leaders:?}"
    );

    // The leader takes a partition's records, the others refuse them.
    let mut next = vec![0i64; PARTITIONS as usize];
    for p in 0..PARTITIONS {
        let leader = leaders[p as usize] as usize;
        let base = produce_eventually(&mut wires[leader], name, p, &format!("p{p}-0")).await;
        assert_eq!(base, 0);
        next[p as usize] = 1;
        let other = (leader + 1) % 3;
        let refused = produce(
            &mut wires[other],
            name,
            p,
            batch(&["no"], None, Compression::None),
        )
        .await;
        assert_eq!(
            refused.0,
            ResponseError::NotLeaderOrFollower.code(),
            "partition {p} via {other}"
        );
    }

    // One coordinator per group, the same from every replica.
    for g in 0..8 {
        let group = format!("group-{g}");
        let mut answers = BTreeSet::new();
        for wire in &mut wires {
            let (code, node) = coordinator_of(wire, &group).await;
            if code == 0 {
                answers.insert(node);
            }
        }
        assert!(answers.len() <= 1, "{group}: {answers:?}");
    }

    // An idempotent producer's batch lands on a partition of broker 1 just before it leaves.
    let moving = leaders
        .iter()
        .position(|l| *l == 1)
        .expect("broker 1 leads a partition") as i32;
    let idempotent = batch(&["idem-a", "idem-b"], Some((4242, 0, 0)), Compression::None);
    let (code, stored_at) = produce(&mut wires[1], name, moving, idempotent.clone()).await;
    assert_eq!((code, stored_at), (0, next[moving as usize]));
    next[moving as usize] += 2;
    let mut expected: Vec<Vec<String>> = (0..PARTITIONS).map(|p| vec![format!("p{p}-0")]).collect();
    expected[moving as usize].extend(["idem-a".to_string(), "idem-b".to_string()]);

    // Broker 1 leaves: its partitions move to the two others, offsets continue.
    let leaving = proxies.remove(1);
    wires.remove(1);
    leaving.shutdown().await;
    let after = settled(&mut wires, name, PARTITIONS, &[0, 2]).await;

    // The producer, not having seen the answer, retries through the new leader: the new
    // leader read the producer's batches back from the log and answers it as a duplicate.
    let new_leader = usize::from(after[moving as usize] == 2);
    let deadline = Instant::now() + SETTLE;
    let retried = loop {
        let answer = produce(&mut wires[new_leader], name, moving, idempotent.clone()).await;
        if answer.0 != ResponseError::NotLeaderOrFollower.code() || Instant::now() > deadline {
            break answer;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        retried,
        (0, stored_at),
        "the retry is answered with where the batch is"
    );
    let next_in_sequence = batch(&["idem-c"], Some((4242, 0, 2)), Compression::None);
    let (code, base) = produce(&mut wires[new_leader], name, moving, next_in_sequence).await;
    assert_eq!((code, base), (0, next[moving as usize]));
    next[moving as usize] += 1;
    expected[moving as usize].push("idem-c".to_string());

    for p in 0..PARTITIONS {
        let leader = after[p as usize];
        assert_ne!(leader, 1);
        if leaders[p as usize] != 1 {
            assert_eq!(
                leader, leaders[p as usize],
                "partition {p} moved although its leader stayed"
            );
        }
        let wire = &mut wires[usize::from(leader == 2)];
        let base = produce_eventually(wire, name, p, &format!("p{p}-1")).await;
        assert_eq!(base, next[p as usize], "partition {p}");
        expected[p as usize].push(format!("p{p}-1"));
        let fetched = fetch(wire, name, p, 0, 100, 1).await;
        let values: Vec<String> = fetched.records.into_iter().map(|(_, v)| v).collect();
        assert_eq!(values, expected[p as usize], "partition {p}");
    }
    for proxy in proxies {
        proxy.shutdown().await;
    }
}

#[tokio::test]
async fn replicas_split_partitions_and_hand_them_over_on_memory() {
    replicas_split_partitions_and_hand_them_over(Store::Memory(Arc::new(MemoryBackend::new())))
        .await;
}

#[tokio::test]
async fn replicas_split_partitions_and_hand_them_over_on_iggy() {
    let Some(server) = IggyServer::from_env().await else {
        return;
    };
    replicas_split_partitions_and_hand_them_over(Store::Iggy(&server)).await;
}

/// /readyz with replicas: ready once joined; a second process with the same broker id (a pod
/// restarted while its predecessor still runs) waits, not ready, until the first leaves.
async fn readiness_follows_membership(store: Store<'_>) {
    let first = replica(&store, 5).await;
    async fn ready(proxy: &Proxy) -> (u16, String) {
        wire::http_get(proxy, "/readyz").await
    }
    let deadline = Instant::now() + SETTLE;
    while ready(&first).await.0 != 200 {
        assert!(
            Instant::now() < deadline,
            "the first replica never became ready"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let second = replica(&store, 5).await;
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    let (status, body) = ready(&second).await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("waiting for broker id 5"), "{body}");
    first.shutdown().await;
    let deadline = Instant::now() + SETTLE;
    while ready(&second).await.0 != 200 {
        assert!(
            Instant::now() < deadline,
            "the second replica never took over the id"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    second.shutdown().await;
}

#[tokio::test]
async fn readiness_follows_membership_on_memory() {
    readiness_follows_membership(Store::Memory(Arc::new(MemoryBackend::new()))).await;
}

#[tokio::test]
async fn readiness_follows_membership_on_iggy() {
    let Some(server) = IggyServer::from_env().await else {
        return;
    };
    readiness_follows_membership(Store::Iggy(&server)).await;
}

/// JoinGroup v7 with a rebalance timeout as long as a Java consumer's (max.poll.interval.ms);
/// retries once with the member id the coordinator hands out (KIP-394).
async fn join_group(wire: &mut Wire, group: &str, member_id: &str) -> JoinGroupResponse {
    let request = JoinGroupRequest::default()
        .with_group_id(GroupId(StrBytes::from_string(group.to_string())))
        .with_session_timeout_ms(30_000)
        .with_rebalance_timeout_ms(300_000)
        .with_member_id(StrBytes::from_string(member_id.to_string()))
        .with_protocol_type(StrBytes::from_static_str("consumer"))
        .with_protocols(vec![join_group_request::JoinGroupRequestProtocol::default(
        )
        .with_name(StrBytes::from_static_str("range"))
        .with_metadata(bytes::Bytes::from_static(b"\0\0\0\0\0\0"))]);
    let ResponseKind::JoinGroup(r) = wire.call(ApiKey::JoinGroup, 7, request.into()).await else {
        panic!("kind")
    };
    if r.error_code == ResponseError::MemberIdRequired.code() {
        let id = r.member_id.to_string();
        return Box::pin(join_group(wire, group, &id)).await;
    }
    r
}

/// A member waiting in JoinGroup when its group moves to another replica is answered at once
/// (NOT_COORDINATOR, so it finds the new coordinator), not left waiting for a rebalance that
/// nobody drives any more: Java consumers wait max.poll.interval.ms + 5 s for that answer.
async fn pending_joins_are_answered_when_the_group_moves(store: Store<'_>) {
    let first = replica(&store, 0).await;
    let mut wire = Wire::connect(first.kafka_addr).await;
    settled(std::slice::from_mut(&mut wire), "first", 1, &[0]).await;
    let groups: Vec<String> = (0..12).map(|g| format!("moving-group-{g}")).collect();
    let mut waiting = Vec::new();
    for group in &groups {
        // A stable member that will not rejoin, then a newcomer whose join must wait for it.
        let deadline = Instant::now() + SETTLE;
        loop {
            let code = join_group(&mut wire, group, "").await.error_code;
            if code == 0 {
                break;
            }
            assert!(
                code == ResponseError::NotCoordinator.code()
                    || code == ResponseError::CoordinatorLoadInProgress.code(),
                "{group}: {code}"
            );
            assert!(Instant::now() < deadline, "{group} never loaded");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let mut newcomer = Wire::connect(first.kafka_addr).await;
        let name = group.clone();
        let task =
            tokio::spawn(async move { join_group(&mut newcomer, &name, "").await.error_code });
        waiting.push((group.clone(), task));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        waiting.iter().all(|(_, task)| !task.is_finished()),
        "newcomers wait for the stable members"
    );

    let second = replica(&store, 1).await;
    let mut wires = vec![wire, Wire::connect(second.kafka_addr).await];
    settled(&mut wires, "first", 1, &[0, 1]).await;
    let mut moved = 0;
    for (group, task) in waiting {
        let (code, node) = coordinator_of(&mut wires[0], &group).await;
        if code != 0 || node != 1 {
            task.abort(); // stayed: its newcomer rightly waits for the stable member
            continue;
        }
        moved += 1;
        let answer = tokio::time::timeout(Duration::from_secs(5), task).await;
        let code = answer
            .unwrap_or_else(|_| panic!("the join of {group} was not answered after the move"))
            .expect("join task");
        assert_eq!(code, ResponseError::NotCoordinator.code(), "{group}");
    }
    assert!(moved > 0, "some group moves to the new replica");
    first.shutdown().await;
    second.shutdown().await;
}

#[tokio::test]
async fn pending_joins_are_answered_when_the_group_moves_on_memory() {
    pending_joins_are_answered_when_the_group_moves(Store::Memory(Arc::new(MemoryBackend::new())))
        .await;
}

#[tokio::test]
async fn pending_joins_are_answered_when_the_group_moves_on_iggy() {
    let Some(server) = IggyServer::from_env().await else {
        return;
    };
    pending_joins_are_answered_when_the_group_moves(Store::Iggy(&server)).await;
}

async fn sync_group(wire: &mut Wire, group: &str, member_id: &str, generation: i32) -> i16 {
    let request = SyncGroupRequest::default()
        .with_group_id(GroupId(StrBytes::from_string(group.to_string())))
        .with_member_id(StrBytes::from_string(member_id.to_string()))
        .with_generation_id(generation)
        .with_protocol_type(Some(StrBytes::from_static_str("consumer")))
        .with_protocol_name(Some(StrBytes::from_static_str("range")))
        .with_assignments(vec![
            sync_group_request::SyncGroupRequestAssignment::default()
                .with_member_id(StrBytes::from_string(member_id.to_string()))
                .with_assignment(bytes::Bytes::from_static(b"everything")),
        ]);
    let ResponseKind::SyncGroup(r) = wire.call(ApiKey::SyncGroup, 5, request.into()).await else {
        panic!("kind")
    };
    r.error_code
}

async fn heartbeat(wire: &mut Wire, group: &str, member_id: &str, generation: i32) -> i16 {
    let request = HeartbeatRequest::default()
        .with_group_id(GroupId(StrBytes::from_string(group.to_string())))
        .with_member_id(StrBytes::from_string(member_id.to_string()))
        .with_generation_id(generation);
    let ResponseKind::Heartbeat(r) = wire.call(ApiKey::Heartbeat, 4, request.into()).await else {
        panic!("kind")
    };
    r.error_code
}

/// Heartbeats `group` through the replica that coordinates it, retrying while the group is
/// on its way there; returns the first answer that is not about the coordinator.
async fn heartbeat_coordinator(
    wires: &mut [Wire],
    group: &str,
    member: &str,
    generation: i32,
) -> i16 {
    let deadline = Instant::now() + SETTLE;
    loop {
        let (code, node) = coordinator_of(&mut wires[0], group).await;
        if code == 0 {
            let answer = heartbeat(&mut wires[node as usize], group, member, generation).await;
            if answer != ResponseError::NotCoordinator.code()
                && answer != ResponseError::CoordinatorLoadInProgress.code()
                && answer != ResponseError::CoordinatorNotAvailable.code()
            {
                return answer;
            }
        }
        assert!(
            Instant::now() < deadline,
            "{group} never reached its coordinator"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A group that moves to another replica, and back, keeps its generation: members carry on
/// heartbeating (no rebalance), because the new coordinator restores the generation from the
/// offsets log.
async fn groups_keep_their_generation_across_hand_offs(store: Store<'_>) {
    let first = replica(&store, 0).await;
    let mut wire = Wire::connect(first.kafka_addr).await;
    settled(std::slice::from_mut(&mut wire), "first", 1, &[0]).await;
    let mut groups = Vec::new();
    for g in 0..10 {
        let group = format!("steady-group-{g}");
        let deadline = Instant::now() + SETTLE;
        let joined = loop {
            let joined = join_group(&mut wire, &group, "").await;
            if joined.error_code == 0 {
                break joined;
            }
            assert!(Instant::now() < deadline, "{group}: {}", joined.error_code);
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let member = joined.member_id.to_string();
        assert_eq!(
            sync_group(&mut wire, &group, &member, joined.generation_id).await,
            0
        );
        assert_eq!(
            heartbeat(&mut wire, &group, &member, joined.generation_id).await,
            0
        );
        groups.push((group, member, joined.generation_id));
    }
    // The coordinator writes each new generation to the log within a tick.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let second = replica(&store, 1).await;
    let mut wires = vec![wire, Wire::connect(second.kafka_addr).await];
    settled(&mut wires, "first", 1, &[0, 1]).await;
    let mut moved = 0;
    for (group, member, generation) in &groups {
        moved += usize::from(coordinator_of(&mut wires[0], group).await.1 == 1);
        let answer = heartbeat_coordinator(&mut wires, group, member, *generation).await;
        assert_eq!(answer, 0, "{group} after the move to 2 replicas");
    }
    assert!(moved > 0, "some group moves to the new replica");

    // And back, when the second replica leaves.
    second.shutdown().await;
    wires.truncate(1);
    settled(&mut wires, "first", 1, &[0]).await;
    for (group, member, generation) in &groups {
        let answer = heartbeat_coordinator(&mut wires, group, member, *generation).await;
        assert_eq!(answer, 0, "{group} after the move back");
    }
    first.shutdown().await;

    // A restarted proxy, too, carries on with the generation.
    let again = replica(&store, 0).await;
    let mut wires = vec![Wire::connect(again.kafka_addr).await];
    for (group, member, generation) in &groups {
        let answer = heartbeat_coordinator(&mut wires, group, member, *generation).await;
        assert_eq!(answer, 0, "{group} after a restart");
    }
    again.shutdown().await;
}

#[tokio::test]
async fn groups_keep_their_generation_across_hand_offs_on_memory() {
    groups_keep_their_generation_across_hand_offs(Store::Memory(Arc::new(MemoryBackend::new())))
        .await;
}

#[tokio::test]
async fn groups_keep_their_generation_across_hand_offs_on_iggy() {
    let Some(server) = IggyServer::from_env().await else {
        return;
    };
    groups_keep_their_generation_across_hand_offs(Store::Iggy(&server)).await;
}
