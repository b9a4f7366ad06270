//! # Run results, replication statistics, and the report files
//!
//! The simulator (and later the live driver) produces one [`RunResult`] per strategy x
//! replication. [`summarize`] aggregates replications into a mean and a 95% confidence interval
//! (Student t) per metric; [`write_reports`] writes `summary.csv`, `summary.json`,
//! `endpoints.csv` and `timeseries.csv`; [`comparison_table`] renders the table `meshbench run`
//! prints. Every number is written with a fixed format, so equal results give byte-identical
//! files.

use std::collections::BTreeMap;
use std::path::Path;

pub mod answer;
mod page;
mod recorder;
mod render;
mod schema;

use hdrhistogram::Histogram;
use serde::Serialize;

pub use recorder::{HOT_KEYS, Recorder, RunId, Window};
pub use render::{
    Plot, ReportData, Series, TimeRow, colour, pixels, plots, png, read_hgrm, register_font,
    render_dir, svg,
};
pub use schema::{
    MetricEntry, SCHEMA_VERSION, SchemaError, StrategyEntry, Summary, relative_change,
};

/// Failure classes of a finished request, as counted in [`RunResult::failures`].
pub const FAILURE_CLASSES: [&str; 7] = [
    "server_error",
    "gateway_error",
    "local_error",
    "attempt_timeout",
    "timeout",
    "overflow",
    "no_healthy_upstream",
];

/// What one run measured (requests that arrived after the warm-up).
#[derive(Clone, Debug, Serialize, serde::Deserialize)]
pub struct RunResult {
    /// Sweep point index (0 without a sweep).
    pub point: usize,
    /// The sweep point's values, one per sweep path (empty without a sweep).
    pub coords: Vec<String>,
    /// Strategy name.
    pub strategy: String,
    /// Replication index.
    pub replication: u32,
    /// The replication's seed.
    pub seed: u64,
    /// Latency of every measured request that succeeded, in ns (HDR, 3 significant digits).
    /// Serialized as (value, count) pairs of its non-empty buckets: lossless, so results merge
    /// exactly.
    #[serde(with = "hist_serde")]
    pub latency: Histogram<u64>,
    /// Latency of every measured request that failed (kept apart: a fast 503 would pull the
    /// success percentiles down).
    #[serde(with = "hist_serde", default = "latency_histogram")]
    pub failure_latency: Histogram<u64>,
    /// Measured requests that finished.
    pub requests: u64,
    /// Of those, successes.
    pub successes: u64,
    /// Failures by class ([`FAILURE_CLASSES`]).
    pub failures: BTreeMap<String, u64>,
    /// Attempts sent for measured requests (retries and hedges included).
    pub attempts: u64,
    /// Length of the measurement window, in seconds.
    pub measured_seconds: f64,
    /// Per-endpoint counters (all requests, warm-up included).
    pub endpoints: Vec<EndpointStats>,
    /// The time series.
    pub timeseries: Vec<Sample>,
    /// Policy events by kind.
    pub events: BTreeMap<String, u64>,
    /// Attempts per endpoint per time-series window (`[window][endpoint]`).
    pub endpoint_series: Vec<Vec<u64>>,
    /// Simulator events processed (for speed figures; 0 in live runs).
    pub sim_events: u64,
    /// Attempts of the hottest keys per endpoint (keys below [`HOT_KEYS`]), when requests
    /// carry keys.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keys: Vec<KeyShare>,
    /// Attempts per (proxy zone, endpoint zone), when the scenario has zones.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub zone_flows: Vec<ZoneFlow>,
    /// The live generator's own counts (live runs only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub live: Option<LiveCounts>,
    /// Per edge of the call graph (caller, callee), its calls, when services call services.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub edges: Vec<EdgeStats>,
    /// Where traced requests' end-to-end time went, when services call services.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub critical_path: Option<CriticalPath>,
}

/// Where the end-to-end time of traced requests went along their critical paths: a sample
/// of the successful requests (one in [`meshbench_scenario::graph::TRACE_ONE_IN`], the same
/// requests in both drivers), each followed down the call that kept its caller waiting at
/// every step (the last of a group that waits for all, the k-th of one that waits for k).
/// A service's share is its instances' own work on those paths: queueing, service time and
/// compute steps. The rest of the end-to-end time is network, sidecars, connection setup and
/// retries.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct CriticalPath {
    /// Traced requests (measured, successful).
    pub requests: u64,
    /// Their end-to-end time, summed, ns.
    pub end_to_end_ns: u64,
    /// Per service, its own work on those requests' critical paths, summed, ns.
    pub services: BTreeMap<String, u64>,
}

/// The name `critical_path.csv` gives the time no service's own work took.
pub const TRANSPORT_PART: &str = "network, sidecars, connections, retries";

impl CriticalPath {
    /// Adds another run's (or shard's) traced requests.
    pub fn add(&mut self, o: &CriticalPath) {
        self.requests += o.requests;
        self.end_to_end_ns += o.end_to_end_ns;
        for (k, v) in &o.services {
            *self.services.entry(k.clone()).or_insert(0) += v;
        }
    }

    /// The time on the paths that no service's own work took: network, sidecars, connection
    /// setup and retries, summed, ns.
    pub fn transport_ns(&self) -> u64 {
        self.end_to_end_ns
            .saturating_sub(self.services.values().sum::<u64>())
    }
}

/// The calls along one edge of the call graph: a client population's requests to the service
/// it calls, or a service's calls to an upstream, counted when they were made after the
/// warm-up.
#[derive(Clone, Debug, Serialize, serde::Deserialize)]
pub struct EdgeStats {
    /// The calling client population or service.
    pub caller: String,
    /// The service called.
    pub callee: String,
    /// Calls that finished.
    pub calls: u64,
    /// Of those, successes.
    pub successes: u64,
    /// Attempts the calls took (retries and hedges included).
    pub attempts: u64,
    /// Latency of the calls that succeeded, in ns (as [`RunResult::latency`]).
    #[serde(with = "hist_serde")]
    pub latency: Histogram<u64>,
}

