//! The operator cannot be turned against its cluster (issue 10): it reads only Secrets that
//! opted in, and it deletes in Iggy only what the bridge created, never while in conflict,
//! with servers compared by identity rather than address spelling. Real kube-apiserver + etcd;
//! the ownership test also a real Iggy server.
#![allow(clippy::unwrap_used, reason = "test code: a panic is a failed test")]

mod support;

use std::sync::{Arc, Mutex};
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use iggy_testkit::kube::KubeTestCluster;
use iggy_testkit::IggyServer;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kafka_iggy_operator::crd::{KafkaBridge, TopicSpec};
use kafka_iggy_operator::metrics::OperatorMetrics;
use kafka_iggy_operator::ownership::{self, IggyOwnership, MARKER_STREAM};
use kafka_iggy_operator::provision::{self, IggyAccess};
use kafka_iggy_operator::reconcile::{self, Context};
use kafka_iggy_operator::secrets::ACCESS_LABEL;
use kube::api::{Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client};
use serde_json::json;
use support::*;

/// (method, path, Accept header) of every request the operator's client sends.
type Log = Arc<Mutex<Vec<(String, String, String)>>>;

/// A tower layer that records each request before passing it on.
struct Record(Log);

impl<S> tower::Layer<S> for Record {
    type Service = Recorded<S>;
    fn layer(&self, inner: S) -> Recorded<S> {
        Recorded {
            inner,
            log: self.0.clone(),
        }
    }
}

#[derive(Clone)]
struct Recorded<S> {
    inner: S,
    log: Log,
}

impl<S, B> tower::Service<http::Request<B>> for Recorded<S>
where
    S: tower::Service<http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let accept = request
            .headers()
            .get(http::header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        self.log.lock().unwrap().push((
            request.method().to_string(),
            request.uri().path().to_string(),
            accept,
        ));
        self.inner.call(request)
    }
}

/// The operator's client, recording every request it makes.
async fn recording_client(cluster: &KubeTestCluster, log: &Log) -> Client {
    let kubeconfig = Kubeconfig::read_from(cluster.kubeconfig_path()).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .unwrap();
    kube::client::ClientBuilder::try_from(config)
        .unwrap()
        .with_layer(&Record(log.clone()))
        .build()
}

async fn create_secret(client: &Client, ns: &str, name: &str, labels: serde_json::Value) {
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": name, "labels": labels},
        "stringData": {"username": "iggy", "password": "iggy"}
    }))
    .unwrap();
    Api::<Secret>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
}

/// The condition's (reason, message) once its reason is `reason`.
async fn reason_of(bridges: &Api<KafkaBridge>, name: &str, reason: &str) -> String {
    eventually(&format!("{name}: IggyProvisioned reason {reason}"), || {
        let b = bridges.clone();
        let (name, reason) = (name.to_string(), reason.to_string());
        async move {
            let kb = b.get(&name).await.ok()?;
            let c = kb
                .status?
                .conditions
                .into_iter()
                .find(|c| c.type_ == "IggyProvisioned" && c.reason == reason)?;
            Some(c.message)
        }
    })
    .await
}

