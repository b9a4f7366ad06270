//! Maglev consistent hashing (Eisenbud et al., NSDI'16), after Envoy's `MAGLEV`
//! (`maglev.proto`, `maglev_lb.cc`).
//!
//! Each host has a permutation of the table's slots, `(offset + skip * j) mod M`, with
//! `offset = xxh64(key, 0) mod M` and `skip = xxh64(key, 1) mod (M - 1) + 1`. Hosts take turns
//! claiming their next free slot; a host of normalized weight `w / max_w` takes a turn on that
//! fraction of rounds, so its share of the table follows its weight, and every host gets at least
//! one slot. `M` must be prime (default 65537, at most 5000011). A request goes to the slot its
//! hash maps to; the mapping is a multiply-shift of the 64-bit hash (Envoy uses `hash mod M`;
//! both are uniform, the multiply avoids a division per pick).

use serde::{Deserialize, Serialize};

use super::hash;
use super::{Balancer, HostSet, PickCtx};
use crate::endpoint::{Candidate, EndpointId};
use crate::error::ConfigError;
use crate::seed::{Rng, Seed, next_u64};
use crate::time::Instant;

/// Envoy's largest allowed Maglev table.
pub const MAX_TABLE_SIZE: u64 = 5_000_011;

/// Envoy's `Maglev` config.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaglevConfig {
    /// Lookup table size: a prime, at most 5000011. Default 65537.
    #[serde(default = "default_table_size")]
    pub table_size: u64,
}

fn default_table_size() -> u64 {
    65_537
}

impl Default for MaglevConfig {
    fn default() -> Self {
        MaglevConfig {
            table_size: default_table_size(),
        }
    }
}

fn is_prime(n: u64) -> bool {
    if n < 2 {
        return false;
    }
    let mut d = 2;
    while d * d <= n {
        if n % d == 0 {
            return false;
        }
        d += 1;
    }
    true
}

impl MaglevConfig {
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        if self.table_size > MAX_TABLE_SIZE || !is_prime(self.table_size) {
            let below = (2..=self.table_size.min(MAX_TABLE_SIZE))
                .rev()
                .find(|&n| is_prime(n));
            let hint = below.map_or(String::new(), |p| format!(" (nearest prime below: {p})"));
            return Err(ConfigError::new(
                "table_size",
                format!(
                    "must be a prime <= {MAX_TABLE_SIZE}, got {}{hint}",
                    self.table_size
                ),
            ));
        }
        Ok(())
    }
}

/// Maglev lookup-table balancer.
#[derive(Debug)]
pub struct Maglev {
    config: MaglevConfig,
    hosts: HostSet,
    table: Vec<EndpointId>,
    rng: Rng,
}

impl Maglev {
    /// A balancer with an empty host set.
    pub fn new(config: MaglevConfig, seed: Seed) -> Self {
        Maglev {
            config,
            hosts: HostSet::default(),
            table: Vec::new(),
            rng: seed.rng(),
        }
    }

    fn build(&mut self) {
        self.table.clear();
        if self.hosts.is_empty() {
            return;
        }
        let m = self.config.table_size;
        struct Build {
            id: EndpointId,
            offset: u64,
            skip: u64,
            weight: f64,
            target: f64,
            next: u64,
        }
        let max_w = self.hosts.hosts.iter().map(|c| c.weight).max().unwrap_or(1);
        let mut entries: Vec<Build> = self
            .hosts
            .hosts
            .iter()
            .map(|c| Build {
                id: c.id,
                offset: hash::key(c.id, 0) % m,
                skip: hash::key(c.id, 1) % (m - 1) + 1,
                weight: f64::from(c.weight) / f64::from(max_w),
                target: 0.0,
                next: 0,
            })
            .collect();
        const EMPTY: EndpointId = EndpointId(u32::MAX);
        let mut table = vec![EMPTY; m as usize];
        let mut filled = 0u64;
        let mut round = 1u64;
        while filled < m {
            for e in &mut entries {
                if filled == m {
                    break;
                }
                // A host of normalized weight w claims a slot on a fraction w of rounds.
                if (round as f64) * e.weight < e.target {
                    continue;
                }
                e.target += 1.0;
                let mut c = (e.offset + e.skip * e.next) % m;
                while table[c as usize] != EMPTY {
                    e.next += 1;
                    c = (e.offset + e.skip * e.next) % m;
                }
                table[c as usize] = e.id;
                e.next += 1;
                filled += 1;
            }
            round += 1;
        }
        self.table = table;
    }
}

impl Balancer for Maglev {
    fn set_endpoints(&mut self, endpoints: &[Candidate], _now: Instant) {
        self.hosts.update(endpoints);
        self.build();
    }

    #[inline]
    fn pick(&mut self, cx: &PickCtx, _now: Instant) -> Option<EndpointId> {
        if self.table.is_empty() {
            return None;
        }
        let h = cx.hash.unwrap_or_else(|| next_u64(&mut self.rng));
        let slot = ((u128::from(h) * self.table.len() as u128) >> 64) as usize;
        Some(self.table[slot])
    }

    fn kind(&self) -> &'static str {
        "maglev"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn primes() {
        assert!(is_prime(65_537));
        assert!(is_prime(5_000_011));
        assert!(!is_prime(65_536));
        assert!(!is_prime(1));
    }
}
