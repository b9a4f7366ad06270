//! Prequal, after Wydrowski, Kleinberg, Rumble and Tomkins, "Load is not what you should
//! balance: Introducing Prequal" (NSDI'24); parameter names and the reuse budget follow the
//! paper as restated by prequal-rs (`prequal-core/src/config.rs`).
//!
//! Every pick asks the driver to probe `probes_per_query` random endpoints ([`Balancer::poll_probe`]);
//! replies (requests in flight and a latency estimate, [`ProbeReply`]) enter a pool of at most
//! `pool_capacity` entries, the oldest leaving when it is full or older than `max_probe_age`.
//! Selection is hot-cold lexicographic: an entry is hot when its RIF exceeds the `q_rif`
//! quantile of the last `rif_history` probed RIFs; the cold entry with the lowest latency wins,
//! or, when all are hot, the entry with the lowest RIF. The chosen entry's RIF goes up by one
//! locally, and it leaves the pool after `b = 1 + δ / ((1 - m/n)·r_probe - r_remove)` uses
//! (capped at `max_reuse`; `max_reuse` when the denominator is not positive). After each pick
//! `removes_per_query` entries leave, alternately the oldest and the worst (highest RIF). With an
//! empty pool the pick is uniform random. Probes are outputs, never I/O.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use super::{Balancer, HostSet, PickCtx, ProbeReply, grow};
use crate::endpoint::{Candidate, EndpointId};
use crate::error::{ConfigError, check_range};
use crate::seed::{Rng, Seed, below};
use crate::time::{Duration, Instant};

/// Prequal parameters.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrequalConfig {
    /// Probes issued per pick, 0..=16 (r_probe). Default 3.
    #[serde(default = "d_probes")]
    pub probes_per_query: u32,
    /// Entries the pool holds, 1..=1024 (m). Default 16.
    #[serde(default = "d_pool")]
    pub pool_capacity: u32,
    /// Entries older than this leave the pool, > 0. Default 1 s.
    #[serde(default = "d_age")]
    pub max_probe_age: Duration,
    /// Entries removed after each pick, 0..=pool_capacity (r_remove). Default 1.
    #[serde(default = "d_removes")]
    pub removes_per_query: u32,
    /// The reuse budget's δ, >= 0. Default 1.0.
    #[serde(default = "d_delta")]
    pub reuse_delta: f64,
    /// Most picks one entry may route, >= 1. Default 16.
    #[serde(default = "d_max_reuse")]
    pub max_reuse: u32,
    /// Hot-cold quantile of recent RIFs, 0..=1. Default 0.84 (the paper).
    #[serde(default = "d_q")]
    pub q_rif: f64,
    /// Recent probe RIFs the quantile is taken over, >= 1. Default 64.
    #[serde(default = "d_hist")]
    pub rif_history: u32,
}

fn d_probes() -> u32 {
    3
}
fn d_pool() -> u32 {
    16
}
fn d_age() -> Duration {
    Duration::from_secs(1)
}
fn d_removes() -> u32 {
    1
}
fn d_delta() -> f64 {
    1.0
}
fn d_max_reuse() -> u32 {
    16
}
fn d_q() -> f64 {
    0.84
}
fn d_hist() -> u32 {
    64
}

impl Default for PrequalConfig {
    fn default() -> Self {
        PrequalConfig {
            probes_per_query: d_probes(),
            pool_capacity: d_pool(),
            max_probe_age: d_age(),
            removes_per_query: d_removes(),
            reuse_delta: d_delta(),
            max_reuse: d_max_reuse(),
            q_rif: d_q(),
            rif_history: d_hist(),
        }
    }
}

impl PrequalConfig {
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        let int = |field: &str, v: u32, lo: u32, hi: u32| {
            if (lo..=hi).contains(&v) {
                Ok(())
            } else {
                Err(ConfigError::new(
                    field,
                    format!("must be an integer in {lo}..={hi}, got {v}"),
                ))
            }
        };
        int("probes_per_query", self.probes_per_query, 0, 16)?;
        int("pool_capacity", self.pool_capacity, 1, 1024)?;
        int(
            "removes_per_query",
            self.removes_per_query,
            0,
            self.pool_capacity,
        )?;
        int("max_reuse", self.max_reuse, 1, u32::MAX)?;
        int("rif_history", self.rif_history, 1, 65_536)?;
        if self.max_probe_age.is_zero() {
            return Err(ConfigError::new(
                "max_probe_age",
                "must be a duration > 0, such as `1s`",
            ));
        }
        check_range("reuse_delta", self.reuse_delta, 0.0, f64::MAX)?;
        check_range("q_rif", self.q_rif, 0.0, 1.0)
    }
}

#[derive(Clone, Copy, Debug)]
struct Entry {
    ep: EndpointId,
    rif: u32,
    latency: Duration,
    received: Instant,
    uses: u32,
}

/// The Prequal balancer.
#[derive(Debug)]
pub struct Prequal {
    config: PrequalConfig,
    hosts: HostSet,
    member: Vec<bool>,
    pool: Vec<Entry>,
    probes: VecDeque<EndpointId>,
    history: Vec<u32>,
    history_next: usize,
    /// Scratch for the quantile, kept to avoid an allocation per recomputation.
    sorted: Vec<u32>,
    hot_above: Option<u32>,
    remove_oldest_next: bool,
    reuse_budget: u32,
    rng: Rng,
}

