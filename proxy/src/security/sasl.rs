//! SASL on a connection, as a Kafka broker runs it (KIP-43, KIP-152, KIP-368):
//!
//! - Before authentication only ApiVersions, SaslHandshake and SaslAuthenticate are served;
//!   anything else closes the connection, as Kafka does.
//! - SaslHandshake picks the mechanism; SaslAuthenticate carries its tokens (PLAIN: one,
//!   SCRAM: two). A failed authentication is answered SASL_AUTHENTICATION_FAILED and the
//!   connection is closed at its next request.
//! - With a session lifetime, the SaslAuthenticate answer says when the session ends; the
//!   client re-authenticates before (SaslHandshake + SaslAuthenticate again, same mechanism and
//!   principal) or its first request after the end closes the connection.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::ApiKey;

use super::scram::{ClientFirst, ScramHash, ServerFirst};
use super::users::UsersStore;
use crate::backend::iggy::Credentials;
use crate::config::{SaslMechanism, SaslSettings, SaslUsers};

/// Where a listener checks credentials.
pub enum CredentialSource {
    /// PLAIN username and password are an Iggy user's: checked by logging in to Iggy.
    Passthrough(Credentials),
    File(UsersStore),
}

/// A SASL listener's settings, shared by its connections.
pub struct SaslListener {
    pub mechanisms: Vec<SaslMechanism>,
    pub source: CredentialSource,
    pub session_lifetime: Option<Duration>,
}

impl SaslListener {
    /// `iggy` is how the proxy reaches Iggy (address, TLS), for passthrough logins.
    pub fn new(settings: &SaslSettings, iggy: Option<Credentials>) -> Result<Self, String> {
        let source = match (&settings.users, iggy) {
            (SaslUsers::Passthrough, Some(iggy)) => CredentialSource::Passthrough(iggy),
            (SaslUsers::Passthrough, None) => {
                return Err("sasl.users passthrough needs backend iggy".into())
            }
            (SaslUsers::File(path), _) => CredentialSource::File(UsersStore::open(path.clone())?),
        };
        Ok(Self {
            mechanisms: settings.mechanisms.clone(),
            source,
            session_lifetime: settings
                .session_lifetime_ms
                .filter(|ms| *ms > 0)
                .map(Duration::from_millis),
        })
    }

    /// Checks a PLAIN username and password; the Iggy user the client acts as.
    async fn check_password(&self, username: &str, password: &str) -> Result<String, String> {
        match &self.source {
            CredentialSource::File(store) => {
                let users = store.current();
                match users.users.get(username) {
                    Some(user) if user.matches_password(password.as_bytes()) => {
                        Ok(iggy_user(username, user))
                    }
                    _ => Err(invalid_credentials(SaslMechanism::Plain)),
                }
            }
            CredentialSource::Passthrough(iggy) => {
                let login = Credentials {
                    username: username.to_string(),
                    password: password.to_string(),
                    ..iggy.clone()
                };
                match login.login().await {
                    Ok(client) => {
                        drop(client);
                        Ok(username.to_string())
                    }
                    Err(e) if is_credentials_error(&e) => {
                        Err(invalid_credentials(SaslMechanism::Plain))
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot check SASL PLAIN credentials with Iggy");
                        Err("cannot check credentials now: Iggy is not reachable".into())
                    }
                }
            }
        }
    }
}

fn iggy_user(username: &str, entry: &super::users::UserEntry) -> String {
    entry
        .iggy_user
        .clone()
        .unwrap_or_else(|| username.to_string())
}

fn is_credentials_error(e: &iggy::prelude::IggyError) -> bool {
    use iggy::prelude::IggyError;
    matches!(
        e,
        IggyError::InvalidCredentials
            | IggyError::ResourceNotFound(_)
            | IggyError::UserInactive
            | IggyError::InvalidUsername
            | IggyError::InvalidPassword
            | IggyError::Unauthenticated
    )
}

fn invalid_credentials(mechanism: SaslMechanism) -> String {
    format!(
        "Authentication failed during authentication due to invalid credentials with SASL mechanism {}",
        mechanism.name()
    )
}

