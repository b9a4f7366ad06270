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
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration as StdDuration, Instant as StdInstant};

use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::BodyExt;
use hyper_util::rt::TokioExecutor;
use mesh_core::health::{ProbeId, ProbeResult};
use mesh_core::trace::Trace;
use mesh_core::{
    AttemptId, Cluster, ConnectionId, EndpointId, Input, Instant, LoadReport, Outcome, Output,
    ProbeReply,
};
use meshbench_report::{
    LiveCounts, Recorder, RunId, RunResult, Sample, Window, latency_histogram, quantile_ms,
};
use meshbench_scenario::workload::{self, ProxyPlan, Workload};
use meshbench_scenario::{ArrivalClock, Loaded};
use rustc_hash::FxHashMap as HashMap;
use tokio::sync::mpsc;

/// An HTTP/2 connection's (cloneable, multiplexed) request handle.
type H2 = hyper::client::conn::http2::SendRequest<http_body_util::Full<Bytes>>;

/// What a work request is, besides its path: the method, extra headers, and a body (empty:
/// none). The default is `GET` with no headers or body. Health checks and probes stay `GET`.
#[derive(Clone, Debug)]
pub struct RequestSpec {
    /// The method.
    pub method: hyper::Method,
    /// Headers sent with every work request.
    pub headers: Vec<(hyper::header::HeaderName, hyper::header::HeaderValue)>,
    /// The body of every work request.
    pub body: Bytes,
    /// The path of every work request to an endpoint given by address (in-process backends,
    /// discovered endpoints); default `/work`. Targets given as URLs use their own.
    pub path: Option<String>,
    /// Whether the method and the body were given (on the command line), so that they win
    /// over a scenario client's `request:`.
    pub method_given: bool,
    /// See `method_given`.
    pub body_given: bool,
}

impl RequestSpec {
    /// From a method name (default `GET`), `Name: value` header lines and a body; errors say
    /// which part is wrong.
    pub fn parse(method: Option<&str>, headers: &[String], body: Vec<u8>) -> Result<Self, String> {
        let mut spec = RequestSpec {
            body_given: !body.is_empty(),
            body: body.into(),
            method_given: method.is_some(),
            ..RequestSpec::default()
        };
        if let Some(m) = method {
            spec.method = hyper::Method::from_bytes(m.as_bytes())
                .map_err(|_| format!("method `{m}`: not an HTTP method"))?;
        }
        for h in headers {
            let (name, value) = h
                .split_once(':')
                .ok_or_else(|| format!("header `{h}`: write `Name: value`"))?;
            let name = hyper::header::HeaderName::from_bytes(name.trim().as_bytes())
                .map_err(|_| format!("header `{h}`: `{}` is not a header name", name.trim()))?;
            if meshbench_scenario::is_reserved_header(name.as_str()) {
                let how = if name == "host" {
                    " (the target URL's authority is the Host: write the name in the URL, as --target http://NAME:PORT, with --server-name for TLS)"
                } else {
                    ""
                };
                return Err(format!(
                    "header `{h}`: meshbench writes `{name}` itself on every request{how}"
                ));
            }
            let value = hyper::header::HeaderValue::from_str(value.trim())
                .map_err(|_| format!("header `{h}`: the value is not valid in a header"))?;
            spec.headers.push((name, value));
        }
        Ok(spec)
    }

    /// A client's requests: its scenario `request:` under this spec's command-line parts (the
    /// method, body and path when given; headers added, replacing the file's of the same name).
    pub fn over(&self, file: Option<&meshbench_scenario::RequestTemplate>) -> Self {
        let Some(t) = file else {
            return self.clone();
        };
        let mut spec = self.clone();
        if !self.method_given
            && let Some(m) = t
                .method
                .as_deref()
                .and_then(|m| hyper::Method::from_bytes(m.as_bytes()).ok())
        {
            spec.method = m;
        }
        if !self.body_given && !t.body_bytes.is_empty() {
            spec.body = Bytes::from(t.body_bytes.as_ref().clone());
        }
        if self.path.is_none() {
            spec.path.clone_from(&t.path);
        }
        let mut headers: Vec<(hyper::header::HeaderName, hyper::header::HeaderValue)> = t
            .headers
            .iter()
            .filter_map(|(n, v)| {
                Some((
                    hyper::header::HeaderName::from_bytes(n.as_bytes()).ok()?,
                    hyper::header::HeaderValue::from_bytes(v.as_bytes()).ok()?,
                ))
            })
            .filter(|(n, _)| !self.headers.iter().any(|(m, _)| m == n))
            .collect();
        headers.extend(self.headers.iter().cloned());
        spec.headers = headers;
        spec
    }

    /// Sets the path of requests to endpoints given by address (`--path`).
    pub fn set_path(&mut self, path: &str) -> Result<(), String> {
        if !path.starts_with('/') || path.parse::<hyper::Uri>().is_err() {
            return Err(format!(
                "--path {path}: write an absolute path, such as /v1/items?page=2"
            ));
        }
        self.path = Some(path.to_owned());
        Ok(())
    }
}

impl Default for RequestSpec {
    fn default() -> Self {
        RequestSpec {
            method: hyper::Method::GET,
            headers: Vec::new(),
            body: Bytes::new(),
            path: None,
            method_given: false,
            body_given: false,
        }
    }
}

/// A connection to one endpoint, plain or TLS: HTTP/1.1 on the generator's own lean client
/// ([`crate::h1`]), HTTP/2 on hyper's.
enum Conn {
    H1(Box<crate::h1::Connection>),
    H2(H2),
}

/// What an exchange in a proxy's task was for.
#[derive(Clone, Copy, Debug)]
enum Job {
    /// An attempt of a request, on a connection of the Cluster's pool when it has one.
    Attempt(AttemptId, Option<PooledOn>),
    /// A balancer (Prequal) probe.
    Probe,
    /// A connection the Cluster's pool asked for ([`Output::Connect`]), and how long its TCP
    /// (and TLS) setup took, in ns.
    Connect(ConnectionId, u64),
}

/// The pooled connection an attempt went out on.
#[derive(Clone, Copy, Debug)]
struct PooledOn {
    connection: ConnectionId,
    /// The server had closed it after its last response, so the attempt dialled it again.
    redialled: bool,
}

/// What an exchange hands back: what it was, its outcome, the endpoint, the connection to
/// reuse, and the report read off the response.
type AttemptEnd = (Job, Outcome, usize, Option<Conn>, Reported);

/// An attempt in flight inside its proxy's task: no task spawn, no channel hop per request.
type AttemptFuture = std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<AttemptEnd, futures_util::future::Aborted>> + Send>,
>;

/// How to reach one endpoint.
#[derive(Clone)]
struct Target {
    addr: SocketAddr,
    /// The certificate name to check, when the target's URL gives it (else the TLS config's).
    server_name: Option<rustls::pki_types::ServerName<'static>>,
    /// The run's first TLS handshake failure, in words (shared by every target of the run).
    tls_failure: Arc<std::sync::OnceLock<String>>,
    uri: hyper::Uri,
    health: hyper::Uri,
    probe: hyper::Uri,
    /// HTTP/1.1 request heads (request line and `Host`) for `uri`, `health` and `probe`.
    work_head: Vec<u8>,
    /// The work requests' method, headers and body.
    spec: Arc<RequestSpec>,
    health_head: Vec<u8>,
    probe_head: Vec<u8>,
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
    /// A pool for `addrs`; with `urls` (outside targets, by endpoint index) each request
    /// goes to its URL's path with its authority as `Host`, else to the request's path (default
    /// `/work`) on the address.
    fn new(
        addrs: &[SocketAddr],
        urls: Option<&[crate::target::TargetUrl]>,
        tls: Option<&crate::tls::TlsClient>,
        http2: bool,
        tls_failure: &Arc<std::sync::OnceLock<String>>,
        spec: &Arc<RequestSpec>,
    ) -> Self {
        let mut pool = Pool {
            idle: Vec::new(),
            h2: Vec::new(),
            targets: Vec::new(),
        };
        for (i, a) in addrs.iter().enumerate() {
            pool.set(
                i,
                Self::target(
                    *a,
                    urls.and_then(|u| u.get(i)),
                    tls,
                    http2,
                    tls_failure,
                    spec,
                ),
            );
        }
        pool
    }

    /// How to reach `addr` (at `url`, when the target was given as one).
    fn target(
        addr: SocketAddr,
        url: Option<&crate::target::TargetUrl>,
        tls: Option<&crate::tls::TlsClient>,
        http2: bool,
        tls_failure: &Arc<std::sync::OnceLock<String>>,
        spec: &Arc<RequestSpec>,
    ) -> Arc<Target> {
        let scheme = if tls.is_some() { "https" } else { "http" };
        let authority = url.map_or_else(|| addr.to_string(), |u| u.authority.clone());
        let path = url.map_or(spec.path.as_deref().unwrap_or("/work"), |u| u.path.as_str());
        let spec = url.and_then(|u| u.request.as_ref()).unwrap_or(spec);
        Arc::new(Target {
            addr,
            server_name: url.and_then(|u| u.server_name.clone()),
            tls_failure: tls_failure.clone(),
            uri: format!("{scheme}://{authority}{path}")
                .parse()
                .expect("a valid URI"),
            health: format!("{scheme}://{authority}/health")
                .parse()
                .expect("a valid URI"),
            probe: format!("{scheme}://{authority}{}", workload::PROBE_PATH)
                .parse()
                .expect("a valid URI"),
            work_head: crate::h1::request_head_with(spec, path, &authority),
            spec: spec.clone(),
            health_head: crate::h1::request_head("/health", &authority),
            probe_head: crate::h1::request_head(workload::PROBE_PATH, &authority),
            tls: tls.cloned(),
            http2,
        })
    }

