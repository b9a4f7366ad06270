//! # The meshbench scenario format
//!
//! A scenario file (YAML) describes a topology, a workload and the strategies to compare:
//!
//! ```yaml
//! name: one-slow-backend
//! seed: 42
//! duration: 30s            # or `requests: 100000`
//! warmup: 5s
//! replications: 3
//! strategies:              # compared on identical arrivals and service times
//!   round_robin: { balancer: { kind: round_robin } }
//!   p2c:         { balancer: { kind: least_request } }
//! policy:                  # defaults for every strategy; a strategy overrides any field
//!   timeout: 1s
//! network:
//!   latency: { dist: constant, value: 100us }   # each way, proxy <-> instance
//! services:
//!   backend:
//!     instances: 10
//!     concurrency: 4
//!     service_time: { dist: exponential, mean: 5ms }
//!     overrides: { 3: { slowdown: 10 } }
//! clients:
//!   load:
//!     proxies: 20
//!     target: backend
//!     arrival: { process: poisson, rate: 4000/s }
//! faults:                   # the fault timeline (see [`Fault`])
//!   - { at: 20s, until: 40s, target: backend/3, kind: crash }
//! ```
//!
//! [`load`] parses, loads referenced files, merges each strategy over `policy`, and checks every
//! range before anything runs. Errors ([`ScenarioError`]) name the file, line, column and field
//! path, say what was expected, and suggest the nearest valid name for a misspelled one.
//! Durations and rates carry units (`250us`, `8000/s`); unknown fields are errors.

// Scenario errors are built once per bad file, never on a hot path; boxing them buys nothing.
#![allow(clippy::result_large_err)]

pub mod budget;
mod dist;
mod error;
mod faults;
pub mod graph;
pub mod isotope;
mod locate;
pub mod membership;
pub mod shape;
pub mod thresholds;
mod topology;
pub mod trace;
mod units;
pub mod workload;

use std::collections::BTreeMap;
use std::path::Path;

use mesh_core::{ClusterConfig, Duration};
use serde::{Deserialize, Serialize};

pub use dist::{Component, Dist, normal_quantile};
pub use error::{ScenarioError, nearest, suggest_from_message};
pub use faults::{
    Effect, Fault, FaultChange, FaultKind, FaultState, MAX_FLAPS, PlannedFault, RETRANSMIT_NS,
    fault_changes,
};
pub use topology::{
    Client, InstanceRange, InstanceSpec, Keys, Network, Override, Placement, RequestTemplate,
    Service, StartHealth, Zone, ZonePair, is_reserved_header,
};
pub use units::{BitRate, ByteSize, Probability, Rate};

/// A scenario as written.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Names the report directory (`reports/<name>/`): 1 to 100 of `A-Z a-z 0-9 . _ -`, not
    /// starting with `.`.
    pub name: String,
    /// Free text for the report.
    #[serde(default)]
    pub description: String,
    /// The run seed. Default 1.
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// Simulated time during which requests arrive. One of `duration` and `requests` is needed.
    #[serde(default)]
    pub duration: Option<Duration>,
    /// Requests to send (over all clients), instead of a duration.
    #[serde(default)]
    pub requests: Option<u64>,
    /// Requests arriving before this are not measured. Default 0.
    #[serde(default)]
    pub warmup: Duration,
    /// Independent runs per strategy, for confidence intervals. Default 1.
    #[serde(default = "one")]
    pub replications: u32,
    /// Time-series sample period. Default 1 s.
    #[serde(default = "default_sample_period")]
    pub sample_period: Duration,
    /// The strategies compared, in file order: name -> policy overrides.
    pub strategies: yaml_serde::Mapping,
    /// Policy defaults every strategy starts from (a `mesh_core::ClusterConfig`).
    #[serde(default)]
    pub policy: yaml_serde::Value,
    /// Zones by name (see [`Network`]). Default none: every instance and proxy in one place.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub zones: BTreeMap<String, Zone>,
    /// Network latency, per zone pair when there are zones.
    #[serde(default)]
    pub network: Network,
    /// Services by name.
    pub services: BTreeMap<String, Service>,
    /// Client populations by name.
    pub clients: BTreeMap<String, Client>,
    /// The mesh: sidecars and what they cost (see [`graph::Mesh`]). Default: sidecars that
    /// cost nothing.
    #[serde(default)]
    pub mesh: graph::Mesh,
    /// The fault timeline (see [`Fault`]). Default none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub faults: Vec<Fault>,
    /// The membership timeline (see [`membership`]). Default none: the instances of `services`
    /// for the whole run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub membership: Option<membership::Membership>,
    /// Pass/fail conditions on the results, checked at the end of `run` and `live` and by
    /// `meshbench check`: `all` or a strategy name -> thresholds such as `p99 < 20ms` (see
    /// [`thresholds`]). Default none.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub thresholds: BTreeMap<String, Vec<String>>,
    /// A parameter sweep: field path -> list of values; every combination (cartesian product,
    /// first path slowest) is run as its own point.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sweep: Option<yaml_serde::Mapping>,
}

fn default_seed() -> u64 {
    1
}
fn one() -> u32 {
    1
}
fn default_sample_period() -> Duration {
    Duration::from_secs(1)
}

/// How requests arrive (open loop). In files: `{process: poisson, rate: 4000/s}`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(
    tag = "process",
    rename_all = "snake_case",
    deny_unknown_fields,
    try_from = "ArrivalSpec"
)]
pub enum Arrival {
    /// Exponential gaps; with `steps`, a Poisson process whose rate changes at given times
    /// (piecewise constant, exact by the time-change of a unit-rate process).
    Poisson {
        /// Mean rate (until the first step).
        rate: Rate,
        /// From each step's time on, its rate; times strictly increasing. Empty: constant rate.
        steps: Vec<RateStep>,
    },
    /// Equal gaps (each proxy starts at a random phase).
    Constant {
        /// Rate.
        rate: Rate,
    },
    /// Poisson at `rate` during `on`, silent during `off`, repeating.
    OnOff {
        /// Rate while on.
        rate: Rate,
        /// Length of an on period.
        on: Duration,
        /// Length of an off period.
        off: Duration,
    },
    /// A Markov-modulated Poisson process: Poisson at the current state's rate; the population
    /// stays in a state for an exponential time of that state's `mean` and then moves to the next
    /// state (cyclically). All the population's proxies follow one chain, so a burst is the
    /// population's, drawn from the run's seed.
    Mmpp {
        /// The states, >= 2.
        states: Vec<MmppState>,
    },
    /// Closed loop: `users` virtual users, each sending a request, waiting for it to finish
    /// (success or failure, after any retries), thinking for a `think` time, and sending the
    /// next. The users are shared among the population's proxies as evenly as possible, and each
    /// starts with a think time. Its rate follows from the system: `users / (think + response
    /// time)` (the interactive response-time law).
    Closed {
        /// Virtual users of the whole population, >= 1.
        users: u32,
        /// Think time between a request's end and the user's next request. Default 0.
        think: Dist,
    },
    /// Arrivals replayed from a CSV trace of timestamps (see [`trace`]).
    Trace {
        /// The CSV file, relative to the scenario's directory (or in a `--data-dir`).
        file: String,
        /// The time column's header; default the first column.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        column: Option<String>,
        /// A column of request keys; default none.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        key_column: Option<String>,
        /// Every time is multiplied by this, > 0 (0.5 replays twice as fast). Default 1.
        time_scale: f64,
        /// The arrivals, read when the scenario loads.
        #[serde(skip)]
        data: trace::TraceData,
    },
}

/// A change of an arrival rate: from `at` on, `rate`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateStep {
    /// When, since the start of the run.
    pub at: Duration,
    /// The rate from then on.
    pub rate: Rate,
    /// Reach `rate` by a linear ramp from the previous step's rate (the base `rate` for the
    /// first step), starting at that step's time (0 for the first), instead of jumping to it at
    /// `at`. Default false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ramp: bool,
}

/// One state of a Markov-modulated Poisson process.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MmppState {
    /// The arrival rate in this state.
    pub rate: Rate,
    /// The mean time spent in it (exponential), > 0.
    pub mean: Duration,
}

#[derive(Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
enum ProcessKind {
    Poisson,
    Mmpp,
    Constant,
    OnOff,
    Closed,
    Trace,
}

/// An arrival process as written (a plain struct, so field errors are exactly located).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ArrivalSpec {
    process: ProcessKind,
    rate: Option<Rate>,
    on: Option<Duration>,
    off: Option<Duration>,
    #[serde(default)]
    steps: Vec<RateStep>,
    users: Option<u32>,
    think: Option<Dist>,
    states: Option<Vec<MmppState>>,
    file: Option<String>,
    column: Option<String>,
    key_column: Option<String>,
    time_scale: Option<f64>,
}

impl TryFrom<ArrivalSpec> for Arrival {
    type Error = String;

    fn try_from(s: ArrivalSpec) -> Result<Self, String> {
        let timed = s.on.is_some() || s.off.is_some();
        let closed = s.users.is_some() || s.think.is_some();
        let traced = s.file.is_some()
            || s.column.is_some()
            || s.key_column.is_some()
            || s.time_scale.is_some();
        let open = matches!(
            s.process,
            ProcessKind::Poisson | ProcessKind::Constant | ProcessKind::OnOff
        );
        if s.states.is_some() != matches!(s.process, ProcessKind::Mmpp) {
            return Err(match s.process {
                ProcessKind::Mmpp => "`process: mmpp` needs `states` (for example [ {rate: 1000/s, mean: 10s}, {rate: 5000/s, mean: 2s} ])".into(),
                _ => "`states` belong to `process: mmpp`".into(),
            });
        }
        if let Some(states) = &s.states {
            if s.rate.is_some() || timed || !s.steps.is_empty() || closed || traced {
                return Err("`process: mmpp` takes only `states`: each state's `rate` and `mean` time in it".into());
            }
            if states.len() < 2 {
                return Err("`states` needs at least 2 states".into());
            }
            if let Some(st) = states.iter().find(|st| st.mean.is_zero()) {
                return Err(format!("a state's `mean` must be > 0, got {}", st.mean));
            }
            return Ok(Arrival::Mmpp {
                states: states.clone(),
            });
        }
        if open && closed {
            return Err("`users` and `think` belong to `process: closed`".into());
        }
        if open && traced {
            return Err(
                "`file`, `column`, `key_column` and `time_scale` belong to `process: trace`".into(),
            );
        }
        let rate = || {
            s.rate.ok_or_else(|| {
                "needs `rate` (for example 1000/s), or use `process: closed` (users and think time) or `process: trace` (a CSV of arrival times)".to_owned()
            })
        };
        if !open && (s.rate.is_some() || timed || !s.steps.is_empty()) {
            return Err(
                "`rate`, `steps`, `on` and `off` belong to the open-loop processes (poisson, constant, on_off)".into(),
            );
        }
        Ok(match s.process {
            ProcessKind::Mmpp => unreachable!("handled above"),
            ProcessKind::Closed if traced => {
                return Err(
                    "`file`, `column`, `key_column` and `time_scale` belong to `process: trace`"
                        .into(),
                );
            }
            ProcessKind::Trace if closed => {
                return Err("`users` and `think` belong to `process: closed`".into());
            }
            ProcessKind::Closed => {
                let users = s
                    .users
                    .ok_or("`process: closed` needs `users` (virtual users, for example 50)")?;
                if users == 0 {
                    return Err("`users` must be >= 1".into());
                }
                Arrival::Closed {
                    users,
                    think: s.think.unwrap_or(Dist::ZERO),
                }
            }
            ProcessKind::Trace => {
                let time_scale = s.time_scale.unwrap_or(1.0);
                if !(time_scale.is_finite() && time_scale > 0.0) {
                    return Err(format!("`time_scale` must be > 0, not {time_scale}"));
                }
                Arrival::Trace {
                    file: s
                        .file
                        .ok_or("`process: trace` needs `file` (a CSV of arrival times)")?,
                    column: s.column,
                    key_column: s.key_column,
                    time_scale,
                    data: trace::TraceData::default(),
                }
            }
            ProcessKind::Poisson | ProcessKind::Constant if timed => {
                return Err("`on` and `off` belong to `process: on_off`".into());
            }
            ProcessKind::Constant | ProcessKind::OnOff if !s.steps.is_empty() => {
                return Err("`steps` belong to `process: poisson`".into());
            }
            ProcessKind::Poisson => {
                for w in s.steps.windows(2) {
                    if w[1].at <= w[0].at {
                        return Err(format!(
                            "`steps` must be in increasing time: {} comes after {}",
                            w[1].at, w[0].at
                        ));
                    }
                }
                Arrival::Poisson {
                    rate: rate()?,
                    steps: s.steps,
                }
            }
            ProcessKind::Constant => Arrival::Constant { rate: rate()? },
            ProcessKind::OnOff => Arrival::OnOff {
                rate: rate()?,
                on: s
                    .on
                    .ok_or("`process: on_off` needs `on` (for example 10s)")?,
                off: s
                    .off
                    .ok_or("`process: on_off` needs `off` (for example 10s)")?,
            },
        })
    }
}