/// A bridge naming a Secret without the opt-in label gets SecretNotOptedIn, and the Secret's
/// data is never fetched: every request the operator made for it (recorded below its client)
/// asked for metadata only. The same operator does fetch a labelled Secret (so the recording
/// would show a read), and picks up the label once it is added.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secret_opt_in_on_kube() {
    let Some(cluster) = KubeTestCluster::start().await.unwrap() else {
        return;
    };
    let ns = "opt-in";
    let admin = cluster.client().await.unwrap();
    install_crd(&admin).await;
    let namespace: Namespace = serde_json::from_value(json!({"metadata": {"name": ns}})).unwrap();
    Api::<Namespace>::all(admin.clone())
        .create(&PostParams::default(), &namespace)
        .await
        .unwrap();
    create_secret(&admin, ns, "someone-elses", json!({})).await;
    create_secret(&admin, ns, "handed-over", json!({ACCESS_LABEL: "true"})).await;

    let log: Log = Arc::default();
    let operator = recording_client(&cluster, &log).await;
    let ctx = Context::new(
        operator,
        Arc::new(OperatorMetrics::new().unwrap()),
        Duration::from_secs(30),
    );
    tokio::spawn(reconcile::run(Arc::new(ctx)));

    let bridges: Api<KafkaBridge> = Api::namespaced(admin.clone(), ns);
    let with_secret = |name: &str, secret: &str| {
        let mut kb = bridge(name, "127.0.0.1:1", "Delete", 1);
        kb.spec.iggy.credentials_secret.name = secret.into();
        kb
    };
    bridges
        .create(
            &PostParams::default(),
            &with_secret("sneaky", "someone-elses"),
        )
        .await
        .unwrap();
    bridges
        .create(
            &PostParams::default(),
            &with_secret("honest", "handed-over"),
        )
        .await
        .unwrap();
    let message = reason_of(&bridges, "sneaky", "SecretNotOptedIn").await;
    assert!(
        message.contains("someone-elses") && message.contains(ACCESS_LABEL),
        "{message}"
    );
    // The labelled Secret is read: the operator tries Iggy with it.
    reason_of(&bridges, "honest", "IggyUnreachable").await;

    let requests = |secret: &str| -> Vec<(String, String)> {
        let path = format!("/api/v1/namespaces/{ns}/secrets/{secret}");
        log.lock()
            .unwrap()
            .iter()
            .filter(|(_, p, _)| *p == path)
            .map(|(m, _, accept)| (m.clone(), accept.clone()))
            .collect()
    };
    let metadata_only = |accept: &str| accept.contains("as=PartialObjectMetadata");
    let sneaky = requests("someone-elses");
    assert!(!sneaky.is_empty(), "the opt-in was never checked");
    assert!(
        sneaky.iter().all(|(m, a)| m == "GET" && metadata_only(a)),
        "the operator fetched a Secret that did not opt in: {sneaky:?}"
    );
    let honest = requests("handed-over");
    assert!(
        honest.iter().any(|(_, a)| !metadata_only(a)),
        "the recording sees full reads: {honest:?}"
    );
    // No request ever lists Secrets (a list would return every Secret's data).
    let listed: Vec<_> = log
        .lock()
        .unwrap()
        .iter()
        .filter(|(_, p, _)| p.ends_with("/secrets"))
        .cloned()
        .collect();
    assert!(listed.is_empty(), "{listed:?}");

    // Opting in later is picked up.
    let label = json!({"metadata": {"labels": {ACCESS_LABEL: "true"}}});
    Api::<Secret>::namespaced(admin.clone(), ns)
        .patch(
            "someone-elses",
            &PatchParams::default(),
            &Patch::Merge(&label),
        )
        .await
        .unwrap();
    reason_of(&bridges, "sneaky", "IggyUnreachable").await;

    // Policy Delete, but the bridge never provisioned anything: it owns nothing, so its
    // deletion does not wait for the unreachable Iggy (the cleanup timeout here is 10 min).
    delete_and_wait(&admin, ns, "sneaky").await;
    assert!(events(&admin, ns, "sneaky", "CleanupSkipped").await > 0);
}

/// How many events with `reason` were recorded about the object `name`.
async fn events(client: &Client, ns: &str, name: &str, reason: &str) -> usize {
    Api::<k8s_openapi::api::events::v1::Event>::namespaced(client.clone(), ns)
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .iter()
        .filter(|e| {
            e.reason.as_deref() == Some(reason)
                && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name)
        })
        .count()
}

fn topic(name: &str) -> TopicSpec {
    TopicSpec {
        name: name.into(),
        partitions: 1,
        message_expiry_ms: None,
        max_size_bytes: None,
    }
}

