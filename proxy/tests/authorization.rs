//! Authorization from Iggy permissions, on a real Iggy server (skipped without
//! IGGY_SERVER_BIN): Iggy users with read-only, send-only and no permissions log in over SASL
//! PLAIN (passthrough) and get Kafka's authorization errors for what Iggy does not allow them;
//! Metadata shows only what they may describe; DescribeAcls shows their rights; a permission
//! changed in Iggy applies to open connections within the grants' lifetime; a plaintext
//! listener of the same proxy keeps acting as the proxy's own user.

mod wire;

use std::time::{Duration, Instant};

use iggy::prelude::{
    GlobalPermissions, Identifier, Permissions, StreamClient, StreamPermissions, TopicClient,
    TopicPermissions, UserClient, UserStatus,
};
use iggy_testkit::IggyServer;
use kafka_iggy_proxy::config::{
    BackendKind, ListenerConfig, ProxyConfig, SaslMechanism, SaslSettings, SaslUsers,
    SecurityProtocol,
};
use kafka_iggy_proxy::security::access::GRANTS_TTL;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::Compression;
use wire::ops::*;
use wire::{local_config, start_configured, Wire};

const TOPIC_AUTHORIZATION_FAILED: i16 = 29;
const GROUP_AUTHORIZATION_FAILED: i16 = 30;
const CLUSTER_AUTHORIZATION_FAILED: i16 = 31;

fn listener(name: &str, protocol: SecurityProtocol) -> ListenerConfig {
    ListenerConfig {
        name: name.into(),
        listen: "127.0.0.1:0".parse().expect("addr"),
        advertised_address: None,
        security_protocol: protocol,
        tls: None,
        sasl: (protocol == SecurityProtocol::SaslPlaintext).then(|| SaslSettings {
            mechanisms: vec![SaslMechanism::Plain],
            users: SaslUsers::Passthrough,
            session_lifetime_ms: None,
        }),
    }
}

async fn login(proxy: &kafka_iggy_proxy::Proxy, user: &str, password: &str) -> Wire {
    let addr = proxy
        .listener_addrs
        .iter()
        .find(|(n, _)| n == "SASL")
        .expect("listener")
        .1;
    let mut wire = Wire::connect(addr).await;
    let request =
        SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str("PLAIN"));
    let ResponseKind::SaslHandshake(r) = wire.call(ApiKey::SaslHandshake, 1, request.into()).await
    else {
        panic!()
    };
    assert_eq!(r.error_code, 0);
    let request = SaslAuthenticateRequest::default()
        .with_auth_bytes(format!("\0{user}\0{password}").into_bytes().into());
    let ResponseKind::SaslAuthenticate(r) =
        wire.call(ApiKey::SaslAuthenticate, 2, request.into()).await
    else {
        panic!()
    };
    assert_eq!(r.error_code, 0, "{user}: {:?}", r.error_message);
    wire
}

async fn topic_names(wire: &mut Wire, names: Option<&[&str]>) -> Vec<(String, i16)> {
    let topics = names.map(|names| {
        names
            .iter()
            .map(|n| metadata_request::MetadataRequestTopic::default().with_name(Some(topic(n))))
            .collect()
    });
    let request = MetadataRequest::default()
        .with_topics(topics)
        .with_allow_auto_topic_creation(false);
    let ResponseKind::Metadata(r) = wire.call(ApiKey::Metadata, 12, request.into()).await else {
        panic!()
    };
    let mut out: Vec<(String, i16)> = r
        .topics
        .iter()
        .map(|t| {
            (
                t.name.as_ref().map(|n| n.0.to_string()).unwrap_or_default(),
                t.error_code,
            )
        })
        .collect();
    out.sort();
    out
}

async fn find_coordinator(wire: &mut Wire, group: &str) -> i16 {
    let request =
        FindCoordinatorRequest::default().with_key(StrBytes::from_string(group.to_string()));
    let ResponseKind::FindCoordinator(r) =
        wire.call(ApiKey::FindCoordinator, 3, request.into()).await
    else {
        panic!()
    };
    r.error_code
}

