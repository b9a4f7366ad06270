//! The workload builder: what one run *is*, built once from a scenario for both drivers.
//!
//! [`Workload::build`] turns a sweep point, a strategy and a replication into the run's
//! instances ([`Station`]s), client proxies ([`ProxyPlan`]s: each with its seed, arrival clock,
//! request keys, endpoint metadata and the strategy's policy with the proxy's zone filled in),
//! and the network between zones ([`NetworkModel`]). The simulator and the live load generator
//! both start from it, so a feature of the world lands here once and acts the same in both.
//! [`LoadMeter`] is the one model of what an instance reports about itself (ORCA load reports
//! with each response, Prequal probe answers), used by the simulator's stations and the live
//! backends alike.

use std::sync::Arc;

use mesh_core::{
    Cluster, ClusterConfig, EndpointMeta, LoadReport, ProbeReply, RequestId, Rng, Seed,
};

use crate::graph::Script;
use crate::trace::TraceData;
use crate::{Arrival, ArrivalClock, Dist, Keys, Lane, Loaded, Scenario, crn_uniform, unit};

/// One instance of a service, as both drivers run it.
#[derive(Clone, Debug)]
pub struct Station {
    /// Service name.
    pub service: String,
    /// Index within the service.
    pub index: u32,
    /// Zone index (into [`Workload::zones`]).
    pub zone: u16,
    /// Requests served at once.
    pub concurrency: u32,
    /// Requests queued beyond `concurrency` (`u32::MAX`: unbounded).
    pub queue_limit: u32,
    /// Service-time distribution (before `slowdown`).
    pub dist: Dist,
    /// Service-time multiplier.
    pub slowdown: f64,
    /// Share of served requests answered 500.
    pub error_rate: f64,
    /// Its metadata in every client's starting view.
    pub meta: EndpointMeta,
    /// Whether active health checks wait for a free server like requests
    /// (`services.X.health_check_queues`).
    pub health_check_queues: bool,
    /// Whether it serves queued requests their client abandoned (`services.X.serves_abandoned`).
    pub serves_abandoned: bool,
    /// The share of health checks that fail, when the health path has its own
    /// (`services.X.health_error_rate`).
    pub health_error_rate: Option<f64>,
    /// Whether it serves when the run starts (not an instance the membership timeline starts
    /// later).
    pub present: bool,
    /// Its service's script, when it calls other services.
    pub script: Option<Arc<Script>>,
    /// Its sidecars: per upstream of the script (in [`Script::upstreams`] order), the index of
    /// the proxy its calls leave through.
    pub sidecars: Vec<u32>,
    /// The bytes of a successful response (`services.X.response_size`; 0: a few bytes).
    pub response_bytes: u64,
    /// The time those bytes take on the link (`network.bandwidth`), ns: added to a successful
    /// response's way back.
    pub response_ns: u64,
}

/// One client proxy: everything a driver needs to run it.
#[derive(Clone, Debug)]
pub struct ProxyPlan {
    /// Client population name.
    pub client: String,
    /// Index within the population.
    pub index: u32,
    /// The population's index among the scenario's clients (name order).
    pub client_index: u16,
    /// The service it calls.
    pub target: String,
    /// Global station index of the target's instance 0: endpoint `e` is station `offset + e`.
    pub offset: u32,
    /// Zone index (into [`Workload::zones`]).
    pub zone: u16,
    /// The target's instances as this proxy's discovery view starts.
    pub endpoints: Vec<EndpointMeta>,
    /// The strategy's policy, with zone-aware routing's local zone and local cluster filled in.
    pub config: ClusterConfig,
    /// The proxy's seed (`run / client / <name> / <index>`).
    pub seed: Seed,
    /// The population's seed (`run / client / <name>`): what its proxies share.
    pub population_seed: Seed,
    /// The membership changes this proxy hears, with when (after its propagation delays).
    pub membership: Vec<(u64, mesh_core::discovery::Change)>,
    /// A sidecar's calling instance (a station index); `None` for a client's proxy. A sidecar
    /// has no arrivals of its own: its requests are the calls its instance's script makes.
    pub caller: Option<u32>,
    /// Its edge of the call graph (index into [`Workload::edges`]).
    pub edge: u32,
    arrival: Arrival,
    proxies: u32,
    keys: Option<Arc<KeyTable>>,
    /// A trace's key column (each arrival's key index), when it has one.
    trace_keys: Option<Arc<[u32]>>,
}

impl ProxyPlan {
    /// A fresh `Cluster` for the proxy, at time 0.
    pub fn cluster(&self) -> Cluster {
        Cluster::new(
            &self.config,
            &self.endpoints,
            self.seed.fork("cluster"),
            mesh_core::Instant::EPOCH,
        )
        .expect("strategies and endpoints are validated when the scenario loads")
    }

