//! Concurrency circuit breakers, after Envoy's `ResourceManagerImpl` (`circuit_breaker.proto`).
//!
//! Each resource has a limit and a current count; acquiring past the limit fails and the caller
//! answers 503 (Envoy's `UO` flag). Acquire and release are explicit: a [`crate::Cluster`]
//! takes `requests` per attempt in flight and `retries` per retry scheduled or in flight; a
//! driver that models connection pools takes `connections` and `pending_requests` itself. A
//! resource is *open* while its count is at its limit (Envoy's `*_open` gauges), and each
//! change of that state is an event.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use crate::error::ConfigError;

/// Envoy's `Thresholds`, with Envoy's defaults.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CircuitBreakerConfig {
    /// Connections to all endpoints. Default 1024.
    pub max_connections: u32,
    /// Requests waiting for a connection. Default 1024.
    pub max_pending_requests: u32,
    /// Attempts in flight. Default 1024.
    pub max_requests: u32,
    /// Retries outstanding, when no retry budget is set. Default 3.
    pub max_retries: u32,
}

impl Default for CircuitBreakerConfig {
    fn default() -> Self {
        CircuitBreakerConfig {
            max_connections: 1024,
            max_pending_requests: 1024,
            max_requests: 1024,
            max_retries: 3,
        }
    }
}

impl CircuitBreakerConfig {
    /// Every limit is a count >= 0; 0 shuts the resource. Nothing to reject.
    pub fn validate(&self) -> Result<(), ConfigError> {
        Ok(())
    }
}

/// One breaker resource.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Resource {
    /// `max_connections`.
    Connections,
    /// `max_pending_requests`.
    PendingRequests,
    /// `max_requests`.
    Requests,
    /// `max_retries` (or the retry budget's limit).
    Retries,
}

impl Resource {
    const ALL: [Resource; 4] = [
        Resource::Connections,
        Resource::PendingRequests,
        Resource::Requests,
        Resource::Retries,
    ];
}

/// A breaker opened (count reached its limit) or closed (dropped below it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BreakerEvent {
    /// The resource.
    pub resource: Resource,
    /// `true` when it opened.
    pub open: bool,
}

/// The four resources of one cluster.
#[derive(Clone, Debug)]
pub struct Breakers {
    limit: [u64; 4],
    current: [u64; 4],
    open: [bool; 4],
    events: VecDeque<BreakerEvent>,
}

impl Breakers {
    /// Breakers with the configured limits, all counts zero.
    pub fn new(config: &CircuitBreakerConfig) -> Self {
        Breakers {
            limit: [
                u64::from(config.max_connections),
                u64::from(config.max_pending_requests),
                u64::from(config.max_requests),
                u64::from(config.max_retries),
            ],
            current: [0; 4],
            open: [false; 4],
            events: VecDeque::new(),
        }
    }

    /// The current count of `r`.
    pub fn current(&self, r: Resource) -> u64 {
        self.current[r as usize]
    }

    /// The limit of `r` last in force (the configured one, or a budget's latest).
    pub fn limit(&self, r: Resource) -> u64 {
        self.limit[r as usize]
    }

    /// Takes one unit of `r` if its count is below its limit.
    #[inline]
    pub fn try_acquire(&mut self, r: Resource) -> bool {
        self.try_acquire_within(r, self.limit[r as usize])
    }

    /// Takes one unit of `r` if its count is below `limit` (a retry budget's dynamic limit).
    #[inline]
    pub fn try_acquire_within(&mut self, r: Resource, limit: u64) -> bool {
        let i = r as usize;
        self.limit[i] = limit;
        if self.current[i] >= limit {
            self.set_open(i, true);
            return false;
        }
        self.current[i] += 1;
        if self.current[i] >= limit {
            self.set_open(i, true);
        }
        true
    }

    /// Gives back one unit of `r`. Releasing more than was acquired is ignored.
    #[inline]
    pub fn release(&mut self, r: Resource) {
        let i = r as usize;
        self.current[i] = self.current[i].saturating_sub(1);
        if self.open[i] && self.current[i] < self.limit[i] {
            self.set_open(i, false);
        }
    }

    fn set_open(&mut self, i: usize, open: bool) {
        if self.open[i] != open {
            self.open[i] = open;
            self.events.push_back(BreakerEvent {
                resource: Resource::ALL[i],
                open,
            });
        }
    }

    /// Whether `r` is at its limit.
    pub fn is_open(&self, r: Resource) -> bool {
        self.open[r as usize]
    }

    /// The next open/close change, if any.
    pub fn poll_event(&mut self) -> Option<BreakerEvent> {
        self.events.pop_front()
    }
}
