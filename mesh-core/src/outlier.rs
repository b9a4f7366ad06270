//! Outlier detection (passive health checking), after Envoy's `DetectorImpl`
//! (`outlier_detection.proto`, `outlier_detection_impl.cc`) and gRPC's A50, which follows it.
//!
//! * **Consecutive errors** run inline on every outcome: the host is ejected when a counter
//!   *reaches* its threshold (`++consecutive_5xx == consecutive_5xx`, Envoy's equality). A
//!   non-5xx response resets the 5xx and gateway counters. Without
//!   `split_external_local_origin_errors`, a connect failure counts as a 503 and a timeout as a
//!   504 (both 5xx and gateway errors), as Envoy maps them. With the split, they count only
//!   towards `consecutive_local_origin_failure`, and any response resets that counter.
//!   As in Envoy, a threshold reached while the host is already ejected neither ejects nor
//!   resets the counter, so failures of requests still in flight push it past the threshold and
//!   the host, once back, needs a success before it can be ejected for consecutive errors again
//!   (envoy#40697 studies this).
//! * **The interval sweep** (every `interval`): un-eject hosts whose time is up, decrement the
//!   ejection multiplier of hosts not ejected, then run success-rate and failure-percentage
//!   detection over the requests of the interval just ended.
//! * **Ejection time** is `min(base_ejection_time x multiplier, max(base, max_ejection_time))`
//!   plus a per-ejection jitter `random % (max_ejection_time_jitter + 1)`; the multiplier grows by
//!   one per ejection while `multiplier x base < max + base`. Hosts return at the first sweep at
//!   or after that time (Envoy checks only in the sweep).
//! * **The cap**: an ejection happens only if `100 x (ejected + 1) / hosts <= max_ejection_percent`,
//!   or, with `always_eject_one_host` (gRPC's behaviour), when no host is ejected.
//! * **Enforcement**: each detection ejects with probability `enforcing_* / 100`.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use crate::endpoint::{EndpointId, Outcome};
use crate::error::{ConfigError, check_range};
use crate::seed::{Rng, Seed, below, next_u64};
use crate::time::{Duration, Instant};

/// Envoy's `OutlierDetection` fields, with Envoy's defaults.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutlierConfig {
    /// Consecutive 5xx (and, unsplit, local failures) that eject. 0 disables. Default 5.
    pub consecutive_5xx: u32,
    /// Consecutive 502/503/504 (and, unsplit, local failures) that eject. 0 disables. Default 5.
    pub consecutive_gateway_failure: u32,
    /// Consecutive local-origin failures that eject, with the split on. 0 disables. Default 5.
    pub consecutive_local_origin_failure: u32,
    /// Percent chance a consecutive-5xx detection ejects. Default 100.
    pub enforcing_consecutive_5xx: u32,
    /// Percent chance a consecutive-gateway detection ejects. Default 0 (detect only).
    pub enforcing_consecutive_gateway_failure: u32,
    /// Percent chance a consecutive-local-origin detection ejects. Default 100.
    pub enforcing_consecutive_local_origin_failure: u32,
    /// Count connect failures and timeouts apart from responses. Default false.
    pub split_external_local_origin_errors: bool,
    /// Time between sweeps. Default 10 s.
    pub interval: Duration,
    /// Ejection time per ejection of a host. Default 30 s.
    pub base_ejection_time: Duration,
    /// Longest ejection time. Default 300 s.
    pub max_ejection_time: Duration,
    /// Up to this much random time added to each ejection. Default 0.
    pub max_ejection_time_jitter: Duration,
    /// Most hosts ejected at once, in percent of all hosts. Default 10.
    pub max_ejection_percent: u32,
    /// Allow one ejection whatever `max_ejection_percent` says (gRPC always does). Default false.
    pub always_eject_one_host: bool,
    /// Percent chance a success-rate detection ejects. 0 turns success-rate detection off.
    /// Default 100.
    pub enforcing_success_rate: u32,
    /// Hosts with enough requests needed for success-rate detection. Default 5.
    pub success_rate_minimum_hosts: u32,
    /// Requests in an interval a host needs to count for success-rate detection. Default 100.
    pub success_rate_request_volume: u32,
    /// Ejects hosts below `mean - stdev_factor / 1000 x stdev`. Default 1900.
    pub success_rate_stdev_factor: u32,
    /// Ejects hosts whose failure percent is at least this. Default 85.
    pub failure_percentage_threshold: u32,
    /// Percent chance a failure-percentage detection ejects. Default 0 (off).
    pub enforcing_failure_percentage: u32,
    /// Hosts with enough requests needed for failure-percentage detection. Default 5.
    pub failure_percentage_minimum_hosts: u32,
    /// Requests in an interval a host needs for failure-percentage detection. Default 50.
    pub failure_percentage_request_volume: u32,
    /// A passing active health check un-ejects the host at once. Default true.
    pub successful_active_health_check_uneject_host: bool,
}

