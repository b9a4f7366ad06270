//! Per-request cost of a `Cluster`: one arrival, its attempt sent, one attempt ended, one request
//! finished, every output drained and due timers run, at 64 endpoints with 64 requests in flight.
//!
//! * `minimal`: round robin, default breakers and request timeout.
//! * `resilient`: least request (P2C), outlier detection, retries (2, per-try timeout, Envoy
//!   back-off) with a tps retry budget; 1% of attempts fail with a 503 and are retried.
//!   Target on the 2-core CI machine: <= 300 ns median.
//! * `everything`: `resilient` plus active health checks, failure accrual and hedging.
//!
//! Run with `cargo bench -p meshbench-benches --bench cluster`.

use std::collections::VecDeque;
use std::hint::black_box;
use std::time::Duration as StdDuration;

use criterion::{Criterion, criterion_group, criterion_main};
use mesh_core::health::ProbeResult;
use mesh_core::{
    AttemptId, Cluster, ClusterConfig, Duration, EndpointMeta, Input, Instant, Outcome, Output,
    RequestId, Seed,
};

const ENDPOINTS: usize = 64;
const IN_FLIGHT: usize = 64;

const RESILIENT: &str = r#""balancer": {"kind": "least_request"},
    "outlier_detection": {},
    "retries": {"num_retries": 2, "per_try_timeout": "500ms", "retry_on": ["5xx"],
                "budget": {"kind": "tps", "retry_ratio": 0.2, "min_retries_per_second": 10}}"#;

struct Rig {
    cluster: Cluster,
    now: Instant,
    next: u64,
    in_flight: VecDeque<AttemptId>,
    tick: u64,
}

impl Rig {
    fn new(json: &str) -> Self {
        let config: ClusterConfig = serde_json::from_str(json).expect("bench config");
        let cluster = Cluster::new(
            &config,
            &vec![EndpointMeta::default(); ENDPOINTS],
            Seed::new(1),
            Instant::EPOCH,
        )
        .expect("bench config");
        let mut rig = Rig {
            cluster,
            now: Instant::EPOCH,
            next: 0,
            in_flight: VecDeque::with_capacity(4 * IN_FLIGHT),
            tick: 0,
        };
        for _ in 0..100_000 {
            rig.step();
        }
        rig
    }

    fn drain(&mut self) {
        while let Some(o) = self.cluster.poll_output() {
            match o {
                Output::Send { attempt, .. } => self.in_flight.push_back(attempt),
                Output::Probe(p) => {
                    // Probes answer at once and pass.
                    self.cluster.handle_input(
                        Input::ProbeDone {
                            probe: p.probe,
                            endpoint: p.endpoint,
                            result: ProbeResult::Pass,
                        },
                        self.now,
                    );
                }
                other => {
                    black_box(other);
                }
            }
        }
    }

    /// One request in, one attempt out, 10 us of virtual time.
    fn step(&mut self) {
        self.tick += 1;
        self.now += Duration::from_micros(10);
        while let Some(t) = self.cluster.poll_timeout() {
            if t > self.now {
                break;
            }
            self.cluster.handle_timeout(self.now);
            self.drain();
        }
        self.cluster.handle_input(
            Input::Request {
                request: RequestId(self.next),
                hash: None,
            },
            self.now,
        );
        self.next += 1;
        self.drain();
        while self.in_flight.len() > IN_FLIGHT {
            let attempt = self.in_flight.pop_front().expect("non-empty");
            let outcome = if self.tick % 100 == 0 {
                Outcome::GatewayError
            } else {
                Outcome::Success
            };
            self.cluster.handle_input(
                Input::AttemptDone {
                    attempt,
                    outcome,
                    load: None,
                },
                self.now,
            );
            self.drain();
        }
    }
}

fn per_request(c: &mut Criterion) {
    let mut g = c.benchmark_group("cluster_per_request_64_endpoints");
    g.warm_up_time(StdDuration::from_millis(500));
    g.measurement_time(StdDuration::from_secs(2));
    let configs = [
        ("minimal", "{}".to_owned()),
        ("resilient", format!("{{{RESILIENT}}}")),
        (
            "everything",
            format!(
                r#"{{{RESILIENT},
                "health_check": {{"timeout": "1s", "interval": "5s", "unhealthy_threshold": 3, "healthy_threshold": 2}},
                "failure_accrual": {{}},
                "hedging": {{"hedging_delay": "200ms"}}}}"#
            ),
        ),
    ];
    for (name, json) in configs {
        let mut rig = Rig::new(&json);
        g.bench_function(name, |b| b.iter(|| rig.step()));
    }
    g.finish();
}

criterion_group!(benches, per_request);
criterion_main!(benches);