    /// The proxy's arrival clock and the stream of uniforms that drives it.
    pub fn arrivals(&self) -> (ArrivalClock, Rng) {
        (
            ArrivalClock::of_proxy(&self.arrival, self.index, self.proxies)
                .modulated_by(self.population_seed.fork("modulation")),
            self.seed.fork("arrivals").rng(),
        )
    }

    /// Closed loop (`process: closed`): this proxy's virtual users (the population's shared as
    /// evenly as possible, the first proxies taking one more) and their think time.
    pub fn closed_users(&self) -> Option<(u32, &Dist)> {
        match &self.arrival {
            Arrival::Closed { users, think } => Some((
                users / self.proxies + u32::from(self.index < users % self.proxies),
                think,
            )),
            _ => None,
        }
    }

    /// The think time (ns) of a closed-loop user after `request` ends: a common random number
    /// of the request, so both drivers draw the same.
    pub fn think_ns(&self, run_seed: u64, request: RequestId) -> u64 {
        match &self.arrival {
            Arrival::Closed { think, .. } => think
                .quantile_ns(crn_uniform(run_seed, request.0, 0, Lane::Think))
                .round() as u64,
            _ => 0,
        }
    }

    /// The request id of this proxy's `seq`-th request, given the proxy's global index: the
    /// same in both drivers, so the common random numbers of a request are too.
    pub fn request_id(global: u32, seq: u64) -> RequestId {
        RequestId((u64::from(global) << 40) | seq)
    }

    /// The request's key index, when the client has `keys:`.
    #[inline]
    pub fn key_index(&self, run_seed: u64, request: RequestId) -> Option<u32> {
        if let Some(t) = &self.keys {
            return Some(t.draw(crn_uniform(run_seed, request.0, 0, Lane::Key)));
        }
        let keys = self.trace_keys.as_ref()?;
        // The proxy's `seq`-th arrival is the trace's `seq * proxies + index`-th.
        let seq = request.0 & ((1 << 40) - 1);
        let j = seq * u64::from(self.proxies) + u64::from(self.index);
        keys.get(j as usize).copied()
    }

    /// The request's key (index and hash), when the client has `keys:`.
    #[inline]
    pub fn key(&self, run_seed: u64, request: RequestId) -> Option<(u32, u64)> {
        self.key_index(run_seed, request).map(|k| (k, key_hash(k)))
    }
}

/// The header that carries a request's key in live mode.
pub const KEY_HEADER: &str = "x-meshbench-key";

/// The text of key `k`: its index in decimal (`17`), as sent in [`KEY_HEADER`].
pub fn key_text(k: u32) -> String {
    k.to_string()
}

/// The hash of key `k`: XXH64 with seed 0 over its text, as Envoy hashes a header value for
/// `hash_policy: header` (`HashUtil::xxHash64`).
pub fn key_hash(k: u32) -> u64 {
    // The same bytes as `key_text`, formatted on the stack (no allocation per request).
    xxhash_rust::xxh64::xxh64(itoa::Buffer::new().format(k).as_bytes(), 0)
}

/// Draws key indices by inverse transform from one uniform (so a request's key is a common
/// random number).
#[derive(Debug)]
struct KeyTable {
    count: u32,
    /// Cumulative probabilities (Zipf); empty for uniform keys.
    cdf: Vec<f64>,
}

impl KeyTable {
    fn new(keys: &Keys) -> Self {
        match keys {
            Keys::Uniform { count } => KeyTable {
                count: *count,
                cdf: Vec::new(),
            },
            Keys::Zipf { count, exponent } => {
                let mut cdf = Vec::with_capacity(*count as usize);
                let mut total = 0.0;
                for k in 0..*count {
                    total += (f64::from(k) + 1.0).powf(-exponent);
                    cdf.push(total);
                }
                for c in &mut cdf {
                    *c /= total;
                }
                KeyTable { count: *count, cdf }
            }
        }
    }

    fn draw(&self, u: f64) -> u32 {
        if self.cdf.is_empty() {
            return ((u * f64::from(self.count)) as u32).min(self.count - 1);
        }
        (self.cdf.partition_point(|&c| c < u) as u32).min(self.count - 1)
    }
}

/// The one-way latency between every pair of zones.
#[derive(Clone, Debug)]
pub struct NetworkModel {
    zones: usize,
    table: Vec<Dist>,
}

