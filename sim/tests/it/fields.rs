//! No inert field: every field of the policy config either changes what a run measures, or the
//! scenario loader refuses it.
//!
//! The walk serializes a policy with every section and option set (once per balancer kind,
//! back-off kind and budget kind) and collects every leaf field. Each leaf must have a case
//! below: a small scenario built to exercise it (faults, health checks, zones, priorities and
//! keys), run twice on the same common random numbers, once as the base policy and once with
//! the field changed; the two results must differ. A new field without a case fails the walk,
//! and a field made inert (read by nothing) fails its case.

use std::collections::BTreeSet;

use serde_json::Value;

const SCENARIO: &str = r#"
name: fields
seed: 17
duration: 8s
warmup: 1s
sample_period: 1s
zones: { a: {}, b: {} }
network:
  same_zone: { dist: lognormal, median: 100us, p99: 400us }
  cross_zone: { dist: constant, value: 1ms }
services:
  backend:
    instances: 6
    concurrency: 2
    error_rate: 0.02
    service_time: { dist: exponential, mean: 2ms }
    zone: { a: 3, b: 3 }
    overrides:
      0: { weight: 2 }
      1: { slowdown: 3 }
      5: { priority: 1 }
clients:
  load:
    proxies: 4
    zone: { a: 2, b: 2 }
    target: backend
    arrival: { process: poisson, rate: 1500/s }
    keys: { dist: zipf, count: 100, exponent: 1.0 }
faults:
  - { at: 2s, until: 6s, target: backend/4, kind: errors, rate: 0.3 }
  - { at: 3s, until: 5s, target: backend/2, kind: crash }
  - { at: 4s, until: 6s, target: backend/3, kind: fast_fail }
policy:
  timeout: 300ms
  balancer: { kind: least_request }
  priority: { overprovisioning_factor: 1.4, healthy_panic_threshold: 50 }
  health_check:
    timeout: 100ms
    interval: 400ms
    unhealthy_threshold: 2
    healthy_threshold: 2
    interval_jitter: 10ms
    interval_jitter_percent: 5
    initial_jitter: 20ms
    no_traffic_interval: 400ms
    unhealthy_interval: 600ms
    unhealthy_edge_interval: 300ms
    healthy_edge_interval: 300ms
    initial_health: healthy
  outlier_detection:
    consecutive_5xx: 4
    consecutive_gateway_failure: 4
    consecutive_local_origin_failure: 4
    enforcing_consecutive_5xx: 100
    enforcing_consecutive_gateway_failure: 100
    enforcing_consecutive_local_origin_failure: 100
    split_external_local_origin_errors: true
    interval: 500ms
    base_ejection_time: 1s
    max_ejection_time: 5s
    max_ejection_time_jitter: 100ms
    max_ejection_percent: 50
    always_eject_one_host: false
    enforcing_success_rate: 100
    success_rate_minimum_hosts: 3
    success_rate_request_volume: 20
    success_rate_stdev_factor: 1900
    failure_percentage_threshold: 40
    enforcing_failure_percentage: 100
    failure_percentage_minimum_hosts: 3
    failure_percentage_request_volume: 20
    successful_active_health_check_uneject_host: true
  failure_accrual:
    consecutive_failures: 6
    success_rate: { threshold: 0.8, window: 2s, min_requests: 10 }
    min_penalty: 200ms
    max_penalty: 2s
    jitter_ratio: 0.2
  circuit_breakers: { max_requests: 40, max_retries: 3 }
  retries:
    num_retries: 2
    retry_on: [5xx, gateway-error, reset, connect-failure, timeout]
    per_try_timeout: 60ms
    retry_back_off: { kind: envoy, base_interval: 5ms, max_interval: 40ms }
    retry_host_predicate: [previous_hosts]
    host_selection_retry_max_attempts: 2
    budget: { kind: tps, retry_ratio: 0.2, min_retries_per_second: 10, ttl: 2s }
  hedging: { hedging_delay: 40ms, hedge_on_per_try_timeout: false }
  zone_aware: { routing_enabled: 100, min_cluster_size: 4, fail_traffic_on_panic: false }
"#;

/// Policies whose serialization, together, holds every leaf field: the base, and one per
/// balancer kind, back-off kind and budget kind.
const VARIANTS: &[&str] = &[
    "{}",
    "{ balancer: { kind: round_robin, slow_start_config: { slow_start_window: 2s } } }",
    "{ balancer: { kind: random } }",
    "{ balancer: { kind: weighted_random } }",
    "{ balancer: { kind: least_request, slow_start_config: { slow_start_window: 2s } } }",
    "{ balancer: { kind: join_shortest_queue } }",
    "{ balancer: { kind: peak_ewma } }",
    "{ balancer: { kind: ring_hash } }",
    "{ balancer: { kind: maglev } }",
    "{ balancer: { kind: bounded_load } }",
    "{ balancer: { kind: prequal } }",
    "{ balancer: { kind: orca_weighted_round_robin } }",
    "{ retries: { retry_back_off: { kind: grpc, initial_backoff: 5ms, max_backoff: 40ms, backoff_multiplier: 2 } } }",
    "{ retries: { retry_back_off: { kind: none } } }",
    "{ retries: { budget: { kind: envoy } } }",
    "{ retries: { budget: { kind: grpc_throttle, max_tokens: 10, token_ratio: 0.1 } } }",
    "{ zone_aware: null, locality_weighted_lb: {} }",
    "{ connections: { protocol: http2 } }",
];

