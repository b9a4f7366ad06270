//! The event loop of one run.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BinaryHeap, HashMap, VecDeque};

use hdrhistogram::Histogram;
use mesh_core::health::{ProbeId, ProbeResult};
use mesh_core::outlier::OutlierEvent;
use mesh_core::{
    AttemptId, Cluster, EndpointId, EndpointMeta, Finish, Input, Instant, Outcome, Output,
    PolicyEvent, ProbeReply, RequestId, Seed,
};
use meshbench_report::{EndpointStats, RunResult, Sample, latency_histogram, quantile_ms};
// The base draws every strategy shares (common random numbers).
use meshbench_scenario::crn_uniform as uniform;
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
    ProbeDone(u32, ProbeId, EndpointId),
    BalancerProbeDone(u32, EndpointId, ProbeReply),
    Sample,
    /// Fault change point `.0` (index into `Sim::faults`).
    Fault(u32),
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

struct Station {
    concurrency: u32,
    queue_limit: u32,
    dist: Dist,
    slowdown: f64,
    error_rate: f64,
    /// What the fault timeline does to it now.
    fault: FaultState,
    busy: u32,
    queue: VecDeque<u32>,
    stats: EndpointStats,
}

struct Proxy {
    cluster: Cluster,
    /// Global index of the target service's instance 0.
    offset: u32,
    clock: ArrivalClock,
    rng: mesh_core::Rng,
    next_seq: u64,
    timer_at: Option<u64>,
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
}

struct Window {
    hist: Histogram<u64>,
    requests: u64,
    errors: u64,
    attempts: u64,
    ejections: u64,
    health_changes: u64,
    per_endpoint: Vec<u64>,
}

struct Sim {
    seed: u64,
    now: u64,
    seq: u64,
    queue: BinaryHeap<Scheduled>,
    stations: Vec<Station>,
    proxies: Vec<Proxy>,
    jobs: Vec<Job>,
    free_jobs: Vec<u32>,
    by_attempt: HashMap<(u32, AttemptId), u32>,
    net: Dist,
    // Arrivals.
    arrive_until: u64,
    arrivals_left: u64,
    live: u64,
    warmup: u64,
    // Results.
    hist: Histogram<u64>,
    requests: u64,
    successes: u64,
    failures: BTreeMap<String, u64>,
    attempts: u64,
    first_measured: Option<u64>,
    last_finish: u64,
    events: BTreeMap<String, u64>,
    window: Window,
    timeseries: Vec<Sample>,
    endpoint_series: Vec<Vec<u64>>,
    sample_period: u64,
    processed: u64,
    /// The fault timeline's change points: each station's new state.
    faults: Vec<Vec<(u32, FaultState)>>,
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
    let run_seed = Seed::new(seed).fork_index(u64::from(replication));
    let pt = &loaded.points[point];
    let sc = &pt.scenario;
    let (name, config) = &pt.strategies[strategy];

    // Stations, service by service in name order.
    let mut stations = Vec::new();
    let mut offsets = BTreeMap::new();
    for (svc_name, svc) in &sc.services {
        offsets.insert(svc_name.clone(), stations.len() as u32);
        for i in 0..svc.instances {
            let x = svc.instance(i);
            stations.push(Station {
                concurrency: x.concurrency,
                queue_limit: x.queue_limit,
                dist: x.service_time.clone(),
                slowdown: x.slowdown,
                error_rate: x.error_rate,
                fault: FaultState::default(),
                busy: 0,
                queue: VecDeque::new(),
                stats: EndpointStats {
                    service: svc_name.clone(),
                    instance: i,
                    ..EndpointStats::default()
                },
            });
        }
    }

    // Proxies, client by client in name order; each proxy gets the same seeds whatever the
    // strategy (common random numbers for arrivals).
    let mut proxies = Vec::new();
    for (client_name, c) in &sc.clients {
        let svc = &sc.services[&c.target];
        let endpoints = vec![EndpointMeta::default(); svc.instances as usize];
        for p in 0..c.proxies {
            let proxy_seed = run_seed
                .fork("client")
                .fork(client_name)
                .fork_index(u64::from(p));
            let cluster = Cluster::new(
                config,
                &endpoints,
                proxy_seed.fork("cluster"),
                Instant::EPOCH,
            )
            .expect("strategies are validated when the scenario loads");
            proxies.push(Proxy {
                cluster,
                offset: offsets[&c.target],
                clock: ArrivalClock::new(&c.arrival, c.proxies),
                rng: proxy_seed.fork("arrivals").rng(),
                next_seq: 0,
                timer_at: None,
            });
        }
    }