impl Prequal {
    /// A balancer with an empty host set.
    pub fn new(config: PrequalConfig, seed: Seed) -> Self {
        Prequal {
            config,
            hosts: HostSet::default(),
            member: Vec::new(),
            pool: Vec::new(),
            probes: VecDeque::new(),
            history: Vec::new(),
            history_next: 0,
            sorted: Vec::new(),
            hot_above: None,
            remove_oldest_next: true,
            reuse_budget: 1,
            rng: seed.rng(),
        }
    }

    /// Entries currently in the probe pool.
    pub fn pool_len(&self) -> usize {
        self.pool.len()
    }

    fn threshold(&mut self) -> Option<u32> {
        if self.hot_above.is_none() && !self.history.is_empty() {
            let sorted = &mut self.sorted;
            sorted.clear();
            sorted.extend_from_slice(&self.history);
            sorted.sort_unstable();
            let k =
                ((self.config.q_rif * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
            self.hot_above = Some(sorted[k - 1]);
        }
        self.hot_above
    }

    fn oldest(&self) -> Option<usize> {
        (0..self.pool.len()).min_by_key(|&i| (self.pool[i].received, i))
    }

    fn worst(&self) -> Option<usize> {
        (0..self.pool.len()).max_by_key(|&i| (self.pool[i].rif, core::cmp::Reverse(i)))
    }
}

impl Balancer for Prequal {
    fn set_endpoints(&mut self, endpoints: &[Candidate], _now: Instant) {
        self.hosts.update(endpoints);
        self.member.iter_mut().for_each(|m| *m = false);
        grow(&mut self.member, &self.hosts, false);
        for c in &self.hosts.hosts {
            self.member[c.id.index()] = true;
        }
        let member = &self.member;
        self.pool.retain(|e| member[e.ep.index()]);
        let (m, n) = (
            f64::from(self.config.pool_capacity),
            self.hosts.len().max(1) as f64,
        );
        let denom = (1.0 - m / n) * f64::from(self.config.probes_per_query)
            - f64::from(self.config.removes_per_query);
        self.reuse_budget = if denom > 0.0 {
            (1.0 + self.config.reuse_delta / denom)
                .ceil()
                .clamp(1.0, f64::from(self.config.max_reuse)) as u32
        } else {
            self.config.max_reuse
        };
    }

    fn pick(&mut self, _cx: &PickCtx, now: Instant) -> Option<EndpointId> {
        let n = self.hosts.len() as u32;
        if n == 0 {
            return None;
        }
        for _ in 0..self.config.probes_per_query {
            let i = below(&mut self.rng, n);
            self.probes.push_back(self.hosts.hosts[i as usize].id);
        }
        let max_age = self.config.max_probe_age;
        self.pool
            .retain(|e| now.saturating_since(e.received) <= max_age);
        if self.pool.is_empty() {
            return Some(self.hosts.hosts[below(&mut self.rng, n) as usize].id);
        }
        let hot_above = self.threshold();
        let is_cold = |e: &Entry| hot_above.is_none_or(|t| e.rif <= t);
        let cold = (0..self.pool.len())
            .filter(|&i| is_cold(&self.pool[i]))
            .min_by_key(|&i| (self.pool[i].latency, self.pool[i].rif, i));
        let chosen = cold.unwrap_or_else(|| {
            (0..self.pool.len())
                .min_by_key(|&i| (self.pool[i].rif, self.pool[i].latency, i))
                .expect("pool is not empty")
        });
        let e = &mut self.pool[chosen];
        let ep = e.ep;
        e.rif += 1;
        e.uses += 1;
        if e.uses >= self.reuse_budget {
            self.pool.swap_remove(chosen);
        }
        for _ in 0..self.config.removes_per_query {
            let victim = if self.remove_oldest_next {
                self.oldest()
            } else {
                self.worst()
            };
            self.remove_oldest_next = !self.remove_oldest_next;
            match victim {
                Some(v) => {
                    self.pool.swap_remove(v);
                }
                None => break,
            }
        }
        Some(ep)
    }

    fn poll_probe(&mut self) -> Option<EndpointId> {
        self.probes.pop_front()
    }

    fn on_probe_result(&mut self, ep: EndpointId, reply: ProbeReply, now: Instant) {
        if !self.member.get(ep.index()).copied().unwrap_or(false) {
            return;
        }
        let cap = self.config.rif_history as usize;
        if self.history.len() < cap {
            self.history.push(reply.rif);
        } else {
            self.history[self.history_next] = reply.rif;
        }
        self.history_next = (self.history_next + 1) % cap;
        self.hot_above = None;
        let entry = Entry {
            ep,
            rif: reply.rif,
            latency: reply.latency,
            received: now,
            uses: 0,
        };
        if let Some(existing) = self.pool.iter_mut().find(|e| e.ep == ep) {
            *existing = entry;
            return;
        }
        if self.pool.len() >= self.config.pool_capacity as usize
            && let Some(old) = self.oldest()
        {
            self.pool.swap_remove(old);
        }
        self.pool.push(entry);
    }

    fn kind(&self) -> &'static str {
        "prequal"
    }
}