async fn acls(wire: &mut Wire) -> (i16, Vec<(i8, String, Vec<i8>)>) {
    let request = DescribeAclsRequest::default()
        .with_resource_type_filter(1)
        .with_resource_name_filter(None)
        .with_principal_filter(None)
        .with_host_filter(None)
        .with_pattern_type_filter(1)
        .with_operation(1)
        .with_permission_type(1);
    let ResponseKind::DescribeAcls(r) = wire.call(ApiKey::DescribeAcls, 3, request.into()).await
    else {
        panic!()
    };
    let resources = r
        .resources
        .iter()
        .map(|res| {
            (
                res.resource_type,
                res.resource_name.to_string(),
                res.acls.iter().map(|a| a.operation).collect(),
            )
        })
        .collect();
    (r.error_code, resources)
}

fn read_only(stream: u32, topic: u32) -> Permissions {
    let topic_permissions = TopicPermissions {
        read_topic: true,
        ..TopicPermissions::default()
    };
    Permissions {
        global: GlobalPermissions::default(),
        streams: Some(
            [(
                stream as usize,
                StreamPermissions {
                    topics: Some([(topic as usize, topic_permissions)].into()),
                    ..StreamPermissions::default()
                },
            )]
            .into(),
        ),
    }
}

/// (OffsetForLeaderEpoch, DescribeProducers, ElectLeaders) error codes for partition 0.
async fn tooling_codes(wire: &mut Wire, name: &str) -> (i16, i16, i16) {
    let request = OffsetForLeaderEpochRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_topics(vec![
            offset_for_leader_epoch_request::OffsetForLeaderTopic::default()
                .with_topic(topic(name))
                .with_partitions(vec![
                    offset_for_leader_epoch_request::OffsetForLeaderPartition::default()
                        .with_current_leader_epoch(-1),
                ]),
        ]);
    let ResponseKind::OffsetForLeaderEpoch(epochs) = wire
        .call(ApiKey::OffsetForLeaderEpoch, 4, request.into())
        .await
    else {
        panic!("kind")
    };
    let request = DescribeProducersRequest::default().with_topics(vec![
        describe_producers_request::TopicRequest::default()
            .with_name(topic(name))
            .with_partition_indexes(vec![0]),
    ]);
    let ResponseKind::DescribeProducers(producers) = wire
        .call(ApiKey::DescribeProducers, 0, request.into())
        .await
    else {
        panic!("kind")
    };
    let request = ElectLeadersRequest::default().with_topic_partitions(Some(vec![
        elect_leaders_request::TopicPartitions::default()
            .with_topic(topic(name))
            .with_partitions(vec![0]),
    ]));
    let ResponseKind::ElectLeaders(elected) =
        wire.call(ApiKey::ElectLeaders, 2, request.into()).await
    else {
        panic!("kind")
    };
    (
        epochs.topics[0].partitions[0].error_code,
        producers.topics[0].partitions[0].error_code,
        elected.replica_election_results[0].partition_result[0].error_code,
    )
}

