//! Retries, back-off, retry budgets and hedging.
//!
//! * [`RetryConfig`]: Envoy's `RetryPolicy` (`retry_on`, `num_retries`, `per_try_timeout`,
//!   `retry_back_off`, `retry_host_predicate: [previous_hosts]`,
//!   `host_selection_retry_max_attempts`) plus a budget.
//! * [`BackoffConfig`]: Envoy's full jitter, `min(U[0, (2^n - 1) x base), max)`
//!   (`JitteredExponentialBackOffStrategy`), or gRPC's A6 delay since 2024,
//!   `min(initial x multiplier^(n-1), max) x U(0.8, 1.2)`.
//! * [`RetryBudget`]: Envoy's concurrency budget (`budget_percent` of active requests, at least
//!   `min_retry_concurrency`), tower/Linkerd/Finagle's `TpsBudget` (deposits per request over a
//!   sliding `ttl` in 10 slots, integer milli-tokens, floor `min_retries_per_second x ttl`), and
//!   gRPC's retry throttle (token bucket, retries only while `tokens > max_tokens / 2`).
//! * [`HedgeConfig`]: Envoy's `hedge_on_per_try_timeout` and gRPC's `hedgingDelay`. Hedged
//!   attempts count as retries (Envoy), so hedging needs `num_retries >= 1`.

use serde::{Deserialize, Serialize};

use crate::endpoint::Outcome;
use crate::error::{ConfigError, check_range};
use crate::seed::{Rng, next_u64};
use crate::time::{Duration, Instant};

/// An outcome class that triggers a retry (Envoy's `retry_on`; both `-` and `_` spellings).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum RetryOn {
    /// Any 5xx, connect failure, reset or per-try timeout.
    #[serde(rename = "5xx")]
    FiveXx,
    /// 502, 503, 504, connect failure, reset or per-try timeout.
    #[serde(rename = "gateway-error", alias = "gateway_error")]
    GatewayError,
    /// Connect failure, reset, or per-try timeout (a local reset, as Envoy treats it).
    #[serde(rename = "reset")]
    Reset,
    /// Connect failure only.
    #[serde(rename = "connect-failure", alias = "connect_failure")]
    ConnectFailure,
    /// A per-try timeout only (gRPC's `deadline-exceeded`).
    #[serde(
        rename = "timeout",
        alias = "deadline-exceeded",
        alias = "deadline_exceeded"
    )]
    Timeout,
}

impl RetryOn {
    /// Whether this class covers `outcome`.
    pub const fn covers(self, outcome: Outcome) -> bool {
        use Outcome::*;
        match self {
            RetryOn::FiveXx => !matches!(outcome, Success),
            RetryOn::GatewayError => matches!(outcome, GatewayError | LocalError | Timeout),
            RetryOn::Reset => matches!(outcome, LocalError | Timeout),
            RetryOn::ConnectFailure => matches!(outcome, LocalError),
            RetryOn::Timeout => matches!(outcome, Timeout),
        }
    }
}

/// A check that rejects a retry's pick (Envoy's `retry_host_predicate`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HostPredicate {
    /// Reject hosts this request already tried (`envoy.retry_host_predicates.previous_hosts`).
    PreviousHosts,
}

