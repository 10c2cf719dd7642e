//! The reconciler: applies [`crate::desired`] with server-side apply (one field manager),
//! provisions Iggy, and reports status conditions. Errors back off exponentially per object;
//! every object is resynced periodically.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::{
    ApiResource, DeleteParams, DynamicObject, GroupVersionKind, Patch, PatchParams,
    PropagationPolicy,
};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::{watcher, Controller};
use kube::{Api, Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::json;

use crate::conditions::Conditions;
use crate::crd::{DeletionPolicy, KafkaBridge, KafkaBridgeStatus};
use crate::desired::{desired, Desired};
use crate::metrics::OperatorMetrics;
use crate::ownership::IggyOwnership;
use crate::provision::ProvisionError;
use crate::secrets::ca_file_path;

pub const FIELD_MANAGER: &str = "kafka-iggy-operator";
pub const FINALIZER: &str = "bridge.kafka-iggy.dev/iggy-cleanup";
/// Set to "true" on a KafkaBridge being deleted with policy Delete to give up on cleaning Iggy
/// (e.g. Iggy is gone for good), so the namespace never hangs on the finalizer.
pub const SKIP_CLEANUP_ANNOTATION: &str = "bridge.kafka-iggy.dev/skip-iggy-cleanup";
const SERVICE_MONITOR_CRD: &str = "servicemonitors.monitoring.coreos.com";
/// How long a KafkaBridge with policy Delete may wait for its Iggy cleanup before the operator
/// gives up and releases it, so a namespace deletion never hangs (e.g. its Secret went first).
pub const DEFAULT_CLEANUP_TIMEOUT: Duration = Duration::from_secs(600);

pub struct Context {
    pub client: Client,
    pub metrics: Arc<OperatorMetrics>,
    pub recorder: Recorder,
    pub resync: Duration,
    /// Deletion with policy Delete: give up cleaning Iggy this long after deletionTimestamp.
    pub cleanup_timeout: Duration,
    /// Watch KafkaBridges (and their children) in this namespace only: the chart's
    /// namespace-scoped install mode, where the operator has a Role, not a ClusterRole.
    pub namespace: Option<String>,
    /// Consecutive failures per object (namespace/name), for exponential backoff.
    failures: Mutex<HashMap<String, u32>>,
    /// The conditions last written per object (uid). The informer's copy of the status can lag
    /// behind our own write, and events are published on condition transitions only: without
    /// this, a reconcile racing its own status update would repeat them.
    reported: Mutex<HashMap<String, Vec<Condition>>>,
    /// The ownership record last written per object (uid), for the same reason: a reconcile
    /// working from a status older than our last write must not forget a topic it created.
    owned: Mutex<HashMap<String, IggyOwnership>>,
}

impl Context {
    pub fn new(client: Client, metrics: Arc<OperatorMetrics>, resync: Duration) -> Self {
        let reporter = Reporter {
            controller: FIELD_MANAGER.into(),
            instance: std::env::var("POD_NAME").ok(),
        };
        Self {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            metrics,
            resync,
            cleanup_timeout: DEFAULT_CLEANUP_TIMEOUT,
            namespace: None,
            failures: Mutex::new(HashMap::new()),
            reported: Mutex::new(HashMap::new()),
            owned: Mutex::new(HashMap::new()),
        }
    }

    /// See [`Context::namespace`].
    pub fn with_namespace(mut self, namespace: Option<String>) -> Self {
        self.namespace = namespace;
        self
    }

    /// KafkaBridges (or any namespaced kind) in the operator's scope.
    fn scoped<K>(&self) -> Api<K>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        K::DynamicType: Default,
    {
        match &self.namespace {
            Some(ns) => Api::namespaced(self.client.clone(), ns),
            None => Api::all(self.client.clone()),
        }
    }

    /// See [`Context::cleanup_timeout`].
    pub fn with_cleanup_timeout(mut self, timeout: Duration) -> Self {
        self.cleanup_timeout = timeout;
        self
    }

    /// What the bridge owns in Iggy: its status merged with what this process last wrote.
    fn ownership(&self, kb: &KafkaBridge) -> Option<IggyOwnership> {
        let written = kb.uid().and_then(|uid| {
            let owned = self.owned.lock().unwrap_or_else(|p| p.into_inner());
            owned.get(&uid).cloned()
        });
        let status = kb.status.as_ref().and_then(|s| s.iggy.clone());
        match (written, status) {
            (Some(w), Some(s)) => Some(w.merge(s)),
            (w, s) => w.or(s),
        }
    }

    fn previous_conditions(&self, kb: &KafkaBridge) -> Vec<Condition> {
        let reported = self.reported.lock().unwrap_or_else(|p| p.into_inner());
        kb.uid()
            .and_then(|uid| reported.get(&uid).cloned())
            .or_else(|| kb.status.as_ref().map(|s| s.conditions.clone()))
            .unwrap_or_default()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("{0}")]
    Desired(#[from] crate::desired::DesiredError),
    #[error("{0}")]
    Provision(#[from] ProvisionError),
    #[error("Iggy credentials: {0}")]
    Credentials(String),
    #[error("{0}")]
    Invalid(String),
    #[error("waiting for the proxies to stop before cleaning Iggy: {0}")]
    Stopping(String),
}

impl Error {
    fn reason(&self) -> &'static str {
        match self {
            Error::Kube(_) => "KubernetesApi",
            Error::Desired(_) => "InvalidSpec",
            Error::Provision(_) => "IggyUnavailable",
            Error::Credentials(_) => "CredentialsUnavailable",
            Error::Invalid(_) => "InvalidSpec",
            Error::Stopping(_) => "ProxiesStopping",
        }
    }
}

fn key(kb: &KafkaBridge) -> String {
    format!("{}/{}", kb.namespace().unwrap_or_default(), kb.name_any())
}

/// Runs the controller until the stream ends (the process is shutting down).
pub async fn run(ctx: Arc<Context>) {
    let bridges: Api<KafkaBridge> = ctx.scoped();
    // Children only: never cache every StatefulSet, ConfigMap and Service of the cluster.
    let children = || watcher::Config::default().labels(crate::desired::MANAGED_BY_SELECTOR);
    Controller::new(bridges, watcher::Config::default())
        .owns(ctx.scoped::<StatefulSet>(), children())
        .owns(ctx.scoped::<ConfigMap>(), children())
        .owns(ctx.scoped::<Service>(), children())
        .shutdown_on_signal()
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::debug!(error = %e, "reconcile loop");
            }
        })
        .await;
}

