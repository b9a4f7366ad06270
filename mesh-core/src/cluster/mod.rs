//! The [`Cluster`]: one client proxy's whole upstream policy behind one sans-IO interface.
//!
//! A `Cluster` combines the discovery [`View`], active health checking, outlier detection,
//! failure accrual, Envoy's priority selection with panic, the load balancer, circuit breakers,
//! retries with back-off and budgets, hedging, and the request and per-try timeouts. Drivers
//! (the simulator, the live load generator, a replay) talk to it only through
//! [`Cluster::handle_input`], [`Cluster::poll_output`] and [`Cluster::poll_timeout`]; the loop is
//! in the crate docs.
//!
//! Selection follows Envoy's layering: a priority from the priority load (`hash % 100 + 1`
//! against cumulative loads; one draw per request only when there is more than one level or any
//! degraded host), then the healthy hosts of that level, or all of them when the level is in
//! panic, or its degraded hosts, then the balancer. Each (level, class) has its own balancer,
//! built on first use, as Envoy keeps a scheduler per host source. A host is *available* when
//! discovery says healthy (or degraded), active health checking passes, it is not ejected and
//! its failure-accrual breaker lets it take an attempt; draining hosts take nothing, not even
//! in panic.
//!
//! Attempts, retries and hedges:
//! * An attempt takes one `max_requests` unit until it ends; a retry or hedge takes one
//!   `max_retries` unit (or is granted by the budget) from when it is scheduled until its attempt
//!   ends. Without a unit the request ends with [`Finish::Overflow`] (no attempt could go) or
//!   with its last failure.
//! * A failed attempt whose outcome `retry_on` covers is retried after the back-off while
//!   attempts remain (`1 + num_retries` in all, hedges included) and the budget allows; a
//!   failure while other attempts of the request are still out is discarded (Envoy).
//! * The first success, or a failure that is not retried, ends the request; the request's other
//!   attempts are cancelled ([`Output::Cancel`]).
//! * The request timeout spans every attempt and back-off; a per-try timeout not shorter than
//!   it is ignored (Envoy). Attempts cut off by a timeout count as [`Outcome::Timeout`] for
//!   outlier detection, failure accrual and the balancer; attempts cancelled because another
//!   won count for nothing but the balancer's in-flight count.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use crate::accrual::{AccrualEvent, FailureAccrual, FailureAccrualConfig};
use crate::balancer::{Balancer, BalancerConfig, LoadReport, PickCtx, ProbeReply};
use crate::breaker::{BreakerEvent, Breakers, CircuitBreakerConfig, Resource};
use crate::discovery::{Applied, Change, View};
use crate::endpoint::{Candidate, EndpointId, EndpointMeta, Health, Outcome};
use crate::error::ConfigError;
use crate::health::{HealthCheckConfig, HealthChecker, ProbeId, ProbeRequest, ProbeResult};
use crate::locality::{Locality, LocalityPicker, ZoneRouting, choose_zone, zone_routing};
pub use crate::locality::{LocalityWeightedConfig, ZoneAwareConfig};
use crate::outlier::{OutlierConfig, OutlierDetector, OutlierEvent};
use crate::priority::{LevelHosts, PriorityConfig, PriorityLoad, choose_priority, priority_load};
use crate::retry::{HedgeConfig, HostPredicate, RetryBudget, RetryConfig};
use crate::seed::{Rng, Seed, next_u64};
use crate::time::{Duration, Instant};
use crate::timers::{TimerId, TimerQueue};

/// Priority levels a cluster keeps; endpoints of a higher level number are treated as this one.
pub const MAX_PRIORITY: u32 = 127;

/// Zones zone-aware routing handles; with more, it is off.
pub const MAX_ZONES: usize = 61;

mod config;
mod hosts;
mod io;
mod lifecycle;
mod pool;

