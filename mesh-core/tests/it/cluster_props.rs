//! Property tests of the `Cluster` contract: random arrivals, attempt ends with random
//! outcomes, probe results, membership changes and time steps, over many seeds and configs.
//! Also record-and-replay of such runs.

use std::collections::BTreeMap;

use mesh_core::accrual::AccrualEvent;
use mesh_core::health::{ProbeRequest, ProbeResult};
use mesh_core::outlier::OutlierEvent;
use mesh_core::trace::{Trace, replay};
use mesh_core::{
    AttemptId, Change, Cluster, ClusterConfig, Duration, EndpointId, EndpointMeta, Health, Input,
    Instant, Outcome, Output, PolicyEvent, RequestId, Seed,
};
use proptest::prelude::*;

/// The knobs a generated config is built from.
#[derive(Clone, Debug)]
struct Knobs {
    balancer: u8,
    outlier: Option<(u32, bool)>,
    health_check: bool,
    accrual: bool,
    retries: Option<(u32, bool, u8, bool)>,
    hedging: bool,
    timeout_ms: u32,
    hosts: Vec<(u32, bool)>,
    zone_aware: bool,
}

fn knobs() -> impl Strategy<Value = Knobs> {
    (
        0u8..6,
        prop::option::of((
            prop::sample::select(vec![0u32, 10, 34, 50, 100]),
            any::<bool>(),
        )),
        any::<bool>(),
        any::<bool>(),
        prop::option::of((0u32..4, any::<bool>(), 0u8..4, any::<bool>())),
        any::<bool>(),
        prop::sample::select(vec![300u32, 1000]),
        prop::collection::vec((0u32..3, prop::bool::weighted(0.85)), 1..12),
        any::<bool>(),
    )
        .prop_map(
            |(
                balancer,
                outlier,
                health_check,
                accrual,
                retries,
                hedging,
                timeout_ms,
                hosts,
                zone_aware,
            )| {
                Knobs {
                    balancer,
                    outlier,
                    health_check,
                    accrual,
                    retries,
                    hedging,
                    timeout_ms,
                    hosts,
                    zone_aware,
                }
            },
        )
}

fn config(k: &Knobs) -> ClusterConfig {
    let balancer = [
        r#"{"kind":"round_robin"}"#,
        r#"{"kind":"least_request"}"#,
        r#"{"kind":"random"}"#,
        r#"{"kind":"ring_hash","minimum_ring_size":64}"#,
        r#"{"kind":"peak_ewma"}"#,
        r#"{"kind":"maglev","table_size":251}"#,
    ][k.balancer as usize];
    let mut parts = vec![
        format!(r#""balancer": {balancer}"#),
        format!(r#""timeout": "{}ms""#, k.timeout_ms),
    ];
    if let Some((pct, one)) = k.outlier {
        parts.push(format!(
            r#""outlier_detection": {{"consecutive_5xx": 3, "interval": "1s", "base_ejection_time": "2s",
                "max_ejection_percent": {pct}, "always_eject_one_host": {one},
                "success_rate_minimum_hosts": 2, "success_rate_request_volume": 5,
                "enforcing_failure_percentage": 100, "failure_percentage_minimum_hosts": 2,
                "failure_percentage_request_volume": 5, "failure_percentage_threshold": 50}}"#
        ));
    }
    if k.health_check {
        parts.push(
            r#""health_check": {"timeout": "100ms", "interval": "500ms", "unhealthy_threshold": 2,
                "healthy_threshold": 2, "no_traffic_interval": "1s", "interval_jitter": "50ms"}"#
                .into(),
        );
    }
    if k.accrual {
        parts.push(
            r#""failure_accrual": {"consecutive_failures": 3, "min_penalty": "200ms", "max_penalty": "2s"}"#
                .into(),
        );
    }
    if let Some((n, per_try, budget, previous)) = k.retries {
        let budget = [
            "null",
            r#"{"kind": "envoy"}"#,
            r#"{"kind": "tps", "retry_ratio": 0.2, "min_retries_per_second": 1}"#,
            r#"{"kind": "grpc_throttle", "max_tokens": 10, "token_ratio": 0.5}"#,
        ][budget as usize];
        let per_try = if per_try {
            r#", "per_try_timeout": "60ms""#
        } else {
            ""
        };
        let predicate = if previous {
            r#"["previous_hosts"]"#
        } else {
            "[]"
        };
        parts.push(format!(
            r#""retries": {{"num_retries": {n}, "retry_on": ["5xx"], "budget": {budget},
                "retry_host_predicate": {predicate}, "backoff": {{"kind": "envoy", "base_interval": "5ms"}}{per_try}}}"#
        ));
        if k.hedging && n > 0 {
            parts.push(r#""hedging": {"hedging_delay": "30ms"}"#.into());
        }
    }
    if k.zone_aware {
        parts.push(
            r#""zone_aware": {"local_zone": "z0", "local_cluster": {"z0": 3, "z1": 1}, "min_cluster_size": 2}"#
                .into(),
        );
    }
    let json = format!("{{{}}}", parts.join(", "));
    serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}: {json}"))
}

