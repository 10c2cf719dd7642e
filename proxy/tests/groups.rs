//! Consumer-group APIs at the protocol level, where exact error codes and batched forms can be
//! asserted: FindCoordinator (batched, transaction keys), JoinGroup (MEMBER_ID_REQUIRED),
//! SyncGroup, Heartbeat, OffsetCommit / OffsetFetch (multi-group), DescribeGroups, ListGroups,
//! LeaveGroup (batched), OffsetDelete, DeleteGroups, the internal offsets topic, and the refused
//! new consumer protocol. Runs on the memory back end and, with IGGY_SERVER_BIN, on real Iggy.
#![allow(clippy::unwrap_used, reason = "test code: a panic is a failed test")]

mod wire;

use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use iggy_testkit::IggyServer;
use kafka_iggy_proxy::backend::memory::MemoryBackend;
use kafka_iggy_proxy::config::{BackendKind, ProxyConfig};
use kafka_iggy_proxy::metrics::Metrics;
use kafka_iggy_proxy::Proxy;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Encodable, StrBytes};
use kafka_protocol::records::Compression;
use wire::ops::*;
use wire::Wire;

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

fn group_config() -> ProxyConfig {
    let mut config = ProxyConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        backend: BackendKind::Memory,
        ..ProxyConfig::default()
    };
    config.groups.initial_rebalance_delay_ms = 0;
    config.groups.max_offset_metadata_bytes = 100;
    config
}

/// Consumer-protocol subscription metadata (version 0) for `topics`, as a Java client sends it.
fn subscription(topics: &[&str]) -> Bytes {
    let sub =
        ConsumerProtocolSubscription::default().with_topics(topics.iter().map(|t| s(t)).collect());
    let mut buf = BytesMut::new();
    buf.put_i16(0);
    sub.encode(&mut buf, 0).unwrap();
    buf.freeze()
}

async fn find_coordinator(
    w: &mut Wire,
    version: i16,
    key_type: i8,
    keys: &[&str],
) -> FindCoordinatorResponse {
    let mut r = FindCoordinatorRequest::default().with_key_type(key_type);
    if version >= 4 {
        r = r.with_coordinator_keys(keys.iter().map(|k| s(k)).collect());
    } else {
        r = r.with_key(s(keys[0]));
    }
    let ResponseKind::FindCoordinator(resp) =
        w.call(ApiKey::FindCoordinator, version, r.into()).await
    else {
        panic!("kind")
    };
    resp
}

async fn join(
    w: &mut Wire,
    group: &str,
    member: &str,
    session_ms: i32,
    metadata: Bytes,
) -> JoinGroupResponse {
    let r = JoinGroupRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_session_timeout_ms(session_ms)
        .with_rebalance_timeout_ms(10_000)
        .with_member_id(s(member))
        .with_protocol_type(s("consumer"))
        .with_protocols(vec![join_group_request::JoinGroupRequestProtocol::default(
        )
        .with_name(s("range"))
        .with_metadata(metadata)]);
    let ResponseKind::JoinGroup(resp) = w.call(ApiKey::JoinGroup, 7, r.into()).await else {
        panic!("kind")
    };
    resp
}

async fn heartbeat(w: &mut Wire, group: &str, member: &str, generation: i32) -> i16 {
    let r = HeartbeatRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_member_id(s(member))
        .with_generation_id(generation);
    let ResponseKind::Heartbeat(resp) = w.call(ApiKey::Heartbeat, 4, r.into()).await else {
        panic!("kind")
    };
    resp.error_code
}

