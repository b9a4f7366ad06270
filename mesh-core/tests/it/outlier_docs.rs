//! Outlier detection against Envoy's documented semantics (outlier.rst, outlier_detection.proto)
//! and the worked success-rate example of the Envoy reference notes.

use mesh_core::outlier::{EjectionReason, OutlierConfig, OutlierDetector, OutlierEvent, SkipCause};
use mesh_core::{Duration, EndpointId, Instant, Outcome, Seed};

use crate::harness::secs;

fn detector(json: &str, hosts: u32) -> OutlierDetector {
    let config: OutlierConfig = serde_json::from_str(json).expect("valid config");
    let mut d = OutlierDetector::new(config, Seed::new(1), Instant::EPOCH).expect("valid");
    for i in 0..hosts {
        d.add_endpoint(EndpointId(i));
    }
    d
}

fn events(d: &mut OutlierDetector) -> Vec<OutlierEvent> {
    std::iter::from_fn(|| d.poll_event()).collect()
}

fn fail(d: &mut OutlierDetector, ep: u32, n: u32, outcome: Outcome, now: Instant) {
    for _ in 0..n {
        d.on_outcome(EndpointId(ep), outcome, now);
    }
}

#[test]
fn ejects_on_the_fifth_consecutive_5xx_and_returns_exactly_base_ejection_time_later() {
    let mut d = detector("{}", 10);
    d.handle_timeout(secs(10)); // the first sweep
    fail(&mut d, 0, 4, Outcome::ServerError, secs(10));
    assert!(!d.is_ejected(EndpointId(0)), "4 in a row must not eject");
    fail(&mut d, 0, 1, Outcome::ServerError, secs(10));
    assert!(d.is_ejected(EndpointId(0)));
    assert_eq!(
        events(&mut d),
        [OutlierEvent::Ejected {
            endpoint: EndpointId(0),
            reason: EjectionReason::Consecutive5xx,
            duration: Duration::from_secs(30),
            ejections: 1,
        }]
    );
    d.handle_timeout(Instant::from_nanos(secs(40).as_nanos() - 1));
    assert!(d.is_ejected(EndpointId(0)), "still out just before 30 s");
    d.handle_timeout(secs(40));
    assert!(!d.is_ejected(EndpointId(0)), "back exactly 30 s later");
    assert_eq!(
        events(&mut d),
        [OutlierEvent::Unejected {
            endpoint: EndpointId(0)
        }]
    );
}

#[test]
fn a_success_resets_the_count_and_return_waits_for_the_sweep() {
    let mut d = detector("{}", 10);
    fail(&mut d, 0, 4, Outcome::ServerError, secs(1));
    d.on_outcome(EndpointId(0), Outcome::Success, secs(1));
    fail(&mut d, 0, 4, Outcome::ServerError, secs(1));
    assert!(!d.is_ejected(EndpointId(0)));
    fail(&mut d, 0, 1, Outcome::ServerError, secs(12));
    assert!(d.is_ejected(EndpointId(0)));
    // Ejected at 12 s for 30 s: Envoy checks at the sweeps, so it returns at 50 s, not 42 s.
    d.handle_timeout(secs(49));
    assert!(d.is_ejected(EndpointId(0)));
    d.handle_timeout(secs(50));
    assert!(!d.is_ejected(EndpointId(0)));
}

#[test]
fn a_second_ejection_lasts_twice_as_long_and_the_multiplier_decays() {
    let mut d = detector("{}", 10);
    d.handle_timeout(secs(10));
    fail(&mut d, 0, 5, Outcome::ServerError, secs(10));
    d.handle_timeout(secs(40));
    assert!(!d.is_ejected(EndpointId(0)));
    fail(&mut d, 0, 5, Outcome::ServerError, secs(40));
    let ev = events(&mut d);
    assert!(
        matches!(
            ev.last(),
            Some(OutlierEvent::Ejected { duration, ejections: 2, .. })
                if *duration == Duration::from_secs(60)
        ),
        "{ev:?}"
    );
    d.handle_timeout(secs(90));
    assert!(d.is_ejected(EndpointId(0)), "60 s, not 30 s");
    d.handle_timeout(secs(100));
    assert!(!d.is_ejected(EndpointId(0)));
    // Two clean sweeps (110 s, 120 s) bring the multiplier from 2 back to 0: the next
    // ejection lasts the base 30 s again.
    d.handle_timeout(secs(120));
    fail(&mut d, 0, 5, Outcome::ServerError, secs(120));
    assert!(matches!(
        events(&mut d).last(),
        Some(OutlierEvent::Ejected { duration, ejections: 3, .. })
            if *duration == Duration::from_secs(30)
    ));
}

