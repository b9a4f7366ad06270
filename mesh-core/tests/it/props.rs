//! Property tests over every balancer kind: picks are eligible, `None` exactly when nothing is
//! eligible, and the same seed gives the same picks.

use mesh_core::{
    Balancer, BalancerConfig, Candidate, Duration, EndpointId, Instant, LoadReport, Outcome,
    PickCtx, ProbeReply, Seed,
};
use proptest::prelude::*;

fn configs() -> Vec<BalancerConfig> {
    [
        r#"{"kind":"round_robin"}"#,
        r#"{"kind":"round_robin","slow_start_config":{"slow_start_window":"2s","aggression":2.0}}"#,
        r#"{"kind":"random"}"#,
        r#"{"kind":"weighted_random"}"#,
        r#"{"kind":"least_request"}"#,
        r#"{"kind":"least_request","choice_count":3,"sampling":"without_replacement","active_request_bias":0.5}"#,
        r#"{"kind":"least_request","slow_start_config":{"slow_start_window":"1s"}}"#,
        r#"{"kind":"join_shortest_queue"}"#,
        r#"{"kind":"peak_ewma"}"#,
        r#"{"kind":"ring_hash","minimum_ring_size":64,"maximum_ring_size":256}"#,
        r#"{"kind":"maglev","table_size":251}"#,
        r#"{"kind":"bounded_load","minimum_ring_size":64}"#,
        r#"{"kind":"prequal","pool_capacity":4}"#,
        r#"{"kind":"orca_weighted_round_robin","blackout_period":"0s","weight_update_period":"100ms"}"#,
    ]
    .iter()
    .map(|j| serde_json::from_str(j).unwrap())
    .collect()
}

#[derive(Clone, Debug)]
enum Op {
    Set(Vec<(u32, u32, bool)>),
    Pick(Option<u64>),
    Complete(usize, bool),
    Report(u32, u16, u16),
    Advance(u32),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        1 => prop::collection::vec((0u32..24, 0u32..4, any::<bool>()), 0..12).prop_map(Op::Set),
        8 => any::<Option<u64>>().prop_map(Op::Pick),
        4 => (any::<usize>(), any::<bool>()).prop_map(|(i, ok)| Op::Complete(i, ok)),
        1 => (0u32..24, 1u16..1000, 0u16..1000).prop_map(|(e, q, u)| Op::Report(e, q, u)),
        2 => (0u32..2_000).prop_map(Op::Advance),
    ]
}

/// Runs `ops` against a fresh balancer; returns the pick sequence. Asserts the contract.
fn run(config: &BalancerConfig, seed: u64, ops: &[Op]) -> Vec<Option<EndpointId>> {
    let mut now = Instant::EPOCH;
    let mut lb: Box<dyn Balancer> = config.build(&[], Seed::new(seed), now).unwrap();
    let mut set: Vec<Candidate> = Vec::new();
    let mut in_flight: Vec<(EndpointId, Instant)> = Vec::new();
    let mut picks = Vec::new();
    for op in ops {
        match op {
            Op::Set(v) => {
                let mut seen = [false; 24];
                set = v
                    .iter()
                    .filter(|(id, ..)| !std::mem::replace(&mut seen[*id as usize], true))
                    .map(|&(id, w, ss)| Candidate {
                        id: EndpointId(id),
                        weight: w,
                        slow_start_since: ss.then_some(now),
                    })
                    .collect();
                lb.set_endpoints(&set, now);
            }
            Op::Pick(h) => {
                let cx = PickCtx { hash: *h };
                let got = lb.pick(&cx, now);
                let eligible: Vec<EndpointId> =
                    set.iter().filter(|c| c.weight > 0).map(|c| c.id).collect();
                match got {
                    Some(ep) => {
                        assert!(
                            eligible.contains(&ep),
                            "{}: picked {ep} not in {eligible:?}",
                            lb.kind()
                        );
                        lb.on_dispatch(ep, now);
                        in_flight.push((ep, now));
                    }
                    None => assert!(eligible.is_empty(), "{}: None with {eligible:?}", lb.kind()),
                }
                while let Some(p) = lb.poll_probe() {
                    let rif = in_flight.iter().filter(|(e, _)| *e == p).count() as u32;
                    lb.on_probe_result(
                        p,
                        ProbeReply {
                            rif,
                            latency: Duration::from_micros(100 + u64::from(rif) * 50),
                        },
                        now,
                    );
                }
                picks.push(got);
            }
            Op::Complete(i, ok) => {
                if !in_flight.is_empty() {
                    let (ep, sent) = in_flight.swap_remove(i % in_flight.len());
                    let outcome = if *ok {
                        Outcome::Success
                    } else {
                        Outcome::ServerError
                    };
                    lb.on_complete(ep, sent, outcome, now);
                }
            }
            Op::Report(ep, qps, util) => {
                let r = LoadReport {
                    qps: f64::from(*qps),
                    eps: 1.0,
                    utilization: f64::from(*util) / 1000.0,
                };
                lb.on_load_report(EndpointId(*ep), &r, now);
            }
            Op::Advance(ms) => now += Duration::from_millis(u64::from(*ms)),
        }
    }
    picks
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn picks_are_eligible_and_deterministic(seed in any::<u64>(), ops in prop::collection::vec(op(), 1..120)) {
        for config in configs() {
            let a = run(&config, seed, &ops);
            let b = run(&config, seed, &ops);
            prop_assert_eq!(a, b, "{} is not deterministic", config.kind());
        }
    }
}

proptest! {
    /// A fork depends only on its parent and its label: forking a set of labels in any order
    /// (with other forks interleaved) gives the same seeds.
    #[test]
    fn seed_forks_are_order_independent(
        root in any::<u64>(),
        labels in prop::collection::vec("[a-z/0-9]{0,12}", 1..8),
        indices in prop::collection::vec(any::<u64>(), 1..8),
        rotate in any::<usize>(),
    ) {
        let s = Seed::new(root);
        let forward: Vec<Seed> = labels.iter().map(|l| s.fork(l)).collect();
        let mut order: Vec<usize> = (0..labels.len()).collect();
        order.rotate_left(rotate % labels.len());
        order.reverse();
        for &i in &order {
            let _ = s.fork_index(indices[i % indices.len()]);
            prop_assert_eq!(s.fork(&labels[i]), forward[i]);
        }
        let by_index: Vec<Seed> = indices.iter().map(|&i| s.fork_index(i)).collect();
        for (k, &i) in indices.iter().enumerate().rev() {
            prop_assert_eq!(s.fork_index(i), by_index[k]);
        }
    }
}
