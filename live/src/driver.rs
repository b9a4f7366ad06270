//! The live load generator: open-loop arrivals on an exact schedule, one `Cluster` per client
//! proxy choosing the endpoint of every attempt, real HTTP requests, and the simulator's result
//! model.
//!
//! * **Schedule.** One pacer thread walks every proxy's arrival times (the simulator's
//!   [`ArrivalClock`] and seeds, so both drivers see the same schedule) and releases each request at
//!   its intended instant, sleeping with the kernel's high-resolution timer and spinning the last
//!   few microseconds. Its lateness is the pacing error, reported as a distribution.
//! * **Latency** runs from the intended send time, not the actual one (coordinated omission), to
//!   the moment the `Cluster` finishes the request (after retries and hedges).
//! * **Counts**: scheduled, sent (the first attempt left), completed, and never sent (scheduled but
//!   cut off by the end or an interrupt), so nothing vanishes silently under overload.
//! * **Each proxy** is one tokio task owning its `Cluster` and its connections (proxies spread
//!   over one single-threaded runtime per core). Attempts are futures polled inside the proxy's
//!   task (HTTP/1.1 on the crate's own client in `h1.rs`, HTTP/2 on hyper), so a request takes
//!   no spawn and no channel hop; a `Cancel` aborts the attempt's future. Health probes are
//!   spawned tasks that report back over the proxy's channel.
//! * **Faults**: with in-process backends, the scenario's fault timeline plays from the same time
//!   zero as the arrivals ([`crate::Backends::run_faults`]).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration as StdDuration, Instant as StdInstant};

use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioExecutor;
use mesh_core::health::{ProbeId, ProbeResult};
use mesh_core::outlier::OutlierEvent;
use mesh_core::trace::Trace;
use mesh_core::{
    AttemptId, Cluster, EndpointId, EndpointMeta, Input, Instant, Outcome, Output, PolicyEvent,
    RequestId, Seed,
};
use meshbench_report::{EndpointStats, RunResult, Sample, latency_histogram, quantile_ms};
use meshbench_scenario::{ArrivalClock, Loaded};
use rustc_hash::FxHashMap as HashMap;
use tokio::sync::mpsc;

/// An HTTP/2 connection's (cloneable, multiplexed) request handle.
type H2 = hyper::client::conn::http2::SendRequest<Empty<Bytes>>;

/// A connection to one endpoint, plain or TLS: HTTP/1.1 on the generator's own lean client
/// ([`crate::h1`]), HTTP/2 on hyper's.
enum Conn {
    H1(Box<crate::h1::Connection>),
    H2(H2),
}

/// What an attempt hands back: its id, its outcome, the endpoint, and the connection to reuse.
type AttemptEnd = (AttemptId, Outcome, usize, Option<Conn>);

/// An attempt in flight inside its proxy's task: no task spawn, no channel hop per request.
type AttemptFuture = std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<AttemptEnd, futures_util::future::Aborted>> + Send>,
>;

/// How to reach one endpoint.
#[derive(Clone)]
struct Target {
    addr: SocketAddr,
    uri: hyper::Uri,
    health: hyper::Uri,
    /// HTTP/1.1 request heads (request line and `Host`) for `uri` and `health`.
    work_head: Vec<u8>,
    health_head: Vec<u8>,
    tls: Option<crate::tls::TlsClient>,
    http2: bool,
}

/// Connections per endpoint, owned by one proxy task (like wrk's per-thread connections: no
/// shared pool, no lock): idle HTTP/1.1 keep-alive connections, or one multiplexed HTTP/2
/// connection.
struct Pool {
    idle: Vec<Vec<Conn>>,
    h2: Vec<Option<H2>>,
    targets: Vec<Arc<Target>>,
}

impl Pool {
    fn new(addrs: &[SocketAddr], tls: Option<&crate::tls::TlsClient>, http2: bool) -> Self {
        let scheme = if tls.is_some() { "https" } else { "http" };
        Pool {
            idle: addrs.iter().map(|_| Vec::new()).collect(),
            h2: addrs.iter().map(|_| None).collect(),
            targets: addrs
                .iter()
                .map(|a| {
                    Arc::new(Target {
                        addr: *a,
                        uri: format!("{scheme}://{a}/work").parse().expect("a valid URI"),
                        health: format!("{scheme}://{a}/health")
                            .parse()
                            .expect("a valid URI"),
                        work_head: crate::h1::request_head("/work", &a.to_string()),
                        health_head: crate::h1::request_head("/health", &a.to_string()),
                        tls: tls.cloned(),
                        http2,
                    })
                })
                .collect(),
        }
    }

    /// A connection to try first for endpoint `ep`, if one is ready.
    fn take(&mut self, ep: usize) -> Option<Conn> {
        match &self.h2[ep] {
            Some(h2) => Some(Conn::H2(h2.clone())),
            None => self.idle[ep].pop(),
        }
    }

    /// Gives back a connection that ended its exchange cleanly.
    fn give(&mut self, ep: usize, conn: Conn) {
        match conn {
            Conn::H2(h2) => self.h2[ep] = Some(h2),
            c @ Conn::H1(_) => self.idle[ep].push(c),
        }
    }
}