impl NetworkModel {
    /// One hop from zone `from` to zone `to` for attempt `attempt` of `request` on `lane`
    /// (ns), a common random number: the same for every strategy and both drivers.
    #[inline]
    pub fn delay_ns(
        &self,
        from: u16,
        to: u16,
        seed: u64,
        request: u64,
        attempt: u32,
        lane: Lane,
    ) -> u64 {
        match &self.table[usize::from(from) * self.zones + usize::from(to)] {
            Dist::Constant { value } => value.as_nanos(),
            d => d
                .quantile_ns(crn_uniform(seed, request, attempt, lane))
                .round() as u64,
        }
    }

    /// Whether every hop is free (no latency anywhere).
    pub fn is_zero(&self) -> bool {
        self.table
            .iter()
            .all(|d| matches!(d, Dist::Constant { value } if value.is_zero()))
    }
}

/// The zone names of a scenario (one unnamed zone without `zones:`) and its instances, service
/// by service in name order, then by index.
pub fn stations(scenario: &Scenario) -> (Vec<String>, Vec<Station>) {
    let zones: Vec<String> = if scenario.zones.is_empty() {
        vec![String::new()]
    } else {
        scenario.zones.keys().cloned().collect()
    };
    let zone_id = |name: &str| zones.iter().position(|z| z == name).unwrap_or(0) as u16;
    let slots = scenario.membership_plan().slots;
    let mut out = Vec::new();
    for (svc_name, svc) in &scenario.services {
        let specs = svc.instances();
        let n = slots.get(svc_name).copied().unwrap_or(svc.instances);
        let script = (!svc.script.is_empty()).then(|| Arc::new(Script::compile(&svc.script)));
        let response_bytes = svc.response_size.map_or(0, crate::ByteSize::bytes);
        let response_ns = scenario
            .network
            .bandwidth
            .map_or(0, |b| b.transfer_ns(response_bytes));
        // Instances the membership timeline adds are replicas of `index % instances`.
        for i in 0..n {
            let x = &specs[(i % svc.instances.max(1)) as usize];
            out.push(Station {
                service: svc_name.clone(),
                index: i,
                zone: zone_id(x.zone),
                concurrency: x.concurrency,
                queue_limit: x.queue_limit,
                dist: x.service_time.clone(),
                slowdown: x.slowdown,
                error_rate: x.error_rate,
                meta: x.meta(),
                health_check_queues: svc.health_check_queues,
                serves_abandoned: svc.serves_abandoned,
                health_error_rate: svc.health_error_rate.map(crate::Probability::get),
                present: i < svc.instances,
                script: script.clone(),
                sidecars: Vec::new(),
                response_bytes,
                response_ns,
            });
        }
    }
    (zones, out)
}

impl NetworkModel {
    /// The scenario's network over `zones` (as [`stations`] names them).
    pub fn of(scenario: &Scenario, zones: &[String]) -> Self {
        let mut table = Vec::with_capacity(zones.len() * zones.len());
        for a in zones {
            for b in zones {
                table.push(scenario.network.between(a, b).clone());
            }
        }
        NetworkModel {
            zones: zones.len(),
            table,
        }
    }
}

/// The response header that carries an instance's load report (gRPC ORCA's per-request
/// report, in its `TEXT` form).
pub const LOAD_HEADER: &str = "endpoint-load-metrics";

/// A load report as [`LOAD_HEADER`]'s value: `TEXT application_utilization=0.52,
/// rps_fractional=812.3, eps=1.5` (ORCA's named metrics).
pub fn format_load_report(r: &LoadReport) -> String {
    format!(
        "TEXT application_utilization={:.6}, rps_fractional={:.6}, eps={:.6}",
        r.utilization, r.qps, r.eps
    )
}

/// Reads a [`LOAD_HEADER`] value: `application_utilization` (or, without it,
/// `cpu_utilization`), `rps_fractional` and `eps`; `None` when it is not a `TEXT` report or has
/// no utilization.
pub fn parse_load_report(v: &str) -> Option<LoadReport> {
    let body = v.trim().strip_prefix("TEXT")?;
    let (mut app, mut cpu, mut qps, mut eps) = (None, None, 0.0, 0.0);
    for kv in body.split(',') {
        let Some((k, v)) = kv.split_once('=') else {
            continue;
        };
        let Ok(x) = v.trim().parse::<f64>() else {
            continue;
        };
        if !x.is_finite() || x < 0.0 {
            continue;
        }
        match k.trim() {
            "application_utilization" => app = Some(x),
            "cpu_utilization" => cpu = Some(x),
            "rps_fractional" => qps = x,
            "eps" => eps = x,
            _ => {}
        }
    }
    Some(LoadReport {
        qps,
        eps,
        utilization: app.or(cpu)?,
    })
}

/// The path a live backend answers Prequal probes on.
pub const PROBE_PATH: &str = "/probe";