impl EdgeStats {
    /// An edge with nothing counted yet.
    pub fn new(caller: String, callee: String) -> Self {
        EdgeStats {
            caller,
            callee,
            calls: 0,
            successes: 0,
            attempts: 0,
            latency: latency_histogram(),
        }
    }

    /// Adds another run's (or shard's) counts of the same edge.
    pub fn add(&mut self, o: &EdgeStats) {
        self.calls += o.calls;
        self.successes += o.successes;
        self.attempts += o.attempts;
        let _ = self.latency.add(&o.latency);
    }

    /// Adds every edge of `from` to the same edge (caller, callee) in `into`, appending the
    /// ones `into` lacks.
    pub fn add_all(into: &mut Vec<EdgeStats>, from: &[EdgeStats]) {
        for e in from {
            match into
                .iter_mut()
                .find(|x| x.caller == e.caller && x.callee == e.callee)
            {
                Some(x) => x.add(e),
                None => into.push(e.clone()),
            }
        }
    }
}

/// Attempts of one key at one endpoint.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct KeyShare {
    /// The key's index (0 is the hottest under Zipf keys).
    pub key: u32,
    /// Service name.
    pub service: String,
    /// Instance index.
    pub instance: u32,
    /// Attempts of requests with this key that the endpoint received.
    pub attempts: u64,
}

/// Attempts that went from proxies in one zone to endpoints in another (or the same) zone.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct ZoneFlow {
    /// The proxies' zone.
    pub from: String,
    /// The endpoints' zone.
    pub to: String,
    /// Attempts (warm-up included, as every per-endpoint counter).
    pub attempts: u64,
}

/// What the live generator did, besides what it measured.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct LiveCounts {
    /// Requests scheduled (open loop) or issued (closed loop).
    pub scheduled: u64,
    /// Requests whose first attempt left.
    pub sent: u64,
    /// Requests finished (any outcome).
    pub completed: u64,
    /// Scheduled but never finished (cut off by the end or an interrupt).
    pub never_completed: u64,
}

impl LiveCounts {
    /// Adds another generator's counts.
    pub fn add(&mut self, o: &LiveCounts) {
        self.scheduled += o.scheduled;
        self.sent += o.sent;
        self.completed += o.completed;
        self.never_completed += o.never_completed;
    }
}

/// One endpoint's counters in one run.
#[derive(Clone, Debug, Default, Serialize, serde::Deserialize)]
pub struct EndpointStats {
    /// Service name.
    pub service: String,
    /// Instance index.
    pub instance: u32,
    /// Attempts it received.
    pub attempts: u64,
    /// Attempts it failed: 5xx answers, refused or reset connections, and attempts a timeout
    /// cut off (per-try or the request's), as Envoy counts `upstream_rq_timeout` per host.
    pub errors: u64,
    /// Times a client ejected it.
    pub ejections: u64,
}

impl EndpointStats {
    /// Adds another run's (or proxy's) counters for the same endpoint.
    pub fn add(&mut self, other: &EndpointStats) {
        self.attempts += other.attempts;
        self.errors += other.errors;
        self.ejections += other.ejections;
    }
}

/// One time-series sample: the window ending at `t_s`.
#[derive(Clone, Debug, Default, Serialize, serde::Deserialize)]
pub struct Sample {
    /// End of the window, seconds since the start.
    pub t_s: f64,
    /// Requests finished in the window.
    pub requests: u64,
    /// Of those, failed.
    pub errors: u64,
    /// Median latency of the window's successes, ms (0 without any).
    pub p50_ms: f64,
    /// 99th percentile latency of the window's successes, ms.
    pub p99_ms: f64,
    /// 99.9th percentile latency of the window's successes, ms.
    pub p999_ms: f64,
    /// Attempts sent in the window.
    pub attempts: u64,
    /// Hosts ejected at the end of the window by at least one client proxy (each host counts
    /// once, however many proxies eject it).
    pub ejected: u64,
    /// Ejections during the window (one per proxy that ejects a host).
    pub ejections: u64,
    /// Active health-check state changes during the window.
    pub health_changes: u64,
}

mod hist_serde {
    use hdrhistogram::Histogram;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub(crate) fn serialize<S: Serializer>(h: &Histogram<u64>, s: S) -> Result<S::Ok, S::Error> {
        let pairs: Vec<(u64, u64)> = h
            .iter_recorded()
            .map(|v| (v.value_iterated_to(), v.count_at_value()))
            .collect();
        pairs.serialize(s)
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Histogram<u64>, D::Error> {
        let pairs = Vec::<(u64, u64)>::deserialize(d)?;
        let mut h = super::latency_histogram();
        for (v, n) in pairs {
            h.record_n(v, n).map_err(serde::de::Error::custom)?;
        }
        Ok(h)
    }
}

/// The `p` quantile of a histogram of nanoseconds, in milliseconds; 0 when it is empty.
pub fn quantile_ms(h: &Histogram<u64>, p: f64) -> f64 {
    if h.is_empty() {
        0.0
    } else {
        h.value_at_quantile(p) as f64 / 1e6
    }
}

/// A new latency histogram: 1 ns to 1 h, 3 significant digits.
pub fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000_000, 3).expect("valid bounds")
}

/// The metrics of a run, in report order, with their units in the names.
pub const METRICS: [&str; 12] = [
    "p50_ms",
    "p90_ms",
    "p99_ms",
    "p999_ms",
    "mean_ms",
    "throughput_rps",
    "error_rate",
    "timeout_rate",
    "retry_amplification",
    "requests",
    "failure_p50_ms",
    "failure_p99_ms",
];

