//! Test backends: each instance of a scenario's services as a real HTTP server on loopback.
//!
//! An instance emulates its queueing station: at most `concurrency` requests in service, at most
//! `queue_limit` waiting (beyond that, 503 at once), a service time drawn from its distribution
//! (times its slowdown), and a 500 at its error rate. The draw for a request comes from the
//! `x-meshbench-request` / `x-meshbench-attempt` headers hashed with the scenario seed, the same
//! common random numbers the simulator uses, so a live run and a simulated one see the same
//! service times. `GET /health` is a request too: it sees the faults as a request does. An instance can be killed (its listener and
//! every connection close: clients see refused or reset connections), restarted, slowed down and
//! made to fail on demand, and [`Backends::run_faults`] plays the scenario's fault timeline in
//! real time with the simulator's semantics (see `meshbench_scenario::Fault`).

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use meshbench_scenario::graph::{Op, Script, child_request};
use meshbench_scenario::workload::{
    CLIENT_HEADER, LOAD_HEADER, LoadMeter, NetworkModel, PROBE_HEADER, PROBE_PATH, SIDECAR_HEADER,
    ZONE_HEADER, format_load_report, format_probe,
};
use meshbench_scenario::{Dist, FaultChange, FaultState, Scenario};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

/// One instance's behaviour, shared by its connections.
#[derive(Debug)]
struct Station {
    dist: Dist,
    /// The instance's own slowdown and error rate (the scenario's overrides), which faults
    /// multiply and raise.
    base_slowdown: f64,
    base_error_rate: f64,
    slowdown_bits: AtomicU64,
    error_rate_bits: AtomicU64,
    /// Share of requests answered 503 at once (a fast-failing instance).
    fast_fail_bits: AtomicU64,
    permits: Semaphore,
    queue_limit: u32,
    waiting: AtomicU32,
    seed: u64,
    timer: crate::timer::PreciseTimer,
    /// Its zone, and the network between zones (the scenario's latency, applied here).
    zone: u16,
    net: Arc<NetworkModel>,
    /// What it reports about its load: ORCA headers on responses, Prequal probe answers.
    meter: std::sync::Mutex<LoadMeter>,
    /// The meter's time origin.
    epoch: std::time::Instant,
    concurrency: u32,
    /// `GET /health` waits for a free server like a request (`services.X.health_check_queues`).
    checks_queue: bool,
    /// A request whose client gave up is served anyway (`services.X.serves_abandoned`).
    serves_abandoned: bool,
    /// `GET /health` fails at this rate instead (`services.X.health_error_rate`).
    health_error_rate: Option<f64>,
    /// Faults beyond the atomics' (cold start, partition, network), with the run's start;
    /// `None` without any, so the common path takes no lock.
    extra: std::sync::RwLock<Option<(FaultState, std::time::Instant)>>,
    has_extra: AtomicBool,
    /// `service/index`, for the trace log.
    label: String,
    /// Where every request's `traceparent` is logged, with the run's label, once
    /// [`Backends::log_traces`] is called.
    trace_log: Arc<std::sync::OnceLock<(std::sync::Mutex<std::fs::File>, String)>>,
    /// Serving: an instance the membership timeline has not started yet, or has stopped,
    /// refuses new requests (and finishes those it has).
    present: AtomicBool,
    /// A capacity dip: the task holding the servers taken away, and how many it holds.
    dip: std::sync::Mutex<(Option<tokio::task::JoinHandle<()>>, Arc<AtomicU32>)>,
    /// Requests answered, by path kind and answer ([`PATHS`] x [`CODES`]), and in flight.
    served: [AtomicU64; PATHS.len() * CODES.len()],
    in_flight: AtomicU64,
    /// Its service's script, when it calls other services, and the sidecars its calls leave
    /// through (one per upstream, in [`Script::upstreams`] order), installed by the live run
    /// that owns them ([`Backends::install_sidecars`]); a call with none installed fails.
    script: Option<Arc<Script>>,
    sidecars: std::sync::RwLock<Option<Arc<[Sidecar]>>>,
    /// The time a request's attempt spends in its caller's sidecar and in this instance's
    /// (`mesh.outbound`, `mesh.inbound`), when either costs: added to its way in, as the
    /// simulator adds it.
    sidecar_cost: Option<Arc<(Dist, Dist)>>,
    /// Sidecars that queue (`mesh.concurrency`): every sidecar's workers, numbered as
    /// [`meshbench_scenario::workload::Workload::sidecar_of`] numbers them (shared by every
    /// instance of the run). An attempt waits for a worker of its caller's sidecar (named by its
    /// header) for its outbound time, and for one of this instance's for its inbound time.
    sidecar_workers: Option<Arc<[Semaphore]>>,
    /// A successful response's body (`services.X.response_size`; empty: a few bytes of text),
    /// and the time its bytes take on the modeled link back (`network.bandwidth`), ns.
    response: Bytes,
    response_ns: u64,
    /// Its index in [`Backends::instances`] (the world's station index), and where traced
    /// requests' critical paths are left ([`Backends::book`]).
    station: u32,
    book: Arc<crate::critical::CriticalBook>,
}

/// A traced attempt's script so far: how long it waited on the calls that ended its groups,
/// and those calls' critical paths.
#[derive(Default)]
struct Trace {
    waited: u64,
    parts: crate::critical::Parts,
}