/// The response header that carries a probe's answer: `rif=3, latency_ns=5120000`.
pub const PROBE_HEADER: &str = "x-meshbench-probe";

/// A probe answer as [`PROBE_HEADER`]'s value.
pub fn format_probe(r: &ProbeReply) -> String {
    format!("rif={}, latency_ns={}", r.rif, r.latency.as_nanos())
}

/// Reads a [`PROBE_HEADER`] value.
pub fn parse_probe(v: &str) -> Option<ProbeReply> {
    let (mut rif, mut latency) = (None, None);
    for kv in v.split(',') {
        match kv.split_once('=').map(|(k, v)| (k.trim(), v.trim())) {
            Some(("rif", v)) => rif = v.parse::<u32>().ok(),
            Some(("latency_ns", v)) => latency = v.parse::<u64>().ok(),
            _ => {}
        }
    }
    Some(ProbeReply {
        rif: rif?,
        latency: mesh_core::Duration::from_nanos(latency?),
    })
}

/// The request header that names the calling proxy's zone (an index into the scenario's zone
/// names), so a live backend applies the zone pair's latency.
pub const ZONE_HEADER: &str = "x-meshbench-zone";

/// The header that carries the calling proxy's client population (its index in name order),
/// so a live backend can play a partition from that population.
pub const CLIENT_HEADER: &str = "x-meshbench-client";

/// The request header carrying the caller's sidecar ([`Workload::sidecar_of`]) to the
/// in-process backends when sidecars queue (`mesh.concurrency`): the callee spends the
/// attempt's outbound time in that sidecar's workers.
pub const SIDECAR_HEADER: &str = "x-meshbench-sidecar";

/// One run's world. See the module docs.
#[derive(Clone, Debug)]
pub struct Workload {
    /// The run's seed (`scenario seed / replication`); the common random numbers hash it.
    pub seed: Seed,
    /// Zone names; index 0 is the only zone (named "") when the scenario has none.
    pub zones: Vec<String>,
    /// Every instance, service by service in name order, then by index.
    pub stations: Vec<Station>,
    /// Every proxy, client by client in name order, then by index.
    pub proxies: Vec<ProxyPlan>,
    /// Latency between zones.
    pub network: NetworkModel,
    /// Whether the proxies' balancer reads server load reports (ORCA): drivers attach them to
    /// responses only then.
    pub load_reports: bool,
    /// Whether instances need to measure their load at all (ORCA reports or Prequal probes).
    pub meters: bool,
    /// The membership timeline's starts and stops: (ns, station, serving from then on), by
    /// time.
    pub presence: Vec<(u64, u32, bool)>,
    /// Client proxies: `proxies[..clients]`; the rest are sidecars.
    pub clients: usize,
    /// The call graph's edges, (caller, callee): a client population and the service it calls
    /// first, then each (service, upstream) pair its script calls, in name order.
    pub edges: Vec<(String, String)>,
    /// Time an attempt spends in its caller's sidecar and in its callee's (`mesh:`), when either
    /// costs anything.
    pub sidecar_cost: Option<(Dist, Dist)>,
    /// The workers of every sidecar when sidecars queue (`mesh.concurrency`, with a cost):
    /// sidecar [`Workload::sidecar_of`] serves that many attempts at once, first come, first
    /// served.
    pub sidecar_workers: Option<u32>,
    /// What a new connection's handshakes cost (`mesh.handshake`), for pooled policies.
    pub handshake: crate::graph::Handshake,
}

impl Workload {
    /// The sidecar proxy `p`'s attempts leave through: its calling instance's (a sidecar
    /// station numbered as the instance's station, shared by the instance's way in and all its
    /// upstreams), or a client proxy's own (`stations.len() + p`). There are
    /// [`Workload::sidecar_count`] of them.
    pub fn sidecar_of(&self, p: usize) -> u32 {
        self.proxies[p]
            .caller
            .unwrap_or((self.stations.len() + p) as u32)
    }

    /// How many sidecars [`Workload::sidecar_of`] numbers: one per instance, one per client
    /// proxy.
    pub fn sidecar_count(&self) -> usize {
        self.stations.len() + self.clients
    }

    /// The world of sweep point `point`, strategy `strategy` (index into the point's
    /// strategies), replication `replication`, base seed `seed`. Every point and strategy of a
    /// replication shares the replication's seed (common random numbers).
    pub fn build(
        loaded: &Loaded,
        point: usize,
        strategy: usize,
        replication: u32,
        seed: u64,
    ) -> Workload {
        let pt = &loaded.points[point];
        let none = std::collections::BTreeMap::new();
        let ups = pt
            .upstreams
            .get(&pt.strategies[strategy].0)
            .unwrap_or(&none);
        Self::of(
            &pt.scenario,
            &pt.strategies[strategy].1,
            ups,
            replication,
            seed,
        )
    }