pub async fn reconcile(kb: Arc<KafkaBridge>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = Instant::now();
    let result = reconcile_inner(&kb, &ctx).await;
    let outcome = if result.is_ok() { "ok" } else { "error" };
    ctx.metrics.reconciles.with_label_values(&[outcome]).inc();
    ctx.metrics
        .reconcile_seconds
        .observe(started.elapsed().as_secs_f64());
    if result.is_ok() {
        ctx.failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&key(&kb));
    }
    result
}

/// Exponential backoff per object: 1 s, 2 s, 4 s … up to 5 minutes.
pub fn error_policy(kb: Arc<KafkaBridge>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics
        .reconcile_errors
        .with_label_values(&[error.reason()])
        .inc();
    let mut failures = ctx.failures.lock().unwrap_or_else(|p| p.into_inner());
    let n = failures.entry(key(&kb)).or_insert(0);
    *n = n.saturating_add(1);
    let delay = Duration::from_secs(1u64 << (*n - 1).min(8)).min(Duration::from_secs(300));
    tracing::warn!(bridge = %key(&kb), error = %error, retry_in = ?delay, "reconcile failed");
    Action::requeue(delay)
}

/// Server-side apply of one namespaced child under the operator's field manager.
async fn apply<K>(client: &Client, ns: &str, object: &K) -> Result<K, kube::Error>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + Serialize
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    Api::<K>::namespaced(client.clone(), ns)
        .patch(
            &object.name_any(),
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(object),
        )
        .await
}

