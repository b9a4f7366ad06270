//! `Cluster` behaviour in virtual time: breakers, retries, timeouts, hedging, budgets,
//! ejection, health, failover and panic, failure accrual, discovery.

use mesh_core::accrual::AccrualEvent;
use mesh_core::breaker::{BreakerEvent, Resource};
use mesh_core::health::ProbeResult;
use mesh_core::outlier::OutlierEvent;
use mesh_core::{
    Change, EndpointId, EndpointMeta, Finish, Health, Input, Outcome, Output, PolicyEvent,
};

use crate::harness::{Harness, finished, ms, sends};

#[test]
fn the_1025th_concurrent_request_is_rejected_with_default_thresholds() {
    let mut h = Harness::new("{}", 4);
    let mut attempts = Vec::new();
    for _ in 0..1024 {
        let (_, out) = h.request();
        let s = sends(&out);
        assert_eq!(s.len(), 1);
        attempts.push(s[0].0);
    }
    let (id, out) = h.request();
    assert_eq!(sends(&out), []);
    assert_eq!(finished(&out), Some((id, Finish::Overflow, 0)));
    assert!(h.events().iter().any(|(_, e)| *e
        == PolicyEvent::Breaker(BreakerEvent {
            resource: Resource::Requests,
            open: true
        })));
    // One finishes: the breaker closes and the next request goes out.
    let out = h.done(attempts[0], Outcome::Success);
    assert!(
        out.contains(&Output::Event(PolicyEvent::Breaker(BreakerEvent {
            resource: Resource::Requests,
            open: false
        })))
    );
    let (_, out) = h.request();
    assert_eq!(sends(&out).len(), 1);
}

#[test]
fn retries_avoid_previous_hosts_and_stop_at_num_retries() {
    let cfg = r#"{"balancer": {"kind": "random"},
        "retries": {"num_retries": 2, "retry_on": ["5xx"], "backoff": {"kind": "none"},
                    "retry_host_predicate": ["previous_hosts"], "host_selection_retry_max_attempts": 64}}"#;
    let mut h = Harness::new(cfg, 3);
    // Up to 64 re-picks per retry: a repeat has odds below (2/3)^65, about 4e-12.
    for _ in 0..200 {
        let (eps, finish) = h.round_trip(Outcome::ServerError);
        assert_eq!(finish, Finish::Response(Outcome::ServerError));
        assert_eq!(eps.len(), 3, "1 + num_retries attempts");
        let mut distinct = eps.clone();
        distinct.sort();
        distinct.dedup();
        assert_eq!(distinct.len(), 3, "previous_hosts: {eps:?}");
    }
    // Without the predicate a random balancer repeats hosts.
    let cfg = r#"{"balancer": {"kind": "random"},
        "retries": {"num_retries": 2, "retry_on": ["5xx"], "backoff": {"kind": "none"}}}"#;
    let mut h = Harness::new(cfg, 3);
    let repeats = (0..200)
        .filter(|_| {
            let mut eps = h.round_trip(Outcome::ServerError).0;
            eps.sort();
            eps.dedup();
            eps.len() < 3
        })
        .count();
    assert!(repeats > 100, "{repeats} of 200 requests repeated a host");
}

#[test]
fn only_retry_on_classes_are_retried() {
    let cfg = r#"{"retries": {"num_retries": 3, "retry_on": ["connect-failure"], "backoff": {"kind": "none"}}}"#;
    let mut h = Harness::new(cfg, 3);
    let (eps, finish) = h.round_trip(Outcome::ServerError);
    assert_eq!(
        (eps.len(), finish),
        (1, Finish::Response(Outcome::ServerError))
    );
    let (eps, finish) = h.round_trip(Outcome::LocalError);
    assert_eq!(
        (eps.len(), finish),
        (4, Finish::Response(Outcome::LocalError))
    );
    // gateway-error covers 503 but not 500.
    let cfg = r#"{"retries": {"num_retries": 1, "retry_on": ["gateway-error"], "backoff": {"kind": "none"}}}"#;
    let mut h = Harness::new(cfg, 3);
    assert_eq!(h.round_trip(Outcome::GatewayError).0.len(), 2);
    assert_eq!(h.round_trip(Outcome::ServerError).0.len(), 1);
}