/// What a case expects.
enum Expect {
    /// The two runs differ.
    Changes,
    /// The loader refuses the changed policy, with this text in its message.
    Refused(&'static str),
}
use Expect::{Changes, Refused};

/// Failure-percentage ejection alone (the consecutive and success-rate rules off): the 30%
/// erroring backend crosses a 20% threshold.
const FAILURE_PERCENTAGE: &str = "outlier_detection: { consecutive_5xx: 0, consecutive_gateway_failure: 0, enforcing_success_rate: 0, failure_percentage_threshold: 20 }";

/// Success-rate ejection alone, at one standard deviation.
const SUCCESS_RATE: &str = "outlier_detection: { consecutive_5xx: 0, consecutive_gateway_failure: 0, enforcing_failure_percentage: 0, success_rate_stdev_factor: 1000 }";

const LR_SLOW: &str = "balancer: { kind: least_request, slow_start_config: { slow_start_window: 2s, aggression: 1.0, min_weight_percent: 10 } }";
const RR_SLOW: &str = "balancer: { kind: round_robin, slow_start_config: { slow_start_window: 2s, aggression: 1.0, min_weight_percent: 10 } }";

/// (leaf, base override, changed override, expectation). Leaves of a variant section are
/// written `section.<kind>.field`.
fn cases() -> Vec<(&'static str, String, String, Expect)> {
    let plain =
        |leaf: &'static str, changed: &str| (leaf, "{}".to_owned(), changed.to_owned(), Changes);
    let within = |leaf: &'static str, base: &str, changed: &str| {
        (leaf, format!("{{ {base} }}"), changed.to_owned(), Changes)
    };
    let bal = |leaf: &'static str, kind: &str, field: &str| {
        (
            leaf,
            format!("{{ balancer: {{ kind: {kind} }} }}"),
            format!("{{ balancer: {{ kind: {kind}, {field} }} }}"),
            Changes,
        )
    };
    vec![
        plain("timeout", "{ timeout: 50ms }"),
        plain("balancer.kind", "{ balancer: { kind: random } }"),
        bal(
            "balancer.least_request.choice_count",
            "least_request",
            "choice_count: 4",
        ),
        within(
            "balancer.least_request.active_request_bias",
            "balancer: { kind: least_request }",
            "{ balancer: { kind: least_request, active_request_bias: 2.0 } }",
        ),
        bal(
            "balancer.least_request.sampling",
            "least_request",
            "sampling: without_replacement",
        ),
        within(
            "balancer.least_request.slow_start_config",
            "",
            &format!("{{ {LR_SLOW} }}"),
        ),
        within(
            "balancer.least_request.slow_start_config.slow_start_window",
            LR_SLOW,
            "{ balancer: { kind: least_request, slow_start_config: { slow_start_window: 4s, aggression: 1.0, min_weight_percent: 10 } } }",
        ),
        within(
            "balancer.least_request.slow_start_config.aggression",
            LR_SLOW,
            "{ balancer: { kind: least_request, slow_start_config: { slow_start_window: 2s, aggression: 3.0, min_weight_percent: 10 } } }",
        ),
        within(
            "balancer.least_request.slow_start_config.min_weight_percent",
            LR_SLOW,
            "{ balancer: { kind: least_request, slow_start_config: { slow_start_window: 2s, aggression: 1.0, min_weight_percent: 60 } } }",
        ),
        within(
            "balancer.round_robin.slow_start_config",
            "balancer: { kind: round_robin }",
            &format!("{{ {RR_SLOW} }}"),
        ),
        within(
            "balancer.round_robin.slow_start_config.slow_start_window",
            RR_SLOW,
            "{ balancer: { kind: round_robin, slow_start_config: { slow_start_window: 4s, aggression: 1.0, min_weight_percent: 10 } } }",
        ),
        within(
            "balancer.round_robin.slow_start_config.aggression",
            RR_SLOW,
            "{ balancer: { kind: round_robin, slow_start_config: { slow_start_window: 2s, aggression: 3.0, min_weight_percent: 10 } } }",
        ),
        within(
            "balancer.round_robin.slow_start_config.min_weight_percent",
            RR_SLOW,
            "{ balancer: { kind: round_robin, slow_start_config: { slow_start_window: 2s, aggression: 1.0, min_weight_percent: 60 } } }",
        ),
        bal("balancer.peak_ewma.decay", "peak_ewma", "decay: 100ms"),
        bal(
            "balancer.peak_ewma.default_rtt",
            "peak_ewma",
            "default_rtt: 100ms",
        ),
        bal(
            "balancer.ring_hash.minimum_ring_size",
            "ring_hash",
            "minimum_ring_size: 64",
        ),
        within(
            "balancer.ring_hash.maximum_ring_size",
            "balancer: { kind: ring_hash, minimum_ring_size: 101 }",
            // 5 equal hosts: ceil(101 / 5) x 5 = 105 points, unless capped at 101.
            "{ balancer: { kind: ring_hash, minimum_ring_size: 101, maximum_ring_size: 101 } }",
        ),
        bal("balancer.maglev.table_size", "maglev", "table_size: 7"),
        bal(
            "balancer.bounded_load.hash_balance_factor",
            "bounded_load",
            "hash_balance_factor: 110",
        ),
        bal(
            "balancer.bounded_load.minimum_ring_size",
            "bounded_load",
            "minimum_ring_size: 64",
        ),
        within(
            "balancer.bounded_load.maximum_ring_size",
            "balancer: { kind: bounded_load, minimum_ring_size: 101 }",
            // 5 equal hosts: ceil(101 / 5) x 5 = 105 points, unless capped at 101.
            "{ balancer: { kind: bounded_load, minimum_ring_size: 101, maximum_ring_size: 101 } }",
        ),
        bal(
            "balancer.prequal.probes_per_query",
            "prequal",
            "probes_per_query: 1",
        ),
        bal(
            "balancer.prequal.pool_capacity",
            "prequal",
            "pool_capacity: 1",
        ),
        bal(
            "balancer.prequal.max_probe_age",
            "prequal",
            "max_probe_age: 5ms",
        ),
        bal(
            "balancer.prequal.removes_per_query",
            "prequal",
            "removes_per_query: 0",
        ),
        // The reuse count depends on reuse_delta only while the pool is smaller than the hosts
        // (1 + delta / ((1 - m/n) r_probe - r_remove) > 0).
        within(
            "balancer.prequal.reuse_delta",
            "balancer: { kind: prequal, pool_capacity: 2, removes_per_query: 0 }",
            "{ balancer: { kind: prequal, pool_capacity: 2, removes_per_query: 0, reuse_delta: 10 } }",
        ),
        bal("balancer.prequal.max_reuse", "prequal", "max_reuse: 1"),
        bal("balancer.prequal.q_rif", "prequal", "q_rif: 0.2"),
        bal("balancer.prequal.rif_history", "prequal", "rif_history: 4"),
        bal(
            "balancer.orca_weighted_round_robin.blackout_period",
            "orca_weighted_round_robin",
            "blackout_period: 500ms",
        ),
        within(
            "balancer.orca_weighted_round_robin.weight_expiration_period",
            "balancer: { kind: orca_weighted_round_robin, blackout_period: 0s }",
            "{ balancer: { kind: orca_weighted_round_robin, blackout_period: 0s, weight_expiration_period: 200ms } }",
        ),
        bal(
            "balancer.orca_weighted_round_robin.weight_update_period",
            "orca_weighted_round_robin",
            "weight_update_period: 3s",
        ),
        within(
            "balancer.orca_weighted_round_robin.error_utilization_penalty",
            "balancer: { kind: orca_weighted_round_robin, blackout_period: 0s }",
            "{ balancer: { kind: orca_weighted_round_robin, blackout_period: 0s, error_utilization_penalty: 20 } }",
        ),
        within(
            "priority.overprovisioning_factor",
            "health_check: { initial_health: unhealthy }",
            "{ health_check: { initial_health: unhealthy }, priority: { overprovisioning_factor: 1.0 } }",
        ),
        within(
            "priority.healthy_panic_threshold",
            "priority: { overprovisioning_factor: 1.0 }",
            "{ priority: { overprovisioning_factor: 1.0, healthy_panic_threshold: 90 } }",
        ),
        plain("health_check", "{ health_check: null }"),
        plain("health_check.timeout", "{ health_check: { timeout: 1ms } }"),
        plain(
            "health_check.interval",
            "{ health_check: { interval: 900ms } }",
        ),
        plain(
            "health_check.unhealthy_threshold",
            "{ health_check: { unhealthy_threshold: 1 } }",
        ),
        plain(
            "health_check.healthy_threshold",
            "{ health_check: { healthy_threshold: 5 } }",
        ),
        plain(
            "health_check.interval_jitter",
            "{ health_check: { interval_jitter: 200ms } }",
        ),
        plain(
            "health_check.interval_jitter_percent",
            "{ health_check: { interval_jitter_percent: 90 } }",
        ),
        plain(
            "health_check.initial_jitter",
            "{ health_check: { initial_jitter: 300ms } }",
        ),
        within(
            "health_check.no_traffic_interval",
            "health_check: { interval: 2s }",
            "{ health_check: { interval: 2s, no_traffic_interval: 100ms } }",
        ),
        plain(
            "health_check.unhealthy_interval",
            "{ health_check: { unhealthy_interval: 2s } }",
        ),
        plain(
            "health_check.unhealthy_edge_interval",
            "{ health_check: { unhealthy_edge_interval: 2s } }",
        ),
        plain(
            "health_check.healthy_edge_interval",
            "{ health_check: { healthy_edge_interval: 2s } }",
        ),
        plain(
            "health_check.initial_health",
            "{ health_check: { initial_health: unhealthy } }",
        ),
        plain("outlier_detection", "{ outlier_detection: null }"),
        plain(
            "outlier_detection.consecutive_5xx",
            "{ outlier_detection: { consecutive_5xx: 2 } }",
        ),
        plain(
            "outlier_detection.consecutive_gateway_failure",
            "{ outlier_detection: { consecutive_gateway_failure: 2 } }",
        ),
        plain(
            "outlier_detection.consecutive_local_origin_failure",
            "{ outlier_detection: { consecutive_local_origin_failure: 1 } }",
        ),
        plain(
            "outlier_detection.enforcing_consecutive_5xx",
            "{ outlier_detection: { enforcing_consecutive_5xx: 0 } }",
        ),
        plain(
            "outlier_detection.enforcing_consecutive_gateway_failure",
            "{ outlier_detection: { enforcing_consecutive_gateway_failure: 0 } }",
        ),
        plain(
            "outlier_detection.enforcing_consecutive_local_origin_failure",
            "{ outlier_detection: { enforcing_consecutive_local_origin_failure: 0 } }",
        ),
        within(
            "outlier_detection.split_external_local_origin_errors",
            "outlier_detection: { consecutive_local_origin_failure: 100 }",
            "{ outlier_detection: { consecutive_local_origin_failure: 100, split_external_local_origin_errors: false } }",
        ),
        plain(
            "outlier_detection.interval",
            "{ outlier_detection: { interval: 2s } }",
        ),
        plain(
            "outlier_detection.base_ejection_time",
            "{ outlier_detection: { base_ejection_time: 3s } }",
        ),
        // A second ejection lasts 2 x base unless max_ejection_time caps it: short ejections,
        // and nothing else taking the failing hosts out, so hosts are ejected again.
        within(
            "outlier_detection.max_ejection_time",
            "failure_accrual: null, health_check: null, outlier_detection: { interval: 100ms, base_ejection_time: 100ms }",
            "{ failure_accrual: null, health_check: null, outlier_detection: { interval: 100ms, base_ejection_time: 100ms, max_ejection_time: 100ms } }",
        ),
        plain(
            "outlier_detection.max_ejection_time_jitter",
            "{ outlier_detection: { max_ejection_time_jitter: 900ms } }",
        ),
        plain(
            "outlier_detection.max_ejection_percent",
            "{ outlier_detection: { max_ejection_percent: 10 } }",
        ),
        within(
            "outlier_detection.always_eject_one_host",
            "outlier_detection: { max_ejection_percent: 10 }",
            "{ outlier_detection: { max_ejection_percent: 10, always_eject_one_host: true } }",
        ),
        within(
            "outlier_detection.enforcing_success_rate",
            SUCCESS_RATE,
            "{ outlier_detection: { consecutive_5xx: 0, consecutive_gateway_failure: 0, enforcing_failure_percentage: 0, success_rate_stdev_factor: 1000, enforcing_success_rate: 0 } }",
        ),
        within(
            "outlier_detection.success_rate_minimum_hosts",
            SUCCESS_RATE,
            "{ outlier_detection: { consecutive_5xx: 0, consecutive_gateway_failure: 0, enforcing_failure_percentage: 0, success_rate_stdev_factor: 1000, success_rate_minimum_hosts: 10 } }",
        ),
        within(
            "outlier_detection.success_rate_request_volume",
            SUCCESS_RATE,
            "{ outlier_detection: { consecutive_5xx: 0, consecutive_gateway_failure: 0, enforcing_failure_percentage: 0, success_rate_stdev_factor: 1000, success_rate_request_volume: 1000 } }",
        ),
        plain(
            "outlier_detection.success_rate_stdev_factor",
            "{ outlier_detection: { success_rate_stdev_factor: 500 } }",
        ),
        plain(
            "outlier_detection.failure_percentage_threshold",
            "{ outlier_detection: { failure_percentage_threshold: 10 } }",
        ),
        within(
            "outlier_detection.enforcing_failure_percentage",
            FAILURE_PERCENTAGE,
            "{ outlier_detection: { consecutive_5xx: 0, consecutive_gateway_failure: 0, enforcing_success_rate: 0, failure_percentage_threshold: 20, enforcing_failure_percentage: 0 } }",
        ),
        within(
            "outlier_detection.failure_percentage_minimum_hosts",
            FAILURE_PERCENTAGE,
            "{ outlier_detection: { consecutive_5xx: 0, consecutive_gateway_failure: 0, enforcing_success_rate: 0, failure_percentage_threshold: 20, failure_percentage_minimum_hosts: 10 } }",
        ),
        within(
            "outlier_detection.failure_percentage_request_volume",
            FAILURE_PERCENTAGE,
            "{ outlier_detection: { consecutive_5xx: 0, consecutive_gateway_failure: 0, enforcing_success_rate: 0, failure_percentage_threshold: 20, failure_percentage_request_volume: 1000 } }",
        ),
        plain(
            "outlier_detection.successful_active_health_check_uneject_host",
            "{ outlier_detection: { successful_active_health_check_uneject_host: false } }",
        ),
        plain("failure_accrual", "{ failure_accrual: null }"),
        plain(
            "failure_accrual.consecutive_failures",
            "{ failure_accrual: { consecutive_failures: 2 } }",
        ),
        plain(
            "failure_accrual.success_rate",
            "{ failure_accrual: { success_rate: null } }",
        ),
        plain(
            "failure_accrual.success_rate.threshold",
            "{ failure_accrual: { success_rate: { threshold: 0.99 } } }",
        ),
        plain(
            "failure_accrual.success_rate.window",
            "{ failure_accrual: { success_rate: { window: 200ms } } }",
        ),
        plain(
            "failure_accrual.success_rate.min_requests",
            "{ failure_accrual: { success_rate: { min_requests: 1000 } } }",
        ),
        plain(
            "failure_accrual.min_penalty",
            "{ failure_accrual: { min_penalty: 1s } }",
        ),
        within(
            "failure_accrual.max_penalty",
            "failure_accrual: { min_penalty: 1s }",
            "{ failure_accrual: { min_penalty: 1s, max_penalty: 1s } }",
        ),
        plain(
            "failure_accrual.jitter_ratio",
            "{ failure_accrual: { jitter_ratio: 0.9 } }",
        ),
        plain(
            "circuit_breakers.max_requests",
            "{ circuit_breakers: { max_requests: 3 } }",
        ),
        plain(
            "circuit_breakers.max_retries",
            "{ retries: { budget: null }, circuit_breakers: { max_retries: 0 } }",
        ),
        within(
            "circuit_breakers.max_connections",
            "connections: {}",
            "{ connections: {}, circuit_breakers: { max_connections: 2 } }",
        ),
        within(
            "circuit_breakers.max_pending_requests",
            "connections: {}, circuit_breakers: { max_connections: 2 }",
            "{ connections: {}, circuit_breakers: { max_connections: 2, max_pending_requests: 1 } }",
        ),
        plain("connections", "{ connections: {} }"),
        within(
            "connections.protocol",
            "connections: {}",
            "{ connections: { protocol: http2 } }",
        ),
        within(
            "connections.max_requests_per_connection",
            "connections: {}",
            "{ connections: { max_requests_per_connection: 1 } }",
        ),
        within(
            "connections.idle_timeout",
            "connections: {}",
            "{ connections: { idle_timeout: 1ms } }",
        ),
        within(
            "connections.max_concurrent_streams",
            "connections: { protocol: http2 }",
            "{ connections: { protocol: http2, max_concurrent_streams: 1 } }",
        ),
        within(
            "connections.tls",
            "connections: {}",
            "{ connections: { tls: tls } }",
        ),
        plain("retries", "{ retries: null, hedging: null }"),
        plain("retries.num_retries", "{ retries: { num_retries: 1 } }"),
        plain("retries.retry_on", "{ retries: { retry_on: [reset] } }"),
        plain(
            "retries.per_try_timeout",
            "{ retries: { per_try_timeout: 20ms } }",
        ),
        plain(
            "retries.retry_back_off.kind",
            "{ retries: { retry_back_off: { kind: none } } }",
        ),
        plain(
            "retries.retry_back_off.envoy.base_interval",
            "{ retries: { retry_back_off: { base_interval: 30ms } } }",
        ),
        within(
            "retries.retry_back_off.envoy.max_interval",
            "retries: { retry_back_off: { kind: envoy, base_interval: 20ms } }",
            "{ retries: { retry_back_off: { kind: envoy, base_interval: 20ms, max_interval: 21ms } } }",
        ),
        within(
            "retries.retry_back_off.grpc.initial_backoff",
            "retries: { retry_back_off: { kind: grpc, initial_backoff: 5ms, max_backoff: 40ms, backoff_multiplier: 2 } }",
            "{ retries: { retry_back_off: { kind: grpc, initial_backoff: 30ms, max_backoff: 40ms, backoff_multiplier: 2 } } }",
        ),
        within(
            "retries.retry_back_off.grpc.max_backoff",
            "retries: { retry_back_off: { kind: grpc, initial_backoff: 5ms, max_backoff: 40ms, backoff_multiplier: 8 } }",
            "{ retries: { retry_back_off: { kind: grpc, initial_backoff: 5ms, max_backoff: 6ms, backoff_multiplier: 8 } } }",
        ),
        within(
            "retries.retry_back_off.grpc.backoff_multiplier",
            "retries: { retry_back_off: { kind: grpc, initial_backoff: 5ms, max_backoff: 40ms, backoff_multiplier: 2 } }",
            "{ retries: { retry_back_off: { kind: grpc, initial_backoff: 5ms, max_backoff: 40ms, backoff_multiplier: 6 } } }",
        ),
        plain(
            "retries.retry_host_predicate",
            "{ retries: { retry_host_predicate: [] } }",
        ),
        plain(
            "retries.host_selection_retry_max_attempts",
            "{ retries: { host_selection_retry_max_attempts: 1 } }",
        ),
        plain("retries.budget", "{ retries: { budget: null } }"),
        plain(
            "retries.budget.kind",
            "{ retries: { budget: { kind: envoy } } }",
        ),
        plain(
            "retries.budget.tps.retry_ratio",
            "{ retries: { budget: { retry_ratio: 0.01 } } }",
        ),
        // The reserve binds when the ratio buys next to nothing.
        within(
            "retries.budget.tps.min_retries_per_second",
            "retries: { budget: { kind: tps, retry_ratio: 0.001 } }",
            "{ retries: { budget: { kind: tps, retry_ratio: 0.001, min_retries_per_second: 1 } } }",
        ),
        within(
            "retries.budget.tps.ttl",
            "retries: { budget: { kind: tps, retry_ratio: 0.01, min_retries_per_second: 1, ttl: 1s } }",
            "{ retries: { budget: { kind: tps, retry_ratio: 0.01, min_retries_per_second: 1, ttl: 10s } } }",
        ),
        within(
            "retries.budget.envoy.budget_percent",
            "retries: { budget: { kind: envoy, min_retry_concurrency: 1 } }",
            "{ retries: { budget: { kind: envoy, min_retry_concurrency: 1, budget_percent: 1 } } }",
        ),
        within(
            "retries.budget.envoy.min_retry_concurrency",
            "retries: { budget: { kind: envoy, budget_percent: 1 } }",
            "{ retries: { budget: { kind: envoy, budget_percent: 1, min_retry_concurrency: 10 } } }",
        ),
        within(
            "retries.budget.grpc_throttle.max_tokens",
            "retries: { budget: { kind: grpc_throttle, max_tokens: 10, token_ratio: 0.1 } }",
            "{ retries: { budget: { kind: grpc_throttle, max_tokens: 100, token_ratio: 0.1 } } }",
        ),
        within(
            "retries.budget.grpc_throttle.token_ratio",
            "retries: { budget: { kind: grpc_throttle, max_tokens: 10, token_ratio: 0.1 } }",
            "{ retries: { budget: { kind: grpc_throttle, max_tokens: 10, token_ratio: 1 } } }",
        ),
        plain("hedging", "{ hedging: null }"),
        plain(
            "hedging.hedging_delay",
            "{ hedging: { hedging_delay: 10ms } }",
        ),
        // A hedge on per-try timeout keeps the first attempt going (no delay-hedge first).
        within(
            "hedging.hedge_on_per_try_timeout",
            "hedging: { hedging_delay: 1s }",
            "{ hedging: { hedging_delay: 1s, hedge_on_per_try_timeout: true } }",
        ),
        plain("zone_aware", "{ zone_aware: null }"),
        plain(
            "zone_aware.routing_enabled",
            "{ zone_aware: { routing_enabled: 30 } }",
        ),
        plain(
            "zone_aware.min_cluster_size",
            "{ zone_aware: { min_cluster_size: 100 } }",
        ),
        within(
            "zone_aware.fail_traffic_on_panic",
            "priority: { overprovisioning_factor: 1.0, healthy_panic_threshold: 90 }",
            "{ priority: { overprovisioning_factor: 1.0, healthy_panic_threshold: 90 }, zone_aware: { fail_traffic_on_panic: true } }",
        ),
        plain(
            "locality_weighted_lb",
            "{ zone_aware: null, locality_weighted_lb: {} }",
        ),
        (
            "locality_weighted_lb.locality_weights",
            "{ zone_aware: null }".into(),
            "{ zone_aware: null, locality_weighted_lb: { locality_weights: { a: 1, b: 2 } } }"
                .into(),
            Refused("is set from the scenario"),
        ),
        (
            "zone_aware.local_zone",
            "{}".into(),
            "{ zone_aware: { local_zone: a } }".into(),
            Refused("is set from the scenario"),
        ),
        (
            "zone_aware.local_cluster",
            "{}".into(),
            "{ zone_aware: { local_cluster: { a: 1, b: 1 } } }".into(),
            Refused("is set from the scenario"),
        ),
    ]
}

