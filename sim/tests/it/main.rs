//! The simulator against queueing theory (M/M/1, M/M/c, round robin over N, the supermarket
//! model): every shipped validation scenario, run in full, must land within the 99% confidence interval of its
//! replications around the closed form, with an interval narrow enough to mean something.

use std::path::PathBuf;

use meshbench_report::{StrategySummary, summarize};

mod faults;
mod fields;
mod fuzz;
mod world;

fn run(file: &str) -> StrategySummary {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../scenarios/validation")
        .join(file);
    let loaded = meshbench_scenario::load(&path).expect("valid scenario");
    let results = meshbench_sim::run_all(&loaded, loaded.scenario.seed, &|| {});
    let names: Vec<String> = loaded.strategies.iter().map(|(n, _)| n.clone()).collect();
    summarize(&results, &names).remove(0)
}

/// Student t 0.995 quantiles (two-sided 99%) by degrees of freedom.
fn t_995(df: usize) -> f64 {
    [
        63.657, 9.925, 5.841, 4.604, 4.032, 3.707, 3.499, 3.355, 3.250, 3.169,
    ][df - 1]
}

/// Asserts `metric`'s replication mean is within the 99% CI of `want` and within `rel` of it,
/// and that the 95% CI is no wider than `max_ci` (relative): a test that cannot fail proves
/// nothing.
fn assert_close(s: &StrategySummary, metric: &str, want: f64, rel: f64, max_ci: f64) {
    let m = s.get(metric).expect("metric");
    let n = m.values.len();
    let ci95 = m.ci95.expect("replications >= 2");
    let ci99 = ci95 / meshbench_report::t_975(n - 1) * t_995(n - 1);
    let err = (m.mean - want).abs();
    assert!(
        err <= ci99,
        "{}: {metric} = {:.4} +- {ci99:.4} (99% CI), theory {want:.4}",
        s.strategy,
        m.mean
    );
    assert!(
        err <= rel * want,
        "{}: {metric} = {:.4}, theory {want:.4}: off by {:.2}% > {:.1}%",
        s.strategy,
        m.mean,
        100.0 * err / want,
        100.0 * rel
    );
    assert!(
        ci95 <= max_ci * want,
        "{}: {metric} CI +-{ci95:.4} too wide to test anything",
        s.strategy
    );
}