/// Where a script's call goes: its instance's sidecar for that upstream (a live run's proxy).
type Sidecar = tokio::sync::mpsc::UnboundedSender<crate::driver::Msg>;

/// The kinds of request an instance counts in its `/metrics`.
const PATHS: [&str; 3] = ["work", "health", "probe"];
/// The answers an instance counts (`refused`: closed unanswered, as a partition or a stopped
/// instance does).
const CODES: [&str; 5] = ["200", "500", "503", "other", "refused"];

/// The Prometheus exposition of `stations` (with whether each is up), family by family.
fn render_backends(stations: &[(&Station, bool)], open_metrics: bool) -> String {
    let mut o = crate::metrics::Exposition::new(open_metrics);
    let labels: Vec<String> = stations
        .iter()
        .map(|(st, _)| {
            let (service, index) = st.label.split_once('/').unwrap_or((&st.label, ""));
            format!(
                "service=\"{}\",instance=\"{index}\"",
                crate::metrics::escape(service)
            )
        })
        .collect();
    let get = |a: &AtomicU64| a.load(Ordering::Relaxed) as f64;
    o.family(
        "meshbench_backend_requests",
        "counter",
        "Requests the instance answered, by path (work, health, probe) and answer code (refused: closed unanswered).",
        "",
    );
    for ((st, _), l) in stations.iter().zip(&labels) {
        for (p, path) in PATHS.iter().enumerate() {
            for (c, code) in CODES.iter().enumerate() {
                o.sample(
                    "meshbench_backend_requests_total",
                    &format!("{l},path=\"{path}\",code=\"{code}\""),
                    get(&st.served[p * CODES.len() + c]),
                );
            }
        }
    }
    type Gauge = (&'static str, &'static str, fn(&Station, bool) -> f64);
    let gauges: [Gauge; 4] = [
        (
            "meshbench_backend_in_flight_requests",
            "Requests inside the instance now (queued or in service).",
            |st, _| st.in_flight.load(Ordering::Relaxed) as f64,
        ),
        (
            "meshbench_backend_up",
            "1 while the instance serves (not killed; started by the membership timeline).",
            |st, up| f64::from(u8::from(up && st.present.load(Ordering::Relaxed))),
        ),
        (
            "meshbench_backend_slowdown_ratio",
            "The instance's service-time multiplier now (overrides and faults).",
            |st, _| f64::from_bits(st.slowdown_bits.load(Ordering::Relaxed)),
        ),
        (
            "meshbench_backend_injected_error_ratio",
            "The share of requests the instance answers 500 now (overrides and faults).",
            |st, _| f64::from_bits(st.error_rate_bits.load(Ordering::Relaxed)),
        ),
    ];
    for (name, help, f) in gauges {
        o.family(name, "gauge", help, "");
        for ((st, up), l) in stations.iter().zip(&labels) {
            o.sample(name, l, f(st, *up));
        }
    }
    o.finish()
}

/// The faults of [`Station::extra`] that act on one request.
#[derive(Clone, Copy)]
struct Extra {
    state: FaultState,
    start: std::time::Instant,
}

impl Extra {
    /// The cold-start multiplier now.
    fn cold(&self) -> f64 {
        self.state
            .cold_factor(self.start.elapsed().as_nanos() as u64)
    }
}

impl Station {
    fn extra(&self) -> Option<Extra> {
        if !self.has_extra.load(Ordering::Acquire) {
            return None;
        }
        let g = self
            .extra
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        g.map(|(state, start)| Extra { state, start })
    }

    fn now_ns(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }

    fn meter(&self) -> std::sync::MutexGuard<'_, LoadMeter> {
        self.meter
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// One network hop of `request`'s attempt between zones `from` and `to`, as the simulator
    /// draws it.
    /// `extra_ns` is a network fault's delay on top.
    /// `ns` of a sidecar's work: in one of `workers`' (waiting first come, first served for a
    /// free one), or as a plain delay without.
    async fn work_in(&self, workers: Option<&Semaphore>, ns: u64) {
        let _worker = match workers {
            Some(w) => w.acquire().await.ok(),
            None => None,
        };
        if ns > 0 {
            let until = std::time::Instant::now() + std::time::Duration::from_nanos(ns);
            self.timer.sleep_until(until).await;
        }
    }

    async fn hop(&self, from: u16, to: u16, request: u64, attempt: u32, lane: Lane, extra_ns: u64) {
        let ns = self
            .net
            .delay_ns(from, to, self.seed, request, attempt, lane)
            + extra_ns;
        if ns > 0 {
            let until = std::time::Instant::now() + std::time::Duration::from_nanos(ns);
            self.timer.sleep_until(until).await;
        }
    }
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
    task: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
    tls: Option<Arc<rustls::ServerConfig>>,
}

impl Instance {
    /// Stops the instance: the listener closes and every open connection is dropped.
    pub fn kill(&self) {
        self.alive.store(false, Ordering::SeqCst);
        let now = self.station.now_ns();
        *self.station.meter() = LoadMeter::new(self.station.concurrency, now);
        if let Some(t) = self.task.lock().ok().and_then(|mut t| t.take()) {
            t.abort();
        }
    }

