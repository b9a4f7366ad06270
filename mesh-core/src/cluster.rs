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
pub use crate::locality::ZoneAwareConfig;
use crate::locality::{ZoneRouting, choose_zone, zone_routing};
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

/// Every policy of one client's view of one upstream cluster. Missing sections are off, except
/// the circuit breakers and the request timeout, which Envoy always has.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// The load balancer. Default round robin.
    #[serde(default)]
    pub balancer: BalancerConfig,
    /// Overprovisioning factor and panic threshold.
    #[serde(default)]
    pub priority: PriorityConfig,
    /// Active health checking. Default off.
    #[serde(default)]
    pub health_check: Option<HealthCheckConfig>,
    /// Outlier detection. Default off.
    #[serde(default)]
    pub outlier_detection: Option<OutlierConfig>,
    /// Failure accrual. Default off.
    #[serde(default)]
    pub failure_accrual: Option<FailureAccrualConfig>,
    /// Concurrency limits. Default Envoy's 1024 / 1024 / 1024 / 3.
    #[serde(default)]
    pub circuit_breakers: CircuitBreakerConfig,
    /// Request timeout spanning all attempts; `0s` disables it. Default 15 s (Envoy's route
    /// timeout).
    #[serde(default = "default_timeout")]
    pub timeout: Duration,
    /// Retries. Default off.
    #[serde(default)]
    pub retries: Option<RetryConfig>,
    /// Hedging (needs `retries`). Default off.
    #[serde(default)]
    pub hedging: Option<HedgeConfig>,
    /// Envoy's zone-aware routing. Default off.
    #[serde(default)]
    pub zone_aware: Option<ZoneAwareConfig>,
}

fn default_timeout() -> Duration {
    Duration::from_secs(15)
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            balancer: BalancerConfig::default(),
            priority: PriorityConfig::default(),
            health_check: None,
            outlier_detection: None,
            failure_accrual: None,
            circuit_breakers: CircuitBreakerConfig::default(),
            timeout: default_timeout(),
            retries: None,
            hedging: None,
            zone_aware: None,
        }
    }
}

impl ClusterConfig {
    /// Checks every section, naming the field path of the first error.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.balancer.validate().map_err(|e| e.within("balancer"))?;
        self.priority.validate().map_err(|e| e.within("priority"))?;
        if let Some(c) = &self.health_check {
            c.validate().map_err(|e| e.within("health_check"))?;
        }
        if let Some(c) = &self.outlier_detection {
            c.validate().map_err(|e| e.within("outlier_detection"))?;
        }
        if let Some(c) = &self.failure_accrual {
            c.validate().map_err(|e| e.within("failure_accrual"))?;
        }
        self.circuit_breakers
            .validate()
            .map_err(|e| e.within("circuit_breakers"))?;
        if let Some(c) = &self.retries {
            c.validate().map_err(|e| e.within("retries"))?;
        }
        if let Some(z) = &self.zone_aware {
            z.validate().map_err(|e| e.within("zone_aware"))?;
        }
        if let Some(h) = &self.hedging {
            h.validate().map_err(|e| e.within("hedging"))?;
            if self.retries.as_ref().is_none_or(|r| r.num_retries == 0) {
                return Err(ConfigError::new(
                    "hedging",
                    "needs retries.num_retries >= 1: hedged attempts count as retries (Envoy)",
                ));
            }
            if h.hedge_on_per_try_timeout
                && self
                    .retries
                    .as_ref()
                    .is_none_or(|r| r.per_try_timeout.is_none())
            {
                return Err(ConfigError::new(
                    "hedging.hedge_on_per_try_timeout",
                    "needs retries.per_try_timeout to be set",
                ));
            }
        }
        Ok(())
    }
}

/// A request, named by the driver; it comes back in [`Output::Send`] and [`Output::Finished`].
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct RequestId(pub u64);

/// An attempt, named by the cluster; the driver reports its end with this id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct AttemptId(pub u64);

/// Everything that can happen to a cluster.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "input", rename_all = "snake_case")]
pub enum Input {
    /// A request arrived.
    Request {
        /// The driver's name for it.
        request: RequestId,
        /// Its hash key for hash-based balancers.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        hash: Option<u64>,
    },
    /// An attempt ended (a response, a connect failure, a reset). Ends of attempts the cluster
    /// already cancelled are ignored.
    AttemptDone {
        /// The attempt.
        attempt: AttemptId,
        /// How it ended.
        outcome: Outcome,
        /// The server's load report, if it sent one (ORCA).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        load: Option<LoadReport>,
    },
    /// An active health-check probe came back.
    ProbeDone {
        /// The probe.
        probe: ProbeId,
        /// The endpoint probed.
        endpoint: EndpointId,
        /// What it found.
        result: ProbeResult,
    },
    /// A balancer probe (Prequal) came back.
    BalancerProbeDone {
        /// The endpoint probed.
        endpoint: EndpointId,
        /// Its answer.
        reply: ProbeReply,
    },
    /// Discovery changed this client's view.
    Membership(Change),
    /// Time passed: run every timer due (what [`Cluster::handle_timeout`] does).
    Timeout,
}

