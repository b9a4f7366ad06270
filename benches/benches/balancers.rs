//! Cost of one `pick` for every balancer kind at N = 8, 64 and 1024 endpoints.
//!
//! Load-aware balancers start with random in-flight counts (0..8 per endpoint) so a pick
//! compares real numbers; hash balancers get a different key every iteration. Targets on the
//! 2-core CI machine (median): round robin <= 5 ns, random <= 10 ns, least request / P2C
//! <= 20 ns, peak EWMA <= 40 ns, Maglev <= 15 ns, ring hash <= 60 ns at N = 1024, EDF WRR
//! <= 50 ns. Run with `cargo bench -p meshbench-benches`.

use std::hint::black_box;
use std::time::Duration as StdDuration;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use mesh_core::{
    Balancer, BalancerConfig, Candidate, Duration, EndpointId, Instant, LoadReport, Outcome,
    PickCtx, ProbeReply, Seed,
};

const SIZES: [u32; 3] = [8, 64, 1024];

const KINDS: [(&str, &str); 12] = [
    ("round_robin", r#"{"kind":"round_robin"}"#),
    ("weighted_round_robin_edf", r#"{"kind":"round_robin"}"#),
    ("random", r#"{"kind":"random"}"#),
    ("weighted_random", r#"{"kind":"weighted_random"}"#),
    ("least_request_p2c", r#"{"kind":"least_request"}"#),
    ("least_request_weighted_edf", r#"{"kind":"least_request"}"#),
    ("join_shortest_queue", r#"{"kind":"join_shortest_queue"}"#),
    ("peak_ewma", r#"{"kind":"peak_ewma"}"#),
    ("ring_hash", r#"{"kind":"ring_hash"}"#),
    ("maglev", r#"{"kind":"maglev"}"#),
    ("bounded_load", r#"{"kind":"bounded_load"}"#),
    (
        "orca_weighted_round_robin",
        r#"{"kind":"orca_weighted_round_robin","blackout_period":"0s"}"#,
    ),
];

/// A small xorshift for bench-side randomness (not on any result path).
struct Xs(u64);
impl Xs {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn setup(name: &str, json: &str, n: u32) -> Box<dyn Balancer> {
    let weighted = name.contains("weighted") && !name.starts_with("orca");
    let hosts: Vec<Candidate> = (0..n)
        .map(|i| Candidate::weighted(i, if weighted { 1 + i % 4 } else { 1 }))
        .collect();
    let config: BalancerConfig = serde_json::from_str(json).expect("bench config");
    let t0 = Instant::EPOCH;
    let mut lb = config
        .build(&hosts, Seed::new(7), t0)
        .expect("bench config");
    let mut xs = Xs(0x2545_F491_4F6C_DD1D);
    let now = Instant::from_nanos(1_000_000_000);
    for i in 0..n {
        let ep = EndpointId(i);
        for _ in 0..xs.next() % 8 {
            lb.on_dispatch(ep, t0);
        }
        // One completed request per endpoint gives peak EWMA a measured latency.
        lb.on_dispatch(ep, t0);
        let rtt = Duration::from_micros(500 + xs.next() % 5_000);
        lb.on_complete(ep, t0, Outcome::Success, t0 + rtt);
        let util = 0.1 + (xs.next() % 80) as f64 / 100.0;
        lb.on_load_report(
            ep,
            &LoadReport {
                qps: 100.0,
                eps: 1.0,
                utilization: util,
            },
            now,
        );
    }
    lb
}

/// The harness floor: a balancer that returns a fixed endpoint, called the same way (through
/// `Box<dyn Balancer>`, with a fresh hash key), so the other figures can be read net of it.
#[derive(Debug)]
struct Fixed;

impl Balancer for Fixed {
    fn set_endpoints(&mut self, _: &[Candidate], _: Instant) {}
    fn pick(&mut self, _: &PickCtx, _: Instant) -> Option<EndpointId> {
        Some(EndpointId(0))
    }
    fn kind(&self) -> &'static str {
        "fixed"
    }
}

fn picks(c: &mut Criterion) {
    let now = Instant::from_nanos(2_000_000_000);
    {
        let mut lb: Box<dyn Balancer> = Box::new(Fixed);
        let mut key = 0u64;
        c.bench_function("pick/harness_floor_fixed_endpoint", |b| {
            b.iter(|| {
                key = key.wrapping_add(0x9E37_79B9_7F4A_7C15);
                black_box(lb.pick(&PickCtx::with_hash(key), now))
            })
        });
    }
    for (name, json) in KINDS {
        let mut group = c.benchmark_group(format!("pick/{name}"));
        for n in SIZES {
            let mut lb = setup(name, json, n);
            let mut key = 0u64;
            group.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
                b.iter(|| {
                    key = key.wrapping_add(0x9E37_79B9_7F4A_7C15);
                    black_box(lb.pick(&PickCtx::with_hash(key), now))
                })
            });
        }
        group.finish();
    }
    // Prequal: a pick plus the replies to the probes it asks for.
    let mut group = c.benchmark_group("pick/prequal_with_probe_replies");
    for n in SIZES {
        let mut lb = setup("prequal", r#"{"kind":"prequal"}"#, n);
        let mut xs = Xs(99);
        group.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            b.iter(|| {
                let ep = lb.pick(&PickCtx::default(), now);
                while let Some(p) = lb.poll_probe() {
                    let rif = (xs.next() % 16) as u32;
                    let latency = Duration::from_micros(100 + u64::from(rif) * 50);
                    lb.on_probe_result(p, ProbeReply { rif, latency }, now);
                }
                black_box(ep)
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(StdDuration::from_millis(500))
        .measurement_time(StdDuration::from_secs(2));
    targets = picks
}
criterion_main!(benches);
