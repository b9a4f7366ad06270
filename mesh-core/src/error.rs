//! Configuration errors: the field, and what it accepts.

use core::fmt;

/// A rejected configuration value. Produced once, by constructors; hot paths never return it.
#[derive(Clone, Debug, PartialEq)]
pub struct ConfigError {
    /// Dotted path of the offending field, e.g. `least_request.choice_count`.
    pub field: String,
    /// What the field accepts and what it got.
    pub message: String,
}

impl ConfigError {
    /// An error for `field` with an explanation.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError {
            field: field.into(),
            message: message.into(),
        }
    }

    /// The same error under a parent path: `balancer` + `choice_count` = `balancer.choice_count`.
    pub fn within(mut self, parent: &str) -> Self {
        self.field = if self.field.is_empty() {
            parent.to_owned()
        } else {
            format!("{parent}.{}", self.field)
        };
        self
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

impl std::error::Error for ConfigError {}

/// Checks that a float lies in `lo..=hi` (and is not NaN).
pub(crate) fn check_range(field: &str, v: f64, lo: f64, hi: f64) -> Result<(), ConfigError> {
    if v.is_nan() || v < lo || v > hi {
        let range = if hi >= f64::MAX / 2.0 {
            format!(">= {lo}")
        } else {
            format!("in {lo}..={hi}")
        };
        return Err(ConfigError::new(
            field,
            format!("must be a finite number {range}, got {v}"),
        ));
    }
    Ok(())
}
