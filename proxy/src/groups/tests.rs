use super::*;
use crate::backend::memory::MemoryBackend;
use offsets_log::now_ms;

fn settings() -> GroupSettings {
    GroupSettings {
        max_groups: 3,
        max_empty_groups: 2,
        ..GroupSettings::default()
    }
}

fn coordinator(backend: SharedBackend) -> GroupCoordinator {
    let this = crate::cluster::BrokerAddress {
        id: 0,
        host: "localhost".into(),
        port: 9092,
    };
    let cluster = Cluster::single("c".into(), this);
    GroupCoordinator::new(settings(), backend, Arc::new(Metrics::new()), cluster)
}

fn commit_of(offset: i64, metadata: &str) -> CommittedOffset {
    CommittedOffset {
        offset,
        leader_epoch: -1,
        metadata: Some(metadata.into()),
        commit_timestamp_ms: now_ms(),
        written_ms: now_ms(),
    }
}

async fn simple_commit(c: &GroupCoordinator, group: &str, topic: &str, p: i32, offset: i64) {
    c.ready(group).await.unwrap();
    c.commit(
        group,
        "",
        None,
        -1,
        vec![((topic.into(), p), commit_of(offset, "m"))],
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn committed_offsets_survive_a_new_coordinator_on_the_same_storage() {
    let backend: SharedBackend = Arc::new(MemoryBackend::new());
    let first = coordinator(backend.clone());
    simple_commit(&first, "g1", "orders", 0, 10).await;
    simple_commit(&first, "g1", "orders", 0, 15).await;
    simple_commit(&first, "g1", "orders", 3, 7).await;
    simple_commit(&first, "g2", "orders", 0, 99).await;
    first.ready("g3").await.unwrap();
    first
        .commit(
            "g3",
            "",
            None,
            -1,
            vec![(("t".into(), 0), commit_of(1, ""))],
        )
        .await
        .unwrap();
    assert_eq!(first.delete_group("g3").await, Ok(()));

    let second = coordinator(backend);
    for g in ["g1", "g2", "g3"] {
        second.ready(g).await.unwrap();
    }
    let g1 = second.fetch_offsets("g1").unwrap();
    assert_eq!(g1.len(), 2);
    assert_eq!(
        g1[&("orders".to_string(), 0)].offset,
        15,
        "the last commit wins"
    );
    assert_eq!(
        g1[&("orders".to_string(), 0)].metadata.as_deref(),
        Some("m")
    );
    assert_eq!(g1[&("orders".to_string(), 3)].offset, 7);
    assert_eq!(
        second.fetch_offsets("g2").unwrap()[&("orders".to_string(), 0)].offset,
        99
    );
    assert!(
        second.fetch_offsets("g3").unwrap().is_empty(),
        "deleted groups stay deleted"
    );
    let listed: Vec<String> = second.list().into_iter().map(|(id, _, _)| id).collect();
    assert_eq!(listed, vec!["g1", "g2"]);
}

/// Groups in memory, and the ids of evicted ones.
fn held(c: &GroupCoordinator) -> (Vec<String>, Vec<String>) {
    let registry = lock(&c.registry);
    let mut groups: Vec<String> = registry.groups.keys().cloned().collect();
    let mut evicted: Vec<String> = registry.evicted.keys().cloned().collect();
    groups.sort();
    evicted.sort();
    (groups, evicted)
}

#[tokio::test]
async fn empty_groups_in_memory_are_bounded_and_evicted_ones_are_read_back() {
    let backend: SharedBackend = Arc::new(MemoryBackend::new());
    let c = coordinator(backend.clone());
    // More groups without members than max_groups (3): none is refused.
    for (i, g) in ["g0", "g1", "g2", "g3", "g4"].into_iter().enumerate() {
        simple_commit(&c, g, "t", 0, i as i64).await;
        simple_commit(&c, g, "t", 1, 100 + i as i64).await;
    }
    c.tick(Instant::now());
    // max_empty_groups (2): the least recently used leave memory.
    assert_eq!(
        held(&c),
        (
            vec!["g3".into(), "g4".into()],
            vec!["g0".into(), "g1".into(), "g2".into()]
        )
    );
    let listed: Vec<String> = c.list().into_iter().map(|(id, _, _)| id).collect();
    assert_eq!(listed, vec!["g0", "g1", "g2", "g3", "g4"]);

    // An evicted group's offsets are read back when it is used.
    c.ready("g0").await.unwrap();
    let g0 = c.fetch_offsets("g0").unwrap();
    assert_eq!(g0[&("t".to_string(), 0)].offset, 0);
    assert_eq!(g0[&("t".to_string(), 1)].offset, 100);
    // A commit to an evicted group keeps its other partitions.
    simple_commit(&c, "g1", "t", 0, 11).await;
    let g1 = c.fetch_offsets("g1").unwrap();
    assert_eq!(
        (
            g1[&("t".to_string(), 0)].offset,
            g1[&("t".to_string(), 1)].offset
        ),
        (11, 101)
    );
    c.tick(Instant::now());
    assert_eq!(
        held(&c),
        (
            vec!["g0".into(), "g1".into()],
            vec!["g2".into(), "g3".into(), "g4".into()]
        )
    );

    // Nothing was lost for a new coordinator either.
    let second = coordinator(backend);
    for g in ["g1", "g4"] {
        second.ready(g).await.unwrap();
    }
    assert_eq!(
        second.fetch_offsets("g1").unwrap()[&("t".to_string(), 0)].offset,
        11
    );
    assert_eq!(
        second.fetch_offsets("g4").unwrap()[&("t".to_string(), 1)].offset,
        104
    );
}

#[tokio::test]
async fn deleting_groups_and_offsets() {
    let c = coordinator(Arc::new(MemoryBackend::new()));
    assert_eq!(
        c.delete_group("nope").await,
        Err(ResponseError::GroupIdNotFound)
    );
    simple_commit(&c, "g", "t", 0, 5).await;
    simple_commit(&c, "g", "t", 1, 6).await;
    let codes = c
        .delete_offsets("g", &[("t".into(), 0), ("t".into(), 9)])
        .await
        .unwrap();
    assert_eq!(codes, vec![0, 0]);
    let left = c.fetch_offsets("g").unwrap();
    assert_eq!(left.keys().collect::<Vec<_>>(), vec![&("t".to_string(), 1)]);
    simple_commit(&c, "h", "t", 0, 1).await;
    simple_commit(&c, "h", "u", 0, 2).await;
    c.forget_topic("t").await;
    assert!(c.fetch_offsets("g").unwrap().is_empty());
    assert_eq!(c.fetch_offsets("h").unwrap().len(), 1);
    assert_eq!(c.delete_group("g").await, Ok(()));
    assert!(c.fetch_offsets("g").unwrap().is_empty());
}

#[tokio::test]
async fn lag_is_high_watermark_minus_committed() {
    let backend: SharedBackend = Arc::new(MemoryBackend::new());
    backend
        .create_topic(
            "t",
            &TopicSettings {
                partitions: 2,
                ..TopicSettings::default()
            },
        )
        .await
        .unwrap();
    let record = crate::backend::StoredRecord {
        key: None,
        value: Some(bytes::Bytes::from_static(b"v")),
        headers: vec![],
        timestamp_ms: 0,
    };
    backend.append("t", 0, vec![record; 10]).await.unwrap();
    let c = coordinator(backend);
    simple_commit(&c, "g", "t", 0, 4).await;
    simple_commit(&c, "g", "t", 1, 0).await;
    c.update_lag().await;
    let text = c.metrics.render();
    assert!(
        text.contains(r#"kafka_iggy_consumer_lag{group="g",partition="0",topic="t"} 6"#),
        "{text}"
    );
    assert!(
        text.contains(r#"kafka_iggy_consumer_lag{group="g",partition="1",topic="t"} 0"#),
        "{text}"
    );
    c.tick(Instant::now());
    assert!(
        text.contains("kafka_iggy_offset_commits_total{group=\"g\"} 2"),
        "{text}"
    );
}