impl Arrival {
    /// The long-run mean rate, per second; with rate `steps` or MMPP states, the highest rate it
    /// reaches (what estimates of load and work must allow for).
    pub fn mean_rate(&self) -> f64 {
        match self {
            Arrival::Poisson { rate, steps } => steps
                .iter()
                .map(|s| s.rate.as_per_sec())
                .fold(rate.as_per_sec(), f64::max),
            Arrival::Constant { rate } => rate.as_per_sec(),
            Arrival::OnOff { rate, on, off } => {
                let on = on.as_secs_f64();
                rate.as_per_sec() * on / (on + off.as_secs_f64())
            }
            // At most a request per think time and millisecond of response per user: an
            // estimate for budgets (the real rate depends on the response times).
            Arrival::Closed { users, think } => f64::from(*users) / (think.mean_ns() / 1e9 + 1e-3),
            Arrival::Trace { data, .. } => data.mean_rate(),
            Arrival::Mmpp { states } => states
                .iter()
                .map(|s| s.rate.as_per_sec())
                .fold(0.0, f64::max),
        }
    }

    /// Whether arrivals wait for responses (`process: closed`).
    pub fn is_closed(&self) -> bool {
        matches!(self, Arrival::Closed { .. })
    }
}

/// One client proxy's arrival times, in nanoseconds since the start, from a stream of uniforms:
/// the simulator and the live load generator share it, so both see the same schedule.
#[derive(Clone, Debug)]
pub struct ArrivalClock {
    arrival: Arrival,
    rate_per_ns: f64,
    /// With rate steps: (from ns, this proxy's rate per ns then, its slope per ns^2 until the
    /// next segment), the base rate first at 0.
    segments: Vec<(u64, f64, f64)>,
    on_cursor: f64,
    started: bool,
    /// A trace: the next of its arrivals this proxy takes, and the proxies taking turns.
    trace_next: usize,
    trace_stride: usize,
    /// A Markov-modulated process: the chain, extended into `segments` as time goes on.
    chain: Option<Chain>,
}

/// The modulating chain of an MMPP: each state's rate (per ns, this proxy's share) and mean
/// holding time (ns), the chain's seed (the population's, so every proxy follows the same
/// path; the k-th holding time hashes it with k), and the state of the last segment.
#[derive(Clone, Debug)]
struct Chain {
    states: Vec<(f64, f64)>,
    seed: u64,
    switches: u64,
    state: usize,
}

impl ArrivalClock {
    /// The clock of one of `proxies` proxies sharing `arrival`'s rate (a trace's arrivals go to
    /// proxy 0).
    pub fn new(arrival: &Arrival, proxies: u32) -> Self {
        Self::of_proxy(arrival, 0, proxies)
    }

    /// The clock of proxy `index` of `proxies` sharing `arrival`: a trace's arrivals go to the
    /// proxies in turn.
    pub fn of_proxy(arrival: &Arrival, index: u32, proxies: u32) -> Self {
        ArrivalClock {
            trace_next: index as usize,
            trace_stride: proxies.max(1) as usize,
            arrival: arrival.clone(),
            rate_per_ns: arrival.mean_rate() / f64::from(proxies.max(1)) / 1e9,
            segments: match arrival {
                Arrival::Poisson { rate, steps } if !steps.is_empty() => {
                    let per = |r: &Rate| r.as_per_sec() / f64::from(proxies.max(1)) / 1e9;
                    let points: Vec<(u64, f64, bool)> = std::iter::once((0, per(rate), false))
                        .chain(
                            steps
                                .iter()
                                .map(|s| (s.at.as_nanos(), per(&s.rate), s.ramp)),
                        )
                        .collect();
                    (0..points.len())
                        .map(|i| {
                            let (at, r, _) = points[i];
                            let slope = match points.get(i + 1) {
                                Some(&(next, r2, true)) if next > at => {
                                    (r2 - r) / (next - at) as f64
                                }
                                _ => 0.0,
                            };
                            (at, r, slope)
                        })
                        .collect()
                }
                Arrival::Mmpp { states } => {
                    vec![(
                        0,
                        states[0].rate.as_per_sec() / f64::from(proxies.max(1)) / 1e9,
                        0.0,
                    )]
                }
                _ => Vec::new(),
            },
            on_cursor: 0.0,
            started: false,
            chain: match arrival {
                Arrival::Mmpp { states } => Some(Chain {
                    states: states
                        .iter()
                        .map(|s| {
                            (
                                s.rate.as_per_sec() / f64::from(proxies.max(1)) / 1e9,
                                s.mean.as_nanos() as f64,
                            )
                        })
                        .collect(),
                    seed: 0,
                    switches: 0,
                    state: 0,
                }),
                _ => None,
            },
        }
    }

    /// Draws a Markov-modulated process's chain from `seed`, which every proxy of the
    /// population must share (the population's bursts are one chain). No effect on other
    /// processes.
    pub fn modulated_by(mut self, seed: mesh_core::Seed) -> Self {
        if let Some(c) = &mut self.chain {
            c.seed = seed.value();
        }
        self
    }

    /// The arrival after the one at `now` (ns), given a uniform `u` in (0, 1).
    pub fn next(&mut self, now: u64, u: f64) -> u64 {
        let first = !self.started;
        self.started = true;
        match &self.arrival {
            Arrival::Poisson { .. } | Arrival::Mmpp { .. } if !self.segments.is_empty() => {
                // A unit-exponential amount of the integrated rate, spent segment by segment.
                let mut left = -(1.0 - u).ln();
                let mut t = now as f64;
                let mut k = self
                    .segments
                    .partition_point(|s| s.0 <= now)
                    .saturating_sub(1);
                loop {
                    // A modulated process: the chain's next switch, drawn as it is reached.
                    if k + 1 == self.segments.len()
                        && let Some(c) = &mut self.chain
                    {
                        use mesh_core::seed::mix;
                        let u = unit(mix(c.seed ^ mix(c.switches)));
                        c.switches += 1;
                        let hold = -(1.0 - u).ln() * c.states[c.state].1;
                        c.state = (c.state + 1) % c.states.len();
                        let at =
                            (self.segments[k].0 as f64 + hold.max(1.0)).min(u64::MAX as f64 / 2.0);
                        self.segments.push((at as u64, c.states[c.state].0, 0.0));
                    }
                    let (start, r0, slope) = self.segments[k];
                    // The rate now, and what the segment holds from now to its end.
                    let rate = (r0 + slope * (t - start as f64)).max(0.0);
                    let end = self
                        .segments
                        .get(k + 1)
                        .map_or(f64::INFINITY, |s| s.0 as f64);
                    let holds = if end.is_finite() {
                        let d = end - t;
                        rate * d + slope * d * d / 2.0
                    } else if rate > 0.0 {
                        f64::INFINITY
                    } else {
                        return u64::MAX; // the rate stays 0: no more arrivals
                    };
                    if left <= holds {
                        // Solve rate d + slope d^2 / 2 = left, in the form stable for any slope.
                        let disc = (rate * rate + 2.0 * slope * left).max(0.0);
                        let d = 2.0 * left / (rate + disc.sqrt()).max(f64::MIN_POSITIVE);
                        return (t + d).min(end).round().min(u64::MAX as f64) as u64;
                    }
                    left -= holds;
                    t = end;
                    k += 1;
                }
            }
            Arrival::Poisson { .. } | Arrival::Mmpp { .. } => {
                now.saturating_add((-(1.0 - u).ln() / self.rate_per_ns).round() as u64)
            }
            // A closed loop's users send when their last request ends, not by a clock.
            Arrival::Closed { .. } => u64::MAX,
            Arrival::Trace { data, .. } => match data.times.get(self.trace_next) {
                Some(&t) => {
                    self.trace_next += self.trace_stride;
                    t
                }
                None => u64::MAX,
            },
            Arrival::Constant { .. } => {
                let gap = 1.0 / self.rate_per_ns;
                now.saturating_add((if first { u * gap } else { gap }).round() as u64)
            }
            Arrival::OnOff { on, off, .. } => {
                // Poisson in on-time at this proxy's on-rate, mapped to real time.
                let on_ns = on.as_nanos() as f64;
                let cycle = on_ns + off.as_nanos() as f64;
                let on_rate = self.rate_per_ns * cycle / on_ns;
                self.on_cursor += -(1.0 - u).ln() / on_rate;
                let cycles = (self.on_cursor / on_ns).floor();
                (cycles * cycle + (self.on_cursor - cycles * on_ns)).round() as u64
            }
        }
    }
}

/// The common-random-number uniform in (0, 1) of one purpose (`lane`) of one attempt of one
/// request: a hash of (seed, request, attempt, lane) through SplitMix64's finalizer. The
/// simulator and the live backends draw every [`Lane`] from it, so every strategy, and both
/// drivers, see the same base draws.
pub fn crn_uniform(seed: u64, request: u64, attempt: u32, lane: Lane) -> f64 {
    use mesh_core::seed::mix;
    unit(mix(
        seed ^ mix(request ^ mix((u64::from(attempt) << 8) | lane as u64))
    ))
}

