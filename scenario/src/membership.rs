//! The membership timeline: instances that join, leave, drain, restart and change weight while
//! a run goes on, and how each client proxy learns of it.
//!
//! ```yaml
//! membership:
//!   propagation: { dist: exponential, mean: 2s }   # control plane to each proxy; default 0
//!   changes:
//!     - { at: 30s, target: backend, change: scale, to: 14, cold: { factor: 4, for: 20s } }
//!     - { at: 60s, target: backend, change: scale, to: 8, drain: 5s }
//!     - { at: 40s, target: backend/3, change: remove }
//!     - { at: 50s, target: backend/2, change: weight, weight: 5 }
//!     - { at: 90s, target: backend, change: rolling_restart, batch: 2, drain: 5s, down: 2s, pause: 10s }
//! ```
//!
//! Two sides of every change:
//!
//! * **The instances** act at `at` exactly. A new instance starts serving. A leaving instance
//!   stops gracefully: it refuses new requests (its callers see connect failures) and finishes
//!   those it has.
//! * **Each proxy's view** learns of the change after its own propagation delay, drawn per
//!   proxy per change (a common random number of both, so every strategy and both drivers draw
//!   the same), and in the order the changes were made, as one xDS stream delivers them.
//!   Until then the proxy acts on its stale view: it does not know a new instance, and it still
//!   sends to one that is gone.
//!
//! Changes (`target` is `service` or `service/index`):
//!
//! * `scale` (`to`): up, new instances with fresh indices join (each a replica of instance
//!   `index % instances`: its weight, zone, priority, service time, concurrency). Down, the
//!   highest-indexed present instances leave.
//! * `remove`: the instance leaves.
//! * `weight` (`weight`): the instances' load-balancing weight changes (0: no new traffic).
//! * `rolling_restart`: the instances restart `batch` at a time (default 1). Each batch is
//!   announced draining, stops `drain` later, starts again `down` later, and is announced
//!   healthy. The next batch begins `pause` after that.
//!
//! Leaving (`scale` down, `remove`): with `drain` (default 0) the instance is announced
//! draining (Envoy's `DRAINING`: no new requests, in-flight ones finish), stops `drain` later
//! and is announced removed then; without it, it is announced removed and stops at once.
//! `cold: {factor, for}` on `scale` (up) and `rolling_restart` gives each started instance a cold
//! start (see the `cold_start` fault). Slow start, where a strategy configures it, ramps a proxy's
//! share to a new or returning instance from the moment the proxy learns of it.

use mesh_core::discovery::Change;
use mesh_core::{Duration, EndpointId, Health};
use serde::{Deserialize, Serialize};

use crate::Dist;

/// The `membership:` section.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Membership {
    /// The control plane's delay to each proxy, drawn per proxy per change. Default 0.
    #[serde(default = "zero")]
    pub propagation: Dist,
    /// The changes, in any order.
    pub changes: Vec<MembershipChange>,
}

fn zero() -> Dist {
    Dist::ZERO
}

/// One entry of the membership timeline.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MembershipChange {
    /// When, since the start of the run.
    pub at: Duration,
    /// `service` or `service/index`.
    pub target: String,
    /// What changes.
    pub change: ChangeKind,
    /// `scale`: the number of instances after it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<u32>,
    /// `weight`: the new weight.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<u32>,
    /// Leaving and restarting: from the draining announcement to the stop. Default 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drain: Option<Duration>,
    /// `rolling_restart`: instances restarted together. Default 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch: Option<u32>,
    /// `rolling_restart`: how long an instance is stopped. Default 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub down: Option<Duration>,
    /// `rolling_restart`: from one batch announced healthy to the next announced draining.
    /// Default 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pause: Option<Duration>,
    /// `scale` (up) and `rolling_restart`: a cold start for each instance that starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cold: Option<Cold>,
}

/// A cold start after an instance starts: service time x `factor`, easing linearly to 1 over
/// `for`.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cold {
    /// The multiplier at the start, > 1.
    pub factor: f64,
    /// How long until warm.
    #[serde(rename = "for")]
    pub lasts: Duration,
}

/// What a membership change does (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    /// To `to` instances.
    Scale,
    /// The instance leaves.
    Remove,
    /// New weight.
    Weight,
    /// Restart in batches.
    RollingRestart,
}

/// A change to the proxies' views, before propagation.
#[derive(Clone, Debug, PartialEq)]
pub struct Announcement {
    /// When the control plane makes it, ns since the start.
    pub at_ns: u64,
    /// Its number in the timeline (keys its propagation draws).
    pub id: u64,
    /// The service whose proxies hear of it.
    pub service: String,
    /// The change, by instance index.
    pub change: Change,
}