async fn handshake(io: Box<dyn crate::h1::Stream>, http2: bool) -> Option<Conn> {
    if !http2 {
        return Some(Conn::H1(Box::new(crate::h1::Connection::new(io))));
    }
    let io = hyper_util::rt::TokioIo::new(io);
    let (sender, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
        .await
        .ok()?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Some(Conn::H2(sender))
}

/// Opens a connection (TCP, then TLS when configured, then HTTP/1.1 or HTTP/2).
async fn connect(t: &Target) -> Option<Conn> {
    let stream = tokio::net::TcpStream::connect(t.addr).await.ok()?;
    let _ = stream.set_nodelay(true);
    match &t.tls {
        None => handshake(Box::new(stream), t.http2).await,
        Some(tls) => {
            let io = tokio_rustls::TlsConnector::from(tls.config.clone())
                .connect(tls.server_name.clone(), stream)
                .await
                .ok()?;
            handshake(Box::new(io), t.http2).await
        }
    }
}

/// The request id the backends draw their common random numbers from.
static REQUEST_HEADER: hyper::header::HeaderName =
    hyper::header::HeaderName::from_static("x-meshbench-request");
/// The attempt number (0 first, then retries and hedges).
static ATTEMPT_HEADER: hyper::header::HeaderName =
    hyper::header::HeaderName::from_static("x-meshbench-attempt");

/// Sends one request on `conn`: the status, and the connection when it can carry another. The
/// error is `true` when the request never got an answer because the connection had been closed
/// (a pooled connection the server closed while idle), so a fresh connection may try again.
async fn exchange(
    conn: Conn,
    t: &Target,
    health: bool,
    ids: Option<(u64, u32)>,
) -> Result<(u16, Option<Conn>), bool> {
    match conn {
        Conn::H1(mut c) => {
            let head = if health { &t.health_head } else { &t.work_head };
            let extra: &[(&[u8], u64)] = match ids {
                Some((request, retry)) => &[
                    (REQUEST_HEADER.as_str().as_bytes(), request),
                    (ATTEMPT_HEADER.as_str().as_bytes(), u64::from(retry)),
                ],
                None => &[],
            };
            match c.get(head, extra).await {
                Ok((status, reusable)) => Ok((status, reusable.then_some(Conn::H1(c)))),
                Err(f) => Err(f == crate::h1::Failure::Closed),
            }
        }
        Conn::H2(mut s) => {
            let uri = if health { &t.health } else { &t.uri };
            let mut req = hyper::Request::get(uri.clone());
            if let Some((request, retry)) = ids {
                req = req
                    .header(&REQUEST_HEADER, request)
                    .header(&ATTEMPT_HEADER, retry);
            }
            let req = req.body(Empty::new()).expect("a valid request");
            if s.ready().await.is_err() {
                return Err(true);
            }
            let resp = s
                .send_request(req)
                .await
                .map_err(|e| e.is_closed() || e.is_canceled())?;
            let status = resp.status().as_u16();
            // Read the body to its end without gathering it: the generator has no use for it.
            let mut body = resp.into_body();
            while let Some(frame) = body.frame().await {
                frame.map_err(|_| false)?;
            }
            Ok((status, Some(Conn::H2(s))))
        }
    }
}

/// One request on a pooled (or new) connection, to the work path or the health path. A pooled
/// connection the server has closed is replaced once before the attempt counts as a local error.
async fn request_once(
    pooled: Option<Conn>,
    t: &Target,
    health: bool,
    ids: Option<(u64, u32)>,
) -> (Option<u16>, Option<Conn>) {
    let mut pooled = pooled;
    for fresh in [false, true] {
        let conn = match pooled.take() {
            Some(c) if !fresh => c,
            _ => match connect(t).await {
                Some(c) => c,
                None => return (None, None),
            },
        };
        match exchange(conn, t, health, ids).await {
            Ok((status, conn)) => return (Some(status), conn),
            Err(stale) if stale && !fresh => continue,
            Err(_) => return (None, None),
        }
    }
    (None, None)
}

/// One attempt, classified the way outlier detection and retries see it.
async fn send_attempt(
    pooled: Option<Conn>,
    t: Arc<Target>,
    request: u64,
    retry: u32,
) -> (Outcome, Option<Conn>) {
    match request_once(pooled, &t, false, Some((request, retry))).await {
        (Some(status), conn) => (
            match status {
                502..=504 => Outcome::GatewayError,
                500..=599 => Outcome::ServerError,
                _ => Outcome::Success,
            },
            conn,
        ),
        (None, _) => (Outcome::LocalError, None),
    }
}

/// One active health check on a fresh connection (Envoy's `reuse_connection: false`).
async fn health_probe(t: Arc<Target>) -> ProbeResult {
    match request_once(None, &t, true, None).await {
        (Some(200..=299), _) => ProbeResult::Pass,
        (Some(_), _) => ProbeResult::Fail,
        (None, _) => ProbeResult::Error,
    }
}

/// What to run.
#[derive(Clone, Debug)]
pub struct LiveOptions {
    /// Strategy index (into the scenario's strategies).
    pub strategy: usize,
    /// Replication index: seeds the schedule and the backends' draws as in the simulator.
    pub replication: u32,
    /// Base seed.
    pub seed: u64,
    /// Arrival period; default the scenario's duration.
    pub duration: Option<StdDuration>,
    /// Endpoints of each client's target service, in instance order.
    pub endpoints: BTreeMap<String, Vec<SocketAddr>>,
    /// Record every Cluster's inputs and outputs for replay.
    pub record: bool,
    /// A line on stderr once a second.
    pub progress: bool,
    /// Longest wait for requests still in flight after the arrivals end.
    pub drain: StdDuration,
    /// Speak HTTP/2 over cleartext (h2c, prior knowledge) instead of HTTP/1.1.
    pub http2: bool,
    /// Run share `i` of `n` of the open-loop schedule (every n-th arrival of each proxy, from
    /// the `i`-th): several generators with `0/n .. n-1/n` together send the whole schedule, with
    /// the request ids (and so the backends' draws) of an unsharded run. `(0, 1)`: everything.
    pub shard: (u32, u32),
    /// Dial the endpoints with TLS (custom CA, optional client certificate).
    pub tls: Option<crate::tls::TlsClient>,
    /// Closed loop: this many virtual users, each sending its next request when the last one
    /// finishes (no schedule; latency from the actual send). `None`: open loop.
    pub connections: Option<u32>,
    /// In-process backends to play the scenario's fault timeline on, from the run's start.
    pub backends: Option<Arc<crate::Backends>>,
}

/// A recorded proxy: its trace and the outputs it produced.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Recording {
    /// The proxy's index.
    pub proxy: usize,
    /// Its Cluster's inputs.
    pub trace: Trace,
    /// Its Cluster's outputs, with the time of the input that produced them.
    pub outputs: Vec<(Instant, Output)>,
}

