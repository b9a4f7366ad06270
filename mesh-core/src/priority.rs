//! Priority levels: Envoy's priority load, overprovisioning factor and panic threshold, as pure
//! functions.
//!
//! Source: Envoy's docs (`load_balancing/priority.rst`, `panic_threshold.rst`) and
//! `LoadBalancerBase::recalculatePerPriorityState`, `recalculatePerPriorityPanic`,
//! `recalculateLoadInTotalPanic` and `choosePriority` in `load_balancer_impl.cc`:
//!
//! * `health(P) = min(100, OPF% x healthy / total)` and likewise `degraded(P)`, integer percents
//!   (OPF 140 by default);
//! * normalized total availability `NTA = min(100, Σ health + Σ degraded)`;
//! * healthy load is given in priority order, `min(remaining, health(P) x 100 / NTA)`, then
//!   degraded load from what remains; a rounding remainder goes to the first priority with healthy
//!   hosts (else the first with degraded ones);
//! * a priority is in panic when NTA < 100 and `(healthy + degraded) / total < threshold`;
//!   traffic to a panicking priority ignores health. When every priority panics, load is split by
//!   host count ("total panic"). A threshold of 0 disables panic.
//!
//! Where Envoy's docs tables disagree with its code by rounding, this follows the code; the tests
//! name each such row.

use serde::{Deserialize, Serialize};

use crate::error::{ConfigError, check_range};

/// Priority and panic config (Envoy's `overprovisioning_factor` and `healthy_panic_threshold`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriorityConfig {
    /// Overprovisioning factor, >= 1.0 (Envoy writes it as the integer percent 140). Default 1.4.
    #[serde(default = "default_opf")]
    pub overprovisioning_factor: f64,
    /// Percent of available hosts below which a priority panics, 0..=100; 0 disables panic.
    /// Default 50.
    #[serde(default = "default_panic")]
    pub healthy_panic_threshold: f64,
}

fn default_opf() -> f64 {
    1.4
}
fn default_panic() -> f64 {
    50.0
}

impl Default for PriorityConfig {
    fn default() -> Self {
        PriorityConfig {
            overprovisioning_factor: default_opf(),
            healthy_panic_threshold: default_panic(),
        }
    }
}

impl PriorityConfig {
    /// Checks both fields' ranges.
    pub fn validate(&self) -> Result<(), ConfigError> {
        check_range(
            "overprovisioning_factor",
            self.overprovisioning_factor,
            1.0,
            f64::from(u32::MAX) / 100.0,
        )?;
        check_range(
            "healthy_panic_threshold",
            self.healthy_panic_threshold,
            0.0,
            100.0,
        )
    }

    /// The factor as Envoy's integer percent (1.4 -> 140).
    pub fn opf_percent(&self) -> u64 {
        (self.overprovisioning_factor * 100.0).round() as u64
    }
}

/// Host counts (or weights, for Envoy's `weighted_priority_health`) of one priority level,
/// excluded hosts already left out.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LevelHosts {
    /// Every host of the level.
    pub total: u64,
    /// Healthy hosts.
    pub healthy: u64,
    /// Degraded hosts.
    pub degraded: u64,
}

impl LevelHosts {
    /// A level of `total` hosts of which `healthy` are healthy and none degraded.
    pub const fn new(total: u64, healthy: u64) -> Self {
        LevelHosts {
            total,
            healthy,
            degraded: 0,
        }
    }
}

/// Which part of a priority's hosts a request targets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Availability {
    /// The healthy hosts (all hosts, if the priority is in panic).
    Healthy,
    /// The degraded hosts.
    Degraded,
}

/// The load split across priorities: integer percents summing to 100 (when any level exists).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PriorityLoad {
    /// Percent of requests to each priority's healthy hosts.
    pub healthy: Vec<u32>,
    /// Percent of requests to each priority's degraded hosts.
    pub degraded: Vec<u32>,
    /// Whether each priority is in panic (its traffic ignores health).
    pub panic: Vec<bool>,
    /// Normalized total availability, 0..=100.
    pub normalized_total_availability: u32,
}