impl Default for OutlierConfig {
    fn default() -> Self {
        OutlierConfig {
            consecutive_5xx: 5,
            consecutive_gateway_failure: 5,
            consecutive_local_origin_failure: 5,
            enforcing_consecutive_5xx: 100,
            enforcing_consecutive_gateway_failure: 0,
            enforcing_consecutive_local_origin_failure: 100,
            split_external_local_origin_errors: false,
            interval: Duration::from_secs(10),
            base_ejection_time: Duration::from_secs(30),
            max_ejection_time: Duration::from_secs(300),
            max_ejection_time_jitter: Duration::ZERO,
            max_ejection_percent: 10,
            always_eject_one_host: false,
            enforcing_success_rate: 100,
            success_rate_minimum_hosts: 5,
            success_rate_request_volume: 100,
            success_rate_stdev_factor: 1900,
            failure_percentage_threshold: 85,
            enforcing_failure_percentage: 0,
            failure_percentage_minimum_hosts: 5,
            failure_percentage_request_volume: 50,
            successful_active_health_check_uneject_host: true,
        }
    }
}

impl OutlierConfig {
    /// Checks every field's range.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (name, d) in [
            ("interval", self.interval),
            ("base_ejection_time", self.base_ejection_time),
        ] {
            if d.is_zero() {
                return Err(ConfigError::new(
                    name,
                    "must be a duration > 0 (for example 10s)",
                ));
            }
        }
        for (name, v) in [
            ("enforcing_consecutive_5xx", self.enforcing_consecutive_5xx),
            (
                "enforcing_consecutive_gateway_failure",
                self.enforcing_consecutive_gateway_failure,
            ),
            (
                "enforcing_consecutive_local_origin_failure",
                self.enforcing_consecutive_local_origin_failure,
            ),
            ("max_ejection_percent", self.max_ejection_percent),
            ("enforcing_success_rate", self.enforcing_success_rate),
            (
                "failure_percentage_threshold",
                self.failure_percentage_threshold,
            ),
            (
                "enforcing_failure_percentage",
                self.enforcing_failure_percentage,
            ),
        ] {
            check_range(name, f64::from(v), 0.0, 100.0)?;
        }
        Ok(())
    }
}

/// Which detector ejected a host (Envoy's `OutlierEjectionType`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EjectionReason {
    /// `consecutive_5xx`.
    Consecutive5xx,
    /// `consecutive_gateway_failure`.
    ConsecutiveGatewayFailure,
    /// `consecutive_local_origin_failure`.
    ConsecutiveLocalOriginFailure,
    /// Success rate below `mean - stdev_factor/1000 x stdev`.
    SuccessRate,
    /// Failure percent at or above `failure_percentage_threshold`.
    FailurePercentage,
}

/// Why a detected outlier stayed in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SkipCause {
    /// Ejecting it would pass `max_ejection_percent` (Envoy's `ejections_overflow`).
    MaxEjectionPercent,
    /// The enforcement dice said no (`enforcing_*` below 100).
    NotEnforced,
}