fn endpoints(k: &Knobs) -> Vec<EndpointMeta> {
    k.hosts
        .iter()
        .enumerate()
        .map(|(i, &(priority, healthy))| EndpointMeta {
            priority,
            zone: format!("z{}", i % 2),
            health: if healthy {
                Health::Healthy
            } else {
                Health::Unhealthy
            },
            ..EndpointMeta::default()
        })
        .collect()
}

#[derive(Clone, Debug)]
enum Op {
    Arrive(Option<u64>),
    Done(usize, u8),
    Probe(usize, u8),
    Change(u32, u8, u32),
    Advance(u32),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => prop::option::of(any::<u64>()).prop_map(Op::Arrive),
        4 => (any::<usize>(), 0u8..10).prop_map(|(i, o)| Op::Done(i, o)),
        1 => (any::<usize>(), 0u8..3).prop_map(|(i, r)| Op::Probe(i, r)),
        1 => (0u32..14, 0u8..6, 0u32..4).prop_map(|(e, c, v)| Op::Change(e, c, v)),
        3 => (0u32..400).prop_map(Op::Advance),
    ]
}

fn outcome(o: u8) -> Outcome {
    match o {
        0..=4 => Outcome::Success,
        5 => Outcome::ServerError,
        6 => Outcome::GatewayError,
        7 => Outcome::LocalError,
        _ => Outcome::Timeout,
    }
}

/// What the checker knows about each endpoint, from the inputs it gave and the events it saw.
#[derive(Clone, Debug, Default)]
struct EpState {
    present: bool,
    priority: u32,
    weight: u32,
    health: Health,
    ejected: bool,
    hc_failed: bool,
    accrual_open: bool,
}

/// The checker: everything it knows, from the inputs it gave and the outputs it saw.
struct Checker {
    state: Vec<EpState>,
    panic: [bool; 4],
    live: BTreeMap<RequestId, u32>,
    in_flight: Vec<(AttemptId, EndpointId)>,
    probes: Vec<ProbeRequest>,
    log: Vec<(Instant, Output)>,
    now: Instant,
    max_attempts: u32,
    outlier_pct: u32,
    always_one: bool,
}

impl Checker {
    /// Drains every output, checking each against the invariants.
    fn drain(&mut self, c: &mut Cluster) {
        while let Some(o) = c.poll_output() {
            match &o {
                Output::Send {
                    attempt,
                    request,
                    endpoint,
                    ..
                } => {
                    let n = self
                        .live
                        .get_mut(request)
                        .expect("a send for a live request");
                    *n += 1;
                    assert!(*n <= self.max_attempts, "attempts {n} > 1 + num_retries");
                    let s = &self.state[endpoint.index()];
                    assert!(
                        s.present && s.weight > 0,
                        "send to absent or weight-0 {endpoint}"
                    );
                    assert_ne!(s.health, Health::Draining, "send to draining {endpoint}");
                    if !self.panic[s.priority as usize] {
                        assert!(!s.ejected, "send to ejected {endpoint} outside panic");
                        assert!(!s.hc_failed, "send to HC-failed {endpoint} outside panic");
                        assert!(
                            !s.accrual_open,
                            "send to open breaker {endpoint} outside panic"
                        );
                        assert!(
                            matches!(s.health, Health::Healthy | Health::Degraded),
                            "send to unhealthy {endpoint} outside panic"
                        );
                    }
                    self.in_flight.push((*attempt, *endpoint));
                }
                Output::Connect { .. } | Output::Disconnect { .. } => {
                    panic!("a connection output without connection pools")
                }
                Output::Cancel { attempt, .. } => {
                    let i = self
                        .in_flight
                        .iter()
                        .position(|(a, _)| a == attempt)
                        .expect("cancel of an attempt in flight");
                    self.in_flight.swap_remove(i);
                }
                Output::Finished {
                    request, attempts, ..
                } => {
                    let n = self.live.remove(request).expect("finished exactly once");
                    assert_eq!(n, *attempts);
                }
                Output::Probe(p) => self.probes.push(*p),
                Output::BalancerProbe { .. } => {}
                Output::Event(e) => self.event(c, e),
            }
            self.log.push((self.now, o));
        }
        assert_eq!(
            c.active_attempts(),
            self.in_flight.len() as u64,
            "in-flight count"
        );
        assert_eq!(c.live_requests(), self.live.len() as u64);
        if let Some(o) = c.outlier() {
            let ejected = self.state.iter().filter(|s| s.present && s.ejected).count();
            assert_eq!(
                ejected as u32,
                o.ejected_count(),
                "ejection events match the state"
            );
        }
    }

