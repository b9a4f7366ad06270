//! Peak-EWMA power of two choices, after tower's `load::PeakEwma` and `balance::p2c`, Finagle's
//! `PeakEwma` and Linkerd's default balancer.
//!
//! Each endpoint keeps a latency estimate. A sample above the estimate replaces it (the peak);
//! otherwise `est = est * e^(-dt/decay) + rtt * (1 - e^(-dt/decay))`, with `dt` the time since
//! the last update. Reading the estimate at `now` decays it toward zero as tower's `load()` does
//! (a zero-latency observation), but without mutating, as Linkerd's `get_at(now)`: idle endpoints
//! grow cheap and get probed again. Cost = estimate x (pending + 1). A pick samples two distinct
//! endpoints and takes the cheaper; ties go to the first (tower). An endpoint with no samples
//! starts at `default_rtt`. Defaults are Linkerd's: `decay` 10 s, `default_rtt` 30 ms.

use serde::{Deserialize, Serialize};

use super::{ActiveCounts, Balancer, HostSet, PickCtx, grow};
use crate::endpoint::{Candidate, EndpointId, Outcome};
use crate::error::ConfigError;
use crate::seed::{Rng, Seed, below};
use crate::time::{Duration, Instant};

/// Peak-EWMA parameters.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeakEwmaConfig {
    /// Time constant of the decay, > 0. Default 10 s (Linkerd, Finagle).
    #[serde(default = "default_decay")]
    pub decay: Duration,
    /// Estimate for an endpoint with no samples yet, > 0. Default 30 ms (Linkerd).
    #[serde(default = "default_rtt")]
    pub default_rtt: Duration,
}

fn default_decay() -> Duration {
    Duration::from_secs(10)
}
fn default_rtt() -> Duration {
    Duration::from_millis(30)
}

impl Default for PeakEwmaConfig {
    fn default() -> Self {
        PeakEwmaConfig {
            decay: default_decay(),
            default_rtt: default_rtt(),
        }
    }
}

impl PeakEwmaConfig {
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        if self.decay.is_zero() {
            return Err(ConfigError::new(
                "decay",
                "must be a duration > 0, such as `10s`",
            ));
        }
        if self.default_rtt.is_zero() {
            return Err(ConfigError::new(
                "default_rtt",
                "must be a duration > 0, such as `30ms`",
            ));
        }
        Ok(())
    }
}

#[derive(Clone, Copy, Debug)]
struct Estimate {
    rtt_ns: f64,
    stamp: Instant,
    present: bool,
}

/// Peak-EWMA P2C.
#[derive(Debug)]
pub struct PeakEwma {
    config: PeakEwmaConfig,
    decay_ns: f64,
    hosts: HostSet,
    est: Vec<Estimate>,
    pending: ActiveCounts,
    rng: Rng,
}

impl PeakEwma {
    /// A balancer with an empty host set.
    pub fn new(config: PeakEwmaConfig, seed: Seed) -> Self {
        PeakEwma {
            decay_ns: config.decay.as_nanos() as f64,
            config,
            hosts: HostSet::default(),
            est: Vec::new(),
            pending: ActiveCounts::default(),
            rng: seed.rng(),
        }
    }

    /// The latency estimate of `ep` at `now`, in nanoseconds.
    pub fn estimate_ns(&self, ep: EndpointId, now: Instant) -> f64 {
        self.est.get(ep.index()).map_or(0.0, |e| {
            let dt = now.saturating_since(e.stamp).as_nanos() as f64;
            e.rtt_ns * (-dt / self.decay_ns).exp()
        })
    }

    #[inline]
    fn cost(&self, ep: EndpointId, now: Instant) -> f64 {
        self.estimate_ns(ep, now) * (f64::from(self.pending.get(ep)) + 1.0)
    }
}

impl Balancer for PeakEwma {
    fn set_endpoints(&mut self, endpoints: &[Candidate], now: Instant) {
        self.hosts.update(endpoints);
        let absent = Estimate {
            rtt_ns: 0.0,
            stamp: now,
            present: false,
        };
        grow(&mut self.est, &self.hosts, absent);
        self.pending.ensure(&self.hosts);
        let default_ns = self.config.default_rtt.as_nanos() as f64;
        // Endpoints that were not in the previous set start unmeasured, at `default_rtt`
        // (tower's `RttEstimate::new`); the others keep their estimate.
        let mut was_present: Vec<bool> = self.est.iter().map(|e| e.present).collect();
        for e in &mut self.est {
            e.present = false;
        }
        for c in &self.hosts.hosts {
            let e = &mut self.est[c.id.index()];
            if !std::mem::take(&mut was_present[c.id.index()]) {
                e.rtt_ns = default_ns;
                e.stamp = now;
            }
            e.present = true;
        }
    }

    #[inline]
    fn pick(&mut self, _cx: &PickCtx, now: Instant) -> Option<EndpointId> {
        let n = self.hosts.len() as u32;
        if n <= 1 {
            return self.hosts.hosts.first().map(|c| c.id);
        }
        let i = below(&mut self.rng, n);
        let mut j = below(&mut self.rng, n - 1);
        if j >= i {
            j += 1;
        }
        let a = self.hosts.hosts[i as usize].id;
        let b = self.hosts.hosts[j as usize].id;
        Some(if self.cost(a, now) <= self.cost(b, now) {
            a
        } else {
            b
        })
    }

    fn on_dispatch(&mut self, ep: EndpointId, _now: Instant) {
        self.pending.inc(ep);
    }

    fn on_complete(&mut self, ep: EndpointId, sent_at: Instant, _o: Outcome, now: Instant) {
        self.pending.dec(ep);
        let decay_ns = self.decay_ns;
        if let Some(e) = self.est.get_mut(ep.index()) {
            let rtt = now.saturating_since(sent_at).as_nanos() as f64;
            if rtt > e.rtt_ns {
                e.rtt_ns = rtt;
            } else {
                let dt = now.saturating_since(e.stamp).as_nanos() as f64;
                let decay = (-dt / decay_ns).exp();
                e.rtt_ns = e.rtt_ns * decay + rtt * (1.0 - decay);
            }
            e.stamp = now;
        }
    }

    fn kind(&self) -> &'static str {
        "peak_ewma"
    }
}