/// How a request ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "finish", content = "outcome", rename_all = "snake_case")]
pub enum Finish {
    /// The outcome of the attempt that decided (a success, or the last failure).
    Response(Outcome),
    /// The request timeout fired (Envoy's 504 `UT`).
    Timeout,
    /// A circuit breaker refused its attempt (Envoy's 503 `UO`).
    Overflow,
    /// No endpoint could take it (Envoy's 503 `UH`).
    NoHealthyUpstream,
}

impl Finish {
    /// True only for a successful response.
    pub const fn is_success(self) -> bool {
        matches!(self, Finish::Response(Outcome::Success))
    }

    /// A short name for reports: `success`, or the failure class (`server_error`,
    /// `gateway_error`, `local_error`, `attempt_timeout`, `timeout`, `overflow`,
    /// `no_healthy_upstream`).
    pub const fn class(self) -> &'static str {
        match self {
            Finish::Response(Outcome::Success) => "success",
            Finish::Response(Outcome::ServerError) => "server_error",
            Finish::Response(Outcome::GatewayError) => "gateway_error",
            Finish::Response(Outcome::LocalError) => "local_error",
            Finish::Response(Outcome::Timeout) => "attempt_timeout",
            Finish::Timeout => "timeout",
            Finish::Overflow => "overflow",
            Finish::NoHealthyUpstream => "no_healthy_upstream",
        }
    }
}

/// A policy decision worth plotting.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum PolicyEvent {
    /// Outlier detection ejected, un-ejected, or skipped a host.
    Outlier(OutlierEvent),
    /// Active health checking changed a host's state.
    HealthChanged {
        /// The host.
        endpoint: EndpointId,
        /// Whether it now passes.
        healthy: bool,
    },
    /// A failure-accrual breaker changed state.
    Accrual(AccrualEvent),
    /// A circuit breaker opened or closed.
    Breaker(BreakerEvent),
    /// The priority load changed.
    PriorityLoad {
        /// Percent to each level's healthy hosts.
        healthy: Vec<u32>,
        /// Percent to each level's degraded hosts.
        degraded: Vec<u32>,
    },
    /// A priority level entered or left panic.
    Panic {
        /// The level.
        priority: u32,
        /// `true` on entering.
        entered: bool,
    },
    /// A retry or hedge was refused by the retry budget (or the `max_retries` breaker).
    BudgetExhausted {
        /// The request.
        request: RequestId,
    },
    /// A hedged attempt went out.
    HedgeSent {
        /// The request.
        request: RequestId,
        /// The new attempt.
        attempt: AttemptId,
    },
}

impl PolicyEvent {
    /// A short name for counting events in reports (`ejected`, `panic_entered`, ...).
    pub fn kind(&self) -> &'static str {
        match self {
            PolicyEvent::Outlier(OutlierEvent::Ejected { .. }) => "ejected",
            PolicyEvent::Outlier(OutlierEvent::Unejected { .. }) => "unejected",
            PolicyEvent::Outlier(OutlierEvent::Skipped { .. }) => "ejection_skipped",
            PolicyEvent::HealthChanged { .. } => "health_changed",
            PolicyEvent::Accrual(_) => "failure_accrual",
            PolicyEvent::Breaker(b) if b.open => "breaker_opened",
            PolicyEvent::Breaker(_) => "breaker_closed",
            PolicyEvent::PriorityLoad { .. } => "priority_load_changed",
            PolicyEvent::Panic { entered: true, .. } => "panic_entered",
            PolicyEvent::Panic { .. } => "panic_left",
            PolicyEvent::BudgetExhausted { .. } => "budget_exhausted",
            PolicyEvent::HedgeSent { .. } => "hedge_sent",
        }
    }
}

