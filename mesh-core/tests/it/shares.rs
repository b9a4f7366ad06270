//! Long-run shares over >= 100k picks.

use mesh_core::{Candidate, Instant};

use crate::{assert_shares, build, counts};

const PICKS: usize = 1_000_000;

fn equal(n: u32) -> Vec<Candidate> {
    (0..n).map(Candidate::new).collect()
}

fn weighted() -> Vec<Candidate> {
    [1, 2, 3, 4, 10]
        .iter()
        .enumerate()
        .map(|(i, &w)| Candidate::weighted(i as u32, w))
        .collect()
}

#[test]
fn round_robin_is_even_within_1_percent() {
    let hosts = equal(10);
    let mut lb = build(r#"{"kind":"round_robin"}"#, &hosts, 1);
    let c = counts(lb.as_mut(), 100_000, Instant::EPOCH);
    assert_shares(&c, &hosts, 0.01, "round_robin");
    // A plain rotation is exact, not just close.
    assert!(c.iter().all(|&x| x == 10_000), "{c:?}");
}

#[test]
fn weighted_round_robin_follows_weights_within_5_percent() {
    let hosts = weighted();
    for kind in ["round_robin", "weighted_round_robin"] {
        let mut lb = build(&format!(r#"{{"kind":"{kind}"}}"#), &hosts, 2);
        let c = counts(lb.as_mut(), 100_000, Instant::EPOCH);
        assert_shares(&c, &hosts, 0.05, kind);
    }
}

#[test]
fn random_is_even_within_3_percent() {
    let hosts = equal(10);
    let mut lb = build(r#"{"kind":"random"}"#, &hosts, 3);
    assert_shares(
        &counts(lb.as_mut(), PICKS, Instant::EPOCH),
        &hosts,
        0.03,
        "random",
    );
}

#[test]
fn weighted_random_follows_weights_within_3_percent() {
    let hosts = weighted();
    let mut lb = build(r#"{"kind":"weighted_random"}"#, &hosts, 4);
    let c = counts(lb.as_mut(), PICKS, Instant::EPOCH);
    assert_shares(&c, &hosts, 0.03, "weighted_random");
}

#[test]
fn ring_hash_follows_weights_within_5_percent() {
    // 2^16 points: the lightest host holds ~3.5k points, so its arc is within ~2% of its
    // weight share; the 1024-point default would leave ~10% arc noise per host.
    let hosts = weighted();
    let mut lb = build(
        r#"{"kind":"ring_hash","minimum_ring_size":65536}"#,
        &hosts,
        5,
    );
    let c = counts(lb.as_mut(), PICKS, Instant::EPOCH);
    assert_shares(&c, &hosts, 0.05, "ring_hash");
}

#[test]
fn maglev_follows_weights_within_5_percent() {
    let hosts = weighted();
    let mut lb = build(r#"{"kind":"maglev"}"#, &hosts, 6);
    let c = counts(lb.as_mut(), PICKS, Instant::EPOCH);
    assert_shares(&c, &hosts, 0.05, "maglev");
}

#[test]
fn least_request_and_jsq_are_even_when_requests_never_finish() {
    // With no completions the least-loaded choice fills hosts level by level.
    let hosts = equal(8);
    for kind in [
        r#"{"kind":"join_shortest_queue"}"#,
        r#"{"kind":"least_request","choice_count":8,"sampling":"without_replacement"}"#,
    ] {
        let mut lb = build(kind, &hosts, 7);
        let mut c = vec![0u64; 8];
        for _ in 0..8_000 {
            let ep = lb.pick(&Default::default(), Instant::EPOCH).unwrap();
            lb.on_dispatch(ep, Instant::EPOCH);
            c[ep.index()] += 1;
        }
        assert!(c.iter().all(|&x| x == 1000), "{kind}: {c:?}");
    }
}
