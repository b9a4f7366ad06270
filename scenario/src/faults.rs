//! The fault timeline: what happens to which instances, and when. The simulator applies it in
//! virtual time, `meshbench serve` and `meshbench live` in real time, from the same plan.
//!
//! ```yaml
//! faults:
//!   - { at: 20s, until: 40s, target: backend/3, kind: slowdown, factor: 20 }
//!   - { at: 30s, until: 35s, target: backend/1, kind: crash }
//!   - { at: 10s, target: backend, kind: errors, rate: 0.2 }     # to the end of the run
//!   - { at: 50s, until: 55s, target: backend/2, kind: fast_fail }
//! ```
//!
//! Kinds (overlapping faults compose: slowdowns multiply, the highest error share wins):
//! * `crash`: the instance stops. New connections are refused, requests in service or queued
//!   are reset (clients see a local-origin failure: Envoy's connect failure / reset), and health
//!   checks fail with a connection error. At `until` it restarts empty.
//! * `slowdown` (`factor` > 0): requests that start service during the window take `factor`
//!   times as long.
//! * `errors` (`rate` in 0..=1): a served request fails with a 500 with probability `rate` (or the
//!   instance's own error rate, if higher).
//! * `fast_fail` (`rate`, default 1): that share of arriving requests is answered 503 at once,
//!   without queueing or service: the gray failure that attracts traffic under least-request.
//! * `cold_start` (`factor` > 1, `until` required): a cold instance (empty caches, a JIT not yet
//!   warm). A request starting service at time t of the window takes `factor` times as long at
//!   its start, decaying linearly to 1 at `until`.
//! * `capacity` (`concurrency` >= 1): the instance serves at most that many requests at once
//!   for the window (a noisy neighbour, a CPU limit); requests in service finish, the rest
//!   queue.
//! * `partition` (`from`: `zone:NAME` or a client population): the network between the two sides
//!   is cut. Requests and health checks from the `from` side to the target fail at once as
//!   connect failures (and, for two zones, from the target's side to `from`'s); the rest is
//!   untouched.
//! * `network` (`from`: `zone:NAME`; `delay` and/or `loss`): every message between the two
//!   zones (both directions, requests, responses and health checks) takes `delay` longer, and
//!   with probability `loss` is lost once and retransmitted by TCP after its minimum
//!   retransmission timeout (Linux's `TCP_RTO_MIN`, 200 ms).
//!
//! Targets: `service`, `service/index`, or `zone:NAME` (every instance of every service in the
//! zone: a zone outage is `{target: zone:a, kind: crash}`). For `network` the target is a zone.
//!
//! Flapping: `every: 10s` repeats the fault from `at` with that period, on for the first `duty`
//! share of each period (default 0.5), until `until` or the end of the run.

use mesh_core::Duration;
use serde::{Deserialize, Serialize};

use crate::units::Probability;

/// One entry of the fault timeline.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fault {
    /// When it starts, since the start of the run.
    pub at: Duration,
    /// When it ends; absent: at the end of the run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<Duration>,
    /// `service` (every instance), `service/index`, or `zone:NAME` (every instance in the zone).
    pub target: String,
    /// What happens.
    pub kind: FaultKind,
    /// `slowdown`: the service-time multiplier, > 0. `cold_start`: the multiplier at the start,
    /// > 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub factor: Option<f64>,
    /// `errors` (required) and `fast_fail` (default 1): the share of requests affected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<Probability>,
    /// `capacity`: the requests served at once during the window, >= 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<u32>,
    /// `partition` and `network`: the other side, `zone:NAME` or (`partition` only) a client
    /// population's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// `network`: the delay added to every message, each way.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay: Option<Duration>,
    /// `network`: the probability that a message is lost once (and retransmitted 200 ms later).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss: Option<Probability>,
    /// Flapping: the period with which the fault repeats from `at`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub every: Option<Duration>,
    /// Flapping: the share of each period the fault is on, in (0, 1). Default 0.5.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duty: Option<Probability>,
}

/// TCP's minimum retransmission timeout on Linux (`TCP_RTO_MIN`, 200 ms): what a lost message
/// costs under a `network` fault's `loss`.
pub const RETRANSMIT_NS: u64 = 200_000_000;

/// Most windows one flapping fault may expand to.
pub const MAX_FLAPS: u64 = 100_000;

