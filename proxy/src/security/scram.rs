//! SCRAM-SHA-256 and SCRAM-SHA-512, server side (RFC 5802, RFC 7677), as Kafka speaks them:
//! no channel binding, usernames in the `saslname` encoding, extensions in the client's first
//! message tolerated except `tokenauth` (delegation tokens are not served).
//!
//! The server keeps only `StoredKey = H(ClientKey)` and `ServerKey` per user: it can check a
//! proof without ever holding the password, which is why SCRAM users cannot be passed through
//! to Iggy (see `security::users`).

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256, Sha512};
use subtle::ConstantTimeEq;

/// Fewest PBKDF2 iterations accepted in credentials (Kafka's minimum).
pub const MIN_ITERATIONS: u32 = 4096;
/// Most PBKDF2 iterations accepted: a users file must not make a PLAIN login take minutes.
pub const MAX_ITERATIONS: u32 = 1_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScramHash {
    Sha256,
    Sha512,
}

impl ScramHash {
    fn h(self, data: &[u8]) -> Vec<u8> {
        match self {
            Self::Sha256 => Sha256::digest(data).to_vec(),
            Self::Sha512 => Sha512::digest(data).to_vec(),
        }
    }

    fn hmac(self, key: &[u8], data: &[u8]) -> Vec<u8> {
        // HMAC takes keys of any length; `new_from_slice` cannot fail for it.
        match self {
            Self::Sha256 => Hmac::<Sha256>::new_from_slice(key)
                .map(|m| m.chain_update(data).finalize().into_bytes().to_vec())
                .unwrap_or_default(),
            Self::Sha512 => Hmac::<Sha512>::new_from_slice(key)
                .map(|m| m.chain_update(data).finalize().into_bytes().to_vec())
                .unwrap_or_default(),
        }
    }

    fn salted_password(self, password: &[u8], salt: &[u8], iterations: u32) -> Vec<u8> {
        match self {
            Self::Sha256 => {
                pbkdf2::pbkdf2_hmac_array::<Sha256, 32>(password, salt, iterations).to_vec()
            }
            Self::Sha512 => {
                pbkdf2::pbkdf2_hmac_array::<Sha512, 64>(password, salt, iterations).to_vec()
            }
        }
    }

    fn len(self) -> usize {
        match self {
            Self::Sha256 => 32,
            Self::Sha512 => 64,
        }
    }
}

/// What the server stores for one user and mechanism. Base64 in the users file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScramCredential {
    #[serde(with = "b64")]
    pub salt: Vec<u8>,
    pub iterations: u32,
    #[serde(with = "b64")]
    pub stored_key: Vec<u8>,
    #[serde(with = "b64")]
    pub server_key: Vec<u8>,
}

impl ScramCredential {
    /// The credential for `password` (RFC 5802 section 3).
    pub fn derive(hash: ScramHash, password: &[u8], salt: &[u8], iterations: u32) -> Self {
        let salted = hash.salted_password(password, salt, iterations);
        let client_key = hash.hmac(&salted, b"Client Key");
        Self {
            salt: salt.to_vec(),
            iterations,
            stored_key: hash.h(&client_key),
            server_key: hash.hmac(&salted, b"Server Key"),
        }
    }

    /// Whether `password` is the one this credential was derived from (PLAIN against a users
    /// file), in constant time over the keys.
    pub fn matches_password(&self, hash: ScramHash, password: &[u8]) -> bool {
        let derived = Self::derive(hash, password, &self.salt, self.iterations);
        bool::from(derived.stored_key.ct_eq(&self.stored_key))
    }

