//! Shared pieces for tests that drive `IggyBackend` against a real server.

use std::fmt::Debug;

use bytes::Bytes;
use iggy::prelude::{
    Consumer, Identifier, MessageClient, PolledMessages, PollingStrategy, TcpClient,
};
use iggy_testkit::IggyServer;
use kafka_iggy_proxy::backend::iggy::{IggyBackend, IggyConfig};
use kafka_iggy_proxy::backend::{
    Backend, BackendError, BackendResult, ReadLimits, ReadResult, StoredRecord, TopicSettings,
};

pub const ALL: ReadLimits = ReadLimits {
    max_records: 10_000,
    max_bytes: usize::MAX,
};

pub async fn backend_for(server: &IggyServer, connections: usize) -> IggyBackend {
    IggyBackend::connect(IggyConfig {
        address: server.address().to_string(),
        username: server.username().into(),
        password: server.password().into(),
        connections,
        ..IggyConfig::default()
    })
    .await
    .expect("connect")
}

pub fn settings(partitions: u32) -> TopicSettings {
    TopicSettings {
        partitions,
        ..TopicSettings::default()
    }
}

pub fn value(v: &str) -> StoredRecord {
    StoredRecord {
        key: None,
        value: Some(Bytes::copy_from_slice(v.as_bytes())),
        headers: Vec::new(),
        timestamp_ms: 1_700_000_000_000,
    }
}

/// Records covering every mapping form: plain, keyed with headers (sorted and not), tombstone,
/// empty value, odd timestamps, and envelopes (duplicate/null headers, empty/long keys).
pub fn varied_records() -> Vec<StoredRecord> {
    let b = |s: &[u8]| Some(Bytes::copy_from_slice(s));
    let mut records = vec![
        value("plain"),
        StoredRecord {
            key: b(b"key-1"),
            value: b(b"with headers"),
            headers: vec![("z".into(), b(b"1")), ("a".into(), b(b"\x00\x01"))],
            timestamp_ms: 1_700_000_000_001,
        },
        StoredRecord {
            key: b(b"gone"),
            value: None,
            headers: Vec::new(),
            timestamp_ms: 1_700_000_000_002,
        },
        StoredRecord {
            key: None,
            value: b(b""),
            headers: vec![("h".into(), b(b"x"))],
            timestamp_ms: -1,
        },
        StoredRecord {
            key: b(b""),
            value: b(b"empty key"),
            headers: vec![("dup".into(), b(b"1")), ("dup".into(), None)],
            timestamp_ms: 0,
        },
        StoredRecord {
            key: b(&[7u8; 300]),
            value: None,
            headers: vec![("kafka.key".into(), b(b"reserved"))],
            timestamp_ms: 1_700_000_000_005,
        },
    ];
    records.push(value("last"));
    records
}

pub async fn native_client(server: &IggyServer) -> TcpClient {
    iggy_testkit::connect(server.address(), server.username(), server.password())
        .await
        .expect("native client")
}

pub fn named(name: &str) -> Identifier {
    Identifier::named(name).expect("name")
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64
}

/// Sends are never retried by the backend (a lost reply could duplicate them), so the first
/// send on a connection that died with the server fails with `Unavailable`; Kafka clients retry.
pub async fn append_retrying(
    backend: &IggyBackend,
    topic: &str,
    records: Vec<StoredRecord>,
) -> i64 {
    for _ in 0..5 {
        match backend.append(topic, 0, records.clone()).await {
            Ok(base) => return base,
            Err(BackendError::Unavailable(e)) => eprintln!("append retried after: {e}"),
            Err(e) => panic!("append: {e}"),
        }
    }
    panic!("append kept failing")
}

/// Panicking shorthands over a backend, so scenarios read as lists of facts.
pub struct Check<'a>(pub &'a IggyBackend);

impl Check<'_> {
    pub async fn create(&self, topic: &str, partitions: u32) {
        let settings = settings(partitions);
        self.0
            .create_topic(topic, &settings)
            .await
            .expect("create topic");
    }

    /// Appends one plain record per value; returns the base offset.
    pub async fn append(&self, topic: &str, partition: u32, values: &[&str]) -> i64 {
        let records = values.iter().map(|v| value(v)).collect();
        self.append_records(topic, partition, records).await
    }

    pub async fn append_records(&self, topic: &str, p: u32, records: Vec<StoredRecord>) -> i64 {
        self.0.append(topic, p, records).await.expect("append")
    }

    pub async fn read(&self, topic: &str, partition: u32, offset: i64) -> ReadResult {
        self.read_with(topic, partition, offset, ALL).await
    }

    pub async fn read_with(&self, topic: &str, p: u32, offset: i64, l: ReadLimits) -> ReadResult {
        self.0.read(topic, p, offset, l).await.expect("read")
    }

    /// `(log_start, high_watermark)`.
    pub async fn bounds(&self, topic: &str, partition: u32) -> (i64, i64) {
        let b = self.0.bounds(topic, partition).await.expect("bounds");
        (b.log_start, b.high_watermark)
    }

    pub async fn partitions(&self, topic: &str) -> Option<u32> {
        let info = self.0.describe_topic(topic).await.expect("describe");
        info.map(|t| t.partitions)
    }

    pub async fn names(&self) -> Vec<String> {
        let topics = self.0.list_topics().await.expect("list");
        topics.into_iter().map(|t| t.name).collect()
    }
}

/// The error of a call that must fail.
pub fn failure<T: Debug>(result: BackendResult<T>) -> BackendError {
    match result {
        Ok(v) => panic!("expected an error, got {v:?}"),
        Err(e) => e,
    }
}

/// `(offset, log_start, high_watermark)` of an `OffsetOutOfRange` failure.
pub fn out_of_range<T: Debug>(result: BackendResult<T>) -> (i64, i64, i64) {
    match failure(result) {
        BackendError::OffsetOutOfRange {
            offset,
            log_start,
            high_watermark,
        } => (offset, log_start, high_watermark),
        other => panic!("expected OffsetOutOfRange, got {other:?}"),
    }
}

/// Polls like an Iggy-native consumer would.
pub async fn native_poll(
    client: &TcpClient,
    stream: &str,
    topic: &str,
    partition: u32,
    offset: u64,
) -> PolledMessages {
    client
        .poll_messages(
            &named(stream),
            &named(topic),
            Some(partition),
            &Consumer::new(named("native-test")),
            &PollingStrategy::offset(offset),
            100,
            false,
        )
        .await
        .expect("native poll")
}