    /// Endpoint `ep` is reached through `target` from now on (a new one, or a discovered
    /// address in a slot that had none); its old connections are dropped.
    fn set(&mut self, ep: usize, target: Arc<Target>) {
        while self.targets.len() <= ep {
            self.targets.push(target.clone());
            self.idle.push(Vec::new());
            self.h2.push(None);
        }
        self.targets[ep] = target;
        self.idle[ep].clear();
        self.h2[ep] = None;
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
            let name = t
                .server_name
                .clone()
                .unwrap_or_else(|| tls.server_name.clone());
            let io = match tokio_rustls::TlsConnector::from(tls.config.clone())
                .connect(name, stream)
                .await
            {
                Ok(io) => io,
                Err(e) => {
                    if let Some(why) = crate::target::tls_failure(&e) {
                        let _ = t.tls_failure.set(format!("{}: {why}", t.addr));
                    }
                    return None;
                }
            };
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
/// The request's key (see `meshbench_scenario::workload::KEY_HEADER`).
static KEY_HEADER: hyper::header::HeaderName =
    hyper::header::HeaderName::from_static(workload::KEY_HEADER);
/// The calling proxy's zone.
static ZONE_HEADER: hyper::header::HeaderName =
    hyper::header::HeaderName::from_static(workload::ZONE_HEADER);
/// The calling proxy's client population.
static CLIENT_HEADER: hyper::header::HeaderName =
    hyper::header::HeaderName::from_static(workload::CLIENT_HEADER);
static SIDECAR_HEADER: hyper::header::HeaderName =
    hyper::header::HeaderName::from_static(workload::SIDECAR_HEADER);

/// What a request carries besides its path.
#[derive(Clone, Copy, Debug, Default)]
struct Ids {
    /// (request id, attempt number), for the backends' common random numbers.
    request: Option<(u64, u32)>,
    /// The request's key.
    key: Option<u32>,
    /// The proxy's zone, when the scenario has zones or latency.
    zone: Option<u16>,
    /// The proxy's client population, when a partition cuts one off.
    client: Option<u16>,
    /// The proxy's sidecar, when sidecars queue (`mesh.concurrency`).
    sidecar: Option<u32>,
    /// The attempt's W3C `traceparent` (requests only).
    trace: Option<[u8; 55]>,
}

/// Whether request `request` is sampled at rate `rate` (its traceparent's sampled flag, and the
/// trace log): a hash of its trace, so the same requests are sampled for a seed.
pub fn sampled(run_seed: u64, request: u64, rate: f64) -> bool {
    if rate >= 1.0 {
        return true;
    }
    let h = mesh_core::seed::mix(run_seed ^ mesh_core::seed::mix(request ^ 0x7361_6d70_6c65));
    ((h >> 11) as f64 / (1u64 << 53) as f64) < rate
}

/// The W3C Trace Context `traceparent` of attempt `attempt` of request `request`: version 00,
/// a trace id of the request (every attempt, retry and hedge of it shares it), a span id of
/// the attempt, sampled. Both ids are hashes of the run's seed, so they are stable for a seed.
/// [`traceparent_flagged`] clears the sampled flag.
pub fn traceparent(run_seed: u64, request: u64, attempt: u32) -> [u8; 55] {
    traceparent_flagged(run_seed, request, attempt, true)
}

/// [`traceparent`] with the sampled flag (`01`) set or not (`00`).
pub fn traceparent_flagged(run_seed: u64, request: u64, attempt: u32, sampled: bool) -> [u8; 55] {
    use mesh_core::seed::mix;
    let hi = mix(run_seed ^ mix(request ^ 0x7472_6163_6500_0000));
    let lo = mix(hi ^ request) | 1;
    let span = mix(lo ^ mix((u64::from(attempt) << 32) | 0x7370_616e)) | 1;
    // Written in place: no allocation per attempt.
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = *b"00-00000000000000000000000000000000-0000000000000000-01";
    if !sampled {
        out[54] = b'0';
    }
    for (at, v) in [(3, hi), (19, lo), (36, span)] {
        for i in 0..16 {
            out[at + i] = HEX[((v >> (60 - 4 * i)) & 0xf) as usize];
        }
    }
    out
}

/// The header that carries [`traceparent`].
static TRACEPARENT: hyper::header::HeaderName =
    hyper::header::HeaderName::from_static("traceparent");

/// Which report header a response is read for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Want {
    Nothing,
    Load,
    Probe,
}

/// A report read off a response.
#[derive(Clone, Copy, Debug)]
enum Reported {
    None,
    Load(LoadReport),
    Probe(ProbeReply),
}

fn read_report(value: Option<&[u8]>, want: Want) -> Reported {
    let Some(v) = value.and_then(|v| std::str::from_utf8(v).ok()) else {
        return Reported::None;
    };
    match want {
        Want::Nothing => Reported::None,
        Want::Load => workload::parse_load_report(v).map_or(Reported::None, Reported::Load),
        Want::Probe => workload::parse_probe(v).map_or(Reported::None, Reported::Probe),
    }
}

/// The path a request goes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Path {
    Work,
    Health,
    Probe,
}

/// Sends one request on `conn`: the status, the connection when it can carry another, and the
/// report asked for. The error is `true` when the request never got an answer because the
/// connection had been closed (a pooled connection the server closed while idle), so a fresh
/// connection may try again.
async fn exchange(
    conn: Conn,
    t: &Target,
    path: Path,
    ids: Ids,
    want: Want,
) -> Result<(u16, Option<Conn>, Reported), bool> {
    match conn {
        Conn::H1(mut c) => {
            let head = match path {
                Path::Work => &t.work_head,
                Path::Health => &t.health_head,
                Path::Probe => &t.probe_head,
            };
            let mut extra: [(&[u8], u64); 6] = [(b"", 0); 6];
            let mut n = 0;
            if let Some((request, retry)) = ids.request {
                extra[0] = (REQUEST_HEADER.as_str().as_bytes(), request);
                extra[1] = (ATTEMPT_HEADER.as_str().as_bytes(), u64::from(retry));
                n = 2;
            }
            if let Some(k) = ids.key {
                extra[n] = (KEY_HEADER.as_str().as_bytes(), u64::from(k));
                n += 1;
            }
            if let Some(z) = ids.zone {
                extra[n] = (ZONE_HEADER.as_str().as_bytes(), u64::from(z));
                n += 1;
            }
            if let Some(c) = ids.client {
                extra[n] = (CLIENT_HEADER.as_str().as_bytes(), u64::from(c));
                n += 1;
            }
            if let Some(c) = ids.sidecar {
                extra[n] = (SIDECAR_HEADER.as_str().as_bytes(), u64::from(c));
                n += 1;
            }
            let body: &[u8] = match path {
                Path::Work => &t.spec.body,
                _ => &[],
            };
            match c.get(head, &extra[..n], ids.trace.as_ref(), body).await {
                Ok((status, reusable)) => {
                    let report = match want {
                        Want::Nothing => Reported::None,
                        w => read_report(Some(c.report()).filter(|r| !r.is_empty()), w),
                    };
                    Ok((status, reusable.then_some(Conn::H1(c)), report))
                }
                Err(f) => Err(f == crate::h1::Failure::Closed),
            }
        }
        Conn::H2(mut s) => {
            let uri = match path {
                Path::Work => &t.uri,
                Path::Health => &t.health,
                Path::Probe => &t.probe,
            };
            let mut req = hyper::Request::builder().uri(uri.clone());
            if path == Path::Work {
                req = req.method(t.spec.method.clone());
                for (name, value) in &t.spec.headers {
                    req = req.header(name, value);
                }
            }
            if let Some((request, retry)) = ids.request {
                req = req
                    .header(&REQUEST_HEADER, request)
                    .header(&ATTEMPT_HEADER, retry);
            }
            if let Some(k) = ids.key {
                req = req.header(&KEY_HEADER, k);
            }
            if let Some(z) = ids.zone {
                req = req.header(&ZONE_HEADER, z);
            }
            if let Some(c) = ids.client {
                req = req.header(&CLIENT_HEADER, c);
            }
            if let Some(c) = ids.sidecar {
                req = req.header(&SIDECAR_HEADER, c);
            }
            if let Some(t) = &ids.trace {
                req = req.header(&TRACEPARENT, &t[..]);
            }
            let body = match path {
                Path::Work => t.spec.body.clone(),
                _ => Bytes::new(),
            };
            let req = req
                .body(http_body_util::Full::new(body))
                .expect("a valid request");
            if s.ready().await.is_err() {
                return Err(true);
            }
            let resp = s
                .send_request(req)
                .await
                .map_err(|e| e.is_closed() || e.is_canceled())?;
            let status = resp.status().as_u16();
            let header = match want {
                Want::Nothing => None,
                Want::Load => resp.headers().get(workload::LOAD_HEADER),
                Want::Probe => resp.headers().get(workload::PROBE_HEADER),
            };
            let report = read_report(header.map(|h| h.as_bytes()), want);
            // Read the body to its end without gathering it: the generator has no use for it.
            let mut body = resp.into_body();
            while let Some(frame) = body.frame().await {
                frame.map_err(|_| false)?;
            }
            Ok((status, Some(Conn::H2(s)), report))
        }
    }
}