    /// Problems that make the credential unusable with `hash`.
    pub fn problem(&self, hash: ScramHash) -> Option<String> {
        if !(MIN_ITERATIONS..=MAX_ITERATIONS).contains(&self.iterations) {
            return Some(format!(
                "iterations {} not within {MIN_ITERATIONS}..={MAX_ITERATIONS}",
                self.iterations
            ));
        }
        if self.stored_key.len() != hash.len() || self.server_key.len() != hash.len() {
            return Some(format!(
                "stored_key and server_key must be {} bytes",
                hash.len()
            ));
        }
        if self.salt.is_empty() {
            return Some("salt must not be empty".into());
        }
        None
    }
}

mod b64 {
    use super::*;

    pub fn serialize<S: serde::Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&B64.encode(v))
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        B64.decode(text.trim()).map_err(serde::de::Error::custom)
    }
}

/// Why an exchange failed. Messages are safe to send to the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScramError {
    #[error("malformed SCRAM message: {0}")]
    Malformed(&'static str),
    #[error("channel binding is not supported")]
    ChannelBinding,
    #[error("delegation tokens are not supported")]
    TokenAuth,
    #[error("authorization id differs from the username")]
    AuthzId,
    #[error("invalid credentials")]
    InvalidCredentials,
}

/// The client's first message, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientFirst {
    pub username: String,
    nonce: String,
    /// `client-first-message-bare`, part of the signed AuthMessage.
    bare: String,
    /// The GS2 header, which the final message repeats base64-encoded in `c=`.
    gs2_header: String,
}

impl ClientFirst {
    pub fn parse(message: &[u8]) -> Result<Self, ScramError> {
        let text = std::str::from_utf8(message).map_err(|_| ScramError::Malformed("not UTF-8"))?;
        let mut parts = text.splitn(3, ',');
        let cbind = parts.next().ok_or(ScramError::Malformed("no GS2 header"))?;
        match cbind {
            "n" | "y" => {}
            c if c.starts_with("p=") => return Err(ScramError::ChannelBinding),
            _ => return Err(ScramError::Malformed("bad channel binding flag")),
        }
        let authzid = parts.next().ok_or(ScramError::Malformed("no GS2 header"))?;
        let bare = parts.next().ok_or(ScramError::Malformed("no username"))?;
        let gs2_header = format!("{cbind},{authzid},");
        let mut fields = bare.split(',');
        let username = fields
            .next()
            .and_then(|f| f.strip_prefix("n="))
            .ok_or(ScramError::Malformed("no username"))
            .and_then(decode_saslname)?;
        let nonce = fields
            .next()
            .and_then(|f| f.strip_prefix("r="))
            .ok_or(ScramError::Malformed("no nonce"))?;
        if nonce.is_empty() || !nonce.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
            return Err(ScramError::Malformed("nonce must be printable"));
        }
        for extension in fields {
            let (key, value) = extension
                .split_once('=')
                .ok_or(ScramError::Malformed("bad extension"))?;
            if key == "tokenauth" && value.eq_ignore_ascii_case("true") {
                return Err(ScramError::TokenAuth);
            }
        }
        if !authzid.is_empty() {
            let id = authzid
                .strip_prefix("a=")
                .ok_or(ScramError::Malformed("bad authorization id"))
                .and_then(decode_saslname)?;
            if id != username {
                return Err(ScramError::AuthzId);
            }
        }
        if username.is_empty() {
            return Err(ScramError::Malformed("empty username"));
        }
        Ok(Self {
            username,
            nonce: nonce.to_string(),
            bare: bare.to_string(),
            gs2_header,
        })
    }
}

/// `=2C` is `,` and `=3D` is `=`; any other `=` is invalid (RFC 5802 section 5.1).
fn decode_saslname(name: &str) -> Result<String, ScramError> {
    let mut out = String::with_capacity(name.len());
    let mut rest = name;
    while let Some(at) = rest.find('=') {
        out.push_str(&rest[..at]);
        match rest.get(at..at + 3) {
            Some("=2C") => out.push(','),
            Some("=3D") => out.push('='),
            _ => return Err(ScramError::Malformed("bad '=' escape in name")),
        }
        rest = &rest[at + 3..];
    }
    out.push_str(rest);
    Ok(out)
}