fn scenario(base: &str, changed: &str) -> String {
    format!("{SCENARIO}strategies:\n  base: {base}\n  changed: {changed}\n")
}

/// Cases whose field acts only on a world the base scenario does not have: panic needs one
/// priority level only (a spare priority absorbs the load before any level panics).
fn world_for(leaf: &str, text: String) -> String {
    match leaf {
        "priority.healthy_panic_threshold" | "zone_aware.fail_traffic_on_panic" => {
            text.replace("      5: { priority: 1 }\n", "")
        }
        _ => text,
    }
}

/// Every leaf path of a serialized config; a variant section's leaves get its `kind` in the
/// path (`balancer.least_request.choice_count`), and a section or option is a leaf too.
fn leaves(v: &Value, path: &str, out: &mut BTreeSet<String>) {
    match v {
        Value::Object(m) => {
            let kind = m.get("kind").and_then(Value::as_str);
            for (k, x) in m {
                let p = match (path.is_empty(), kind, k.as_str()) {
                    (true, _, _) => k.clone(),
                    (false, Some(_), "kind") => format!("{path}.kind"),
                    (false, Some(kind), _) => format!("{path}.{kind}.{k}"),
                    (false, None, _) => format!("{path}.{k}"),
                };
                if matches!(x, Value::Object(_)) {
                    out.insert(p.clone());
                }
                // A map keyed by zone is one field, not one per zone.
                if !p.ends_with("local_cluster") && !p.ends_with("locality_weights") {
                    leaves(x, &p, out);
                }
            }
        }
        _ => {
            out.insert(path.to_owned());
        }
    }
}

