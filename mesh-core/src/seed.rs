//! Seeded, label-forked randomness.
//!
//! A run has one [`Seed`]. Every component derives its own stream from it by label
//! (`seed.fork("client").fork_index(3).fork("balancer")`), so adding a component never shifts
//! another's draws, and forks are order-independent: a fork is a pure function of its parent
//! seed and its label, whatever else was forked before.
//!
//! # Algorithm (stable; results depend on it)
//!
//! * `fork(label)`: `mix(parent ^ mix(fnv1a64(label)))`, where `fnv1a64` is 64-bit FNV-1a over
//!   the label's UTF-8 bytes and `mix` is the SplitMix64 finalizer (Steele, Lea, Flood 2014).
//! * `fork_index(i)`: `mix(parent ^ mix(i ^ 0x9E37_79B9_7F4A_7C15))`, a separate domain from labels.
//! * `rng()`: a [`ChaCha8Rng`] (rand 0.10, whose output stream for a given key is documented as
//!   value-stable) keyed by four successive outputs of SplitMix64 started at the seed, written
//!   little-endian into the 32-byte key.
//!
//! A golden-value test pins all three, so an upgrade that changes any stream fails CI.

use rand::SeedableRng;
pub use rand::rngs::ChaCha8Rng;

/// The PRNG every mesh-core component owns: ChaCha with 8 rounds.
pub type Rng = ChaCha8Rng;

/// A 64-bit seed that forks into independent, labelled streams.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct Seed(u64);

const GOLDEN_GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

/// The SplitMix64 output function (Steele, Lea and Flood, "Fast splittable pseudorandom number
/// generators", OOPSLA 2014): a stable 64-bit bijection with full avalanche, used to derive seeds
/// and, in the drivers, common random numbers from (seed, request, attempt, lane).
pub const fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

const fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xCBF2_9CE4_8422_2325;
    let mut i = 0;
    while i < bytes.len() {
        h ^= bytes[i] as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01B3);
        i += 1;
    }
    h
}

impl Seed {
    /// The seed with this value.
    pub const fn new(value: u64) -> Self {
        Seed(value)
    }

    /// The raw value.
    pub const fn value(self) -> u64 {
        self.0
    }

    /// The child seed for `label`.
    pub const fn fork(self, label: &str) -> Seed {
        Seed(mix(self.0 ^ mix(fnv1a64(label.as_bytes()))))
    }

    /// The child seed for index `i` (client 3, replication 7, ...).
    pub const fn fork_index(self, i: u64) -> Seed {
        Seed(mix(self.0 ^ mix(i ^ GOLDEN_GAMMA)))
    }

    /// A fresh generator for this seed's stream.
    pub fn rng(self) -> Rng {
        let mut key = [0u8; 32];
        let mut state = self.0;
        for chunk in key.chunks_exact_mut(8) {
            state = state.wrapping_add(GOLDEN_GAMMA);
            chunk.copy_from_slice(&mix(state).to_le_bytes());
        }
        ChaCha8Rng::from_seed(key)
    }
}

/// Uniform index in `0..n` (`n > 0`) by Lemire's multiply-shift with rejection: unbiased and
/// division-free on the fast path.
#[inline]
pub(crate) fn below(rng: &mut Rng, n: u32) -> u32 {
    use rand::Rng as _;
    debug_assert!(n > 0);
    let n64 = u64::from(n);
    let mut m = u64::from(rng.next_u32()) * n64;
    if (m as u32) < n {
        let threshold = n.wrapping_neg() % n;
        while (m as u32) < threshold {
            m = u64::from(rng.next_u32()) * n64;
        }
    }
    (m >> 32) as u32
}

/// A full-width random `u64` (Envoy's `random()`).
#[inline]
pub(crate) fn next_u64(rng: &mut Rng) -> u64 {
    use rand::Rng as _;
    rng.next_u64()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mix_is_splitmix64() {
        // The first output of SplitMix64 seeded with 0 (Vigna's reference implementation).
        assert_eq!(mix(GOLDEN_GAMMA), 0xE220_A839_7B1D_CDAF);
    }

    #[test]
    fn below_is_in_range_and_roughly_uniform() {
        let mut rng = Seed::new(1).rng();
        let mut counts = [0u32; 7];
        for _ in 0..70_000 {
            counts[below(&mut rng, 7) as usize] += 1;
        }
        for c in counts {
            assert!((9_500..10_500).contains(&c), "{counts:?}");
        }
    }
}