/// What the driver must do, or may record.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "output", rename_all = "snake_case")]
pub enum Output {
    /// Send an attempt of `request` to `endpoint`.
    Send {
        /// Report its end with this id.
        attempt: AttemptId,
        /// The request.
        request: RequestId,
        /// Where to send it.
        endpoint: EndpointId,
        /// 0 for the first attempt, then 1, 2, ... for retries and hedges.
        retry: u32,
        /// When the cluster gives up on it (per-try or request timeout), if ever.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        deadline: Option<Instant>,
    },
    /// Abandon an attempt (timed out, or another attempt won); its end will be ignored.
    Cancel {
        /// The attempt.
        attempt: AttemptId,
        /// Where it went.
        endpoint: EndpointId,
    },
    /// Perform an active health-check probe.
    Probe(ProbeRequest),
    /// Perform a balancer probe (Prequal) and report it with [`Input::BalancerProbeDone`].
    BalancerProbe {
        /// The endpoint to probe.
        endpoint: EndpointId,
    },
    /// A request ended.
    Finished {
        /// The request.
        request: RequestId,
        /// How.
        result: Finish,
        /// Attempts sent for it.
        attempts: u32,
        /// When it arrived.
        started: Instant,
    },
    /// A policy decision.
    Event(PolicyEvent),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Timer {
    Deadline(u32),
    Backoff(u32),
    Hedge(u32),
    PerTry(u32),
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
}

#[derive(Debug)]
struct Level {
    healthy: Vec<Candidate>,
    degraded: Vec<Candidate>,
    all: Vec<Candidate>,
    counts: LevelHosts,
    /// Healthy hosts per zone, the local zone first (zone-aware routing only).
    zone_healthy: Vec<Vec<Candidate>>,
    routing: ZoneRouting,
}

impl Default for Level {
    fn default() -> Self {
        Level {
            healthy: Vec::new(),
            degraded: Vec::new(),
            all: Vec::new(),
            counts: LevelHosts::default(),
            zone_healthy: Vec::new(),
            routing: ZoneRouting::Off(crate::locality::NoZoneRouting::SingleZone),
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
            zones: config.zone_aware.as_ref().map_or_else(Vec::new, |z| {
                std::iter::once(z.local_zone.clone())
                    .chain(
                        z.local_cluster
                            .keys()
                            .filter(|k| **k != z.local_zone)
                            .cloned(),
                    )
                    .collect()
            }),
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
            Input::Timeout => self.on_timeout(now),
        }
        self.absorb(now);
        if self.dirty {
            self.rebuild(now);
        }
    }

    // ----- endpoints -------------------------------------------------------------------------

    fn track(&mut self, ep: EndpointId, now: Instant) {
        if let Some(h) = &mut self.health {
            h.add_endpoint(ep, now);
        }
        if let Some(o) = &mut self.outlier {
            o.add_endpoint(ep);
        }
        if let Some(a) = &mut self.accrual {
            a.add_endpoint(ep, now);
        }
    }

    fn untrack(&mut self, ep: EndpointId) {
        if let Some(h) = &mut self.health {
            h.remove_endpoint(ep);
        }
        if let Some(o) = &mut self.outlier {
            o.remove_endpoint(ep);
        }
        if let Some(a) = &mut self.accrual {
            a.remove_endpoint(ep);
        }
    }

    fn on_membership(&mut self, change: &Change, now: Instant) {
        let change = match change {
            Change::Add { endpoint, meta } if meta.priority > MAX_PRIORITY => Change::Add {
                endpoint: *endpoint,
                meta: EndpointMeta {
                    priority: MAX_PRIORITY,
                    ..meta.clone()
                },
            },
            Change::Priority { endpoint, priority } if *priority > MAX_PRIORITY => {
                Change::Priority {
                    endpoint: *endpoint,
                    priority: MAX_PRIORITY,
                }
            }
            c => c.clone(),
        };
        match self.view.apply(&change, now) {
            Applied::Added => {
                self.track(change.endpoint(), now);
                self.dirty = true;
            }
            Applied::Removed => {
                self.untrack(change.endpoint());
                self.dirty = true;
            }
            Applied::Updated => self.dirty = true,
            Applied::Ignored => {}
        }
    }

    fn on_probe_done(&mut self, probe: ProbeId, ep: EndpointId, result: ProbeResult, now: Instant) {
        let Some(h) = &mut self.health else {
            return;
        };
        if !h.on_probe_result(probe, ep, result, now) {
            return;
        }
        // Envoy's successful_active_health_check_uneject_host: a pass on a host that passes
        // active health checking clears its ejection at once.
        if result == ProbeResult::Pass
            && h.is_healthy(ep)
            && let Some(o) = &mut self.outlier
            && o.config().successful_active_health_check_uneject_host
        {
            o.uneject(ep);
        }
    }