    let mut sim = Sim {
        seed: run_seed.value(),
        now: 0,
        seq: 0,
        queue: BinaryHeap::new(),
        stations,
        proxies,
        jobs: Vec::new(),
        free_jobs: Vec::new(),
        by_attempt: HashMap::new(),
        net: sc.network.latency.clone(),
        arrive_until: sc.duration.map_or(u64::MAX, |d| d.as_nanos()),
        arrivals_left: sc.requests.unwrap_or(u64::MAX),
        live: 0,
        warmup: sc.warmup.as_nanos(),
        hist: latency_histogram(),
        requests: 0,
        successes: 0,
        failures: BTreeMap::new(),
        attempts: 0,
        first_measured: None,
        last_finish: 0,
        events: BTreeMap::new(),
        window: Window {
            // Per-window percentiles need less precision than the run's: 2 significant digits
            // keep the histogram ten times smaller, and it is reset every window.
            hist: Histogram::new_with_bounds(1, 3_600_000_000_000, 2).expect("valid bounds"),
            requests: 0,
            errors: 0,
            attempts: 0,
            ejections: 0,
            health_changes: 0,
            per_endpoint: Vec::new(),
        },
        timeseries: Vec::new(),
        endpoint_series: Vec::new(),
        sample_period: sc.sample_period.as_nanos(),
        processed: 0,
        faults: Vec::new(),
    };
    sim.window.per_endpoint = vec![0; sim.stations.len()];
    for p in 0..sim.proxies.len() as u32 {
        sim.drain(p);
        let first = sim.next_arrival(p, 0);
        sim.push(first, Ev::Arrive(p));
    }
    sim.push(sim.sample_period, Ev::Sample);
    // The fault timeline: at each change point, the new state of every station a fault names.
    for change in sc.fault_changes() {
        let states = change.states.into_iter();
        sim.faults.push(
            states
                .map(|(svc, i, state)| (offsets[&svc] + i, state))
                .collect(),
        );
        sim.push(change.at_ns, Ev::Fault(sim.faults.len() as u32 - 1));
    }
    sim.run();

    let measured_seconds = match sc.duration {
        Some(d) => (d.as_nanos() - sim.warmup) as f64 / 1e9,
        None => (sim.last_finish - sim.first_measured.unwrap_or(0)) as f64 / 1e9,
    };
    RunResult {
        point,
        coords: pt.coords.clone(),
        strategy: name.clone(),
        replication,
        seed: run_seed.value(),
        latency: sim.hist,
        requests: sim.requests,
        successes: sim.successes,
        failures: sim.failures,
        attempts: sim.attempts,
        measured_seconds,
        endpoints: sim.stations.into_iter().map(|s| s.stats).collect(),
        timeseries: sim.timeseries,
        events: sim.events,
        endpoint_series: sim.endpoint_series,
        sim_events: sim.processed,
    }
}

impl Sim {
    fn push(&mut self, at: u64, ev: Ev) {
        self.seq += 1;
        self.queue.push(Scheduled {
            at,
            seq: self.seq,
            ev,
        });
    }

    /// The time of proxy `p`'s next arrival after `now`.
    fn next_arrival(&mut self, p: u32, now: u64) -> u64 {
        use rand::Rng as _;
        let px = &mut self.proxies[p as usize];
        let u = meshbench_scenario::unit(px.rng.next_u64());
        px.clock.next(now, u)
    }