/// Envoy's `RetryPolicy`, with a budget.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryConfig {
    /// Retries per request, after the first attempt. Default 1 (Envoy). Alias `max`.
    #[serde(default = "one", alias = "max")]
    pub num_retries: u32,
    /// Outcome classes that are retried. Default `[5xx]`.
    #[serde(default = "default_retry_on")]
    pub retry_on: Vec<RetryOn>,
    /// Deadline of each attempt. Default none (the request timeout applies). Ignored when it is
    /// not shorter than the request timeout, as Envoy does. With connection pools it starts when
    /// the attempt gets its connection, as Envoy's does (`UpstreamRequest::onPoolReady`): time
    /// pending in the pool or on a connection's setup counts only against the request timeout.
    #[serde(default)]
    pub per_try_timeout: Option<Duration>,
    /// Wait before each retry. Default Envoy's 25 ms full jitter. Alias `backoff`.
    #[serde(default, alias = "backoff")]
    pub retry_back_off: BackoffConfig,
    /// Predicates a retry's host must pass. Default none.
    #[serde(default)]
    pub retry_host_predicate: Vec<HostPredicate>,
    /// Re-picks when a predicate rejects a host; the last pick is used anyway. Default 1.
    #[serde(default = "one")]
    pub host_selection_retry_max_attempts: u32,
    /// A budget limiting retries across requests. Default none (the `max_retries` breaker).
    /// Alias `retry_budget`.
    #[serde(default, alias = "retry_budget")]
    pub budget: Option<RetryBudgetConfig>,
}

fn one() -> u32 {
    1
}
fn default_retry_on() -> Vec<RetryOn> {
    vec![RetryOn::FiveXx]
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            num_retries: 1,
            retry_on: default_retry_on(),
            per_try_timeout: None,
            retry_back_off: BackoffConfig::default(),
            retry_host_predicate: Vec::new(),
            host_selection_retry_max_attempts: 1,
            budget: None,
        }
    }
}

/// Most retries a request may make; more is certainly a typo.
pub const MAX_RETRIES: u32 = 100;

impl RetryConfig {
    /// Checks every field's range.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.num_retries > MAX_RETRIES {
            return Err(ConfigError::new(
                "num_retries",
                format!("must be in 0..={MAX_RETRIES}, got {}", self.num_retries),
            ));
        }
        if self.per_try_timeout.is_some_and(Duration::is_zero) {
            return Err(ConfigError::new(
                "per_try_timeout",
                "must be a duration > 0 (for example 200ms), or left out",
            ));
        }
        if self.host_selection_retry_max_attempts > 64 {
            return Err(ConfigError::new(
                "host_selection_retry_max_attempts",
                format!(
                    "must be in 0..=64, got {}",
                    self.host_selection_retry_max_attempts
                ),
            ));
        }
        self.retry_back_off
            .validate()
            .map_err(|e| e.within("retry_back_off"))?;
        if let Some(b) = &self.budget {
            b.validate().map_err(|e| e.within("budget"))?;
        }
        Ok(())
    }

    /// Whether `outcome` is retried under `retry_on`.
    #[inline]
    pub fn retriable(&self, outcome: Outcome) -> bool {
        self.retry_on.iter().any(|r| r.covers(outcome))
    }
}

/// The wait before a retry.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum BackoffConfig {
    /// Envoy: retry `n` waits `min(U[0, (2^n - 1) x base_interval), max_interval)`.
    Envoy {
        /// Default 25 ms.
        #[serde(default = "default_base")]
        base_interval: Duration,
        /// Default 10 x `base_interval`.
        #[serde(default)]
        max_interval: Option<Duration>,
    },
    /// gRPC A6 (2024): retry `n` waits `min(initial x multiplier^(n-1), max) x U(0.8, 1.2)`.
    Grpc {
        /// `initialBackoff`.
        initial_backoff: Duration,
        /// `maxBackoff`.
        max_backoff: Duration,
        /// `backoffMultiplier`, > 0.
        backoff_multiplier: f64,
    },
    /// No wait.
    None,
}

fn default_base() -> Duration {
    Duration::from_millis(25)
}

impl Default for BackoffConfig {
    fn default() -> Self {
        BackoffConfig::Envoy {
            base_interval: default_base(),
            max_interval: None,
        }
    }
}

