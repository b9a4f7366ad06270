//! Ring hash (Ketama); consistent hashing with bounded loads, on the same ring, is in
//! `bounded_load.rs`.
//!
//! `RingHash` follows Envoy's `RING_HASH` (`ring_hash.proto`, `ring_hash_lb.cc`): the ring holds
//! `scale` points, `scale = min(ceil(min_w * minimum_ring_size) / min_w, maximum_ring_size)` for
//! normalized weights with minimum `min_w`, so the lightest host gets a whole number of points;
//! host `h` gets points hashed from `"{h}_{i}"` until the running total reaches `scale * w_h`.
//! A request goes to the first point at or after its hash, wrapping to the start. Points are
//! XXH64, seed 0. Removing one of N hosts moves only the keys that host owned (about 1/N).
//!

use serde::{Deserialize, Serialize};

use super::hash;
use super::{Balancer, HostSet, PickCtx};
use crate::endpoint::{Candidate, EndpointId};
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

pub(super) fn default_min() -> u64 {
    1024
}
pub(super) fn default_max() -> u64 {
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
pub(super) struct Ring {
    hashes: Vec<u64>,
    pub(super) owners: Vec<EndpointId>,
    /// `index[k]` = first position whose hash's top `bits` bits are >= k; `2^bits + 1` entries.
    index: Vec<u32>,
    bits: u32,
}

impl Ring {
    pub(super) fn build(hosts: &HostSet, config: &RingHashConfig) -> Ring {
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
    pub(super) fn position(&self, h: u64) -> usize {
        let k = (h >> (64 - self.bits)) as usize;
        let (lo, hi) = (self.index[k] as usize, self.index[k + 1] as usize);
        let p = lo + self.hashes[lo..hi].partition_point(|&x| x < h);
        if p == self.hashes.len() { 0 } else { p }
    }

    pub(super) fn len(&self) -> usize {
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