pub use config::ClusterConfig;
pub use io::{AttemptId, Finish, Input, Output, PolicyEvent, RequestId};
pub use pool::{ConnectionConfig, ConnectionId, Protocol, Tls};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Timer {
    Deadline(u32),
    Backoff(u32),
    Hedge(u32),
    PerTry(u32),
    /// A pooled connection's idle timeout.
    Idle(u32),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Original,
    Retry,
    Hedge,
}

#[derive(Debug, Default)]
struct Req {
    live: bool,
    id: RequestId,
    hash: Option<u64>,
    started: Instant,
    attempts: u32,
    /// Attempt slots in flight.
    in_flight: Vec<u32>,
    /// Endpoints tried, in order.
    tried: Vec<EndpointId>,
    last: Option<Outcome>,
    deadline: Option<TimerId>,
    backoff: Option<TimerId>,
    hedge: Option<TimerId>,
    /// A retry scheduled in back-off holds a retry unit.
    retry_held: bool,
    /// The retry in back-off is a hedge.
    pending_hedge: bool,
}

#[derive(Debug, Default)]
struct Att {
    generation: u32,
    live: bool,
    req: u32,
    ep: EndpointId,
    sent_at: Instant,
    balancer: u16,
    holds_retry: bool,
    soft_timed_out: bool,
    timer: Option<TimerId>,
    /// For its `Send`: the attempt number and its deadline.
    retry: u32,
    deadline: Option<Instant>,
    /// Pooled: its connection, or waiting for one.
    conn: Option<u32>,
    pending: bool,
}

#[derive(Debug)]
struct Level {
    healthy: Vec<Candidate>,
    degraded: Vec<Candidate>,
    all: Vec<Candidate>,
    counts: LevelHosts,
    /// Healthy hosts per zone, the local zone first (zone-aware routing and locality-weighted
    /// balancing only).
    zone_healthy: Vec<Vec<Candidate>>,
    /// Every (not draining) host per zone (locality-weighted balancing).
    zone_total: Vec<u32>,
    routing: ZoneRouting,
    /// The locality picker over this level's zones (locality-weighted balancing).
    locality: Option<LocalityPicker>,
}

impl Default for Level {
    fn default() -> Self {
        Level {
            healthy: Vec::new(),
            degraded: Vec::new(),
            all: Vec::new(),
            counts: LevelHosts::default(),
            zone_healthy: Vec::new(),
            zone_total: Vec::new(),
            routing: ZoneRouting::Off(crate::locality::NoZoneRouting::SingleZone),
            locality: None,
        }
    }
}

/// Balancer slots per level: the healthy, degraded and all-hosts classes, then one per zone.
const CLASSES: usize = 3 + MAX_ZONES;
const HEALTHY: usize = 0;
const DEGRADED: usize = 1;
const ALL: usize = 2;

struct Slot {
    balancer: Box<dyn Balancer>,
    hosts: Vec<Candidate>,
}

impl std::fmt::Debug for Slot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Slot")
            .field("balancer", &self.balancer.kind())
            .field("hosts", &self.hosts.len())
            .finish()
    }
}

/// One client proxy's policies for one upstream cluster. See the module docs.
#[derive(Debug)]
pub struct Cluster {
    config: ClusterConfig,
    seed: Seed,
    start: Instant,
    initial: Vec<EndpointMeta>,
    rng: Rng,
    view: View,
    health: Option<HealthChecker>,
    outlier: Option<OutlierDetector>,
    accrual: Option<FailureAccrual>,
    breakers: Breakers,
    budget: Option<RetryBudget>,
    per_try: Option<Duration>,
    max_attempts: u32,
    previous_hosts: bool,
    levels: Vec<Level>,
    /// Zone-aware routing's zone order: the local zone, then the others by name.
    zones: Vec<String>,
    load: PriorityLoad,
    dirty: bool,
    balancers: Vec<Option<Slot>>,
    reqs: Vec<Req>,
    free_reqs: Vec<u32>,
    atts: Vec<Att>,
    free_atts: Vec<u32>,
    timers: TimerQueue<Timer>,
    outputs: VecDeque<Output>,
    active_attempts: u64,
    live_requests: u64,
    traffic_seen: bool,
    /// Hosts that passed active health checking at least once.
    hc_passed: Vec<bool>,
    recording: Option<Vec<(Instant, Input)>>,
    pool: Option<pool::Pool>,
}

