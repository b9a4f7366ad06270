//! The fault timeline in the simulator: crashes refuse and reset, restart empty, fail health
//! checks; slowdowns, error bursts and fast failures act only inside their windows.

use meshbench_report::RunResult;

fn run(yaml: &str) -> Vec<RunResult> {
    let loaded = meshbench_scenario::parse(yaml, "test.yaml", std::path::Path::new("."))
        .expect("valid scenario");
    meshbench_sim::run_all(&loaded, loaded.scenario.seed, &|| {})
}

/// One instance, 1000 requests/s exactly, 1 ms constant service, no network delay: every
/// request's fate is known in closed form.
const BASE: &str = "
name: t
seed: 3
duration: 10s
strategies: { rr: { balancer: { kind: round_robin } } }
services:
  b: { instances: 1, concurrency: 4, service_time: { dist: constant, value: 1ms } }
clients:
  c: { proxies: 1, target: b, arrival: { process: constant, rate: 1000/s } }
";

#[test]
fn a_crash_refuses_every_arrival_in_its_window_and_restarts_empty() {
    let r = &run(&format!(
        "{BASE}faults:\n  - {{ at: 2s, until: 3s, target: b/0, kind: crash }}\n"
    ))[0];
    // Arrivals are 1 ms apart and each is served in 1 ms: the crash at 2 s resets the one in
    // service (if its phase puts one there) and refuses the 1000 (or 999) arrivals in [2 s, 3 s).
    let failed = r.failures.get("local_error").copied().unwrap_or(0);
    assert!(
        (999..=1001).contains(&failed),
        "failures {:?}, requests {}",
        r.failures,
        r.requests
    );
    assert_eq!(r.requests, 10_000);
    assert_eq!(r.endpoints[0].errors, failed);
    // Per-second windows: errors only in the third.
    let errors: Vec<u64> = r.timeseries.iter().map(|s| s.errors).collect();
    assert!(
        errors[2] >= 999 && errors.iter().sum::<u64>() == failed,
        "{errors:?}"
    );
}

#[test]
fn slowdown_errors_and_fast_fail_act_inside_their_windows_only() {
    let r = &run(&format!(
        "{BASE}faults:
  - {{ at: 1s, until: 2s, target: b, kind: slowdown, factor: 3 }}
  - {{ at: 4s, until: 5s, target: b/0, kind: errors, rate: 0.25 }}
  - {{ at: 6s, until: 7s, target: b, kind: fast_fail, rate: 0.5 }}
"
    ))[0];
    let ts = &r.timeseries;
    // 1 ms normally, 3 ms while slowed (concurrency 4 keeps queueing out of it).
    assert!((ts[0].p50_ms - 1.0).abs() < 0.02, "{}", ts[0].p50_ms);
    assert!((ts[1].p50_ms - 3.0).abs() < 0.05, "{}", ts[1].p50_ms);
    assert!((ts[2].p50_ms - 1.0).abs() < 0.02, "{}", ts[2].p50_ms);
    // A quarter of ~1000 served requests fail with 500s, then half are refused with 503s.
    let share = |w: usize| ts[w].errors as f64 / ts[w].requests as f64;
    assert!((share(4) - 0.25).abs() < 0.05, "{}", share(4));
    assert!((share(6) - 0.5).abs() < 0.05, "{}", share(6));
    for w in [0, 1, 2, 3, 5, 7, 8, 9] {
        assert_eq!(ts[w].errors, 0, "window {w}");
    }
    assert_eq!(
        r.failures.get("server_error").copied().unwrap_or(0),
        ts[4].errors
    );
    assert_eq!(
        r.failures.get("gateway_error").copied().unwrap_or(0),
        ts[6].errors
    );
}

