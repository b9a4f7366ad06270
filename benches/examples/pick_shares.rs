//! Load share and pick cost of every balancer on one host set: 10 endpoints, weights 1..=10,
//! endpoint 3 in slow start, requests that finish in order after 8 are in flight (so load-aware
//! balancers see real counts). Prints one row per balancer: share of picks per endpoint (%),
//! and wall-clock nanoseconds per pick+dispatch+complete.
//!
//! `cargo run --release -p meshbench-benches --example pick_shares [PICKS]`

#![allow(clippy::print_stdout)]

use std::collections::VecDeque;

use mesh_core::{
    BalancerConfig, Candidate, Duration, EndpointId, Instant, LoadReport, Outcome, PickCtx, Seed,
};

const KINDS: [&str; 12] = [
    r#"{"kind":"round_robin","slow_start_config":{"slow_start_window":"10s"}}"#,
    r#"{"kind":"random"}"#,
    r#"{"kind":"weighted_random"}"#,
    r#"{"kind":"least_request"}"#,
    r#"{"kind":"least_request","sampling":"without_replacement"}"#,
    r#"{"kind":"join_shortest_queue"}"#,
    r#"{"kind":"peak_ewma"}"#,
    r#"{"kind":"ring_hash","minimum_ring_size":65536}"#,
    r#"{"kind":"maglev"}"#,
    r#"{"kind":"bounded_load"}"#,
    r#"{"kind":"prequal"}"#,
    r#"{"kind":"orca_weighted_round_robin","blackout_period":"0s"}"#,
];

fn main() {
    let picks: u64 = std::env::args()
        .nth(1)
        .map(|a| a.parse().expect("PICKS must be a whole number"))
        .unwrap_or(1_000_000);
    let hosts: Vec<Candidate> = (0..10u32)
        .map(|i| Candidate {
            id: EndpointId(i),
            weight: i + 1,
            slow_start_since: (i == 3).then_some(Instant::EPOCH),
        })
        .collect();
    println!(
        "{picks} picks per balancer; endpoint i has weight i+1; endpoint 3 starts in a 10 s slow start"
    );
    println!(
        "virtual clock advances 20 us per pick (20 s in all at 1M picks); share in % of picks"
    );
    print!("{:<26}", "balancer");
    for h in &hosts {
        print!("{:>7}", format!("ep{}", h.id.0));
    }
    println!("{:>12}", "ns/request");
    for json in KINDS {
        let config: BalancerConfig = serde_json::from_str(json).expect("valid example config");
        let mut lb = config
            .build(&hosts, Seed::new(42).fork(config.kind()), Instant::EPOCH)
            .expect("valid example config");
        let mut counts = [0u64; 10];
        let mut in_flight: VecDeque<(EndpointId, Instant)> = VecDeque::new();
        let started = std::time::Instant::now();
        for i in 0..picks {
            let now = Instant::EPOCH + Duration::from_micros(20 * i);
            let ep = lb
                .pick(
                    &PickCtx::with_hash(i.wrapping_mul(0x9E37_79B9_7F4A_7C15)),
                    now,
                )
                .expect("10 endpoints");
            lb.on_dispatch(ep, now);
            counts[ep.index()] += 1;
            in_flight.push_back((ep, now));
            while let Some(p) = lb.poll_probe() {
                let rif = in_flight.iter().filter(|(e, _)| *e == p).count() as u32;
                let reply = mesh_core::ProbeReply {
                    rif,
                    latency: Duration::from_micros(100 * u64::from(rif + 1)),
                };
                lb.on_probe_result(p, reply, now);
            }
            if in_flight.len() > 8 {
                let (done, sent) = in_flight.pop_front().expect("non-empty");
                lb.on_complete(done, sent, Outcome::Success, now);
                let util = 0.1 * f64::from(done.0 + 1);
                lb.on_load_report(
                    done,
                    &LoadReport {
                        qps: 100.0,
                        eps: 0.0,
                        utilization: util,
                    },
                    now,
                );
            }
        }
        let ns = started.elapsed().as_nanos() as f64 / picks as f64;
        let label = match config.kind() {
            "least_request" if json.contains("without") => "least_request (no repl.)",
            "round_robin" => "round_robin (slow start)",
            other => other,
        };
        print!("{label:<26}");
        for c in counts {
            print!("{:>7.2}", 100.0 * c as f64 / picks as f64);
        }
        println!("{ns:>12.1}");
    }
}
