//! What a scenario's runs will cost, estimated from the file before anything runs, and the limits
//! that refuse what cannot finish or fit.
//!
//! The estimate counts, over every sweep point x strategy x replication: simulated requests
//! (arrival rate x duration, or `requests`), simulator events (about [`EVENTS_PER_REQUEST`] per
//! request, plus health-check probes and building each proxy's Cluster), time-series windows (the simulated span over `sample_period`), and memory (what a
//! finished run keeps until the report is written, plus what each running run holds: one
//! Cluster's endpoint table per client proxy and the queues of an overloaded service).
//!
//! Two kinds of limit apply:
//! - **Hard** (checked by every load): what no flag can make meaningful. A run's
//!   simulated span must stay under [`MAX_SPAN_NS`] (100 years: nanosecond time arithmetic in
//!   `u64` then cannot wrap), `requests` under [`MAX_REQUESTS`], and a run must expect at least
//!   one arrival.
//! - **Soft** ([`Limits`], checked by `run`, `live` and `validate`): events, windows per run and
//!   memory beyond which a run is almost surely a mistake (a sample period of `1ns`, a rate of
//!   `1e-12/s` in a run sized by request count). `--allow-large` lifts them.
//!
//! Every refusal names the field to change and the estimate that failed.

use mesh_core::ClusterConfig;

use crate::{Loaded, Scenario, ScenarioError, locate};

/// Simulator events per request, roughly: arrival, send, arrival at the instance, service done,
/// response (retries and timers add a few). Measured on the shipped scenarios: 4.3 to 5.1.
pub const EVENTS_PER_REQUEST: f64 = 5.0;

/// The longest simulated span a run may have: 100 years, in nanoseconds. Every duration a
/// scenario gives is at most this long too (mesh-core's `Duration` parser refuses longer), so
/// the sum of a few never wraps a `u64` of nanoseconds.
pub const MAX_SPAN_NS: u64 = mesh_core::Duration::LONGEST.as_nanos();

/// Most requests a run may be sized by (`requests:`): 10^15.
pub const MAX_REQUESTS: u64 = 1_000_000_000_000_000;

/// Bytes a closed time-series window keeps, besides its per-endpoint counts.
const WINDOW_BYTES: f64 = 128.0;
/// Bytes per endpoint and window (attempts per endpoint).
const WINDOW_ENDPOINT_BYTES: f64 = 8.0;
/// Bytes a finished run keeps per endpoint (counters, names) and for its histograms.
const ENDPOINT_BYTES: f64 = 160.0;
const RUN_BYTES: f64 = 256.0 * 1024.0;
/// Bytes of one endpoint in one proxy's Cluster (balancer, outlier detector, health state).
const CLUSTER_ENDPOINT_BYTES: f64 = 256.0;
/// Bytes of one request waiting in a queue (the job and its place in the event queue).
const QUEUED_BYTES: f64 = 96.0;

/// What a scenario's runs cost, all runs together unless said otherwise.
#[derive(Clone, Debug, PartialEq)]
pub struct Estimate {
    /// Runs: sweep points x strategies x replications.
    pub runs: u64,
    /// Simulated requests (expected).
    pub requests: f64,
    /// Simulator events (expected).
    pub events: f64,
    /// Simulated (or, live, wall-clock) seconds of arrivals.
    pub seconds: f64,
    /// Time-series windows of the longest run.
    pub windows_per_run: f64,
    /// Peak memory, in bytes, with `threads` runs at once.
    pub memory_bytes: f64,
    /// The field that contributes most to the memory estimate, for the refusal's message.
    memory_field: String,
    /// The field to change when events are over the limit (empty: `duration` or `requests`).
    events_field: String,
}

