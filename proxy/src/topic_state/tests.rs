use std::sync::Arc;

use bytes::Bytes;

use super::*;
use crate::backend::memory::MemoryBackend;
use crate::backend::StoredRecord;

fn record(v: &str) -> StoredRecord {
    StoredRecord {
        key: None,
        value: Some(Bytes::from(v.to_string())),
        headers: vec![],
        timestamp_ms: 1_000,
    }
}

const ALL: ReadLimits = ReadLimits {
    max_records: 100,
    max_bytes: 1 << 20,
};

/// A store, and one "replica" seeing it through its own topic state.
fn replica(store: &SharedBackend) -> (Arc<TopicState>, SharedBackend) {
    let state = Arc::new(TopicState::new(store.clone()));
    let floored = LogStartFloor::wrap(store.clone(), state.clone());
    (state, floored)
}

async fn topic_with_records(backend: &SharedBackend, name: &str, configs: &[(&str, &str)]) {
    let settings = TopicSettings {
        partitions: 2,
        configs: configs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..TopicSettings::default()
    };
    backend.create_topic(name, &settings).await.unwrap();
    let records = (0..10).map(|i| record(&i.to_string())).collect();
    backend.append(name, 1, records).await.unwrap();
}

#[tokio::test]
async fn log_start_is_a_floor_for_every_read() {
    let store: SharedBackend = Arc::new(MemoryBackend::new());
    let (state, backend) = replica(&store);
    topic_with_records(&backend, "t", &[]).await;
    state.advance_log_start("t", 1, 6).await.unwrap();

    let err = backend.read("t", 1, 5, ALL).await.unwrap_err();
    assert!(matches!(
        err,
        BackendError::OffsetOutOfRange {
            log_start: 6,
            high_watermark: 10,
            ..
        }
    ));
    let read = backend.read("t", 1, 6, ALL).await.unwrap();
    assert_eq!(read.records[0].offset, 6);
    assert_eq!(read.bounds.log_start, 6);
    assert_eq!(backend.bounds("t", 1).await.unwrap().log_start, 6);
    assert_eq!(backend.bounds("t", 0).await.unwrap().log_start, 0);
    assert_eq!(
        backend.offset_for_timestamp("t", 1, 0).await.unwrap(),
        Some((6, 1_000))
    );
    // Never moves down.
    state.advance_log_start("t", 1, 2).await.unwrap();
    assert_eq!(state.log_start("t", 1).await, 6);
}

#[tokio::test]
async fn another_replica_reads_the_same_state() {
    let store: SharedBackend = Arc::new(MemoryBackend::new());
    let (state, backend) = replica(&store);
    topic_with_records(&backend, "t", &[("cleanup.policy", "compact")]).await;
    state.advance_log_start("t", 1, 3).await.unwrap();

    let (other, other_backend) = replica(&store);
    assert_eq!(other.log_start("t", 1).await, 3);
    assert_eq!(
        other.configs("t").await.unwrap()["cleanup.policy"],
        "compact"
    );
    assert_eq!(other_backend.bounds("t", 1).await.unwrap().log_start, 3);
}

#[tokio::test]
async fn a_topic_created_again_starts_afresh() {
    let store: SharedBackend = Arc::new(MemoryBackend::new());
    let (state, backend) = replica(&store);
    topic_with_records(&backend, "t", &[("cleanup.policy", "compact")]).await;
    state.advance_log_start("t", 1, 3).await.unwrap();
    backend.delete_topic("t").await.unwrap();
    topic_with_records(&backend, "t", &[]).await;
    assert_eq!(state.log_start("t", 1).await, 0);
    assert!(state.configs("t").await.unwrap().is_empty());

    // Deleted behind the proxy's back (natively in Iggy): the next creation still forgets.
    state.advance_log_start("t", 1, 3).await.unwrap();
    store.delete_topic("t").await.unwrap();
    topic_with_records(&backend, "t", &[]).await;
    assert_eq!(state.log_start("t", 1).await, 0);
}

#[tokio::test]
async fn the_state_log_is_hidden() {
    let store: SharedBackend = Arc::new(MemoryBackend::new());
    let (state, backend) = replica(&store);
    topic_with_records(&backend, "t", &[]).await;
    state.advance_log_start("t", 1, 1).await.unwrap();
    assert!(store.describe_topic(STATE_TOPIC).await.unwrap().is_some());
    assert!(backend.describe_topic(STATE_TOPIC).await.unwrap().is_none());
    let names: Vec<String> = backend
        .list_topics()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.name)
        .collect();
    assert_eq!(names, ["t"]);
    assert!(backend
        .append(STATE_TOPIC, 0, vec![record("x")])
        .await
        .is_err());
    assert!(backend
        .create_topic(STATE_TOPIC, &TopicSettings::default())
        .await
        .is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn readers_wait_for_the_first_replay() {
    let store: SharedBackend = Arc::new(MemoryBackend::new());
    let (state, backend) = replica(&store);
    topic_with_records(&backend, "t", &[]).await;
    state.advance_log_start("t", 1, 5).await.unwrap();

    // A fresh replica asked by many readers at once: every one sees the log start.
    let (other, _) = replica(&store);
    let reads = (0..16).map(|_| {
        let other = other.clone();
        tokio::spawn(async move { other.log_start("t", 1).await })
    });
    for read in reads {
        assert_eq!(read.await.unwrap(), 5);
    }
}
