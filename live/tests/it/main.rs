//! Live mode against in-process loopback backends: pacing accuracy, balancing on real sockets,
//! a backend killed mid-run, and replay of a recorded run.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use meshbench_live::{Backends, LiveOptions, LiveRun};
use meshbench_scenario::Loaded;

/// Live tests measure real time on a 2-core machine: one at a time, so they do not disturb each
/// other's pacing.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const BASE: &str = "name: live-test
seed: 3
duration: 3s
warmup: 500ms
strategies:
  round_robin: { balancer: { kind: round_robin } }
  p2c: { balancer: { kind: least_request } }
policy:
  timeout: 2s
services:
  backend:
    instances: 4
    concurrency: 8
    service_time: { dist: exponential, mean: 2ms }
    overrides: { 1: { slowdown: 10 } }
clients:
  load:
    proxies: 4
    target: backend
    arrival: { process: constant, rate: 2000/s }
";

fn loaded(yaml: &str) -> Loaded {
    meshbench_scenario::parse(yaml, "live-test.yaml", Path::new(".")).expect("valid scenario")
}

/// The `backend` service's addresses, as `LiveOptions::endpoints` wants them.
fn endpoints_of(backends: &Backends) -> BTreeMap<String, Vec<std::net::SocketAddr>> {
    let addrs = backends.of("backend").iter().map(|i| i.addr).collect();
    [("backend".to_owned(), addrs)].into()
}

/// Open loop, plain HTTP/1.1, no recording, a 3 s drain: what most tests change one field of.
fn options(
    strategy: usize,
    seed: u64,
    endpoints: BTreeMap<String, Vec<std::net::SocketAddr>>,
) -> LiveOptions {
    LiveOptions {
        point: 0,
        strategy,
        replication: 0,
        seed,
        duration: None,
        endpoints,
        record: false,
        progress: false,
        drain: Duration::from_secs(3),
        http2: false,
        connections: None,
        tls: None,
        shard: (0, 1),
        backends: None,
        urls: None,
        request: Default::default(),
        metrics: None,
        discovery: None,
        trace_sample: 1.0,
        trace_log: false,
    }
}

async fn run(
    loaded: &Loaded,
    strategy: usize,
    record: bool,
    kill_after: Option<Duration>,
) -> LiveRun {
    run_with(loaded, strategy, record, kill_after, false, None).await
}

async fn run_with(
    loaded: &Loaded,
    strategy: usize,
    record: bool,
    kill_after: Option<Duration>,
    http2: bool,
    connections: Option<u32>,
) -> LiveRun {
    let backends = Backends::start(&loaded.scenario, IpAddr::from([127, 0, 0, 1]), 11)
        .await
        .expect("backends start on loopback");
    let opts = LiveOptions {
        record,
        http2,
        connections,
        ..options(strategy, loaded.scenario.seed, endpoints_of(&backends))
    };
    let stop = Arc::new(AtomicBool::new(false));
    let run = {
        let fut = meshbench_live::driver::run(loaded, opts, stop);
        match kill_after {
            None => fut.await,
            Some(d) => {
                let kill = async {
                    tokio::time::sleep(d).await;
                    backends.of("backend")[2].kill();
                };
                let (run, ()) = tokio::join!(fut, kill);
                run
            }
        }
    };
    backends.shutdown();
    run
}