#[test]
fn the_request_timeout_spans_per_try_timeouts_and_retries() {
    let cfg = r#"{"timeout": "100ms",
        "retries": {"num_retries": 5, "per_try_timeout": "40ms", "backoff": {"kind": "none"}}}"#;
    let mut h = Harness::new(cfg, 3);
    let (id, out) = h.request();
    assert_eq!(sends(&out).len(), 1);
    h.run_until(ms(200));
    let sent: Vec<_> = h
        .out
        .iter()
        .filter(|(_, o)| matches!(o, Output::Send { .. }))
        .map(|(t, _)| *t)
        .collect();
    assert_eq!(
        sent,
        [ms(0), ms(40), ms(80)],
        "a retry at each per-try timeout"
    );
    let cancels = h
        .out
        .iter()
        .filter(|(_, o)| matches!(o, Output::Cancel { .. }))
        .count();
    assert_eq!(
        cancels, 3,
        "two per-try timeouts and the last attempt at the deadline"
    );
    let fin: Vec<_> = h
        .out
        .iter()
        .filter_map(|(t, o)| match o {
            Output::Finished {
                request,
                result,
                attempts,
                ..
            } => Some((*t, *request, *result, *attempts)),
            _ => None,
        })
        .collect();
    assert_eq!(fin, [(ms(100), id, Finish::Timeout, 3)]);
    assert_eq!(h.cluster.active_attempts(), 0);
}

#[test]
fn a_per_try_timeout_not_shorter_than_the_request_timeout_is_ignored() {
    let cfg = r#"{"timeout": "100ms", "retries": {"num_retries": 5, "per_try_timeout": "100ms"}}"#;
    let mut h = Harness::new(cfg, 3);
    h.request();
    h.run_until(ms(300));
    let sent = h
        .out
        .iter()
        .filter(|(_, o)| matches!(o, Output::Send { .. }))
        .count();
    assert_eq!(sent, 1);
}

#[test]
fn a_hedged_request_completes_at_the_faster_attempt_and_cancels_the_other() {
    let cfg = r#"{"retries": {"num_retries": 1, "backoff": {"kind": "none"}},
                  "hedging": {"hedging_delay": "10ms"}}"#;
    let mut h = Harness::new(cfg, 2);
    let (id, out) = h.request();
    let first = sends(&out)[0];
    h.run_until(ms(10));
    let hedge: Vec<_> = h
        .out
        .iter()
        .filter_map(|(t, o)| match o {
            Output::Send {
                attempt, retry: 1, ..
            } => Some((*t, *attempt)),
            _ => None,
        })
        .collect();
    assert_eq!(hedge.len(), 1);
    assert_eq!(hedge[0].0, ms(10), "hedge after the delay");
    assert!(
        h.events()
            .iter()
            .any(|(_, e)| matches!(e, PolicyEvent::HedgeSent { request, .. } if *request == id))
    );
    // The hedge answers first, at 15 ms.
    h.run_until(ms(15));
    let out = h.done(hedge[0].1, Outcome::Success);
    assert_eq!(
        finished(&out),
        Some((id, Finish::Response(Outcome::Success), 2))
    );
    assert!(
        out.iter()
            .any(|o| matches!(o, Output::Cancel { attempt, .. } if *attempt == first.0))
    );
    let t_fin = h
        .out
        .iter()
        .find(|(_, o)| matches!(o, Output::Finished { .. }))
        .unwrap()
        .0;
    assert_eq!(t_fin, ms(15));
    // The slow attempt's late answer is ignored.
    h.run_until(ms(50));
    assert!(h.done(first.0, Outcome::Success).is_empty());
    assert_eq!(h.cluster.active_attempts(), 0);
    assert_eq!(h.cluster.live_requests(), 0);
}

