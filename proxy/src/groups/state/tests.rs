use super::*;

fn rules() -> Rules {
    Rules {
        min_session_timeout: Duration::from_millis(1000),
        max_session_timeout: Duration::from_secs(300),
        initial_rebalance_delay: Duration::from_millis(500),
        max_members: 3,
        max_member_metadata_bytes: 1024,
    }
}

fn request(member_id: &str, protocols: &[&str]) -> JoinRequest {
    JoinRequest {
        member_id: member_id.into(),
        instance_id: None,
        client_id: "client".into(),
        client_host: "/127.0.0.1".into(),
        session_timeout: Duration::from_secs(10),
        rebalance_timeout: Duration::from_secs(30),
        protocol_type: "consumer".into(),
        protocols: protocols
            .iter()
            .map(|p| (p.to_string(), Bytes::from(format!("meta-{p}-{member_id}"))))
            .collect(),
        require_known_member_id: true,
    }
}

fn now_reply<T: std::fmt::Debug>(reply: Reply<T>) -> T {
    match reply {
        Reply::Now(v) => v,
        Reply::Wait(_) => panic!("expected an immediate answer"),
    }
}

fn waiting<T>(reply: Reply<T>) -> oneshot::Receiver<T> {
    match reply {
        Reply::Wait(rx) => rx,
        Reply::Now(_) => panic!("expected to wait"),
    }
}

/// Joins a new dynamic member: MEMBER_ID_REQUIRED first, then the real join (which waits).
fn join_new(g: &mut Group, now: Instant) -> (String, oneshot::Receiver<JoinOutcome>) {
    let first = now_reply(g.join(request("", &["range"]), &rules(), now));
    assert_eq!(first.error, ResponseError::MemberIdRequired.code());
    assert!(!first.member_id.is_empty());
    let rx = waiting(g.join(request(&first.member_id, &["range"]), &rules(), now));
    (first.member_id, rx)
}

fn sync_all(g: &mut Group, leader: &str, others: &[&str], now: Instant) {
    let generation = g.generation;
    let mut waits = Vec::new();
    for m in others {
        waits.push(waiting(g.sync(
            m,
            None,
            generation,
            None,
            None,
            vec![],
            now,
        )));
    }
    let assignments = std::iter::once(leader)
        .chain(others.iter().copied())
        .map(|m| (m.to_string(), Bytes::from(format!("assigned-{m}"))))
        .collect();
    let mut own = waiting(g.sync(leader, None, generation, None, None, assignments, now));
    assert_eq!(
        own.try_recv().unwrap().assignment,
        format!("assigned-{leader}")
    );
    for (m, mut rx) in others.iter().zip(waits) {
        let outcome = rx.try_recv().unwrap();
        assert_eq!(outcome.error, 0);
        assert_eq!(outcome.assignment, format!("assigned-{m}"));
    }
    assert_eq!(g.state, GroupState::Stable);
}

#[test]
fn first_member_waits_for_the_initial_delay_then_leads() {
    let t0 = Instant::now();
    let mut g = Group::new("g".into(), t0);
    let (id, mut rx) = join_new(&mut g, t0);
    assert!(rx.try_recv().is_err(), "answered before the initial delay");
    g.tick(t0 + Duration::from_millis(499));
    assert!(rx.try_recv().is_err());
    g.tick(t0 + Duration::from_millis(500));
    let outcome = rx.try_recv().unwrap();
    assert_eq!(outcome.error, 0);
    assert_eq!(outcome.generation, 1);
    assert_eq!(outcome.leader, id);
    assert_eq!(outcome.protocol_name.as_deref(), Some("range"));
    assert_eq!(outcome.members.len(), 1);
    assert_eq!(g.state, GroupState::CompletingRebalance);
}

#[test]
fn a_second_member_triggers_a_rebalance_both_rejoin_and_only_the_leader_gets_members() {
    let t0 = Instant::now();
    let mut g = Group::new("g".into(), t0);
    let (a, mut rx_a) = join_new(&mut g, t0);
    let t1 = t0 + Duration::from_millis(600);
    g.tick(t1);
    rx_a.try_recv().unwrap();
    sync_all(&mut g, &a, &[], t1);

    let (b, mut rx_b) = join_new(&mut g, t1);
    assert_eq!(g.state, GroupState::PreparingRebalance);
    assert_eq!(
        g.heartbeat(&a, None, 1, t1),
        Err(ResponseError::RebalanceInProgress)
    );
    let mut rx_a = waiting(g.join(request(&a, &["range"]), &rules(), t1));
    // Everyone rejoined: the join phase ends at once.
    let oa = rx_a.try_recv().unwrap();
    let ob = rx_b.try_recv().unwrap();
    assert_eq!((oa.generation, ob.generation), (2, 2));
    assert_eq!(oa.leader, a, "the existing leader stays leader");
    assert_eq!(oa.members.len(), 2);
    assert!(ob.members.is_empty());
    sync_all(&mut g, &a, &[&b], t1);
    assert_eq!(g.heartbeat(&b, None, 2, t1), Ok(()));
    assert_eq!(
        g.heartbeat(&b, None, 1, t1),
        Err(ResponseError::IllegalGeneration)
    );
}