impl Fault {
    /// The windows (ns since the start) in which the fault is on: one, or with `every` one per
    /// period up to `until` or `end_ns` (the end of the arrivals).
    pub fn windows(&self, end_ns: u64) -> Vec<(u64, u64)> {
        let from = self.at.as_nanos();
        let until = self.until.map_or(u64::MAX, Duration::as_nanos);
        let Some(every) = self.every.map(Duration::as_nanos).filter(|&e| e > 0) else {
            return vec![(from, until)];
        };
        let on = (every as f64 * self.duty.map_or(0.5, Probability::get)).round() as u64;
        let last = until.min(end_ns);
        let mut out = Vec::new();
        let mut t = from;
        while t < last && (out.len() as u64) < MAX_FLAPS {
            out.push((t, t.saturating_add(on).min(until)));
            t = t.saturating_add(every);
        }
        out
    }
}

/// What a fault does (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    /// The instance stops, and restarts empty at `until`.
    Crash,
    /// Service time x `factor`.
    Slowdown,
    /// 500s to a share `rate` of served requests.
    Errors,
    /// 503 at once to a share `rate` of arriving requests.
    FastFail,
    /// Service time x a factor decaying linearly from `factor` to 1 over the window.
    ColdStart,
    /// At most `concurrency` requests in service.
    Capacity,
    /// Connect failures between `from` and the target.
    Partition,
    /// Delay and loss between two zones.
    Network,
}

impl FaultKind {
    /// The name used in files and reports.
    pub fn name(self) -> &'static str {
        match self {
            FaultKind::Crash => "crash",
            FaultKind::Slowdown => "slowdown",
            FaultKind::Errors => "errors",
            FaultKind::FastFail => "fast_fail",
            FaultKind::ColdStart => "cold_start",
            FaultKind::Capacity => "capacity",
            FaultKind::Partition => "partition",
            FaultKind::Network => "network",
        }
    }
}

/// A fault resolved against the scenario: times in ns and a range of instance indices.
#[derive(Clone, Debug, PartialEq)]
pub struct PlannedFault {
    /// Start, ns since the start of the run.
    pub from_ns: u64,
    /// End, ns since the start of the run (`u64::MAX`: never).
    pub until_ns: u64,
    /// The service.
    pub service: String,
    /// Its instances affected.
    pub instances: std::ops::Range<u32>,
    /// The effect.
    pub effect: Effect,
}

/// A fault's effect with its parameter.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Effect {
    /// Stopped.
    Crash,
    /// Service time multiplier.
    Slowdown(f64),
    /// Share of served requests answered 500.
    Errors(f64),
    /// Share of arriving requests answered 503 at once.
    FastFail(f64),
    /// Service time multiplier at the window's start, decaying linearly to 1 at its end.
    ColdStart(f64),
    /// Requests served at once.
    Capacity(u32),
    /// Cut off from the proxies in these zones (bit z: zone index z) and of these client
    /// populations (bit c: the c-th client in name order).
    Cut {
        /// Zone bits.
        zones: u64,
        /// Client bits.
        clients: u64,
    },
    /// Messages to and from proxies in these zones (bits) take `delay_ns` longer and are lost
    /// once with probability `loss`.
    Network {
        /// Zone bits.
        zones: u64,
        /// Added delay, ns.
        delay_ns: u64,
        /// Loss probability per message.
        loss: f64,
    },
}

/// The combined state of one instance under the faults active on it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FaultState {
    /// Stopped.
    pub down: bool,
    /// Service-time multiplier from faults (1: none).
    pub slowdown: f64,
    /// Error share from faults (0: none); the instance uses the higher of this and its own.
    pub error_rate: f64,
    /// Share of arrivals answered 503 at once (0: none).
    pub fast_fail: f64,
    /// A cold start: (from ns, until ns, multiplier at `from`); multiplier 1: none.
    pub cold: (u64, u64, f64),
    /// Requests served at once, at most (`u32::MAX`: the instance's own concurrency).
    pub capacity: u32,
    /// Partitioned from proxies in these zones (bits).
    pub cut_zones: u64,
    /// Partitioned from proxies of these client populations (bits).
    pub cut_clients: u64,
    /// Messages to and from proxies in these zones (bits) are delayed and lossy.
    pub net_zones: u64,
    /// The added delay of those messages, ns.
    pub net_delay_ns: u64,
    /// Their loss probability.
    pub net_loss: f64,
}

