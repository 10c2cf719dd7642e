//! `spec.kafka.listeners` and `spec.iggy.fsyncOnAppend` as the proxy pods get them: the
//! `listeners:` list of the configuration file (the contract with the proxy), one container and
//! Service port per listener, per-pod advertised addresses, and the listener Secrets mounted
//! whole and read-only (so renewed certificates reach the pods without a restart), never copied
//! into the ConfigMap. The full rendering is golden/listeners.expected.yaml.
#![allow(clippy::unwrap_used, reason = "test code: a panic is a failed test")]

use std::path::Path;

use k8s_openapi::api::core::v1::PodSpec;
use kafka_iggy_operator::crd::KafkaBridge;
use kafka_iggy_operator::desired::{desired, Desired};

fn load(case: &str) -> KafkaBridge {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/golden/{case}.input.yaml"));
    serde_yaml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn config(d: &Desired) -> serde_yaml::Value {
    serde_yaml::from_str(&d.config_map.data.as_ref().unwrap()["config.yaml"]).unwrap()
}

fn pod(d: &Desired) -> &PodSpec {
    d.stateful_set
        .spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .as_ref()
        .unwrap()
}

#[test]
fn listeners_render_the_proxy_config_contract() {
    let d = desired(&load("listeners")).unwrap();
    let config = config(&d);
    let expected: serde_yaml::Value = serde_yaml::from_str(
        r#"
- {name: PLAIN, listen: "0.0.0.0:9092", advertised_address: "${POD_HOST}:9092", security_protocol: PLAINTEXT}
- name: TLS
  listen: "0.0.0.0:9093"
  advertised_address: "${POD_HOST}:9093"
  security_protocol: SSL
  tls:
    cert_file: /etc/kafka-iggy/listeners/tls/tls/tls.crt
    key_file: /etc/kafka-iggy/listeners/tls/tls/tls.key
    client_ca_file: /etc/kafka-iggy/listeners/tls/client-ca/ca.crt
- name: SASL_SSL
  listen: "0.0.0.0:9094"
  advertised_address: "${POD_HOST}:9094"
  security_protocol: SASL_SSL
  tls:
    cert_file: /etc/kafka-iggy/listeners/sasl-ssl/tls/tls.crt
    key_file: /etc/kafka-iggy/listeners/sasl-ssl/tls/tls.key
  sasl:
    mechanisms: [SCRAM-SHA-256, SCRAM-SHA-512]
    users: /etc/kafka-iggy/listeners/sasl-ssl/users/users.yaml
- name: SASL_PLAIN
  listen: "0.0.0.0:9095"
  advertised_address: "${POD_HOST}:9095"
  security_protocol: SASL_PLAINTEXT
  sasl: {mechanisms: [PLAIN], users: passthrough}
"#,
    )
    .unwrap();
    assert_eq!(config["listeners"], expected);
    // The list replaces the single listener's keys; durability follows the spec.
    assert!(config.get("listen").is_none() && config.get("advertised_address").is_none());
    assert_eq!(
        config["iggy"]["fsync_on_append"],
        serde_yaml::Value::Bool(true)
    );
    // Status: each listener with its bootstrap address; the first one is the bridge's.
    let listed: Vec<(String, String)> = d
        .listeners
        .iter()
        .map(|l| (l.name.clone(), l.bootstrap_address.clone()))
        .collect();
    assert_eq!(
        listed,
        [
            ("PLAIN", "secure.kafka.svc:9092"),
            ("TLS", "secure.kafka.svc:9093"),
            ("SASL_SSL", "secure.kafka.svc:9094"),
            ("SASL_PLAIN", "secure.kafka.svc:9095"),
        ]
        .map(|(n, a)| (n.to_string(), a.to_string()))
    );
    assert_eq!(d.bootstrap_address, "secure.kafka.svc:9092");
}

#[test]
fn without_listeners_the_single_plaintext_listener_stays_as_it_was() {
    let d = desired(&load("minimal")).unwrap();
    let config = config(&d);
    assert_eq!(config["listen"], serde_yaml::Value::from("0.0.0.0:9092"));
    assert!(config.get("listeners").is_none());
    assert_eq!(
        config["iggy"]["fsync_on_append"],
        serde_yaml::Value::Bool(false)
    );
    assert!(d.listeners.is_empty());
}

#[test]
fn every_listener_is_a_port_of_the_pods_and_of_both_services() {
    let d = desired(&load("listeners")).unwrap();
    let want = [
        ("plain", 9092),
        ("tls", 9093),
        ("sasl-ssl", 9094),
        ("sasl-plain", 9095),
        ("metrics", 9644),
    ]
    .map(|(n, p)| (n.to_string(), p));
    let container: Vec<(String, i32)> = pod(&d).containers[0]
        .ports
        .iter()
        .flatten()
        .map(|p| (p.name.clone().unwrap(), p.container_port))
        .collect();
    assert_eq!(container, want);
    for service in [&d.bootstrap_service, &d.headless_service] {
        let ports: Vec<(String, i32)> = service
            .spec
            .as_ref()
            .unwrap()
            .ports
            .iter()
            .flatten()
            .map(|p| (p.name.clone().unwrap(), p.port))
            .collect();
        assert_eq!(ports, want);
    }
    // Each pod announces its own DNS name: POD_HOST, which each listener's advertised address
    // in the shared file names with its port; no single-listener address beside the list.
    let env = pod(&d).containers[0].env.clone().unwrap();
    let host = env.iter().find(|e| e.name == "POD_HOST").unwrap();
    assert_eq!(
        host.value.as_deref(),
        Some("$(POD_NAME).secure-brokers.kafka.svc")
    );
    assert!(!env
        .iter()
        .any(|e| e.name == "KAFKA_IGGY_ADVERTISED_ADDRESS"));
}

#[test]
fn listener_secrets_are_mounted_whole_and_read_only_never_copied() {
    let d = desired(&load("listeners")).unwrap();
    let pod = pod(&d);
    let mounts = pod.containers[0].volume_mounts.clone().unwrap();
    let volumes = pod.volumes.clone().unwrap();
    let mut found = Vec::new();
    for v in volumes.iter().filter(|v| v.name.starts_with("listener-")) {
        let secret = v.secret.as_ref().unwrap();
        // No `items`, no `subPath`: the kubelet then swaps renewed Secret contents in place.
        assert!(secret.items.is_none(), "{}", v.name);
        let mount = mounts.iter().find(|m| m.name == v.name).unwrap();
        assert_eq!(mount.read_only, Some(true));
        assert!(mount.sub_path.is_none());
        found.push((
            secret.secret_name.clone().unwrap(),
            mount.mount_path.clone(),
        ));
    }
    let want = [
        ("secure-tls", "/etc/kafka-iggy/listeners/tls/tls"),
        ("clients-ca", "/etc/kafka-iggy/listeners/tls/client-ca"),
        ("secure-tls", "/etc/kafka-iggy/listeners/sasl-ssl/tls"),
        ("scram-users", "/etc/kafka-iggy/listeners/sasl-ssl/users"),
    ]
    .map(|(s, p)| (s.to_string(), p.to_string()));
    assert_eq!(found, want);
    // The ConfigMap names files, it holds no Secret: nothing in it changes when a certificate
    // is renewed, so renewals do not roll the pods (the config hash is the ConfigMap's).
    let text = &d.config_map.data.as_ref().unwrap()["config.yaml"];
    assert!(!text.contains("BEGIN"), "{text}");
}

#[test]
fn two_listeners_on_one_port_are_refused() {
    let mut kb = load("listeners");
    kb.spec.kafka.listeners[1].port = 9092;
    assert!(desired(&kb).is_err());
    let mut kb = load("listeners");
    kb.spec.kafka.listeners[1].port = kb.spec.metrics.port;
    assert!(desired(&kb).is_err());
}