/// Soft limits on an [`Estimate`]; `--allow-large` replaces them with [`Limits::NONE`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Limits {
    /// Simulator events over all runs.
    pub events: f64,
    /// Time-series windows in one run.
    pub windows_per_run: f64,
    /// Peak memory, bytes.
    pub memory_bytes: f64,
    /// Wall-clock seconds of a live run (all its runs one after another).
    pub live_seconds: f64,
}

impl Limits {
    /// The defaults: 5 x 10^8 events (under a minute on two cores at some 10 M events/s),
    /// 100,000 windows per run, 8 GiB, and 24 hours of live traffic.
    pub const DEFAULT: Limits = Limits {
        events: 5e8,
        windows_per_run: 1e5,
        memory_bytes: 8.0 * 1024.0 * 1024.0 * 1024.0,
        live_seconds: 24.0 * 3600.0,
    };
    /// No soft limit (`--allow-large`).
    pub const NONE: Limits = Limits {
        events: f64::INFINITY,
        windows_per_run: f64::INFINITY,
        memory_bytes: f64::INFINITY,
        live_seconds: f64::INFINITY,
    };
}

/// Which driver the estimate is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Driver {
    /// The simulator: events count, runs go in parallel on `threads`.
    Sim,
    /// Live: wall-clock time counts, runs go one after another.
    Live,
}

impl Estimate {
    /// One line for the progress output: `12 runs, 9.0 M requests, 45 M events, ~31 MiB`.
    pub fn summary(&self, driver: Driver) -> String {
        let work = match driver {
            Driver::Sim => format!("{} events", si(self.events)),
            Driver::Live => format!("{} of traffic", seconds_text(self.seconds)),
        };
        format!(
            "{} runs, {} requests, {work}, {} windows per run at most, ~{} memory",
            self.runs,
            si(self.requests),
            si(self.windows_per_run.ceil()),
            bytes_text(self.memory_bytes)
        )
    }
}

/// Estimates every run of `loaded` (`threads` of them at once in the simulator).
pub fn estimate(loaded: &Loaded, driver: Driver, threads: usize) -> Estimate {
    let mut e = Estimate {
        runs: 0,
        requests: 0.0,
        events: 0.0,
        seconds: 0.0,
        windows_per_run: 0.0,
        memory_bytes: 0.0,
        memory_field: String::new(),
        events_field: String::new(),
    };
    let mut kept = 0.0;
    let mut kept_windows = 0.0;
    let mut building = 0.0;
    let mut largest_build = 0.0;
    let mut build_field = String::new();
    let mut transient: f64 = 0.0;
    let mut transient_field = String::new();
    for p in &loaded.points {
        let sc = &p.scenario;
        let runs = p.strategies.len() as u64 * u64::from(sc.replications);
        let run = RunCost::of(sc);
        e.runs += runs;
        e.requests += run.requests * runs as f64;
        e.events += p
            .strategies
            .iter()
            .map(|(_, c)| run_events(&run, c) * f64::from(sc.replications))
            .sum::<f64>();
        e.seconds += run.span_s * runs as f64;
        building += table_events(&run) * runs as f64;
        if run.table > largest_build {
            largest_build = run.table;
            build_field.clone_from(&run.table_field);
        }
        e.windows_per_run = e.windows_per_run.max(run.windows);
        kept += run.kept_bytes * runs as f64;
        kept_windows += run.windows_bytes * runs as f64;
        if run.transient_bytes > transient {
            transient = run.transient_bytes;
            transient_field = run.transient_field;
        }
    }
    let at_once = match driver {
        Driver::Sim => threads.max(1) as f64,
        // Live runs one strategy at a time, but every proxy of it at once.
        Driver::Live => 1.0,
    }
    .min(e.runs.max(1) as f64);
    e.memory_bytes = kept + transient * at_once;
    // Building the proxies' Clusters can outweigh the requests (many proxies, many endpoints).
    if building * 2.0 > e.events {
        e.events_field = build_field;
    }
    e.memory_field = if kept_windows >= transient * at_once || transient_field.is_empty() {
        "sample_period".into()
    } else {
        transient_field
    };
    e
}