#[test]
fn hedge_on_per_try_timeout_keeps_the_first_attempt() {
    let cfg = r#"{"retries": {"num_retries": 2, "per_try_timeout": "20ms", "backoff": {"kind": "none"}},
                  "hedging": {"hedge_on_per_try_timeout": true}}"#;
    let mut h = Harness::new(cfg, 3);
    let (id, out) = h.request();
    let first = sends(&out)[0].0;
    h.run_until(ms(20));
    assert!(
        !h.out
            .iter()
            .any(|(_, o)| matches!(o, Output::Cancel { .. })),
        "no cancel"
    );
    let second: Vec<_> = h
        .out
        .iter()
        .filter_map(|(_, o)| match o {
            Output::Send {
                attempt, retry: 1, ..
            } => Some(*attempt),
            _ => None,
        })
        .collect();
    assert_eq!(second.len(), 1);
    // The first attempt answers after all and wins.
    h.run_until(ms(25));
    let out = h.done(first, Outcome::Success);
    assert_eq!(
        finished(&out),
        Some((id, Finish::Response(Outcome::Success), 2))
    );
    assert!(
        out.iter()
            .any(|o| matches!(o, Output::Cancel { attempt, .. } if *attempt == second[0]))
    );
}

#[test]
fn a_tps_budget_caps_retries_across_requests() {
    let cfg = r#"{"retries": {"num_retries": 1, "backoff": {"kind": "none"},
                  "budget": {"kind": "tps", "retry_ratio": 0.2, "min_retries_per_second": 0}}}"#;
    let mut h = Harness::new(cfg, 4);
    let mut attempts = Vec::new();
    for _ in 0..10 {
        attempts.push(sends(&h.request().1)[0].0);
    }
    let mut retries = 0;
    for a in attempts {
        let out = h.done(a, Outcome::ServerError);
        retries += sends(&out).len();
    }
    assert_eq!(retries, 2, "10 deposits at 0.2 buy 2 retries");
    let exhausted = h
        .events()
        .iter()
        .filter(|(_, e)| matches!(e, PolicyEvent::BudgetExhausted { .. }))
        .count();
    assert_eq!(exhausted, 8);
}

#[test]
fn max_retries_breaker_limits_outstanding_retries_without_a_budget() {
    let cfg = r#"{"retries": {"num_retries": 1, "backoff": {"kind": "none"}}}"#;
    let mut h = Harness::new(cfg, 4);
    let firsts: Vec<_> = (0..10).map(|_| sends(&h.request().1)[0].0).collect();
    let retries: usize = firsts
        .into_iter()
        .map(|a| sends(&h.done(a, Outcome::ServerError)).len())
        .sum();
    assert_eq!(retries, 3, "Envoy's default max_retries 3");
}

#[test]
fn outlier_ejection_takes_the_host_out_of_picks_and_brings_it_back() {
    let cfg = r#"{"outlier_detection": {"max_ejection_percent": 100}}"#;
    let mut h = Harness::new(cfg, 4);
    // Round robin: fail every attempt to endpoint 2 until it is ejected.
    let mut t = 0;
    loop {
        h.run_until(ms(t));
        t += 1;
        let (_, out) = h.request();
        let (a, ep, _) = sends(&out)[0];
        let outcome = if ep == EndpointId(2) {
            Outcome::ServerError
        } else {
            Outcome::Success
        };
        h.done(a, outcome);
        if h.cluster.outlier().unwrap().is_ejected(EndpointId(2)) {
            break;
        }
    }
    let ejected_at = h.now;
    let back_at = ms(10_000 * (ejected_at.as_nanos() / 10_000_000_000 + 4));
    // Until the sweep after base_ejection_time, endpoint 2 gets nothing.
    while h.now < back_at {
        let (_, out) = h.request();
        let (a, ep, _) = sends(&out)[0];
        assert_ne!(ep, EndpointId(2), "ejected host picked at {:?}", h.now);
        h.done(a, Outcome::Success);
        h.run_until(h.now + mesh_core::Duration::from_millis(97));
    }
    h.run_until(back_at);
    assert!(h.events().iter().any(|(_, e)| *e
        == PolicyEvent::Outlier(OutlierEvent::Unejected {
            endpoint: EndpointId(2)
        })));
    let picked: Vec<_> = (0..8)
        .map(|_| {
            let (_, out) = h.request();
            let (a, ep, _) = sends(&out)[0];
            h.done(a, Outcome::Success);
            ep
        })
        .collect();
    assert!(
        picked.contains(&EndpointId(2)),
        "back in rotation: {picked:?}"
    );
}

