//! Golden tests of the desired-state function: each `golden/<case>.input.yaml` (a KafkaBridge)
//! must render exactly `golden/<case>.expected.yaml` (every child object, in apply order).
//! Regenerate after an intended change with `UPDATE_GOLDEN=1 cargo test -p kafka-iggy-operator
//! --test golden` and review the diff. Also checks that crds/ matches the Rust types.
#![allow(clippy::unwrap_used, reason = "test code: a panic is a failed test")]

use std::path::{Path, PathBuf};

use kafka_iggy_operator::crd::{crd_yaml, KafkaBridge};
use kafka_iggy_operator::desired::desired;

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

fn render(input: &Path) -> String {
    let kb: KafkaBridge = serde_yaml::from_str(&std::fs::read_to_string(input).unwrap())
        .unwrap_or_else(|e| panic!("{}: {e}", input.display()));
    let d = desired(&kb).unwrap();
    let mut docs = vec![
        serde_yaml::to_string(&d.config_map).unwrap(),
        serde_yaml::to_string(&d.bootstrap_service).unwrap(),
        serde_yaml::to_string(&d.headless_service).unwrap(),
        serde_yaml::to_string(&d.pod_disruption_budget).unwrap(),
        serde_yaml::to_string(&d.deployment).unwrap(),
    ];
    if let Some(sm) = &d.service_monitor {
        docs.push(serde_yaml::to_string(sm).unwrap());
    }
    docs.push(format!(
        "# status: selector={} bootstrap={}\n",
        d.selector, d.bootstrap_address
    ));
    docs.join("---\n")
}

#[test]
fn desired_objects_match_the_golden_files() {
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let mut cases = 0;
    let mut failures = Vec::new();
    for entry in std::fs::read_dir(dir()).unwrap() {
        let path = entry.unwrap().path();
        let Some(case) = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".input.yaml"))
        else {
            continue;
        };
        cases += 1;
        let expected_path = dir().join(format!("{case}.expected.yaml"));
        let actual = render(&path);
        if update {
            std::fs::write(&expected_path, &actual).unwrap();
            continue;
        }
        let expected = std::fs::read_to_string(&expected_path).unwrap_or_default();
        if expected != actual {
            failures.push(format!(
                "{case}: rendering differs from {} (UPDATE_GOLDEN=1 to accept):\n{actual}",
                expected_path.display()
            ));
        }
    }
    assert!(
        cases >= 3,
        "expected at least 3 golden cases, found {cases}"
    );
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn rendering_is_deterministic_and_config_changes_change_the_hash() {
    let input = dir().join("minimal.input.yaml");
    assert_eq!(render(&input), render(&input));
    let mut kb: KafkaBridge =
        serde_yaml::from_str(&std::fs::read_to_string(&input).unwrap()).unwrap();
    let before = desired(&kb).unwrap().config_hash;
    kb.spec.replicas = 5;
    assert_eq!(
        desired(&kb).unwrap().config_hash,
        before,
        "scaling is not a config change"
    );
    kb.spec.auto_create_topics = !kb.spec.auto_create_topics;
    assert_ne!(desired(&kb).unwrap().config_hash, before);
}

#[test]
fn a_resource_without_uid_is_an_error_not_a_panic() {
    let mut kb: KafkaBridge =
        serde_yaml::from_str(&std::fs::read_to_string(dir().join("minimal.input.yaml")).unwrap())
            .unwrap();
    kb.metadata.uid = None;
    assert!(desired(&kb).is_err());
}

#[test]
fn crd_is_up_to_date() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../crds/kafkabridges.bridge.kafka-iggy.dev.yaml");
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == crd_yaml().unwrap(),
        "{} is out of date: run `cargo run -p kafka-iggy-operator -- crd > crds/kafkabridges.bridge.kafka-iggy.dev.yaml` \
         (and tools/k8s/render-deploy.sh for the chart copy)",
        path.display()
    );
}

/// The configuration the operator renders is one the proxy accepts, with the environment the
/// Deployment gives it (credentials from the Secret, the pod's advertised address).
#[test]
fn the_proxy_accepts_every_rendered_configuration() {
    use clap::Parser;
    use kafka_iggy_proxy::config::{Cli, ProxyConfig};

    for case in ["minimal", "full", "servicemonitor", "explicit"] {
        let kb: KafkaBridge = serde_yaml::from_str(
            &std::fs::read_to_string(dir().join(format!("{case}.input.yaml"))).unwrap(),
        )
        .unwrap();
        let d = desired(&kb).unwrap();
        let file = std::env::temp_dir().join(format!(
            "operator-golden-{case}-{}.yaml",
            std::process::id()
        ));
        std::fs::write(&file, &d.config_map.data.as_ref().unwrap()["config.yaml"]).unwrap();
        let mut args = vec![
            "kafka-iggy-proxy".to_string(),
            "--config".into(),
            file.display().to_string(),
            "--iggy-username".into(),
            "u".into(),
            "--iggy-password".into(),
            "p".into(),
        ];
        if kb.spec.kafka.advertise == kafka_iggy_operator::crd::AdvertiseMode::PodIP {
            args.extend(["--advertised-address".into(), "10.1.2.3:9092".into()]);
        }
        // The CA file the config names is the one the pod mounts from the CA Secret; here a
        // local stand-in takes its place.
        let rendered: ProxyConfig =
            serde_yaml::from_str(&d.config_map.data.as_ref().unwrap()["config.yaml"]).unwrap();
        let stand_in = file.with_extension("ca.pem");
        if let Some(ca_file) = &rendered.iggy.tls.ca_file {
            let pod = d
                .deployment
                .spec
                .as_ref()
                .unwrap()
                .template
                .spec
                .as_ref()
                .unwrap();
            let mounted = pod.containers[0]
                .volume_mounts
                .iter()
                .flatten()
                .any(|m| ca_file.parent() == Some(Path::new(&m.mount_path)));
            assert!(
                mounted,
                "{case}: {} is not in a mounted volume",
                ca_file.display()
            );
            std::fs::write(
                &stand_in,
                "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
            )
            .unwrap();
            args.extend(["--iggy-tls-ca-file".into(), stand_in.display().to_string()]);
        }
        let env = [
            ("KAFKA_IGGY_IGGY_USERNAME".to_string(), "u".to_string()),
            ("KAFKA_IGGY_IGGY_PASSWORD".to_string(), "p".to_string()),
            (
                "KAFKA_IGGY_ADVERTISED_ADDRESS".to_string(),
                "10.1.2.3:9092".to_string(),
            ),
        ];
        let config = ProxyConfig::resolve(Cli::parse_from(args), env)
            .unwrap_or_else(|e| panic!("{case}: {e}"));
        assert_eq!(config.default_stream, kb.spec.iggy.stream);
        assert_eq!(i32::from(config.listen.port()), kb.spec.kafka.port);
        if kb.spec.kafka.advertise == kafka_iggy_operator::crd::AdvertiseMode::Explicit {
            assert_eq!(
                config.advertised_address, kb.spec.kafka.advertised_address,
                "{case}: every pod announces the explicit address"
            );
            assert_eq!(
                Some(d.bootstrap_address.clone()),
                kb.spec.kafka.advertised_address
            );
        }
        let _ = std::fs::remove_file(&file);
        let _ = std::fs::remove_file(&stand_in);
    }
}
