//! Earliest-deadline-first scheduler, after Envoy's `EdfScheduler`
//! (`source/common/upstream/edf_scheduler.h`).
//!
//! Each entry has a deadline; a pick takes the entry with the smallest deadline, advances the
//! scheduler's clock to it, and re-adds the entry at `clock + 1/weight`, with the weight computed
//! at re-add time (Envoy's `pickAndAdd`), which is how least request's `w/(active+1)` and slow
//! start's ramp take effect. Equal deadlines pick in insertion order (Envoy's `order_offset_`).
//! Over a long run an entry of weight `w` gets `w / Σw` of the picks.

use crate::seed::{Rng, below};

#[derive(Clone, Copy, Debug)]
struct Entry {
    /// Deadline bits in the high half, insertion order in the low half: deadlines are positive
    /// finite floats, whose IEEE bit patterns order like the numbers, so one integer comparison
    /// orders by deadline and then by insertion (FIFO ties).
    key: u128,
    slot: u32,
}

impl Entry {
    fn new(deadline: f64, seq: u64, slot: u32) -> Self {
        debug_assert!(deadline >= 0.0 && deadline.is_finite());
        Entry {
            key: (u128::from(deadline.to_bits()) << 64) | u128::from(seq),
            slot,
        }
    }

    fn deadline(&self) -> f64 {
        f64::from_bits((self.key >> 64) as u64)
    }
}

/// A min-heap of `(deadline, insertion order)` over slots `0..n`.
#[derive(Clone, Debug, Default)]
pub(crate) struct Edf {
    heap: Vec<Entry>,
    clock: f64,
    seq: u64,
}

impl Edf {
    /// A scheduler over `weights` (all > 0), advanced by a random number of picks in `0..n` so
    /// that many proxies built from the same host set do not start on the same host (Envoy's
    /// `createWithPicks`, 2024).
    pub(crate) fn new(weights: &[f64], rng: &mut Rng) -> Self {
        let mut edf = Edf::default();
        for (slot, &w) in weights.iter().enumerate() {
            edf.push(slot as u32, w);
        }
        let n = weights.len() as u32;
        if n > 1 {
            // The start state uses the static weights, as Envoy's randomized start does.
            for _ in 0..below(rng, n) {
                edf.pick_and_add(|s| weights[s as usize]);
            }
        }
        edf
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }

    fn push(&mut self, slot: u32, weight: f64) {
        let e = Entry::new(self.clock + 1.0 / weight, self.seq, slot);
        self.seq += 1;
        self.heap.push(e);
        let mut i = self.heap.len() - 1;
        while i > 0 {
            let parent = (i - 1) / 2;
            if self.heap[i].key < self.heap[parent].key {
                self.heap.swap(i, parent);
                i = parent;
            } else {
                break;
            }
        }
    }

    /// Picks the earliest entry and re-adds it with `weight(slot)` (must be > 0 and finite).
    #[inline]
    pub(crate) fn pick_and_add(&mut self, weight: impl FnOnce(u32) -> f64) -> Option<u32> {
        let top = *self.heap.first()?;
        self.clock = top.deadline();
        let w = weight(top.slot);
        debug_assert!(
            w > 0.0 && w.is_finite(),
            "EDF weight must be positive, got {w}"
        );
        self.heap[0] = Entry::new(self.clock + 1.0 / w, self.seq, top.slot);
        self.seq += 1;
        self.sift_down();
        Some(top.slot)
    }

    /// Restores the heap after the root grew: the hole walks down to a leaf along the smaller
    /// children (one comparison per level), then the entry climbs back up, usually not far
    /// because a re-added entry's new deadline is late (the `BinaryHeap::pop` strategy).
    #[inline]
    fn sift_down(&mut self) {
        let n = self.heap.len();
        let moving = self.heap[0];
        let mut hole = 0;
        let mut child = 1;
        while child + 1 < n {
            child += usize::from(self.heap[child + 1].key < self.heap[child].key);
            self.heap[hole] = self.heap[child];
            hole = child;
            child = 2 * hole + 1;
        }
        if child < n {
            self.heap[hole] = self.heap[child];
            hole = child;
        }
        while hole > 0 {
            let parent = (hole - 1) / 2;
            if moving.key < self.heap[parent].key {
                self.heap[hole] = self.heap[parent];
                hole = parent;
            } else {
                break;
            }
        }
        self.heap[hole] = moving;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::seed::Seed;

    #[test]
    fn shares_follow_weights_exactly_over_a_cycle() {
        let weights = [1.0, 2.0, 3.0, 4.0];
        let mut edf = Edf::new(&weights, &mut Seed::new(3).rng());
        let mut counts = [0u32; 4];
        for _ in 0..10_000 {
            let s = edf.pick_and_add(|s| weights[s as usize]).unwrap();
            counts[s as usize] += 1;
        }
        for (c, w) in counts.iter().zip(weights) {
            let want = 1000.0 * w;
            assert!((f64::from(*c) - want).abs() <= 2.0, "{counts:?}");
        }
    }

    #[test]
    fn equal_deadlines_pick_in_insertion_order() {
        let mut edf = Edf::default();
        for s in 0..4 {
            edf.push(s, 1.0);
        }
        let order: Vec<u32> = (0..8).map(|_| edf.pick_and_add(|_| 1.0).unwrap()).collect();
        assert_eq!(order, [0, 1, 2, 3, 0, 1, 2, 3]);
    }

    #[test]
    fn randomized_start_differs_across_seeds() {
        let firsts: std::collections::BTreeSet<u32> = (0..64)
            .map(|s| {
                let mut edf = Edf::new(&[1.0; 8], &mut Seed::new(s).rng());
                edf.pick_and_add(|_| 1.0).unwrap()
            })
            .collect();
        assert!(firsts.len() >= 6, "starts {firsts:?}");
    }
}