#[test]
fn active_health_checks_gate_traffic_and_a_pass_unejects() {
    let cfg = r#"{"health_check": {"timeout": "1s", "interval": "5s", "unhealthy_threshold": 2, "healthy_threshold": 2,
                                   "no_traffic_interval": "5s"},
                  "outlier_detection": {"max_ejection_percent": 100}}"#;
    let mut h = Harness::new(cfg, 2);
    h.run_until(ms(0));
    // Before any probe answers, no host passes: panic (0% healthy) spreads traffic anyway.
    let probes: Vec<_> = h
        .out
        .iter()
        .filter_map(|(_, o)| match o {
            Output::Probe(p) => Some(*p),
            _ => None,
        })
        .collect();
    assert_eq!(probes.len(), 2, "one probe per host at start");
    assert!(h.events().iter().any(|(_, e)| *e
        == PolicyEvent::Panic {
            priority: 0,
            entered: true
        }));
    for p in &probes {
        h.input(Input::ProbeDone {
            probe: p.probe,
            endpoint: p.endpoint,
            result: ProbeResult::Pass,
        });
    }
    assert!(h.events().iter().any(|(_, e)| *e
        == PolicyEvent::Panic {
            priority: 0,
            entered: false
        }));
    // Eject host 1 by consecutive 5xx, then a passing probe un-ejects it at once.
    let mut n = 0;
    while !h.cluster.outlier().unwrap().is_ejected(EndpointId(1)) {
        let (_, out) = h.request();
        let (a, ep, _) = sends(&out)[0];
        h.done(
            a,
            if ep == EndpointId(1) {
                Outcome::ServerError
            } else {
                Outcome::Success
            },
        );
        n += 1;
        assert!(n < 100);
    }
    h.run_until(ms(5_000));
    let probe = h
        .out
        .iter()
        .rev()
        .find_map(|(t, o)| match o {
            Output::Probe(p) if p.endpoint == EndpointId(1) && *t == ms(5_000) => Some(*p),
            _ => None,
        })
        .expect("a probe of host 1 at 5 s");
    h.input(Input::ProbeDone {
        probe: probe.probe,
        endpoint: EndpointId(1),
        result: ProbeResult::Pass,
    });
    assert!(!h.cluster.outlier().unwrap().is_ejected(EndpointId(1)));
}

fn meta(priority: u32) -> EndpointMeta {
    EndpointMeta {
        priority,
        ..EndpointMeta::default()
    }
}

#[test]
fn priority_failover_and_panic_follow_envoy() {
    // 4 hosts at P0, 4 at P1.
    let eps: Vec<_> = (0..8).map(|i| meta(i / 4)).collect();
    let mut h = Harness::with_endpoints("{}", &eps);
    assert_eq!(h.cluster.priority_load().healthy, [100, 0]);
    let unhealthy = |ep: u32| {
        Input::Membership(Change::Health {
            endpoint: EndpointId(ep),
            health: Health::Unhealthy,
        })
    };
    // 2 of 4 unhealthy at P0: 1.4 x 50% = 70% stays.
    h.input(unhealthy(0));
    h.input(unhealthy(1));
    assert!(h.events().iter().any(|(_, e)| *e
        == PolicyEvent::PriorityLoad {
            healthy: vec![70, 30],
            degraded: vec![0, 0]
        }));
    let mut at_p1 = 0;
    for _ in 0..10_000 {
        let (_, out) = h.request();
        let (a, ep, _) = sends(&out)[0];
        assert!(ep.0 >= 2, "unhealthy host {ep} picked");
        at_p1 += u32::from(ep.0 >= 4);
        h.done(a, Outcome::Success);
    }
    assert!(
        (2_800..3_200).contains(&at_p1),
        "P1 share {at_p1} of 10000, want 30%"
    );
    // 3 of 4: 35% at P0. P1 can take the rest, so the normalized total availability is 100%
    // and nothing panics (Envoy panics a level only when the total is below 100%).
    h.input(unhealthy(2));
    assert_eq!(h.cluster.priority_load().healthy, [35, 65]);
    assert!(
        !h.events()
            .iter()
            .any(|(_, e)| matches!(e, PolicyEvent::Panic { .. }))
    );
    // 3 of 4 down at P1 too: total 70%, both levels below 50%: total panic, load by host
    // count, and traffic reaches unhealthy hosts.
    for ep in 5..8 {
        h.input(unhealthy(ep));
    }
    assert_eq!(h.cluster.priority_load().healthy, [50, 50]);
    for p in 0..2 {
        assert!(h.events().iter().any(|(_, e)| *e
            == PolicyEvent::Panic {
                priority: p,
                entered: true
            }));
    }
    let mut seen = [0u32; 8];
    for _ in 0..8_000 {
        let (_, out) = h.request();
        let (a, ep, _) = sends(&out)[0];
        seen[ep.index()] += 1;
        h.done(a, Outcome::Success);
    }
    assert!(
        seen.iter().all(|&n| (800..1200).contains(&n)),
        "panic spreads over all 8: {seen:?}"
    );
    // P1 recovers, P0 goes fully down: everything to P1, and nothing to a draining host.
    for ep in 5..8 {
        h.input(Input::Membership(Change::Health {
            endpoint: EndpointId(ep),
            health: Health::Healthy,
        }));
    }
    h.input(unhealthy(3));
    assert_eq!(h.cluster.priority_load().healthy, [0, 100]);
    assert!(h.events().iter().any(|(_, e)| *e
        == PolicyEvent::Panic {
            priority: 0,
            entered: false
        }));
    h.input(Input::Membership(Change::Health {
        endpoint: EndpointId(4),
        health: Health::Draining,
    }));
    for _ in 0..1000 {
        let (_, out) = h.request();
        let (a, ep, _) = sends(&out)[0];
        assert!(ep.0 >= 5, "{ep}");
        h.done(a, Outcome::Success);
    }
}