    /// Starts a killed instance again on its address, empty (no queue, no connections).
    pub async fn restart(&self) -> std::io::Result<()> {
        if self.is_alive() {
            return Ok(());
        }
        // The killed listener closes when its task is next polled: retry the bind briefly.
        let mut tries = 0;
        let listener = loop {
            match TcpListener::bind(self.addr).await {
                Ok(l) => break l,
                Err(e) if tries >= 100 => return Err(e),
                Err(_) => {
                    tries += 1;
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                }
            }
        };
        let task = tokio::spawn(accept_loop(
            listener,
            self.station.clone(),
            self.tls.clone(),
        ));
        if let Ok(mut t) = self.task.lock() {
            *t = Some(task);
        }
        self.alive.store(true, Ordering::SeqCst);
        Ok(())
    }

    /// Answers 503 at once, without queueing or service, to this share of requests from now on.
    pub fn set_fast_fail(&self, rate: f64) {
        self.station
            .fast_fail_bits
            .store(rate.clamp(0.0, 1.0).to_bits(), Ordering::Relaxed);
    }

    /// Puts the instance in the state the fault timeline gives it: stopped or serving, with
    /// its own slowdown and error rate changed by the faults, its capacity dipped, cold, cut off
    /// from some callers or behind a slow network. `start` is the run's time zero (a cold start's
    /// window is in run time).
    pub async fn apply(&self, state: FaultState, start: std::time::Instant) -> std::io::Result<()> {
        self.set_slowdown(self.station.base_slowdown * state.slowdown);
        self.set_error_rate(self.station.base_error_rate.max(state.error_rate));
        self.set_fast_fail(state.fast_fail);
        let extra = state.cold.2 != 1.0
            || state.cut_zones != 0
            || state.cut_clients != 0
            || state.net_zones != 0;
        *self
            .station
            .extra
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = extra.then_some((state, start));
        self.station.has_extra.store(extra, Ordering::Release);
        self.set_capacity(state.capacity);
        match (state.down, self.is_alive()) {
            (true, true) => self.kill(),
            (false, false) => self.restart().await?,
            _ => {}
        }
        Ok(())
    }

    /// Serves at most `limit` requests at once from now on (at most its concurrency; requests
    /// in service finish): the servers taken away are permits a task acquires and holds.
    pub fn set_capacity(&self, limit: u32) {
        let st = &self.station;
        let mut dip = st
            .dip
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(t) = dip.0.take() {
            t.abort();
        }
        let held = dip.1.swap(0, Ordering::SeqCst);
        st.permits.add_permits(held as usize);
        let take = st.concurrency.saturating_sub(limit);
        if take > 0 {
            let (station, count) = (st.clone(), dip.1.clone());
            dip.0 = Some(tokio::spawn(async move {
                // As requests in service finish, their servers go to the dip first.
                if let Ok(p) = station.permits.acquire_many(take).await {
                    p.forget();
                    count.store(take, Ordering::SeqCst);
                }
            }));
        }
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
    /// Where the instances leave traced requests' critical paths for their callers.
    pub book: Arc<crate::critical::CriticalBook>,
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
        let (zones, stations) = meshbench_scenario::workload::stations(scenario);
        if stations.len() > MAX_SERVED_INSTANCES {
            return Err(std::io::Error::other(format!(
                "the scenario has {} instances; in-process backends serve at most {MAX_SERVED_INSTANCES} (one loopback port and listener each): run it in the simulator, or lower `instances`",
                stations.len()
            )));
        }
        let timer = crate::timer::PreciseTimer::start();
        let net = Arc::new(NetworkModel::of(scenario, &zones));
        let epoch = std::time::Instant::now();
        let trace_log: Arc<std::sync::OnceLock<(std::sync::Mutex<std::fs::File>, String)>> =
            Arc::default();
        let sidecar_cost = scenario.mesh.costs().then(|| {
            let (o, i) = scenario.mesh.overheads();
            Arc::new((
                o.cloned().unwrap_or(Dist::ZERO),
                i.cloned().unwrap_or(Dist::ZERO),
            ))
        });
        let client_proxies: u32 = scenario.clients.values().map(|c| c.proxies).sum();
        let sidecar_workers: Option<Arc<[Semaphore]>> = scenario.mesh.workers().map(|n| {
            (0..stations.len() + client_proxies as usize)
                .map(|_| Semaphore::new(n as usize))
                .collect()
        });
        let mut instances = Vec::new();
        let book = Arc::new(crate::critical::CriticalBook::default());
        // One body per size, shared by the instances that send it.
        let mut bodies: std::collections::BTreeMap<u64, Bytes> = std::collections::BTreeMap::new();
        for x in stations {
            let response = bodies
                .entry(x.response_bytes)
                .or_insert_with(|| Bytes::from(vec![b'.'; x.response_bytes as usize]))
                .clone();
            let station = Arc::new(Station {
                dist: x.dist.clone(),
                base_slowdown: x.slowdown,
                base_error_rate: x.error_rate,
                slowdown_bits: AtomicU64::new(x.slowdown.to_bits()),
                error_rate_bits: AtomicU64::new(x.error_rate.to_bits()),
                fast_fail_bits: AtomicU64::new(0f64.to_bits()),
                permits: Semaphore::new(x.concurrency as usize),
                queue_limit: x.queue_limit,
                waiting: AtomicU32::new(0),
                seed,
                timer: timer.clone(),
                zone: x.zone,
                net: net.clone(),
                meter: std::sync::Mutex::new(LoadMeter::new(x.concurrency, 0)),
                epoch,
                concurrency: x.concurrency,
                checks_queue: x.health_check_queues,
                serves_abandoned: x.serves_abandoned,
                health_error_rate: x.health_error_rate,
                present: AtomicBool::new(x.present),
                label: format!("{}/{}", x.service, x.index),
                trace_log: trace_log.clone(),
                extra: std::sync::RwLock::new(None),
                has_extra: AtomicBool::new(false),
                dip: std::sync::Mutex::new((None, Arc::new(AtomicU32::new(0)))),
                served: std::array::from_fn(|_| AtomicU64::new(0)),
                in_flight: AtomicU64::new(0),
                script: x.script.clone(),
                sidecars: std::sync::RwLock::new(None),
                sidecar_cost: sidecar_cost.clone(),
                sidecar_workers: sidecar_workers.clone(),
                response,
                response_ns: x.response_ns,
                station: instances.len() as u32,
                book: book.clone(),
            });
            let listener = TcpListener::bind((bind, 0)).await?;
            let addr = listener.local_addr()?;
            let alive = Arc::new(AtomicBool::new(true));
            let task = tokio::spawn(accept_loop(listener, station.clone(), tls.clone()));
            instances.push(Instance {
                service: x.service,
                index: x.index,
                addr,
                station,
                alive,
                task: std::sync::Mutex::new(Some(task)),
                tls: tls.clone(),
            });
        }
        Ok(Backends { instances, book })
    }

