//! The static world from scenario files: weights, priorities with starting health, zones and
//! zone-aware routing, request keys and hashing, server load reports. Each test states the
//! published arithmetic (Envoy's docs and source) and checks the simulator reproduces it from a
//! file.

use std::collections::BTreeMap;

use meshbench_report::RunResult;

fn run_yaml(yaml: &str) -> Vec<RunResult> {
    let loaded = meshbench_scenario::parse(yaml, "test.yaml", std::path::Path::new("."))
        .unwrap_or_else(|e| panic!("{e}"));
    meshbench_sim::run_all(&loaded, loaded.scenario.seed, &|| {})
}

/// Each endpoint's share of attempts, by (service, instance).
fn shares(r: &RunResult) -> BTreeMap<(String, u32), f64> {
    let total: u64 = r.endpoints.iter().map(|e| e.attempts).sum();
    r.endpoints
        .iter()
        .map(|e| {
            (
                (e.service.clone(), e.instance),
                e.attempts as f64 / total as f64,
            )
        })
        .collect()
}

#[test]
fn weighted_round_robin_and_weighted_random_give_each_endpoint_its_weight_share() {
    let runs = run_yaml(
        r#"
name: weights
seed: 3
requests: 200000
strategies:
  wrr: { balancer: { kind: round_robin } }
  weighted_random: { balancer: { kind: weighted_random } }
  least_request: { balancer: { kind: least_request } }
  random: { balancer: { kind: random } }
policy: { timeout: 0s, circuit_breakers: { max_requests: 1000000 } }
services:
  backend:
    instances: 4
    concurrency: 100
    service_time: { dist: exponential, mean: 1ms }
    overrides: { 1: { weight: 2 }, 2: { weight: 3 }, 3: { weight: 4 } }
clients:
  load: { proxies: 4, target: backend, arrival: { process: poisson, rate: 2000/s } }
"#,
    );
    for r in &runs {
        let s = shares(r);
        for i in 0..4u32 {
            let got = s[&("backend".into(), i)];
            let want = f64::from(i + 1) / 10.0;
            match r.strategy.as_str() {
                "random" => {
                    // Uniform random ignores weights: the control that shows the weights act.
                    assert!((got - 0.25).abs() < 0.0125, "random: {i} got {got}");
                    continue;
                }
                "least_request" => {
                    // Envoy's weighted least request (weight / (active + 1)^bias) also reacts
                    // to load, so it follows the weights more loosely.
                    assert!(
                        (got - want).abs() <= 0.1 * want,
                        "least_request: {i} got {got}"
                    );
                    continue;
                }
                _ => {}
            }
            // envoy-lbsim's tolerance: within 5% of the share.
            assert!(
                (got - want).abs() <= 0.05 * want,
                "{}: endpoint {i} got {got:.4}, weight share {want}",
                r.strategy
            );
        }
    }
}

fn priority_split(p0_unhealthy: u32, factor: f64) -> (f64, f64) {
    let yaml = format!(
        r#"
name: priorities
seed: 9
requests: 100000
strategies:
  s: {{ priority: {{ overprovisioning_factor: {factor} }} }}
policy: {{ timeout: 0s, circuit_breakers: {{ max_requests: 1000000 }} }}
services:
  backend:
    instances: 200
    concurrency: 1000
    service_time: {{ dist: constant, value: 1ms }}
    overrides:
      100-199: {{ priority: 1 }}
{unhealthy}
clients:
  load: {{ proxies: 2, target: backend, arrival: {{ process: poisson, rate: 10000/s }} }}
"#,
        unhealthy = if p0_unhealthy == 0 {
            String::new()
        } else {
            format!("      0-{}: {{ health: unhealthy }}", p0_unhealthy - 1)
        }
    );
    let r = &run_yaml(&yaml)[0];
    let total: u64 = r.endpoints.iter().map(|e| e.attempts).sum();
    let p0: u64 = r
        .endpoints
        .iter()
        .filter(|e| e.instance < 100)
        .map(|e| e.attempts)
        .sum();
    let p0 = p0 as f64 / total as f64;
    (p0, 1.0 - p0)
}