    /// Moves component events to the outputs and notes availability changes.
    fn absorb(&mut self, now: Instant) {
        if let Some(h) = &mut self.health {
            while let Some(p) = h.poll_probe() {
                self.outputs.push_back(Output::Probe(p));
            }
            while let Some(e) = h.poll_event() {
                self.dirty = true;
                let i = e.endpoint.index();
                if self.hc_passed.len() <= i {
                    self.hc_passed.resize(i + 1, false);
                }
                if e.healthy {
                    // Slow start counts from the last time a host turned healthy (Envoy), except
                    // the first pass of a host present from the start, which is not slow-started.
                    let initial = self
                        .view
                        .get(e.endpoint)
                        .is_some_and(|m| m.healthy_since.is_none());
                    if self.hc_passed[i] || !initial {
                        self.view.mark_healthy(e.endpoint, now);
                    }
                }
                // After a pass, or after failing (a host that started healthy), the next pass
                // is a return to health, which is slow-started.
                self.hc_passed[i] = true;
                self.outputs
                    .push_back(Output::Event(PolicyEvent::HealthChanged {
                        endpoint: e.endpoint,
                        healthy: e.healthy,
                    }));
            }
        }
        if let Some(o) = &mut self.outlier {
            while let Some(e) = o.poll_event() {
                if !matches!(e, OutlierEvent::Skipped { .. }) {
                    self.dirty = true;
                }
                self.outputs
                    .push_back(Output::Event(PolicyEvent::Outlier(e)));
            }
        }
        if let Some(a) = &mut self.accrual {
            while let Some(e) = a.poll_event() {
                self.dirty = true;
                self.outputs
                    .push_back(Output::Event(PolicyEvent::Accrual(e)));
            }
        }
        while let Some(e) = self.breakers.poll_event() {
            self.outputs
                .push_back(Output::Event(PolicyEvent::Breaker(e)));
        }
    }

    /// Recomputes the host sets, the priority load and panic, and updates balancers whose host
    /// set changed.
    fn rebuild(&mut self, now: Instant) {
        self.dirty = false;
        for l in &mut self.levels {
            l.healthy.clear();
            l.degraded.clear();
            l.all.clear();
            l.counts = LevelHosts::default();
            l.zone_healthy.iter_mut().for_each(Vec::clear);
            l.zone_healthy.resize_with(self.zones.len(), Vec::new);
        }
        let mut top = 0usize;
        for (ep, m) in self.view.iter() {
            if m.meta.health == Health::Draining {
                continue;
            }
            let p = m.meta.priority.min(MAX_PRIORITY) as usize;
            top = top.max(p + 1);
            if self.levels.len() <= p {
                self.levels.resize_with(p + 1, Level::default);
            }
            let c = Candidate {
                id: ep,
                weight: m.meta.weight,
                slow_start_since: m.healthy_since,
            };
            let allow = Self::allows(&self.health, &self.outlier, &self.accrual, ep);
            let l = &mut self.levels[p];
            l.all.push(c);
            l.counts.total += 1;
            if allow && m.meta.health == Health::Healthy {
                l.healthy.push(c);
                l.counts.healthy += 1;
                if !self.zones.is_empty() {
                    l.zone_healthy.resize_with(self.zones.len(), Vec::new);
                    // Hosts in zones the local cluster does not list count for no zone, which
                    // makes the zone counts differ and turns routing off, as in Envoy.
                    if let Some(z) = self.zones.iter().position(|z| *z == m.meta.zone) {
                        l.zone_healthy[z].push(c);
                    }
                }
            } else if allow && m.meta.health == Health::Degraded {
                l.degraded.push(c);
                l.counts.degraded += 1;
            }
        }
        self.levels.truncate(top.max(1));
        if self.levels.is_empty() {
            self.levels.push(Level::default());
        }
        let counts: Vec<LevelHosts> = self.levels.iter().map(|l| l.counts).collect();
        let load = priority_load(&counts, &self.config.priority);
        if load.healthy != self.load.healthy || load.degraded != self.load.degraded {
            self.outputs
                .push_back(Output::Event(PolicyEvent::PriorityLoad {
                    healthy: load.healthy.clone(),
                    degraded: load.degraded.clone(),
                }));
        }
        for p in 0..load.panic.len().max(self.load.panic.len()) {
            let was = self.load.panic.get(p).copied().unwrap_or(false);
            let is = load.panic.get(p).copied().unwrap_or(false);
            if was != is {
                self.outputs.push_back(Output::Event(PolicyEvent::Panic {
                    priority: p as u32,
                    entered: is,
                }));
            }
        }
        self.load = load;
        if let Some(z) = &self.config.zone_aware {
            let local: Vec<u64> = self
                .zones
                .iter()
                .map(|name| z.local_cluster.get(name).copied().unwrap_or(0))
                .collect();
            for (p, l) in self.levels.iter_mut().enumerate() {
                let mut upstream: Vec<u64> =
                    l.zone_healthy.iter().map(|h| h.len() as u64).collect();
                let unlisted = l.healthy.len() as u64 - upstream.iter().sum::<u64>();
                if unlisted > 0 {
                    upstream.push(unlisted);
                }
                l.routing = zone_routing(&local, &upstream, z, false, self.load.panic[p]);
            }
        }
        for (i, slot) in self.balancers.iter_mut().enumerate() {
            let Some(slot) = slot else { continue };
            let (p, class) = (i / CLASSES, i % CLASSES);
            let hosts = self.levels.get(p).map_or(&[][..], |l| match class {
                HEALTHY => &l.healthy[..],
                DEGRADED => &l.degraded[..],
                ALL => &l.all[..],
                z => l.zone_healthy.get(z - 3).map_or(&[][..], |h| &h[..]),
            });
            if slot.hosts != hosts {
                slot.hosts.clear();
                slot.hosts.extend_from_slice(hosts);
                slot.balancer.set_endpoints(hosts, now);
            }
        }
    }