/// One request on a pooled (or new) connection. A pooled connection the server has closed is
/// replaced once before the request counts as a local error.
async fn request_once(
    pooled: Option<Conn>,
    t: &Target,
    path: Path,
    ids: Ids,
    want: Want,
) -> (Option<u16>, Option<Conn>, Reported) {
    let mut pooled = pooled;
    for fresh in [false, true] {
        let conn = match pooled.take() {
            Some(c) if !fresh => c,
            _ => match connect(t).await {
                Some(c) => c,
                None => return (None, None, Reported::None),
            },
        };
        match exchange(conn, t, path, ids, want).await {
            Ok((status, conn, report)) => return (Some(status), conn, report),
            Err(stale) if stale && !fresh => continue,
            Err(_) => return (None, None, Reported::None),
        }
    }
    (None, None, Reported::None)
}

/// One attempt, classified the way outlier detection and retries see it, with the server's load
/// report when `want` asks for it.
async fn send_attempt(
    pooled: Option<Conn>,
    t: Arc<Target>,
    ids: Ids,
    want: Want,
) -> (Outcome, Option<Conn>, Reported) {
    match request_once(pooled, &t, Path::Work, ids, want).await {
        (Some(status), conn, report) => (status_outcome(status), conn, report),
        (None, _, _) => (Outcome::LocalError, None, Reported::None),
    }
}

/// An attempt's outcome from its response status, as outlier detection and retries see it.
fn status_outcome(status: u16) -> Outcome {
    match status {
        502..=504 => Outcome::GatewayError,
        500..=599 => Outcome::ServerError,
        _ => Outcome::Success,
    }
}

/// One attempt on a connection of the Cluster's pool (`connections:`): one exchange, no
/// silent second try on a fresh connection (the pool decides about connections). `None` when
/// the server closed the connection after its last response (`Connection: close`): a new one
/// is dialled here, and `redialled` says so.
async fn pooled_attempt(
    conn: Option<Conn>,
    t: Arc<Target>,
    ids: Ids,
    want: Want,
) -> (Outcome, Option<Conn>, Reported, bool) {
    let (conn, redialled) = match conn {
        Some(c) => (c, false),
        None => match connect(&t).await {
            Some(c) => (c, true),
            None => return (Outcome::LocalError, None, Reported::None, true),
        },
    };
    match exchange(conn, &t, Path::Work, ids, want).await {
        Ok((status, conn, report)) => (status_outcome(status), conn, report, redialled),
        Err(_) => (Outcome::LocalError, None, Reported::None, redialled),
    }
}

/// One active health check on a fresh connection (Envoy's `reuse_connection: false`); `ids`
/// carry its probe id (the backends' draws for it) and the proxy's zone (its network delay).
async fn health_probe(t: Arc<Target>, ids: Ids) -> ProbeResult {
    match request_once(None, &t, Path::Health, ids, Want::Nothing).await {
        (Some(200..=299), _, _) => ProbeResult::Pass,
        (Some(_), _, _) => ProbeResult::Fail,
        (None, _, _) => ProbeResult::Error,
    }
}

/// What to run.
#[derive(Clone, Debug)]
pub struct LiveOptions {
    /// Sweep point index (0 without a sweep).
    pub point: usize,
    /// Strategy index (into the point's strategies).
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
    /// Outside targets as URLs, by endpoint index (their paths, `Host` and certificate names);
    /// `None`: in-process backends (`/work` on each address).
    pub urls: Option<Arc<[crate::target::TargetUrl]>>,
    /// The work requests' method, headers and body.
    pub request: Arc<RequestSpec>,
    /// Where the run's Prometheus metrics are exposed while it runs (`--metrics-addr`).
    pub metrics: Option<Arc<crate::metrics::Registry>>,
    /// Endpoints from a discovery source, watched during the run (`--discover`): the source
    /// and what it gave before the run. `endpoints` is then ignored.
    pub discovery: Option<(crate::discovery::Source, Vec<crate::discovery::Discovered>)>,
    /// Share of requests traced (their `traceparent` sampled flag set); with `trace_log`, the
    /// sampled requests' attempts are kept for the trace log.
    pub trace_sample: f64,
    /// Keep a trace record of every sampled request ([`LiveRun::traces`]).
    pub trace_log: bool,
}

/// One attempt of a traced request.
#[derive(Clone, Debug, serde::Serialize)]
pub struct TracedAttempt {
    /// Its W3C span id (hex).
    pub span_id: String,
    /// Its number within the request (0 first).
    pub attempt: u32,
    /// `first`, `retry` or `hedge`.
    pub kind: &'static str,
    /// The endpoint's service, instance and address.
    pub service: String,
    /// The endpoint's instance index (discovery order for discovered ones).
    pub instance: u32,
    /// Its address.
    pub address: String,
    /// When it left, ms since the run's start.
    pub start_ms: f64,
    /// When it ended (answered, failed, cancelled), ms since the run's start; `None`: in
    /// flight at the end.
    pub end_ms: Option<f64>,
    /// `success`, `server_error`, `gateway_error`, `local_error`, `timed_out` (a per-try or
    /// request timeout cut it off) or `cancelled` (another attempt won, or the request ended).
    pub outcome: &'static str,
}

/// A traced (sampled) request: its trace id and every attempt.
#[derive(Clone, Debug, serde::Serialize)]
pub struct TracedRequest {
    /// The W3C trace id (hex) every attempt's `traceparent` carries.
    pub trace_id: String,
    /// The request id (`x-meshbench-request`).
    pub request: u64,
    /// The proxy that sent it.
    pub proxy: usize,
    /// Its intended send time, ms since the run's start.
    pub intended_ms: f64,
    /// When it finished, ms since the run's start.
    pub finished_ms: f64,
    /// How it ended (`success`, or the failure class).
    pub result: &'static str,
    /// Its attempts, in the order they left.
    pub attempts: Vec<TracedAttempt>,
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
    /// Arrivals of the schedule never released: the generator fell so far behind that the
    /// arrival period ended first.
    #[serde(default)]
    pub unsent: u64,
    /// The first TLS handshake failure, in words (unknown CA, name mismatch, expired, client
    /// certificate required), with the endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_failure: Option<String>,
    /// With a pooled policy (`connections:`): the connections its pools set up, and what the
    /// setup (TCP, then the TLS or mTLS handshake) took.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connections: Option<ConnectStats>,
}

/// The connections a live run's pools set up (`connections:` in the policy).
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct ConnectStats {
    /// Connections set up successfully.
    pub opened: u64,
    /// Setup time, from the dial to a connection ready for requests (TCP, then TLS and its
    /// handshake when the policy asks for it): mean, p50 and p99, microseconds.
    pub setup_us: [f64; 3],
}

/// Pacing error p99 beyond which an open-loop run's latencies say more about the machine than
/// about the system under test (the pacer releases late because it did not get a core).
pub const PACING_WARN_US: f64 = 1000.0;

impl LiveStats {
    /// A warning when the generator fell behind its schedule so far that arrivals were never
    /// sent: the achieved rate, not the target, is what the system under test saw.
    pub fn behind_warning(&self) -> Option<String> {
        (self.unsent > 0).then(|| {
            format!(
                "the generator fell behind its schedule: {} of {} arrivals were never sent; it achieved {:.0}/s of the {:.0}/s target (too few cores for this rate, or the endpoints push back); the results describe the achieved rate",
                self.unsent,
                self.scheduled + self.unsent,
                self.achieved_rps,
                self.target_rps
            )
        })
    }

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
    /// The sampled requests' traces, when asked for (by proxy, then finishing order).
    pub traces: Vec<TracedRequest>,
}

pub(crate) enum Msg {
    Arrive {
        seq: u64,
        intended_ns: u64,
    },
    Probe {
        probe: ProbeId,
        endpoint: EndpointId,
        result: ProbeResult,
    },
    PacerDone,
    /// Nothing happened, but outputs are waiting (the closed loop's first requests).
    Kick,
    /// Discovery changed the endpoints.
    Discovered(Arc<crate::discovery::Update>),
    /// A sidecar's call: its instance's script sends child request `id` (its id in the
    /// simulator too) and waits for whether it succeeded.
    Call {
        id: u64,
        done: tokio::sync::oneshot::Sender<bool>,
    },
    /// A sidecar's callers (the client proxies) have all ended: drain and stop.
    End,
}

/// What the client proxies share to end the sidecars once the last of them has ended (the
/// sidecars serve the clients' requests until then).
struct ClientsLeft {
    left: std::sync::atomic::AtomicUsize,
    sidecars: Vec<mpsc::UnboundedSender<Msg>>,
}

impl ClientsLeft {
    fn one_ended(&self) {
        if self.left.fetch_sub(1, Ordering::AcqRel) == 1 {
            for s in &self.sidecars {
                let _ = s.send(Msg::End);
            }
        }
    }
}

/// Per-proxy measurements: the shared recorder (behind a lock the sampler takes once per
/// window) and the live-only figures.
struct ProxyStats {
    hist_from_send: Histogram<u64>,
    /// How long each pooled connection took to set up (TCP, then TLS), ns.
    connect_hist: Histogram<u64>,
    sent: u64,
    completed: u64,
    issued: u64,
    recording: Option<Recording>,
    traces: Vec<TracedRequest>,
}

/// A proxy's recorder and the progress counters the sampler reads.
struct Shared {
    recorder: std::sync::Mutex<Recorder>,
    /// Where in-process tiers leave traced requests' critical paths, when services call
    /// services.
    book: Option<Arc<crate::critical::CriticalBook>>,
}

