//! The operator against a real Kubernetes API server (etcd + kube-apiserver started by
//! `iggy_testkit::kube`, built by tools/k8s/build.sh) and, for provisioning, a real Iggy server.
//! No pods run: where readiness matters the test writes the Deployment status as the
//! Deployment controller would.
#![allow(clippy::unwrap_used, reason = "test code: a panic is a failed test")]

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use iggy_testkit::kube::KubeTestCluster;
use iggy_testkit::IggyServer;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kafka_iggy_operator::crd::KafkaBridge;
use kafka_iggy_operator::desired::CONFIG_HASH_ANNOTATION;
use kafka_iggy_operator::metrics::OperatorMetrics;
use kafka_iggy_operator::provision::{self, IggyAccess};
use kafka_iggy_operator::reconcile::{self, Context, FINALIZER, SKIP_CLEANUP_ANNOTATION};
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, CustomResourceExt, ResourceExt};
use serde_json::json;

const TIMEOUT: Duration = Duration::from_secs(60);

async fn eventually<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + TIMEOUT;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The CRD installed and established.
async fn install_crd(client: &Client) {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crd = KafkaBridge::crd();
    match crds.create(&PostParams::default(), &crd).await {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 409 => {}
        Err(e) => panic!("create CRD: {e}"),
    }
    eventually("the CRD to be established", || {
        let crds = crds.clone();
        async move {
            let crd = crds.get("kafkabridges.bridge.kafka-iggy.dev").await.ok()?;
            let established = crd
                .status?
                .conditions?
                .iter()
                .any(|c| c.type_ == "Established" && c.status == "True");
            established.then_some(())
        }
    })
    .await;
}

/// A namespace with the Iggy credentials Secret the test bridges name.
async fn namespace_with_secret(client: &Client, ns: &str) {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let namespace: Namespace = serde_json::from_value(json!({"metadata": {"name": ns}})).unwrap();
    namespaces
        .create(&PostParams::default(), &namespace)
        .await
        .unwrap();
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": "iggy-credentials"},
        "stringData": {"username": "iggy", "password": "iggy"}
    }))
    .unwrap();
    secrets
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
}

/// CRD installed and established, namespace and Iggy credentials created, controller running
/// (giving up an Iggy cleanup after `cleanup_timeout`).
async fn setup(cluster: &KubeTestCluster, ns: &str, cleanup_timeout: Duration) -> Client {
    let client = cluster.client().await.unwrap();
    install_crd(&client).await;
    namespace_with_secret(&client, ns).await;
    let metrics = Arc::new(OperatorMetrics::new().unwrap());
    let ctx = Arc::new(
        Context::new(client.clone(), metrics, Duration::from_secs(30))
            .with_cleanup_timeout(cleanup_timeout),
    );
    tokio::spawn(reconcile::run(ctx));
    client
}

fn bridge(name: &str, iggy: &str, policy: &str, partitions: u32) -> KafkaBridge {
    serde_json::from_value(json!({
        "apiVersion": "bridge.kafka-iggy.dev/v1alpha1",
        "kind": "KafkaBridge",
        "metadata": {"name": name},
        "spec": {
            "replicas": 1,
            "iggy": {"address": iggy, "stream": format!("{name}-stream"), "credentialsSecret": {"name": "iggy-credentials"}},
            "topics": [{"name": "orders", "partitions": partitions}],
            "deletionPolicy": policy
        }
    }))
    .unwrap()
}

fn condition(kb: &KafkaBridge, type_: &str) -> Option<(String, String)> {
    kb.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| (c.status.clone(), c.reason.clone()))
}

/// Writes the Deployment status the way the Deployment controller would once pods are up.
async fn fake_rollout(client: &Client, ns: &str, name: &str) {
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let dep = deployments.get(name).await.unwrap();
    let replicas = dep.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let status = json!({"status": {
        "observedGeneration": dep.metadata.generation,
        "replicas": replicas, "updatedReplicas": replicas,
        "readyReplicas": replicas, "availableReplicas": replicas
    }});
    deployments
        .patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .unwrap();
}

async fn config_hash(deployments: &Api<Deployment>, name: &str) -> String {
    let dep = deployments.get(name).await.unwrap();
    dep.spec
        .unwrap()
        .template
        .metadata
        .unwrap()
        .annotations
        .unwrap()[CONFIG_HASH_ANNOTATION]
        .clone()
}