/// The most time-series windows and events one run of `policy` at this point may take, far past
/// its estimate: twice the estimated windows plus 1000, and 20 times the estimated events plus
/// 10^7. The simulator stops sampling (windows) or stops the run (events) there and says so in
/// the run's events (`cut_short_windows`, `cut_short_events`): it guards against runs whose
/// requests stay in flight long after the last arrival, which no estimate from the file sees.
pub fn run_bounds(sc: &Scenario, policy: &ClusterConfig) -> (u64, u64) {
    let run = RunCost::of(sc);
    let windows = (2.0 * run.windows + 1000.0).min(u64::MAX as f64) as u64;
    let events = (20.0 * run_events(&run, policy) + 1e7).min(u64::MAX as f64) as u64;
    (windows, events)
}

/// A run's expected work, in events: [`EVENTS_PER_REQUEST`] per request (dearer by a tenth per
/// thousand endpoints in a proxy's Cluster, as some picks and health bookkeeping scan them),
/// two per health-check probe (every proxy probes every endpoint of its target each
/// interval), and ten per endpoint of every proxy's Cluster for building it.
fn run_events(run: &RunCost, policy: &ClusterConfig) -> f64 {
    let probes = policy.health_check.as_ref().map_or(0.0, |h| {
        run.table * run.span_s / h.interval.as_secs_f64().max(1e-9)
    });
    run.requests * run.hops * EVENTS_PER_REQUEST * (1.0 + run.widest / 10_000.0)
        + 2.0 * probes
        + table_events(run)
}

/// The events-worth of building every proxy's Cluster: ten per endpoint of each.
fn table_events(run: &RunCost) -> f64 {
    10.0 * run.table
}

/// One run's cost at a sweep point.
struct RunCost {
    /// Endpoints held by every proxy's Cluster, summed (proxies x their target's instances).
    table: f64,
    /// `clients.NAME.proxies` of the client whose Clusters hold the most endpoints.
    table_field: String,
    /// Instances of the largest target.
    widest: f64,
    requests: f64,
    /// Hops per request (1 without call graphs: each call a service makes is another).
    hops: f64,
    span_s: f64,
    windows: f64,
    windows_bytes: f64,
    kept_bytes: f64,
    transient_bytes: f64,
    transient_field: String,
}

