//! The operator against a real Kubernetes API server (etcd + kube-apiserver started by
//! `iggy_testkit::kube`, built by tools/k8s/build.sh): children, status, scale, deletion,
//! leader election and the operator process. No pods run: where readiness matters the test
//! writes the StatefulSet status as the StatefulSet controller would. Provisioning on real
//! Iggy is in provisioning.rs.
#![allow(clippy::unwrap_used, reason = "test code: a panic is a failed test")]

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use iggy_testkit::kube::KubeTestCluster;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{ConfigMap, Service, ServiceAccount};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kafka_iggy_operator::crd::KafkaBridge;
use kafka_iggy_operator::reconcile::{FINALIZER, SKIP_CLEANUP_ANNOTATION};
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use serde_json::json;
use support::*;

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
    let sets: Api<StatefulSet> = Api::namespaced(client.clone(), ns);
    let sts = eventually("the StatefulSet", || {
        let d = sets.clone();
        async move { d.get_opt("orders-bridge").await.ok().flatten() }
    })
    .await;
    let owned_by_bridge =
        |refs: Option<Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference>>| {
            refs.unwrap_or_default()
                .iter()
                .any(|r| r.uid == uid && r.controller == Some(true) && r.kind == "KafkaBridge")
        };
    assert!(owned_by_bridge(sts.metadata.owner_references.clone()));
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
    let managers: Vec<String> = sts
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

    // The scale subresource drives the StatefulSet.
    let scale = json!({"spec": {"replicas": 3}});
    bridges
        .patch_scale(
            "orders-bridge",
            &PatchParams::default(),
            &Patch::Merge(&scale),
        )
        .await
        .unwrap();
    eventually("the StatefulSet to have 3 replicas", || {
        let d = sets.clone();
        async move { (d.get("orders-bridge").await.ok()?.spec?.replicas == Some(3)).then_some(()) }
    })
    .await;
    let scale = bridges.get_scale("orders-bridge").await.unwrap();
    assert_eq!(scale.spec.unwrap().replicas, Some(3));

    // A spec change that changes the proxy configuration rolls the pods (config hash).
    let before = config_hash(&sets, "orders-bridge").await;
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
        let d = sets.clone();
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
    fake_ownership(&bridges, "stuck").await;
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
    fake_ownership(&bridges, "abandoned").await;
    bridges
        .delete("abandoned", &DeleteParams::default())
        .await
        .unwrap();
    // First the proxies stop (a running replica would create its membership log again).
    scaled_to_zero(&client, ns, "abandoned").await;
    fake_statefulset_status(&client, ns, "abandoned", 0).await;
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

/// The workload of one bridge: its StatefulSet, once created.
async fn stateful_set(sets: &Api<StatefulSet>, name: &str) -> StatefulSet {
    eventually(&format!("StatefulSet {name}"), || {
        let s = sets.clone();
        let name = name.to_string();
        async move { s.get_opt(&name).await.ok().flatten() }
    })
    .await
}

/// Waits until the bridge's status satisfies `check`; returns it.
async fn status_where(
    bridges: &Api<KafkaBridge>,
    name: &str,
    what: &str,
    check: impl Fn(&KafkaBridge) -> bool,
) -> KafkaBridge {
    eventually(what, || {
        let b = bridges.clone();
        let name = name.to_string();
        let check = &check;
        async move { b.get(&name).await.ok().filter(|kb| check(kb)) }
    })
    .await
}

/// `(replicas, readyReplicas)` of the bridge's status.
fn replica_counts(kb: &KafkaBridge) -> (i32, i32) {
    let status = kb.status.clone().unwrap_or_default();
    (status.replicas, status.ready_replicas)
}

