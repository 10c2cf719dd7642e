//! The Iggy user a connection acts for, and that user's [`Grants`].
//!
//! Permissions are read through the proxy's own Iggy connection and enforced by the proxy
//! (`security::authorize`) rather than by logging in to Iggy as each user: SCRAM users never
//! reveal a password to log in with, the proxy's single writer per partition appends through
//! one shared connection pool, and Kafka's per-partition authorization errors come from
//! checking before the work. Grants are read again at the first request after
//! [`GRANTS_TTL`], so a permission change in Iggy reaches open connections within that time.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::grants::Grants;
use crate::backend::Backend;

/// How long grants are used before they are read again.
pub const GRANTS_TTL: Duration = Duration::from_secs(10);
/// How soon a failed read is tried again (the grants read before stay in use meanwhile).
const RETRY: Duration = Duration::from_secs(1);

/// Empty (the connection acts as the proxy's own user, unrestricted) until [`Access::act_as`].
#[derive(Default)]
pub struct Access {
    state: Mutex<Option<Acting>>,
}

struct Acting {
    iggy_user: String,
    /// Nothing is allowed until the first read succeeds.
    grants: Arc<Grants>,
    next_read: Option<Instant>,
}

impl Access {
    /// From now on, the connection may do what Iggy user `iggy_user` may.
    pub fn act_as(&self, iggy_user: &str) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if state.as_ref().is_some_and(|a| a.iggy_user == iggy_user) {
            return;
        }
        *state = Some(Acting {
            iggy_user: iggy_user.to_string(),
            grants: Arc::new(Grants::default()),
            next_read: None,
        });
    }

    /// The Iggy user acted for, if any.
    pub fn iggy_user(&self) -> Option<String> {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.as_ref().map(|a| a.iggy_user.clone())
    }

    /// `None` when the connection is not restricted.
    pub fn grants(&self) -> Option<Arc<Grants>> {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.as_ref().map(|a| a.grants.clone())
    }

    /// Reads the grants if they were never read or are older than [`GRANTS_TTL`].
    pub async fn refresh(&self, backend: &dyn Backend) {
        let user = {
            let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
            match state.as_ref() {
                Some(a) if a.next_read.is_none_or(|at| Instant::now() >= at) => a.iggy_user.clone(),
                _ => return,
            }
        };
        let read = backend.grants(&user).await;
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let Some(acting) = state.as_mut().filter(|a| a.iggy_user == user) else {
            return;
        };
        match read {
            Ok(grants) => {
                if grants.is_none() {
                    tracing::debug!(user, "no such Iggy user: nothing is allowed");
                }
                acting.grants = Arc::new(grants.unwrap_or_default());
                acting.next_read = Some(Instant::now() + GRANTS_TTL);
            }
            Err(e) => {
                tracing::warn!(user, error = %e, "cannot read the Iggy user's permissions; keeping those read before");
                acting.next_read = Some(Instant::now() + RETRY);
            }
        }
    }
}