/// Live-only figures.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct LiveStats {
    /// Target rate, requests per second.
    pub target_rps: f64,
    /// Requests scheduled in the arrival period.
    pub scheduled: u64,
    /// Requests whose first attempt left.
    pub sent: u64,
    /// Requests finished (any outcome).
    pub completed: u64,
    /// Scheduled but never started or never finished (cut off by the end or an interrupt).
    pub never_completed: u64,
    /// Requests actually released within the arrival period, per second of it.
    pub achieved_rps: f64,
    /// Pacing error (actual release - intended time): p50, p99, max, in microseconds.
    pub pacing_error_us: [f64; 3],
    /// Latency from the intended send time (what the report uses): p50, p99, ms.
    pub latency_from_intended_ms: [f64; 2],
    /// Latency from the moment the request was actually released: p50, p99, ms. A gap between
    /// the two is the generator's own delay (coordinated omission, had we measured this way).
    pub latency_from_send_ms: [f64; 2],
    /// Whether the run was interrupted.
    pub partial: bool,
}

/// Pacing error p99 beyond which an open-loop run's latencies say more about the machine than
/// about the system under test (the pacer releases late because it did not get a core).
pub const PACING_WARN_US: f64 = 1000.0;

impl LiveStats {
    /// A warning when the pacer was late by more than [`PACING_WARN_US`] at p99: it did not get
    /// a core on time (other load, too few cores for the generator and in-process backends, or a
    /// virtual CPU descheduled by its host), so live latencies carry that delay.
    pub fn contention_warning(&self) -> Option<String> {
        (self.target_rps > 0.0 && self.pacing_error_us[1] > PACING_WARN_US).then(|| {
            format!(
                "pacing error p99 {:.1} ms: the pacer did not get a core on time (other load, too few cores for the generator and its backends, or a virtual CPU descheduled by its host); live latencies include that delay",
                self.pacing_error_us[1] / 1000.0
            )
        })
    }
}

/// The result of one live run.
#[derive(Debug)]
pub struct LiveRun {
    /// The same model as the simulator's.
    pub result: RunResult,
    /// Live-only figures.
    pub stats: LiveStats,
    /// Recordings, when asked for.
    pub recordings: Vec<Recording>,
}

enum Msg {
    Arrive {
        seq: u64,
        intended_ns: u64,
    },
    Done {
        attempt: AttemptId,
        outcome: Outcome,
    },
    Probe {
        probe: ProbeId,
        endpoint: EndpointId,
        result: ProbeResult,
    },
    PacerDone,
    /// Nothing happened, but outputs are waiting (the closed loop's first requests).
    Kick,
}

/// Shared live counters for the progress line and the time series.
struct Shared {
    completed: AtomicU64,
    errors: AtomicU64,
    attempts: AtomicU64,
    window: std::sync::Mutex<Histogram<u64>>,
    /// The proxy's target service and its attempts per endpoint (for the heat map).
    target: String,
    per_endpoint: Vec<AtomicU64>,
}

/// Per-proxy measurements.
struct ProxyStats {
    hist: Histogram<u64>,
    hist_from_send: Histogram<u64>,
    requests: u64,
    successes: u64,
    failures: BTreeMap<String, u64>,
    attempts: u64,
    events: BTreeMap<String, u64>,
    endpoints: Vec<EndpointStats>,
    sent: u64,
    completed: u64,
    issued: u64,
    recording: Option<Recording>,
}