    fn run(&mut self) {
        while let Some(Scheduled { at, ev, .. }) = self.queue.pop() {
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
                Ev::ServiceDone(j, generation) => {
                    if self.jobs[j as usize].generation == generation {
                        self.service_done(j);
                    }
                }
                Ev::Fault(k) => {
                    for (st, state) in std::mem::take(&mut self.faults[k as usize]) {
                        self.set_fault(st, state);
                    }
                }
                Ev::Response(j, outcome) => {
                    let job = self.jobs[j as usize];
                    self.free_jobs.push(j);
                    if !job.cancelled {
                        self.by_attempt.remove(&(job.proxy, job.attempt));
                        self.proxies[job.proxy as usize].cluster.handle_input(
                            Input::AttemptDone {
                                attempt: job.attempt,
                                outcome,
                                load: None,
                            },
                            Instant::from_nanos(at),
                        );
                        self.drain(job.proxy);
                    }
                }
                Ev::ProbeDone(p, probe, endpoint) => {
                    // A crashed instance refuses the probe's connection.
                    let st = self.proxies[p as usize].offset + endpoint.0;
                    let result = if self.stations[st as usize].fault.down {
                        ProbeResult::Error
                    } else {
                        ProbeResult::Pass
                    };
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
                    let next = at + self.sample_period;
                    if !self.done() && next <= self.arrive_until {
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
            || self.timeseries.is_empty()
        {
            self.sample();
        }
    }

    fn done(&self) -> bool {
        self.live == 0 && (self.now >= self.arrive_until || self.arrivals_left == 0)
    }

    fn arrive(&mut self, p: u32) {
        if self.now >= self.arrive_until || self.arrivals_left == 0 {
            return;
        }
        self.arrivals_left -= 1;
        self.live += 1;
        let px = &mut self.proxies[p as usize];
        let key = (u64::from(p) << 40) | px.next_seq;
        px.next_seq += 1;
        px.cluster.handle_input(
            Input::Request {
                request: RequestId(key),
                hash: None,
            },
            Instant::from_nanos(self.now),
        );
        if self.now >= self.warmup {
            self.first_measured.get_or_insert(self.now);
        }
        self.drain(p);
        let next = self.next_arrival(p, self.now);
        self.push(next, Ev::Arrive(p));
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
                    let station = self.proxies[p as usize].offset + endpoint.0;
                    let job = Job {
                        proxy: p,
                        attempt,
                        request: request.0,
                        retry,
                        station,
                        cancelled: false,
                        serving: false,
                        generation: 0,
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
                            self.jobs.push(job);
                            (self.jobs.len() - 1) as u32
                        }
                    };
                    self.by_attempt.insert((p, attempt), j);
                    self.stations[station as usize].stats.attempts += 1;
                    self.window.attempts += 1;
                    self.window.per_endpoint[station as usize] += 1;
                    let d = self.net_delay(request.0, retry, Lane::NetOut);
                    self.push(now + d, Ev::AtInstance(j));
                }
                Output::Cancel { attempt, .. } => {
                    if let Some(j) = self.by_attempt.remove(&(p, attempt)) {
                        self.jobs[j as usize].cancelled = true;
                    }
                }
                Output::Probe(probe) => {
                    let rtt = 2 * self.net_delay(probe.probe.0, 0, Lane::NetOut);
                    self.push(now + rtt, Ev::ProbeDone(p, probe.probe, probe.endpoint));
                }
                Output::BalancerProbe { endpoint } => {
                    let st =
                        &self.stations[(self.proxies[p as usize].offset + endpoint.0) as usize];
                    let reply = ProbeReply {
                        rif: st.busy + st.queue.len() as u32,
                        latency: mesh_core::Duration::from_nanos(
                            (st.dist.mean_ns() * st.slowdown * st.fault.slowdown) as u64,
                        ),
                    };
                    let rtt = 2 * self.net_delay(u64::from(endpoint.0) ^ now, 0, Lane::NetOut);
                    self.push(now + rtt, Ev::BalancerProbeDone(p, endpoint, reply));
                }
                Output::Finished {
                    result,
                    attempts,
                    started,
                    ..
                } => self.finished(result, attempts, started.as_nanos()),
                Output::Event(e) => self.event(p, &e),
            }
        }
        let px = &mut self.proxies[p as usize];
        let next = px.cluster.poll_timeout().map(Instant::as_nanos);
        if next != px.timer_at
            && let Some(t) = next
        {
            px.timer_at = Some(t);
            self.push(t.max(now), Ev::Timer(p));
        }
    }

    fn net_delay(&self, request: u64, retry: u32, lane: Lane) -> u64 {
        match &self.net {
            Dist::Constant { value } => value.as_nanos(),
            d => d
                .quantile_ns(uniform(self.seed, request, retry, lane))
                .round() as u64,
        }
    }

    /// A request ended; it is measured when it arrived after the warm-up.
    fn finished(&mut self, result: Finish, attempts: u32, started: u64) {
        self.live -= 1;
        let latency = self.now - started;
        let ok = result.is_success();
        self.window.requests += 1;
        self.window.errors += u64::from(!ok);
        self.window.hist.saturating_record(latency.max(1));
        if started < self.warmup {
            return;
        }
        self.last_finish = self.now;
        self.requests += 1;
        self.attempts += u64::from(attempts);
        self.hist.saturating_record(latency.max(1));
        if ok {
            self.successes += 1;
        } else {
            *self.failures.entry(result.class().to_owned()).or_insert(0) += 1;
        }
    }

    fn event(&mut self, p: u32, e: &PolicyEvent) {
        match e {
            PolicyEvent::Outlier(OutlierEvent::Ejected { endpoint, .. }) => {
                let s = self.proxies[p as usize].offset + endpoint.0;
                self.stations[s as usize].stats.ejections += 1;
                self.window.ejections += 1;
            }
            PolicyEvent::HealthChanged { .. } => self.window.health_changes += 1,
            _ => {}
        }
        let kind = e.kind();
        if let Some(n) = self.events.get_mut(kind) {
            *n += 1;
        } else {
            self.events.insert(kind.to_owned(), 1);
        }
    }

    fn at_instance(&mut self, j: u32) {
        let job = self.jobs[j as usize];
        if job.cancelled {
            self.free_jobs.push(j);
            return;
        }
        let st = &mut self.stations[job.station as usize];
        if st.fault.down {
            // Connection refused.
            st.stats.errors += 1;
            self.respond(j, Outcome::LocalError);
        } else if st.fault.fast_fail > 0.0
            && uniform(self.seed, job.request, job.retry, Lane::FastFail) < st.fault.fast_fail
        {
            // A fast-failing instance answers 503 without queueing or serving.
            st.stats.errors += 1;
            self.respond(j, Outcome::GatewayError);
        } else if st.busy < st.concurrency {
            self.start(j);
        } else if (st.queue.len() as u64) < u64::from(st.queue_limit) {
            st.queue.push_back(j);
        } else {
            // A full queue answers 503 at once.
            st.stats.errors += 1;
            self.respond(j, Outcome::GatewayError);
        }
    }

    fn start(&mut self, j: u32) {
        let job = &mut self.jobs[j as usize];
        job.serving = true;
        job.generation = job.generation.wrapping_add(1);
        let (generation, request, retry, station) =
            (job.generation, job.request, job.retry, job.station);
        let u = uniform(self.seed, request, retry, Lane::Service);
        let st = &mut self.stations[station as usize];
        st.busy += 1;
        let t = (st.dist.quantile_ns(u) * st.slowdown * st.fault.slowdown).round() as u64;
        self.push(self.now + t, Ev::ServiceDone(j, generation));
    }

    /// Applies a fault state to station `s`. A crash resets every request in service or queued
    /// (the client sees a local-origin failure) and leaves the station empty.
    fn set_fault(&mut self, s: u32, state: FaultState) {
        let was_down = self.stations[s as usize].fault.down;
        self.stations[s as usize].fault = state;
        if was_down || !state.down {
            return;
        }
        let mut reset: Vec<u32> = self.stations[s as usize].queue.drain(..).collect();
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
        for j in reset {
            if !self.jobs[j as usize].cancelled {
                self.stations[s as usize].stats.errors += 1;
            }
            self.respond(j, Outcome::LocalError);
        }
    }

    fn service_done(&mut self, j: u32) {
        self.jobs[j as usize].serving = false;
        let job = self.jobs[j as usize];
        let st = &mut self.stations[job.station as usize];
        st.busy -= 1;
        let rate = st.error_rate.max(st.fault.error_rate);
        let failed = rate > 0.0 && uniform(self.seed, job.request, job.retry, Lane::Error) < rate;
        if failed {
            st.stats.errors += 1;
        }
        self.respond(
            j,
            if failed {
                Outcome::ServerError
            } else {
                Outcome::Success
            },
        );
        // Next in line, skipping cancelled requests.
        while let Some(next) = self.stations[job.station as usize].queue.pop_front() {
            if self.jobs[next as usize].cancelled {
                self.free_jobs.push(next);
                continue;
            }
            self.start(next);
            break;
        }
    }

    fn respond(&mut self, j: u32, outcome: Outcome) {
        let job = self.jobs[j as usize];
        if job.cancelled {
            self.free_jobs.push(j);
            return;
        }
        let d = self.net_delay(job.request, job.retry, Lane::NetBack);
        self.push(self.now + d, Ev::Response(j, outcome));
    }

    fn sample(&mut self) {
        let w = &mut self.window;
        let ejected = self
            .proxies
            .iter()
            .map(|p| u64::from(p.cluster.outlier().map_or(0, |o| o.ejected_count())))
            .sum();
        self.timeseries.push(Sample {
            t_s: self.now as f64 / 1e9,
            requests: w.requests,
            errors: w.errors,
            p50_ms: quantile_ms(&w.hist, 0.5),
            p99_ms: quantile_ms(&w.hist, 0.99),
            p999_ms: quantile_ms(&w.hist, 0.999),
            attempts: w.attempts,
            ejected,
            ejections: w.ejections,
            health_changes: w.health_changes,
        });
        self.endpoint_series.push(w.per_endpoint.clone());
        w.hist.reset();
        w.requests = 0;
        w.errors = 0;
        w.attempts = 0;
        w.ejections = 0;
        w.health_changes = 0;
        w.per_endpoint.iter_mut().for_each(|c| *c = 0);
    }
}
