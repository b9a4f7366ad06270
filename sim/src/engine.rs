//! The event loop of one run.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BinaryHeap, VecDeque};
use std::sync::Arc;

// Looked up by key only, never iterated: its order cannot reach results.
use rustc_hash::FxHashMap as HashMap;

use mesh_core::health::{ProbeId, ProbeResult};
use mesh_core::{
    AttemptId, Cluster, EndpointId, Finish, Input, Instant, Outcome, Output, PolicyEvent,
    ProbeReply,
};
use meshbench_report::{Recorder, RunId, RunResult};
use meshbench_scenario::workload::{LoadMeter, NetworkModel, ProxyPlan, Workload, next_uniform};
// The base draws every strategy shares (common random numbers).
use meshbench_scenario::crn_uniform as uniform;
use meshbench_scenario::graph::{Op, Script, child_request, traced};
use meshbench_scenario::{ArrivalClock, Dist, FaultState, Lane, Loaded};

#[derive(Clone, Copy, Debug)]
enum Ev {
    Arrive(u32),
    Timer(u32),
    AtInstance(u32),
    /// Service of job `.0` ends, if the job's service generation is still `.1` (a crash resets
    /// requests in service, and their slots may be reused before this event fires).
    ServiceDone(u32, u32),
    Response(u32, Outcome),
    /// A health check's answer `.3` reaches proxy `.0`.
    ProbeDone(u32, ProbeId, EndpointId, ProbeResult),
    /// A health check from proxy `.0` reaches its instance.
    HealthAt(u32, ProbeId, EndpointId),
    /// The health check in slot `.0` (of `Sim::health_checks`) has been served.
    CheckServed(u32),
    /// A balancer (Prequal) probe from proxy `.0` reaches endpoint `.1`.
    BalancerProbeAt(u32, EndpointId),
    BalancerProbeDone(u32, EndpointId, ProbeReply),
    Sample,
    /// Fault change point `.0` (index into `Sim::faults`).
    Fault(u32),
    /// Proxy `.0` hears its membership change `.1` (index into its plan's `membership`).
    Membership(u32, u32),
    /// Station `.0` starts (`true`) or stops serving.
    Presence(u32, bool),
    /// Script step `.1` (a serial) of exec `.0` is done (its compute time is over).
    ExecStep(u32, u32),
    /// A sidecar's call finished: the next of `Sim::call_results`.
    CallDone,
    /// Proxy `.0`'s new connection `.2` reaches station `.1` (its SYN).
    ConnAt(u32, u32, mesh_core::ConnectionId),
    /// Proxy `.0`'s connection `.1` is set up (`true`) or refused.
    ConnDone(u32, mesh_core::ConnectionId, bool),
    /// Sidecar `.0` has worked on job `.1`'s attempt: on its way out (`false`) or in.
    SidecarDone(u32, u32, bool),
    /// Job `.0`'s attempt reaches its instance's sidecar (sidecars that queue).
    AtSidecar(u32),
}

struct Scheduled {
    at: u64,
    seq: u64,
    ev: Ev,
}

impl PartialEq for Scheduled {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.seq) == (o.at, o.seq)
    }
}
impl Eq for Scheduled {}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Scheduled {
    fn cmp(&self, o: &Self) -> Ordering {
        // Reversed: BinaryHeap is a max-heap and we want the earliest (time, seq) first.
        (o.at, o.seq).cmp(&(self.at, self.seq))
    }
}

/// Marks a station queue entry as a waiting health check rather than a job.
const PROBE: u32 = 1 << 31;

/// The attempt number of a health check's common random numbers (draws by its probe id), apart
/// from every request attempt's; live backends draw the same.
const CHECK: u32 = meshbench_scenario::CHECK_ATTEMPT;

struct Station {
    concurrency: u32,
    queue_limit: u32,
    dist: Dist,
    slowdown: f64,
    error_rate: f64,
    zone: u16,
    /// What the fault timeline does to it now.
    fault: FaultState,
    /// Serving: not yet started or already stopped by the membership timeline, it refuses
    /// new requests (and finishes those it has).
    present: bool,
    busy: u32,
    /// Waiting jobs; an entry with [`PROBE`] set is a health check (index into
    /// `Sim::health_checks`) when the station's checks queue.
    queue: VecDeque<u32>,
    /// Health checks wait in `queue` for a free server (`services.X.health_check_queues`).
    checks_queue: bool,
    /// Abandoned (cancelled) requests are still served (`services.X.serves_abandoned`).
    serves_abandoned: bool,
    /// Health checks fail at this rate instead (`services.X.health_error_rate`).
    health_error_rate: Option<f64>,
    /// What it reports about its load (ORCA reports, Prequal probes), when the balancer reads
    /// either.
    meter: Option<LoadMeter>,
    /// Its service's script, when it calls other services, and its sidecar per upstream.
    script: Option<Arc<Script>>,
    sidecars: Vec<u32>,
    /// The time a successful response's bytes take on the link back (`response_size` over
    /// `network.bandwidth`), ns.
    response_ns: u64,
}

impl Station {
    /// Requests it serves at once now: its concurrency, or less during a capacity dip.
    #[inline]
    fn serving_limit(&self) -> u32 {
        self.concurrency.min(self.fault.capacity)
    }
}

struct Proxy {
    cluster: Cluster,
    plan: ProxyPlan,
    clock: ArrivalClock,
    rng: mesh_core::Rng,
    next_seq: u64,
    /// The earliest `Ev::Timer` pending for it. A deadline that moves later is not scheduled
    /// again: that event fires early, finds nothing due, and arms the next one, so a proxy
    /// with many requests in flight keeps one timer event in the queue, not one per request.
    timer_at: Option<u64>,
    /// Closed loop: its users send their next request when the last ends (after a think time),
    /// not by the arrival clock.
    closed: bool,
    /// A sidecar (its requests are its instance's calls), not a client's proxy.
    sidecar: bool,
}

/// A request working through its instance's script (holding its server).
#[derive(Clone, Copy)]
struct Exec {
    job: u32,
    /// The job's service generation when the script began: a crash since (which reset the
    /// request) leaves the exec stale.
    generation: u32,
    station: u32,
    request: u64,
    retry: u32,
    /// The next step.
    pc: u32,
    /// The serial of the step under way (unique in the run): answers to older steps are stale.
    serial: u32,
    /// The calls group under way: calls made, to wait for, succeeded (or failed ignored), and
    /// failed.
    made: u32,
    need: u32,
    ok: u32,
    failed: u32,
}

/// A sidecar's finished call, waiting for its [`Ev::CallDone`].
struct CallResult {
    proxy: u32,
    request: u64,
    result: Finish,
    attempts: u32,
    started: u64,
}