/// Runs one live run; `stop` ends it early (the results so far are returned, marked partial).
pub async fn run(loaded: &Loaded, opts: LiveOptions, stop: Arc<AtomicBool>) -> LiveRun {
    let sc = &loaded.scenario;
    let (name, config) = &loaded.strategies[opts.strategy];
    let run_seed = Seed::new(opts.seed).fork_index(u64::from(opts.replication));
    let duration_ns = opts
        .duration
        .map(|d| d.as_nanos() as u64)
        .or(sc.duration.map(|d| d.as_nanos()))
        .unwrap_or(10_000_000_000);
    let warmup = sc.warmup.as_nanos().min(duration_ns / 2);
    // One set of live counters per proxy (no cache line shared between proxy threads); the
    // sampler sums them.
    let new_shared = |target: &str, endpoints: usize| {
        Arc::new(Shared {
            completed: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            attempts: AtomicU64::new(0),
            window: std::sync::Mutex::new(latency_histogram()),
            target: target.to_owned(),
            per_endpoint: (0..endpoints).map(|_| AtomicU64::new(0)).collect(),
        })
    };
    let mut all_shared: Vec<Arc<Shared>> = Vec::new();
    let start = StdInstant::now();
    // The fault timeline on in-process backends, in real time from the same origin as arrivals.
    let faults = opts
        .backends
        .as_ref()
        .filter(|_| !sc.faults.is_empty())
        .map(|b| b.run_faults(sc.fault_changes(), start));

    // Proxies: seeds, clocks and endpoints as in the simulator.
    let mut proxies = Vec::new();
    let mut clocks = Vec::new();
    let mut target_rps = 0.0;
    for (client_name, c) in &sc.clients {
        target_rps += c.arrival.mean_rate();
        let addrs = opts.endpoints.get(&c.target).cloned().unwrap_or_default();
        for p in 0..c.proxies {
            let proxy_seed = run_seed
                .fork("client")
                .fork(client_name)
                .fork_index(u64::from(p));
            let cluster = Cluster::new(
                config,
                &vec![EndpointMeta::default(); addrs.len()],
                proxy_seed.fork("cluster"),
                Instant::EPOCH,
            )
            .expect("strategies are validated when the scenario loads");
            clocks.push((
                ArrivalClock::new(&c.arrival, c.proxies),
                proxy_seed.fork("arrivals").rng(),
            ));
            proxies.push((cluster, addrs.clone(), c.target.clone()));
        }
    }

    // Actors.
    let mut senders = Vec::new();
    let mut actors: Vec<(Actor, mpsc::UnboundedReceiver<Msg>, bool)> = Vec::new();
    let n_proxies = proxies.len().max(1) as u32;
    for (i, (mut cluster, addrs, target)) in proxies.into_iter().enumerate() {
        let shared = new_shared(&target, addrs.len());
        all_shared.push(shared.clone());
        let users = opts
            .connections
            .map_or(0, |n| n / n_proxies + u32::from((i as u32) < n % n_proxies));
        if opts.record {
            cluster.start_recording();
        }
        let (tx, rx) = mpsc::unbounded_channel();
        senders.push(tx.clone());
        let ctx = Actor {
            index: i,
            cluster,
            addrs,
            target,
            tls: opts.tls.clone(),
            tx,
            start,
            warmup,
            shared,
            drain: opts.drain,
            stop: stop.clone(),
            users,
            end_ns: duration_ns,
            issued: 0,
            http2: opts.http2,
        };
        let closed = opts.connections.is_some();
        actors.push((ctx, rx, closed));
    }
    // Proxy tasks run on one single-threaded runtime per core, each on its own OS thread, like
    // wrk's per-thread event loops: a proxy's attempts, connections and timers never hop threads.
    let workers = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .min(actors.len())
        .max(1);
    let mut shards: Vec<Vec<(Actor, mpsc::UnboundedReceiver<Msg>, bool)>> =
        (0..workers).map(|_| Vec::new()).collect();
    for (i, a) in actors.into_iter().enumerate() {
        shards[i % workers].push(a);
    }
    let record = opts.record;
    let threads: Vec<std::thread::JoinHandle<Vec<(usize, ProxyStats)>>> = shards
        .into_iter()
        .enumerate()
        .map(|(w, shard)| {
            std::thread::Builder::new()
                .name(format!("meshbench-live-{w}"))
                .spawn(move || {
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .expect("a proxy runtime");
                    rt.block_on(async move {
                        let handles: Vec<_> = shard
                            .into_iter()
                            .map(|(ctx, rx, closed)| {
                                let i = ctx.index;
                                (i, tokio::spawn(ctx.run(rx, record, closed)))
                            })
                            .collect();
                        let mut out = Vec::new();
                        for (i, h) in handles {
                            out.push((i, h.await.expect("proxy task")));
                        }
                        out
                    })
                })
                .expect("spawning a proxy thread")
        })
        .collect();

    // Progress and the time series: one sample per sample period.
    let period = sc.sample_period.as_nanos().max(100_000_000);
    let finished = Arc::new(AtomicBool::new(false));
    let sampler = {
        let shared = all_shared.clone();
        let stop = stop.clone();
        let finished = finished.clone();
        let progress = opts.progress;
        let target = target_rps;
        tokio::spawn(async move {
            let mut samples = Vec::new();
            // Endpoints in report order: (service, instance), as result.endpoints sorts them.
            let keys: BTreeMap<(String, u32), usize> = {
                let mut all: Vec<(String, u32)> = shared
                    .iter()
                    .flat_map(|s| (0..s.per_endpoint.len() as u32).map(|i| (s.target.clone(), i)))
                    .collect();
                all.sort();
                all.dedup();
                all.into_iter().enumerate().map(|(k, v)| (v, k)).collect()
            };
            let mut series: Vec<Vec<u64>> = Vec::new();
            let mut last_ep: Vec<Vec<u64>> = shared
                .iter()
                .map(|s| vec![0; s.per_endpoint.len()])
                .collect();
            let mut last = (0u64, 0u64, 0u64);
            let mut k = 1u64;
            loop {
                let at = start + StdDuration::from_nanos(k * period);
                tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await;
                let sum = |f: fn(&Shared) -> &AtomicU64| -> u64 {
                    shared.iter().map(|s| f(s).load(Ordering::Relaxed)).sum()
                };
                let c = sum(|s| &s.completed);
                let e = sum(|s| &s.errors);
                let a = sum(|s| &s.attempts);
                let (p50, p99, p999) = {
                    let mut h = latency_histogram();
                    for s in &shared {
                        let mut w = s.window.lock().expect("not poisoned");
                        let _ = h.add(&*w);
                        w.reset();
                    }
                    (
                        quantile_ms(&h, 0.5),
                        quantile_ms(&h, 0.99),
                        quantile_ms(&h, 0.999),
                    )
                };
                let secs = period as f64 / 1e9;
                if progress {
                    eprintln!(
                        "t={:>6.1}s  completed {:>8.0}/s (target {:>8.0}/s)  p99 {:>8.2} ms  errors {:>5}",
                        (k * period) as f64 / 1e9,
                        (c - last.0) as f64 / secs,
                        target,
                        p99,
                        e - last.1
                    );
                }
                let mut window = vec![0u64; keys.len()];
                for (p, sh) in shared.iter().enumerate() {
                    for (i, c) in sh.per_endpoint.iter().enumerate() {
                        let v = c.load(Ordering::Relaxed);
                        if let Some(&k) = keys.get(&(sh.target.clone(), i as u32)) {
                            window[k] += v - last_ep[p][i];
                        }
                        last_ep[p][i] = v;
                    }
                }
                series.push(window);
                samples.push(Sample {
                    t_s: (k * period) as f64 / 1e9,
                    requests: c - last.0,
                    errors: e - last.1,
                    p50_ms: p50,
                    p99_ms: p99,
                    p999_ms: p999,
                    attempts: a - last.2,
                    ..Sample::default()
                });
                last = (c, e, a);
                k += 1;
                if stop.load(Ordering::Relaxed)
                    || finished.load(Ordering::Relaxed)
                    || k * period > duration_ns
                {
                    return (samples, series);
                }
            }
        })
    };

    let (scheduled, on_time, pacing) = match opts.connections {
        // The pacer: a dedicated thread releasing arrivals at their intended times.
        None => {
            let pacer = {
                let stop = stop.clone();
                let shard = opts.shard;
                std::thread::spawn(move || pace(clocks, senders, start, duration_ns, &stop, shard))
            };
            tokio::task::spawn_blocking(move || pacer.join().expect("pacer"))
                .await
                .expect("pacer thread")
        }
        // Closed loop: each proxy task keeps its virtual users busy itself.
        Some(_) => {
            drop(senders);
            let empty = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).expect("bounds");
            (0, 0, empty)
        }
    };
    let mut per_proxy = Vec::new();
    let joined = tokio::task::spawn_blocking(move || {
        let mut all: Vec<(usize, ProxyStats)> = threads
            .into_iter()
            .flat_map(|t| t.join().expect("proxy thread"))
            .collect();
        all.sort_by_key(|p| p.0);
        all
    })
    .await
    .expect("joining the proxy threads");
    for (_, p) in joined {
        per_proxy.push(p);
    }
    finished.store(true, Ordering::Relaxed);
    if let Some(f) = faults {
        f.abort();
    }
    let (samples, endpoint_series) = sampler.await.unwrap_or_default();

    // Merge.
    let mut hist = latency_histogram();
    let mut from_send = latency_histogram();
    let mut result = RunResult {
        point: 0,
        coords: Vec::new(),
        strategy: name.clone(),
        replication: opts.replication,
        seed: run_seed.value(),
        latency: latency_histogram(),
        requests: 0,
        successes: 0,
        failures: BTreeMap::new(),
        attempts: 0,
        measured_seconds: (duration_ns - warmup) as f64 / 1e9,
        endpoints: Vec::new(),
        timeseries: samples,
        events: BTreeMap::new(),
        endpoint_series,
        sim_events: 0,
        keys: Vec::new(),
        live: None,
    };
    let closed = opts.connections.is_some();
    let mut stats = LiveStats {
        target_rps: if closed {
            0.0
        } else {
            target_rps / f64::from(opts.shard.1.max(1))
        },
        scheduled,
        ..LiveStats::default()
    };
    let mut endpoints: BTreeMap<(String, u32), EndpointStats> = BTreeMap::new();
    let mut recordings = Vec::new();
    for p in per_proxy {
        let _ = hist.add(&p.hist);
        let _ = from_send.add(&p.hist_from_send);
        result.requests += p.requests;
        result.successes += p.successes;
        result.attempts += p.attempts;
        for (k, v) in p.failures {
            *result.failures.entry(k).or_insert(0) += v;
        }
        for (k, v) in p.events {
            *result.events.entry(k).or_insert(0) += v;
        }
        for e in p.endpoints {
            endpoints
                .entry((e.service.clone(), e.instance))
                .and_modify(|t| t.add(&e))
                .or_insert(e);
        }
        stats.sent += p.sent;
        stats.completed += p.completed;
        stats.scheduled += p.issued;
        recordings.extend(p.recording);
    }
    stats.latency_from_intended_ms = [quantile_ms(&hist, 0.5), quantile_ms(&hist, 0.99)];
    stats.latency_from_send_ms = [quantile_ms(&from_send, 0.5), quantile_ms(&from_send, 0.99)];
    result.latency = hist;
    result.endpoints = endpoints.into_values().collect();
    stats.never_completed = scheduled.saturating_sub(stats.completed);
    stats.partial = stop_was_early(&stop, start, duration_ns);
    stats.achieved_rps = if closed {
        stats.completed as f64 / (duration_ns as f64 / 1e9)
    } else {
        on_time as f64 / (duration_ns as f64 / 1e9)
    };
    let q = |p: f64| {
        if pacing.is_empty() {
            0.0
        } else {
            pacing.value_at_quantile(p) as f64 / 1e3
        }
    };
    stats.pacing_error_us = [q(0.5), q(0.99), pacing.max() as f64 / 1e3];
    for (k, v) in [
        ("live_scheduled", stats.scheduled),
        ("live_sent", stats.sent),
        ("live_completed", stats.completed),
        ("live_never_completed", stats.never_completed),
    ] {
        result.events.insert(k.to_owned(), v);
    }
    LiveRun {
        result,
        stats,
        recordings,
    }
}

