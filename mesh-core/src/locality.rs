//! Locality-weighted selection and zone-aware routing, after Envoy.
//!
//! * [`LocalityPicker`]: Envoy's locality-weighted load balancing (`locality_weight.rst`,
//!   `effectiveLocalityWeight`): a locality's effective weight is
//!   `weight x min(1, OPF x available / total)`, and localities are picked by EDF on it.
//! * [`zone_routing`] and [`choose_zone`]: Envoy's zone-aware routing (`zone_aware.rst`,
//!   `ZoneAwareLoadBalancerBase::regenerateLocalityRoutingStructures` and
//!   `tryChooseLocalLocalityHosts`). Zone 0 is the local zone in both slices.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::balancer::edf::Edf;
use crate::error::{ConfigError, check_range};
use crate::seed::{Rng, Seed, below, next_u64};

/// One locality as the picker sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Locality {
    /// The locality's weight (EDS `load_balancing_weight` of the locality).
    pub weight: u32,
    /// Hosts that can take traffic (healthy, or degraded for the degraded pass).
    pub available: u32,
    /// Every host of the locality.
    pub total: u32,
}

/// Envoy's effective locality weight: `weight x min(1, opf x available / total)`.
pub fn effective_weight(l: &Locality, overprovisioning_factor: f64) -> f64 {
    if l.total == 0 {
        return 0.0;
    }
    let ratio = f64::from(l.available) / f64::from(l.total);
    f64::from(l.weight) * (overprovisioning_factor * ratio).min(1.0)
}

/// Picks localities by EDF over their effective weights.
#[derive(Debug)]
pub struct LocalityPicker {
    slots: Vec<usize>,
    weights: Vec<f64>,
    edf: Edf,
}

impl LocalityPicker {
    /// A picker over `localities`. Rejects a non-empty list whose weights are all 0 and an
    /// overprovisioning factor below 1.
    pub fn new(
        localities: &[Locality],
        overprovisioning_factor: f64,
        seed: Seed,
    ) -> Result<Self, ConfigError> {
        check_range(
            "overprovisioning_factor",
            overprovisioning_factor,
            1.0,
            f64::MAX,
        )?;
        if !localities.is_empty() && localities.iter().all(|l| l.weight == 0) {
            return Err(ConfigError::new(
                "localities.weight",
                "at least one locality needs a weight in 1..=4294967295; all are 0",
            ));
        }
        let mut slots = Vec::new();
        let mut weights = Vec::new();
        for (i, l) in localities.iter().enumerate() {
            let w = effective_weight(l, overprovisioning_factor);
            if w > 0.0 {
                slots.push(i);
                weights.push(w);
            }
        }
        let edf = Edf::new(&weights, &mut seed.rng());
        Ok(LocalityPicker {
            slots,
            weights,
            edf,
        })
    }

    /// The next locality's index, or `None` when no locality has available hosts.
    pub fn pick(&mut self) -> Option<usize> {
        if self.edf.is_empty() {
            return None;
        }
        let weights = &self.weights;
        let slot = self.edf.pick_and_add(|s| weights[s as usize])?;
        Some(self.slots[slot as usize])
    }
}

/// Envoy's zone-aware routing (`zone_aware.rst`, `ZoneAwareLbConfig`): keep requests in the
/// client's zone as far as the upstream's healthy hosts per zone allow, and spread the rest over
/// zones with residual capacity. Envoy reads the local (originating) cluster's hosts per zone
/// from its own membership; here they are `local_zone` and `local_cluster`, which a scenario's
/// workload builder fills in from the client's zones. With an empty `local_cluster`, routing is
/// off (a single zone).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZoneAwareConfig {
    /// The client's zone.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub local_zone: String,
    /// Hosts of the originating cluster per zone (the client's own service).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub local_cluster: BTreeMap<String, u64>,
    /// Percent of requests zone-aware routing applies to, 0..=100. Default 100.
    #[serde(default = "default_enabled")]
    pub routing_enabled: f64,
    /// Zone-aware routing is off when the upstream has fewer healthy hosts. Default 6.
    #[serde(default = "default_min_cluster_size")]
    pub min_cluster_size: u64,
    /// In panic, fail requests instead of spreading them over all hosts. Default false.
    #[serde(default)]
    pub fail_traffic_on_panic: bool,
}

fn default_enabled() -> f64 {
    100.0
}
fn default_min_cluster_size() -> u64 {
    6
}

impl Default for ZoneAwareConfig {
    fn default() -> Self {
        ZoneAwareConfig {
            local_zone: String::new(),
            local_cluster: BTreeMap::new(),
            routing_enabled: default_enabled(),
            min_cluster_size: default_min_cluster_size(),
            fail_traffic_on_panic: false,
        }
    }
}