/// What a common random number is for: each purpose draws from its own lane, so adding a draw
/// for a new purpose never shifts the others. The numbers are part of the results (changing one
/// changes every run), shared by the simulator and the live backends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lane {
    /// A request's service time at an instance.
    Service = 1,
    /// Whether a served request fails (500).
    Error = 2,
    /// Network delay, proxy to instance.
    NetOut = 3,
    /// Network delay, instance to proxy.
    NetBack = 4,
    /// Whether a fast-failing instance answers 503 at once.
    FastFail = 5,
    /// A request's key (attempt 0 only: every attempt of a request has its key).
    Key = 6,
    /// A closed-loop user's think time after the request (attempt 0).
    Think = 7,
    /// Whether a `network` fault loses the message, proxy to instance.
    LossOut = 8,
    /// Whether a `network` fault loses the message, instance to proxy.
    LossBack = 9,
    /// A membership change's propagation delay to one proxy (keyed by the change, with the
    /// proxy as the attempt).
    Propagation = 10,
    /// Whether a script's call with a probability is made (keyed by the call's request id).
    Call = 11,
    /// A script's `compute` step (keyed by the step's own id, see [`graph::child_request`]).
    Compute = 12,
    /// An attempt's time in its caller's sidecar (`mesh.outbound`).
    SidecarOut = 13,
    /// An attempt's time in its callee's sidecar (`mesh.inbound`).
    SidecarIn = 14,
    /// A new connection's handshake CPU time at the connecting side (keyed by the connection).
    HandshakeClient = 15,
    /// A new connection's handshake CPU time at the accepting side (keyed by the connection).
    HandshakeServer = 16,
}

/// The attempt number under which a health check draws its common random numbers (keyed by its
/// probe id): apart from every request attempt's, the same in both drivers.
pub const CHECK_ATTEMPT: u32 = u32::MAX;

/// A uniform in (0, 1) from 53 random bits.
pub fn unit(bits: u64) -> f64 {
    ((bits >> 11) as f64 + 0.5) * (1.0 / (1u64 << 53) as f64)
}

/// A scenario ready to run: every strategy's policy merged and validated.
#[derive(Clone, Debug)]
pub struct Loaded {
    /// The scenario as written (without its sweep applied).
    pub scenario: Scenario,
    /// Each strategy's full policy, in file order (of the scenario as written).
    pub strategies: Vec<(String, ClusterConfig)>,
    /// The sweep's field paths, in file order (empty without a sweep).
    pub sweep_paths: Vec<String>,
    /// The points to run: one per sweep combination, or the scenario itself without a sweep.
    pub points: Vec<Point>,
    /// The file's text, as read (reports embed it).
    pub source: String,
    /// The file's name, as errors give it.
    pub file: String,
    /// Warnings (offered load at or above capacity, ...), one line each.
    pub warnings: Vec<String>,
}

/// One sweep point: the scenario with the point's values set.
#[derive(Clone, Debug)]
pub struct Point {
    /// The point's value of each sweep path, as written (`4000/s`).
    pub coords: Vec<String>,
    /// The scenario at this point.
    pub scenario: Scenario,
    /// Each strategy's full policy at this point.
    pub strategies: Vec<(String, ClusterConfig)>,
    /// Per strategy (by name), the policies it sets for calls to particular services
    /// (`upstreams:` in a strategy or in `policy`), each in full. A service without one is
    /// called with the strategy's policy.
    pub upstreams: BTreeMap<String, BTreeMap<String, ClusterConfig>>,
}

impl Point {
    /// The policy of strategy `strategy` (index) for calls to `service`.
    pub fn policy_for(&self, strategy: usize, service: &str) -> &ClusterConfig {
        let (name, base) = &self.strategies[strategy];
        self.upstreams
            .get(name)
            .and_then(|m| m.get(service))
            .unwrap_or(base)
    }

    /// Every policy of strategy `strategy` (index): its own, then those it sets per upstream
    /// service, by service name.
    pub fn policies(&self, strategy: usize) -> impl Iterator<Item = &ClusterConfig> {
        let (name, base) = &self.strategies[strategy];
        std::iter::once(base).chain(
            self.upstreams
                .get(name)
                .into_iter()
                .flat_map(|m| m.values()),
        )
    }
}

/// Most instances a service's override ranges may cover in all (10^7).
pub const MAX_OVERRIDE_COVERAGE: u64 = 10_000_000;

/// Most points a sweep may expand to.
pub const MAX_SWEEP_POINTS: usize = 10_000;

/// Reads, parses and validates a scenario file.
pub fn load(path: &Path) -> Result<Loaded, ScenarioError> {
    load_with(path, &[])
}

/// [`load`], letting empirical distributions also read samples files inside `data_dirs`
/// (directories the user names explicitly; by default only the scenario's own directory).
pub fn load_with(path: &Path, data_dirs: &[std::path::PathBuf]) -> Result<Loaded, ScenarioError> {
    let file = path.display().to_string();
    let fail = |message: String| ScenarioError {
        file: file.clone(),
        line: None,
        column: None,
        field: String::new(),
        message,
        suggestion: None,
    };
    // A regular file of bounded size: never a FIFO that blocks or a device that never ends.
    let meta =
        std::fs::metadata(path).map_err(|e| fail(format!("cannot read the scenario: {e}")))?;
    if !meta.is_file() {
        return Err(fail(
            "not a regular file: give a scenario file (YAML)".into(),
        ));
    }
    if meta.len() > shape::MAX_FILE_BYTES {
        return Err(fail(format!(
            "the scenario is {} bytes; at most {} (4 MiB)",
            meta.len(),
            shape::MAX_FILE_BYTES
        )));
    }
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(
        &mut std::io::Read::take(
            std::fs::File::open(path)
                .map_err(|e| fail(format!("cannot read the scenario: {e}")))?,
            shape::MAX_FILE_BYTES + 1,
        ),
        &mut bytes,
    )
    .map_err(|e| fail(format!("cannot read the scenario: {e}")))?;
    let source = shape::text(bytes, &file)?;
    let dir = path.parent().unwrap_or(Path::new("."));
    parse_with(&source, &file, dir, data_dirs)
}

/// Parses and validates scenario text; `file` names it in errors, `dir` resolves relative paths.
/// A `sweep:` section expands into one [`Point`] per combination, each validated in full.
pub fn parse(source: &str, file: &str, dir: &Path) -> Result<Loaded, ScenarioError> {
    parse_with(source, file, dir, &[])
}

/// [`parse`], with the extra directories samples files may be read from (see [`load_with`]).
pub fn parse_with(
    source: &str,
    file: &str,
    dir: &Path,
    data_dirs: &[std::path::PathBuf],
) -> Result<Loaded, ScenarioError> {
    shape::check(source, file)?;
    let (scenario, strategies, upstreams, warnings) = parse_one(source, file, dir, data_dirs)?;
    let Some(sweep) = scenario.sweep.clone() else {
        return Ok(Loaded {
            points: vec![Point {
                coords: Vec::new(),
                scenario: scenario.clone(),
                strategies: strategies.clone(),
                upstreams,
            }],
            scenario,
            strategies,
            sweep_paths: Vec::new(),
            source: source.to_owned(),
            file: file.to_owned(),
            warnings,
        });
    };
    let sweep_err = |field: String, message: String| {
        let (line, column) = locate::locate(source, "sweep").unzip();
        ScenarioError {
            file: file.to_owned(),
            line,
            column,
            field,
            message,
            suggestion: None,
        }
    };
    let mut axes: Vec<(String, Vec<yaml_serde::Value>)> = Vec::new();
    for (k, v) in &sweep {
        let yaml_serde::Value::String(path) = k else {
            return Err(sweep_err(
                "sweep".into(),
                "keys must be field paths such as `clients.load.arrival.rate`".into(),
            ));
        };
        let values = match v {
            yaml_serde::Value::Sequence(vs) if !vs.is_empty() => vs.clone(),
            _ => {
                return Err(sweep_err(
                    format!("sweep.{path}"),
                    "must be a non-empty list of values, such as [2000/s, 4000/s]".into(),
                ));
            }
        };
        if path.starts_with("sweep") || path.starts_with("name") || path.is_empty() {
            return Err(sweep_err(
                format!("sweep.{path}"),
                "cannot sweep this field".into(),
            ));
        }
        axes.push((path.clone(), values));
    }
    let total = axes.iter().map(|a| a.1.len()).product::<usize>();
    if total > MAX_SWEEP_POINTS {
        return Err(sweep_err(
            "sweep".into(),
            format!("expands to {total} points; at most {MAX_SWEEP_POINTS}"),
        ));
    }
    let mut base: yaml_serde::Value =
        yaml_serde::from_str(source).map_err(|e| yaml_error(&e, source, file))?;
    if let yaml_serde::Value::Mapping(m) = &mut base {
        m.remove("sweep");
    }
    let mut points = Vec::with_capacity(total);
    let mut all_warnings = warnings;
    for i in 0..total {
        let mut rest = i;
        let mut idx = vec![0; axes.len()];
        for (k, a) in axes.iter().enumerate().rev() {
            idx[k] = rest % a.1.len();
            rest /= a.1.len();
        }
        let mut doc = base.clone();
        let mut coords = Vec::new();
        for (k, (path, values)) in axes.iter().enumerate() {
            let v = &values[idx[k]];
            set_path(&mut doc, path, v.clone())
                .map_err(|m| sweep_err(format!("sweep.{path}"), m))?;
            coords.push(scalar_text(v));
        }
        let label = axes
            .iter()
            .zip(&coords)
            .map(|((p, _), c)| format!("{p}={c}"))
            .collect::<Vec<_>>()
            .join(", ");
        let text = yaml_serde::to_string(&doc).unwrap_or_default();
        let (sc, strategies, upstreams, warnings) = parse_one(&text, file, dir, data_dirs)
            .map_err(|e| {
                // The point's text is not the file: point at the sweep entry that set the field,
                // else at the field in the file.
                let (line, column) = axes
                    .iter()
                    .find(|(p, _)| {
                        e.field == *p
                            || e.field.starts_with(&format!("{p}."))
                            || p.starts_with(&format!("{}.", e.field))
                    })
                    .and_then(|(p, _)| sweep_entry(source, p))
                    .or_else(|| locate::locate(source, &e.field))
                    .unzip();
                ScenarioError {
                    line,
                    column,
                    message: format!("{} (at sweep point {label})", e.message),
                    ..e
                }
            })?;
        for w in warnings {
            let w = format!("{w} (at sweep point {label})");
            if !all_warnings.contains(&w) {
                all_warnings.push(w);
            }
        }
        points.push(Point {
            coords,
            scenario: sc,
            strategies,
            upstreams,
        });
    }
    Ok(Loaded {
        scenario,
        strategies,
        sweep_paths: axes.into_iter().map(|a| a.0).collect(),
        points,
        source: source.to_owned(),
        file: file.to_owned(),
        warnings: all_warnings,
    })
}

/// The (line, column) of the `sweep:` entry for `path` (a dotted key under the top-level
/// `sweep:`, block style or flow style on the `sweep:` line).
fn sweep_entry(source: &str, path: &str) -> Option<(usize, usize)> {
    let lines: Vec<&str> = source.lines().collect();
    let start = lines.iter().position(|l| l.starts_with("sweep:"))?;
    for (n, line) in lines.iter().enumerate().skip(start) {
        if n > start && !line.is_empty() && !line.starts_with([' ', '#']) {
            break;
        }
        for q in ["", "\"", "'"] {
            let key = format!("{q}{path}{q}");
            if let Some(c) = line.find(&key).filter(|&c| {
                line[c + key.len()..].trim_start().starts_with(':')
                    && (c == 0 || !line.as_bytes()[c - 1].is_ascii_alphanumeric())
            }) {
                return Some((n + 1, c + 1));
            }
        }
    }
    Some((start + 1, 1))
}