#[test]
fn envoy_priority_load_from_a_scenario_file() {
    // Envoy's source rule (integer truncation, remainder to the first healthy priority), with
    // the default overprovisioning factor 1.4: P0 at 72/71/50/25% healthy, P1 all healthy.
    for (healthy, want_p0) in [(72, 1.00), (71, 0.99), (50, 0.70), (25, 0.35)] {
        let (p0, p1) = priority_split(100 - healthy, 1.4);
        assert!(
            (p0 - want_p0).abs() < 0.005,
            "P0 {healthy}% healthy: P0 got {p0:.4}, Envoy gives {want_p0}"
        );
        assert!((p0 + p1 - 1.0).abs() < 1e-9);
    }
    // Without overprovisioning, 72% healthy keeps 72%.
    let (p0, _) = priority_split(28, 1.0);
    assert!((p0 - 0.72).abs() < 0.005, "factor 1.0: {p0}");
}

#[test]
fn zone_aware_routing_from_a_scenario_file() {
    // Envoy's worked example: local shares 40/40/20, upstream 25/50/25. Zone a routes
    // 25/40 = 62.5% locally and spills the rest to b and c in the ratio of their residual
    // capacity (10 : 5 = 2 : 1); zones b and c have enough upstream locally and stay local.
    let runs = run_yaml(
        r#"
name: zone-aware
seed: 4
requests: 300000
strategies:
  zone_aware: { zone_aware: {} }
  plain: {}
policy: { timeout: 0s, circuit_breakers: { max_requests: 1000000 } }
zones: { a: {}, b: {}, c: {} }
network:
  same_zone: { dist: constant, value: 100us }
  cross_zone: { dist: constant, value: 1ms }
services:
  backend:
    instances: 8
    concurrency: 1000
    service_time: { dist: constant, value: 1ms }
    zone: { a: 2, b: 4, c: 2 }
clients:
  load:
    proxies: 10
    zone: { a: 4, b: 4, c: 2 }
    target: backend
    arrival: { process: poisson, rate: 10000/s }
"#,
    );
    let flows = |r: &RunResult, from: &str| -> BTreeMap<String, f64> {
        let mine: Vec<_> = r.zone_flows.iter().filter(|f| f.from == from).collect();
        let total: u64 = mine.iter().map(|f| f.attempts).sum();
        mine.iter()
            .map(|f| (f.to.clone(), f.attempts as f64 / total as f64))
            .collect()
    };
    let za = &runs[0];
    let a = flows(za, "a");
    assert!(
        (a["a"] - 0.625).abs() < 0.01,
        "zone a local share {}",
        a["a"]
    );
    assert!(
        (a["b"] - 0.25).abs() < 0.01 && (a["c"] - 0.125).abs() < 0.01,
        "spill 2:1: {a:?}"
    );
    for z in ["b", "c"] {
        assert!(flows(za, z)[z] > 0.999, "zone {z} routes directly");
    }
    // Without zone-aware routing every zone spreads by host count: zone a keeps 25%.
    let plain = flows(&runs[1], "a");
    assert!((plain["a"] - 0.25).abs() < 0.01, "{plain:?}");
}

const HOT_KEYS: &str = r#"
name: hot
seed: 8
duration: 20s
warmup: 2s
strategies:
  ring_hash: { balancer: { kind: ring_hash } }
  maglev: { balancer: { kind: maglev } }
  bounded_load: { balancer: { kind: bounded_load, hash_balance_factor: 125 } }
  p2c: { balancer: { kind: least_request } }
policy: { timeout: 0s, circuit_breakers: { max_requests: 1000000 } }
services:
  backend:
    instances: 10
    concurrency: 1000
    service_time: { dist: exponential, mean: 20ms }
    SLOW
clients:
  load:
    proxies: 1
    target: backend
    arrival: { process: poisson, rate: 5000/s }
    keys: { dist: zipf, count: 10000, exponent: 1.1 }
"#;

