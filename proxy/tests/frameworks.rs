//! What stream-processing frameworks need from topics (issue 13): compacted topics and other
//! topic configs, AlterConfigs/IncrementalAlterConfigs, and DeleteRecords moving log start
//! offsets that survive a restart and are seen by every replica. Two proxies share one store,
//! as replicas do; every scenario runs on the memory back end and, when IGGY_SERVER_BIN is set,
//! on real Iggy.
#![allow(clippy::unwrap_used, reason = "test code: a panic is a failed test")]

mod wire;

use std::sync::Arc;
use std::time::Duration;

use iggy_testkit::IggyServer;
use kafka_iggy_proxy::backend::memory::MemoryBackend;
use kafka_iggy_proxy::config::{BackendKind, ProxyConfig};
use kafka_iggy_proxy::metrics::Metrics;
use kafka_iggy_proxy::topic_state::REFRESH;
use kafka_iggy_proxy::Proxy;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::Compression;
use wire::ops::*;
use wire::Wire;

const INVALID_CONFIG: i16 = 40;
const INVALID_REQUEST: i16 = 42;
const OFFSET_OUT_OF_RANGE: i16 = 1;
const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
const EARLIEST: i64 = -2;

/// Where the proxies under test keep their data.
enum Store {
    Memory(Arc<MemoryBackend>),
    Iggy(String),
}

impl Store {
    async fn proxy(&self) -> Proxy {
        match self {
            Store::Memory(backend) => {
                let config = ProxyConfig {
                    listen: "127.0.0.1:0".parse().unwrap(),
                    backend: BackendKind::Memory,
                    ..ProxyConfig::default()
                };
                Proxy::start_with_backend(config, backend.clone(), Arc::new(Metrics::new()))
                    .await
                    .unwrap()
            }
            Store::Iggy(address) => wire::start_iggy_proxy(address).await,
        }
    }
}

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

async fn create_with_configs(w: &mut Wire, name: &str, configs: &[(&str, &str)]) -> i16 {
    let configs = configs
        .iter()
        .map(|(k, v)| {
            create_topics_request::CreatableTopicConfig::default()
                .with_name(s(k))
                .with_value(Some(s(v)))
        })
        .collect();
    let request = CreateTopicsRequest::default().with_topics(vec![
        create_topics_request::CreatableTopic::default()
            .with_name(topic(name))
            .with_num_partitions(1)
            .with_replication_factor(1)
            .with_configs(configs),
    ]);
    let ResponseKind::CreateTopics(r) = w.call(ApiKey::CreateTopics, 7, request.into()).await
    else {
        panic!("kind")
    };
    r.topics[0].error_code
}

/// DescribeConfigs v4 of a topic: (name, value, source) of every config.
async fn describe(w: &mut Wire, name: &str) -> Vec<(String, String, i8)> {
    let request = DescribeConfigsRequest::default().with_resources(vec![
        describe_configs_request::DescribeConfigsResource::default()
            .with_resource_type(2)
            .with_resource_name(s(name))
            .with_configuration_keys(None),
    ]);
    let ResponseKind::DescribeConfigs(r) = w.call(ApiKey::DescribeConfigs, 4, request.into()).await
    else {
        panic!("kind")
    };
    assert_eq!(r.results[0].error_code, 0, "describe {name}");
    r.results[0]
        .configs
        .iter()
        .map(|c| {
            (
                c.name.to_string(),
                c.value.as_ref().map(|v| v.to_string()).unwrap_or_default(),
                c.config_source,
            )
        })
        .collect()
}

async fn config(w: &mut Wire, name: &str, key: &str) -> (String, i8) {
    let all = describe(w, name).await;
    let (_, value, source) = all.into_iter().find(|(k, _, _)| k == key).unwrap();
    (value, source)
}

