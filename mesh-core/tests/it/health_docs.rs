//! Active health checking against Envoy's documented thresholds and intervals
//! (health_checking.rst, health_check.proto, `HealthCheckerImplBase`).

use mesh_core::health::{
    HealthChange, HealthCheckConfig, HealthChecker, ProbeRequest, ProbeResult,
};
use mesh_core::{EndpointId, Instant, Seed};

use crate::harness::ms;

fn checker(json: &str) -> HealthChecker {
    let config: HealthCheckConfig = serde_json::from_str(json).expect("valid config");
    let mut h = HealthChecker::new(config, Seed::new(3)).expect("valid");
    h.add_endpoint(EndpointId(0), Instant::EPOCH);
    h
}

/// Runs timers up to `t`; returns the probes sent, with their send times.
fn run(h: &mut HealthChecker, t: Instant) -> Vec<(Instant, ProbeRequest)> {
    let mut sent = Vec::new();
    while let Some(next) = h.poll_timeout() {
        if next > t {
            break;
        }
        h.handle_timeout(next);
        while let Some(p) = h.poll_probe() {
            sent.push((next, p));
        }
    }
    sent
}

fn changes(h: &mut HealthChecker) -> Vec<HealthChange> {
    std::iter::from_fn(|| h.poll_event()).collect()
}

const CFG: &str = r#"{"timeout": "1s", "interval": "5s", "unhealthy_threshold": 3, "healthy_threshold": 2,
    "unhealthy_interval": "10s", "unhealthy_edge_interval": "2s", "healthy_edge_interval": "1s"}"#;

#[test]
fn thresholds_and_intervals_follow_envoy() {
    let mut h = checker(CFG);
    let ep = EndpointId(0);
    assert!(
        !h.is_healthy(ep),
        "new hosts start failed (FAILED_ACTIVE_HC)"
    );

    // t=0: first probe. Its pass marks the host healthy at once (first check).
    let p = run(&mut h, ms(0));
    assert_eq!(p.len(), 1);
    h.on_probe_result(p[0].1.probe, ep, ProbeResult::Pass, ms(100));
    assert!(h.is_healthy(ep));
    assert_eq!(
        changes(&mut h),
        [HealthChange {
            endpoint: ep,
            healthy: true
        }]
    );
    // No traffic yet: the next probe waits no_traffic_interval (60 s).
    assert_eq!(h.poll_timeout(), Some(ms(60_100)));
    h.note_traffic();

    // 60.1 s: a counted failure. Still healthy (1 of 3); next after unhealthy_edge_interval.
    let p = run(&mut h, ms(60_100));
    h.on_probe_result(p[0].1.probe, ep, ProbeResult::Error, ms(60_200));
    assert!(h.is_healthy(ep));
    assert_eq!(h.poll_timeout(), Some(ms(62_200)));

    // 62.2 s: no answer; the 1 s timeout counts a failure (2 of 3) at 63.2 s.
    let p = run(&mut h, ms(63_200));
    assert_eq!(p.len(), 1);
    assert!(h.is_healthy(ep));
    assert_eq!(h.poll_timeout(), Some(ms(65_200)));
    // A late answer to the timed-out probe is ignored.
    assert!(!h.on_probe_result(p[0].1.probe, ep, ProbeResult::Pass, ms(63_300)));

    // 65.2 s: the third failure flips it; unhealthy_interval from now on.
    let p = run(&mut h, ms(65_200));
    h.on_probe_result(p[0].1.probe, ep, ProbeResult::Error, ms(65_300));
    assert!(!h.is_healthy(ep));
    assert_eq!(
        changes(&mut h),
        [HealthChange {
            endpoint: ep,
            healthy: false
        }]
    );
    assert_eq!(h.poll_timeout(), Some(ms(75_300)));

    // 75.3 s: a pass. Still unhealthy (1 of 2); next after healthy_edge_interval.
    let p = run(&mut h, ms(75_300));
    h.on_probe_result(p[0].1.probe, ep, ProbeResult::Pass, ms(75_400));
    assert!(!h.is_healthy(ep));
    assert_eq!(h.poll_timeout(), Some(ms(76_400)));

    // 76.4 s: the second pass flips it back; regular interval.
    let p = run(&mut h, ms(76_400));
    h.on_probe_result(p[0].1.probe, ep, ProbeResult::Pass, ms(76_500));
    assert!(h.is_healthy(ep));
    assert_eq!(
        changes(&mut h),
        [HealthChange {
            endpoint: ep,
            healthy: true
        }]
    );
    assert_eq!(h.poll_timeout(), Some(ms(81_500)));

    // 81.5 s: a definite failure (unexpected status) flips it at once.
    let p = run(&mut h, ms(81_500));
    h.on_probe_result(p[0].1.probe, ep, ProbeResult::Fail, ms(81_600));
    assert!(!h.is_healthy(ep));
}

#[test]
fn exactly_unhealthy_threshold_failures_and_healthy_threshold_passes() {
    for (unhealthy, healthy) in [(1u32, 1u32), (2, 3), (5, 4)] {
        let mut h = checker(&format!(
            r#"{{"timeout": "1s", "interval": "1s", "unhealthy_threshold": {unhealthy},
                "healthy_threshold": {healthy}, "initial_health": "healthy"}}"#
        ));
        h.note_traffic();
        let ep = EndpointId(0);
        let mut t = 0;
        let mut step = |h: &mut HealthChecker, r: ProbeResult| {
            let p = run(h, ms(t));
            assert_eq!(p.len(), 1, "one probe per interval");
            h.on_probe_result(p[0].1.probe, ep, r, ms(t + 10));
            t = h.poll_timeout().unwrap().as_nanos() / 1_000_000;
        };
        // The first result of a host that starts healthy still decides at once; make it a pass.
        step(&mut h, ProbeResult::Pass);
        for i in 1..=unhealthy {
            assert!(h.is_healthy(ep), "healthy before failure {i}");
            step(&mut h, ProbeResult::Error);
        }
        assert!(!h.is_healthy(ep), "unhealthy after exactly {unhealthy}");
        for i in 1..=healthy {
            assert!(!h.is_healthy(ep), "unhealthy before pass {i}");
            step(&mut h, ProbeResult::Pass);
        }
        assert!(h.is_healthy(ep), "healthy after exactly {healthy}");
    }
}

#[test]
fn jitter_stays_within_its_bounds() {
    let mut h = checker(
        r#"{"timeout": "1s", "interval": "10s", "unhealthy_threshold": 1, "healthy_threshold": 1,
            "interval_jitter": "1s", "interval_jitter_percent": 10, "initial_health": "healthy"}"#,
    );
    h.note_traffic();
    let ep = EndpointId(0);
    let mut waits = Vec::new();
    let mut t = ms(0);
    for _ in 0..2000 {
        let p = run(&mut h, t);
        h.on_probe_result(p[0].1.probe, ep, ProbeResult::Pass, t);
        let next = h.poll_timeout().unwrap();
        waits.push((next - t).as_nanos() as f64 / 1e9);
        t = next;
    }
    // 10 s + U[0, 1 s) (percent) + U[0, 1 s) (absolute).
    assert!(
        waits.iter().all(|&w| (10.0..12.0).contains(&w)),
        "{waits:?}"
    );
    let mean = waits.iter().sum::<f64>() / waits.len() as f64;
    assert!((mean - 11.0).abs() < 0.05, "mean {mean}");
}
