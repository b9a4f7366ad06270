//! Documented behaviour of individual balancers, in virtual time.

use mesh_core::{
    Balancer, Candidate, Duration, EndpointId, Instant, LoadReport, Outcome, PickCtx, ProbeReply,
};

use crate::{build, counts};

fn t(ms: u64) -> Instant {
    Instant::EPOCH + Duration::from_millis(ms)
}

/// least_request.proto: "with 2 hosts, N_CHOICES [with replacement] returns the busier host 25%
/// of the time"; without replacement (tower) it never does.
#[test]
fn least_request_sampling_with_and_without_replacement() {
    let hosts = [Candidate::new(0), Candidate::new(1)];
    for (sampling, want) in [("with_replacement", 0.25), ("without_replacement", 0.0)] {
        let mut lb = build(
            &format!(r#"{{"kind":"least_request","sampling":"{sampling}"}}"#),
            &hosts,
            1,
        );
        for _ in 0..5 {
            lb.on_dispatch(EndpointId(1), Instant::EPOCH);
        }
        let c = counts(lb.as_mut(), 200_000, Instant::EPOCH);
        let busy = c.get(1).copied().unwrap_or(0) as f64 / 200_000.0;
        assert!(
            (busy - want).abs() < 0.005,
            "{sampling}: busier host got {busy}"
        );
    }
}

/// Envoy's weighted least request: EDF on `w / (active + 1)`. A host of weight 2 with one
/// request in flight weighs the same as an idle host of weight 1.
#[test]
fn weighted_least_request_divides_weight_by_active_plus_one() {
    let hosts = [Candidate::weighted(0, 1), Candidate::weighted(1, 2)];
    let mut lb = build(r#"{"kind":"least_request"}"#, &hosts, 2);
    lb.on_dispatch(EndpointId(1), Instant::EPOCH);
    lb.set_endpoints(&hosts, Instant::EPOCH); // rebuild the schedule with the current counts
    let c = counts(lb.as_mut(), 100_000, Instant::EPOCH);
    assert!((c[0] as i64 - 50_000).abs() < 100, "{c:?}");
    // Without in-flight requests, weights rule: 1:2.
    lb.on_complete(
        EndpointId(1),
        Instant::EPOCH,
        Outcome::Success,
        Instant::EPOCH,
    );
    lb.set_endpoints(&hosts, Instant::EPOCH);
    let c = counts(lb.as_mut(), 90_000, Instant::EPOCH);
    assert!((c[0] as i64 - 30_000).abs() < 100, "{c:?}");
}

/// slow_start.rst: a new host's weight ramps linearly (aggression 1) from min_weight_percent to
/// full over slow_start_window, then round robin goes back to even shares.
#[test]
fn slow_start_ramps_a_new_host() {
    for kind in ["round_robin", "least_request"] {
        let mut hosts = vec![Candidate::new(0)];
        let mut fresh = Candidate::new(1);
        fresh.slow_start_since = Some(t(0));
        hosts.push(fresh);
        let cfg =
            format!(r#"{{"kind":"{kind}","slow_start_config":{{"slow_start_window":"10s"}}}}"#);
        let mut lb = build(&cfg, &hosts, 3);
        // Expected share of the new host: f / (1 + f), f = max(0.1, t / 10 s).
        for (at_ms, f) in [(500u64, 0.1f64), (5_000, 0.5), (8_000, 0.8), (12_000, 1.0)] {
            let c = counts(lb.as_mut(), 100_000, t(at_ms));
            let share = c[1] as f64 / 100_000.0;
            let want = f / (1.0 + f);
            assert!(
                (share - want).abs() < 0.02,
                "{kind} at {at_ms} ms: new host share {share}, want {want}"
            );
        }
    }
}

/// gRFC A58: weights count only after the blackout period; then shares follow
/// qps / (utilization + eps/qps x penalty).
#[test]
fn orca_wrr_blackout_then_reported_weights() {
    let hosts = [Candidate::new(0), Candidate::new(1)];
    let mut lb = build(r#"{"kind":"orca_weighted_round_robin"}"#, &hosts, 4);
    let report = |lb: &mut Box<dyn Balancer>, now: Instant| {
        lb.on_load_report(
            EndpointId(0),
            &LoadReport {
                qps: 100.0,
                eps: 0.0,
                utilization: 0.5,
            },
            now,
        );
        // 50 errors/s at 100 qps add 0.5 to utilization: weight 100 / (0.25 + 0.5) = 133.
        lb.on_load_report(
            EndpointId(1),
            &LoadReport {
                qps: 100.0,
                eps: 50.0,
                utilization: 0.25,
            },
            now,
        );
    };
    report(&mut lb, t(0));
    // Inside the 10 s blackout: equal shares.
    let c = counts(lb.as_mut(), 10_000, t(5_000));
    assert!((c[0] as i64 - 5_000).abs() <= 2, "{c:?}");
    report(&mut lb, t(10_500));
    let c = counts(lb.as_mut(), 70_000, t(11_000));
    // weights 200 and 133.3: shares 0.6 and 0.4.
    assert!((c[0] as f64 / 70_000.0 - 0.6).abs() < 0.001, "{c:?}");
    // Without reports for weight_expiration_period (3 min) weights expire: equal again.
    let c = counts(lb.as_mut(), 10_000, t(200_000));
    assert!((c[0] as i64 - 5_000).abs() <= 2, "{c:?}");
}

/// Prequal: each pick asks for probes; with a pool, cold replicas with low latency win and
/// hot ones are avoided.
#[test]
fn prequal_probes_and_prefers_cold_fast_replicas() {
    let hosts: Vec<Candidate> = (0..4).map(Candidate::new).collect();
    let mut lb = build(r#"{"kind":"prequal","probes_per_query":3}"#, &hosts, 5);
    let mut picks = [0u32; 4];
    for i in 0..2_000u64 {
        let now = t(i);
        let ep = lb.pick(&PickCtx::default(), now).unwrap();
        picks[ep.index()] += 1;
        let mut probes = 0;
        while let Some(p) = lb.poll_probe() {
            probes += 1;
            // Host 0 is overloaded, host 3 is fast, 1 and 2 are medium.
            let (rif, lat_ms) = match p.0 {
                0 => (40, 50),
                3 => (1, 2),
                _ => (2, 10),
            };
            lb.on_probe_result(
                p,
                ProbeReply {
                    rif,
                    latency: Duration::from_millis(lat_ms),
                },
                now,
            );
        }
        assert_eq!(probes, 3);
    }
    assert!(picks[0] < 20, "hot replica should be avoided: {picks:?}");
    assert!(picks[3] > picks[1] && picks[3] > picks[2], "{picks:?}");
}

/// Peak EWMA: after a slow response the host's cost jumps (the peak) and traffic moves away;
/// as the estimate decays the host comes back.
#[test]
fn peak_ewma_moves_away_from_a_slow_host_and_back() {
    let hosts: Vec<Candidate> = (0..2).map(Candidate::new).collect();
    let mut lb = build(
        r#"{"kind":"peak_ewma","decay":"1s","default_rtt":"10ms"}"#,
        &hosts,
        6,
    );
    // Host 0 answers in 500 ms once; host 1 in 10 ms.
    lb.on_dispatch(EndpointId(0), t(0));
    lb.on_complete(EndpointId(0), t(0), Outcome::Success, t(500));
    lb.on_dispatch(EndpointId(1), t(490));
    lb.on_complete(EndpointId(1), t(490), Outcome::Success, t(500));
    let c = counts(lb.as_mut(), 1_000, t(500));
    assert_eq!(c.first().copied().unwrap_or(0), 0, "{c:?}");
    // Later both answer: host 0 fast (1 ms), host 1 as before (10 ms). Host 0's old peak has
    // decayed for 9.5 s (e^-9.5), so the new sample blends it down to about 1 ms.
    lb.on_dispatch(EndpointId(0), t(10_000));
    lb.on_complete(EndpointId(0), t(10_000), Outcome::Success, t(10_001));
    lb.on_dispatch(EndpointId(1), t(9_991));
    lb.on_complete(EndpointId(1), t(9_991), Outcome::Success, t(10_001));
    let c = counts(lb.as_mut(), 1_000, t(10_001));
    assert!(c.first().copied().unwrap_or(0) > 400, "{c:?}");
}

/// Round robin starts each proxy at a random position so many proxies do not herd.
#[test]
fn round_robin_start_is_randomized_per_seed() {
    let hosts: Vec<Candidate> = (0..16).map(Candidate::new).collect();
    let firsts: std::collections::BTreeSet<EndpointId> = (0..64)
        .map(|s| {
            build(r#"{"kind":"round_robin"}"#, &hosts, s)
                .pick(&PickCtx::default(), t(0))
                .unwrap()
        })
        .collect();
    assert!(firsts.len() >= 10, "{firsts:?}");
}

/// Removing a host keeps least-request's in-flight counts for those that stay.
#[test]
fn least_request_counts_survive_host_set_updates() {
    let hosts: Vec<Candidate> = (0..3).map(Candidate::new).collect();
    let mut lb = build(
        r#"{"kind":"least_request","choice_count":3,"sampling":"without_replacement"}"#,
        &hosts,
        7,
    );
    for _ in 0..3 {
        lb.on_dispatch(EndpointId(0), t(0));
        lb.on_dispatch(EndpointId(1), t(0));
    }
    lb.set_endpoints(&hosts[..2], t(1));
    lb.set_endpoints(&hosts, t(2));
    assert_eq!(lb.pick(&PickCtx::default(), t(3)), Some(EndpointId(2)));
}