    /// Gives scripted instances their sidecars: (instance index in [`Backends::instances`],
    /// one sidecar per upstream of its script). Every other instance loses its own, so an empty
    /// list takes them all away (a run's sidecars end with it).
    pub(crate) fn install_sidecars(&self, sidecars: Vec<(usize, Vec<Sidecar>)>) {
        let mut by_instance: Vec<Option<Arc<[Sidecar]>>> = vec![None; self.instances.len()];
        for (i, s) in sidecars {
            if let Some(slot) = by_instance.get_mut(i) {
                *slot = Some(s.into());
            }
        }
        for (inst, s) in self.instances.iter().zip(by_instance) {
            *inst
                .station
                .sidecars
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = s;
        }
    }

    /// Every instance's Prometheus metrics (what the control endpoint's `GET /metrics`
    /// answers), in OpenMetrics when `open_metrics`, else the text format.
    pub fn metrics(&self, open_metrics: bool) -> String {
        let stations: Vec<(&Station, bool)> = self
            .instances
            .iter()
            .map(|i| (&*i.station, i.is_alive()))
            .collect();
        render_backends(&stations, open_metrics)
    }

    /// The instances of `service`, in index order.
    pub fn of(&self, service: &str) -> Vec<&Instance> {
        self.instances
            .iter()
            .filter(|i| i.service == service)
            .collect()
    }

    /// Plays the fault timeline (`Scenario::fault_changes`) in real time from `start` (the
    /// run's time zero): at each change point every instance a fault names gets its new state.
    /// Abort the handle to stop.
    pub fn run_faults(
        self: &Arc<Self>,
        changes: Vec<FaultChange>,
        start: std::time::Instant,
    ) -> tokio::task::JoinHandle<()> {
        let backends = self.clone();
        tokio::spawn(async move {
            for change in changes {
                let at = start + std::time::Duration::from_nanos(change.at_ns);
                tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await;
                for (service, index, state) in change.states {
                    let Some(inst) = backends
                        .instances
                        .iter()
                        .find(|x| x.service == service && x.index == index)
                    else {
                        continue;
                    };
                    if let Err(e) = inst.apply(state, start).await {
                        eprintln!(
                            "fault timeline: {}/{} cannot restart on {}: {e}",
                            inst.service, inst.index, inst.addr
                        );
                    }
                }
            }
        })
    }

    /// Plays the membership timeline's starts and stops (`Workload::presence`: ns since the
    /// run's time zero `start`, instance index in `instances`, serving from then on). A stopped
    /// instance refuses new requests and finishes those it has. Abort the handle to stop.
    pub fn run_membership(
        self: &Arc<Self>,
        presence: Vec<(u64, u32, bool)>,
        start: std::time::Instant,
    ) -> tokio::task::JoinHandle<()> {
        let backends = self.clone();
        tokio::spawn(async move {
            for (at_ns, i, present) in presence {
                let at = start + std::time::Duration::from_nanos(at_ns);
                tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await;
                if let Some(inst) = backends.instances.get(i as usize) {
                    inst.station.present.store(present, Ordering::Release);
                }
            }
        })
    }

    /// From now on, every instance appends a line per request that carries a W3C
    /// `traceparent` to `path`: `run,instance,request,attempt,traceparent` (CSV; the caller
    /// writes the header), `run` being `label`.
    pub fn log_traces(&self, path: &std::path::Path, label: &str) -> std::io::Result<()> {
        let f = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(path)?;
        if let Some(i) = self.instances.first() {
            let _ = i
                .station
                .trace_log
                .set((std::sync::Mutex::new(f), label.to_owned()));
        }
        Ok(())
    }

    /// Stops every instance.
    pub fn shutdown(&self) {
        for i in &self.instances {
            i.kill();
        }
    }
}

/// The pause after a failed `accept`: long enough for connections to close and free their
/// descriptors (EMFILE), short enough to recover at once; reported once a second at most.
async fn accept_backoff(e: &std::io::Error) {
    static LAST_REPORT: AtomicU64 = AtomicU64::new(0);
    let now = std::time::SystemTime::UNIX_EPOCH
        .elapsed()
        .map_or(0, |d| d.as_secs());
    if LAST_REPORT.swap(now, Ordering::Relaxed) != now {
        eprintln!("serve: accept failed ({e}); backing off 50 ms");
    }
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
}