impl RunResult {
    /// The value of one of [`METRICS`].
    pub fn metric(&self, name: &str) -> f64 {
        let q = |p: f64| quantile_ms(&self.latency, p);
        let n = self.requests.max(1) as f64;
        match name {
            "p50_ms" => q(0.5),
            "p90_ms" => q(0.9),
            "p99_ms" => q(0.99),
            "p999_ms" => q(0.999),
            "mean_ms" => self.latency.mean() / 1e6,
            "throughput_rps" => self.successes as f64 / self.measured_seconds.max(1e-9),
            "error_rate" => (self.requests - self.successes) as f64 / n,
            "timeout_rate" => {
                (self.failures.get("timeout").copied().unwrap_or(0)
                    + self.failures.get("attempt_timeout").copied().unwrap_or(0))
                    as f64
                    / n
            }
            "retry_amplification" => self.attempts as f64 / n,
            "requests" => self.requests as f64,
            "failure_p50_ms" => quantile_ms(&self.failure_latency, 0.5),
            "failure_p99_ms" => quantile_ms(&self.failure_latency, 0.99),
            _ => f64::NAN,
        }
    }
}

/// A metric over replications.
#[derive(Clone, Debug, Serialize)]
pub struct Metric {
    /// Mean over replications.
    pub mean: f64,
    /// Half-width of the 95% confidence interval (Student t); `None` with one replication.
    pub ci95: Option<f64>,
    /// Each replication's value.
    pub values: Vec<f64>,
}

/// One strategy's metrics over its replications.
#[derive(Clone, Debug, Serialize)]
pub struct StrategySummary {
    /// Sweep point index.
    pub point: usize,
    /// The sweep point's values.
    pub coords: Vec<String>,
    /// Strategy name.
    pub strategy: String,
    /// Replications aggregated.
    pub replications: usize,
    /// Metric name -> value, in [`METRICS`] order.
    pub metrics: Vec<(String, Metric)>,
}

impl StrategySummary {
    /// The named metric.
    pub fn get(&self, name: &str) -> Option<&Metric> {
        self.metrics.iter().find(|(n, _)| n == name).map(|(_, m)| m)
    }
}

/// Student t's 0.975 quantile for `df` degrees of freedom.
pub fn t_975(df: usize) -> f64 {
    const T: [f64; 30] = [
        12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160,
        2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056,
        2.052, 2.048, 2.045, 2.042,
    ];
    if df == 0 {
        return f64::INFINITY;
    }
    if df <= 30 {
        return T[df - 1];
    }
    // Cornish-Fisher expansion around z = 1.959964.
    let z: f64 = 1.959_963_984_540_054;
    let d = df as f64;
    z + (z.powi(3) + z) / (4.0 * d)
        + (5.0 * z.powi(5) + 16.0 * z.powi(3) + 3.0 * z) / (96.0 * d * d)
}

/// Mean and 95% CI half-width of `values`.
pub fn mean_ci(values: &[f64]) -> (f64, Option<f64>) {
    let n = values.len();
    let mean = values.iter().sum::<f64>() / n.max(1) as f64;
    if n < 2 {
        return (mean, None);
    }
    let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
    (mean, Some(t_975(n - 1) * (var / n as f64).sqrt()))
}

/// Aggregates runs by sweep point, then strategy in the order of `strategies`.
pub fn summarize(runs: &[RunResult], strategies: &[String]) -> Vec<StrategySummary> {
    let points = runs.iter().map(|r| r.point + 1).max().unwrap_or(0);
    (0..points)
        .flat_map(|p| strategies.iter().map(move |s| (p, s)))
        .map(|(p, s)| {
            let mine: Vec<&RunResult> = runs
                .iter()
                .filter(|r| r.point == p && &r.strategy == s)
                .collect();
            let coords = mine.first().map(|r| r.coords.clone()).unwrap_or_default();
            let metrics = METRICS
                .iter()
                .map(|&m| {
                    let values: Vec<f64> = mine.iter().map(|r| r.metric(m)).collect();
                    let (mean, ci95) = mean_ci(&values);
                    (m.to_owned(), Metric { mean, ci95, values })
                })
                .collect();
            StrategySummary {
                point: p,
                coords,
                strategy: s.clone(),
                replications: mine.len(),
                metrics,
            }
        })
        .collect()
}

/// A number as written in reports: fixed 6 decimals, `NaN`-free.
fn num(v: f64) -> String {
    if v.is_finite() {
        format!("{v:.6}")
    } else {
        String::new()
    }
}

/// What the report files say about the run as a whole.
#[derive(Clone, Debug, Default, PartialEq, Serialize, serde::Deserialize)]
pub struct RunInfo {
    /// Scenario name.
    pub scenario: String,
    /// The scenario's `description`: the question it asks (empty without one).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// The base seed.
    pub seed: u64,
    /// meshbench's version.
    pub meshbench_version: String,
    /// Replications per strategy.
    pub replications: u32,
    /// The sweep's field paths (empty without a sweep).
    pub sweep_paths: Vec<String>,
    /// The fault timeline, for shading plots (empty without faults).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub faults: Vec<FaultWindow>,
    /// Set when this directory holds one shard of a simulated run set (`run --shard`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<ShardInfo>,
    /// The run was interrupted: the figures cover what was measured before it stopped.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub partial: bool,
}

/// Which share of a simulated run set a result directory holds, so `merge` can check that a
/// set of shards fits together.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct ShardInfo {
    /// This shard's index, `0..count`.
    pub index: u32,
    /// The number of shards.
    pub count: u32,
    /// Runs in the whole set (sweep points x strategies x replications).
    pub runs_total: usize,
    /// The strategies in file order (the order merged results take).
    pub strategies: Vec<String>,
    /// A digest of the scenario text, so shards of different scenarios (or durations) never
    /// merge.
    pub scenario_digest: String,
}