#[test]
fn failure_accrual_opens_probes_once_and_closes() {
    let cfg = r#"{"balancer": {"kind": "random"}, "failure_accrual": {}}"#;
    let mut h = Harness::new(cfg, 2);
    let bad = EndpointId(0);
    while !h
        .events()
        .iter()
        .any(|(_, e)| matches!(e, PolicyEvent::Accrual(AccrualEvent::Opened { .. })))
    {
        let (_, out) = h.request();
        let (a, ep, _) = sends(&out)[0];
        h.done(
            a,
            if ep == bad {
                Outcome::ServerError
            } else {
                Outcome::Success
            },
        );
    }
    let until = h
        .events()
        .iter()
        .find_map(|(_, e)| match e {
            PolicyEvent::Accrual(AccrualEvent::Opened { endpoint, until }) if *endpoint == bad => {
                Some(*until)
            }
            _ => None,
        })
        .unwrap();
    let wait = until - h.now;
    assert!(
        wait >= mesh_core::Duration::from_secs(1) && wait < mesh_core::Duration::from_millis(1500),
        "{wait}"
    );
    for _ in 0..100 {
        let (_, out) = h.request();
        let (a, ep, _) = sends(&out)[0];
        assert_ne!(ep, bad, "open breaker picked");
        h.done(a, Outcome::Success);
    }
    h.run_until(until);
    // Probation: exactly one trial, then nothing until it answers.
    let mut trial = None;
    for _ in 0..200 {
        let (_, out) = h.request();
        let (a, ep, _) = sends(&out)[0];
        if ep == bad {
            assert!(trial.is_none(), "a second trial on probation");
            trial = Some(a);
        } else {
            h.done(a, Outcome::Success);
        }
    }
    // The trial fails: open again, for 2 s to 3 s this time.
    let out = h.done(trial.expect("one trial"), Outcome::ServerError);
    let again = out
        .iter()
        .find_map(|o| match o {
            Output::Event(PolicyEvent::Accrual(AccrualEvent::Opened { until, .. })) => Some(*until),
            _ => None,
        })
        .expect("reopened");
    let wait = again - h.now;
    assert!(
        wait >= mesh_core::Duration::from_secs(2) && wait < mesh_core::Duration::from_secs(3),
        "{wait}"
    );
    h.run_until(again);
    // This trial succeeds: closed.
    loop {
        let (_, out) = h.request();
        let (a, ep, _) = sends(&out)[0];
        let out = h.done(a, Outcome::Success);
        if ep == bad {
            assert!(
                out.contains(&Output::Event(PolicyEvent::Accrual(AccrualEvent::Closed {
                    endpoint: bad
                })))
            );
            break;
        }
    }
}