impl PriorityLoad {
    /// True when every priority is in panic and load follows host counts.
    pub fn total_panic(&self) -> bool {
        !self.panic.is_empty() && self.panic.iter().all(|&p| p)
    }
}

/// Envoy's `distributeLoad`: returns the first level with availability and the load left over.
fn distribute(out: &mut [u32], avail: &[u32], mut total: u32, nta: u32) -> (Option<usize>, u32) {
    let mut first = None;
    for (i, (&a, o)) in avail.iter().zip(out.iter_mut()).enumerate() {
        if first.is_none() && a > 0 {
            first = Some(i);
        }
        *o = total.min(a * 100 / nta);
        total -= *o;
    }
    (first, total)
}

/// Computes the priority load for `levels` (index = priority, 0 highest).
pub fn priority_load(levels: &[LevelHosts], config: &PriorityConfig) -> PriorityLoad {
    let n = levels.len();
    let opf = config.opf_percent();
    let pct = |part: u64, total: u64| -> u32 {
        if total == 0 {
            0
        } else {
            (u128::from(opf) * u128::from(part) / u128::from(total)).min(100) as u32
        }
    };
    let health: Vec<u32> = levels.iter().map(|l| pct(l.healthy, l.total)).collect();
    let degraded: Vec<u32> = levels.iter().map(|l| pct(l.degraded, l.total)).collect();
    let nta = (health.iter().sum::<u32>() + degraded.iter().sum::<u32>()).min(100);
    let mut load = PriorityLoad {
        healthy: vec![0; n],
        degraded: vec![0; n],
        panic: vec![false; n],
        normalized_total_availability: nta,
    };
    if n == 0 {
        return load;
    }
    if nta > 0 {
        let (first_h, rest) = distribute(&mut load.healthy, &health, 100, nta);
        let (first_d, rest) = distribute(&mut load.degraded, &degraded, rest, nta);
        if rest > 0 {
            match (first_h, first_d) {
                (Some(h), _) => load.healthy[h] += rest,
                (None, Some(d)) => load.degraded[d] += rest,
                (None, None) => unreachable!("nta > 0 means some level has availability"),
            }
        }
    }
    let threshold = config.healthy_panic_threshold.min(100.0);
    if threshold == 0.0 && nta == 0 {
        // Panic disabled and nothing available: Envoy puts 100% on P=0 so loads sum to 100;
        // picks then fail for want of a healthy host.
        load.healthy[0] = 100;
        return load;
    }
    for (p, l) in levels.iter().enumerate() {
        load.panic[p] = nta != 100 && {
            let avail = if l.total == 0 {
                0.0
            } else {
                100.0 * (l.healthy + l.degraded) as f64 / l.total as f64
            };
            avail < threshold
        };
    }
    if load.total_panic() {
        let hosts: u64 = levels.iter().map(|l| l.total).sum();
        load.degraded.iter_mut().for_each(|d| *d = 0);
        if hosts == 0 {
            load.healthy.iter_mut().for_each(|h| *h = 0);
            load.healthy[0] = 100;
            return load;
        }
        let mut rest = 100u32;
        let mut first = None;
        for (p, l) in levels.iter().enumerate() {
            if first.is_none() && l.total > 0 {
                first = Some(p);
            }
            load.healthy[p] = (100 * l.total / hosts) as u32;
            rest -= load.healthy[p];
        }
        load.healthy[first.expect("hosts > 0")] += rest;
    }
    load
}

/// Chooses a priority from a request's random (or hash) value, as Envoy's `choosePriority`:
/// `hash % 100 + 1` against the cumulative healthy loads, then the degraded ones.
pub fn choose_priority(hash: u64, load: &PriorityLoad) -> Option<(usize, Availability)> {
    let h = (hash % 100 + 1) as u32;
    let mut acc = 0u32;
    for (p, &l) in load.healthy.iter().enumerate() {
        acc += l;
        if h <= acc {
            return Some((p, Availability::Healthy));
        }
    }
    for (p, &l) in load.degraded.iter().enumerate() {
        acc += l;
        if h <= acc {
            return Some((p, Availability::Degraded));
        }
    }
    None
}
