//! Whether Iggy can be reached, as the connection pool last found out, and why not.
//!
//! While Iggy is down, connections are retried in the background with a jittered exponential
//! backoff, and requests fail at once instead of each waiting for a connect. Operators see one
//! log line per change ("Iggy unreachable: <reason>", "connected to Iggy"), never one per
//! attempt, and /readyz shows the reason.

use std::hash::{BuildHasher, Hasher};
use std::sync::Mutex;
use std::time::Duration;

use iggy::prelude::IggyError;
use tokio::net::TcpStream;

use super::pool::Credentials;

/// First wait before trying again.
const BACKOFF_START: Duration = Duration::from_millis(100);
/// Longest wait between attempts: a restarted Iggy is found within this.
const BACKOFF_CAP: Duration = Duration::from_secs(5);
/// Bound on the TCP probe that tells "nothing listens" from "something listens but the
/// session failed".
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Why connecting and logging in failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Failure {
    pub reason: String,
    /// The server was reached but the session cannot be set up as configured (TLS handshake
    /// failed, or a plain connection was dropped at login): at startup that is a configuration
    /// mistake worth stopping for; later it is retried like any failure.
    pub setup: bool,
}

impl Failure {
    fn retriable(reason: String) -> Self {
        Self {
            reason,
            setup: false,
        }
    }

    /// Explains a failed connect + login to `credentials.address`.
    pub(crate) async fn diagnose(credentials: &Credentials, error: &IggyError) -> Self {
        use IggyError as E;
        let address = &credentials.address;
        match error {
            // Retried: the user may be created or its password fixed on the Iggy side.
            E::InvalidCredentials | E::InvalidUsername | E::InvalidPassword | E::UserInactive => {
                Self::retriable(format!(
                    "login as {:?} refused ({error}); check the Iggy credentials",
                    credentials.username
                ))
            }
            E::InvalidTlsCertificatePath | E::InvalidTlsCertificate | E::InvalidTlsDomain => Self {
                reason: format!("TLS setup failed: {error}"),
                setup: true,
            },
            // The SDK reports every connect failure as this; a probe says which one it was.
            E::CannotEstablishConnection => {
                match tokio::time::timeout(PROBE_TIMEOUT, TcpStream::connect(address)).await {
                    Err(_) => Self::retriable(format!("{address}: connect timed out")),
                    Ok(Err(e)) => Self::retriable(format!("{address}: {e}")),
                    Ok(Ok(_)) if credentials.tls.enabled => Self {
                        reason: format!("{address}: TLS handshake failed"),
                        setup: true,
                    },
                    Ok(Ok(_)) => Self::retriable(format!("{address}: {error}")),
                }
            }
            // Without TLS, a server that hangs up on the login is most likely serving TLS.
            E::TcpError | E::Disconnected | E::ConnectionClosed | E::EmptyResponse
                if !credentials.tls.enabled =>
            {
                Self {
                    reason: format!(
                        "{address}: the server closed the connection during login \
                         ({error}); does it expect TLS?"
                    ),
                    setup: true,
                }
            }
            other => Self::retriable(format!("{address}: {other}")),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    /// Nothing tried yet.
    Connecting,
    Up,
    Down(Failure),
}

/// See the module documentation. Shared by the pool and the startup task.
#[derive(Debug)]
pub(crate) struct Reachability {
    address: String,
    state: Mutex<State>,
}

impl Reachability {
    pub(crate) fn new(address: &str) -> Self {
        Self {
            address: address.to_string(),
            state: Mutex::new(State::Connecting),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn up(&self) {
        let previous = std::mem::replace(&mut *self.state(), State::Up);
        if previous != State::Up {
            tracing::info!(address = %self.address, "connected to Iggy");
        }
    }

    pub(crate) fn down(&self, failure: Failure) {
        let mut state = self.state();
        if *state != State::Down(failure.clone()) {
            tracing::warn!(address = %self.address, "Iggy unreachable: {}", failure.reason);
            *state = State::Down(failure);
        }
    }

    /// Why Iggy cannot be used right now; `None` once connected.
    pub(crate) fn unavailable(&self) -> Option<String> {
        match &*self.state() {
            State::Up => None,
            State::Connecting => Some(format!("connecting to Iggy at {}", self.address)),
            State::Down(f) => Some(format!("Iggy unreachable: {}", f.reason)),
        }
    }

    /// True after a failed connect, until one succeeds: requests then fail fast.
    pub(crate) fn is_down(&self) -> bool {
        matches!(*self.state(), State::Down(_))
    }

    /// The last failure, when it was a setup that cannot work.
    pub(crate) fn setup_failure(&self) -> Option<String> {
        match &*self.state() {
            State::Down(f) if f.setup => Some(f.reason.clone()),
            _ => None,
        }
    }
}

/// Exponential backoff from [`BACKOFF_START`] to [`BACKOFF_CAP`] with "equal jitter" (half
/// fixed, half random), so proxies restarted together do not retry in step.
#[derive(Debug)]
pub(crate) struct Backoff {
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            next: BACKOFF_START,
        }
    }
}

impl Backoff {
    pub(crate) fn next_delay(&mut self) -> Duration {
        let full = self.next;
        self.next = (self.next * 2).min(BACKOFF_CAP);
        let half = full / 2;
        half + half.mul_f64(random_fraction())
    }
}

/// A number in [0, 1) from the standard library's randomly keyed hasher (no RNG dependency
/// for jitter).
fn random_fraction() -> f64 {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(0);
    (hasher.finish() >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_the_cap_with_jitter() {
        let mut backoff = Backoff::default();
        let delays: Vec<Duration> = (0..10).map(|_| backoff.next_delay()).collect();
        assert!(delays[0] >= BACKOFF_START / 2 && delays[0] <= BACKOFF_START);
        for d in &delays[8..] {
            assert!(*d >= BACKOFF_CAP / 2 && *d <= BACKOFF_CAP, "{d:?}");
        }
    }

    #[test]
    fn state_follows_connects_and_failures() {
        let r = Reachability::new("iggy:8090");
        assert_eq!(
            r.unavailable().as_deref(),
            Some("connecting to Iggy at iggy:8090")
        );
        let refused = Failure::retriable("refused".into());
        r.down(refused.clone());
        r.down(refused);
        assert!(r.is_down() && r.setup_failure().is_none());
        assert_eq!(
            r.unavailable().as_deref(),
            Some("Iggy unreachable: refused")
        );
        r.up();
        assert_eq!(r.unavailable(), None);
        assert!(!r.is_down());
    }
}