async fn commit(
    w: &mut Wire,
    group: &str,
    member: &str,
    generation: i32,
    parts: &[(&str, i32, i64, &str)],
) -> Vec<(i32, i16)> {
    let topics = parts
        .iter()
        .map(|(t, p, o, m)| {
            offset_commit_request::OffsetCommitRequestTopic::default()
                .with_name(topic(t))
                .with_partitions(vec![
                    offset_commit_request::OffsetCommitRequestPartition::default()
                        .with_partition_index(*p)
                        .with_committed_offset(*o)
                        .with_committed_metadata(Some(s(m))),
                ])
        })
        .collect();
    let r = OffsetCommitRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_member_id(s(member))
        .with_generation_id_or_member_epoch(generation)
        .with_topics(topics);
    let ResponseKind::OffsetCommit(resp) = w.call(ApiKey::OffsetCommit, 8, r.into()).await else {
        panic!("kind")
    };
    resp.topics
        .iter()
        .flat_map(|t| {
            t.partitions
                .iter()
                .map(|p| (p.partition_index, p.error_code))
        })
        .collect()
}

async fn describe(
    w: &mut Wire,
    version: i16,
    groups: &[&str],
) -> Vec<describe_groups_response::DescribedGroup> {
    let r = DescribeGroupsRequest::default()
        .with_groups(groups.iter().map(|g| GroupId(s(g))).collect());
    let ResponseKind::DescribeGroups(resp) =
        w.call(ApiKey::DescribeGroups, version, r.into()).await
    else {
        panic!("kind")
    };
    resp.groups
}

async fn list_groups(w: &mut Wire, states: &[&str]) -> Vec<String> {
    let r = ListGroupsRequest::default().with_states_filter(states.iter().map(|x| s(x)).collect());
    let ResponseKind::ListGroups(resp) = w.call(ApiKey::ListGroups, 4, r.into()).await else {
        panic!("kind")
    };
    resp.groups.iter().map(|g| g.group_id.to_string()).collect()
}

async fn delete_groups(w: &mut Wire, groups: &[&str]) -> Vec<i16> {
    let r = DeleteGroupsRequest::default()
        .with_groups_names(groups.iter().map(|g| GroupId(s(g))).collect());
    let ResponseKind::DeleteGroups(resp) = w.call(ApiKey::DeleteGroups, 2, r.into()).await else {
        panic!("kind")
    };
    resp.results.iter().map(|r| r.error_code).collect()
}

