//! One client's view of a cluster's membership, changed by discovery updates.
//!
//! Discovery (EDS, DNS, a Kubernetes endpoints watch) tells each client proxy which endpoints
//! exist and their weight, priority, zone and health. Each client holds its own [`View`], so a
//! driver can deliver the same change to different clients at different times (control-plane
//! propagation delay) and study stale views. Changes follow tower's `Change::Insert/Remove` and
//! Envoy's per-host updates; an endpoint id is never reused for another endpoint.

use serde::{Deserialize, Serialize};

use crate::endpoint::{EndpointId, EndpointMeta, Health};
use crate::time::Instant;

/// One membership change.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "change", rename_all = "snake_case")]
pub enum Change {
    /// The endpoint joins (or, if present, is replaced by this metadata).
    Add {
        /// Its id.
        endpoint: EndpointId,
        /// Its weight, priority, zone and health.
        meta: EndpointMeta,
    },
    /// The endpoint leaves.
    Remove {
        /// Its id.
        endpoint: EndpointId,
    },
    /// New load-balancing weight.
    Weight {
        /// Its id.
        endpoint: EndpointId,
        /// The weight; 0 takes it out of every pick.
        weight: u32,
    },
    /// New discovery health (EDS `health_status`).
    Health {
        /// Its id.
        endpoint: EndpointId,
        /// The health.
        health: Health,
    },
    /// New priority level.
    Priority {
        /// Its id.
        endpoint: EndpointId,
        /// The level; 0 is the highest.
        priority: u32,
    },
    /// New zone.
    Zone {
        /// Its id.
        endpoint: EndpointId,
        /// The zone.
        zone: String,
    },
}

impl Change {
    /// The endpoint the change is about.
    pub fn endpoint(&self) -> EndpointId {
        match self {
            Change::Add { endpoint, .. }
            | Change::Remove { endpoint }
            | Change::Weight { endpoint, .. }
            | Change::Health { endpoint, .. }
            | Change::Priority { endpoint, .. }
            | Change::Zone { endpoint, .. } => *endpoint,
        }
    }
}

/// What applying a change did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Applied {
    /// A new endpoint.
    Added,
    /// An endpoint left.
    Removed,
    /// An endpoint's metadata changed.
    Updated,
    /// Nothing changed (an update or removal of an unknown endpoint, or a no-op update).
    Ignored,
}

/// An endpoint in the view.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    /// Its metadata.
    pub meta: EndpointMeta,
    /// When it joined or last turned healthy (slow start counts from here); `None` for the
    /// initial members, which Envoy does not slow-start.
    pub healthy_since: Option<Instant>,
}

/// The membership one client sees, indexed by [`EndpointId`].
#[derive(Clone, Debug, Default)]
pub struct View {
    members: Vec<Option<Member>>,
    len: usize,
}

impl View {
    /// A view of `initial` endpoints with ids `0..n`, not in slow start.
    pub fn new(initial: &[EndpointMeta]) -> Self {
        View {
            members: initial
                .iter()
                .map(|m| {
                    Some(Member {
                        meta: m.clone(),
                        healthy_since: None,
                    })
                })
                .collect(),
            len: initial.len(),
        }
    }

    /// The member with this id, if present.
    #[inline]
    pub fn get(&self, ep: EndpointId) -> Option<&Member> {
        self.members.get(ep.index()).and_then(Option::as_ref)
    }

    /// Members present.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when no member is present.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// One past the largest id ever seen (for sizing per-endpoint vectors).
    pub fn id_bound(&self) -> usize {
        self.members.len()
    }

    /// Present members in id order.
    pub fn iter(&self) -> impl Iterator<Item = (EndpointId, &Member)> {
        self.members
            .iter()
            .enumerate()
            .filter_map(|(i, m)| m.as_ref().map(|m| (EndpointId(i as u32), m)))
    }

    /// Notes that `ep` turned healthy at `now` (an active health check passed), restarting its
    /// slow start. Unknown ids are ignored.
    pub fn mark_healthy(&mut self, ep: EndpointId, now: Instant) {
        if let Some(Some(m)) = self.members.get_mut(ep.index()) {
            m.healthy_since = Some(now);
        }
    }

    /// Applies one change at `now`.
    pub fn apply(&mut self, change: &Change, now: Instant) -> Applied {
        let ep = change.endpoint();
        if let Change::Add { meta, .. } = change {
            if self.members.len() <= ep.index() {
                self.members.resize(ep.index() + 1, None);
            }
            let slot = &mut self.members[ep.index()];
            return match slot {
                Some(m) if m.meta == *meta => Applied::Ignored,
                Some(m) => {
                    m.meta = meta.clone();
                    Applied::Updated
                }
                None => {
                    *slot = Some(Member {
                        meta: meta.clone(),
                        healthy_since: Some(now),
                    });
                    self.len += 1;
                    Applied::Added
                }
            };
        }
        let Some(Some(m)) = self.members.get_mut(ep.index()) else {
            return Applied::Ignored;
        };
        let before = m.meta.clone();
        match change {
            Change::Add { .. } => unreachable!("handled above"),
            Change::Remove { .. } => {
                self.members[ep.index()] = None;
                self.len -= 1;
                return Applied::Removed;
            }
            Change::Weight { weight, .. } => m.meta.weight = *weight,
            Change::Health { health, .. } => {
                if m.meta.health != Health::Healthy && *health == Health::Healthy {
                    m.healthy_since = Some(now);
                }
                m.meta.health = *health;
            }
            Change::Priority { priority, .. } => m.meta.priority = *priority,
            Change::Zone { zone, .. } => m.meta.zone.clone_from(zone),
        }
        if m.meta == before {
            Applied::Ignored
        } else {
            Applied::Updated
        }
    }
}