/// An instance starting or stopping.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Presence {
    /// When, ns since the start.
    pub at_ns: u64,
    /// The service.
    pub service: String,
    /// The instance.
    pub instance: u32,
    /// Serving from then on.
    pub present: bool,
}

/// The timeline flattened: what the instances do and what the views hear, in time order, and
/// the cold starts it causes.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MembershipPlan {
    /// Starts and stops, by time.
    pub presence: Vec<Presence>,
    /// View changes, by time (then timeline order).
    pub announcements: Vec<Announcement>,
    /// Cold starts: (service, instance, from ns, until ns, factor).
    pub cold: Vec<(String, u32, u64, u64, f64)>,
    /// Instances per service over the whole run (those present at the start first).
    pub slots: std::collections::BTreeMap<String, u32>,
}

/// Most instance slots a membership timeline may create in all.
pub const MAX_SLOTS: u32 = 100_000;

impl MembershipPlan {
    /// Flattens `m` for `services` (name -> initial instances, and each instance's metadata
    /// by index for replicas). Changes of one service act in time order (then file order).
    pub fn of(
        m: &Membership,
        initial: &std::collections::BTreeMap<String, u32>,
        meta: impl Fn(&str, u32) -> mesh_core::EndpointMeta,
    ) -> MembershipPlan {
        let mut plan = MembershipPlan {
            slots: initial.clone(),
            ..MembershipPlan::default()
        };
        // Present instances per service, in index order.
        let mut present: std::collections::BTreeMap<String, Vec<u32>> = initial
            .iter()
            .map(|(s, &n)| (s.clone(), (0..n).collect()))
            .collect();
        let mut order: Vec<usize> = (0..m.changes.len()).collect();
        order.sort_by_key(|&i| m.changes[i].at);
        for i in order {
            let c = &m.changes[i];
            let (service, index) = crate::faults::parse_target(&c.target);
            let Some(&n0) = initial.get(service) else {
                continue;
            };
            let at = c.at.as_nanos();
            let drain = c.drain.map_or(0, Duration::as_nanos);
            let here = present.entry(service.to_owned()).or_default();
            let targets: Vec<u32> = match index.and_then(|x| x.parse::<u32>().ok()) {
                Some(x) => here.iter().copied().filter(|&y| y == x).collect(),
                None => here.clone(),
            };
            match c.change {
                ChangeKind::Scale => {
                    let to = c.to.unwrap_or(0) as usize;
                    if to > here.len() {
                        for _ in here.len()..to {
                            let slots = plan.slots.get_mut(service).expect("known service");
                            let x = *slots;
                            *slots += 1;
                            here.push(x);
                            let meta = meta(service, x % n0.max(1));
                            plan.presence.push(Presence {
                                at_ns: at,
                                service: service.to_owned(),
                                instance: x,
                                present: true,
                            });
                            if let Some(cold) = c.cold {
                                plan.cold.push((
                                    service.to_owned(),
                                    x,
                                    at,
                                    at + cold.lasts.as_nanos(),
                                    cold.factor,
                                ));
                            }
                            plan.announce(
                                at,
                                service,
                                Change::Add {
                                    endpoint: EndpointId(x),
                                    meta,
                                },
                            );
                        }
                    } else {
                        let gone: Vec<u32> = here.drain(to..).collect();
                        for x in gone {
                            plan.leave(at, drain, service, x);
                        }
                    }
                }
                ChangeKind::Remove => {
                    here.retain(|x| !targets.contains(x));
                    for x in targets {
                        plan.leave(at, drain, service, x);
                    }
                }
                ChangeKind::Weight => {
                    for x in targets {
                        let change = Change::Weight {
                            endpoint: EndpointId(x),
                            weight: c.weight.unwrap_or(1),
                        };
                        plan.announce(at, service, change);
                    }
                }
                ChangeKind::RollingRestart => {
                    let batch = c.batch.unwrap_or(1).max(1) as usize;
                    let down = c.down.map_or(0, Duration::as_nanos);
                    let pause = c.pause.map_or(0, Duration::as_nanos);
                    let mut t = at;
                    for group in targets.chunks(batch) {
                        for &x in group {
                            let endpoint = EndpointId(x);
                            let health = Health::Draining;
                            plan.announce(t, service, Change::Health { endpoint, health });
                            let start = t + drain + down;
                            for (when, present) in [(t + drain, false), (start, true)] {
                                plan.presence.push(Presence {
                                    at_ns: when,
                                    service: service.to_owned(),
                                    instance: x,
                                    present,
                                });
                            }
                            let health = meta(service, x).health;
                            plan.announce(start, service, Change::Health { endpoint, health });
                            if let Some(cold) = c.cold {
                                let until = start + cold.lasts.as_nanos();
                                plan.cold
                                    .push((service.to_owned(), x, start, until, cold.factor));
                            }
                        }
                        t += drain + down + pause;
                    }
                }
            }
        }
        plan.presence.sort_by_key(|p| p.at_ns);
        plan.announcements.sort_by_key(|a| (a.at_ns, a.id));
        plan
    }