impl Cluster {
    /// A cluster over `endpoints` (ids `0..n`), every policy validated first.
    pub fn new(
        config: &ClusterConfig,
        endpoints: &[EndpointMeta],
        seed: Seed,
        now: Instant,
    ) -> Result<Self, ConfigError> {
        config.validate()?;
        if let Some(p) = endpoints.iter().map(|m| m.priority).max()
            && p > MAX_PRIORITY
        {
            return Err(ConfigError::new(
                "endpoints.priority",
                format!("must be in 0..={MAX_PRIORITY}, got {p}"),
            ));
        }
        let health = config
            .health_check
            .clone()
            .map(|c| HealthChecker::new(c, seed.fork("health_check")))
            .transpose()
            .map_err(|e| e.within("health_check"))?;
        let outlier = config
            .outlier_detection
            .clone()
            .map(|c| OutlierDetector::new(c, seed.fork("outlier_detection"), now))
            .transpose()
            .map_err(|e| e.within("outlier_detection"))?;
        let accrual = config
            .failure_accrual
            .clone()
            .map(|c| FailureAccrual::new(c, seed.fork("failure_accrual")))
            .transpose()
            .map_err(|e| e.within("failure_accrual"))?;
        let retries = config.retries.as_ref();
        let per_try = retries
            .and_then(|r| r.per_try_timeout)
            .filter(|&p| config.timeout.is_zero() || p < config.timeout);
        let mut cluster = Cluster {
            config: config.clone(),
            seed,
            start: now,
            initial: endpoints.to_vec(),
            rng: seed.fork("cluster").rng(),
            view: View::new(endpoints),
            health,
            outlier,
            accrual,
            breakers: Breakers::new(&config.circuit_breakers),
            budget: retries
                .and_then(|r| r.budget.as_ref())
                .map(|b| RetryBudget::new(b, now)),
            per_try,
            max_attempts: 1 + retries.map_or(0, |r| r.num_retries),
            previous_hosts: retries.is_some_and(|r| {
                r.retry_host_predicate
                    .contains(&HostPredicate::PreviousHosts)
            }),
            levels: Vec::new(),
            zones: match (&config.zone_aware, &config.locality_weighted_lb) {
                (Some(z), _) => std::iter::once(z.local_zone.clone())
                    .chain(
                        z.local_cluster
                            .keys()
                            .filter(|k| **k != z.local_zone)
                            .cloned(),
                    )
                    .collect(),
                (None, Some(l)) => l.locality_weights.keys().cloned().collect(),
                (None, None) => Vec::new(),
            },
            load: PriorityLoad::default(),
            dirty: true,
            balancers: Vec::new(),
            reqs: Vec::new(),
            free_reqs: Vec::new(),
            atts: Vec::new(),
            free_atts: Vec::new(),
            timers: TimerQueue::default(),
            outputs: VecDeque::new(),
            active_attempts: 0,
            live_requests: 0,
            traffic_seen: false,
            hc_passed: Vec::new(),
            recording: None,
            pool: config.connections.clone().map(pool::Pool::new),
        };
        for i in 0..endpoints.len() {
            cluster.track(EndpointId(i as u32), now);
        }
        cluster.absorb(now);
        cluster.rebuild(now);
        Ok(cluster)
    }

    /// The config it was built from.
    pub fn config(&self) -> &ClusterConfig {
        &self.config
    }

    /// This client's membership view.
    pub fn view(&self) -> &View {
        &self.view
    }

    /// Outlier detection, when configured.
    pub fn outlier(&self) -> Option<&OutlierDetector> {
        self.outlier.as_ref()
    }

    /// The circuit breakers.
    pub fn breakers(&self) -> &Breakers {
        &self.breakers
    }