/// A scalar as written in reports.
fn scalar_text(v: &yaml_serde::Value) -> String {
    match v {
        yaml_serde::Value::String(s) => s.clone(),
        other => yaml_serde::to_string(other)
            .unwrap_or_default()
            .trim()
            .to_owned(),
    }
}

/// Sets `path` (dotted) in a YAML document, creating mappings along the way.
fn set_path(
    doc: &mut yaml_serde::Value,
    path: &str,
    value: yaml_serde::Value,
) -> Result<(), String> {
    let mut cur = doc;
    let segs: Vec<&str> = path.split('.').collect();
    for (i, seg) in segs.iter().enumerate() {
        let key = match seg.parse::<u64>() {
            Ok(n)
                if matches!(cur, yaml_serde::Value::Mapping(m)
                    if m.contains_key(yaml_serde::Value::Number(n.into()))) =>
            {
                yaml_serde::Value::Number(n.into())
            }
            _ => yaml_serde::Value::String((*seg).to_owned()),
        };
        let yaml_serde::Value::Mapping(m) = cur else {
            return Err(format!(
                "`{}` is not a mapping, so `{seg}` cannot be set in it",
                segs[..i].join(".")
            ));
        };
        if i + 1 == segs.len() {
            m.insert(key, value);
            return Ok(());
        }
        cur = m
            .entry(key)
            .or_insert_with(|| yaml_serde::Value::Mapping(Default::default()));
    }
    Ok(())
}

/// Per strategy, its policies for calls to particular services.
type Upstreams = BTreeMap<String, BTreeMap<String, ClusterConfig>>;

type Parsed = (
    Scenario,
    Vec<(String, ClusterConfig)>,
    Upstreams,
    Vec<String>,
);

fn parse_one(
    source: &str,
    file: &str,
    dir: &Path,
    data_dirs: &[std::path::PathBuf],
) -> Result<Parsed, ScenarioError> {
    let mut scenario: Scenario =
        yaml_serde::from_str(source).map_err(|e| yaml_error(&e, source, file))?;
    let at = |path: &str, message: String, suggestion: Option<String>| {
        let (line, column) = locate::locate(source, path).unzip();
        ScenarioError {
            file: file.to_owned(),
            line,
            column,
            field: path.to_owned(),
            message,
            suggestion,
        }
    };
    // Files referenced by distributions.
    for (name, svc) in &mut scenario.services {
        let base = format!("services.{name}");
        svc.service_time
            .load_files(dir, data_dirs)
            .map_err(|(f, m)| at(&format!("{base}.service_time.{f}"), m, None))?;
        for (i, o) in &mut svc.overrides {
            if let Some(d) = &mut o.service_time {
                d.load_files(dir, data_dirs).map_err(|(f, m)| {
                    at(&format!("{base}.overrides.{i}.service_time.{f}"), m, None)
                })?;
            }
        }
        for (n, step) in svc.script.iter_mut().enumerate() {
            if let Some(d) = &mut step.compute {
                d.load_files(dir, data_dirs)
                    .map_err(|(f, m)| at(&format!("{base}.script.{n}.compute.{f}"), m, None))?;
            }
        }
    }
    for (path, d) in scenario.mesh.dists_mut() {
        d.load_files(dir, data_dirs)
            .map_err(|(f, m)| at(&format!("mesh.{path}.{f}"), m, None))?;
    }
    for (path, d) in scenario.network.dists_mut() {
        d.load_files(dir, data_dirs)
            .map_err(|(f, m)| at(&format!("network.{path}.{f}"), m, None))?;
    }
    for (name, c) in &mut scenario.clients {
        if let Some(r) = &mut c.request {
            let base = format!("clients.{name}.request");
            r.validate()
                .map_err(|(f, m)| at(&format!("{base}.{f}"), m, None))?;
            if let Some(f) = &r.body_file {
                let path = dist::resolve(dir, data_dirs, f)
                    .map_err(|m| at(&format!("{base}.body_file"), m, None))?;
                let bytes = std::fs::read(&path).map_err(|e| {
                    at(
                        &format!("{base}.body_file"),
                        format!("{}: {e}", path.display()),
                        None,
                    )
                })?;
                r.body_bytes = std::sync::Arc::new(bytes);
            } else if let Some(b) = &r.body {
                r.body_bytes = std::sync::Arc::new(b.clone().into_bytes());
            }
        }
        let base = format!("clients.{name}.arrival");
        match &mut c.arrival {
            Arrival::Closed { think, .. } => {
                think
                    .load_files(dir, data_dirs)
                    .map_err(|(f, m)| at(&format!("{base}.think.{f}"), m, None))?;
                think
                    .validate()
                    .map_err(|(f, m)| at(&format!("{base}.think.{f}"), m, None))?;
            }
            Arrival::Trace {
                file: f,
                column,
                key_column,
                time_scale,
                data,
            } => {
                let path = dist::resolve(dir, data_dirs, f)
                    .map_err(|m| at(&format!("{base}.file"), m, None))?;
                *data = trace::load(&path, column.as_deref(), key_column.as_deref(), *time_scale)
                    .map_err(|(f, m)| at(&format!("{base}.{f}"), m, None))?;
                if data.keys.is_some() && c.keys.is_some() {
                    return Err(at(
                        &format!("{base}.key_column"),
                        "gives the requests' keys, and so does `keys`: keep one".into(),
                        None,
                    ));
                }
            }
            _ => {}
        }
    }
    let warnings = check(&scenario, &at)?;
    budget::check_hard(&scenario, source, file)?;
    let (strategies, upstreams) = merge_strategies(&scenario, source, file)?;
    // Handshake costs act only on pooled connections with TLS.
    if scenario.mesh.handshake.is_some()
        && !strategies
            .iter()
            .map(|(_, c)| c)
            .chain(upstreams.values().flat_map(|m| m.values()))
            .any(|c| {
                c.connections
                    .as_ref()
                    .is_some_and(|k| k.tls != mesh_core::Tls::None)
            })
    {
        return Err(at(
            "mesh.handshake",
            "costs TLS handshakes, but no strategy pools connections with TLS, so it would change nothing (set `connections: {tls: tls}` or `{tls: mtls}` in a policy, or remove it)".into(),
            None,
        ));
    }
    if let Some(h) = &scenario.mesh.handshake {
        for (path, d) in [
            ("tls_client_cpu", &h.tls_client_cpu),
            ("tls_server_cpu", &h.tls_server_cpu),
            ("mtls_client_cpu", &h.mtls_client_cpu),
            ("mtls_server_cpu", &h.mtls_server_cpu),
        ] {
            d.validate()
                .map_err(|(f, m)| at(&format!("mesh.handshake.{path}.{f}"), m, None))?;
        }
    }
    // A zone weight acts only through locality-weighted balancing.
    if let Some((name, z)) = scenario.zones.iter().find(|(_, z)| z.weight != 1)
        && strategies
            .iter()
            .all(|(_, c)| c.locality_weighted_lb.is_none())
    {
        return Err(at(
            &format!("zones.{name}.weight"),
            format!(
                "is {} but no strategy sets `locality_weighted_lb`, the only policy that reads zone weights (add `locality_weighted_lb: {{}}` to a strategy, or remove the weight)",
                z.weight
            ),
            None,
        ));
    }
    if let Some((name, _)) = scenario.zones.iter().find(|(_, z)| z.weight == 0) {
        return Err(at(
            &format!("zones.{name}.weight"),
            "must be >= 1 (Envoy's locality load_balancing_weight)".into(),
            None,
        ));
    }
    Ok((scenario, strategies, upstreams, warnings))
}

/// Turns a yaml_serde error into a located one with a suggestion.
fn yaml_error(e: &yaml_serde::Error, source: &str, file: &str) -> ScenarioError {
    let text = e.to_string();
    // yaml_serde writes "path: message at line L column C".
    let body = text
        .rsplit_once(" at line ")
        .map_or(text.as_str(), |(b, _)| b);
    let (field, message) = match body.split_once(": ") {
        Some((f, m)) if !f.contains(' ') && !f.is_empty() => (f.to_owned(), m.to_owned()),
        _ => (String::new(), body.to_owned()),
    };
    let loc = e.location();
    // A top-level duplicate or missing field names itself; a syntax error names the keys
    // around it.
    let field = if !field.is_empty() {
        field
    } else if let Some(name) = message
        .strip_prefix("duplicate field `")
        .or_else(|| message.strip_prefix("missing field `"))
        .and_then(|r| r.split('`').next())
    {
        name.to_owned()
    } else {
        loc.as_ref()
            .map(|l| locate::path_at(source, l.line()))
            .unwrap_or_default()
    };
    if message.contains("repetition limit exceeded") {
        let alias = source.lines().enumerate().find_map(|(n, l)| {
            let b = l.as_bytes();
            (1..b.len())
                .find(|&i| {
                    b[i] == b'*'
                        && matches!(b[i - 1], b' ' | b'[' | b',' | b'{')
                        && b.get(i + 1).is_some_and(u8::is_ascii_alphanumeric)
                })
                .map(|i| (n + 1, i + 1))
        });
        return ScenarioError {
            file: file.to_owned(),
            line: alias.map(|a| a.0),
            column: alias.map(|a| a.1),
            field,
            message: "YAML aliases (`*name`) here expand past the parser's repetition limit; write the values out".into(),
            suggestion: None,
        };
    }
    ScenarioError {
        file: file.to_owned(),
        line: loc.as_ref().map(yaml_serde::Location::line),
        column: loc.as_ref().map(yaml_serde::Location::column),
        suggestion: suggest_from_message(&message),
        field,
        message,
    }
}

type At<'a> = dyn Fn(&str, String, Option<String>) -> ScenarioError + 'a;

