//! Weighted random: a draw in proportion to weight, by binary search over the cumulative
//! weights (Envoy's `RANDOM` with weights). With weights proportional to capacity every server
//! sees the same utilization.

use super::{Balancer, HostSet, PickCtx};
use crate::endpoint::{Candidate, EndpointId};
use crate::seed::{Rng, Seed, next_u64};
use crate::time::Instant;

/// Random in proportion to weight.
#[derive(Debug)]
pub struct WeightedRandom {
    hosts: HostSet,
    /// `cumulative[i]` = sum of weights of hosts `0..=i`.
    cumulative: Vec<u64>,
    rng: Rng,
}

impl WeightedRandom {
    /// A balancer with an empty host set.
    pub fn new(seed: Seed) -> Self {
        WeightedRandom {
            hosts: HostSet::default(),
            cumulative: Vec::new(),
            rng: seed.rng(),
        }
    }
}

impl Balancer for WeightedRandom {
    fn set_endpoints(&mut self, endpoints: &[Candidate], _now: Instant) {
        self.hosts.update(endpoints);
        self.cumulative.clear();
        let mut sum = 0u64;
        for c in &self.hosts.hosts {
            sum += u64::from(c.weight);
            self.cumulative.push(sum);
        }
    }

    #[inline]
    fn pick(&mut self, _cx: &PickCtx, _now: Instant) -> Option<EndpointId> {
        let total = *self.cumulative.last()?;
        // Multiply-shift maps a 64-bit draw onto 0..total; bias is below total / 2^64.
        let r = ((u128::from(next_u64(&mut self.rng)) * u128::from(total)) >> 64) as u64;
        let i = self.cumulative.partition_point(|&c| c <= r);
        Some(self.hosts.hosts[i].id)
    }

    fn kind(&self) -> &'static str {
        "weighted_random"
    }
}
