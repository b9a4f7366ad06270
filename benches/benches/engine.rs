//! Simulator throughput: one whole run of the single-hop P2C model over 16 M/M/1 servers at load
//! 0.9 (the engine, the workload builder, the recorder and the Cluster together), 200 000
//! requests per iteration, one thread. Divide by the request count for the cost of one simulated
//! request (about 4 events: arrival, at instance, service end, response).
//!
//! `two_tier_*`: a 2-tier call graph (`scenarios/bench/two-tier.yaml` at 200 000 end-to-end
//! requests): 20 client proxies, 8 front instances each calling 16 back instances through their
//! own sidecars, retries and outlier detection at both tiers (about 8 events per request).
//!
//! Run with `cargo bench -p meshbench-benches --bench engine`; `scripts/bench-regress.sh`
//! compares against a saved baseline.

use std::hint::black_box;
use std::time::Duration as StdDuration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};

const SCENARIO: &str = "
name: bench-engine
seed: 3
requests: 200000
warmup: 10ms
sample_period: 10s
strategies:
  p2c: { balancer: { kind: least_request, choice_count: 2 } }
policy:
  timeout: 0s
  circuit_breakers: { max_requests: 1000000 }
services:
  server:
    instances: 16
    concurrency: 1
    service_time: { dist: exponential, mean: 1ms }
clients:
  load:
    target: server
    arrival: { process: poisson, rate: 14400/s }
";

/// The shipped two-tier bench scenario, shortened to 200 000 requests.
fn two_tier() -> meshbench_scenario::Loaded {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../scenarios/bench/two-tier.yaml"
    );
    let text = std::fs::read_to_string(path)
        .expect("scenarios/bench/two-tier.yaml")
        .replace("requests: 2000000", "requests: 200000");
    meshbench_scenario::parse(&text, "two-tier.yaml", std::path::Path::new("."))
        .expect("the bench scenario is valid")
}

fn engine(c: &mut Criterion) {
    let loaded = meshbench_scenario::parse(SCENARIO, "engine.yaml", std::path::Path::new("."))
        .expect("the bench scenario is valid");
    let mut g = c.benchmark_group("engine");
    g.throughput(Throughput::Elements(200_000));
    g.sample_size(10);
    g.measurement_time(StdDuration::from_secs(8));
    g.bench_function("p2c_16_mm1_load_0.9_200k_requests", |b| {
        b.iter(|| black_box(meshbench_sim::run_one(&loaded, 0, 0, 0, 3)).requests)
    });
    let graph = two_tier();
    g.bench_function(
        "two_tier_20_proxies_retries_outlier_detection_200k_requests",
        |b| b.iter(|| black_box(meshbench_sim::run_one(&graph, 0, 0, 0, 3)).requests),
    );
    g.finish();
}

criterion_group!(benches, engine);
criterion_main!(benches);