/// Cross-field checks; returns warnings.
fn check(s: &Scenario, at: &At<'_>) -> Result<Vec<String>, ScenarioError> {
    let mut warnings = Vec::new();
    check_name(&s.name).map_err(|m| at("name", m, None))?;
    match (s.duration, s.requests) {
        (None, None) => {
            return Err(at(
                "duration",
                "give `duration` (e.g. 60s) or `requests` (e.g. 100000)".into(),
                None,
            ));
        }
        (Some(_), Some(_)) => {
            return Err(at(
                "requests",
                "give either `duration` or `requests`, not both".into(),
                None,
            ));
        }
        (Some(d), None) => {
            if d.is_zero() {
                return Err(at("duration", "must be > 0".into(), None));
            }
            if s.warmup >= d {
                return Err(at(
                    "warmup",
                    format!("must be shorter than duration ({d}), got {}", s.warmup),
                    None,
                ));
            }
        }
        (None, Some(n)) => {
            if n == 0 {
                return Err(at("requests", "must be >= 1".into(), None));
            }
        }
    }
    if s.replications == 0 || s.replications > 1000 {
        return Err(at(
            "replications",
            format!("must be in 1..=1000, got {}", s.replications),
            None,
        ));
    }
    if s.sample_period.is_zero() {
        return Err(at("sample_period", "must be > 0".into(), None));
    }
    if s.strategies.is_empty() {
        return Err(at(
            "strategies",
            "needs at least one strategy, e.g. `round_robin: { balancer: { kind: round_robin } }`"
                .into(),
            None,
        ));
    }
    if s.services.is_empty() {
        return Err(at("services", "needs at least one service".into(), None));
    }
    if s.clients.is_empty() {
        return Err(at("clients", "needs at least one client".into(), None));
    }
    check_zones(s, at)?;
    for (name, svc) in &s.services {
        let base = format!("services.{name}");
        if svc.instances == 0 || svc.instances > 1_000_000 {
            return Err(at(
                &format!("{base}.instances"),
                format!("must be in 1..=1000000, got {}", svc.instances),
                None,
            ));
        }
        if svc.override_coverage() > MAX_OVERRIDE_COVERAGE {
            return Err(at(
                &format!("{base}.overrides"),
                format!(
                    "the ranges cover {} instances in all (an instance counts once per range naming it); at most {MAX_OVERRIDE_COVERAGE}: merge overlapping ranges",
                    svc.override_coverage()
                ),
                None,
            ));
        }
        if svc.concurrency == 0 {
            return Err(at(
                &format!("{base}.concurrency"),
                "must be >= 1, got 0".into(),
                None,
            ));
        }
        svc.service_time
            .validate()
            .map_err(|(f, m)| at(&format!("{base}.service_time.{f}"), m, None))?;
        if svc.weight == 0 {
            return Err(at(
                &format!("{base}.weight"),
                "must be >= 1 (Envoy's load_balancing_weight)".into(),
                None,
            ));
        }
        if svc.priority > mesh_core::MAX_PRIORITY {
            return Err(at(
                &format!("{base}.priority"),
                format!(
                    "must be in 0..={}, got {}",
                    mesh_core::MAX_PRIORITY,
                    svc.priority
                ),
                None,
            ));
        }
        match &svc.zone {
            Some(p) => check_placement(
                s,
                p,
                svc.instances,
                "instances",
                &format!("{base}.zone"),
                at,
            )?,
            None if !s.zones.is_empty() => {
                return Err(at(
                    &base,
                    "with `zones:`, every service needs `zone` (a zone name, or instances per zone such as `{a: 2, b: 2}`)".into(),
                    None,
                ));
            }
            None => {}
        }
        for (i, o) in &svc.overrides {
            let ob = format!("{base}.overrides.{i}");
            if i.last >= svc.instances {
                return Err(at(
                    &ob,
                    format!(
                        "instance {} does not exist: the service has instances 0..{}",
                        i.last, svc.instances
                    ),
                    None,
                ));
            }
            if o.weight == Some(0) {
                return Err(at(
                    &format!("{ob}.weight"),
                    "must be >= 1 (Envoy's load_balancing_weight)".into(),
                    None,
                ));
            }
            if let Some(p) = o.priority
                && p > mesh_core::MAX_PRIORITY
            {
                return Err(at(
                    &format!("{ob}.priority"),
                    format!("must be in 0..={}, got {p}", mesh_core::MAX_PRIORITY),
                    None,
                ));
            }
            if let Some(z) = &o.zone {
                check_zone_name(s, z, &format!("{ob}.zone"), at)?;
            }
            if let Some(f) = o.slowdown
                && !(f.is_finite() && f > 0.0)
            {
                return Err(at(
                    &format!("{ob}.slowdown"),
                    format!("must be a finite number > 0, got {f}"),
                    None,
                ));
            }
            if o.concurrency == Some(0) {
                return Err(at(
                    &format!("{ob}.concurrency"),
                    "must be >= 1, got 0".into(),
                    None,
                ));
            }
            if let Some(d) = &o.service_time {
                d.validate()
                    .map_err(|(f, m)| at(&format!("{ob}.service_time.{f}"), m, None))?;
            }
        }
    }
    for (name, c) in &s.clients {
        let base = format!("clients.{name}");
        if c.proxies == 0 || c.proxies > 100_000 {
            return Err(at(
                &format!("{base}.proxies"),
                format!("must be in 1..=100000, got {}", c.proxies),
                None,
            ));
        }
        let Some(svc) = s.services.get(&c.target) else {
            return Err(at(
                &format!("{base}.target"),
                format!(
                    "no service `{}`; services: {}",
                    c.target,
                    s.services.keys().cloned().collect::<Vec<_>>().join(", ")
                ),
                nearest(&c.target, s.services.keys().map(String::as_str)),
            ));
        };
        match &c.zone {
            Some(p) => check_placement(s, p, c.proxies, "proxies", &format!("{base}.zone"), at)?,
            None if !s.zones.is_empty() => {
                return Err(at(
                    &base,
                    "with `zones:`, every client needs `zone` (a zone name, or proxies per zone such as `{a: 4, b: 4}`)".into(),
                    None,
                ));
            }
            None => {}
        }
        if let Some(k) = &c.keys {
            check_keys(k, &format!("{base}.keys"), at)?;
        }
        if let Arrival::OnOff { on, .. } = &c.arrival
            && on.is_zero()
        {
            return Err(at(
                &format!("{base}.arrival.on"),
                "must be > 0".into(),
                None,
            ));
        }
        // Offered load against capacity.
        let rate: f64 = s
            .clients
            .values()
            .filter(|o| o.target == c.target)
            .map(|o| o.arrival.mean_rate())
            .sum();
        // With a membership timeline, every instance it ever runs counts: an upper bound, so
        // the warning holds whenever it is given.
        let specs = svc.instances();
        let slots = s
            .membership
            .as_ref()
            .map_or(svc.instances, |_| s.membership_plan().slots[&c.target]);
        let capacity: f64 = (0..slots)
            .map(|i| specs[(i % svc.instances.max(1)) as usize].capacity_per_sec())
            .sum();
        let load = rate / capacity;
        if load >= 1.0
            && !warnings
                .iter()
                .any(|w: &String| w.contains(&format!("`{}`", c.target)))
        {
            warnings.push(format!(
                "offered load on `{}` is {:.0}% of its capacity ({rate:.0}/s offered, {capacity:.0}/s served at most): queues will grow without bound",
                c.target,
                100.0 * load
            ));
        }
    }
    graph::check(&s.services).map_err(|(f, m, sug)| at(&f, m, sug))?;
    // Sizes take time only on a link with a speed; a speed with no size would change nothing.
    let sized = s.services.iter().find(|(_, v)| v.response_size.is_some());
    match (sized, s.network.bandwidth) {
        (Some((name, _)), None) => {
            return Err(at(
                &format!("services.{name}.response_size"),
                "a response size takes time only on a link with a speed: set `network.bandwidth` (for example `10Gbps`)".into(),
                None,
            ));
        }
        (None, Some(_)) => {
            return Err(at(
                "network.bandwidth",
                "no service sets `response_size`, so the bandwidth would change nothing: set `services.NAME.response_size` (for example `16KiB`), or remove it".into(),
                None,
            ));
        }
        _ => {}
    }
    for (path, d) in [("outbound", &s.mesh.outbound), ("inbound", &s.mesh.inbound)] {
        if let Some(d) = d {
            d.validate()
                .map_err(|(f, m)| at(&format!("mesh.{path}.{f}"), m, None))?;
        }
    }
    if !s.mesh.sidecars && s.mesh.outbound.is_none() && s.mesh.inbound.is_none() {
        return Err(at(
            "mesh.sidecars",
            "`sidecars: false` takes away the sidecars' time, but `mesh.outbound` and `mesh.inbound` give them none, so it would change nothing: set what a sidecar costs (for example `outbound: { dist: exponential, mean: 100us }`), or remove it".into(),
            None,
        ));
    }
    if let Some(c) = s.mesh.concurrency {
        if c == 0 {
            return Err(at(
                "mesh.concurrency",
                "a sidecar needs at least 1 worker: set 1 or more (Istio's default is 2), or remove it for sidecars that never queue".into(),
                None,
            ));
        }
        if s.mesh.outbound.is_none() && s.mesh.inbound.is_none() {
            return Err(at(
                "mesh.concurrency",
                "the sidecars' workers have nothing to do, since `mesh.outbound` and `mesh.inbound` give a sidecar no time, so it would change nothing: set what a sidecar costs (for example `outbound: { dist: exponential, mean: 100us }`), or remove it".into(),
                None,
            ));
        }
    }
    check_faults(s, at, &mut warnings)?;
    if let Some(m) = &s.membership {
        check_membership(s, m, at)?;
    }
    check_thresholds(s, at)?;
    Ok(warnings)
}

/// Checks the network's distributions and that every zone named anywhere is declared.
fn check_zones(s: &Scenario, at: &At<'_>) -> Result<(), ScenarioError> {
    for (path, d) in s.network.dists() {
        d.validate()
            .map_err(|(f, m)| at(&format!("network.{path}.{f}"), m, None))?;
    }
    if s.zones.is_empty() {
        for field in ["same_zone", "cross_zone"] {
            if s.network.dists().any(|(p, _)| p == field) {
                return Err(at(
                    &format!("network.{field}"),
                    "needs a `zones:` section (without zones every hop uses `network.latency`)"
                        .into(),
                    None,
                ));
            }
        }
    }
    for (n, pair) in s.network.pairs.iter().enumerate() {
        for z in &pair.between {
            check_zone_name(s, z, &format!("network.pairs.{n}.between"), at)?;
        }
    }
    if s.zones.len() > mesh_core::MAX_ZONES {
        return Err(at(
            "zones",
            format!(
                "at most {} zones, got {}",
                mesh_core::MAX_ZONES,
                s.zones.len()
            ),
            None,
        ));
    }
    Ok(())
}

fn check_zone_name(
    s: &Scenario,
    zone: &str,
    field: &str,
    at: &At<'_>,
) -> Result<(), ScenarioError> {
    if s.zones.contains_key(zone) {
        return Ok(());
    }
    let message = if s.zones.is_empty() {
        format!(
            "zone `{zone}` is not declared: add a `zones:` section (for example `zones: {{ {zone}: {{}} }}`)"
        )
    } else {
        format!(
            "no zone `{zone}`; zones: {}",
            s.zones.keys().cloned().collect::<Vec<_>>().join(", ")
        )
    };
    Err(at(
        field,
        message,
        nearest(zone, s.zones.keys().map(String::as_str)),
    ))
}

/// A placement names declared zones and, when it spreads counts, places every member.
fn check_placement(
    s: &Scenario,
    p: &Placement,
    members: u32,
    what: &str,
    field: &str,
    at: &At<'_>,
) -> Result<(), ScenarioError> {
    for z in p.zones() {
        check_zone_name(s, z, field, at)?;
    }
    if let Some(total) = p.total()
        && total != u64::from(members)
    {
        return Err(at(
            field,
            format!("the counts per zone sum to {total}, but there are {members} {what}"),
            None,
        ));
    }
    Ok(())
}

/// Most keys a client may draw from (the Zipf table is kept in memory).
pub const MAX_KEYS: u32 = 1_000_000;

