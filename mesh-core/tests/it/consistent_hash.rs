//! Consistent hashing: key movement on host removal, bounded loads.

use mesh_core::Balancer;
use mesh_core::balancer::{BoundedLoad, BoundedLoadConfig};
use mesh_core::{Candidate, EndpointId, Instant, PickCtx, Seed};

use crate::build;

const KEYS: u64 = 200_000;

fn owners(lb: &mut dyn mesh_core::Balancer) -> Vec<EndpointId> {
    (0..KEYS)
        .map(|k| {
            let h = k.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (k >> 7);
            lb.pick(&PickCtx::with_hash(h), Instant::EPOCH).unwrap()
        })
        .collect()
}

/// Removing 1 of N hosts must move the keys that host owned (the minimum) and, for a good
/// consistent hash, not many more: at most twice the minimum.
fn check_movement(config: &str, n: u32) {
    let all: Vec<Candidate> = (0..n).map(Candidate::new).collect();
    let mut lb = build(config, &all, 11);
    let before = owners(lb.as_mut());
    let removed = EndpointId(n / 2);
    let rest: Vec<Candidate> = all.iter().copied().filter(|c| c.id != removed).collect();
    lb.set_endpoints(&rest, Instant::EPOCH);
    let after = owners(lb.as_mut());
    let minimum = before.iter().filter(|&&e| e == removed).count();
    let moved = before.iter().zip(&after).filter(|(a, b)| a != b).count();
    assert!(after.iter().all(|&e| e != removed));
    let ideal = KEYS as f64 / f64::from(n);
    assert!(
        (minimum as f64) > 0.5 * ideal && (minimum as f64) < 1.5 * ideal,
        "{config}: removed host owned {minimum} keys, expected about {ideal}"
    );
    assert!(
        moved >= minimum && moved as f64 <= 2.0 * minimum as f64,
        "{config}: {moved} keys moved, minimum {minimum}"
    );
}

#[test]
fn ring_hash_moves_about_one_nth_of_keys() {
    check_movement(r#"{"kind":"ring_hash"}"#, 20);
    check_movement(r#"{"kind":"ring_hash"}"#, 100);
}

#[test]
fn maglev_moves_about_one_nth_of_keys() {
    check_movement(r#"{"kind":"maglev"}"#, 20);
    check_movement(r#"{"kind":"maglev"}"#, 100);
}

#[test]
fn bounded_load_never_exceeds_capacity_factor_times_average() {
    for (factor, weights) in [
        (125u32, vec![1u32; 10]),
        (150, vec![1, 2, 3, 1, 1, 4]),
        (100, vec![1; 7]),
    ] {
        let hosts: Vec<Candidate> = weights
            .iter()
            .enumerate()
            .map(|(i, &w)| Candidate::weighted(i as u32, w))
            .collect();
        let wsum: u64 = weights.iter().map(|&w| u64::from(w)).sum();
        let config = BoundedLoadConfig {
            hash_balance_factor: factor,
            ..Default::default()
        };
        let mut lb = BoundedLoad::new(config, Seed::new(9));
        lb.set_endpoints(&hosts, Instant::EPOCH);
        let mut rng = 0x1234_5678_u64;
        let mut next = || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        let mut in_flight: Vec<EndpointId> = Vec::new();
        for _ in 0..200_000 {
            if !in_flight.is_empty() && next() % 100 < 45 {
                let i = (next() % in_flight.len() as u64) as usize;
                let ep = in_flight.swap_remove(i);
                lb.on_complete(
                    ep,
                    Instant::EPOCH,
                    mesh_core::Outcome::Success,
                    Instant::EPOCH,
                );
                continue;
            }
            // Hot keys: half the requests share one of three hashes.
            let h = if next() % 2 == 0 { next() % 3 } else { next() };
            let ep = lb.pick(&PickCtx::with_hash(h), Instant::EPOCH).unwrap();
            lb.on_dispatch(ep, Instant::EPOCH);
            in_flight.push(ep);
            let m = in_flight.len() as u64;
            let w = u64::from(weights[ep.index()]);
            let cap = (u128::from(factor) * u128::from(m) * u128::from(w))
                .div_ceil(100 * u128::from(wsum));
            assert!(
                u128::from(lb.in_flight(ep)) <= cap,
                "factor {factor}: {ep} holds {} of {m}, capacity {cap}",
                lb.in_flight(ep)
            );
        }
    }
}
