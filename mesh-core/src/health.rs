//! Active health checking, after Envoy's `HealthCheckerImplBase` (`health_check.proto`,
//! `health_checker_impl.cc`).
//!
//! The checker decides *when* each endpoint is probed and what a result means; the driver
//! performs the probe (a simulated round trip, or a real HTTP request) and reports back. Probes
//! are drained outputs ([`HealthChecker::poll_probe`]), the schedule is pulled
//! ([`HealthChecker::poll_timeout`] / [`HealthChecker::handle_timeout`]).
//!
//! Semantics, as Envoy:
//! * A host starts with `FAILED_ACTIVE_HC` set (`initial_health: unhealthy`, the default); its
//!   **first** result decides at once (one pass marks it healthy).
//! * A healthy host turns unhealthy after `unhealthy_threshold` consecutive counted failures
//!   (timeouts, connection errors: [`ProbeResult::Error`]), or at once on a definite failure
//!   (an unexpected status: [`ProbeResult::Fail`]).
//! * An unhealthy host turns healthy after `healthy_threshold` consecutive passes.
//! * The next probe is scheduled when a result arrives: `interval` while the result agrees with
//!   the state, `healthy_edge_interval` / `unhealthy_edge_interval` while a change is pending,
//!   `unhealthy_interval` while unhealthy, and `no_traffic_interval` until the cluster has sent
//!   any traffic. Jitter: `+ random % (interval_jitter_percent x base / 100)` and
//!   `+ random % interval_jitter`, Envoy's `intervalWithJitter`.
//! * A probe unanswered after `timeout` counts as [`ProbeResult::Error`]; a late answer is ignored.

use serde::{Deserialize, Serialize};

use crate::endpoint::EndpointId;
use crate::error::{ConfigError, check_range};
use crate::seed::{Rng, Seed, next_u64};
use crate::time::{Duration, Instant};
use crate::timers::{TimerId, TimerQueue};

/// Envoy's `HealthCheck` timing and threshold fields. `timeout`, `interval`,
/// `unhealthy_threshold` and `healthy_threshold` are required, as in Envoy.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthCheckConfig {
    /// How long to wait for a probe's answer.
    pub timeout: Duration,
    /// Time between probes of a healthy host.
    pub interval: Duration,
    /// Consecutive counted failures that mark a healthy host unhealthy, >= 1.
    pub unhealthy_threshold: u32,
    /// Consecutive passes that mark an unhealthy host healthy, >= 1.
    pub healthy_threshold: u32,
    /// Up to this much random time added to every interval. Default 0.
    #[serde(default)]
    pub interval_jitter: Duration,
    /// Up to this percent of the interval added at random, 0..=100. Default 0.
    #[serde(default)]
    pub interval_jitter_percent: u32,
    /// Up to this much random delay before a host's first probe. Default 0.
    #[serde(default)]
    pub initial_jitter: Duration,
    /// Interval used until the cluster has sent any traffic. Default 60 s.
    #[serde(default = "default_no_traffic")]
    pub no_traffic_interval: Duration,
    /// Interval while the host is unhealthy. Default: `interval`.
    #[serde(default)]
    pub unhealthy_interval: Option<Duration>,
    /// Interval after a failure while the host is still healthy. Default: `unhealthy_interval`.
    #[serde(default)]
    pub unhealthy_edge_interval: Option<Duration>,
    /// Interval after a pass while the host is still unhealthy. Default: `interval`.
    #[serde(default)]
    pub healthy_edge_interval: Option<Duration>,
    /// Health of a host before its first result. Default `unhealthy` (Envoy sets
    /// `FAILED_ACTIVE_HC` on new hosts).
    #[serde(default)]
    pub initial_health: InitialHealth,
}

fn default_no_traffic() -> Duration {
    Duration::from_secs(60)
}

/// A host's health before its first probe result.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InitialHealth {
    /// Takes no traffic until a probe passes (Envoy).
    #[default]
    Unhealthy,
    /// Takes traffic until probes fail (Envoy with `ignore_new_hosts_until_first_hc: false` and
    /// hosts that were healthy before a restart).
    Healthy,
}

impl HealthCheckConfig {
    /// A config with the four required fields and every other field at its default.
    pub fn new(
        timeout: Duration,
        interval: Duration,
        unhealthy_threshold: u32,
        healthy_threshold: u32,
    ) -> Self {
        HealthCheckConfig {
            timeout,
            interval,
            unhealthy_threshold,
            healthy_threshold,
            interval_jitter: Duration::ZERO,
            interval_jitter_percent: 0,
            initial_jitter: Duration::ZERO,
            no_traffic_interval: default_no_traffic(),
            unhealthy_interval: None,
            unhealthy_edge_interval: None,
            healthy_edge_interval: None,
            initial_health: InitialHealth::Unhealthy,
        }
    }