/// IncrementalAlterConfigs v1 of one resource: (name, operation, value) items.
async fn incremental(
    w: &mut Wire,
    resource_type: i8,
    name: &str,
    ops: &[(&str, i8, Option<&str>)],
    validate_only: bool,
) -> i16 {
    let configs = ops
        .iter()
        .map(|(k, op, v)| {
            incremental_alter_configs_request::AlterableConfig::default()
                .with_name(s(k))
                .with_config_operation(*op)
                .with_value(v.map(s))
        })
        .collect();
    let request = IncrementalAlterConfigsRequest::default()
        .with_validate_only(validate_only)
        .with_resources(vec![
            incremental_alter_configs_request::AlterConfigsResource::default()
                .with_resource_type(resource_type)
                .with_resource_name(s(name))
                .with_configs(configs),
        ]);
    let ResponseKind::IncrementalAlterConfigs(r) = w
        .call(ApiKey::IncrementalAlterConfigs, 1, request.into())
        .await
    else {
        panic!("kind")
    };
    r.responses[0].error_code
}

/// AlterConfigs (legacy, replaces every topic-level config) v2 of one topic.
async fn alter(w: &mut Wire, name: &str, configs: &[(&str, &str)]) -> i16 {
    let configs = configs
        .iter()
        .map(|(k, v)| {
            alter_configs_request::AlterableConfig::default()
                .with_name(s(k))
                .with_value(Some(s(v)))
        })
        .collect();
    let request = AlterConfigsRequest::default().with_resources(vec![
        alter_configs_request::AlterConfigsResource::default()
            .with_resource_type(2)
            .with_resource_name(s(name))
            .with_configs(configs),
    ]);
    let ResponseKind::AlterConfigs(r) = w.call(ApiKey::AlterConfigs, 2, request.into()).await
    else {
        panic!("kind")
    };
    r.responses[0].error_code
}

/// DeleteRecords of one partition at `version`; returns (error code, low watermark).
async fn delete_records(
    w: &mut Wire,
    version: i16,
    name: &str,
    partition: i32,
    offset: i64,
) -> (i16, i64) {
    let request = DeleteRecordsRequest::default()
        .with_timeout_ms(5000)
        .with_topics(vec![delete_records_request::DeleteRecordsTopic::default()
            .with_name(topic(name))
            .with_partitions(vec![
                delete_records_request::DeleteRecordsPartition::default()
                    .with_partition_index(partition)
                    .with_offset(offset),
            ])]);
    let ResponseKind::DeleteRecords(r) =
        w.call(ApiKey::DeleteRecords, version, request.into()).await
    else {
        panic!("kind")
    };
    let p = &r.topics[0].partitions[0];
    (p.error_code, p.low_watermark)
}

async fn produce_values(w: &mut Wire, name: &str, count: usize) {
    let values: Vec<String> = (0..count).map(|i| format!("v{i}")).collect();
    let values: Vec<&str> = values.iter().map(String::as_str).collect();
    assert_eq!(
        produce(w, name, 0, batch(&values, None, Compression::None))
            .await
            .0,
        0
    );
}

