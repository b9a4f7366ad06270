//! End-to-end: the `meshbench` binary on real scenario files.

use std::path::{Path, PathBuf};
use std::process::Command;

#[path = "../common/mod.rs"]
mod common;
#[allow(clippy::wildcard_imports)]
use common::*;

mod fuzz;
mod hardening;
mod observe;

/// The p99 of each strategy in a summary.json.
fn p99s(dir: &Path) -> Vec<(String, f64)> {
    summary(dir)
        .strategies
        .iter()
        .map(|s| (s.strategy.clone(), s.mean("p99_ms")))
        .collect()
}

#[test]
fn one_slow_backend_writes_its_report_and_load_aware_balancers_beat_round_robin() {
    let dir = tmp("osb");
    let stdout = run_ok(&[
        "run",
        "scenarios/one-slow-backend.yaml",
        "--out",
        dir.to_str().unwrap(),
    ]);
    for f in [
        "summary.csv",
        "summary.json",
        "endpoints.csv",
        "timeseries.csv",
    ] {
        assert!(!read(&dir, f).is_empty(), "{f} is empty");
    }
    for s in ["round_robin", "p2c", "peak_ewma", "jsq", "p99 ms"] {
        assert!(stdout.contains(s), "table lacks {s}:\n{stdout}");
    }
    // Round robin keeps sending the slow backend a tenth of the load, more than it serves: its
    // queue grows until those requests time out (2 s), nearly a tenth of all requests, while
    // the load-aware balancers lose none. (Its successes' p99 looks good: the slow ones failed.)
    let s = summary(&dir);
    let err = |n: &str| {
        s.strategies
            .iter()
            .find(|x| x.strategy == n)
            .unwrap()
            .mean("error_rate")
    };
    assert!(err("round_robin") > 0.09, "{}", err("round_robin"));
    for n in ["p2c", "peak_ewma", "jsq"] {
        assert!(err(n) < 1e-4, "{n}: {}", err(n));
    }
    // Peak EWMA, which sees the slow host's latency, has the lowest tail of the three.
    let p99 = p99s(&dir);
    let get = |n: &str| p99.iter().find(|(s, _)| s == n).unwrap().1;
    assert!(get("peak_ewma") < get("p2c") / 2.0, "{p99:?}");
    assert!(get("peak_ewma") < get("jsq") / 2.0, "{p99:?}");
    // The slow backend (3) gets a tenth of round robin's attempts, far less under P2C.
    let endpoints = String::from_utf8(read(&dir, "endpoints.csv")).unwrap();
    let share = |strategy: &str| -> f64 {
        let rows: Vec<f64> = endpoints
            .lines()
            .filter(|l| l.starts_with(&format!("{strategy},")) && l.contains(",backend,3,"))
            .map(|l| l.split(',').nth(5).unwrap().parse().unwrap())
            .collect();
        rows.iter().sum::<f64>() / rows.len() as f64
    };
    assert!((share("round_robin") - 0.1).abs() < 0.005);
    assert!(share("p2c") < 0.05 && share("peak_ewma") < 0.05);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn same_seed_same_bytes_whatever_the_thread_count_and_another_seed_differs() {
    let file = "scenarios/one-slow-backend.yaml";
    let dirs: Vec<PathBuf> = ["a", "b", "c", "d"].iter().map(|n| tmp(n)).collect();
    let d = |i: usize| dirs[i].to_str().unwrap().to_owned();
    run_ok(&["run", file, "--quiet", "--threads", "1", "--out", &d(0)]);
    run_ok(&["run", file, "--quiet", "--threads", "2", "--out", &d(1)]);
    run_ok(&["run", file, "--quiet", "--threads", "2", "--out", &d(2)]);
    run_ok(&["run", file, "--quiet", "--seed", "7", "--out", &d(3)]);
    for f in [
        "summary.csv",
        "summary.json",
        "endpoints.csv",
        "timeseries.csv",
    ] {
        assert_eq!(read(&dirs[0], f), read(&dirs[1], f), "{f}: 1 thread vs 2");
        assert_eq!(read(&dirs[1], f), read(&dirs[2], f), "{f}: run twice");
    }
    assert_ne!(read(&dirs[0], "summary.csv"), read(&dirs[3], "summary.csv"));
    assert_ne!(
        read(&dirs[0], "summary.json"),
        read(&dirs[3], "summary.json")
    );
    for d in dirs {
        let _ = std::fs::remove_dir_all(d);
    }
}

fn invalid(yaml: &str) -> (i32, String) {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let dir = tmp(&format!(
        "bad{}",
        N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("bad.yaml");
    std::fs::write(&file, yaml).unwrap();
    let out = meshbench(&["validate", file.to_str().unwrap()]);
    let run = meshbench(&[
        "run",
        file.to_str().unwrap(),
        "--out",
        dir.join("out").to_str().unwrap(),
    ]);
    assert_eq!(
        run.status.code(),
        out.status.code(),
        "run and validate agree"
    );
    if out.status.code() == Some(2) {
        assert!(!dir.join("out").exists(), "nothing runs on bad input");
    }
    let _ = std::fs::remove_dir_all(&dir);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stderr).unwrap(),
    )
}

const GOOD: &str = "name: t
duration: 10s
strategies:
  rr: { balancer: { kind: round_robin } }
services:
  backend:
    instances: 4
    service_time: { dist: exponential, mean: 5ms }
clients:
  load:
    target: backend
    arrival: { process: poisson, rate: 100/s }
";

#[test]
fn bad_input_names_file_line_column_field_and_suggests() {
    let cases: [(&str, &str, &[&str]); 9] = [
        (
            "    instances: 4",
            "    instnces: 4",
            &[
                "bad.yaml:7:5",
                "services.backend",
                "unknown field `instnces`",
                "did you mean `instances`",
            ],
        ),
        (
            "kind: round_robin",
            "kind: round_robbin",
            &[
                "bad.yaml:4:",
                "unknown variant `round_robbin`",
                "did you mean `round_robin`",
            ],
        ),
        (
            "    target: backend",
            "    target: backnd",
            &[
                "bad.yaml:11:5",
                "clients.load.target",
                "no service `backnd`",
                "did you mean `backend`",
            ],
        ),
        (
            "    instances: 4",
            "    instances: 0",
            &["bad.yaml:7:5", "services.backend.instances", "1..=1000000"],
        ),
        (
            "rate: 100/s",
            "rate: 100",
            &["bad.yaml:12:", "clients.load.arrival", "no unit"],
        ),
        (
            "rate: 100/s",
            "rate: -5/s",
            &["clients.load.arrival", "> 0"],
        ),
        (
            "duration: 10s",
            "duration: 10s\nwarmup: 20s",
            &["bad.yaml:3:1", "warmup", "shorter than duration"],
        ),
        (
            "mean: 5ms",
            "mean: 5",
            &["bad.yaml:8:", "services.backend.service_time", "no unit"],
        ),
        (
            "{ kind: round_robin }",
            "{ kind: least_request, choice_count: 1 }",
            &[
                "bad.yaml:4:",
                "strategies.rr.balancer.least_request.choice_count",
                "2..=64",
            ],
        ),
    ];
    assert_eq!(invalid(GOOD).0, 0, "the base case is valid");
    for (from, to, want) in cases {
        let yaml = GOOD.replacen(from, to, 1);
        assert_ne!(yaml, GOOD, "{from} not in the base case");
        let (code, err) = invalid(&yaml);
        assert_eq!(code, 2, "{to}: exit code\n{err}");
        for w in want {
            assert!(err.contains(w), "{to}: `{err}` lacks `{w}`");
        }
    }
}

#[test]
fn bad_fault_timelines_are_located_with_suggestions() {
    let with = |faults: &str| {
        format!(
            "{GOOD}faults:\n  - {{ at: 1s, until: 2s, target: backend/1, kind: crash }}\n{faults}"
        )
    };
    let cases: [(&str, &[&str]); 6] = [
        (
            "  - { at: 3s, target: backnd/1, kind: crash }\n",
            &[
                "bad.yaml:15:",
                "faults.1.target",
                "no service `backnd`",
                "did you mean `backend`",
            ],
        ),
        (
            "  - { at: 3s, target: backend/9, kind: crash }\n",
            &[
                "bad.yaml:15:",
                "faults.1.target",
                "instance `9` does not exist",
                "0..4",
            ],
        ),
        (
            "  - { at: 3s, target: backend, kind: slowdwn, factor: 3 }\n",
            &[
                "bad.yaml:15:",
                "unknown variant `slowdwn`",
                "did you mean `slowdown`",
            ],
        ),
        (
            "  - at: 3s\n    target: backend\n    kind: slowdown\n",
            &["bad.yaml:15:", "faults.1", "needs `factor`"],
        ),
        (
            "  - { at: 3s, until: 2s, target: backend, kind: errors, rate: 0.5 }\n",
            &["bad.yaml:15:", "faults.1.until", "later than `at`"],
        ),
        (
            "  - { at: 3s, target: backend, kind: crash, rate: 0.5 }\n",
            &["bad.yaml:15:", "faults.1.rate", "belongs to `kind: errors`"],
        ),
    ];
    assert_eq!(invalid(&with("")).0, 0, "the base timeline is valid");
    for (fault, want) in cases {
        let (code, err) = invalid(&with(fault));
        assert_eq!(code, 2, "{fault}: exit code\n{err}");
        for w in want {
            assert!(err.contains(w), "{fault}: `{err}` lacks `{w}`");
        }
    }
}

#[test]
fn a_crash_and_a_gray_failure_hurt_plain_p2c_and_outlier_detection_with_retries_hides_them() {
    let dir = tmp("crash-gray");
    run_ok(&[
        "run",
        root()
            .join("scenarios/crash-and-gray-failure.yaml")
            .to_str()
            .unwrap(),
        "--out",
        dir.to_str().unwrap(),
    ]);
    let sum = summary(&dir);
    let errors = |name: &str| sum.entry(name, 0).unwrap().mean("error_rate");
    // Plain P2C keeps sending to the crashed and the fast-failing host (a tenth of 10 s each of
    // 50 s: ~4%); ejection cuts that to the few requests before 5 consecutive failures; retries
    // on another host take the rest.
    let (p2c, outlier, retry) = (
        errors("p2c"),
        errors("p2c_outlier"),
        errors("p2c_outlier_retry"),
    );
    assert!(p2c > 0.03 && p2c < 0.08, "{p2c}");
    assert!(outlier < p2c / 10.0, "{outlier} vs {p2c}");
    assert!(retry < outlier / 10.0, "{retry} vs {outlier}");
    assert_eq!(sum.info.faults.len(), 2);
    // The fast-failing host looks idle to least request and gets more than its tenth while it
    // fails (a black hole): per-window attempts from endpoint_timeseries.csv.
    let csv = String::from_utf8(read(&dir, "endpoint_timeseries.csv")).unwrap();
    let (mut mine, mut all) = (0u64, 0u64);
    for line in csv.lines().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        let t: f64 = f[1].parse().unwrap();
        if f[0] == "p2c" && t > 30.5 && t <= 40.0 {
            let n: u64 = f[3].parse().unwrap();
            all += n;
            if f[2] == "7" {
                mine += n;
            }
        }
    }
    let share = mine as f64 / all as f64;
    assert!(
        share > 0.105,
        "backend 7's share while fast-failing: {share}"
    );
    // Its windows are shaded in the time plots (the report draws from summary.json).
    assert!(dir.join("percentiles_over_time.svg").exists());
}

