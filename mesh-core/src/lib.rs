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
//! * [`balancer`]: the [`Balancer`] trait and every load balancer, built from a
//!   serde-deserializable [`BalancerConfig`].
//! * [`priority`]: Envoy's priority load with overprovisioning and panic threshold.
//! * [`locality`]: Envoy's locality-weighted selection and zone-aware routing.
//! * Vocabulary: [`Instant`], [`Duration`], [`EndpointId`], [`Outcome`], [`Health`],
//!   [`EndpointMeta`], [`Candidate`], [`Seed`].
//!
//! ## Using a balancer
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
    AttemptId, Cluster, ClusterConfig, Finish, Input, Output, PolicyEvent, RequestId,
};
pub use discovery::Change;
pub use endpoint::{Candidate, EndpointId, EndpointMeta, Health, Outcome};
pub use error::ConfigError;
pub use seed::{Rng, Seed};
pub use time::{Duration, Instant};
