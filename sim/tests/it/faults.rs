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

#[test]
fn a_cold_start_decays_from_its_factor_to_one_over_its_window() {
    // 1 ms service, cold from 2 s to 6 s with factor 5: a request starting at t takes
    // 1 + 4 (6 s - t) / 4 s ms, so the window's first second has a median of 4.5 ms and its last
    // 1.5 ms; before and after, 1 ms.
    let r = &run(&format!(
        "{}faults:\n  - {{ at: 2s, until: 6s, target: b/0, kind: cold_start, factor: 5 }}\n",
        BASE.replace("concurrency: 4", "concurrency: 100")
    ))[0];
    let p50: Vec<f64> = r.timeseries.iter().map(|s| s.p50_ms).collect();
    assert!((p50[1] - 1.0).abs() < 0.02, "{p50:?}");
    assert!((p50[2] - 4.5).abs() < 0.05, "first quarter: {p50:?}");
    assert!((p50[5] - 1.5).abs() < 0.03, "last quarter: {p50:?}");
    assert!(
        p50[2] > p50[3] && p50[3] > p50[4] && p50[4] > p50[5],
        "{p50:?}"
    );
    assert!((p50[7] - 1.0).abs() < 0.02, "{p50:?}");
    assert_eq!(r.failures.values().sum::<u64>(), 0);
}

#[test]
fn a_capacity_dip_queues_work_and_recovers_after_it() {
    // 2000/s at 1 ms with 4 servers runs at half load; with 1 server for [2 s, 3 s) the queue
    // grows by 1000 requests, then drains at 2000/s once the 4 servers are back.
    let r = &run(&format!(
        "{}faults:\n  - {{ at: 2s, until: 3s, target: b/0, kind: capacity, concurrency: 1 }}\n",
        BASE.replace("rate: 1000/s", "rate: 2000/s")
    ))[0];
    let p99: Vec<f64> = r.timeseries.iter().map(|s| s.p99_ms).collect();
    assert!(p99[1] < 1.1, "{p99:?}");
    assert!(p99[2] > 300.0, "the dip: {p99:?}");
    assert!(p99[6] < 1.1, "recovered: {p99:?}");
    assert_eq!(r.failures.values().sum::<u64>(), 0);
}

#[test]
fn flapping_fails_at_its_period_and_duty_cycle() {
    // A crash every 1 s from 1 s to 5 s, on 30% of each period: 300 refusals in each of the 4
    // windows, none elsewhere.
    let r = &run(&format!(
        "{BASE}faults:\n  - {{ at: 1s, until: 5s, target: b/0, kind: crash, every: 1s, duty: 0.3 }}\n"
    ))[0];
    let errors: Vec<u64> = r.timeseries.iter().map(|s| s.errors).collect();
    for (w, e) in errors.iter().enumerate() {
        if (1..5).contains(&w) {
            assert!((299..=302).contains(e), "window {w}: {errors:?}");
        } else {
            assert_eq!(*e, 0, "window {w}: {errors:?}");
        }
    }
}

/// Two zones, one instance in each, one proxy in each, random picks, no network latency.
const ZONED: &str = "
name: t
seed: 7
duration: 4s
strategies: { random: { balancer: { kind: random }, retries: { num_retries: 0 } } }
zones: { a: {}, b: {} }
services:
  b: { instances: 2, concurrency: 100, service_time: { dist: constant, value: 1ms }, zone: { a: 1, b: 1 } }
clients:
  c: { proxies: 2, zone: { a: 1, b: 1 }, target: b, arrival: { process: poisson, rate: 2000/s } }
";

#[test]
fn a_zone_partition_fails_exactly_the_cross_zone_requests_as_connect_failures() {
    let r = &run(&format!(
        "{ZONED}faults:\n  - {{ at: 0s, target: zone:b, kind: partition, from: zone:a }}\n"
    ))[0];
    let flow = |from: &str, to: &str| {
        r.zone_flows
            .iter()
            .filter(|f| f.from == from && f.to == to)
            .map(|f| f.attempts)
            .sum::<u64>()
    };
    let cross = flow("a", "b") + flow("b", "a");
    assert!(cross > 1000, "{:?}", r.zone_flows);
    // Both directions are cut; same-zone requests all succeed.
    assert_eq!(r.failures.get("local_error").copied().unwrap_or(0), cross);
    assert_eq!(r.failures.values().sum::<u64>(), cross);
    assert_eq!(r.successes, flow("a", "a") + flow("b", "b"));
}

#[test]
fn a_client_partition_cuts_only_that_population() {
    let yaml = "
name: t
seed: 7
duration: 2s
strategies: { rr: { balancer: { kind: round_robin }, retries: { num_retries: 0 } } }
services:
  b: { instances: 2, concurrency: 100, service_time: { dist: constant, value: 1ms } }
clients:
  cut: { target: b, arrival: { process: constant, rate: 1000/s } }
  fine: { target: b, arrival: { process: constant, rate: 1000/s } }
faults:
  - { at: 0s, target: b, kind: partition, from: cut }
";
    let r = &run(yaml)[0];
    assert_eq!(r.requests, 4000);
    assert_eq!(r.failures.get("local_error").copied(), Some(2000));
}