/// What the detector decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outlier", rename_all = "snake_case")]
pub enum OutlierEvent {
    /// `endpoint` takes no traffic (outside panic) for at least `duration`.
    Ejected {
        /// The host.
        endpoint: EndpointId,
        /// The detector.
        reason: EjectionReason,
        /// Its ejection time (it returns at the first sweep at or after).
        duration: Duration,
        /// Ejections of this host so far, this one included.
        ejections: u32,
    },
    /// `endpoint` is back.
    Unejected {
        /// The host.
        endpoint: EndpointId,
    },
    /// A detection that did not eject.
    Skipped {
        /// The host.
        endpoint: EndpointId,
        /// The detector.
        reason: EjectionReason,
        /// Why it stayed in.
        cause: SkipCause,
    },
}

#[derive(Clone, Debug, Default)]
struct HostState {
    present: bool,
    ejected: bool,
    last_ejection: Instant,
    ejection_time: Duration,
    backoff: u32,
    num_ejections: u32,
    consecutive_5xx: u32,
    consecutive_gateway: u32,
    consecutive_local: u32,
    /// Requests and successes in the current interval (external origin).
    total: u32,
    success: u32,
}

/// Outlier detection over one cluster's hosts.
#[derive(Debug)]
pub struct OutlierDetector {
    config: OutlierConfig,
    rng: Rng,
    hosts: Vec<HostState>,
    host_count: u32,
    ejected: u32,
    next_sweep: Instant,
    events: VecDeque<OutlierEvent>,
    scratch: Vec<(EndpointId, f64)>,
}

impl OutlierDetector {
    /// A detector whose first sweep is one `interval` after `now`. Validates the config.
    pub fn new(config: OutlierConfig, seed: Seed, now: Instant) -> Result<Self, ConfigError> {
        config.validate()?;
        Ok(OutlierDetector {
            next_sweep: now + config.interval,
            config,
            rng: seed.rng(),
            hosts: Vec::new(),
            host_count: 0,
            ejected: 0,
            events: VecDeque::new(),
            scratch: Vec::new(),
        })
    }

    /// The config in force.
    pub fn config(&self) -> &OutlierConfig {
        &self.config
    }

    /// Starts tracking `ep`.
    pub fn add_endpoint(&mut self, ep: EndpointId) {
        if self.hosts.len() <= ep.index() {
            self.hosts.resize(ep.index() + 1, HostState::default());
        }
        let h = &mut self.hosts[ep.index()];
        if !h.present {
            *h = HostState {
                present: true,
                ..HostState::default()
            };
            self.host_count += 1;
        }
    }

    /// Stops tracking `ep` (it left the cluster); its ejection, if any, ends silently.
    pub fn remove_endpoint(&mut self, ep: EndpointId) {
        if let Some(h) = self.hosts.get_mut(ep.index())
            && h.present
        {
            if h.ejected {
                self.ejected -= 1;
            }
            *h = HostState::default();
            self.host_count -= 1;
        }
    }

    /// Whether `ep` is ejected now.
    #[inline]
    pub fn is_ejected(&self, ep: EndpointId) -> bool {
        self.hosts.get(ep.index()).is_some_and(|h| h.ejected)
    }

    /// Hosts ejected now.
    pub fn ejected_count(&self) -> u32 {
        self.ejected
    }

    /// Hosts tracked.
    pub fn host_count(&self) -> u32 {
        self.host_count
    }

    /// Records one attempt's outcome; may eject at once (consecutive-error detectors).
    pub fn on_outcome(&mut self, ep: EndpointId, outcome: Outcome, now: Instant) {
        let split = self.config.split_external_local_origin_errors;
        let Some(h) = self.hosts.get_mut(ep.index()) else {
            return;
        };
        if !h.present {
            return;
        }
        let local = matches!(outcome, Outcome::LocalError | Outcome::Timeout);
        if split && local {
            h.consecutive_local += 1;
            if h.consecutive_local == self.config.consecutive_local_origin_failure {
                self.consecutive(ep, EjectionReason::ConsecutiveLocalOriginFailure, now);
            }
            return;
        }
        if split {
            h.consecutive_local = 0;
        }
        h.total = h.total.saturating_add(1);
        let (is_5xx, is_gateway) = match outcome {
            Outcome::Success => (false, false),
            Outcome::ServerError => (true, false),
            // Unsplit: connect failure = 503, timeout = 504.
            Outcome::GatewayError | Outcome::LocalError | Outcome::Timeout => (true, true),
        };
        if !is_5xx {
            h.success = h.success.saturating_add(1);
            h.consecutive_5xx = 0;
            h.consecutive_gateway = 0;
            return;
        }
        let mut gateway_fired = false;
        if is_gateway {
            h.consecutive_gateway += 1;
            gateway_fired = h.consecutive_gateway == self.config.consecutive_gateway_failure;
        } else {
            h.consecutive_gateway = 0;
        }
        h.consecutive_5xx += 1;
        let fivexx_fired = h.consecutive_5xx == self.config.consecutive_5xx;
        if gateway_fired {
            self.consecutive(ep, EjectionReason::ConsecutiveGatewayFailure, now);
        }
        if fivexx_fired {
            self.consecutive(ep, EjectionReason::Consecutive5xx, now);
        }
    }

