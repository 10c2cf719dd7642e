//! `kafka-iggy-operator`: turns `KafkaBridge` resources into kafka-iggy-proxy StatefulSets,
//! Services and Iggy topics.
//!
//! [`crd`] the resource types → [`desired`] the pure desired-state function → [`reconcile`]
//! applies it (server-side apply) and provisions Iggy ([`provision`]); [`leader`] keeps a
//! single active replica; [`metrics`] serves /metrics, /healthz, /readyz. `conditions` computes
//! the status conditions and which of them changed (those become Events). [`listeners`]
//! renders `spec.kafka.listeners`; [`secrets`] reads only the Secrets that opted in;
//! [`ownership`] identifies Iggy servers and records what a bridge created there.

mod conditions;
pub mod crd;
pub mod desired;
pub mod leader;
pub mod listeners;
pub mod metrics;
pub mod ownership;
pub mod provision;
pub mod reconcile;
pub mod secrets;

/// Selects rustls' crypto provider for the process. The iggy SDK and kube enable different
/// ones (ring, aws-lc-rs), and rustls refuses to guess when both are compiled in.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}