    // ----- selection -------------------------------------------------------------------------

    fn pick(&mut self, r: u32, now: Instant) -> Option<(EndpointId, u16)> {
        if self.dirty {
            self.rebuild(now);
        }
        let single = self.levels.len() == 1 && self.load.degraded[0] == 0;
        let (p, class) = if single {
            (0, if self.load.panic[0] { ALL } else { HEALTHY })
        } else {
            let h = next_u64(&mut self.rng);
            match choose_priority(h, &self.load)? {
                (p, crate::priority::Availability::Healthy) => {
                    (p, if self.load.panic[p] { ALL } else { HEALTHY })
                }
                (p, crate::priority::Availability::Degraded) => (p, DEGRADED),
            }
        };
        let class = match (&self.config.zone_aware, class) {
            (Some(z), ALL) if z.fail_traffic_on_panic => return None,
            (Some(z), HEALTHY) => match choose_zone(&self.levels[p].routing, z, &mut self.rng) {
                Some(zone) if !self.levels[p].zone_healthy[zone].is_empty() => 3 + zone,
                _ => HEALTHY,
            },
            _ => class,
        };
        let idx = p * CLASSES + class;
        if self.balancers.len() <= idx {
            self.balancers.resize_with(idx + 1, || None);
        }
        if self.balancers[idx].is_none() {
            let hosts = match class {
                HEALTHY => self.levels[p].healthy.clone(),
                DEGRADED => self.levels[p].degraded.clone(),
                ALL => self.levels[p].all.clone(),
                z => self.levels[p].zone_healthy[z - 3].clone(),
            };
            let mut balancer = self
                .config
                .balancer
                .build(&[], self.seed.fork("balancer").fork_index(idx as u64), now)
                .expect("balancer config validated in Cluster::new");
            balancer.set_endpoints(&hosts, now);
            self.balancers[idx] = Some(Slot { balancer, hosts });
        }
        let slot = self.balancers[idx].as_mut().expect("built above");
        let req = &self.reqs[r as usize];
        let cx = PickCtx { hash: req.hash };
        let mut ep = slot.balancer.pick(&cx, now)?;
        if self.previous_hosts && !req.tried.is_empty() {
            let tries = self
                .config
                .retries
                .as_ref()
                .map_or(0, |c| c.host_selection_retry_max_attempts);
            for _ in 0..tries {
                if !req.tried.contains(&ep) {
                    break;
                }
                ep = slot.balancer.pick(&cx, now)?;
            }
        }
        while let Some(probe) = slot.balancer.poll_probe() {
            self.outputs
                .push_back(Output::BalancerProbe { endpoint: probe });
        }
        Some((ep, idx as u16))
    }

    // ----- requests and attempts -------------------------------------------------------------

    fn on_request(&mut self, id: RequestId, hash: Option<u64>, now: Instant) {
        if let Some(b) = &mut self.budget {
            b.deposit(now);
        }
        let r = match self.free_reqs.pop() {
            Some(r) => r,
            None => {
                self.reqs.push(Req::default());
                (self.reqs.len() - 1) as u32
            }
        };
        let deadline = (!self.config.timeout.is_zero()).then(|| {
            self.timers
                .insert(now + self.config.timeout, Timer::Deadline(r))
        });
        let req = &mut self.reqs[r as usize];
        req.live = true;
        req.id = id;
        req.hash = hash;
        req.started = now;
        req.attempts = 0;
        req.in_flight.clear();
        req.tried.clear();
        req.last = None;
        req.deadline = deadline;
        req.backoff = None;
        req.hedge = None;
        req.retry_held = false;
        req.pending_hedge = false;
        self.live_requests += 1;
        self.dispatch(r, Kind::Original, false, now);
    }