    /// Envoy's `onConsecutiveErrorWorker`.
    fn consecutive(&mut self, ep: EndpointId, reason: EjectionReason, now: Instant) {
        if self.hosts[ep.index()].ejected {
            return;
        }
        self.eject(ep, reason, now);
        let h = &mut self.hosts[ep.index()];
        match reason {
            EjectionReason::Consecutive5xx => h.consecutive_5xx = 0,
            EjectionReason::ConsecutiveGatewayFailure => h.consecutive_gateway = 0,
            EjectionReason::ConsecutiveLocalOriginFailure => h.consecutive_local = 0,
            EjectionReason::SuccessRate | EjectionReason::FailurePercentage => {}
        }
    }

    fn enforcing(&self, reason: EjectionReason) -> u32 {
        let c = &self.config;
        match reason {
            EjectionReason::Consecutive5xx => c.enforcing_consecutive_5xx,
            EjectionReason::ConsecutiveGatewayFailure => c.enforcing_consecutive_gateway_failure,
            EjectionReason::ConsecutiveLocalOriginFailure => {
                c.enforcing_consecutive_local_origin_failure
            }
            EjectionReason::SuccessRate => c.enforcing_success_rate,
            EjectionReason::FailurePercentage => c.enforcing_failure_percentage,
        }
    }

    /// Envoy's `ejectHost`: the cap, then the enforcement dice.
    fn eject(&mut self, ep: EndpointId, reason: EjectionReason, now: Instant) {
        let c = &self.config;
        let percent = 100.0 * f64::from(self.ejected + 1) / f64::from(self.host_count.max(1));
        let allowed = percent <= f64::from(c.max_ejection_percent.min(100))
            || (c.always_eject_one_host && self.ejected == 0);
        if !allowed {
            self.events.push_back(OutlierEvent::Skipped {
                endpoint: ep,
                reason,
                cause: SkipCause::MaxEjectionPercent,
            });
            return;
        }
        let enforcing = self.enforcing(reason);
        let enforced = match enforcing {
            0 => false,
            100.. => true,
            p => below(&mut self.rng, 100) < p,
        };
        if !enforced {
            self.events.push_back(OutlierEvent::Skipped {
                endpoint: ep,
                reason,
                cause: SkipCause::NotEnforced,
            });
            return;
        }
        let base = c.base_ejection_time.as_nanos();
        let max = c.max_ejection_time.as_nanos().max(base);
        let jitter_bound = c.max_ejection_time_jitter.as_nanos();
        let jitter = if jitter_bound == 0 {
            0
        } else {
            next_u64(&mut self.rng) % (jitter_bound + 1)
        };
        let h = &mut self.hosts[ep.index()];
        if u128::from(h.backoff) * u128::from(base) < u128::from(max) + u128::from(base) {
            h.backoff += 1;
        }
        let time = (base.saturating_mul(u64::from(h.backoff))).min(max) + jitter;
        h.ejected = true;
        h.last_ejection = now;
        h.ejection_time = Duration::from_nanos(time);
        h.num_ejections += 1;
        self.ejected += 1;
        self.events.push_back(OutlierEvent::Ejected {
            endpoint: ep,
            reason,
            duration: h.ejection_time,
            ejections: h.num_ejections,
        });
    }

