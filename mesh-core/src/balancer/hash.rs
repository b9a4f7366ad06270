//! Stable hashing for the consistent-hash balancers: XXH64 (Envoy's default ring hash function;
//! gRPC's ring_hash uses XXH64 with seed 0 too). An endpoint's hash key is its id in decimal
//! where Envoy uses the host's address, so a key's owner is stable across runs and machines.

use std::io::Write as _;

use xxhash_rust::xxh64::xxh64;

use crate::endpoint::EndpointId;

/// XXH64 of `bytes` with `seed`.
#[inline]
pub(crate) fn hash(bytes: &[u8], seed: u64) -> u64 {
    xxh64(bytes, seed)
}

/// Hash of the ring point `"{id}_{i}"` (Envoy's `"{address}_{i}"`).
pub(crate) fn point(ep: EndpointId, i: u64) -> u64 {
    let mut buf = [0u8; 48];
    let mut w = &mut buf[..];
    write!(w, "{}_{}", ep.0, i).expect("48 bytes hold two u64s");
    let len = 48 - w.len();
    hash(&buf[..len], 0)
}

/// Hash of the endpoint key `"{id}"` with `seed` (Maglev's offset and skip).
pub(crate) fn key(ep: EndpointId, seed: u64) -> u64 {
    let mut buf = [0u8; 24];
    let mut w = &mut buf[..];
    write!(w, "{}", ep.0).expect("24 bytes hold a u32");
    let len = 24 - w.len();
    hash(&buf[..len], seed)
}

#[cfg(test)]
mod tests {
    #[test]
    fn xxh64_golden_values() {
        // Published XXH64 test vectors: empty input, seed 0 and seed 1.
        assert_eq!(super::hash(b"", 0), 0xEF46_DB37_51D8_E999);
        assert_eq!(super::hash(b"", 1), 0xD5AF_BA13_36A3_BE4B);
    }
}