/// Replicas as one cluster: the StatefulSet gives every pod its identity (broker id = ordinal
/// from the pod-index label, its own DNS name through the headless Service), every replica
/// joins the membership log, the pods run under a ServiceAccount without token and a
/// PodDisruptionBudget. Scaling 1 -> 3 -> 1 through the scale subresource changes the replica
/// count and nothing else (no pod rolls), the status and Progressing follow the StatefulSet,
/// and Degraded stays False (replicas are no longer independent). An address shared by all
/// pods with more than one replica is reported as Degraded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_on_kube() {
    let Some(cluster) = KubeTestCluster::start().await.unwrap() else {
        return;
    };
    let ns = "replicas";
    let client = setup(&cluster, ns, Duration::from_secs(600)).await;
    let bridges: Api<KafkaBridge> = Api::namespaced(client.clone(), ns);
    let kb = bridges
        .create(
            &PostParams::default(),
            &bridge("orders", "127.0.0.1:1", "Keep", 3),
        )
        .await
        .unwrap();
    let uid = kb.uid().unwrap();
    let sets: Api<StatefulSet> = Api::namespaced(client.clone(), ns);
    let sts = stateful_set(&sets, "orders").await;
    let spec = sts.spec.clone().unwrap();
    assert_eq!(spec.replicas, Some(1));
    assert_eq!(spec.service_name.as_deref(), Some("orders-brokers"));
    assert_eq!(spec.pod_management_policy.as_deref(), Some("Parallel"));
    assert_eq!(
        spec.update_strategy.clone().unwrap().type_.as_deref(),
        Some("RollingUpdate")
    );
    let pod = spec.template.spec.clone().unwrap();
    assert_eq!(pod.service_account_name.as_deref(), Some("orders-proxy"));
    assert_eq!(pod.automount_service_account_token, Some(false));
    assert_eq!(
        pod.termination_grace_period_seconds,
        Some(15),
        "the 10 s membership lease and 5 s to stop"
    );
    let env = pod.containers[0].env.clone().unwrap();
    let field = |name: &str| {
        env.iter()
            .find(|e| e.name == name)
            .and_then(|e| e.value_from.clone()?.field_ref)
            .map(|f| f.field_path)
    };
    let position = |name: &str| env.iter().position(|e| e.name == name).unwrap();
    assert_eq!(
        field("KAFKA_IGGY_BROKER_ID").as_deref(),
        Some("metadata.labels['apps.kubernetes.io/pod-index']")
    );
    assert_eq!(field("POD_NAME").as_deref(), Some("metadata.name"));
    let advertised = &env[position("KAFKA_IGGY_ADVERTISED_ADDRESS")];
    assert_eq!(
        advertised.value.as_deref(),
        Some("$(POD_NAME).orders-brokers.replicas.svc:9092")
    );
    assert!(
        position("POD_NAME") < position("KAFKA_IGGY_ADVERTISED_ADDRESS"),
        "$(POD_NAME) is expanded only from variables defined before"
    );
    let headless = Api::<Service>::namespaced(client.clone(), ns)
        .get("orders-brokers")
        .await
        .unwrap()
        .spec
        .unwrap();
    assert_eq!(headless.cluster_ip.as_deref(), Some("None"));
    assert_eq!(headless.publish_not_ready_addresses, Some(true));
    let configs: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    let config = configs.get("orders-config").await.unwrap();
    let text = &config.data.clone().unwrap()["config.yaml"];
    assert!(text.contains("membership: log"), "{text}");
    assert!(text.contains("advertised_address: null"), "{text}");

    // The proxies' own identity: owned by the bridge, no token (they need no API access).
    let account = Api::<ServiceAccount>::namespaced(client.clone(), ns)
        .get("orders-proxy")
        .await
        .unwrap();
    assert_eq!(account.automount_service_account_token, Some(false));
    assert!(account
        .owner_references()
        .iter()
        .any(|r| r.uid == uid && r.controller == Some(true)));
    let pdb = Api::<PodDisruptionBudget>::namespaced(client.clone(), ns)
        .get("orders")
        .await
        .unwrap()
        .spec
        .unwrap();
    assert_eq!(
        pdb.max_unavailable,
        Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(1))
    );
    assert_eq!(
        pdb.selector.unwrap().match_labels,
        spec.selector.match_labels
    );

    // One replica up: the status follows the StatefulSet.
    fake_rollout(&client, ns, "orders").await;
    status_where(&bridges, "orders", "1/1 ready, rollout complete", |kb| {
        replica_counts(kb) == (1, 1)
            && condition(kb, "Progressing") == Some(("False".into(), "RolloutComplete".into()))
    })
    .await;
    let template = serde_json::to_value(&spec.template).unwrap();
    let config_version = config.metadata.resource_version.clone();

    // 1 -> 3 through the scale subresource, as `kubectl scale` does.
    let scale_to = |n: i32| {
        let b = bridges.clone();
        async move {
            b.patch_scale(
                "orders",
                &PatchParams::default(),
                &Patch::Merge(&json!({"spec": {"replicas": n}})),
            )
            .await
            .unwrap();
        }
    };
    scale_to(3).await;
    eventually("the StatefulSet to ask for 3 pods", || {
        let s = sets.clone();
        async move { (s.get("orders").await.ok()?.spec?.replicas == Some(3)).then_some(()) }
    })
    .await;
    fake_statefulset_status(&client, ns, "orders", 2).await;
    let kb = status_where(&bridges, "orders", "2 of 3 ready, rolling out", |kb| {
        replica_counts(kb) == (2, 2)
            && condition(kb, "Progressing") == Some(("True".into(), "RollingOut".into()))
    })
    .await;
    assert_eq!(condition(&kb, "Ready").unwrap().0, "False");
    fake_statefulset_status(&client, ns, "orders", 3).await;
    let kb = status_where(&bridges, "orders", "3/3 ready, rollout complete", |kb| {
        replica_counts(kb) == (3, 3)
            && condition(kb, "Progressing") == Some(("False".into(), "RolloutComplete".into()))
    })
    .await;
    assert_eq!(
        condition(&kb, "Degraded"),
        Some(("False".into(), "AsExpected".into())),
        "replicas are one cluster now, not independent brokers"
    );
    let scale = bridges.get_scale("orders").await.unwrap();
    assert_eq!(scale.spec.unwrap().replicas, Some(3));
    let scale_status = scale.status.unwrap();
    assert_eq!(scale_status.replicas, 3);
    assert!(scale_status
        .selector
        .unwrap()
        .contains("app.kubernetes.io/instance=orders"));

    // Scaling added pods and changed nothing the running pods depend on: same pod template
    // (a StatefulSet rolls every pod when it changes), same configuration.
    let unchanged = |why: &'static str| {
        let (s, c, template, version) = (
            sets.clone(),
            configs.clone(),
            template.clone(),
            config_version.clone(),
        );
        async move {
            let now = s.get("orders").await.unwrap().spec.unwrap().template;
            assert_eq!(serde_json::to_value(&now).unwrap(), template, "{why}");
            let config = c.get("orders-config").await.unwrap();
            assert_eq!(config.metadata.resource_version, version, "{why}");
        }
    };
    unchanged("scaled up").await;

    // 3 -> 1: the StatefulSet stops the two highest ordinals; until they are gone the bridge
    // is still rolling out.
    scale_to(1).await;
    eventually("the StatefulSet to ask for 1 pod", || {
        let s = sets.clone();
        async move { (s.get("orders").await.ok()?.spec?.replicas == Some(1)).then_some(()) }
    })
    .await;
    let status = json!({"status": {"observedGeneration": sets.get("orders").await.unwrap().metadata.generation,
        "replicas": 3, "updatedReplicas": 3, "readyReplicas": 3, "availableReplicas": 3}});
    sets.patch_status("orders", &PatchParams::default(), &Patch::Merge(&status))
        .await
        .unwrap();
    status_where(&bridges, "orders", "two pods still stopping", |kb| {
        condition(kb, "Progressing") == Some(("True".into(), "RollingOut".into()))
    })
    .await;
    fake_statefulset_status(&client, ns, "orders", 1).await;
    status_where(&bridges, "orders", "back to 1/1", |kb| {
        replica_counts(kb) == (1, 1)
            && condition(kb, "Progressing") == Some(("False".into(), "RolloutComplete".into()))
    })
    .await;
    assert_eq!(
        bridges
            .get_scale("orders")
            .await
            .unwrap()
            .status
            .unwrap()
            .replicas,
        1
    );
    unchanged("scaled down").await;

    // Every pod announcing the bootstrap Service's name works with one replica only.
    let mut legacy = bridge("legacy", "127.0.0.1:1", "Keep", 1);
    legacy.spec.kafka.advertise = kafka_iggy_operator::crd::AdvertiseMode::Service;
    legacy.spec.replicas = 2;
    bridges
        .create(&PostParams::default(), &legacy)
        .await
        .unwrap();
    let kb = status_where(&bridges, "legacy", "Degraded=True", |kb| {
        condition(kb, "Degraded") == Some(("True".into(), "AdvertisedAddressShared".into()))
    })
    .await;
    let message = kb
        .status
        .unwrap()
        .conditions
        .into_iter()
        .find(|c| c.type_ == "Degraded")
        .unwrap()
        .message;
    assert!(message.contains("PodDNS"), "{message}");
    let ours = stateful_set(&sets, "legacy").await;
    assert_eq!(ours.spec.unwrap().replicas, Some(2), "applied as asked");
    bridges
        .patch_scale(
            "legacy",
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"replicas": 1}})),
        )
        .await
        .unwrap();
    status_where(&bridges, "legacy", "Degraded=False at 1 replica", |kb| {
        condition(kb, "Degraded") == Some(("False".into(), "AsExpected".into()))
    })
    .await;
}

