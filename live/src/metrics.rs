//! Prometheus metrics of live runs, served while they run (`meshbench live --metrics-addr`).
//!
//! Every proxy task counts into its own [`ProxyMetrics`] (one writer per counter, so an update
//! is a plain load and store, never a contended atomic); a scrape sums the proxies. The
//! exposition is the Prometheus text format 0.0.4, or OpenMetrics 1.0.0 when the scraper's
//! `Accept` header asks for `application/openmetrics-text` (as Prometheus does). Names follow
//! Prometheus' rules: a `meshbench_` prefix, base units in the name (`_seconds`), `_total` on
//! counters, and label sets bounded by the scenario (strategies, instances, result classes),
//! never by requests.
//!
//! Latency is a histogram whose bucket bounds are powers of 2^(1/4) seconds, as a Prometheus
//! native histogram of schema 2 spaces them (each bucket 19% wider than the last), from 7.6 us
//! to 64 s: fine enough for a sub-millisecond mesh, read with `histogram_quantile`.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant as StdInstant;

use mesh_core::Finish;

/// Buckets per doubling (native-histogram schema 2).
const PER_OCTAVE: i32 = 4;
/// The first bucket's bound is 2^(LOW / PER_OCTAVE) seconds (2^-17 s, 7.6 us).
const LOW: i32 = -17 * PER_OCTAVE;
/// The last finite bound is 2^(HIGH / PER_OCTAVE) seconds (64 s).
const HIGH: i32 = 6 * PER_OCTAVE;
/// Finite buckets, plus one for `+Inf`.
const BUCKETS: usize = (HIGH - LOW + 1) as usize + 1;

/// The result classes a request can end in, in exposition order: `success`, then the report's
/// failure classes (`Finish::class`).
const CLASSES: usize = 1 + meshbench_report::FAILURE_CLASSES.len();

fn class_name(i: usize) -> &'static str {
    match i {
        0 => "success",
        i => meshbench_report::FAILURE_CLASSES[i - 1],
    }
}

fn class_index(f: Finish) -> usize {
    let c = f.class();
    meshbench_report::FAILURE_CLASSES
        .iter()
        .position(|&x| x == c)
        .map_or(0, |i| i + 1)
}

/// A counter with one writer: the update is a load and a store, not a locked read-modify-write.
#[derive(Debug, Default)]
struct Cell(AtomicU64);