fn stop_was_early(stop: &AtomicBool, start: StdInstant, duration_ns: u64) -> bool {
    stop.load(Ordering::Relaxed) && start.elapsed().as_nanos() < u128::from(duration_ns)
}

/// Releases every proxy's arrivals at their intended times; returns the count released, the
/// count released before the arrival period ended (for the achieved rate), and the pacing error
/// distribution (ns).
fn pace(
    mut clocks: Vec<(ArrivalClock, mesh_core::Rng)>,
    senders: Vec<mpsc::UnboundedSender<Msg>>,
    start: StdInstant,
    duration_ns: u64,
    stop: &AtomicBool,
    (shard, shards): (u32, u32),
) -> (u64, u64, Histogram<u64>) {
    let shards = u64::from(shards.max(1));
    let mine = |seq: u64| seq % shards == u64::from(shard);
    use rand::Rng as _;
    let end = start + StdDuration::from_nanos(duration_ns);
    let mut on_time = 0;
    let mut pacing = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).expect("bounds");
    let mut heap = std::collections::BinaryHeap::new();
    for (i, (clock, rng)) in clocks.iter_mut().enumerate() {
        let t = clock.next(0, meshbench_scenario::unit(rng.next_u64()));
        heap.push(std::cmp::Reverse((t, i, 0u64)));
    }
    let mut scheduled = 0;
    while let Some(std::cmp::Reverse((t, i, seq))) = heap.pop() {
        if t >= duration_ns || stop.load(Ordering::Relaxed) {
            break;
        }
        if !mine(seq) {
            let (clock, rng) = &mut clocks[i];
            let next = clock.next(t, meshbench_scenario::unit(rng.next_u64()));
            heap.push(std::cmp::Reverse((next, i, seq + 1)));
            continue;
        }
        let at = start + StdDuration::from_nanos(t);
        // Sleep (kernel high-resolution timer) until 60 us before, then spin.
        loop {
            let now = StdInstant::now();
            if now >= at {
                break;
            }
            let left = at - now;
            if left > StdDuration::from_micros(60) {
                std::thread::sleep(left - StdDuration::from_micros(50));
            } else {
                std::hint::spin_loop();
            }
        }
        let released = StdInstant::now();
        let late = released.saturating_duration_since(at).as_nanos() as u64;
        let _ = pacing.record(late.max(1));
        scheduled += 1;
        on_time += u64::from(released <= end);
        let _ = senders[i].send(Msg::Arrive {
            seq,
            intended_ns: t,
        });
        let (clock, rng) = &mut clocks[i];
        let next = clock.next(t, meshbench_scenario::unit(rng.next_u64()));
        heap.push(std::cmp::Reverse((next, i, seq + 1)));
    }
    for s in &senders {
        let _ = s.send(Msg::PacerDone);
    }
    (scheduled, on_time, pacing)
}