    /// The world of `scenario` under policy `config`, with `upstreams`' policies for calls to
    /// the services they name.
    pub fn of(
        scenario: &Scenario,
        config: &ClusterConfig,
        upstreams: &std::collections::BTreeMap<String, ClusterConfig>,
        replication: u32,
        seed: u64,
    ) -> Self {
        let run_seed = Seed::new(seed).fork_index(u64::from(replication));
        let (zones, stations) = stations(scenario);
        let zone_id = |name: &str| zones.iter().position(|z| z == name).unwrap_or(0) as u16;
        let mut offsets = std::collections::BTreeMap::new();
        for (i, st) in stations.iter().enumerate().rev() {
            offsets.insert(st.service.clone(), i as u32);
        }
        let mplan = scenario.membership_plan();
        let propagation = scenario
            .membership
            .as_ref()
            .map_or(Dist::ZERO, |m| m.propagation.clone());
        let mut proxies = Vec::new();
        let mut edges: Vec<(String, String)> = Vec::new();
        let view = |target: &str| {
            let offset = offsets[target];
            let n = scenario.services[target].instances as usize;
            let endpoints: Vec<EndpointMeta> = stations[offset as usize..offset as usize + n]
                .iter()
                .map(|s| s.meta.clone())
                .collect();
            (offset, endpoints)
        };
        let policy = |target: &str| upstreams.get(target).unwrap_or(config);
        for (client_index, (client_name, c)) in (0u16..).zip(&scenario.clients) {
            let (offset, endpoints) = view(&c.target);
            let edge = edges.len() as u32;
            edges.push((client_name.clone(), c.target.clone()));
            let keys = c.keys.as_ref().map(|k| Arc::new(KeyTable::new(k)));
            // Zone-aware routing's local cluster: this population's proxies per zone.
            let mut local_cluster = std::collections::BTreeMap::new();
            if !scenario.zones.is_empty() {
                for z in scenario.zones.keys() {
                    local_cluster.insert(z.clone(), 0u64);
                }
                for p in 0..c.proxies {
                    if let Some(z) = c.zone.as_ref().and_then(|pl| pl.zone_of(p)) {
                        *local_cluster.entry(z.to_owned()).or_insert(0) += 1;
                    }
                }
            }
            for p in 0..c.proxies {
                let zone = c
                    .zone
                    .as_ref()
                    .and_then(|pl| pl.zone_of(p))
                    .unwrap_or("")
                    .to_owned();
                let config = localize(policy(&c.target), &zone, &local_cluster, scenario);
                proxies.push(ProxyPlan {
                    client: client_name.clone(),
                    index: p,
                    client_index,
                    target: c.target.clone(),
                    offset,
                    zone: zone_id(&zone),
                    endpoints: endpoints.clone(),
                    config,
                    seed: run_seed
                        .fork("client")
                        .fork(client_name)
                        .fork_index(u64::from(p)),
                    population_seed: run_seed.fork("client").fork(client_name),
                    membership: mplan.deliveries(
                        &c.target,
                        &propagation,
                        run_seed.value(),
                        proxies.len() as u32,
                    ),
                    caller: None,
                    edge,
                    trace_keys: match &c.arrival {
                        Arrival::Trace {
                            data: TraceData { keys, .. },
                            ..
                        } => keys.clone(),
                        _ => None,
                    },
                    arrival: c.arrival.clone(),
                    proxies: c.proxies,
                    keys: keys.clone(),
                });
            }
        }
        let clients = proxies.len();
        // Sidecars: one per (instance with a script, upstream), instances in station order.
        let mut assigned = Vec::new();
        let mut sidecar_edges = std::collections::BTreeMap::new();
        for (svc_name, svc) in &scenario.services {
            if svc.script.is_empty() {
                continue;
            }
            // Zone-aware routing's local cluster: the calling service's instances per zone.
            let mut local_cluster = std::collections::BTreeMap::new();
            if !scenario.zones.is_empty() {
                for z in scenario.zones.keys() {
                    local_cluster.insert(z.clone(), 0u64);
                }
                for st in stations.iter().filter(|st| &st.service == svc_name) {
                    *local_cluster
                        .entry(zones[usize::from(st.zone)].clone())
                        .or_insert(0) += 1;
                }
            }
            let first = offsets[svc_name] as usize;
            let mine_stations = stations[first..]
                .iter()
                .take_while(|st| &st.service == svc_name);
            for (st_i, st) in (first..).zip(mine_stations) {
                let script = st.script.clone().expect("a service with a script");
                let zone = zones[usize::from(st.zone)].clone();
                let mut mine = Vec::with_capacity(script.upstreams.len());
                for up in &script.upstreams {
                    let edge = *sidecar_edges
                        .entry((svc_name.clone(), up.clone()))
                        .or_insert_with(|| {
                            edges.push((svc_name.clone(), up.clone()));
                            edges.len() as u32 - 1
                        });
                    let (offset, endpoints) = view(up);
                    mine.push(proxies.len() as u32);
                    let seed = run_seed
                        .fork("sidecar")
                        .fork(svc_name)
                        .fork_index(u64::from(st.index))
                        .fork(up);
                    proxies.push(ProxyPlan {
                        client: svc_name.clone(),
                        index: st.index,
                        client_index: u16::MAX,
                        target: up.clone(),
                        offset,
                        zone: st.zone,
                        endpoints,
                        config: localize(policy(up), &zone, &local_cluster, scenario),
                        seed,
                        population_seed: run_seed.fork("sidecar").fork(svc_name),
                        membership: mplan.deliveries(
                            up,
                            &propagation,
                            run_seed.value(),
                            proxies.len() as u32,
                        ),
                        caller: Some(st_i as u32),
                        edge,
                        trace_keys: None,
                        arrival: Arrival::Closed {
                            users: 0,
                            think: Dist::ZERO,
                        },
                        proxies: 1,
                        keys: None,
                    });
                }
                assigned.push((st_i, mine));
            }
        }
        let mut stations = stations;
        for (st_i, mine) in assigned {
            stations[st_i].sidecars = mine;
        }
        let presence = scenario.presence();
        let sidecar_cost = scenario.mesh.costs().then(|| {
            let (o, i) = scenario.mesh.overheads();
            (
                o.cloned().unwrap_or(Dist::ZERO),
                i.cloned().unwrap_or(Dist::ZERO),
            )
        });
        Workload {
            presence,
            clients,
            edges,
            sidecar_cost,
            sidecar_workers: scenario.mesh.workers(),
            handshake: scenario.mesh.handshake.clone().unwrap_or_default(),
            seed: run_seed,
            network: NetworkModel::of(scenario, &zones),
            zones,
            stations,
            proxies,
            load_reports: matches!(
                config.balancer,
                mesh_core::BalancerConfig::OrcaWeightedRoundRobin(_)
            ),
            meters: matches!(
                config.balancer,
                mesh_core::BalancerConfig::OrcaWeightedRoundRobin(_)
                    | mesh_core::BalancerConfig::Prequal(_)
            ),
        }
    }
}

