//! The membership timeline in the simulator: instances that join, leave and restart, and
//! proxies that learn of it late.

use meshbench_report::RunResult;

fn run(yaml: &str) -> Vec<RunResult> {
    let loaded = meshbench_scenario::parse(yaml, "test.yaml", std::path::Path::new("."))
        .expect("valid scenario");
    meshbench_sim::run_all(&loaded, loaded.scenario.seed, &|| {})
}

/// Instance 4's share of the attempts in each 1 s window.
fn share_of(r: &RunResult, instance: usize) -> Vec<f64> {
    r.endpoint_series
        .iter()
        .map(|w| w[instance] as f64 / w.iter().sum::<u64>().max(1) as f64)
        .collect()
}

#[test]
fn a_new_instance_gets_nothing_before_the_proxy_hears_of_it_then_ramps_by_slow_start() {
    // 4 instances, scaled to 5 at 5 s; the proxy hears of it 2 s later. Round robin with
    // Envoy's slow start (10 s window, aggression 1, floor 10%): the new host's weight is
    // max(0.1, t / 10 s) of the others' for t since the proxy learnt of it, so its share over
    // the k-th second after 7 s is w / (4 + w), w the mean factor over that second.
    let yaml = "
name: t
seed: 2
duration: 20s
strategies:
  rr: { balancer: { kind: round_robin, slow_start_config: { slow_start_window: 10s } } }
services:
  b: { instances: 4, concurrency: 1000, service_time: { dist: constant, value: 1ms } }
clients:
  c: { proxies: 1, target: b, arrival: { process: poisson, rate: 20000/s } }
membership:
  propagation: { dist: constant, value: 2s }
  changes:
    - { at: 5s, target: b, change: scale, to: 5 }
";
    let r = &run(yaml)[0];
    assert_eq!(r.endpoint_series[0].len(), 5);
    let share = share_of(r, 4);
    // Windows end at 1 s, 2 s, ...: window w covers (w, w + 1] seconds.
    for (w, s) in share.iter().enumerate().take(7) {
        assert_eq!(*s, 0.0, "window {w}: {share:?}");
    }
    let mean_factor = |from: f64| -> f64 {
        // Mean of max(0.1, t / 10) over t in [from, from + 1], by 1000 steps.
        (0..1000)
            .map(|i| (0.1f64).max((from + (f64::from(i) + 0.5) / 1000.0) / 10.0))
            .sum::<f64>()
            / 1000.0
    };
    for k in [0usize, 4, 9] {
        let w = mean_factor(k as f64);
        let want = w / (4.0 + w);
        let got = share[7 + k];
        assert!(
            (got - want).abs() < 0.01,
            "second {k} after: {got:.4} vs {want:.4}: {share:?}"
        );
    }
    assert!((share[18] - 0.2).abs() < 0.01, "{share:?}");
    assert_eq!(r.failures.values().sum::<u64>(), 0);
}

/// 20 proxies, 5 instances, instance 4 removed at 2 s without draining; retries on connect
/// failures to another host (re-picking up to 5 times to avoid a host already tried: Envoy's
/// default of 1 re-pick would let P2C land on the refusing host again now and then), and room
/// for 100 concurrent retries (Envoy's default breaker allows 3, which a burst of refusals can
/// fill).
const STALE: &str = "
name: t
seed: 3
duration: 6s
strategies:
  p2c: { balancer: { kind: least_request }, retries: { num_retries: 2, retry_on: [connect-failure], retry_host_predicate: [previous_hosts], host_selection_retry_max_attempts: 5 }, circuit_breakers: { max_retries: 100 } }
services:
  b: { instances: 5, concurrency: 100, service_time: { dist: exponential, mean: 1ms } }
clients:
  c: { proxies: 20, target: b, arrival: { process: poisson, rate: 4000/s } }
membership:
  propagation: PROPAGATION
  changes:
    - { at: 2s, target: b/4, change: remove }
";