#[test]
fn health_checks_see_a_crashed_host_and_its_return() {
    // Two instances, health checks every 100 ms: the crashed one turns unhealthy after 2 failed
    // probes and takes no traffic until it passes again after the restart. (The first probe
    // goes out before any traffic, so Envoy would wait `no_traffic_interval` for the second.)
    let yaml = "
name: t
seed: 3
duration: 6s
strategies:
  rr:
    balancer: { kind: round_robin }
    health_check: { timeout: 50ms, interval: 100ms, no_traffic_interval: 100ms, unhealthy_threshold: 2, healthy_threshold: 1, initial_health: healthy }
services:
  b: { instances: 2, concurrency: 4, service_time: { dist: constant, value: 1ms } }
clients:
  c: { proxies: 1, target: b, arrival: { process: constant, rate: 1000/s } }
faults:
  - { at: 2s, until: 4s, target: b/1, kind: crash }
";
    let r = &run(yaml)[0];
    // Refused until two probes fail (<= 200 ms of half the traffic, ~100 requests), then none.
    let failed = r.failures.get("local_error").copied().unwrap_or(0);
    assert!((50..=110).contains(&failed), "{failed} {:?}", r.events);
    assert!(
        r.events.get("health_changed").copied().unwrap_or(0) >= 2,
        "{:?}",
        r.events
    );
    // Both instances serve again by the end: the last window splits evenly.
    let last = r.endpoint_series.last().unwrap();
    assert!(last[1] > 400, "{last:?}");
}

#[test]
fn health_checks_see_fast_failing_erroring_and_slow_hosts() {
    // A health check is a request to the instance: from 2 s, b/1 fast-fails (503 to everything),
    // errors (every served request 500) or turns 400x slow (1 ms -> 400 ms, past the check's
    // 50 ms timeout). Each way, checks every 100 ms with unhealthy_threshold 2 (a 503 or 500 is a
    // definite failure: unhealthy at once) take it out of rotation within two intervals, so it
    // fails at most ~200 ms of its share of requests.
    for fault in [
        "kind: fast_fail",
        "kind: errors, rate: 1.0",
        "kind: slowdown, factor: 400",
    ] {
        let yaml = format!(
            "
name: t
seed: 3
duration: 6s
strategies:
  rr:
    balancer: {{ kind: round_robin }}
    timeout: 100ms
    health_check: {{ timeout: 50ms, interval: 100ms, no_traffic_interval: 100ms, unhealthy_threshold: 2, healthy_threshold: 1, initial_health: healthy }}
services:
  b: {{ instances: 2, concurrency: 1000, service_time: {{ dist: constant, value: 1ms }} }}
clients:
  c: {{ proxies: 1, target: b, arrival: {{ process: constant, rate: 1000/s }} }}
faults:
  - {{ at: 2s, target: b/1, {fault} }}
"
        );
        let r = &run(&yaml)[0];
        assert!(
            r.events.get("health_changed").copied().unwrap_or(0) >= 1,
            "{fault}: {:?}",
            r.events
        );
        let failed = r.requests - r.successes;
        assert!(
            (1..=110).contains(&failed),
            "{fault}: {failed} failed {:?}",
            r.failures
        );
        // The last window: all of it on b/0.
        let last = r.endpoint_series.last().unwrap();
        assert_eq!(last[1], 0, "{fault}: {last:?}");
    }
}

#[test]
fn health_checks_that_queue_fail_on_an_overloaded_host_and_inline_ones_do_not() {
    // b/1 slows 20x from 2 s to 4 s: 200/s of capacity for its 400/s. Checks that wait behind
    // its queue pass their 50 ms timeout and turn it unhealthy, so round robin moves its
    // traffic to b/0 and the queue stops growing; checks that do not queue take one (slowed)
    // service time, 20 ms, keep it healthy, and its queue grows for the whole 2 s.
    let yaml = |queues: bool| {
        format!(
            "
name: t
seed: 3
duration: 6s
strategies:
  rr:
    balancer: {{ kind: round_robin }}
    health_check: {{ timeout: 50ms, interval: 100ms, no_traffic_interval: 100ms, unhealthy_threshold: 2, healthy_threshold: 1, initial_health: healthy }}
services:
  b: {{ instances: 2, concurrency: 4, service_time: {{ dist: constant, value: 1ms }}, health_check_queues: {queues} }}
clients:
  c: {{ proxies: 1, target: b, arrival: {{ process: constant, rate: 800/s }} }}
faults:
  - {{ at: 2s, until: 4s, target: b/1, kind: slowdown, factor: 20 }}
"
        )
    };
    let queued = &run(&yaml(true))[0];
    let inline = &run(&yaml(false))[0];
    let changes = |r: &RunResult| r.events.get("health_changed").copied().unwrap_or(0);
    assert!(changes(queued) >= 2, "{:?}", queued.events);
    assert_eq!(changes(inline), 0, "{:?}", inline.events);
    // Marked unhealthy, b/1 takes far fewer attempts during the slowdown.
    let b1 = |r: &RunResult| r.endpoints[1].attempts;
    assert!(
        b1(queued) * 10 < b1(inline) * 9,
        "{} vs {}",
        b1(queued),
        b1(inline)
    );
    // And fewer requests wait in its queue: the mean latency is the lower.
    assert!(
        queued.metric("mean_ms") < inline.metric("mean_ms") * 0.9,
        "{} vs {}",
        queued.metric("mean_ms"),
        inline.metric("mean_ms")
    );
}

