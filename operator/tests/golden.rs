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
        serde_yaml::to_string(&d.service_account).unwrap(),
        serde_yaml::to_string(&d.bootstrap_service).unwrap(),
        serde_yaml::to_string(&d.headless_service).unwrap(),
        serde_yaml::to_string(&d.pod_disruption_budget).unwrap(),
        serde_yaml::to_string(&d.stateful_set).unwrap(),
    ];
    if let Some(sm) = &d.service_monitor {
        docs.push(serde_yaml::to_string(sm).unwrap());
    }
    docs.push(format!(
        "# status: selector={} bootstrap={}\n",
        d.selector, d.bootstrap_address
    ));
    if !d.listeners.is_empty() {
        docs.push(format!("# status: listeners={:?}\n", d.listeners));
    }
    if let Some(problem) = &d.problem {
        docs.push(format!("# Degraded: {problem}\n"));
    }
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

fn load(case: &str) -> KafkaBridge {
    serde_yaml::from_str(
        &std::fs::read_to_string(dir().join(format!("{case}.input.yaml"))).unwrap(),
    )
    .unwrap()
}

#[test]
fn rendering_is_deterministic_and_config_changes_change_the_hash() {
    let input = dir().join("minimal.input.yaml");
    assert_eq!(render(&input), render(&input));
    let mut kb = load("minimal");
    let before = desired(&kb).unwrap().config_hash;
    kb.spec.auto_create_topics = !kb.spec.auto_create_topics;
    assert_ne!(desired(&kb).unwrap().config_hash, before);
}

/// Scaling adds or removes pods and nothing else: every object, the pod template (which a
/// StatefulSet rolls on any change) and the configuration are the same for 1 and for 3
/// replicas but for the replica count itself.
#[test]
fn scaling_changes_nothing_but_the_replica_count() {
    for case in ["minimal", "full", "servicemonitor", "explicit", "listeners"] {
        let mut kb = load(case);
        kb.spec.replicas = 1;
        let one = desired(&kb).unwrap();
        kb.spec.replicas = 3;
        let mut three = desired(&kb).unwrap();
        assert_eq!(
            three.stateful_set.spec.as_ref().unwrap().replicas,
            Some(3),
            "{case}"
        );
        three.stateful_set.spec.as_mut().unwrap().replicas = Some(1);
        // A spec that cannot work with 3 replicas is reported, and only reported.
        three.problem = one.problem.clone();
        assert_eq!(
            one, three,
            "{case}: scaling changed more than the replica count"
        );
    }
}