#[test]
fn stale_views_send_to_a_removed_instance_and_retry_the_connect_failures() {
    let stale = &run(&STALE.replace("PROPAGATION", "{ dist: exponential, mean: 1s }"))[0];
    // Proxies that have not heard of the removal still pick instance 4: connect failures,
    // each retried on another host.
    let refused = stale.endpoints[4].errors;
    assert!(refused > 500, "refused {refused}");
    assert_eq!(
        stale.failures.values().sum::<u64>(),
        0,
        "{:?} {:?}",
        stale.failures,
        stale.events
    );
    assert!(stale.attempts >= stale.requests + refused);
    // Nothing reaches it once every proxy knows (the last hears within a few seconds).
    let late: u64 = stale.endpoint_series[5..].iter().map(|w| w[4]).sum();
    assert!(late < refused / 10, "late {late} of {refused}");
    // Without retries, they fail the requests (`retry_on: [5xx]` would retry them too: Envoy's
    // 5xx covers connect failures).
    let unretried = &run(&STALE
        .replace("PROPAGATION", "{ dist: exponential, mean: 1s }")
        .replace("num_retries: 2", "num_retries: 0"))[0];
    let failed = unretried.failures.get("local_error").copied().unwrap_or(0);
    assert!(failed > 500, "{:?}", unretried.failures);
    // With no propagation delay, no proxy ever sends to it after it stops.
    let fresh = &run(&STALE.replace("PROPAGATION", "{ dist: constant, value: 0s }"))[0];
    assert_eq!(fresh.endpoints[4].errors, 0);
    assert_eq!(fresh.attempts, fresh.requests);
    assert_eq!(fresh.failures.values().sum::<u64>(), 0);
}

#[test]
fn draining_lets_stale_proxies_finish_and_a_rolling_restart_takes_batches_down_in_turn() {
    // Removal with a drain longer than the propagation: every proxy hears "draining" before
    // the instance stops, so nothing is refused.
    let drained = &run(&STALE
        .replace("PROPAGATION", "{ dist: uniform, min: 0s, max: 500ms }")
        .replace("change: remove }", "change: remove, drain: 1s }"))[0];
    assert_eq!(drained.endpoints[4].errors, 0);
    assert_eq!(drained.failures.values().sum::<u64>(), 0);
    // A rolling restart, one at a time: each instance takes no traffic while it is down, and
    // takes its share again after.
    let yaml = "
name: t
seed: 4
duration: 12s
strategies:
  rr: { balancer: { kind: round_robin } }
services:
  b: { instances: 4, concurrency: 100, service_time: { dist: constant, value: 1ms } }
clients:
  c: { proxies: 4, target: b, arrival: { process: poisson, rate: 4000/s } }
membership:
  changes:
    - { at: 2s, target: b, change: rolling_restart, drain: 500ms, down: 1s, pause: 500ms }
";
    let r = &run(yaml)[0];
    assert_eq!(r.failures.values().sum::<u64>(), 0);
    // Instance i is draining or down over [2 + 2i, 3.5 + 2i) s: window (2 + 2i, 3 + 2i] holds
    // none of its attempts.
    for i in 0..4 {
        let w = 2 + 2 * i;
        assert_eq!(
            r.endpoint_series[w][i], 0,
            "instance {i}: {:?}",
            r.endpoint_series
        );
        assert!(
            r.endpoint_series[11][i] > 500,
            "instance {i} back: {:?}",
            r.endpoint_series[11]
        );
    }
}

#[test]
fn bad_membership_changes_are_refused_naming_the_field() {
    let base = STALE.replace("PROPAGATION", "{ dist: constant, value: 0s }");
    for (change, field, words) in [
        (
            "{ at: 2s, target: b, change: scale }",
            "membership.changes.0",
            "needs `to`",
        ),
        (
            "{ at: 2s, target: b/1, change: scale, to: 3 }",
            "membership.changes.0.target",
            "names a service",
        ),
        (
            "{ at: 2s, target: bb, change: remove }",
            "membership.changes.0.target",
            "did you mean `b`",
        ),
        (
            "{ at: 2s, target: b, change: weight }",
            "membership.changes.0",
            "needs `weight`",
        ),
        (
            "{ at: 2s, target: b, change: remove, batch: 2 }",
            "membership.changes.0.batch",
            "rolling_restart",
        ),
        (
            "{ at: 2s, target: b, change: scale, to: 6, cold: { factor: 0.5, for: 1s } }",
            "membership.changes.0.cold.factor",
            "> 1",
        ),
        (
            "{ at: 2s, target: b, change: scael, to: 6 }",
            "membership.changes[0].change",
            "did you mean `scale`",
        ),
    ] {
        let yaml = base.replace("{ at: 2s, target: b/4, change: remove }", change);
        let e = meshbench_scenario::parse(&yaml, "t.yaml", std::path::Path::new("."))
            .unwrap_err()
            .to_string();
        assert!(e.contains(field) && e.contains(words), "{change}: {e}");
    }
}