async fn reconcile_inner(kb: &KafkaBridge, ctx: &Context) -> Result<Action, Error> {
    let ns = kb
        .namespace()
        .ok_or_else(|| Error::Invalid("not namespaced".into()))?;
    let name = kb.name_any();
    let bridges: Api<KafkaBridge> = Api::namespaced(ctx.client.clone(), &ns);

    if kb.meta().deletion_timestamp.is_some() {
        if let Some(uid) = kb.uid() {
            ctx.reported
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&uid);
        }
        let result = finalize(kb, ctx, &bridges).await;
        // Every use writes the CA copy afresh, so a retried cleanup still finds it.
        let _ = std::fs::remove_file(ca_file_path(&ns, &name));
        return result;
    }
    ensure_finalizer(kb, &bridges).await?;

    let mut conditions = Conditions::new(kb, ctx.previous_conditions(kb));
    let d = desired(kb)?;
    if let Some(problem) = &d.problem {
        conditions.set("Degraded", true, "AdvertisedAddressShared", problem);
    }
    let replacing = retire_deployment(kb, ctx, &ns).await?;
    apply_children(kb, ctx, &ns, &d, replacing.is_none(), &mut conditions).await?;
    let owned = iggy::provision_iggy(kb, ctx, &mut conditions).await;

    let stateful_set: Option<StatefulSet> = Api::<StatefulSet>::namespaced(ctx.client.clone(), &ns)
        .get_opt(&name)
        .await?;
    let (ready, rollout) = match &replacing {
        Some(waiting) => (false, waiting.clone()),
        None => rollout_state(kb, stateful_set.as_ref()),
    };
    conditions.set(
        "Progressing",
        !ready,
        match (ready, &replacing) {
            (true, _) => "RolloutComplete",
            (false, Some(_)) => "ReplacingDeployment",
            (false, None) => "RollingOut",
        },
        &rollout,
    );
    let provisioned = conditions.is_true("IggyProvisioned");
    let ready_now = ready && provisioned;
    let why = if !provisioned {
        "Iggy is not provisioned (see IggyProvisioned)".to_string()
    } else {
        rollout.clone()
    };
    conditions.set(
        "Ready",
        ready_now,
        if ready_now { "Ready" } else { "NotReady" },
        &why,
    );
    if !conditions.is_set("Degraded") {
        conditions.set("Degraded", false, "AsExpected", "no problems found");
    }
    write_status(
        kb,
        ctx,
        &bridges,
        conditions,
        stateful_set.as_ref(),
        Some(&d),
        owned,
    )
    .await?;
    Ok(Action::requeue(if ready_now {
        ctx.resync
    } else if replacing.is_some() {
        // Deployments are not watched: look again soon for the old pods to be gone.
        Duration::from_secs(2)
    } else {
        Duration::from_secs(10)
    }))
}

/// Earlier operator versions ran the proxies as a Deployment of the same name. Its pods run
/// without membership (each believes it is the only broker), so they must be gone before the
/// StatefulSet's pods start: the Deployment is deleted in the foreground (it stays, with a
/// deletionTimestamp, until the garbage collector has removed its pods) and the StatefulSet is
/// applied only once it is gone. Returns why the StatefulSet waits, while it does. A Deployment
/// of that name that this bridge does not control is left alone.
async fn retire_deployment(
    kb: &KafkaBridge,
    ctx: &Context,
    ns: &str,
) -> Result<Option<String>, Error> {
    let api = Api::<Deployment>::namespaced(ctx.client.clone(), ns);
    let name = crate::desired::Names::of(&kb.name_any()).workload;
    let Some(old) = api.get_opt(&name).await? else {
        return Ok(None);
    };
    let ours = old
        .owner_references()
        .iter()
        .any(|r| r.controller == Some(true) && Some(&r.uid) == kb.uid().as_ref());
    if !ours {
        return Ok(None);
    }
    if old.meta().deletion_timestamp.is_none() {
        let foreground = DeleteParams {
            propagation_policy: Some(PropagationPolicy::Foreground),
            ..DeleteParams::default()
        };
        match api.delete(&name, &foreground).await {
            Ok(_) => {
                publish(
                    ctx,
                    kb,
                    EventType::Normal,
                    "DeploymentReplaced",
                    &format!(
                        "deleting Deployment {name} of an earlier operator version; the \
                         StatefulSet starts once its pods are gone"
                    ),
                )
                .await
            }
            Err(kube::Error::Api(e)) if e.code == 404 => return Ok(None),
            Err(e) => return Err(e.into()),
        }
    }
    Ok(Some(format!(
        "waiting for the pods of Deployment {name} (earlier operator version) to stop before \
         starting the StatefulSet"
    )))
}