impl Cell {
    #[inline]
    fn add(&self, n: u64) {
        self.0.store(
            self.0.load(Ordering::Relaxed).wrapping_add(n),
            Ordering::Relaxed,
        );
    }
    #[inline]
    fn sub(&self, n: u64) {
        self.0.store(
            self.0.load(Ordering::Relaxed).saturating_sub(n),
            Ordering::Relaxed,
        );
    }
    #[inline]
    fn set(&self, v: u64) {
        self.0.store(v, Ordering::Relaxed);
    }
    #[inline]
    fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// One endpoint as one proxy sees it.
#[derive(Debug, Default)]
pub struct EndpointCells {
    in_flight: Cell,
    attempts: Cell,
    errors: Cell,
    ejections: Cell,
    ejected: Cell,
    unhealthy: Cell,
}

impl EndpointCells {
    /// An attempt left for it.
    #[inline]
    pub fn sent(&self) {
        self.attempts.add(1);
        self.in_flight.add(1);
    }
    /// An attempt of it ended (answered, failed or cancelled).
    #[inline]
    pub fn ended(&self) {
        self.in_flight.sub(1);
    }
    /// It failed an attempt (5xx, refused, reset, timed out).
    #[inline]
    pub fn error(&self) {
        self.errors.add(1);
    }
    /// Outlier detection ejected it (`true`) or let it back (`false`).
    pub fn ejected(&self, now: bool) {
        if now {
            self.ejections.add(1);
        }
        self.ejected.set(u64::from(now));
    }
    /// Active health checking found it failing (`true`) or passing.
    pub fn unhealthy(&self, now: bool) {
        self.unhealthy.set(u64::from(now));
    }
}

/// A latency histogram with one writer.
#[derive(Debug)]
struct Hist {
    buckets: Vec<Cell>,
    sum_ns: Cell,
}

impl Default for Hist {
    fn default() -> Self {
        Hist {
            buckets: (0..BUCKETS).map(|_| Cell::default()).collect(),
            sum_ns: Cell::default(),
        }
    }
}

/// The bucket of a latency: the first bound at or above it.
fn bucket(ns: u64) -> usize {
    let s = ns.max(1) as f64 / 1e9;
    let k = (s.log2() * f64::from(PER_OCTAVE)).ceil() as i32;
    (k.clamp(LOW, HIGH + 1) - LOW) as usize
}

/// Bucket `i`'s upper bound in seconds.
fn bound(i: usize) -> f64 {
    (f64::from(LOW + i as i32) / f64::from(PER_OCTAVE)).exp2()
}

impl Hist {
    #[inline]
    fn record(&self, ns: u64) {
        self.buckets[bucket(ns)].add(1);
        self.sum_ns.add(ns);
    }
}

/// One proxy's counters (written by its task only).
#[derive(Debug, Default)]
pub struct ProxyMetrics {
    requests: [Cell; CLASSES],
    attempts: Cell,
    later_attempts: Cell,
    hedges: Cell,
    ok_latency: Hist,
    failed_latency: Hist,
    /// By station (the run's endpoint index); grows when discovery adds endpoints.
    endpoints: RwLock<Vec<Arc<EndpointCells>>>,
}

impl ProxyMetrics {
    /// An attempt left; `retry` is its number (0: the request's first).
    #[inline]
    pub fn attempt(&self, retry: u32) {
        self.attempts.add(1);
        if retry > 0 {
            self.later_attempts.add(1);
        }
    }
    /// A hedge left (one of the later attempts).
    pub fn hedge(&self) {
        self.hedges.add(1);
    }
    /// A request finished after `latency_ns`.
    #[inline]
    pub fn finished(&self, result: Finish, latency_ns: u64) {
        self.requests[class_index(result)].add(1);
        if result.is_success() {
            self.ok_latency.record(latency_ns);
        } else {
            self.failed_latency.record(latency_ns);
        }
    }
    /// The cells of station `i`, created on first use.
    pub fn endpoint(&self, i: usize) -> Arc<EndpointCells> {
        if let Some(c) = self
            .endpoints
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(i)
        {
            return c.clone();
        }
        let mut w = self
            .endpoints
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        while w.len() <= i {
            w.push(Arc::default());
        }
        w[i].clone()
    }
}

/// The pacer's counters (one writer: the pacer thread).
#[derive(Debug, Default)]
pub struct PacerMetrics {
    released: Cell,
    unsent: Cell,
    lag_ns: Cell,
    max_lag_ns: Cell,
}

impl PacerMetrics {
    /// A request was released `late_ns` after its intended time.
    #[inline]
    pub fn released(&self, late_ns: u64) {
        self.released.add(1);
        self.lag_ns.set(late_ns);
        if late_ns > self.max_lag_ns.get() {
            self.max_lag_ns.set(late_ns);
        }
    }
    /// Arrivals that were never released (the generator fell behind past the period's end).
    pub fn unsent(&self, n: u64) {
        self.unsent.add(n);
    }
}

/// One endpoint's labels.
#[derive(Clone, Debug)]
pub struct EndpointLabels {
    /// Its service.
    pub service: String,
    /// Its instance index (or discovery order).
    pub instance: u32,
    /// Its address.
    pub address: String,
}

/// One live run's metrics.
#[derive(Debug)]
pub struct RunMetrics {
    labels: String,
    start: StdInstant,
    duration_s: f64,
    target_rps: f64,
    endpoints: RwLock<Vec<EndpointLabels>>,
    proxies: Vec<Arc<ProxyMetrics>>,
    /// The pacer's (open loop).
    pub pacer: PacerMetrics,
}

impl RunMetrics {
    /// A run of `strategy` (replication `replication`, point `point`) with `proxies` proxies
    /// over `endpoints`, planned for `duration_s` at `target_rps` (0: closed loop).
    pub fn new(
        scenario: &str,
        strategy: &str,
        (point, replication): (usize, u32),
        proxies: usize,
        endpoints: Vec<EndpointLabels>,
        (duration_s, target_rps): (f64, f64),
    ) -> Self {
        RunMetrics {
            labels: format!(
                "scenario=\"{}\",strategy=\"{}\",point=\"{point}\",replication=\"{replication}\"",
                escape(scenario),
                escape(strategy)
            ),
            start: StdInstant::now(),
            duration_s,
            target_rps,
            endpoints: RwLock::new(endpoints),
            proxies: (0..proxies).map(|_| Arc::default()).collect(),
            pacer: PacerMetrics::default(),
        }
    }

