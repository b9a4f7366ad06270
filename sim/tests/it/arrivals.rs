//! Arrival processes through whole simulated runs: rate ramps, traces replayed from CSV, and
//! closed-loop users.

use meshbench_report::RunResult;

fn run_file(dir: &std::path::Path, yaml: &str) -> Vec<RunResult> {
    let file = dir.join("t.yaml");
    std::fs::write(&file, yaml).unwrap();
    let loaded = meshbench_scenario::load(&file).expect("valid scenario");
    meshbench_sim::run_all(&loaded, loaded.scenario.seed, &|| {})
}

fn tmp(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("meshbench-sim-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn a_ramp_is_followed_per_window_within_2_percent() {
    // 10k/s, ramping to 30k/s over [2 s, 4 s], then down to 10k/s over [4 s, 6 s]: each 1 s
    // window holds the integral of the rate over it (10k, 10k, 15k, 25k, 25k, 15k). A window's
    // count is Poisson (1% deviation at 10k), so the check is on the mean of 4 replications.
    let dir = tmp("ramp");
    let runs = run_file(
        &dir,
        "
name: t
seed: 9
duration: 6s
replications: 4
strategies: { rr: { balancer: { kind: round_robin } } }
services:
  b: { instances: 4, concurrency: 1000, service_time: { dist: constant, value: 100us } }
clients:
  c:
    proxies: 3
    target: b
    arrival: { process: poisson, rate: 10000/s, steps: [ { at: 2s, rate: 10000/s }, { at: 4s, rate: 30000/s, ramp: true }, { at: 6s, rate: 10000/s, ramp: true } ] }
",
    );
    let want = [10_000.0, 10_000.0, 15_000.0, 25_000.0, 25_000.0, 15_000.0];
    let got: Vec<f64> = (0..want.len())
        .map(|w| {
            runs.iter()
                .map(|r| r.timeseries[w].attempts as f64)
                .sum::<f64>()
                / 4.0
        })
        .collect();
    assert!(runs.iter().all(|r| r.timeseries.len() == want.len()));
    for (g, w) in got.iter().zip(want) {
        assert!((g - w).abs() <= 0.02 * w, "{got:?}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_trace_replays_its_timestamps_exactly() {
    // 5000 arrivals at irregular times (bursts included), written out of order in milliseconds
    // with fractions, shared by three proxies: the run sends exactly those, each window holds
    // exactly the trace's count for it, and the keys of the key column reach a hashing balancer.
    let dir = tmp("trace");
    let mut times: Vec<u64> = Vec::new();
    let mut state = 12345u64;
    let mut t = 0u64;
    for i in 0..5000u64 {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        // A burst of 20 arrivals 10 us apart every 500 arrivals, else gaps up to 2 ms.
        t += if i % 500 < 20 {
            10_000
        } else {
            1_000 + (state >> 44) % 1_000_000
        };
        times.push(t + 137);
    }
    let mut csv = String::from("at_ms,user\n");
    for (i, t) in times.iter().enumerate().rev() {
        csv.push_str(&format!("{:.6},u{}\n", *t as f64 / 1e6, i % 7));
    }
    std::fs::write(dir.join("trace.csv"), csv).unwrap();
    let yaml = "
name: t
seed: 2
requests: 5000
sample_period: 500ms
strategies:
  ring: { balancer: { kind: ring_hash } }
services:
  b: { instances: 8, concurrency: 1000, service_time: { dist: constant, value: 100us } }
clients:
  c: { proxies: 3, target: b, arrival: { process: trace, file: trace.csv, key_column: user } }
";
    let r = &run_file(&dir, yaml)[0];
    assert_eq!(r.requests, 5000);
    let per_window: Vec<u64> = r.timeseries.iter().map(|s| s.attempts).collect();
    let want: Vec<u64> = (0..per_window.len())
        .map(|w| {
            let (from, to) = (w as u64 * 500_000_000, (w as u64 + 1) * 500_000_000);
            times.iter().filter(|&&t| t >= from && t < to).count() as u64
        })
        .collect();
    assert_eq!(per_window, want);
    // Seven distinct keys: a ring hash sends each key to one instance, so at most 7 are used.
    let used = r.endpoints.iter().filter(|e| e.attempts > 0).count();
    assert!((1..=7).contains(&used), "{used} instances used");
    // Twice as fast: the same count in half the span.
    let fast = &run_file(
        &dir,
        &yaml.replace("key_column: user", "key_column: user, time_scale: 0.5"),
    )[0];
    assert_eq!(fast.requests, 5000);
    assert!((fast.measured_seconds - r.measured_seconds / 2.0).abs() < 0.01);
    // A missing column is named with the columns there are and the nearest name.
    let file = dir.join("t.yaml");
    std::fs::write(&file, yaml.replace("key_column: user", "key_column: usr")).unwrap();
    let e = meshbench_scenario::load(&file).unwrap_err().to_string();
    assert!(
        e.contains("clients.c.arrival.key_column") && e.contains("did you mean `user`"),
        "{e}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_markov_modulated_process_bursts_for_the_whole_population_at_once() {
    // 1000/s and 5000/s, 5 s mean in each: 3000/s on average. Four proxies follow one chain, so
    // a 1 s window holds about 1000 or about 5000 arrivals in all (most windows lie inside one
    // state); four independent chains would pile up between.
    let dir = tmp("mmpp");
    let r = &run_file(
        &dir,
        "
name: t
seed: 5
duration: 400s
strategies: { rr: { balancer: { kind: round_robin } } }
services:
  b: { instances: 4, concurrency: 1000, service_time: { dist: constant, value: 100us } }
clients:
  c:
    proxies: 4
    target: b
    arrival: { process: mmpp, states: [ { rate: 1000/s, mean: 5s }, { rate: 5000/s, mean: 5s } ] }
",
    )[0];
    let counts: Vec<u64> = r.timeseries.iter().map(|s| s.attempts).collect();
    let mean = counts.iter().sum::<u64>() as f64 / counts.len() as f64;
    assert!((mean - 3000.0).abs() < 0.1 * 3000.0, "mean {mean}/s");
    let low = counts.iter().filter(|&&c| c < 1200).count() as f64 / counts.len() as f64;
    let high = counts.iter().filter(|&&c| c > 4700).count() as f64 / counts.len() as f64;
    let middle = counts
        .iter()
        .filter(|&&c| (2000..4000).contains(&c))
        .count() as f64
        / counts.len() as f64;
    assert!(low > 0.3 && high > 0.3, "low {low}, high {high}");
    assert!(middle < 0.2, "middle {middle}");
    // A state needs a positive mean, and the process at least two states.
    let file = dir.join("bad.yaml");
    std::fs::write(
        &file,
        "
name: t
duration: 1s
strategies: { rr: { balancer: { kind: round_robin } } }
services:
  b: { instances: 1, service_time: { dist: constant, value: 1ms } }
clients:
  c: { target: b, arrival: { process: mmpp, states: [ { rate: 1000/s, mean: 5s } ] } }
",
    )
    .unwrap();
    let e = meshbench_scenario::load(&file).unwrap_err().to_string();
    assert!(
        e.contains("at least 2 states") && e.contains("clients.c"),
        "{e}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