/// `config` for a proxy in zone `zone` of a caller whose proxies per zone are `local_cluster`
/// (zone-aware routing), with the scenario's zone weights (locality-weighted balancing).
fn localize(
    config: &ClusterConfig,
    zone: &str,
    local_cluster: &std::collections::BTreeMap<String, u64>,
    scenario: &Scenario,
) -> ClusterConfig {
    let mut config = config.clone();
    if let Some(z) = &mut config.zone_aware {
        z.local_zone = zone.to_owned();
        z.local_cluster.clone_from(local_cluster);
    }
    if let Some(l) = &mut config.locality_weighted_lb {
        l.locality_weights = scenario
            .zones
            .iter()
            .map(|(name, z)| (name.clone(), z.weight))
            .collect();
    }
    config
}

/// Length of the window over which an instance measures its own qps, errors and utilization.
pub const LOAD_WINDOW_NS: u64 = 1_000_000_000;

/// What an instance knows about its own load, measured the same way in the simulator and in
/// the live backends: requests in flight (queued or in service), utilization (time-averaged
/// busy servers / concurrency), queries and errors per second over the last whole
/// [`LOAD_WINDOW_NS`] window (or the current one, before the first ends), and its latency as a
/// function of load: an exponentially weighted mean (weight 1/8) of the latencies (arrival to
/// response) of requests that arrived when [`RIF_BUCKETS`]-capped `r` others were in flight.
/// A Prequal probe is answered with the requests in flight now and the latency estimate at that
/// load (Wydrowski et al., NSDI'24, section 3: the server reports its latency at its current
/// RIF): the nearest load level's estimate updated within the last [`LOAD_WINDOW_NS`], or 0
/// when none is that recent, so an instance that took no traffic for a while is tried again
/// instead of being judged forever by an old, unlucky sample.
/// ORCA load reports ([`LoadMeter::report`]) and Prequal probe answers ([`LoadMeter::probe`])
/// come from it. Times are ns on any clock that does not go backwards.
#[derive(Clone, Debug)]
pub struct LoadMeter {
    concurrency: u32,
    in_flight: u32,
    busy: u32,
    window_start: u64,
    last_change: u64,
    busy_ns: u128,
    done: u64,
    errors: u64,
    last: Option<LoadReport>,
    /// Latency EWMA per requests-in-flight-at-arrival bucket (0 where none was seen), and when
    /// each was last updated.
    latency_ns: [f64; RIF_BUCKETS],
    latency_at_ns: [u64; RIF_BUCKETS],
}

