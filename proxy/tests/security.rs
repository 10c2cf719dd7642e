//! Listener security: the SCRAM exchange against RFC 7677's vector and an independent client
//! computation, the SASL state machine through the real proxy (memory back end), the users
//! file and certificate reloads, listeners and their advertised addresses.

mod wire;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use bytes::Bytes;
use hmac::{Hmac, Mac};
use kafka_iggy_proxy::config::{
    BackendKind, Cli, ListenerConfig, ListenerTls, ProxyConfig, SaslMechanism, SaslSettings,
    SaslUsers, SecurityProtocol,
};
use kafka_iggy_proxy::security::sasl::parse_plain;
use kafka_iggy_proxy::security::scram::{
    ClientFirst, ScramCredential, ScramError, ScramHash, ServerFirst,
};
use kafka_iggy_proxy::security::tls::{certificate_principal, TlsSource};
use kafka_iggy_proxy::security::users::{credential_entry, UsersFile};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use sha2::{Digest, Sha512};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use wire::{local_config, start_configured, Wire};

// ---------------------------------------------------------------------------------------------
// SCRAM

#[test]
fn scram_sha_256_matches_rfc_7677() {
    let salt = B64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").expect("salt");
    let credential = ScramCredential::derive(ScramHash::Sha256, b"pencil", &salt, 4096);
    let client = ClientFirst::parse(b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO").expect("client first");
    assert_eq!(client.username, "user");
    let server = ServerFirst::new(
        ScramHash::Sha256,
        client,
        credential,
        "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0",
    );
    assert_eq!(
        server.message(),
        b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
    );
    let last = server
        .finish(b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=")
        .expect("proof accepted");
    assert_eq!(last, b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=");
    // One changed proof byte fails.
    assert_eq!(
        server.finish(b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=eHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="),
        Err(ScramError::InvalidCredentials)
    );
}

/// A SCRAM-SHA-512 client written from RFC 5802 with the hash primitives directly.
fn sha512_client_final(password: &[u8], client_bare: &str, server_first: &str) -> String {
    let nonce = &server_first.split(',').next().expect("nonce")[2..];
    sha512_client_final_signed(password, client_bare, server_first, nonce)
}

/// The client's final message with its proof, sending `nonce` (librdkafka < 2.6.1 sends its
/// own nonce twice).
fn sha512_client_final_signed(
    password: &[u8],
    client_bare: &str,
    server_first: &str,
    nonce: &str,
) -> String {
    let fields: Vec<&str> = server_first.split(',').collect();
    let salt = B64.decode(&fields[1][2..]).expect("salt");
    let iterations: u32 = fields[2][2..].parse().expect("iterations");
    let salted = pbkdf2::pbkdf2_hmac_array::<Sha512, 64>(password, &salt, iterations);
    let mac = |key: &[u8], data: &[u8]| {
        Hmac::<Sha512>::new_from_slice(key)
            .expect("key")
            .chain_update(data)
            .finalize()
            .into_bytes()
            .to_vec()
    };
    let client_key = mac(&salted, b"Client Key");
    let stored_key = Sha512::digest(&client_key);
    let without_proof = format!("c=biws,r={nonce}");
    let auth = format!("{client_bare},{server_first},{without_proof}");
    let signature = mac(&stored_key, auth.as_bytes());
    let proof: Vec<u8> = client_key
        .iter()
        .zip(signature)
        .map(|(k, s)| k ^ s)
        .collect();
    format!("{without_proof},p={}", B64.encode(proof))
}

#[test]
fn scram_sha_512_accepts_the_right_password_only() {
    let credential = ScramCredential::derive(ScramHash::Sha512, b"s3cret", b"salty", 4096);
    for (password, ok) in [(&b"s3cret"[..], true), (b"wrong", false)] {
        let bare = "n=alice,r=abcdef";
        let client = ClientFirst::parse(format!("n,,{bare}").as_bytes()).expect("parse");
        let server = ServerFirst::new(ScramHash::Sha512, client, credential.clone(), "xyz");
        let first = std::str::from_utf8(server.message())
            .expect("utf8")
            .to_string();
        let last = sha512_client_final(password, bare, &first);
        assert_eq!(server.finish(last.as_bytes()).is_ok(), ok);
    }
    // librdkafka < 2.6.1 repeats its nonce in front of the combined one: accepted, as Kafka
    // 3.8.1-3.9 do; any other nonce is not.
    let bare = "n=alice,r=abcdef";
    let client = ClientFirst::parse(format!("n,,{bare}").as_bytes()).expect("parse");
    let server = ServerFirst::new(ScramHash::Sha512, client, credential.clone(), "xyz");
    let first = std::str::from_utf8(server.message())
        .expect("utf8")
        .to_string();
    let doubled = sha512_client_final_signed(b"s3cret", bare, &first, "abcdefabcdefxyz");
    assert!(server.finish(doubled.as_bytes()).is_ok());
    let other = sha512_client_final_signed(b"s3cret", bare, &first, "zzzzzzabcdefxyz");
    assert!(server.finish(other.as_bytes()).is_err());
    assert!(credential.matches_password(ScramHash::Sha512, b"s3cret"));
    assert!(!credential.matches_password(ScramHash::Sha512, b"s3cre"));
}

#[test]
fn scram_client_first_edge_cases() {
    let parse = |m: &str| ClientFirst::parse(m.as_bytes());
    assert_eq!(
        parse("p=tls-unique,,n=a,r=x"),
        Err(ScramError::ChannelBinding)
    );
    assert_eq!(
        parse("n,,n=a,r=x,tokenauth=true"),
        Err(ScramError::TokenAuth)
    );
    assert_eq!(parse("n,a=b,n=a,r=x"), Err(ScramError::AuthzId));
    assert_eq!(parse("n,a=a,n=a,r=x").expect("same authzid").username, "a");
    assert_eq!(
        parse("n,,n=a=2Cb=3Dc,r=x").expect("escapes").username,
        "a,b=c"
    );
    assert!(parse("n,,n=a=4,r=x").is_err());
    assert!(parse("n,,n=a").is_err());
    assert!(parse("n,,n=,r=x").is_err());
    assert!(parse("").is_err());
    assert!(ClientFirst::parse(&[0xff, 0xfe]).is_err());
    // Extensions other than tokenauth are tolerated (Kafka sends none by default).
    assert!(parse("n,,n=a,r=x,ext=1").is_ok());
}

#[test]
fn plain_tokens() {
    assert_eq!(parse_plain(b"\0alice\0pw"), Ok(("alice", "pw")));
    assert_eq!(parse_plain(b"alice\0alice\0pw"), Ok(("alice", "pw")));
    assert!(parse_plain(b"bob\0alice\0pw").is_err());
    assert!(parse_plain(b"\0alice\0").is_err());
    assert!(parse_plain(b"\0alice").is_err());
    assert!(parse_plain(b"\0a\0b\0c").is_err());
}

// ---------------------------------------------------------------------------------------------
// Configuration

fn resolve(args: &[&str]) -> Result<ProxyConfig, String> {
    use clap::Parser;
    let cli = Cli::try_parse_from(std::iter::once("kafka-iggy-proxy").chain(args.iter().copied()))
        .map_err(|e| e.to_string())?;
    ProxyConfig::resolve(cli, Vec::new()).map_err(|e| e.to_string())
}

fn temp_dir(name: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("kafka-iggy-security-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

#[test]
fn config_errors_are_readable() {
    let e = resolve(&["--security-protocol", "SSL"]).expect_err("no cert");
    assert!(e.contains("SSL needs tls.cert_file"), "{e}");
    let e = resolve(&["--sasl-mechanisms", "PLAIN", "--sasl-users", "passthrough"])
        .expect_err("sasl on plaintext");
    assert!(e.contains("sasl settings need security_protocol"), "{e}");
    let e = resolve(&[
        "--security-protocol",
        "SASL_PLAINTEXT",
        "--sasl-mechanisms",
        "SCRAM-SHA-256",
        "--sasl-users",
        "passthrough",
    ])
    .expect_err("scram passthrough");
    assert!(e.contains("passthrough works with PLAIN only"), "{e}");
    let e = resolve(&["--sasl-mechanisms", "GSSAPI"]).expect_err("unknown mechanism");
    assert!(e.contains("unknown SASL mechanism"), "{e}");

    let dir = temp_dir("config");
    let yaml = dir.join("proxy.yaml");
    std::fs::write(
        &yaml,
        "listeners:\n  - {name: A, listen: '127.0.0.1:9092'}\n  - {name: A, listen: '127.0.0.1:9092'}\n  - {name: B, listen: '127.0.0.1:9093', security_protocol: SASL_SSL}\n",
    )
    .expect("write");
    let e = resolve(&["--config", yaml.to_str().expect("path")]).expect_err("duplicates");
    assert!(e.contains("listener name A is used twice"), "{e}");
    assert!(e.contains("port 9092 is used by another listener"), "{e}");
    assert!(
        e.contains("listener B: security_protocol SASL_SSL needs tls"),
        "{e}"
    );
    assert!(
        e.contains("listener B: security_protocol SASL_SSL needs sasl"),
        "{e}"
    );
    std::fs::write(
        &yaml,
        "listen: '127.0.0.1:9000'\nlisteners:\n  - {name: A, listen: '127.0.0.1:9092'}\n",
    )
    .expect("write");
    let e = resolve(&["--config", yaml.to_str().expect("path")]).expect_err("both forms");
    assert!(e.contains("with `listeners`, set them per listener"), "{e}");
}

#[test]
fn advertised_addresses_name_environment_variables() {
    use clap::Parser;
    let dir = temp_dir("env");
    let yaml = dir.join("proxy.yaml");
    std::fs::write(
        &yaml,
        "listeners:\n  - {name: EXTERNAL, listen: '127.0.0.1:9094', advertised_address: '${POD_NAME}.bridge.ns.svc:9094'}\n",
    )
    .expect("write");
    let cli = |args: &[&str]| {
        Cli::try_parse_from(std::iter::once("kafka-iggy-proxy").chain(args.iter().copied()))
            .expect("flags")
    };
    let args = ["--config", yaml.to_str().expect("path")];
    let env = vec![("POD_NAME".to_string(), "bridge-1".to_string())];
    let config = ProxyConfig::resolve(cli(&args), env).expect("valid");
    assert_eq!(
        config.listeners()[0].advertised().expect("address"),
        ("bridge-1.bridge.ns.svc".to_string(), 9094)
    );
    let e = ProxyConfig::resolve(cli(&args), Vec::new())
        .expect_err("unset")
        .to_string();
    assert!(
        e.contains("environment variable POD_NAME is not set"),
        "{e}"
    );
}

#[test]
fn single_listener_flags_and_env_twins() {
    use clap::CommandFactory;
    let envs: Vec<String> = Cli::command()
        .get_arguments()
        .filter_map(|a| a.get_env().map(|e| e.to_string_lossy().into_owned()))
        .collect();
    for env in [
        "KAFKA_IGGY_SECURITY_PROTOCOL",
        "KAFKA_IGGY_TLS_CERT_FILE",
        "KAFKA_IGGY_TLS_KEY_FILE",
        "KAFKA_IGGY_TLS_CLIENT_CA_FILE",
        "KAFKA_IGGY_SASL_MECHANISMS",
        "KAFKA_IGGY_SASL_USERS",
    ] {
        assert!(envs.iter().any(|e| e == env), "{env} missing");
    }
    let dir = temp_dir("flags");
    let users = dir.join("users.yaml");
    std::fs::write(&users, "users: {}\n").expect("write");
    let config = resolve(&[
        "--listen",
        "127.0.0.1:0",
        "--security-protocol",
        "SASL_PLAINTEXT",
        "--sasl-mechanisms",
        "PLAIN,SCRAM-SHA-512",
        "--sasl-users",
        users.to_str().expect("path"),
    ])
    .expect("valid");
    let listeners = config.listeners();
    assert_eq!(listeners.len(), 1);
    assert_eq!(listeners[0].name, "SASL_PLAINTEXT");
    let sasl = listeners[0].sasl.as_ref().expect("sasl");
    assert_eq!(
        sasl.mechanisms,
        [SaslMechanism::Plain, SaslMechanism::ScramSha512]
    );
    assert_eq!(sasl.users, SaslUsers::File(users));
}

// ---------------------------------------------------------------------------------------------
// The SASL state machine, through the proxy

const PASSWORD: &str = "alice-secret";

fn users_file(dir: &Path, user: &str, password: &str) -> PathBuf {
    let path = dir.join("users.yaml");
    let yaml = credential_entry(
        user,
        password.as_bytes(),
        &[SaslMechanism::ScramSha256, SaslMechanism::ScramSha512],
        4096,
    )
    .expect("entry");
    UsersFile::parse(&yaml).expect("entry parses back");
    std::fs::write(&path, yaml).expect("write users");
    path
}

fn sasl_listener(name: &str, users: &Path, lifetime_ms: Option<u64>) -> ListenerConfig {
    ListenerConfig {
        name: name.into(),
        listen: "127.0.0.1:0".parse().expect("addr"),
        advertised_address: None,
        security_protocol: SecurityProtocol::SaslPlaintext,
        tls: None,
        sasl: Some(SaslSettings {
            mechanisms: SaslMechanism::ALL.to_vec(),
            users: SaslUsers::File(users.to_path_buf()),
            session_lifetime_ms: lifetime_ms,
        }),
    }
}

fn plaintext_listener(name: &str, advertised: &str) -> ListenerConfig {
    ListenerConfig {
        name: name.into(),
        listen: "127.0.0.1:0".parse().expect("addr"),
        advertised_address: Some(advertised.into()),
        security_protocol: SecurityProtocol::Plaintext,
        tls: None,
        sasl: None,
    }
}

async fn start_with(listeners: Vec<ListenerConfig>) -> kafka_iggy_proxy::Proxy {
    let config = ProxyConfig {
        listeners,
        ..local_config(BackendKind::Memory)
    };
    let config = ProxyConfig {
        listen: ProxyConfig::default().listen,
        ..config
    };
    start_configured(config).await.expect("proxy starts")
}

async fn handshake(wire: &mut Wire, mechanism: &'static str) -> i16 {
    let request =
        SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str(mechanism));
    match wire
        .call(
            ApiKey::SaslHandshake,
            1,
            RequestKind::SaslHandshake(request),
        )
        .await
    {
        ResponseKind::SaslHandshake(r) => r.error_code,
        other => panic!("{other:?}"),
    }
}

async fn authenticate(wire: &mut Wire, token: Vec<u8>) -> SaslAuthenticateResponse {
    let request = SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from(token));
    match wire
        .call(
            ApiKey::SaslAuthenticate,
            2,
            RequestKind::SaslAuthenticate(request),
        )
        .await
    {
        ResponseKind::SaslAuthenticate(r) => r,
        other => panic!("{other:?}"),
    }
}

async fn plain_login(wire: &mut Wire, user: &str, password: &str) -> SaslAuthenticateResponse {
    assert_eq!(handshake(wire, "PLAIN").await, 0);
    authenticate(wire, format!("\0{user}\0{password}").into_bytes()).await
}

async fn metadata(wire: &mut Wire) -> MetadataResponse {
    match wire
        .call(
            ApiKey::Metadata,
            12,
            RequestKind::Metadata(MetadataRequest::default().with_topics(None)),
        )
        .await
    {
        ResponseKind::Metadata(r) => r,
        other => panic!("{other:?}"),
    }
}

fn addr_of(proxy: &kafka_iggy_proxy::Proxy, name: &str) -> std::net::SocketAddr {
    proxy
        .listener_addrs
        .iter()
        .find(|(n, _)| n == name)
        .expect("listener")
        .1
}

#[tokio::test]
async fn unauthenticated_requests_close_the_connection() {
    let dir = temp_dir("unauth");
    let users = users_file(&dir, "alice", PASSWORD);
    let proxy = start_with(vec![sasl_listener("SASL", &users, None)]).await;
    let addr = addr_of(&proxy, "SASL");
    let mut wire = Wire::connect(addr).await;
    // ApiVersions is served before authentication, and advertises the SASL APIs.
    let versions = wire
        .call(
            ApiKey::ApiVersions,
            3,
            RequestKind::ApiVersions(ApiVersionsRequest::default()),
        )
        .await;
    let ResponseKind::ApiVersions(versions) = versions else {
        panic!("{versions:?}")
    };
    assert!(versions
        .api_keys
        .iter()
        .any(|k| k.api_key == ApiKey::SaslAuthenticate as i16 && k.max_version == 2));
    let (_, frame) = wire
        .encode_request(
            ApiKey::Metadata,
            12,
            &RequestKind::Metadata(MetadataRequest::default()),
        )
        .expect("encode");
    wire.send_raw(&frame).await;
    assert!(wire.is_closed().await, "Metadata before SASL must close");

    // An unknown mechanism is answered with the list, then the connection is closed.
    let mut wire = Wire::connect(addr).await;
    let request =
        SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str("GSSAPI"));
    let ResponseKind::SaslHandshake(r) = wire
        .call(
            ApiKey::SaslHandshake,
            1,
            RequestKind::SaslHandshake(request),
        )
        .await
    else {
        panic!()
    };
    assert_eq!(r.error_code, 33, "UNSUPPORTED_SASL_MECHANISM");
    assert_eq!(r.mechanisms.len(), 3);
    proxy.shutdown().await;
}

#[tokio::test]
async fn plain_and_scram_against_the_users_file() {
    let dir = temp_dir("exchange");
    let users = users_file(&dir, "alice", PASSWORD);
    let proxy = start_with(vec![sasl_listener("SASL", &users, None)]).await;
    let addr = addr_of(&proxy, "SASL");

    let mut wire = Wire::connect(addr).await;
    let ok = plain_login(&mut wire, "alice", PASSWORD).await;
    assert_eq!(ok.error_code, 0, "{:?}", ok.error_message);
    assert_eq!(metadata(&mut wire).await.brokers.len(), 1);

    for (user, password) in [("alice", "wrong"), ("mallory", PASSWORD)] {
        let mut wire = Wire::connect(addr).await;
        let failed = plain_login(&mut wire, user, password).await;
        assert_eq!(failed.error_code, 58, "SASL_AUTHENTICATION_FAILED");
        let message = failed.error_message.expect("message").to_string();
        assert!(message.contains("invalid credentials"), "{message}");
        // The connection is closed at the next request.
        let (_, frame) = wire
            .encode_request(
                ApiKey::ApiVersions,
                3,
                &RequestKind::ApiVersions(ApiVersionsRequest::default()),
            )
            .expect("encode");
        wire.send_raw(&frame).await;
        assert!(wire.is_closed().await);
    }

    // SCRAM-SHA-512 with the client computation above.
    for (password, ok) in [(PASSWORD, true), ("wrong", false)] {
        let mut wire = Wire::connect(addr).await;
        assert_eq!(handshake(&mut wire, "SCRAM-SHA-512").await, 0);
        let bare = "n=alice,r=clientnonce";
        let first = authenticate(&mut wire, format!("n,,{bare}").into_bytes()).await;
        assert_eq!(first.error_code, 0);
        let server_first = String::from_utf8(first.auth_bytes.to_vec()).expect("utf8");
        assert!(server_first.starts_with("r=clientnonce"));
        let last = sha512_client_final(password.as_bytes(), bare, &server_first);
        let done = authenticate(&mut wire, last.into_bytes()).await;
        assert_eq!(done.error_code == 0, ok, "{:?}", done.error_message);
        if ok {
            assert!(done.auth_bytes.starts_with(b"v="));
            assert_eq!(metadata(&mut wire).await.brokers.len(), 1);
        }
    }
    // SCRAM for an unknown user fails at the first message.
    let mut wire = Wire::connect(addr).await;
    assert_eq!(handshake(&mut wire, "SCRAM-SHA-256").await, 0);
    let first = authenticate(&mut wire, b"n,,n=mallory,r=abc".to_vec()).await;
    assert_eq!(first.error_code, 58);
    proxy.shutdown().await;
}

#[tokio::test]
async fn sessions_expire_unless_reauthenticated() {
    let dir = temp_dir("lifetime");
    let users = users_file(&dir, "alice", PASSWORD);
    std::fs::write(
        dir.join("more.yaml"),
        std::fs::read_to_string(&users).expect("read"),
    )
    .expect("write");
    let proxy = start_with(vec![sasl_listener("SASL", &users, Some(400))]).await;
    let addr = addr_of(&proxy, "SASL");

    // Re-authenticating before the end keeps the connection.
    let mut wire = Wire::connect(addr).await;
    let ok = plain_login(&mut wire, "alice", PASSWORD).await;
    assert_eq!(ok.error_code, 0);
    assert_eq!(ok.session_lifetime_ms, 400);
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert_eq!(
        plain_login(&mut wire, "alice", PASSWORD).await.error_code,
        0
    );
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert_eq!(metadata(&mut wire).await.brokers.len(), 1);

    // Without it, the first request after the end closes the connection.
    tokio::time::sleep(Duration::from_millis(250)).await;
    let (_, frame) = wire
        .encode_request(
            ApiKey::Metadata,
            12,
            &RequestKind::Metadata(MetadataRequest::default()),
        )
        .expect("encode");
    wire.send_raw(&frame).await;
    assert!(wire.is_closed().await, "expired session must close");

    // Re-authentication must keep the mechanism.
    let mut wire = Wire::connect(addr).await;
    assert_eq!(
        plain_login(&mut wire, "alice", PASSWORD).await.error_code,
        0
    );
    assert_eq!(
        handshake(&mut wire, "SCRAM-SHA-256").await,
        34,
        "ILLEGAL_SASL_STATE"
    );
    proxy.shutdown().await;
}

#[tokio::test]
async fn users_file_changes_apply_to_new_logins() {
    let dir = temp_dir("users-reload");
    let users = users_file(&dir, "alice", PASSWORD);
    let proxy = start_with(vec![sasl_listener("SASL", &users, None)]).await;
    let addr = addr_of(&proxy, "SASL");
    let login = |user: &'static str, password: &'static str| async move {
        let mut wire = Wire::connect(addr).await;
        plain_login(&mut wire, user, password).await.error_code
    };
    assert_eq!(login("alice", PASSWORD).await, 0);
    // Rewritten with a new user and password: the old one no longer works.
    tokio::time::sleep(Duration::from_millis(20)).await;
    users_file(&dir, "bob", "bob-secret");
    assert_eq!(login("bob", "bob-secret").await, 0);
    assert_eq!(login("alice", PASSWORD).await, 58);
    // A broken file keeps the users read before.
    tokio::time::sleep(Duration::from_millis(20)).await;
    std::fs::write(&users, "users: [not, a, map]\n").expect("write");
    assert_eq!(login("bob", "bob-secret").await, 0);
    proxy.shutdown().await;
}

#[tokio::test]
async fn metadata_advertises_the_listener_the_client_used() {
    let dir = temp_dir("advertise");
    let users = users_file(&dir, "alice", PASSWORD);
    let proxy = start_with(vec![
        plaintext_listener("INTERNAL", "internal.example:9092"),
        ListenerConfig {
            advertised_address: Some("external.example:9094".into()),
            ..sasl_listener("EXTERNAL", &users, None)
        },
    ])
    .await;
    let mut internal = Wire::connect(addr_of(&proxy, "INTERNAL")).await;
    let brokers = metadata(&mut internal).await.brokers;
    assert_eq!(
        (brokers[0].host.to_string(), brokers[0].port),
        ("internal.example".to_string(), 9092)
    );
    let mut external = Wire::connect(addr_of(&proxy, "EXTERNAL")).await;
    assert_eq!(
        plain_login(&mut external, "alice", PASSWORD)
            .await
            .error_code,
        0
    );
    let brokers = metadata(&mut external).await.brokers;
    assert_eq!(
        (brokers[0].host.to_string(), brokers[0].port),
        ("external.example".to_string(), 9094)
    );
    let ResponseKind::DescribeCluster(cluster) = external
        .call(
            ApiKey::DescribeCluster,
            0,
            RequestKind::DescribeCluster(DescribeClusterRequest::default()),
        )
        .await
    else {
        panic!()
    };
    assert_eq!(cluster.brokers[0].port, 9094);
    let request = FindCoordinatorRequest::default().with_key(StrBytes::from_static_str("g"));
    let ResponseKind::FindCoordinator(found) = external
        .call(
            ApiKey::FindCoordinator,
            3,
            RequestKind::FindCoordinator(request),
        )
        .await
    else {
        panic!()
    };
    assert_eq!(
        (found.host.to_string(), found.port),
        ("external.example".into(), 9094)
    );
    // SASL requests on a listener without SASL are refused.
    assert_eq!(handshake(&mut internal, "PLAIN").await, 34);
    proxy.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// TLS

type Ca = rcgen::CertifiedIssuer<'static, rcgen::KeyPair>;

fn new_ca(name: &str) -> Ca {
    let key = rcgen::KeyPair::generate().expect("key");
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    rcgen::CertifiedIssuer::self_signed(params, key).expect("ca")
}

/// A certificate for `cn` (also valid for localhost) and its key, in PEM.
fn leaf(ca: &Ca, cn: &str) -> (String, String) {
    let key = rcgen::KeyPair::generate().expect("key");
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).expect("params");
    // Most general first (rcgen starts with a CN of its own): RFC 2253 writes them reversed,
    // `CN=...,O=example`, as Kafka shows a certificate's principal.
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationName, "example");
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, cn);
    let cert = params.signed_by(&key, ca).expect("sign");
    (cert.pem(), key.serialize_pem())
}

fn client_config(ca: &Ca, identity: Option<(String, String)>) -> Arc<rustls::ClientConfig> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.der().clone()).expect("root");
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots);
    Arc::new(match identity {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => builder
            .with_client_auth_cert(
                vec![CertificateDer::from_pem_slice(cert.as_bytes()).expect("cert")],
                PrivateKeyDer::from_pem_slice(key.as_bytes()).expect("key"),
            )
            .expect("client auth"),
    })
}