struct Actor {
    index: usize,
    cluster: Cluster,
    addrs: Vec<SocketAddr>,
    target: String,
    tls: Option<crate::tls::TlsClient>,
    tx: mpsc::UnboundedSender<Msg>,
    start: StdInstant,
    warmup: u64,
    shared: Arc<Shared>,
    drain: StdDuration,
    stop: Arc<AtomicBool>,
    /// Closed loop: virtual users on this proxy (0: open loop, arrivals come from the pacer).
    users: u32,
    /// Closed loop: no new request after this (ns since the start).
    end_ns: u64,
    /// Closed loop: requests issued.
    issued: u64,
    /// Use the shared HTTP/2 client instead of per-task HTTP/1.1 connections.
    http2: bool,
}

impl Actor {
    /// Closed loop: one more request from a virtual user, sent now.
    fn issue(&mut self, intended: &mut HashMap<u64, (u64, u64, bool)>) {
        let now = self.now();
        let key = ((self.index as u64) << 40) | self.issued;
        self.issued += 1;
        intended.insert(key, (now.as_nanos(), now.as_nanos(), false));
        self.cluster.handle_input(
            Input::Request {
                request: RequestId(key),
                hash: None,
            },
            now,
        );
    }

    fn now(&self) -> Instant {
        Instant::from_nanos(self.start.elapsed().as_nanos() as u64)
    }

