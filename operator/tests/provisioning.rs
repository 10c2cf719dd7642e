//! Iggy provisioning by the operator against a real Kubernetes API server and a real Iggy
//! server (both skipped loudly when missing): topics, partitions, settings, deletion, TLS.
#![allow(clippy::unwrap_used, reason = "test code: a panic is a failed test")]

mod support;

use std::time::Duration;

use iggy_testkit::kube::KubeTestCluster;
use iggy_testkit::IggyServer;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kafka_iggy_operator::crd::KafkaBridge;
use kafka_iggy_operator::ownership;
use kafka_iggy_operator::provision::{self, IggyAccess, REPLICA_TOPICS};
use kafka_iggy_proxy::config::{MembershipKind, ProxyConfig};
use kafka_iggy_proxy::Proxy;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::Api;
use serde_json::json;
use support::*;

/// Provisioning on real Iggy: topics created, partitions grown, a decrease refused without
/// touching data, Ready once every replica is ready (also scaled 1 -> 3 -> 1), a replica started
/// from the rendered configuration joins the membership log, topics and membership log deleted
/// with policy Delete.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provisioning_on_kube_on_iggy() {
    let Some(server) = IggyServer::from_env().await else {
        return;
    };
    let Some(cluster) = KubeTestCluster::start().await.unwrap() else {
        return;
    };
    let ns = "iggy-bridges";
    let client = setup(&cluster, ns, Duration::from_secs(600)).await;
    let bridges: Api<KafkaBridge> = Api::namespaced(client.clone(), ns);
    let access = IggyAccess {
        address: server.address().to_string(),
        username: server.username().to_string(),
        password: server.password().to_string(),
        stream: "shop-stream".into(),
        tls: Default::default(),
    };
    bridges
        .create(
            &PostParams::default(),
            &bridge("shop", server.address(), "Delete", 2),
        )
        .await
        .unwrap();
    eventually("IggyProvisioned=True", || {
        let b = bridges.clone();
        async move {
            (condition(&b.get("shop").await.ok()?, "IggyProvisioned")?.0 == "True").then_some(())
        }
    })
    .await;
    assert_eq!(
        provision::partitions(&access, "orders").await.unwrap(),
        Some(2)
    );
    let kb = bridges.get("shop").await.unwrap();
    assert_eq!(
        condition(&kb, "Ready").unwrap().0,
        "False",
        "not Ready before the StatefulSet is"
    );

    fake_rollout(&client, ns, "shop").await;
    eventually("Ready=True", || {
        let b = bridges.clone();
        async move { (condition(&b.get("shop").await.ok()?, "Ready")?.0 == "True").then_some(()) }
    })
    .await;
    assert_eq!(
        bridges
            .get("shop")
            .await
            .unwrap()
            .status
            .unwrap()
            .ready_replicas,
        1
    );

    // Ready means every replica is ready: scaled 1 -> 3 -> 1 through the scale subresource,
    // the bridge is not Ready until the StatefulSet reports all of them.
    for (replicas, partly) in [(3, 2), (1, 3)] {
        bridges
            .patch_scale(
                "shop",
                &PatchParams::default(),
                &Patch::Merge(&json!({"spec": {"replicas": replicas}})),
            )
            .await
            .unwrap();
        eventually("the StatefulSet to follow the scale", || {
            let s = Api::<StatefulSet>::namespaced(client.clone(), ns);
            async move { (s.get("shop").await.ok()?.spec?.replicas == Some(replicas)).then_some(()) }
        })
        .await;
        // Scaling up: 2 of 3 ready; scaling down: 3 pods left where 1 is asked for.
        fake_statefulset_status(&client, ns, "shop", partly).await;
        eventually("Ready=False while the replicas are not all ready", || {
            let b = bridges.clone();
            async move {
                let kb = b.get("shop").await.ok()?;
                (condition(&kb, "Ready")?.0 == "False" && kb.status?.ready_replicas == partly)
                    .then_some(())
            }
        })
        .await;
        fake_rollout(&client, ns, "shop").await;
        eventually("Ready=True with every replica ready", || {
            let b = bridges.clone();
            async move {
                let kb = b.get("shop").await.ok()?;
                (condition(&kb, "Ready")?.0 == "True" && kb.status?.ready_replicas == replicas)
                    .then_some(())
            }
        })
        .await;
    }

    // Growing partitions.
    let grow = json!({"spec": {"topics": [{"name": "orders", "partitions": 4}]}});
    bridges
        .patch("shop", &PatchParams::default(), &Patch::Merge(&grow))
        .await
        .unwrap();
    eventually("4 partitions in Iggy", || {
        let a = access.clone();
        async move { (provision::partitions(&a, "orders").await.ok()? == Some(4)).then_some(()) }
    })
    .await;

    // Message expiry and max size follow the spec on an existing topic.
    let settings = json!({"spec": {"topics": [{"name": "orders", "partitions": 4,
        "messageExpiryMs": 3_600_000, "maxSizeBytes": 1_073_741_824u64}]}});
    bridges
        .patch("shop", &PatchParams::default(), &Patch::Merge(&settings))
        .await
        .unwrap();
    let info = eventually("the new settings in Iggy", || {
        let a = access.clone();
        async move {
            let info = provision::describe(&a, "orders").await.ok()??;
            (info.retention_ms == Some(3_600_000)).then_some(info)
        }
    })
    .await;
    assert_eq!(info.max_bytes, Some(1_073_741_824));
    assert_eq!(info.partitions, 4, "partitions untouched");

    // A bridge whose spec asks for fewer partitions than Iggy has is refused by the operator
    // (here: a topic created with more partitions beforehand), and nothing is touched.
    let wide = IggyAccess {
        stream: "wide-stream".into(),
        ..access.clone()
    };
    provision::provision(
        &wide,
        &[serde_json::from_value(json!({"name": "events", "partitions": 5})).unwrap()],
    )
    .await
    .unwrap();
    let mut narrow = bridge("wide", server.address(), "Keep", 1);
    narrow.spec.topics =
        vec![serde_json::from_value(json!({"name": "events", "partitions": 2})).unwrap()];
    bridges
        .create(&PostParams::default(), &narrow)
        .await
        .unwrap();
    eventually("PartitionDecreaseRefused", || {
        let b = bridges.clone();
        async move {
            (condition(&b.get("wide").await.ok()?, "IggyProvisioned")?.1
                == "PartitionDecreaseRefused")
                .then_some(())
        }
    })
    .await;
    assert_eq!(
        provision::partitions(&wide, "events").await.unwrap(),
        Some(5)
    );

    // A replica started from what the operator rendered (the ConfigMap, and the pod's
    // environment: broker id = ordinal, its own address) joins the membership log in the
    // bridge's stream, which it creates.
    let config_map = Api::<ConfigMap>::namespaced(client.clone(), ns)
        .get("shop-config")
        .await
        .unwrap();
    let mut config: ProxyConfig =
        serde_yaml::from_str(&config_map.data.unwrap()["config.yaml"]).unwrap();
    assert_eq!(config.cluster.membership, MembershipKind::Log);
    config.listen = "127.0.0.1:0".parse().unwrap();
    config.metrics_listen = None;
    config.broker_id = 0;
    config.advertised_address = Some("shop-0.shop-brokers.iggy-bridges.svc:9092".into());
    config.iggy.username = server.username().into();
    config.iggy.password = server.password().into();
    let replica = Proxy::start(config).await.unwrap();
    let members = REPLICA_TOPICS[0];
    eventually("the replica to join the membership log", || {
        let a = access.clone();
        let membership = replica.broker.cluster.membership().cloned();
        async move {
            let joined = membership?
                .view()
                .members
                .iter()
                .any(|m| m.id.broker_id == 0);
            (joined && provision::partitions(&a, members).await.ok()?.is_some()).then_some(())
        }
    })
    .await;
    replica.shutdown().await;

    // Deletion with policy Delete removes the topics and the membership log, then the
    // finalizer.
    bridges
        .delete("shop", &DeleteParams::default())
        .await
        .unwrap();
    // Not while proxies run (a replica would create its membership log again).
    scaled_to_zero(&client, ns, "shop").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        provision::partitions(&access, "orders").await.unwrap(),
        Some(4),
        "topics deleted while the proxies may still run"
    );
    fake_statefulset_status(&client, ns, "shop", 0).await;
    eventually("the bridge to be gone", || {
        let b = bridges.clone();
        async move { b.get_opt("shop").await.ok()?.is_none().then_some(()) }
    })
    .await;
    // The bridge created its stream, and nothing else is left in it: it goes too (checked
    // before anything below connects with the proxy's back end, which creates the stream).
    assert!(
        !ownership::probe(&access).await.unwrap().stream_exists,
        "the stream the bridge created is deleted once empty"
    );
    assert_eq!(
        provision::partitions(&access, "orders").await.unwrap(),
        None
    );
    assert_eq!(
        provision::partitions(&access, members).await.unwrap(),
        None,
        "the membership log goes with the bridge"
    );
    drop(cluster);
}