/// Handshakes with `source` over a local socket pair; the server's certificate's subject.
async fn handshake_tls(
    source: &TlsSource,
    client: Arc<rustls::ClientConfig>,
) -> Result<(String, Option<String>), String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let acceptor = source.acceptor();
    let server = tokio::spawn(async move {
        let (socket, _) = listener.accept().await.expect("accept");
        let mut stream = acceptor.accept(socket).await.map_err(|e| e.to_string())?;
        let principal = stream
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|c| c.first())
            .and_then(|c| certificate_principal(c));
        let mut byte = [0u8; 1];
        let _ = stream.read(&mut byte).await;
        Ok::<_, String>(principal)
    });
    let socket = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
    let connector = tokio_rustls::TlsConnector::from(client);
    let result = connector.connect(name, socket).await;
    let subject = match result {
        Ok(mut stream) => {
            let cert = stream.get_ref().1.peer_certificates().expect("certs")[0].clone();
            let _ = stream.write_all(b"x").await;
            certificate_principal(&cert).expect("subject")
        }
        Err(e) => {
            let _ = server.await;
            return Err(e.to_string());
        }
    };
    let principal = server.await.expect("join")?;
    Ok((subject, principal))
}

#[tokio::test]
async fn certificates_reload_and_client_certificates_name_the_principal() {
    let dir = temp_dir("tls");
    let ca = new_ca("test-ca");
    let (cert, key) = leaf(&ca, "proxy-one");
    let cert_file = dir.join("tls.crt");
    let key_file = dir.join("tls.key");
    let ca_file = dir.join("ca.crt");
    std::fs::write(&cert_file, cert).expect("write");
    std::fs::write(&key_file, key).expect("write");
    std::fs::write(&ca_file, ca.pem()).expect("write");
    let settings = ListenerTls {
        cert_file: cert_file.clone(),
        key_file: key_file.clone(),
        client_ca_file: Some(ca_file),
        reload_interval_ms: 100,
    };
    let source = TlsSource::load(&settings).expect("loads");
    assert!(source.requires_client_cert());

    let alice = leaf(&ca, "alice");
    let (subject, principal) = handshake_tls(&source, client_config(&ca, Some(alice.clone())))
        .await
        .expect("mTLS handshake");
    assert_eq!(subject, "User:CN=proxy-one,O=example");
    assert_eq!(principal.as_deref(), Some("User:CN=alice,O=example"));

    // No client certificate, or one from another CA: refused.
    assert!(handshake_tls(&source, client_config(&ca, None))
        .await
        .is_err());
    let other = new_ca("other-ca");
    assert!(
        handshake_tls(&source, client_config(&ca, Some(leaf(&other, "eve"))))
            .await
            .is_err()
    );

    // Rotation: new handshakes get the new certificate.
    let (cert, key) = leaf(&ca, "proxy-two");
    std::fs::write(&cert_file, cert).expect("write");
    std::fs::write(&key_file, key).expect("write");
    tokio::time::sleep(Duration::from_millis(150)).await;
    let (subject, _) = handshake_tls(&source, client_config(&ca, Some(alice.clone())))
        .await
        .expect("after rotation");
    assert_eq!(subject, "User:CN=proxy-two,O=example");

    // A broken rotation (key of another certificate) keeps the loaded one.
    let (cert, _) = leaf(&ca, "proxy-three");
    std::fs::write(&cert_file, cert).expect("write");
    tokio::time::sleep(Duration::from_millis(150)).await;
    let (subject, _) = handshake_tls(&source, client_config(&ca, Some(alice)))
        .await
        .expect("still served");
    assert_eq!(subject, "User:CN=proxy-two,O=example");
}