    /// Proxy `i`'s counters.
    pub fn proxy(&self, i: usize) -> Arc<ProxyMetrics> {
        self.proxies[i].clone()
    }

    /// Names endpoint `i` (a discovered one).
    pub fn name_endpoint(&self, i: usize, labels: EndpointLabels) {
        let mut w = self
            .endpoints
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        while w.len() <= i {
            let n = w.len() as u32;
            w.push(EndpointLabels {
                service: labels.service.clone(),
                instance: n,
                address: String::new(),
            });
        }
        w[i] = labels;
    }

    /// The exposition, in OpenMetrics 1.0.0 when `open_metrics`, else text format 0.0.4.
    pub fn render(&self, open_metrics: bool) -> String {
        let mut o = Exposition::new(open_metrics);
        let l = &self.labels;
        let sum = |f: &dyn Fn(&ProxyMetrics) -> u64| self.proxies.iter().map(|p| f(p)).sum::<u64>();
        o.family("meshbench_run", "info", "The live run being measured.", "");
        o.sample("meshbench_run_info", l, 1.0);
        let elapsed = self.start.elapsed().as_secs_f64();
        o.family(
            "meshbench_run_elapsed_seconds",
            "gauge",
            "Seconds since the run started.",
            "seconds",
        );
        o.sample("meshbench_run_elapsed_seconds", l, elapsed);
        o.family(
            "meshbench_run_duration_seconds",
            "gauge",
            "The planned arrival period, in seconds.",
            "seconds",
        );
        o.sample("meshbench_run_duration_seconds", l, self.duration_s);
        o.family(
            "meshbench_target_requests_per_second",
            "gauge",
            "The open-loop arrival rate the schedule asks for, in requests per second (0: closed loop).",
            "",
        );
        o.sample("meshbench_target_requests_per_second", l, self.target_rps);
        let released = self.pacer.released.get();
        let finished: u64 = sum(&|p| p.requests.iter().map(Cell::get).sum());
        o.family(
            "meshbench_achieved_requests_per_second",
            "gauge",
            "Requests released per second of the run so far (closed loop: finished per second).",
            "",
        );
        let achieved = if self.target_rps > 0.0 {
            released
        } else {
            finished
        };
        o.sample(
            "meshbench_achieved_requests_per_second",
            l,
            achieved as f64 / elapsed.max(1e-9),
        );
        o.family(
            "meshbench_requests_released",
            "counter",
            "Requests the pacer released on the open-loop schedule.",
            "",
        );
        o.sample("meshbench_requests_released_total", l, released as f64);
        o.family(
            "meshbench_requests_unsent",
            "counter",
            "Arrivals of the schedule never released: the generator fell behind past the end of the arrival period.",
            "",
        );
        o.sample(
            "meshbench_requests_unsent_total",
            l,
            self.pacer.unsent.get() as f64,
        );
        o.family(
            "meshbench_pacing_lag_seconds",
            "gauge",
            "How late the pacer released its latest request, in seconds.",
            "seconds",
        );
        o.sample(
            "meshbench_pacing_lag_seconds",
            l,
            self.pacer.lag_ns.get() as f64 / 1e9,
        );
        o.family(
            "meshbench_pacing_lag_max_seconds",
            "gauge",
            "The latest release so far relative to its intended time, in seconds.",
            "seconds",
        );
        o.sample(
            "meshbench_pacing_lag_max_seconds",
            l,
            self.pacer.max_lag_ns.get() as f64 / 1e9,
        );
        o.family(
            "meshbench_requests",
            "counter",
            "Requests finished, by result class (success, or how they failed).",
            "",
        );
        for i in 0..CLASSES {
            let (class, n) = (class_name(i), sum(&|p| p.requests[i].get()));
            o.sample(
                "meshbench_requests_total",
                &format!("{l},result=\"{class}\""),
                n as f64,
            );
        }
        let (attempts, later, hedges) = (
            sum(&|p| p.attempts.get()),
            sum(&|p| p.later_attempts.get()),
            sum(&|p| p.hedges.get()),
        );
        o.family(
            "meshbench_attempts",
            "counter",
            "Attempts sent, by kind: a request's first, a retry, or a hedge.",
            "",
        );
        for (kind, n) in [
            ("first", attempts.saturating_sub(later)),
            ("retry", later.saturating_sub(hedges)),
            ("hedge", hedges),
        ] {
            o.sample(
                "meshbench_attempts_total",
                &format!("{l},kind=\"{kind}\""),
                n as f64,
            );
        }
        o.family(
            "meshbench_request_duration_seconds",
            "histogram",
            "Request latency from the intended send time (after retries and hedges), in seconds, successes and failures apart.",
            "seconds",
        );
        for (outcome, pick) in [
            (
                "success",
                (|p: &ProxyMetrics| &p.ok_latency) as fn(&ProxyMetrics) -> &Hist,
            ),
            ("failure", |p: &ProxyMetrics| &p.failed_latency),
        ] {
            let mut cumulative = 0u64;
            for b in 0..BUCKETS {
                cumulative += sum(&|p| pick(p).buckets[b].get());
                let le = if b + 1 == BUCKETS {
                    "+Inf".to_owned()
                } else {
                    float(bound(b))
                };
                o.sample(
                    "meshbench_request_duration_seconds_bucket",
                    &format!("{l},outcome=\"{outcome}\",le=\"{le}\""),
                    cumulative as f64,
                );
            }
            let labels = format!("{l},outcome=\"{outcome}\"");
            o.sample(
                "meshbench_request_duration_seconds_sum",
                &labels,
                sum(&|p| pick(p).sum_ns.get()) as f64 / 1e9,
            );
            o.sample(
                "meshbench_request_duration_seconds_count",
                &labels,
                cumulative as f64,
            );
        }
        // Per endpoint, summed over proxies.
        let names = self
            .endpoints
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        let cells: Vec<Vec<Arc<EndpointCells>>> = self
            .proxies
            .iter()
            .map(|p| {
                p.endpoints
                    .read()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .clone()
            })
            .collect();
        let per = |i: usize, f: fn(&EndpointCells) -> u64| -> f64 {
            cells
                .iter()
                .filter_map(|c| c.get(i))
                .map(|c| f(c))
                .sum::<u64>() as f64
        };
        let ep_labels: Vec<String> = names
            .iter()
            .map(|e| {
                format!(
                    "{l},service=\"{}\",instance=\"{}\",address=\"{}\"",
                    escape(&e.service),
                    e.instance,
                    escape(&e.address)
                )
            })
            .collect();
        type Family = (
            &'static str,
            &'static str,
            &'static str,
            fn(&EndpointCells) -> u64,
        );
        let families: [Family; 6] = [
            (
                "meshbench_endpoint_in_flight_attempts",
                "gauge",
                "Attempts in flight to the endpoint, over every proxy.",
                |c| c.in_flight.get(),
            ),
            (
                "meshbench_endpoint_attempts",
                "counter",
                "Attempts sent to the endpoint.",
                |c| c.attempts.get(),
            ),
            (
                "meshbench_endpoint_errors",
                "counter",
                "Attempts the endpoint failed: 5xx answers, refused or reset connections, timeouts.",
                |c| c.errors.get(),
            ),
            (
                "meshbench_endpoint_ejections",
                "counter",
                "Times a proxy's outlier detection ejected the endpoint.",
                |c| c.ejections.get(),
            ),
            (
                "meshbench_endpoint_ejected_proxies",
                "gauge",
                "Proxies whose outlier detection has the endpoint ejected now.",
                |c| c.ejected.get(),
            ),
            (
                "meshbench_endpoint_unhealthy_proxies",
                "gauge",
                "Proxies whose active health checks find the endpoint failing now.",
                |c| c.unhealthy.get(),
            ),
        ];
        for (name, kind, help, f) in families {
            o.family(name, kind, help, "");
            let sample = if kind == "counter" {
                format!("{name}_total")
            } else {
                name.to_owned()
            };
            for (i, labels) in ep_labels.iter().enumerate() {
                o.sample(&sample, labels, per(i, f));
            }
        }
        o.finish()
    }
}

/// A text exposition being written.
pub(crate) struct Exposition {
    out: String,
    open_metrics: bool,
}

impl Exposition {
    pub(crate) fn new(open_metrics: bool) -> Self {
        Exposition {
            out: String::with_capacity(16 * 1024),
            open_metrics,
        }
    }