/// Which endpoint each hot key's attempts went to, and with what share of the key.
fn key_homes(r: &RunResult) -> BTreeMap<u32, (u32, f64)> {
    let mut out: BTreeMap<u32, (u32, u64, u64)> = BTreeMap::new();
    for k in &r.keys {
        let e = out.entry(k.key).or_insert((k.instance, 0, 0));
        e.2 += k.attempts;
        if k.attempts > e.1 {
            e.0 = k.instance;
            e.1 = k.attempts;
        }
    }
    out.into_iter()
        .map(|(k, (i, top, all))| (k, (i, top as f64 / all as f64)))
        .collect()
}

#[test]
fn hashing_keeps_keys_on_their_endpoints_and_bounded_load_caps_the_hottest() {
    let runs = run_yaml(&HOT_KEYS.replace("SLOW", ""));
    for r in &runs {
        let s = shares(r);
        let max = s.values().copied().fold(0.0, f64::max);
        let homes = key_homes(r);
        match r.strategy.as_str() {
            "ring_hash" | "maglev" => {
                // The same key always reaches the same endpoint while membership is unchanged.
                for (k, (_, share)) in &homes {
                    assert_eq!(*share, 1.0, "{}: key {k} split", r.strategy);
                }
                // The hottest key alone is ~13% of requests: some endpoint is far above 10%.
                assert!(max > 0.15, "{}: max share {max}", r.strategy);
            }
            "bounded_load" => {
                // Bounded loads cap each endpoint's requests in flight at
                // ceil(hash_balance_factor x the mean); about 100 are in flight here, so no
                // endpoint takes much more than 1.25 x 10% of the attempts (the ceiling adds
                // at most one request in ten).
                assert!(max <= 0.125 * 1.1, "bounded load max share {max}");
                assert!(
                    homes.values().any(|h| h.1 < 1.0),
                    "the hottest keys spill past their endpoint"
                );
            }
            _ => {
                assert!(max < 0.11, "p2c max share {max}");
                assert!(homes.values().all(|h| h.1 < 0.5), "p2c has no affinity");
            }
        }
    }
}

#[test]
fn ring_hash_and_maglev_keep_a_slow_hosts_hot_keys_on_it() {
    let fast = run_yaml(&HOT_KEYS.replace("SLOW", ""));
    for (i, name) in ["ring_hash", "maglev"].iter().enumerate() {
        let (home, _) = key_homes(&fast[i])[&0];
        let before = shares(&fast[i])[&("backend".into(), home)];
        // The hottest key's endpoint becomes 5x slower (still far from saturated).
        let slow = run_yaml(&HOT_KEYS.replace(
            "SLOW",
            &format!("overrides: {{ {home}: {{ slowdown: 5 }} }}"),
        ));
        let after = shares(&slow[i])[&("backend".into(), home)];
        assert_eq!(key_homes(&slow[i])[&0], (home, 1.0), "{name}: key 0 moved");
        // The share follows the keys, not 1/N and not the latency.
        assert!(
            (after - before).abs() < 0.005,
            "{name}: {before} -> {after}"
        );
        assert!(after > 0.15, "{name}: {after}");
        // P2C, keyless, moves load off the slow host.
        let p2c = shares(&slow[3])[&("backend".into(), home)];
        assert!(p2c < 0.09, "p2c share of the slow host {p2c}");
    }
}

#[test]
fn orca_weighted_round_robin_moves_load_off_a_highly_utilized_instance() {
    let runs = run_yaml(
        r#"
name: orca
seed: 6
duration: 60s
warmup: 20s
strategies:
  orca: { balancer: { kind: orca_weighted_round_robin } }
  round_robin: { balancer: { kind: round_robin } }
policy: { timeout: 0s, circuit_breakers: { max_requests: 1000000 } }
services:
  backend:
    instances: 5
    concurrency: 4
    service_time: { dist: exponential, mean: 4ms }
    overrides: { 2: { slowdown: 3 } }
clients:
  load: { proxies: 4, target: backend, arrival: { process: poisson, rate: 2000/s } }
"#,
    );
    let slow = |r: &RunResult| shares(r)[&("backend".into(), 2)];
    let (orca, rr) = (slow(&runs[0]), slow(&runs[1]));
    assert!((rr - 0.2).abs() < 0.005, "round robin {rr}");
    // Weight = qps / utilization = capacity, so the 3x slower instance should settle near a
    // third of its peers' share: 1/(4 x 3 + 1) ~ 7.7% once the blackout (10 s) has passed.
    assert!(orca < 0.12, "orca share of the slow instance {orca}");
    assert!(orca > 0.04, "orca still sends it some load: {orca}");
}