    /// Checks every field's range.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let positive = |name: &str, d: Duration| {
            if d.is_zero() {
                Err(ConfigError::new(
                    name,
                    "must be a duration > 0 (for example 1s)",
                ))
            } else {
                Ok(())
            }
        };
        positive("timeout", self.timeout)?;
        positive("interval", self.interval)?;
        positive("no_traffic_interval", self.no_traffic_interval)?;
        for (name, d) in [
            ("unhealthy_interval", self.unhealthy_interval),
            ("unhealthy_edge_interval", self.unhealthy_edge_interval),
            ("healthy_edge_interval", self.healthy_edge_interval),
        ] {
            if let Some(d) = d {
                positive(name, d)?;
            }
        }
        for (name, v) in [
            ("unhealthy_threshold", self.unhealthy_threshold),
            ("healthy_threshold", self.healthy_threshold),
        ] {
            if v == 0 {
                return Err(ConfigError::new(name, "must be an integer >= 1, got 0"));
            }
        }
        check_range(
            "interval_jitter_percent",
            f64::from(self.interval_jitter_percent),
            0.0,
            100.0,
        )
    }

    fn unhealthy_interval(&self) -> Duration {
        self.unhealthy_interval.unwrap_or(self.interval)
    }
}

/// What a probe found.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProbeResult {
    /// The expected answer.
    Pass,
    /// A definite failure (an unexpected HTTP status): a healthy host turns unhealthy at once.
    Fail,
    /// No usable answer (timeout, refused or reset connection): counts towards
    /// `unhealthy_threshold`.
    Error,
}

/// A probe the driver must perform.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeRequest {
    /// Identifies the answer ([`HealthChecker::on_probe_result`]).
    pub probe: ProbeId,
    /// The endpoint to probe.
    pub endpoint: EndpointId,
    /// When the checker stops waiting and counts an error.
    pub deadline: Instant,
}

/// One probe, unique within its checker.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ProbeId(pub u64);

/// A change of a host's active health-check state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HealthChange {
    /// The endpoint.
    pub endpoint: EndpointId,
    /// Its new state: `true` when it now passes.
    pub healthy: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Timer {
    Probe(EndpointId),
    Deadline(EndpointId),
}

#[derive(Clone, Debug, Default)]
struct HostState {
    present: bool,
    failed: bool,
    first_check: bool,
    num_healthy: u32,
    num_unhealthy: u32,
    in_flight: Option<ProbeId>,
    timer: Option<TimerId>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Transition {
    Unchanged,
    Pending,
    Changed,
}

/// Active health checking for one cluster's endpoints.
#[derive(Debug)]
pub struct HealthChecker {
    config: HealthCheckConfig,
    rng: Rng,
    hosts: Vec<HostState>,
    timers: TimerQueue<Timer>,
    probes: std::collections::VecDeque<ProbeRequest>,
    events: std::collections::VecDeque<HealthChange>,
    next_probe: u64,
    traffic_seen: bool,
}

impl HealthChecker {
    /// A checker with no endpoints yet. Validates the config.
    pub fn new(config: HealthCheckConfig, seed: Seed) -> Result<Self, ConfigError> {
        config.validate()?;
        Ok(HealthChecker {
            config,
            rng: seed.rng(),
            hosts: Vec::new(),
            timers: TimerQueue::default(),
            probes: Default::default(),
            events: Default::default(),
            next_probe: 0,
            traffic_seen: false,
        })
    }

    /// Starts checking `ep`: its first probe goes out within `initial_jitter`.
    pub fn add_endpoint(&mut self, ep: EndpointId, now: Instant) {
        if self.hosts.len() <= ep.index() {
            self.hosts.resize(ep.index() + 1, HostState::default());
        }
        if self.hosts[ep.index()].present {
            return;
        }
        let jitter = self.jitter(self.config.initial_jitter.as_nanos());
        let timer = self.timers.insert(now + jitter, Timer::Probe(ep));
        self.hosts[ep.index()] = HostState {
            present: true,
            failed: self.config.initial_health == InitialHealth::Unhealthy,
            first_check: true,
            num_healthy: 0,
            num_unhealthy: 0,
            in_flight: None,
            timer: Some(timer),
        };
    }

    /// Stops checking `ep`; a probe in flight is forgotten.
    pub fn remove_endpoint(&mut self, ep: EndpointId) {
        if let Some(h) = self.hosts.get_mut(ep.index()) {
            if let Some(t) = h.timer.take() {
                self.timers.cancel(t);
            }
            *h = HostState::default();
        }
    }

    /// Whether `ep` passes active health checking (Envoy: `FAILED_ACTIVE_HC` is clear).
    /// Endpoints the checker does not know pass.
    #[inline]
    pub fn is_healthy(&self, ep: EndpointId) -> bool {
        self.hosts
            .get(ep.index())
            .is_none_or(|h| !h.present || !h.failed)
    }