async fn compacted_topics_and_config_changes(a: &Proxy, b: &Proxy) {
    let mut w = Wire::connect(a.kafka_addr).await;
    let compacted = [
        ("cleanup.policy", "compact,delete"),
        ("min.cleanable.dirty.ratio", "0.01"),
        ("segment.ms", "100"),
        ("delete.retention.ms", "100"),
        ("min.compaction.lag.ms", "0"),
        ("max.compaction.lag.ms", "1000"),
        ("retention.ms", "3600000"),
    ];
    assert_eq!(
        create_with_configs(&mut w, "compacted", &compacted).await,
        0
    );
    assert_eq!(
        create_with_configs(&mut w, "changelog", &[("cleanup.policy", "compact")]).await,
        0
    );
    for refused in [
        ("cleanup.policy", "shrink"),
        ("retention.ms", "soon"),
        ("no.such.config", "1"),
    ] {
        assert_eq!(
            create_with_configs(&mut w, "refused", &[refused]).await,
            INVALID_CONFIG,
            "{refused:?}"
        );
    }
    let mut other = Wire::connect(b.kafka_addr).await;
    assert_eq!(
        config(&mut other, "compacted", "cleanup.policy").await,
        ("compact,delete".into(), 1)
    );
    assert_eq!(
        config(&mut other, "compacted", "min.cleanable.dirty.ratio").await,
        ("0.01".into(), 1)
    );
    assert_eq!(
        config(&mut other, "compacted", "retention.ms").await,
        ("3600000".into(), 1)
    );
    assert_eq!(
        config(&mut other, "changelog", "max.message.bytes").await,
        ("1048588".into(), 5)
    );

    // IncrementalAlterConfigs: SET, DELETE, APPEND; validate_only changes nothing.
    assert_eq!(
        incremental(
            &mut w,
            2,
            "changelog",
            &[("max.message.bytes", 0, Some("2000000"))],
            true
        )
        .await,
        0
    );
    assert_eq!(
        config(&mut w, "changelog", "max.message.bytes").await.1,
        5,
        "validate_only"
    );
    let ops = [
        ("max.message.bytes", 0, Some("2000000")),
        ("retention.ms", 0, Some("7200000")),
        ("cleanup.policy", 2, Some("delete")),
    ];
    assert_eq!(incremental(&mut w, 2, "changelog", &ops, false).await, 0);
    assert_eq!(
        incremental(&mut w, 2, "compacted", &[("segment.ms", 1, None)], false).await,
        0
    );
    assert_eq!(
        incremental(
            &mut w,
            2,
            "changelog",
            &[("retention.ms", 2, Some("1"))],
            false
        )
        .await,
        INVALID_CONFIG,
        "APPEND to a non-list config"
    );
    assert_eq!(
        incremental(&mut w, 2, "changelog", &[("bogus", 0, Some("1"))], false).await,
        INVALID_CONFIG
    );
    assert_eq!(
        incremental(
            &mut w,
            2,
            "missing",
            &[("retention.ms", 0, Some("1"))],
            false
        )
        .await,
        UNKNOWN_TOPIC_OR_PARTITION
    );
    assert_eq!(
        incremental(&mut w, 4, "", &[("num.partitions", 0, Some("3"))], false).await,
        INVALID_REQUEST,
        "broker configs are read-only"
    );
    tokio::time::sleep(REFRESH + Duration::from_millis(200)).await;
    assert_eq!(
        config(&mut other, "changelog", "max.message.bytes").await,
        ("2000000".into(), 1)
    );
    assert_eq!(
        config(&mut other, "changelog", "cleanup.policy").await,
        ("compact,delete".into(), 1)
    );
    assert_eq!(
        config(&mut other, "changelog", "retention.ms").await,
        ("7200000".into(), 1)
    );
    assert_eq!(
        config(&mut other, "compacted", "segment.ms").await,
        ("604800000".into(), 5)
    );

    // AlterConfigs replaces every topic-level config.
    assert_eq!(
        alter(&mut w, "compacted", &[("cleanup.policy", "compact")]).await,
        0
    );
    assert_eq!(
        alter(&mut w, "compacted", &[("cleanup.policy", "nope")]).await,
        INVALID_CONFIG
    );
    assert_eq!(
        config(&mut w, "compacted", "cleanup.policy").await,
        ("compact".into(), 1)
    );
    assert_eq!(
        config(&mut w, "compacted", "min.cleanable.dirty.ratio")
            .await
            .1,
        5
    );

    // Tombstones (null values) are kept, as a compacted topic's readers expect.
    let tombstone = {
        use bytes::BytesMut;
        use kafka_protocol::records::*;
        let record = Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: 0,
            sequence: 0,
            timestamp: 1_700_000_000_000,
            key: Some(bytes::Bytes::from_static(b"gone")),
            value: None,
            headers: Default::default(),
        };
        let mut buf = BytesMut::new();
        RecordBatchEncoder::encode(
            &mut buf,
            &[record],
            &RecordEncodeOptions {
                version: 2,
                compression: Compression::None,
            },
        )
        .unwrap();
        buf.freeze()
    };
    assert_eq!(produce(&mut w, "compacted", 0, tombstone).await, (0, 0));
    let f = fetch(&mut w, "compacted", 0, 0, 0, 1).await;
    assert_eq!(f.records.len(), 1);
}