/// Every pod must announce an address of its own once there is more than one: with a shared
/// one (the Service's name, an explicit address), the bridge says why it cannot work.
#[test]
fn a_shared_advertised_address_with_replicas_is_a_problem() {
    use kafka_iggy_operator::crd::AdvertiseMode;
    for (case, advertise) in [
        ("minimal", AdvertiseMode::PodDNS),
        ("full", AdvertiseMode::PodIP),
        ("service-replicas", AdvertiseMode::Service),
        ("explicit", AdvertiseMode::Explicit),
    ] {
        let mut kb = load(case);
        assert_eq!(kb.spec.kafka.advertise, advertise, "{case}");
        for replicas in [0, 1, 2, 5] {
            kb.spec.replicas = replicas;
            let problem = desired(&kb).unwrap().problem;
            if advertise.is_shared() && replicas > 1 {
                let problem = problem.unwrap_or_else(|| panic!("{case}: no problem reported"));
                assert!(
                    problem.contains(&format!("{advertise:?}")) && problem.contains("PodDNS"),
                    "{problem}"
                );
            } else {
                assert_eq!(problem, None, "{case} with {replicas} replicas");
            }
        }
    }
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

/// The environment the kubelet gives the proxy container of pod `ordinal`: field references
/// resolved as for a pod named `{workload}-{ordinal}` with IP 10.1.2.{ordinal}, Secrets as
/// "u"/"p", and `$(VAR)` expanded from the variables defined before.
fn pod_environment(
    d: &kafka_iggy_operator::desired::Desired,
    ordinal: i32,
) -> Vec<(String, String)> {
    let sts = &d.stateful_set;
    let pod_name = format!("{}-{ordinal}", sts.metadata.name.as_deref().unwrap());
    let pod = sts.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
    let mut env: Vec<(String, String)> = Vec::new();
    for var in pod.containers[0].env.iter().flatten() {
        let value = match (&var.value, &var.value_from) {
            (Some(value), None) => {
                let mut value = value.clone();
                for (name, earlier) in &env {
                    value = value.replace(&format!("$({name})"), earlier);
                }
                value
            }
            (None, Some(from)) => match (&from.field_ref, &from.secret_key_ref) {
                (Some(field), None) => match field.field_path.as_str() {
                    "metadata.name" => pod_name.clone(),
                    "status.podIP" => format!("10.1.2.{ordinal}"),
                    "metadata.labels['apps.kubernetes.io/pod-index']" => ordinal.to_string(),
                    other => panic!("no stand-in for field {other}"),
                },
                (None, Some(_)) => if var.name.ends_with("PASSWORD") {
                    "p"
                } else {
                    "u"
                }
                .into(),
                other => panic!("unexpected source of {}: {other:?}", var.name),
            },
            other => panic!("unexpected env var {}: {other:?}", var.name),
        };
        assert!(!value.contains("$("), "{} not expanded: {value}", var.name);
        env.push((var.name.clone(), value));
    }
    env
}

/// The proxy flags that stand for `KAFKA_IGGY_*` variables (the test cannot set the process
/// environment clap reads them from).
fn as_flags(env: &[(String, String)]) -> Vec<String> {
    use clap::CommandFactory;
    let command = kafka_iggy_proxy::config::Cli::command();
    env.iter()
        .filter(|(name, _)| name.starts_with("KAFKA_IGGY_"))
        .flat_map(|(name, value)| {
            let arg = command
                .get_arguments()
                .find(|a| a.get_env().is_some_and(|e| e == name.as_str()))
                .unwrap_or_else(|| panic!("the proxy knows no variable {name}"));
            [format!("--{}", arg.get_long().unwrap()), value.clone()]
        })
        .collect()
}

/// The configuration the operator renders is one the proxy accepts, with the environment each
/// pod of the StatefulSet gets (credentials from the Secret, broker id = ordinal, the pod's own
/// advertised address), and it makes every replica a member of the membership log.
#[test]
fn the_proxy_accepts_every_rendered_configuration() {
    use clap::Parser;
    use kafka_iggy_operator::crd::AdvertiseMode;
    use kafka_iggy_proxy::config::{Cli, MembershipKind, ProxyConfig};

    for case in [
        "minimal",
        "full",
        "servicemonitor",
        "explicit",
        "service-replicas",
        "listeners",
    ] {
        let kb = load(case);
        let d = desired(&kb).unwrap();
        let file = std::env::temp_dir().join(format!(
            "operator-golden-{case}-{}.yaml",
            std::process::id()
        ));
        let mut text = d.config_map.data.as_ref().unwrap()["config.yaml"].clone();
        // Listener certificates and users come from mounted Secrets; here local stand-ins.
        let mounts = std::env::temp_dir().join(format!(
            "operator-golden-{case}-{}-listeners",
            std::process::id()
        ));
        if text.contains(LISTENERS_DIR) {
            text = stand_in_listener_files(&text, &mounts);
        }
        std::fs::write(&file, &text).unwrap();
        let ordinal = 2;
        let env = pod_environment(&d, ordinal);
        let mut args = vec![
            "kafka-iggy-proxy".to_string(),
            "--config".into(),
            file.display().to_string(),
        ];
        args.extend(as_flags(&env));
        // The CA file the config names is the one the pod mounts from the CA Secret; here a
        // local stand-in takes its place.
        let rendered: ProxyConfig =
            serde_yaml::from_str(&d.config_map.data.as_ref().unwrap()["config.yaml"]).unwrap();
        let stand_in = file.with_extension("ca.pem");
        if let Some(ca_file) = &rendered.iggy.tls.ca_file {
            let pod = d
                .stateful_set
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
        let config = ProxyConfig::resolve(Cli::parse_from(args), env)
            .unwrap_or_else(|e| panic!("{case}: {e}"));
        let _ = std::fs::remove_dir_all(&mounts);
        assert_eq!(config.default_stream, kb.spec.iggy.stream);
        assert_eq!(config.broker_id, ordinal, "{case}: broker id = pod ordinal");
        if !kb.spec.kafka.listeners.is_empty() {
            // Every listener announces this pod's own host with the listener's port.
            let name = kb.metadata.name.as_deref().unwrap();
            let namespace = kb.metadata.namespace.as_deref().unwrap();
            let announced: Vec<String> = config
                .listeners
                .iter()
                .map(|l| {
                    let (host, port) = l.advertised().unwrap();
                    format!("{host}:{port}")
                })
                .collect();
            let expected: Vec<String> = kb
                .spec
                .kafka
                .listeners
                .iter()
                .map(|l| format!("{name}-2.{name}-brokers.{namespace}.svc:{}", l.port))
                .collect();
            assert_eq!(announced, expected, "{case}");
            let _ = std::fs::remove_file(&file);
            continue;
        }
        assert_eq!(i32::from(config.listen.port()), kb.spec.kafka.port);
        assert_eq!(config.cluster.membership, MembershipKind::Log, "{case}");
        let port = kb.spec.kafka.port;
        let name = kb.metadata.name.as_deref().unwrap();
        let namespace = kb.metadata.namespace.as_deref().unwrap();
        let announced = match kb.spec.kafka.advertise {
            AdvertiseMode::PodDNS => format!("{name}-2.{name}-brokers.{namespace}.svc:{port}"),
            AdvertiseMode::PodIP => format!("10.1.2.2:{port}"),
            AdvertiseMode::Service => format!("{name}.{namespace}.svc:{port}"),
            AdvertiseMode::Explicit => kb.spec.kafka.advertised_address.clone().unwrap(),
        };
        let (host, port) = config.advertised().unwrap();
        assert_eq!(format!("{host}:{port}"), announced, "{case}");
        if kb.spec.kafka.advertise.is_shared() {
            assert_eq!(
                d.bootstrap_address, announced,
                "{case}: one address for all"
            );
        }
        let _ = std::fs::remove_file(&file);
        let _ = std::fs::remove_file(&stand_in);
    }
}

const LISTENERS_DIR: &str = "/etc/kafka-iggy/listeners";

/// Rewrites the listeners' mounted-Secret paths into `root` and puts a self-signed
/// certificate, its key, and an empty SCRAM users file there.
fn stand_in_listener_files(text: &str, root: &Path) -> String {
    let text = text.replace(LISTENERS_DIR, &root.display().to_string());
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    for line in text.lines() {
        let Some((_, value)) = line.split_once(": ") else {
            continue;
        };
        let value = value.trim().trim_matches('\'').trim_matches('"');
        let path = Path::new(value);
        if !path.starts_with(root) {
            continue;
        }
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let content = if value.ends_with(".key") {
            cert.signing_key.serialize_pem()
        } else if value.ends_with(".yaml") {
            "users: {}\n".to_string()
        } else {
            cert.cert.pem()
        };
        std::fs::write(path, content).unwrap();
    }
    text
}