/// What an answer to SaslAuthenticate carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthenticateReply {
    pub error: Option<(ResponseError, String)>,
    pub bytes: Vec<u8>,
    /// Milliseconds until the session ends (0: it does not), on success.
    pub session_lifetime_ms: i64,
    /// The Iggy user the client acts as, once the exchange succeeded.
    pub iggy_user: Option<String>,
}

impl AuthenticateReply {
    fn failed(error: ResponseError, message: String) -> Self {
        Self {
            error: Some((error, message)),
            bytes: Vec::new(),
            session_lifetime_ms: 0,
            iggy_user: None,
        }
    }
}

#[derive(Debug, Clone)]
struct Authenticated {
    principal: String,
    mechanism: SaslMechanism,
    expires: Option<Instant>,
}

#[derive(Debug, Default)]
enum Exchange {
    #[default]
    Idle,
    Chosen(SaslMechanism),
    /// The server's first message was sent; the client's proof is next. Holds the Iggy user.
    ScramFinal(SaslMechanism, Box<ServerFirst>, String),
}

#[derive(Debug, Default)]
struct State {
    authenticated: Option<Authenticated>,
    exchange: Exchange,
    failed: bool,
}

/// One connection's SASL state.
pub struct SaslSession {
    listener: Arc<SaslListener>,
    state: Mutex<State>,
}