/// Children, owner references, status, scale, config rollout, CEL validation and the Keep
/// policy, with an Iggy that cannot be reached.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_on_kube() {
    let Some(cluster) = KubeTestCluster::start().await.unwrap() else {
        return;
    };
    let ns = "bridges";
    let client = setup(&cluster, ns, Duration::from_secs(8)).await;
    let bridges: Api<KafkaBridge> = Api::namespaced(client.clone(), ns);
    let created = bridges
        .create(
            &PostParams::default(),
            &bridge("orders-bridge", "127.0.0.1:1", "Keep", 3),
        )
        .await
        .unwrap();
    let uid = created.uid().unwrap();

    // Every child exists and is owned by the bridge.
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let dep = eventually("the Deployment", || {
        let d = deployments.clone();
        async move { d.get_opt("orders-bridge").await.ok().flatten() }
    })
    .await;
    let owned_by_bridge =
        |refs: Option<Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference>>| {
            refs.unwrap_or_default()
                .iter()
                .any(|r| r.uid == uid && r.controller == Some(true) && r.kind == "KafkaBridge")
        };
    assert!(owned_by_bridge(dep.metadata.owner_references.clone()));
    let cm = Api::<ConfigMap>::namespaced(client.clone(), ns)
        .get("orders-bridge-config")
        .await
        .unwrap();
    assert!(owned_by_bridge(cm.metadata.owner_references.clone()));
    let config = &cm.data.unwrap()["config.yaml"];
    assert!(
        config.contains("default_stream: orders-bridge-stream"),
        "{config}"
    );
    for svc in ["orders-bridge", "orders-bridge-brokers"] {
        let s = Api::<Service>::namespaced(client.clone(), ns)
            .get(svc)
            .await
            .unwrap();
        assert!(
            owned_by_bridge(s.metadata.owner_references.clone()),
            "{svc}"
        );
    }
    let headless = Api::<Service>::namespaced(client.clone(), ns)
        .get("orders-bridge-brokers")
        .await
        .unwrap();
    assert_eq!(headless.spec.unwrap().cluster_ip.as_deref(), Some("None"));
    let pdb = Api::<PodDisruptionBudget>::namespaced(client.clone(), ns)
        .get("orders-bridge")
        .await
        .unwrap();
    assert!(owned_by_bridge(pdb.metadata.owner_references.clone()));
    // Server-side apply with one field manager.
    let managers: Vec<String> = dep
        .metadata
        .managed_fields
        .unwrap_or_default()
        .iter()
        .filter_map(|m| m.manager.clone())
        .collect();
    assert!(
        managers.contains(&"kafka-iggy-operator".to_string()),
        "{managers:?}"
    );

    // Status: provisioning fails (Iggy unreachable), so not Ready; selector and bootstrap set.
    let kb = eventually("IggyProvisioned=False", || {
        let b = bridges.clone();
        async move {
            let kb = b.get("orders-bridge").await.ok()?;
            (condition(&kb, "IggyProvisioned")?.0 == "False").then_some(kb)
        }
    })
    .await;
    assert_eq!(
        condition(&kb, "IggyProvisioned").unwrap().1,
        "IggyUnreachable"
    );
    assert_eq!(condition(&kb, "Ready").unwrap().0, "False");
    let status = kb.status.clone().unwrap();
    assert_eq!(status.observed_generation, kb.metadata.generation);
    assert_eq!(
        status.bootstrap_address.as_deref(),
        Some("orders-bridge.bridges.svc:9092")
    );
    assert!(status
        .selector
        .unwrap()
        .contains("app.kubernetes.io/instance=orders-bridge"));
    assert!(
        kb.finalizers().is_empty(),
        "no finalizer with deletionPolicy Keep"
    );

    // The scale subresource drives the Deployment.
    let scale = json!({"spec": {"replicas": 3}});
    bridges
        .patch_scale(
            "orders-bridge",
            &PatchParams::default(),
            &Patch::Merge(&scale),
        )
        .await
        .unwrap();
    eventually("the Deployment to have 3 replicas", || {
        let d = deployments.clone();
        async move { (d.get("orders-bridge").await.ok()?.spec?.replicas == Some(3)).then_some(()) }
    })
    .await;
    let scale = bridges.get_scale("orders-bridge").await.unwrap();
    assert_eq!(scale.spec.unwrap().replicas, Some(3));

    // A spec change that changes the proxy configuration rolls the pods (config hash).
    let before = config_hash(&deployments, "orders-bridge").await;
    let patch = json!({"spec": {"autoCreateTopics": false}});
    bridges
        .patch(
            "orders-bridge",
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
        .unwrap();
    eventually("a new config hash", || {
        let d = deployments.clone();
        let before = before.clone();
        async move { (config_hash(&d, "orders-bridge").await != before).then_some(()) }
    })
    .await;

    // Partitions can never decrease: the API server refuses it (CEL transition rule).
    let shrink = json!({"spec": {"topics": [{"name": "orders", "partitions": 1}]}});
    let refused = bridges
        .patch(
            "orders-bridge",
            &PatchParams::default(),
            &Patch::Merge(&shrink),
        )
        .await;
    let message = format!("{refused:?}");
    assert!(
        refused.is_err() && message.contains("partitions can only grow"),
        "{message}"
    );
    // The stream is immutable.
    let restream = json!({"spec": {"iggy": {"stream": "other"}}});
    let refused = bridges
        .patch(
            "orders-bridge",
            &PatchParams::default(),
            &Patch::Merge(&restream),
        )
        .await;
    assert!(format!("{refused:?}").contains("immutable"), "{refused:?}");
    // An explicit advertised address must be given with advertise: Explicit.
    let mut explicit = bridge("edge", "127.0.0.1:1", "Keep", 1);
    explicit.spec.kafka.advertise = kafka_iggy_operator::crd::AdvertiseMode::Explicit;
    let refused = bridges.create(&PostParams::default(), &explicit).await;
    assert!(
        format!("{refused:?}").contains("advertisedAddress is required"),
        "{refused:?}"
    );
    // A name too long for the derived object names is refused.
    let long = bridge(&"x".repeat(41), "127.0.0.1:1", "Keep", 1);
    let refused = bridges.create(&PostParams::default(), &long).await;
    assert!(refused.is_err(), "{refused:?}");

    // A second bridge on the same Iggy stream is a conflict (the older one owns the topics).
    let mut twin = bridge("orders-twin", "127.0.0.1:1", "Keep", 3);
    twin.spec.iggy.stream = "orders-bridge-stream".into();
    bridges.create(&PostParams::default(), &twin).await.unwrap();
    let mut seen = None;
    for _ in 0..100 {
        seen = bridges
            .get("orders-twin")
            .await
            .ok()
            .and_then(|b| condition(&b, "IggyProvisioned"));
        if seen
            .as_ref()
            .is_some_and(|(s, r)| s == "False" && r == "TopicConflict")
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        seen,
        Some(("False".to_string(), "TopicConflict".to_string())),
        "{:?}",
        bridges.get("orders-twin").await.unwrap().status
    );
    bridges
        .delete("orders-twin", &DeleteParams::default())
        .await
        .unwrap();

    // A ServiceMonitor is applied once its CRD exists (here a minimal one: only the API matters).
    let sm_crd: CustomResourceDefinition = serde_json::from_value(json!({
        "metadata": {"name": "servicemonitors.monitoring.coreos.com"},
        "spec": {
            "group": "monitoring.coreos.com",
            "names": {"kind": "ServiceMonitor", "plural": "servicemonitors", "singular": "servicemonitor"},
            "scope": "Namespaced",
            "versions": [{"name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}]
        }
    }))
    .unwrap();
    Api::<CustomResourceDefinition>::all(client.clone())
        .create(&PostParams::default(), &sm_crd)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let monitor =
        json!({"spec": {"metrics": {"serviceMonitor": {"enabled": true, "interval": "15s"}}}});
    bridges
        .patch(
            "orders-bridge",
            &PatchParams::default(),
            &Patch::Merge(&monitor),
        )
        .await
        .unwrap();
    let gvk = kube::api::GroupVersionKind::gvk("monitoring.coreos.com", "v1", "ServiceMonitor");
    let monitors: Api<kube::api::DynamicObject> =
        Api::namespaced_with(client.clone(), ns, &kube::api::ApiResource::from_gvk(&gvk));
    let sm = eventually("the ServiceMonitor", || {
        let m = monitors.clone();
        async move { m.get_opt("orders-bridge").await.ok().flatten() }
    })
    .await;
    assert!(owned_by_bridge(sm.metadata.owner_references.clone()));
    assert_eq!(sm.data["spec"]["endpoints"][0]["port"], "metrics");
    assert_eq!(sm.data["spec"]["endpoints"][0]["interval"], "15s");
    // Turned off again: the operator removes it (apply alone never deletes).
    let off = json!({"spec": {"metrics": {"serviceMonitor": {"enabled": false}}}});
    bridges
        .patch(
            "orders-bridge",
            &PatchParams::default(),
            &Patch::Merge(&off),
        )
        .await
        .unwrap();
    eventually("the ServiceMonitor to be removed", || {
        let m = monitors.clone();
        async move {
            m.get_opt("orders-bridge")
                .await
                .ok()?
                .is_none()
                .then_some(())
        }
    })
    .await;

    // Events: the failure was reported once, although the bridge was reconciled many times
    // since (scale, spec changes, resyncs).
    let events = warning_events(&client, ns, "orders-bridge").await;
    let unreachable: Vec<_> = events
        .iter()
        .filter(|e| e.reason.as_deref() == Some("IggyUnreachable"))
        .collect();
    assert_eq!(unreachable.len(), 1, "{events:#?}");
    assert!(
        unreachable[0].series.is_none(),
        "published again: {:?}",
        unreachable[0].series
    );
    assert!(
        unreachable[0]
            .note
            .as_deref()
            .unwrap_or_default()
            .contains("127.0.0.1:1"),
        "{:?}",
        unreachable[0].note
    );

    // Deletion with Keep: no finalizer, the resource goes at once (children by owner refs,
    // through the garbage collector, which this API server does not run).
    bridges
        .delete("orders-bridge", &DeleteParams::default())
        .await
        .unwrap();
    eventually("the bridge to be gone", || {
        let b = bridges.clone();
        async move {
            b.get_opt("orders-bridge")
                .await
                .ok()?
                .is_none()
                .then_some(())
        }
    })
    .await;

    // Policy Delete with an unreachable Iggy: the finalizer holds the resource until the skip
    // annotation lets it go.
    bridges
        .create(
            &PostParams::default(),
            &bridge("stuck", "127.0.0.1:1", "Delete", 1),
        )
        .await
        .unwrap();
    eventually("the finalizer", || {
        let b = bridges.clone();
        async move {
            b.get("stuck")
                .await
                .ok()?
                .finalizers()
                .contains(&FINALIZER.to_string())
                .then_some(())
        }
    })
    .await;
    bridges
        .delete("stuck", &DeleteParams::default())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        bridges.get_opt("stuck").await.unwrap().is_some(),
        "held by the finalizer while Iggy is unreachable"
    );
    let skip = json!({"metadata": {"annotations": {SKIP_CLEANUP_ANNOTATION: "true"}}});
    bridges
        .patch("stuck", &PatchParams::default(), &Patch::Merge(&skip))
        .await
        .unwrap();
    eventually("the stuck bridge to be released", || {
        let b = bridges.clone();
        async move { b.get_opt("stuck").await.ok()?.is_none().then_some(()) }
    })
    .await;

    // Without the annotation, the operator gives up after its cleanup timeout (8 s here), so a
    // namespace deletion never hangs; a Warning event says the topics were left in Iggy.
    bridges
        .create(
            &PostParams::default(),
            &bridge("abandoned", "127.0.0.1:1", "Delete", 1),
        )
        .await
        .unwrap();
    eventually("the finalizer", || {
        let b = bridges.clone();
        async move {
            b.get("abandoned")
                .await
                .ok()?
                .finalizers()
                .contains(&FINALIZER.to_string())
                .then_some(())
        }
    })
    .await;
    let deleted = Instant::now();
    bridges
        .delete("abandoned", &DeleteParams::default())
        .await
        .unwrap();
    eventually("the abandoned bridge to be released", || {
        let b = bridges.clone();
        async move { b.get_opt("abandoned").await.ok()?.is_none().then_some(()) }
    })
    .await;
    assert!(
        deleted.elapsed() >= Duration::from_secs(7),
        "released after {:?}, before the cleanup timeout",
        deleted.elapsed()
    );
    let reasons: Vec<String> = warning_events(&client, ns, "abandoned")
        .await
        .into_iter()
        .filter_map(|e| e.reason)
        .collect();
    assert!(
        reasons.contains(&"CleanupFailed".to_string())
            && reasons.contains(&"CleanupAbandoned".to_string()),
        "{reasons:?}"
    );
}

/// Warning events about one object (events.k8s.io, as kube's Recorder writes them).
async fn warning_events(
    client: &Client,
    ns: &str,
    name: &str,
) -> Vec<k8s_openapi::api::events::v1::Event> {
    Api::<k8s_openapi::api::events::v1::Event>::namespaced(client.clone(), ns)
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| {
            e.type_.as_deref() == Some("Warning")
                && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name)
        })
        .collect()
}