#[derive(Clone, Copy)]
struct Job {
    proxy: u32,
    attempt: AttemptId,
    request: u64,
    retry: u32,
    station: u32,
    cancelled: bool,
    /// In service (not queued, not travelling).
    serving: bool,
    /// Bumped at each service start and reset: stale `ServiceDone`s carry an older value.
    generation: u32,
    /// Its request's critical path is traced (a [`Frame`] follows it at its instance).
    traced: bool,
}

/// A sidecar that queues (`mesh.concurrency`): attempts in its workers, and those waiting for
/// one (job, on its way in) in arrival order.
#[derive(Default)]
struct Sidecar {
    busy: u32,
    queue: VecDeque<(u32, bool)>,
}

/// A traced attempt at its instance: when it got there, how long its script waited on the
/// calls that ended its groups, when the group under way began, and the critical path so far:
/// (station, ns of own work), its callees' first, its own last once served.
#[derive(Default)]
struct Frame {
    arrived: u64,
    waited: u64,
    group_start: u64,
    parts: Vec<(u32, u64)>,
}

/// What a job carries only when instances meter their load (kept apart so the common case's
/// jobs stay small): when it reached the instance, and the load report sent with its response.
#[derive(Clone, Copy, Default)]
struct Metered {
    arrived: u64,
    /// Requests in flight at the instance when it arrived.
    rif: u32,
    load: Option<mesh_core::LoadReport>,
}

struct Sim {
    seed: u64,
    now: u64,
    seq: u64,
    queue: BinaryHeap<Scheduled>,
    /// Events scheduled for the current instant, in the order they were scheduled: a hop with
    /// no network delay, a finished call. They come after the heap's events at this instant
    /// that were scheduled before them (lower `seq`), exactly as if they were in the heap, but
    /// cost a queue push and pop instead of a heap's.
    now_queue: VecDeque<Scheduled>,
    stations: Vec<Station>,
    proxies: Vec<Proxy>,
    jobs: Vec<Job>,
    /// Per job, when instances meter their load (else empty).
    metered: Vec<Metered>,
    meters: bool,
    free_jobs: Vec<u32>,
    /// Health checks waiting in a station's queue: (proxy, probe, endpoint); free slots in
    /// `free_checks`.
    health_checks: Vec<(u32, ProbeId, EndpointId)>,
    free_checks: Vec<u32>,
    by_attempt: HashMap<(u32, AttemptId), u32>,
    net: NetworkModel,
    load_reports: bool,
    // Arrivals.
    arrive_until: u64,
    arrivals_left: u64,
    /// Proxies whose arrivals have not run out (a trace's end).
    sources: u32,
    live: u64,
    rec: Recorder,
    sample_period: u64,
    processed: u64,
    /// The fault timeline's change points: each station's new state.
    faults: Vec<Vec<(u32, FaultState)>>,
    /// Most windows and events this run may take (`budget::run_bounds`).
    max_windows: u64,
    max_events: u64,
    /// Which of those bounds stopped it, if one did.
    cut_short: Option<&'static str>,
    /// Requests working through scripts (free slots in `free_execs`), the calls they wait for
    /// by (sidecar, request id): (exec, step serial, failure ignored), and the last serial.
    execs: Vec<Exec>,
    free_execs: Vec<u32>,
    calls: HashMap<(u32, u64), (u32, u32, bool)>,
    serial: u32,
    call_results: VecDeque<CallResult>,
    /// Time an attempt spends in the caller's and in the callee's sidecar, when either costs.
    sidecar_cost: Option<(Dist, Dist)>,
    /// Sidecars that queue (`mesh.concurrency`): their workers, each proxy's sidecar
    /// (`Workload::sidecar_of`), their state, and each job's network time between its caller's
    /// sidecar and its callee's while it waits in the first.
    workers: u32,
    sidecar_of: Vec<u32>,
    sidecars: Vec<Sidecar>,
    transit: HashMap<u32, u64>,
    handshake: meshbench_scenario::graph::Handshake,
    /// Critical paths, when services call services: traced attempts' frames by job, the
    /// traced calls under way by (sidecar, request id), and the critical paths of traced
    /// attempts that succeeded, by (proxy, request id), until their request finishes.
    tracing: bool,
    frames: HashMap<u32, Frame>,
    want: HashMap<(u32, u64), ()>,
    answers: HashMap<(u32, u64), Vec<(u32, u64)>>,
}