/// The server between its first message and the client's final one.
#[derive(Debug, Clone)]
pub struct ServerFirst {
    hash: ScramHash,
    client: ClientFirst,
    credential: ScramCredential,
    nonce: String,
    message: String,
}

impl ServerFirst {
    /// Answers `client` for `credential`, adding `server_nonce` (printable, no commas) to the
    /// client's nonce.
    pub fn new(
        hash: ScramHash,
        client: ClientFirst,
        credential: ScramCredential,
        server_nonce: &str,
    ) -> Self {
        let nonce = format!("{}{server_nonce}", client.nonce);
        let message = format!(
            "r={nonce},s={},i={}",
            B64.encode(&credential.salt),
            credential.iterations
        );
        Self {
            hash,
            client,
            credential,
            nonce,
            message,
        }
    }

    pub fn username(&self) -> &str {
        &self.client.username
    }

    pub fn message(&self) -> &[u8] {
        self.message.as_bytes()
    }

    /// Checks the client's proof; on success the server's final message (`v=`), which proves
    /// to the client that the server knew its credential.
    pub fn finish(&self, client_final: &[u8]) -> Result<Vec<u8>, ScramError> {
        let text =
            std::str::from_utf8(client_final).map_err(|_| ScramError::Malformed("not UTF-8"))?;
        let (without_proof, proof) = text
            .rsplit_once(",p=")
            .ok_or(ScramError::Malformed("no proof"))?;
        let mut fields = without_proof.split(',');
        let binding = fields
            .next()
            .and_then(|f| f.strip_prefix("c="))
            .ok_or(ScramError::Malformed("no channel binding"))?;
        if B64.decode(binding).ok().as_deref() != Some(self.client.gs2_header.as_bytes()) {
            return Err(ScramError::Malformed(
                "channel binding differs from GS2 header",
            ));
        }
        let nonce = fields
            .next()
            .and_then(|f| f.strip_prefix("r="))
            .ok_or(ScramError::Malformed("no nonce"))?;
        // librdkafka before 2.6.1 sends its own nonce once more in front of the combined one
        // (confluentinc/librdkafka#4895); Kafka 3.8.1-3.9 accept that, and so does the proxy:
        // the server's nonce is still there and the proof signs the message as sent.
        let doubled = nonce
            .strip_prefix(self.client.nonce.as_str())
            .is_some_and(|rest| rest == self.nonce);
        if nonce != self.nonce && !doubled {
            return Err(ScramError::Malformed("nonce differs"));
        }
        let proof = B64
            .decode(proof)
            .map_err(|_| ScramError::Malformed("proof is not base64"))?;
        if proof.len() != self.hash.len() {
            return Err(ScramError::Malformed("proof has the wrong length"));
        }
        let auth_message = format!("{},{},{without_proof}", self.client.bare, self.message);
        let hash = self.hash;
        let signature = hash.hmac(&self.credential.stored_key, auth_message.as_bytes());
        let client_key: Vec<u8> = proof.iter().zip(&signature).map(|(p, s)| p ^ s).collect();
        if !bool::from(hash.h(&client_key).ct_eq(&self.credential.stored_key)) {
            return Err(ScramError::InvalidCredentials);
        }
        let server_signature = hash.hmac(&self.credential.server_key, auth_message.as_bytes());
        Ok(format!("v={}", B64.encode(server_signature)).into_bytes())
    }
}

/// A server nonce: 32 random letters and digits, as Kafka makes them (librdkafka 1.x
/// mis-reads nonces with base64's `+`, `/` or `=`).
pub fn new_nonce() -> String {
    use rand::distr::{Alphanumeric, SampleString};
    Alphanumeric.sample_string(&mut rand::rng(), 32)
}

/// A fresh random salt for new credentials.
pub fn new_salt() -> Vec<u8> {
    let bytes: [u8; 16] = rand::random();
    bytes.to_vec()
}