#[test]
fn overload_is_a_warning_not_an_error() {
    let yaml = GOOD.replace("rate: 100/s", "rate: 2000/s");
    let (code, err) = invalid(&yaml);
    assert_eq!(code, 0);
    assert!(
        err.contains("warning: offered load on `backend` is 250%"),
        "{err}"
    );
}

#[test]
fn help_lists_the_commands() {
    let out = run_ok(&["--help"]);
    assert!(out.contains("run") && out.contains("validate"));
    let out = run_ok(&["run", "--help"]);
    for flag in ["--seed", "--out", "--threads", "--quiet"] {
        assert!(out.contains(flag), "{flag}");
    }
}

#[test]
fn a_3x2_sweep_with_3_replications_gives_6_rows_with_cis_identical_across_threads() {
    let dir = tmp("sweep");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("sweep.yaml");
    let yaml = format!(
        "{}replications: 3\nsweep:\n  clients.load.arrival.rate: [100/s, 200/s, 300/s]\n  services.backend.concurrency: [1, 2]\n",
        GOOD.replace("duration: 10s", "duration: 5s")
    );
    std::fs::write(&file, yaml).unwrap();
    let (a, b) = (dir.join("a"), dir.join("b"));
    for (out, threads) in [(&a, "1"), (&b, "2")] {
        run_ok(&[
            "run",
            file.to_str().unwrap(),
            "--quiet",
            "--threads",
            threads,
            "--out",
            out.to_str().unwrap(),
        ]);
    }
    for f in [
        "summary.csv",
        "summary.json",
        "timeseries.csv",
        "endpoints.csv",
    ] {
        assert_eq!(read(&a, f), read(&b, f), "{f}: 1 thread vs 2");
    }
    let csv = String::from_utf8(read(&a, "summary.csv")).unwrap();
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    assert_eq!(
        &header[..4],
        [
            "clients.load.arrival.rate",
            "services.backend.concurrency",
            "strategy",
            "replications"
        ]
    );
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    assert_eq!(rows.len(), 6, "3 x 2 points x 1 strategy");
    let ci = header.iter().position(|h| *h == "p99_ms_ci95").unwrap();
    let combos: Vec<(&str, &str)> = rows.iter().map(|r| (r[0], r[1])).collect();
    assert_eq!(
        combos,
        [
            ("100/s", "1"),
            ("100/s", "2"),
            ("200/s", "1"),
            ("200/s", "2"),
            ("300/s", "1"),
            ("300/s", "2")
        ]
    );
    for r in &rows {
        assert_eq!(r[3], "3");
        assert!(
            r[ci].parse::<f64>().unwrap() > 0.0,
            "a CI from 3 replications: {r:?}"
        );
    }
    for plot in [
        "sweep_p99.svg",
        "sweep_p99.png",
        "sweep_mean.svg",
        "index.html",
    ] {
        assert!(!read(&a, plot).is_empty());
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn report_rebuilds_plots_and_compare_diffs_two_runs() {
    let (a, b) = (tmp("cmp-a"), tmp("cmp-b"));
    let file = "scenarios/one-slow-backend.yaml";
    run_ok(&["run", file, "--quiet", "--out", a.to_str().unwrap()]);
    run_ok(&[
        "run",
        file,
        "--quiet",
        "--seed",
        "9",
        "--out",
        b.to_str().unwrap(),
    ]);
    let before = read(&a, "latency_cdf.svg");
    std::fs::remove_file(a.join("latency_cdf.svg")).unwrap();
    std::fs::remove_file(a.join("index.html")).unwrap();
    run_ok(&["report", a.to_str().unwrap()]);
    assert_eq!(
        read(&a, "latency_cdf.svg"),
        before,
        "report redraws the same plot"
    );
    let html = String::from_utf8(read(&a, "index.html")).unwrap();
    for needle in [
        "<svg",
        "p2c",
        "seed 42",
        "meshbench 0.1.0",
        "one-slow-backend",
        "±",
    ] {
        assert!(html.contains(needle), "index.html lacks {needle}");
    }
    // Self-contained: no network reference (the SVG namespace URI is a name, not a fetch).
    let fetched = html.replace("xmlns=\"http://www.w3.org/2000/svg\"", "");
    assert!(
        !fetched.contains("http://") && !fetched.contains("https://"),
        "self-contained"
    );
    assert!(!fetched.contains("<script"), "no scripts");
    let out = run_ok(&["compare", a.to_str().unwrap(), b.to_str().unwrap()]);
    assert!(out.contains("p2c") && out.contains('%'), "{out}");
    for f in ["compare.csv", "compare.svg", "compare.png"] {
        assert!(!read(&b.join("compare"), f).is_empty());
    }
    let _ = std::fs::remove_dir_all(&a);
    let _ = std::fs::remove_dir_all(&b);
}

#[test]
fn live_runs_against_in_process_backends_records_and_replays() {
    let dir = tmp("live");
    let trace = dir.join("trace.jsonl");
    std::fs::create_dir_all(&dir).unwrap();
    let out = run_ok(&[
        "live",
        "scenarios/one-slow-backend.yaml",
        "--strategy",
        "p2c",
        "--duration",
        "1s",
        "--out",
        dir.join("report").to_str().unwrap(),
        "--record",
        trace.to_str().unwrap(),
    ]);
    assert!(out.contains("p2c") && out.contains("pacing error"), "{out}");
    for f in [
        "summary.csv",
        "summary.json",
        "live.json",
        "index.html",
        "latency_cdf.svg",
    ] {
        assert!(!read(&dir.join("report"), f).is_empty(), "{f}");
    }
    let replay = run_ok(&["replay", trace.to_str().unwrap()]);
    assert!(replay.contains("replay identical"), "{replay}");
    // A misspelled strategy is bad input.
    let bad = meshbench(&[
        "live",
        "scenarios/one-slow-backend.yaml",
        "--strategy",
        "pc2",
    ]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("did you mean `p2c`"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn live_over_mtls_and_http2_with_a_throwaway_pki() {
    let dir = tmp("live-tls");
    run_ok(&[
        "live",
        "scenarios/one-slow-backend.yaml",
        "--strategy",
        "peak_ewma",
        "--duration",
        "1s",
        "--tls",
        "--mtls",
        "--http2",
        "--quiet",
        "--out",
        dir.to_str().unwrap(),
    ]);
    let sum = summary(&dir);
    let s = &sum.strategies[0];
    assert!(s.mean("requests") > 1000.0);
    // The slow backend may time a few requests out at the start; TLS itself must never fail
    // (a failed handshake is a local error).
    assert!(!s.failures.contains_key("local_error"), "{:?}", s.failures);
    assert!(s.mean("error_rate") < 0.1);
    // --tls with --target but no CA is refused up front.
    let bad = meshbench(&[
        "live",
        "scenarios/one-slow-backend.yaml",
        "--target",
        "http://127.0.0.1:9",
        "--tls",
    ]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--ca"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn two_shards_merge_into_the_whole_schedule() {
    let base = tmp("shards");
    let dir = |n: &str| base.join(n).to_str().unwrap().to_owned();
    let common = [
        "live",
        "scenarios/one-slow-backend.yaml",
        "--strategy",
        "p2c",
        "--duration",
        "1s",
        "--quiet",
    ];
    for (shard, out) in [("0/1", "all"), ("0/2", "s0"), ("1/2", "s1")] {
        let mut args = common.to_vec();
        let out = dir(out);
        args.extend(["--shard", shard, "--out", &out]);
        run_ok(&args);
    }
    // The schedule's arrivals: released, or counted unsent when the pacer fell behind.
    let scheduled = |n: &str| -> u64 {
        let j: serde_json::Value =
            serde_json::from_slice(&std::fs::read(base.join(n).join("live.json")).unwrap())
                .unwrap();
        let live = &j["strategies"][0]["live"];
        live["scheduled"].as_u64().unwrap() + live["unsent"].as_u64().unwrap()
    };
    assert_eq!(
        scheduled("s0") + scheduled("s1"),
        scheduled("all"),
        "the shards split the schedule"
    );
    run_ok(&["merge", &dir("s0"), &dir("s1"), "--out", &dir("merged")]);
    let requests = |n: &str| -> f64 { summary(&base.join(n)).strategies[0].mean("requests") };
    assert_eq!(
        requests("merged"),
        requests("s0") + requests("s1"),
        "exact merge"
    );
    assert!(!read(&base.join("merged"), "index.html").is_empty());
    let bad = meshbench(&["live", "scenarios/one-slow-backend.yaml", "--shard", "2/2"]);
    assert_eq!(bad.status.code(), Some(2));
    let _ = std::fs::remove_dir_all(&base);
}

/// Replication 0's load share of one instance per strategy, from endpoints.csv.
fn load_share(dir: &Path, instance: u32) -> std::collections::BTreeMap<String, f64> {
    let text = String::from_utf8(read(dir, "endpoints.csv")).unwrap();
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let c: Vec<&str> = l.split(',').collect();
            (c[1] == "0" && c[3] == instance.to_string())
                .then(|| (c[0].to_owned(), c[5].parse().unwrap()))
        })
        .collect()
}

#[test]
fn multi_tier_runs_are_identical_on_1_and_2_threads_edge_by_edge() {
    // The mesh-overhead graph with sidecars that queue (one worker each) as well.
    let queued = tmp("sidecar-queue");
    std::fs::create_dir_all(&queued).unwrap();
    let overhead = std::fs::read_to_string(root().join("scenarios/mesh-overhead.yaml")).unwrap();
    let inbound = "  inbound: { dist: exponential, mean: 150us }\n";
    assert_eq!(overhead.matches(inbound).count(), 1);
    let queued_file = queued.join("mesh-overhead-queued.yaml");
    std::fs::write(
        &queued_file,
        overhead.replace(inbound, &format!("{inbound}  concurrency: 1\n")),
    )
    .unwrap();
    for file in ["three-tier-chain", "fanout-100", "sidecar-queue"] {
        let path = match file {
            "sidecar-queue" => queued_file.to_str().unwrap().to_owned(),
            _ => format!("scenarios/validation/{file}.yaml"),
        };
        let (a, b) = (tmp(&format!("{file}-1")), tmp(&format!("{file}-2")));
        for (dir, threads) in [(&a, "1"), (&b, "2")] {
            run_ok(&[
                "run",
                &path,
                "--quiet",
                "--threads",
                threads,
                "--out",
                dir.to_str().unwrap(),
            ]);
        }
        for f in [
            "summary.csv",
            "summary.json",
            "timeseries.csv",
            "endpoints.csv",
            "edges.csv",
        ] {
            assert_eq!(read(&a, f), read(&b, f), "{file}: {f}, 1 thread vs 2");
        }
        if file == "sidecar-queue" {
            continue;
        }
        // Every hop of the graph is an edge, each with every call counted.
        let edges = String::from_utf8(read(&a, "edges.csv")).expect("UTF-8");
        let rows: Vec<&str> = edges.lines().skip(1).collect();
        assert_eq!(
            rows.len(),
            2 + usize::from(file == "three-tier-chain"),
            "{edges}"
        );
    }
}

#[test]
fn the_static_world_scenarios_answer_their_questions_identically_on_1_and_2_threads() {
    for (file, extra) in [
        ("weighted-capacity", vec!["endpoints.csv"]),
        ("zone-outage-failover", vec!["zones.csv"]),
        ("hot-keys", vec!["keys.csv"]),
    ] {
        let path = format!("scenarios/{file}.yaml");
        let (a, b) = (tmp(&format!("{file}-1")), tmp(&format!("{file}-2")));
        for (dir, threads) in [(&a, "1"), (&b, "2")] {
            run_ok(&[
                "run",
                &path,
                "--quiet",
                "--threads",
                threads,
                "--out",
                dir.to_str().unwrap(),
            ]);
        }
        for f in ["summary.csv", "summary.json", "timeseries.csv"]
            .into_iter()
            .chain(extra)
        {
            assert_eq!(read(&a, f), read(&b, f), "{file}: {f}, 1 thread vs 2");
        }
        let p99 = metric(&a, "p99_ms");
        let errors = metric(&a, "error_rate");
        match file {
            "weighted-capacity" => {
                // Weight-aware balancers keep the small backends below saturation; random
                // ignores the weights and overloads them.
                for s in ["weighted_round_robin", "weighted_random", "p2c"] {
                    assert!(p99[s] < 100.0, "{s}: p99 {}", p99[s]);
                    assert!(errors[s] < 1e-3, "{s}: errors {}", errors[s]);
                }
                assert!(errors["random_unweighted"] > 0.1);
                let small = load_share(&a, 0);
                assert!((small["weighted_round_robin"] - 1.0 / 16.0).abs() < 0.003);
                assert!((small["random_unweighted"] - 0.125).abs() < 0.003);
            }
            "zone-outage-failover" => {
                // Factor 1.4 keeps 42% on three survivors that serve 40%: they saturate.
                assert!(p99["overprovisioning_1_4"] > 10.0 * p99["overprovisioning_1_0"]);
                assert!(errors["no_health_checks"] > 0.5);
                assert!(read(&a, "zones.csv").len() > 100);
            }
            _ => {
                // Affinity costs balance: the hottest keys' backend saturates under ring hash
                // and Maglev; bounded loads and P2C keep p99 low.
                for s in ["bounded_load", "p2c"] {
                    assert!(p99[s] < 50.0, "{s}: p99 {}", p99[s]);
                }
                for s in ["ring_hash", "maglev"] {
                    assert!(p99[s] > 10.0 * p99["p2c"], "{s}: p99 {}", p99[s]);
                }
            }
        }
        let _ = std::fs::remove_dir_all(&a);
        let _ = std::fs::remove_dir_all(&b);
    }
}

#[test]
fn static_world_mistakes_are_located_and_inert_fields_refused() {
    let zoned = GOOD
        .replace("strategies:", "zones: { a: { weight: 2 } }\nstrategies:")
        .replace("    instances: 4", "    instances: 4\n    zone: a")
        .replace("    target: backend", "    target: backend\n    zone: a");
    let (code, err) = invalid(&zoned);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("zones.a.weight") && err.contains("no strategy sets `locality_weighted_lb`"),
        "{err}"
    );
    assert!(
        invalid(&zoned.replace(
            "{ kind: round_robin }",
            "{ kind: round_robin }, locality_weighted_lb: {}"
        ))
        .0 == 0
    );
    let cases: [(&str, &str, &[&str]); 7] = [
        (
            "    instances: 4",
            "    instances: 4\n    zone: a",
            &["services.backend.zone", "zone `a` is not declared"],
        ),
        (
            "strategies:",
            "zones: { east: {}, west: {} }\nstrategies:",
            &["services.backend", "every service needs `zone`"],
        ),
        (
            "    instances: 4",
            "    instances: 4\n    overrides: { 2-9: { weight: 2 } }",
            &[
                "services.backend.overrides.2-9",
                "instance 9 does not exist",
            ],
        ),
        (
            "  rr: { balancer: { kind: round_robin } }",
            "  rr: { balancer: { kind: maglev } }",
            &[
                "strategies.rr.balancer",
                "client `load` sends none: give it `keys:`",
            ],
        ),
        (
            "  rr: { balancer: { kind: round_robin } }",
            "  rr: { circuit_breakers: { max_connections: 10 } }",
            &["circuit_breakers.max_connections", "set `connections: {}`"],
        ),
        (
            "  rr: { balancer: { kind: round_robin } }",
            "  rr: { zone_aware: {} }",
            &["strategies.rr.zone_aware", "needs zones"],
        ),
        (
            "    target: backend",
            "    target: backend\n    keys: { dist: zipf, count: 10, exponen: 1 }",
            &["clients.load.keys", "exponent"],
        ),
    ];
    for (from, to, want) in cases {
        let (code, err) = invalid(&GOOD.replace(from, to));
        assert_eq!(code, 2, "{to}: {err}");
        assert!(err.contains("bad.yaml:"), "{to}: located: {err}");
        for w in want {
            assert!(err.contains(w), "{to}: wanted `{w}` in: {err}");
        }
    }
}

#[test]
fn live_runs_every_sweep_point() {
    let dir = tmp("live-sweep");
    let out = run_ok(&[
        "live",
        "scenarios/load-sweep.yaml",
        "--strategy",
        "p2c",
        "--duration",
        "1s",
        "--replications",
        "1",
        "--quiet",
        "--out",
        dir.to_str().unwrap(),
    ]);
    let _ = out;
    let summary = String::from_utf8(read(&dir, "summary.csv")).unwrap();
    let loaded = meshbench_scenario::load(&root().join("scenarios/load-sweep.yaml")).unwrap();
    assert_eq!(
        summary.lines().count() - 1,
        loaded.points.len(),
        "one row per sweep point: {summary}"
    );
    assert!(summary.starts_with(&loaded.sweep_paths[0]), "{summary}");
    let _ = std::fs::remove_dir_all(&dir);
    // A scenario sized by request count has no end time for real time: refused, with the hint.
    let counted = meshbench(&[
        "live",
        "scenarios/validation/mm1-random-0.5.yaml",
        "--quiet",
    ]);
    assert_eq!(counted.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&counted.stderr).contains("pass --duration"));
}

#[test]
fn check_fails_a_worse_candidate_passes_an_identical_rerun_and_refuses_bad_input() {
    let base = tmp("check");
    std::fs::create_dir_all(&base).unwrap();
    let d = |n: &str| base.join(n).to_str().unwrap().to_owned();
    run_ok(&[
        "run",
        "scenarios/one-slow-backend.yaml",
        "--quiet",
        "--out",
        &d("a"),
    ]);
    run_ok(&[
        "run",
        "scenarios/one-slow-backend.yaml",
        "--quiet",
        "--out",
        &d("b"),
    ]);
    // Round robin standing in for P2C: the candidate made worse on purpose.
    let worse = std::fs::read_to_string(root().join("scenarios/one-slow-backend.yaml"))
        .unwrap()
        .replace(
            "p2c:         { balancer: { kind: least_request, choice_count: 2 } }",
            "p2c:         { balancer: { kind: round_robin } }",
        );
    let worse_file = base.join("worse.yaml");
    std::fs::write(&worse_file, worse).unwrap();
    run_ok(&[
        "run",
        worse_file.to_str().unwrap(),
        "--quiet",
        "--out",
        &d("worse"),
    ]);

    // An unchanged seeded rerun compares exactly equal.
    let same = meshbench(&["check", &d("b"), "--baseline", &d("a")]);
    assert_eq!(same.status.code(), Some(0));
    let table = String::from_utf8(same.stdout).unwrap();
    assert!(table.contains("32 of 32 checks passed"), "{table}");
    assert!(
        !table.contains("FAIL") && table.matches("(+0.00%)").count() == 32,
        "{table}"
    );

    // The worse candidate fails, in a readable markdown table and in JUnit XML.
    let junit = base.join("junit.xml");
    let bad = meshbench(&[
        "check",
        &d("worse"),
        "--baseline",
        &d("a"),
        "--junit",
        junit.to_str().unwrap(),
    ]);
    assert_eq!(bad.status.code(), Some(1));
    let table = String::from_utf8(bad.stdout).unwrap();
    assert!(
        table.starts_with("### meshbench check: one-slow-backend"),
        "{table}"
    );
    // Round robin's slow requests time out, so its successes' p99 even looks better: the gate
    // catches it on the errors, the lost throughput and the p99.9 of the survivors.
    for m in ["error_rate", "throughput_rps", "p999_ms"] {
        assert!(
            table.contains(&format!("| **FAIL** | p2c | {m} vs baseline (±5.0%) |")),
            "{m}: {table}"
        );
    }
    assert!(table.contains("| pass | peak_ewma | p99_ms"), "{table}");
    let xml = String::from_utf8(read(&base, "junit.xml")).unwrap();
    assert!(
        xml.contains("failures=\"3\"") && xml.contains("<failure message="),
        "{xml}"
    );

    // Any tolerance lets relative changes through, but not errors where there were none.
    let tolerant = meshbench(&[
        "check",
        &d("worse"),
        "--baseline",
        &d("a"),
        "--tolerance",
        "1000000%",
    ]);
    assert_eq!(tolerant.status.code(), Some(1));
    let table = String::from_utf8(tolerant.stdout).unwrap();
    assert!(
        table.contains("1 failed") && table.contains("(from 0)"),
        "{table}"
    );
    let per_metric = meshbench(&[
        "check",
        &d("worse"),
        "--baseline",
        &d("a"),
        "--tolerance",
        "1000000%",
        "--tolerance",
        "error_rate=1000000%",
    ]);
    assert_eq!(
        per_metric.status.code(),
        Some(1),
        "0 -> 9.8% is no relative change"
    );
    // Thresholds from the command line: pass and fail.
    let ok = meshbench(&[
        "check",
        &d("a"),
        "--threshold",
        "error_rate<10%",
        "--threshold",
        "throughput>2000/s",
    ]);
    assert_eq!(
        ok.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&ok.stdout)
    );
    let slow = meshbench(&["check", &d("a"), "--threshold", "p99<100ms"]);
    assert_eq!(slow.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&slow.stdout).contains("| **FAIL** | p2c | p99 < 100ms |"));

    // Bad input: exit 2, named.
    let typo = meshbench(&["check", &d("a"), "--threshold", "p98<3ms"]);
    assert_eq!(typo.status.code(), Some(2));
    let e = String::from_utf8_lossy(&typo.stderr);
    assert!(
        e.contains("no metric `p98`") && e.contains("did you mean"),
        "{e}"
    );
    let garbage = base.join("garbage.json");
    std::fs::write(&garbage, "{\"schema_version\": 1, \"scenario\": ").unwrap();
    let broken = meshbench(&["check", &d("a"), "--baseline", garbage.to_str().unwrap()]);
    assert_eq!(broken.status.code(), Some(2));
    let e = String::from_utf8_lossy(&broken.stderr);
    assert!(e.contains("garbage.json") && e.contains("line 1"), "{e}");
    let old = base.join("old.json");
    std::fs::write(&old, "{\"scenario\": \"x\", \"strategies\": []}").unwrap();
    let e = meshbench(&["check", &d("a"), "--baseline", old.to_str().unwrap()]);
    assert_eq!(e.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&e.stderr).contains("no schema_version"));

    // compare: one aligned line per metric, no NaN, the significance, and check's exit code
    // with --tolerance.
    let cmp = meshbench(&["compare", &d("a"), &d("worse"), "--out", &d("cmp")]);
    assert_eq!(cmp.status.code(), Some(0));
    let text = String::from_utf8(cmp.stdout).unwrap();
    assert!(!text.contains("NaN") && !text.contains("inf"), "{text}");
    assert!(text.contains("from 0") && text.contains("yes"), "{text}");
    let at: std::collections::BTreeSet<Option<usize>> = text
        .lines()
        .filter(|l| l.contains("p99_ms") || l.starts_with("strategy"))
        .map(|l| l.find("p99_ms").or_else(|| l.find("metric")))
        .collect();
    assert_eq!(at.len(), 1, "the metric column is aligned: {text}");
    let gate = meshbench(&[
        "compare",
        &d("a"),
        &d("worse"),
        "--out",
        &d("cmp"),
        "--tolerance",
        "5%",
    ]);
    assert_eq!(gate.status.code(), Some(1));
    let same = meshbench(&[
        "compare",
        &d("a"),
        &d("b"),
        "--out",
        &d("cmp2"),
        "--tolerance",
        "5%",
    ]);
    assert_eq!(same.status.code(), Some(0));
    // --update-baseline writes the baseline; the next check passes against it.
    let file = base.join("baseline/one-slow-backend.json");
    let up = meshbench(&[
        "check",
        &d("worse"),
        "--baseline",
        file.to_str().unwrap(),
        "--update-baseline",
    ]);
    assert_eq!(up.status.code(), Some(0));
    let again = meshbench(&["check", &d("worse"), "--baseline", file.to_str().unwrap()]);
    assert_eq!(again.status.code(), Some(0));
    let _ = std::fs::remove_dir_all(&base);
}