impl RunCost {
    fn of(sc: &Scenario) -> RunCost {
        let rate: f64 = sc.clients.values().map(|c| c.arrival.mean_rate()).sum();
        let (requests, span_s) = match (sc.duration, sc.requests) {
            (Some(d), _) => (rate * d.as_secs_f64(), d.as_secs_f64()),
            (None, Some(n)) => (n as f64, n as f64 / rate),
            (None, None) => (0.0, 0.0),
        };
        let endpoints: f64 = sc.services.values().map(|s| f64::from(s.instances)).sum();
        let windows = (span_s / sc.sample_period.as_secs_f64()).ceil().max(1.0);
        let windows_bytes = windows * (WINDOW_BYTES + WINDOW_ENDPOINT_BYTES * endpoints);
        let kept_bytes = RUN_BYTES + ENDPOINT_BYTES * endpoints + windows_bytes;
        // Each proxy's Cluster holds every endpoint of its target; an overloaded service
        // without a queue limit queues the excess for the rest of the run.
        let (mut table, mut widest, mut table_field) = (0.0, 0.0f64, String::new());
        let mut largest_table = 0.0;
        for (name, c) in &sc.clients {
            let Some(svc) = sc.services.get(&c.target) else {
                continue;
            };
            let n = f64::from(c.proxies) * f64::from(svc.instances);
            table += n;
            widest = widest.max(f64::from(svc.instances));
            if n > largest_table {
                largest_table = n;
                table_field = format!("clients.{name}.proxies");
            }
        }
        let mut transient = table * CLUSTER_ENDPOINT_BYTES;
        let mut field = table_field.clone();
        let mut largest = largest_table * CLUSTER_ENDPOINT_BYTES;
        for (name, svc) in &sc.services {
            if svc.queue_limit.is_some() {
                continue;
            }
            let offered: f64 = sc
                .clients
                .iter()
                .filter(|(_, c)| &c.target == name)
                .map(|(_, c)| c.arrival.mean_rate())
                .sum();
            let capacity: f64 = svc.instances().iter().map(|x| x.capacity_per_sec()).sum();
            let excess = (offered - capacity).max(0.0) * span_s;
            let b = excess.min(requests) * QUEUED_BYTES;
            transient += b;
            if b > largest {
                largest = b;
                field = format!("services.{name}.queue_limit");
            }
        }
        // Call graphs: every call is a hop of its own, through a sidecar per (calling
        // instance, upstream) holding the upstream's instances.
        let per = crate::graph::hops_per_request(&sc.services);
        let hops = if rate > 0.0 {
            sc.clients
                .values()
                .map(|c| c.arrival.mean_rate() * per.get(&c.target).copied().unwrap_or(1.0))
                .sum::<f64>()
                / rate
        } else {
            1.0
        };
        for svc in sc.services.values() {
            for up in crate::graph::Script::compile(&svc.script).upstreams {
                if let Some(u) = sc.services.get(&up) {
                    table += f64::from(svc.instances) * f64::from(u.instances);
                }
            }
        }
        RunCost {
            hops,
            table,
            table_field,
            widest,
            requests,
            span_s,
            windows,
            windows_bytes,
            kept_bytes,
            transient_bytes: transient,
            transient_field: field,
        }
    }
}

/// The hard limits, checked by every load (see the module docs); `source` and `file` locate
/// the field in errors.
pub(crate) fn check_hard(sc: &Scenario, source: &str, file: &str) -> Result<(), ScenarioError> {
    let at = |field: &str, message: String| {
        let (line, column) = locate::locate(source, field).unzip();
        ScenarioError {
            file: file.to_owned(),
            line,
            column,
            field: field.to_owned(),
            message,
            suggestion: None,
        }
    };
    let rate: f64 = sc.clients.values().map(|c| c.arrival.mean_rate()).sum();
    let rate_field = sc.clients.keys().next().map_or_else(
        || "clients".to_owned(),
        |n| format!("clients.{n}.arrival.rate"),
    );
    match (sc.duration, sc.requests) {
        (Some(d), _) => {
            let expected = rate * d.as_secs_f64();
            if expected < 1.0 {
                return Err(at(
                    &rate_field,
                    format!(
                        "the clients' arrival rates ({}/s in all) over `duration` {d} give {expected:.3e} expected requests: the run would measure nothing (raise the rate or the duration)",
                        short(rate)
                    ),
                ));
            }
        }
        (None, Some(n)) => {
            if n > MAX_REQUESTS {
                return Err(at(
                    "requests",
                    format!("is {n}; at most {MAX_REQUESTS} (10^15)"),
                ));
            }
            let span_ns = n as f64 / rate * 1e9;
            if span_ns > MAX_SPAN_NS as f64 {
                return Err(at(
                    &rate_field,
                    format!(
                        "at {}/s in all, {n} requests take {} of simulated time; a run may span at most 100 years (raise the rate or lower `requests`)",
                        short(rate),
                        seconds_text(span_ns / 1e9)
                    ),
                ));
            }
        }
        (None, None) => {}
    }
    Ok(())
}

