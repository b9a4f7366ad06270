//! Failure accrual: a per-endpoint circuit breaker, after Linkerd's `failure-accrual:
//! consecutive` (linkerd2-proxy `http::breaker`) and Finagle's `FailureAccrualFactory`.
//!
//! Each endpoint is a small state machine:
//!
//! * **Closed** (takes traffic). It trips when `consecutive_failures` attempts in a row fail
//!   (Linkerd's `max-failures`, default 7; Finagle 5) or, when `success_rate` is set, when the
//!   success rate over the sliding `window` falls below `threshold` with at least
//!   `min_requests` requests in it (Finagle: 0.8 over 30 s, at least 5 requests).
//! * **Open** (no traffic) for a backoff: `min_penalty x 2^n` capped at `max_penalty`, plus
//!   `U[0, backoff x jitter_ratio)` (tower/Linkerd `ExponentialBackoff`, defaults 1 s, 60 s, 0.5),
//!   where `n` counts the trips since the endpoint last recovered.
//! * **Probation** (half open) when the backoff ends: the endpoint takes exactly one attempt. A
//!   success closes the breaker and resets the backoff; a failure opens it again with the next,
//!   longer backoff.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use crate::endpoint::{EndpointId, Outcome};
use crate::error::{ConfigError, check_range};
use crate::seed::{Rng, Seed, next_u64};
use crate::time::{Duration, Instant};
use crate::timers::{TimerId, TimerQueue};

/// Failure-accrual settings. Defaults are Linkerd's `consecutive` accrual.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FailureAccrualConfig {
    /// Failures in a row that trip the breaker; 0 disables this trigger. Default 7 (Linkerd).
    pub consecutive_failures: u32,
    /// A windowed success-rate trigger (Finagle). Default none.
    pub success_rate: Option<SuccessRateAccrual>,
    /// The first backoff. Default 1 s.
    pub min_penalty: Duration,
    /// The longest backoff before jitter. Default 60 s.
    pub max_penalty: Duration,
    /// Jitter added to each backoff, as a fraction of it, 0..=1. Default 0.5.
    pub jitter_ratio: f64,
}

/// Finagle's success-rate accrual trigger.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SuccessRateAccrual {
    /// Trip below this success rate, 0..=1. Default 0.8.
    pub threshold: f64,
    /// The sliding window, kept in 10 slots. Default 30 s.
    pub window: Duration,
    /// Requests the window must hold before the rate counts. Default 5.
    pub min_requests: u32,
}

impl Default for SuccessRateAccrual {
    fn default() -> Self {
        SuccessRateAccrual {
            threshold: 0.8,
            window: Duration::from_secs(30),
            min_requests: 5,
        }
    }
}

impl Default for FailureAccrualConfig {
    fn default() -> Self {
        FailureAccrualConfig {
            consecutive_failures: 7,
            success_rate: None,
            min_penalty: Duration::from_secs(1),
            max_penalty: Duration::from_secs(60),
            jitter_ratio: 0.5,
        }
    }
}

impl FailureAccrualConfig {
    /// Checks every field's range.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.min_penalty.is_zero() {
            return Err(ConfigError::new(
                "min_penalty",
                "must be a duration > 0 (for example 1s)",
            ));
        }
        if self.max_penalty < self.min_penalty {
            return Err(ConfigError::new(
                "max_penalty",
                format!(
                    "must be >= min_penalty ({}), got {}",
                    self.min_penalty, self.max_penalty
                ),
            ));
        }
        check_range("jitter_ratio", self.jitter_ratio, 0.0, 1.0)?;
        if let Some(sr) = &self.success_rate {
            check_range("success_rate.threshold", sr.threshold, 0.0, 1.0)?;
            if sr.window.as_nanos() < 10 {
                return Err(ConfigError::new(
                    "success_rate.window",
                    "must be a duration >= 10ns (for example 30s)",
                ));
            }
        } else if self.consecutive_failures == 0 {
            return Err(ConfigError::new(
                "consecutive_failures",
                "must be >= 1 when no success_rate trigger is set, got 0",
            ));
        }
        Ok(())
    }
}

/// A breaker's state change.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "accrual", rename_all = "snake_case")]
pub enum AccrualEvent {
    /// The endpoint takes no traffic until `until`.
    Opened {
        /// The endpoint.
        endpoint: EndpointId,
        /// When it goes on probation.
        until: Instant,
    },
    /// The endpoint takes one trial attempt.
    Probation {
        /// The endpoint.
        endpoint: EndpointId,
    },
    /// The endpoint recovered.
    Closed {
        /// The endpoint.
        endpoint: EndpointId,
    },
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum State {
    #[default]
    Closed,
    Open,
    /// Half open; `true` once the trial attempt is out.
    Probation(bool),
}

const SLOTS: usize = 10;

#[derive(Clone, Debug, Default)]
struct HostState {
    present: bool,
    state: State,
    consecutive: u32,
    trips: u32,
    timer: Option<TimerId>,
    /// Sliding window: (slot start, requests, successes) per slot.
    slot_start: Instant,
    cur: usize,
    requests: [u32; SLOTS],
    successes: [u32; SLOTS],
}

/// Failure accrual over one cluster's endpoints.
#[derive(Debug)]
pub struct FailureAccrual {
    config: FailureAccrualConfig,
    rng: Rng,
    hosts: Vec<HostState>,
    timers: TimerQueue<EndpointId>,
    events: VecDeque<AccrualEvent>,
}

impl FailureAccrual {
    /// A breaker set with no endpoints yet. Validates the config.
    pub fn new(config: FailureAccrualConfig, seed: Seed) -> Result<Self, ConfigError> {
        config.validate()?;
        Ok(FailureAccrual {
            config,
            rng: seed.rng(),
            hosts: Vec::new(),
            timers: TimerQueue::default(),
            events: VecDeque::new(),
        })
    }