/// One fault, or one membership change, of the timelines as reports show it.
#[derive(Clone, Debug, PartialEq, Serialize, serde::Deserialize)]
pub struct FaultWindow {
    /// `service`, `service/index` or `zone:NAME` (`FROM - TARGET` for a partition or network
    /// fault).
    pub target: String,
    /// A fault kind (`crash`, `slowdown`, `errors`, `fast_fail`, `cold_start`, `capacity`,
    /// `partition`, `network`) or a membership change (`scale to 8`, `remove`, `weight 5`,
    /// `rolling restart`).
    pub kind: String,
    /// Start, seconds since the start of the run.
    pub from_s: f64,
    /// End, seconds since the start of the run (absent: the end of the run).
    pub until_s: Option<f64>,
}

/// A file name fragment for a strategy at a sweep point: `p2c`, or `p2c.point-3`.
pub fn run_label(strategy: &str, point: usize, sweep: bool) -> String {
    let safe: String = strategy
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if sweep {
        format!("{safe}.point-{point}")
    } else {
        safe
    }
}

/// Writes the HDR percentile distribution of `h` (ns) in HdrHistogram's text format
/// (`outputPercentileDistribution`, values in ms), readable by the HdrHistogram plotter.
pub fn write_hgrm(h: &Histogram<u64>, mut w: impl std::io::Write) -> std::io::Result<()> {
    writeln!(
        w,
        "{:>12} {:>14} {:>10} {:>14}\n",
        "Value", "Percentile", "TotalCount", "1/(1-Percentile)"
    )?;
    let scale = 1e6;
    let mut total = 0u64;
    for v in h.iter_quantiles(20) {
        total += v.count_since_last_iteration();
        let q = v.quantile_iterated_to();
        let value = v.value_iterated_to() as f64 / scale;
        if q < 1.0 {
            writeln!(
                w,
                "{value:>12.3} {q:>2.12} {total:>10} {:>14.2}",
                1.0 / (1.0 - q)
            )?;
        } else {
            writeln!(w, "{value:>12.3} {q:>2.12} {total:>10}")?;
        }
    }
    writeln!(
        w,
        "#[Mean    = {:>12.3}, StdDeviation   = {:>12.3}]",
        h.mean() / scale,
        h.stdev() / scale
    )?;
    writeln!(
        w,
        "#[Max     = {:>12.3}, Total count    = {:>12}]",
        h.max() as f64 / scale,
        h.len()
    )?;
    writeln!(
        w,
        "#[Buckets = {:>12}, SubBuckets     = {:>12}]",
        h.buckets(),
        2u64 << (f64::from(2 * 10u32.pow(u32::from(h.sigfig())))
            .log2()
            .ceil() as u32
            - 1)
    )
}