/// TLS to Iggy: the operator provisions over TLS with the CA from the bridge's Secret, and the
/// proxy pods get the same CA mounted and named in their configuration. A CA Secret that is
/// missing, or trusting only the public roots, is reported on the condition; settings that need
/// TLS on are refused by the schema.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn iggy_tls_on_kube_on_iggy() {
    let Some(server) = IggyServer::from_env_tls().await else {
        return;
    };
    let Some(cluster) = KubeTestCluster::start().await.unwrap() else {
        return;
    };
    let ns = "tls-bridges";
    let client = setup(&cluster, ns, Duration::from_secs(600)).await;
    let bridges: Api<KafkaBridge> = Api::namespaced(client.clone(), ns);
    let ca_pem = std::fs::read_to_string(server.tls_ca_file().unwrap()).unwrap();
    let ca_secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": "iggy-ca", "labels": {"kafka-iggy.dev/bridge-access": "true"}},
        "stringData": {"ca.crt": ca_pem}
    }))
    .unwrap();
    Api::<Secret>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &ca_secret)
        .await
        .unwrap();
    let with_tls = |name: &str, tls: serde_json::Value| {
        let mut kb = bridge(name, server.address(), "Keep", 3);
        kb.spec.iggy.tls = serde_json::from_value(tls).unwrap();
        kb
    };

    bridges
        .create(
            &PostParams::default(),
            &with_tls(
                "secure",
                json!({"enabled": true, "caSecret": {"name": "iggy-ca"}}),
            ),
        )
        .await
        .unwrap();
    eventually("IggyProvisioned=True over TLS", || {
        let b = bridges.clone();
        async move {
            (condition(&b.get("secure").await.ok()?, "IggyProvisioned")?.0 == "True").then_some(())
        }
    })
    .await;
    let access = IggyAccess {
        address: server.address().to_string(),
        username: server.username().to_string(),
        password: server.password().to_string(),
        stream: "secure-stream".into(),
        tls: kafka_iggy_proxy::config::IggyTls {
            enabled: true,
            ca_file: server.tls_ca_file().map(Into::into),
            server_name: None,
        },
    };
    assert_eq!(
        provision::partitions(&access, "orders").await.unwrap(),
        Some(3)
    );

    // The pods trust the same CA: mounted from the Secret, named in the rendered config.
    let sts = Api::<StatefulSet>::namespaced(client.clone(), ns)
        .get("secure")
        .await
        .unwrap();
    let pod = sts.spec.unwrap().template.spec.unwrap();
    let volume = pod
        .volumes
        .unwrap()
        .into_iter()
        .find(|v| v.name == "iggy-ca")
        .expect("CA volume");
    assert_eq!(
        volume.secret.unwrap().secret_name.as_deref(),
        Some("iggy-ca")
    );
    let mounts = pod.containers[0].volume_mounts.clone().unwrap();
    assert!(
        mounts
            .iter()
            .any(|m| m.name == "iggy-ca" && m.mount_path == "/etc/kafka-iggy/iggy-ca"),
        "{mounts:?}"
    );
    let config_map = Api::<ConfigMap>::namespaced(client.clone(), ns)
        .get("secure-config")
        .await
        .unwrap();
    let rendered: kafka_iggy_proxy::config::ProxyConfig =
        serde_yaml::from_str(&config_map.data.unwrap()["config.yaml"]).unwrap();
    assert!(rendered.iggy.tls.enabled);
    assert_eq!(
        rendered.iggy.tls.ca_file.as_deref(),
        Some(std::path::Path::new("/etc/kafka-iggy/iggy-ca/ca.crt"))
    );

    // Public roots only: the handshake fails and the condition says it was TLS.
    bridges
        .create(
            &PostParams::default(),
            &with_tls("public-roots", json!({"enabled": true})),
        )
        .await
        .unwrap();
    let message = eventually("IggyUnreachable over TLS", || {
        let b = bridges.clone();
        async move {
            let kb = b.get("public-roots").await.ok()?;
            let c = kb
                .status?
                .conditions
                .into_iter()
                .find(|c| c.type_ == "IggyProvisioned" && c.reason == "IggyUnreachable")?;
            Some(c.message)
        }
    })
    .await;
    assert!(message.contains("over TLS"), "{message}");

    // A CA Secret that does not exist.
    bridges
        .create(
            &PostParams::default(),
            &with_tls(
                "no-ca",
                json!({"enabled": true, "caSecret": {"name": "absent"}}),
            ),
        )
        .await
        .unwrap();
    let message = eventually("SecretNotFound", || {
        let b = bridges.clone();
        async move {
            let kb = b.get("no-ca").await.ok()?;
            let c = kb
                .status?
                .conditions
                .into_iter()
                .find(|c| c.type_ == "IggyProvisioned" && c.reason == "SecretNotFound")?;
            Some(c.message)
        }
    })
    .await;
    assert!(message.contains("Secret absent not found"), "{message}");

    // TLS settings without TLS on are refused by the API server (CEL).
    let refused = bridges
        .create(
            &PostParams::default(),
            &with_tls(
                "half",
                json!({"enabled": false, "caSecret": {"name": "iggy-ca"}}),
            ),
        )
        .await
        .unwrap_err();
    assert!(
        refused.to_string().contains("need iggy.tls.enabled"),
        "{refused}"
    );
    drop(cluster);
}