/// The run's results, without what names the strategy or counts engine work.
fn measured(r: &meshbench_report::RunResult) -> Value {
    let mut v = serde_json::to_value(r).expect("serializable");
    if let Value::Object(m) = &mut v {
        m.remove("strategy");
        m.remove("sim_events");
    }
    v
}

#[test]
fn every_policy_field_changes_a_result_or_is_refused() {
    // The walk: every leaf of every variant.
    let mut walked = BTreeSet::new();
    for variant in VARIANTS {
        let text = scenario(variant, "{}");
        let loaded = meshbench_scenario::parse(&text, "fields.yaml", std::path::Path::new("."))
            .unwrap_or_else(|e| panic!("{variant}: {e}"));
        // The config a Cluster gets: the workload builder fills in what the file cannot set.
        let world = meshbench_scenario::workload::Workload::build(&loaded, 0, 0, 0, 1);
        let config = serde_json::to_value(&world.proxies[0].config).expect("serializable");
        leaves(&config, "", &mut walked);
    }
    // Sections that are whole values but not fields of their own.
    for section in [
        "priority",
        "circuit_breakers",
        "balancer",
        "retries.retry_back_off",
    ] {
        walked.remove(section);
    }
    let cases = cases();
    let covered: BTreeSet<String> = cases.iter().map(|c| c.0.to_owned()).collect();
    let missing: Vec<_> = walked.difference(&covered).collect();
    let extra: Vec<_> = covered.difference(&walked).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "fields without a case: {missing:?}; cases without a field: {extra:?}"
    );
    let mut inert = Vec::new();
    for (leaf, base, changed, expect) in &cases {
        let text = world_for(leaf, scenario(base, changed));
        let parsed = meshbench_scenario::parse(&text, "fields.yaml", std::path::Path::new("."));
        match (expect, parsed) {
            (Refused(why), Err(e)) => {
                assert!(
                    e.message.contains(why) && e.line.is_some(),
                    "{leaf}: refused, but for another reason: {e}"
                );
            }
            (Refused(_), Ok(_)) => panic!("{leaf}: loads, but nothing models it"),
            (Changes, Err(e)) => panic!("{leaf}: {e}"),
            (Changes, Ok(loaded)) => {
                let runs = meshbench_sim::run_all(&loaded, loaded.scenario.seed, &|| {});
                if measured(&runs[0]) == measured(&runs[1]) {
                    inert.push(*leaf);
                }
            }
        }
    }
    assert!(inert.is_empty(), "fields that changed no result: {inert:?}");
}

