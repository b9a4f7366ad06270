//! Load balancers: the [`Balancer`] trait, its config enum, and the factory.
//!
//! A balancer chooses one endpoint among a host set the caller has already filtered for health,
//! ejection, priority and zone (Envoy's layering: priority, then locality, then the endpoint
//! picker). It keeps its own per-endpoint view (in-flight counts, latency estimates, probe
//! results), fed by [`Balancer::on_dispatch`] and [`Balancer::on_complete`], exactly as an Envoy
//! worker or a Linkerd balancer sees only its own requests.
//!
//! Contract, checked by property tests for every kind:
//! * `pick` returns an endpoint of the last host set with weight > 0, and `None` exactly when
//!   that set has none;
//! * the same config, seed and call sequence give the same picks;
//! * no balancer reads a clock or allocates per pick on its steady-state path.

mod bounded_load;
pub(crate) mod edf;
mod hash;
mod jsq;
mod least_request;
mod maglev;
mod orca;
mod peak_ewma;
mod prequal;
mod random;
mod ring_hash;
mod round_robin;
mod slow_start;
mod weighted_random;

use serde::{Deserialize, Serialize};

pub use bounded_load::{BoundedLoad, BoundedLoadConfig};
pub use jsq::JoinShortestQueue;
pub use least_request::{LeastRequest, LeastRequestConfig, MAX_CHOICE_COUNT, Sampling};
pub use maglev::{MAX_TABLE_SIZE, Maglev, MaglevConfig};
pub use orca::{OrcaWeightedRoundRobin, OrcaWrrConfig};
pub use peak_ewma::{PeakEwma, PeakEwmaConfig};
pub use prequal::{Prequal, PrequalConfig};
pub use random::Random;
pub use ring_hash::{MAX_RING_SIZE, RingHash, RingHashConfig};
pub use round_robin::{RoundRobin, RoundRobinConfig};
pub use slow_start::SlowStartConfig;
pub use weighted_random::WeightedRandom;

use crate::endpoint::{Candidate, EndpointId, Outcome};
use crate::error::ConfigError;
use crate::seed::Seed;
use crate::time::{Duration, Instant};

/// Per-request input to a pick.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PickCtx {
    /// The request's hash key for hash-based balancers (ring hash, Maglev, bounded load). Without
    /// one they draw a random hash, as Envoy does when no hash policy applies.
    pub hash: Option<u64>,
}

impl PickCtx {
    /// A context with a hash key.
    pub const fn with_hash(hash: u64) -> Self {
        PickCtx { hash: Some(hash) }
    }
}

/// A server's load report, attached to a response (gRPC ORCA, gRFC A51/A58).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LoadReport {
    /// Queries per second the server observed.
    pub qps: f64,
    /// Errors per second the server observed.
    pub eps: f64,
    /// Application utilization if reported, else CPU utilization; 0..=1 nominally, may exceed 1.
    pub utilization: f64,
}

/// A Prequal probe's answer: the server's requests in flight and its latency estimate at that
/// load (Wydrowski et al., NSDI'24, section 3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeReply {
    /// Requests in flight at the server when it answered.
    pub rif: u32,
    /// The server's estimate of a request's latency at that load.
    pub latency: Duration,
}

/// A load-balancing algorithm over a host set that changes over time.
///
/// Time is always the last argument and is never read from a clock.
pub trait Balancer: std::fmt::Debug + Send {
    /// Replaces the host set. Candidates of weight 0 are kept out of every pick. State kept by
    /// endpoint (in-flight counts, latency estimates) survives for endpoints that stay.
    fn set_endpoints(&mut self, endpoints: &[Candidate], now: Instant);

    /// Chooses an endpoint for one attempt, or `None` when the host set has no endpoint of
    /// weight > 0.
    fn pick(&mut self, cx: &PickCtx, now: Instant) -> Option<EndpointId>;

    /// An attempt was sent to `ep`.
    fn on_dispatch(&mut self, ep: EndpointId, now: Instant) {
        let _ = (ep, now);
    }

    /// An attempt sent to `ep` at `sent_at` finished with `outcome`.
    fn on_complete(&mut self, ep: EndpointId, sent_at: Instant, outcome: Outcome, now: Instant) {
        let _ = (ep, sent_at, outcome, now);
    }

    /// `ep` reported its load (ORCA). Balancers that do not use reports ignore it.
    fn on_load_report(&mut self, ep: EndpointId, report: &LoadReport, now: Instant) {
        let _ = (ep, report, now);
    }