    /// Sends one attempt of request `r`. `holds_retry`: the attempt carries a retry unit
    /// already taken. When no attempt can go and none is in flight, the request ends.
    fn dispatch(&mut self, r: u32, kind: Kind, holds_retry: bool, now: Instant) {
        let Some((ep, balancer)) = self.pick(r, now) else {
            if holds_retry {
                self.breakers.release(Resource::Retries);
            }
            self.end_if_idle(r, Finish::NoHealthyUpstream, now);
            return;
        };
        if !self.breakers.try_acquire(Resource::Requests) {
            if holds_retry {
                self.breakers.release(Resource::Retries);
            }
            self.end_if_idle(r, Finish::Overflow, now);
            return;
        }
        let a = match self.free_atts.pop() {
            Some(a) => a,
            None => {
                self.atts.push(Att::default());
                (self.atts.len() - 1) as u32
            }
        };
        let per_try = self.per_try.map(|d| now + d);
        let timer = per_try.map(|t| self.timers.insert(t, Timer::PerTry(a)));
        let att = &mut self.atts[a as usize];
        att.live = true;
        att.req = r;
        att.ep = ep;
        att.sent_at = now;
        att.balancer = balancer;
        att.holds_retry = holds_retry;
        att.soft_timed_out = false;
        att.timer = timer;
        let attempt = AttemptId(u64::from(att.generation) << 32 | u64::from(a));
        self.active_attempts += 1;
        if !self.traffic_seen {
            self.traffic_seen = true;
            if let Some(h) = &mut self.health {
                h.note_traffic();
            }
        }
        if let Some(slot) = &mut self.balancers[usize::from(balancer)] {
            slot.balancer.on_dispatch(ep, now);
        }
        if let Some(acc) = &mut self.accrual {
            acc.on_dispatch(ep);
            if !acc.is_available(ep) {
                self.dirty = true;
            }
        }
        let overall = self.reqs[r as usize]
            .deadline
            .map(|_| self.reqs[r as usize].started + self.config.timeout);
        let deadline = match (per_try, overall) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let req = &mut self.reqs[r as usize];
        let retry = req.attempts;
        req.attempts += 1;
        req.in_flight.push(a);
        req.tried.push(ep);
        let id = req.id;
        if kind == Kind::Hedge {
            self.outputs
                .push_back(Output::Event(PolicyEvent::HedgeSent {
                    request: id,
                    attempt,
                }));
        }
        self.outputs.push_back(Output::Send {
            attempt,
            request: id,
            endpoint: ep,
            retry,
            deadline,
        });
        self.arm_hedge(r, now);
    }

    fn arm_hedge(&mut self, r: u32, now: Instant) {
        let Some(delay) = self.config.hedging.as_ref().and_then(|h| h.hedging_delay) else {
            return;
        };
        let req = &mut self.reqs[r as usize];
        if let Some(t) = req.hedge.take() {
            self.timers.cancel(t);
        }
        if req.attempts < self.max_attempts {
            req.hedge = Some(self.timers.insert(now + delay, Timer::Hedge(r)));
        }
    }

    /// Ends request `r` with `finish` unless an attempt or a retry is still pending.
    fn end_if_idle(&mut self, r: u32, finish: Finish, now: Instant) {
        let req = &self.reqs[r as usize];
        if !req.in_flight.is_empty() || req.backoff.is_some() {
            return;
        }
        let finish = match (finish, req.last) {
            // A retry that could not go reports the failure that prompted it.
            (Finish::NoHealthyUpstream | Finish::Overflow, Some(o)) if req.attempts > 0 => {
                Finish::Response(o)
            }
            (f, _) => f,
        };
        self.finish(r, finish, now);
    }

    fn attempt_slot(&self, id: AttemptId) -> Option<u32> {
        let slot = (id.0 & 0xFFFF_FFFF) as u32;
        let generation = (id.0 >> 32) as u32;
        let a = self.atts.get(slot as usize)?;
        (a.live && a.generation == generation).then_some(slot)
    }