    /// A family's metadata. `name` is the family name (counters without `_total`, info without
    /// `_info`), `unit` its unit in OpenMetrics (empty: none).
    pub(crate) fn family(&mut self, name: &str, kind: &str, help: &str, unit: &str) {
        // The text format 0.0.4 names counters by their sample (`_total`) and knows no `info`.
        let (name, kind) = match (self.open_metrics, kind) {
            (false, "counter") => (format!("{name}_total"), "counter"),
            (false, "info") => (format!("{name}_info"), "gauge"),
            _ => (name.to_owned(), kind),
        };
        let _ = writeln!(self.out, "# HELP {name} {help}");
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
        if self.open_metrics && !unit.is_empty() {
            let _ = writeln!(self.out, "# UNIT {name} {unit}");
        }
    }

    pub(crate) fn sample(&mut self, name: &str, labels: &str, value: f64) {
        let v = float(value);
        if labels.is_empty() {
            let _ = writeln!(self.out, "{name} {v}");
        } else {
            let _ = writeln!(self.out, "{name}{{{labels}}} {v}");
        }
    }

    pub(crate) fn finish(mut self) -> String {
        if self.open_metrics {
            self.out.push_str("# EOF\n");
        }
        self.out
    }
}

/// A float as both formats write it: integers with `.0` dropped in neither (OpenMetrics wants a
/// canonical float for `le`), shortest round-trip otherwise.
fn float(v: f64) -> String {
    if v.is_finite() && v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.1}")
    } else {
        format!("{v}")
    }
}