/// Runs sweep point `point`, strategy `strategy` (index into the point's strategies),
/// replication `replication`, with base seed `seed`. Pure: same inputs, same result. Every point
/// and strategy of a replication shares the replication's seed (common random numbers).
pub fn run_one(
    loaded: &Loaded,
    point: usize,
    strategy: usize,
    replication: u32,
    seed: u64,
) -> RunResult {
    let w = Workload::build(loaded, point, strategy, replication, seed);
    let pt = &loaded.points[point];
    let sc = &pt.scenario;
    let name = &pt.strategies[strategy].0;
    let stations = w
        .stations
        .iter()
        .map(|x| Station {
            concurrency: x.concurrency,
            queue_limit: x.queue_limit,
            dist: x.dist.clone(),
            slowdown: x.slowdown,
            error_rate: x.error_rate,
            zone: x.zone,
            fault: FaultState::default(),
            present: x.present,
            busy: 0,
            queue: VecDeque::new(),
            checks_queue: x.health_check_queues,
            serves_abandoned: x.serves_abandoned,
            health_error_rate: x.health_error_rate,
            meter: w.meters.then(|| LoadMeter::new(x.concurrency, 0)),
            script: x.script.clone(),
            sidecars: x.sidecars.clone(),
            response_ns: x.response_ns,
        })
        .collect();
    let offsets: BTreeMap<&str, u32> = w
        .stations
        .iter()
        .enumerate()
        .rev()
        .map(|(i, x)| (x.service.as_str(), i as u32))
        .collect();
    let proxies = w
        .proxies
        .iter()
        .map(|plan| {
            let (clock, rng) = plan.arrivals();
            Proxy {
                cluster: plan.cluster(),
                plan: plan.clone(),
                clock,
                rng,
                next_seq: 0,
                timer_at: None,
                closed: plan.caller.is_none() && plan.closed_users().is_some(),
                sidecar: plan.caller.is_some(),
            }
        })
        .collect();

    let mut sim = Sim {
        seed: w.seed.value(),
        now: 0,
        seq: 0,
        queue: BinaryHeap::new(),
        now_queue: VecDeque::new(),
        stations,
        proxies,
        jobs: Vec::new(),
        metered: Vec::new(),
        meters: w.meters,
        free_jobs: Vec::new(),
        health_checks: Vec::new(),
        free_checks: Vec::new(),
        by_attempt: HashMap::default(),
        net: w.network.clone(),
        load_reports: w.load_reports,
        arrive_until: sc.duration.map_or(u64::MAX, |d| d.as_nanos()),
        arrivals_left: sc.requests.unwrap_or(u64::MAX),
        sources: 0,
        live: 0,
        rec: Recorder::for_world(&w, sc.warmup.as_nanos()),
        sample_period: sc.sample_period.as_nanos(),
        processed: 0,
        faults: Vec::new(),
        max_windows: 0,
        max_events: 0,
        cut_short: None,
        execs: Vec::new(),
        free_execs: Vec::new(),
        calls: HashMap::default(),
        serial: 0,
        call_results: VecDeque::new(),
        sidecar_cost: w.sidecar_cost.clone(),
        workers: w.sidecar_workers.unwrap_or(0),
        sidecar_of: (0..w.proxies.len()).map(|p| w.sidecar_of(p)).collect(),
        sidecars: if w.sidecar_workers.is_some() {
            (0..w.sidecar_count()).map(|_| Sidecar::default()).collect()
        } else {
            Vec::new()
        },
        transit: HashMap::default(),
        handshake: w.handshake.clone(),
        tracing: w.proxies.len() > w.clients,
        frames: HashMap::default(),
        want: HashMap::default(),
        answers: HashMap::default(),
    };
    (sim.max_windows, sim.max_events) =
        meshbench_scenario::budget::run_bounds(sc, &pt.strategies[strategy].1);
    for p in 0..sim.proxies.len() as u32 {
        sim.drain(p);
        if sim.proxies[p as usize].sidecar {
            continue;
        }
        sim.sources += 1;
        let px = &mut sim.proxies[p as usize];
        if let Some((users, think)) = px.plan.closed_users() {
            // Each user starts thinking.
            let starts: Vec<u64> = (0..users)
                .map(|_| think.quantile_ns(next_uniform(&mut px.rng)).round() as u64)
                .collect();
            for t in starts {
                sim.push(t, Ev::Arrive(p));
            }
        } else {
            let first = sim.next_arrival(p, 0);
            sim.schedule_arrival(p, first);
        }
    }
    sim.push(sim.sample_period, Ev::Sample);
    // The membership timeline: each proxy hears each change when its propagation delay says,
    // each instance starts and stops on time.
    for p in 0..sim.proxies.len() {
        for k in 0..sim.proxies[p].plan.membership.len() {
            let at = sim.proxies[p].plan.membership[k].0;
            sim.push(at, Ev::Membership(p as u32, k as u32));
        }
    }
    for &(at, st, present) in &w.presence {
        sim.push(at, Ev::Presence(st, present));
    }
    // The fault timeline: at each change point, the new state of every station a fault names.
    for change in sc.fault_changes() {
        let states = change.states.into_iter();
        sim.faults.push(
            states
                .map(|(svc, i, state)| (offsets[svc.as_str()] + i, state))
                .collect(),
        );
        sim.push(change.at_ns, Ev::Fault(sim.faults.len() as u32 - 1));
    }
    sim.run();

    let measured_seconds = match sc.duration {
        Some(d) => (d.as_nanos() - sc.warmup.as_nanos()) as f64 / 1e9,
        None => sim.rec.measured_span_s(),
    };
    let id = RunId {
        point,
        coords: pt.coords.clone(),
        strategy: name.clone(),
        replication,
        seed: w.seed.value(),
    };
    if let Some(why) = sim.cut_short {
        // Not a policy event, but a run's events are where a report shows what happened.
        sim.rec.note(why);
    }
    let mut result = sim.rec.finish(id, measured_seconds);
    result.sim_events = sim.processed;
    result
}

impl Sim {
    fn push(&mut self, at: u64, ev: Ev) {
        self.seq += 1;
        let e = Scheduled {
            at,
            seq: self.seq,
            ev,
        };
        if at == self.now {
            self.now_queue.push_back(e);
        } else {
            self.queue.push(e);
        }
    }

    /// The next event in (time, seq) order, from the heap or the current instant's queue.
    fn pop(&mut self) -> Option<Scheduled> {
        match (self.now_queue.front(), self.queue.peek()) {
            (Some(n), Some(h)) if (h.at, h.seq) < (n.at, n.seq) => self.queue.pop(),
            (Some(_), _) => self.now_queue.pop_front(),
            (None, _) => self.queue.pop(),
        }
    }

    /// Schedules proxy `p`'s next arrival at `at`; `u64::MAX` means its arrivals have run out.
    fn schedule_arrival(&mut self, p: u32, at: u64) {
        if at == u64::MAX {
            self.sources -= 1;
        } else {
            self.push(at, Ev::Arrive(p));
        }
    }

    /// The time of proxy `p`'s next arrival after `now`.
    fn next_arrival(&mut self, p: u32, now: u64) -> u64 {
        let px = &mut self.proxies[p as usize];
        let u = next_uniform(&mut px.rng);
        px.clock.next(now, u)
    }