    /// Takes attempt `a` out of flight: timers, breaker units, balancer count. With `report`,
    /// its outcome also feeds outlier detection, failure accrual and the retry throttle.
    fn close_attempt(&mut self, a: u32, outcome: Outcome, report: bool, now: Instant) -> u32 {
        let att = &mut self.atts[a as usize];
        att.live = false;
        att.generation = att.generation.wrapping_add(1);
        let (r, ep, sent_at, balancer, holds_retry, soft) = (
            att.req,
            att.ep,
            att.sent_at,
            att.balancer,
            att.holds_retry,
            att.soft_timed_out,
        );
        if let Some(t) = att.timer.take() {
            self.timers.cancel(t);
        }
        self.free_atts.push(a);
        self.active_attempts -= 1;
        self.breakers.release(Resource::Requests);
        if holds_retry {
            self.breakers.release(Resource::Retries);
        }
        if let Some(slot) = &mut self.balancers[usize::from(balancer)] {
            slot.balancer.on_complete(ep, sent_at, outcome, now);
        }
        // A soft (hedged) per-try timeout already counted this attempt as a timeout.
        if report && !(soft && outcome == Outcome::Timeout) {
            if let Some(o) = &mut self.outlier {
                o.on_outcome(ep, outcome, now);
            }
            if let Some(acc) = &mut self.accrual {
                acc.on_outcome(ep, outcome, now);
            }
            self.throttle_count(outcome);
        } else if let Some(acc) = &mut self.accrual {
            acc.on_cancel(ep);
        }
        let req = &mut self.reqs[r as usize];
        if let Some(i) = req.in_flight.iter().position(|&x| x == a) {
            req.in_flight.swap_remove(i);
        }
        r
    }

    fn throttle_count(&mut self, outcome: Outcome) {
        if let Some(b) = &mut self.budget {
            let retriable = self
                .config
                .retries
                .as_ref()
                .is_some_and(|c| c.retriable(outcome));
            if outcome == Outcome::Success {
                b.on_attempt(true);
            } else if retriable {
                b.on_attempt(false);
            }
        }
    }

    fn on_attempt_done(
        &mut self,
        attempt: AttemptId,
        outcome: Outcome,
        load: Option<LoadReport>,
        now: Instant,
    ) {
        let Some(a) = self.attempt_slot(attempt) else {
            return;
        };
        if let Some(report) = load {
            let (ep, balancer) = (self.atts[a as usize].ep, self.atts[a as usize].balancer);
            if let Some(slot) = &mut self.balancers[usize::from(balancer)] {
                slot.balancer.on_load_report(ep, &report, now);
            }
        }
        let r = self.close_attempt(a, outcome, true, now);
        self.absorb(now);
        self.after_failure_or_success(r, outcome, now);
    }

    /// Decides what an attempt's end means for its request.
    fn after_failure_or_success(&mut self, r: u32, outcome: Outcome, now: Instant) {
        let retriable = outcome != Outcome::Success
            && self
                .config
                .retries
                .as_ref()
                .is_some_and(|c| c.retriable(outcome));
        if !retriable {
            self.finish(r, Finish::Response(outcome), now);
            return;
        }
        let req = &mut self.reqs[r as usize];
        req.last = Some(outcome);
        if !req.in_flight.is_empty() || req.backoff.is_some() {
            // Other attempts are still out (hedging): this failure is discarded.
            return;
        }
        if !self.schedule_retry(r, Kind::Retry, true, now) {
            self.finish(r, Finish::Response(outcome), now);
        }
    }

    /// Takes a retry unit for request `r` and sends (after back-off, if `backoff`) a retry or
    /// hedge. False when attempts or the budget ran out.
    fn schedule_retry(&mut self, r: u32, kind: Kind, backoff: bool, now: Instant) -> bool {
        if self.config.retries.is_none() {
            return false;
        }
        let (attempts, id) = {
            let req = &self.reqs[r as usize];
            (req.attempts, req.id)
        };
        if attempts >= self.max_attempts {
            return false;
        }
        let granted = match &mut self.budget {
            None => self.breakers.try_acquire(Resource::Retries),
            Some(RetryBudget::Envoy {
                percent,
                min_concurrency,
            }) => {
                let limit =
                    RetryBudget::envoy_limit(*percent, *min_concurrency, self.active_attempts);
                self.breakers.try_acquire_within(Resource::Retries, limit)
            }
            Some(b) => {
                b.try_withdraw(
                    self.active_attempts,
                    self.breakers.current(Resource::Retries),
                    now,
                ) && self
                    .breakers
                    .try_acquire_within(Resource::Retries, u64::MAX)
            }
        };
        if !granted {
            self.absorb(now);
            self.outputs
                .push_back(Output::Event(PolicyEvent::BudgetExhausted { request: id }));
            return false;
        }
        let delay = match (&self.config.retries, backoff) {
            (Some(c), true) => c.retry_back_off.delay(attempts, &mut self.rng),
            _ => Duration::ZERO,
        };
        if delay.is_zero() {
            self.dispatch(r, kind, true, now);
        } else {
            let t = self.timers.insert(now + delay, Timer::Backoff(r));
            let req = &mut self.reqs[r as usize];
            req.backoff = Some(t);
            req.retry_held = true;
            req.pending_hedge = kind == Kind::Hedge;
        }
        true
    }

