//! Bad config is rejected by constructors, naming the field and its valid range; never a panic.

use mesh_core::balancer::check_weights;
use mesh_core::priority::PriorityConfig;
use mesh_core::{BalancerConfig, Candidate, ConfigError, Instant, Seed};
use proptest::prelude::*;

fn err(json: &str) -> ConfigError {
    let config: BalancerConfig = serde_json::from_str(json).expect("parses");
    config
        .build(&[Candidate::new(0)], Seed::new(1), Instant::EPOCH)
        .expect_err("must be rejected")
}

fn expect(json: &str, field: &str, range: &str) {
    let e = err(json);
    assert_eq!(e.field, field, "{json}: {e}");
    assert!(
        e.message.contains(range),
        "{json}: `{e}` should mention `{range}`"
    );
}

#[test]
fn balancer_ranges_are_enforced() {
    expect(
        r#"{"kind":"least_request","choice_count":1}"#,
        "least_request.choice_count",
        "2..=64",
    );
    expect(
        r#"{"kind":"least_request","choice_count":0}"#,
        "least_request.choice_count",
        "2..=64",
    );
    expect(
        r#"{"kind":"least_request","active_request_bias":-1.0}"#,
        "least_request.active_request_bias",
        ">= 0",
    );
    expect(
        r#"{"kind":"ring_hash","minimum_ring_size":4096,"maximum_ring_size":1024}"#,
        "ring_hash.minimum_ring_size",
        "1..=maximum_ring_size (1024)",
    );
    expect(
        r#"{"kind":"ring_hash","maximum_ring_size":9000000}"#,
        "ring_hash.maximum_ring_size",
        "1..=8388608",
    );
    expect(
        r#"{"kind":"maglev","table_size":65536}"#,
        "maglev.table_size",
        "prime",
    );
    expect(
        r#"{"kind":"maglev","table_size":5000012}"#,
        "maglev.table_size",
        "<= 5000011",
    );
    expect(
        r#"{"kind":"bounded_load","hash_balance_factor":99}"#,
        "bounded_load.hash_balance_factor",
        ">= 100",
    );
    expect(
        r#"{"kind":"peak_ewma","decay":"0s"}"#,
        "peak_ewma.decay",
        "> 0",
    );
    expect(
        r#"{"kind":"peak_ewma","default_rtt":"0ms"}"#,
        "peak_ewma.default_rtt",
        "> 0",
    );
    expect(
        r#"{"kind":"prequal","q_rif":1.5}"#,
        "prequal.q_rif",
        "0..=1",
    );
    expect(
        r#"{"kind":"prequal","pool_capacity":0}"#,
        "prequal.pool_capacity",
        "1..=1024",
    );
    expect(
        r#"{"kind":"orca_weighted_round_robin","error_utilization_penalty":-0.5}"#,
        "orca_weighted_round_robin.error_utilization_penalty",
        ">= 0",
    );
    expect(
        r#"{"kind":"round_robin","slow_start_config":{"slow_start_window":"0s"}}"#,
        "round_robin.slow_start_config.slow_start_window",
        "> 0",
    );
    expect(
        r#"{"kind":"least_request","slow_start_config":{"slow_start_window":"10s","aggression":0}}"#,
        "least_request.slow_start_config.aggression",
        "> 0",
    );
    expect(
        r#"{"kind":"round_robin","slow_start_config":{"slow_start_window":"10s","min_weight_percent":120}}"#,
        "round_robin.slow_start_config.min_weight_percent",
        "0..=100",
    );
}

#[test]
fn nan_is_rejected() {
    // JSON has no NaN; build the config in Rust, as an embedding program might.
    let config = BalancerConfig::LeastRequest(mesh_core::balancer::LeastRequestConfig {
        active_request_bias: f64::NAN,
        ..Default::default()
    });
    let e = config.validate().unwrap_err();
    assert_eq!(e.field, "least_request.active_request_bias");
    let p = PriorityConfig {
        healthy_panic_threshold: f64::NAN,
        ..Default::default()
    };
    assert_eq!(p.validate().unwrap_err().field, "healthy_panic_threshold");
}