/// A label value with `\`, `"` and newlines escaped.
pub(crate) fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The content type of an exposition.
pub fn content_type(open_metrics: bool) -> &'static str {
    if open_metrics {
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    } else {
        "text/plain; version=0.0.4; charset=utf-8"
    }
}

/// Whether an `Accept` header asks for OpenMetrics.
pub fn wants_open_metrics(accept: Option<&str>) -> bool {
    accept.is_some_and(|a| a.contains("application/openmetrics-text"))
}

/// What `--metrics-addr` serves: the run in progress (none between runs).
#[derive(Debug, Default)]
pub struct Registry {
    current: Mutex<Option<Arc<RunMetrics>>>,
}

impl Registry {
    /// Makes `run` the one exposed.
    pub fn set(&self, run: Option<Arc<RunMetrics>>) {
        *self
            .current
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = run;
    }

    /// The exposition of the run in progress (only `# EOF` or nothing between runs).
    pub fn render(&self, open_metrics: bool) -> String {
        let run = self
            .current
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        match run {
            Some(r) => r.render(open_metrics),
            None => Exposition::new(open_metrics).finish(),
        }
    }
}

/// The answer to a `GET /metrics` request: `render(open_metrics)` in the format the request's
/// `Accept` asks for, with its content type.
pub(crate) fn response<B>(
    req: &hyper::Request<B>,
    render: impl FnOnce(bool) -> String,
) -> hyper::Response<http_body_util::Full<bytes::Bytes>> {
    let om = wants_open_metrics(
        req.headers()
            .get(hyper::header::ACCEPT)
            .and_then(|v| v.to_str().ok()),
    );
    let mut r = hyper::Response::new(http_body_util::Full::new(bytes::Bytes::from(render(om))));
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(content_type(om)),
    );
    r
}