impl ZoneAwareConfig {
    /// Checks `routing_enabled`'s range, and that a given local cluster lists the local zone.
    pub fn validate(&self) -> Result<(), ConfigError> {
        check_range("routing_enabled", self.routing_enabled, 0.0, 100.0)?;
        if !self.local_cluster.is_empty() && !self.local_cluster.contains_key(&self.local_zone) {
            return Err(ConfigError::new(
                "local_cluster",
                format!(
                    "must list the local zone `{}` (zones listed: {})",
                    self.local_zone,
                    self.local_cluster
                        .keys()
                        .map(String::as_str)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        }
        if self.local_cluster.len() > crate::cluster::MAX_ZONES {
            return Err(ConfigError::new(
                "local_cluster",
                format!(
                    "at most {} zones, got {}",
                    crate::cluster::MAX_ZONES,
                    self.local_cluster.len()
                ),
            ));
        }
        Ok(())
    }
}

/// Envoy's locality-weighted load balancing (`locality_weighted_lb_config`,
/// `locality_weight.rst`): within the chosen priority, a locality (zone) is picked by EDF over
/// its effective weight `weight x min(1, overprovisioning_factor x healthy / total)` (see
/// [`LocalityPicker`]), then a host within it by the balancer. The weights are EDS data (each
/// `LocalityLbEndpoints.load_balancing_weight`); a scenario's workload builder fills them in
/// from its `zones:`. Zones without a weight here weigh 1.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalityWeightedConfig {
    /// Each zone's weight.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub locality_weights: BTreeMap<String, u32>,
}

impl LocalityWeightedConfig {
    /// At most [`crate::cluster::MAX_ZONES`] zones, not all of weight 0.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.locality_weights.len() > crate::cluster::MAX_ZONES {
            return Err(ConfigError::new(
                "locality_weights",
                format!(
                    "at most {} zones, got {}",
                    crate::cluster::MAX_ZONES,
                    self.locality_weights.len()
                ),
            ));
        }
        if !self.locality_weights.is_empty() && self.locality_weights.values().all(|&w| w == 0) {
            return Err(ConfigError::new(
                "locality_weights",
                "at least one zone needs a weight above 0",
            ));
        }
        Ok(())
    }
}

/// Why zone-aware routing does not apply (Envoy's stats name each case).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NoZoneRouting {
    /// The upstream has fewer than two zones with healthy hosts.
    SingleZone,
    /// The local zone has no healthy upstream host (`lb_local_cluster_not_ok`).
    LocalZoneEmpty,
    /// The local and upstream clusters have different zone counts (`lb_zone_number_differs`).
    ZoneCountDiffers,
    /// Fewer healthy upstream hosts than `min_cluster_size` (`lb_zone_cluster_too_small`).
    ClusterTooSmall,
    /// The local or the upstream cluster is in panic.
    Panic,
}

/// How requests from the local zone are spread over upstream zones.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ZoneRouting {
    /// Zone-aware routing is off; use every zone (locality weights or plain balancing).
    Off(NoZoneRouting),
    /// The local upstream zone can take all local traffic (`lb_zone_routing_all_directly`).
    Direct,
    /// Route `local_percent_to_route / 10000` locally and the rest cross-zone in proportion to
    /// each zone's residual capacity (cumulative, in units of 1/10000).
    Residual {
        /// Share of requests kept in the local zone, out of 10000.
        local_percent_to_route: u64,
        /// Cumulative residual capacity per zone; zone 0 is always 0.
        residual_capacity: Vec<u64>,
    },
}

fn percentages(hosts: &[u64]) -> Vec<u64> {
    let total: u64 = hosts.iter().sum();
    hosts
        .iter()
        .map(|&h| (10_000 * h).checked_div(total).unwrap_or(0))
        .collect()
}

/// Envoy's zone routing state from the local (originating) cluster's hosts per zone and the
/// upstream cluster's healthy hosts per zone, zone 0 local in both.
pub fn zone_routing(
    local_hosts: &[u64],
    upstream_healthy: &[u64],
    config: &ZoneAwareConfig,
    local_in_panic: bool,
    upstream_in_panic: bool,
) -> ZoneRouting {
    if local_in_panic || upstream_in_panic {
        return ZoneRouting::Off(NoZoneRouting::Panic);
    }
    if upstream_healthy.len() < 2 {
        return ZoneRouting::Off(NoZoneRouting::SingleZone);
    }
    if upstream_healthy[0] == 0 {
        return ZoneRouting::Off(NoZoneRouting::LocalZoneEmpty);
    }
    if local_hosts.len() != upstream_healthy.len() {
        return ZoneRouting::Off(NoZoneRouting::ZoneCountDiffers);
    }
    if upstream_healthy.iter().sum::<u64>() < config.min_cluster_size {
        return ZoneRouting::Off(NoZoneRouting::ClusterTooSmall);
    }
    let local = percentages(local_hosts);
    let upstream = percentages(upstream_healthy);
    if upstream[0] >= local[0] {
        return ZoneRouting::Direct;
    }
    let mut residual = vec![0u64; local.len()];
    for i in 1..local.len() {
        residual[i] = residual[i - 1] + upstream[i].saturating_sub(local[i]);
    }
    ZoneRouting::Residual {
        local_percent_to_route: upstream[0] * 10_000 / local[0],
        residual_capacity: residual,
    }
}

/// The zone one request goes to, or `None` when zone-aware routing does not apply to it.
///
/// Cross-zone traffic picks zone `i` with probability proportional to its residual capacity;
/// Envoy's own loop can pick the local zone when its draw is exactly 0 (a TODO in its source);
/// this picks strictly by the cumulative bounds.
pub fn choose_zone(
    routing: &ZoneRouting,
    config: &ZoneAwareConfig,
    rng: &mut Rng,
) -> Option<usize> {
    if config.routing_enabled < 100.0 && (below(rng, 100) as f64) >= config.routing_enabled {
        return None;
    }
    match routing {
        ZoneRouting::Off(_) => None,
        ZoneRouting::Direct => Some(0),
        ZoneRouting::Residual {
            local_percent_to_route,
            residual_capacity,
        } => {
            if next_u64(rng) % 10_000 < *local_percent_to_route {
                return Some(0);
            }
            let last = *residual_capacity.last().expect("at least two zones");
            if last == 0 {
                return Some(below(rng, residual_capacity.len() as u32) as usize);
            }
            let t = next_u64(rng) % last;
            residual_capacity.iter().position(|&r| t < r)
        }
    }
}