/// Applies every child; the StatefulSet only when `workload` (not while an old Deployment's
/// pods are still stopping).
async fn apply_children(
    kb: &KafkaBridge,
    ctx: &Context,
    ns: &str,
    d: &Desired,
    workload: bool,
    conditions: &mut Conditions,
) -> Result<(), Error> {
    let c = &ctx.client;
    let previous_hash = Api::<StatefulSet>::namespaced(c.clone(), ns)
        .get_opt(&kb.name_any())
        .await?
        .and_then(|sts| {
            sts.spec?
                .template
                .metadata?
                .annotations?
                .get(crate::desired::CONFIG_HASH_ANNOTATION)
                .cloned()
        });
    apply(c, ns, &d.config_map).await?;
    apply(c, ns, &d.service_account).await?;
    apply(c, ns, &d.bootstrap_service).await?;
    apply(c, ns, &d.headless_service).await?;
    apply(c, ns, &d.pod_disruption_budget).await?;
    if !workload {
        return apply_service_monitor(kb, ctx, ns, d, conditions).await;
    }
    apply(c, ns, &d.stateful_set).await?;
    if let Some(previous) = previous_hash.filter(|h| *h != d.config_hash) {
        publish(
            ctx,
            kb,
            EventType::Normal,
            "ConfigChanged",
            &format!(
                "proxy configuration changed ({} -> {}); pods roll",
                &previous[..12.min(previous.len())],
                &d.config_hash[..12]
            ),
        )
        .await;
    }
    apply_service_monitor(kb, ctx, ns, d, conditions).await
}

/// Applies the ServiceMonitor when asked for and its CRD exists; removes ours when it is no
/// longer asked for (server-side apply alone never deletes an object).
async fn apply_service_monitor(
    kb: &KafkaBridge,
    ctx: &Context,
    ns: &str,
    d: &Desired,
    conditions: &mut Conditions,
) -> Result<(), Error> {
    let c = &ctx.client;
    let crd_installed = Api::<CustomResourceDefinition>::all(c.clone())
        .get_opt(SERVICE_MONITOR_CRD)
        .await?
        .is_some();
    let gvk = GroupVersionKind::gvk("monitoring.coreos.com", "v1", "ServiceMonitor");
    let api: Api<DynamicObject> = Api::namespaced_with(c.clone(), ns, &ApiResource::from_gvk(&gvk));
    match (&d.service_monitor, crd_installed) {
        (Some(sm), true) => {
            let object: DynamicObject =
                serde_json::from_value(sm.clone()).map_err(|e| Error::Invalid(e.to_string()))?;
            api.patch(
                &object.name_any(),
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&object),
            )
            .await?;
        }
        (Some(_), false) => conditions.set(
            "Degraded",
            true,
            "ServiceMonitorCrdMissing",
            "metrics.serviceMonitor.enabled but the monitoring.coreos.com CRD is not installed",
        ),
        (None, true) => {
            let name = crate::desired::Names::of(&kb.name_any()).bootstrap_service;
            let ours = api.get_opt(&name).await?.is_some_and(|sm| {
                sm.owner_references()
                    .iter()
                    .any(|r| Some(&r.uid) == kb.uid().as_ref())
            });
            if ours {
                match api.delete(&name, &Default::default()).await {
                    Ok(_) => {
                        publish(
                            ctx,
                            kb,
                            EventType::Normal,
                            "ServiceMonitorDeleted",
                            "metrics.serviceMonitor disabled",
                        )
                        .await
                    }
                    // Not fatal: the rest of the bridge is fine; the operator's RBAC lacks delete.
                    Err(e) => {
                        tracing::warn!(error = %e, sm = %name, "cannot delete ServiceMonitor")
                    }
                }
            }
        }
        (None, false) => {}
    }
    Ok(())
}

async fn ensure_finalizer(kb: &KafkaBridge, bridges: &Api<KafkaBridge>) -> Result<(), Error> {
    let has = kb.finalizers().iter().any(|f| f == FINALIZER);
    let wants = kb.spec.deletion_policy == DeletionPolicy::Delete;
    if has == wants {
        return Ok(());
    }
    let finalizers: Vec<String> = kb
        .finalizers()
        .iter()
        .filter(|f| *f != FINALIZER)
        .cloned()
        .chain(wants.then(|| FINALIZER.to_string()))
        .collect();
    set_finalizers(bridges, kb, finalizers).await
}

