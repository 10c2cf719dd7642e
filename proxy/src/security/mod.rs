//! Security of the Kafka listeners: TLS ([`tls`]), SASL ([`sasl`]) with its SCRAM exchange
//! ([`scram`]) and users file ([`users`]), and what a connection knows about its client
//! ([`Session`]). See docs/security.md.

pub mod access;
pub mod authorize;
pub mod grants;
pub mod sasl;
pub mod scram;
pub mod tls;
pub mod users;

use std::sync::Arc;

use kafka_protocol::messages::ApiKey;

use self::access::Access;
use self::sasl::{SaslListener, SaslSession};
use self::tls::TlsSource;
use crate::backend::iggy::Credentials;
use crate::config::ListenerConfig;

/// A listener's security, built once from its configuration and shared by its connections.
pub struct ListenerSecurity {
    pub name: Arc<str>,
    pub tls: Option<TlsSource>,
    pub sasl: Option<Arc<SaslListener>>,
}

impl ListenerSecurity {
    /// Loads certificates and users; `iggy` is how passthrough logins reach Iggy.
    pub fn new(config: &ListenerConfig, iggy: Option<Credentials>) -> Result<Self, String> {
        let name = &config.name;
        let tls = match &config.tls {
            Some(tls) if config.security_protocol.uses_tls() => {
                Some(TlsSource::load(tls).map_err(|e| format!("listener {name}: {e}"))?)
            }
            _ => None,
        };
        let sasl = match &config.sasl {
            Some(sasl) if config.security_protocol.uses_sasl() => Some(Arc::new(
                SaslListener::new(sasl, iggy).map_err(|e| format!("listener {name}: {e}"))?,
            )),
            _ => None,
        };
        Ok(Self {
            name: Arc::from(name.as_str()),
            tls,
            sasl,
        })
    }

    /// A new connection's session. A verified client certificate (mTLS) names the principal
    /// and the Iggy user (its common name) the connection acts for until SASL says otherwise.
    pub fn session(&self, certificate: Option<tls::CertificateIdentity>) -> Session {
        let access = Access::default();
        if let Some(user) = certificate.as_ref().and_then(|c| c.common_name.as_deref()) {
            access.act_as(user);
        }
        Session {
            listener: self.name.clone(),
            tls_principal: certificate.map(|c| c.principal),
            sasl: self.sasl.clone().map(SaslSession::new),
            access,
        }
    }
}

/// What a connection knows about where it came in and who its client is.
pub struct Session {
    /// The listener's name: Metadata answers with this listener's addresses.
    pub listener: Arc<str>,
    /// The client certificate's principal (mTLS).
    pub tls_principal: Option<String>,
    pub sasl: Option<SaslSession>,
    /// The Iggy user whose permissions apply (none: the proxy's own, unrestricted).
    pub access: Access,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("listener", &self.listener)
            .field("principal", &self.principal())
            .finish()
    }
}

impl Session {
    /// A connection on a listener without security (tests, the default listener).
    pub fn plaintext(listener: &str) -> Self {
        Self {
            listener: Arc::from(listener),
            tls_principal: None,
            sasl: None,
            access: Access::default(),
        }
    }

    /// `Err` with the reason to close the connection if a request may not run now.
    pub fn admit(&self, key: ApiKey) -> Result<(), String> {
        self.sasl.as_ref().map_or(Ok(()), |s| s.admit(key))
    }

    /// Kafka's principal of the client: SASL's, else the certificate's, else `User:ANONYMOUS`.
    pub fn principal(&self) -> String {
        self.sasl
            .as_ref()
            .and_then(SaslSession::principal)
            .or_else(|| self.tls_principal.clone())
            .unwrap_or_else(|| "User:ANONYMOUS".into())
    }
}
