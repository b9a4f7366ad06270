//! Back-off bounds and retry budgets against Envoy, tower/Linkerd and gRPC.

use mesh_core::retry::{BackoffConfig, RetryBudget, RetryBudgetConfig};
use mesh_core::{Duration, Instant, Seed};

use crate::harness::{ms, secs};

fn budget(json: &str) -> RetryBudget {
    let c: RetryBudgetConfig = serde_json::from_str(json).expect("valid");
    c.validate().expect("valid");
    RetryBudget::new(&c, Instant::EPOCH)
}

fn withdraw_all(b: &mut RetryBudget, now: Instant) -> u32 {
    let mut n = 0;
    while b.try_withdraw(0, 0, now) {
        n += 1;
        assert!(n < 1_000_000, "budget never ran out");
    }
    n
}

#[test]
fn a_02_ratio_budget_after_10_requests_allows_exactly_2_retries_plus_its_floor() {
    // tower TpsBudget(ttl 10 s, min_per_sec 10, 0.2): floor 10/s x 10 s = 100 retries.
    let mut b = budget(
        r#"{"kind": "tps", "retry_ratio": 0.2, "min_retries_per_second": 10, "ttl": "10s"}"#,
    );
    for _ in 0..10 {
        b.deposit(ms(1));
    }
    assert_eq!(withdraw_all(&mut b, ms(2)), 2 + 100);
    // Without a floor: exactly 2.
    let mut b = budget(r#"{"kind": "linkerd", "ratio": 0.2, "min_per_sec": 0}"#);
    for _ in 0..10 {
        b.deposit(ms(1));
    }
    assert_eq!(withdraw_all(&mut b, ms(2)), 2);
    // Nine deposits buy only one (integer milli-tokens: 9000 / 5000).
    let mut b = budget(r#"{"kind": "tps", "retry_ratio": 0.2, "min_retries_per_second": 0}"#);
    for _ in 0..9 {
        b.deposit(ms(1));
    }
    assert_eq!(withdraw_all(&mut b, ms(2)), 1);
}

#[test]
fn tps_budget_deposits_expire_after_ttl() {
    let mut b =
        budget(r#"{"kind": "tps", "retry_ratio": 0.5, "min_retries_per_second": 0, "ttl": "10s"}"#);
    for _ in 0..100 {
        b.deposit(secs(0));
    }
    assert!(b.try_withdraw(0, 0, secs(9)), "still in the window at 9 s");
    assert!(
        !b.try_withdraw(0, 0, secs(11)),
        "gone after the 10 s window"
    );
    // Withdrawals expire too: the floor comes back.
    let mut b =
        budget(r#"{"kind": "tps", "retry_ratio": 0.2, "min_retries_per_second": 1, "ttl": "10s"}"#);
    assert_eq!(withdraw_all(&mut b, secs(1)), 10);
    assert_eq!(withdraw_all(&mut b, secs(5)), 0);
    assert_eq!(withdraw_all(&mut b, secs(12)), 10);
}

#[test]
fn envoy_budget_is_a_share_of_active_requests_with_a_floor() {
    let mut b = budget(r#"{"kind": "envoy"}"#);
    // 5 active: max(3, 20% x 5 = 1) = 3.
    assert!(b.try_withdraw(5, 2, ms(0)));
    assert!(!b.try_withdraw(5, 3, ms(0)));
    // 1000 active: 200 retries may be outstanding.
    assert!(b.try_withdraw(1000, 199, ms(0)));
    assert!(!b.try_withdraw(1000, 200, ms(0)));
}

#[test]
fn grpc_throttle_allows_retries_only_above_half_the_tokens() {
    let mut b = budget(r#"{"kind": "grpc_throttle", "max_tokens": 10, "token_ratio": 0.1}"#);
    // Starts full (10). Each failure takes 1: at 6 tokens still allowed, at 5 not.
    for _ in 0..4 {
        b.on_attempt(false);
    }
    assert!(b.try_withdraw(0, 0, ms(0)), "6 > 5");
    b.on_attempt(false);
    assert!(!b.try_withdraw(0, 0, ms(0)), "5 is not > 5");
    b.on_attempt(true);
    assert!(b.try_withdraw(0, 0, ms(0)), "5.1 > 5");
    // Never above the maximum.
    for _ in 0..1000 {
        b.on_attempt(true);
    }
    for _ in 0..4 {
        b.on_attempt(false);
    }
    assert!(b.try_withdraw(0, 0, ms(0)));
    b.on_attempt(false);
    assert!(!b.try_withdraw(0, 0, ms(0)));
}

fn draws(c: &BackoffConfig, n: u32, k: usize) -> Vec<f64> {
    let mut rng = Seed::new(5).rng();
    (0..k)
        .map(|_| c.delay(n, &mut rng).as_nanos() as f64 / 1e6)
        .collect()
}

#[test]
fn envoy_backoff_is_full_jitter_within_documented_bounds() {
    let c = BackoffConfig::default(); // 25 ms base, 250 ms max
    for (n, bound) in [(1u32, 25.0), (2, 75.0), (3, 175.0)] {
        let d = draws(&c, n, 20_000);
        assert!(d.iter().all(|&x| (0.0..bound).contains(&x)), "retry {n}");
        let mean = d.iter().sum::<f64>() / d.len() as f64;
        assert!(
            (mean - bound / 2.0).abs() < 0.02 * bound,
            "retry {n}: mean {mean}"
        );
    }
    // Retry 4: U[0, 375 ms) capped at 250 ms, so a third of the draws sit on the cap.
    let d = draws(&c, 4, 30_000);
    assert!(d.iter().all(|&x| x <= 250.0));
    let capped = d.iter().filter(|&&x| x == 250.0).count() as f64 / d.len() as f64;
    assert!((capped - 1.0 / 3.0).abs() < 0.015, "capped share {capped}");
}

#[test]
fn grpc_backoff_is_plus_minus_20_percent_around_the_exponential() {
    let c = BackoffConfig::Grpc {
        initial_backoff: Duration::from_millis(100),
        max_backoff: Duration::from_secs(1),
        backoff_multiplier: 2.0,
    };
    for (n, center) in [(1u32, 100.0), (3, 400.0), (5, 1000.0), (9, 1000.0)] {
        let d = draws(&c, n, 20_000);
        assert!(
            d.iter().all(|&x| x >= 0.8 * center && x <= 1.2 * center),
            "retry {n}"
        );
        let mean = d.iter().sum::<f64>() / d.len() as f64;
        assert!(
            (mean - center).abs() < 0.01 * center,
            "retry {n}: mean {mean}"
        );
    }
}
