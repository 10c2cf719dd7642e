//! Status conditions of a KafkaBridge (Ready, IggyProvisioned, Progressing, Degraded) as one
//! reconcile computes them, and which of them changed since the last status: those, and only
//! those, become Events.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::runtime::events::EventType;
use kube::Resource;

use crate::crd::KafkaBridge;

/// Status conditions, keeping lastTransitionTime when a condition's status did not change.
pub(crate) struct Conditions {
    previous: Vec<Condition>,
    current: Vec<Condition>,
    generation: Option<i64>,
}

impl Conditions {
    pub(crate) fn new(kb: &KafkaBridge, previous: Vec<Condition>) -> Self {
        Self {
            previous,
            current: Vec::new(),
            generation: kb.meta().generation,
        }
    }

    /// Conditions that changed status or reason since the last status, as events: a problem
    /// (IggyProvisioned or Ready turning False with a new reason, Degraded turning True) is a
    /// Warning, a recovery Normal. Unchanged conditions produce nothing, so a bridge stuck in
    /// one state does not repeat the same event every resync.
    pub(crate) fn transitions(&self) -> Vec<(EventType, String, String)> {
        self.current
            .iter()
            .filter(|c| {
                !self
                    .previous
                    .iter()
                    .any(|p| p.type_ == c.type_ && p.status == c.status && p.reason == c.reason)
            })
            .filter_map(|c| {
                let healthy = c.status
                    == if c.type_ == "Degraded" {
                        "False"
                    } else {
                        "True"
                    };
                match (c.type_.as_str(), healthy) {
                    // Progressing flips with every rollout; Ready reports its outcome.
                    ("Progressing", _) => None,
                    // A first Degraded=False is no news.
                    ("Degraded", true) if !self.previous.iter().any(|p| p.type_ == "Degraded") => {
                        None
                    }
                    // Not Ready yet (creation, rollout) is no news; losing Ready is.
                    ("Ready", false) if !self.was_true("Ready") => None,
                    (_, true) => Some((
                        EventType::Normal,
                        c.reason.clone(),
                        format!("{}: {}", c.type_, c.message),
                    )),
                    (_, false) => Some((
                        EventType::Warning,
                        c.reason.clone(),
                        format!("{}: {}", c.type_, c.message),
                    )),
                }
            })
            .collect()
    }

    pub(crate) fn set(&mut self, type_: &str, status: bool, reason: &str, message: &str) {
        let status = if status { "True" } else { "False" }.to_string();
        let since = self
            .previous
            .iter()
            .find(|c| c.type_ == type_ && c.status == status)
            .map(|c| c.last_transition_time.clone())
            .unwrap_or_else(|| Time(k8s_openapi::jiff::Timestamp::now()));
        self.current.retain(|c| c.type_ != type_);
        self.current.push(Condition {
            type_: type_.into(),
            status,
            reason: reason.into(),
            message: message.chars().take(2000).collect(),
            last_transition_time: since,
            observed_generation: self.generation,
        });
    }

    fn was_true(&self, type_: &str) -> bool {
        self.previous
            .iter()
            .any(|c| c.type_ == type_ && c.status == "True")
    }

    pub(crate) fn is_set(&self, type_: &str) -> bool {
        self.current.iter().any(|c| c.type_ == type_)
    }

    pub(crate) fn is_true(&self, type_: &str) -> bool {
        self.current
            .iter()
            .any(|c| c.type_ == type_ && c.status == "True")
    }

    pub(crate) fn into_vec(mut self) -> Vec<Condition> {
        let order = ["Ready", "IggyProvisioned", "Progressing", "Degraded"];
        self.current.sort_by_key(|c| {
            order
                .iter()
                .position(|o| *o == c.type_)
                .unwrap_or(order.len())
        });
        self.current
    }
}