/// Refuses an estimate beyond `limits`, naming the field to change; `Ok` carries the estimate.
pub fn check_limits(
    loaded: &Loaded,
    est: &Estimate,
    driver: Driver,
    limits: &Limits,
) -> Result<(), ScenarioError> {
    let source = &loaded.source;
    let at = |field: &str, message: String| {
        let (line, column) = locate::locate(source, field).unzip();
        ScenarioError {
            file: loaded.file.clone(),
            line,
            column,
            field: field.to_owned(),
            message: format!(
                "{message} (estimate: {}); pass --allow-large to run it anyway",
                est.summary(driver)
            ),
            suggestion: None,
        }
    };
    let sized_by = if loaded.scenario.requests.is_some() {
        "requests"
    } else {
        "duration"
    };
    match driver {
        Driver::Sim if est.events > limits.events && !est.events_field.is_empty() => {
            return Err(at(
                &est.events_field,
                format!(
                    "building every proxy's Cluster (each holds every endpoint of its target) is most of the {} simulator events, more than {}: fewer proxies or instances",
                    si(est.events),
                    si(limits.events)
                ),
            ));
        }
        Driver::Sim if est.events > limits.events => {
            return Err(at(
                sized_by,
                format!(
                    "{} runs of {} requests each make about {} simulator events, more than {}: shorten `{sized_by}` or run fewer replications or sweep points",
                    est.runs,
                    si(est.requests / est.runs.max(1) as f64),
                    si(est.events),
                    si(limits.events)
                ),
            ));
        }
        Driver::Live if est.seconds > limits.live_seconds => {
            return Err(at(
                sized_by,
                format!(
                    "{} runs one after another send traffic for {}, more than {}: shorten `{sized_by}` (or `--duration`) or run fewer replications (`--replications`)",
                    est.runs,
                    seconds_text(est.seconds),
                    seconds_text(limits.live_seconds)
                ),
            ));
        }
        _ => {}
    }
    if est.windows_per_run > limits.windows_per_run {
        return Err(at(
            "sample_period",
            format!(
                "makes {} time-series windows in a run, more than {}: lengthen `sample_period`",
                si(est.windows_per_run.ceil()),
                si(limits.windows_per_run)
            ),
        ));
    }
    if est.memory_bytes > limits.memory_bytes {
        return Err(at(
            &est.memory_field,
            format!(
                "the runs need about {} of memory, more than {}",
                bytes_text(est.memory_bytes),
                bytes_text(limits.memory_bytes)
            ),
        ));
    }
    Ok(())
}

/// `12.3 M`, `450 k`, `7`.
fn si(v: f64) -> String {
    if !v.is_finite() {
        return "unbounded".into();
    }
    let a = v.abs();
    if a >= 1e15 {
        format!("{v:.2e}")
    } else if a >= 1e12 {
        format!("{:.1} T", v / 1e12)
    } else if a >= 1e9 {
        format!("{:.1} G", v / 1e9)
    } else if a >= 1e6 {
        format!("{:.1} M", v / 1e6)
    } else if a >= 1e4 {
        format!("{:.0} k", v / 1e3)
    } else {
        format!("{}", v.round())
    }
}

/// A rate as written in messages: `4000`, `1e-12`.
fn short(v: f64) -> String {
    if (1e-3..1e9).contains(&v) {
        format!("{}", (v * 1000.0).round() / 1000.0)
    } else {
        format!("{v:e}")
    }
}

/// `1.5 GiB`, `31 MiB`.
fn bytes_text(b: f64) -> String {
    const K: f64 = 1024.0;
    if !b.is_finite() {
        "unbounded".into()
    } else if b >= K * K * K * K {
        format!("{:.1} TiB", b / (K * K * K * K))
    } else if b >= K * K * K {
        format!("{:.1} GiB", b / (K * K * K))
    } else if b >= K * K {
        format!("{:.0} MiB", b / (K * K))
    } else {
        format!("{:.0} KiB", (b / K).max(1.0))
    }
}