impl Shared {
    fn rec(&self) -> std::sync::MutexGuard<'_, Recorder> {
        self.recorder
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Runs one live run; `stop` ends it early (the results so far are returned, marked partial).
pub async fn run(loaded: &Loaded, opts: LiveOptions, stop: Arc<AtomicBool>) -> LiveRun {
    run_world(loaded, opts, stop, false).await
}

/// Runs the sidecars of `backends`' scripted instances (`meshbench serve`): the scenario's first
/// strategy's policies for every call from one tier to the next, over plain HTTP, until `stop`.
/// Their measurements are not kept (the generator that drives the served backends measures).
pub async fn serve_sidecars(
    loaded: &Loaded,
    backends: Arc<crate::Backends>,
    stop: Arc<AtomicBool>,
) {
    let mut endpoints = BTreeMap::new();
    for name in loaded.scenario.services.keys() {
        let addrs = backends.of(name).iter().map(|i| i.addr).collect();
        endpoints.insert(name.clone(), addrs);
    }
    let opts = LiveOptions {
        point: 0,
        strategy: 0,
        replication: 0,
        seed: loaded.scenario.seed,
        duration: Some(StdDuration::from_secs(86_400 * 365)),
        endpoints,
        record: false,
        progress: false,
        drain: StdDuration::from_secs(1),
        http2: false,
        shard: (0, 1),
        tls: None,
        connections: None,
        backends: Some(backends),
        urls: None,
        request: Arc::new(RequestSpec::default()),
        metrics: None,
        discovery: None,
        trace_sample: 0.0,
        trace_log: false,
    };
    run_world(loaded, opts, stop, true).await;
}

/// A live run, or with `sidecars_only` just its sidecars (no client sends a request; they serve
/// until `stop`).
async fn run_world(
    loaded: &Loaded,
    opts: LiveOptions,
    stop: Arc<AtomicBool>,
    sidecars_only: bool,
) -> LiveRun {
    let pt = &loaded.points[opts.point];
    let sc = &pt.scenario;
    let name = &pt.strategies[opts.strategy].0;
    // The run's world, built as the simulator builds it.
    let world = Workload::build(
        loaded,
        opts.point,
        opts.strategy,
        opts.replication,
        opts.seed,
    );
    let run_seed = world.seed;
    let duration_ns = opts
        .duration
        .map(|d| d.as_nanos() as u64)
        .or(sc.duration.map(|d| d.as_nanos()))
        .unwrap_or(10_000_000_000);
    let warmup = sc.warmup.as_nanos().min(duration_ns / 2);
    let start = StdInstant::now();
    // The fault timeline on in-process backends, in real time from the same origin as arrivals.
    let faults = opts
        .backends
        .as_ref()
        .filter(|_| !sc.faults.is_empty())
        .map(|b| b.run_faults(sc.fault_changes(), start));
    let membership = opts
        .backends
        .as_ref()
        .filter(|_| !world.presence.is_empty())
        .map(|b| b.run_membership(world.presence.clone(), start));
    // Zones and latency are applied by the backends; they need the proxy's zone.
    let send_zone = !world.network.is_zero() || world.zones.len() > 1;
    // A partition from a client population needs the caller's population.
    let send_client = sc.faults.iter().any(|f| {
        f.kind == meshbench_scenario::FaultKind::Partition
            && f.from.as_ref().is_some_and(|x| !x.starts_with("zone:"))
    });

    // Discovery: each address keeps one endpoint id for the run; the scenario's endpoints are
    // the first addresses found, the rest are added (and the unused removed) before traffic.
    let mut opts = opts;
    let discovery = opts.discovery.take().map(|(source, initial)| {
        let template = world
            .proxies
            .first()
            .and_then(|p| p.endpoints.first().cloned())
            .unwrap_or_default();
        let n = world.proxies.first().map_or(0, |p| p.endpoints.len());
        let mut book = crate::discovery::Book::new(n as u32, template);
        let first = Arc::new(book.apply(&initial));
        let unspecified = SocketAddr::from(([0, 0, 0, 0], 9));
        let addrs: Vec<SocketAddr> = (0..n)
            .map(|i| book.addr(i).unwrap_or(unspecified))
            .collect();
        for p in &world.proxies {
            opts.endpoints.insert(p.target.clone(), addrs.clone());
        }
        (source, book, first)
    });
    // The open-loop clients' target (a closed loop's rate is the system's answer), and this
    // shard's share of it.
    let target_rps: f64 = sc
        .clients
        .values()
        .filter(|c| !c.arrival.is_closed())
        .map(|c| c.arrival.mean_rate())
        .sum();
    let all_closed = sidecars_only
        || opts.connections.is_some()
        || sc.clients.values().all(|c| c.arrival.is_closed());
    let shard_target_rps = if all_closed {
        0.0
    } else {
        target_rps / f64::from(opts.shard.1.max(1))
    };
    // The run's metrics, counted by each proxy into its own cells and summed when scraped.
    let run_metrics = Arc::new(crate::metrics::RunMetrics::new(
        &sc.name,
        name,
        (opts.point, opts.replication),
        world.proxies.len(),
        world
            .stations
            .iter()
            .map(|x| crate::metrics::EndpointLabels {
                service: x.service.clone(),
                instance: x.index,
                address: opts
                    .endpoints
                    .get(&x.service)
                    .and_then(|a| a.get(x.index as usize))
                    .map_or_else(String::new, ToString::to_string),
            })
            .collect(),
        (duration_ns as f64 / 1e9, shard_target_rps),
    ));
    if let Some(r) = &opts.metrics {
        r.set(Some(run_metrics.clone()));
    }
    // Actors: one per proxy of the workload.
    let mut senders = Vec::new();
    let mut clocks = Vec::new();
    let mut all_shared: Vec<Arc<Shared>> = Vec::new();
    let tls_failure: Arc<std::sync::OnceLock<String>> = Arc::default();
    let mut actors: Vec<(Actor, mpsc::UnboundedReceiver<Msg>, bool)> = Vec::new();
    let n_proxies = world.proxies.len().max(1) as u32;
    for (i, plan) in world.proxies.iter().enumerate() {
        let addrs = opts
            .endpoints
            .get(&plan.target)
            .cloned()
            .unwrap_or_default();
        let mut cluster = plan.cluster();
        clocks.push(plan.arrivals());
        let shared = Arc::new(Shared {
            recorder: std::sync::Mutex::new(Recorder::for_world(&world, warmup)),
            book: opts
                .backends
                .as_ref()
                .filter(|_| world.proxies.len() > world.clients)
                .map(|b| b.book.clone()),
        });
        all_shared.push(shared.clone());
        let from_file = plan.closed_users().map(|u| u.0);
        let users = opts.connections.map_or(from_file.unwrap_or(0), |n| {
            n / n_proxies + u32::from((i as u32) < n % n_proxies)
        });
        let users = if sidecars_only { 0 } else { users };
        let closed = sidecars_only || opts.connections.is_some() || from_file.is_some();
        if opts.record {
            cluster.start_recording();
        }
        let (tx, rx) = mpsc::unbounded_channel();
        senders.push(tx.clone());
        let metrics = run_metrics.proxy(i);
        let cells = (0..addrs.len())
            .map(|e| metrics.endpoint(plan.offset as usize + e))
            .collect();
        let ctx = Actor {
            metrics,
            cells,
            discovered_from: discovery
                .is_some()
                .then_some((plan.endpoints.len(), world.stations.len())),
            first_discovery: discovery.as_ref().map(|d| d.2.clone()),
            trace_sample: opts.trace_sample,
            trace_log: opts.trace_log,
            tracing: HashMap::default(),
            traced_attempts: HashMap::default(),
            hedge_next: None,
            index: i,
            cluster,
            plan: plan.clone(),
            run_seed: run_seed.value(),
            zone: send_zone.then_some(plan.zone),
            client: send_client.then_some(plan.client_index),
            sidecar: world.sidecar_workers.map(|_| world.sidecar_of(i)),
            want_load: world.load_reports,
            addrs,
            urls: opts.urls.clone(),
            request: Arc::new(
                opts.request.over(
                    sc.clients
                        .get(&plan.client)
                        .and_then(|c| c.request.as_ref()),
                ),
            ),
            tls_failure: tls_failure.clone(),
            tls: opts.tls.clone(),
            tx,
            start,
            shared,
            drain: opts.drain,
            stop: stop.clone(),
            users,
            thinks: opts.connections.is_none() && from_file.is_some(),
            end_ns: duration_ns,
            issued: 0,
            // A pooled policy speaks its own protocol; otherwise `--http2` decides.
            http2: plan
                .config
                .connections
                .as_ref()
                .map_or(opts.http2, |c| c.protocol == mesh_core::Protocol::Http2),
            conns: HashMap::default(),
            replies: HashMap::default(),
            clients_left: None,
        };
        actors.push((ctx, rx, closed));
    }
    // Call graphs: each scripted instance's calls go to its sidecars (one per upstream), which
    // serve until the last client's proxy has ended.
    let sidecars: Vec<mpsc::UnboundedSender<Msg>> = world
        .proxies
        .iter()
        .zip(&senders)
        .filter(|(p, _)| p.caller.is_some())
        .map(|(_, s)| s.clone())
        .collect();
    if !sidecars.is_empty() {
        if let Some(b) = &opts.backends {
            b.install_sidecars(
                world
                    .stations
                    .iter()
                    .enumerate()
                    .filter(|(_, st)| !st.sidecars.is_empty())
                    .map(|(i, st)| {
                        let mine = st
                            .sidecars
                            .iter()
                            .map(|&p| senders[p as usize].clone())
                            .collect();
                        (i, mine)
                    })
                    .collect(),
            );
        }
        let clients = actors.iter().filter(|a| a.0.plan.caller.is_none()).count();
        let left = Arc::new(ClientsLeft {
            left: std::sync::atomic::AtomicUsize::new(clients),
            sidecars,
        });
        if clients == 0 {
            left.left.store(1, Ordering::Relaxed);
            left.one_ended();
        }
        for a in actors.iter_mut().filter(|a| a.0.plan.caller.is_none()) {
            // Serving only, the sidecars end with `stop`.
            if !sidecars_only {
                a.0.clients_left = Some(left.clone());
            }
        }
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

    // Progress and the time series: every sample period, each proxy's window is taken from its
    // recorder and the windows are merged into one sample.
    let period = sc.sample_period.as_nanos().max(100_000_000);
    let finished = Arc::new(AtomicBool::new(false));
    // An interrupt must reach proxies with nothing else to wake them (a closed loop waiting on
    // a silent endpoint): once `stop` is set, each gets a kick and starts its bounded drain.
    // When the interrupt came (ns since the start; u64::MAX: none), within 50 ms.
    let stopped_at = Arc::new(std::sync::atomic::AtomicU64::new(u64::MAX));
    let kicker = {
        let senders = senders.clone();
        let (stop, finished, stopped_at) = (stop.clone(), finished.clone(), stopped_at.clone());
        tokio::spawn(async move {
            while !finished.load(Ordering::Relaxed) {
                tokio::time::sleep(StdDuration::from_millis(50)).await;
                if stop.load(Ordering::Relaxed) {
                    stopped_at.store(start.elapsed().as_nanos() as u64, Ordering::Relaxed);
                    for s in &senders {
                        let _ = s.send(Msg::Kick);
                    }
                    return;
                }
            }
        })
    };
    // The discovery watcher: every new set of endpoints goes to every proxy as membership
    // changes; a source that fails keeps the last set (said once per distinct error).
    let watcher = discovery.map(|(source, mut book, first)| {
        let senders = senders.clone();
        let m = run_metrics.clone();
        let (n, base, offset) = (
            world.proxies.first().map_or(0, |p| p.endpoints.len()),
            world.stations.len(),
            world.proxies.first().map_or(0, |p| p.offset as usize),
        );
        let service = world
            .proxies
            .first()
            .map(|p| p.target.clone())
            .unwrap_or_default();
        let name = move |m: &crate::metrics::RunMetrics, id: u32, addr: SocketAddr| {
            let station = if (id as usize) < n {
                offset + id as usize
            } else {
                base + id as usize - n
            };
            m.name_endpoint(
                station,
                crate::metrics::EndpointLabels {
                    service: service.clone(),
                    instance: id,
                    address: addr.to_string(),
                },
            );
        };
        for (id, addr) in &first.new {
            name(&m, *id, *addr);
        }
        tokio::spawn(async move {
            let mut last_error = String::new();
            source
                .watch(move |r| match r {
                    Ok(eps) => {
                        last_error.clear();
                        let up = book.apply(&eps);
                        if up.changes.is_empty() {
                            return;
                        }
                        for (id, addr) in &up.new {
                            name(&m, *id, *addr);
                        }
                        let up = Arc::new(up);
                        for s in &senders {
                            let _ = s.send(Msg::Discovered(up.clone()));
                        }
                    }
                    Err(e) => {
                        if e != last_error {
                            eprintln!("warning: discovery: {e} (keeping the last endpoints)");
                            last_error = e;
                        }
                    }
                })
                .await;
        })
    });
    let n_endpoints = world.stations.len();
    let sampler = {
        let shared = all_shared.clone();
        let stop = stop.clone();
        let finished = finished.clone();
        let progress = opts.progress;
        let target = target_rps;
        tokio::spawn(async move {
            let mut series: Vec<(Sample, Vec<u64>)> = Vec::new();
            let mut k = 1u64;
            loop {
                let at = start + StdDuration::from_nanos(k * period);
                tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await;
                let mut window = Window::new(n_endpoints);
                for s in &shared {
                    window.merge(&s.rec().take_window());
                }
                let sample = window.sample((k * period) as f64 / 1e9);
                if progress {
                    let secs = period as f64 / 1e9;
                    eprintln!(
                        "t={:>6.1}s  completed {:>8.0}/s (target {:>8.0}/s)  p99 {:>8.2} ms  errors {:>5}",
                        sample.t_s,
                        sample.requests as f64 / secs,
                        target,
                        sample.p99_ms,
                        sample.errors
                    );
                }
                series.push((sample, window.per_endpoint));
                k += 1;
                if stop.load(Ordering::Relaxed)
                    || finished.load(Ordering::Relaxed)
                    || k * period > duration_ns
                {
                    return series;
                }
            }
        })
    };

    let (scheduled, on_time, pacing, unsent) = if all_closed {
        // Closed loop: each proxy task keeps its virtual users busy itself.
        drop(senders);
        let empty = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).expect("bounds");
        (0, 0, empty, 0)
    } else {
        // The pacer: a dedicated thread releasing arrivals at their intended times (a closed
        // population's clocks release none).
        let pacer = {
            let stop = stop.clone();
            let shard = opts.shard;
            let m = run_metrics.clone();
            std::thread::spawn(move || {
                pace(clocks, senders, start, duration_ns, &stop, shard, &m.pacer)
            })
        };
        tokio::task::spawn_blocking(move || pacer.join().expect("pacer"))
            .await
            .expect("pacer thread")
    };
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
    if let Some(b) = &opts.backends {
        b.install_sidecars(Vec::new());
    }
    finished.store(true, Ordering::Relaxed);
    kicker.abort();
    if let Some(w) = watcher {
        w.abort();
    }
    if let Some(f) = faults {
        f.abort();
    }
    if let Some(m) = membership {
        m.abort();
    }
    let series = sampler.await.unwrap_or_default();

    // Merge the proxies' recorders, in proxy order.
    let mut total = Recorder::for_world(&world, warmup);
    for s in &all_shared {
        total.merge(&s.rec());
    }
    for (sample, per_endpoint) in series {
        total.push_sample(sample, per_endpoint);
    }
    let mut from_send = latency_histogram();
    let mut connect = latency_histogram();
    let closed = all_closed;
    let mut stats = LiveStats {
        target_rps: shard_target_rps,
        scheduled,
        ..LiveStats::default()
    };
    let mut recordings = Vec::new();
    let mut traces = Vec::new();
    for (_, p) in joined {
        traces.extend(p.traces);
        let _ = from_send.add(&p.hist_from_send);
        let _ = connect.add(&p.connect_hist);
        stats.sent += p.sent;
        stats.completed += p.completed;
        stats.scheduled += p.issued;
        recordings.extend(p.recording);
    }
    let id = RunId {
        point: opts.point,
        coords: pt.coords.clone(),
        strategy: name.clone(),
        replication: opts.replication,
        seed: run_seed.value(),
    };
    // An interrupted run measured until the interrupt, not for the planned duration: its rates
    // are over the time it really ran.
    let stopped = stopped_at.load(Ordering::Relaxed);
    let partial = stop_was_early(&stop, start, duration_ns) || stopped < duration_ns;
    let ran_ns = if partial {
        stopped
            .min(start.elapsed().as_nanos() as u64)
            .clamp(1, duration_ns)
    } else {
        duration_ns
    };
    let mut result = total.finish(id, ran_ns.saturating_sub(warmup).max(1) as f64 / 1e9);
    stats.latency_from_intended_ms = [
        quantile_ms(&result.latency, 0.5),
        quantile_ms(&result.latency, 0.99),
    ];
    stats.latency_from_send_ms = [quantile_ms(&from_send, 0.5), quantile_ms(&from_send, 0.99)];
    if !connect.is_empty() {
        stats.connections = Some(ConnectStats {
            opened: connect.len(),
            setup_us: [
                connect.mean() / 1e3,
                connect.value_at_quantile(0.5) as f64 / 1e3,
                connect.value_at_quantile(0.99) as f64 / 1e3,
            ],
        });
    }
    stats.never_completed = scheduled.saturating_sub(stats.completed);
    stats.partial = partial;
    stats.unsent = unsent;
    stats.tls_failure = tls_failure.get().cloned();
    stats.achieved_rps = if closed {
        stats.completed as f64 / (ran_ns as f64 / 1e9)
    } else {
        on_time as f64 / (ran_ns as f64 / 1e9)
    };
    let q = |p: f64| {
        if pacing.is_empty() {
            0.0
        } else {
            pacing.value_at_quantile(p) as f64 / 1e3
        }
    };
    stats.pacing_error_us = [q(0.5), q(0.99), pacing.max() as f64 / 1e3];
    result.live = Some(LiveCounts {
        scheduled: stats.scheduled,
        sent: stats.sent,
        completed: stats.completed,
        never_completed: stats.never_completed,
    });
    LiveRun {
        result,
        stats,
        recordings,
        traces,
    }
}

/// An attempt outcome's name in the trace log.
fn outcome_name(o: Outcome) -> &'static str {
    match o {
        Outcome::Success => "success",
        Outcome::ServerError => "server_error",
        Outcome::GatewayError => "gateway_error",
        Outcome::LocalError => "local_error",
        Outcome::Timeout => "timed_out",
    }
}