    /// Un-ejects `ep` at once (a passing active health check, Envoy's
    /// `successful_active_health_check_uneject_host`). No-op when it is not ejected.
    pub fn uneject(&mut self, ep: EndpointId) {
        if let Some(h) = self.hosts.get_mut(ep.index())
            && h.ejected
        {
            h.ejected = false;
            self.ejected -= 1;
            self.events
                .push_back(OutlierEvent::Unejected { endpoint: ep });
        }
    }

    /// The next sweep.
    #[inline]
    pub fn poll_timeout(&self) -> Option<Instant> {
        Some(self.next_sweep)
    }

    /// Runs every sweep due at or before `now`. Spurious calls are no-ops.
    pub fn handle_timeout(&mut self, now: Instant) {
        while self.next_sweep <= now {
            let at = self.next_sweep;
            self.sweep(at);
            self.next_sweep = at + self.config.interval;
        }
    }

    /// The next decision, if any.
    pub fn poll_event(&mut self) -> Option<OutlierEvent> {
        self.events.pop_front()
    }

    /// Envoy's `onIntervalTimer`.
    fn sweep(&mut self, now: Instant) {
        for i in 0..self.hosts.len() {
            let h = &mut self.hosts[i];
            if !h.present {
                continue;
            }
            if !h.ejected {
                h.backoff = h.backoff.saturating_sub(1);
            } else if now.saturating_since(h.last_ejection) >= h.ejection_time {
                h.ejected = false;
                self.ejected -= 1;
                self.events.push_back(OutlierEvent::Unejected {
                    endpoint: EndpointId(i as u32),
                });
            }
        }
        self.success_rate_ejections(now);
        for h in &mut self.hosts {
            h.total = 0;
            h.success = 0;
        }
    }

    /// Envoy's `processSuccessRateEjections`: success rate, then failure percentage, over the
    /// interval's requests of hosts not ejected.
    fn success_rate_ejections(&mut self, now: Instant) {
        let c = &self.config;
        let sr_on = c.enforcing_success_rate > 0;
        let fp_on = c.enforcing_failure_percentage > 0;
        if !sr_on && !fp_on {
            return;
        }
        let mut valid = std::mem::take(&mut self.scratch);
        valid.clear();
        // Success rate.
        if sr_on {
            for (i, h) in self.hosts.iter().enumerate() {
                if h.present && !h.ejected && h.total >= c.success_rate_request_volume.max(1) {
                    let sr = 100.0 * f64::from(h.success) / f64::from(h.total);
                    valid.push((EndpointId(i as u32), sr));
                }
            }
            if !valid.is_empty() && valid.len() >= c.success_rate_minimum_hosts as usize {
                let n = valid.len() as f64;
                let mean = valid.iter().map(|v| v.1).sum::<f64>() / n;
                let var = valid.iter().map(|v| (v.1 - mean).powi(2)).sum::<f64>() / n;
                let threshold =
                    mean - f64::from(self.config.success_rate_stdev_factor) / 1000.0 * var.sqrt();
                for &(ep, sr) in &valid {
                    if sr < threshold && !self.hosts[ep.index()].ejected {
                        self.eject(ep, EjectionReason::SuccessRate, now);
                    }
                }
            }
        }
        // Failure percentage.
        let c = &self.config;
        if fp_on {
            valid.clear();
            for (i, h) in self.hosts.iter().enumerate() {
                if h.present && !h.ejected && h.total >= c.failure_percentage_request_volume.max(1)
                {
                    let sr = 100.0 * f64::from(h.success) / f64::from(h.total);
                    valid.push((EndpointId(i as u32), sr));
                }
            }
            if !valid.is_empty() && valid.len() >= c.failure_percentage_minimum_hosts as usize {
                let threshold = f64::from(c.failure_percentage_threshold);
                for &(ep, sr) in &valid {
                    if 100.0 - sr >= threshold && !self.hosts[ep.index()].ejected {
                        self.eject(ep, EjectionReason::FailurePercentage, now);
                    }
                }
            }
        }
        self.scratch = valid;
    }
}