#[test]
fn discovery_changes_apply_to_this_clients_view() {
    let mut h = Harness::new("{}", 2);
    let picks = |h: &mut Harness, n: usize| -> Vec<u32> {
        let mut c = vec![0u32; 4];
        for _ in 0..n {
            let (_, out) = h.request();
            let (a, ep, _) = sends(&out)[0];
            c[ep.index()] += 1;
            h.done(a, Outcome::Success);
        }
        c
    };
    assert_eq!(picks(&mut h, 100), [50, 50, 0, 0]);
    h.input(Input::Membership(Change::Add {
        endpoint: EndpointId(3),
        meta: EndpointMeta::default(),
    }));
    assert_eq!(picks(&mut h, 90), [30, 30, 0, 30]);
    h.input(Input::Membership(Change::Weight {
        endpoint: EndpointId(0),
        weight: 0,
    }));
    assert_eq!(picks(&mut h, 100)[0], 0);
    h.input(Input::Membership(Change::Remove {
        endpoint: EndpointId(1),
    }));
    assert_eq!(picks(&mut h, 100), [0, 0, 0, 100]);
    h.input(Input::Membership(Change::Remove {
        endpoint: EndpointId(3),
    }));
    let (id, out) = h.request();
    assert_eq!(finished(&out), Some((id, Finish::NoHealthyUpstream, 0)));
}

fn zoned(zones: &[(&str, usize)]) -> Vec<EndpointMeta> {
    zones
        .iter()
        .flat_map(|&(z, n)| {
            (0..n).map(move |_| EndpointMeta {
                zone: z.into(),
                ..EndpointMeta::default()
            })
        })
        .collect()
}

fn zone_shares(
    h: &mut Harness,
    eps: &[EndpointMeta],
    n: usize,
) -> std::collections::BTreeMap<String, f64> {
    let mut m = std::collections::BTreeMap::new();
    for _ in 0..n {
        let (_, out) = h.request();
        let (a, ep, _) = sends(&out)[0];
        *m.entry(eps[ep.index()].zone.clone()).or_insert(0.0) += 1.0 / n as f64;
        h.done(a, Outcome::Success);
    }
    m
}

#[test]
fn zone_aware_routing_keeps_traffic_local_and_spills_by_residual_capacity() {
    // Envoy's residual example: the local cluster is 40/40/20 over zones a/b/c, the upstream
    // 25/50/25. Zone a keeps 25/40 = 62.5% of its requests; the other 37.5% go to the zones in
    // proportion to their residual capacity, b 50 - 40 = 10 and c 25 - 20 = 5: 25% and 12.5%.
    let eps = zoned(&[("a", 2), ("b", 4), ("c", 2)]);
    let cfg =
        r#"{"zone_aware": {"local_zone": "a", "local_cluster": {"a": 40, "b": 40, "c": 20}}}"#;
    let mut h = Harness::with_endpoints(cfg, &eps);
    let s = zone_shares(&mut h, &eps, 40_000);
    assert!((s["a"] - 0.625).abs() < 0.01, "{s:?}");
    assert!((s["b"] - 0.25).abs() < 0.01, "{s:?}");
    assert!((s["c"] - 0.125).abs() < 0.01, "{s:?}");
    // Direct: the local zone has at least its share of upstream hosts: everything stays.
    let eps = zoned(&[("a", 4), ("b", 4)]);
    let cfg = r#"{"zone_aware": {"local_zone": "a", "local_cluster": {"a": 1, "b": 1}}}"#;
    let mut h = Harness::with_endpoints(cfg, &eps);
    let s = zone_shares(&mut h, &eps, 1000);
    assert!(!s.contains_key("b"), "{s:?}");
    // Below min_cluster_size (6 healthy hosts) routing is off: round robin over all.
    let eps = zoned(&[("a", 2), ("b", 2)]);
    let mut h = Harness::with_endpoints(cfg, &eps);
    assert!((zone_shares(&mut h, &eps, 1000)["a"] - 0.5).abs() < 0.01);
}

#[test]
fn fail_traffic_on_panic_fails_instead_of_spraying() {
    let eps = zoned(&[("a", 4), ("b", 4)]);
    let cfg = r#"{"zone_aware": {"local_zone": "a", "local_cluster": {"a": 1, "b": 1}, "fail_traffic_on_panic": true}}"#;
    let mut h = Harness::with_endpoints(cfg, &eps);
    for ep in 0..5 {
        h.input(Input::Membership(Change::Health {
            endpoint: EndpointId(ep),
            health: Health::Unhealthy,
        }));
    }
    let (id, out) = h.request();
    assert_eq!(finished(&out), Some((id, Finish::NoHealthyUpstream, 0)));
}