/// Deletion policy Delete on real Iggy removes only what the bridge created; a second bridge
/// naming the same server by another spelling (localhost vs 127.0.0.1) and the same stream is
/// in conflict, is told so, and its deletion removes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ownership_on_kube_on_iggy() {
    let Some(server) = IggyServer::from_env().await else {
        return;
    };
    let Some(cluster) = KubeTestCluster::start().await.unwrap() else {
        return;
    };
    let ns = "ownership";
    let client = setup(&cluster, ns, Duration::from_secs(600)).await;
    let bridges: Api<KafkaBridge> = Api::namespaced(client.clone(), ns);
    let address = server.address().to_string();
    let (host, port) = address.rsplit_once(':').unwrap();
    let other_spelling = if host == "localhost" {
        format!("127.0.0.1:{port}")
    } else {
        format!("localhost:{port}")
    };
    let access = IggyAccess {
        address: address.clone(),
        username: server.username().into(),
        password: server.password().into(),
        stream: "shared".into(),
        tls: Default::default(),
    };
    // Someone else's stream and topics, before any bridge: `legacy` is also in the owner's
    // spec, `bystander` is not.
    provision::provision(&access, &[topic("legacy"), topic("bystander")])
        .await
        .unwrap();

    let mut owner = bridge("a-owner", &address, "Delete", 1);
    owner.spec.iggy.stream = "shared".into();
    owner.spec.topics = vec![topic("orders"), topic("legacy")];
    bridges
        .create(&PostParams::default(), &owner)
        .await
        .unwrap();
    let owned = eventually("the owner to record what it created", || {
        let b = bridges.clone();
        async move {
            let kb = b.get("a-owner").await.ok()?;
            (condition(&kb, "IggyProvisioned")?.0 == "True").then_some(())?;
            kb.status?.iggy
        }
    })
    .await;
    assert_eq!(owned.created_topics, ["orders"], "legacy existed before");
    assert!(!owned.created_stream, "the stream existed before");
    let server_id = owned.server_id.clone().unwrap();

    // The same server and stream under another spelling: a conflict, nothing provisioned.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let mut copycat = bridge("b-copycat", &other_spelling, "Delete", 1);
    copycat.spec.iggy.stream = "shared".into();
    copycat.spec.topics = vec![topic("orders"), topic("copycat-only")];
    bridges
        .create(&PostParams::default(), &copycat)
        .await
        .unwrap();
    let message = reason_of(&bridges, "b-copycat", "TopicConflict").await;
    assert!(message.contains("a-owner"), "{message}");
    let kb = bridges.get("b-copycat").await.unwrap();
    let recorded = kb.status.unwrap().iggy.unwrap_or_default();
    assert!(recorded.created_topics.is_empty(), "{recorded:?}");
    if let Some(id) = &recorded.server_id {
        assert_eq!(
            *id, server_id,
            "one server, one identity, whatever the spelling"
        );
    }
    assert_eq!(
        provision::partitions(&access, "copycat-only")
            .await
            .unwrap(),
        None
    );

    // Deleting the bridge in conflict removes nothing.
    delete_and_wait(&client, ns, "b-copycat").await;
    assert!(events(&client, ns, "b-copycat", "CleanupSkipped").await > 0);
    for t in ["orders", "legacy", "bystander"] {
        assert!(
            provision::partitions(&access, t).await.unwrap().is_some(),
            "{t} deleted by a bridge in conflict"
        );
    }

    // Deleting the owner removes what it created, and only that.
    delete_and_wait(&client, ns, "a-owner").await;
    assert_eq!(
        provision::partitions(&access, "orders").await.unwrap(),
        None
    );
    for t in ["legacy", "bystander"] {
        assert!(
            provision::partitions(&access, t).await.unwrap().is_some(),
            "{t}, created by someone else, was deleted"
        );
    }
    // The identity marker stays on the server for the next bridge.
    let marker = IggyAccess {
        stream: MARKER_STREAM.into(),
        ..access.clone()
    };
    let id_topic = format!("server-id-{server_id}");
    assert!(provision::partitions(&marker, &id_topic)
        .await
        .unwrap()
        .is_some());
    drop(cluster);
}

/// The identity marker on real Iggy: the same identity on every look, under every spelling,
/// also once a racing operator added a second marker; a cleanup refuses a server whose
/// identity is not the recorded one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_identity_on_iggy() {
    let Some(server) = IggyServer::from_env().await else {
        return;
    };
    let access = IggyAccess {
        address: server.address().to_string(),
        username: server.username().into(),
        password: server.password().into(),
        stream: "identity".into(),
        tls: Default::default(),
    };
    let first = ownership::probe(&access).await.unwrap();
    assert!(!first.stream_exists);
    let port = access.address.rsplit_once(':').unwrap().1;
    let other_spelling = IggyAccess {
        address: format!("localhost:{port}"),
        ..access.clone()
    };
    assert_eq!(ownership::probe(&other_spelling).await.unwrap(), first);
    // A second marker (as a racing operator would leave): the first one still wins.
    let marker = IggyAccess {
        stream: MARKER_STREAM.into(),
        ..access.clone()
    };
    provision::provision(&marker, &[topic("server-id-0000000000000000")])
        .await
        .unwrap();
    assert_eq!(
        ownership::probe(&access).await.unwrap().server_id,
        first.server_id
    );

    // A record from another server deletes nothing here.
    provision::provision(&access, &[topic("kept")])
        .await
        .unwrap();
    let elsewhere = IggyOwnership {
        server_id: Some("another-server".into()),
        created_stream: true,
        created_topics: vec!["kept".into()],
    };
    let refused = ownership::delete_owned(&access, &elsewhere).await;
    assert!(
        format!("{refused:?}").contains("nothing deleted"),
        "{refused:?}"
    );
    assert!(provision::partitions(&access, "kept")
        .await
        .unwrap()
        .is_some());
}