    fn announce(&mut self, at_ns: u64, service: &str, change: Change) {
        let id = self.announcements.len() as u64;
        self.announcements.push(Announcement {
            at_ns,
            id,
            service: service.to_owned(),
            change,
        });
    }

    /// Instance `x` leaves at `at`: announced draining first when `drain` > 0, then removed
    /// and stopped `drain` later.
    fn leave(&mut self, at: u64, drain: u64, service: &str, x: u32) {
        let endpoint = EndpointId(x);
        if drain > 0 {
            let health = Health::Draining;
            self.announce(at, service, Change::Health { endpoint, health });
        }
        self.announce(at + drain, service, Change::Remove { endpoint });
        self.presence.push(Presence {
            at_ns: at + drain,
            service: service.to_owned(),
            instance: x,
            present: false,
        });
    }

    /// The changes proxy `proxy` (global index) of a population calling `service` hears, with
    /// when: each announcement's time plus the proxy's propagation draw, never before the one
    /// heard before it.
    pub fn deliveries(
        &self,
        service: &str,
        propagation: &Dist,
        run_seed: u64,
        proxy: u32,
    ) -> Vec<(u64, Change)> {
        let mut last = 0u64;
        self.announcements
            .iter()
            .filter(|a| a.service == service)
            .map(|a| {
                let u = crate::crn_uniform(run_seed, a.id, proxy, crate::Lane::Propagation);
                let delay = propagation.quantile_ns(u).round() as u64;
                last = last.max(a.at_ns.saturating_add(delay));
                (last, a.change.clone())
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(yaml: &str) -> MembershipPlan {
        let m: Membership = yaml_serde::from_str(yaml).unwrap();
        let initial = [("b".to_owned(), 4u32)].into_iter().collect();
        MembershipPlan::of(&m, &initial, |_, _| mesh_core::EndpointMeta::default())
    }

    #[test]
    fn scaling_takes_fresh_indices_up_and_the_highest_down() {
        let p = plan(
            "changes: [ { at: 1s, target: b, change: scale, to: 6 }, { at: 2s, target: b, change: scale, to: 3, drain: 1s } ]",
        );
        assert_eq!(p.slots["b"], 6);
        let started: Vec<u32> = p
            .presence
            .iter()
            .filter(|x| x.present)
            .map(|x| x.instance)
            .collect();
        assert_eq!(started, [4, 5]);
        let stopped: Vec<(u64, u32)> = p
            .presence
            .iter()
            .filter(|x| !x.present)
            .map(|x| (x.at_ns, x.instance))
            .collect();
        assert_eq!(
            stopped,
            [(3_000_000_000, 3), (3_000_000_000, 4), (3_000_000_000, 5)]
        );
        // Draining is announced at 2 s, removal at 3 s.
        let drains = p
            .announcements
            .iter()
            .filter(|a| matches!(a.change, Change::Health { .. }))
            .count();
        assert_eq!(drains, 3);
    }

    #[test]
    fn a_rolling_restart_goes_batch_by_batch() {
        let p = plan(
            "changes: [ { at: 10s, target: b, change: rolling_restart, batch: 2, drain: 1s, down: 2s, pause: 3s } ]",
        );
        let s = 1_000_000_000u64;
        let stops: Vec<u64> = p
            .presence
            .iter()
            .filter(|x| !x.present)
            .map(|x| x.at_ns)
            .collect();
        assert_eq!(stops, [11 * s, 11 * s, 17 * s, 17 * s]);
        let starts: Vec<u64> = p
            .presence
            .iter()
            .filter(|x| x.present)
            .map(|x| x.at_ns)
            .collect();
        assert_eq!(starts, [13 * s, 13 * s, 19 * s, 19 * s]);
    }

    #[test]
    fn deliveries_keep_the_order_of_the_changes() {
        let p = plan(
            "changes: [ { at: 1s, target: b/0, change: weight, weight: 2 }, { at: 1100ms, target: b/0, change: weight, weight: 3 } ]",
        );
        let prop: Dist = yaml_serde::from_str("{ dist: uniform, min: 0s, max: 1s }").unwrap();
        for proxy in 0..50 {
            let d = p.deliveries("b", &prop, 7, proxy);
            assert_eq!(d.len(), 2);
            assert!(d[0].0 <= d[1].0 && d[0].0 >= 1_000_000_000);
            assert!(matches!(d[1].1, Change::Weight { weight: 3, .. }));
        }
    }
}
