use super::*;

fn cli(args: &[&str]) -> Cli {
    let mut full = vec!["kafka-iggy-proxy"];
    full.extend_from_slice(args);
    Cli::try_parse_from(full).expect("valid flags")
}

#[test]
fn defaults() {
    let c = ProxyConfig::resolve(cli(&[]), []).unwrap();
    assert_eq!(c.listen.to_string(), "0.0.0.0:9092");
    assert_eq!(c.backend, BackendKind::Iggy);
    assert_eq!(c.iggy.address, "127.0.0.1:8090");
    assert_eq!(c.advertised().unwrap(), ("127.0.0.1".to_string(), 9092));
    assert_eq!(c.limits.max_frame_bytes, 100 * 1024 * 1024);
}

#[test]
fn flags_override_file() {
    let dir = std::env::temp_dir().join(format!("kip-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("proxy.yaml");
    std::fs::write(
        &path,
        "default_stream: sales\ndefault_partitions: 3\ntopics:\n  orders:\n    stream: shop\n    topic: orders-v2\nlimits:\n  max_connections: 5\n",
    )
    .unwrap();
    let c = ProxyConfig::resolve(
        cli(&[
            "--config",
            path.to_str().unwrap(),
            "--default-partitions",
            "6",
        ]),
        [],
    )
    .unwrap();
    assert_eq!(c.default_stream, "sales");
    assert_eq!(c.default_partitions, 6);
    assert_eq!(c.limits.max_connections, 5);
    assert_eq!(c.topics["orders"].topic.as_deref(), Some("orders-v2"));
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn every_problem_reported_at_once() {
    let err = ProxyConfig::resolve(
        cli(&[
            "--default-partitions",
            "0",
            "--advertised-address",
            "nohost",
        ]),
        [("KAFKA_IGGY_LISTN".to_string(), "x".to_string())],
    )
    .unwrap_err();
    let text = err.to_string();
    assert!(text.contains("KAFKA_IGGY_LISTN"), "{text}");
    assert!(text.contains("default_partitions"), "{text}");
    assert!(text.contains("HOST:PORT"), "{text}");
}

#[test]
fn unknown_file_keys_are_rejected() {
    let dir = std::env::temp_dir().join(format!("kip-config-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("proxy.yaml");
    std::fs::write(&path, "default_strem: x\n").unwrap();
    let err = ProxyConfig::resolve(cli(&["--config", path.to_str().unwrap()]), []).unwrap_err();
    assert!(err.to_string().contains("default_strem"), "{err}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn iggy_tls_from_file_and_flags() {
    let dir = std::env::temp_dir().join(format!("kip-config-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ca = dir.join("ca.pem");
    std::fs::write(
        &ca,
        "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let path = dir.join("proxy.yaml");
    // A partial `iggy:` section keeps the other defaults.
    std::fs::write(
        &path,
        format!(
            "iggy:\n  address: iggy.data:8090\n  tls:\n    enabled: true\n    ca_file: {}\n",
            ca.display()
        ),
    )
    .unwrap();
    let c = ProxyConfig::resolve(
        cli(&[
            "--config",
            path.to_str().unwrap(),
            "--iggy-tls-server-name",
            "iggy.internal",
        ]),
        [],
    )
    .unwrap();
    assert_eq!(c.iggy.username, "iggy");
    assert_eq!(
        c.iggy.tls,
        IggyTls {
            enabled: true,
            ca_file: Some(ca.clone()),
            server_name: Some("iggy.internal".into()),
        }
    );
    // What the operator renders reads back the same, and TLS off leaves no `tls:` key.
    let yaml = serde_yaml::to_string(&c).unwrap();
    assert_eq!(serde_yaml::from_str::<ProxyConfig>(&yaml).unwrap(), c);
    let plain = serde_yaml::to_string(&ProxyConfig::default()).unwrap();
    assert!(!plain.contains("tls"), "{plain}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn iggy_tls_problems_are_reported() {
    let dir = std::env::temp_dir().join(format!("kip-config-tls-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let not_pem = dir.join("key.txt");
    std::fs::write(&not_pem, "just text").unwrap();
    let missing = dir.join("missing.pem");
    let text = |args: &[&str]| ProxyConfig::resolve(cli(args), []).unwrap_err().to_string();

    let err = text(&["--iggy-tls-ca-file", missing.to_str().unwrap()]);
    assert!(err.contains("need iggy.tls.enabled"), "{err}");
    assert!(err.contains("missing.pem"), "{err}");
    let err = text(&[
        "--iggy-tls",
        "true",
        "--iggy-tls-ca-file",
        not_pem.to_str().unwrap(),
    ]);
    assert!(err.contains("no PEM certificate"), "{err}");
    let err = text(&["--iggy-tls", "true", "--iggy-tls-server-name", ""]);
    assert!(err.contains("server_name must not be empty"), "{err}");
    // The memory back end never connects to Iggy: its TLS settings are not checked.
    ProxyConfig::resolve(
        cli(&[
            "--backend",
            "memory",
            "--iggy-tls-ca-file",
            missing.to_str().unwrap(),
        ]),
        [],
    )
    .unwrap();
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn memory_limits_from_flags_and_their_checks() {
    let c = ProxyConfig::resolve(
        cli(&[
            "--memory-budget-bytes",
            "335544320",
            "--max-decompressed-bytes",
            "16777216",
            "--max-fetch-bytes",
            "8388608",
        ]),
        [],
    )
    .unwrap();
    assert_eq!(c.limits.memory_budget_bytes, 320 * 1024 * 1024);
    assert_eq!(c.limits.decompressed_cap(), 16 * 1024 * 1024);
    assert_eq!(c.limits.max_fetch_bytes, 8 * 1024 * 1024);
    assert_eq!(
        ProxyConfig::default().limits.decompressed_cap(),
        100 * 1024 * 1024,
        "the decompression cap follows max_frame_bytes by default"
    );

    // Every piece of work must fit its pool of the budget, or it could never start.
    let err = ProxyConfig::resolve(cli(&["--memory-budget-bytes", "104857600"]), [])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("limits.max_frame_bytes (104857600) must be at most 3/8"),
        "{err}"
    );
    assert!(err.contains("limits.max_fetch_bytes"), "{err}");
}
