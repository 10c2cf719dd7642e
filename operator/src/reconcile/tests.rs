#![allow(clippy::unwrap_used, reason = "test code: a panic is a failed test")]

use k8s_openapi::api::apps::v1::StatefulSetStatus;

use super::*;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

fn bridge(replicas: i32) -> KafkaBridge {
    let mut kb: KafkaBridge =
        serde_yaml::from_str(include_str!("../../tests/golden/minimal.input.yaml")).unwrap();
    kb.spec.replicas = replicas;
    kb.metadata.generation = Some(4);
    kb
}

/// One reconcile's verdict: Iggy provisioned or not (with the reason), rollout done or not.
fn verdict(
    kb: &KafkaBridge,
    previous: Vec<Condition>,
    iggy: Option<&str>,
    ready: bool,
) -> Conditions {
    let mut c = Conditions::new(kb, previous);
    match iggy {
        None => c.set("IggyProvisioned", true, "Provisioned", "ok"),
        Some(reason) => c.set("IggyProvisioned", false, reason, "details"),
    }
    c.set(
        "Progressing",
        !ready,
        if ready {
            "RolloutComplete"
        } else {
            "RollingOut"
        },
        "",
    );
    let ready = ready && iggy.is_none();
    c.set("Ready", ready, if ready { "Ready" } else { "NotReady" }, "");
    c.set("Degraded", false, "AsExpected", "");
    c
}

fn reasons(c: &Conditions) -> Vec<(String, String)> {
    c.transitions()
        .into_iter()
        .map(|(t, reason, _)| (format!("{t:?}"), reason))
        .collect()
}

#[test]
fn events_only_on_transitions() {
    let kb = bridge(1);
    let first = verdict(&kb, vec![], Some("IggyUnreachable"), false);
    assert_eq!(
        reasons(&first),
        [("Warning".to_string(), "IggyUnreachable".to_string())],
        "a new bridge: only the problem is news"
    );
    let same = verdict(&kb, first.into_vec(), Some("IggyUnreachable"), false);
    assert!(
        reasons(&same).is_empty(),
        "nothing changed, nothing published"
    );
    let other = verdict(&kb, same.into_vec(), Some("TopicConflict"), false);
    assert_eq!(
        reasons(&other),
        [("Warning".to_string(), "TopicConflict".to_string())]
    );
    let healed = verdict(&kb, other.into_vec(), None, true);
    assert_eq!(
        reasons(&healed),
        [
            ("Normal".to_string(), "Provisioned".to_string()),
            ("Normal".to_string(), "Ready".to_string())
        ]
    );
    let lost = verdict(&kb, healed.into_vec(), None, false);
    assert_eq!(
        reasons(&lost),
        [("Warning".to_string(), "NotReady".to_string())],
        "losing Ready is news"
    );
}

#[test]
fn last_transition_time_moves_only_when_the_status_flips() {
    let kb = bridge(1);
    let mut old = verdict(&kb, vec![], Some("IggyUnreachable"), false).into_vec();
    let long_ago = Time(k8s_openapi::jiff::Timestamp::from_second(1_000_000).unwrap());
    for c in &mut old {
        c.last_transition_time = long_ago.clone();
    }
    let next = verdict(&kb, old, Some("TopicConflict"), true).into_vec();
    let get = |t: &str| next.iter().find(|c| c.type_ == t).unwrap();
    assert_eq!(
        get("IggyProvisioned").last_transition_time,
        long_ago,
        "still False (another reason): same transition"
    );
    assert_ne!(get("Progressing").last_transition_time, long_ago, "flipped");
    assert_eq!(get("Ready").observed_generation, Some(4));
    let order: Vec<&str> = next.iter().map(|c| c.type_.as_str()).collect();
    assert_eq!(
        order,
        ["Ready", "IggyProvisioned", "Progressing", "Degraded"]
    );
}

fn stateful_set(generation: i64, status: StatefulSetStatus) -> StatefulSet {
    let mut s = StatefulSet::default();
    s.metadata.generation = Some(generation);
    s.status = Some(status);
    s
}

fn status(observed: i64, total: i32, updated: i32, ready: i32) -> StatefulSetStatus {
    StatefulSetStatus {
        observed_generation: Some(observed),
        replicas: total,
        updated_replicas: Some(updated),
        ready_replicas: Some(ready),
        available_replicas: Some(ready),
        ..StatefulSetStatus::default()
    }
}

#[test]
fn ready_only_when_every_replica_runs_the_spec_and_is_ready() {
    let kb = bridge(3);
    assert!(!rollout_state(&kb, None).0, "no StatefulSet yet");
    assert!(
        !rollout_state(&kb, Some(&stateful_set(2, status(1, 3, 3, 3)))).0,
        "the StatefulSet controller has not seen generation 2"
    );
    assert!(
        !rollout_state(&kb, Some(&stateful_set(2, status(2, 3, 2, 3)))).0,
        "one pod still runs the old template"
    );
    assert!(
        !rollout_state(&kb, Some(&stateful_set(2, status(2, 4, 3, 3)))).0,
        "a pod beyond the replica count is still stopping (4 total)"
    );
    assert!(
        !rollout_state(&kb, Some(&stateful_set(2, status(2, 3, 3, 2)))).0,
        "one pod not ready"
    );
    let (ready, why) = rollout_state(&kb, Some(&stateful_set(2, status(2, 3, 3, 3))));
    assert!(ready, "{why}");
    assert!(
        !rollout_state(&bridge(5), Some(&stateful_set(2, status(2, 3, 3, 3)))).0,
        "scaled up: 3 of 5"
    );
}
