//! Leader election on a `coordination.k8s.io` Lease, so two operator replicas never both act.
//!
//! The same protocol as client-go's `leaderelection`:
//! - the holder renews every `retry_period`; updates carry the Lease's resourceVersion, so two
//!   candidates cannot both win a takeover (the loser gets a 409);
//! - a candidate takes over only after the Lease record (holder, renewTime) has stayed
//!   unchanged for the lease duration *as measured on the candidate's own clock* since it first
//!   saw that record. Remote timestamps are never compared with the local clock, so clock skew
//!   between nodes cannot shorten a lease;
//! - the holder steps down when it could not renew for `renew_deadline` (two thirds of the
//!   lease duration), i.e. before any candidate may consider the lease expired.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, PostParams};

/// A Lease record as last seen (holder, renewTime) and when this replica first saw it.
struct Observed {
    holder: Option<String>,
    renewed: Option<Timestamp>,
    since: Instant,
}

pub struct LeaderElector {
    api: Api<Lease>,
    name: String,
    identity: String,
    pub duration: Duration,
    observed: Mutex<Option<Observed>>,
}

impl LeaderElector {
    pub fn new(api: Api<Lease>, name: &str, identity: &str, duration: Duration) -> Self {
        Self {
            api,
            name: name.into(),
            identity: identity.into(),
            duration,
            observed: Mutex::new(None),
        }
    }

    /// How often the holder renews and candidates retry.
    pub fn retry_period(&self) -> Duration {
        self.duration / 6
    }

    /// The holder gives up leadership when it could not renew for this long; shorter than the
    /// lease duration so it stops acting before anyone else may start.
    pub fn renew_deadline(&self) -> Duration {
        self.duration * 2 / 3
    }

    /// Records the Lease record as seen now; returns for how long it has been unchanged.
    fn unchanged_for(&self, spec: &LeaseSpec) -> Duration {
        let holder = spec.holder_identity.clone().filter(|h| !h.is_empty());
        let renewed = spec.renew_time.as_ref().map(|t| t.0);
        let mut observed = self.observed.lock().unwrap_or_else(|p| p.into_inner());
        match observed.as_ref() {
            Some(o) if o.holder == holder && o.renewed == renewed => o.since.elapsed(),
            _ => {
                *observed = Some(Observed {
                    holder,
                    renewed,
                    since: Instant::now(),
                });
                Duration::ZERO
            }
        }
    }

    /// One attempt to acquire or renew: true when this replica holds the lease afterwards.
    pub async fn try_acquire(&self) -> Result<bool, kube::Error> {
        let now = Timestamp::now();
        let spec = |transitions: i32, acquired: Option<MicroTime>| LeaseSpec {
            holder_identity: Some(self.identity.clone()),
            lease_duration_seconds: Some(i32::try_from(self.duration.as_secs()).unwrap_or(15)),
            acquire_time: acquired.or(Some(MicroTime(now))),
            renew_time: Some(MicroTime(now)),
            lease_transitions: Some(transitions),
            ..LeaseSpec::default()
        };
        let Some(mut lease) = self.api.get_opt(&self.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.name.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(spec(0, None)),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
                Err(e) => Err(e),
            };
        };
        let current = lease.spec.clone().unwrap_or_default();
        let holder = current.holder_identity.as_deref().unwrap_or_default();
        let mine = holder == self.identity;
        if !mine && !holder.is_empty() {
            // The holder's own lease duration counts, not ours: replicas may be configured
            // differently during an upgrade.
            let lease_duration = current
                .lease_duration_seconds
                .and_then(|s| u64::try_from(s).ok())
                .map_or(self.duration, Duration::from_secs);
            if self.unchanged_for(&current) <= lease_duration {
                return Ok(false);
            }
        }
        let transitions = current.lease_transitions.unwrap_or(0) + i32::from(!mine);
        lease.spec = Some(spec(
            transitions,
            if mine { current.acquire_time } else { None },
        ));
        // `replace` sends the resourceVersion we read: a concurrent change makes this a 409.
        match self
            .api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
        {
            Ok(written) => {
                if let Some(spec) = &written.spec {
                    self.unchanged_for(spec);
                }
                Ok(true)
            }
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Gives the lease up (on shutdown, after the controller stopped), so a standby replica
    /// takes over at once instead of after the lease duration. Only if still ours.
    pub async fn release(&self) -> Result<(), kube::Error> {
        let Some(mut lease) = self.api.get_opt(&self.name).await? else {
            return Ok(());
        };
        let Some(spec) = lease.spec.as_mut() else {
            return Ok(());
        };
        if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
            return Ok(());
        }
        spec.holder_identity = None;
        spec.renew_time = Some(MicroTime(Timestamp::now()));
        match self
            .api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
        {
            // Someone else wrote it meanwhile: it is not ours to release any more.
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
            other => other.map(|_| ()),
        }
    }

    /// Waits until this replica is the leader.
    pub async fn acquire(&self) {
        loop {
            match tokio::time::timeout(self.retry_period(), self.try_acquire()).await {
                Ok(Ok(true)) => return,
                Ok(Ok(false)) => {}
                Ok(Err(e)) => tracing::warn!(error = %e, "leader election"),
                Err(_) => tracing::warn!("leader election: the API server did not answer"),
            }
            tokio::time::sleep(self.retry_period()).await;
        }
    }

    /// Renews until the lease is lost (another replica holds it) or could not be renewed for
    /// [`Self::renew_deadline`]; returns then, and the caller must stop acting at once.
    pub async fn hold(&self) {
        let mut renewed = Instant::now();
        loop {
            tokio::time::sleep(self.retry_period()).await;
            let left = self.renew_deadline().saturating_sub(renewed.elapsed());
            match tokio::time::timeout(left, self.try_acquire()).await {
                Ok(Ok(true)) => renewed = Instant::now(),
                Ok(Ok(false)) => {
                    tracing::warn!("another replica holds the leader lease");
                    return;
                }
                Ok(Err(e)) => tracing::warn!(error = %e, "lease renewal failed"),
                Err(_) => tracing::warn!("lease renewal: the API server did not answer"),
            }
            if renewed.elapsed() >= self.renew_deadline() {
                tracing::warn!(deadline = ?self.renew_deadline(), "could not renew the leader lease in time");
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests;