impl BackoffConfig {
    /// Checks every field's range.
    pub fn validate(&self) -> Result<(), ConfigError> {
        match self {
            BackoffConfig::Envoy {
                base_interval,
                max_interval,
            } => {
                if base_interval.is_zero() {
                    return Err(ConfigError::new(
                        "base_interval",
                        "must be a duration > 0 (for example 25ms)",
                    ));
                }
                if let Some(m) = max_interval
                    && m < base_interval
                {
                    return Err(ConfigError::new(
                        "max_interval",
                        format!("must be >= base_interval ({base_interval}), got {m}"),
                    ));
                }
                Ok(())
            }
            BackoffConfig::Grpc {
                initial_backoff,
                max_backoff,
                backoff_multiplier,
            } => {
                if initial_backoff.is_zero() || max_backoff.is_zero() {
                    return Err(ConfigError::new(
                        "initial_backoff",
                        "initial_backoff and max_backoff must be durations > 0",
                    ));
                }
                let m = *backoff_multiplier;
                if !(m > 0.0 && m <= 1e6) {
                    return Err(ConfigError::new(
                        "backoff_multiplier",
                        format!("must be a finite number > 0 and <= 1000000, got {m}"),
                    ));
                }
                Ok(())
            }
            BackoffConfig::None => Ok(()),
        }
    }

    /// The wait before retry number `n` (1 for the first retry), drawn from `rng`.
    pub fn delay(&self, n: u32, rng: &mut Rng) -> Duration {
        match self {
            BackoffConfig::Envoy {
                base_interval,
                max_interval,
            } => {
                let base = base_interval.as_nanos();
                let max = max_interval.map_or(base.saturating_mul(10), Duration::as_nanos);
                let mult = if n >= 64 {
                    u64::MAX
                } else {
                    (1u64 << n.max(1)) - 1
                };
                let bound = base.saturating_mul(mult);
                Duration::from_nanos((next_u64(rng) % bound).min(max))
            }
            BackoffConfig::Grpc {
                initial_backoff,
                max_backoff,
                backoff_multiplier,
            } => {
                let exp = backoff_multiplier.powi(n.saturating_sub(1).min(1000) as i32);
                let base =
                    (initial_backoff.as_nanos() as f64 * exp).min(max_backoff.as_nanos() as f64);
                let u = unit(rng);
                Duration::from_nanos((base * (0.8 + 0.4 * u)) as u64)
            }
            BackoffConfig::None => Duration::ZERO,
        }
    }
}

