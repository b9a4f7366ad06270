//! Weighted round robin from server-reported load, after gRFC A58 and grpc-go's
//! `balancer/weightedroundrobin` (Envoy's `client_side_weighted_round_robin` takes the same
//! config).
//!
//! A load report sets an endpoint's weight to `qps / (utilization + eps/qps x
//! error_utilization_penalty)`; reports with zero utilization or zero qps are ignored. A weight
//! counts only after `blackout_period` of non-empty reports, and expires (restarting the
//! blackout) when no report arrived for `weight_expiration_period`. Every
//! `weight_update_period` (at least 100 ms, as gRPC clamps it) the schedule is rebuilt: endpoints
//! without a usable weight get the mean of the usable ones, and with fewer than two usable
//! weights all endpoints weigh the same. The schedule is EDF, as in Envoy (gRPC uses a static-
//! stride variant with the same shares). Static endpoint weights are not used, only the zero
//! filter every balancer applies.

use serde::{Deserialize, Serialize};

use super::edf::Edf;
use super::{Balancer, HostSet, LoadReport, PickCtx, grow};
use crate::endpoint::{Candidate, EndpointId};
use crate::error::{ConfigError, check_range};
use crate::seed::{Rng, Seed};
use crate::time::{Duration, Instant};

/// gRFC A58 config (`ClientSideWeightedRoundRobin`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrcaWrrConfig {
    /// Reports must span this long before a weight is used. Default 10 s.
    #[serde(default = "d_blackout")]
    pub blackout_period: Duration,
    /// A weight with no report for this long expires. Default 3 min.
    #[serde(default = "d_expiration")]
    pub weight_expiration_period: Duration,
    /// How often the schedule is rebuilt; below 100 ms counts as 100 ms. Default 1 s.
    #[serde(default = "d_update")]
    pub weight_update_period: Duration,
    /// Multiplier of `eps/qps` added to utilization, >= 0. Default 1.0.
    #[serde(default = "d_penalty")]
    pub error_utilization_penalty: f64,
}

fn d_blackout() -> Duration {
    Duration::from_secs(10)
}
fn d_expiration() -> Duration {
    Duration::from_secs(180)
}
fn d_update() -> Duration {
    Duration::from_secs(1)
}
fn d_penalty() -> f64 {
    1.0
}

impl Default for OrcaWrrConfig {
    fn default() -> Self {
        OrcaWrrConfig {
            blackout_period: d_blackout(),
            weight_expiration_period: d_expiration(),
            weight_update_period: d_update(),
            error_utilization_penalty: d_penalty(),
        }
    }
}

impl OrcaWrrConfig {
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        check_range(
            "error_utilization_penalty",
            self.error_utilization_penalty,
            0.0,
            f64::MAX,
        )
    }
}

#[derive(Clone, Copy, Debug, Default)]
struct Weight {
    value: f64,
    non_empty_since: Option<Instant>,
    last_updated: Instant,
    present: bool,
}

/// ORCA-driven weighted round robin.
#[derive(Debug)]
pub struct OrcaWeightedRoundRobin {
    config: OrcaWrrConfig,
    hosts: HostSet,
    weights: Vec<Weight>,
    edf: Edf,
    /// The weight of each slot of the current schedule.
    schedule: Vec<f64>,
    next_update: Instant,
    rng: Rng,
}

impl OrcaWeightedRoundRobin {
    /// A balancer with an empty host set.
    pub fn new(config: OrcaWrrConfig, seed: Seed) -> Self {
        OrcaWeightedRoundRobin {
            config,
            hosts: HostSet::default(),
            weights: Vec::new(),
            edf: Edf::default(),
            schedule: Vec::new(),
            next_update: Instant::EPOCH,
            rng: seed.rng(),
        }
    }

    /// The weight `ep` would get in a schedule built at `now`, 0 when unusable (gRPC's
    /// `weight()`, which also restarts the blackout of an expired weight).
    fn usable_weight(&mut self, ep: EndpointId, now: Instant) -> f64 {
        let (blackout, expiry) = (
            self.config.blackout_period,
            self.config.weight_expiration_period,
        );
        let w = &mut self.weights[ep.index()];
        if !expiry.is_zero() && now.saturating_since(w.last_updated) >= expiry {
            w.non_empty_since = None;
            return 0.0;
        }
        match w.non_empty_since {
            Some(since) if blackout.is_zero() || now.saturating_since(since) >= blackout => w.value,
            _ => 0.0,
        }
    }

    fn rebuild(&mut self, now: Instant) {
        let ids: Vec<EndpointId> = self.hosts.hosts.iter().map(|c| c.id).collect();
        let mut w: Vec<f64> = ids.iter().map(|&id| self.usable_weight(id, now)).collect();
        let usable: Vec<f64> = w.iter().copied().filter(|&x| x > 0.0).collect();
        if usable.len() < 2 {
            w.iter_mut().for_each(|x| *x = 1.0);
        } else {
            let mean = usable.iter().sum::<f64>() / usable.len() as f64;
            w.iter_mut().filter(|x| **x <= 0.0).for_each(|x| *x = mean);
        }
        self.edf = Edf::new(&w, &mut self.rng);
        self.schedule = w;
        let period = self
            .config
            .weight_update_period
            .max(Duration::from_millis(100));
        self.next_update = now + period;
    }
}

impl Balancer for OrcaWeightedRoundRobin {
    fn set_endpoints(&mut self, endpoints: &[Candidate], now: Instant) {
        self.hosts.update(endpoints);
        grow(&mut self.weights, &self.hosts, Weight::default());
        let mut was_present: Vec<bool> = self.weights.iter().map(|w| w.present).collect();
        self.weights.iter_mut().for_each(|w| w.present = false);
        for c in &self.hosts.hosts {
            let w = &mut self.weights[c.id.index()];
            if !std::mem::take(&mut was_present[c.id.index()]) {
                // A new (or returning) endpoint starts a fresh blackout, as on reconnect.
                *w = Weight::default();
            }
            w.present = true;
        }
        self.rebuild(now);
    }

    fn pick(&mut self, _cx: &PickCtx, now: Instant) -> Option<EndpointId> {
        if self.hosts.is_empty() {
            return None;
        }
        if now >= self.next_update {
            self.rebuild(now);
        }
        let schedule = &self.schedule;
        let slot = self.edf.pick_and_add(|s| schedule[s as usize])?;
        Some(self.hosts.hosts[slot as usize].id)
    }

    fn on_load_report(&mut self, ep: EndpointId, report: &LoadReport, now: Instant) {
        let Some(w) = self.weights.get_mut(ep.index()) else {
            return;
        };
        if !(report.utilization > 0.0 && report.qps > 0.0 && report.eps.is_finite()) {
            return;
        }
        let util =
            report.utilization + report.eps / report.qps * self.config.error_utilization_penalty;
        w.value = report.qps / util;
        w.last_updated = now;
        if w.non_empty_since.is_none() {
            w.non_empty_since = Some(now);
        }
    }

    fn kind(&self) -> &'static str {
        "orca_weighted_round_robin"
    }
}