fn check_keys(k: &Keys, field: &str, at: &At<'_>) -> Result<(), ScenarioError> {
    let count = k.count();
    if count == 0 || count > MAX_KEYS {
        return Err(at(
            &format!("{field}.count"),
            format!("must be in 1..={MAX_KEYS}, got {count}"),
            None,
        ));
    }
    if let Keys::Zipf { exponent, .. } = k
        && !(exponent.is_finite() && (0.0..=10.0).contains(exponent))
    {
        return Err(at(
            &format!("{field}.exponent"),
            format!("must be a number in 0..=10, got {exponent}"),
            None,
        ));
    }
    Ok(())
}

/// Longest scenario name.
pub const MAX_NAME: usize = 100;

/// A scenario name is a directory name under `reports/`: 1 to [`MAX_NAME`] characters from
/// `A-Z a-z 0-9 . _ -`, not starting with `.` (so no separators, no `..`, nothing absolute or
/// hidden).
pub fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        let shown: String = name
            .chars()
            .take(40)
            .flat_map(char::escape_default)
            .collect();
        Err(format!(
            "`{shown}` cannot name a report directory: use 1 to {MAX_NAME} of A-Z a-z 0-9 . _ - (not starting with `.`), or pass --out"
        ))
    }
}

/// Thresholds name `all` or a strategy, and each parses.
fn check_thresholds(s: &Scenario, at: &At<'_>) -> Result<(), ScenarioError> {
    let names: Vec<String> = s
        .strategies
        .keys()
        .filter_map(|k| k.as_str().map(str::to_owned))
        .collect();
    for (key, list) in &s.thresholds {
        if key != "all" && !names.contains(key) {
            return Err(at(
                &format!("thresholds.{key}"),
                format!(
                    "no strategy `{key}`: thresholds are keyed by `all` or a strategy ({})",
                    names.join(", ")
                ),
                nearest(key, names.iter().map(String::as_str).chain(["all"])),
            ));
        }
        for (n, t) in list.iter().enumerate() {
            thresholds::Threshold::parse(t).map_err(|m| {
                at(
                    &format!("thresholds.{key}.{n}"),
                    m,
                    suggest_from_message(""),
                )
            })?;
        }
    }
    Ok(())
}

/// Checks the fault timeline: known targets, times in order, the fields each kind needs.
fn check_faults(
    s: &Scenario,
    at: &At<'_>,
    warnings: &mut Vec<String>,
) -> Result<(), ScenarioError> {
    for (n, f) in s.faults.iter().enumerate() {
        let base = format!("faults.{n}");
        check_fault_target(s, &f.target, &format!("{base}.target"), at)?;
        if let Some(u) = f.until
            && u <= f.at
        {
            return Err(at(
                &format!("{base}.until"),
                format!("must be later than `at` ({}), got {u}", f.at),
                None,
            ));
        }
        let kind = f.kind.name();
        let need = |field: &str, example: &str| {
            at(
                &base,
                format!("`kind: {kind}` needs `{field}` ({example})"),
                None,
            )
        };
        let belongs = |field: &str, kinds: &str| {
            at(
                &format!("{base}.{field}"),
                format!("`{field}` belongs to {kinds}, not `kind: {kind}`"),
                None,
            )
        };
        match f.kind {
            FaultKind::Slowdown => match f.factor {
                None => return Err(need("factor", "for example 10")),
                Some(x) if !(x.is_finite() && x > 0.0) => {
                    return Err(at(
                        &format!("{base}.factor"),
                        format!("must be a finite number > 0, got {x}"),
                        None,
                    ));
                }
                Some(_) => {}
            },
            FaultKind::ColdStart => {
                match f.factor {
                    None => return Err(need("factor", "the slowdown at the start, for example 5")),
                    Some(x) if !(x.is_finite() && x > 1.0) => {
                        return Err(at(
                            &format!("{base}.factor"),
                            format!(
                                "must be a finite number > 1 (the service-time multiplier at the start, decaying to 1 at `until`), got {x}"
                            ),
                            None,
                        ));
                    }
                    Some(_) => {}
                }
                if f.until.is_none() {
                    return Err(need("until", "when the instance is warm again"));
                }
            }
            FaultKind::Errors if f.rate.is_none() => {
                return Err(need("rate", "for example 0.5"));
            }
            FaultKind::Capacity => match f.concurrency {
                None => {
                    return Err(need(
                        "concurrency",
                        "requests served at once, for example 1",
                    ));
                }
                Some(0) => {
                    return Err(at(
                        &format!("{base}.concurrency"),
                        "must be >= 1 (a crash stops an instance)".into(),
                        None,
                    ));
                }
                Some(_) => {}
            },
            FaultKind::Partition | FaultKind::Network => {
                let Some(from) = &f.from else {
                    return Err(need(
                        "from",
                        if f.kind == FaultKind::Network {
                            "the other zone, for example zone:b"
                        } else {
                            "the other side: zone:NAME or a client population"
                        },
                    ));
                };
                let field = format!("{base}.from");
                match from.strip_prefix("zone:") {
                    Some(z) => check_zone_name(s, z, &field, at)?,
                    None if f.kind == FaultKind::Network => {
                        return Err(at(
                            &field,
                            format!(
                                "a network fault is between two zones: write `zone:NAME`, not `{from}`"
                            ),
                            None,
                        ));
                    }
                    None if !s.clients.contains_key(from) => {
                        return Err(at(
                            &field,
                            format!(
                                "no client population `{from}`; write `zone:NAME` or one of: {}",
                                s.clients.keys().cloned().collect::<Vec<_>>().join(", ")
                            ),
                            nearest(from, s.clients.keys().map(String::as_str)),
                        ));
                    }
                    None => {}
                }
                if f.kind == FaultKind::Network {
                    if !f.target.starts_with("zone:") {
                        return Err(at(
                            &format!("{base}.target"),
                            format!(
                                "a network fault is between two zones: write `zone:NAME`, not `{}`",
                                f.target
                            ),
                            None,
                        ));
                    }
                    if f.delay.is_none() && f.loss.is_none() {
                        return Err(need("delay", "for example 50ms, and/or `loss`"));
                    }
                }
                if s.zones.len() > 64 || s.clients.len() > 64 {
                    return Err(at(
                        &base,
                        "partitions and network faults support up to 64 zones and 64 client populations".into(),
                        None,
                    ));
                }
            }
            _ => {}
        }
        let takes_factor = matches!(f.kind, FaultKind::Slowdown | FaultKind::ColdStart);
        if f.factor.is_some() && !takes_factor {
            return Err(belongs("factor", "`kind: slowdown` and `kind: cold_start`"));
        }
        if f.rate.is_some() && !matches!(f.kind, FaultKind::Errors | FaultKind::FastFail) {
            return Err(belongs("rate", "`kind: errors` and `kind: fast_fail`"));
        }
        if f.concurrency.is_some() && f.kind != FaultKind::Capacity {
            return Err(belongs("concurrency", "`kind: capacity`"));
        }
        if f.from.is_some() && !matches!(f.kind, FaultKind::Partition | FaultKind::Network) {
            return Err(belongs("from", "`kind: partition` and `kind: network`"));
        }
        for (field, set) in [("delay", f.delay.is_some()), ("loss", f.loss.is_some())] {
            if set && f.kind != FaultKind::Network {
                return Err(belongs(field, "`kind: network`"));
            }
        }
        match (f.every, f.duty) {
            (None, Some(_)) => {
                return Err(at(
                    &format!("{base}.duty"),
                    "`duty` is the on-share of a flapping fault's period: give `every` too".into(),
                    None,
                ));
            }
            (Some(e), duty) => {
                if e.is_zero() {
                    return Err(at(&format!("{base}.every"), "must be > 0".into(), None));
                }
                if let Some(d) = duty
                    && !(d.get() > 0.0 && d.get() < 1.0)
                {
                    return Err(at(
                        &format!("{base}.duty"),
                        format!(
                            "must be strictly between 0 and 1 (the share of each period the fault is on), got {}",
                            d.get()
                        ),
                        None,
                    ));
                }
                if f.kind == FaultKind::ColdStart {
                    return Err(belongs("every", "every kind but `cold_start`"));
                }
                let end = f.until.or(s.duration);
                match end {
                    None => {
                        return Err(at(
                            &format!("{base}.every"),
                            "a flapping fault needs an end: give `until`, or size the run by `duration`".into(),
                            None,
                        ));
                    }
                    Some(end) => {
                        let flaps = end.as_nanos().saturating_sub(f.at.as_nanos()) / e.as_nanos();
                        if flaps >= faults::MAX_FLAPS {
                            return Err(at(
                                &format!("{base}.every"),
                                format!(
                                    "gives {flaps} windows, more than the {} a fault may have",
                                    faults::MAX_FLAPS
                                ),
                                None,
                            ));
                        }
                    }
                }
            }
            (None, None) => {}
        }
        if let Some(d) = s.duration
            && f.at >= d
        {
            warnings.push(format!(
                "faults.{n} starts at {} but arrivals end at {d}: it never acts on a measured request",
                f.at
            ));
        }
    }
    Ok(())
}

/// Checks the membership timeline: targets, each kind's fields, the propagation distribution.
fn check_membership(
    s: &Scenario,
    m: &membership::Membership,
    at: &At<'_>,
) -> Result<(), ScenarioError> {
    use membership::ChangeKind;
    m.propagation
        .validate()
        .map_err(|(f, msg)| at(&format!("membership.propagation.{f}"), msg, None))?;
    for (n, c) in m.changes.iter().enumerate() {
        let base = format!("membership.changes.{n}");
        if c.target.starts_with("zone:") {
            return Err(at(
                &format!("{base}.target"),
                "a membership change names a service or one instance (`service/index`)".into(),
                None,
            ));
        }
        check_fault_target(s, &c.target, &format!("{base}.target"), at)?;
        let kind = match c.change {
            ChangeKind::Scale => "scale",
            ChangeKind::Remove => "remove",
            ChangeKind::Weight => "weight",
            ChangeKind::RollingRestart => "rolling_restart",
        };
        let need = |field: &str, example: &str| {
            at(
                &base,
                format!("`change: {kind}` needs `{field}` ({example})"),
                None,
            )
        };
        let belongs = |field: &str, kinds: &str| {
            at(
                &format!("{base}.{field}"),
                format!("`{field}` belongs to {kinds}, not `change: {kind}`"),
                None,
            )
        };
        let single = c.target.contains('/');
        match c.change {
            ChangeKind::Scale if c.to.is_none() => {
                return Err(need("to", "the instance count after it, for example 14"));
            }
            ChangeKind::Scale if single => {
                return Err(at(
                    &format!("{base}.target"),
                    "`change: scale` names a service, not one instance".into(),
                    None,
                ));
            }
            ChangeKind::Weight if c.weight.is_none() => {
                return Err(need("weight", "for example 5, or 0 for no new traffic"));
            }
            _ => {}
        }
        if c.to.is_some() && c.change != ChangeKind::Scale {
            return Err(belongs("to", "`change: scale`"));
        }
        if c.weight.is_some() && c.change != ChangeKind::Weight {
            return Err(belongs("weight", "`change: weight`"));
        }
        for (field, set) in [
            ("batch", c.batch.is_some()),
            ("down", c.down.is_some()),
            ("pause", c.pause.is_some()),
        ] {
            if set && c.change != ChangeKind::RollingRestart {
                return Err(belongs(field, "`change: rolling_restart`"));
            }
        }
        if c.batch == Some(0) {
            return Err(at(&format!("{base}.batch"), "must be >= 1".into(), None));
        }
        if c.drain.is_some() && c.change == ChangeKind::Weight {
            return Err(belongs("drain", "`scale`, `remove` and `rolling_restart`"));
        }
        if let Some(cold) = &c.cold {
            if !matches!(c.change, ChangeKind::Scale | ChangeKind::RollingRestart) {
                return Err(belongs("cold", "`scale` and `rolling_restart`"));
            }
            if !(cold.factor.is_finite() && cold.factor > 1.0) {
                return Err(at(
                    &format!("{base}.cold.factor"),
                    format!("must be a finite number > 1, got {}", cold.factor),
                    None,
                ));
            }
            if cold.lasts.is_zero() {
                return Err(at(&format!("{base}.cold.for"), "must be > 0".into(), None));
            }
        }
    }
    let plan = s.membership_plan();
    let slots: u64 = plan.slots.values().map(|&n| u64::from(n)).sum();
    if slots > u64::from(membership::MAX_SLOTS) {
        return Err(at(
            "membership.changes",
            format!(
                "the timeline makes {slots} instances in all, more than the {} meshbench allows",
                membership::MAX_SLOTS
            ),
            None,
        ));
    }
    Ok(())
}