    fn run(&mut self) {
        while let Some(Scheduled { at, ev, .. }) = self.pop() {
            if self.processed >= self.max_events {
                self.cut_short = Some("cut_short_events");
                break;
            }
            self.now = at;
            self.processed += 1;
            match ev {
                Ev::Arrive(p) => self.arrive(p),
                Ev::Timer(p) => {
                    if self.proxies[p as usize].timer_at == Some(at) {
                        self.proxies[p as usize].timer_at = None;
                        self.proxies[p as usize]
                            .cluster
                            .handle_timeout(Instant::from_nanos(at));
                        self.drain(p);
                    }
                }
                Ev::AtInstance(j) => self.at_instance(j),
                Ev::AtSidecar(j) => self.sidecar_enter(self.jobs[j as usize].station, j, true),
                Ev::SidecarDone(sc, j, inbound) => self.sidecar_done(sc, j, inbound),
                Ev::ServiceDone(j, generation) => {
                    if self.jobs[j as usize].generation == generation {
                        self.service_done(j);
                    }
                }
                Ev::Membership(p, k) => {
                    let px = &mut self.proxies[p as usize];
                    let change = px.plan.membership[k as usize].1.clone();
                    px.cluster
                        .handle_input(Input::Membership(change), Instant::from_nanos(at));
                    self.drain(p);
                }
                Ev::Presence(st, present) => self.stations[st as usize].present = present,
                Ev::ExecStep(e, serial) => {
                    if self.execs[e as usize].serial == serial {
                        self.exec_next(e);
                    }
                }
                Ev::ConnAt(p, station, c) => self.conn_at(p, station, c),
                Ev::ConnDone(p, c, ok) => {
                    let input = if ok {
                        mesh_core::Input::Connected { connection: c }
                    } else {
                        mesh_core::Input::ConnectFailed { connection: c }
                    };
                    self.proxies[p as usize]
                        .cluster
                        .handle_input(input, Instant::from_nanos(at));
                    self.drain(p);
                }
                Ev::CallDone => {
                    let r = self
                        .call_results
                        .pop_front()
                        .expect("one result per CallDone");
                    self.call_done(r);
                }
                Ev::Fault(k) => {
                    for (st, state) in std::mem::take(&mut self.faults[k as usize]) {
                        self.set_fault(st, state);
                    }
                }
                Ev::Response(j, outcome) => {
                    let job = self.jobs[j as usize];
                    self.free_jobs.push(j);
                    if job.traced
                        && let Some(f) = self.frames.remove(&j)
                        && !job.cancelled
                        && outcome == Outcome::Success
                    {
                        // Kept until its request finishes (this answer may be what ends it).
                        self.answers.insert((job.proxy, job.request), f.parts);
                    }
                    if !job.cancelled {
                        self.by_attempt.remove(&(job.proxy, job.attempt));
                        self.proxies[job.proxy as usize].cluster.handle_input(
                            Input::AttemptDone {
                                attempt: job.attempt,
                                outcome,
                                load: self.metered.get(j as usize).and_then(|m| m.load),
                            },
                            Instant::from_nanos(at),
                        );
                        self.drain(job.proxy);
                    }
                }
                Ev::HealthAt(p, probe, endpoint) => self.check_at_instance(p, probe, endpoint),
                Ev::CheckServed(slot) => self.check_served(slot),
                Ev::ProbeDone(p, probe, endpoint, result) => {
                    self.proxies[p as usize].cluster.handle_input(
                        Input::ProbeDone {
                            probe,
                            endpoint,
                            result,
                        },
                        Instant::from_nanos(at),
                    );
                    self.drain(p);
                }
                Ev::BalancerProbeAt(p, endpoint) => {
                    // The probe reads the instance as it is when the probe gets there; a
                    // crashed instance never answers.
                    let px = &self.proxies[p as usize];
                    let st = (px.plan.offset + endpoint.0) as usize;
                    let (from, to) = (self.stations[st].zone, px.plan.zone);
                    if !self.stations[st].fault.down && self.stations[st].present {
                        let reply = match &mut self.stations[st].meter {
                            Some(m) => m.probe(at),
                            None => ProbeReply {
                                rif: 0,
                                latency: mesh_core::Duration::ZERO,
                            },
                        };
                        let probe_id = u64::from(endpoint.0) ^ at;
                        let d = self
                            .net
                            .delay_ns(from, to, self.seed, probe_id, 0, Lane::NetBack);
                        self.push(
                            at.saturating_add(d),
                            Ev::BalancerProbeDone(p, endpoint, reply),
                        );
                    }
                }
                Ev::BalancerProbeDone(p, endpoint, reply) => {
                    self.proxies[p as usize].cluster.handle_input(
                        Input::BalancerProbeDone { endpoint, reply },
                        Instant::from_nanos(at),
                    );
                    self.drain(p);
                }
                Ev::Sample => {
                    self.sample();
                    // Windows cover the arrival period: none after a duration ends.
                    let next = at.saturating_add(self.sample_period);
                    if self.rec.windows() as u64 >= self.max_windows {
                        self.cut_short.get_or_insert("cut_short_windows");
                    } else if !self.done() && next <= self.arrive_until {
                        self.push(next, Ev::Sample);
                    }
                }
            }
            if self.done() {
                break;
            }
        }
        // A request-count run ends mid-window: keep that last, partial window.
        if self.arrive_until == u64::MAX && self.now % self.sample_period != 0
            || self.rec.windows() == 0
        {
            self.sample();
        }
    }

    fn done(&self) -> bool {
        self.live == 0
            && (self.now >= self.arrive_until || self.arrivals_left == 0
                // A run sized by `requests` whose arrivals ran out (a trace) ends; one with a
                // `duration` keeps its windows to the end.
                || self.sources == 0 && self.arrive_until == u64::MAX)
    }

    fn arrive(&mut self, p: u32) {
        if self.now >= self.arrive_until || self.arrivals_left == 0 {
            return;
        }
        self.arrivals_left -= 1;
        self.live += 1;
        let px = &mut self.proxies[p as usize];
        let request = ProxyPlan::request_id(p, px.next_seq);
        px.next_seq += 1;
        let hash = px.plan.key(self.seed, request).map(|k| k.1);
        px.cluster.handle_input(
            Input::Request { request, hash },
            Instant::from_nanos(self.now),
        );
        self.rec.arrived(self.now);
        self.drain(p);
        if !self.proxies[p as usize].closed {
            let next = self.next_arrival(p, self.now);
            self.schedule_arrival(p, next);
        }
    }