/// A uniform draw in `[0, 1)` with 53 random bits.
fn unit(rng: &mut Rng) -> f64 {
    (next_u64(rng) >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

/// A retry budget: which kind, and its parameters.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum RetryBudgetConfig {
    /// Envoy `RetryBudget`: retries outstanding < `max(min_retry_concurrency, budget_percent %
    /// of active requests)`.
    Envoy {
        /// Default 20.
        #[serde(default = "default_budget_percent")]
        budget_percent: f64,
        /// Default 3.
        #[serde(default = "default_min_concurrency")]
        min_retry_concurrency: u32,
    },
    /// tower/Linkerd/Finagle `TpsBudget`: each request deposits 1, each retry withdraws
    /// `1 / retry_ratio`, over a sliding `ttl`, plus a reserve of `min_retries_per_second x ttl`
    /// retries. Alias `linkerd`.
    #[serde(alias = "linkerd", alias = "finagle")]
    Tps {
        /// Retries per request allowed beyond the reserve, 0..=1000. Default 0.2. Alias `ratio`.
        #[serde(default = "default_ratio", alias = "ratio")]
        retry_ratio: f64,
        /// The reserve, per second. Default 10. Alias `min_per_sec`.
        #[serde(default = "default_min_per_sec", alias = "min_per_sec")]
        min_retries_per_second: u32,
        /// The window, 1 s..=60 s (tower's bounds). Default 10 s.
        #[serde(default = "default_ttl")]
        ttl: Duration,
    },
    /// gRPC `retryThrottling`: tokens start at `max_tokens`; a failed attempt takes 1, a success
    /// gives back `token_ratio`; retries and hedges go out only while `tokens > max_tokens / 2`.
    GrpcThrottle {
        /// In (0, 1000].
        max_tokens: f64,
        /// In (0, max_tokens], three decimals kept (gRPC).
        token_ratio: f64,
    },
}

fn default_budget_percent() -> f64 {
    20.0
}
fn default_min_concurrency() -> u32 {
    3
}
fn default_ratio() -> f64 {
    0.2
}
fn default_min_per_sec() -> u32 {
    10
}
fn default_ttl() -> Duration {
    Duration::from_secs(10)
}

impl RetryBudgetConfig {
    /// Checks every field's range.
    pub fn validate(&self) -> Result<(), ConfigError> {
        match self {
            RetryBudgetConfig::Envoy { budget_percent, .. } => {
                check_range("budget_percent", *budget_percent, 0.0, 100.0)
            }
            RetryBudgetConfig::Tps {
                retry_ratio, ttl, ..
            } => {
                check_range("retry_ratio", *retry_ratio, 0.0, 1000.0)?;
                if *ttl < Duration::from_secs(1) || *ttl > Duration::from_secs(60) {
                    return Err(ConfigError::new(
                        "ttl",
                        format!("must be in 1s..=60s (tower's bounds), got {ttl}"),
                    ));
                }
                Ok(())
            }
            RetryBudgetConfig::GrpcThrottle {
                max_tokens,
                token_ratio,
            } => {
                check_range("max_tokens", *max_tokens, 0.001, 1000.0)?;
                check_range("token_ratio", *token_ratio, 0.001, *max_tokens)
            }
        }
    }
}

const SLOTS: usize = 10;

/// A retry budget's state.
#[derive(Clone, Debug)]
pub enum RetryBudget {
    /// Envoy's concurrency budget (stateless: the cluster's counts decide).
    Envoy {
        /// Percent of active requests.
        percent: f64,
        /// Floor.
        min_concurrency: u32,
    },
    /// tower's `TpsBudget`, in milli-tokens.
    Tps {
        /// Milli-tokens per deposit.
        deposit: i64,
        /// Milli-tokens per retry.
        withdraw: i64,
        /// Milli-tokens always available.
        reserve: i64,
        /// Slot length.
        slot: Duration,
        /// Start of the current slot.
        slot_start: Instant,
        /// Index of the current slot.
        cur: usize,
        /// Balance per slot.
        slots: [i64; SLOTS],
    },
    /// gRPC's throttle, in milli-tokens.
    GrpcThrottle {
        /// Current tokens.
        tokens: i64,
        /// Maximum tokens.
        max: i64,
        /// Milli-tokens a success gives back.
        ratio: i64,
    },
}

impl RetryBudget {
    /// A fresh budget (a `Tps` budget's window starts at `now`).
    pub fn new(config: &RetryBudgetConfig, now: Instant) -> Self {
        match config {
            RetryBudgetConfig::Envoy {
                budget_percent,
                min_retry_concurrency,
            } => RetryBudget::Envoy {
                percent: *budget_percent,
                min_concurrency: *min_retry_concurrency,
            },
            RetryBudgetConfig::Tps {
                retry_ratio,
                min_retries_per_second,
                ttl,
            } => {
                // Integer milli-tokens: a deposit is 1000, a retry 1000 / ratio, so ten deposits
                // at 0.2 buy exactly two retries (a float budget can buy one).
                let (deposit, withdraw) = if *retry_ratio == 0.0 {
                    (0, 1000)
                } else {
                    (1000, (1000.0 / retry_ratio).round().max(1.0) as i64)
                };
                let secs = (ttl.as_nanos() / 1_000_000_000) as i64;
                RetryBudget::Tps {
                    deposit,
                    withdraw,
                    reserve: i64::from(*min_retries_per_second) * secs * withdraw,
                    slot: Duration::from_nanos(ttl.as_nanos() / SLOTS as u64),
                    slot_start: now,
                    cur: 0,
                    slots: [0; SLOTS],
                }
            }
            RetryBudgetConfig::GrpcThrottle {
                max_tokens,
                token_ratio,
            } => {
                let max = (max_tokens * 1000.0).round() as i64;
                RetryBudget::GrpcThrottle {
                    tokens: max,
                    max,
                    ratio: (token_ratio * 1000.0).round() as i64,
                }
            }
        }
    }

    fn rotate(
        slot: Duration,
        slot_start: &mut Instant,
        cur: &mut usize,
        slots: &mut [i64; SLOTS],
        now: Instant,
    ) {
        let behind = now.saturating_since(*slot_start).as_nanos() / slot.as_nanos().max(1);
        if behind == 0 {
            return;
        }
        if behind >= SLOTS as u64 {
            *slots = [0; SLOTS];
        } else {
            for _ in 0..behind {
                *cur = (*cur + 1) % SLOTS;
                slots[*cur] = 0;
            }
        }
        *slot_start += Duration::from_nanos(behind * slot.as_nanos());
    }

    /// A new request arrived (tower deposits per request).
    #[inline]
    pub fn deposit(&mut self, now: Instant) {
        if let RetryBudget::Tps {
            deposit,
            slot,
            slot_start,
            cur,
            slots,
            ..
        } = self
        {
            Self::rotate(*slot, slot_start, cur, slots, now);
            slots[*cur] += *deposit;
        }
    }

    /// An attempt's outcome (gRPC's throttle counts failures and successes).
    #[inline]
    pub fn on_attempt(&mut self, success: bool) {
        if let RetryBudget::GrpcThrottle { tokens, max, ratio } = self {
            *tokens = if success {
                (*tokens + *ratio).min(*max)
            } else {
                (*tokens - 1000).max(0)
            };
        }
    }

    /// Asks for one retry; takes it from the budget when granted. `active_requests` and
    /// `active_retries` are the cluster's counts (Envoy's budget is a concurrency ratio).
    pub fn try_withdraw(
        &mut self,
        active_requests: u64,
        active_retries: u64,
        now: Instant,
    ) -> bool {
        match self {
            RetryBudget::Envoy {
                percent,
                min_concurrency,
            } => active_retries < Self::envoy_limit(*percent, *min_concurrency, active_requests),
            RetryBudget::Tps {
                withdraw,
                reserve,
                slot,
                slot_start,
                cur,
                slots,
                ..
            } => {
                Self::rotate(*slot, slot_start, cur, slots, now);
                let balance: i64 = slots.iter().sum::<i64>() + *reserve;
                if balance >= *withdraw {
                    slots[*cur] -= *withdraw;
                    true
                } else {
                    false
                }
            }
            RetryBudget::GrpcThrottle { tokens, max, .. } => *tokens * 2 > *max,
        }
    }

    /// Envoy's limit on outstanding retries: `max(min_retry_concurrency, percent x active / 100)`.
    pub fn envoy_limit(percent: f64, min_concurrency: u32, active_requests: u64) -> u64 {
        ((percent / 100.0 * active_requests as f64) as u64).max(u64::from(min_concurrency))
    }
}

/// Hedging: further attempts while the first is still out.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HedgeConfig {
    /// Send another attempt this long after the last one while none has answered (gRPC
    /// `hedgingDelay`). Default none.
    #[serde(default)]
    pub hedging_delay: Option<Duration>,
    /// At a per-try timeout, send another attempt and keep the first (Envoy). Default false.
    #[serde(default)]
    pub hedge_on_per_try_timeout: bool,
}

impl HedgeConfig {
    /// Checks the delay.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.hedging_delay.is_some_and(Duration::is_zero) {
            return Err(ConfigError::new(
                "hedging_delay",
                "must be a duration > 0 (for example 20ms), or left out",
            ));
        }
        Ok(())
    }
}