/// Replaces the finalizer list, guarded by the resourceVersion it was computed from: a merge
/// patch replaces lists whole, so without the guard a finalizer another controller added
/// meanwhile would be dropped. On a conflict the reconcile fails and runs again on fresh data.
async fn set_finalizers(
    bridges: &Api<KafkaBridge>,
    kb: &KafkaBridge,
    finalizers: Vec<String>,
) -> Result<(), Error> {
    let patch = json!({"metadata": {
        "finalizers": finalizers,
        "resourceVersion": kb.resource_version(),
    }});
    bridges
        .patch(
            &kb.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await?;
    Ok(())
}

/// Deletion: with policy Delete, stop the proxies (a running replica would create its
/// membership log again, and clients could auto-create topics), remove the provisioned topics and
/// the membership log, then the finalizer. When the cleanup fails (proxies still stopping, Iggy
/// unreachable, credentials gone), retry with backoff until the skip
/// annotation is set or `cleanup_timeout` has passed since the deletion was requested; then
/// release the resource and leave the topics in Iggy, with a Warning event saying so.
async fn finalize(
    kb: &KafkaBridge,
    ctx: &Context,
    bridges: &Api<KafkaBridge>,
) -> Result<Action, Error> {
    if !kb.finalizers().iter().any(|f| f == FINALIZER) {
        return Ok(Action::await_change());
    }
    let skip = kb
        .annotations()
        .get(SKIP_CLEANUP_ANNOTATION)
        .map(String::as_str)
        == Some("true");
    if skip {
        publish(
            ctx,
            kb,
            EventType::Warning,
            "CleanupSkipped",
            &format!("Iggy topics left in place ({SKIP_CLEANUP_ANNOTATION}=true)"),
        )
        .await;
    } else {
        let cleaned = async {
            proxies_stopped(kb, ctx).await?;
            iggy::delete_iggy_topics(kb, ctx).await
        };
        match cleaned.await {
            Ok(Some(deleted)) => {
                publish(
                    ctx,
                    kb,
                    EventType::Normal,
                    "TopicsDeleted",
                    &format!(
                        "deleted the {} Iggy topic(s) this bridge created ({}) and the \
                         membership log",
                        deleted.len(),
                        deleted.join(", ")
                    ),
                )
                .await;
            }
            Ok(None) => {}
            Err(e) => {
                let waited = since_deletion(kb);
                if waited < ctx.cleanup_timeout {
                    if let Error::Stopping(why) = &e {
                        // Expected for a few seconds (their graceful shutdown), no failure.
                        tracing::info!(bridge = %key(kb), %why, "waiting for the proxies to stop");
                        return Ok(Action::requeue(Duration::from_secs(2)));
                    }
                    let left = ctx.cleanup_timeout - waited;
                    publish(
                        ctx,
                        kb,
                        EventType::Warning,
                        "CleanupFailed",
                        &format!(
                            "{e}; retrying for up to {}s more, or annotate with \
                             {SKIP_CLEANUP_ANNOTATION}=true to delete without cleaning Iggy",
                            left.as_secs()
                        ),
                    )
                    .await;
                    return Err(e);
                }
                publish(
                    ctx,
                    kb,
                    EventType::Warning,
                    "CleanupAbandoned",
                    &format!(
                        "gave up cleaning Iggy after {}s: {e}; the topics are left in place",
                        waited.as_secs()
                    ),
                )
                .await;
            }
        }
    }
    let rest: Vec<String> = kb
        .finalizers()
        .iter()
        .filter(|f| *f != FINALIZER)
        .cloned()
        .collect();
    set_finalizers(bridges, kb, rest).await?;
    if let Some(uid) = kb.uid() {
        ctx.owned
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&uid);
    }
    Ok(Action::await_change())
}

/// Scales the bridge's StatefulSet to zero; `Ok` once the StatefulSet controller reports that
/// no pod of it is left (or there is no StatefulSet).
async fn proxies_stopped(kb: &KafkaBridge, ctx: &Context) -> Result<(), Error> {
    let ns = kb.namespace().unwrap_or_default();
    let api = Api::<StatefulSet>::namespaced(ctx.client.clone(), &ns);
    let Some(sts) = api.get_opt(&kb.name_any()).await? else {
        return Ok(());
    };
    if sts.spec.as_ref().and_then(|s| s.replicas) != Some(0) {
        let mut stopped = desired(kb)?.stateful_set;
        if let Some(spec) = stopped.spec.as_mut() {
            spec.replicas = Some(0);
        }
        apply(&ctx.client, &ns, &stopped).await?;
        return Err(Error::Stopping("scaled the proxies to 0".into()));
    }
    let status = sts.status.unwrap_or_default();
    let seen = status.observed_generation.unwrap_or(0) >= sts.metadata.generation.unwrap_or(0);
    if seen && status.replicas == 0 {
        return Ok(());
    }
    Err(Error::Stopping(format!(
        "{} proxy pod(s) still running",
        status.replicas
    )))
}