fn stop_was_early(stop: &AtomicBool, start: StdInstant, duration_ns: u64) -> bool {
    stop.load(Ordering::Relaxed) && start.elapsed().as_nanos() < u128::from(duration_ns)
}

/// How late past the arrival period the pacer still releases arrivals that were due in it.
const END_GRACE: StdDuration = StdDuration::from_millis(50);

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
    metrics: &crate::metrics::PacerMetrics,
) -> (u64, u64, Histogram<u64>, u64) {
    let shards = u64::from(shards.max(1));
    let mine = |seq: u64| seq % shards == u64::from(shard);
    let end = start + StdDuration::from_nanos(duration_ns);
    let mut on_time = 0;
    let mut pacing = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).expect("bounds");
    let mut heap = std::collections::BinaryHeap::new();
    for (i, (clock, rng)) in clocks.iter_mut().enumerate() {
        let t = clock.next(0, workload::next_uniform(rng));
        heap.push(std::cmp::Reverse((t, i, 0u64)));
    }
    let mut scheduled = 0;
    let mut unsent = 0;
    while let Some(std::cmp::Reverse((t, i, seq))) = heap.pop() {
        if t >= duration_ns || stop.load(Ordering::Relaxed) {
            break;
        }
        // Behind the schedule past the end of the arrival period (and a grace for the last
        // arrivals a busy machine releases a little late): what is left is never sent (counted),
        // instead of a run that outlasts its duration many times over.
        if StdInstant::now() >= end + END_GRACE {
            heap.push(std::cmp::Reverse((t, i, seq)));
            while let Some(std::cmp::Reverse((t, i, seq))) = heap.pop() {
                if t >= duration_ns {
                    continue;
                }
                unsent += u64::from(mine(seq));
                let (clock, rng) = &mut clocks[i];
                let next = clock.next(t, workload::next_uniform(rng));
                heap.push(std::cmp::Reverse((next, i, seq + 1)));
            }
            metrics.unsent(unsent);
            break;
        }
        if !mine(seq) {
            let (clock, rng) = &mut clocks[i];
            let next = clock.next(t, workload::next_uniform(rng));
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
        metrics.released(late);
        scheduled += 1;
        on_time += u64::from(released <= end);
        let _ = senders[i].send(Msg::Arrive {
            seq,
            intended_ns: t,
        });
        let (clock, rng) = &mut clocks[i];
        let next = clock.next(t, workload::next_uniform(rng));
        heap.push(std::cmp::Reverse((next, i, seq + 1)));
    }
    for s in &senders {
        let _ = s.send(Msg::PacerDone);
    }
    (scheduled, on_time, pacing, unsent)
}