    /// The next probe the driver should send, if any (Prequal). Drain until `None` after a pick.
    fn poll_probe(&mut self) -> Option<EndpointId> {
        None
    }

    /// A probe sent to `ep` came back.
    fn on_probe_result(&mut self, ep: EndpointId, reply: ProbeReply, now: Instant) {
        let _ = (ep, reply, now);
    }

    /// The config kind's name, for reports.
    fn kind(&self) -> &'static str;
}

/// Every balancer, as a config file names it (`kind: least_request`, ...). Field names and
/// defaults follow Envoy where Envoy has the policy, else the cited source.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum BalancerConfig {
    /// Envoy `ROUND_ROBIN`: a rotating index when weights are equal, EDF when they differ or an
    /// endpoint is in slow start. `weighted_round_robin` is accepted as a synonym.
    #[serde(alias = "weighted_round_robin")]
    RoundRobin(RoundRobinConfig),
    /// Uniform random, ignoring weights (Envoy `RANDOM` with equal weights).
    Random,
    /// Random in proportion to weight.
    WeightedRandom,
    /// Envoy `LEAST_REQUEST`: best of `choice_count` samples, or weighted EDF when weights differ.
    LeastRequest(LeastRequestConfig),
    /// Join the shortest queue: full scan of in-flight counts, random tie-break (Envoy
    /// `FULL_SCAN`).
    JoinShortestQueue,
    /// Power of two choices on peak-EWMA latency x pending (Finagle, Linkerd, tower).
    PeakEwma(PeakEwmaConfig),
    /// Ketama-style consistent hashing on a ring (Envoy `RING_HASH`).
    RingHash(RingHashConfig),
    /// Maglev lookup table (Envoy `MAGLEV`).
    Maglev(MaglevConfig),
    /// Consistent hashing with bounded loads (Mirrokni et al.; Envoy `hash_balance_factor`).
    BoundedLoad(BoundedLoadConfig),
    /// Prequal: probe pool with hot-cold lexicographic selection (NSDI'24).
    Prequal(PrequalConfig),
    /// Weighted round robin from server-reported utilization (gRFC A58; Envoy
    /// `client_side_weighted_round_robin`).
    OrcaWeightedRoundRobin(OrcaWrrConfig),
}

impl Default for BalancerConfig {
    fn default() -> Self {
        BalancerConfig::RoundRobin(RoundRobinConfig::default())
    }
}

impl BalancerConfig {
    /// The kind's name as written in config files.
    pub fn kind(&self) -> &'static str {
        match self {
            BalancerConfig::RoundRobin(_) => "round_robin",
            BalancerConfig::Random => "random",
            BalancerConfig::WeightedRandom => "weighted_random",
            BalancerConfig::LeastRequest(_) => "least_request",
            BalancerConfig::JoinShortestQueue => "join_shortest_queue",
            BalancerConfig::PeakEwma(_) => "peak_ewma",
            BalancerConfig::RingHash(_) => "ring_hash",
            BalancerConfig::Maglev(_) => "maglev",
            BalancerConfig::BoundedLoad(_) => "bounded_load",
            BalancerConfig::Prequal(_) => "prequal",
            BalancerConfig::OrcaWeightedRoundRobin(_) => "orca_weighted_round_robin",
        }
    }

    /// Checks every field against its valid range without building anything.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let r = match self {
            BalancerConfig::RoundRobin(c) => c.validate(),
            BalancerConfig::Random
            | BalancerConfig::WeightedRandom
            | BalancerConfig::JoinShortestQueue => Ok(()),
            BalancerConfig::LeastRequest(c) => c.validate(),
            BalancerConfig::PeakEwma(c) => c.validate(),
            BalancerConfig::RingHash(c) => c.validate(),
            BalancerConfig::Maglev(c) => c.validate(),
            BalancerConfig::BoundedLoad(c) => c.validate(),
            BalancerConfig::Prequal(c) => c.validate(),
            BalancerConfig::OrcaWeightedRoundRobin(c) => c.validate(),
        };
        r.map_err(|e| e.within(self.kind()))
    }

    /// Builds the balancer over an initial host set. Fails, naming the field and its valid range,
    /// on an invalid config or a non-empty host set whose weights are all zero.
    pub fn build(
        &self,
        endpoints: &[Candidate],
        seed: Seed,
        now: Instant,
    ) -> Result<Box<dyn Balancer>, ConfigError> {
        self.validate()?;
        check_weights(endpoints)?;
        let mut b: Box<dyn Balancer> = match self {
            BalancerConfig::RoundRobin(c) => Box::new(RoundRobin::new(c.clone(), seed)),
            BalancerConfig::Random => Box::new(Random::new(seed)),
            BalancerConfig::WeightedRandom => Box::new(WeightedRandom::new(seed)),
            BalancerConfig::LeastRequest(c) => Box::new(LeastRequest::new(c.clone(), seed)),
            BalancerConfig::JoinShortestQueue => Box::new(JoinShortestQueue::new(seed)),
            BalancerConfig::PeakEwma(c) => Box::new(PeakEwma::new(c.clone(), seed)),
            BalancerConfig::RingHash(c) => Box::new(RingHash::new(c.clone(), seed)),
            BalancerConfig::Maglev(c) => Box::new(Maglev::new(c.clone(), seed)),
            BalancerConfig::BoundedLoad(c) => Box::new(BoundedLoad::new(c.clone(), seed)),
            BalancerConfig::Prequal(c) => Box::new(Prequal::new(c.clone(), seed)),
            BalancerConfig::OrcaWeightedRoundRobin(c) => {
                Box::new(OrcaWeightedRoundRobin::new(c.clone(), seed))
            }
        };
        b.set_endpoints(endpoints, now);
        Ok(b)
    }
}

