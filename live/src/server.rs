//! Test backends: each instance of a scenario's services as a real HTTP server on loopback.
//!
//! An instance emulates its queueing station: at most `concurrency` requests in service, at most
//! `queue_limit` waiting (beyond that, 503 at once), a service time drawn from its distribution
//! (times its slowdown), and a 500 at its error rate. The draw for a request comes from the
//! `x-meshbench-request` / `x-meshbench-attempt` headers hashed with the scenario seed, the same
//! common random numbers the simulator uses, so a live run and a simulated one see the same
//! service times. `GET /health` answers 200 at once. An instance can be killed (its listener and
//! every connection close: clients see refused or reset connections) and slowed down on demand.

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use meshbench_scenario::{Dist, Scenario};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

/// One instance's behaviour, shared by its connections.
#[derive(Debug)]
struct Station {
    dist: Dist,
    slowdown_bits: AtomicU64,
    error_rate_bits: AtomicU64,
    permits: Semaphore,
    queue_limit: u32,
    waiting: AtomicU32,
    seed: u64,
    timer: crate::timer::PreciseTimer,
}

/// A running instance.
#[derive(Debug)]
pub struct Instance {
    /// Service name.
    pub service: String,
    /// Instance index within the service.
    pub index: u32,
    /// Where it listens.
    pub addr: SocketAddr,
    station: Arc<Station>,
    alive: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Instance {
    /// Stops the instance: the listener closes and every open connection is dropped.
    pub fn kill(&self) {
        self.alive.store(false, Ordering::SeqCst);
        self.task.abort();
    }

    /// Multiplies its service time by `factor` from now on.
    pub fn set_slowdown(&self, factor: f64) {
        self.station
            .slowdown_bits
            .store(factor.to_bits(), Ordering::Relaxed);
    }

    /// Makes it answer 500 to this share of requests from now on.
    pub fn set_error_rate(&self, rate: f64) {
        self.station
            .error_rate_bits
            .store(rate.clamp(0.0, 1.0).to_bits(), Ordering::Relaxed);
    }

    /// Whether it still serves.
    pub fn is_alive(&self) -> bool {
        self.alive.load(Ordering::SeqCst)
    }
}

/// Every instance of a scenario, serving.
#[derive(Debug)]
pub struct Backends {
    /// Instances, service by service in name order, then by index.
    pub instances: Vec<Instance>,
}

impl Backends {
    /// Starts every instance of every service on `bind` (port chosen by the OS), plain HTTP.
    pub async fn start(scenario: &Scenario, bind: IpAddr, seed: u64) -> std::io::Result<Self> {
        Self::start_with(scenario, bind, seed, None).await
    }

    /// Starts every instance; with `tls`, every port speaks TLS (ALPN h2 and http/1.1, and
    /// client certificates required when the config says so).
    pub async fn start_with(
        scenario: &Scenario,
        bind: IpAddr,
        seed: u64,
        tls: Option<Arc<rustls::ServerConfig>>,
    ) -> std::io::Result<Self> {
        let timer = crate::timer::PreciseTimer::start();
        let mut instances = Vec::new();
        for (name, svc) in &scenario.services {
            for i in 0..svc.instances {
                let o = svc.overrides.get(&i);
                let station = Arc::new(Station {
                    dist: o
                        .and_then(|o| o.service_time.clone())
                        .unwrap_or_else(|| svc.service_time.clone()),
                    slowdown_bits: AtomicU64::new(
                        o.and_then(|o| o.slowdown).unwrap_or(1.0).to_bits(),
                    ),
                    error_rate_bits: AtomicU64::new(
                        o.and_then(|o| o.error_rate)
                            .unwrap_or(svc.error_rate)
                            .get()
                            .to_bits(),
                    ),
                    permits: Semaphore::new(
                        o.and_then(|o| o.concurrency).unwrap_or(svc.concurrency) as usize,
                    ),
                    queue_limit: svc.queue_limit.unwrap_or(u32::MAX),
                    waiting: AtomicU32::new(0),
                    seed,
                    timer: timer.clone(),
                });
                let listener = TcpListener::bind((bind, 0)).await?;
                let addr = listener.local_addr()?;
                let alive = Arc::new(AtomicBool::new(true));
                let task = tokio::spawn(accept_loop(listener, station.clone(), tls.clone()));
                instances.push(Instance {
                    service: name.clone(),
                    index: i,
                    addr,
                    station,
                    alive,
                    task,
                });
            }
        }
        Ok(Backends { instances })
    }

    /// The instances of `service`, in index order.
    pub fn of(&self, service: &str) -> Vec<&Instance> {
        self.instances
            .iter()
            .filter(|i| i.service == service)
            .collect()
    }

    /// Stops every instance.
    pub fn shutdown(&self) {
        for i in &self.instances {
            i.kill();
        }
    }
}

async fn accept_loop(
    listener: TcpListener,
    station: Arc<Station>,
    tls: Option<Arc<rustls::ServerConfig>>,
) {
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    let mut conns = JoinSet::new();
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let station = station.clone();
        let acceptor = acceptor.clone();
        conns.spawn(async move {
            let svc = hyper::service::service_fn(move |req| handle(req, station.clone()));
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            match acceptor {
                None => {
                    let _ = builder.serve_connection(TokioIo::new(stream), svc).await;
                }
                Some(a) => {
                    // A failed handshake (no or a bad client certificate) just closes.
                    if let Ok(tls) = a.accept(stream).await {
                        let _ = builder.serve_connection(TokioIo::new(tls), svc).await;
                    }
                }
            }
        });
        // Reap finished connections so the set stays small.
        while conns.try_join_next().is_some() {}
    }
}

