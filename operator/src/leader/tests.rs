#![allow(clippy::unwrap_used, reason = "test code: a panic is a failed test")]

use super::*;

/// A client whose API server never answers (nothing listens on port 1).
fn unreachable_api() -> Api<Lease> {
    crate::install_crypto_provider();
    let config = kube::Config::new("http://127.0.0.1:1".parse::<http::Uri>().unwrap());
    Api::namespaced(kube::Client::try_from(config).unwrap(), "default")
}

fn record(holder: &str, renewed_ms: i64) -> LeaseSpec {
    LeaseSpec {
        holder_identity: Some(holder.into()),
        renew_time: Some(MicroTime(Timestamp::from_millisecond(renewed_ms).unwrap())),
        ..LeaseSpec::default()
    }
}

#[tokio::test]
async fn a_lease_record_ages_only_while_it_stays_the_same() {
    let elector = LeaderElector::new(unreachable_api(), "l", "me", Duration::from_secs(15));
    assert_eq!(
        elector.unchanged_for(&record("other", 1_000)),
        Duration::ZERO
    );
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(elector.unchanged_for(&record("other", 1_000)) >= Duration::from_millis(50));
    // A renewal (new renewTime) or a new holder restarts the clock, whatever the timestamps say.
    assert_eq!(elector.unchanged_for(&record("other", 900)), Duration::ZERO);
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(elector.unchanged_for(&record("third", 900)), Duration::ZERO);
}

#[tokio::test]
async fn the_leader_steps_down_when_it_cannot_renew_in_time() {
    let elector = LeaderElector::new(unreachable_api(), "l", "me", Duration::from_millis(900));
    let started = Instant::now();
    let stepped_down = tokio::time::timeout(Duration::from_secs(5), elector.hold()).await;
    assert!(
        stepped_down.is_ok(),
        "hold() must return when renewals fail"
    );
    let took = started.elapsed();
    assert!(
        took >= elector.renew_deadline() && took < elector.duration,
        "stepped down after {took:?}: must be after the renew deadline ({:?}) and before the lease \
         could expire for others ({:?})",
        elector.renew_deadline(),
        elector.duration
    );
}