#[test]
fn a_zone_outage_downs_every_instance_of_the_zone() {
    let r = &run(&format!(
        "{ZONED}faults:\n  - {{ at: 0s, target: zone:a, kind: crash }}\n"
    ))[0];
    let errors: Vec<u64> = r.endpoints.iter().map(|e| e.errors).collect();
    assert!(errors[0] > 1000 && errors[1] == 0, "{errors:?}");
    assert_eq!(r.failures.values().sum::<u64>(), errors[0]);
}

#[test]
fn a_network_fault_delays_and_loses_messages_between_its_zones() {
    // Every proxy in zone a, the instance in zone b: 50 ms more each way, and each message lost
    // once with probability 0.1 (a 200 ms retransmission): mean 1 + 100 + 2 x 0.1 x 200 = 141 ms.
    let yaml = "
name: t
seed: 7
duration: 20s
strategies: { rr: { balancer: { kind: round_robin }, timeout: 0s } }
zones: { a: {}, b: {} }
services:
  b: { instances: 1, concurrency: 1000, service_time: { dist: constant, value: 1ms }, zone: b }
clients:
  c: { proxies: 1, zone: a, target: b, arrival: { process: poisson, rate: 1000/s } }
faults:
  - { at: 0s, target: zone:b, kind: network, from: zone:a, delay: 50ms, loss: 0.1 }
";
    let r = &run(yaml)[0];
    let mean = r.metric("mean_ms");
    assert!((mean - 141.0).abs() < 0.02 * 141.0, "mean {mean} ms");
    let p50 = r.metric("p50_ms");
    assert!((p50 - 101.0).abs() < 1.0, "p50 {p50} ms");
}

#[test]
fn bad_faults_are_refused_naming_the_field() {
    let err = |faults: &str| {
        meshbench_scenario::parse(
            &format!("{ZONED}faults:\n  - {faults}\n"),
            "t.yaml",
            std::path::Path::new("."),
        )
        .unwrap_err()
        .to_string()
    };
    for (fault, field, words) in [
        (
            "{ at: 1s, target: b/0, kind: cold_start, factor: 5 }",
            "faults.0",
            "needs `until`",
        ),
        (
            "{ at: 1s, until: 2s, target: b/0, kind: cold_start, factor: 0.5 }",
            "faults.0.factor",
            "> 1",
        ),
        (
            "{ at: 1s, target: b, kind: network, from: zone:a, delay: 5ms }",
            "faults.0.target",
            "between two zones",
        ),
        (
            "{ at: 1s, target: zone:b, kind: network, from: zone:a }",
            "faults.0",
            "needs `delay`",
        ),
        (
            "{ at: 1s, target: b, kind: partition, from: cc }",
            "faults.0.from",
            "no client population `cc`",
        ),
        (
            "{ at: 1s, target: zone:c, kind: crash }",
            "faults.0.target",
            "no zone `c`",
        ),
        (
            "{ at: 1s, target: b, kind: crash, duty: 0.5 }",
            "faults.0.duty",
            "give `every`",
        ),
        (
            "{ at: 1s, target: b, kind: crash, every: 1s, duty: 1 }",
            "faults.0.duty",
            "strictly between 0 and 1",
        ),
        (
            "{ at: 1s, target: b, kind: crash, concurrency: 2 }",
            "faults.0.concurrency",
            "belongs to `kind: capacity`",
        ),
        (
            "{ at: 1s, target: b, kind: capacity, concurrency: 0 }",
            "faults.0.concurrency",
            ">= 1",
        ),
    ] {
        let e = err(fault);
        assert!(e.contains(field) && e.contains(words), "{fault}: {e}");
    }
}

#[test]
fn a_health_path_with_its_own_error_rate_passes_while_requests_fail() {
    // b/1 answers every request 500 from 2 s; its health path, with `health_error_rate: 0`,
    // never fails, so active health checks keep it in rotation and it fails half the requests.
    // With `health_error_rate: 1` the checks fail from the start (both hosts unhealthy: panic).
    let yaml = |rate: &str| {
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
  b: {{ instances: 2, concurrency: 1000, service_time: {{ dist: constant, value: 1ms }}, health_error_rate: {rate} }}
clients:
  c: {{ proxies: 1, target: b, arrival: {{ process: constant, rate: 1000/s }} }}
faults:
  - {{ at: 2s, target: b/1, kind: errors, rate: 1.0 }}
"
        )
    };
    let r = &run(&yaml("0"))[0];
    assert_eq!(
        r.events.get("health_changed").copied().unwrap_or(0),
        0,
        "{:?}",
        r.events
    );
    let failed = r.requests - r.successes;
    assert!((1900..=2100).contains(&failed), "{failed} failed");
    let r = &run(&yaml("1"))[0];
    assert!(
        r.events.get("health_changed").copied().unwrap_or(0) >= 2,
        "{:?}",
        r.events
    );
}
