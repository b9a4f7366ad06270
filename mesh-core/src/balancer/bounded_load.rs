//! `BoundedLoad` is Mirrokni, Thorup and Zadimoghaddam's "consistent hashing with bounded loads"
//! (arXiv 1608.01350), Envoy's `hash_balance_factor`: no host may hold more than
//! `ceil(hash_balance_factor/100 x (in_flight + 1) x w_h / Σw)` of this balancer's requests; a
//! full host passes the request to the next point on the ring (the paper's linear probing; Envoy
//! jumps randomly instead).

use serde::{Deserialize, Serialize};

use super::ring_hash::{Ring, RingHashConfig, default_max, default_min};
use super::{ActiveCounts, Balancer, HostSet, PickCtx};
use crate::endpoint::{Candidate, EndpointId, Outcome};
use crate::error::ConfigError;
use crate::seed::{Rng, Seed, next_u64};
use crate::time::Instant;

/// Bounded-load consistent hashing config.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BoundedLoadConfig {
    /// Capacity factor in percent of the mean load, >= 100 (Envoy's `hash_balance_factor`).
    /// Default 125, the paper's and Vimeo's c = 1.25.
    #[serde(default = "default_factor")]
    pub hash_balance_factor: u32,
    /// Lower bound on points in the ring, as [`RingHashConfig::minimum_ring_size`].
    #[serde(default = "default_min")]
    pub minimum_ring_size: u64,
    /// Upper bound on points in the ring, as [`RingHashConfig::maximum_ring_size`].
    #[serde(default = "default_max")]
    pub maximum_ring_size: u64,
}

fn default_factor() -> u32 {
    125
}

impl Default for BoundedLoadConfig {
    fn default() -> Self {
        BoundedLoadConfig {
            hash_balance_factor: default_factor(),
            minimum_ring_size: default_min(),
            maximum_ring_size: default_max(),
        }
    }
}

impl BoundedLoadConfig {
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        if self.hash_balance_factor < 100 {
            return Err(ConfigError::new(
                "hash_balance_factor",
                format!(
                    "must be an integer percent >= 100, got {}",
                    self.hash_balance_factor
                ),
            ));
        }
        self.ring().validate()
    }

    /// The ring part of the config.
    pub fn ring(&self) -> RingHashConfig {
        RingHashConfig {
            minimum_ring_size: self.minimum_ring_size,
            maximum_ring_size: self.maximum_ring_size,
        }
    }
}

/// Consistent hashing with bounded loads.
#[derive(Debug)]
pub struct BoundedLoad {
    config: BoundedLoadConfig,
    hosts: HostSet,
    ring: Ring,
    active: ActiveCounts,
    /// Weight of each endpoint in the current set, 0 when absent.
    weight: Vec<u32>,
    /// In-flight requests on endpoints of the current set.
    in_set: u64,
    rng: Rng,
}

impl BoundedLoad {
    /// A balancer with an empty host set.
    pub fn new(config: BoundedLoadConfig, seed: Seed) -> Self {
        BoundedLoad {
            config,
            hosts: HostSet::default(),
            ring: Ring::default(),
            active: ActiveCounts::default(),
            weight: Vec::new(),
            in_set: 0,
            rng: seed.rng(),
        }
    }

    /// The most requests `ep` may hold once one more is placed.
    pub fn capacity(&self, ep: EndpointId) -> u64 {
        let w = u64::from(self.weight.get(ep.index()).copied().unwrap_or(0));
        let num = u128::from(self.config.hash_balance_factor)
            * u128::from(self.in_set + 1)
            * u128::from(w);
        let den = 100 * u128::from(self.hosts.total_weight.max(1));
        num.div_ceil(den) as u64
    }

    /// Requests this balancer has in flight on `ep`.
    pub fn in_flight(&self, ep: EndpointId) -> u32 {
        self.active.get(ep)
    }

    fn member(&self, ep: EndpointId) -> bool {
        self.weight.get(ep.index()).is_some_and(|&w| w > 0)
    }
}

impl Balancer for BoundedLoad {
    fn set_endpoints(&mut self, endpoints: &[Candidate], _now: Instant) {
        self.hosts.update(endpoints);
        self.ring = Ring::build(&self.hosts, &self.config.ring());
        self.active.ensure(&self.hosts);
        self.weight.iter_mut().for_each(|w| *w = 0);
        super::grow(&mut self.weight, &self.hosts, 0);
        for c in &self.hosts.hosts {
            self.weight[c.id.index()] = c.weight;
        }
        self.in_set = self
            .hosts
            .hosts
            .iter()
            .map(|c| u64::from(self.active.get(c.id)))
            .sum();
    }

    fn pick(&mut self, cx: &PickCtx, _now: Instant) -> Option<EndpointId> {
        let len = self.ring.len();
        if len == 0 {
            return None;
        }
        let h = cx.hash.unwrap_or_else(|| next_u64(&mut self.rng));
        let start = self.ring.position(h);
        for step in 0..len {
            let ep = self.ring.owners[(start + step) % len];
            if u64::from(self.active.get(ep)) < self.capacity(ep) {
                return Some(ep);
            }
        }
        // Unreachable while the capacities sum to more than the load (factor >= 100%); keep
        // the plain ring answer rather than fail.
        Some(self.ring.owners[start])
    }

    fn on_dispatch(&mut self, ep: EndpointId, _now: Instant) {
        self.active.inc(ep);
        if self.member(ep) {
            self.in_set += 1;
        }
    }

    fn on_complete(&mut self, ep: EndpointId, _sent: Instant, _o: Outcome, _now: Instant) {
        if self.member(ep) && self.active.get(ep) > 0 {
            self.in_set -= 1;
        }
        self.active.dec(ep);
    }

    fn kind(&self) -> &'static str {
        "bounded_load"
    }
}
