//! Value types with units: rates (`8000/s`) and probabilities (`0..=1`). Durations come from
//! mesh-core (`250us`, `2ms`, `1.5s`). Each checks its range while it is parsed, so a bad value's
//! error carries the file position for free.

use core::fmt;
use core::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Events per second, written with a unit: `8000/s`, `8k/s`, `120/m`, `0.5/ms`. Always > 0 and
/// at most [`Rate::MAX_PER_SEC`].
#[derive(Clone, Copy, Debug, PartialEq, PartialOrd)]
pub struct Rate(f64);

impl Rate {
    /// The highest rate: one event per nanosecond, the clock's resolution (a faster rate would
    /// put many arrivals at one instant and never advance time).
    pub const MAX_PER_SEC: f64 = 1e9;

    /// A rate of `per_sec` events per second; `None` unless finite, > 0 and at most
    /// [`Rate::MAX_PER_SEC`].
    pub fn per_sec(per_sec: f64) -> Option<Self> {
        (per_sec.is_finite() && per_sec > 0.0 && per_sec <= Self::MAX_PER_SEC)
            .then_some(Rate(per_sec))
    }

    /// Events per second.
    pub fn as_per_sec(self) -> f64 {
        self.0
    }
}

impl FromStr for Rate {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let t = s.trim();
        let (num, unit) = t.split_once('/').ok_or_else(|| {
            format!("rate `{t}` has no unit: write it as e.g. `8000/s`, `8k/s`, `120/m`")
        })?;
        let num = num.trim();
        let (digits, mult) = match num.strip_suffix(['k', 'K']) {
            Some(d) => (d, 1e3),
            None => match num.strip_suffix('M') {
                Some(d) => (d, 1e6),
                None => (num, 1.0),
            },
        };
        let v: f64 = digits
            .trim()
            .parse()
            .map_err(|_| format!("rate `{t}` is not a number per unit, such as `8000/s`"))?;
        let per = match unit.trim() {
            "s" => 1.0,
            "ms" => 1e3,
            "us" | "µs" => 1e6,
            "m" | "min" => 1.0 / 60.0,
            "h" => 1.0 / 3600.0,
            other => {
                return Err(format!(
                    "unknown rate unit `/{other}` in `{t}`: expected one of /s, /ms, /us, /m, /h"
                ));
            }
        };
        let r = v * mult * per;
        if r > Self::MAX_PER_SEC {
            return Err(format!(
                "rate `{t}` is above 1G/s (one per nanosecond), the highest the clock can space"
            ));
        }
        Rate::per_sec(r).ok_or_else(|| format!("rate `{t}` must be a finite number > 0"))
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/s", self.0)
    }
}

impl Serialize for Rate {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Rate {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Rate;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a rate with a unit, such as `8000/s`, `8k/s` or `120/m`")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Rate, E> {
                v.parse().map_err(E::custom)
            }
        }
        d.deserialize_str(V)
    }
}

/// A probability in `0..=1`.
#[derive(Clone, Copy, Debug, Default, PartialEq, PartialOrd, Serialize)]
#[serde(transparent)]
pub struct Probability(f64);

impl Probability {
    /// `p`, if it lies in `0..=1`.
    pub fn new(p: f64) -> Option<Self> {
        (0.0..=1.0).contains(&p).then_some(Probability(p))
    }

    /// The value.
    pub fn get(self) -> f64 {
        self.0
    }
}

impl<'de> Deserialize<'de> for Probability {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // A visitor, so the error is raised while the value is read and names its field.
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Probability;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a probability in 0..=1, such as 0.05")
            }
            fn visit_f64<E: serde::de::Error>(self, p: f64) -> Result<Probability, E> {
                Probability::new(p)
                    .ok_or_else(|| E::custom(format!("probability must be in 0..=1, got {p}")))
            }
            fn visit_u64<E: serde::de::Error>(self, p: u64) -> Result<Probability, E> {
                self.visit_f64(p as f64)
            }
            fn visit_i64<E: serde::de::Error>(self, p: i64) -> Result<Probability, E> {
                self.visit_f64(p as f64)
            }
        }
        d.deserialize_f64(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse_with_units() {
        for (s, v) in [
            ("8000/s", 8000.0),
            ("8k/s", 8000.0),
            ("120/m", 2.0),
            ("0.5/ms", 500.0),
            ("2M/s", 2e6),
        ] {
            assert_eq!(s.parse::<Rate>().unwrap().as_per_sec(), v, "{s}");
        }
        for s in [
            "8000", "0/s", "-3/s", "x/s", "5/d", "nan/s", "1e300/s", "2G/ms", "inf/s",
        ] {
            assert!(s.parse::<Rate>().is_err(), "{s}");
        }
    }
}
