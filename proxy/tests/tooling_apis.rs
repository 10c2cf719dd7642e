//! The APIs that admin tools and clients use around partitions' leadership and producers, as
//! Kafka answers them for a cluster whose replicas share one log: OffsetForLeaderEpoch (one
//! epoch, ending at the log end), DescribeProducers (the idempotent producers the leader
//! remembers, also after a restart), ListTransactions (none) and ElectLeaders (never needed).
//! On the memory back end and, with IGGY_SERVER_BIN, on real Iggy.
#![allow(clippy::unwrap_used, reason = "test code: a panic is a failed test")]

mod wire;

use iggy_testkit::IggyServer;
use kafka_iggy_proxy::Proxy;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::Compression;
use wire::ops::*;
use wire::Wire;

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

/// (error, leader epoch, end offset) per asked (topic, partition, current epoch, epoch).
async fn end_offsets(wire: &mut Wire, asks: &[(&str, i32, i32, i32)]) -> Vec<(i16, i32, i64)> {
    let topics = asks
        .iter()
        .map(|(t, p, current, epoch)| {
            offset_for_leader_epoch_request::OffsetForLeaderTopic::default()
                .with_topic(topic(t))
                .with_partitions(vec![
                    offset_for_leader_epoch_request::OffsetForLeaderPartition::default()
                        .with_partition(*p)
                        .with_current_leader_epoch(*current)
                        .with_leader_epoch(*epoch),
                ])
        })
        .collect();
    let request = OffsetForLeaderEpochRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_topics(topics);
    let ResponseKind::OffsetForLeaderEpoch(r) = wire
        .call(ApiKey::OffsetForLeaderEpoch, 4, request.into())
        .await
    else {
        panic!("kind")
    };
    r.topics
        .iter()
        .flat_map(|t| t.partitions.iter())
        .map(|p| (p.error_code, p.leader_epoch, p.end_offset))
        .collect()
}

/// (error, [(producer id, epoch, last sequence, last timestamp)]) of one partition.
async fn producers(
    wire: &mut Wire,
    name: &str,
    partition: i32,
) -> (i16, Vec<(i64, i32, i32, i64)>) {
    let request = DescribeProducersRequest::default().with_topics(vec![
        describe_producers_request::TopicRequest::default()
            .with_name(topic(name))
            .with_partition_indexes(vec![partition]),
    ]);
    let ResponseKind::DescribeProducers(r) = wire
        .call(ApiKey::DescribeProducers, 0, request.into())
        .await
    else {
        panic!("kind")
    };
    let p = &r.topics[0].partitions[0];
    let active = p
        .active_producers
        .iter()
        .map(|a| {
            (
                a.producer_id.0,
                a.producer_epoch,
                a.last_sequence,
                a.last_timestamp,
            )
        })
        .collect();
    (p.error_code, active)
}

async fn elect(wire: &mut Wire, partitions: Option<&[(&str, i32)]>) -> ElectLeadersResponse {
    let topic_partitions = partitions.map(|ps| {
        ps.iter()
            .map(|(t, p)| {
                elect_leaders_request::TopicPartitions::default()
                    .with_topic(topic(t))
                    .with_partitions(vec![*p])
            })
            .collect()
    });
    let request = ElectLeadersRequest::default()
        .with_election_type(0)
        .with_topic_partitions(topic_partitions)
        .with_timeout_ms(5_000);
    let ResponseKind::ElectLeaders(r) = wire.call(ApiKey::ElectLeaders, 2, request.into()).await
    else {
        panic!("kind")
    };
    r
}

async fn scenarios(start: impl AsyncFn() -> Proxy) {
    let proxy = start().await;
    let mut w = Wire::connect(proxy.kafka_addr).await;
    let name = "tooling";
    assert_eq!(create_topic(&mut w, name, 2).await, 0);
    let idempotent = batch(&["a", "b", "c"], Some((7001, 3, 0)), Compression::None);
    assert_eq!(produce(&mut w, name, 0, idempotent).await, (0, 0));
    let plain = batch(&["d"], None, Compression::None);
    assert_eq!(produce(&mut w, name, 0, plain).await, (0, 3));

    // One epoch, 0, ending at the log end; the caller's current epoch is checked.
    let none = ResponseError::UnknownTopicOrPartition.code();
    assert_eq!(
        end_offsets(
            &mut w,
            &[
                (name, 0, 0, 0),
                (name, 1, -1, 0),
                (name, 0, 0, 5),
                (name, 0, 3, 0),
                ("no-such-topic", 0, 0, 0),
            ]
        )
        .await,
        vec![
            (0, 0, 4),
            (0, 0, 0),
            (0, -1, -1),
            (ResponseError::UnknownLeaderEpoch.code(), -1, -1),
            (none, -1, -1),
        ]
    );

    // The idempotent producer, with the last sequence of its last batch.
    let (code, active) = producers(&mut w, name, 0).await;
    assert_eq!(code, 0);
    assert_eq!(active.len(), 1, "{active:?}");
    let (id, epoch, last_sequence, appended) = active[0];
    assert_eq!((id, epoch, last_sequence), (7001, 3, 2));
    assert!(appended > 1_600_000_000_000, "{appended}");
    assert_eq!(producers(&mut w, name, 1).await, (0, vec![]));
    assert_eq!(producers(&mut w, "no-such-topic", 0).await.0, none);

    // No transactions; known state filters are not reported back.
    let request =
        ListTransactionsRequest::default().with_state_filters(vec![s("Ongoing"), s("Bogus")]);
    let ResponseKind::ListTransactions(r) =
        w.call(ApiKey::ListTransactions, 1, request.into()).await
    else {
        panic!("kind")
    };
    assert_eq!(r.error_code, 0);
    assert!(r.transaction_states.is_empty());
    assert_eq!(r.unknown_state_filters, vec![s("Bogus")]);

    // Leaders never need electing; unknown partitions are named as such.
    let r = elect(&mut w, Some(&[(name, 1), (name, 9), ("no-such-topic", 0)])).await;
    assert_eq!(r.error_code, 0);
    let codes: Vec<i16> = r
        .replica_election_results
        .iter()
        .map(|t| t.partition_result[0].error_code)
        .collect();
    assert_eq!(
        codes,
        vec![ResponseError::ElectionNotNeeded.code(), none, none]
    );
    assert!(elect(&mut w, None)
        .await
        .replica_election_results
        .is_empty());
    proxy.shutdown().await;

    // A restarted proxy reads the producer back from the log.
    let proxy = start().await;
    let mut w = Wire::connect(proxy.kafka_addr).await;
    let (code, active) = producers(&mut w, name, 0).await;
    assert_eq!(code, 0);
    assert_eq!(
        active.iter().map(|a| (a.0, a.1, a.2)).collect::<Vec<_>>(),
        vec![(7001, 3, 2)]
    );
    proxy.shutdown().await;
}

#[tokio::test]
async fn tooling_apis_on_memory() {
    let backend = std::sync::Arc::new(kafka_iggy_proxy::backend::memory::MemoryBackend::new());
    scenarios(async || {
        let config = wire::local_config(kafka_iggy_proxy::config::BackendKind::Memory);
        Proxy::start_with_backend(
            config,
            backend.clone(),
            std::sync::Arc::new(kafka_iggy_proxy::metrics::Metrics::new()),
        )
        .await
        .unwrap()
    })
    .await;
}

#[tokio::test]
async fn tooling_apis_on_iggy() {
    let Some(server) = IggyServer::from_env().await else {
        return;
    };
    let address = server.address().to_string();
    scenarios(async || wire::start_iggy_proxy(&address).await).await;
}
