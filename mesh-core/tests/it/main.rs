//! mesh-core integration tests: documented semantics, shares, invariants, determinism.

mod cluster_docs;
mod cluster_props;
mod config_errors;
mod consistent_hash;
mod harness;
mod health_docs;
mod outlier_docs;
mod policies;
mod pool_docs;
mod priority_docs;
mod props;
mod retry_docs;
mod seed_golden;
mod shares;
mod zone_docs;

use mesh_core::{Balancer, BalancerConfig, Candidate, EndpointId, Instant, PickCtx, Seed};

/// Builds a balancer from JSON config (the same serde path config files take).
pub fn build(json: &str, hosts: &[Candidate], seed: u64) -> Box<dyn Balancer> {
    let config: BalancerConfig = serde_json::from_str(json).expect("valid test config");
    config
        .build(hosts, Seed::new(seed), Instant::EPOCH)
        .expect("valid test config")
}

/// Picks `n` times with random hashes (no context) and counts picks per endpoint id.
pub fn counts(lb: &mut dyn Balancer, n: usize, now: Instant) -> Vec<u64> {
    let mut c = Vec::new();
    for _ in 0..n {
        let ep = lb.pick(&PickCtx::default(), now).expect("a host to pick");
        if c.len() <= ep.index() {
            c.resize(ep.index() + 1, 0);
        }
        c[ep.index()] += 1;
    }
    c
}

/// Asserts every host's share is within `tol` (relative) of its weight share.
pub fn assert_shares(counts: &[u64], hosts: &[Candidate], tol: f64, what: &str) {
    let total: u64 = counts.iter().sum();
    let wsum: u64 = hosts.iter().map(|c| u64::from(c.weight)).sum();
    for c in hosts {
        let want = c.weight as f64 / wsum as f64;
        let got = counts.get(c.id.index()).copied().unwrap_or(0) as f64 / total as f64;
        assert!(
            (got - want).abs() <= tol * want,
            "{what}: endpoint {} got share {got:.4}, want {want:.4} +- {:.1}%",
            c.id,
            tol * 100.0
        );
    }
}

/// The ids of `hosts` with weight > 0.
pub fn eligible(hosts: &[Candidate]) -> Vec<EndpointId> {
    hosts
        .iter()
        .filter(|c| c.weight > 0)
        .map(|c| c.id)
        .collect()
}
