//! Least request (power of d choices); join-shortest-queue is in `jsq.rs`.
//!
//! `LeastRequest` follows Envoy's `LEAST_REQUEST` (`least_request_lb.cc`, `least_request.proto`):
//! with equal weights and no host in slow start it samples `choice_count` hosts and keeps the one
//! with the fewest active requests, ties keeping the earlier sample (`N_CHOICES`). Envoy samples
//! **with replacement**, so with 2 hosts it returns the busier one 25% of the time; tower's P2C
//! samples two distinct hosts. `sampling` chooses, because at small N the two differ by several
//! percent (at N = 2, with replacement sends the busier host a quarter of the picks). When weights differ, or a host is in slow start, Envoy
//! switches to EDF with weight `w / (active + 1)^active_request_bias` x slow-start factor, the
//! weight computed when a host is re-added after its pick.
//!
//! It counts only the requests this balancer dispatched, as one Envoy worker or one Linkerd
//! balancer does.

use serde::{Deserialize, Serialize};

use super::edf::Edf;
use super::slow_start::SlowStartConfig;
use super::{ActiveCounts, Balancer, HostSet, PickCtx};
use crate::endpoint::{Candidate, EndpointId, Outcome};
use crate::error::{ConfigError, check_range};
use crate::seed::{Rng, Seed, below};
use crate::time::Instant;

/// How `LeastRequest` draws its `choice_count` samples.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Sampling {
    /// Independent draws; a host may be drawn twice (Envoy, gRPC, HAProxy `random(2)`).
    #[default]
    WithReplacement,
    /// Distinct hosts (tower's `sample_floyd2`, Floyd's algorithm for d > 2).
    WithoutReplacement,
}

/// Envoy's `LeastRequest` policy config.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeastRequestConfig {
    /// Hosts sampled per pick, 2..=64. Default 2.
    #[serde(default = "default_choice_count")]
    pub choice_count: u32,
    /// Exponent of `(active + 1)` in the weighted mode, >= 0. Default 1.0.
    #[serde(default = "default_bias")]
    pub active_request_bias: f64,
    /// With or without replacement. Default with, as Envoy.
    #[serde(default)]
    pub sampling: Sampling,
    /// Ramp new hosts' weight up over a window. Off when absent.
    #[serde(default)]
    pub slow_start_config: Option<SlowStartConfig>,
}

fn default_choice_count() -> u32 {
    2
}
fn default_bias() -> f64 {
    1.0
}

/// Largest accepted `choice_count`: beyond it, use `join_shortest_queue`.
pub const MAX_CHOICE_COUNT: u32 = 64;

impl Default for LeastRequestConfig {
    fn default() -> Self {
        LeastRequestConfig {
            choice_count: default_choice_count(),
            active_request_bias: default_bias(),
            sampling: Sampling::default(),
            slow_start_config: None,
        }
    }
}

impl LeastRequestConfig {
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        if !(2..=MAX_CHOICE_COUNT).contains(&self.choice_count) {
            return Err(ConfigError::new(
                "choice_count",
                format!(
                    "must be an integer in 2..={MAX_CHOICE_COUNT}, got {} (use join_shortest_queue for a full scan)",
                    self.choice_count
                ),
            ));
        }
        check_range(
            "active_request_bias",
            self.active_request_bias,
            0.0,
            f64::MAX,
        )?;
        self.slow_start_config
            .as_ref()
            .map_or(Ok(()), SlowStartConfig::validate)
    }
}

/// Envoy-style least request.
#[derive(Debug)]
pub struct LeastRequest {
    config: LeastRequestConfig,
    hosts: HostSet,
    active: ActiveCounts,
    edf: Option<Edf>,
    slow_start_end: Instant,
    rng: Rng,
}

impl LeastRequest {
    /// A balancer with an empty host set.
    pub fn new(config: LeastRequestConfig, seed: Seed) -> Self {
        LeastRequest {
            config,
            hosts: HostSet::default(),
            active: ActiveCounts::default(),
            edf: None,
            slow_start_end: Instant::EPOCH,
            rng: seed.rng(),
        }
    }

