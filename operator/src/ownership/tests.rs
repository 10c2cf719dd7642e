#![allow(clippy::unwrap_used, reason = "test code: a panic is a failed test")]

use super::*;

fn bridge(name: &str, created_s: i64, address: &str, server_id: Option<&str>) -> KafkaBridge {
    let created = k8s_openapi::jiff::Timestamp::from_second(created_s).unwrap();
    let mut kb: KafkaBridge = serde_json::from_value(serde_json::json!({
        "apiVersion": "bridge.kafka-iggy.dev/v1alpha1",
        "kind": "KafkaBridge",
        "metadata": {"name": name, "namespace": "ns", "uid": format!("uid-{name}")},
        "spec": {"iggy": {"address": address, "stream": "s",
                          "credentialsSecret": {"name": "c"}}},
        "status": {"iggy": {"serverId": server_id}}
    }))
    .unwrap();
    kb.metadata.creation_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
        created,
    ));
    kb
}

/// Without identities, one server under two spellings is one server (their resolved IP:port
/// sets overlap); other ports are other servers.
#[tokio::test]
async fn addresses_are_compared_by_what_they_resolve_to() {
    let a = bridge("a", 1, "127.0.0.1:1", None);
    assert!(same_server(&a, None, &bridge("b", 2, "localhost:1", None)).await);
    assert!(same_server(&a, None, &bridge("b", 2, "127.0.0.1:1", None)).await);
    assert!(!same_server(&a, None, &bridge("b", 2, "127.0.0.1:2", None)).await);
    assert!(!same_server(&a, None, &bridge("b", 2, "no-such-host.invalid:1", None)).await);
}

/// Known identities decide, whatever the addresses say.
#[tokio::test]
async fn identities_decide_when_both_are_known() {
    let a = bridge("a", 1, "127.0.0.1:1", Some("x"));
    assert!(same_server(&a, Some("x"), &bridge("b", 2, "iggy.example:1", Some("x"))).await);
    assert!(!same_server(&a, Some("x"), &bridge("b", 2, "127.0.0.1:1", Some("y"))).await);
}

/// The earlier bridge owns the stream; ties in creation time go to the smaller name.
#[tokio::test]
async fn the_earlier_bridge_wins() {
    let older = bridge("z-older", 1, "127.0.0.1:1", None);
    let newer = bridge("a-newer", 2, "localhost:1", None);
    let all = [older.clone(), newer.clone()];
    assert_eq!(
        conflicting(&newer, None, &all).await,
        Some("ns/z-older".into())
    );
    assert_eq!(conflicting(&older, None, &all).await, None);
    let twin = bridge("a-twin", 1, "127.0.0.1:1", None);
    let all = [older.clone(), twin.clone()];
    assert_eq!(
        conflicting(&older, None, &all).await,
        Some("ns/a-twin".into())
    );
    // Another stream is no conflict.
    let mut elsewhere = bridge("y", 0, "127.0.0.1:1", None);
    elsewhere.spec.iggy.stream = "other".into();
    assert_eq!(conflicting(&newer, None, &[elsewhere]).await, None);
}

#[test]
fn created_topics_are_only_added() {
    let owned = IggyOwnership {
        created_topics: vec!["a".into()],
        ..IggyOwnership::default()
    }
    .with_created(&["b".into(), "a".into()]);
    assert_eq!(owned.created_topics, ["a", "b"]);
}