/// A two-tier world for the call-graph fields: `front` calls what `SCRIPT` says through its
/// sidecars, `mid` and `leaf` fail 5% of requests and queue, so a call's every field moves a
/// latency, an error count or an edge.
const GRAPH: &str = r#"
name: graph-fields
seed: 23
requests: 20000
sample_period: 1s
policy:
  timeout: 200ms
  balancer: { kind: least_request }
  retries: { num_retries: 1, retry_on: [5xx] }
network:
  latency: { dist: constant, value: 100us }
services:
  front:
    instances: 2
    concurrency: 64
    service_time: { dist: exponential, mean: 500us }
    script: SCRIPT
  mid:
    instances: 3
    concurrency: 4
    error_rate: 0.05
    service_time: { dist: exponential, mean: 2ms }
  leaf:
    instances: 3
    concurrency: 4
    error_rate: 0.05
    service_time: { dist: exponential, mean: 1ms }
clients:
  users:
    proxies: 2
    target: front
    arrival: { process: poisson, rate: 800/s }
"#;

/// The graph world with `script` for `front`, `mesh` (YAML, or empty) and `strategy`.
fn graph(script: &str, mesh: &str, strategy: &str) -> String {
    let mut s = GRAPH.replace("SCRIPT", script);
    if !mesh.is_empty() {
        s.push_str(&format!("mesh: {mesh}\n"));
    }
    s.push_str(&format!("strategies:\n  only: {strategy}\n"));
    s
}