    async fn run(
        mut self,
        mut rx: mpsc::UnboundedReceiver<Msg>,
        record: bool,
        closed: bool,
    ) -> ProxyStats {
        let mut st = ProxyStats {
            hist: latency_histogram(),
            hist_from_send: latency_histogram(),
            requests: 0,
            successes: 0,
            failures: BTreeMap::new(),
            attempts: 0,
            events: BTreeMap::new(),
            endpoints: (0..self.addrs.len() as u32)
                .map(|i| EndpointStats {
                    service: self.target.clone(),
                    instance: i,
                    ..EndpointStats::default()
                })
                .collect(),
            sent: 0,
            completed: 0,
            issued: 0,
            recording: None,
        };
        let mut outputs = Vec::new();
        let mut intended: HashMap<u64, (u64, u64, bool)> = HashMap::default();
        let mut inflight: HashMap<AttemptId, futures_util::future::AbortHandle> =
            HashMap::default();
        let mut pending: futures_util::stream::FuturesUnordered<AttemptFuture> =
            futures_util::stream::FuturesUnordered::new();
        // Connections live on the proxy's own runtime and die with it.
        let mut pool = Pool::new(&self.addrs, self.tls.as_ref(), self.http2);
        let mut pacer_done = false;
        let mut drain_deadline: Option<tokio::time::Instant> = None;
        // Outputs of construction (initial policy events) come first, at the start.
        while let Some(o) = self.cluster.poll_output() {
            self.output(
                &o,
                Instant::EPOCH,
                &mut st,
                &mut intended,
                &mut inflight,
                &pending,
                &mut pool,
            );
            if record {
                outputs.push((Instant::EPOCH, o));
            }
        }
        for _ in 0..self.users {
            self.issue(&mut intended);
        }
        if closed && self.users == 0 {
            pacer_done = true;
        }
        let mut kick = self.users > 0;
        let far = tokio::time::Instant::now() + StdDuration::from_secs(86_400 * 365);
        let mut armed = far;
        let sleep = tokio::time::sleep_until(far);
        tokio::pin!(sleep);
        loop {
            let timer = self.cluster.poll_timeout().map(|t| {
                tokio::time::Instant::from_std(self.start + StdDuration::from_nanos(t.as_nanos()))
            });
            let until = match (timer, drain_deadline) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            // One timer entry, moved only when the deadline changes (a fresh `Sleep` per
            // iteration would register and cancel a timer for every request).
            let until = until.unwrap_or(far);
            if until != armed {
                sleep.as_mut().reset(until);
                armed = until;
            }
            let msg = if std::mem::take(&mut kick) {
                Some(Msg::Kick)
            } else {
                tokio::select! {
                m = rx.recv() => m,
                Some(done) = futures_util::StreamExt::next(&mut pending), if !pending.is_empty() => {
                    match done {
                        Ok((attempt, outcome, endpoint, conn)) => {
                            if let Some(c) = conn {
                                pool.give(endpoint, c);
                            }
                            // As the simulator counts at the instance: 5xx, refused, reset.
                            if outcome.is_failure()
                                && let Some(e) = st.endpoints.get_mut(endpoint)
                            {
                                e.errors += 1;
                            }
                            Some(Msg::Done { attempt, outcome })
                        }
                        // Aborted by a Cancel: nothing to report.
                        Err(_) => continue,
                    }
                }
                () = &mut sleep => None,
                }
            };
            let now = self.now();
            match msg {
                Some(Msg::Arrive { seq, intended_ns }) => {
                    let key = ((self.index as u64) << 40) | seq;
                    intended.insert(key, (intended_ns, now.as_nanos(), false));
                    self.cluster.handle_input(
                        Input::Request {
                            request: RequestId(key),
                            hash: None,
                        },
                        now,
                    );
                }
                Some(Msg::Done { attempt, outcome }) => {
                    if inflight.remove(&attempt).is_some() {
                        self.cluster.handle_input(
                            Input::AttemptDone {
                                attempt,
                                outcome,
                                load: None,
                            },
                            now,
                        );
                    }
                }
                Some(Msg::Probe {
                    probe,
                    endpoint,
                    result,
                }) => self.cluster.handle_input(
                    Input::ProbeDone {
                        probe,
                        endpoint,
                        result,
                    },
                    now,
                ),
                Some(Msg::Kick) => {}
                Some(Msg::PacerDone) => {
                    pacer_done = true;
                    drain_deadline = Some(tokio::time::Instant::now() + self.drain);
                }
                None => {
                    if drain_deadline.is_some_and(|d| tokio::time::Instant::now() >= d) {
                        break;
                    }
                    self.cluster.handle_timeout(now);
                }
            }
            while let Some(o) = self.cluster.poll_output() {
                self.output(
                    &o,
                    now,
                    &mut st,
                    &mut intended,
                    &mut inflight,
                    &pending,
                    &mut pool,
                );
                if let Output::Finished { .. } = &o {
                    if self.users > 0 && !pacer_done {
                        if now.as_nanos() < self.end_ns && !self.stop.load(Ordering::Relaxed) {
                            self.issue(&mut intended);
                        } else {
                            pacer_done = true;
                            drain_deadline = Some(tokio::time::Instant::now() + self.drain);
                        }
                    }
                }
                if record {
                    outputs.push((now, o));
                }
            }
            if pacer_done && self.cluster.live_requests() == 0 {
                break;
            }
            if self.stop.load(Ordering::Relaxed) && drain_deadline.is_none() {
                drain_deadline = Some(tokio::time::Instant::now() + self.drain);
            }
        }
        for (_, h) in inflight {
            h.abort();
        }
        drop(pending);
        st.issued = self.issued;
        if record {
            st.recording = Some(Recording {
                proxy: self.index,
                trace: self.cluster.take_trace(),
                outputs,
            });
        }
        st
    }

