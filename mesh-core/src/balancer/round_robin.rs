//! Round robin, after Envoy's `ROUND_ROBIN` (`round_robin_lb.h`, `load_balancer_impl.cc`).
//!
//! With equal weights and no host in slow start it walks a plain index that starts at a random
//! position (one `random()` per load balancer, so proxies do not move in lockstep). When weights
//! differ, or a host is in slow start, it picks by EDF with weight x slow-start factor, the EDF
//! starting from a randomized state (Envoy's `createWithPicks`). The rotating index survives host
//! set updates, as Envoy keeps one per host source.

use serde::{Deserialize, Serialize};

use super::edf::Edf;
use super::slow_start::SlowStartConfig;
use super::{Balancer, HostSet, PickCtx};
use crate::endpoint::{Candidate, EndpointId};
use crate::error::ConfigError;
use crate::seed::{Rng, Seed, below};
use crate::time::Instant;

/// Envoy's `RoundRobin` policy config.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoundRobinConfig {
    /// Ramp new hosts' weight up over a window. Off when absent.
    #[serde(default)]
    pub slow_start_config: Option<SlowStartConfig>,
}

impl RoundRobinConfig {
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        self.slow_start_config
            .as_ref()
            .map_or(Ok(()), SlowStartConfig::validate)
    }
}

#[derive(Debug)]
enum Mode {
    Plain,
    Edf(Edf),
}

/// Envoy-style (weighted) round robin.
#[derive(Debug)]
pub struct RoundRobin {
    config: RoundRobinConfig,
    hosts: HostSet,
    next: usize,
    mode: Mode,
    /// When the last host leaves slow start; the schedule is rebuilt then.
    slow_start_end: Instant,
    rng: Rng,
}

impl RoundRobin {
    /// A balancer with an empty host set.
    pub fn new(config: RoundRobinConfig, seed: Seed) -> Self {
        let mut rng = seed.rng();
        let next = below(&mut rng, u32::MAX) as usize;
        RoundRobin {
            config,
            hosts: HostSet::default(),
            next,
            mode: Mode::Plain,
            slow_start_end: Instant::EPOCH,
            rng,
        }
    }

    fn rebuild(&mut self, now: Instant) {
        self.slow_start_end = self
            .config
            .slow_start_config
            .as_ref()
            .map_or(Instant::EPOCH, |ss| ss.ends_at(&self.hosts.hosts, now));
        let in_slow_start = self.slow_start_end > now;
        if self.hosts.equal_weights && !in_slow_start {
            self.mode = Mode::Plain;
            if !self.hosts.is_empty() {
                self.next %= self.hosts.len();
            }
        } else {
            let weights: Vec<f64> = self
                .hosts
                .hosts
                .iter()
                .map(|c| weight(self.config.slow_start_config.as_ref(), c, now))
                .collect();
            self.mode = Mode::Edf(Edf::new(&weights, &mut self.rng));
        }
    }
}

/// A host's EDF weight: its weight times its slow-start factor.
fn weight(slow_start: Option<&SlowStartConfig>, c: &Candidate, now: Instant) -> f64 {
    f64::from(c.weight) * slow_start.map_or(1.0, |ss| ss.factor(c.slow_start_since, now))
}

impl Balancer for RoundRobin {
    fn set_endpoints(&mut self, endpoints: &[Candidate], now: Instant) {
        self.hosts.update(endpoints);
        self.rebuild(now);
    }

    #[inline]
    fn pick(&mut self, _cx: &PickCtx, now: Instant) -> Option<EndpointId> {
        match &mut self.mode {
            Mode::Plain => {
                let c = self.hosts.hosts.get(self.next)?;
                self.next += 1;
                if self.next == self.hosts.len() {
                    self.next = 0;
                }
                Some(c.id)
            }
            Mode::Edf(_) => {
                if self.slow_start_end != Instant::EPOCH && now >= self.slow_start_end {
                    self.rebuild(now);
                    return self.pick(_cx, now);
                }
                let Mode::Edf(edf) = &mut self.mode else {
                    unreachable!()
                };
                let hosts = &self.hosts.hosts;
                let ss = self.config.slow_start_config.as_ref();
                let slot = edf.pick_and_add(|s| weight(ss, &hosts[s as usize], now))?;
                Some(hosts[slot as usize].id)
            }
        }
    }

    fn kind(&self) -> &'static str {
        "round_robin"
    }
}