    fn drain(&mut self, p: u32) {
        let now = self.now;
        while let Some(o) = self.proxies[p as usize].cluster.poll_output() {
            match o {
                Output::Send {
                    attempt,
                    request,
                    endpoint,
                    retry,
                    ..
                } => {
                    let px = &self.proxies[p as usize];
                    let station = px.plan.offset + endpoint.0;
                    let key = px.plan.key_index(self.seed, request);
                    let from = px.plan.zone;
                    let traced = self.tracing
                        && if px.sidecar {
                            !self.want.is_empty() && self.want.contains_key(&(p, request.0))
                        } else {
                            traced(request.0)
                        };
                    let job = Job {
                        proxy: p,
                        attempt,
                        request: request.0,
                        retry,
                        station,
                        cancelled: false,
                        serving: false,
                        generation: 0,
                        traced,
                    };
                    let j = match self.free_jobs.pop() {
                        Some(j) => {
                            // The slot's generation carries on, so a stale `ServiceDone` for
                            // its previous job cannot match.
                            let generation = self.jobs[j as usize].generation;
                            self.jobs[j as usize] = Job { generation, ..job };
                            j
                        }
                        None => {
                            if self.meters {
                                self.metered.push(Metered::default());
                            }
                            self.jobs.push(job);
                            (self.jobs.len() - 1) as u32
                        }
                    };
                    self.by_attempt.insert((p, attempt), j);
                    self.rec.attempt(from, station as usize, key);
                    let st = &self.stations[station as usize];
                    let mut d =
                        self.net
                            .delay_ns(from, st.zone, self.seed, request.0, retry, Lane::NetOut)
                            + st.fault.net_extra_ns(from, || {
                                uniform(self.seed, request.0, retry, Lane::LossOut)
                            });
                    if self.workers > 0 {
                        // Through the caller's sidecar, the network, then the callee's.
                        self.transit.insert(j, d);
                        self.sidecar_enter(self.sidecar_of[p as usize], j, false);
                        continue;
                    }
                    if let Some((out, inb)) = &self.sidecar_cost {
                        // The attempt's time in the caller's sidecar and the callee's.
                        d += (out.quantile_ns(uniform(
                            self.seed,
                            request.0,
                            retry,
                            Lane::SidecarOut,
                        )) + inb.quantile_ns(uniform(
                            self.seed,
                            request.0,
                            retry,
                            Lane::SidecarIn,
                        )))
                        .round() as u64;
                    }
                    self.push(now.saturating_add(d), Ev::AtInstance(j));
                }
                Output::Connect {
                    connection,
                    endpoint,
                } => {
                    // The SYN travels to the instance; what it finds there decides.
                    self.rec.note("connections_opened");
                    let px = &self.proxies[p as usize];
                    let station = px.plan.offset + endpoint.0;
                    let from = px.plan.zone;
                    let key = conn_key(p, connection);
                    let st = &self.stations[station as usize];
                    let d = self
                        .net
                        .delay_ns(from, st.zone, self.seed, key, 0, Lane::NetOut)
                        + st.fault
                            .net_extra_ns(from, || uniform(self.seed, key, 0, Lane::LossOut));
                    self.push(now.saturating_add(d), Ev::ConnAt(p, station, connection));
                }
                Output::Disconnect { .. } => self.rec.note("connections_closed"),
                Output::Cancel {
                    attempt, timed_out, ..
                } => {
                    if let Some(j) = self.by_attempt.remove(&(p, attempt)) {
                        self.jobs[j as usize].cancelled = true;
                        if timed_out {
                            // A timeout is the endpoint's error, as a 5xx is.
                            self.rec
                                .endpoint_error(self.jobs[j as usize].station as usize);
                        }
                    }
                }
                Output::Probe(probe) => {
                    let px = &self.proxies[p as usize];
                    let st = &self.stations[(px.plan.offset + probe.endpoint.0) as usize];
                    let a = px.plan.zone;
                    let d = self.net.delay_ns(
                        a,
                        st.zone,
                        self.seed,
                        probe.probe.0,
                        CHECK,
                        Lane::NetOut,
                    ) + st.fault.net_extra_ns(a, || {
                        uniform(self.seed, probe.probe.0, CHECK, Lane::LossOut)
                    });
                    self.push(
                        now.saturating_add(d),
                        Ev::HealthAt(p, probe.probe, probe.endpoint),
                    );
                }
                Output::BalancerProbe { endpoint } => {
                    let px = &self.proxies[p as usize];
                    let st = (px.plan.offset + endpoint.0) as usize;
                    let (a, b) = (px.plan.zone, self.stations[st].zone);
                    let probe_id = u64::from(endpoint.0) ^ now;
                    let d = self
                        .net
                        .delay_ns(a, b, self.seed, probe_id, 0, Lane::NetOut);
                    self.push(now.saturating_add(d), Ev::BalancerProbeAt(p, endpoint));
                }
                Output::Finished {
                    request,
                    result,
                    attempts,
                    started,
                } => {
                    if self.proxies[p as usize].sidecar {
                        // Its instance's script goes on from an event of its own, never
                        // inside this drain.
                        self.call_results.push_back(CallResult {
                            proxy: p,
                            request: request.0,
                            result,
                            attempts,
                            started: started.as_nanos(),
                        });
                        self.push(now, Ev::CallDone);
                        continue;
                    }
                    let edge = self.proxies[p as usize].plan.edge;
                    self.rec
                        .call_finished(edge, result, attempts, started.as_nanos(), now);
                    if self.tracing
                        && traced(request.0)
                        && let Some(parts) = self.answers.remove(&(p, request.0))
                    {
                        self.rec.critical_path(&parts, started.as_nanos(), now);
                    }
                    self.finished(result, attempts, started.as_nanos());
                    let px = &self.proxies[p as usize];
                    if px.closed && now < self.arrive_until && self.arrivals_left > 0 {
                        // The user thinks, then sends its next request.
                        let think = px.plan.think_ns(self.seed, request);
                        self.push(now.saturating_add(think), Ev::Arrive(p));
                    }
                }
                Output::Event(e) => self.event(p, &e),
            }
        }
        let px = &mut self.proxies[p as usize];
        if let Some(t) = px.cluster.poll_timeout().map(Instant::as_nanos)
            && px.timer_at.is_none_or(|at| t < at)
        {
            let t = t.max(now);
            px.timer_at = Some(t);
            self.push(t, Ev::Timer(p));
        }
    }

    /// A request ended; it is measured when it arrived after the warm-up.
    fn finished(&mut self, result: Finish, attempts: u32, started: u64) {
        self.live -= 1;
        self.rec.finished(result, attempts, started, self.now);
    }

    fn event(&mut self, p: u32, e: &PolicyEvent) {
        let offset = self.proxies[p as usize].plan.offset as usize;
        self.rec.event(offset, e);
    }

    /// Whether station `s` refuses a connection from proxy `p`: crashed, stopped or not
    /// started, or cut off from the proxy by a partition.
    fn refuses(&self, s: u32, p: u32) -> bool {
        let st = &self.stations[s as usize];
        st.fault.down
            || !st.present
            || ((st.fault.cut_zones | st.fault.cut_clients) != 0 && {
                let plan = &self.proxies[p as usize].plan;
                st.fault.cut_from(plan.zone, plan.client_index)
            })
    }