    /// The cluster has sent traffic: from now on intervals are the regular ones, not
    /// `no_traffic_interval` (Envoy checks `upstream_cx_total` once per schedule).
    pub fn note_traffic(&mut self) {
        self.traffic_seen = true;
    }

    /// The next time [`HealthChecker::handle_timeout`] has work.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.peek()
    }

    /// Sends due probes and expires unanswered ones. Spurious calls are no-ops.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some((_, timer)) = self.timers.pop_due(now) {
            match timer {
                Timer::Probe(ep) => {
                    self.next_probe += 1;
                    let probe = ProbeId(self.next_probe);
                    let deadline = now + self.config.timeout;
                    let h = &mut self.hosts[ep.index()];
                    h.in_flight = Some(probe);
                    h.timer = Some(self.timers.insert(deadline, Timer::Deadline(ep)));
                    self.probes.push_back(ProbeRequest {
                        probe,
                        endpoint: ep,
                        deadline,
                    });
                }
                Timer::Deadline(ep) => {
                    let h = &mut self.hosts[ep.index()];
                    h.timer = None;
                    h.in_flight = None;
                    self.apply(ep, ProbeResult::Error, now);
                }
            }
        }
    }

    /// The next probe to perform, if any.
    pub fn poll_probe(&mut self) -> Option<ProbeRequest> {
        self.probes.pop_front()
    }

    /// The next health change, if any.
    pub fn poll_event(&mut self) -> Option<HealthChange> {
        self.events.pop_front()
    }

    /// A probe's answer. Answers to probes already timed out, or to removed endpoints, are
    /// ignored. Returns the endpoint the probe was for when the answer counted.
    pub fn on_probe_result(
        &mut self,
        probe: ProbeId,
        ep: EndpointId,
        result: ProbeResult,
        now: Instant,
    ) -> bool {
        let Some(h) = self.hosts.get_mut(ep.index()) else {
            return false;
        };
        if !h.present || h.in_flight != Some(probe) {
            return false;
        }
        h.in_flight = None;
        if let Some(t) = h.timer.take() {
            self.timers.cancel(t);
        }
        self.apply(ep, result, now);
        true
    }

    fn apply(&mut self, ep: EndpointId, result: ProbeResult, now: Instant) {
        let c = &self.config;
        let h = &mut self.hosts[ep.index()];
        let (passed, transition) = match result {
            ProbeResult::Pass => {
                h.num_unhealthy = 0;
                let mut t = Transition::Unchanged;
                if h.failed {
                    h.num_healthy += 1;
                    if h.first_check || h.num_healthy >= c.healthy_threshold {
                        h.failed = false;
                        h.num_healthy = 0;
                        t = Transition::Changed;
                    } else {
                        t = Transition::Pending;
                    }
                }
                (true, t)
            }
            ProbeResult::Fail | ProbeResult::Error => {
                h.num_healthy = 0;
                let mut t = Transition::Unchanged;
                if !h.failed {
                    h.num_unhealthy += 1;
                    if result == ProbeResult::Fail || h.num_unhealthy >= c.unhealthy_threshold {
                        h.failed = true;
                        h.num_unhealthy = 0;
                        t = Transition::Changed;
                    } else {
                        t = Transition::Pending;
                    }
                }
                (false, t)
            }
        };
        h.first_check = false;
        if transition == Transition::Changed {
            self.events.push_back(HealthChange {
                endpoint: ep,
                healthy: passed,
            });
        }
        let base = if !self.traffic_seen {
            c.no_traffic_interval
        } else if passed {
            match transition {
                Transition::Pending => c.healthy_edge_interval.unwrap_or(c.interval),
                _ => c.interval,
            }
        } else {
            match transition {
                Transition::Pending => c.unhealthy_edge_interval.unwrap_or(c.unhealthy_interval()),
                _ => c.unhealthy_interval(),
            }
        };
        let wait = self.interval_with_jitter(base);
        let timer = self.timers.insert(now + wait, Timer::Probe(ep));
        self.hosts[ep.index()].timer = Some(timer);
    }

    /// Envoy's `intervalWithJitter`.
    fn interval_with_jitter(&mut self, base: Duration) -> Duration {
        let mut ns = base.as_nanos();
        let pct_mod = u64::from(self.config.interval_jitter_percent) * ns / 100;
        ns += self.jitter(pct_mod).as_nanos();
        ns += self
            .jitter(self.config.interval_jitter.as_nanos())
            .as_nanos();
        Duration::from_nanos(ns)
    }

    fn jitter(&mut self, bound_ns: u64) -> Duration {
        if bound_ns == 0 {
            Duration::ZERO
        } else {
            Duration::from_nanos(next_u64(&mut self.rng) % bound_ns)
        }
    }
}