/// Provisioning on real Iggy: topics created, partitions grown, a decrease refused without
/// touching data, Ready once the Deployment caught up, topics deleted with policy Delete.
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
        "not Ready before the Deployment is"
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

    // Deletion with policy Delete removes the topics, then the finalizer.
    bridges
        .delete("shop", &DeleteParams::default())
        .await
        .unwrap();
    eventually("the bridge to be gone", || {
        let b = bridges.clone();
        async move { b.get_opt("shop").await.ok()?.is_none().then_some(()) }
    })
    .await;
    assert_eq!(
        provision::partitions(&access, "orders").await.unwrap(),
        None
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
        "metadata": {"name": "iggy-ca"},
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
    let dep = Api::<Deployment>::namespaced(client.clone(), ns)
        .get("secure")
        .await
        .unwrap();
    let pod = dep.spec.unwrap().template.spec.unwrap();
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
    let message = eventually("CredentialsUnavailable", || {
        let b = bridges.clone();
        async move {
            let kb = b.get("no-ca").await.ok()?;
            let c =
                kb.status?.conditions.into_iter().find(|c| {
                    c.type_ == "IggyProvisioned" && c.reason == "CredentialsUnavailable"
                })?;
            Some(c.message)
        }
    })
    .await;
    assert!(message.contains("CA Secret absent not found"), "{message}");

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

/// Two operator replicas: only one holds the Lease while it is renewed; the other takes over
/// once renewals stop for the lease duration, and the old leader steps down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_election_on_kube() {
    use k8s_openapi::api::coordination::v1::Lease;
    use kafka_iggy_operator::leader::LeaderElector;

    let Some(cluster) = KubeTestCluster::start().await.unwrap() else {
        return;
    };
    let client = cluster.client().await.unwrap();
    let leases: Api<Lease> = Api::namespaced(client, "default");
    let duration = Duration::from_secs(2);
    let a = Arc::new(LeaderElector::new(
        leases.clone(),
        "operator",
        "replica-a",
        duration,
    ));
    let b = LeaderElector::new(leases.clone(), "operator", "replica-b", duration);
    assert!(
        a.try_acquire().await.unwrap(),
        "the first replica becomes leader"
    );
    assert!(
        !b.try_acquire().await.unwrap(),
        "the second must not act while the lease is held"
    );

    // While the leader renews, the other never takes over, however long it tries.
    let renewing = tokio::spawn({
        let a = a.clone();
        async move { a.hold().await }
    });
    let until = Instant::now() + duration * 3;
    while Instant::now() < until {
        assert!(
            !b.try_acquire().await.unwrap(),
            "took over a lease that is being renewed"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(!renewing.is_finished(), "the leader keeps its lease");

    // The leader stops renewing (crash): the other takes over, but not before the lease
    // duration has passed on its own clock.
    renewing.abort();
    let crashed = Instant::now();
    while !b.try_acquire().await.unwrap() {
        assert!(
            crashed.elapsed() < duration * 2,
            "no takeover after the lease lapsed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        crashed.elapsed() >= duration - Duration::from_millis(400),
        "took over after {:?}, before the lease could have expired",
        crashed.elapsed()
    );
    let lease = leases.get("operator").await.unwrap().spec.unwrap();
    assert_eq!(lease.holder_identity.as_deref(), Some("replica-b"));
    assert_eq!(lease.lease_transitions, Some(1));

    // The old leader, back, learns it lost the lease and stops at its next renewal.
    assert!(!a.try_acquire().await.unwrap());
    tokio::time::timeout(duration, a.hold())
        .await
        .expect("the old leader steps down once another holds the lease");
    // Releasing is a no-op for a replica that does not hold the lease...
    a.release().await.unwrap();
    assert!(!a.try_acquire().await.unwrap());
    // ...and on a clean shutdown of the leader, the standby takes over without waiting.
    b.release().await.unwrap();
    assert!(
        a.try_acquire().await.unwrap(),
        "a released lease is free at once"
    );
}

/// One operator process (the real binary), killed if the test ends early.
struct OperatorProcess {
    child: std::process::Child,
    metrics: std::net::SocketAddr,
}

impl OperatorProcess {
    fn start(cluster: &KubeTestCluster, identity: &str) -> Self {
        let metrics = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_kafka-iggy-operator"))
            .args([
                "run",
                "--lease-namespace",
                "default",
                "--identity",
                identity,
            ])
            .args(["--metrics-listen", &metrics.to_string()])
            .env("KUBECONFIG", cluster.kubeconfig_path())
            // The test kubeconfig skips TLS verification; kube warns about it on every connection.
            .env("RUST_LOG", "warn,kube_client::client::tls=error")
            .stdin(std::process::Stdio::null())
            .spawn()
            .unwrap();
        Self { child, metrics }
    }

    /// GET /metrics: the text exposition.
    async fn metrics(&self) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let Ok(mut stream) = tokio::net::TcpStream::connect(self.metrics).await else {
            return String::new();
        };
        let request = "GET /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
        let mut response = String::new();
        if stream.write_all(request.as_bytes()).await.is_err()
            || stream.read_to_string(&mut response).await.is_err()
        {
            return String::new();
        }
        response
    }

    /// SIGTERM, as Kubernetes stops a pod; the exit status.
    async fn terminate(&mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap();
        assert!(sent.success());
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "no exit within 20 s of SIGTERM");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for OperatorProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn lease_holder(leases: &Api<k8s_openapi::api::coordination::v1::Lease>) -> Option<String> {
    leases
        .get_opt("kafka-iggy-operator")
        .await
        .ok()??
        .spec?
        .holder_identity
}

/// The operator binary: two replicas, one acts (the other only waits), /metrics counts the
/// leader's reconciles; on SIGTERM the leader exits cleanly and hands over the Lease at once
/// (well within the 15 s lease duration).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_process_on_kube() {
    let Some(cluster) = KubeTestCluster::start().await.unwrap() else {
        return;
    };
    let client = cluster.client().await.unwrap();
    install_crd(&client).await;
    let ns = "proc";
    namespace_with_secret(&client, ns).await;
    let leases =
        Api::<k8s_openapi::api::coordination::v1::Lease>::namespaced(client.clone(), "default");

    let mut first = OperatorProcess::start(&cluster, "op-1");
    eventually("op-1 to lead", || {
        let l = leases.clone();
        async move { (lease_holder(&l).await.as_deref() == Some("op-1")).then_some(()) }
    })
    .await;
    let second = OperatorProcess::start(&cluster, "op-2");
    eventually("op-2 to serve /metrics", || {
        let m = second.metrics();
        async move {
            m.await
                .contains("kafka_iggy_operator_leader 0")
                .then_some(())
        }
    })
    .await;

    let bridges: Api<KafkaBridge> = Api::namespaced(client.clone(), ns);
    bridges
        .create(
            &PostParams::default(),
            &bridge("proc-bridge", "127.0.0.1:1", "Keep", 1),
        )
        .await
        .unwrap();
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
    eventually("the leader to create the Deployment", || {
        let d = deployments.clone();
        async move { d.get_opt("proc-bridge").await.ok().flatten() }
    })
    .await;
    eventually("the leader's /metrics to count a reconcile", || {
        let m = first.metrics();
        async move {
            let text = m.await;
            (text.contains("kafka_iggy_operator_leader 1")
                && text.contains("kafka_iggy_operator_reconciles_total{result=\"ok\"}"))
            .then_some(())
        }
    })
    .await;
    let standby_metrics = second.metrics().await;
    assert!(
        standby_metrics.contains("kafka_iggy_operator_leader 0")
            && !standby_metrics.contains("kafka_iggy_operator_reconciles_total{"),
        "the standby must not reconcile:\n{standby_metrics}"
    );

    let status = first.terminate().await;
    assert!(status.success(), "op-1 exited with {status}");
    let stopped = Instant::now();
    eventually("op-2 to take over", || {
        let l = leases.clone();
        async move { (lease_holder(&l).await.as_deref() == Some("op-2")).then_some(()) }
    })
    .await;
    assert!(
        stopped.elapsed() < Duration::from_secs(10),
        "took over after {:?}: the lease was not released",
        stopped.elapsed()
    );
    // The new leader acts: a spec change reaches the Deployment.
    let scale = json!({"spec": {"replicas": 2}});
    bridges
        .patch_scale(
            "proc-bridge",
            &PatchParams::default(),
            &Patch::Merge(&scale),
        )
        .await
        .unwrap();
    eventually("op-2 to scale the Deployment", || {
        let d = deployments.clone();
        async move { (d.get("proc-bridge").await.ok()?.spec?.replicas == Some(2)).then_some(()) }
    })
    .await;
    drop(second);
}