fn locality_split(unhealthy_in_a: u32) -> f64 {
    let yaml = format!(
        r#"
name: locality
seed: 12
requests: 200000
strategies:
  locality: {{ balancer: {{ kind: random }}, locality_weighted_lb: {{}} }}
policy: {{ timeout: 0s, circuit_breakers: {{ max_requests: 1000000 }} }}
zones: {{ a: {{ weight: 3 }}, b: {{}} }}
services:
  backend:
    instances: 8
    concurrency: 1000
    service_time: {{ dist: constant, value: 1ms }}
    zone: {{ a: 4, b: 4 }}
{unhealthy}
clients:
  load: {{ proxies: 2, zone: a, target: backend, arrival: {{ process: poisson, rate: 10000/s }} }}
"#,
        unhealthy = if unhealthy_in_a == 0 {
            String::new()
        } else {
            format!(
                "    overrides: {{ 0-{}: {{ health: unhealthy }} }}",
                unhealthy_in_a - 1
            )
        }
    );
    let r = &run_yaml(&yaml)[0];
    let total: u64 = r.endpoints.iter().map(|e| e.attempts).sum();
    let a: u64 = r
        .endpoints
        .iter()
        .filter(|e| e.instance < 4)
        .map(|e| e.attempts)
        .sum();
    a as f64 / total as f64
}

#[test]
fn locality_weighted_balancing_from_zone_weights_in_the_file() {
    // Envoy's effective locality weight: weight x min(1, 1.4 x healthy / total). Zone a weighs
    // 3 and zone b 1: all healthy, a takes 3/4; with half of a's hosts unhealthy, a's effective
    // weight is 3 x 0.7 = 2.1 and it takes 2.1 / 3.1 = 67.7%.
    let all = locality_split(0);
    assert!((all - 0.75).abs() < 0.005, "all healthy: zone a {all}");
    let half = locality_split(2);
    assert!(
        (half - 2.1 / 3.1).abs() < 0.005,
        "half of a unhealthy: zone a {half}"
    );
}

/// Connection pools and handshakes, by their arithmetic: with constant service and network
/// times and no queueing, a request's latency is its service time, the network's round trip,
/// and whatever setting up its connection costs.
#[test]
fn new_connections_cost_a_round_trip_and_tls_its_handshake_mtls_more() {
    let runs = run_yaml(
        r#"
name: handshakes
seed: 9
requests: 20000
warmup: 100ms
strategies:
  pooled: { connections: {} }
  new_plaintext: { connections: { max_requests_per_connection: 1 } }
  new_tls: { connections: { max_requests_per_connection: 1, tls: tls } }
  new_mtls: { connections: { max_requests_per_connection: 1, tls: mtls } }
policy:
  timeout: 0s
network:
  latency: { dist: constant, value: 100us }
mesh:
  handshake: {}
services:
  backend:
    instances: 4
    concurrency: 100000
    service_time: { dist: constant, value: 1ms }
clients:
  load:
    proxies: 2
    target: backend
    arrival: { process: poisson, rate: 2000/s }
"#,
    );
    let mean = |r: &RunResult| r.latency.mean() / 1e6;
    let opened = |r: &RunResult| r.events.get("connections_opened").copied().unwrap_or(0);
    // Pooled: 1 ms + one round trip once warm; connections: a handful, each one handshake.
    assert!(
        (mean(&runs[0]) - 1.2).abs() < 0.005,
        "pooled {}",
        mean(&runs[0])
    );
    assert!(opened(&runs[0]) < 100, "pooled opened {}", opened(&runs[0]));
    // A new connection per request: TCP's round trip (+0.2 ms); TLS 1.3's round trip and the
    // default CPU costs, 250 + 120 us (+0.57 ms); mTLS the client certificate's, 20 + 150 us.
    for (r, expect) in [(&runs[1], 1.4), (&runs[2], 1.97), (&runs[3], 2.14)] {
        assert!(
            (mean(r) - expect).abs() < 0.005,
            "{}: {} ms, expected {expect}",
            r.strategy,
            mean(r)
        );
        assert_eq!(
            opened(r),
            20000,
            "{}: one handshake per request",
            r.strategy
        );
    }
}

