//! Unit tests of the agent reply: every state and edge, rendered exactly as HAProxy reads it.

use super::*;

fn stats(connections: u64, capacity: u64) -> NodeStats {
    NodeStats {
        node: "n0".into(),
        connections,
        capacity,
        draining: false,
        redis_connected: true,
    }
}

fn fresh(connections: u64, capacity: u64) -> Observation {
    Observation::Fresh(stats(connections, capacity))
}

fn reply(obs: &Observation) -> String {
    agent_reply(obs, &mut Hysteresis::default()).to_string()
}

#[test]
fn idle_node_is_up_at_full_weight() {
    assert_eq!(reply(&fresh(0, 100)), "up ready 100%");
    assert_eq!(reply(&fresh(0, 1)), "up ready 100%");
    assert_eq!(reply(&fresh(0, u64::MAX)), "up ready 100%");
}

#[test]
fn weight_follows_free_capacity() {
    assert_eq!(reply(&fresh(25, 100)), "up ready 75%");
    assert_eq!(reply(&fresh(50, 100)), "up ready 50%");
    assert_eq!(reply(&fresh(1, 3)), "up ready 67%", "rounded up");
    assert_eq!(reply(&fresh(5_000, 10_000)), "up ready 50%");
}

#[test]
fn weight_is_never_zero_while_a_slot_is_free() {
    assert_eq!(reply(&fresh(99, 100)), "up ready 1%");
    assert_eq!(reply(&fresh(9_999, 10_000)), "up ready 1%");
    assert_eq!(reply(&fresh(u64::MAX - 1, u64::MAX)), "up ready 1%");
}

#[test]
fn node_at_capacity_is_full() {
    assert_eq!(reply(&fresh(100, 100)), "down #full");
    assert_eq!(reply(&fresh(1, 1)), "down #full");
}

#[test]
fn node_over_capacity_is_full() {
    assert_eq!(reply(&fresh(150, 100)), "down #full");
}

#[test]
fn capacity_zero_takes_nobody() {
    assert_eq!(reply(&fresh(0, 0)), "down #no-capacity");
    assert_eq!(reply(&fresh(3, 0)), "down #no-capacity");
}

#[test]
fn draining_wins_over_everything_else() {
    for (connections, capacity) in [(0, 100), (50, 100), (100, 100), (0, 0)] {
        let mut s = stats(connections, capacity);
        s.draining = true;
        assert_eq!(
            reply(&Observation::Fresh(s)),
            "down #draining",
            "{connections}/{capacity}"
        );
    }
}

#[test]
fn unreachable_stale_and_starting_are_down_with_a_reason() {
    let unreachable = Observation::Unreachable {
        error: "connection refused".into(),
    };
    assert_eq!(reply(&unreachable), "down #unreachable");
    let stale = Observation::Stale {
        age: Duration::from_secs(3),
    };
    assert_eq!(reply(&stale), "down #stale");
    assert_eq!(reply(&Observation::NotPolledYet), "down #starting");
}

#[test]
fn every_reply_says_up_or_down_first() {
    let observations = [
        Observation::NotPolledYet,
        Observation::Unreachable { error: "x".into() },
        Observation::Stale {
            age: Duration::ZERO,
        },
        fresh(0, 0),
        fresh(0, 10),
        fresh(10, 10),
    ];
    for obs in &observations {
        let line = reply(obs);
        let first = line.split(' ').next().unwrap();
        assert!(first == "up" || first == "down", "{line:?}");
        assert!(!line.contains('\n'), "the server adds the newline");
    }
}

#[test]
fn redis_disconnected_node_stays_up_at_minimum_weight() {
    let mut s = stats(0, 100);
    s.redis_connected = false;
    assert_eq!(reply(&Observation::Fresh(s.clone())), "up ready 1%");
    s.connections = 100;
    assert_eq!(
        reply(&Observation::Fresh(s)),
        "down #full",
        "full still wins"
    );
}