impl SaslSession {
    pub fn new(listener: Arc<SaslListener>) -> Self {
        Self {
            listener,
            state: Mutex::default(),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The authenticated principal (`User:name`), if any.
    pub fn principal(&self) -> Option<String> {
        self.state()
            .authenticated
            .as_ref()
            .map(|a| a.principal.clone())
    }

    /// `Err` with the reason to close the connection if a request of `key` may not run now.
    pub fn admit(&self, key: ApiKey) -> Result<(), String> {
        let state = self.state();
        if state.failed {
            return Err("request after a failed SASL authentication".into());
        }
        if matches!(
            key,
            ApiKey::ApiVersions | ApiKey::SaslHandshake | ApiKey::SaslAuthenticate
        ) {
            return Ok(());
        }
        match &state.authenticated {
            None => Err(format!(
                "unexpected {key:?} request before SASL authentication"
            )),
            Some(a) if a.expires.is_some_and(|at| Instant::now() >= at) => {
                Err("SASL session expired without re-authentication".into())
            }
            Some(_) => Ok(()),
        }
    }

    /// SaslHandshake: the mechanism chosen, or the error to answer.
    pub fn handshake(&self, mechanism: &str) -> Result<SaslMechanism, ResponseError> {
        let mut state = self.state();
        if !matches!(state.exchange, Exchange::Idle) {
            return Err(ResponseError::IllegalSaslState);
        }
        let Some(chosen) =
            SaslMechanism::parse(mechanism).filter(|m| self.listener.mechanisms.contains(m))
        else {
            state.failed = true;
            return Err(ResponseError::UnsupportedSaslMechanism);
        };
        if let Some(a) = &state.authenticated {
            if a.mechanism != chosen {
                // KIP-368: re-authentication keeps the mechanism.
                state.failed = true;
                return Err(ResponseError::IllegalSaslState);
            }
        }
        state.exchange = Exchange::Chosen(chosen);
        Ok(chosen)
    }

    pub fn mechanisms(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.listener.mechanisms.iter().map(|m| m.name())
    }

    /// SaslAuthenticate: one token of the exchange.
    pub async fn authenticate(&self, token: &[u8]) -> AuthenticateReply {
        let exchange = std::mem::take(&mut self.state().exchange);
        let reply = match exchange {
            Exchange::Idle => {
                return AuthenticateReply::failed(
                    ResponseError::IllegalSaslState,
                    "SaslAuthenticate before SaslHandshake".into(),
                )
            }
            Exchange::Chosen(SaslMechanism::Plain) => match parse_plain(token) {
                Ok((user, password)) => match self.listener.check_password(user, password).await {
                    Ok(iggy) => Ok((user.to_string(), iggy, SaslMechanism::Plain, Vec::new())),
                    Err(e) => Err(e),
                },
                Err(e) => Err(e.to_string()),
            },
            Exchange::Chosen(mechanism) => {
                let hash = scram_hash(mechanism);
                match self.scram_first(mechanism, hash, token) {
                    Ok((first, iggy)) => {
                        let bytes = first.message().to_vec();
                        self.state().exchange =
                            Exchange::ScramFinal(mechanism, Box::new(first), iggy);
                        return AuthenticateReply {
                            error: None,
                            bytes,
                            session_lifetime_ms: 0,
                            iggy_user: None,
                        };
                    }
                    Err(e) => Err(e),
                }
            }
            Exchange::ScramFinal(mechanism, first, iggy) => match first.finish(token) {
                Ok(bytes) => Ok((first.username().to_string(), iggy, mechanism, bytes)),
                Err(super::scram::ScramError::InvalidCredentials) => {
                    Err(invalid_credentials(mechanism))
                }
                Err(e) => Err(e.to_string()),
            },
        };
        match reply {
            Ok((user, iggy, mechanism, bytes)) => self.complete(&user, iggy, mechanism, bytes),
            Err(message) => {
                self.state().failed = true;
                AuthenticateReply::failed(ResponseError::SaslAuthenticationFailed, message)
            }
        }
    }

    fn scram_first(
        &self,
        mechanism: SaslMechanism,
        hash: ScramHash,
        token: &[u8],
    ) -> Result<(ServerFirst, String), String> {
        let client = ClientFirst::parse(token).map_err(|e| e.to_string())?;
        let CredentialSource::File(store) = &self.listener.source else {
            return Err(invalid_credentials(mechanism));
        };
        let users = store.current();
        let (credential, iggy) = users
            .users
            .get(&client.username)
            .and_then(|u| Some((u.credential(hash)?.clone(), iggy_user(&client.username, u))))
            .ok_or_else(|| invalid_credentials(mechanism))?;
        let first = ServerFirst::new(hash, client, credential, &super::scram::new_nonce());
        Ok((first, iggy))
    }

    /// Records a successful authentication (or re-authentication of the same principal).
    fn complete(
        &self,
        user: &str,
        iggy_user: String,
        mechanism: SaslMechanism,
        bytes: Vec<u8>,
    ) -> AuthenticateReply {
        let principal = format!("User:{user}");
        let mut state = self.state();
        if state
            .authenticated
            .as_ref()
            .is_some_and(|a| a.principal != principal)
        {
            state.failed = true;
            return AuthenticateReply::failed(
                ResponseError::SaslAuthenticationFailed,
                "re-authentication must keep the principal".into(),
            );
        }
        let lifetime = self.listener.session_lifetime;
        state.authenticated = Some(Authenticated {
            principal,
            mechanism,
            expires: lifetime.map(|l| Instant::now() + l),
        });
        AuthenticateReply {
            error: None,
            bytes,
            session_lifetime_ms: lifetime.map_or(0, |l| l.as_millis() as i64),
            iggy_user: Some(iggy_user),
        }
    }
}

fn scram_hash(mechanism: SaslMechanism) -> ScramHash {
    match mechanism {
        SaslMechanism::ScramSha512 => ScramHash::Sha512,
        _ => ScramHash::Sha256,
    }
}

/// `[authzid] NUL authcid NUL passwd` (RFC 4616); an authzid must equal the username.
pub fn parse_plain(token: &[u8]) -> Result<(&str, &str), &'static str> {
    let text = std::str::from_utf8(token).map_err(|_| "PLAIN token is not UTF-8")?;
    let mut parts = text.split('\0');
    let (Some(authzid), Some(user), Some(password), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("PLAIN token must be authzid NUL username NUL password");
    };
    if user.is_empty() || password.is_empty() {
        return Err("PLAIN username and password must not be empty");
    }
    if !authzid.is_empty() && authzid != user {
        return Err("PLAIN authorization id differs from the username");
    }
    Ok((user, password))
}