    /// A new connection's SYN reaches its instance: refused (down, stopped, partitioned), or
    /// set up after the SYN-ACK's way back and, with TLS, the handshake's round trips and CPU
    /// time at both ends (`mesh.handshake`).
    fn conn_at(&mut self, p: u32, station: u32, c: mesh_core::ConnectionId) {
        let now = self.now;
        let px = &self.proxies[p as usize];
        let from = px.plan.zone;
        let tls = px
            .plan
            .config
            .connections
            .as_ref()
            .map_or(mesh_core::Tls::None, |k| k.tls);
        let key = conn_key(p, c);
        let refused = self.refuses(station, p);
        let st = &self.stations[station as usize];
        let back = self
            .net
            .delay_ns(st.zone, from, self.seed, key, 0, Lane::NetBack)
            + st.fault
                .net_extra_ns(from, || uniform(self.seed, key, 0, Lane::LossBack));
        let mut t = back;
        if !refused && tls != mesh_core::Tls::None {
            let out = self
                .net
                .delay_ns(from, st.zone, self.seed, key, 0, Lane::NetOut);
            let h = &self.handshake;
            let u_c = uniform(self.seed, key, 0, Lane::HandshakeClient);
            let u_s = uniform(self.seed, key, 0, Lane::HandshakeServer);
            let mut cpu = h.tls_client_cpu.quantile_ns(u_c) + h.tls_server_cpu.quantile_ns(u_s);
            if tls == mesh_core::Tls::Mtls {
                cpu += h.mtls_client_cpu.quantile_ns(u_c) + h.mtls_server_cpu.quantile_ns(u_s);
            }
            t += u64::from(h.tls_round_trips) * (out + back) + cpu.round() as u64;
        }
        if refused {
            self.rec.note("connections_refused");
        }
        self.push(now.saturating_add(t), Ev::ConnDone(p, c, !refused));
    }

    /// Job `j`'s attempt reaches sidecar `sc` (on its way in, or out of its caller): a free
    /// worker takes it, or it waits its turn. An attempt abandoned before a worker takes it is
    /// dropped, as its instance would drop it, unless abandoned work is served.
    fn sidecar_enter(&mut self, sc: u32, j: u32, inbound: bool) {
        let job = self.jobs[j as usize];
        if job.cancelled && !self.stations[job.station as usize].serves_abandoned {
            self.transit.remove(&j);
            self.free_jobs.push(j);
            return;
        }
        let s = &mut self.sidecars[sc as usize];
        if s.busy < self.workers {
            s.busy += 1;
            let (out, inb) = self
                .sidecar_cost
                .as_ref()
                .expect("sidecars queue only when they cost");
            let (d, lane) = if inbound {
                (inb, Lane::SidecarIn)
            } else {
                (out, Lane::SidecarOut)
            };
            let ns = d
                .quantile_ns(uniform(self.seed, job.request, job.retry, lane))
                .round() as u64;
            self.push(self.now.saturating_add(ns), Ev::SidecarDone(sc, j, inbound));
        } else {
            s.queue.push_back((j, inbound));
        }
    }

    /// Sidecar `sc`'s worker is done with job `j`: it takes the next waiting attempt, and `j`
    /// goes on, over the network to its callee's sidecar or into its instance.
    fn sidecar_done(&mut self, sc: u32, j: u32, inbound: bool) {
        self.sidecars[sc as usize].busy -= 1;
        // Abandoned attempts are dropped on the way, so the worker may pass over some.
        while self.sidecars[sc as usize].busy < self.workers
            && let Some((next, next_in)) = self.sidecars[sc as usize].queue.pop_front()
        {
            self.sidecar_enter(sc, next, next_in);
        }
        if inbound {
            self.at_instance(j);
        } else {
            let d = self.transit.remove(&j).unwrap_or(0);
            self.push(self.now.saturating_add(d), Ev::AtSidecar(j));
        }
    }

    fn at_instance(&mut self, j: u32) {
        let job = self.jobs[j as usize];
        // An abandoned request still on its way arrives anyway where abandoned work is served.
        if job.cancelled && !self.stations[job.station as usize].serves_abandoned {
            self.free_jobs.push(j);
            return;
        }
        let now = self.now;
        if job.traced {
            self.frames.insert(
                j,
                Frame {
                    arrived: now,
                    ..Frame::default()
                },
            );
        }
        let refused = self.refuses(job.station, job.proxy);
        let st = &mut self.stations[job.station as usize];
        if refused {
            // Connection refused (crashed, stopped or not started), or no route (a partition).
            self.rec.endpoint_error(job.station as usize);
            self.respond(j, Outcome::LocalError);
        } else if st.fault.fast_fail > 0.0
            && uniform(self.seed, job.request, job.retry, Lane::FastFail) < st.fault.fast_fail
        {
            // A fast-failing instance answers 503 without queueing or serving.
            if let Some(m) = &mut st.meter {
                m.respond(now, None, true);
            }
            self.rec.endpoint_error(job.station as usize);
            self.respond(j, Outcome::GatewayError);
        } else if st.busy < st.serving_limit() {
            let rif = st.meter.as_mut().map_or(0, |m| m.arrive(now));
            if let Some(m) = self.metered.get_mut(j as usize) {
                *m = Metered {
                    arrived: now,
                    rif,
                    load: None,
                };
            }
            self.start(j);
        } else if (st.queue.len() as u64) < u64::from(st.queue_limit) {
            let rif = st.meter.as_mut().map_or(0, |m| m.arrive(now));
            if let Some(m) = self.metered.get_mut(j as usize) {
                *m = Metered {
                    arrived: now,
                    rif,
                    load: None,
                };
            }
            st.queue.push_back(j);
        } else {
            // A full queue answers 503 at once.
            if let Some(m) = &mut st.meter {
                m.respond(now, None, true);
            }
            self.rec.endpoint_error(job.station as usize);
            self.respond(j, Outcome::GatewayError);
        }
    }

    /// A health check reaches its instance. It is a request there: a crashed instance refuses
    /// it, a fast-failing one answers 503, and otherwise it takes a service time (drawn per
    /// check, with the instance's slowdowns) and fails at the instance's error rate. When the
    /// instance's checks queue, it first waits for a free server like a request (503 when the
    /// queue is full); either way its service runs beside the requests', holding no server.
    fn check_at_instance(&mut self, p: u32, probe: ProbeId, endpoint: EndpointId) {
        let st_i = (self.proxies[p as usize].plan.offset + endpoint.0) as usize;
        let slot = match self.free_checks.pop() {
            Some(i) => {
                self.health_checks[i as usize] = (p, probe, endpoint);
                i
            }
            None => {
                self.health_checks.push((p, probe, endpoint));
                (self.health_checks.len() - 1) as u32
            }
        };
        let st = &self.stations[st_i];
        let waiting = st.checks_queue && (st.busy >= st.serving_limit() || !st.queue.is_empty());
        let full = (st.queue.len() as u64) >= u64::from(st.queue_limit);
        let plan = &self.proxies[p as usize].plan;
        if st.fault.down || !st.present || st.fault.cut_from(plan.zone, plan.client_index) {
            self.answer_check(slot, ProbeResult::Error);
        } else if (st.fault.fast_fail > 0.0
            && uniform(self.seed, probe.0, CHECK, Lane::FastFail) < st.fault.fast_fail)
            || (waiting && full)
        {
            // A 503: fast-failing, or the queue is full.
            self.answer_check(slot, ProbeResult::Fail);
        } else if waiting {
            self.stations[st_i].queue.push_back(slot | PROBE);
        } else {
            self.serve_check(slot);
        }
    }