/// Writes summary.csv, summary.json, endpoints.csv, timeseries.csv, endpoint_timeseries.csv
/// (replication 0) and one `.hgrm` latency distribution per strategy (and sweep point) into
/// `dir`, plus the scenario text as `scenario.yaml`.
pub fn write_reports(
    dir: &Path,
    info: &RunInfo,
    scenario_text: &str,
    summaries: &[StrategySummary],
    runs: &[RunResult],
) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join("scenario.yaml"), scenario_text)?;
    let sweep = !info.sweep_paths.is_empty();
    let with_coords = |mut row: Vec<String>, coords: &[String]| {
        let mut out: Vec<String> = coords.to_vec();
        out.append(&mut row);
        out
    };
    let header = |cols: &[&str]| {
        let mut h: Vec<String> = info.sweep_paths.clone();
        h.extend(cols.iter().map(|c| (*c).to_owned()));
        h
    };
    // summary.csv
    let mut w = csv::Writer::from_path(dir.join("summary.csv"))?;
    let mut cols = vec!["strategy".to_owned(), "replications".to_owned()];
    for m in METRICS {
        cols.push(m.to_owned());
        cols.push(format!("{m}_ci95"));
    }
    // Whether the run was interrupted (the figures cover what was measured before).
    cols.push("partial".to_owned());
    let cols_ref: Vec<&str> = cols.iter().map(String::as_str).collect();
    w.write_record(header(&cols_ref))?;
    for s in summaries {
        let mut row = vec![s.strategy.clone(), s.replications.to_string()];
        for (_, m) in &s.metrics {
            row.push(num(m.mean));
            row.push(m.ci95.map(num).unwrap_or_default());
        }
        row.push(info.partial.to_string());
        w.write_record(with_coords(row, &s.coords))?;
    }
    w.flush()?;
    // summary.json
    Summary::new(info, summaries, runs).write(dir)?;
    // endpoints.csv
    let mut w = csv::Writer::from_path(dir.join("endpoints.csv"))?;
    w.write_record(header(&[
        "strategy",
        "replication",
        "service",
        "instance",
        "attempts",
        "load_share",
        "errors",
        "ejections",
    ]))?;
    for r in runs {
        let total: u64 = r.endpoints.iter().map(|e| e.attempts).sum();
        for e in &r.endpoints {
            w.write_record(with_coords(
                vec![
                    r.strategy.clone(),
                    r.replication.to_string(),
                    e.service.clone(),
                    e.instance.to_string(),
                    e.attempts.to_string(),
                    num(e.attempts as f64 / total.max(1) as f64),
                    e.errors.to_string(),
                    e.ejections.to_string(),
                ],
                &r.coords,
            ))?;
        }
    }
    w.flush()?;
    // timeseries.csv
    let mut w = csv::Writer::from_path(dir.join("timeseries.csv"))?;
    w.write_record(header(&[
        "strategy",
        "replication",
        "t_s",
        "requests",
        "errors",
        "p50_ms",
        "p99_ms",
        "p999_ms",
        "attempts",
        "ejected",
        "ejections",
        "health_changes",
    ]))?;
    for r in runs {
        for s in &r.timeseries {
            w.write_record(with_coords(
                vec![
                    r.strategy.clone(),
                    r.replication.to_string(),
                    num(s.t_s),
                    s.requests.to_string(),
                    s.errors.to_string(),
                    num(s.p50_ms),
                    num(s.p99_ms),
                    num(s.p999_ms),
                    s.attempts.to_string(),
                    s.ejected.to_string(),
                    s.ejections.to_string(),
                    s.health_changes.to_string(),
                ],
                &r.coords,
            ))?;
        }
    }
    w.flush()?;
    // endpoint_timeseries.csv: replication 0 only, to keep reports small.
    let mut w = csv::Writer::from_path(dir.join("endpoint_timeseries.csv"))?;
    w.write_record(header(&["strategy", "t_s", "endpoint", "attempts"]))?;
    for r in runs.iter().filter(|r| r.replication == 0) {
        for (k, window) in r.endpoint_series.iter().enumerate() {
            let t = r.timeseries.get(k).map_or(0.0, |s| s.t_s);
            for (e, a) in window.iter().enumerate() {
                w.write_record(with_coords(
                    vec![r.strategy.clone(), num(t), e.to_string(), a.to_string()],
                    &r.coords,
                ))?;
            }
        }
    }
    w.flush()?;
    // keys.csv: the hottest keys' attempts per endpoint, when requests carry keys.
    if runs.iter().any(|r| !r.keys.is_empty()) {
        let mut w = csv::Writer::from_path(dir.join("keys.csv"))?;
        w.write_record(header(&[
            "strategy",
            "replication",
            "key",
            "service",
            "instance",
            "attempts",
            "share_of_key",
        ]))?;
        for r in runs {
            let mut totals: BTreeMap<u32, u64> = BTreeMap::new();
            for k in &r.keys {
                *totals.entry(k.key).or_insert(0) += k.attempts;
            }
            for k in &r.keys {
                w.write_record(with_coords(
                    vec![
                        r.strategy.clone(),
                        r.replication.to_string(),
                        k.key.to_string(),
                        k.service.clone(),
                        k.instance.to_string(),
                        k.attempts.to_string(),
                        num(k.attempts as f64 / totals[&k.key].max(1) as f64),
                    ],
                    &r.coords,
                ))?;
            }
        }
        w.flush()?;
    }
    // zones.csv: attempts per (proxy zone, endpoint zone), when the scenario has zones.
    if runs.iter().any(|r| !r.zone_flows.is_empty()) {
        let mut w = csv::Writer::from_path(dir.join("zones.csv"))?;
        w.write_record(header(&[
            "strategy",
            "replication",
            "from_zone",
            "to_zone",
            "attempts",
            "share_of_from_zone",
        ]))?;
        for r in runs {
            let mut totals: BTreeMap<&str, u64> = BTreeMap::new();
            for f in &r.zone_flows {
                *totals.entry(&f.from).or_insert(0) += f.attempts;
            }
            for f in &r.zone_flows {
                w.write_record(with_coords(
                    vec![
                        r.strategy.clone(),
                        r.replication.to_string(),
                        f.from.clone(),
                        f.to.clone(),
                        f.attempts.to_string(),
                        num(f.attempts as f64 / totals[f.from.as_str()].max(1) as f64),
                    ],
                    &r.coords,
                ))?;
            }
        }
        w.flush()?;
    }
    // edges.csv: calls per edge of the call graph, over all replications, when services call
    // services.
    if runs.iter().any(|r| !r.edges.is_empty()) {
        let mut w = csv::Writer::from_path(dir.join("edges.csv"))?;
        w.write_record(header(&[
            "strategy",
            "caller",
            "callee",
            "calls",
            "errors",
            "error_rate",
            "attempts_per_call",
            "p50_ms",
            "p99_ms",
        ]))?;
        for s in summaries {
            let mut merged: Vec<EdgeStats> = Vec::new();
            for r in runs
                .iter()
                .filter(|r| r.strategy == s.strategy && r.point == s.point)
            {
                EdgeStats::add_all(&mut merged, &r.edges);
            }
            for e in &merged {
                w.write_record(with_coords(
                    vec![
                        s.strategy.clone(),
                        e.caller.clone(),
                        e.callee.clone(),
                        e.calls.to_string(),
                        (e.calls - e.successes).to_string(),
                        num((e.calls - e.successes) as f64 / e.calls.max(1) as f64),
                        num(e.attempts as f64 / e.calls.max(1) as f64),
                        num(quantile_ms(&e.latency, 0.5)),
                        num(quantile_ms(&e.latency, 0.99)),
                    ],
                    &s.coords,
                ))?;
            }
        }
        w.flush()?;
    }
    // critical_path.csv: where traced requests' end-to-end time went, per strategy (and
    // point), over all replications: each service's own work on the critical path, then the
    // rest.
    if runs.iter().any(|r| r.critical_path.is_some()) {
        let mut w = csv::Writer::from_path(dir.join("critical_path.csv"))?;
        w.write_record(header(&[
            "strategy", "part", "requests", "mean_ms", "share",
        ]))?;
        for s in summaries {
            let mut merged = CriticalPath::default();
            for r in runs
                .iter()
                .filter(|r| r.strategy == s.strategy && r.point == s.point)
            {
                if let Some(c) = &r.critical_path {
                    merged.add(c);
                }
            }
            if merged.requests == 0 {
                continue;
            }
            // The biggest share first; the time between services last.
            let mut services: Vec<(String, u64)> = merged
                .services
                .iter()
                .map(|(k, v)| (k.clone(), *v))
                .collect();
            services.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
            let parts = services
                .into_iter()
                .chain([(TRANSPORT_PART.to_owned(), merged.transport_ns())]);
            for (part, ns) in parts {
                w.write_record(with_coords(
                    vec![
                        s.strategy.clone(),
                        part,
                        merged.requests.to_string(),
                        num(ns as f64 / merged.requests as f64 / 1e6),
                        num(ns as f64 / merged.end_to_end_ns.max(1) as f64),
                    ],
                    &s.coords,
                ))?;
            }
        }
        w.flush()?;
    }
    // One merged latency distribution per strategy (and point).
    for s in summaries {
        let mut h = latency_histogram();
        for r in runs
            .iter()
            .filter(|r| r.strategy == s.strategy && r.point == s.point)
        {
            h.add(&r.latency).map_err(std::io::Error::other)?;
        }
        let f = std::fs::File::create(dir.join(format!(
            "latency.{}.hgrm",
            run_label(&s.strategy, s.point, sweep)
        )))?;
        write_hgrm(&h, std::io::BufWriter::new(f))?;
    }
    Ok(())
}