/// Envoy's HTTP/1.1 pool under `max_connections: 4` with 8 users always waiting: 4 requests
/// on connections and 4 pending, so each waits one service time more (latency doubles, and the
/// pool's 4 connections cap throughput at 4 per service time); past `max_pending_requests` the
/// requests overflow (503 UO).
#[test]
fn max_connections_4_with_8_concurrent_users_leaves_4_pending_and_overflow_starts_past_max_pending()
{
    let text = |pending: u32, think: &str| {
        format!(
            r#"
name: pending
seed: 4
duration: 5s
warmup: 500ms
strategies:
  pooled: {{ connections: {{}}, circuit_breakers: {{ max_connections: 4, max_pending_requests: {pending} }} }}
policy:
  timeout: 0s
services:
  backend:
    instances: 1
    concurrency: 100
    service_time: {{ dist: constant, value: 1ms }}
clients:
  users:
    proxies: 1
    target: backend
    arrival: {{ process: closed, users: 8, think: {{ dist: constant, value: {think} }} }}
"#
        )
    };
    let runs = run_yaml(&text(4, "0s"));
    let r = &runs[0];
    let mean = r.latency.mean() / 1e6;
    assert!(
        (mean - 2.0).abs() < 0.01,
        "mean {mean} ms: 4 on connections, 4 pending"
    );
    let rate = r.requests as f64 / r.measured_seconds;
    assert!(
        (rate - 4000.0).abs() < 40.0,
        "{rate}/s: 4 connections x 1 per ms"
    );
    assert_eq!(r.successes, r.requests, "nothing overflows at 4 pending");
    assert!(r.events.get("connections_opened").copied().unwrap_or(0) <= 4);
    // Room for 3 pending only: the request that finds 4 on connections and 3 pending
    // overflows (its user tries again after a 100 us think).
    let runs = run_yaml(&text(3, "100us"));
    let overflow = runs[0].failures.get("overflow").copied().unwrap_or(0);
    assert!(overflow > 0, "{:?}", runs[0].failures);
}

/// The critical path follows the call that kept its caller waiting: with a front calling a
/// 1 ms and a 3 ms service at once, waiting for both puts the 3 ms one on the path, waiting for
/// the first puts the 1 ms one there, and a call after the group is on it too. Constant times,
/// 100 us per network hop: every part is exact.
#[test]
fn the_critical_path_follows_the_call_its_caller_waited_for() {
    let yaml = |wait: &str| {
        format!(
            "
name: crit
seed: 4
requests: 16000
warmup: 0s
strategies: {{ rr: {{ balancer: {{ kind: round_robin }} }} }}
network: {{ latency: {{ dist: constant, value: 100us }} }}
services:
  front:
    instances: 2
    concurrency: 1000
    service_time: {{ dist: constant, value: 500us }}
    script:
      - parallel: [{{ call: quick }}, {{ call: slow }}]
        wait: {wait}
      - compute: {{ dist: constant, value: 200us }}
      - call: quick
  quick: {{ instances: 2, concurrency: 1000, service_time: {{ dist: constant, value: 1ms }} }}
  slow: {{ instances: 2, concurrency: 1000, service_time: {{ dist: constant, value: 3ms }} }}
clients:
  c: {{ proxies: 2, target: front, arrival: {{ process: poisson, rate: 500/s }} }}
"
        )
    };
    for (wait, want) in [
        ("all", [("front", 0.7), ("quick", 1.0), ("slow", 3.0)]),
        ("1", [("front", 0.7), ("quick", 2.0), ("slow", 0.0)]),
    ] {
        let runs = run_yaml(&yaml(wait));
        let c = runs[0]
            .critical_path
            .as_ref()
            .expect("a graph traces its requests");
        // One in eight, by a hash of the request id.
        assert!(
            (c.requests as f64 - 2000.0).abs() < 200.0,
            "{wait}: {} traced",
            c.requests
        );
        let mean = |ns: u64| ns as f64 / c.requests as f64 / 1e6;
        for (service, ms) in want {
            let got = mean(c.services.get(service).copied().unwrap_or(0));
            assert!(
                (got - ms).abs() < 1e-6,
                "wait {wait}: {service} {got} ms, want {ms}"
            );
        }
        // Four network hops (two calls on the path, out and back) plus the client's two.
        assert!(
            (mean(c.transport_ns()) - 0.6).abs() < 1e-6,
            "wait {wait}: {c:?}"
        );
        let end_to_end = mean(c.end_to_end_ns);
        let sum: f64 = want.iter().map(|w| w.1).sum::<f64>() + 0.6;
        assert!(
            (end_to_end - sum).abs() < 1e-6,
            "wait {wait}: {end_to_end} ms"
        );
    }
}