    /// Starts serving health check `slot`: its service time, then [`Sim::check_served`].
    fn serve_check(&mut self, slot: u32) {
        let (p, probe, endpoint) = self.health_checks[slot as usize];
        let st = &self.stations[(self.proxies[p as usize].plan.offset + endpoint.0) as usize];
        let u = uniform(self.seed, probe.0, CHECK, Lane::Service);
        let t = (st.dist.quantile_ns(u)
            * st.slowdown
            * st.fault.slowdown
            * st.fault.cold_factor(self.now))
        .round() as u64;
        self.push(self.now.saturating_add(t), Ev::CheckServed(slot));
    }

    /// Health check `slot` has been served: it passes unless the instance crashed meanwhile or
    /// the error draw fails it (500).
    fn check_served(&mut self, slot: u32) {
        let (p, probe, endpoint) = self.health_checks[slot as usize];
        let st = &self.stations[(self.proxies[p as usize].plan.offset + endpoint.0) as usize];
        let rate = st
            .health_error_rate
            .unwrap_or(st.error_rate.max(st.fault.error_rate));
        let result = if st.fault.down {
            ProbeResult::Error
        } else if rate > 0.0 && uniform(self.seed, probe.0, CHECK, Lane::Error) < rate {
            ProbeResult::Fail
        } else {
            ProbeResult::Pass
        };
        self.answer_check(slot, result);
    }

    /// Sends health check `slot`'s answer back to its proxy.
    fn answer_check(&mut self, slot: u32, result: ProbeResult) {
        let (p, probe, endpoint) = self.health_checks[slot as usize];
        self.free_checks.push(slot);
        let px = &self.proxies[p as usize];
        let st = &self.stations[(px.plan.offset + endpoint.0) as usize];
        let a = px.plan.zone;
        let d = self
            .net
            .delay_ns(st.zone, a, self.seed, probe.0, CHECK, Lane::NetBack)
            + st.fault
                .net_extra_ns(a, || uniform(self.seed, probe.0, CHECK, Lane::LossBack));
        self.push(
            self.now.saturating_add(d),
            Ev::ProbeDone(p, probe, endpoint, result),
        );
    }

    #[inline]
    fn start(&mut self, j: u32) {
        let job = &mut self.jobs[j as usize];
        job.serving = true;
        job.generation = job.generation.wrapping_add(1);
        let (generation, request, retry, station) =
            (job.generation, job.request, job.retry, job.station);
        let u = uniform(self.seed, request, retry, Lane::Service);
        let st = &mut self.stations[station as usize];
        st.busy += 1;
        if let Some(m) = &mut st.meter {
            m.start(self.now);
        }
        let t = (st.dist.quantile_ns(u)
            * st.slowdown
            * st.fault.slowdown
            * st.fault.cold_factor(self.now))
        .round() as u64;
        self.push(self.now.saturating_add(t), Ev::ServiceDone(j, generation));
    }

    /// Applies a fault state to station `s`. A crash resets every request in service or queued
    /// (the client sees a local-origin failure) and leaves the station empty.
    fn set_fault(&mut self, s: u32, state: FaultState) {
        let was_down = self.stations[s as usize].fault.down;
        self.stations[s as usize].fault = state;
        if !state.down {
            // A capacity dip's end frees servers for the queue.
            self.start_queued(s);
        }
        if was_down || !state.down {
            return;
        }
        let (checks, mut reset): (Vec<u32>, Vec<u32>) = self.stations[s as usize]
            .queue
            .drain(..)
            .partition(|&j| j & PROBE != 0);
        // Waiting health checks lose their connection (the answer finds the instance down).
        for c in checks {
            self.answer_check(c & !PROBE, ProbeResult::Error);
        }
        for (j, job) in self.jobs.iter_mut().enumerate() {
            if job.serving && job.station == s {
                job.serving = false;
                job.generation = job.generation.wrapping_add(1);
                reset.push(j as u32);
            }
        }
        reset.sort_unstable();
        let st = &mut self.stations[s as usize];
        st.busy = 0;
        if st.meter.is_some() {
            st.meter = Some(LoadMeter::new(st.concurrency, self.now));
        }
        for j in reset {
            if !self.jobs[j as usize].cancelled {
                self.rec.endpoint_error(s as usize);
            }
            self.respond(j, Outcome::LocalError);
        }
    }

    fn service_done(&mut self, j: u32) {
        let job = self.jobs[j as usize];
        let st = &self.stations[job.station as usize];
        let rate = st.error_rate.max(st.fault.error_rate);
        let failed = rate > 0.0 && uniform(self.seed, job.request, job.retry, Lane::Error) < rate;
        if !failed && st.script.is_some() {
            // The script runs on, holding the server.
            let e = Exec {
                job: j,
                generation: job.generation,
                station: job.station,
                request: job.request,
                retry: job.retry,
                pc: 0,
                serial: 0,
                made: 0,
                need: 0,
                ok: 0,
                failed: 0,
            };
            let e = match self.free_execs.pop() {
                Some(i) => {
                    self.execs[i as usize] = e;
                    i
                }
                None => {
                    self.execs.push(e);
                    (self.execs.len() - 1) as u32
                }
            };
            self.exec_next(e);
            return;
        }
        self.end_service(j, failed);
    }