/// Checks a fault's `target`: `service`, `service/index` or `zone:NAME`.
fn check_fault_target(
    s: &Scenario,
    target: &str,
    field: &str,
    at: &At<'_>,
) -> Result<(), ScenarioError> {
    if let Some(z) = target.strip_prefix("zone:") {
        return check_zone_name(s, z, field, at);
    }
    let (service, index) = faults::parse_target(target);
    let Some(svc) = s.services.get(service) else {
        return Err(at(
            field,
            format!(
                "no service `{service}`; services: {} (write `service`, `service/index` or `zone:NAME`)",
                s.services.keys().cloned().collect::<Vec<_>>().join(", ")
            ),
            nearest(service, s.services.keys().map(String::as_str)),
        ));
    };
    if let Some(i) = index {
        match i.parse::<u32>() {
            Ok(i) if i < svc.instances => {}
            _ => {
                return Err(at(
                    field,
                    format!(
                        "instance `{i}` does not exist: `{service}` has instances 0..{}",
                        svc.instances
                    ),
                    None,
                ));
            }
        }
    }
    Ok(())
}

impl Scenario {
    /// The fault timeline as the drivers play it (see [`fault_changes`]).
    pub fn fault_changes(&self) -> Vec<FaultChange> {
        fault_changes(&self.fault_plan())
    }

    /// The fault timeline resolved against the services (checked at load time, so every
    /// target exists): each window of each fault (one, or one per period of a flapping fault)
    /// on each run of consecutive instances it names.
    pub fn fault_plan(&self) -> Vec<PlannedFault> {
        let end_ns = self.duration.map_or(u64::MAX, Duration::as_nanos);
        let zone_bit = |z: &str| -> u64 {
            self.zones
                .keys()
                .position(|k| k == z)
                .map_or(0, |i| 1u64 << i.min(63))
        };
        let mut out = Vec::new();
        for f in &self.faults {
            // (instances, effect) pairs: a zone pair's partition or network fault acts on both
            // sides.
            let mut parts: Vec<((String, std::ops::Range<u32>), Effect)> = Vec::new();
            let from_zone = f.from.as_deref().and_then(|x| x.strip_prefix("zone:"));
            let to_zone = f.target.strip_prefix("zone:");
            let effect = match f.kind {
                FaultKind::Crash => Effect::Crash,
                FaultKind::Slowdown => Effect::Slowdown(f.factor.unwrap_or(1.0)),
                FaultKind::Errors => Effect::Errors(f.rate.map_or(0.0, Probability::get)),
                FaultKind::FastFail => Effect::FastFail(f.rate.map_or(1.0, Probability::get)),
                FaultKind::ColdStart => Effect::ColdStart(f.factor.unwrap_or(1.0)),
                FaultKind::Capacity => Effect::Capacity(f.concurrency.unwrap_or(u32::MAX)),
                FaultKind::Partition => match from_zone {
                    Some(z) => Effect::Cut {
                        zones: zone_bit(z),
                        clients: 0,
                    },
                    None => Effect::Cut {
                        zones: 0,
                        clients: f
                            .from
                            .as_deref()
                            .and_then(|c| self.clients.keys().position(|k| k == c))
                            .map_or(0, |i| 1u64 << i.min(63)),
                    },
                },
                FaultKind::Network => Effect::Network {
                    zones: from_zone.map_or(0, zone_bit),
                    delay_ns: f.delay.map_or(0, Duration::as_nanos),
                    loss: f.loss.map_or(0.0, Probability::get),
                },
            };
            for r in self.fault_targets(&f.target) {
                parts.push((r, effect));
            }
            // The reverse direction of a zone pair.
            if let (Some(a), Some(b)) = (from_zone, to_zone)
                && a != b
            {
                let reverse = match effect {
                    Effect::Cut { .. } => Effect::Cut {
                        zones: zone_bit(b),
                        clients: 0,
                    },
                    Effect::Network { delay_ns, loss, .. } => Effect::Network {
                        zones: zone_bit(b),
                        delay_ns,
                        loss,
                    },
                    other => other,
                };
                for r in self.fault_targets(&format!("zone:{a}")) {
                    parts.push((r, reverse));
                }
            }
            for (from_ns, until_ns) in f.windows(end_ns) {
                for ((service, instances), effect) in &parts {
                    out.push(PlannedFault {
                        from_ns,
                        until_ns,
                        service: service.clone(),
                        instances: instances.clone(),
                        effect: *effect,
                    });
                }
            }
        }
        // Instances the membership timeline starts cold.
        for (service, x, from_ns, until_ns, factor) in self.membership_plan().cold {
            out.push(PlannedFault {
                from_ns,
                until_ns,
                service,
                instances: x..x + 1,
                effect: Effect::ColdStart(factor),
            });
        }
        out
    }

    /// The membership timeline's starts and stops as the drivers play them: (ns, station index
    /// in [`workload::stations`] order, serving from then on), by time.
    pub fn presence(&self) -> Vec<(u64, u32, bool)> {
        let plan = self.membership_plan();
        let mut offsets = BTreeMap::new();
        let mut next = 0u32;
        for (name, n) in &plan.slots {
            offsets.insert(name.as_str(), next);
            next += n;
        }
        plan.presence
            .iter()
            .map(|x| (x.at_ns, offsets[x.service.as_str()] + x.instance, x.present))
            .collect()
    }

    /// The membership timeline flattened (empty without `membership:`).
    pub fn membership_plan(&self) -> membership::MembershipPlan {
        let initial: BTreeMap<String, u32> = self
            .services
            .iter()
            .map(|(n, s)| (n.clone(), s.instances))
            .collect();
        match &self.membership {
            Some(m) => membership::MembershipPlan::of(m, &initial, |svc, i| {
                self.services[svc].instance(i).meta()
            }),
            None => membership::MembershipPlan {
                slots: initial,
                ..Default::default()
            },
        }
    }

    /// A fault target's instances: (service, a run of consecutive indices), services in name
    /// order.
    fn fault_targets(&self, target: &str) -> Vec<(String, std::ops::Range<u32>)> {
        if let Some(zone) = target.strip_prefix("zone:") {
            let mut out = Vec::new();
            for (name, svc) in &self.services {
                let mut run: Option<std::ops::Range<u32>> = None;
                for (i, x) in (0..).zip(svc.instances()) {
                    match (&mut run, x.zone == zone) {
                        (Some(r), true) => r.end = i + 1,
                        (None, true) => run = Some(i..i + 1),
                        (Some(_), false) => out.extend(run.take().map(|r| (name.clone(), r))),
                        (None, false) => {}
                    }
                }
                out.extend(run.map(|r| (name.clone(), r)));
            }
            return out;
        }
        let (service, index) = faults::parse_target(target);
        let Some(svc) = self.services.get(service) else {
            return Vec::new();
        };
        let instances = match index.and_then(|i| i.parse::<u32>().ok()) {
            Some(i) => i..i + 1,
            None => 0..svc.instances,
        };
        vec![(service.to_owned(), instances)]
    }
}

/// Merges each strategy over `policy` (mappings merge key by key, anything else replaces) and
/// deserializes the result as a `ClusterConfig`, locating errors in the file. An `upstreams:`
/// mapping (service -> overrides, in `policy` or a strategy) gives the policy for calls to that
/// service: the strategy's merged over by the overrides.
fn merge_strategies(
    s: &Scenario,
    source: &str,
    file: &str,
) -> Result<(Vec<(String, ClusterConfig)>, Upstreams), ScenarioError> {
    let mut out = Vec::new();
    let mut upstreams = Upstreams::new();
    let parse = |name: &str, v: &yaml_serde::Value, prefix: &str| {
        let text = yaml_serde::to_string(v).unwrap_or_default();
        let config: ClusterConfig = yaml_serde::from_str(&text).map_err(|e| {
            let inner = yaml_error(&e, source, file);
            locate_policy_error(
                source,
                file,
                name,
                format!("{prefix}{}", inner.field),
                inner.message,
            )
        })?;
        check_modeled(s, &config)
            .and_then(|()| config.validate())
            .map_err(|e| {
                locate_policy_error(
                    source,
                    file,
                    name,
                    format!("{prefix}{}", e.field),
                    e.message,
                )
            })?;
        Ok::<_, ScenarioError>(config)
    };
    for (key, overrides) in &s.strategies {
        let name = match key {
            yaml_serde::Value::String(n) => n.clone(),
            other => yaml_serde::to_string(other)
                .unwrap_or_default()
                .trim()
                .to_owned(),
        };
        let mut merged = match &s.policy {
            yaml_serde::Value::Null => yaml_serde::Value::Mapping(Default::default()),
            p => p.clone(),
        };
        merge(&mut merged, overrides);
        let ups = match &mut merged {
            yaml_serde::Value::Mapping(m) => m.remove("upstreams"),
            _ => None,
        };
        let config = parse(&name, &merged, "")?;
        if let Some(ups) = ups {
            let yaml_serde::Value::Mapping(ups) = ups else {
                return Err(locate_policy_error(
                    source,
                    file,
                    &name,
                    "upstreams".into(),
                    "must map service names to policy overrides, such as `{leaf: {retry: {max_retries: 0}}}`".into(),
                ));
            };
            let mut mine = BTreeMap::new();
            for (svc, over) in &ups {
                let svc_name = scalar_text(svc);
                if !s.services.contains_key(&svc_name) {
                    let mut e = locate_policy_error(
                        source,
                        file,
                        &name,
                        format!("upstreams.{svc_name}"),
                        format!(
                            "no service `{svc_name}`; services: {}",
                            s.services.keys().cloned().collect::<Vec<_>>().join(", ")
                        ),
                    );
                    e.suggestion = nearest(&svc_name, s.services.keys().map(String::as_str));
                    return Err(e);
                }
                let called = s.clients.values().any(|c| c.target == svc_name)
                    || s.services.values().any(|x| {
                        x.script.iter().any(|st| {
                            st.call.as_ref() == Some(&svc_name)
                                || st.parallel.iter().flatten().any(|c| c.call == svc_name)
                        })
                    });
                if !called {
                    return Err(locate_policy_error(
                        source,
                        file,
                        &name,
                        format!("upstreams.{svc_name}"),
                        format!(
                            "no client or script calls `{svc_name}`, so this policy would change nothing (remove it, or call the service)"
                        ),
                    ));
                }
                let mut m = merged.clone();
                merge(&mut m, over);
                let c = parse(&name, &m, &format!("upstreams.{svc_name}."))?;
                mine.insert(svc_name, c);
            }
            upstreams.insert(name.clone(), mine);
        }
        out.push((name, config));
    }
    Ok((out, upstreams))
}