#[test]
fn a_silent_member_is_removed_after_its_session_timeout() {
    let t0 = Instant::now();
    let mut g = Group::new("g".into(), t0);
    let (a, mut rx_a) = join_new(&mut g, t0);
    let (b, mut rx_b) = join_new(&mut g, t0);
    g.tick(t0 + Duration::from_millis(600));
    rx_a.try_recv().unwrap();
    rx_b.try_recv().unwrap();
    let t1 = t0 + Duration::from_millis(600);
    sync_all(&mut g, &a, &[&b], t1);
    // a keeps heartbeating, b goes silent.
    let mut t = t1;
    for _ in 0..9 {
        t += Duration::from_secs(1);
        assert_eq!(g.heartbeat(&a, None, 1, t), Ok(()));
        g.tick(t);
    }
    assert!(g.members.contains_key(&b));
    t += Duration::from_secs(2);
    g.tick(t);
    assert!(!g.members.contains_key(&b), "b should have expired");
    assert_eq!(g.state, GroupState::PreparingRebalance);
    assert_eq!(
        g.heartbeat(&b, None, 1, t),
        Err(ResponseError::UnknownMemberId)
    );
    let mut rx = waiting(g.join(request(&a, &["range"]), &rules(), t));
    let o = rx.try_recv().unwrap();
    assert_eq!((o.error, o.generation, o.members.len()), (0, 2, 1));
}

#[test]
fn leaving_members_rebalance_the_rest_and_the_last_one_empties_the_group() {
    let t0 = Instant::now();
    let mut g = Group::new("g".into(), t0);
    let (a, mut rx_a) = join_new(&mut g, t0);
    let (b, mut rx_b) = join_new(&mut g, t0);
    g.tick(t0 + Duration::from_secs(1));
    rx_a.try_recv().unwrap();
    rx_b.try_recv().unwrap();
    sync_all(&mut g, &a, &[&b], t0);
    assert_eq!(g.leave(&a, None, t0), Ok(()));
    assert_eq!(g.leader, None);
    assert_eq!(g.leave(&a, None, t0), Err(ResponseError::UnknownMemberId));
    let mut rx = waiting(g.join(request(&b, &["range"]), &rules(), t0));
    let o = rx.try_recv().unwrap();
    assert_eq!(o.leader, b, "a new leader is chosen");
    assert_eq!(g.leave(&b, None, t0), Ok(()));
    assert_eq!(g.state, GroupState::Empty);
    assert!(g.is_empty());
}

#[test]
fn a_static_member_coming_back_keeps_the_group_stable_and_fences_its_old_id() {
    let t0 = Instant::now();
    let mut g = Group::new("g".into(), t0);
    let mut req = request("", &["range"]);
    req.instance_id = Some("host-1".into());
    // Static members get their id at once (no MEMBER_ID_REQUIRED round).
    let mut rx = waiting(g.join(req.clone(), &rules(), t0));
    g.tick(t0 + Duration::from_secs(1));
    let first = rx.try_recv().unwrap();
    let old = first.member_id.clone();
    sync_all(&mut g, &old, &[], t0);
    let generation = g.generation;

    let again = now_reply(g.join(req, &rules(), t0));
    assert_eq!(again.error, 0);
    assert_ne!(again.member_id, old);
    assert_eq!(again.generation, generation, "no rebalance");
    assert!(
        again.skip_assignment,
        "the static leader keeps the assignment"
    );
    assert_eq!(g.state, GroupState::Stable);
    assert_eq!(
        g.heartbeat(&old, Some("host-1"), generation, t0),
        Err(ResponseError::FencedInstanceId)
    );
    assert_eq!(
        g.heartbeat(&again.member_id, Some("host-1"), generation, t0),
        Ok(())
    );
    let sync = now_reply(g.sync(
        &again.member_id,
        Some("host-1"),
        generation,
        None,
        None,
        vec![],
        t0,
    ));
    assert_eq!(sync.assignment, format!("assigned-{old}"));
}

