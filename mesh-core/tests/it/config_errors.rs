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