async fn accept_loop(
    listener: TcpListener,
    station: Arc<Station>,
    tls: Option<Arc<rustls::ServerConfig>>,
) {
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    let mut conns = JoinSet::new();
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of file descriptors (EMFILE/ENFILE) or a transient network error: back
                // off instead of spinning on a listener that stays readable, then try again.
                accept_backoff(&e).await;
                continue;
            }
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

use meshbench_scenario::{Lane, crn_uniform as uniform};

fn header_u64(req: &Request<Incoming>, name: &str) -> Option<u64> {
    req.headers().get(name)?.to_str().ok()?.parse().ok()
}

fn reply(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *r.status_mut() = status;
    r
}

fn with_load(mut r: Response<Full<Bytes>>, st: &Station) -> Response<Full<Bytes>> {
    let report = st.meter().report(st.now_ns());
    if let Ok(v) = hyper::header::HeaderValue::from_str(&format_load_report(&report)) {
        r.headers_mut()
            .insert(hyper::header::HeaderName::from_static(LOAD_HEADER), v);
    }
    r
}

/// A request from a caller a partition cuts off: the connection closes without an answer, as
/// a connection to an unreachable host fails.
#[derive(Debug)]
struct Unreachable;

impl std::fmt::Display for Unreachable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("partitioned from the caller")
    }
}

impl std::error::Error for Unreachable {}

/// Whether a `traceparent`'s flags (its last two hex digits) have the sampled bit.
fn sampled_flag(traceparent: &[u8]) -> bool {
    traceparent
        .len()
        .checked_sub(2)
        .and_then(|at| std::str::from_utf8(&traceparent[at..]).ok())
        .and_then(|f| u8::from_str_radix(f, 16).ok())
        .is_some_and(|f| f & 1 == 1)
}

/// A request at an instance: `GET /metrics` answers the instance's own metrics; anything else
/// is counted (by path kind and answer) around [`handle_request`].
async fn handle(
    req: Request<Incoming>,
    st: Arc<Station>,
) -> Result<Response<Full<Bytes>>, Unreachable> {
    let path = req.uri().path();
    if path == "/metrics" {
        return Ok(crate::metrics::response(&req, |om| {
            render_backends(&[(&st, true)], om)
        }));
    }
    let kind = match path {
        "/health" => 1,
        PROBE_PATH => 2,
        _ => 0,
    };
    struct InFlight<'a>(&'a AtomicU64);
    impl Drop for InFlight<'_> {
        fn drop(&mut self) {
            self.0.fetch_sub(1, Ordering::Relaxed);
        }
    }
    st.in_flight.fetch_add(1, Ordering::Relaxed);
    let guard = InFlight(&st.in_flight);
    let answer = handle_request(req, st.clone()).await;
    drop(guard);
    let code = match &answer {
        Ok(r) => match r.status().as_u16() {
            200 => 0,
            500 => 1,
            503 => 2,
            _ => 3,
        },
        Err(_) => 4,
    };
    st.served[kind * CODES.len() + code].fetch_add(1, Ordering::Relaxed);
    answer
}

