//! The SCRAM users file (a Kubernetes Secret when the operator runs the proxy): per user and
//! mechanism a salt, an iteration count, StoredKey and ServerKey, never a password.
//!
//! ```yaml
//! users:
//!   alice:
//!     SCRAM-SHA-256: {salt: c2FsdA==, iterations: 4096, stored_key: ..., server_key: ...}
//!     SCRAM-SHA-512: {salt: ..., iterations: 4096, stored_key: ..., server_key: ...}
//! ```
//!
//! `kafka-iggy-proxy scram-credential` prints entries. The file is checked for changes (size
//! and modification time) at each authentication and re-read then; a file that no longer
//! parses keeps the users read before, with one warning per broken version.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use super::scram::{ScramCredential, ScramHash};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsersFile {
    #[serde(default)]
    pub users: BTreeMap<String, UserEntry>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserEntry {
    /// The Iggy user whose permissions apply to this Kafka user [default: the same name].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iggy_user: Option<String>,
    #[serde(
        rename = "SCRAM-SHA-256",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub scram_sha_256: Option<ScramCredential>,
    #[serde(
        rename = "SCRAM-SHA-512",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub scram_sha_512: Option<ScramCredential>,
}

impl UserEntry {
    pub fn credential(&self, hash: ScramHash) -> Option<&ScramCredential> {
        match hash {
            ScramHash::Sha256 => self.scram_sha_256.as_ref(),
            ScramHash::Sha512 => self.scram_sha_512.as_ref(),
        }
    }

    /// Whether `password` matches any of the user's credentials (PLAIN against the file).
    pub fn matches_password(&self, password: &[u8]) -> bool {
        [ScramHash::Sha256, ScramHash::Sha512].into_iter().any(|h| {
            self.credential(h)
                .is_some_and(|c| c.matches_password(h, password))
        })
    }
}

impl UsersFile {
    /// Reads and checks a users file; the error names the file and what is wrong.
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Self::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    pub fn parse(text: &str) -> Result<Self, String> {
        let file: UsersFile = serde_yaml::from_str(text).map_err(|e| e.to_string())?;
        for (name, entry) in &file.users {
            for (hash, mechanism) in [
                (ScramHash::Sha256, "SCRAM-SHA-256"),
                (ScramHash::Sha512, "SCRAM-SHA-512"),
            ] {
                if let Some(problem) = entry.credential(hash).and_then(|c| c.problem(hash)) {
                    return Err(format!("user {name} {mechanism}: {problem}"));
                }
            }
        }
        Ok(file)
    }
}

/// The users file as last read successfully, re-read when it changes.
pub struct UsersStore {
    path: PathBuf,
    state: Mutex<StoreState>,
}

struct StoreState {
    users: Arc<UsersFile>,
    /// Size and modification time of the version read (or last found broken).
    seen: Option<(u64, SystemTime)>,
}

impl UsersStore {
    pub fn open(path: PathBuf) -> Result<Self, String> {
        let users = UsersFile::load(&path)?;
        let seen = stamp(&path);
        Ok(Self {
            path,
            state: Mutex::new(StoreState {
                users: Arc::new(users),
                seen,
            }),
        })
    }

    /// The current users, re-reading the file first if it changed.
    pub fn current(&self) -> Arc<UsersFile> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let now = stamp(&self.path);
        if now.is_some() && now != state.seen {
            state.seen = now;
            match UsersFile::load(&self.path) {
                Ok(users) => {
                    tracing::info!(file = %self.path.display(), users = users.users.len(), "SASL users file reloaded");
                    state.users = Arc::new(users);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "SASL users file changed but cannot be used; keeping the users read before");
                }
            }
        }
        state.users.clone()
    }
}

/// A users file holding `user` with fresh credentials for `password` under each mechanism,
/// as YAML (what `kafka-iggy-proxy scram-credential` prints).
pub fn credential_entry(
    user: &str,
    password: &[u8],
    mechanisms: &[crate::config::SaslMechanism],
    iterations: u32,
) -> Result<String, String> {
    use crate::config::SaslMechanism;
    if !(super::scram::MIN_ITERATIONS..=super::scram::MAX_ITERATIONS).contains(&iterations) {
        return Err(format!(
            "iterations must be within {}..={}",
            super::scram::MIN_ITERATIONS,
            super::scram::MAX_ITERATIONS
        ));
    }
    let mut entry = UserEntry::default();
    for mechanism in mechanisms {
        let derive =
            |hash| ScramCredential::derive(hash, password, &super::scram::new_salt(), iterations);
        match mechanism {
            SaslMechanism::ScramSha256 => entry.scram_sha_256 = Some(derive(ScramHash::Sha256)),
            SaslMechanism::ScramSha512 => entry.scram_sha_512 = Some(derive(ScramHash::Sha512)),
            SaslMechanism::Plain => {
                return Err("PLAIN users are checked against their SCRAM credentials; name SCRAM-SHA-256 or SCRAM-SHA-512".into())
            }
        }
    }
    let file = UsersFile {
        users: [(user.to_string(), entry)].into(),
    };
    serde_yaml::to_string(&file).map_err(|e| e.to_string())
}

fn stamp(path: &Path) -> Option<(u64, SystemTime)> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.len(), meta.modified().ok()?))
}