    /// The priority load in force.
    pub fn priority_load(&self) -> &PriorityLoad {
        &self.load
    }

    /// Attempts in flight.
    pub fn active_attempts(&self) -> u64 {
        self.active_attempts
    }

    /// Requests not yet finished.
    pub fn live_requests(&self) -> u64 {
        self.live_requests
    }

    /// Whether `ep` can take an attempt outside panic: present, not draining, discovery-healthy
    /// or degraded, passing health checks, not ejected, and let through by failure accrual.
    pub fn is_available(&self, ep: EndpointId) -> bool {
        self.view.get(ep).is_some_and(|m| {
            matches!(m.meta.health, Health::Healthy | Health::Degraded) && self.policies_allow(ep)
        })
    }

    fn policies_allow(&self, ep: EndpointId) -> bool {
        Self::allows(&self.health, &self.outlier, &self.accrual, ep)
    }

    /// Health checking, ejection and failure accrual all let `ep` take an attempt. (Takes the
    /// three fields, not `self`, so `rebuild` can call it while it mutates the levels.)
    fn allows(
        health: &Option<HealthChecker>,
        outlier: &Option<OutlierDetector>,
        accrual: &Option<FailureAccrual>,
        ep: EndpointId,
    ) -> bool {
        health.as_ref().is_none_or(|h| h.is_healthy(ep))
            && outlier.as_ref().is_none_or(|o| !o.is_ejected(ep))
            && accrual.as_ref().is_none_or(|a| a.is_available(ep))
    }

    /// Starts recording every input with its time (see [`crate::trace`]).
    pub fn start_recording(&mut self) {
        self.recording.get_or_insert_with(Vec::new);
    }

    /// The trace recorded so far, and recording stops.
    pub fn take_trace(&mut self) -> crate::trace::Trace {
        crate::trace::Trace {
            config: self.config.clone(),
            endpoints: self.initial.clone(),
            seed: self.seed.value(),
            start: self.start,
            inputs: self.recording.take().unwrap_or_default(),
        }
    }

    /// The next output, if any. Drain until `None` after every input.
    #[inline]
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// The earliest time [`Cluster::handle_timeout`] has work, if ever. Never earlier than the
    /// `now` of the last input once that input's timers have run.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let mut t = self.timers.peek();
        let mut take = |o: Option<Instant>| {
            if let Some(o) = o {
                t = Some(t.map_or(o, |t| t.min(o)));
            }
        };
        take(self.health.as_ref().and_then(HealthChecker::poll_timeout));
        take(
            self.outlier
                .as_ref()
                .and_then(OutlierDetector::poll_timeout),
        );
        take(self.accrual.as_ref().and_then(FailureAccrual::poll_timeout));
        t
    }

    /// Runs every timer due at or before `now`. Spurious calls are no-ops.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.handle_input(Input::Timeout, now);
    }

    /// Feeds one input at `now`. Outputs queue up for [`Cluster::poll_output`].
    pub fn handle_input(&mut self, input: Input, now: Instant) {
        if let Some(rec) = &mut self.recording {
            rec.push((now, input.clone()));
        }
        match input {
            Input::Request { request, hash } => self.on_request(request, hash, now),
            Input::AttemptDone {
                attempt,
                outcome,
                load,
            } => self.on_attempt_done(attempt, outcome, load, now),
            Input::ProbeDone {
                probe,
                endpoint,
                result,
            } => self.on_probe_done(probe, endpoint, result, now),
            Input::BalancerProbeDone { endpoint, reply } => {
                for s in self.balancers.iter_mut().flatten() {
                    s.balancer.on_probe_result(endpoint, reply, now);
                }
            }
            Input::Membership(change) => self.on_membership(&change, now),
            Input::Connected { connection } => self.on_connected(connection, now),
            Input::ConnectFailed { connection } => self.on_connect_failed(connection, now),
            Input::Timeout => self.on_timeout(now),
        }
        self.absorb(now);
        if self.dirty {
            self.rebuild(now);
        }
    }
}