struct Actor {
    index: usize,
    /// This proxy's metrics, and its endpoints' cells by endpoint index.
    metrics: Arc<crate::metrics::ProxyMetrics>,
    cells: Vec<Arc<crate::metrics::EndpointCells>>,
    /// Under discovery: the scenario's endpoint count and the world's station count, since
    /// discovered endpoints beyond the scenario's are stations from there on (`None`: every
    /// endpoint is a world station, membership-timeline newcomers too).
    discovered_from: Option<(usize, usize)>,
    /// Discovery's first changes, applied before any request.
    first_discovery: Option<Arc<crate::discovery::Update>>,
    /// Share of requests traced, and whether their traces are kept.
    trace_sample: f64,
    trace_log: bool,
    /// Traces of sampled requests in flight, by request id.
    tracing: HashMap<u64, TracedRequest>,
    /// Where each traced attempt is in its request's trace (request, index).
    traced_attempts: HashMap<AttemptId, (u64, usize)>,
    /// The attempt a `HedgeSent` just announced (its `Send` follows).
    hedge_next: Option<AttemptId>,
    cluster: Cluster,
    plan: ProxyPlan,
    run_seed: u64,
    /// The zone sent to the backends (when the scenario has zones or latency).
    zone: Option<u16>,
    /// The client population sent to the backends (when a partition cuts one off).
    client: Option<u16>,
    /// Its sidecar sent to the backends (when sidecars queue).
    sidecar: Option<u32>,
    /// Whether the balancer reads load reports (ORCA): parse them off responses.
    want_load: bool,
    addrs: Vec<SocketAddr>,
    urls: Option<Arc<[crate::target::TargetUrl]>>,
    tls_failure: Arc<std::sync::OnceLock<String>>,
    request: Arc<RequestSpec>,
    tls: Option<crate::tls::TlsClient>,
    tx: mpsc::UnboundedSender<Msg>,
    start: StdInstant,
    shared: Arc<Shared>,
    drain: StdDuration,
    stop: Arc<AtomicBool>,
    /// Closed loop: virtual users on this proxy (0: open loop, arrivals come from the pacer).
    users: u32,
    /// Closed loop: whether users think between requests (`process: closed` in the file; not
    /// with `--connections`, whose users send at once).
    thinks: bool,
    /// Closed loop: no new request after this (ns since the start).
    end_ns: u64,
    /// Closed loop: requests issued.
    issued: u64,
    /// Use the shared HTTP/2 client instead of per-task HTTP/1.1 connections.
    http2: bool,
    /// With a pooled policy (`connections:`): the Cluster's connections, by id, with their
    /// endpoint; the connection itself is out while an HTTP/1.1 attempt uses it (or while it
    /// is being set up).
    conns: HashMap<ConnectionId, (usize, Option<Conn>)>,
    /// A sidecar (its requests are its instance's script's calls): where each call's result
    /// goes, by request id. Empty for a client's proxy.
    replies: HashMap<u64, tokio::sync::oneshot::Sender<bool>>,
    /// A client's proxy: the count that ends the sidecars after the last client.
    clients_left: Option<Arc<ClientsLeft>>,
}

/// What a proxy keeps per request in flight: intended and actual release times (ns), whether
/// its first attempt left, and its key.
#[derive(Clone, Copy, Debug)]
struct InFlight {
    intended: u64,
    released: u64,
    sent: bool,
    key: Option<(u32, u64)>,
}

impl Actor {
    /// A request arrives: its key (a common random number of its id), then the Cluster.
    fn request(
        &mut self,
        seq: u64,
        intended_ns: u64,
        now: Instant,
        intended: &mut HashMap<u64, InFlight>,
    ) {
        let request = ProxyPlan::request_id(self.index as u32, seq);
        let key = self.plan.key(self.run_seed, request);
        intended.insert(
            request.0,
            InFlight {
                intended: intended_ns,
                released: now.as_nanos(),
                sent: false,
                key,
            },
        );
        self.shared.rec().arrived(intended_ns);
        if let Some(b) = &self.shared.book
            && meshbench_scenario::graph::traced(request.0)
        {
            b.want(request.0);
        }
        self.cluster.handle_input(
            Input::Request {
                request,
                hash: key.map(|k| k.1),
            },
            now,
        );
    }

    /// Closed loop: one more request from a virtual user, meant for `intended_ns` (when its
    /// think time ended) and sent now.
    fn issue(&mut self, intended_ns: u64, intended: &mut HashMap<u64, InFlight>) {
        let now = self.now();
        let seq = self.issued;
        self.issued += 1;
        self.request(seq, intended_ns.min(now.as_nanos()), now, intended);
    }

    fn now(&self) -> Instant {
        Instant::from_nanos(self.start.elapsed().as_nanos() as u64)
    }

    /// Starts the trace record of an attempt of a sampled request.
    #[allow(clippy::too_many_arguments)]
    fn trace_attempt(
        &mut self,
        attempt: AttemptId,
        request: u64,
        number: u32,
        hedge: bool,
        ep: usize,
        traceparent: &[u8; 55],
        now: Instant,
    ) {
        let text = std::str::from_utf8(traceparent).unwrap_or_default();
        let (trace_id, span_id) = (text[3..35].to_owned(), text[36..52].to_owned());
        let t = self
            .tracing
            .entry(request)
            .or_insert_with(|| TracedRequest {
                trace_id,
                request,
                proxy: self.index,
                intended_ms: 0.0,
                finished_ms: 0.0,
                result: "",
                attempts: Vec::new(),
            });
        let addr = self
            .addrs
            .get(ep)
            .map_or_else(String::new, ToString::to_string);
        t.attempts.push(TracedAttempt {
            span_id,
            attempt: number,
            kind: match (number, hedge) {
                (0, _) => "first",
                (_, true) => "hedge",
                _ => "retry",
            },
            service: self.plan.target.clone(),
            instance: ep as u32,
            address: addr,
            start_ms: now.as_nanos() as f64 / 1e6,
            end_ms: None,
            outcome: "in_flight",
        });
        let at = t.attempts.len() - 1;
        self.traced_attempts.insert(attempt, (request, at));
    }

    /// Ends a traced attempt's record (no-op for attempts not traced).
    fn trace_end(&mut self, attempt: AttemptId, outcome: &'static str, now: Instant) {
        if let Some((request, at)) = self.traced_attempts.remove(&attempt)
            && let Some(a) = self
                .tracing
                .get_mut(&request)
                .and_then(|t| t.attempts.get_mut(at))
        {
            a.end_ms = Some(now.as_nanos() as f64 / 1e6);
            a.outcome = outcome;
        }
    }

    /// The station (the run's endpoint index) of this proxy's endpoint `ep`: the world's, or,
    /// for an endpoint discovery added, one after the world's stations.
    fn station(&self, ep: usize) -> usize {
        match self.discovered_from {
            Some((n, base)) if ep >= n => base + ep - n,
            _ => self.plan.offset as usize + ep,
        }
    }