/// Serves `registry` at `GET /metrics` on `addr` until the process ends (other paths 404);
/// returns the bound address (`addr` may ask for port 0).
pub async fn serve(
    registry: Arc<Registry>,
    addr: std::net::SocketAddr,
) -> std::io::Result<std::net::SocketAddr> {
    use hyper::{Response, StatusCode};
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            };
            let registry = registry.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: hyper::Request<_>| {
                    let registry = registry.clone();
                    async move {
                        let mut r = if req.uri().path() == "/metrics" {
                            response(&req, |om| registry.render(om))
                        } else {
                            let mut r = Response::new(http_body_util::Full::new(
                                bytes::Bytes::from_static(b"metrics are at /metrics\n"),
                            ));
                            *r.status_mut() = StatusCode::NOT_FOUND;
                            r
                        };
                        r.headers_mut().insert(
                            hyper::header::CACHE_CONTROL,
                            hyper::header::HeaderValue::from_static("no-store"),
                        );
                        Ok::<_, std::convert::Infallible>(r)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    Ok(bound)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_powers_of_the_fourth_root_of_two_and_inclusive() {
        assert!((bound(0) - 2f64.powi(-17)).abs() < 1e-15);
        assert!((bound(1) / bound(0) - 2f64.powf(0.25)).abs() < 1e-12);
        // 1 ms lands in the first bucket whose bound is at or above it.
        let b = bucket(1_000_000);
        assert!(bound(b) >= 1e-3 && bound(b - 1) < 1e-3, "{}", bound(b));
        // An exact bound is in its own bucket (le is inclusive).
        assert_eq!(bucket(1_000_000_000), (-LOW) as usize);
        assert_eq!(bucket(u64::MAX), BUCKETS - 1);
        assert_eq!(bucket(0), 0);
    }

    #[test]
    fn a_run_renders_both_formats_with_counts_summed_over_proxies() {
        let ep = |i| EndpointLabels {
            service: "b".into(),
            instance: i,
            address: format!("127.0.0.1:{}", 8000 + i),
        };
        let run = RunMetrics::new("s", "p2c", (0, 1), 2, vec![ep(0), ep(1)], (10.0, 100.0));
        for p in 0..2 {
            let m = run.proxy(p);
            m.attempt(0);
            m.finished(Finish::Response(mesh_core::Outcome::Success), 2_000_000);
            m.endpoint(1).sent();
        }
        run.proxy(0).attempt(1);
        run.proxy(0).hedge();
        let text = run.render(false);
        assert!(
            text.contains("# TYPE meshbench_requests_total counter"),
            "{text}"
        );
        assert!(text.contains(
            "meshbench_requests_total{scenario=\"s\",strategy=\"p2c\",point=\"0\",replication=\"1\",result=\"success\"} 2.0"
        ));
        assert!(text.contains("kind=\"hedge\"} 1.0"));
        assert!(text.contains("kind=\"retry\"} 0.0"));
        assert!(text.contains("instance=\"1\",address=\"127.0.0.1:8001\"} 2.0"));
        assert!(text.contains("outcome=\"success\",le=\"+Inf\"} 2.0"));
        assert!(!text.contains("# EOF"));
        let om = run.render(true);
        assert!(om.contains("# TYPE meshbench_requests counter"));
        assert!(om.contains("# UNIT meshbench_request_duration_seconds seconds"));
        assert!(om.contains("# TYPE meshbench_run info"));
        assert!(om.ends_with("# EOF\n"));
    }
}