async fn handle_request(
    req: Request<Incoming>,
    st: Arc<Station>,
) -> Result<Response<Full<Bytes>>, Unreachable> {
    let request = header_u64(&req, "x-meshbench-request").unwrap_or_else(|| {
        // A request from elsewhere: draw from a counter so it still gets a fresh sample.
        static NEXT: AtomicU64 = AtomicU64::new(1 << 62);
        NEXT.fetch_add(1, Ordering::Relaxed)
    });
    let attempt = header_u64(&req, "x-meshbench-attempt").unwrap_or(0) as u32;
    if let Some((log, run)) = st.trace_log.get()
        && let Some(t) = req.headers().get("traceparent")
        && sampled_flag(t.as_bytes())
    {
        use std::io::Write as _;
        let mut f = log
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let _ = writeln!(
            f,
            "{run},{},{request},{attempt},{}",
            st.label,
            String::from_utf8_lossy(t.as_bytes())
        );
    }
    // The caller's zone (ours when it does not say): the hop's latency is the zone pair's.
    let from = header_u64(&req, ZONE_HEADER).map_or(st.zone, |z| z as u16);
    let client = header_u64(&req, CLIENT_HEADER).map_or(u16::MAX, |c| c as u16);
    let extra = st.extra();
    let net = |lane| {
        extra.map_or(0, |x| {
            x.state
                .net_extra_ns(from, || uniform(st.seed, request, attempt, lane))
        })
    };
    if !st.present.load(Ordering::Acquire) || extra.is_some_and(|x| x.state.cut_from(from, client))
    {
        return Err(Unreachable);
    }
    let path = req.uri().path();
    // A work request's attempt also spends its time in the two sidecars, drawn per attempt.
    let (out_ns, in_ns) = match &st.sidecar_cost {
        Some(c) if path != "/health" && path != PROBE_PATH => {
            let draw = |d: &Dist, lane| d.quantile_ns(uniform(st.seed, request, attempt, lane));
            (draw(&c.0, Lane::SidecarOut), draw(&c.1, Lane::SidecarIn))
        }
        _ => (0.0, 0.0),
    };
    // Sidecars that queue: the caller's worker, the network, then one of ours. A caller outside
    // this run (`meshbench serve`'s clients) names no sidecar of ours: its outbound time is a
    // delay. Without queues, both times ride on the way in.
    let queued = st.sidecar_workers.as_ref().filter(|_| out_ns + in_ns > 0.0);
    if let Some(workers) = queued {
        let caller = header_u64(&req, SIDECAR_HEADER).and_then(|c| workers.get(c as usize));
        st.work_in(caller, out_ns.round() as u64).await;
    }
    let carried = if queued.is_some() {
        0
    } else {
        (out_ns + in_ns).round() as u64
    };
    st.hop(
        from,
        st.zone,
        request,
        attempt,
        Lane::NetOut,
        net(Lane::LossOut) + carried,
    )
    .await;
    if let Some(workers) = queued {
        st.work_in(workers.get(st.station as usize), in_ns.round() as u64)
            .await;
    }
    let back = net(Lane::LossBack);
    if req.uri().path() == "/health" {
        let answer = health(request, &st).await;
        st.hop(st.zone, from, request, attempt, Lane::NetBack, back)
            .await;
        return Ok(answer);
    }
    if req.uri().path() == PROBE_PATH {
        // A Prequal probe reads the instance as it is when the probe arrives.
        let answer = st.meter().probe(st.now_ns());
        st.hop(st.zone, from, request, attempt, Lane::NetBack, back)
            .await;
        let mut r = reply(StatusCode::OK, "ok\n");
        if let Ok(v) = hyper::header::HeaderValue::from_str(&format_probe(&answer)) {
            r.headers_mut()
                .insert(hyper::header::HeaderName::from_static(PROBE_HEADER), v);
        }
        return Ok(r);
    }
    let arrived = st.now_ns();
    let (mut answer, trace) = if st.serves_abandoned {
        // Served in a task of its own: a client that closes the connection (a timeout) drops
        // this future but not the work, which runs to its end as the simulator's does.
        let work = st.clone();
        tokio::spawn(async move { serve_one(request, attempt, &work).await })
            .await
            .unwrap_or_else(|_| {
                (
                    reply(StatusCode::INTERNAL_SERVER_ERROR, "worker failed\n"),
                    None,
                )
            })
    } else {
        serve_one(request, attempt, &st).await
    };
    if answer.status() == StatusCode::OK && st.book.wanted(request) {
        // A traced call: its critical path, this instance's own work (its time here not spent
        // waiting on a call) last.
        let Trace { waited, mut parts } = trace.unwrap_or_default();
        let own = st.now_ns().saturating_sub(arrived).saturating_sub(waited);
        parts.push((st.station, own));
        st.book.answer(request, parts);
    }
    // A successful response carries the service's response size, whose bytes also take their
    // time on the modeled link.
    let back = if answer.status() == StatusCode::OK {
        if !st.response.is_empty() {
            *answer.body_mut() = Full::new(st.response.clone());
        }
        back + st.response_ns
    } else {
        back
    };
    st.hop(st.zone, from, request, attempt, Lane::NetBack, back)
        .await;
    Ok(with_load(answer, &st))
}

/// Answers health check `id` (its probe id) as the simulator does: a fast-failing instance
/// answers 503; when the instance's checks queue, the check first waits for a free server (503
/// when the queue is full) and lets it go again; then it takes a service time (drawn by its id,
/// with the instance's slowdowns) and fails at the instance's error rate (500).
async fn health(id: u64, st: &Station) -> Response<Full<Bytes>> {
    let draw = |lane| uniform(st.seed, id, meshbench_scenario::CHECK_ATTEMPT, lane);
    let fast_fail = f64::from_bits(st.fast_fail_bits.load(Ordering::Relaxed));
    if fast_fail > 0.0 && draw(Lane::FastFail) < fast_fail {
        return reply(StatusCode::SERVICE_UNAVAILABLE, "fast fail\n");
    }
    if st.checks_queue && st.permits.try_acquire().is_err() {
        if st.waiting.fetch_add(1, Ordering::SeqCst) >= st.queue_limit {
            st.waiting.fetch_sub(1, Ordering::SeqCst);
            return reply(StatusCode::SERVICE_UNAVAILABLE, "queue full\n");
        }
        // The checker may give up first (its timeout drops this future): leave the queue then.
        struct Waiting<'a>(&'a AtomicU32);
        impl Drop for Waiting<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::SeqCst);
            }
        }
        let _waiting = Waiting(&st.waiting);
        drop(st.permits.acquire().await.expect("never closed"));
    }
    let slowdown = f64::from_bits(st.slowdown_bits.load(Ordering::Relaxed))
        * st.extra().map_or(1.0, |x| x.cold());
    let ns = st.dist.quantile_ns(draw(Lane::Service)) * slowdown;
    let until = std::time::Instant::now() + std::time::Duration::from_nanos(ns.max(0.0) as u64);
    st.timer.sleep_until(until).await;
    let error_rate = st
        .health_error_rate
        .unwrap_or_else(|| f64::from_bits(st.error_rate_bits.load(Ordering::Relaxed)));
    if error_rate > 0.0 && draw(Lane::Error) < error_rate {
        return reply(StatusCode::INTERNAL_SERVER_ERROR, "injected error\n");
    }
    reply(StatusCode::OK, "ok\n")
}

