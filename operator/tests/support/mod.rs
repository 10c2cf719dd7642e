//! Shared pieces of the operator tests against a real API server: setup, a bridge builder,
//! condition and event lookups, and a stand-in for the StatefulSet controller.
#![allow(dead_code, reason = "each test binary uses a part of it")]

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use iggy_testkit::kube::KubeTestCluster;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kafka_iggy_operator::crd::KafkaBridge;
use kafka_iggy_operator::desired::CONFIG_HASH_ANNOTATION;
use kafka_iggy_operator::metrics::OperatorMetrics;
use kafka_iggy_operator::reconcile::{self, Context};
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client, CustomResourceExt};
use serde_json::json;

pub const TIMEOUT: Duration = Duration::from_secs(60);

pub async fn eventually<T, F, Fut>(what: &str, mut f: F) -> T
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
pub async fn install_crd(client: &Client) {
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
pub async fn namespace_with_secret(client: &Client, ns: &str) {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let namespace: Namespace = serde_json::from_value(json!({"metadata": {"name": ns}})).unwrap();
    namespaces
        .create(&PostParams::default(), &namespace)
        .await
        .unwrap();
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": "iggy-credentials", "labels": {"kafka-iggy.dev/bridge-access": "true"}},
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
pub async fn setup(cluster: &KubeTestCluster, ns: &str, cleanup_timeout: Duration) -> Client {
    let client = cluster.client().await.unwrap();
    install_crd(&client).await;
    namespace_with_secret(&client, ns).await;
    start_controller(&client, cleanup_timeout);
    client
}

/// The controller, running in this process until the test ends.
pub fn start_controller(client: &Client, cleanup_timeout: Duration) {
    let metrics = Arc::new(OperatorMetrics::new().unwrap());
    let ctx = Arc::new(
        Context::new(client.clone(), metrics, Duration::from_secs(30))
            .with_cleanup_timeout(cleanup_timeout),
    );
    tokio::spawn(reconcile::run(ctx));
}

pub fn bridge(name: &str, iggy: &str, policy: &str, partitions: u32) -> KafkaBridge {
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

/// Writes `status.iggy` as if the bridge had created `orders` on an Iggy server: what makes
/// deletion policy Delete try to clean Iggy (a bridge that created nothing deletes nothing).
pub async fn fake_ownership(bridges: &Api<KafkaBridge>, name: &str) {
    let status = json!({"status": {"iggy": {"serverId": "gone", "createdTopics": ["orders"]}}});
    bridges
        .patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .unwrap();
}

pub fn condition(kb: &KafkaBridge, type_: &str) -> Option<(String, String)> {
    kb.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| (c.status.clone(), c.reason.clone()))
}

/// Writes the StatefulSet status the way the StatefulSet controller would once `ready` of its
/// pods run the current template and are ready (this API server runs no controllers and no
/// kubelet).
pub async fn fake_statefulset_status(client: &Client, ns: &str, name: &str, ready: i32) {
    let sets: Api<StatefulSet> = Api::namespaced(client.clone(), ns);
    let sts = sets.get(name).await.unwrap();
    let status = json!({"status": {
        "observedGeneration": sts.metadata.generation,
        "replicas": ready, "updatedReplicas": ready, "currentReplicas": ready,
        "readyReplicas": ready, "availableReplicas": ready,
        "currentRevision": format!("{name}-1"), "updateRevision": format!("{name}-1")
    }});
    sets.patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .unwrap();
}

/// With policy Delete the operator scales the StatefulSet to 0 before it cleans Iggy: waits
/// for that (the test then reports the pods gone, as the StatefulSet controller would).
pub async fn scaled_to_zero(client: &Client, ns: &str, name: &str) {
    let sets: Api<StatefulSet> = Api::namespaced(client.clone(), ns);
    eventually("the operator to scale the proxies to 0", || {
        let s = sets.clone();
        let name = name.to_string();
        async move { (s.get(&name).await.ok()?.spec?.replicas == Some(0)).then_some(()) }
    })
    .await;
}

/// Deletes a bridge and plays the StatefulSet controller's part (its pods stop when the
/// operator scales them to 0), until the bridge is gone.
pub async fn delete_and_wait(client: &Client, ns: &str, name: &str) {
    let bridges: Api<KafkaBridge> = Api::namespaced(client.clone(), ns);
    bridges.delete(name, &Default::default()).await.unwrap();
    scaled_to_zero(client, ns, name).await;
    fake_statefulset_status(client, ns, name, 0).await;
    eventually(&format!("{name} to be gone"), || {
        let b = bridges.clone();
        let name = name.to_string();
        async move { b.get_opt(&name).await.ok()?.is_none().then_some(()) }
    })
    .await;
}

/// Every pod the StatefulSet asks for is up and ready.
pub async fn fake_rollout(client: &Client, ns: &str, name: &str) {
    let sets: Api<StatefulSet> = Api::namespaced(client.clone(), ns);
    let sts = sets.get(name).await.unwrap();
    let replicas = sts.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    fake_statefulset_status(client, ns, name, replicas).await;
}

pub async fn config_hash(sets: &Api<StatefulSet>, name: &str) -> String {
    let sts = sets.get(name).await.unwrap();
    sts.spec
        .unwrap()
        .template
        .metadata
        .unwrap()
        .annotations
        .unwrap()[CONFIG_HASH_ANNOTATION]
        .clone()
}

/// Warning events about one object (events.k8s.io, as kube's Recorder writes them).
pub async fn warning_events(
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
