//! The operator against a real Kubernetes API server (etcd + kube-apiserver started by
//! `iggy_testkit::kube`, built by tools/k8s/build.sh): children, status, scale, deletion,
//! leader election and the operator process. No pods run: where readiness matters the test
//! writes the Deployment status as the Deployment controller would. Provisioning on real
//! Iggy is in provisioning.rs.
#![allow(clippy::unwrap_used, reason = "test code: a panic is a failed test")]

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use iggy_testkit::kube::KubeTestCluster;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Service};
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