impl Default for FaultState {
    fn default() -> Self {
        FaultState {
            down: false,
            slowdown: 1.0,
            error_rate: 0.0,
            fast_fail: 0.0,
            cold: (0, 0, 1.0),
            capacity: u32::MAX,
            cut_zones: 0,
            cut_clients: 0,
            net_zones: 0,
            net_delay_ns: 0,
            net_loss: 0.0,
        }
    }
}

impl FaultState {
    /// The state under the active `faults` (in any order: the result does not depend on it,
    /// except that of two overlapping cold starts the later-starting one acts, and overlapping
    /// network faults on one instance take the largest delay and loss for every zone named).
    pub fn of<'a>(faults: impl IntoIterator<Item = &'a PlannedFault>) -> Self {
        let mut s = FaultState::default();
        for f in faults {
            match f.effect {
                Effect::Crash => s.down = true,
                Effect::Slowdown(x) => s.slowdown *= x,
                Effect::Errors(r) => s.error_rate = s.error_rate.max(r),
                Effect::FastFail(r) => s.fast_fail = s.fast_fail.max(r),
                Effect::ColdStart(x) => {
                    if s.cold.2 == 1.0 || f.from_ns >= s.cold.0 {
                        s.cold = (f.from_ns, f.until_ns, x);
                    }
                }
                Effect::Capacity(c) => s.capacity = s.capacity.min(c),
                Effect::Cut { zones, clients } => {
                    s.cut_zones |= zones;
                    s.cut_clients |= clients;
                }
                Effect::Network {
                    zones,
                    delay_ns,
                    loss,
                } => {
                    s.net_zones |= zones;
                    s.net_delay_ns = s.net_delay_ns.max(delay_ns);
                    s.net_loss = s.net_loss.max(loss);
                }
            }
        }
        s
    }

    /// The cold-start service-time multiplier at `now_ns` (1 outside a cold start).
    #[inline]
    pub fn cold_factor(&self, now_ns: u64) -> f64 {
        let (from, until, x) = self.cold;
        if x == 1.0 || now_ns >= until || until <= from {
            return 1.0;
        }
        let left = (until - now_ns.max(from)) as f64 / (until - from) as f64;
        1.0 + (x - 1.0) * left
    }

    /// Whether a proxy in zone `zone` of client population `client` (indices) is cut off
    /// from the instance.
    #[inline]
    pub fn cut_from(&self, zone: u16, client: u16) -> bool {
        (self.cut_zones | self.cut_clients) != 0
            && (bit(self.cut_zones, zone) || bit(self.cut_clients, client))
    }

    /// The delay (ns) a `network` fault adds to one message between the instance and a proxy
    /// in zone `zone`, given the message's uniform `u` for loss.
    #[inline]
    pub fn net_extra_ns(&self, zone: u16, u: impl FnOnce() -> f64) -> u64 {
        if !bit(self.net_zones, zone) {
            return 0;
        }
        let lost = self.net_loss > 0.0 && u() < self.net_loss;
        self.net_delay_ns + if lost { RETRANSMIT_NS } else { 0 }
    }
}

fn bit(mask: u64, i: u16) -> bool {
    i < 64 && mask & (1 << i) != 0
}

/// Splits `service/index` (or `service`).
pub(crate) fn parse_target(target: &str) -> (&str, Option<&str>) {
    match target.split_once('/') {
        Some((s, i)) => (s, Some(i)),
        None => (target, None),
    }
}

/// One change point of the timeline: from `at_ns` on, each listed instance (service, index) is
/// in the given state. Every instance some fault names is listed at every change point.
#[derive(Clone, Debug, PartialEq)]
pub struct FaultChange {
    /// When, ns since the start of the run.
    pub at_ns: u64,
    /// (service, instance index, state).
    pub states: Vec<(String, u32, FaultState)>,
}

/// The plan as the drivers play it: the state of every faulted instance at each change point.
pub fn fault_changes(plan: &[PlannedFault]) -> Vec<FaultChange> {
    let touched: std::collections::BTreeSet<(&str, u32)> = plan
        .iter()
        .flat_map(|f| f.instances.clone().map(|i| (f.service.as_str(), i)))
        .collect();
    change_points(plan)
        .into_iter()
        .map(|(at_ns, active)| FaultChange {
            at_ns,
            states: touched
                .iter()
                .map(|&(service, i)| {
                    let on = active
                        .iter()
                        .map(|&k| &plan[k])
                        .filter(|f| f.service == service && f.instances.contains(&i));
                    (service.to_owned(), i, FaultState::of(on))
                })
                .collect(),
        })
        .collect()
}