    /// Starts tracking `ep`, closed.
    pub fn add_endpoint(&mut self, ep: EndpointId, now: Instant) {
        if self.hosts.len() <= ep.index() {
            self.hosts.resize(ep.index() + 1, HostState::default());
        }
        let h = &mut self.hosts[ep.index()];
        if !h.present {
            *h = HostState {
                present: true,
                slot_start: now,
                ..HostState::default()
            };
        }
    }

    /// Stops tracking `ep`.
    pub fn remove_endpoint(&mut self, ep: EndpointId) {
        if let Some(h) = self.hosts.get_mut(ep.index()) {
            if let Some(t) = h.timer.take() {
                self.timers.cancel(t);
            }
            *h = HostState::default();
        }
    }

    /// Whether `ep` may take an attempt now: closed, or on probation with its trial not yet sent.
    #[inline]
    pub fn is_available(&self, ep: EndpointId) -> bool {
        self.hosts.get(ep.index()).is_none_or(|h| {
            !h.present || matches!(h.state, State::Closed | State::Probation(false))
        })
    }

    /// An attempt went to `ep`: on probation, it is the one trial.
    pub fn on_dispatch(&mut self, ep: EndpointId) {
        if let Some(h) = self.hosts.get_mut(ep.index())
            && h.state == State::Probation(false)
        {
            h.state = State::Probation(true);
        }
    }

    /// An attempt to `ep` was cancelled without an outcome: a trial on probation is owed again.
    pub fn on_cancel(&mut self, ep: EndpointId) {
        if let Some(h) = self.hosts.get_mut(ep.index())
            && h.state == State::Probation(true)
        {
            h.state = State::Probation(false);
        }
    }

    /// Records one attempt's outcome.
    pub fn on_outcome(&mut self, ep: EndpointId, outcome: Outcome, now: Instant) {
        let Some(h) = self.hosts.get_mut(ep.index()) else {
            return;
        };
        if !h.present {
            return;
        }
        let ok = !outcome.is_failure();
        if let Some(sr) = &self.config.success_rate {
            let slot = Duration::from_nanos(sr.window.as_nanos() / SLOTS as u64);
            while now.saturating_since(h.slot_start) >= slot {
                h.slot_start += slot;
                h.cur = (h.cur + 1) % SLOTS;
                h.requests[h.cur] = 0;
                h.successes[h.cur] = 0;
                if now.saturating_since(h.slot_start) >= sr.window {
                    // Long idle: clear everything at once.
                    h.requests = [0; SLOTS];
                    h.successes = [0; SLOTS];
                    let behind = now.saturating_since(h.slot_start).as_nanos();
                    h.slot_start += Duration::from_nanos(behind - behind % slot.as_nanos());
                }
            }
            h.requests[h.cur] += 1;
            h.successes[h.cur] += u32::from(ok);
        }
        match h.state {
            State::Open => {}
            State::Probation(_) => {
                if ok {
                    h.state = State::Closed;
                    h.trips = 0;
                    h.consecutive = 0;
                    h.requests = [0; SLOTS];
                    h.successes = [0; SLOTS];
                    self.events.push_back(AccrualEvent::Closed { endpoint: ep });
                } else {
                    self.open(ep, now);
                }
            }
            State::Closed => {
                if ok {
                    h.consecutive = 0;
                    return;
                }
                h.consecutive += 1;
                let by_count = self.config.consecutive_failures > 0
                    && h.consecutive >= self.config.consecutive_failures;
                let by_rate = self.config.success_rate.as_ref().is_some_and(|sr| {
                    let req: u32 = h.requests.iter().sum();
                    let suc: u32 = h.successes.iter().sum();
                    req >= sr.min_requests.max(1) && f64::from(suc) < sr.threshold * f64::from(req)
                });
                if by_count || by_rate {
                    self.open(ep, now);
                }
            }
        }
    }

    fn open(&mut self, ep: EndpointId, now: Instant) {
        let c = &self.config;
        let h = &mut self.hosts[ep.index()];
        let shift = h.trips.min(63);
        let base = c
            .min_penalty
            .as_nanos()
            .saturating_mul(1u64 << shift)
            .min(c.max_penalty.as_nanos());
        let bound = (base as f64 * c.jitter_ratio) as u64;
        let jitter = if bound == 0 {
            0
        } else {
            next_u64(&mut self.rng) % bound
        };
        h.trips += 1;
        h.consecutive = 0;
        h.state = State::Open;
        let until = now + Duration::from_nanos(base + jitter);
        if let Some(t) = h.timer.take() {
            self.timers.cancel(t);
        }
        h.timer = Some(self.timers.insert(until, ep));
        self.events.push_back(AccrualEvent::Opened {
            endpoint: ep,
            until,
        });
    }

    /// When the next open breaker goes on probation.
    #[inline]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.peek()
    }

    /// Moves breakers whose backoff ended to probation. Spurious calls are no-ops.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some((_, ep)) = self.timers.pop_due(now) {
            let h = &mut self.hosts[ep.index()];
            h.timer = None;
            h.state = State::Probation(false);
            self.events
                .push_back(AccrualEvent::Probation { endpoint: ep });
        }
    }

    /// The next state change, if any.
    pub fn poll_event(&mut self) -> Option<AccrualEvent> {
        self.events.pop_front()
    }
}