/// The comparison table: strategies x latency percentiles (mean +- CI), throughput, error rate
/// and retry amplification.
pub fn comparison_table(summaries: &[StrategySummary]) -> String {
    let cols = [
        ("p50_ms", "p50 ms"),
        ("p90_ms", "p90 ms"),
        ("p99_ms", "p99 ms"),
        ("p999_ms", "p99.9 ms"),
        ("mean_ms", "mean ms"),
        ("throughput_rps", "ok/s"),
        ("error_rate", "errors %"),
        ("retry_amplification", "attempts/req"),
    ];
    let cell = |m: &Metric, name: &str| {
        let scale = if name == "error_rate" { 100.0 } else { 1.0 };
        let digits = match name {
            "throughput_rps" => 0,
            "retry_amplification" => 3,
            _ => 2,
        };
        match m.ci95 {
            // `!`: the interval is wider than the mean itself, too wide to rank on.
            Some(ci) if ci > m.mean.abs() && m.mean != 0.0 => {
                format!("{:.*} ±{:.*}!", digits, m.mean * scale, digits, ci * scale)
            }
            Some(ci) => format!("{:.*} ±{:.*}", digits, m.mean * scale, digits, ci * scale),
            None => format!("{:.*}", digits, m.mean * scale),
        }
    };
    let mut rows: Vec<Vec<String>> = vec![
        std::iter::once("strategy".to_owned())
            .chain(cols.iter().map(|c| c.1.to_owned()))
            .collect(),
    ];
    for s in summaries {
        let label = if s.coords.is_empty() {
            s.strategy.clone()
        } else {
            format!("{} @ {}", s.strategy, s.coords.join(", "))
        };
        let mut row = vec![label];
        for (name, _) in cols {
            row.push(s.get(name).map(|m| cell(m, name)).unwrap_or_default());
        }
        rows.push(row);
    }
    let widths: Vec<usize> = (0..rows[0].len())
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for (k, r) in rows.iter().enumerate() {
        for (i, c) in r.iter().enumerate() {
            let pad = widths[i] - c.chars().count();
            if i == 0 {
                out.push_str(c);
                out.push_str(&" ".repeat(pad));
            } else {
                out.push_str("  ");
                out.push_str(&" ".repeat(pad));
                out.push_str(c);
            }
        }
        out.push('\n');
        if k == 0 {
            out.push_str(&"-".repeat(widths.iter().sum::<usize>() + 2 * (widths.len() - 1)));
            out.push('\n');
        }
    }
    out.push_str(&table_legend(summaries, &out));
    if summaries
        .iter()
        .any(|s| s.get("error_rate").is_some_and(|m| m.mean > 0.0))
    {
        out.push_str("latency columns are of successful requests; failures are in errors % (their latency: summary.csv failure_p50_ms, failure_p99_ms)\n");
    }
    out
}

/// What the table's `±` and `!` mean, for the rows shown.
fn table_legend(summaries: &[StrategySummary], table: &str) -> String {
    let mut reps: Vec<usize> = summaries.iter().map(|s| s.replications).collect();
    reps.sort_unstable();
    reps.dedup();
    let over = match reps.as_slice() {
        [] => return String::new(),
        [1] => {
            return "one replication per row: no confidence interval (set `replications`)\n".into();
        }
        [n] => format!("{n} replications"),
        _ => "each row's replications".into(),
    };
    let mut legend =
        format!("± is the 95% confidence interval of the mean over {over} (Student's t)");
    if table.contains('!') {
        legend.push_str("; ! marks an interval wider than its mean: too wide to rank on, run more replications or longer");
    }
    legend + "\n"
}