#[test]
fn ejection_time_stops_growing_at_max_ejection_time() {
    let mut d = detector(
        r#"{"base_ejection_time": "30s", "max_ejection_time": "100s"}"#,
        10,
    );
    let mut durations = Vec::new();
    let mut t = secs(10);
    for _ in 0..6 {
        d.handle_timeout(t);
        fail(&mut d, 0, 5, Outcome::ServerError, t);
        for e in events(&mut d) {
            if let OutlierEvent::Ejected { duration, .. } = e {
                durations.push(duration.as_nanos() / 1_000_000_000);
            }
        }
        // Come back, then eject again at once (no clean sweep in between).
        while d.is_ejected(EndpointId(0)) {
            t += Duration::from_secs(10);
            d.handle_timeout(t);
        }
        events(&mut d);
    }
    assert_eq!(durations, [30, 60, 90, 100, 100, 100]);
}

#[test]
fn max_ejection_percent_counts_the_ejection_itself() {
    // 10 hosts at 10%: one ejection; the second is an overflow.
    let mut d = detector("{}", 10);
    fail(&mut d, 0, 5, Outcome::ServerError, secs(1));
    fail(&mut d, 1, 5, Outcome::ServerError, secs(1));
    assert!(d.is_ejected(EndpointId(0)) && !d.is_ejected(EndpointId(1)));
    assert!(events(&mut d).contains(&OutlierEvent::Skipped {
        endpoint: EndpointId(1),
        reason: EjectionReason::Consecutive5xx,
        cause: SkipCause::MaxEjectionPercent,
    }));
    // 9 hosts at 10%: 1/9 = 11% > 10%, so none at all...
    let mut d = detector("{}", 9);
    fail(&mut d, 0, 5, Outcome::ServerError, secs(1));
    assert_eq!(d.ejected_count(), 0);
    // ...unless always_eject_one_host (gRPC always ejects at least one).
    let mut d = detector(r#"{"always_eject_one_host": true}"#, 9);
    fail(&mut d, 0, 5, Outcome::ServerError, secs(1));
    fail(&mut d, 1, 5, Outcome::ServerError, secs(1));
    assert_eq!(d.ejected_count(), 1);
}

#[test]
fn gateway_failures_are_detected_but_not_enforced_by_default() {
    let mut d = detector(r#"{"consecutive_5xx": 0}"#, 10);
    fail(&mut d, 0, 5, Outcome::GatewayError, secs(1));
    assert!(!d.is_ejected(EndpointId(0)));
    assert_eq!(
        events(&mut d),
        [OutlierEvent::Skipped {
            endpoint: EndpointId(0),
            reason: EjectionReason::ConsecutiveGatewayFailure,
            cause: SkipCause::NotEnforced,
        }]
    );
    // A 503 is also a 5xx: with consecutive_5xx on it ejects.
    let mut d = detector("{}", 10);
    fail(&mut d, 0, 5, Outcome::GatewayError, secs(1));
    assert!(d.is_ejected(EndpointId(0)));
}

#[test]
fn local_origin_errors_count_as_5xx_unless_split() {
    let mut d = detector("{}", 10);
    fail(&mut d, 0, 5, Outcome::LocalError, secs(1));
    assert!(
        d.is_ejected(EndpointId(0)),
        "unsplit: a connect failure is a 503"
    );
    let mut d = detector(r#"{"split_external_local_origin_errors": true}"#, 10);
    fail(&mut d, 0, 4, Outcome::Timeout, secs(1));
    fail(&mut d, 0, 4, Outcome::ServerError, secs(1));
    assert!(!d.is_ejected(EndpointId(0)), "split: separate counters");
    fail(&mut d, 0, 1, Outcome::LocalError, secs(1));
    assert!(
        !d.is_ejected(EndpointId(0)),
        "the 5xx responses reset the local-origin counter"
    );
    fail(&mut d, 0, 4, Outcome::LocalError, secs(1));
    assert!(matches!(
        events(&mut d).last(),
        Some(OutlierEvent::Ejected {
            reason: EjectionReason::ConsecutiveLocalOriginFailure,
            ..
        })
    ));
}

#[test]
fn failures_while_ejected_push_the_counter_past_the_threshold() {
    // Envoy fires on `++count == threshold` and does not reset the counter when the host is
    // already ejected: after it returns it needs a success before 5 errors eject it again
    // (the mechanism behind envoy#40697).
    let mut d = detector("{}", 10);
    d.handle_timeout(secs(10));
    fail(&mut d, 0, 5, Outcome::ServerError, secs(10));
    fail(&mut d, 0, 7, Outcome::ServerError, secs(11)); // in-flight requests failing
    d.handle_timeout(secs(40));
    assert!(!d.is_ejected(EndpointId(0)));
    fail(&mut d, 0, 5, Outcome::ServerError, secs(41));
    assert!(
        !d.is_ejected(EndpointId(0)),
        "counter is past 5: no equality"
    );
    d.on_outcome(EndpointId(0), Outcome::Success, secs(41));
    fail(&mut d, 0, 5, Outcome::ServerError, secs(41));
    assert!(d.is_ejected(EndpointId(0)));
}

/// Feeds one interval of `total` requests per host with the given success counts.
fn interval(d: &mut OutlierDetector, success: &[u32], total: &[u32], t: Instant) {
    for (i, (&s, &n)) in success.iter().zip(total).enumerate() {
        // Consecutive detectors are off in these tests, so order does not matter.
        for _ in 0..s {
            d.on_outcome(EndpointId(i as u32), Outcome::Success, t);
        }
        for _ in 0..(n - s) {
            d.on_outcome(EndpointId(i as u32), Outcome::ServerError, t);
        }
    }
}

#[test]
fn success_rate_ejection_follows_the_worked_example() {
    // 20 hosts, 200 requests each per interval: 17 at 99.5%, one each at 99%, 97% and 80%.
    // Tick 1: mean 98.375, stdev 4.251, threshold 90.30: only the 80% host goes.
    // Tick 2: without it, mean 99.342, stdev 0.563, threshold 98.27: the 97% host goes.
    // Tick 3: the 99% host is below 99.25 but a third ejection would pass 10%: overflow.
    let mut d = detector(
        r#"{"consecutive_5xx": 0, "consecutive_gateway_failure": 0}"#,
        20,
    );
    let mut success = vec![199u32; 20];
    success[17] = 198;
    success[18] = 194;
    success[19] = 160;
    let total = vec![200u32; 20];
    let mut ejected_at = Vec::new();
    for tick in 1..=3u64 {
        interval(&mut d, &success, &total, secs(10 * tick - 5));
        d.handle_timeout(secs(10 * tick));
        for e in events(&mut d) {
            match e {
                OutlierEvent::Ejected {
                    endpoint, reason, ..
                } => {
                    assert_eq!(reason, EjectionReason::SuccessRate);
                    ejected_at.push((tick, endpoint.0));
                }
                OutlierEvent::Skipped {
                    endpoint, cause, ..
                } => {
                    assert_eq!(
                        (tick, endpoint.0, cause),
                        (3, 17, SkipCause::MaxEjectionPercent)
                    );
                    ejected_at.push((tick, 100 + endpoint.0));
                }
                OutlierEvent::Unejected { .. } => panic!("nothing returns within 30 s"),
            }
        }
    }
    assert_eq!(ejected_at, [(1, 19), (2, 18), (3, 117)]);
}

#[test]
fn success_rate_needs_request_volume_and_minimum_hosts() {
    let cfg =
        r#"{"consecutive_5xx": 0, "consecutive_gateway_failure": 0, "max_ejection_percent": 100}"#;
    // The outlier has only 99 requests: it is not part of the population.
    let mut d = detector(cfg, 6);
    interval(
        &mut d,
        &[100, 100, 100, 100, 100, 50],
        &[100, 100, 100, 100, 100, 99],
        secs(5),
    );
    d.handle_timeout(secs(10));
    assert_eq!(d.ejected_count(), 0, "request_volume 100 not met");
    // With 100 requests it goes.
    interval(&mut d, &[100, 100, 100, 100, 100, 50], &[100; 6], secs(15));
    d.handle_timeout(secs(20));
    assert!(d.is_ejected(EndpointId(5)));
    // Only 4 hosts with enough requests: below success_rate_minimum_hosts 5.
    let mut d = detector(cfg, 6);
    interval(
        &mut d,
        &[100, 100, 100, 50, 0, 0],
        &[100, 100, 100, 100, 10, 10],
        secs(5),
    );
    d.handle_timeout(secs(10));
    assert_eq!(d.ejected_count(), 0, "minimum_hosts 5 not met");
}

#[test]
fn success_rate_threshold_is_mean_minus_factor_times_stdev() {
    // Four hosts at 100% and one at 100 - d: the outlier sits 0.8 d below the mean and the
    // population stdev is 0.4 d, so it is ejected exactly when stdev_factor / 1000 < 2,
    // whatever d is.
    for d_pct in [1u32, 10, 40] {
        for (factor, ejected) in [
            (1000, true),
            (1900, true),
            (1990, true),
            (2010, false),
            (2500, false),
        ] {
            let mut d = detector(
                &format!(
                    r#"{{"consecutive_5xx": 0, "consecutive_gateway_failure": 0,
                        "success_rate_stdev_factor": {factor}, "max_ejection_percent": 100}}"#
                ),
                5,
            );
            let x = 1000 - 10 * d_pct;
            interval(&mut d, &[1000, 1000, 1000, 1000, x], &[1000; 5], secs(5));
            d.handle_timeout(secs(10));
            assert_eq!(
                d.is_ejected(EndpointId(4)),
                ejected,
                "outlier {}% below, factor {factor}",
                d_pct
            );
            assert_eq!(d.ejected_count(), u32::from(ejected), "only the outlier");
        }
    }
}

#[test]
fn failure_percentage_ejects_at_the_threshold_when_enforced() {
    let cfg = r#"{"consecutive_5xx": 0, "consecutive_gateway_failure": 0, "enforcing_success_rate": 0,
                  "enforcing_failure_percentage": 100, "max_ejection_percent": 100}"#;
    let mut d = detector(cfg, 5);
    // 85% failures (threshold 85, inclusive) on host 0; 84% on host 1.
    interval(&mut d, &[15, 16, 50, 50, 50], &[100; 5], secs(5));
    d.handle_timeout(secs(10));
    assert!(d.is_ejected(EndpointId(0)));
    assert!(!d.is_ejected(EndpointId(1)));
    assert!(matches!(
        events(&mut d)[..],
        [OutlierEvent::Ejected {
            reason: EjectionReason::FailurePercentage,
            ..
        }]
    ));
    // Envoy's default enforcing_failure_percentage is 0: off.
    let mut d = detector(r#"{"consecutive_5xx": 0, "enforcing_success_rate": 0}"#, 5);
    interval(&mut d, &[0, 50, 50, 50, 50], &[100; 5], secs(5));
    d.handle_timeout(secs(10));
    assert_eq!(d.ejected_count(), 0);
}

#[test]
fn enforcement_percent_is_a_coin_per_detection() {
    let mut d = detector(
        r#"{"enforcing_consecutive_5xx": 30, "max_ejection_percent": 100, "base_ejection_time": "1ms", "interval": "1ms"}"#,
        1,
    );
    let (mut ejected, mut skipped) = (0, 0);
    let mut t = secs(1);
    for _ in 0..4000 {
        fail(&mut d, 0, 5, Outcome::ServerError, t);
        for e in events(&mut d) {
            match e {
                OutlierEvent::Ejected { .. } => ejected += 1,
                OutlierEvent::Skipped { .. } => skipped += 1,
                OutlierEvent::Unejected { .. } => {}
            }
        }
        // Let the host back before the next round.
        t += Duration::from_secs(1);
        d.handle_timeout(t);
        d.on_outcome(EndpointId(0), Outcome::Success, t);
        events(&mut d);
    }
    let share = f64::from(ejected) / f64::from(ejected + skipped);
    assert!(
        (0.27..0.33).contains(&share),
        "enforced {share:.3}, want 0.30"
    );
}