/// The times at which any instance's state changes, in order, each with the faults active from
/// then on (indices into `plan`). Ties between an end and a start at the same instant resolve
/// to the state after both.
fn change_points(plan: &[PlannedFault]) -> Vec<(u64, Vec<usize>)> {
    let mut times: Vec<u64> = plan
        .iter()
        .flat_map(|f| [f.from_ns, f.until_ns])
        .filter(|&t| t != u64::MAX)
        .collect();
    times.sort_unstable();
    times.dedup();
    times
        .into_iter()
        .map(|t| {
            let active = plan
                .iter()
                .enumerate()
                .filter(|(_, f)| f.from_ns <= t && t < f.until_ns)
                .map(|(i, _)| i)
                .collect();
            (t, active)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn planned(effect: Effect, from_ns: u64, until_ns: u64) -> PlannedFault {
        PlannedFault {
            from_ns,
            until_ns,
            service: "b".into(),
            instances: 0..1,
            effect,
        }
    }

    #[test]
    fn effects_compose() {
        let all = |e: &[Effect]| -> Vec<PlannedFault> {
            e.iter().map(|&e| planned(e, 0, u64::MAX)).collect()
        };
        let s = FaultState::of(&all(&[
            Effect::Slowdown(2.0),
            Effect::Errors(0.1),
            Effect::Slowdown(3.0),
            Effect::Errors(0.3),
            Effect::FastFail(0.5),
            Effect::Capacity(4),
            Effect::Capacity(2),
        ]));
        assert_eq!(s.slowdown, 6.0);
        assert_eq!(s.error_rate, 0.3);
        assert_eq!(s.fast_fail, 0.5);
        assert_eq!(s.capacity, 2);
        assert!(!s.down);
        assert!(FaultState::of(&all(&[Effect::Crash])).down);
        assert_eq!(FaultState::of(&all(&[])), FaultState::default());
        let cut = FaultState::of(&all(&[Effect::Cut {
            zones: 0b10,
            clients: 0b100,
        }]));
        assert!(cut.cut_from(1, 0) && cut.cut_from(0, 2) && !cut.cut_from(0, 0));
        assert!(!FaultState::default().cut_from(0, 0));
    }

    #[test]
    fn a_cold_start_decays_linearly_to_one() {
        let s = FaultState::of(&[planned(Effect::ColdStart(5.0), 1000, 2000)]);
        assert_eq!(s.cold_factor(0), 5.0);
        assert_eq!(s.cold_factor(1000), 5.0);
        assert_eq!(s.cold_factor(1500), 3.0);
        assert_eq!(s.cold_factor(2000), 1.0);
        assert_eq!(FaultState::default().cold_factor(1500), 1.0);
    }

    #[test]
    fn flapping_repeats_at_the_period_and_duty_cycle() {
        let f: Fault = yaml_serde::from_str(
            "{ at: 1s, until: 5500ms, target: b, kind: crash, every: 2s, duty: 0.25 }",
        )
        .unwrap();
        let s = 1_000_000_000;
        assert_eq!(
            f.windows(u64::MAX),
            vec![
                (s, s + s / 2),
                (3 * s, 3 * s + s / 2),
                (5 * s, 5 * s + s / 2)
            ]
        );
        // Without `until`, to the end of the run.
        let f: Fault =
            yaml_serde::from_str("{ at: 0s, target: b, kind: crash, every: 1s }").unwrap();
        assert_eq!(f.windows(3 * s).len(), 3);
        assert_eq!(f.windows(3 * s)[2], (2 * s, 2 * s + s / 2));
    }

    #[test]
    fn change_points_list_active_faults() {
        let f = |from_ns, until_ns| PlannedFault {
            from_ns,
            until_ns,
            service: "b".into(),
            instances: 0..1,
            effect: Effect::Crash,
        };
        let plan = [f(10, 20), f(20, u64::MAX), f(15, 20)];
        assert_eq!(
            change_points(&plan),
            vec![(10, vec![0]), (15, vec![0, 2]), (20, vec![1])]
        );
        let changes = fault_changes(&plan);
        assert_eq!(changes.len(), 3);
        assert!(changes.iter().all(|c| c.states.len() == 1));
        assert!(changes[2].states[0].2.down);
    }
}