/// Compares two result directories: for each (sweep point, strategy) present in both, the
/// relative change of every latency metric and throughput from A to B. Writes `compare.csv`,
/// `compare.svg` and `compare.png` into `out`; returns the printed table.
pub fn compare(
    a: &Path,
    b: &Path,
    out: &Path,
) -> Result<String, Box<dyn std::error::Error + Send + Sync>> {
    let (ja, jb) = (Summary::read(a)?, Summary::read(b)?);
    let metrics = [
        "p50_ms",
        "p99_ms",
        "p999_ms",
        "mean_ms",
        "throughput_rps",
        "error_rate",
    ];
    let mut rows: Vec<(String, Vec<(f64, f64)>)> = Vec::new();
    let mut tests: Vec<Vec<Option<bool>>> = Vec::new();
    for sa in &ja.strategies {
        let Some(sb) = jb
            .strategies
            .iter()
            .find(|s| s.strategy == sa.strategy && s.coords == sa.coords)
        else {
            continue;
        };
        let coords = sa.coords.join(", ");
        let label = if coords.is_empty() {
            sa.strategy.clone()
        } else {
            format!("{} @ {coords}", sa.strategy)
        };
        let vals = metrics.iter().map(|m| (sa.mean(m), sb.mean(m))).collect();
        tests.push(
            metrics
                .iter()
                .map(|m| match (sa.metrics.get(*m), sb.metrics.get(*m)) {
                    (Some(x), Some(y)) => x.differs_from(y),
                    _ => None,
                })
                .collect(),
        );
        rows.push((label, vals));
    }
    if rows.is_empty() {
        return Err(format!(
            "no strategy in common between {} and {}",
            a.display(),
            b.display()
        )
        .into());
    }
    std::fs::create_dir_all(out)?;
    let mut w = csv::Writer::from_path(out.join("compare.csv"))?;
    let mut header = vec!["strategy".to_owned()];
    for m in metrics {
        header.extend([
            format!("{m}_a"),
            format!("{m}_b"),
            format!("{m}_change"),
            format!("{m}_significant"),
        ]);
    }
    w.write_record(&header)?;
    let change_text = |c: f64| {
        if c.is_infinite() {
            "from 0".to_owned()
        } else {
            format!("{:+.2}%", 100.0 * c)
        }
    };
    let sig_text = |t: Option<bool>| match t {
        Some(true) => "yes",
        Some(false) => "no",
        None => "n/a (1 replication)",
    };
    let width = rows.iter().map(|r| r.0.len()).max().unwrap_or(8).max(8);
    let mut table = format!(
        "B ({}) relative to A ({}); significant: Welch's t-test at 5% over the replications\n\n{:<width$}  {:<20} {:>14} {:>14} {:>10}  significant\n",
        b.display(),
        a.display(),
        "strategy",
        "metric",
        "A",
        "B",
        "change"
    );
    for ((label, vals), sig) in rows.iter().zip(&tests) {
        let mut rec = vec![label.clone()];
        for (m, (&(x, y), &t)) in metrics.iter().zip(vals.iter().zip(sig)) {
            let c = relative_change(x, y);
            rec.extend([
                num(x),
                num(y),
                if c.is_finite() { num(c) } else { String::new() },
                t.map_or(String::new(), |t| t.to_string()),
            ]);
            table.push_str(&format!(
                "{label:<width$}  {m:<20} {x:>14.4} {y:>14.4} {:>10}  {}\n",
                change_text(c),
                sig_text(t)
            ));
        }
        w.write_record(&rec)?;
    }
    w.flush()?;
    render::compare_plot(&rows, &metrics, out)?;
    Ok(table)
}

/// Writes every run's raw counters, time series and lossless histogram to `runs.json`, so
/// `meshbench merge` can combine result directories exactly (live runs write it; simulated runs
/// are reproducible from their seed instead).
pub fn write_runs(dir: &Path, runs: &[RunResult]) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let f = std::io::BufWriter::new(std::fs::File::create(dir.join("runs.json"))?);
    serde_json::to_writer(f, runs)?;
    Ok(())
}

/// The largest count meshbench writes (10^15, its limit on a run's requests); a count past it
/// in a result file is corruption.
pub const MAX_COUNT: u64 = 1_000_000_000_000_000;

impl RunResult {
    /// Checks that every count and time is one meshbench can have written: counts at most
    /// [`MAX_COUNT`] (the latency histogram's too), seconds finite, >= 0 and at most 100 years.
    /// A merge adds counts from many files, so a corrupted one must not reach the sums.
    pub fn check(&self) -> Result<(), String> {
        let count = |what: &str, v: u64| {
            if v > MAX_COUNT {
                Err(format!(
                    "`{what}` is {v}, more than meshbench writes (at most 10^15)"
                ))
            } else {
                Ok(())
            }
        };
        let secs = |what: &str, v: f64| {
            if v.is_finite() && (0.0..=3.2e9).contains(&v) {
                Ok(())
            } else {
                Err(format!(
                    "`{what}` is {v:e}, not a time meshbench writes (0 to 100 years, in seconds)"
                ))
            }
        };
        count("requests", self.requests)?;
        count("successes", self.successes)?;
        count("attempts", self.attempts)?;
        count("sim_events", self.sim_events)?;
        count("latency (total count)", self.latency.len())?;
        count("failure_latency (total count)", self.failure_latency.len())?;
        secs("measured_seconds", self.measured_seconds)?;
        for (k, v) in self.failures.iter().chain(&self.events) {
            count(k, *v)?;
        }
        for e in &self.endpoints {
            count("endpoints.attempts", e.attempts)?;
            count("endpoints.errors", e.errors)?;
            count("endpoints.ejections", e.ejections)?;
        }
        for t in &self.timeseries {
            secs("timeseries.t_s", t.t_s)?;
            for (k, v) in [
                ("requests", t.requests),
                ("errors", t.errors),
                ("attempts", t.attempts),
                ("ejected", t.ejected),
                ("ejections", t.ejections),
                ("health_changes", t.health_changes),
            ] {
                count(&format!("timeseries.{k}"), v)?;
            }
            for (k, v) in [
                ("p50_ms", t.p50_ms),
                ("p99_ms", t.p99_ms),
                ("p999_ms", t.p999_ms),
            ] {
                if !(v.is_finite() && (0.0..=3.2e12).contains(&v)) {
                    return Err(format!(
                        "`timeseries.{k}` is {v:e}, not a latency meshbench writes (0 to 100 years, in ms)"
                    ));
                }
            }
        }
        for v in self.endpoint_series.iter().flatten() {
            count("endpoint_series", *v)?;
        }
        for k in &self.keys {
            count("keys.attempts", k.attempts)?;
        }
        for z in &self.zone_flows {
            count("zone_flows.attempts", z.attempts)?;
        }
        for e in &self.edges {
            count("edges.calls", e.calls)?;
            count("edges.successes", e.successes)?;
            count("edges.attempts", e.attempts)?;
            count("edges.latency (total count)", e.latency.len())?;
        }
        Ok(())
    }
}

/// Everything a result directory holds that a merge needs.
pub struct ResultDir {
    /// The run set's description.
    pub info: RunInfo,
    /// Every run.
    pub runs: Vec<RunResult>,
    /// The scenario text.
    pub scenario: String,
}

