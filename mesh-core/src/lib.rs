//! # mesh-core: sans-IO service-mesh data-plane policies
//!
//! The policy library both meshbench drivers run unchanged: the deterministic discrete-event
//! simulator and the live tokio load generator. Its guarantees:
//!
//! * **No I/O, no clock.** Every call that needs the time takes `now: Instant`, virtual
//!   nanoseconds since the run's start. A `clippy.toml` bans clock reads, sleeps and hash maps in
//!   this crate, and CI fails if tokio or hyper ever enter its dependency tree.
//! * **Owned, seeded randomness.** Every component draws from its own [`Rng`] forked from the run's
//!   [`Seed`] by label, so same seed + same inputs = same decisions, and adding a component never
//!   shifts another's draws (see [`seed`] for the exact, pinned algorithm).
//! * **Config validated once.** Constructors reject bad config with a [`ConfigError`] naming the
//!   field and its valid range; hot paths return decisions (`Option`, small enums), never errors.
//! * **Semantics of the systems they come from.** Field names and defaults follow Envoy where it
//!   has the policy, else Linkerd/tower, gRPC or the paper; each item's docs cite its source.
//!
//! ## What is here
//!
//! * [`Cluster`]: one client proxy's whole upstream policy (discovery view, active health
//!   checks, outlier detection, failure accrual, priority and panic, balancer, circuit breakers,
//!   retries, budgets, hedging, timeouts) behind one input/output interface. Drivers use only
//!   this.
//! * [`balancer`]: the [`Balancer`] trait and every load balancer, built from a
//!   serde-deserializable [`BalancerConfig`].
//! * [`health`], [`outlier`], [`accrual`], [`breaker`], [`retry`]: the resilience policies, each
//!   usable on its own with the same pulled-timer shape (`poll_timeout` / `handle_timeout` /
//!   `poll_event`).
//! * [`priority`]: Envoy's priority load with overprovisioning and panic threshold.
//! * [`locality`]: Envoy's locality-weighted selection and zone-aware routing.
//! * [`discovery`]: one client's membership [`discovery::View`] and its [`Change`]s.
//! * [`trace`]: record a `Cluster`'s inputs and replay them to the same outputs.
//! * Vocabulary: [`Instant`], [`Duration`], [`EndpointId`], [`Outcome`], [`Health`],
//!   [`EndpointMeta`], [`Candidate`], [`Seed`].
//!
//! ## The drive loop
//!
//! Every driver (the simulator's event loop, the live load generator's actor, a replay) runs
//! the same loop: change the cluster's state with one input, drain every output, then sleep
//! until the cluster's next timeout or the next input, whichever comes first.
//!
//! ```
//! use mesh_core::{Cluster, ClusterConfig, EndpointMeta, Input, Instant, Outcome, Output,
//!                 RequestId, Seed};
//!
//! let config: ClusterConfig = serde_json::from_str(r#"{
//!     "balancer": {"kind": "least_request"},
//!     "outlier_detection": {"consecutive_5xx": 5},
//!     "retries": {"num_retries": 2, "per_try_timeout": "200ms"}
//! }"#).unwrap();
//! let endpoints = vec![EndpointMeta::default(); 4];
//! let mut cluster = Cluster::new(&config, &endpoints, Seed::new(42).fork("client/0"),
//!                                Instant::EPOCH).unwrap();
//!
//! let mut now = Instant::EPOCH;
//! cluster.handle_input(Input::Request { request: RequestId(1), hash: None }, now);
//! loop {
//!     // 1. Drain every output and act on it.
//!     while let Some(output) = cluster.poll_output() {
//!         match output {
//!             // Start the attempt (a simulated server, a real HTTP request) and report its end
//!             // later with Input::AttemptDone; here it answers at once.
//!             Output::Send { attempt, .. } => cluster.handle_input(
//!                 Input::AttemptDone { attempt, outcome: Outcome::Success, load: None }, now),
//!             Output::Finished { request, result, .. } => {
//!                 assert_eq!(request, RequestId(1));
//!                 assert!(result.is_success());
//!             }
//!             // Cancel: abort the attempt. Probe: run a health check and report ProbeDone.
//!             // Event: record it for the report.
//!             _ => {}
//!         }
//!     }
//!     // 2. Sleep until the next timer (or the next input), then run what is due.
//!     match cluster.poll_timeout() {
//!         Some(t) if t < Instant::from_nanos(1_000_000_000) => {
//!             now = t;
//!             cluster.handle_timeout(now);
//!         }
//!         _ => break,
//!     }
//! }
//! ```
//!
//! Inputs at equal times are handled in the order given, so a driver that orders its own events
//! by `(time, sequence)` gets the same outputs whatever else runs beside it.
//!
//! ## Using a balancer alone
//!
//! ```
//! use mesh_core::{BalancerConfig, Candidate, Instant, Outcome, PickCtx, Seed};
//!
//! let config: BalancerConfig = serde_json::from_str(r#"{"kind": "least_request"}"#).unwrap();
//! let hosts: Vec<Candidate> = (0..8).map(Candidate::new).collect();
//! let t0 = Instant::EPOCH;
//! let mut lb = config.build(&hosts, Seed::new(42).fork("client/0/balancer"), t0).unwrap();
//! let ep = lb.pick(&PickCtx::default(), t0).expect("8 hosts to choose from");
//! lb.on_dispatch(ep, t0);
//! // ... the driver sends the attempt; when it ends:
//! let t1 = Instant::from_nanos(2_000_000);
//! lb.on_complete(ep, t0, Outcome::Success, t1);
//! ```

pub mod accrual;
pub mod balancer;
pub mod breaker;
pub mod cluster;
pub mod discovery;
pub mod endpoint;
pub mod error;
pub mod health;
pub mod locality;
pub mod outlier;
pub mod priority;
pub mod retry;
pub mod seed;
pub mod time;
mod timers;
pub mod trace;

pub use balancer::{Balancer, BalancerConfig, LoadReport, PickCtx, ProbeReply};
pub use cluster::{
    AttemptId, Cluster, ClusterConfig, ConnectionConfig, ConnectionId, Finish, Input, MAX_PRIORITY,
    MAX_ZONES, Output, PolicyEvent, Protocol, RequestId, Tls,
};
pub use discovery::Change;
pub use endpoint::{Candidate, EndpointId, EndpointMeta, Health, Outcome};
pub use error::ConfigError;
pub use seed::{Rng, Seed};
pub use time::{Duration, Instant};