#[test]
fn a_host_back_from_failed_health_checks_is_slow_started_but_initial_hosts_are_not() {
    use mesh_core::health::ProbeRequest;
    let cfg = r#"{"balancer": {"kind": "round_robin", "slow_start_config": {"slow_start_window": "60s"}},
        "health_check": {"timeout": "1s", "interval": "1s", "unhealthy_threshold": 1, "healthy_threshold": 1,
                         "no_traffic_interval": "1s"}}"#;
    let mut h = Harness::new(cfg, 2);
    let answer = |h: &mut Harness, t: u64, fail_ep1: bool| {
        h.run_until(ms(t));
        let probes: Vec<ProbeRequest> = h
            .out
            .iter()
            .filter_map(|(at, o)| match o {
                Output::Probe(p) if *at == ms(t) => Some(*p),
                _ => None,
            })
            .collect();
        assert_eq!(probes.len(), 2, "both hosts probed at {t} ms");
        for p in probes {
            let result = if fail_ep1 && p.endpoint == EndpointId(1) {
                ProbeResult::Error
            } else {
                ProbeResult::Pass
            };
            h.input(Input::ProbeDone {
                probe: p.probe,
                endpoint: p.endpoint,
                result,
            });
        }
    };
    let share_of_1 = |h: &mut Harness| {
        let mut n = 0;
        for _ in 0..1000 {
            let (_, out) = h.request();
            let (a, ep, _) = sends(&out)[0];
            n += u32::from(ep == EndpointId(1));
            h.done(a, Outcome::Success);
        }
        f64::from(n) / 1000.0
    };
    answer(&mut h, 0, false);
    assert!(
        (share_of_1(&mut h) - 0.5).abs() < 0.01,
        "initial hosts are not slow-started"
    );
    answer(&mut h, 1000, true);
    answer(&mut h, 2000, false);
    // Just back: weight x max(time factor, 10%) = 0.1, so about 0.1 / 1.1 of the picks.
    let s = share_of_1(&mut h);
    assert!((0.05..0.15).contains(&s), "share right after recovery {s}");
}

#[test]
fn a_host_that_started_healthy_is_slow_started_when_it_returns_from_failed_checks() {
    use mesh_core::health::ProbeRequest;
    let cfg = r#"{"balancer": {"kind": "round_robin", "slow_start_config": {"slow_start_window": "60s"}},
        "health_check": {"timeout": "1s", "interval": "1s", "unhealthy_threshold": 1, "healthy_threshold": 1,
                         "no_traffic_interval": "1s", "initial_health": "healthy"}}"#;
    let mut h = Harness::new(cfg, 2);
    let answer = |h: &mut Harness, t: u64, fail_ep1: bool| {
        h.run_until(ms(t));
        let probes: Vec<ProbeRequest> = h
            .out
            .iter()
            .filter_map(|(at, o)| match o {
                Output::Probe(p) if *at == ms(t) => Some(*p),
                _ => None,
            })
            .collect();
        assert_eq!(probes.len(), 2, "both hosts probed at {t} ms");
        for p in probes {
            let result = if fail_ep1 && p.endpoint == EndpointId(1) {
                ProbeResult::Error
            } else {
                ProbeResult::Pass
            };
            h.input(Input::ProbeDone {
                probe: p.probe,
                endpoint: p.endpoint,
                result,
            });
        }
    };
    let share_of_1 = |h: &mut Harness| {
        let mut n = 0;
        for _ in 0..1000 {
            let (_, out) = h.request();
            let (a, ep, _) = sends(&out)[0];
            n += u32::from(ep == EndpointId(1));
            h.done(a, Outcome::Success);
        }
        f64::from(n) / 1000.0
    };
    // Healthy from the start (Envoy with hosts known healthy): its first failure is the first
    // health event, and its return after it is slow-started all the same.
    answer(&mut h, 0, false);
    assert!((share_of_1(&mut h) - 0.5).abs() < 0.01);
    answer(&mut h, 1000, true);
    answer(&mut h, 2000, false);
    // Just back: weight x max(time factor, 10%) = 0.1, so about 0.1 / 1.1 of the picks.
    let s = share_of_1(&mut h);
    assert!((0.05..0.15).contains(&s), "share right after recovery {s}");
}