async fn group_protocol(proxy: &Proxy) {
    let mut w = Wire::connect(proxy.kafka_addr).await;
    assert_eq!(create_topic(&mut w, "gt", 2).await, 0);
    assert_eq!(create_topic(&mut w, "other-topic", 1).await, 0);

    // FindCoordinator: single (v3), batched (v4), and transaction keys refused fatally.
    let single = find_coordinator(&mut w, 3, 0, &["g"]).await;
    assert_eq!(single.error_code, 0);
    assert_eq!(single.port, i32::from(proxy.kafka_addr.port()));
    let batched = find_coordinator(&mut w, 4, 0, &["g", "h"]).await;
    assert_eq!(batched.coordinators.len(), 2);
    assert!(batched
        .coordinators
        .iter()
        .all(|c| c.error_code == 0 && c.node_id.0 == 0));
    let tx = find_coordinator(&mut w, 4, 1, &["tx-1"]).await;
    assert_eq!(
        tx.coordinators[0].error_code, 53,
        "TRANSACTIONAL_ID_AUTHORIZATION_FAILED"
    );

    // JoinGroup errors.
    assert_eq!(
        join(&mut w, "", "", 10_000, subscription(&["gt"]))
            .await
            .error_code,
        24,
        "INVALID_GROUP_ID"
    );
    assert_eq!(
        join(&mut w, "g", "", 100, subscription(&["gt"]))
            .await
            .error_code,
        26,
        "INVALID_SESSION_TIMEOUT"
    );
    assert_eq!(
        join(&mut w, "g", "nobody", 10_000, subscription(&["gt"]))
            .await
            .error_code,
        25,
        "UNKNOWN_MEMBER_ID"
    );

    // KIP-394: the first join hands out a member id; the second joins with it.
    let first = join(&mut w, "g", "", 10_000, subscription(&["gt"])).await;
    assert_eq!(first.error_code, 79, "MEMBER_ID_REQUIRED");
    let member = first.member_id.to_string();
    assert!(!member.is_empty());
    let joined = join(&mut w, "g", &member, 10_000, subscription(&["gt"])).await;
    assert_eq!(joined.error_code, 0);
    assert_eq!(joined.generation_id, 1);
    assert_eq!(joined.leader.as_str(), member);
    assert_eq!(
        joined.protocol_name.as_ref().map(|p| p.as_str()),
        Some("range")
    );
    assert_eq!(joined.members.len(), 1);

    let sync = SyncGroupRequest::default()
        .with_group_id(GroupId(s("g")))
        .with_generation_id(1)
        .with_member_id(s(&member))
        .with_protocol_type(Some(s("consumer")))
        .with_protocol_name(Some(s("range")))
        .with_assignments(vec![
            sync_group_request::SyncGroupRequestAssignment::default()
                .with_member_id(s(&member))
                .with_assignment(Bytes::from_static(b"my-assignment")),
        ]);
    let ResponseKind::SyncGroup(synced) = w.call(ApiKey::SyncGroup, 5, sync.into()).await else {
        panic!("kind")
    };
    assert_eq!(synced.error_code, 0);
    assert_eq!(synced.assignment, Bytes::from_static(b"my-assignment"));

    assert_eq!(heartbeat(&mut w, "g", &member, 1).await, 0);
    assert_eq!(
        heartbeat(&mut w, "g", &member, 0).await,
        22,
        "ILLEGAL_GENERATION"
    );
    assert_eq!(
        heartbeat(&mut w, "g", "stranger", 1).await,
        25,
        "UNKNOWN_MEMBER_ID"
    );

    // OffsetCommit: per-partition errors.
    let long = "m".repeat(101);
    let results = commit(
        &mut w,
        "g",
        &member,
        1,
        &[("gt", 0, 5, "meta"), ("gt", 7, 1, ""), ("gt", 1, 3, &long)],
    )
    .await;
    assert_eq!(
        results,
        vec![(0, 0), (7, 3), (1, 12)],
        "ok, UNKNOWN_TOPIC_OR_PARTITION, OFFSET_METADATA_TOO_LARGE"
    );
    assert_eq!(
        commit(&mut w, "g", &member, 9, &[("gt", 1, 1, "")]).await,
        vec![(1, 22)]
    );
    assert_eq!(
        commit(&mut w, "g", "", -1, &[("gt", 1, 1, "")]).await,
        vec![(1, 25)],
        "simple commit while members exist"
    );
    assert_eq!(
        commit(&mut w, "simple", "", -1, &[("other-topic", 0, 4, "")]).await,
        vec![(0, 0)]
    );

    // OffsetFetch v8: two groups in one request, one with all topics, one with a partition.
    let fetch = OffsetFetchRequest::default().with_groups(vec![
        offset_fetch_request::OffsetFetchRequestGroup::default()
            .with_group_id(GroupId(s("g")))
            .with_topics(None),
        offset_fetch_request::OffsetFetchRequestGroup::default()
            .with_group_id(GroupId(s("unknown-group")))
            .with_topics(Some(vec![
                offset_fetch_request::OffsetFetchRequestTopics::default()
                    .with_name(topic("gt"))
                    .with_partition_indexes(vec![0]),
            ])),
    ]);
    let ResponseKind::OffsetFetch(fetched) = w.call(ApiKey::OffsetFetch, 8, fetch.into()).await
    else {
        panic!("kind")
    };
    let g = &fetched.groups[0];
    assert_eq!(g.error_code, 0);
    assert_eq!(g.topics.len(), 1);
    assert_eq!(g.topics[0].name.as_str(), "gt");
    let p = &g.topics[0].partitions;
    assert_eq!(
        (p.len(), p[0].partition_index, p[0].committed_offset),
        (1, 0, 5)
    );
    assert_eq!(p[0].metadata.as_ref().map(|m| m.as_str()), Some("meta"));
    assert_eq!(
        fetched.groups[1].topics[0].partitions[0].committed_offset,
        -1
    );

    // OffsetFetch v5, one group, named partitions.
    let fetch = OffsetFetchRequest::default()
        .with_group_id(GroupId(s("simple")))
        .with_topics(Some(vec![
            offset_fetch_request::OffsetFetchRequestTopic::default()
                .with_name(topic("other-topic"))
                .with_partition_indexes(vec![0]),
        ]));
    let ResponseKind::OffsetFetch(fetched) = w.call(ApiKey::OffsetFetch, 5, fetch.into()).await
    else {
        panic!("kind")
    };
    assert_eq!(fetched.topics[0].partitions[0].committed_offset, 4);

    // DescribeGroups / ListGroups.
    let described = describe(&mut w, 5, &["g", "missing"]).await;
    assert_eq!(described[0].group_state.as_str(), "Stable");
    assert_eq!(described[0].protocol_data.as_str(), "range");
    assert_eq!(described[0].members.len(), 1);
    assert_eq!(
        described[0].members[0].member_assignment,
        Bytes::from_static(b"my-assignment")
    );
    assert!(described[0].members[0]
        .client_host
        .starts_with("/127.0.0.1"));
    assert_eq!(
        (described[1].error_code, described[1].group_state.as_str()),
        (0, "Dead")
    );
    assert_eq!(
        describe(&mut w, 6, &["missing"]).await[0].error_code,
        69,
        "GROUP_ID_NOT_FOUND"
    );
    let stable = list_groups(&mut w, &["Stable"]).await;
    assert!(
        stable.contains(&"g".to_string()) && !stable.contains(&"simple".to_string()),
        "{stable:?}"
    );
    assert!(list_groups(&mut w, &[])
        .await
        .contains(&"simple".to_string()));

    // A group with members cannot be deleted; offsets of a subscribed topic neither.
    assert_eq!(
        delete_groups(&mut w, &["g", "nope"]).await,
        vec![68, 69],
        "NON_EMPTY_GROUP, GROUP_ID_NOT_FOUND"
    );
    let od = OffsetDeleteRequest::default()
        .with_group_id(GroupId(s("g")))
        .with_topics(vec![
            offset_delete_request::OffsetDeleteRequestTopic::default()
                .with_name(topic("gt"))
                .with_partitions(vec![
                    offset_delete_request::OffsetDeleteRequestPartition::default()
                        .with_partition_index(0),
                ]),
        ]);
    let ResponseKind::OffsetDelete(deleted) = w.call(ApiKey::OffsetDelete, 0, od.into()).await
    else {
        panic!("kind")
    };
    assert_eq!(
        deleted.topics[0].partitions[0].error_code, 86,
        "GROUP_SUBSCRIBED_TO_TOPIC"
    );

    // LeaveGroup v3+: a batch of members; each gets its own answer.
    let leave = LeaveGroupRequest::default()
        .with_group_id(GroupId(s("g")))
        .with_members(vec![
            leave_group_request::MemberIdentity::default().with_member_id(s(&member)),
            leave_group_request::MemberIdentity::default().with_member_id(s("ghost")),
        ]);
    let ResponseKind::LeaveGroup(left) = w.call(ApiKey::LeaveGroup, 4, leave.into()).await else {
        panic!("kind")
    };
    let codes: Vec<i16> = left.members.iter().map(|m| m.error_code).collect();
    assert_eq!(codes, vec![0, 25]);
    assert_eq!(
        describe(&mut w, 5, &["g"]).await[0].group_state.as_str(),
        "Empty"
    );
    assert_eq!(delete_groups(&mut w, &["g"]).await, vec![0]);
    let after = describe(&mut w, 5, &["g"]).await;
    assert_eq!(after[0].group_state.as_str(), "Dead");

    // The internal offsets topic: visible as internal, not writable by clients.
    let md = MetadataRequest::default()
        .with_topics(Some(vec![metadata_request::MetadataRequestTopic::default(
        )
        .with_name(Some(topic("__consumer_offsets")))]));
    let ResponseKind::Metadata(md) = w.call(ApiKey::Metadata, 12, md.into()).await else {
        panic!("kind")
    };
    assert_eq!(md.topics[0].error_code, 0);
    assert!(md.topics[0].is_internal);
    let (code, _) = produce(
        &mut w,
        "__consumer_offsets",
        0,
        batch(&["x"], None, Compression::None),
    )
    .await;
    assert_eq!(code, 17, "INVALID_TOPIC_EXCEPTION");

    // The new consumer protocol is not served: the connection is closed, as by a broker
    // that does not know the API, and clients fall back to the classic protocol.
    let mut w2 = Wire::connect(proxy.kafka_addr).await;
    let (_, frame) = w2
        .encode_request(
            ApiKey::ConsumerGroupHeartbeat,
            0,
            &ConsumerGroupHeartbeatRequest::default().into(),
        )
        .unwrap();
    w2.send_raw(&frame).await;
    assert!(w2.is_closed().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_protocol_on_memory() {
    let proxy = Proxy::start_with_backend(
        group_config(),
        Arc::new(MemoryBackend::new()),
        Arc::new(Metrics::new()),
    )
    .await
    .unwrap();
    group_protocol(&proxy).await;
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_protocol_on_iggy() {
    let Some(server) = IggyServer::from_env().await else {
        return;
    };
    let mut config = group_config();
    config.backend = BackendKind::Iggy;
    config.iggy.address = server.address().to_string();
    let proxy = Proxy::start(config.clone()).await.unwrap();
    group_protocol(&proxy).await;
    // Committed offsets come back after a restart: the "simple" group's commit.
    let mut w = Wire::connect(proxy.kafka_addr).await;
    assert_eq!(
        commit(&mut w, "kept", "", -1, &[("gt", 1, 42, "after-restart")]).await,
        vec![(1, 0)]
    );
    proxy.shutdown().await;
    let proxy = Proxy::start(config).await.unwrap();
    let mut w = Wire::connect(proxy.kafka_addr).await;
    let fetch = OffsetFetchRequest::default()
        .with_group_id(GroupId(s("kept")))
        .with_topics(None);
    let ResponseKind::OffsetFetch(fetched) = w.call(ApiKey::OffsetFetch, 7, fetch.into()).await
    else {
        panic!("kind")
    };
    let p = &fetched.topics[0].partitions[0];
    assert_eq!((p.partition_index, p.committed_offset), (1, 42));
    assert_eq!(
        p.metadata.as_ref().map(|m| m.as_str()),
        Some("after-restart")
    );
    proxy.shutdown().await;
}

/// Joins `group` as a new member (KIP-394 round trip), syncs as its leader and returns
/// (member id, generation).
async fn join_and_sync(w: &mut Wire, group: &str) -> (String, i32) {
    let first = join(w, group, "", 10_000, subscription(&["gt"])).await;
    assert_eq!(first.error_code, 79, "MEMBER_ID_REQUIRED");
    let member = first.member_id.to_string();
    let joined = join(w, group, &member, 10_000, subscription(&["gt"])).await;
    assert_eq!(joined.error_code, 0, "join {group}");
    let sync = SyncGroupRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_generation_id(joined.generation_id)
        .with_member_id(s(&member))
        .with_assignments(vec![
            sync_group_request::SyncGroupRequestAssignment::default()
                .with_member_id(s(&member))
                .with_assignment(Bytes::new()),
        ]);
    let ResponseKind::SyncGroup(synced) = w.call(ApiKey::SyncGroup, 5, sync.into()).await else {
        panic!("kind")
    };
    assert_eq!(synced.error_code, 0, "sync {group}");
    (member, joined.generation_id)
}

async fn leave(w: &mut Wire, group: &str, member: &str) {
    let leave = LeaveGroupRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_members(vec![
            leave_group_request::MemberIdentity::default().with_member_id(s(member))
        ]);
    let ResponseKind::LeaveGroup(left) = w.call(ApiKey::LeaveGroup, 4, leave.into()).await else {
        panic!("kind")
    };
    assert_eq!(left.members[0].error_code, 0, "leave {group}");
}

/// The committed offset of `group` for partition 0 of topic `gt` (-1: nothing committed).
async fn committed(w: &mut Wire, group: &str) -> i64 {
    let fetch = OffsetFetchRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_topics(Some(vec![
            offset_fetch_request::OffsetFetchRequestTopic::default()
                .with_name(topic("gt"))
                .with_partition_indexes(vec![0]),
        ]));
    let ResponseKind::OffsetFetch(fetched) = w.call(ApiKey::OffsetFetch, 7, fetch.into()).await
    else {
        panic!("kind")
    };
    assert_eq!(fetched.error_code, 0);
    fetched.topics[0].partitions[0].committed_offset
}

/// Offsets expire after this long in the retention tests: short, so they run in seconds.
const SHORT_RETENTION_MS: u64 = 2_000;

fn short_retention(mut config: ProxyConfig) -> ProxyConfig {
    config.groups.offsets_retention_ms = SHORT_RETENTION_MS;
    config
}

/// The reported defect: a member commits once, then stays in its group without committing for
/// longer than the retention; after a proxy restart its offset must still be there, because
/// offsets of a group with members never expire.
async fn idle_member_keeps_offsets_across_restart(start: impl AsyncFn() -> Proxy) {
    let proxy = start().await;
    let mut w = Wire::connect(proxy.kafka_addr).await;
    assert_eq!(create_topic(&mut w, "gt", 1).await, 0);
    let (member, generation) = join_and_sync(&mut w, "idle").await;
    assert_eq!(
        commit(&mut w, "idle", &member, generation, &[("gt", 0, 10, "")]).await,
        vec![(0, 0)]
    );
    let idle_until =
        tokio::time::Instant::now() + std::time::Duration::from_millis(SHORT_RETENTION_MS * 3 / 2);
    while tokio::time::Instant::now() < idle_until {
        assert_eq!(heartbeat(&mut w, "idle", &member, generation).await, 0);
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert_eq!(committed(&mut w, "idle").await, 10, "before the restart");
    proxy.shutdown().await;

    let proxy = start().await;
    let mut w = Wire::connect(proxy.kafka_addr).await;
    assert_eq!(committed(&mut w, "idle").await, 10, "after the restart");
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_member_keeps_offsets_across_restart_on_memory() {
    let backend = Arc::new(MemoryBackend::new());
    idle_member_keeps_offsets_across_restart(async || {
        let config = short_retention(group_config());
        Proxy::start_with_backend(config, backend.clone(), Arc::new(Metrics::new()))
            .await
            .unwrap()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_member_keeps_offsets_across_restart_on_iggy() {
    let Some(server) = IggyServer::from_env().await else {
        return;
    };
    let mut config = short_retention(group_config());
    config.backend = BackendKind::Iggy;
    config.iggy.address = server.address().to_string();
    idle_member_keeps_offsets_across_restart(async || Proxy::start(config.clone()).await.unwrap())
        .await;
}

/// Kafka's rule for a group whose members all left: its offsets are kept for the retention
/// counted from when it became empty (not from the commit), across restarts, and then expire.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emptied_group_keeps_offsets_for_the_retention_from_when_it_became_empty() {
    let backend = Arc::new(MemoryBackend::new());
    let start = async || {
        let config = short_retention(group_config());
        Proxy::start_with_backend(config, backend.clone(), Arc::new(Metrics::new()))
            .await
            .unwrap()
    };
    let ms = std::time::Duration::from_millis;
    let proxy = start().await;
    let mut w = Wire::connect(proxy.kafka_addr).await;
    assert_eq!(create_topic(&mut w, "gt", 1).await, 0);
    let (member, generation) = join_and_sync(&mut w, "emptied").await;
    assert_eq!(
        commit(&mut w, "emptied", &member, generation, &[("gt", 0, 7, "")]).await,
        vec![(0, 0)]
    );
    // Stays a member for most of the retention, then leaves.
    tokio::time::sleep(ms(SHORT_RETENTION_MS * 3 / 4)).await;
    assert_eq!(heartbeat(&mut w, "emptied", &member, generation).await, 0);
    leave(&mut w, "emptied", &member).await;
    let emptied_at = tokio::time::Instant::now();
    // Past the retention counted from the commit, within it counted from the leave.
    tokio::time::sleep(ms(SHORT_RETENTION_MS / 2)).await;
    assert_eq!(committed(&mut w, "emptied").await, 7, "before the restart");
    proxy.shutdown().await;
    let proxy = start().await;
    let mut w = Wire::connect(proxy.kafka_addr).await;
    assert_eq!(committed(&mut w, "emptied").await, 7, "after the restart");
    proxy.shutdown().await;
    // Once the retention has passed since the group became empty, the offsets are gone, in
    // memory and after a restart.
    tokio::time::sleep_until(emptied_at + ms(SHORT_RETENTION_MS + 500)).await;
    let proxy = start().await;
    let mut w = Wire::connect(proxy.kafka_addr).await;
    assert_eq!(committed(&mut w, "emptied").await, -1, "expired");
    proxy.shutdown().await;
}

/// Groups whose members left keep only committed offsets; they must not count against
/// `max_groups`, or throw-away groups (console consumers, one-off jobs) lock out new ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throw_away_groups_do_not_lock_out_new_groups() {
    let mut config = group_config();
    config.groups.max_groups = 3;
    let proxy = Proxy::start_with_backend(
        config,
        Arc::new(MemoryBackend::new()),
        Arc::new(Metrics::new()),
    )
    .await
    .unwrap();
    let mut w = Wire::connect(proxy.kafka_addr).await;
    assert_eq!(create_topic(&mut w, "gt", 1).await, 0);
    for i in 0..5 {
        let group = format!("throw-away-{i}");
        let (member, generation) = join_and_sync(&mut w, &group).await;
        assert_eq!(
            commit(&mut w, &group, &member, generation, &[("gt", 0, i, "")]).await,
            vec![(0, 0)]
        );
        leave(&mut w, &group, &member).await;
    }
    let (member, generation) = join_and_sync(&mut w, "newcomer").await;
    assert_eq!(
        commit(
            &mut w,
            "newcomer",
            &member,
            generation,
            &[("gt", 0, 99, "")]
        )
        .await,
        vec![(0, 0)]
    );
    assert_eq!(committed(&mut w, "throw-away-4").await, 4);
    assert_eq!(committed(&mut w, "newcomer").await, 99);
    // Groups with members are still limited: two more fill the limit, a fourth is refused.
    let mut live = vec![];
    for group in ["live-1", "live-2"] {
        live.push(join_and_sync(&mut w, group).await);
    }
    let refused = join(&mut w, "one-too-many", "", 10_000, subscription(&["gt"])).await;
    assert_eq!(refused.error_code, 44, "POLICY_VIOLATION");
    // Existing groups keep working.
    let (member, generation) = &live[0];
    assert_eq!(heartbeat(&mut w, "live-1", member, *generation).await, 0);
    proxy.shutdown().await;
}
