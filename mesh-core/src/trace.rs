//! Record and replay: a [`Trace`] is everything a [`Cluster`] saw, and [`replay`] feeds it to a
//! fresh `Cluster`.
//!
//! A `Cluster` is a pure function of its config, initial endpoints, seed, start time and the
//! timed inputs it receives, so replaying a trace reproduces every output exactly. A live run
//! records with [`Cluster::start_recording`]; replaying the trace in the simulator checks that
//! the policy under study did what the live run says it did, and lets a researcher rerun a
//! production incident under another policy (change `config`, keep `inputs`; the outputs then
//! diverge only where the policy decides differently, and attempt ends the new policy never
//! asked for are ignored).
//!
//! Drivers write a trace as they like; the meshbench CLI writes JSON Lines (a header object,
//! then one `[now_ns, input]` array per line).

use serde::{Deserialize, Serialize};

use crate::cluster::{Cluster, ClusterConfig, Input, Output};
use crate::endpoint::EndpointMeta;
use crate::error::ConfigError;
use crate::seed::Seed;
use crate::time::Instant;

/// A recorded run of one [`Cluster`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Trace {
    /// The cluster's config.
    pub config: ClusterConfig,
    /// Its initial endpoints (ids `0..n`).
    pub endpoints: Vec<EndpointMeta>,
    /// Its seed's value.
    pub seed: u64,
    /// When it was built.
    pub start: Instant,
    /// Every input, with the time it was handled.
    pub inputs: Vec<(Instant, Input)>,
}

/// Every output a cluster produced, with the time of the input (or construction) that
/// produced it.
pub type Outputs = Vec<(Instant, Output)>;

/// Feeds `trace` to a fresh cluster and returns its outputs, those of construction first.
pub fn replay(trace: &Trace) -> Result<Outputs, ConfigError> {
    let mut cluster = Cluster::new(
        &trace.config,
        &trace.endpoints,
        Seed::new(trace.seed),
        trace.start,
    )?;
    let mut out = Vec::new();
    while let Some(o) = cluster.poll_output() {
        out.push((trace.start, o));
    }
    for (now, input) in &trace.inputs {
        cluster.handle_input(input.clone(), *now);
        while let Some(o) = cluster.poll_output() {
            out.push((*now, o));
        }
    }
    Ok(out)
}