#[tokio::test]
async fn iggy_permissions_decide_what_sasl_users_may_do() {
    let Some(server) = IggyServer::from_env().await else {
        return;
    };
    let stream = format!("authz-{}", std::process::id());
    let mut config = ProxyConfig {
        listeners: vec![
            listener("SASL", SecurityProtocol::SaslPlaintext),
            listener("INTERNAL", SecurityProtocol::Plaintext),
        ],
        default_stream: stream.clone(),
        ..local_config(BackendKind::Iggy)
    };
    config.listen = ProxyConfig::default().listen;
    config.iggy.address = server.address().to_string();
    let proxy = start_configured(config).await.expect("proxy starts");

    // The root user (passthrough of the proxy's own credentials) sets the scene.
    let mut root = login(&proxy, server.username(), server.password()).await;
    assert_eq!(create_topic(&mut root, "readable", 1).await, 0);
    assert_eq!(create_topic(&mut root, "hidden", 1).await, 0);
    let one = batch(&["a", "b"], None, Compression::None);
    assert_eq!(produce(&mut root, "readable", 0, one.clone()).await.0, 0);

    let admin = iggy_testkit::connect(server.address(), server.username(), server.password())
        .await
        .expect("admin client");
    let stream_id = Identifier::named(&stream).expect("name");
    let stream_details = admin
        .get_stream(&stream_id)
        .await
        .expect("stream")
        .expect("exists");
    let readable = admin
        .get_topic(&stream_id, &Identifier::named("readable").expect("name"))
        .await
        .expect("topic")
        .expect("exists");
    let reader_permissions = read_only(stream_details.id, readable.id);
    admin
        .create_user(
            "reader",
            "reader-secret",
            UserStatus::Active,
            Some(reader_permissions.clone()),
        )
        .await
        .expect("create reader");
    admin
        .create_user("nobody", "nobody-secret", UserStatus::Active, None)
        .await
        .expect("create nobody");

    // Read-only: sees and reads its topic, may not write or create.
    let mut reader = login(&proxy, "reader", "reader-secret").await;
    assert_eq!(
        topic_names(&mut reader, None).await,
        [("readable".into(), 0)]
    );
    assert_eq!(
        topic_names(&mut reader, Some(&["hidden", "readable"])).await,
        [
            ("hidden".into(), TOPIC_AUTHORIZATION_FAILED),
            ("readable".into(), 0)
        ]
    );
    let fetched = fetch(&mut reader, "readable", 0, 0, 100, 1).await;
    assert_eq!(fetched.error_code, 0);
    assert_eq!(fetched.records.len(), 2);
    assert_eq!(
        fetch(&mut reader, "hidden", 0, 0, 100, 1).await.error_code,
        TOPIC_AUTHORIZATION_FAILED
    );
    assert_eq!(
        produce(&mut reader, "readable", 0, one.clone()).await.0,
        TOPIC_AUTHORIZATION_FAILED
    );
    assert_eq!(
        create_topic(&mut reader, "created-by-reader", 1).await,
        TOPIC_AUTHORIZATION_FAILED
    );
    assert_eq!(find_coordinator(&mut reader, "reader-group").await, 0);
    // Leadership and producer tooling: topic DESCRIBE / READ, cluster ALTER.
    assert_eq!(
        tooling_codes(&mut reader, "readable").await,
        (0, 0, CLUSTER_AUTHORIZATION_FAILED)
    );
    assert_eq!(
        tooling_codes(&mut reader, "hidden").await,
        (
            TOPIC_AUTHORIZATION_FAILED,
            TOPIC_AUTHORIZATION_FAILED,
            CLUSTER_AUTHORIZATION_FAILED
        )
    );
    let (code, bindings) = acls(&mut reader).await;
    assert_eq!(code, 0);
    assert!(
        bindings.contains(&(2, "readable".into(), vec![8, 3])),
        "{bindings:?}"
    );
    assert!(
        bindings.contains(&(3, "*".into(), vec![8, 3])),
        "{bindings:?}"
    );
    assert!(
        !bindings.iter().any(|(_, _, ops)| ops.contains(&4)),
        "{bindings:?}"
    );

    // No permissions at all: nothing listed, no groups.
    let mut nobody = login(&proxy, "nobody", "nobody-secret").await;
    assert_eq!(topic_names(&mut nobody, None).await, []);
    assert_eq!(
        find_coordinator(&mut nobody, "g").await,
        GROUP_AUTHORIZATION_FAILED
    );

    // The plaintext listener acts as the proxy's own user, as before.
    let internal = proxy
        .listener_addrs
        .iter()
        .find(|(n, _)| n == "INTERNAL")
        .expect("listener")
        .1;
    let mut plain = Wire::connect(internal).await;
    assert_eq!(produce(&mut plain, "hidden", 0, one.clone()).await.0, 0);
    let (code, _) = acls(&mut plain).await;
    assert_eq!(code, 54, "SECURITY_DISABLED");

    // Granting send in Iggy reaches the open connection within the grants' lifetime.
    let mut granted = reader_permissions;
    if let Some(streams) = granted.streams.as_mut() {
        for s in streams.values_mut() {
            for t in s.topics.iter_mut().flat_map(|t| t.values_mut()) {
                t.send_messages = true;
            }
        }
    }
    admin
        .update_permissions(&Identifier::named("reader").expect("name"), Some(granted))
        .await
        .expect("update permissions");
    let deadline = Instant::now() + GRANTS_TTL + Duration::from_secs(5);
    loop {
        let (code, _) = produce(&mut reader, "readable", 0, one.clone()).await;
        if code == 0 {
            break;
        }
        assert_eq!(code, TOPIC_AUTHORIZATION_FAILED);
        assert!(Instant::now() < deadline, "permission change not applied");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    proxy.shutdown().await;
}