use meshbench_scenario::crn_uniform as uniform;

fn header_u64(req: &Request<Incoming>, name: &str) -> Option<u64> {
    req.headers().get(name)?.to_str().ok()?.parse().ok()
}

fn reply(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *r.status_mut() = status;
    r
}

async fn handle(
    req: Request<Incoming>,
    st: Arc<Station>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    if req.uri().path() == "/health" {
        return Ok(reply(StatusCode::OK, "ok\n"));
    }
    let request = header_u64(&req, "x-meshbench-request").unwrap_or_else(|| {
        // A request from elsewhere: draw from a counter so it still gets a fresh sample.
        static NEXT: AtomicU64 = AtomicU64::new(1 << 62);
        NEXT.fetch_add(1, Ordering::Relaxed)
    });
    let attempt = header_u64(&req, "x-meshbench-attempt").unwrap_or(0) as u32;
    // Queue limit: requests beyond the concurrency wait; past the limit, 503 at once.
    let permit = match st.permits.try_acquire() {
        Ok(p) => p,
        Err(_) => {
            if st.waiting.fetch_add(1, Ordering::SeqCst) >= st.queue_limit {
                st.waiting.fetch_sub(1, Ordering::SeqCst);
                return Ok(reply(StatusCode::SERVICE_UNAVAILABLE, "queue full\n"));
            }
            let p = st.permits.acquire().await.expect("never closed");
            st.waiting.fetch_sub(1, Ordering::SeqCst);
            p
        }
    };
    let slowdown = f64::from_bits(st.slowdown_bits.load(Ordering::Relaxed));
    let ns = st.dist.quantile_ns(uniform(st.seed, request, attempt, 1)) * slowdown;
    let until = std::time::Instant::now() + std::time::Duration::from_nanos(ns.max(0.0) as u64);
    st.timer.sleep_until(until).await;
    drop(permit);
    let error_rate = f64::from_bits(st.error_rate_bits.load(Ordering::Relaxed));
    if error_rate > 0.0 && uniform(st.seed, request, attempt, 2) < error_rate {
        return Ok(reply(StatusCode::INTERNAL_SERVER_ERROR, "injected error\n"));
    }
    Ok(reply(StatusCode::OK, "ok\n"))
}

/// Starts the control endpoint of `backends` on `bind` (port chosen by the OS): faults on
/// demand while a scenario is served.
///
/// * `GET /instances`: one line per instance: `service/index address alive`.
/// * `POST /kill?service=S&instance=I`: the instance stops (refused connections from now on).
/// * `POST /slowdown?service=S&instance=I&factor=F`: service time x F.
/// * `POST /errors?service=S&instance=I&rate=P`: 500 to a share P of requests.
pub async fn start_control(
    backends: Arc<Backends>,
    bind: IpAddr,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = TcpListener::bind((bind, 0)).await?;
    let addr = listener.local_addr()?;
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let backends = backends.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req| {
                    let backends = backends.clone();
                    async move { Ok::<_, Infallible>(control(&backends, &req)) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    Ok((addr, task))
}

fn control(backends: &Backends, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    let text = |status: StatusCode, body: String| {
        let mut r = Response::new(Full::new(Bytes::from(body)));
        *r.status_mut() = status;
        r
    };
    let params: std::collections::BTreeMap<&str, &str> = req
        .uri()
        .query()
        .unwrap_or("")
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .collect();
    if req.uri().path() == "/instances" {
        let mut out = String::new();
        for i in &backends.instances {
            out.push_str(&format!(
                "{}/{} {} {}\n",
                i.service,
                i.index,
                i.addr,
                if i.is_alive() { "alive" } else { "killed" }
            ));
        }
        return text(StatusCode::OK, out);
    }
    let target = params
        .get("service")
        .zip(params.get("instance").and_then(|i| i.parse::<u32>().ok()))
        .and_then(|(s, i)| {
            backends
                .instances
                .iter()
                .find(|x| x.service == *s && x.index == i)
        });
    let Some(inst) = target else {
        return text(
            StatusCode::NOT_FOUND,
            "name an instance: ?service=NAME&instance=INDEX (GET /instances lists them)\n".into(),
        );
    };
    let number = |k: &str| params.get(k).and_then(|v| v.parse::<f64>().ok());
    match req.uri().path() {
        "/kill" => {
            inst.kill();
            text(
                StatusCode::OK,
                format!("{}/{} killed\n", inst.service, inst.index),
            )
        }
        "/slowdown" => match number("factor").filter(|f| f.is_finite() && *f > 0.0) {
            Some(f) => {
                inst.set_slowdown(f);
                text(
                    StatusCode::OK,
                    format!("{}/{} slowdown {f}\n", inst.service, inst.index),
                )
            }
            None => text(
                StatusCode::BAD_REQUEST,
                "factor must be a number > 0\n".into(),
            ),
        },
        "/errors" => match number("rate").filter(|r| (0.0..=1.0).contains(r)) {
            Some(r) => {
                inst.set_error_rate(r);
                text(
                    StatusCode::OK,
                    format!("{}/{} error rate {r}\n", inst.service, inst.index),
                )
            }
            None => text(StatusCode::BAD_REQUEST, "rate must be in 0..=1\n".into()),
        },
        other => text(
            StatusCode::NOT_FOUND,
            format!("unknown control `{other}`: /instances, /kill, /slowdown, /errors\n"),
        ),
    }
}
