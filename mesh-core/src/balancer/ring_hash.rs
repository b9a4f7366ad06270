//! Ring hash (Ketama) and consistent hashing with bounded loads.
//!
//! `RingHash` follows Envoy's `RING_HASH` (`ring_hash.proto`, `ring_hash_lb.cc`): the ring holds
//! `scale` points, `scale = min(ceil(min_w * minimum_ring_size) / min_w, maximum_ring_size)` for
//! normalized weights with minimum `min_w`, so the lightest host gets a whole number of points;
//! host `h` gets points hashed from `"{h}_{i}"` until the running total reaches `scale * w_h`.
//! A request goes to the first point at or after its hash, wrapping to the start. Points are
//! XXH64, seed 0. Removing one of N hosts moves only the keys that host owned (about 1/N).
//!
//! `BoundedLoad` is Mirrokni, Thorup and Zadimoghaddam's "consistent hashing with bounded loads"
//! (arXiv 1608.01350), Envoy's `hash_balance_factor`: no host may hold more than
//! `ceil(hash_balance_factor/100 x (in_flight + 1) x w_h / Σw)` of this balancer's requests; a
//! full host passes the request to the next point on the ring (the paper's linear probing; Envoy
//! jumps randomly instead).

use serde::{Deserialize, Serialize};

use super::hash;
use super::{ActiveCounts, Balancer, HostSet, PickCtx};
use crate::endpoint::{Candidate, EndpointId, Outcome};
use crate::error::ConfigError;
use crate::seed::{Rng, Seed, next_u64};
use crate::time::Instant;

/// Envoy's largest allowed `maximum_ring_size` (8M points).
pub const MAX_RING_SIZE: u64 = 8 * 1024 * 1024;

/// Envoy's `RingHash` config.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RingHashConfig {
    /// Lower bound on points in the ring, 1..=maximum_ring_size. Default 1024.
    #[serde(default = "default_min")]
    pub minimum_ring_size: u64,
    /// Upper bound on points in the ring, minimum_ring_size..=8388608. Default 8388608.
    #[serde(default = "default_max")]
    pub maximum_ring_size: u64,
}

fn default_min() -> u64 {
    1024
}
fn default_max() -> u64 {
    MAX_RING_SIZE
}

impl Default for RingHashConfig {
    fn default() -> Self {
        RingHashConfig {
            minimum_ring_size: default_min(),
            maximum_ring_size: default_max(),
        }
    }
}

impl RingHashConfig {
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        if !(1..=MAX_RING_SIZE).contains(&self.maximum_ring_size) {
            return Err(ConfigError::new(
                "maximum_ring_size",
                format!(
                    "must be in 1..={MAX_RING_SIZE}, got {}",
                    self.maximum_ring_size
                ),
            ));
        }
        if !(1..=self.maximum_ring_size).contains(&self.minimum_ring_size) {
            return Err(ConfigError::new(
                "minimum_ring_size",
                format!(
                    "must be in 1..=maximum_ring_size ({}), got {}",
                    self.maximum_ring_size, self.minimum_ring_size
                ),
            ));
        }
        Ok(())
    }
}

/// A sorted ring of points with a radix index over the top bits of the hash, so a lookup scans
/// one short bucket instead of binary-searching the whole ring.
#[derive(Debug, Default)]
struct Ring {
    hashes: Vec<u64>,
    owners: Vec<EndpointId>,
    /// `index[k]` = first position whose hash's top `bits` bits are >= k; `2^bits + 1` entries.
    index: Vec<u32>,
    bits: u32,
}

impl Ring {
    fn build(hosts: &HostSet, config: &RingHashConfig) -> Ring {
        let mut ring = Ring::default();
        if hosts.is_empty() {
            return ring;
        }
        let total = hosts.total_weight as f64;
        let min_w = hosts
            .hosts
            .iter()
            .map(|c| f64::from(c.weight) / total)
            .fold(f64::INFINITY, f64::min);
        let scale = ((min_w * config.minimum_ring_size as f64).ceil() / min_w)
            .min(config.maximum_ring_size as f64);
        let mut points: Vec<(u64, EndpointId)> = Vec::with_capacity(scale.ceil() as usize + 1);
        let (mut current, mut target) = (0.0f64, 0.0f64);
        for c in &hosts.hosts {
            target += scale * f64::from(c.weight) / total;
            let mut i = 0;
            while current < target {
                points.push((hash::point(c.id, i), c.id));
                i += 1;
                current += 1.0;
            }
        }
        points.sort_unstable();
        ring.hashes = points.iter().map(|p| p.0).collect();
        ring.owners = points.iter().map(|p| p.1).collect();
        ring.bits = (usize::BITS - ring.hashes.len().leading_zeros()).clamp(1, 20);
        let buckets = 1usize << ring.bits;
        ring.index = Vec::with_capacity(buckets + 1);
        let mut pos = 0usize;
        for k in 0..=buckets {
            while pos < ring.hashes.len() && ((ring.hashes[pos] >> (64 - ring.bits)) as usize) < k {
                pos += 1;
            }
            ring.index.push(pos as u32);
        }
        ring
    }

    /// Position of the first point at or after `h`, wrapping to 0.
    #[inline]
    fn position(&self, h: u64) -> usize {
        let k = (h >> (64 - self.bits)) as usize;
        let (lo, hi) = (self.index[k] as usize, self.index[k + 1] as usize);
        let p = lo + self.hashes[lo..hi].partition_point(|&x| x < h);
        if p == self.hashes.len() { 0 } else { p }
    }

    fn len(&self) -> usize {
        self.hashes.len()
    }
}

/// Envoy-style ring hash.
#[derive(Debug)]
pub struct RingHash {
    config: RingHashConfig,
    hosts: HostSet,
    ring: Ring,
    rng: Rng,
}

impl RingHash {
    /// A balancer with an empty host set.
    pub fn new(config: RingHashConfig, seed: Seed) -> Self {
        RingHash {
            config,
            hosts: HostSet::default(),
            ring: Ring::default(),
            rng: seed.rng(),
        }
    }

    /// Points on the ring (for tests and reports).
    pub fn ring_size(&self) -> usize {
        self.ring.len()
    }
}

impl Balancer for RingHash {
    fn set_endpoints(&mut self, endpoints: &[Candidate], _now: Instant) {
        self.hosts.update(endpoints);
        self.ring = Ring::build(&self.hosts, &self.config);
    }

    #[inline]
    fn pick(&mut self, cx: &PickCtx, _now: Instant) -> Option<EndpointId> {
        if self.ring.len() == 0 {
            return None;
        }
        let h = cx.hash.unwrap_or_else(|| next_u64(&mut self.rng));
        Some(self.ring.owners[self.ring.position(h)])
    }

    fn kind(&self) -> &'static str {
        "ring_hash"
    }
}

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
