use super::*;
use crate::backend::memory::MemoryBackend;

fn settings() -> GroupSettings {
    GroupSettings {
        max_groups: 3,
        ..GroupSettings::default()
    }
}

fn coordinator(backend: SharedBackend) -> GroupCoordinator {
    GroupCoordinator::new(settings(), backend, Arc::new(Metrics::new()))
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
    let g1 = second.fetch_offsets("g1");
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
        second.fetch_offsets("g2")[&("orders".to_string(), 0)].offset,
        99
    );
    assert!(
        second.fetch_offsets("g3").is_empty(),
        "deleted groups stay deleted"
    );
    let listed: Vec<String> = second.list().into_iter().map(|(id, _, _)| id).collect();
    assert_eq!(listed, vec!["g1", "g2"]);
}

#[tokio::test]
async fn the_group_limit_is_enforced_with_policy_violation() {
    let c = coordinator(Arc::new(MemoryBackend::new()));
    for g in ["a", "b", "c"] {
        simple_commit(&c, g, "t", 0, 1).await;
    }
    c.ready("d").await.unwrap();
    let refused = c
        .commit("d", "", None, -1, vec![(("t".into(), 0), commit_of(1, ""))])
        .await;
    assert_eq!(refused, Err(ResponseError::PolicyViolation));
    // Existing groups still work.
    simple_commit(&c, "a", "t", 0, 2).await;
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
    let left = c.fetch_offsets("g");
    assert_eq!(left.keys().collect::<Vec<_>>(), vec![&("t".to_string(), 1)]);
    simple_commit(&c, "h", "t", 0, 1).await;
    simple_commit(&c, "h", "u", 0, 2).await;
    c.forget_topic("t").await;
    assert!(c.fetch_offsets("g").is_empty());
    assert_eq!(c.fetch_offsets("h").len(), 1);
    assert_eq!(c.delete_group("g").await, Ok(()));
    assert!(c.fetch_offsets("g").is_empty());
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