#[test]
fn full_node_stays_full_until_below_release_mark() {
    let mut h = Hysteresis::default();
    let mut step = |connections| agent_reply(&fresh(connections, 100), &mut h).to_string();
    assert_eq!(step(99), "up ready 1%");
    assert_eq!(step(100), "down #full", "enters at capacity");
    assert_eq!(step(99), "down #full", "one client leaving does not reopen");
    assert_eq!(step(95), "down #full", "95% is still inside the band");
    assert_eq!(step(94), "up ready 6%", "below 95% it reopens");
    assert_eq!(
        step(95),
        "up ready 5%",
        "and stays open until capacity again"
    );
    assert_eq!(step(99), "up ready 1%");
    assert_eq!(step(100), "down #full");
}

#[test]
fn hysteresis_is_idempotent_per_observation() {
    let mut h = Hysteresis::default();
    for _ in 0..3 {
        assert_eq!(
            agent_reply(&fresh(100, 100), &mut h).to_string(),
            "down #full"
        );
    }
    for _ in 0..3 {
        assert_eq!(
            agent_reply(&fresh(97, 100), &mut h).to_string(),
            "down #full"
        );
    }
    assert!(h.is_full());
}

#[test]
fn hysteresis_on_tiny_capacities_always_reopens_when_empty() {
    for capacity in 1..=20u64 {
        let mut h = Hysteresis::default();
        assert_eq!(
            agent_reply(&fresh(capacity, capacity), &mut h),
            Reply::Down(DownReason::Full)
        );
        let reopened = agent_reply(&fresh(0, capacity), &mut h);
        assert_eq!(
            reopened,
            Reply::Up {
                weight_percent: 100
            },
            "capacity {capacity}"
        );
    }
}

#[test]
fn failures_do_not_reset_the_full_latch() {
    let mut h = Hysteresis::default();
    agent_reply(&fresh(100, 100), &mut h);
    agent_reply(
        &Observation::Unreachable {
            error: "timeout".into(),
        },
        &mut h,
    );
    assert_eq!(
        agent_reply(&fresh(97, 100), &mut h).to_string(),
        "down #full"
    );
}

#[test]
fn draining_while_full_then_cancelled_keeps_the_latch() {
    let mut h = Hysteresis::default();
    let mut s = stats(100, 100);
    s.draining = true;
    assert_eq!(
        agent_reply(&Observation::Fresh(s), &mut h).to_string(),
        "down #draining"
    );
    assert_eq!(
        agent_reply(&fresh(98, 100), &mut h).to_string(),
        "down #full"
    );
}

#[test]
fn release_percent_is_configurable_and_clamped() {
    let mut h = Hysteresis::new(50);
    agent_reply(&fresh(10, 10), &mut h);
    assert_eq!(agent_reply(&fresh(5, 10), &mut h).to_string(), "down #full");
    assert_eq!(
        agent_reply(&fresh(4, 10), &mut h).to_string(),
        "up ready 60%"
    );
    // 0 would never release; it is clamped to 1%.
    let mut h = Hysteresis::new(0);
    agent_reply(&fresh(10, 10), &mut h);
    assert_eq!(
        agent_reply(&fresh(0, 10), &mut h).to_string(),
        "up ready 100%"
    );
    // Above 100 behaves like 100: any free slot reopens.
    let mut h = Hysteresis::new(200);
    agent_reply(&fresh(10, 10), &mut h);
    assert_eq!(
        agent_reply(&fresh(9, 10), &mut h).to_string(),
        "up ready 10%"
    );
}

#[test]
fn state_labels_and_weights_match_the_reply() {
    assert_eq!(Reply::Up { weight_percent: 42 }.state(), "up");
    assert_eq!(Reply::Up { weight_percent: 42 }.weight_percent(), 42);
    for reason in [
        DownReason::Full,
        DownReason::NoCapacity,
        DownReason::Draining,
        DownReason::Unreachable,
        DownReason::Stale,
        DownReason::Starting,
    ] {
        let r = Reply::Down(reason);
        assert_eq!(r.weight_percent(), 0);
        assert!(
            Reply::STATES.contains(&r.state()),
            "{reason:?} missing from STATES"
        );
        assert_eq!(r.to_string(), format!("down #{}", r.state()));
    }
}
