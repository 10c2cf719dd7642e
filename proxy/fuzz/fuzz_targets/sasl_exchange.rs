//! The SASL exchange on untrusted tokens: SaslHandshake with any mechanism name, then
//! SaslAuthenticate tokens (PLAIN, SCRAM first and final messages) in any order, through the
//! connection's state machine against a users file. Must never panic.
#![no_main]

use std::sync::{Arc, OnceLock};

use kafka_iggy_proxy::config::{SaslMechanism, SaslSettings, SaslUsers};
use kafka_iggy_proxy::security::sasl::{SaslListener, SaslSession};
use kafka_iggy_proxy::security::scram::{ClientFirst, ScramCredential, ScramHash, ServerFirst};
use kafka_iggy_proxy::security::users::credential_entry;
use kafka_protocol::messages::ApiKey;
use libfuzzer_sys::fuzz_target;

fn listener() -> Arc<SaslListener> {
    static LISTENER: OnceLock<Arc<SaslListener>> = OnceLock::new();
    LISTENER
        .get_or_init(|| {
            let path = std::env::temp_dir().join(format!("sasl-fuzz-users-{}.yaml", std::process::id()));
            let users = credential_entry(
                "alice",
                b"secret",
                &[SaslMechanism::ScramSha256, SaslMechanism::ScramSha512],
                4096,
            )
            .expect("entry");
            std::fs::write(&path, users).expect("users file");
            let settings = SaslSettings {
                mechanisms: SaslMechanism::ALL.to_vec(),
                users: SaslUsers::File(path),
                session_lifetime_ms: None,
            };
            Arc::new(SaslListener::new(&settings, None).expect("listener"))
        })
        .clone()
}

fuzz_target!(|data: &[u8]| {
    // Parsers on their own.
    let _ = kafka_iggy_proxy::security::sasl::parse_plain(data);
    if let Ok(first) = ClientFirst::parse(data) {
        let credential = ScramCredential::derive(ScramHash::Sha256, b"x", b"salt", 1);
        let server = ServerFirst::new(ScramHash::Sha256, first, credential, "n");
        let _ = server.finish(data);
    }
    // The state machine: the first byte picks the mechanism, then tokens separated by 0xff.
    let Some((&pick, rest)) = data.split_first() else { return };
    let mechanism = match pick % 4 {
        0 => "PLAIN",
        1 => "SCRAM-SHA-256",
        2 => "SCRAM-SHA-512",
        _ => std::str::from_utf8(rest).unwrap_or("GSSAPI"),
    };
    let session = SaslSession::new(listener());
    let _ = session.handshake(mechanism);
    for token in rest.split(|b| *b == 0xff).take(4) {
        let _ = futures::executor::block_on(session.authenticate(token));
        let _ = session.admit(ApiKey::Produce);
        let _ = session.handshake(mechanism);
    }
});