/// Refuses policy fields that would parse and then change nothing in this scenario: a field
/// either acts in both drivers or the scenario does not load.
fn check_modeled(s: &Scenario, c: &ClusterConfig) -> Result<(), mesh_core::ConfigError> {
    use mesh_core::{BalancerConfig, ConfigError};
    let defaults = mesh_core::breaker::CircuitBreakerConfig::default();
    for (field, set, default) in [
        (
            "max_connections",
            c.circuit_breakers.max_connections,
            defaults.max_connections,
        ),
        (
            "max_pending_requests",
            c.circuit_breakers.max_pending_requests,
            defaults.max_pending_requests,
        ),
    ] {
        if set != default && c.connections.is_none() {
            return Err(ConfigError::new(
                format!("circuit_breakers.{field}"),
                format!(
                    "acts only on connection pools, and this policy has none, so `{field}` would change nothing: set `connections: {{}}` (HTTP/1.1 keep-alive, Envoy's defaults) to model them, or remove it (the default is {default})"
                ),
            ));
        }
    }
    if let Some(z) = &c.zone_aware {
        if !z.local_zone.is_empty() || !z.local_cluster.is_empty() {
            let field = if z.local_zone.is_empty() {
                "local_cluster"
            } else {
                "local_zone"
            };
            return Err(ConfigError::new(
                format!("zone_aware.{field}"),
                "is set from the scenario: each proxy's zone is its client's `zone`, and the local cluster is the client's proxies per zone (remove it)",
            ));
        }
        if s.zones.is_empty() {
            return Err(ConfigError::new(
                "zone_aware",
                "needs zones: add a `zones:` section and give every service and client a `zone`",
            ));
        }
    }
    if let Some(l) = &c.locality_weighted_lb {
        if !l.locality_weights.is_empty() {
            return Err(ConfigError::new(
                "locality_weighted_lb.locality_weights",
                "is set from the scenario: each zone's `weight` under `zones:` (remove it)",
            ));
        }
        if s.zones.is_empty() {
            return Err(ConfigError::new(
                "locality_weighted_lb",
                "needs zones: add a `zones:` section and give every service and client a `zone`",
            ));
        }
    }
    let hashing = matches!(
        c.balancer,
        BalancerConfig::RingHash(_) | BalancerConfig::Maglev(_) | BalancerConfig::BoundedLoad(_)
    );
    let keyed = |c: &Client| {
        c.keys.is_some()
            || matches!(
                &c.arrival,
                Arrival::Trace {
                    key_column: Some(_),
                    ..
                }
            )
    };
    if hashing && let Some((name, _)) = s.clients.iter().find(|(_, c)| !keyed(c)) {
        return Err(ConfigError::new(
            "balancer",
            format!(
                "`{}` hashes request keys, but client `{name}` sends none: give it `keys:` (for example `{{dist: zipf, count: 10000, exponent: 1.1}}`)",
                c.balancer.kind()
            ),
        ));
    }
    Ok(())
}

/// Names a strategy's policy error by where its value was written: the strategy's own section if
/// it sets the field, else `policy`.
fn locate_policy_error(
    source: &str,
    file: &str,
    strategy: &str,
    field: String,
    message: String,
) -> ScenarioError {
    let own = format!("strategies.{strategy}.{field}");
    let path = if field.is_empty() || locate::locate_exact(source, &own).is_some() {
        own
    } else if locate::locate_exact(source, &format!("policy.{field}")).is_some() {
        format!("policy.{field}")
    } else {
        own
    };
    let path = path.trim_end_matches('.').to_owned();
    let (line, column) = locate::locate(source, &path).unzip();
    ScenarioError {
        file: file.to_owned(),
        line,
        column,
        suggestion: suggest_from_message(&message),
        field: path,
        message: format!("{message} (strategy `{strategy}`)"),
    }
}

/// Deep merge; a mapping whose `kind` (or `dist`, `process`) differs replaces the base whole, so
/// switching a balancer's kind drops the old kind's fields.
fn merge(base: &mut yaml_serde::Value, over: &yaml_serde::Value) {
    match (base, over) {
        (yaml_serde::Value::Mapping(b), yaml_serde::Value::Mapping(o))
            if !["kind", "dist", "process"].iter().any(|tag| {
                let t = yaml_serde::Value::String((*tag).to_owned());
                o.get(&t).is_some_and(|v| b.get(&t).is_some_and(|w| w != v))
            }) =>
        {
            for (k, v) in o {
                match b.get_mut(k) {
                    Some(existing) => merge(existing, v),
                    None => {
                        b.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (b, o) => *b = o.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_steps_give_each_segment_its_rate() {
        // 1000/s, 2000/s from 2 s, 500/s from 3 s: over 200 independent clocks (as many
        // proxies' worth of arrivals), each segment's count is its rate x length x 200 within 1%.
        let arrival = Arrival::Poisson {
            rate: "1000/s".parse().unwrap(),
            steps: vec![
                RateStep {
                    at: Duration::from_secs(2),
                    rate: "2000/s".parse().unwrap(),
                    ramp: false,
                },
                RateStep {
                    at: Duration::from_secs(3),
                    rate: "500/s".parse().unwrap(),
                    ramp: false,
                },
            ],
        };
        let mut counts = [0u64; 4];
        for run in 0..200u64 {
            let mut clock = ArrivalClock::new(&arrival, 1);
            let mut t = 0;
            let mut i = 0;
            loop {
                t = clock.next(t, crn_uniform(run, i, 0, Lane::Service));
                i += 1;
                if t >= 4_000_000_000 {
                    break;
                }
                counts[(t / 1_000_000_000) as usize] += 1;
            }
        }
        for (got, want) in counts.iter().zip([1000.0, 1000.0, 2000.0, 500.0]) {
            let want = want * 200.0;
            assert!((*got as f64 - want).abs() < 0.01 * want, "{counts:?}");
        }
        // A ramp from 1000/s at 1 s to 3000/s at 3 s, then down to 1000/s by 4 s: the second
        // second holds 1500/s on average, the third 2500/s, the fourth 2000/s.
        let step = |at: u64, rate: &str, ramp: bool| RateStep {
            at: Duration::from_secs(at),
            rate: rate.parse().unwrap(),
            ramp,
        };
        let ramped = Arrival::Poisson {
            rate: "1000/s".parse().unwrap(),
            steps: vec![
                step(1, "1000/s", false),
                step(3, "3000/s", true),
                step(4, "1000/s", true),
            ],
        };
        let mut counts = [0u64; 5];
        for run in 0..200u64 {
            let mut clock = ArrivalClock::new(&ramped, 1);
            let (mut t, mut i) = (0, 0);
            loop {
                t = clock.next(t, crn_uniform(run, i, 0, Lane::Service));
                i += 1;
                if t >= 5_000_000_000 {
                    break;
                }
                counts[(t / 1_000_000_000) as usize] += 1;
            }
        }
        for (got, want) in counts.iter().zip([1000.0, 1500.0, 2500.0, 2000.0, 1000.0]) {
            let want = want * 200.0;
            assert!((*got as f64 - want).abs() < 0.01 * want, "{counts:?}");
        }
    }
}

#[cfg(test)]
mod graph_tests {
    const BASE: &str = "name: g
requests: 100
strategies:
  rr: { balancer: { kind: round_robin } }
services:
  a:
    instances: 2
    service_time: { dist: constant, value: 1ms }
    script: [{ call: b }]
  b:
    instances: 2
    service_time: { dist: constant, value: 1ms }
    script: SCRIPT
clients:
  load: { target: a, arrival: { process: poisson, rate: 100/s } }
";

    fn error(script: &str, extra: &str) -> super::ScenarioError {
        let text = BASE.replace("SCRIPT", script).replace(
            "strategies:\n  rr: { balancer: { kind: round_robin } }",
            &format!("strategies:\n  rr: {{ balancer: {{ kind: round_robin }}{extra} }}"),
        );
        super::parse(&text, "g.yaml", std::path::Path::new("."))
            .expect_err("the scenario must be refused")
    }

    #[test]
    fn call_graph_mistakes_are_refused_where_they_are_written() {
        let ok = BASE.replace("SCRIPT", "[]");
        let loaded = super::parse(&ok, "g.yaml", std::path::Path::new(".")).expect("loads");
        assert_eq!(loaded.points[0].upstreams.len(), 0);

        let e = error("[{ call: a }]", "");
        assert_eq!(e.field, "services.a.script");
        assert!(e.message.contains("cycle: a -> b -> a"), "{}", e.message);
        assert_eq!(e.line, Some(9), "the line of `a`'s script");

        let e = error("[{ call: c }]", "");
        assert_eq!(e.field, "services.b.script.0.call");
        assert!(e.message.contains("no service `c`"), "{}", e.message);

        let e = error("[{ parallel: [{ call: c2 }] }]", "");
        assert_eq!(e.field, "services.b.script.0.parallel.0.call");

        let e = error("[{ parallel: [{ call: a }], wait: 2 }]", "");
        assert_eq!(e.field, "services.b.script.0.wait");
        assert!(e.message.contains("waits for 2 calls"), "{}", e.message);

        let e = error("[{ compute: { dist: constant, value: 1ms }, call: a }]", "");
        assert!(e.message.contains("exactly one of"), "{}", e.message);

        let e = error("[{ colal: a }]", "");
        assert_eq!(e.suggestion.as_deref(), Some("call"), "{e}");

        // Per-upstream policy: a service that exists and is called.
        let e = error("[]", ", upstreams: { bb: { timeout: 1s } }");
        assert_eq!(e.field, "strategies.rr.upstreams.bb");
        assert_eq!(e.suggestion.as_deref(), Some("b"));
        let mut text = BASE.replace("SCRIPT", "[]");
        text = text.replace("script: [{ call: b }]", "script: []");
        text = text.replace(
            "kind: round_robin } }",
            "kind: round_robin }, upstreams: { b: { timeout: 1s } } }",
        );
        let e = super::parse(&text, "g.yaml", std::path::Path::new(".")).unwrap_err();
        assert!(
            e.message.contains("no client or script calls `b`"),
            "{}",
            e.message
        );
        let fine = BASE.replace("SCRIPT", "[]").replace(
            "kind: round_robin } }",
            "kind: round_robin }, upstreams: { b: { timeout: 1s } } }",
        );
        let loaded = super::parse(&fine, "g.yaml", std::path::Path::new(".")).expect("loads");
        let pt = &loaded.points[0];
        assert_eq!(pt.policy_for(0, "b").timeout.as_nanos(), 1_000_000_000);
        assert_ne!(pt.policy_for(0, "a").timeout, pt.policy_for(0, "b").timeout);
    }
}