/// `42 s`, `3.5 h`, `12 days`, `3.2e9 years`.
fn seconds_text(s: f64) -> String {
    if !s.is_finite() {
        "forever".into()
    } else if s < 120.0 {
        format!("{s:.0} s")
    } else if s < 7200.0 {
        format!("{:.0} min", s / 60.0)
    } else if s < 172_800.0 {
        format!("{:.1} h", s / 3600.0)
    } else if s < 3.156e7 * 2.0 {
        format!("{:.0} days", s / 86_400.0)
    } else {
        format!("{:.3e} years", s / 3.156e7)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<Loaded, ScenarioError> {
        crate::parse(text, "t.yaml", std::path::Path::new("."))
    }

    const BASE: &str = "name: t\nduration: 30s\nsample_period: 1s\nstrategies: { rr: { balancer: { kind: round_robin } } }\nservices: { b: { instances: 10, concurrency: 4, service_time: { dist: exponential, mean: 5ms } } }\nclients: { c: { proxies: 10, target: b, arrival: { process: poisson, rate: 3000/s } } }\n";

    fn with(from: &str, to: &str) -> String {
        assert!(BASE.contains(from), "{from}");
        BASE.replace(from, to)
    }

    #[test]
    fn estimates_count_requests_events_windows_and_memory() {
        let l = load(BASE).unwrap();
        let e = estimate(&l, Driver::Sim, 2);
        assert_eq!(e.runs, 1);
        assert!((e.requests - 90_000.0).abs() < 1e-6, "{e:?}");
        // 5 per request, a thousandth dearer for 10 endpoints, and 10 per Cluster endpoint.
        assert!(
            (e.events - (90_000.0 * 5.0 * 1.001 + 1000.0)).abs() < 1e-3,
            "{e:?}"
        );
        assert_eq!(e.windows_per_run, 30.0);
        assert!(e.memory_bytes > 0.0 && e.memory_bytes < 16.0 * 1024.0 * 1024.0);
        check_limits(&l, &e, Driver::Sim, &Limits::DEFAULT).unwrap();
    }

    #[test]
    fn soft_limits_name_the_field_and_allow_large_lifts_them() {
        let cases = [
            (
                with("sample_period: 1s", "sample_period: 1ns"),
                "sample_period",
            ),
            (with("duration: 30s", "duration: 1000000s"), "duration"),
            (with("duration: 30s", "requests: 1000000000000"), "requests"),
            (
                with("proxies: 10,", "proxies: 100000,")
                    .replace("instances: 10,", "instances: 1000000,"),
                "clients.c.proxies",
            ),
        ];
        for (text, field) in cases {
            let l = load(&text).unwrap();
            let e = estimate(&l, Driver::Sim, 2);
            let err = check_limits(&l, &e, Driver::Sim, &Limits::DEFAULT).unwrap_err();
            assert_eq!(err.field, field, "{err}");
            assert!(err.message.contains("--allow-large"), "{err}");
            assert!(err.line.is_some(), "{err}");
            check_limits(&l, &e, Driver::Sim, &Limits::NONE).unwrap();
        }
        let l = load(&with("duration: 30s", "duration: 100h")).unwrap();
        let e = estimate(&l, Driver::Live, 1);
        let err = check_limits(&l, &e, Driver::Live, &Limits::DEFAULT).unwrap_err();
        assert_eq!(err.field, "duration", "{err}");
    }

    #[test]
    fn hard_limits_refuse_runs_that_cannot_progress_or_would_overflow() {
        for (text, field) in [
            (
                with("rate: 3000/s", "rate: 1e-12/s"),
                "clients.c.arrival.rate",
            ),
            (
                with("duration: 30s", "requests: 1000").replace("rate: 3000/s", "rate: 1e-12/s"),
                "clients.c.arrival.rate",
            ),
            (
                with("duration: 30s", "requests: 18446744073709551615"),
                "requests",
            ),
        ] {
            let err = load(&text).unwrap_err();
            assert_eq!(err.field, field, "{err}");
            assert!(err.line.is_some(), "{err}");
        }
    }
}