#[test]
fn unreadable_certificates_are_startup_errors() {
    let dir = temp_dir("tls-bad");
    let cert_file = dir.join("tls.crt");
    std::fs::write(&cert_file, "not a certificate").expect("write");
    let settings = ListenerTls {
        cert_file,
        key_file: dir.join("missing.key"),
        client_ca_file: None,
        reload_interval_ms: 1000,
    };
    let e = TlsSource::load(&settings).err().expect("fails");
    assert!(e.contains("missing.key"), "{e}");
}

/// Two replicas with listeners INTERNAL and EXTERNAL: each tells a client every replica's
/// address on the listener the client used (announced through the membership log).
#[tokio::test]
async fn replicas_advertise_each_others_listener_addresses() {
    use kafka_iggy_proxy::config::MembershipKind;
    let shared = Arc::new(kafka_iggy_proxy::backend::memory::MemoryBackend::new());
    let mut replicas = Vec::new();
    for id in 0..2 {
        let mut config = ProxyConfig {
            listeners: vec![
                plaintext_listener("INTERNAL", &format!("internal-{id}.example:9092")),
                plaintext_listener("EXTERNAL", &format!("external-{id}.example:9094")),
            ],
            broker_id: id,
            ..local_config(BackendKind::Memory)
        };
        config.listen = ProxyConfig::default().listen;
        config.cluster.membership = MembershipKind::Log;
        config.cluster.lease_ms = 1_500;
        config.cluster.heartbeat_interval_ms = 300;
        let metrics = Arc::new(kafka_iggy_proxy::metrics::Metrics::new());
        let proxy = kafka_iggy_proxy::Proxy::start_with_backend(config, shared.clone(), metrics)
            .await
            .expect("replica starts");
        replicas.push(proxy);
    }
    for (listener, prefix, port) in [
        ("INTERNAL", "internal", 9092),
        ("EXTERNAL", "external", 9094),
    ] {
        let expected: Vec<(i32, String, i32)> = (0..2)
            .map(|id| (id, format!("{prefix}-{id}.example"), port))
            .collect();
        let mut wire = Wire::connect(addr_of(&replicas[1], listener)).await;
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        loop {
            let brokers: Vec<(i32, String, i32)> = metadata(&mut wire)
                .await
                .brokers
                .iter()
                .map(|b| (b.node_id.0, b.host.to_string(), b.port))
                .collect();
            if brokers == expected {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{listener}: {brokers:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    for proxy in replicas {
        proxy.shutdown().await;
    }
}