/// Upgrading from an operator version that ran the proxies as a Deployment: the operator
/// deletes the Deployment it controls in the foreground and starts the StatefulSet only once
/// the Deployment (and so its pods, which run without membership) is gone, so the two sets of
/// proxies never run at once. A Deployment of the same name it does not control is left alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrade_from_deployment_on_kube() {
    let Some(cluster) = KubeTestCluster::start().await.unwrap() else {
        return;
    };
    let client = cluster.client().await.unwrap();
    install_crd(&client).await;
    let ns = "upgrade";
    namespace_with_secret(&client, ns).await;
    let bridges: Api<KafkaBridge> = Api::namespaced(client.clone(), ns);
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let sets: Api<StatefulSet> = Api::namespaced(client.clone(), ns);
    // What the earlier operator left: its bridges and their Deployments. The second
    // Deployment has the bridge's name but someone else's (no owner).
    let mut uids = Vec::new();
    for name in ["orders", "foreign"] {
        let kb = bridges
            .create(
                &PostParams::default(),
                &bridge(name, "127.0.0.1:1", "Keep", 1),
            )
            .await
            .unwrap();
        uids.push(kb.uid().unwrap());
    }
    let old_deployment = |name: &str, owner: Option<&str>| -> Deployment {
        let labels = json!({"app.kubernetes.io/name": "kafka-iggy-proxy", "app.kubernetes.io/instance": name});
        let owners = owner.map(|uid| {
            json!([{
                "apiVersion": "bridge.kafka-iggy.dev/v1alpha1", "kind": "KafkaBridge",
                "name": name, "uid": uid, "controller": true, "blockOwnerDeletion": true
            }])
        });
        serde_json::from_value(json!({
            "metadata": {"name": name, "labels": labels, "ownerReferences": owners.unwrap_or(json!([]))},
            "spec": {"replicas": 1, "selector": {"matchLabels": labels},
                "template": {"metadata": {"labels": labels},
                    "spec": {"containers": [{"name": "proxy", "image": "ghcr.io/kafka-iggy/kafka-iggy-proxy:0.1.0"}]}}}
        }))
        .unwrap()
    };
    deployments
        .create(
            &PostParams::default(),
            &old_deployment("orders", Some(&uids[0])),
        )
        .await
        .unwrap();
    deployments
        .create(&PostParams::default(), &old_deployment("foreign", None))
        .await
        .unwrap();

    // The new operator starts.
    start_controller(&client, Duration::from_secs(600));
    let deleting = eventually("the old Deployment to be deleted in the foreground", || {
        let d = deployments.clone();
        async move {
            let dep = d.get("orders").await.ok()?;
            dep.metadata.deletion_timestamp.is_some().then_some(dep)
        }
    })
    .await;
    assert!(
        deleting
            .finalizers()
            .contains(&"foregroundDeletion".to_string()),
        "{:?}",
        deleting.finalizers()
    );
    status_where(
        &bridges,
        "orders",
        "Progressing=ReplacingDeployment",
        |kb| condition(kb, "Progressing") == Some(("True".into(), "ReplacingDeployment".into())),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        sets.get_opt("orders").await.unwrap().is_none(),
        "the StatefulSet must wait until the Deployment's pods are gone"
    );
    // The other bridge goes ahead: the Deployment named like it is not its own.
    stateful_set(&sets, "foreign").await;
    let foreign = deployments.get("foreign").await.unwrap();
    assert!(foreign.metadata.deletion_timestamp.is_none());

    // The garbage collector (not run by this API server) removes the pods and ReplicaSets,
    // then the foregroundDeletion finalizer: the Deployment is gone.
    deployments
        .patch(
            "orders",
            &PatchParams::default(),
            &Patch::Merge(&json!({"metadata": {"finalizers": null}})),
        )
        .await
        .unwrap();
    stateful_set(&sets, "orders").await;
    status_where(&bridges, "orders", "Progressing=RollingOut", |kb| {
        condition(kb, "Progressing") == Some(("True".into(), "RollingOut".into()))
    })
    .await;
    let replaced = Api::<k8s_openapi::api::events::v1::Event>::namespaced(client.clone(), ns)
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some("DeploymentReplaced"))
        .count();
    assert_eq!(replaced, 1, "deleted once, then waited");
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
    let sets: Api<StatefulSet> = Api::namespaced(client.clone(), ns);
    eventually("the leader to create the StatefulSet", || {
        let d = sets.clone();
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
    // The new leader acts: a spec change reaches the StatefulSet.
    let scale = json!({"spec": {"replicas": 2}});
    bridges
        .patch_scale(
            "proc-bridge",
            &PatchParams::default(),
            &Patch::Merge(&scale),
        )
        .await
        .unwrap();
    eventually("op-2 to scale the StatefulSet", || {
        let d = sets.clone();
        async move { (d.get("proc-bridge").await.ok()?.spec?.replicas == Some(2)).then_some(()) }
    })
    .await;
    drop(second);
}