/// Load levels (requests in flight) a [`LoadMeter`] keeps a latency estimate for; higher
/// loads share the last.
pub const RIF_BUCKETS: usize = 32;

impl LoadMeter {
    /// A meter for an instance serving `concurrency` requests at once, from time `now`.
    pub fn new(concurrency: u32, now: u64) -> Self {
        LoadMeter {
            concurrency: concurrency.max(1),
            in_flight: 0,
            busy: 0,
            window_start: now,
            last_change: now,
            busy_ns: 0,
            done: 0,
            errors: 0,
            last: None,
            latency_ns: [0.0; RIF_BUCKETS],
            latency_at_ns: [0; RIF_BUCKETS],
        }
    }

    fn advance(&mut self, now: u64) {
        let now = now.max(self.last_change);
        while now >= self.window_start + LOAD_WINDOW_NS {
            let end = self.window_start + LOAD_WINDOW_NS;
            self.busy_ns += u128::from(self.busy) * u128::from(end - self.last_change);
            self.last = Some(self.figures(LOAD_WINDOW_NS));
            self.window_start = end;
            self.last_change = end;
            self.busy_ns = 0;
            self.done = 0;
            self.errors = 0;
        }
        self.busy_ns += u128::from(self.busy) * u128::from(now - self.last_change);
        self.last_change = now;
    }

    fn figures(&self, span_ns: u64) -> LoadReport {
        let secs = span_ns as f64 / 1e9;
        LoadReport {
            qps: self.done as f64 / secs,
            eps: self.errors as f64 / secs,
            utilization: self.busy_ns as f64 / (f64::from(self.concurrency) * span_ns as f64),
        }
    }

    /// A request reached the instance (queued or served); returns the requests already in
    /// flight there, which [`LoadMeter::respond`] takes back with its latency.
    pub fn arrive(&mut self, now: u64) -> u32 {
        self.advance(now);
        self.in_flight += 1;
        self.in_flight - 1
    }

    /// A request entered service.
    pub fn start(&mut self, now: u64) {
        self.advance(now);
        self.busy += 1;
    }

    /// A request left (served, failed or reset); `started` when it had entered service.
    pub fn leave(&mut self, now: u64, started: bool) {
        self.advance(now);
        self.in_flight = self.in_flight.saturating_sub(1);
        if started {
            self.busy = self.busy.saturating_sub(1);
        }
    }

    /// A response left; `served` is its latency since it arrived and the requests in flight it
    /// found (`None` for a 503 answered without queueing or service); `failed` for a 5xx.
    pub fn respond(&mut self, now: u64, served: Option<(u64, u32)>, failed: bool) {
        self.advance(now);
        self.done += 1;
        self.errors += u64::from(failed);
        if let Some((latency_ns, rif)) = served {
            let i = (rif as usize).min(RIF_BUCKETS - 1);
            let b = &mut self.latency_ns[i];
            if *b == 0.0 || now.saturating_sub(self.latency_at_ns[i]) > LOAD_WINDOW_NS {
                *b = latency_ns.max(1) as f64;
            } else {
                *b += (latency_ns as f64 - *b) / 8.0;
            }
            self.latency_at_ns[i] = now;
        }
    }

    /// The latency estimate at `rif` requests in flight at `now`: the bucket's, else the
    /// nearest bucket's (below first), among those updated within the last window; else 0.
    fn latency_at(&self, rif: u32, now: u64) -> f64 {
        let at = (rif as usize).min(RIF_BUCKETS - 1);
        (0..RIF_BUCKETS)
            .flat_map(|d| [at.checked_sub(d), Some(at + d).filter(|&i| i < RIF_BUCKETS)])
            .flatten()
            .find(|&i| {
                self.latency_ns[i] > 0.0
                    && now.saturating_sub(self.latency_at_ns[i]) <= LOAD_WINDOW_NS
            })
            .map_or(0.0, |i| self.latency_ns[i])
    }

    /// The load report sent with a response at `now` (gRPC ORCA's per-request
    /// `endpoint-load-metrics`).
    pub fn report(&mut self, now: u64) -> LoadReport {
        self.advance(now);
        match self.last {
            Some(r) => r,
            None => self.figures((now - self.window_start).max(1)),
        }
    }

