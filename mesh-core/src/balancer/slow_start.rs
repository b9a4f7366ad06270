//! Slow start, after Envoy's `SlowStartConfig` (`common.proto`) and
//! `EdfLoadBalancerBase::applySlowStartFactor` (`load_balancer_impl.cc`): a host that joined or
//! turned healthy less than `slow_start_window` ago has its weight scaled by
//! `max(min_weight_percent/100, time_factor^(1/aggression))`, where
//! `time_factor = max(1ms, time_in_slow_start) / slow_start_window`.

use serde::{Deserialize, Serialize};

use crate::endpoint::Candidate;
use crate::error::{ConfigError, check_range};
use crate::time::{Duration, Instant};

/// Envoy's `slow_start_config`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlowStartConfig {
    /// How long a new host ramps up. Required, > 0.
    pub slow_start_window: Duration,
    /// Ramp shape: 1.0 is linear; larger values ramp faster at first. Default 1.0.
    #[serde(default = "default_aggression")]
    pub aggression: f64,
    /// Floor of the ramp, percent of the full weight. Default 10.
    #[serde(default = "default_min_weight_percent")]
    pub min_weight_percent: f64,
}

fn default_aggression() -> f64 {
    1.0
}
fn default_min_weight_percent() -> f64 {
    10.0
}

impl SlowStartConfig {
    /// A linear ramp over `window` with Envoy's defaults otherwise.
    pub fn new(window: Duration) -> Self {
        SlowStartConfig {
            slow_start_window: window,
            aggression: default_aggression(),
            min_weight_percent: default_min_weight_percent(),
        }
    }

    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        if self.slow_start_window.is_zero() {
            return Err(ConfigError::new(
                "slow_start_config.slow_start_window",
                "must be a duration > 0, such as `30s`",
            ));
        }
        if !(self.aggression.is_finite() && self.aggression > 0.0) {
            return Err(ConfigError::new(
                "slow_start_config.aggression",
                format!("must be a finite number > 0, got {}", self.aggression),
            ));
        }
        check_range(
            "slow_start_config.min_weight_percent",
            self.min_weight_percent,
            0.0,
            100.0,
        )
    }

    /// The weight multiplier for a host in slow start since `since`, at `now`; 1.0 outside it.
    pub fn factor(&self, since: Option<Instant>, now: Instant) -> f64 {
        let Some(since) = since else { return 1.0 };
        let elapsed = now.saturating_since(since);
        if elapsed >= self.slow_start_window {
            return 1.0;
        }
        let t = elapsed.max(Duration::from_millis(1)).as_nanos() as f64
            / self.slow_start_window.as_nanos() as f64;
        let ramp = if self.aggression == 1.0 {
            t
        } else {
            t.powf(1.0 / self.aggression)
        };
        ramp.max(self.min_weight_percent / 100.0).min(1.0)
    }

    /// The instant the last of `hosts` leaves slow start (`EPOCH` when none is in it at `now`).
    pub(crate) fn ends_at(&self, hosts: &[Candidate], now: Instant) -> Instant {
        hosts
            .iter()
            .filter_map(|c| c.slow_start_since)
            .map(|s| s + self.slow_start_window)
            .filter(|&end| end > now)
            .max()
            .unwrap_or(Instant::EPOCH)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envoy_ramp_shape() {
        let ss = SlowStartConfig::new(Duration::from_secs(10));
        let t0 = Instant::from_nanos(0);
        let at = |s: u64| t0 + Duration::from_secs(s);
        assert_eq!(ss.factor(None, at(1)), 1.0);
        // Below the 10% floor the floor applies; then linear; then full weight.
        assert_eq!(ss.factor(Some(t0), t0), 0.1);
        assert!((ss.factor(Some(t0), at(5)) - 0.5).abs() < 1e-12);
        assert_eq!(ss.factor(Some(t0), at(10)), 1.0);
        let aggressive = SlowStartConfig {
            aggression: 2.0,
            ..ss.clone()
        };
        assert!((aggressive.factor(Some(t0), at(4)) - 0.4f64.sqrt()).abs() < 1e-12);
    }
}
