//! Join the shortest queue: a full scan for the fewest active requests, ties broken uniformly
//! at random (Envoy's `FULL_SCAN` least-request mode, which samples ties by reservoir). It
//! counts only the requests this balancer dispatched, as one Envoy worker does.

use super::{ActiveCounts, Balancer, HostSet, PickCtx};
use crate::endpoint::{Candidate, EndpointId, Outcome};
use crate::seed::{Rng, Seed, below};
use crate::time::Instant;

/// Full scan for the fewest active requests, random tie-break.
#[derive(Debug)]
pub struct JoinShortestQueue {
    hosts: HostSet,
    active: ActiveCounts,
    rng: Rng,
}

impl JoinShortestQueue {
    /// A balancer with an empty host set.
    pub fn new(seed: Seed) -> Self {
        JoinShortestQueue {
            hosts: HostSet::default(),
            active: ActiveCounts::default(),
            rng: seed.rng(),
        }
    }
}

impl Balancer for JoinShortestQueue {
    fn set_endpoints(&mut self, endpoints: &[Candidate], _now: Instant) {
        self.hosts.update(endpoints);
        self.active.ensure(&self.hosts);
    }

    fn pick(&mut self, _cx: &PickCtx, _now: Instant) -> Option<EndpointId> {
        // Two passes: find the minimum and count its ties, then take a uniformly drawn tie.
        // One random draw per pick instead of one per tie (reservoir sampling).
        let active = &self.active;
        let (min, ties) = self.hosts.hosts.iter().map(|c| active.get(c.id)).fold(
            (u32::MAX, 0u32),
            |(m, t), a| match a.cmp(&m) {
                core::cmp::Ordering::Less => (a, 1),
                core::cmp::Ordering::Equal => (m, t + 1),
                core::cmp::Ordering::Greater => (m, t),
            },
        );
        if ties == 0 {
            return None;
        }
        let k = if ties == 1 {
            0
        } else {
            below(&mut self.rng, ties)
        };
        self.hosts
            .hosts
            .iter()
            .filter(|c| active.get(c.id) == min)
            .nth(k as usize)
            .map(|c| c.id)
    }

    fn on_dispatch(&mut self, ep: EndpointId, _now: Instant) {
        self.active.inc(ep);
    }

    fn on_complete(&mut self, ep: EndpointId, _sent: Instant, _o: Outcome, _now: Instant) {
        self.active.dec(ep);
    }

    fn kind(&self) -> &'static str {
        "join_shortest_queue"
    }
}