#[test]
fn a_scenario_without_faults_is_unchanged_by_an_empty_timeline() {
    let a = run(BASE);
    let b = run(&format!("{BASE}faults: []\n"));
    assert_eq!(
        serde_json::to_string(&a[0].timeseries).unwrap(),
        serde_json::to_string(&b[0].timeseries).unwrap()
    );
}

#[test]
fn rate_steps_change_the_arrival_rate_at_their_times() {
    // 10,000/s, then 20,000/s from 2 s, 5,000/s from 3 s, and 10,000/s again from 4 s:
    // each 1 s window's arrivals follow within 2% (about 1% is the Poisson noise at 10^4).
    let yaml = "
name: t
seed: 11
duration: 5s
sample_period: 1s
strategies: { rr: { balancer: { kind: round_robin } } }
services:
  b: { instances: 4, concurrency: 1000, service_time: { dist: constant, value: 100us } }
clients:
  c:
    proxies: 3
    target: b
    arrival: { process: poisson, rate: 10000/s, steps: [ { at: 2s, rate: 20000/s }, { at: 3s, rate: 5000/s }, { at: 4s, rate: 10000/s } ] }
";
    let r = &run(yaml)[0];
    let per_window: Vec<u64> = r.timeseries.iter().map(|s| s.requests).collect();
    let want = [10_000.0, 10_000.0, 20_000.0, 5_000.0, 10_000.0];
    assert_eq!(per_window.len(), want.len(), "{per_window:?}");
    for (got, want) in per_window.iter().zip(want) {
        let got = *got as f64;
        assert!((got - want).abs() <= 0.02 * want, "{per_window:?}");
    }
    // Steps belong to Poisson arrivals, in increasing time.
    let bad = yaml.replace("process: poisson", "process: constant");
    let e = meshbench_scenario::parse(&bad, "t.yaml", std::path::Path::new("."))
        .unwrap_err()
        .to_string();
    assert!(e.contains("`steps` belong to `process: poisson`"), "{e}");
    let unordered = yaml.replace("at: 4s", "at: 1s");
    let e = meshbench_scenario::parse(&unordered, "t.yaml", std::path::Path::new("."))
        .unwrap_err()
        .to_string();
    assert!(e.contains("increasing time"), "{e}");
}

#[test]
fn an_instance_that_serves_abandoned_requests_wastes_its_time_on_them() {
    // One server at 10/s takes 20/s for 2 s, then 2/s. Requests time out after 300 ms.
    // Dropping abandoned requests from the queue, the backlog vanishes as they time out; serving
    // them (`serves_abandoned`), the server spends about 2 s after the burst on work nobody
    // waits for, and the requests that arrive then time out too.
    let yaml = |serves: bool| {
        format!(
            "
name: t
seed: 4
duration: 6s
strategies: {{ rr: {{ balancer: {{ kind: round_robin }}, timeout: 300ms }} }}
services:
  b: {{ instances: 1, concurrency: 1, service_time: {{ dist: constant, value: 100ms }}, serves_abandoned: {serves} }}
clients:
  c: {{ proxies: 1, target: b, arrival: {{ process: poisson, rate: 20/s, steps: [ {{ at: 2s, rate: 2/s }} ] }} }}
"
        )
    };
    let dropped = &run(&yaml(false))[0];
    let served = &run(&yaml(true))[0];
    // Errors finishing from 3 s on: requests that arrived after the burst.
    let late = |r: &RunResult| -> u64 { r.timeseries[3..].iter().map(|s| s.errors).sum() };
    assert!(
        late(served) > late(dropped),
        "errors after the burst: served {} vs dropped {}",
        late(served),
        late(dropped)
    );
    assert_eq!(late(dropped), 0, "{:?}", dropped.timeseries);
}