    fn event(&mut self, c: &Cluster, e: &PolicyEvent) {
        match e {
            PolicyEvent::Outlier(OutlierEvent::Ejected { endpoint, .. }) => {
                self.state[endpoint.index()].ejected = true;
                let ejected = self.state.iter().filter(|s| s.present && s.ejected).count() as u32;
                let hosts = c.outlier().unwrap().host_count();
                assert!(
                    ejected * 100 <= self.outlier_pct * hosts || (self.always_one && ejected == 1),
                    "{ejected} of {hosts} ejected, max {}%",
                    self.outlier_pct
                );
            }
            PolicyEvent::Outlier(OutlierEvent::Unejected { endpoint }) => {
                self.state[endpoint.index()].ejected = false;
            }
            PolicyEvent::HealthChanged { endpoint, healthy } => {
                self.state[endpoint.index()].hc_failed = !healthy;
            }
            PolicyEvent::Accrual(AccrualEvent::Opened { endpoint, .. }) => {
                self.state[endpoint.index()].accrual_open = true;
            }
            PolicyEvent::Accrual(
                AccrualEvent::Probation { endpoint } | AccrualEvent::Closed { endpoint },
            ) => self.state[endpoint.index()].accrual_open = false,
            PolicyEvent::Panic { priority, entered } => self.panic[*priority as usize] = *entered,
            _ => {}
        }
    }

    /// Runs every timer up to `to`, in order.
    fn advance(&mut self, c: &mut Cluster, to: Instant) {
        while let Some(t) = c.poll_timeout() {
            if t > to {
                break;
            }
            self.now = self.now.max(t);
            c.handle_timeout(self.now);
            assert!(
                c.poll_timeout().is_none_or(|t| t > self.now),
                "poll_timeout in the past"
            );
            self.drain(c);
        }
        self.now = self.now.max(to);
    }
}