fn share(run: &LiveRun, instance: u32) -> f64 {
    let total: u64 = run.result.endpoints.iter().map(|e| e.attempts).sum();
    let mine = run
        .result
        .endpoints
        .iter()
        .find(|e| e.instance == instance)
        .map_or(0, |e| e.attempts);
    mine as f64 / total.max(1) as f64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paced_at_2000_per_second_within_1_percent_and_p2c_avoids_the_slow_backend() {
    let _serial = SERIAL.lock().await;
    let l = loaded(BASE);
    let rr = run(&l, 0, false, None).await;
    let p2c = run(&l, 1, false, None).await;
    for r in [&rr, &p2c] {
        let s = &r.stats;
        assert!(
            (s.achieved_rps - 2000.0).abs() <= 20.0,
            "achieved {:.1}/s vs 2000/s",
            s.achieved_rps
        );
        assert_eq!(s.completed, s.scheduled, "every scheduled request finished");
        assert_eq!(s.never_completed, 0);
        assert!(
            s.pacing_error_us[0] < 1000.0,
            "pacing p50 {} us",
            s.pacing_error_us[0]
        );
        assert!(r.result.requests > 4000, "{} measured", r.result.requests);
    }
    // Backend 1 is ten times slower: round robin still gives it a quarter, P2C much less.
    let (rr1, p2c1) = (share(&rr, 1), share(&p2c, 1));
    assert!((rr1 - 0.25).abs() < 0.01, "round robin share {rr1}");
    assert!(p2c1 < 0.8 * rr1, "P2C share {p2c1} vs round robin {rr1}");
    let p99 = |r: &LiveRun| r.result.metric("p99_ms");
    assert!(
        p99(&p2c) < p99(&rr),
        "P2C p99 {} vs RR {}",
        p99(&p2c),
        p99(&rr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_killed_mid_run_is_counted_ejected_and_the_run_completes() {
    let _serial = SERIAL.lock().await;
    let yaml = BASE.replace(
        "policy:\n  timeout: 2s\n",
        "policy:\n  timeout: 2s\n  outlier_detection: { consecutive_5xx: 5, max_ejection_percent: 50, interval: 1s }\n",
    );
    let l = loaded(&yaml);
    let r = run(&l, 1, false, Some(Duration::from_millis(1200))).await;
    assert_eq!(r.stats.completed, r.stats.scheduled, "the run completes");
    let local = r.result.failures.get("local_error").copied().unwrap_or(0);
    assert!(
        local > 0,
        "refused/reset connections counted as local errors: {:?}",
        r.result.failures
    );
    assert!(
        r.result.events.get("ejected").copied().unwrap_or(0) >= 1,
        "outlier detection ejects the dead backend: {:?}",
        r.result.events
    );
    let dead = r.result.endpoints.iter().find(|e| e.instance == 2).unwrap();
    assert!(dead.ejections >= 1);
    // The error rate stays small: after ejection traffic avoids the dead backend.
    let err = r.result.metric("error_rate");
    assert!(err < 0.05, "error rate {err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recorded_live_run_replays_to_identical_cluster_outputs() {
    let _serial = SERIAL.lock().await;
    let yaml = BASE.replace("duration: 3s", "duration: 1500ms").replace(
        "policy:\n  timeout: 2s\n",
        "policy:\n  timeout: 2s\n  retries: { num_retries: 2, per_try_timeout: 15ms }\n  outlier_detection: {}\n",
    );
    let l = loaded(&yaml);
    let r = run(&l, 1, true, None).await;
    assert_eq!(r.recordings.len(), 4, "one recording per proxy");
    let path = std::env::temp_dir().join(format!("meshbench-live-{}.jsonl", std::process::id()));
    meshbench_live::write_recordings(&path, &r.recordings).unwrap();
    let report = meshbench_live::replay_file(&path).unwrap();
    let _ = std::fs::remove_file(&path);
    assert_eq!(report.proxies, 4);
    assert!(report.outputs > 1000, "{} outputs", report.outputs);
    assert!(report.mismatch.is_none(), "{:?}", report.mismatch);
    // Per-try timeouts against the slow backend made real cancels and retries.
    let cancels: usize = r
        .recordings
        .iter()
        .flat_map(|rec| rec.outputs.iter())
        .filter(|(_, o)| matches!(o, mesh_core::Output::Cancel { .. }))
        .count();
    assert!(cancels > 0, "no per-try timeout fired");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_cleartext_end_to_end() {
    let _serial = SERIAL.lock().await;
    use http_body_util::Empty;
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;
    let l = loaded(&BASE.replace("duration: 3s", "duration: 1s"));
    // The backends speak h2c with prior knowledge...
    let backends = Backends::start(&l.scenario, IpAddr::from([127, 0, 0, 1]), 1)
        .await
        .unwrap();
    let client: Client<_, Empty<bytes::Bytes>> = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http();
    let addr = backends.of("backend")[0].addr;
    let resp = client
        .request(
            hyper::Request::get(format!("http://{addr}/work"))
                .body(Empty::new())
                .unwrap(),
        )
        .await
        .expect("h2c request");
    assert_eq!(resp.version(), hyper::Version::HTTP_2);
    assert!(resp.status().is_success());
    backends.shutdown();
    // ...and a whole live run over HTTP/2 succeeds.
    let r = run_with(&l, 1, false, None, true, None).await;
    assert_eq!(r.stats.completed, r.stats.scheduled);
    assert_eq!(
        r.result.requests, r.result.successes,
        "{:?}",
        r.result.failures
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_loop_keeps_one_request_per_user_outstanding() {
    let _serial = SERIAL.lock().await;
    let l = loaded(&BASE.replace("duration: 3s", "duration: 1s"));
    let r = run_with(&l, 1, false, None, false, Some(8)).await;
    assert!(r.stats.completed > 500, "{} completed", r.stats.completed);
    assert_eq!(r.stats.completed, r.stats.scheduled);
    // With 8 users and ~2 ms service times, throughput is bounded by the users, not a schedule.
    let rate = r.stats.completed as f64 / 1.0;
    assert!(rate < 8.0 / 0.002 * 1.2, "closed-loop rate {rate}/s");
}

/// A short P2C run over TLS: `mtls` makes the backends require a client certificate, and
/// `present` makes the client send one.
async fn tls_run(mtls: bool, present: bool, http2: bool) -> LiveRun {
    use meshbench_live::tls;
    let pki = tls::generate_pki().expect("a test PKI");
    let server = tls::server_config(
        &pki.server_cert_pem,
        &pki.server_key_pem,
        mtls.then_some(pki.ca_pem.as_str()),
    )
    .expect("server config");
    let client = tls::client_config(
        &pki.ca_pem,
        present.then_some((pki.client_cert_pem.as_str(), pki.client_key_pem.as_str())),
        http2,
    )
    .expect("client config");
    let l = loaded(
        &BASE
            .replace("duration: 3s", "duration: 1s")
            .replace("warmup: 500ms", "warmup: 0s"),
    );
    let backends = Backends::start_with(&l.scenario, IpAddr::from([127, 0, 0, 1]), 1, Some(server))
        .await
        .unwrap();
    let opts = LiveOptions {
        http2,
        tls: Some(tls::TlsClient {
            config: client,
            server_name: rustls_pki_types::ServerName::try_from("localhost").unwrap(),
        }),
        ..options(1, 3, endpoints_of(&backends))
    };
    let run = meshbench_live::driver::run(&l, opts, Arc::new(AtomicBool::new(false))).await;
    backends.shutdown();
    run
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_a_custom_ca_over_http1_and_http2() {
    let _serial = SERIAL.lock().await;
    for http2 in [false, true] {
        let r = tls_run(false, false, http2).await;
        assert!(r.stats.completed > 1500, "{} completed", r.stats.completed);
        assert_eq!(
            r.result.requests, r.result.successes,
            "http2 {http2}: {:?}",
            r.result.failures
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mtls_needs_the_client_certificate() {
    let _serial = SERIAL.lock().await;
    let ok = tls_run(true, true, false).await;
    assert_eq!(
        ok.result.requests, ok.result.successes,
        "{:?}",
        ok.result.failures
    );
    let refused = tls_run(true, false, false).await;
    assert_eq!(
        refused.result.successes, 0,
        "no client certificate, no service"
    );
    assert!(
        refused
            .result
            .failures
            .get("local_error")
            .copied()
            .unwrap_or(0)
            > 0,
        "handshake failures are local errors: {:?}",
        refused.result.failures
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_and_hanging_endpoints_are_counted_and_never_hang_the_run() {
    let _serial = SERIAL.lock().await;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // Endpoint 0 answers garbage, endpoint 1 accepts and never answers, endpoint 2 is healthy.
    let garbage = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hang = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (ga, ha) = (garbage.local_addr().unwrap(), hang.local_addr().unwrap());
    tokio::spawn(async move {
        loop {
            let (mut s, _) = garbage.accept().await.unwrap();
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf).await;
                let _ = s.write_all(b"HTTP/1.1 banana\r\n\r\n").await;
            });
        }
    });
    let held = Arc::new(std::sync::Mutex::new(Vec::new()));
    let keep = held.clone();
    tokio::spawn(async move {
        loop {
            let (s, _) = hang.accept().await.unwrap();
            keep.lock().unwrap().push(s);
        }
    });
    let yaml = BASE
        .replace("duration: 3s", "duration: 1s")
        .replace("warmup: 500ms", "warmup: 0s")
        .replace("timeout: 2s", "timeout: 200ms")
        .replace("instances: 4", "instances: 3")
        .replace("overrides: { 1: { slowdown: 10 } }", "overrides: {}")
        .replace("rate: 2000/s", "rate: 300/s");
    let l = loaded(&yaml);
    let backends = Backends::start(&l.scenario, IpAddr::from([127, 0, 0, 1]), 1)
        .await
        .unwrap();
    let good = backends.of("backend")[2].addr;
    let opts = LiveOptions {
        drain: Duration::from_secs(2),
        // Round robin: every endpoint gets its third.
        ..options(0, 3, [("backend".to_owned(), vec![ga, ha, good])].into())
    };
    let started = std::time::Instant::now();
    let r = meshbench_live::driver::run(&l, opts, Arc::new(AtomicBool::new(false))).await;
    backends.shutdown();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the run ended on time"
    );
    assert_eq!(
        r.stats.completed, r.stats.scheduled,
        "every request finished"
    );
    let f = &r.result.failures;
    assert!(
        f.get("local_error").copied().unwrap_or(0) > 50,
        "garbage: {f:?}"
    );
    assert!(f.get("timeout").copied().unwrap_or(0) > 50, "hang: {f:?}");
    assert!(r.result.successes > 50, "the healthy third still served");
    drop(held);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fault_timeline_plays_in_real_time_on_in_process_backends() {
    let _serial = SERIAL.lock().await;
    // Round robin over 4 backends at 1000/s: backend 2 crashes from 1 s to 2 s (refused, then
    // restarted empty on its port), backend 3 fast-fails from 2 s to 2.5 s.
    let yaml = BASE
        .replace("overrides: { 1: { slowdown: 10 } }", "overrides: {}")
        .replace("rate: 2000/s", "rate: 1000/s")
        .replace("warmup: 500ms", "warmup: 0s")
        + "faults:\n  - { at: 1s, until: 2s, target: backend/2, kind: crash }\n  - { at: 2s, until: 2500ms, target: backend/3, kind: fast_fail }\n";
    let l = loaded(&yaml);
    let backends = Arc::new(
        Backends::start(&l.scenario, IpAddr::from([127, 0, 0, 1]), 5)
            .await
            .unwrap(),
    );
    let opts = LiveOptions {
        backends: Some(backends.clone()),
        ..options(0, 3, endpoints_of(&backends))
    };
    let r = meshbench_live::driver::run(&l, opts, Arc::new(AtomicBool::new(false))).await;
    backends.shutdown();
    assert_eq!(r.stats.completed, r.stats.scheduled);
    // A quarter of the 1000 arrivals in the crash second are refused or reset; an eighth of
    // the 500 in the fast-fail half second get a 503 (its draw is the simulator's: all of them).
    let local = r.result.failures.get("local_error").copied().unwrap_or(0);
    let gateway = r.result.failures.get("gateway_error").copied().unwrap_or(0);
    assert!((200..=300).contains(&local), "{:?}", r.result.failures);
    assert!((100..=150).contains(&gateway), "{:?}", r.result.failures);
    // Errors fall in the windows of the faults, and backend 2 serves again after its restart.
    let ts = &r.result.timeseries;
    assert!(
        ts[0].errors <= 2,
        "{:?}",
        ts.iter().map(|s| s.errors).collect::<Vec<_>>()
    );
    assert!(
        ts[1].errors >= 200,
        "{:?}",
        ts.iter().map(|s| s.errors).collect::<Vec<_>>()
    );
    // Per-endpoint errors land on the faulty backends only.
    let errs: Vec<u64> = r.result.endpoints.iter().map(|e| e.errors).collect();
    assert_eq!(errs[0] + errs[1], 0, "{errs:?}");
    assert_eq!(errs[2], local, "{errs:?}");
    assert_eq!(errs[3], gateway, "{errs:?}");
    let last = r.result.endpoint_series.last().expect("windows");
    assert!(last[2] >= 200, "backend 2 after its restart: {last:?}");
}

/// Runs strategy `strategy` of `yaml` against fresh in-process backends.
async fn run_yaml(yaml: &str, strategy: usize) -> LiveRun {
    let l = loaded(yaml);
    let backends = Backends::start(&l.scenario, IpAddr::from([127, 0, 0, 1]), 5)
        .await
        .expect("backends start on loopback");
    let opts = options(strategy, l.scenario.seed, endpoints_of(&backends));
    let run = meshbench_live::driver::run(&l, opts, Arc::new(AtomicBool::new(false))).await;
    backends.shutdown();
    run
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weights_from_the_file_give_each_endpoint_its_share_on_real_sockets() {
    let _serial = SERIAL.lock().await;
    let yaml = "name: live-weights
seed: 3
duration: 3s
warmup: 500ms
strategies:
  wrr: { balancer: { kind: round_robin } }
  weighted_random: { balancer: { kind: weighted_random } }
policy: { timeout: 2s }
services:
  backend:
    instances: 4
    concurrency: 32
    service_time: { dist: exponential, mean: 1ms }
    overrides: { 1: { weight: 2 }, 2: { weight: 3 }, 3: { weight: 4 } }
clients:
  load: { proxies: 2, target: backend, arrival: { process: poisson, rate: 2000/s } }
";
    for strategy in 0..2 {
        let run = run_yaml(yaml, strategy).await;
        for i in 0..4u32 {
            let (got, want) = (share(&run, i), f64::from(i + 1) / 10.0);
            // Weighted random draws 6000 times: 5% of a 10% share is 2.6 standard errors.
            assert!(
                (got - want).abs() <= 0.05 * want,
                "{}: endpoint {i} got {got:.4}, weight share {want}",
                run.result.strategy
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prequal_probes_real_backends_and_beats_random_at_the_tail() {
    let _serial = SERIAL.lock().await;
    let yaml = "name: live-prequal
seed: 4
duration: 4s
warmup: 1s
strategies:
  prequal: { balancer: { kind: prequal } }
  random: { balancer: { kind: random } }
  orca: { balancer: { kind: orca_weighted_round_robin, blackout_period: 500ms, weight_update_period: 100ms } }
policy: { timeout: 2s }
network:
  latency: { dist: constant, value: 100us }
services:
  backend:
    instances: 5
    concurrency: 4
    service_time: { dist: exponential, mean: 4ms }
    overrides: { 1: { slowdown: 5 } }
clients:
  load: { proxies: 4, target: backend, arrival: { process: poisson, rate: 1500/s } }
";
    let prequal = run_yaml(yaml, 0).await;
    let random = run_yaml(yaml, 1).await;
    let orca = run_yaml(yaml, 2).await;
    let p99 = |r: &LiveRun| r.result.metric("p99_ms");
    // Random sends the 5x slow backend 20% of requests, past what it serves (its queue grows);
    // Prequal's probes read its requests in flight and steer around it.
    assert!(
        p99(&prequal) < 0.5 * p99(&random),
        "prequal p99 {:.1} ms vs random {:.1} ms",
        p99(&prequal),
        p99(&random)
    );
    assert!(
        share(&prequal, 1) < 0.12,
        "prequal share {}",
        share(&prequal, 1)
    );
    // ORCA reads the backends' endpoint-load-metrics headers: the busy one gets less.
    assert!(share(&orca, 1) < 0.15, "orca share {}", share(&orca, 1));
    assert!((share(&random, 1) - 0.2).abs() < 0.03);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_and_zones_reach_the_backends_and_the_recorder() {
    let _serial = SERIAL.lock().await;
    let yaml = "name: live-keys
seed: 5
duration: 2s
warmup: 500ms
strategies:
  ring_hash: { balancer: { kind: ring_hash } }
policy: { timeout: 2s }
zones: { a: {}, b: {} }
network:
  same_zone: { dist: constant, value: 50us }
  cross_zone: { dist: constant, value: 5ms }
services:
  backend:
    instances: 4
    concurrency: 32
    service_time: { dist: constant, value: 1ms }
    zone: { a: 2, b: 2 }
clients:
  load:
    proxies: 2
    zone: a
    target: backend
    arrival: { process: poisson, rate: 1000/s }
    keys: { dist: zipf, count: 50, exponent: 1.2 }
";
    let run = run_yaml(yaml, 0).await;
    // Ring hash on the request's key: every hot key stays on one endpoint.
    let mut homes: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
    for k in &run.result.keys {
        homes.entry(k.key).or_default().push(k.instance);
    }
    assert!(!homes.is_empty());
    for (k, at) in &homes {
        assert_eq!(at.len(), 1, "key {k} reached {at:?}");
    }
    // Zone b is 5 ms away each way: requests there take about 11 ms, in zone a about 1.1 ms.
    let flows: BTreeMap<(String, String), u64> = run
        .result
        .zone_flows
        .iter()
        .map(|f| ((f.from.clone(), f.to.clone()), f.attempts))
        .collect();
    assert!(flows[&("a".into(), "b".into())] > 0 && flows[&("a".into(), "a".into())] > 0);
    let p99 = run.result.metric("p99_ms");
    let p50 = run.result.metric("p50_ms");
    let cross = flows[&("a".into(), "b".into())] as f64 / run.result.attempts.max(1) as f64;
    if cross > 0.05 {
        assert!(p99 > 10.0, "cross-zone latency applied: p99 {p99} ms");
    }
    assert!(p50 >= 1.0, "p50 {p50}");
}

#[tokio::test]
async fn the_grafana_dashboard_queries_only_metrics_that_are_exposed() {
    // Every metric a panel of examples/grafana/meshbench-live.json queries must be one the
    // generator or the backends expose, so the dashboard cannot rot as names change.
    let loaded = loaded(BASE);
    let backends = Backends::start(&loaded.scenario, IpAddr::from([127, 0, 0, 1]), 1)
        .await
        .expect("backends start");
    let registry = Arc::new(meshbench_live::metrics::Registry::default());
    let run = Arc::new(meshbench_live::metrics::RunMetrics::new(
        "s",
        "p2c",
        (0, 0),
        1,
        vec![meshbench_live::metrics::EndpointLabels {
            service: "backend".into(),
            instance: 0,
            address: "127.0.0.1:1".into(),
        }],
        (1.0, 1.0),
    ));
    registry.set(Some(run));
    let exposed = format!("{}{}", registry.render(false), backends.metrics(false));
    backends.shutdown();
    let names: std::collections::BTreeSet<&str> = exposed
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split(['{', ' ']).next())
        .collect();
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/grafana/meshbench-live.json");
    let text = std::fs::read_to_string(&path).expect("the dashboard is shipped");
    let dash: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
    fn exprs(v: &serde_json::Value, out: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(m) => {
                for (k, x) in m {
                    if k == "expr" {
                        out.push(x.as_str().unwrap_or_default().to_owned());
                    }
                    exprs(x, out);
                }
            }
            serde_json::Value::Array(a) => a.iter().for_each(|x| exprs(x, out)),
            _ => {}
        }
    }
    let mut queries = Vec::new();
    exprs(&dash, &mut queries);
    assert!(queries.len() >= 10, "{} queries", queries.len());
    let mut used = std::collections::BTreeSet::new();
    for q in &queries {
        for name in q
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .filter(|w| w.starts_with("meshbench_"))
        {
            assert!(
                names.contains(name),
                "a panel queries {name}, which nothing exposes"
            );
            used.insert(name.to_owned());
        }
    }
    // And the dashboard shows the generator's and the backends' sides.
    assert!(used.iter().any(|n| n.starts_with("meshbench_backend_")));
    assert!(used.contains("meshbench_request_duration_seconds_bucket"));
    assert!(used.contains("meshbench_requests_unsent_total"));
}