#[test]
fn every_call_graph_field_changes_a_result() {
    use meshbench_scenario::graph::{Mesh, Step};
    // The walk: every field of a step (one with each set), of a call in a group, and of the mesh.
    let step: Step = yaml_serde::from_str(
        "{ compute: { dist: constant, value: 1ms }, call: mid, parallel: [{ call: mid, probability: 0.5, ignore_failure: true }], wait: 1, probability: 0.5, ignore_failure: true }",
    )
    .expect("a step with every field");
    let mesh: Mesh = yaml_serde::from_str(
        "{ sidecars: false, outbound: { dist: constant, value: 1ms }, inbound: { dist: constant, value: 1ms }, concurrency: 1, handshake: {} }",
    )
    .expect("a mesh with every field");
    let mut walked = BTreeSet::new();
    leaves(
        &serde_json::to_value(&step).expect("serializable"),
        "script",
        &mut walked,
    );
    leaves(
        &serde_json::to_value(&mesh).expect("serializable"),
        "mesh",
        &mut walked,
    );
    // A group's calls are list items, walked on their own.
    let call = &step.parallel.as_ref().expect("a group")[0];
    leaves(
        &serde_json::to_value(call).expect("serializable"),
        "script.parallel",
        &mut walked,
    );
    walked.insert("upstreams".into());
    // (field, base world, changed world).
    let one = "[{ call: mid }]";
    let pair = "[{ parallel: [{ call: mid }, { call: leaf }] }]";
    let cost = "{ outbound: { dist: constant, value: 300us } }";
    // New connections per request, with mTLS: every handshake cost is paid.
    let mtls = "{ connections: { tls: mtls, max_requests_per_connection: 1 } }";
    let cases: Vec<(&str, String, String)> = vec![
        (
            "script.compute",
            graph(one, "", "{}"),
            graph(
                "[{ call: mid }, { compute: { dist: constant, value: 1ms } }]",
                "",
                "{}",
            ),
        ),
        (
            "script.call",
            graph(one, "", "{}"),
            graph("[{ call: leaf }]", "", "{}"),
        ),
        (
            "script.parallel",
            graph(one, "", "{}"),
            graph(pair, "", "{}"),
        ),
        (
            "script.wait",
            graph(pair, "", "{}"),
            graph(
                "[{ parallel: [{ call: mid }, { call: leaf }], wait: 1 }]",
                "",
                "{}",
            ),
        ),
        (
            "script.probability",
            graph(one, "", "{}"),
            graph("[{ call: mid, probability: 0.5 }]", "", "{}"),
        ),
        (
            "script.ignore_failure",
            graph(one, "", "{}"),
            graph("[{ call: mid, ignore_failure: true }]", "", "{}"),
        ),
        (
            "script.parallel.call",
            graph(pair, "", "{}"),
            graph("[{ parallel: [{ call: mid }, { call: mid }] }]", "", "{}"),
        ),
        (
            "script.parallel.probability",
            graph(pair, "", "{}"),
            graph(
                "[{ parallel: [{ call: mid, probability: 0.5 }, { call: leaf }] }]",
                "",
                "{}",
            ),
        ),
        (
            "script.parallel.ignore_failure",
            graph(pair, "", "{}"),
            graph(
                "[{ parallel: [{ call: mid, ignore_failure: true }, { call: leaf }] }]",
                "",
                "{}",
            ),
        ),
        (
            "mesh.sidecars",
            graph(one, cost, "{}"),
            graph(
                one,
                "{ sidecars: false, outbound: { dist: constant, value: 300us } }",
                "{}",
            ),
        ),
        (
            "mesh.outbound",
            graph(one, "", "{}"),
            graph(one, cost, "{}"),
        ),
        (
            "mesh.inbound",
            graph(one, "", "{}"),
            graph(one, "{ inbound: { dist: constant, value: 300us } }", "{}"),
        ),
        (
            "mesh.concurrency",
            graph(one, cost, "{}"),
            graph(
                one,
                "{ outbound: { dist: constant, value: 300us }, concurrency: 1 }",
                "{}",
            ),
        ),
        (
            "mesh.handshake",
            graph(one, "", mtls),
            graph(one, "{ handshake: { tls_round_trips: 2 } }", mtls),
        ),
        (
            "mesh.handshake.tls_round_trips",
            graph(one, "{ handshake: {} }", mtls),
            graph(one, "{ handshake: { tls_round_trips: 0 } }", mtls),
        ),
        (
            "mesh.handshake.tls_client_cpu",
            graph(one, "{ handshake: {} }", mtls),
            graph(
                one,
                "{ handshake: { tls_client_cpu: { dist: constant, value: 1ms } } }",
                mtls,
            ),
        ),
        (
            "mesh.handshake.tls_server_cpu",
            graph(one, "{ handshake: {} }", mtls),
            graph(
                one,
                "{ handshake: { tls_server_cpu: { dist: constant, value: 1ms } } }",
                mtls,
            ),
        ),
        (
            "mesh.handshake.mtls_client_cpu",
            graph(one, "{ handshake: {} }", mtls),
            graph(
                one,
                "{ handshake: { mtls_client_cpu: { dist: constant, value: 1ms } } }",
                mtls,
            ),
        ),
        (
            "mesh.handshake.mtls_server_cpu",
            graph(one, "{ handshake: {} }", mtls),
            graph(
                one,
                "{ handshake: { mtls_server_cpu: { dist: constant, value: 1ms } } }",
                mtls,
            ),
        ),
        (
            "upstreams",
            graph(one, "", "{}"),
            graph(
                one,
                "",
                "{ upstreams: { mid: { retries: { num_retries: 0 } } } }",
            ),
        ),
    ];
    // Leaves of a distribution are the distribution's, walked elsewhere: one case per field.
    let walked: BTreeSet<String> = walked
        .into_iter()
        .filter(|l| {
            ![
                "script.compute.",
                "mesh.outbound.",
                "mesh.inbound.",
                "mesh.handshake.tls_client_cpu.",
                "mesh.handshake.tls_server_cpu.",
                "mesh.handshake.mtls_client_cpu.",
                "mesh.handshake.mtls_server_cpu.",
            ]
            .iter()
            .any(|p| l.starts_with(p))
        })
        .collect();
    let covered: BTreeSet<String> = cases.iter().map(|c| c.0.to_owned()).collect();
    assert_eq!(
        walked, covered,
        "the walked fields and the cases must be the same"
    );
    let run = |text: &str| {
        let loaded = meshbench_scenario::parse(text, "graph.yaml", std::path::Path::new("."))
            .unwrap_or_else(|e| panic!("{e}\n{text}"));
        let runs = meshbench_sim::run_all(&loaded, loaded.scenario.seed, &|| {});
        measured(&runs[0])
    };
    let inert: Vec<&str> = cases
        .iter()
        .filter(|(_, base, changed)| run(base) == run(changed))
        .map(|c| c.0)
        .collect();
    assert!(
        inert.is_empty(),
        "call-graph fields that changed no result: {inert:?}"
    );
}
