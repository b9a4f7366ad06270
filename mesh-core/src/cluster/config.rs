//! [`ClusterConfig`]: every policy section of one client's view of one upstream cluster.

use super::*;

/// Every policy of one client's view of one upstream cluster. Missing sections are off, except
/// the circuit breakers and the request timeout, which Envoy always has.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// The load balancer. Default round robin.
    #[serde(default)]
    pub balancer: BalancerConfig,
    /// Overprovisioning factor and panic threshold.
    #[serde(default)]
    pub priority: PriorityConfig,
    /// Active health checking. Default off.
    #[serde(default)]
    pub health_check: Option<HealthCheckConfig>,
    /// Outlier detection. Default off.
    #[serde(default)]
    pub outlier_detection: Option<OutlierConfig>,
    /// Failure accrual. Default off.
    #[serde(default)]
    pub failure_accrual: Option<FailureAccrualConfig>,
    /// Concurrency limits. Default Envoy's 1024 / 1024 / 1024 / 3.
    #[serde(default)]
    pub circuit_breakers: CircuitBreakerConfig,
    /// Request timeout spanning all attempts; `0s` disables it. Default 15 s (Envoy's route
    /// timeout).
    #[serde(default = "default_timeout")]
    pub timeout: Duration,
    /// Retries. Default off.
    #[serde(default)]
    pub retries: Option<RetryConfig>,
    /// Hedging (needs `retries`). Default off.
    #[serde(default)]
    pub hedging: Option<HedgeConfig>,
    /// Envoy's zone-aware routing. Default off.
    #[serde(default)]
    pub zone_aware: Option<ZoneAwareConfig>,
    /// Envoy's locality-weighted load balancing (not with `zone_aware`). Default off.
    #[serde(default)]
    pub locality_weighted_lb: Option<LocalityWeightedConfig>,
    /// Connection pools, with `max_connections` and `max_pending_requests`. Default off: every
    /// attempt goes out at once, as over connections already open.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connections: Option<ConnectionConfig>,
}

fn default_timeout() -> Duration {
    Duration::from_secs(15)
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            balancer: BalancerConfig::default(),
            priority: PriorityConfig::default(),
            health_check: None,
            outlier_detection: None,
            failure_accrual: None,
            circuit_breakers: CircuitBreakerConfig::default(),
            timeout: default_timeout(),
            retries: None,
            hedging: None,
            zone_aware: None,
            locality_weighted_lb: None,
            connections: None,
        }
    }
}

impl ClusterConfig {
    /// Checks every section, naming the field path of the first error.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.balancer.validate().map_err(|e| e.within("balancer"))?;
        self.priority.validate().map_err(|e| e.within("priority"))?;
        if let Some(c) = &self.health_check {
            c.validate().map_err(|e| e.within("health_check"))?;
        }
        if let Some(c) = &self.outlier_detection {
            c.validate().map_err(|e| e.within("outlier_detection"))?;
        }
        if let Some(c) = &self.connections {
            c.validate().map_err(|e| e.within("connections"))?;
        }
        if let Some(c) = &self.failure_accrual {
            c.validate().map_err(|e| e.within("failure_accrual"))?;
        }
        self.circuit_breakers
            .validate()
            .map_err(|e| e.within("circuit_breakers"))?;
        if let Some(c) = &self.retries {
            c.validate().map_err(|e| e.within("retries"))?;
        }
        if let Some(z) = &self.zone_aware {
            z.validate().map_err(|e| e.within("zone_aware"))?;
        }
        if let Some(l) = &self.locality_weighted_lb {
            l.validate().map_err(|e| e.within("locality_weighted_lb"))?;
            if self.zone_aware.is_some() {
                return Err(ConfigError::new(
                    "locality_weighted_lb",
                    "cannot be combined with zone_aware: Envoy applies zone-aware routing only without locality-weighted balancing (choose one)",
                ));
            }
        }
        if let Some(h) = &self.hedging {
            h.validate().map_err(|e| e.within("hedging"))?;
            if self.retries.as_ref().is_none_or(|r| r.num_retries == 0) {
                return Err(ConfigError::new(
                    "hedging",
                    "needs retries.num_retries >= 1: hedged attempts count as retries (Envoy)",
                ));
            }
            if h.hedge_on_per_try_timeout
                && self
                    .retries
                    .as_ref()
                    .is_none_or(|r| r.per_try_timeout.is_none())
            {
                return Err(ConfigError::new(
                    "hedging.hedge_on_per_try_timeout",
                    "needs retries.per_try_timeout to be set",
                ));
            }
        }
        Ok(())
    }
}