    /// Ends request `r`: cancels what is left of it and reports.
    fn finish(&mut self, r: u32, result: Finish, now: Instant) {
        while let Some(&a) = self.reqs[r as usize].in_flight.last() {
            let ep = self.atts[a as usize].ep;
            let attempt =
                AttemptId(u64::from(self.atts[a as usize].generation) << 32 | u64::from(a));
            let timed_out = result == Finish::Timeout;
            let outcome = if timed_out {
                Outcome::Timeout
            } else {
                Outcome::LocalError
            };
            self.close_attempt(a, outcome, timed_out, now);
            self.outputs.push_back(Output::Cancel {
                attempt,
                endpoint: ep,
            });
        }
        let req = &mut self.reqs[r as usize];
        for t in [req.deadline.take(), req.backoff.take(), req.hedge.take()]
            .into_iter()
            .flatten()
        {
            self.timers.cancel(t);
        }
        if std::mem::take(&mut req.retry_held) {
            self.breakers.release(Resource::Retries);
        }
        req.live = false;
        self.outputs.push_back(Output::Finished {
            request: req.id,
            result,
            attempts: req.attempts,
            started: req.started,
        });
        self.free_reqs.push(r);
        self.live_requests -= 1;
    }

    // ----- timers ----------------------------------------------------------------------------

    fn on_timeout(&mut self, now: Instant) {
        if let Some(o) = &mut self.outlier {
            o.handle_timeout(now);
        }
        if let Some(a) = &mut self.accrual {
            a.handle_timeout(now);
        }
        if let Some(h) = &mut self.health {
            h.handle_timeout(now);
        }
        self.absorb(now);
        while let Some((_, timer)) = self.timers.pop_due(now) {
            match timer {
                Timer::Deadline(r) => {
                    self.reqs[r as usize].deadline = None;
                    self.finish(r, Finish::Timeout, now);
                }
                Timer::Backoff(r) => {
                    let req = &mut self.reqs[r as usize];
                    req.backoff = None;
                    req.retry_held = false;
                    let kind = if std::mem::take(&mut req.pending_hedge) {
                        Kind::Hedge
                    } else {
                        Kind::Retry
                    };
                    self.dispatch(r, kind, true, now);
                }
                Timer::Hedge(r) => {
                    let req = &mut self.reqs[r as usize];
                    req.hedge = None;
                    if !req.in_flight.is_empty() && req.backoff.is_none() {
                        self.schedule_retry(r, Kind::Hedge, false, now);
                    }
                }
                Timer::PerTry(a) => self.on_per_try_timeout(a, now),
            }
            self.absorb(now);
        }
    }

    fn on_per_try_timeout(&mut self, a: u32, now: Instant) {
        self.atts[a as usize].timer = None;
        let hedge = self
            .config
            .hedging
            .as_ref()
            .is_some_and(|h| h.hedge_on_per_try_timeout);
        if hedge {
            // Envoy's onSoftPerTryTimeout: count a timeout, keep the attempt, send another.
            let (ep, r) = (self.atts[a as usize].ep, self.atts[a as usize].req);
            self.atts[a as usize].soft_timed_out = true;
            if let Some(o) = &mut self.outlier {
                o.on_outcome(ep, Outcome::Timeout, now);
            }
            if let Some(acc) = &mut self.accrual {
                acc.on_outcome(ep, Outcome::Timeout, now);
            }
            self.throttle_count(Outcome::Timeout);
            self.absorb(now);
            if self.reqs[r as usize].backoff.is_none() {
                self.schedule_retry(r, Kind::Hedge, true, now);
            }
            return;
        }
        let att = &self.atts[a as usize];
        let attempt = AttemptId(u64::from(att.generation) << 32 | u64::from(a));
        let ep = att.ep;
        let r = self.close_attempt(a, Outcome::Timeout, true, now);
        self.outputs.push_back(Output::Cancel {
            attempt,
            endpoint: ep,
        });
        self.absorb(now);
        self.after_failure_or_success(r, Outcome::Timeout, now);
    }
}