/// Reads a result directory (summary.json, runs.json, scenario.yaml).
pub fn read_result_dir(dir: &Path) -> Result<ResultDir, String> {
    let read =
        |f: &str| std::fs::read(dir.join(f)).map_err(|e| format!("{}: {e}", dir.join(f).display()));
    let info = Summary::read(dir).map_err(|e| e.to_string())?.info;
    let runs: Vec<RunResult> = serde_json::from_slice(&read("runs.json")?)
        .map_err(|e| format!("{}: {e}", dir.join("runs.json").display()))?;
    for (i, r) in runs.iter().enumerate() {
        r.check().map_err(|e| {
            format!(
                "{}: run {i} (strategy `{}`, replication {}): {e}",
                dir.join("runs.json").display(),
                r.strategy,
                r.replication
            )
        })?;
    }
    let scenario = String::from_utf8_lossy(&read("scenario.yaml")?).into_owned();
    Ok(ResultDir {
        info,
        runs,
        scenario,
    })
}

/// Merges runs of the same (sweep point, strategy, replication) measured by several generators
/// (`--shard i/n`) into one: counts and histograms add exactly; the measurement window is the
/// longest; time series add window by window (their percentiles take the worst shard's).
pub fn merge_runs(sets: &[Vec<RunResult>]) -> Vec<RunResult> {
    let mut out: Vec<RunResult> = Vec::new();
    for runs in sets {
        for r in runs {
            let Some(m) = out.iter_mut().find(|m| {
                m.point == r.point && m.strategy == r.strategy && m.replication == r.replication
            }) else {
                out.push(r.clone());
                continue;
            };
            let _ = m.latency.add(&r.latency);
            let _ = m.failure_latency.add(&r.failure_latency);
            m.requests += r.requests;
            m.successes += r.successes;
            m.attempts += r.attempts;
            m.sim_events += r.sim_events;
            for k in &r.keys {
                match m
                    .keys
                    .iter_mut()
                    .find(|x| x.key == k.key && x.service == k.service && x.instance == k.instance)
                {
                    Some(x) => x.attempts += k.attempts,
                    None => m.keys.push(k.clone()),
                }
            }
            m.keys.sort_by(|a, b| {
                (a.key, &a.service, a.instance).cmp(&(b.key, &b.service, b.instance))
            });
            for f in &r.zone_flows {
                match m
                    .zone_flows
                    .iter_mut()
                    .find(|x| x.from == f.from && x.to == f.to)
                {
                    Some(x) => x.attempts += f.attempts,
                    None => m.zone_flows.push(f.clone()),
                }
            }
            EdgeStats::add_all(&mut m.edges, &r.edges);
            match (&mut m.critical_path, &r.critical_path) {
                (Some(a), Some(b)) => a.add(b),
                (None, Some(b)) => m.critical_path = Some(b.clone()),
                _ => {}
            }
            match (&mut m.live, &r.live) {
                (Some(a), Some(b)) => a.add(b),
                (None, Some(b)) => m.live = Some(b.clone()),
                _ => {}
            }
            m.measured_seconds = m.measured_seconds.max(r.measured_seconds);
            for (k, v) in &r.failures {
                *m.failures.entry(k.clone()).or_insert(0) += v;
            }
            for (k, v) in &r.events {
                *m.events.entry(k.clone()).or_insert(0) += v;
            }
            for e in &r.endpoints {
                match m
                    .endpoints
                    .iter_mut()
                    .find(|x| x.service == e.service && x.instance == e.instance)
                {
                    Some(x) => x.add(e),
                    None => m.endpoints.push(e.clone()),
                }
            }
            for (i, s) in r.timeseries.iter().enumerate() {
                match m.timeseries.get_mut(i) {
                    Some(x) => {
                        x.requests += s.requests;
                        x.errors += s.errors;
                        x.attempts += s.attempts;
                        x.ejected += s.ejected;
                        x.ejections += s.ejections;
                        x.health_changes += s.health_changes;
                        x.p50_ms = x.p50_ms.max(s.p50_ms);
                        x.p99_ms = x.p99_ms.max(s.p99_ms);
                        x.p999_ms = x.p999_ms.max(s.p999_ms);
                    }
                    None => m.timeseries.push(s.clone()),
                }
            }
            for (i, w) in r.endpoint_series.iter().enumerate() {
                match m.endpoint_series.get_mut(i) {
                    Some(x) => {
                        if x.len() < w.len() {
                            x.resize(w.len(), 0);
                        }
                        for (a, b) in x.iter_mut().zip(w) {
                            *a += b;
                        }
                    }
                    None => m.endpoint_series.push(w.clone()),
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn t_quantiles_and_intervals() {
        assert_eq!(t_975(1), 12.706);
        assert!((t_975(60) - 2.000).abs() < 0.002);
        assert!((t_975(1000) - 1.962).abs() < 0.001);
        let (m, ci) = mean_ci(&[1.0, 2.0, 3.0]);
        assert_eq!(m, 2.0);
        assert!((ci.unwrap() - 4.303 / 3f64.sqrt()).abs() < 1e-9);
        assert_eq!(mean_ci(&[5.0]), (5.0, None));
    }

    #[test]
    fn the_table_says_what_its_intervals_are_and_flags_wide_ones() {
        let row = |name: &str, p99: (f64, f64)| StrategySummary {
            point: 0,
            coords: Vec::new(),
            strategy: name.into(),
            replications: 3,
            metrics: vec![(
                "p99_ms".into(),
                Metric {
                    mean: p99.0,
                    ci95: Some(p99.1),
                    values: vec![],
                },
            )],
        };
        let t = comparison_table(&[row("tight", (10.0, 0.5)), row("loose", (10.0, 12.0))]);
        assert!(
            t.contains("10.00 ±0.50 ") || t.contains("10.00 ±0.50\n"),
            "{t}"
        );
        assert!(t.contains("10.00 ±12.00!"), "{t}");
        assert!(
            t.contains("95% confidence interval of the mean over 3 replications"),
            "{t}"
        );
        assert!(t.contains("! marks an interval wider than its mean"), "{t}");
        let t = comparison_table(&[row("tight", (10.0, 0.5))]);
        assert!(!t.contains("! marks"), "{t}");
    }
}
