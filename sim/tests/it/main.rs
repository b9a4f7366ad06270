//! The simulator against what the field published: queueing theory's closed forms (M/M/1,
//! M/M/c, round robin over N, the supermarket model), Envoy's priority and zone-aware
//! arithmetic, the machine-repairman model (closed-loop users), Linkerd's 2016 experiment, the retry storm and the Tail at Scale's hedging. Each
//! experiment runs a shipped scenario file in full (`meshbench_sim::published`, the same checks
//! `meshbench reproduce` writes into docs/validation.md) and every figure must hold: exact
//! figures within the 99% confidence interval of their replications, with an interval narrow
//! enough to mean something.

use std::path::PathBuf;

mod arrivals;
mod faults;
mod fields;
mod fuzz;
mod membership;
mod world;

/// Runs the experiment `name` and asserts each of its figures.
fn reproduce(name: &str) {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let e = meshbench_sim::published::experiments()
        .into_iter()
        .find(|e| e.name == name)
        .unwrap_or_else(|| panic!("no experiment `{name}`"));
    let figures = meshbench_sim::published::reproduce(&root, &e).expect("the scenario loads");
    assert!(!figures.is_empty(), "{name}: no figures");
    let failed: Vec<String> = figures
        .iter()
        .filter(|f| !f.pass)
        .map(|f| {
            format!(
                "{}: measured {}, expected {} ({})",
                f.what, f.measured, f.expected, f.rule
            )
        })
        .collect();
    assert!(failed.is_empty(), "{}:\n{}", e.title, failed.join("\n"));
}

#[test]
fn random_split_is_mm1_at_load_05() {
    reproduce("mm1-0.5");
}

#[test]
fn random_split_is_mm1_at_load_09() {
    reproduce("mm1-0.9");
}

#[test]
fn round_robin_over_16_is_e16_m_1() {
    reproduce("rr-16");
}

#[test]
fn one_instance_with_4_servers_is_erlang_c() {
    reproduce("erlang-c-4");
}

#[test]
fn one_instance_with_16_servers_is_erlang_c() {
    reproduce("erlang-c-16");
}

#[test]
fn p2c_at_1000_instances_is_the_supermarket_model() {
    reproduce("supermarket");
}

/// Linkerd, "Beyond Round Robin" (2016): one of 11 backends slows to about 2 s for half of a
/// 60 s run; with a 1 s timeout round robin succeeds on exactly 1 - (1/11)(1/2) = 95.45% of
/// requests (it sends the slow backend 1/11 of them, and every one of those times out), least
/// loaded does better (Linkerd: about 99%) and peak EWMA better still (about 99.9%).
#[test]
fn linkerd_2016_round_robin_succeeds_on_exactly_95_45_percent() {
    reproduce("linkerd-2016");
}

/// Envoy's priority vectors (overprovisioning 1.4, panic, total panic) through one scenario of
/// nine services, each with 100 instances per level.
#[test]
fn envoy_priority_load_matches_its_arithmetic() {
    reproduce("envoy-priority");
}

/// Envoy's zone-aware example: 40/40/20 clients over 25/50/25 hosts routes 62.5% locally and
/// spills 2:1.
#[test]
fn envoy_zone_aware_routes_62_5_percent_locally_and_spills_2_to_1() {
    reproduce("envoy-zone-aware");
}

/// Closed-loop users in the simulator: 10 users thinking Exp(9 ms) against one Exp(1 ms)
/// server match the machine-repairman model's mean response time (3.019 ms) within the CI, and
/// its throughput.
#[test]
fn a_three_tier_chain_takes_the_sum_of_its_stages_network_and_sidecars() {
    reproduce("three-tier-chain");
}

#[test]
fn fan_out_to_100_leaves_with_1_percent_slow_is_slow_63_4_percent_of_the_time() {
    reproduce("tail-at-scale-fanout");
}

#[test]
fn closed_loop_users_match_the_machine_repairman_model() {
    reproduce("machine-repairman");
}

#[test]
fn hedging_cuts_the_far_tail_for_a_few_percent_more_attempts() {
    reproduce("tail-at-scale-hedging");
}

#[test]
fn strategies_share_arrivals_and_service_draws() {
    // One instance: every balancer must pick it, so two strategies that differ only in the
    // balancer see exactly the same requests, service times and latencies (common random
    // numbers). With two instances they differ only by the decisions.
    let yaml = "name: crn
seed: 5
requests: 20000
replications: 2
strategies:
  a: { balancer: { kind: round_robin } }
  b: { balancer: { kind: random } }
  c: { balancer: { kind: least_request } }
network:
  latency: { dist: lognormal, median: 100us, p99: 1ms }
services:
  s:
    instances: INSTANCES
    concurrency: 2
    service_time: { dist: mixture, components: [ { weight: 9, dist: { dist: exponential, mean: 1ms } }, { weight: 1, dist: { dist: pareto, scale: 2ms, shape: 1.5 } } ] }
    error_rate: 0.01
clients:
  load:
    proxies: 3
    target: s
    arrival: { process: poisson, rate: 1000/s }
";
    let one = meshbench_scenario::parse(
        &yaml.replace("INSTANCES", "1"),
        "crn.yaml",
        std::path::Path::new("."),
    )
    .expect("valid");
    let runs = meshbench_sim::run_all(&one, 5, &|| {});
    for r in 0..2 {
        let of = |s: &str| {
            runs.iter()
                .find(|x| x.strategy == s && x.replication == r)
                .unwrap()
        };
        let (a, b, c) = (of("a"), of("b"), of("c"));
        assert_eq!(a.latency, b.latency, "replication {r}");
        assert_eq!(a.latency, c.latency, "replication {r}");
        assert_eq!((a.requests, a.successes), (b.requests, b.successes));
    }
    assert_ne!(runs[0].latency, runs[1].latency, "replications differ");
    let two = meshbench_scenario::parse(
        &yaml.replace("INSTANCES", "2"),
        "crn.yaml",
        std::path::Path::new("."),
    )
    .expect("valid");
    let runs = meshbench_sim::run_all(&two, 5, &|| {});
    assert_eq!(runs[0].requests, runs[2].requests, "same arrivals");
    assert_ne!(runs[0].latency, runs[2].latency, "different decisions");
}

/// The retry storm: a 5 s spike leaves the server overloaded without a retry budget for as long
/// as the run lasts; Envoy's budget, and Linkerd's with its reserve scaled to the service, end
/// it within 60 s.
#[test]
fn a_retry_storm_outlives_its_spike_without_a_budget_and_ends_with_one() {
    reproduce("retry-storm");
}