/// Drives a cluster through `ops`, checking every invariant as it goes; returns the outputs.
fn run(k: &Knobs, ops: &[Op], seed: u64, record: bool) -> (Vec<(Instant, Output)>, Option<Trace>) {
    let config = config(k);
    let eps = endpoints(k);
    let mut c = Cluster::new(&config, &eps, Seed::new(seed), Instant::EPOCH).expect("valid");
    if record {
        c.start_recording();
    }
    let (outlier_pct, always_one) = k.outlier.unwrap_or((100, false));
    let mut state: Vec<EpState> = eps
        .iter()
        .map(|m| EpState {
            present: true,
            priority: m.priority,
            weight: m.weight,
            health: m.health,
            hc_failed: k.health_check,
            ..EpState::default()
        })
        .collect();
    state.resize(16, EpState::default());
    let mut ck = Checker {
        state,
        panic: [false; 4],
        live: BTreeMap::new(),
        in_flight: Vec::new(),
        probes: Vec::new(),
        log: Vec::new(),
        now: Instant::EPOCH,
        max_attempts: 1 + config.retries.as_ref().map_or(0, |r| r.num_retries),
        outlier_pct,
        always_one,
    };
    ck.drain(&mut c);
    let mut next_id = 0u64;
    for op in ops {
        let now = ck.now;
        match *op {
            Op::Arrive(hash) => {
                let id = RequestId(next_id);
                next_id += 1;
                ck.live.insert(id, 0);
                c.handle_input(Input::Request { request: id, hash }, now);
            }
            Op::Done(i, o) => {
                if !ck.in_flight.is_empty() {
                    let n = ck.in_flight.len();
                    let (attempt, _) = ck.in_flight.swap_remove(i % n);
                    c.handle_input(
                        Input::AttemptDone {
                            attempt,
                            outcome: outcome(o),
                            load: None,
                        },
                        now,
                    );
                }
            }
            Op::Probe(i, r) => {
                if !ck.probes.is_empty() {
                    let n = ck.probes.len();
                    let p = ck.probes.swap_remove(i % n);
                    let result =
                        [ProbeResult::Pass, ProbeResult::Fail, ProbeResult::Error][r as usize];
                    c.handle_input(
                        Input::ProbeDone {
                            probe: p.probe,
                            endpoint: p.endpoint,
                            result,
                        },
                        now,
                    );
                }
            }
            Op::Change(e, kind, v) => {
                let endpoint = EndpointId(e);
                let change = match kind {
                    0 => Change::Add {
                        endpoint,
                        meta: EndpointMeta {
                            priority: v % 3,
                            ..EndpointMeta::default()
                        },
                    },
                    1 => Change::Remove { endpoint },
                    2 => Change::Weight {
                        endpoint,
                        weight: v,
                    },
                    3 => Change::Health {
                        endpoint,
                        health: [
                            Health::Healthy,
                            Health::Degraded,
                            Health::Unhealthy,
                            Health::Draining,
                        ][v as usize],
                    },
                    4 => Change::Priority {
                        endpoint,
                        priority: v % 3,
                    },
                    _ => Change::Zone {
                        endpoint,
                        zone: format!("z{v}"),
                    },
                };
                let s = &mut ck.state[e as usize];
                match &change {
                    Change::Add { meta, .. } => {
                        if !s.present {
                            *s = EpState {
                                present: true,
                                hc_failed: k.health_check,
                                ..EpState::default()
                            };
                        }
                        s.priority = meta.priority;
                        s.weight = meta.weight;
                        s.health = meta.health;
                    }
                    Change::Remove { .. } => *s = EpState::default(),
                    Change::Weight { weight, .. } if s.present => s.weight = *weight,
                    Change::Health { health, .. } if s.present => s.health = *health,
                    Change::Priority { priority, .. } if s.present => s.priority = *priority,
                    _ => {}
                }
                c.handle_input(Input::Membership(change), now);
            }
            Op::Advance(dt) => {
                let to = now + Duration::from_millis(u64::from(dt));
                ck.advance(&mut c, to);
            }
        }
        ck.drain(&mut c);
    }
    // Let every request run out: each ends by its timeout at the latest.
    let end = ck.now + Duration::from_secs(10);
    ck.advance(&mut c, end);
    assert!(ck.live.is_empty(), "requests never finished: {:?}", ck.live);
    assert!(ck.in_flight.is_empty());
    let trace = record.then(|| c.take_trace());
    (ck.log, trace)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(384))]

    #[test]
    fn cluster_invariants_hold(k in knobs(), ops in prop::collection::vec(op(), 1..300), seed in any::<u64>()) {
        run(&k, &ops, seed, false);
    }

    #[test]
    fn a_recorded_run_replays_to_identical_outputs(k in knobs(), ops in prop::collection::vec(op(), 1..200), seed in any::<u64>()) {
        let (outputs, trace) = run(&k, &ops, seed, true);
        let trace = trace.expect("recorded");
        // Through JSON, as a trace file would go.
        let json = serde_json::to_string(&trace).expect("serializable");
        let back: Trace = serde_json::from_str(&json).expect("deserializable");
        prop_assert_eq!(&back, &trace);
        let replayed = replay(&back).expect("valid config");
        prop_assert_eq!(replayed, outputs);
    }
}

#[test]
fn the_same_inputs_give_the_same_outputs_and_another_seed_differs() {
    let k = Knobs {
        balancer: 2,
        outlier: Some((50, false)),
        health_check: true,
        accrual: true,
        retries: Some((2, true, 2, true)),
        hedging: true,
        timeout_ms: 1000,
        hosts: vec![(0, true); 8],
        zone_aware: true,
    };
    let ops: Vec<Op> = (0..3000u32)
        .map(|i| match i % 5 {
            0 | 1 => Op::Arrive(None),
            2 => Op::Done(i as usize * 7, (i % 10) as u8),
            3 => Op::Probe(i as usize, (i % 3) as u8),
            _ => Op::Advance(i % 37),
        })
        .collect();
    let a = run(&k, &ops, 1, false).0;
    let b = run(&k, &ops, 1, false).0;
    let c = run(&k, &ops, 2, false).0;
    assert_eq!(a, b);
    assert_ne!(a, c);
}