#[test]
fn negative_nan_and_unitless_durations_fail_to_parse() {
    for (bad, says) in [
        (r#"{"kind":"peak_ewma","decay":"-10s"}"#, ">= 0"),
        (r#"{"kind":"peak_ewma","decay":"NaNs"}"#, "not a number"),
        (r#"{"kind":"peak_ewma","decay":"10"}"#, "no unit"),
        (
            r#"{"kind":"peak_ewma","decay":"10 parsecs"}"#,
            "unknown duration unit",
        ),
        (
            r#"{"kind":"peak_ewma","decay":10}"#,
            "a duration with a unit",
        ),
    ] {
        let e = serde_json::from_str::<BalancerConfig>(bad)
            .unwrap_err()
            .to_string();
        assert!(e.contains(says), "{bad}: `{e}` should say `{says}`");
    }
}

#[test]
fn unknown_kinds_and_fields_are_errors() {
    let e = serde_json::from_str::<BalancerConfig>(r#"{"kind":"least_requst"}"#).unwrap_err();
    assert!(e.to_string().contains("least_request"), "{e}");
    let e = serde_json::from_str::<BalancerConfig>(r#"{"kind":"least_request","choise_count":2}"#)
        .unwrap_err();
    assert!(e.to_string().contains("choise_count"), "{e}");
}

#[test]
fn priority_ranges_are_enforced() {
    let p = PriorityConfig {
        overprovisioning_factor: 0.9,
        ..Default::default()
    };
    let e = p.validate().unwrap_err();
    assert_eq!(e.field, "overprovisioning_factor");
    assert!(e.message.contains("1..="), "{e}");
    let p = PriorityConfig {
        healthy_panic_threshold: 101.0,
        ..Default::default()
    };
    assert!(p.validate().unwrap_err().message.contains("0..=100"));
}

#[test]
fn all_zero_weights_are_rejected() {
    let hosts = [Candidate::weighted(0, 0), Candidate::weighted(1, 0)];
    let e = check_weights(&hosts).unwrap_err();
    assert_eq!(e.field, "endpoints.weight");
    assert!(e.message.contains("1..="), "{e}");
    let config = BalancerConfig::WeightedRandom;
    assert!(config.build(&hosts, Seed::new(1), Instant::EPOCH).is_err());
    // An empty host set is fine: endpoints may arrive later.
    assert!(config.build(&[], Seed::new(1), Instant::EPOCH).is_ok());
}

proptest! {
    /// Any numbers in any field: an `Ok` or an `Err`, never a panic.
    #[test]
    fn no_config_panics(
        d in any::<u32>(),
        bias in any::<f64>(),
        min_ring in 0u64..20_000,
        max_ring in 0u64..10_000_000,
        table in 0u64..6_000_000,
        factor in any::<u32>(),
        q in any::<f64>(),
        pool in any::<u32>(),
        opf in any::<f64>(),
        panic_t in any::<f64>(),
    ) {
        use mesh_core::balancer::*;
        let configs = [
            BalancerConfig::LeastRequest(LeastRequestConfig { choice_count: d, active_request_bias: bias, ..Default::default() }),
            BalancerConfig::RingHash(RingHashConfig { minimum_ring_size: min_ring, maximum_ring_size: max_ring.min(20_000) }),
            BalancerConfig::Maglev(MaglevConfig { table_size: table }),
            BalancerConfig::BoundedLoad(BoundedLoadConfig { hash_balance_factor: factor, minimum_ring_size: min_ring, maximum_ring_size: max_ring }),
            BalancerConfig::Prequal(PrequalConfig { q_rif: q, pool_capacity: pool, ..Default::default() }),
        ];
        for c in configs {
            if c.validate().is_ok() && matches!(c, BalancerConfig::Maglev(_) | BalancerConfig::BoundedLoad(_)) {
                // Valid big tables are slow to build and prove nothing more here.
                continue;
            }
            let _ = c.build(&[Candidate::new(0), Candidate::new(1)], Seed::new(1), Instant::EPOCH);
        }
        let _ = PriorityConfig { overprovisioning_factor: opf, healthy_panic_threshold: panic_t }.validate();
    }
}

fn cluster_err(json: &str) -> ConfigError {
    use mesh_core::{Cluster, ClusterConfig, EndpointMeta};
    let config: ClusterConfig = serde_json::from_str(json).expect("parses");
    Cluster::new(
        &config,
        &vec![EndpointMeta::default(); 2],
        Seed::new(1),
        Instant::EPOCH,
    )
    .expect_err("must be rejected")
}

fn expect_cluster(json: &str, field: &str, range: &str) {
    let e = cluster_err(json);
    assert_eq!(e.field, field, "{json}: {e}");
    assert!(
        e.message.contains(range),
        "{json}: `{e}` should mention `{range}`"
    );
}

const HC: &str =
    r#""timeout": "1s", "interval": "5s", "unhealthy_threshold": 2, "healthy_threshold": 2"#;

#[test]
fn cluster_ranges_are_enforced() {
    let cases = [
        (format!(r#"{{"health_check": {{{HC}, "interval_jitter_percent": 101}}}}"#), "health_check.interval_jitter_percent", "0..=100"),
        (r#"{"health_check": {"timeout": "0s", "interval": "5s", "unhealthy_threshold": 2, "healthy_threshold": 2}}"#.into(), "health_check.timeout", "> 0"),
        (r#"{"health_check": {"timeout": "1s", "interval": "5s", "unhealthy_threshold": 0, "healthy_threshold": 2}}"#.into(), "health_check.unhealthy_threshold", ">= 1"),
        (r#"{"outlier_detection": {"max_ejection_percent": 101}}"#.into(), "outlier_detection.max_ejection_percent", "0..=100"),
        (r#"{"outlier_detection": {"enforcing_consecutive_5xx": 200}}"#.into(), "outlier_detection.enforcing_consecutive_5xx", "0..=100"),
        (r#"{"outlier_detection": {"interval": "0s"}}"#.into(), "outlier_detection.interval", "> 0"),
        (r#"{"failure_accrual": {"jitter_ratio": 1.5}}"#.into(), "failure_accrual.jitter_ratio", "0..=1"),
        (r#"{"failure_accrual": {"min_penalty": "10s", "max_penalty": "1s"}}"#.into(), "failure_accrual.max_penalty", ">= min_penalty"),
        (r#"{"failure_accrual": {"consecutive_failures": 0}}"#.into(), "failure_accrual.consecutive_failures", ">= 1"),
        (r#"{"failure_accrual": {"success_rate": {"threshold": 1.2}}}"#.into(), "failure_accrual.success_rate.threshold", "0..=1"),
        (r#"{"retries": {"num_retries": 101}}"#.into(), "retries.num_retries", "0..=100"),
        (r#"{"retries": {"per_try_timeout": "0s"}}"#.into(), "retries.per_try_timeout", "> 0"),
        (r#"{"retries": {"backoff": {"kind": "envoy", "base_interval": "0s"}}}"#.into(), "retries.retry_back_off.base_interval", "> 0"),
        (r#"{"retries": {"backoff": {"kind": "envoy", "base_interval": "50ms", "max_interval": "10ms"}}}"#.into(), "retries.retry_back_off.max_interval", ">= base_interval"),
        (r#"{"retries": {"backoff": {"kind": "grpc", "initial_backoff": "1s", "max_backoff": "5s", "backoff_multiplier": -2}}}"#.into(), "retries.retry_back_off.backoff_multiplier", "> 0"),
        (r#"{"retries": {"budget": {"kind": "tps", "retry_ratio": -0.1}}}"#.into(), "retries.budget.retry_ratio", "0..=1000"),
        (r#"{"retries": {"budget": {"kind": "tps", "ttl": "500ms"}}}"#.into(), "retries.budget.ttl", "1s..=60s"),
        (r#"{"retries": {"budget": {"kind": "envoy", "budget_percent": 120}}}"#.into(), "retries.budget.budget_percent", "0..=100"),
        (r#"{"retries": {"budget": {"kind": "grpc_throttle", "max_tokens": 0, "token_ratio": 0.1}}}"#.into(), "retries.budget.max_tokens", "0.001..=1000"),
        (r#"{"retries": {"budget": {"kind": "grpc_throttle", "max_tokens": 10, "token_ratio": 11}}}"#.into(), "retries.budget.token_ratio", "0.001..=10"),
        (r#"{"hedging": {"hedging_delay": "10ms"}}"#.into(), "hedging", "num_retries >= 1"),
        (r#"{"retries": {}, "hedging": {"hedge_on_per_try_timeout": true}}"#.into(), "hedging.hedge_on_per_try_timeout", "per_try_timeout"),
        (r#"{"retries": {}, "hedging": {"hedging_delay": "0s"}}"#.into(), "hedging.hedging_delay", "> 0"),
        (r#"{"balancer": {"kind": "least_request", "choice_count": 1}}"#.into(), "balancer.least_request.choice_count", "2..=64"),
        (r#"{"zone_aware": {"local_zone": "x", "local_cluster": {"a": 1}}}"#.into(), "zone_aware.local_cluster", "local zone `x`"),
        (r#"{"zone_aware": {"local_zone": "a", "local_cluster": {"a": 1}, "routing_enabled": 150}}"#.into(), "zone_aware.routing_enabled", "0..=100"),
        (r#"{"priority": {"overprovisioning_factor": 0.5}}"#.into(), "priority.overprovisioning_factor", "in 1..="),
    ];
    for (json, field, range) in &cases {
        expect_cluster(json, field, range);
    }
    let meta = mesh_core::EndpointMeta {
        priority: 1000,
        ..Default::default()
    };
    let e = mesh_core::Cluster::new(&Default::default(), &[meta], Seed::new(1), Instant::EPOCH)
        .unwrap_err();
    assert_eq!(e.field, "endpoints.priority");
    assert!(e.message.contains("0..=127"), "{e}");
}

#[test]
fn cluster_config_names_unknown_and_missing_fields() {
    use mesh_core::ClusterConfig;
    let e = serde_json::from_str::<ClusterConfig>(r#"{"retries": {"num_retry": 2}}"#).unwrap_err();
    assert!(e.to_string().contains("unknown field `num_retry`"), "{e}");
    let e =
        serde_json::from_str::<ClusterConfig>(r#"{"retries": {"retry_on": ["6xx"]}}"#).unwrap_err();
    assert!(e.to_string().contains("unknown variant `6xx`"), "{e}");
    let e = serde_json::from_str::<ClusterConfig>(r#"{"health_check": {"timeout": "1s"}}"#)
        .unwrap_err();
    assert!(e.to_string().contains("missing field `interval`"), "{e}");
    let e = serde_json::from_str::<ClusterConfig>(r#"{"outlier_detection": {"interval": "10"}}"#)
        .unwrap_err();
    assert!(e.to_string().contains("unit"), "{e}");
    // Envoy's and gRPC's spellings both parse.
    let c: ClusterConfig = serde_json::from_str(
        r#"{"retries": {"max": 2, "retry_on": ["5xx", "gateway-error", "connect_failure", "deadline-exceeded"],
            "retry_budget": {"kind": "linkerd", "ratio": 0.2, "min_per_sec": 10}}}"#,
    )
    .unwrap();
    assert_eq!(c.retries.unwrap().num_retries, 2);
}

proptest! {
    /// Any numbers in the resilience sections: `Cluster::new` answers `Ok` or `Err`, and a valid
    /// cluster serves traffic without panicking.
    #[test]
    fn no_cluster_config_panics(
        pct in any::<u32>(),
        enforce in any::<u32>(),
        factor in any::<u32>(),
        jitter in any::<f64>(),
        threshold in any::<f64>(),
        retries in any::<u32>(),
        ratio in any::<f64>(),
        tokens in any::<f64>(),
        mult in any::<f64>(),
        nanos in any::<u64>(),
    ) {
        use mesh_core::accrual::{FailureAccrualConfig, SuccessRateAccrual};
        use mesh_core::outlier::OutlierConfig;
        use mesh_core::retry::{BackoffConfig, RetryBudgetConfig, RetryConfig};
        use mesh_core::{Cluster, ClusterConfig, Duration, EndpointMeta, Input, Outcome, Output, RequestId};
        let d = Duration::from_nanos(nanos % 100_000_000_000);
        let budgets = [
            RetryBudgetConfig::Envoy { budget_percent: ratio, min_retry_concurrency: retries },
            RetryBudgetConfig::Tps { retry_ratio: ratio, min_retries_per_second: retries, ttl: d },
            RetryBudgetConfig::GrpcThrottle { max_tokens: tokens, token_ratio: ratio },
        ];
        for budget in budgets {
            let config = ClusterConfig {
                outlier_detection: Some(OutlierConfig {
                    max_ejection_percent: pct,
                    enforcing_success_rate: enforce,
                    success_rate_stdev_factor: factor,
                    base_ejection_time: d,
                    max_ejection_time_jitter: d,
                    ..Default::default()
                }),
                failure_accrual: Some(FailureAccrualConfig {
                    jitter_ratio: jitter,
                    success_rate: Some(SuccessRateAccrual { threshold, window: d, min_requests: retries }),
                    ..Default::default()
                }),
                retries: Some(RetryConfig {
                    num_retries: retries,
                    retry_back_off: BackoffConfig::Grpc { initial_backoff: d, max_backoff: d, backoff_multiplier: mult },
                    budget: Some(budget),
                    ..Default::default()
                }),
                ..Default::default()
            };
            let Ok(mut c) = Cluster::new(&config, &vec![EndpointMeta::default(); 3], Seed::new(1), Instant::EPOCH) else {
                continue;
            };
            for i in 0..50 {
                c.handle_input(Input::Request { request: RequestId(i), hash: None }, Instant::EPOCH);
                while let Some(o) = c.poll_output() {
                    if let Output::Send { attempt, .. } = o {
                        c.handle_input(Input::AttemptDone { attempt, outcome: Outcome::ServerError, load: None }, Instant::EPOCH);
                    }
                }
                if let Some(t) = c.poll_timeout() {
                    c.handle_timeout(t);
                }
            }
        }
    }
}