    /// A Prequal probe's answer at `now`: requests in flight and the recent latency.
    pub fn probe(&mut self, now: u64) -> ProbeReply {
        self.advance(now);
        ProbeReply {
            rif: self.in_flight,
            latency: mesh_core::Duration::from_nanos(
                self.latency_at(self.in_flight, now).round() as u64
            ),
        }
    }
}

/// A uniform in (0, 1) from a proxy's arrival stream.
pub fn next_uniform(rng: &mut Rng) -> f64 {
    use rand::Rng as _;
    unit(rng.next_u64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zipf_keys_follow_their_weights_and_uniform_keys_cover_every_key() {
        let t = KeyTable::new(&Keys::Zipf {
            count: 100,
            exponent: 1.0,
        });
        let n = 200_000;
        let mut counts = [0u32; 100];
        for i in 0..n {
            counts[t.draw((f64::from(i) + 0.5) / f64::from(n)) as usize] += 1;
        }
        let h: f64 = (1..=100).map(|k| 1.0 / f64::from(k)).sum();
        assert!((f64::from(counts[0]) / f64::from(n) - 1.0 / h).abs() < 0.001);
        assert!((f64::from(counts[1]) / f64::from(n) - 0.5 / h).abs() < 0.001);
        let u = KeyTable::new(&Keys::Uniform { count: 7 });
        let mut seen = [false; 7];
        for i in 0..70 {
            seen[u.draw((f64::from(i) + 0.5) / 70.0) as usize] = true;
        }
        assert!(seen.iter().all(|&s| s));
        assert_eq!(u.draw(0.999_999_999), 6);
    }

    #[test]
    fn key_hash_is_xxh64_of_the_key_text() {
        assert_eq!(key_text(17), "17");
        assert_eq!(
            key_hash(17),
            xxhash_rust::xxh64::xxh64(b"17", 0),
            "stable: reports depend on it"
        );
    }

    #[test]
    fn load_reports_and_probe_answers_round_trip_through_their_headers() {
        let r = LoadReport {
            qps: 812.5,
            eps: 1.25,
            utilization: 0.52,
        };
        assert_eq!(parse_load_report(&format_load_report(&r)), Some(r));
        let cpu = parse_load_report("TEXT cpu_utilization=0.3, rps_fractional=10").unwrap();
        assert_eq!((cpu.utilization, cpu.qps), (0.3, 10.0));
        assert_eq!(parse_load_report("BIN xyz"), None);
        assert_eq!(parse_load_report("TEXT rps_fractional=10"), None);
        let p = ProbeReply {
            rif: 3,
            latency: mesh_core::Duration::from_nanos(5_120_000),
        };
        assert_eq!(parse_probe(&format_probe(&p)), Some(p));
        assert_eq!(parse_probe("rif=x"), None);
    }

    #[test]
    fn the_meter_reports_utilization_qps_and_in_flight() {
        let s = 1_000_000_000;
        let mut m = LoadMeter::new(2, 0);
        // One of two servers busy all second, ten responses: utilization 0.5, 10 qps.
        assert_eq!(m.arrive(0), 0);
        m.start(0);
        for i in 1..=10 {
            m.respond(i * s / 10 - 1, None, i == 10);
        }
        let r = m.report(s + 1);
        assert!((r.utilization - 0.5).abs() < 1e-6, "{r:?}");
        assert!(
            (r.qps - 10.0).abs() < 1e-9 && (r.eps - 1.0).abs() < 1e-9,
            "{r:?}"
        );
        assert_eq!(m.probe(s + 1).rif, 1);
        m.leave(s + 2, true);
        assert_eq!(m.probe(s + 3).rif, 0);
        // Latency by load: 2 ms when idle, 10 ms with three ahead; an idle instance reports the
        // idle latency, a loaded one the loaded latency, and an unseen load the nearest seen.
        m.respond(s + 4, Some((2_000_000, 0)), false);
        m.respond(s + 5, Some((10_000_000, 3)), false);
        assert_eq!(m.probe(s + 6).latency.as_nanos(), 2_000_000);
        for _ in 0..4 {
            m.arrive(s + 7);
        }
        assert_eq!(m.probe(s + 8).latency.as_nanos(), 10_000_000);
        m.arrive(s + 9);
        assert_eq!(
            m.probe(s + 10).latency.as_nanos(),
            10_000_000,
            "5 in flight: the nearest seen load is 3"
        );
        // Two seconds on with no response, the estimates are stale: 0, so it is tried again.
        assert_eq!(m.probe(3 * s).latency.as_nanos(), 0);
    }
}