#[test]
fn commit_rules_follow_kafka() {
    let t0 = Instant::now();
    let mut g = Group::new("g".into(), t0);
    // Simple commits (no generation) are fine while the group has no members.
    assert_eq!(g.check_commit("", None, -1), Ok(()));
    let (a, mut rx) = join_new(&mut g, t0);
    assert_eq!(
        g.check_commit("", None, -1),
        Err(ResponseError::UnknownMemberId)
    );
    g.tick(t0 + Duration::from_secs(1));
    rx.try_recv().unwrap();
    assert_eq!(
        g.check_commit(&a, None, 1),
        Err(ResponseError::RebalanceInProgress),
        "no commits between JoinGroup and SyncGroup"
    );
    sync_all(&mut g, &a, &[], t0);
    assert_eq!(g.check_commit(&a, None, 1), Ok(()));
    assert_eq!(
        g.check_commit(&a, None, 7),
        Err(ResponseError::IllegalGeneration)
    );
    assert_eq!(
        g.check_commit("stranger", None, 1),
        Err(ResponseError::UnknownMemberId)
    );
}

#[test]
fn bad_joins_get_kafka_errors() {
    let t0 = Instant::now();
    let mut g = Group::new("g".into(), t0);
    let mut short = request("", &["range"]);
    short.session_timeout = Duration::from_millis(10);
    assert_eq!(
        now_reply(g.join(short, &rules(), t0)).error,
        ResponseError::InvalidSessionTimeout.code()
    );
    let mut huge = request("", &["range"]);
    huge.protocols = vec![("range".into(), Bytes::from(vec![0u8; 2048]))];
    assert_eq!(
        now_reply(g.join(huge, &rules(), t0)).error,
        ResponseError::InconsistentGroupProtocol.code()
    );
    assert_eq!(
        now_reply(g.join(request("made-up", &["range"]), &rules(), t0)).error,
        ResponseError::UnknownMemberId.code()
    );
    let (_a, _rx) = join_new(&mut g, t0);
    let mut other_type = request("", &["range"]);
    other_type.protocol_type = "connect".into();
    assert_eq!(
        now_reply(g.join(other_type, &rules(), t0)).error,
        ResponseError::InconsistentGroupProtocol.code()
    );
    assert_eq!(
        now_reply(g.join(request("", &["sticky"]), &rules(), t0)).error,
        ResponseError::InconsistentGroupProtocol.code(),
        "no protocol in common"
    );
    let _b = join_new(&mut g, t0);
    let _c = join_new(&mut g, t0);
    assert_eq!(
        now_reply(g.join(request("", &["range"]), &rules(), t0)).error,
        ResponseError::GroupMaxSizeReached.code()
    );
}

#[test]
fn the_protocol_every_member_supports_is_chosen() {
    let t0 = Instant::now();
    let mut g = Group::new("g".into(), t0);
    let first = now_reply(g.join(request("", &["cooperative-sticky", "range"]), &rules(), t0));
    let mut rx_a = waiting(g.join(
        request(&first.member_id, &["cooperative-sticky", "range"]),
        &rules(),
        t0,
    ));
    let second = now_reply(g.join(request("", &["range"]), &rules(), t0));
    let mut rx_b = waiting(g.join(request(&second.member_id, &["range"]), &rules(), t0));
    g.tick(t0 + Duration::from_secs(1));
    let a = rx_a.try_recv().unwrap();
    let b = rx_b.try_recv().unwrap();
    assert_eq!(a.protocol_name.as_deref(), Some("range"));
    assert_eq!(b.protocol_name.as_deref(), Some("range"));
    let leader_view = if a.members.is_empty() { &b } else { &a };
    assert!(leader_view
        .members
        .iter()
        .all(|m| m.metadata.starts_with(b"meta-range-")));
}

#[test]
fn a_leader_that_never_syncs_restarts_the_rebalance() {
    let t0 = Instant::now();
    let mut g = Group::new("g".into(), t0);
    let (a, mut rx_a) = join_new(&mut g, t0);
    let (b, mut rx_b) = join_new(&mut g, t0);
    let t1 = t0 + Duration::from_secs(1);
    g.tick(t1);
    let oa = rx_a.try_recv().unwrap();
    rx_b.try_recv().unwrap();
    let leader = oa.leader.clone();
    let follower = if leader == a { b } else { a };
    let mut pending = waiting(g.sync(&follower, None, 1, None, None, vec![], t1));
    g.tick(t1 + Duration::from_secs(31));
    assert_eq!(
        pending.try_recv().unwrap().error,
        ResponseError::RebalanceInProgress.code()
    );
    assert!(
        !g.members.contains_key(&leader),
        "the leader that never synced is dropped"
    );
    assert_eq!(g.state, GroupState::PreparingRebalance);
}