/// Rejects a non-empty host set in which no endpoint has a weight above zero.
pub fn check_weights(endpoints: &[Candidate]) -> Result<(), ConfigError> {
    if !endpoints.is_empty() && endpoints.iter().all(|c| c.weight == 0) {
        return Err(ConfigError::new(
            "endpoints.weight",
            format!(
                "at least one of the {} endpoints needs a weight in 1..={}; all are 0",
                endpoints.len(),
                u32::MAX
            ),
        ));
    }
    Ok(())
}

/// The pickable part of a host set: candidates of weight > 0, plus facts derived once per update.
#[derive(Clone, Debug, Default)]
pub(crate) struct HostSet {
    pub(crate) hosts: Vec<Candidate>,
    pub(crate) equal_weights: bool,
    pub(crate) total_weight: u64,
}

impl HostSet {
    pub(crate) fn update(&mut self, endpoints: &[Candidate]) {
        self.hosts.clear();
        self.hosts
            .extend(endpoints.iter().filter(|c| c.weight > 0).copied());
        let first = self.hosts.first().map(|c| c.weight);
        self.equal_weights = self.hosts.iter().all(|c| Some(c.weight) == first);
        self.total_weight = self.hosts.iter().map(|c| u64::from(c.weight)).sum();
    }

    #[inline]
    pub(crate) fn len(&self) -> usize {
        self.hosts.len()
    }

    #[inline]
    pub(crate) fn is_empty(&self) -> bool {
        self.hosts.is_empty()
    }

    /// The largest endpoint index in the set, plus one (for sizing per-endpoint vectors).
    pub(crate) fn id_bound(&self) -> usize {
        self.hosts
            .iter()
            .map(|c| c.id.index() + 1)
            .max()
            .unwrap_or(0)
    }
}

/// Grows a per-endpoint vector so every id in `hosts` indexes it.
pub(crate) fn grow<T: Clone>(v: &mut Vec<T>, hosts: &HostSet, fill: T) {
    let need = hosts.id_bound();
    if v.len() < need {
        v.resize(need, fill);
    }
}

/// The per-endpoint in-flight counter every load-aware balancer keeps.
#[derive(Clone, Debug, Default)]
pub(crate) struct ActiveCounts(Vec<u32>);

impl ActiveCounts {
    #[inline]
    pub(crate) fn get(&self, ep: EndpointId) -> u32 {
        self.0.get(ep.index()).copied().unwrap_or(0)
    }
    pub(crate) fn ensure(&mut self, hosts: &HostSet) {
        grow(&mut self.0, hosts, 0);
    }
    pub(crate) fn inc(&mut self, ep: EndpointId) {
        if self.0.len() <= ep.index() {
            self.0.resize(ep.index() + 1, 0);
        }
        self.0[ep.index()] += 1;
    }
    pub(crate) fn dec(&mut self, ep: EndpointId) {
        if let Some(a) = self.0.get_mut(ep.index()) {
            *a = a.saturating_sub(1);
        }
    }
}