/// The `p` quantile of a distribution given its survival function, by bisection.
fn quantile(survival: impl Fn(f64) -> f64, p: f64) -> f64 {
    let (mut lo, mut hi) = (0.0, 1e4);
    for _ in 0..200 {
        let mid = (lo + hi) / 2.0;
        if survival(mid) > 1.0 - p {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    lo
}

#[test]
fn random_split_is_mm1_at_load_05_and_09() {
    for (file, rho) in [("mm1-random-0.5.yaml", 0.5), ("mm1-random-0.9.yaml", 0.9)] {
        let s = run(file);
        let t = 1.0 / (1.0 - rho); // ms, mu = 1/ms
        assert_close(&s, "mean_ms", t, 0.03, 0.04);
        assert_close(&s, "p99_ms", t * 100f64.ln(), 0.05, 0.06);
    }
}

#[test]
fn round_robin_over_16_is_e16_m_1() {
    let (n, lambda) = (16.0, 0.9);
    let mut sigma: f64 = 0.5;
    for _ in 0..10_000 {
        sigma = (n * lambda / (n * lambda + (1.0 - sigma))).powf(n);
    }
    let t = 1.0 / (1.0 - sigma);
    assert!((t - 5.4796).abs() < 1e-3, "reference value {t}");
    let s = run("rr-16-0.9.yaml");
    assert_close(&s, "mean_ms", t, 0.03, 0.04);
    assert_close(&s, "p99_ms", t * 100f64.ln(), 0.05, 0.06);
}

/// Erlang C: (probability of waiting, mean response time, survival of the response time).
fn erlang_c(c: u32, rho: f64) -> (f64, f64, impl Fn(f64) -> f64) {
    let a = rho * f64::from(c);
    let mut b = 1.0;
    for k in 1..=c {
        b = a * b / (f64::from(k) + a * b);
    }
    let pw = b / (1.0 - rho * (1.0 - b));
    let rate = f64::from(c) - a; // c mu - lambda
    let t = pw / rate + 1.0;
    // T = S + Wq: S ~ Exp(1); Wq = 0 w.p. 1 - pw, else Exp(rate).
    let survival = move |x: f64| {
        let both = if (rate - 1.0).abs() < 1e-12 {
            (1.0 + x) * (-x).exp()
        } else {
            (rate * (-x).exp() - (-rate * x).exp()) / (rate - 1.0)
        };
        (1.0 - pw) * (-x).exp() + pw * both
    };
    (pw, t, survival)
}

#[test]
fn one_instance_with_concurrency_c_is_erlang_c() {
    for (file, c, want_t) in [
        ("erlang-c-4.yaml", 4, 2.96938),
        ("erlang-c-16.yaml", 16, 1.36959),
    ] {
        let (_, t, survival) = erlang_c(c, 0.9);
        assert!((t - want_t).abs() < 1e-4, "reference value {t}");
        let s = run(file);
        assert_close(&s, "mean_ms", t, 0.03, 0.04);
        assert_close(&s, "p99_ms", quantile(survival, 0.99), 0.05, 0.06);
    }
}

#[test]
fn p2c_at_1000_instances_is_the_supermarket_model_within_2_percent() {
    let (lambda, d) = (0.9f64, 2i32);
    let s_i = |i: i32| lambda.powf((f64::from(d).powi(i) - 1.0) / f64::from(d - 1));
    let t: f64 = (1..40).map(s_i).sum::<f64>() / lambda;
    assert!((t - 2.6141).abs() < 1e-3, "reference value {t}");
    // Response-time tail: join a queue of k with probability s_k^d - s_{k+1}^d, then wait an
    // Erlang(k + 1, 1) time.
    let survival = |x: f64| {
        (0..40)
            .map(|k| {
                let p = s_i(k).powi(d) - s_i(k + 1).powi(d);
                let mut term = (-x).exp();
                let mut sum = term;
                for j in 1..=k {
                    term *= x / f64::from(j);
                    sum += term;
                }
                p * sum
            })
            .sum::<f64>()
    };
    let s = run("p2c-supermarket-1000.yaml");
    assert_close(&s, "mean_ms", t, 0.02, 0.02);
    assert_close(&s, "p99_ms", quantile(survival, 0.99), 0.03, 0.03);
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

/// Linkerd, "Beyond Round Robin" (2016): one of 11 backends slows to about 2 s for half of a
/// 60 s run; with a 1 s timeout round robin succeeds on exactly 1 - (1/11)(1/2) = 95.45% of
/// requests (it sends the slow backend 1/11 of them, and every one of those times out), least
/// loaded does better (Linkerd: about 99%) and peak EWMA better still (about 99.9%).
#[test]
fn linkerd_2016_round_robin_succeeds_on_exactly_95_45_percent() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../scenarios/linkerd-beyond-round-robin.yaml");
    let loaded = meshbench_scenario::load(&path).expect("valid scenario");
    let results = meshbench_sim::run_all(&loaded, loaded.scenario.seed, &|| {});
    let names: Vec<String> = loaded.strategies.iter().map(|(n, _)| n.clone()).collect();
    let s = summarize(&results, &names);
    let by = |n: &str| s.iter().find(|x| x.strategy == n).expect(n);
    assert_close(by("round_robin"), "error_rate", 1.0 / 22.0, 0.03, 0.05);
    let err = |n: &str| by(n).get("error_rate").unwrap().mean;
    assert!(
        err("least_loaded") < err("round_robin") / 2.0,
        "{}",
        err("least_loaded")
    );
    assert!(
        err("peak_ewma") < err("least_loaded") / 2.0,
        "{}",
        err("peak_ewma")
    );
    // Linkerd's figures: about 99% and 99.9% succeed.
    assert!(
        (err("least_loaded") - 0.01).abs() < 0.005,
        "{}",
        err("least_loaded")
    );
    assert!(err("peak_ewma") < 0.005, "{}", err("peak_ewma"));
}