/// Serves one request at the instance: fast-fail, queue limit, service time, error draw; with
/// its script's trace, when the request is traced and its script ran.
async fn serve_one(
    request: u64,
    attempt: u32,
    st: &Station,
) -> (Response<Full<Bytes>>, Option<Trace>) {
    // A fast-failing instance answers at once (the simulator's draw).
    let fast_fail = f64::from_bits(st.fast_fail_bits.load(Ordering::Relaxed));
    if fast_fail > 0.0 && uniform(st.seed, request, attempt, Lane::FastFail) < fast_fail {
        st.meter().respond(st.now_ns(), None, true);
        return (reply(StatusCode::SERVICE_UNAVAILABLE, "fast fail\n"), None);
    }
    // Queue limit: requests beyond the concurrency wait; past the limit, 503 at once.
    let permit = match st.permits.try_acquire() {
        Ok(p) => p,
        Err(_) => {
            if st.waiting.fetch_add(1, Ordering::SeqCst) >= st.queue_limit {
                st.waiting.fetch_sub(1, Ordering::SeqCst);
                st.meter().respond(st.now_ns(), None, true);
                return (reply(StatusCode::SERVICE_UNAVAILABLE, "queue full\n"), None);
            }
            let arrived = st.now_ns();
            let rif = st.meter().arrive(arrived);
            // Leaves the meter if the client gives up while queued (the future is dropped).
            let guard = LeaveOnDrop { st, started: false };
            let p = st.permits.acquire().await.expect("never closed");
            std::mem::forget(guard);
            st.waiting.fetch_sub(1, Ordering::SeqCst);
            return served(request, attempt, st, p, (arrived, rif)).await;
        }
    };
    let arrived = st.now_ns();
    let rif = st.meter().arrive(arrived);
    served(request, attempt, st, permit, (arrived, rif)).await
}

/// Takes a request out of the meter when its future is dropped before it ends.
struct LeaveOnDrop<'a> {
    st: &'a Station,
    started: bool,
}

impl Drop for LeaveOnDrop<'_> {
    fn drop(&mut self) {
        self.st.meter().leave(self.st.now_ns(), self.started);
    }
}

async fn served(
    request: u64,
    attempt: u32,
    st: &Station,
    permit: tokio::sync::SemaphorePermit<'_>,
    (arrived, rif): (u64, u32),
) -> (Response<Full<Bytes>>, Option<Trace>) {
    st.meter().start(st.now_ns());
    let guard = LeaveOnDrop { st, started: true };
    let slowdown = f64::from_bits(st.slowdown_bits.load(Ordering::Relaxed))
        * st.extra().map_or(1.0, |x| x.cold());
    let ns = st
        .dist
        .quantile_ns(uniform(st.seed, request, attempt, Lane::Service))
        * slowdown;
    let until = std::time::Instant::now() + std::time::Duration::from_nanos(ns.max(0.0) as u64);
    st.timer.sleep_until(until).await;
    let error_rate = f64::from_bits(st.error_rate_bits.load(Ordering::Relaxed));
    let mut failed =
        error_rate > 0.0 && uniform(st.seed, request, attempt, Lane::Error) < error_rate;
    let mut trace = None;
    if !failed && let Some(script) = &st.script {
        // The script runs on, holding the server, as in the simulator.
        trace = st.book.wanted(request).then(Trace::default);
        failed = !run_script(script, request, attempt, st, trace.as_mut()).await;
    }
    drop(permit);
    drop(guard);
    let now = st.now_ns();
    st.meter()
        .respond(now, Some((now.saturating_sub(arrived), rif)), failed);
    let answer = if failed {
        reply(StatusCode::INTERNAL_SERVER_ERROR, "injected error\n")
    } else {
        reply(StatusCode::OK, "ok\n")
    };
    (answer, trace)
}

/// Runs request `request`'s attempt `attempt` through its instance's script, as the simulator
/// does: a compute step takes its time (with the instance's slowdowns); a group of calls sends
/// each call it makes (drawn by its probability) through the instance's sidecar for its upstream
/// and goes on once `wait` of them have succeeded (a failure ignored counts as a success), or
/// fails the request once they cannot. Calls past `wait` run on, unawaited. Whether it succeeded.
///
/// With `trace` (a traced attempt), each group's calls are traced too, and the call that ended
/// the group's wait adds its time to `trace.waited` and its critical path to `trace.parts`.
async fn run_script(
    script: &Script,
    request: u64,
    attempt: u32,
    st: &Station,
    mut trace: Option<&mut Trace>,
) -> bool {
    use futures_util::StreamExt as _;
    let installed = || {
        st.sidecars
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    };
    let mut sidecars = installed();
    // `serve` announces its addresses while its sidecars start: a call that comes first waits
    // for them (up to 2 s) rather than fail.
    let mut waited = 0;
    while sidecars.is_none() && !script.upstreams.is_empty() && waited < 2000 {
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        waited += 1;
        sidecars = installed();
    }
    for (pc, op) in script.ops.iter().enumerate() {
        match op {
            Op::Compute(d) => {
                let id = child_request(request, attempt, u32::MAX - pc as u32);
                let slowdown = f64::from_bits(st.slowdown_bits.load(Ordering::Relaxed))
                    * st.extra().map_or(1.0, |x| x.cold());
                let ns = d.quantile_ns(uniform(st.seed, id, 0, Lane::Compute)) * slowdown;
                let until = std::time::Instant::now()
                    + std::time::Duration::from_nanos(ns.round().max(0.0) as u64);
                st.timer.sleep_until(until).await;
            }
            Op::Calls { calls, wait } => {
                let mut answers = futures_util::stream::FuturesUnordered::new();
                let group_start = st.now_ns();
                let mut made_ids = Vec::new();
                for c in calls {
                    let id = child_request(request, attempt, c.id);
                    if c.probability < 1.0 && uniform(st.seed, id, 0, Lane::Call) >= c.probability {
                        continue;
                    }
                    if trace.is_some() {
                        st.book.want(id);
                        made_ids.push(id);
                    }
                    let (done, answer) = tokio::sync::oneshot::channel();
                    let sent = sidecars
                        .as_ref()
                        .and_then(|s| s.get(usize::from(c.upstream)))
                        .is_some_and(|s| s.send(crate::driver::Msg::Call { id, done }).is_ok());
                    let ignore = c.ignore_failure;
                    answers.push(
                        async move { (id, ignore || (sent && answer.await.unwrap_or(false))) },
                    );
                }
                let made = answers.len() as u32;
                let need = (*wait).min(made);
                let (mut ok, mut failed) = (0u32, 0u32);
                let mut last = None;
                while ok < need {
                    match answers.next().await {
                        Some((id, true)) => {
                            ok += 1;
                            last = Some(id);
                        }
                        Some((_, false)) => {
                            failed += 1;
                            if made - failed < need {
                                break;
                            }
                        }
                        None => break,
                    }
                }
                if let Some(t) = trace.as_deref_mut() {
                    // The call that ended the wait is on the critical path; the group's others
                    // are traced no more.
                    if ok >= need {
                        t.waited += st.now_ns().saturating_sub(group_start);
                        if let Some(parts) = last.and_then(|id| st.book.take(id)) {
                            t.parts.extend(parts);
                        }
                    }
                    for id in made_ids {
                        st.book.take(id);
                    }
                }
                if ok < need {
                    return false;
                }
            }
        }
    }
    true
}