/// Time since the API server set deletionTimestamp (zero if unset or in the future).
fn since_deletion(kb: &KafkaBridge) -> Duration {
    let Some(deleted) = &kb.meta().deletion_timestamp else {
        return Duration::ZERO;
    };
    let ms = k8s_openapi::jiff::Timestamp::now().as_millisecond() - deleted.0.as_millisecond();
    Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

/// Ready when the StatefulSet has caught up with the spec: it has seen the latest generation,
/// every replica runs the current template (`updatedReplicas`) and is ready, and no pod beyond
/// `spec.replicas` is left (a scale-down still stopping).
pub fn rollout_state(kb: &KafkaBridge, stateful_set: Option<&StatefulSet>) -> (bool, String) {
    let Some(sts) = stateful_set else {
        return (false, "StatefulSet not created yet".into());
    };
    let want = kb.spec.replicas;
    let generation = sts.metadata.generation.unwrap_or(0);
    let status = sts.status.clone().unwrap_or_default();
    if status.observed_generation.unwrap_or(0) < generation {
        return (
            false,
            "StatefulSet controller has not seen the latest spec".into(),
        );
    }
    let updated = status.updated_replicas.unwrap_or(0);
    let ready = status.ready_replicas.unwrap_or(0);
    let total = status.replicas;
    if updated < want || ready < want || total > want {
        return (
            false,
            format!("{updated}/{want} updated, {ready}/{want} ready, {total} total"),
        );
    }
    (true, format!("{ready}/{want} replicas ready"))
}

async fn write_status(
    kb: &KafkaBridge,
    ctx: &Context,
    bridges: &Api<KafkaBridge>,
    conditions: Conditions,
    stateful_set: Option<&StatefulSet>,
    d: Option<&Desired>,
    owned: Option<IggyOwnership>,
) -> Result<(), Error> {
    for (type_, reason, message) in conditions.transitions() {
        publish(ctx, kb, type_, &reason, &message).await;
    }
    let sts_status = stateful_set
        .and_then(|sts| sts.status.clone())
        .unwrap_or_default();
    let conditions = conditions.into_vec();
    let written = conditions.clone();
    let status = KafkaBridgeStatus {
        observed_generation: kb.meta().generation,
        replicas: sts_status.replicas,
        ready_replicas: sts_status.ready_replicas.unwrap_or(0),
        selector: d.map(|d| d.selector.clone()),
        bootstrap_address: d.map(|d| d.bootstrap_address.clone()),
        listeners: d.map(|d| d.listeners.clone()).unwrap_or_default(),
        iggy: owned.clone().or_else(|| ctx.ownership(kb)),
        conditions,
    };
    let mut patch = json!({"status": status});
    if status_listeners_removed(kb, &patch) {
        // A merge patch keeps a field it does not mention: clear the list explicitly.
        patch["status"]["listeners"] = serde_json::Value::Null;
    }
    bridges
        .patch_status(
            &kb.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await?;
    if let Some(uid) = kb.uid() {
        ctx.reported
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(uid.clone(), written);
        if let Some(owned) = owned {
            ctx.owned
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(uid, owned);
        }
    }
    Ok(())
}

fn status_listeners_removed(kb: &KafkaBridge, patch: &serde_json::Value) -> bool {
    patch["status"].get("listeners").is_none()
        && kb.status.as_ref().is_some_and(|s| !s.listeners.is_empty())
}

async fn publish(ctx: &Context, kb: &KafkaBridge, type_: EventType, reason: &str, note: &str) {
    let event = Event {
        type_,
        reason: reason.into(),
        note: Some(note.chars().take(1000).collect()),
        action: "Reconcile".into(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&event, &kb.object_ref(&())).await {
        tracing::debug!(error = %e, "cannot publish event");
    }
}

mod iggy;
#[cfg(test)]
mod tests;
