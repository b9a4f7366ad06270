//! Value types with units: rates (`8000/s`), sizes (`16KiB`), bandwidths (`1Gbps`) and
//! probabilities (`0..=1`). Durations come from
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

/// A number of bytes, written with a unit or as a plain count: `512B`, `16KiB`, `16 KB`, `10K`,
/// `1.5MB`, `2MiB`, `4096`. `K`/`KB`, `M`/`MB` and `G`/`GB` are powers of 1000; `KiB`, `MiB`
/// and `GiB` of 1024. At most 64 MiB (live backends keep one body of each size in memory, and a
/// larger message is a bulk transfer, not a request).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ByteSize(u64);

impl ByteSize {
    /// The largest size accepted.
    pub const MAX: u64 = 64 << 20;

    /// `bytes`, if at most [`ByteSize::MAX`].
    pub fn new(bytes: u64) -> Option<Self> {
        (bytes <= Self::MAX).then_some(ByteSize(bytes))
    }

    /// The count of bytes.
    pub fn bytes(self) -> u64 {
        self.0
    }
}

impl FromStr for ByteSize {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let t = s.trim();
        let (num, unit) = number_and_unit(t);
        let v: f64 = num.parse().map_err(|_| {
            format!("size `{t}` is not a number of bytes, such as `16KiB` or `512B`")
        })?;
        let mult = match unit.trim() {
            "" | "B" => 1.0,
            "K" | "KB" | "k" | "kB" => 1e3,
            "KiB" => 1024.0,
            "M" | "MB" => 1e6,
            "MiB" => 1024.0 * 1024.0,
            "G" | "GB" => 1e9,
            "GiB" => 1024.0 * 1024.0 * 1024.0,
            other => {
                return Err(format!(
                    "unknown size unit `{other}` in `{t}`: expected one of B, KB, KiB, MB, MiB, GB, GiB"
                ));
            }
        };
        let bytes = (v * mult).round();
        if !bytes.is_finite() || bytes > Self::MAX as f64 {
            return Err(format!(
                "size `{t}` is above 64 MiB, the largest response modelled"
            ));
        }
        Ok(ByteSize(bytes as u64))
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}B", self.0)
    }
}

impl Serialize for ByteSize {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = ByteSize;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a size in bytes, such as `16KiB`, `512B` or `4096`")
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<ByteSize, E> {
                ByteSize::new(v).ok_or_else(|| {
                    E::custom(format!(
                        "size `{v}` is above 64 MiB, the largest response modelled"
                    ))
                })
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<ByteSize, E> {
                u64::try_from(v)
                    .map_err(|_| E::custom(format!("size `{v}` must not be negative")))
                    .and_then(|v| self.visit_u64(v))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<ByteSize, E> {
                v.parse().map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

/// A link's speed in bits per second, written with a unit: `1Gbps`, `100Mbps`, `10 Gbit/s`,
/// `500kbps`. Always > 0 and finite.
#[derive(Clone, Copy, Debug, PartialEq, PartialOrd)]
pub struct BitRate(f64);

impl BitRate {
    /// Bits per second.
    pub fn bits_per_sec(self) -> f64 {
        self.0
    }

    /// The time `bytes` take on a link of this speed, in ns.
    pub fn transfer_ns(self, bytes: u64) -> u64 {
        (bytes as f64 * 8.0 / self.0 * 1e9).round() as u64
    }
}

impl FromStr for BitRate {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let t = s.trim();
        let (num, unit) = number_and_unit(t);
        let v: f64 = num.parse().map_err(|_| {
            format!("bandwidth `{t}` is not a number of bits per second, such as `1Gbps`")
        })?;
        let mult = match unit.trim() {
            "bps" | "bit/s" => 1.0,
            "kbps" | "Kbps" | "kbit/s" => 1e3,
            "Mbps" | "Mbit/s" => 1e6,
            "Gbps" | "Gbit/s" => 1e9,
            "Tbps" | "Tbit/s" => 1e12,
            other => {
                return Err(format!(
                    "unknown bandwidth unit `{other}` in `{t}`: expected one of bps, kbps, Mbps, Gbps, Tbps (bits per second)"
                ));
            }
        };
        let r = v * mult;
        if !(r.is_finite() && r > 0.0) {
            return Err(format!("bandwidth `{t}` must be a finite number > 0"));
        }
        Ok(BitRate(r))
    }
}

impl fmt::Display for BitRate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}bps", self.0)
    }
}

impl Serialize for BitRate {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for BitRate {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = BitRate;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a bandwidth with a unit, such as `1Gbps` or `100Mbps`")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<BitRate, E> {
                v.parse().map_err(E::custom)
            }
        }
        d.deserialize_str(V)
    }
}

/// `t` split where its number (digits and a point) ends: (`16`, `KiB`) for `16KiB`.
fn number_and_unit(t: &str) -> (&str, &str) {
    t.split_at(
        t.find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(t.len()),
    )
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