#[test]
fn a_restored_generation_carries_on_without_a_rebalance() {
    let t0 = Instant::now();
    let mut g = Group::new("g".into(), t0);
    assert!(g
        .snapshot(1)
        .is_some_and(|s| s.members.is_empty() && s.generation == 0));
    let (a, mut rx_a) = join_new(&mut g, t0);
    let t1 = t0 + Duration::from_millis(600);
    g.tick(t1);
    rx_a.try_recv().unwrap();
    sync_all(&mut g, &a, &[], t1);
    let (b, mut rx_b) = join_new(&mut g, t1);
    assert!(g.snapshot(2).is_none(), "nothing to persist mid-rebalance");
    let mut rx_a = waiting(g.join(request(&a, &["range"]), &rules(), t1));
    rx_a.try_recv().unwrap();
    rx_b.try_recv().unwrap();
    let due = g.snapshots_due;
    sync_all(&mut g, &a, &[&b], t1);
    assert_eq!(
        g.snapshots_due,
        due + 1,
        "a Stable generation is due for the log"
    );
    let snapshot = g.snapshot(3).expect("stable");
    assert_eq!((snapshot.generation, snapshot.members.len()), (2, 2));

    // Another coordinator (or this one after a restart) takes the group over.
    let t2 = t1 + Duration::from_secs(5);
    let mut taken = Group::new("g".into(), t2);
    taken.restore(snapshot.clone(), t2);
    assert_eq!(taken.state, GroupState::Stable);
    assert_eq!(taken.generation, 2);
    assert_eq!(taken.heartbeat(&a, None, 2, t2), Ok(()));
    assert_eq!(taken.heartbeat(&b, None, 2, t2), Ok(()));
    assert_eq!(taken.check_commit(&b, None, 2), Ok(()));
    let sync = now_reply(taken.sync(&b, None, 2, None, None, vec![], t2));
    assert_eq!(sync.assignment, format!("assigned-{b}"));
    assert_eq!(taken.leader.as_deref(), Some(a.as_str()));

    // Taken over only by a group nothing has happened to yet.
    let mut busy = Group::new("g".into(), t2);
    let (c, _rx) = join_new(&mut busy, t2);
    busy.restore(snapshot, t2);
    assert!(busy.members.contains_key(&c) && !busy.members.contains_key(&a));

    // A member that is gone expires after its session; the next generation follows on.
    let t3 = t2 + Duration::from_secs(8);
    assert_eq!(taken.heartbeat(&a, None, 2, t3), Ok(()));
    taken.tick(t2 + Duration::from_secs(11));
    assert_eq!(taken.state, GroupState::PreparingRebalance);
    assert!(!taken.members.contains_key(&b));
    let mut rx = waiting(taken.join(request(&a, &["range"]), &rules(), t3));
    assert_eq!(rx.try_recv().unwrap().generation, 3);
}

#[test]
fn a_static_member_coming_back_with_other_metadata_keeps_the_group_stable() {
    // A restarted Java consumer's subscription bytes differ (owned partitions, generation);
    // Kafka rebalances only if the group's protocol would change.
    let t0 = Instant::now();
    let mut g = Group::new("g".into(), t0);
    let mut req = request("", &["range"]);
    req.instance_id = Some("host-1".into());
    let mut rx = waiting(g.join(req.clone(), &rules(), t0));
    g.tick(t0 + Duration::from_secs(1));
    let old = rx.try_recv().unwrap().member_id;
    sync_all(&mut g, &old, &[], t0);
    let generation = g.generation;

    req.protocols = vec![(
        "range".into(),
        Bytes::from_static(b"owned nothing, generation -1"),
    )];
    let again = now_reply(g.join(req.clone(), &rules(), t0));
    assert_eq!(
        (again.error, again.generation),
        (0, generation),
        "no rebalance"
    );
    assert_eq!(g.state, GroupState::Stable);
    assert_eq!(
        g.members[&again.member_id].metadata("range"),
        Bytes::from_static(b"owned nothing, generation -1"),
        "the new subscription is kept for the next rebalance"
    );
}