    fn rebuild(&mut self, now: Instant) {
        self.active.ensure(&self.hosts);
        self.slow_start_end = self
            .config
            .slow_start_config
            .as_ref()
            .map_or(Instant::EPOCH, |ss| ss.ends_at(&self.hosts.hosts, now));
        if self.hosts.equal_weights && self.slow_start_end <= now {
            self.edf = None;
        } else {
            let weights: Vec<f64> = self
                .hosts
                .hosts
                .iter()
                .map(|c| weighted(&self.config, &self.active, c, now))
                .collect();
            self.edf = Some(Edf::new(&weights, &mut self.rng));
        }
    }

    #[inline]
    fn pick_unweighted(&mut self) -> Option<EndpointId> {
        let hosts = &self.hosts.hosts;
        let n = hosts.len() as u32;
        if n <= 1 {
            return hosts.first().map(|c| c.id);
        }
        let d = self.config.choice_count;
        let active = &self.active;
        let mut best: Option<(EndpointId, u32)> = None;
        let mut consider = |i: u32| {
            let id = hosts[i as usize].id;
            let a = active.get(id);
            if best.is_none_or(|(_, b)| a < b) {
                best = Some((id, a));
            }
        };
        match self.config.sampling {
            Sampling::WithReplacement => {
                for _ in 0..d {
                    consider(below(&mut self.rng, n));
                }
            }
            Sampling::WithoutReplacement if d >= n => (0..n).for_each(&mut consider),
            Sampling::WithoutReplacement if d == 2 => {
                let a = below(&mut self.rng, n);
                let mut b = below(&mut self.rng, n - 1);
                if b >= a {
                    b += 1;
                }
                consider(a);
                consider(b);
            }
            Sampling::WithoutReplacement => {
                // Floyd's algorithm: d distinct indices, O(d^2) with d <= 64.
                let mut chosen = [0u32; MAX_CHOICE_COUNT as usize];
                for (k, j) in ((n - d)..n).enumerate() {
                    let t = below(&mut self.rng, j + 1);
                    let pick = if chosen[..k].contains(&t) { j } else { t };
                    chosen[k] = pick;
                    consider(pick);
                }
            }
        }
        best.map(|(id, _)| id)
    }
}

/// Envoy's least-request host weight: `w * slow_start / (active + 1)^bias`.
fn weighted(
    config: &LeastRequestConfig,
    active: &ActiveCounts,
    c: &Candidate,
    now: Instant,
) -> f64 {
    let ss = config
        .slow_start_config
        .as_ref()
        .map_or(1.0, |ss| ss.factor(c.slow_start_since, now));
    let load = f64::from(active.get(c.id)) + 1.0;
    let bias = config.active_request_bias;
    let denom = if bias == 1.0 {
        load
    } else if bias == 0.0 {
        1.0
    } else {
        load.powf(bias)
    };
    f64::from(c.weight) * ss / denom
}

impl Balancer for LeastRequest {
    fn set_endpoints(&mut self, endpoints: &[Candidate], now: Instant) {
        self.hosts.update(endpoints);
        self.rebuild(now);
    }

    #[inline]
    fn pick(&mut self, _cx: &PickCtx, now: Instant) -> Option<EndpointId> {
        if self.slow_start_end != Instant::EPOCH && now >= self.slow_start_end {
            self.rebuild(now);
        }
        match &mut self.edf {
            None => self.pick_unweighted(),
            Some(edf) => {
                let hosts = &self.hosts.hosts;
                let (config, active) = (&self.config, &self.active);
                let slot =
                    edf.pick_and_add(|s| weighted(config, active, &hosts[s as usize], now))?;
                Some(hosts[slot as usize].id)
            }
        }
    }

    fn on_dispatch(&mut self, ep: EndpointId, _now: Instant) {
        self.active.inc(ep);
    }

    fn on_complete(&mut self, ep: EndpointId, _sent: Instant, _o: Outcome, _now: Instant) {
        self.active.dec(ep);
    }

    fn kind(&self) -> &'static str {
        "least_request"
    }
}