    // The per-request maps are locals of `run` (they outlive no request); passing them is
    // plainer than a second struct borrowed alongside `self`.
    #[allow(clippy::too_many_arguments)]
    fn output(
        &mut self,
        o: &Output,
        now: Instant,
        st: &mut ProxyStats,
        intended: &mut HashMap<u64, (u64, u64, bool)>,
        inflight: &mut HashMap<AttemptId, futures_util::future::AbortHandle>,
        pending: &futures_util::stream::FuturesUnordered<AttemptFuture>,
        pool: &mut Pool,
    ) {
        match o {
            Output::Send {
                attempt,
                request,
                endpoint,
                retry,
                ..
            } => {
                if self.addrs.get(endpoint.index()).is_none() {
                    return;
                }
                if let Some(e) = intended.get_mut(&request.0)
                    && !e.2
                {
                    e.2 = true;
                    st.sent += 1;
                }
                if let Some(e) = st.endpoints.get_mut(endpoint.index()) {
                    e.attempts += 1;
                }
                if intended.get(&request.0).is_some_and(|e| e.0 >= self.warmup) {
                    st.attempts += 1;
                }
                self.shared.attempts.fetch_add(1, Ordering::Relaxed);
                if let Some(c) = self.shared.per_endpoint.get(endpoint.index()) {
                    c.fetch_add(1, Ordering::Relaxed);
                }
                let (attempt_id, key, retry, ep) = (*attempt, request.0, *retry, endpoint.index());
                let pooled = pool.take(ep);
                let target = pool.targets[ep].clone();
                let (fut, handle) = futures_util::future::abortable(Box::pin(async move {
                    let (outcome, conn) = send_attempt(pooled, target, key, retry).await;
                    (attempt_id, outcome, ep, conn)
                })
                    as std::pin::Pin<Box<dyn std::future::Future<Output = AttemptEnd> + Send>>);
                pending.push(Box::pin(fut));
                inflight.insert(attempt_id, handle);
            }
            Output::Cancel { attempt, .. } => {
                if let Some(h) = inflight.remove(attempt) {
                    h.abort();
                }
            }
            Output::Probe(p) => {
                if self.addrs.get(p.endpoint.index()).is_none() {
                    return;
                }
                let target = pool.targets[p.endpoint.index()].clone();
                let tx = self.tx.clone();
                let timeout = StdDuration::from_nanos(p.deadline.as_nanos())
                    .saturating_sub(StdDuration::from_nanos(now.as_nanos()));
                let (probe, endpoint) = (p.probe, p.endpoint);
                tokio::spawn(async move {
                    let result = match tokio::time::timeout(timeout, health_probe(target)).await {
                        Ok(r) => r,
                        Err(_) => ProbeResult::Error,
                    };
                    let _ = tx.send(Msg::Probe {
                        probe,
                        endpoint,
                        result,
                    });
                });
            }
            Output::BalancerProbe { .. } => {}
            Output::Finished {
                request, result, ..
            } => {
                let Some((t0, released, _)) = intended.remove(&request.0) else {
                    return;
                };
                let latency = now.as_nanos().saturating_sub(t0).max(1);
                let from_send = now.as_nanos().saturating_sub(released).max(1);
                st.completed += 1;
                let ok = result.is_success();
                self.shared.completed.fetch_add(1, Ordering::Relaxed);
                if !ok {
                    self.shared.errors.fetch_add(1, Ordering::Relaxed);
                }
                if let Ok(mut w) = self.shared.window.lock() {
                    let _ = w.record(latency);
                }
                if t0 < self.warmup {
                    return;
                }
                st.requests += 1;
                let _ = st.hist.record(latency);
                let _ = st.hist_from_send.record(from_send);
                if ok {
                    st.successes += 1;
                } else {
                    *st.failures.entry(result.class().to_owned()).or_insert(0) += 1;
                }
            }
            Output::Event(e) => {
                if let PolicyEvent::Outlier(OutlierEvent::Ejected { endpoint, .. }) = e
                    && let Some(s) = st.endpoints.get_mut(endpoint.index())
                {
                    s.ejections += 1;
                }
                let kind = e.kind();
                *st.events.entry(kind.to_owned()).or_insert(0) += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contention_is_flagged_from_a_late_pacer_in_open_loop_only() {
        let stats = |target_rps, p99| LiveStats {
            target_rps,
            pacing_error_us: [10.0, p99, p99],
            ..LiveStats::default()
        };
        assert!(stats(3000.0, 900.0).contention_warning().is_none());
        let w = stats(3000.0, 4452.0).contention_warning().unwrap();
        assert!(w.contains("p99 4.5 ms"), "{w}");
        // Closed loop has no schedule to be late for.
        assert!(stats(0.0, 4452.0).contention_warning().is_none());
    }
}