    /// Runs exec `e`'s script from its next step: compute steps take their time, a calls
    /// group sends its calls through the instance's sidecars and waits; the script's end (or a
    /// failed step) ends the request's service.
    fn exec_next(&mut self, e: u32) {
        loop {
            let ex = self.execs[e as usize];
            let job = &self.jobs[ex.job as usize];
            if job.generation != ex.generation || !job.serving {
                // A crash reset the request since: its server is gone.
                self.free_exec(e);
                return;
            }
            let script = self.stations[ex.station as usize]
                .script
                .clone()
                .expect("an exec runs a script");
            let Some(op) = script.ops.get(ex.pc as usize) else {
                self.free_exec(e);
                self.end_service(ex.job, false);
                return;
            };
            // 0 marks a free exec: never a step's serial.
            self.serial = self.serial.checked_add(1).unwrap_or(1);
            let serial = self.serial;
            let x = &mut self.execs[e as usize];
            x.pc += 1;
            x.serial = serial;
            match op {
                Op::Compute(d) => {
                    let id = child_request(ex.request, ex.retry, u32::MAX - ex.pc);
                    let st = &self.stations[ex.station as usize];
                    let t = (d.quantile_ns(uniform(self.seed, id, 0, Lane::Compute))
                        * st.slowdown
                        * st.fault.slowdown
                        * st.fault.cold_factor(self.now))
                    .round() as u64;
                    self.push(self.now.saturating_add(t), Ev::ExecStep(e, serial));
                    return;
                }
                Op::Calls { calls, wait } => {
                    let mut made = 0;
                    for c in calls {
                        let id = child_request(ex.request, ex.retry, c.id);
                        if c.probability < 1.0
                            && uniform(self.seed, id, 0, Lane::Call) >= c.probability
                        {
                            continue;
                        }
                        made += 1;
                        let sp =
                            self.stations[ex.station as usize].sidecars[usize::from(c.upstream)];
                        self.calls.insert((sp, id), (e, serial, c.ignore_failure));
                        if self.jobs[ex.job as usize].traced {
                            self.want.insert((sp, id), ());
                        }
                        self.proxies[sp as usize].cluster.handle_input(
                            Input::Request {
                                request: mesh_core::RequestId(id),
                                hash: None,
                            },
                            Instant::from_nanos(self.now),
                        );
                        self.drain(sp);
                    }
                    let x = &mut self.execs[e as usize];
                    (x.made, x.need, x.ok, x.failed) = (made, (*wait).min(made), 0, 0);
                    if let Some(f) = self.frames.get_mut(&ex.job)
                        && self.jobs[ex.job as usize].traced
                    {
                        f.group_start = self.now;
                    }
                    if made > 0 {
                        return;
                    }
                }
            }
        }
    }

    fn free_exec(&mut self, e: u32) {
        // A stale serial: answers still on their way find nothing to continue.
        self.execs[e as usize].serial = 0;
        self.free_execs.push(e);
    }

    /// A sidecar's call finished: counted on its edge, and its exec goes on once the group has
    /// what it waits for (or fails once it cannot).
    fn call_done(&mut self, r: CallResult) {
        let edge = self.proxies[r.proxy as usize].plan.edge;
        self.rec
            .call_finished(edge, r.result, r.attempts, r.started, self.now);
        let answer = if self.tracing && !self.want.is_empty() {
            self.want.remove(&(r.proxy, r.request));
            self.answers.remove(&(r.proxy, r.request))
        } else {
            None
        };
        let Some((e, serial, ignore)) = self.calls.remove(&(r.proxy, r.request)) else {
            return;
        };
        let x = &mut self.execs[e as usize];
        if x.serial != serial || serial == 0 {
            return;
        }
        if r.result.is_success() || ignore {
            x.ok += 1;
        } else {
            x.failed += 1;
        }
        if x.ok >= x.need {
            // This call kept the script waiting: it is on the critical path.
            let job = x.job;
            if self.jobs[job as usize].traced
                && let Some(f) = self.frames.get_mut(&job)
            {
                f.waited += self.now.saturating_sub(f.group_start);
                f.parts.extend(answer.unwrap_or_default());
            }
            // The rest of the group (past `wait`) runs on unawaited.
            self.exec_next(e);
        } else if x.made - x.failed < x.need {
            let (job, generation) = (x.job, x.generation);
            self.free_exec(e);
            let j = &self.jobs[job as usize];
            if j.generation == generation && j.serving {
                self.end_service(job, true);
            }
        }
    }

    /// Request `j`'s service ends: its server is freed, and it is answered (500 when `failed`).
    fn end_service(&mut self, j: u32, failed: bool) {
        self.jobs[j as usize].serving = false;
        let job = self.jobs[j as usize];
        let now = self.now;
        if job.traced
            && let Some(f) = self.frames.get_mut(&j)
        {
            // Its own work: the time at the instance it did not spend waiting on a call.
            let own = now.saturating_sub(f.arrived).saturating_sub(f.waited);
            f.parts.push((job.station, own));
        }
        let st = &mut self.stations[job.station as usize];
        st.busy -= 1;
        if let Some(m) = &mut st.meter {
            m.leave(now, true);
        }
        if let Some(m) = &mut st.meter {
            let Metered { arrived, rif, .. } = self.metered[j as usize];
            m.respond(now, Some((now - arrived, rif)), failed);
        }
        if self.load_reports {
            self.metered[j as usize].load = st.meter.as_mut().map(|m| m.report(now));
        }
        if failed {
            self.rec.endpoint_error(job.station as usize);
        }
        self.respond(
            j,
            if failed {
                Outcome::ServerError
            } else {
                Outcome::Success
            },
        );
        self.start_queued(job.station);
    }

    /// Starts queued work on station `s` while it has free servers: the next in line, skipping
    /// cancelled requests; a waiting health check is answered as it reaches a server (its
    /// service runs beside the requests', holding none).
    fn start_queued(&mut self, s: u32) {
        let now = self.now;
        while self.stations[s as usize].busy < self.stations[s as usize].serving_limit() {
            let Some(next) = self.stations[s as usize].queue.pop_front() else {
                break;
            };
            if next & PROBE != 0 {
                self.serve_check(next & !PROBE);
                continue;
            }
            if self.jobs[next as usize].cancelled && !self.stations[s as usize].serves_abandoned {
                if let Some(m) = &mut self.stations[s as usize].meter {
                    m.leave(now, false);
                }
                if self.jobs[next as usize].traced {
                    self.frames.remove(&next);
                }
                self.free_jobs.push(next);
                continue;
            }
            self.start(next);
        }
    }

    fn respond(&mut self, j: u32, outcome: Outcome) {
        let job = self.jobs[j as usize];
        if job.cancelled {
            if job.traced {
                self.frames.remove(&j);
            }
            self.free_jobs.push(j);
            return;
        }
        let st = &self.stations[job.station as usize];
        let to = self.proxies[job.proxy as usize].plan.zone;
        let d = self.net.delay_ns(
            st.zone,
            to,
            self.seed,
            job.request,
            job.retry,
            Lane::NetBack,
        ) + st.fault.net_extra_ns(to, || {
            uniform(self.seed, job.request, job.retry, Lane::LossBack)
        });
        // A successful response's bytes cross the link behind its latency.
        let d = if outcome == Outcome::Success {
            d + st.response_ns
        } else {
            d
        };
        self.push(self.now.saturating_add(d), Ev::Response(j, outcome));
    }

    fn sample(&mut self) {
        self.rec.close_window(self.now as f64 / 1e9);
    }
}

/// The common-random-number key of proxy `p`'s connection `c`.
fn conn_key(p: u32, c: mesh_core::ConnectionId) -> u64 {
    mesh_core::seed::mix(0x636f_6e6e_0000_0000 ^ (u64::from(p) << 40) ^ c.0)
}
