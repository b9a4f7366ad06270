//! Random; weighted random is in `weighted_random.rs`.
//!
//! `Random` is Envoy's `RANDOM` with equal weights: one uniform draw per pick. Envoy's docs note
//! it beats round robin when no health checking is configured, because a failed host's successor
//! gets no extra share.

use super::{Balancer, HostSet, PickCtx};
use crate::endpoint::{Candidate, EndpointId};
use crate::seed::{Rng, Seed, below};
use crate::time::Instant;

/// Uniform random over the host set.
#[derive(Debug)]
pub struct Random {
    hosts: HostSet,
    rng: Rng,
}

impl Random {
    /// A balancer with an empty host set.
    pub fn new(seed: Seed) -> Self {
        Random {
            hosts: HostSet::default(),
            rng: seed.rng(),
        }
    }
}

impl Balancer for Random {
    fn set_endpoints(&mut self, endpoints: &[Candidate], _now: Instant) {
        self.hosts.update(endpoints);
    }

    #[inline]
    fn pick(&mut self, _cx: &PickCtx, _now: Instant) -> Option<EndpointId> {
        if self.hosts.is_empty() {
            return None;
        }
        let i = below(&mut self.rng, self.hosts.len() as u32);
        Some(self.hosts.hosts[i as usize].id)
    }

    fn kind(&self) -> &'static str {
        "random"
    }
}
