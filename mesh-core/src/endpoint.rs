//! Endpoint identity and metadata, and the outcome of an attempt.

use serde::{Deserialize, Serialize};

use crate::time::Instant;

/// A dense endpoint index, `0..n` over every endpoint a client has ever known, so per-endpoint
/// state lives in a `Vec` indexed by it. An id is never reused for a different endpoint, which is
/// what keeps hash-based balancers stable when an endpoint leaves and returns.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct EndpointId(pub u32);

impl EndpointId {
    /// The id as a `Vec` index.
    #[inline]
    pub const fn index(self) -> usize {
        self.0 as usize
    }
}

impl core::fmt::Display for EndpointId {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "ep{}", self.0)
    }
}

/// How one attempt ended, in the classes retry and outlier-detection policies distinguish
/// (Envoy's `retry_on` and outlier-detection error classes).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// A 2xx-4xx response: the endpoint did its job.
    Success,
    /// A 5xx response other than the gateway errors (500, 501, 505, ...).
    ServerError,
    /// 502, 503 or 504: Envoy's `gateway-error` class, counted by `consecutive_gateway_failure`.
    GatewayError,
    /// Connect failure, reset or refused stream: locally originated, Envoy's
    /// `consecutive_local_origin_failure` class.
    LocalError,
    /// No response before the attempt's deadline.
    Timeout,
}

impl Outcome {
    /// True for every outcome but [`Outcome::Success`].
    pub const fn is_failure(self) -> bool {
        !matches!(self, Outcome::Success)
    }
}

/// Health as discovery and health checking report it (Envoy's coarse health states).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Health {
    /// Takes traffic.
    #[default]
    Healthy,
    /// Takes traffic only when healthy hosts cannot carry the load (Envoy's degraded hosts).
    Degraded,
    /// Takes no traffic, except in panic mode.
    Unhealthy,
    /// Being removed: finishes in-flight work, takes no new requests, not even in panic mode.
    Draining,
}

/// What a client knows about one endpoint besides its id.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointMeta {
    /// Relative weight, Envoy's `load_balancing_weight`. 0 means "take no new traffic".
    #[serde(default = "default_weight")]
    pub weight: u32,
    /// Priority level; 0 is the highest (Envoy's `LocalityLbEndpoints.priority`).
    #[serde(default)]
    pub priority: u32,
    /// The zone (locality) the endpoint runs in.
    #[serde(default)]
    pub zone: String,
    /// Health as last reported.
    #[serde(default)]
    pub health: Health,
}

fn default_weight() -> u32 {
    1
}

impl Default for EndpointMeta {
    fn default() -> Self {
        EndpointMeta {
            weight: 1,
            priority: 0,
            zone: String::new(),
            health: Health::Healthy,
        }
    }
}

/// One endpoint as a balancer sees it: the host set a balancer chooses among is a slice of these,
/// already filtered for health, ejection, priority and zone by the caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Candidate {
    /// The endpoint.
    pub id: EndpointId,
    /// Its weight. A candidate of weight 0 is never picked.
    pub weight: u32,
    /// When the endpoint joined or last turned healthy, if it is subject to slow start. `None`
    /// for endpoints that were present when the client started (Envoy does not slow-start the
    /// initial host set).
    pub slow_start_since: Option<Instant>,
}

impl Candidate {
    /// A weight-1 candidate not in slow start.
    pub const fn new(id: u32) -> Self {
        Candidate {
            id: EndpointId(id),
            weight: 1,
            slow_start_since: None,
        }
    }

    /// A candidate of the given weight, not in slow start.
    pub const fn weighted(id: u32, weight: u32) -> Self {
        Candidate {
            id: EndpointId(id),
            weight,
            slow_start_since: None,
        }
    }
}
