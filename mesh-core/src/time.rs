//! Virtual time: [`Instant`] and [`Duration`], both whole nanoseconds in a `u64`.
//!
//! mesh-core never reads a clock. Every call that needs the time takes `now: Instant`, a count of
//! nanoseconds since the run's start, so the same policy code runs on the simulator's virtual
//! clock and on a live driver's monotonic clock (`Instant::from_nanos(start.elapsed())`).
//! A `u64` of nanoseconds covers 584 years, so neither type can overflow in a run.

use core::fmt;
use core::ops::{Add, AddAssign, Sub};
use core::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A point in a run: nanoseconds since the run's start. Totally ordered, `Copy`, constructible.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Instant(u64);

impl Instant {
    /// The run's start.
    pub const EPOCH: Instant = Instant(0);
    /// The latest representable instant; used as "never" by timers.
    pub const MAX: Instant = Instant(u64::MAX);

    /// The instant `nanos` nanoseconds after the run's start.
    pub const fn from_nanos(nanos: u64) -> Self {
        Instant(nanos)
    }

    /// Nanoseconds since the run's start.
    pub const fn as_nanos(self) -> u64 {
        self.0
    }

    /// Time elapsed from `earlier` to `self`, or zero when `earlier` is later.
    pub const fn saturating_since(self, earlier: Instant) -> Duration {
        Duration(self.0.saturating_sub(earlier.0))
    }

    /// `self + d`, saturating at [`Instant::MAX`].
    pub const fn saturating_add(self, d: Duration) -> Instant {
        Instant(self.0.saturating_add(d.0))
    }
}

impl Add<Duration> for Instant {
    type Output = Instant;
    fn add(self, d: Duration) -> Instant {
        self.saturating_add(d)
    }
}

impl AddAssign<Duration> for Instant {
    fn add_assign(&mut self, d: Duration) {
        *self = *self + d;
    }
}

impl Sub<Instant> for Instant {
    type Output = Duration;
    /// Saturating: an earlier minus a later instant is zero.
    fn sub(self, earlier: Instant) -> Duration {
        self.saturating_since(earlier)
    }
}

impl fmt::Display for Instant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "t+{}", Duration(self.0))
    }
}

/// A span of virtual time in whole nanoseconds. Never negative and never NaN by construction.
///
/// In config files a duration is a number with a unit: `250ns`, `250us`, `2ms`, `1.5s`, `5m`,
/// `1h`. A bare number is rejected because its unit would be a guess.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Duration(u64);

impl Duration {
    /// Zero length.
    pub const ZERO: Duration = Duration(0);
    /// The longest duration the parser accepts: 100 years (365.25 days each). A few of them
    /// add up without wrapping a `u64` of nanoseconds (584 years).
    pub const LONGEST: Duration = Duration(36_525 * 86_400 * 1_000_000_000);

    /// `n` nanoseconds.
    pub const fn from_nanos(n: u64) -> Self {
        Duration(n)
    }
    /// `n` microseconds.
    pub const fn from_micros(n: u64) -> Self {
        Duration(n * 1_000)
    }
    /// `n` milliseconds.
    pub const fn from_millis(n: u64) -> Self {
        Duration(n * 1_000_000)
    }
    /// `n` seconds.
    pub const fn from_secs(n: u64) -> Self {
        Duration(n * 1_000_000_000)
    }
    /// Whole nanoseconds.
    pub const fn as_nanos(self) -> u64 {
        self.0
    }
    /// Seconds as a float, for rates and plots.
    pub fn as_secs_f64(self) -> f64 {
        self.0 as f64 / 1e9
    }
    /// True for the zero duration.
    pub const fn is_zero(self) -> bool {
        self.0 == 0
    }
}

impl Add for Duration {
    type Output = Duration;
    fn add(self, o: Duration) -> Duration {
        Duration(self.0.saturating_add(o.0))
    }
}

impl fmt::Display for Duration {
    /// The shortest exact form in the largest unit that divides it: `30s`, `250ms`, `1500us`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [(u64, &str); 5] = [
            (3_600_000_000_000, "h"),
            (1_000_000_000, "s"),
            (1_000_000, "ms"),
            (1_000, "us"),
            (1, "ns"),
        ];
        if self.0 == 0 {
            return f.write_str("0s");
        }
        for (scale, unit) in UNITS {
            if self.0 % scale == 0 {
                return write!(f, "{}{unit}", self.0 / scale);
            }
        }
        unreachable!("every u64 is a whole number of nanoseconds")
    }
}

/// Why a duration string was rejected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseDurationError(String);

impl fmt::Display for ParseDurationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ParseDurationError {}

impl FromStr for Duration {
    type Err = ParseDurationError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let split = s
            .find(|c: char| c.is_ascii_alphabetic() || c == 'µ')
            .ok_or_else(|| {
                ParseDurationError(format!(
                    "duration `{s}` has no unit: write it as e.g. `250us`, `2ms`, `1.5s`, `5m`"
                ))
            })?;
        let (num, unit) = s.split_at(split);
        if num.trim().is_empty() {
            return Err(ParseDurationError(format!(
                "`{s}` is not a number followed by a unit, such as `250ms`"
            )));
        }
        let scale: f64 = match unit {
            "ns" => 1.0,
            "us" | "µs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" | "min" => 60e9,
            "h" => 3600e9,
            other => {
                return Err(ParseDurationError(format!(
                    "unknown duration unit `{other}` in `{s}`: expected one of ns, us, ms, s, m, h"
                )));
            }
        };
        let value: f64 = num
            .trim()
            .parse()
            .map_err(|_| ParseDurationError(format!("`{s}` is not a number followed by a unit")))?;
        if !value.is_finite() || value < 0.0 {
            return Err(ParseDurationError(format!(
                "duration `{s}` must be a finite number >= 0"
            )));
        }
        let nanos = (value * scale).round();
        if nanos > Duration::LONGEST.0 as f64 {
            return Err(ParseDurationError(format!(
                "duration `{s}` is longer than 100 years, the longest accepted"
            )));
        }
        Ok(Duration(nanos as u64))
    }
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Duration;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration with a unit, such as `250us`, `2ms`, `1.5s` or `5m`")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Duration, E> {
                v.parse().map_err(E::custom)
            }
        }
        d.deserialize_str(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units_and_rejects_bad_input() {
        assert_eq!(
            "250us".parse::<Duration>().unwrap(),
            Duration::from_micros(250)
        );
        assert_eq!(
            "1.5s".parse::<Duration>().unwrap(),
            Duration::from_millis(1500)
        );
        assert_eq!("5m".parse::<Duration>().unwrap(), Duration::from_secs(300));
        assert_eq!("0s".parse::<Duration>().unwrap(), Duration::ZERO);
        for bad in ["-1s", "NaNs", "infs", "10", "3 parsecs", "ms", "1e400s"] {
            assert!(bad.parse::<Duration>().is_err(), "{bad} should be rejected");
        }
    }

    #[test]
    fn display_round_trips() {
        for d in ["30s", "250ms", "1500us", "7ns", "2h"] {
            let parsed: Duration = d.parse().unwrap();
            assert_eq!(parsed.to_string(), d);
        }
    }
}