    /// Discovery changed the endpoints: new ones get a pool slot, metric cells and a place in
    /// the recorder, then every change goes to the Cluster as a membership input.
    fn discovered(&mut self, up: &crate::discovery::Update, pool: &mut Pool, now: Instant) {
        for &(id, addr) in &up.new {
            let id = id as usize;
            let target = Pool::target(
                addr,
                None,
                self.tls.as_ref(),
                self.http2,
                &self.tls_failure,
                &self.request,
            );
            pool.set(id, target);
            while self.addrs.len() <= id {
                self.addrs.push(addr);
            }
            self.addrs[id] = addr;
            while self.cells.len() <= id {
                let station = self.station(self.cells.len());
                self.cells.push(self.metrics.endpoint(station));
            }
            let station = self.station(id);
            self.shared.rec().grow(
                station,
                meshbench_report::EndpointStats {
                    service: self.plan.target.clone(),
                    instance: id as u32,
                    ..Default::default()
                },
            );
        }
        for c in &up.changes {
            self.cluster.handle_input(Input::Membership(c.clone()), now);
        }
    }

    async fn run(
        mut self,
        mut rx: mpsc::UnboundedReceiver<Msg>,
        record: bool,
        closed: bool,
    ) -> ProxyStats {
        let mut st = ProxyStats {
            hist_from_send: latency_histogram(),
            connect_hist: latency_histogram(),
            sent: 0,
            completed: 0,
            issued: 0,
            recording: None,
            traces: Vec::new(),
        };
        let mut outputs = Vec::new();
        let mut intended: HashMap<u64, InFlight> = HashMap::default();
        let mut inflight: HashMap<AttemptId, futures_util::future::AbortHandle> =
            HashMap::default();
        let mut pending: futures_util::stream::FuturesUnordered<AttemptFuture> =
            futures_util::stream::FuturesUnordered::new();
        // Connections live on the proxy's own runtime and die with it.
        let mut pool = Pool::new(
            &self.addrs,
            self.urls.as_deref(),
            self.tls.as_ref(),
            self.http2,
            &self.tls_failure,
            &self.request,
        );
        let mut pacer_done = false;
        let mut drain_deadline: Option<tokio::time::Instant> = None;
        if let Some(up) = self.first_discovery.take() {
            self.discovered(&up, &mut pool, Instant::EPOCH);
        }
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
        // Closed loop: when each user sends next (ns since the start). Users from the file start
        // with a think time, drawn as the simulator draws it; `--connections` users send at once.
        let mut wakeups: std::collections::BinaryHeap<std::cmp::Reverse<u64>> =
            std::collections::BinaryHeap::new();
        if self.thinks {
            let (_, mut rng) = self.plan.arrivals();
            if let Some((_, think)) = self.plan.closed_users() {
                for _ in 0..self.users {
                    let u = workload::next_uniform(&mut rng);
                    wakeups.push(std::cmp::Reverse(think.quantile_ns(u).round() as u64));
                }
            }
        } else {
            for _ in 0..self.users {
                let now = self.now().as_nanos();
                self.issue(now, &mut intended);
            }
        }
        // A sidecar has no users either, but serves calls until its clients have ended.
        if closed && self.users == 0 && self.plan.caller.is_none() {
            pacer_done = true;
        }
        let mut kick = self.users > 0;
        // The next membership change this proxy will hear.
        let mut heard_next = 0usize;
        let far = tokio::time::Instant::now() + StdDuration::from_secs(86_400 * 365);
        let mut armed = far;
        let sleep = tokio::time::sleep_until(far);
        tokio::pin!(sleep);
        loop {
            let timer = self.cluster.poll_timeout().map(|t| {
                tokio::time::Instant::from_std(self.start + StdDuration::from_nanos(t.as_nanos()))
            });
            let wake = wakeups
                .peek()
                .map(|w| tokio::time::Instant::from_std(self.start + StdDuration::from_nanos(w.0)));
            let heard =
                self.plan.membership.get(heard_next).map(|m| {
                    tokio::time::Instant::from_std(self.start + StdDuration::from_nanos(m.0))
                });
            let until = [timer, drain_deadline, wake, heard]
                .into_iter()
                .flatten()
                .min();
            // One timer entry, moved only when the deadline changes (a fresh `Sleep` per
            // iteration would register and cancel a timer for every request).
            let until = until.unwrap_or(far);
            if until != armed {
                sleep.as_mut().reset(until);
                armed = until;
            }
            enum Event {
                Msg(Msg),
                Done(AttemptEnd),
                Timer,
            }
            let ev = if std::mem::take(&mut kick) {
                Event::Msg(Msg::Kick)
            } else {
                tokio::select! {
                m = rx.recv() => match m {
                    Some(m) => Event::Msg(m),
                    None => Event::Timer,
                },
                Some(done) = futures_util::StreamExt::next(&mut pending), if !pending.is_empty() => {
                    match done {
                        Ok(end) => Event::Done(end),
                        // Aborted by a Cancel: nothing to report.
                        Err(_) => continue,
                    }
                }
                () = &mut sleep => Event::Timer,
                }
            };
            let now = self.now();
            match ev {
                Event::Done((job, outcome, endpoint, conn, report)) => {
                    match (job, conn) {
                        // A pooled connection goes back to its slot, unless the Cluster
                        // closed it meanwhile; an HTTP/2 one never left it.
                        (Job::Attempt(_, Some(on)), Some(c @ Conn::H1(_))) => {
                            if let Some((_, slot)) = self.conns.get_mut(&on.connection) {
                                *slot = Some(c);
                            }
                        }
                        (Job::Connect(connection, _), Some(c)) => {
                            if let Some((_, slot)) = self.conns.get_mut(&connection) {
                                *slot = Some(c);
                            }
                        }
                        (Job::Attempt(_, Some(_)) | Job::Connect(..), _) => {}
                        (_, Some(c)) => pool.give(endpoint, c),
                        (_, None) => {}
                    }
                    match job {
                        Job::Connect(connection, took_ns) => {
                            if outcome == Outcome::Success {
                                let _ = st.connect_hist.record(took_ns.max(1));
                                self.cluster
                                    .handle_input(Input::Connected { connection }, now);
                            } else {
                                self.shared.rec().note("connections_refused");
                                self.cluster
                                    .handle_input(Input::ConnectFailed { connection }, now);
                            }
                        }
                        Job::Attempt(attempt, on) => {
                            if on.is_some_and(|o| o.redialled) {
                                // The server had closed it: what a pool learns from the close.
                                self.shared.rec().note("connections_opened");
                            }
                            // As the simulator counts at the instance: 5xx, refused, reset.
                            if outcome.is_failure() {
                                self.shared.rec().endpoint_error(self.station(endpoint));
                                self.cells[endpoint].error();
                            }
                            if inflight.remove(&attempt).is_some() {
                                self.cells[endpoint].ended();
                                self.trace_end(attempt, outcome_name(outcome), now);
                                let load = match report {
                                    Reported::Load(l) => Some(l),
                                    _ => None,
                                };
                                self.cluster.handle_input(
                                    Input::AttemptDone {
                                        attempt,
                                        outcome,
                                        load,
                                    },
                                    now,
                                );
                            }
                        }
                        Job::Probe => {
                            if let Reported::Probe(reply) = report {
                                self.cluster.handle_input(
                                    Input::BalancerProbeDone {
                                        endpoint: EndpointId(endpoint as u32),
                                        reply,
                                    },
                                    now,
                                );
                            }
                        }
                    }
                }
                Event::Msg(Msg::Arrive { seq, intended_ns }) => {
                    self.request(seq, intended_ns, now, &mut intended);
                }
                Event::Msg(Msg::Probe {
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
                Event::Msg(Msg::Kick) => {}
                Event::Msg(Msg::Discovered(up)) => self.discovered(&up, &mut pool, now),
                // Closed-loop users end by themselves, not with the open-loop schedule.
                Event::Msg(Msg::PacerDone) if self.users > 0 || self.plan.caller.is_some() => {}
                Event::Msg(Msg::Call { id, done }) => {
                    self.replies.insert(id, done);
                    self.cluster.handle_input(
                        Input::Request {
                            request: mesh_core::RequestId(id),
                            hash: None,
                        },
                        now,
                    );
                }
                Event::Msg(Msg::End) => {
                    pacer_done = true;
                    drain_deadline = Some(tokio::time::Instant::now() + self.drain);
                }
                Event::Msg(Msg::PacerDone) => {
                    pacer_done = true;
                    drain_deadline = Some(tokio::time::Instant::now() + self.drain);
                }
                Event::Timer => {
                    if drain_deadline.is_some_and(|d| tokio::time::Instant::now() >= d) {
                        break;
                    }
                    // Membership changes this proxy hears now (after its propagation delays).
                    while let Some((at, change)) = self.plan.membership.get(heard_next) {
                        if *at > now.as_nanos() {
                            break;
                        }
                        let change = change.clone();
                        heard_next += 1;
                        self.cluster.handle_input(Input::Membership(change), now);
                    }
                    while let Some(&std::cmp::Reverse(at)) = wakeups.peek() {
                        if at > now.as_nanos() {
                            break;
                        }
                        wakeups.pop();
                        if !pacer_done {
                            self.issue(at, &mut intended);
                        }
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
                if let Output::Finished { request, .. } = &o {
                    if self.users > 0 && !pacer_done {
                        if now.as_nanos() < self.end_ns && !self.stop.load(Ordering::Relaxed) {
                            // The user thinks, then sends its next request.
                            let think = self.plan.think_ns(self.run_seed, *request);
                            if think == 0 {
                                self.issue(now.as_nanos(), &mut intended);
                            } else {
                                wakeups.push(std::cmp::Reverse(now.as_nanos() + think));
                            }
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
        if let Some(c) = &self.clients_left {
            c.one_ended();
        }
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
        intended: &mut HashMap<u64, InFlight>,
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
                connection,
                ..
            } => {
                if self.addrs.get(endpoint.index()).is_none() {
                    return;
                }
                let mut key = None;
                if let Some(e) = intended.get_mut(&request.0) {
                    if !e.sent {
                        e.sent = true;
                        st.sent += 1;
                    }
                    key = e.key.map(|k| k.0);
                }
                self.metrics.attempt(*retry);
                self.cells[endpoint.index()].sent();
                self.shared
                    .rec()
                    .attempt(self.plan.zone, self.station(endpoint.index()), key);
                let sampled = sampled(self.run_seed, request.0, self.trace_sample);
                let trace = traceparent_flagged(self.run_seed, request.0, *retry, sampled);
                let hedge = self.hedge_next.take() == Some(*attempt);
                if sampled && self.trace_log {
                    self.trace_attempt(
                        *attempt,
                        request.0,
                        *retry,
                        hedge,
                        endpoint.index(),
                        &trace,
                        now,
                    );
                }
                let ids = Ids {
                    request: Some((request.0, *retry)),
                    key,
                    zone: self.zone,
                    client: self.client,
                    sidecar: self.sidecar,
                    trace: Some(trace),
                };
                let want = if self.want_load {
                    Want::Load
                } else {
                    Want::Nothing
                };
                let (attempt_id, ep) = (*attempt, endpoint.index());
                let target = pool.targets[ep].clone();
                let fut: std::pin::Pin<Box<dyn std::future::Future<Output = AttemptEnd> + Send>> =
                    match connection {
                        // The Cluster's own connection: an HTTP/1.1 one is out of its slot
                        // while the attempt runs; HTTP/2 streams share theirs.
                        Some(connection) => {
                            let conn = self.conns.get_mut(connection).and_then(|(_, c)| match c {
                                Some(Conn::H2(h)) => Some(Conn::H2(h.clone())),
                                other => other.take(),
                            });
                            let connection = *connection;
                            Box::pin(async move {
                                let (outcome, conn, report, redialled) =
                                    pooled_attempt(conn, target, ids, want).await;
                                let on = PooledOn {
                                    connection,
                                    redialled,
                                };
                                (
                                    Job::Attempt(attempt_id, Some(on)),
                                    outcome,
                                    ep,
                                    conn,
                                    report,
                                )
                            })
                        }
                        None => {
                            let pooled = pool.take(ep);
                            Box::pin(async move {
                                let (outcome, conn, report) =
                                    send_attempt(pooled, target, ids, want).await;
                                (Job::Attempt(attempt_id, None), outcome, ep, conn, report)
                            })
                        }
                    };
                let (fut, handle) = futures_util::future::abortable(fut);
                pending.push(Box::pin(fut));
                inflight.insert(attempt_id, handle);
            }
            // A pooled policy's connections (`connections:`): dialled when the Cluster asks,
            // counted as the simulator counts them, closed when it says.
            Output::Connect {
                connection,
                endpoint,
            } => {
                self.shared.rec().note("connections_opened");
                let (connection, ep) = (*connection, endpoint.index());
                self.conns.insert(connection, (ep, None));
                let target = pool.targets.get(ep).cloned();
                pending.push(Box::pin(async move {
                    let started = StdInstant::now();
                    let conn = match &target {
                        Some(t) => connect(t).await,
                        None => None,
                    };
                    let took = started.elapsed().as_nanos() as u64;
                    let outcome = if conn.is_some() {
                        Outcome::Success
                    } else {
                        Outcome::LocalError
                    };
                    Ok((
                        Job::Connect(connection, took),
                        outcome,
                        ep,
                        conn,
                        Reported::None,
                    ))
                }));
            }
            Output::Disconnect { connection, .. } => {
                self.shared.rec().note("connections_closed");
                self.conns.remove(connection);
            }
            Output::Cancel {
                attempt,
                endpoint,
                timed_out,
            } => {
                if let Some(h) = inflight.remove(attempt) {
                    h.abort();
                    self.cells[endpoint.index()].ended();
                    self.trace_end(
                        *attempt,
                        if *timed_out { "timed_out" } else { "cancelled" },
                        now,
                    );
                    if *timed_out {
                        self.cells[endpoint.index()].error();
                        // A timeout is the endpoint's error, as a 5xx is (the simulator too).
                        self.shared
                            .rec()
                            .endpoint_error(self.station(endpoint.index()));
                    }
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
                let ids = Ids {
                    request: Some((probe.0, meshbench_scenario::CHECK_ATTEMPT)),
                    key: None,
                    zone: self.zone,
                    client: self.client,
                    sidecar: None,
                    trace: None,
                };
                tokio::spawn(async move {
                    let result =
                        match tokio::time::timeout(timeout, health_probe(target, ids)).await {
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
            Output::BalancerProbe { endpoint } => {
                // A Prequal probe: a request to the backend's probe path on a pooled
                // connection; its answer comes back like an attempt's end.
                let ep = endpoint.index();
                if self.addrs.get(ep).is_none() {
                    return;
                }
                let pooled = pool.take(ep);
                let target = pool.targets[ep].clone();
                let ids = Ids {
                    request: None,
                    key: None,
                    zone: self.zone,
                    client: self.client,
                    sidecar: None,
                    trace: None,
                };
                pending.push(Box::pin(async move {
                    let (status, conn, report) =
                        request_once(pooled, &target, Path::Probe, ids, Want::Probe).await;
                    let outcome = if status.is_some() {
                        Outcome::Success
                    } else {
                        Outcome::LocalError
                    };
                    Ok((Job::Probe, outcome, ep, conn, report))
                }));
            }
            Output::Finished {
                request,
                result,
                attempts,
                started,
            } => {
                if self.plan.caller.is_some() {
                    // A sidecar's call: measured on its edge, and its script goes on.
                    self.tracing.remove(&request.0);
                    self.shared.rec().call_finished(
                        self.plan.edge,
                        *result,
                        *attempts,
                        started.as_nanos(),
                        now.as_nanos(),
                    );
                    if let Some(done) = self.replies.remove(&request.0) {
                        let _ = done.send(result.is_success());
                    }
                    return;
                }
                let Some(f) = intended.remove(&request.0) else {
                    return;
                };
                if let Some(b) = &self.shared.book
                    && meshbench_scenario::graph::traced(request.0)
                    && let Some(parts) = b.take(request.0)
                    && result.is_success()
                {
                    self.shared
                        .rec()
                        .critical_path(&parts, f.intended, now.as_nanos());
                }
                // The client's edge of the call graph, as the simulator measures it.
                self.shared.rec().call_finished(
                    self.plan.edge,
                    *result,
                    *attempts,
                    f.intended,
                    now.as_nanos(),
                );
                st.completed += 1;
                if let Some(mut t) = self.tracing.remove(&request.0) {
                    t.intended_ms = f.intended as f64 / 1e6;
                    t.finished_ms = now.as_nanos() as f64 / 1e6;
                    t.result = result.class();
                    st.traces.push(t);
                }
                self.metrics
                    .finished(*result, now.as_nanos().saturating_sub(f.intended));
                let measured =
                    self.shared
                        .rec()
                        .finished(*result, *attempts, f.intended, now.as_nanos());
                if measured {
                    let from_send = now.as_nanos().saturating_sub(f.released).max(1);
                    let _ = st.hist_from_send.record(from_send);
                }
            }
            Output::Event(e) => {
                use mesh_core::PolicyEvent;
                use mesh_core::outlier::OutlierEvent;
                let cell = |ep: &EndpointId| self.cells.get(ep.index());
                match e {
                    PolicyEvent::Outlier(OutlierEvent::Ejected { endpoint, .. }) => {
                        if let Some(c) = cell(endpoint) {
                            c.ejected(true);
                        }
                    }
                    PolicyEvent::Outlier(OutlierEvent::Unejected { endpoint }) => {
                        if let Some(c) = cell(endpoint) {
                            c.ejected(false);
                        }
                    }
                    PolicyEvent::HealthChanged { endpoint, healthy } => {
                        if let Some(c) = cell(endpoint) {
                            c.unhealthy(!healthy);
                        }
                    }
                    PolicyEvent::HedgeSent { attempt, .. } => {
                        self.metrics.hedge();
                        self.hedge_next = Some(*attempt);
                    }
                    _ => {}
                }
                if let Some((n, base)) = self.discovered_from {
                    // Discovered endpoints sit after the world's stations.
                    let offset = self.plan.offset as usize;
                    self.shared
                        .rec()
                        .event_mapped(e, |ep| if ep < n { offset + ep } else { base + ep - n });
                } else {
                    self.shared.rec().event(self.plan.offset as usize, e);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_traceparent_is_w3c_hex_and_shared_by_a_requests_attempts() {
        use mesh_core::seed::mix;
        let (seed, request) = (7u64, 42u64);
        let hi = mix(seed ^ mix(request ^ 0x7472_6163_6500_0000));
        let lo = mix(hi ^ request) | 1;
        let span = mix(lo ^ mix((1u64 << 32) | 0x7370_616e)) | 1;
        let want = format!("00-{hi:016x}{lo:016x}-{span:016x}-01");
        assert_eq!(&traceparent(seed, request, 1)[..], want.as_bytes());
        assert_eq!(
            traceparent(seed, request, 0)[..36],
            traceparent(seed, request, 2)[..36]
        );
        assert_ne!(traceparent(seed, request, 0), traceparent(seed, request, 2));
    }

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