#[test]
fn a_sidecar_with_one_worker_queues_as_an_mm1_and_one_that_never_waits_is_a_delay() {
    // One client proxy's sidecar with one worker and exponential 1 ms of outbound time, fed
    // Poisson arrivals at 500/s: an M/M/1 at load 0.5, whose mean time in system is
    // 1 / (mu - lambda) = 2 ms and whose p99 is ln(100) * 2 ms = 9.21 ms. The instance adds its
    // constant 1 ms; there is no network delay.
    let world = |workers: u32| {
        format!(
            "
name: sidecar-queue
seed: 3
requests: 1000000
warmup: 1s
replications: 4
strategies:
  rr: {{ balancer: {{ kind: round_robin }} }}
mesh:
  outbound: {{ dist: exponential, mean: 1ms }}
  concurrency: {workers}
services:
  b: {{ instances: 2, concurrency: 1000, service_time: {{ dist: constant, value: 1ms }} }}
clients:
  c: {{ proxies: 1, target: b, arrival: {{ process: poisson, rate: 500/s }} }}
"
        )
    };
    let runs = run_yaml(&world(1));
    let means: Vec<f64> = runs.iter().map(|r| r.latency.mean() / 1e6).collect();
    let p99s: Vec<f64> = runs
        .iter()
        .map(|r| r.latency.value_at_quantile(0.99) as f64 / 1e6)
        .collect();
    let ci = |xs: &[f64]| {
        let n = xs.len() as f64;
        let m = xs.iter().sum::<f64>() / n;
        let var = xs.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1.0);
        // Student's t for 3 degrees of freedom, 95%.
        (m, 3.182 * (var / n).sqrt())
    };
    let (mean, half) = ci(&means);
    assert!(
        (mean - 3.0).abs() <= half.max(0.01),
        "mean {mean:.4} +- {half:.4} ms, expected 3.0"
    );
    let (p99, half) = ci(&p99s);
    let want = 1.0 + 100f64.ln() * 2.0;
    assert!(
        (p99 - want).abs() <= half.max(0.05) + 0.01 * want,
        "p99 {p99:.3} +- {half:.3} ms, expected {want:.3}"
    );
    // With workers to spare nobody waits: every request takes exactly what the pure delay
    // gives it (the same draws), 1 ms of sidecar on average plus 1 ms of service.
    let spare = run_yaml(&world(100_000));
    let delay = run_yaml(&world(1).replace("  concurrency: 1\n", ""));
    for (a, b) in spare.iter().zip(&delay) {
        assert_eq!(
            a.latency, b.latency,
            "a sidecar that never waits is a delay"
        );
    }
    let m = spare[0].latency.mean() / 1e6;
    assert!((m - 2.0).abs() < 0.02, "mean {m:.4} ms without waiting");
}
