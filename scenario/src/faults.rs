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
    /// `service` (every instance) or `service/index`.
    pub target: String,
    /// What happens.
    pub kind: FaultKind,
    /// `slowdown`: the service-time multiplier, > 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub factor: Option<f64>,
    /// `errors` (required) and `fast_fail` (default 1): the share of requests affected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<Probability>,
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
}

impl FaultKind {
    /// The name used in files and reports.
    pub fn name(self) -> &'static str {
        match self {
            FaultKind::Crash => "crash",
            FaultKind::Slowdown => "slowdown",
            FaultKind::Errors => "errors",
            FaultKind::FastFail => "fast_fail",
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
}

impl Default for FaultState {
    fn default() -> Self {
        FaultState {
            down: false,
            slowdown: 1.0,
            error_rate: 0.0,
            fast_fail: 0.0,
        }
    }
}

impl FaultState {
    /// The state under `effects` (in any order: the result does not depend on it).
    pub fn of<'a>(effects: impl IntoIterator<Item = &'a Effect>) -> Self {
        let mut s = FaultState::default();
        for e in effects {
            match *e {
                Effect::Crash => s.down = true,
                Effect::Slowdown(f) => s.slowdown *= f,
                Effect::Errors(r) => s.error_rate = s.error_rate.max(r),
                Effect::FastFail(r) => s.fast_fail = s.fast_fail.max(r),
            }
        }
        s
    }
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
                    (service.to_owned(), i, FaultState::of(on.map(|f| &f.effect)))
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

    #[test]
    fn effects_compose() {
        let s = FaultState::of(&[
            Effect::Slowdown(2.0),
            Effect::Errors(0.1),
            Effect::Slowdown(3.0),
            Effect::Errors(0.3),
            Effect::FastFail(0.5),
        ]);
        assert_eq!(s.slowdown, 6.0);
        assert_eq!(s.error_rate, 0.3);
        assert_eq!(s.fast_fail, 0.5);
        assert!(!s.down);
        assert!(FaultState::of(&[Effect::Crash]).down);
        assert_eq!(FaultState::of(&[]), FaultState::default());
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