#[test]
fn run_exits_1_when_a_scenario_threshold_fails() {
    let dir = tmp("thresholds");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("t.yaml");
    std::fs::write(
        &file,
        GOOD.to_owned() + "thresholds:\n  all: [\"error_rate < 0.1%\"]\n  rr: [\"p99 < 1us\"]\n",
    )
    .unwrap();
    let out = meshbench(&[
        "run",
        file.to_str().unwrap(),
        "--quiet",
        "--out",
        dir.join("o").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(
        e.contains("FAILED: 1 of 2 checks") && e.contains("rr: p99 < 1us"),
        "{e}"
    );
    assert!(
        dir.join("o/summary.json").exists(),
        "results are written before the verdict"
    );
    // A typo in a threshold is bad input, located.
    std::fs::write(
        &file,
        GOOD.to_owned() + "thresholds:\n  rx: [\"p99 < 1ms\"]\n",
    )
    .unwrap();
    let (code, err) = invalid(&std::fs::read_to_string(&file).unwrap());
    assert_eq!(code, 2);
    assert!(
        err.contains("thresholds.rx") && err.contains("did you mean `rr`"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_live_run_whose_every_request_is_refused_fails_and_says_why() {
    let dir = tmp("refused");
    let out = meshbench(&[
        "live",
        "scenarios/bench/nginx.yaml",
        "--target",
        "http://127.0.0.1:9",
        "--duration",
        "1s",
        "--quiet",
        "--out",
        dir.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(
        e.contains("every request failed") && e.contains("local_error"),
        "{e}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn simulator_shards_merge_into_the_unsharded_directory_byte_for_byte() {
    let base = tmp("shards");
    let d = |n: &str| base.join(n).to_str().unwrap().to_owned();
    let file = "scenarios/load-sweep.yaml";
    run_ok(&["run", file, "--quiet", "--out", &d("all")]);
    let files = |dir: &str| -> Vec<(String, Vec<u8>)> {
        let mut v: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.is_file())
            .map(|p| {
                (
                    p.file_name().unwrap().to_string_lossy().into_owned(),
                    std::fs::read(&p).unwrap(),
                )
            })
            .collect();
        v.sort();
        v
    };
    let whole = files(&d("all"));
    for n in 1..=3u32 {
        let mut shards = Vec::new();
        for i in 0..n {
            let out = d(&format!("n{n}-{i}"));
            run_ok(&[
                "run",
                file,
                "--quiet",
                "--shard",
                &format!("{i}/{n}"),
                "--out",
                &out,
            ]);
            shards.push(out);
        }
        let merged = d(&format!("m{n}"));
        let mut args = vec!["merge"];
        args.extend(shards.iter().map(String::as_str));
        args.extend(["--out", &merged]);
        run_ok(&args);
        let got = files(&merged);
        assert_eq!(
            got.iter().map(|f| &f.0).collect::<Vec<_>>(),
            whole.iter().map(|f| &f.0).collect::<Vec<_>>(),
            "N = {n}: the same files"
        );
        for (a, b) in got.iter().zip(&whole) {
            assert!(a.1 == b.1, "N = {n}: {} differs", a.0);
        }
    }
    // The batch systems' variables choose the shard when --shard is absent.
    let k8s = Command::new(env!("CARGO_BIN_EXE_meshbench"))
        .args(["run", file, "--quiet", "--out", &d("k8s")])
        .env("JOB_COMPLETION_INDEX", "2")
        .env("JOB_COMPLETIONS", "3")
        .current_dir(root())
        .output()
        .unwrap();
    assert!(k8s.status.success());
    assert_eq!(
        read(&base.join("k8s"), "runs.json"),
        read(&base.join("n3-2"), "runs.json")
    );
    // Shard sets that do not fit are refused.
    for (dirs, want) in [
        (vec![d("n3-0"), d("n3-1")], "missing shards: 2/3"),
        (
            vec![d("n3-0"), d("n3-0"), d("n3-1"), d("n3-2")],
            "given twice",
        ),
        (vec![d("n3-0"), d("n2-1"), d("n3-2")], "does not fit"),
        (vec![d("n2-0"), d("all")], "runs.json"),
    ] {
        let mut args = vec!["merge".to_owned()];
        args.extend(dirs);
        args.extend(["--out".to_owned(), d("bad")]);
        let out = meshbench(&args.iter().map(String::as_str).collect::<Vec<_>>());
        assert_eq!(out.status.code(), Some(2));
        let e = String::from_utf8_lossy(&out.stderr);
        assert!(e.contains(want), "wanted `{want}`: {e}");
    }
    let _ = std::fs::remove_dir_all(&base);
}

#[test]
fn the_example_ci_and_batch_files_are_valid_and_consistent() {
    let yaml = |p: &str| -> yaml_serde::Value {
        let text = std::fs::read_to_string(root().join(p)).unwrap();
        yaml_serde::from_str(&text).unwrap_or_else(|e| panic!("{p}: {e}"))
    };
    let wf = yaml("examples/ci/meshbench.yml");
    assert!(
        wf["on"].get("pull_request").is_some(),
        "runs on pull requests"
    );
    let steps = wf["jobs"]["meshbench"]["steps"]
        .as_sequence()
        .expect("steps");
    assert!(
        steps
            .iter()
            .all(|s| s.get("run").is_some() || s.get("uses").is_some())
    );
    let runs: Vec<&str> = steps.iter().filter_map(|s| s["run"].as_str()).collect();
    assert!(
        runs.iter()
            .any(|r| r.contains("meshbench check") && r.contains("--baseline"))
    );
    let job = yaml("examples/kubernetes/sweep-job.yaml");
    assert_eq!(job["kind"].as_str(), Some("Job"));
    assert_eq!(job["spec"]["completionMode"].as_str(), Some("Indexed"));
    let completions = job["spec"]["completions"].as_u64().unwrap();
    let env = &job["spec"]["template"]["spec"]["containers"][0]["env"][0];
    assert_eq!(env["name"].as_str(), Some("JOB_COMPLETIONS"));
    assert_eq!(
        env["value"].as_str(),
        Some(completions.to_string().as_str())
    );
    assert_eq!(
        yaml("examples/kubernetes/merge-job.yaml")["kind"].as_str(),
        Some("Job")
    );
}

#[test]
fn names_files_and_recordings_cannot_escape_their_place() {
    for name in ["../x", "/tmp/x", "a/b", ".hidden", ""] {
        let (code, err) = invalid(&GOOD.replace("name: t", &format!("name: \"{name}\"")));
        assert_eq!(code, 2, "{name}: {err}");
        assert!(
            err.contains("bad.yaml:1:") && err.contains("name"),
            "{name}: {err}"
        );
    }
    // An empirical distribution reads regular files only, and never quotes one.
    let with_file = |file: &str| {
        GOOD.replace(
            "service_time: { dist: exponential, mean: 5ms }",
            &format!("service_time: {{ dist: empirical, file: \"{file}\" }}"),
        )
    };
    for outside in ["/etc/passwd", "/dev/zero", "../../../etc/passwd"] {
        let (code, err) = invalid(&with_file(outside));
        assert_eq!(code, 2, "{outside}");
        assert!(
            err.contains("outside the scenario's directory"),
            "{outside}: {err}"
        );
        assert!(!err.contains("root:x:0:0"), "quoted the file: {err}");
    }
    let (code, err) = invalid(&with_file("."));
    assert_eq!(code, 2);
    assert!(err.contains("not a regular file"), "{err}");
    // An empty recording proves nothing: an error, not "identical".
    let dir = tmp("empty-replay");
    std::fs::create_dir_all(&dir).unwrap();
    let empty = dir.join("empty.jsonl");
    std::fs::write(&empty, "").unwrap();
    let out = meshbench(&["replay", empty.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no recording"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn corrupted_result_files_give_located_errors_not_panics() {
    let base = tmp("corrupt");
    std::fs::create_dir_all(&base).unwrap();
    let good = base.join("good");
    run_ok(&[
        "run",
        "scenarios/one-slow-backend.yaml",
        "--quiet",
        "--out",
        good.to_str().unwrap(),
    ]);
    let copy = |name: &str| -> PathBuf {
        let d = base.join(name);
        std::fs::create_dir_all(&d).unwrap();
        for e in std::fs::read_dir(&good).unwrap() {
            let p = e.unwrap().path();
            if p.is_file() {
                std::fs::copy(&p, d.join(p.file_name().unwrap())).unwrap();
            }
        }
        d
    };
    // A short row in endpoints.csv, a non-number in timeseries.csv, a huge number in
    // summary.json, a truncated summary.json, an .hgrm value of 1e308, an empty directory.
    type Corrupt = Box<dyn Fn(&Path)>;
    let cases: Vec<(&str, Corrupt, &str)> = vec![
        (
            "short",
            Box::new(|d: &Path| {
                let t = std::fs::read_to_string(d.join("endpoints.csv")).unwrap();
                std::fs::write(d.join("endpoints.csv"), t + "p2c,0,backend\n").unwrap();
            }),
            "endpoints.csv:",
        ),
        (
            "nan",
            Box::new(|d: &Path| {
                let t = std::fs::read_to_string(d.join("timeseries.csv")).unwrap();
                let mut lines: Vec<String> = t.lines().map(str::to_owned).collect();
                let mut cells: Vec<String> = lines[1].split(',').map(str::to_owned).collect();
                cells[5] = "NaN".into();
                lines[1] = cells.join(",");
                std::fs::write(d.join("timeseries.csv"), lines.join("\n") + "\n").unwrap();
            }),
            "timeseries.csv:2: column `p50_ms`",
        ),
        (
            "huge",
            Box::new(|d: &Path| {
                let t = std::fs::read_to_string(d.join("summary.json")).unwrap();
                let at = t.find("\"mean\": ").unwrap() + "\"mean\": ".len();
                let end = at + t[at..].find(',').unwrap();
                let t = format!("{}1e300{}", &t[..at], &t[end..]);
                std::fs::write(d.join("summary.json"), t).unwrap();
            }),
            "is not a value meshbench writes",
        ),
        (
            "truncated",
            Box::new(|d: &Path| {
                let t = std::fs::read_to_string(d.join("summary.json")).unwrap();
                std::fs::write(d.join("summary.json"), &t[..t.len() / 2]).unwrap();
            }),
            "summary.json",
        ),
        (
            "empty",
            Box::new(|d: &Path| {
                for e in std::fs::read_dir(d).unwrap() {
                    std::fs::remove_file(e.unwrap().path()).unwrap();
                }
            }),
            "summary.json",
        ),
    ];
    for (name, corrupt, want) in cases {
        let d = copy(name);
        corrupt(&d);
        let ds = d.to_str().unwrap();
        for args in [
            vec!["report", ds],
            vec!["check", ds, "--threshold", "p99<1s"],
            vec![
                "compare",
                good.to_str().unwrap(),
                ds,
                "--out",
                &format!("{ds}-cmp"),
            ],
        ] {
            // check and compare read summary.json only.
            if (name == "short" || name == "nan") && args[0] != "report" {
                continue;
            }
            let out = meshbench(&args);
            let e = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{name} {args:?}: {e}");
            assert!(e.contains(want), "{name} {args:?}: wanted `{want}`: {e}");
            assert!(!e.contains("panicked"), "{name} {args:?}: {e}");
        }
    }
    // An absurd .hgrm value is ignored, not plotted to 1e308 (and never hangs).
    let d = copy("hgrm");
    std::fs::write(d.join("latency.p2c.hgrm"), "1e308 0.5 1 2\n").unwrap();
    run_ok(&["report", d.to_str().unwrap()]);
    let _ = std::fs::remove_dir_all(&base);
}

/// `fidelity` ends with a verdict against its tolerance, and exits 1 when it fails (loopback
/// only, two seconds of traffic per run).
#[test]
fn fidelity_ends_with_a_verdict() {
    let dir = tmp("fidelity");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("f.yaml");
    std::fs::write(&file, GOOD).unwrap();
    let run = |tolerance: &str| {
        meshbench(&[
            "fidelity",
            file.to_str().unwrap(),
            "--duration",
            "2s",
            "--tolerance",
            tolerance,
            "--out",
            dir.join("out").to_str().unwrap(),
        ])
    };
    let loose = run("10000%");
    let out = String::from_utf8_lossy(&loose.stdout);
    assert_eq!(loose.status.code(), Some(0), "{out}");
    assert!(out.contains("fidelity: PASS"), "{out}");
    assert!(String::from_utf8_lossy(&loose.stderr).contains("fidelity: simulating"));
    // No live latency equals the simulator's to four decimals: a zero tolerance fails.
    let strict = run("0%");
    let out = String::from_utf8_lossy(&strict.stdout);
    assert_eq!(strict.status.code(), Some(1), "{out}");
    assert!(
        out.contains("fidelity: FAIL, beyond 0.0%: rr p50_ms"),
        "{out}"
    );
    assert_eq!(run("lots").status.code(), Some(2));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_report_opens_with_its_question_and_answer_and_names_its_faults() {
    let dir = tmp("answer");
    run_ok(&[
        "run",
        "scenarios/crash-and-gray-failure.yaml",
        "--quiet",
        "--out",
        dir.to_str().unwrap(),
    ]);
    let html = String::from_utf8(read(&dir, "index.html")).unwrap();
    let at = |s: &str| {
        html.find(s)
            .unwrap_or_else(|| panic!("index.html lacks {s:?}"))
    };
    // The question, then the answer, before the comparison table and every plot.
    assert!(at("<b>Question:</b> 10 backends") < at("<h2>Answer</h2>"));
    assert!(at("<h2>Answer</h2>") < at("<h2>Comparison</h2>"));
    // Retries on another host hide both faults: the lowest error rate, significantly.
    let errors = &html[at("<li><b>error rate</b>")..];
    let errors = &errors[..errors.find("</li>").unwrap()];
    assert!(
        errors.contains("<b>p2c_outlier_retry</b> is best") && errors.contains("significant ("),
        "{errors}"
    );
    // The first plot is the error rate over time, its fault windows named.
    assert!(at("<h2>Error rate and throughput over time</h2>") < at("<h2>Latency CDF</h2>"));
    let svg = String::from_utf8(read(&dir, "errors_over_time.svg")).unwrap();
    for label in ["backend/3 crash", "backend/7 fast fail", "error rate (%)"] {
        assert!(svg.contains(label), "errors_over_time.svg lacks {label}");
    }
    // Percentages where the terminal shows them, and what the latency columns measure.
    assert!(html.contains("<th>errors (%)</th>") && html.contains("of successful requests only"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn reproduce_regenerates_docs_validation_md_byte_for_byte() {
    // Every published figure holds, and the committed document is what the code measures now.
    let dir = tmp("reproduce");
    std::fs::create_dir_all(&dir).unwrap();
    let doc = dir.join("validation.md");
    let out = meshbench(&["reproduce", "--quiet", "--doc", doc.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("reproduce: PASS"), "{stdout}");
    let fresh = std::fs::read_to_string(&doc).unwrap();
    let committed = std::fs::read_to_string(root().join("docs/validation.md")).unwrap();
    assert!(
        fresh == committed,
        "docs/validation.md is stale: run `meshbench reproduce --doc docs/validation.md`"
    );
    assert!(fresh.contains("95.45%") && fresh.contains("62.5%"));
    // A misspelled experiment is bad input, with the nearest name.
    let typo = meshbench(&["reproduce", "--only", "linkerd-2061"]);
    assert_eq!(typo.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&typo.stderr).contains("did you mean `linkerd-2016`"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn live_health_checks_mark_a_fast_failing_backend_unhealthy_as_the_simulator_does() {
    // b/1 answers 503 to everything from 1 s; health checks every 100 ms see it (a 503 is a
    // definite failure) and take it out of rotation, in the simulator and against real loopback
    // backends alike. Without checks it would fail half the requests after 1 s (about 750).
    let dir = tmp("live-health");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("ff.yaml");
    std::fs::write(
        &file,
        "
name: live-health
seed: 3
duration: 2.5s
replications: 1
strategies:
  rr:
    balancer: { kind: round_robin }
    health_check: { timeout: 200ms, interval: 100ms, no_traffic_interval: 100ms, unhealthy_threshold: 2, healthy_threshold: 1, initial_health: healthy }
services:
  b: { instances: 2, concurrency: 100, service_time: { dist: constant, value: 1ms } }
clients:
  c: { proxies: 1, target: b, arrival: { process: constant, rate: 1000/s } }
faults:
  - { at: 1s, target: b/1, kind: fast_fail }
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
        let s = summary(&out);
        let rr = &s.strategies[0];
        let changes = rr.events.get("health_changed").copied().unwrap_or(0);
        assert!(changes >= 1, "{cmd}: {:?}", rr.events);
        let failed: u64 = rr.failures.values().sum();
        assert!(
            (1..=300).contains(&failed),
            "{cmd}: {failed} failed: {:?}",
            rr.failures
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn live_backends_and_proxies_play_the_membership_timeline_as_the_simulator_does() {
    // 4 instances scaled to 5 at 1 s; instance 0 removed at 3 s without draining. Every proxy
    // hears of each change 1 s late: the new instance gets nothing before 2 s, and from 3 s to
    // 4 s the proxies still send to the stopped instance 0, whose refusals are retried.
    let dir = tmp("live-membership");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("m.yaml");
    std::fs::write(
        &file,
        "
name: live-membership
seed: 5
duration: 4500ms
sample_period: 500ms
replications: 1
strategies:
  rr:
    balancer: { kind: round_robin }
    retries: { num_retries: 2, retry_on: [connect-failure], retry_host_predicate: [previous_hosts], host_selection_retry_max_attempts: 5 }
    circuit_breakers: { max_retries: 100 }
services:
  b: { instances: 4, concurrency: 100, service_time: { dist: constant, value: 1ms } }
clients:
  c: { proxies: 2, target: b, arrival: { process: constant, rate: 400/s } }
membership:
  propagation: { dist: constant, value: 1s }
  changes:
    - { at: 1s, target: b, change: scale, to: 5 }
    - { at: 3s, target: b/0, change: remove }
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
        let s = summary(&out);
        let rr = &s.strategies[0];
        assert_eq!(
            rr.failures.values().sum::<u64>(),
            0,
            "{cmd}: {:?}",
            rr.failures
        );
        // endpoint_timeseries.csv: strategy,t_s,endpoint,attempts
        let text = String::from_utf8(read(&out, "endpoint_timeseries.csv")).unwrap();
        let header: Vec<&str> = text.lines().next().unwrap().split(',').collect();
        let col = |name: &str| header.iter().position(|h| *h == name).unwrap();
        let (t, inst, att) = (col("t_s"), col("endpoint"), col("attempts"));
        let attempts = |instance: &str, from: f64, to: f64| -> u64 {
            text.lines()
                .skip(1)
                .map(|l| l.split(',').collect::<Vec<_>>())
                .filter(|c| c[inst] == instance)
                .filter(|c| {
                    let t: f64 = c[t].parse().unwrap();
                    t > from && t <= to
                })
                .map(|c| c[att].parse::<u64>().unwrap())
                .sum()
        };
        assert_eq!(
            attempts("4", 0.0, 2.0),
            0,
            "{cmd}: the new instance before 2 s"
        );
        assert!(
            attempts("4", 2.5, 3.0) > 20,
            "{cmd}: the new instance after 2.5 s"
        );
        let endpoints = String::from_utf8(read(&out, "endpoints.csv")).unwrap();
        let errors0: u64 = endpoints
            .lines()
            .skip(1)
            .map(|l| l.split(',').collect::<Vec<_>>())
            .filter(|c| c[3] == "0")
            .map(|c| c[6].parse::<u64>().unwrap())
            .sum();
        assert!(
            (40..=120).contains(&errors0),
            "{cmd}: instance 0 refused {errors0}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_dynamic_world_scenarios_answer_their_questions_identically_on_1_and_2_threads() {
    for file in [
        "scale-up-cold-start",
        "stale-views-herding",
        "rolling-restart",
        "retry-storm",
    ] {
        let path = format!("scenarios/{file}.yaml");
        let (a, b) = (tmp(&format!("{file}-1")), tmp(&format!("{file}-2")));
        for (dir, threads) in [(&a, "1"), (&b, "2")] {
            run_ok(&[
                "run",
                &path,
                "--quiet",
                "--threads",
                threads,
                "--out",
                dir.to_str().unwrap(),
            ]);
        }
        for f in [
            "summary.csv",
            "summary.json",
            "timeseries.csv",
            "endpoints.csv",
        ] {
            assert_eq!(read(&a, f), read(&b, f), "{file}: {f}, 1 thread vs 2");
        }
        let p99 = metric(&a, "p99_ms");
        let errors = metric(&a, "error_rate");
        match file {
            "scale-up-cold-start" => {
                // Round robin gives the cold newcomers a full share at once: timeouts. Load-aware
                // balancing (and slow start under it) keeps the p99 far lower.
                assert!(errors["round_robin"] > 0.02, "{errors:?}");
                for s in ["p2c_slow_start", "peak_ewma"] {
                    assert!(p99[s] * 5.0 < p99["round_robin"], "{s}: {p99:?}");
                    assert!(errors[s] < 1e-3, "{s}: {errors:?}");
                }
            }
            "stale-views-herding" => {
                // Proxies that hear of the scale-down late send to the two instances that are
                // gone: connect failures on them, every one retried elsewhere under P2C.
                let text = String::from_utf8(read(&a, "endpoints.csv")).unwrap();
                let refused: u64 = text
                    .lines()
                    .skip(1)
                    .map(|l| l.split(',').collect::<Vec<_>>())
                    .filter(|c| c[3] == "10" || c[3] == "11")
                    .map(|c| c[6].parse::<u64>().unwrap())
                    .sum();
                assert!(refused > 1000, "refused {refused}");
                assert!(errors["p2c"] < 1e-3, "{errors:?}");
                assert!(p99["least_request_bias4"] < p99["round_robin"], "{p99:?}");
            }
            "rolling-restart" => {
                // Without retries the stale proxies' connect failures fail requests; Envoy's
                // default retry breaker (3 in flight) lets some through; room for 100 saves all
                // but a few.
                assert!(errors["round_robin"] > 0.01, "{errors:?}");
                assert!(
                    errors["p2c_retries"] > 3.0 * errors["p2c_retries_100"],
                    "{errors:?}"
                );
                assert!(errors["p2c_retries_100"] < 1e-3, "{errors:?}");
            }
            _ => {}
        }
    }
}

#[test]
fn live_dials_https_target_urls_and_names_what_is_wrong_with_a_certificate() {
    use std::io::BufRead as _;
    // `meshbench serve` with a certificate for localhost / 127.0.0.1 / ::1 from one CA.
    let dir = tmp("https-targets");
    std::fs::create_dir_all(&dir).unwrap();
    let pki = meshbench_live::tls::generate_pki().unwrap();
    let other = meshbench_live::tls::generate_pki().unwrap();
    let path = |n: &str| dir.join(n).to_str().unwrap().to_owned();
    std::fs::write(path("ca.pem"), &pki.ca_pem).unwrap();
    std::fs::write(path("other-ca.pem"), &other.ca_pem).unwrap();
    std::fs::write(path("cert.pem"), &pki.server_cert_pem).unwrap();
    std::fs::write(path("key.pem"), &pki.server_key_pem).unwrap();
    let scenario = dir.join("one.yaml");
    std::fs::write(
        &scenario,
        "
name: https-target
duration: 1s
strategies: { rr: { balancer: { kind: round_robin } } }
services:
  b: { instances: 1, concurrency: 100, service_time: { dist: constant, value: 1ms } }
clients:
  c: { target: b, arrival: { process: constant, rate: 200/s } }
",
    )
    .unwrap();
    let mut serve = Command::new(env!("CARGO_BIN_EXE_meshbench"))
        .args([
            "serve",
            scenario.to_str().unwrap(),
            "--tls-cert",
            &path("cert.pem"),
            "--tls-key",
            &path("key.pem"),
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(serve.stdout.take().unwrap()).lines();
    let url = loop {
        let line = lines.next().expect("serve prints its instances").unwrap();
        if let Some(u) = line.strip_prefix("b/0  ") {
            break u.trim().to_owned();
        }
    };
    assert!(url.starts_with("https://127.0.0.1:"), "{url}");
    let port = url.rsplit(':').next().unwrap().to_owned();
    let live = |target: &str, extra: &[&str], out: &str| {
        let mut args = vec![
            "live",
            scenario.to_str().unwrap(),
            "--target",
            target,
            "--quiet",
            "--out",
        ];
        let out = path(out);
        args.push(&out);
        args.extend(extra);
        meshbench(&args)
    };
    // A URL with a host name and a path, checked against its own host.
    let ca = path("ca.pem");
    let ok = live(
        &format!("https://localhost:{port}/api/items?x=1"),
        &["--ca", &ca],
        "ok",
    );
    assert_eq!(
        ok.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let s = summary(&dir.join("ok"));
    assert!(s.strategies[0].mean("requests") >= 150.0);
    assert_eq!(s.strategies[0].failures.values().sum::<u64>(), 0);
    // The wrong CA: every request fails, the cause is named, and the exit is a failure.
    let other_ca = path("other-ca.pem");
    let bad = live(&url, &["--ca", &other_ca], "bad-ca");
    let err = String::from_utf8_lossy(&bad.stderr);
    assert_eq!(bad.status.code(), Some(1), "{err}");
    assert!(
        err.contains("unknown CA") && err.contains("every request failed"),
        "{err}"
    );
    // A name the certificate does not carry.
    let wrong = live(
        &url,
        &["--ca", &ca, "--server-name", "api.example.com"],
        "bad-name",
    );
    let err = String::from_utf8_lossy(&wrong.stderr);
    assert_eq!(wrong.status.code(), Some(1), "{err}");
    assert!(err.contains("name mismatch"), "{err}");
    // Bad input is refused before any traffic.
    for (target, words) in [
        (format!("https://127.0.0.1:{port}"), "need --ca"),
        ("ftp://127.0.0.1:1".to_owned(), "scheme `ftp`"),
    ] {
        let out = meshbench(&["live", scenario.to_str().unwrap(), "--target", &target]);
        assert_eq!(out.status.code(), Some(2));
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(words),
            "{target}"
        );
    }
    let _ = serve.kill();
    let _ = serve.wait();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_interrupted_closed_loop_against_a_silent_endpoint_ends_within_the_drain_and_says_partial() {
    // An endpoint that accepts connections and never answers; 4 closed-loop users and no
    // timeout, so nothing would ever wake them. Ctrl-C (SIGINT) after 1 s must end the run
    // within the 5 s drain, write the report marked partial everywhere, and exit 130.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = silent.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for c in silent.incoming().flatten() {
            held.push(c);
        }
    });
    let dir = tmp("silent");
    std::fs::create_dir_all(&dir).unwrap();
    let scenario = dir.join("silent.yaml");
    std::fs::write(
        &scenario,
        "
name: silent
duration: 60s
strategies: { rr: { balancer: { kind: round_robin }, timeout: 0s } }
services:
  b: { instances: 1, service_time: { dist: constant, value: 1ms } }
clients:
  c: { target: b, arrival: { process: closed, users: 4 } }
",
    )
    .unwrap();
    let out = dir.join("out");
    let started = std::time::Instant::now();
    let child = Command::new(env!("CARGO_BIN_EXE_meshbench"))
        .args([
            "live",
            scenario.to_str().unwrap(),
            "--target",
            &format!("http://{addr}"),
            "--quiet",
            "--out",
            out.to_str().unwrap(),
        ])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_secs(1));
    let killed = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let done = child.wait_with_output().unwrap();
    let took = started.elapsed();
    assert!(took < std::time::Duration::from_secs(9), "took {took:?}");
    assert_eq!(
        done.status.code(),
        Some(130),
        "{}",
        String::from_utf8_lossy(&done.stderr)
    );
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(json["partial"], serde_json::Value::Bool(true), "{json}");
    let csv = String::from_utf8(read(&out, "summary.csv")).unwrap();
    assert!(
        csv.lines().next().unwrap().ends_with(",partial")
            && csv.lines().nth(1).unwrap().ends_with(",true"),
        "{csv}"
    );
    let html = String::from_utf8(read(&out, "index.html")).unwrap();
    assert!(html.contains("Partial: this run was interrupted"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_live_schedule_the_generator_cannot_keep_ends_on_time_and_counts_what_it_never_sent() {
    // 20 million arrivals a second for 1 s: no generator on two cores releases that many. The
    // run must still end near its duration (not take many times it), count the arrivals it
    // never sent, report the rate it achieved, and warn even under --quiet.
    let dir = tmp("overload");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("o.yaml");
    std::fs::write(
        &file,
        "
name: overload
duration: 1s
strategies: { rr: { balancer: { kind: round_robin } } }
services:
  b: { instances: 4, concurrency: 1000, service_time: { dist: constant, value: 100us } }
clients:
  c: { proxies: 2, target: b, arrival: { process: poisson, rate: 20000000/s } }
",
    )
    .unwrap();
    let out = dir.join("out");
    let started = std::time::Instant::now();
    let run = meshbench(&[
        "live",
        file.to_str().unwrap(),
        "--quiet",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(err.contains("fell behind its schedule"), "{err}");
    let live: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("live.json")).unwrap()).unwrap();
    let l = &live["strategies"][0]["live"];
    let (unsent, scheduled) = (
        l["unsent"].as_u64().unwrap(),
        l["scheduled"].as_u64().unwrap(),
    );
    assert!(unsent > 1_000_000, "{l}");
    // What was released and what was not make up the schedule (about 20 M).
    assert!(
        (19_000_000..21_000_000).contains(&(unsent + scheduled)),
        "{l}"
    );
    assert!(l["achieved_rps"].as_f64().unwrap() < 19_000_000.0, "{l}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn every_attempt_carries_a_traceparent_its_retries_share() {
    // Half of the served requests fail with a 500 and are retried (up to 2 more attempts): the
    // backends' trace log must show, per request, one trace id across all its attempts and a
    // different span id for each, in W3C's format.
    let dir = tmp("traceparent");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("t.yaml");
    std::fs::write(
        &file,
        "
name: traces
seed: 9
duration: 1s
strategies:
  rr: { balancer: { kind: round_robin }, retries: { num_retries: 2, retry_on: [5xx] } }
services:
  b: { instances: 2, concurrency: 100, service_time: { dist: constant, value: 1ms }, error_rate: 0.5 }
clients:
  c: { target: b, arrival: { process: constant, rate: 200/s } }
",
    )
    .unwrap();
    let log = dir.join("traces.csv");
    let out = dir.join("out");
    let run = meshbench(&[
        "live",
        file.to_str().unwrap(),
        "--quiet",
        "--trace-log",
        log.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(run.status.code() == Some(0) || run.status.code() == Some(1));
    let text = std::fs::read_to_string(&log).unwrap();
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some("run,instance,request,attempt,traceparent")
    );
    let mut by_request: std::collections::BTreeMap<String, Vec<(String, String)>> =
        std::collections::BTreeMap::new();
    for l in lines {
        let c: Vec<&str> = l.split(',').collect();
        let t: Vec<&str> = c[4].split('-').collect();
        assert_eq!(
            (t.len(), t[0], t[1].len(), t[2].len(), t[3]),
            (4, "00", 32, 16, "01"),
            "{l}"
        );
        by_request
            .entry(c[2].to_owned())
            .or_default()
            .push((t[1].to_owned(), t[2].to_owned()));
    }
    assert!(
        by_request.len() >= 150,
        "{} requests logged",
        by_request.len()
    );
    let retried = by_request.values().filter(|a| a.len() > 1).count();
    assert!(retried > 30, "{retried} retried");
    for (r, attempts) in &by_request {
        assert!(
            attempts.iter().all(|a| a.0 == attempts[0].0),
            "request {r}: {attempts:?}"
        );
        let spans: std::collections::BTreeSet<&String> = attempts.iter().map(|a| &a.1).collect();
        assert_eq!(spans.len(), attempts.len(), "request {r}: {attempts:?}");
    }
    let traces: std::collections::BTreeSet<&String> =
        by_request.values().map(|a| &a[0].0).collect();
    assert_eq!(traces.len(), by_request.len(), "one trace per request");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_interrupted_simulation_writes_the_runs_that_finished_marked_partial() {
    // 40 runs of about 0.1 s each; SIGINT after 1 s: no new run starts, the report holds the
    // runs that finished, marked partial, and the exit is 130.
    let dir = tmp("run-interrupt");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("long.yaml");
    std::fs::write(
        &file,
        "
name: long
seed: 3
requests: 400000
replications: 40
sample_period: 10s
strategies: { p2c: { balancer: { kind: least_request } } }
policy: { timeout: 0s, circuit_breakers: { max_requests: 1000000 } }
services:
  server: { instances: 16, concurrency: 1, service_time: { dist: exponential, mean: 1ms } }
clients:
  load: { target: server, arrival: { process: poisson, rate: 14400/s } }
",
    )
    .unwrap();
    let out = dir.join("out");
    let child = Command::new(env!("CARGO_BIN_EXE_meshbench"))
        .args([
            "run",
            file.to_str().unwrap(),
            "--quiet",
            "--threads",
            "1",
            "--out",
            out.to_str().unwrap(),
        ])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1000));
    assert!(
        Command::new("kill")
            .args(["-INT", &child.id().to_string()])
            .status()
            .unwrap()
            .success()
    );
    let done = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&done.stderr);
    assert_eq!(done.status.code(), Some(130), "{err}");
    assert!(err.contains("is partial"), "{err}");
    let s = summary(&out);
    let finished = s.strategies[0].replications;
    assert!((1..40).contains(&finished), "{finished} runs finished");
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(json["partial"], serde_json::Value::Bool(true));
    let _ = std::fs::remove_dir_all(&dir);
}

/// A listener on loopback that records each HTTP/1.1 request as it arrives (head and body) and
/// answers 200: its address and what it saw.
fn recording_listener() -> (
    std::net::SocketAddr,
    std::sync::Arc<std::sync::Mutex<Vec<String>>>,
) {
    use std::io::{Read as _, Write as _};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    {
        let seen = seen.clone();
        std::thread::spawn(move || {
            for mut conn in listener.incoming().flatten() {
                let seen = seen.clone();
                std::thread::spawn(move || {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    loop {
                        // A whole request: the head, then content-length bytes of body.
                        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                            match conn.read(&mut chunk) {
                                Ok(0) | Err(_) => return,
                                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                            }
                            continue;
                        };
                        let head = String::from_utf8_lossy(&buf[..end]).to_lowercase();
                        let len: usize = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length: "))
                            .map_or(0, |v| v.trim().parse().unwrap());
                        while buf.len() < end + 4 + len {
                            match conn.read(&mut chunk) {
                                Ok(0) | Err(_) => return,
                                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                            }
                        }
                        let request: Vec<u8> = buf.drain(..end + 4 + len).collect();
                        seen.lock()
                            .unwrap()
                            .push(String::from_utf8_lossy(&request).into_owned());
                        if conn
                            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                            .is_err()
                        {
                            return;
                        }
                    }
                });
            }
        });
    }
    (addr, seen)
}

#[test]
fn live_sends_the_method_headers_and_body_asked_for_to_the_target_path() {
    let (addr, seen) = recording_listener();
    let dir = tmp("request-spec");
    std::fs::create_dir_all(&dir).unwrap();
    let scenario = dir.join("one.yaml");
    std::fs::write(
        &scenario,
        "
name: request-spec
duration: 500ms
strategies: { rr: { balancer: { kind: round_robin } } }
services:
  b: { instances: 1, service_time: { dist: constant, value: 1ms } }
clients:
  c: { target: b, arrival: { process: constant, rate: 20/s } }
",
    )
    .unwrap();
    let body = dir.join("body.json");
    std::fs::write(&body, "{\"query\": \"mesh\"}").unwrap();
    let out = dir.join("out");
    run_ok(&[
        "live",
        scenario.to_str().unwrap(),
        "--target",
        &format!("http://{addr}/v1/search?lang=en"),
        "--method",
        "POST",
        "--header",
        "X-Team: search",
        "--body-file",
        body.to_str().unwrap(),
        "--quiet",
        "--out",
        out.to_str().unwrap(),
    ]);
    let seen = seen.lock().unwrap();
    assert!(seen.len() >= 8, "{} requests", seen.len());
    for r in seen.iter() {
        assert!(r.starts_with("POST /v1/search?lang=en HTTP/1.1\r\n"), "{r}");
        let lower = r.to_lowercase();
        assert!(lower.contains(&format!("host: {addr}")), "{r}");
        assert!(
            lower.contains("x-team: search") && lower.contains("content-length: 17"),
            "{r}"
        );
        assert!(lower.contains("traceparent: 00-"), "{r}");
        assert!(r.ends_with("\r\n\r\n{\"query\": \"mesh\"}"), "{r}");
    }
    let bad = meshbench(&[
        "live",
        scenario.to_str().unwrap(),
        "--target",
        &format!("http://{addr}"),
        "--header",
        "no colon",
    ]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("Name: value"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn endpoints_count_timed_out_attempts_among_their_errors_in_both_drivers() {
    // Backend 1 takes 200 ms, beyond the 50 ms per-try timeout; backend 0 answers in 1 ms. Round
    // robin sends each half the attempts, so backend 1's every attempt is an error of its own
    // (timed out, as Envoy's per-host upstream_rq_timeout counts it) and backend 0 has none.
    let dir = tmp("timeouts-are-errors");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("timeouts.yaml");
    std::fs::write(
        &file,
        "
name: timeouts
seed: 3
duration: 2s
warmup: 0s
replications: 1
strategies:
  rr: { balancer: { kind: round_robin } }
policy:
  timeout: 1s
  retries: { num_retries: 0, per_try_timeout: 50ms }
services:
  b:
    instances: 2
    concurrency: 64
    service_time: { dist: constant, value: 1ms }
    overrides:
      1: { slowdown: 200 }
clients:
  c: { proxies: 1, target: b, arrival: { process: poisson, rate: 50/s } }
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
        let text = String::from_utf8(read(&out, "endpoints.csv")).unwrap();
        let row = |i: &str| -> (u64, u64) {
            let c: Vec<&str> = text
                .lines()
                .find(|l| l.split(',').nth(3) == Some(i))
                .unwrap_or_else(|| panic!("{cmd}: no instance {i} in\n{text}"))
                .split(',')
                .collect();
            (c[4].parse().unwrap(), c[6].parse().unwrap())
        };
        let (fast, slow) = (row("0"), row("1"));
        assert!(slow.0 >= 30, "{cmd}: {slow:?}");
        assert_eq!(fast.1, 0, "{cmd}: the fast backend failed attempts");
        // Live: attempts still in flight when the run ended were never timed out.
        assert!(
            slow.1 + 1 >= slow.0 && slow.1 <= slow.0,
            "{cmd}: backend 1 (attempts, errors) {slow:?}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_clients_request_in_the_scenario_and_a_vegeta_targets_file_shape_what_is_sent() {
    let (addr, seen) = recording_listener();
    let dir = tmp("request-file");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("order.json"), "{\"items\": 3}").unwrap();
    let scenario = dir.join("two.yaml");
    let yaml = "
name: request-file
duration: 500ms
strategies: { rr: { balancer: { kind: round_robin } } }
services:
  b: { instances: 2, service_time: { dist: constant, value: 1ms } }
clients:
  c:
    target: b
    arrival: { process: constant, rate: 40/s }
    request: { method: PUT, path: /orders/7, headers: { X-Tenant: acme }, body_file: order.json }
"
    .to_owned();
    std::fs::write(&scenario, &yaml).unwrap();
    // The scenario's request, to in-process-style endpoints given by address (discovery).
    let eps = dir.join("eps.txt");
    std::fs::write(&eps, format!("{addr}\n")).unwrap();
    let out = dir.join("out");
    let one = yaml.replace("instances: 2", "instances: 1");
    std::fs::write(&scenario, &one).unwrap();
    run_ok(&[
        "live",
        scenario.to_str().unwrap(),
        "--discover",
        &format!("file:{}", eps.display()),
        "--header",
        "X-Run: 1",
        "--quiet",
        "--out",
        out.to_str().unwrap(),
    ]);
    {
        let mut seen = seen.lock().unwrap();
        assert!(seen.len() >= 15, "{} requests", seen.len());
        for r in seen.iter() {
            assert!(r.starts_with("PUT /orders/7 HTTP/1.1\r\n"), "{r}");
            let lower = r.to_lowercase();
            assert!(
                lower.contains("x-tenant: acme") && lower.contains("x-run: 1"),
                "{r}"
            );
            assert!(r.ends_with("\r\n\r\n{\"items\": 3}"), "{r}");
        }
        seen.clear();
    }
    // A targets file in vegeta's text format: two endpoints, each its own request.
    std::fs::write(&scenario, &yaml).unwrap();
    std::fs::write(dir.join("b.txt"), "ping").unwrap();
    let targets = dir.join("targets.txt");
    std::fs::write(
        &targets,
        format!(
            "# two endpoints\nGET http://{addr}/a?x=1\nX-Which: a\n\nPOST http://{addr}/b\nX-Which: b\n@{}\n",
            dir.join("b.txt").display()
        ),
    )
    .unwrap();
    run_ok(&[
        "live",
        scenario.to_str().unwrap(),
        "--targets-file",
        targets.to_str().unwrap(),
        "--quiet",
        "--out",
        out.to_str().unwrap(),
    ]);
    {
        let seen = seen.lock().unwrap();
        let a = seen.iter().filter(|r| r.starts_with("GET /a?x=1 ")).count();
        let b = seen
            .iter()
            .filter(|r| r.starts_with("POST /b ") && r.ends_with("\r\n\r\nping"))
            .count();
        assert!(
            a >= 5 && b >= 5 && a + b == seen.len(),
            "a {a}, b {b} of {}",
            seen.len()
        );
        assert!(seen.iter().all(|r| {
            let l = r.to_lowercase();
            l.contains("x-which: a") == r.starts_with("GET")
        }));
    }
    // The simulator says the request is live mode's only.
    let sim = meshbench(&[
        "run",
        scenario.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(String::from_utf8_lossy(&sim.stderr).contains("clients.c.request"));
    // Mistakes are located.
    for (bad, want) in [
        ("method: PUT", "method: \"P T\"", "clients.c.request.method"),
        (
            "X-Tenant: acme",
            "Host: acme",
            "meshbench writes this header itself",
        ),
        (
            "body_file: order.json",
            "body_file: missing.json",
            "clients.c.request.body_file",
        ),
    ]
    .map(|(a, b, w)| (yaml.replace(a, b), w))
    {
        std::fs::write(&scenario, &bad).unwrap();
        let v = meshbench(&["validate", scenario.to_str().unwrap()]);
        assert_eq!(v.status.code(), Some(2), "{bad}");
        let e = String::from_utf8_lossy(&v.stderr);
        assert!(e.contains(want) && e.contains("two.yaml:"), "{e}");
    }
    std::fs::write(&targets, "GET\n").unwrap();
    std::fs::write(&scenario, &yaml).unwrap();
    let v = meshbench(&[
        "live",
        scenario.to_str().unwrap(),
        "--targets-file",
        targets.to_str().unwrap(),
    ]);
    assert_eq!(v.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&v.stderr).contains("targets.txt:1"),
        "{v:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_isotope_graph_imports_into_a_scenario_that_validates_and_runs() {
    let dir = tmp("isotope");
    std::fs::create_dir_all(&dir).unwrap();
    let scenario = dir.join("graph.yaml");
    let out = meshbench(&[
        "import-isotope",
        "examples/isotope/service-graph.yaml",
        "--requests",
        "3000",
        "--out",
        scenario.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("sizes are not modeled"), "{stderr}");
    run_ok(&["validate", scenario.to_str().unwrap()]);
    let report = dir.join("report");
    run_ok(&[
        "run",
        scenario.to_str().unwrap(),
        "--quiet",
        "--out",
        report.to_str().unwrap(),
    ]);
    // Every edge of the graph carries calls: the client's, the gateway's two, and inventory's
    // two callers.
    let edges = String::from_utf8(read(&report, "edges.csv")).expect("UTF-8");
    for edge in [
        "gateway,catalog",
        "gateway,cart",
        "catalog,inventory",
        "cart,inventory",
    ] {
        assert!(edges.contains(edge), "{edge} missing:\n{edges}");
    }
    // The report draws the graph, with every edge's p99 and error rate.
    let page = String::from_utf8(read(&report, "index.html")).expect("UTF-8");
    assert!(
        report.join("call_graph.png").exists() && page.contains("call_graph.svg"),
        "no call graph in the report"
    );
    // End to end, a request takes at least its critical path: the slower subtree (1 ms + 2 ms)
    // plus the gateway's 200 us.
    for (strategy, p99) in p99s(&report) {
        assert!(p99 >= 3.2, "{strategy}: p99 {p99} ms");
    }
    // A mistake in the graph names its place.
    let bad = dir.join("bad.yaml");
    std::fs::write(
        &bad,
        "services:\n- name: a\n  script:\n  - call: bb\n- name: b\n",
    )
    .unwrap();
    let out = meshbench(&["import-isotope", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("bad.yaml:4:")
            && stderr.contains("services.0.script.0")
            && stderr.contains("did you mean `b`"),
        "{stderr}"
    );
}