/// Most instances `serve` and live mode start as loopback servers (each takes a port and a
/// listening socket, and the ports of one address run out near 28,000).
pub const MAX_SERVED_INSTANCES: usize = 10_000;

/// Starts the control endpoint of `backends` on `bind` (port chosen by the OS): faults on
/// demand while a scenario is served.
///
/// * `GET /instances`: one line per instance: `service/index address alive`.
/// * `GET /metrics`: every instance's Prometheus metrics (each instance also answers
///   `GET /metrics` on its own port with its own).
/// * `POST /kill?service=S&instance=I`: the instance stops (refused connections from now on).
/// * `POST /slowdown?service=S&instance=I&factor=F`: service time x F.
/// * `POST /errors?service=S&instance=I&rate=P`: 500 to a share P of requests.
/// * `POST /fast_fail?service=S&instance=I&rate=P`: 503 at once to a share P of requests.
/// * `POST /restart?service=S&instance=I`: a killed instance serves again, empty.
///
/// With `token`, every request must carry `Authorization: Bearer TOKEN` (else 401): the
/// command line requires one whenever the endpoint binds beyond loopback.
pub async fn start_control(
    backends: Arc<Backends>,
    bind: IpAddr,
    token: Option<String>,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let token: Option<Arc<str>> = token.map(Into::into);
    let listener = TcpListener::bind((bind, 0)).await?;
    let addr = listener.local_addr()?;
    let task = tokio::spawn(async move {
        loop {
            let stream = match listener.accept().await {
                Ok((stream, _)) => stream,
                Err(e) => {
                    accept_backoff(&e).await;
                    continue;
                }
            };
            let backends = backends.clone();
            let token = token.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req| {
                    let backends = backends.clone();
                    let token = token.clone();
                    async move {
                        if !authorized(&req, token.as_deref()) {
                            let mut r = Response::new(Full::new(Bytes::from(
                                "this control endpoint needs `Authorization: Bearer TOKEN` (the token `meshbench serve` printed or was given)\n",
                            )));
                            *r.status_mut() = StatusCode::UNAUTHORIZED;
                            return Ok::<_, Infallible>(r);
                        }
                        Ok::<_, Infallible>(control(&backends, req).await)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    Ok((addr, task))
}

/// Whether `req` carries the token (always, without one). The comparison takes the same time
/// wherever the first difference is.
fn authorized(req: &Request<Incoming>, token: Option<&str>) -> bool {
    let Some(token) = token else {
        return true;
    };
    let given = req
        .headers()
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    given.len() == token.len()
        && given
            .bytes()
            .zip(token.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

async fn control(backends: &Backends, req: Request<Incoming>) -> Response<Full<Bytes>> {
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
    if req.uri().path() == "/metrics" {
        return crate::metrics::response(&req, |om| backends.metrics(om));
    }
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
        "/restart" => match inst.restart().await {
            Ok(()) => text(
                StatusCode::OK,
                format!("{}/{} serving on {}\n", inst.service, inst.index, inst.addr),
            ),
            Err(e) => text(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("cannot listen on {} again: {e}\n", inst.addr),
            ),
        },
        "/fast_fail" => match number("rate").filter(|r| (0.0..=1.0).contains(r)) {
            Some(r) => {
                inst.set_fast_fail(r);
                text(
                    StatusCode::OK,
                    format!(
                        "{}/{} fast-fails {r} of requests\n",
                        inst.service, inst.index
                    ),
                )
            }
            None => text(StatusCode::BAD_REQUEST, "rate must be in 0..=1\n".into()),
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
            format!(
                "unknown control `{other}`: /instances, /kill, /restart, /slowdown, /errors, /fast_fail\n"
            ),
        ),
    }
}