async fn delete_records_moves_the_log_start(a: &Proxy, b: &Proxy) {
    let mut w = Wire::connect(a.kafka_addr).await;
    assert_eq!(create_topic(&mut w, "repartition", 1).await, 0);
    produce_values(&mut w, "repartition", 10).await;
    for version in 0..=2 {
        assert_eq!(
            delete_records(&mut w, version, "repartition", 0, 2 + version as i64).await,
            (0, 2 + version as i64),
            "v{version}"
        );
    }
    assert_eq!(
        delete_records(&mut w, 2, "repartition", 0, 1).await,
        (0, 4),
        "never moves down"
    );
    assert_eq!(
        delete_records(&mut w, 2, "repartition", 0, 11).await.0,
        OFFSET_OUT_OF_RANGE
    );
    assert_eq!(
        delete_records(&mut w, 2, "repartition", 3, 1).await.0,
        UNKNOWN_TOPIC_OR_PARTITION
    );
    assert_eq!(
        delete_records(&mut w, 2, "nowhere", 0, 1).await.0,
        UNKNOWN_TOPIC_OR_PARTITION
    );
    let f = fetch(&mut w, "repartition", 0, 0, 0, 1).await;
    assert_eq!((f.error_code, f.log_start_offset), (OFFSET_OUT_OF_RANGE, 4));
    let f = fetch(&mut w, "repartition", 0, 4, 0, 1).await;
    assert_eq!(f.error_code, 0);
    assert_eq!(f.log_start_offset, 4);
    assert_eq!(f.records.first().map(|r| r.0), Some(4));
    assert_eq!(list_offset(&mut w, "repartition", 0, EARLIEST).await.1, 4);
    // A timestamp before every record finds the first one kept.
    assert_eq!(list_offset(&mut w, "repartition", 0, 0).await.1, 4);

    // Up to the high watermark (-1): the other replica sees it too.
    assert_eq!(
        delete_records(&mut w, 2, "repartition", 0, -1).await,
        (0, 10)
    );
    tokio::time::sleep(REFRESH + Duration::from_millis(200)).await;
    let mut other = Wire::connect(b.kafka_addr).await;
    assert_eq!(
        list_offset(&mut other, "repartition", 0, EARLIEST).await.1,
        10
    );
    let f = fetch(&mut other, "repartition", 0, 5, 0, 1).await;
    assert_eq!(
        (f.error_code, f.log_start_offset),
        (OFFSET_OUT_OF_RANGE, 10)
    );
    produce_values(&mut other, "repartition", 2).await;
    let f = fetch(&mut other, "repartition", 0, 10, 0, 1).await;
    assert_eq!(f.records.len(), 2);
    assert_eq!(f.log_start_offset, 10);
}

/// After every proxy stopped, a new one knows the configs and log starts; a topic deleted and
/// created again starts afresh.
async fn state_survives_restart(c: &Proxy) {
    let mut w = Wire::connect(c.kafka_addr).await;
    assert_eq!(list_offset(&mut w, "repartition", 0, EARLIEST).await.1, 10);
    assert_eq!(
        config(&mut w, "changelog", "cleanup.policy").await,
        ("compact,delete".into(), 1)
    );
    let request = DeleteTopicsRequest::default().with_topic_names(vec![topic("repartition")]);
    let ResponseKind::DeleteTopics(r) = w.call(ApiKey::DeleteTopics, 4, request.into()).await
    else {
        panic!("kind")
    };
    assert_eq!(r.responses[0].error_code, 0);
    assert_eq!(
        create_with_configs(&mut w, "repartition", &[("segment.ms", "1000")]).await,
        0
    );
    assert_eq!(list_offset(&mut w, "repartition", 0, EARLIEST).await.1, 0);
    assert_eq!(config(&mut w, "repartition", "cleanup.policy").await.1, 5);
    // The state log is the proxy's own: not listed, not writable.
    let ResponseKind::Metadata(m) = w
        .call(ApiKey::Metadata, 12, MetadataRequest::default().into())
        .await
    else {
        panic!("kind")
    };
    assert!(m.topics.iter().all(|t| !t
        .name
        .as_ref()
        .is_some_and(|n| n.starts_with("__kafka_bridge"))));
}

async fn all_scenarios(store: Store) {
    let (a, b) = (store.proxy().await, store.proxy().await);
    compacted_topics_and_config_changes(&a, &b).await;
    delete_records_moves_the_log_start(&a, &b).await;
    a.shutdown().await;
    b.shutdown().await;
    let c = store.proxy().await;
    state_survives_restart(&c).await;
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frameworks_on_memory() {
    all_scenarios(Store::Memory(Arc::new(MemoryBackend::new()))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frameworks_on_iggy() {
    let Some(server) = IggyServer::from_env().await else {
        return;
    };
    all_scenarios(Store::Iggy(server.address().to_string())).await;
}
