//! Critical paths across in-process tiers: where a traced request's end-to-end time went, as
//! the simulator measures it (see `meshbench_report::CriticalPath`).
//!
//! A caller marks the request ids it traces as wanted (a client its traced requests, a traced
//! attempt's script its calls); the instance that serves a wanted id with success leaves its
//! critical path here, (station, ns of own work) for every instance on it; the caller takes it
//! once the call has ended. Ids nobody wants are never kept, so a call left running past its
//! group's `wait` leaves nothing behind.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A critical path: (station index, ns of that instance's own work), callees first.
pub type Parts = Vec<(u32, u64)>;

/// The traced calls under way, by request id, with the path their successful answer left.
/// Looked up by id only, never iterated.
#[derive(Debug, Default)]
pub struct CriticalBook {
    wanted: Mutex<HashMap<u64, Option<Parts>>>,
    /// How many ids are wanted: 0 spares every untraced request the lock.
    count: AtomicUsize,
}

impl CriticalBook {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Option<Parts>>> {
        self.wanted
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Marks `id` as traced: its successful answer's path is kept until [`CriticalBook::take`].
    pub fn want(&self, id: u64) {
        if self.map().insert(id, None).is_none() {
            self.count.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Whether `id` is traced.
    pub fn wanted(&self, id: u64) -> bool {
        self.count.load(Ordering::Relaxed) > 0 && self.map().contains_key(&id)
    }

    /// The path of a successful answer to `id`, kept if `id` is still wanted (a later
    /// successful attempt replaces an earlier one's).
    pub fn answer(&self, id: u64, parts: Parts) {
        if let Some(slot) = self.map().get_mut(&id) {
            *slot = Some(parts);
        }
    }

    /// Ends `id`'s tracing, with the path its successful answer left, if one did.
    pub fn take(&self, id: u64) -> Option<Parts> {
        let taken = self.map().remove(&id);
        if taken.is_some() {
            self.count.fetch_sub(1, Ordering::Relaxed);
        }
        taken.flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_wanted_ids_keep_their_path_until_taken() {
        let b = CriticalBook::default();
        b.answer(1, vec![(0, 5)]);
        assert!(!b.wanted(1));
        assert_eq!(b.take(1), None);
        b.want(2);
        assert!(b.wanted(2));
        b.answer(2, vec![(1, 7)]);
        b.answer(2, vec![(1, 9)]);
        assert_eq!(b.take(2), Some(vec![(1, 9)]));
        assert!(!b.wanted(2));
        assert_eq!(b.take(2), None);
        b.answer(2, vec![(1, 3)]);
        assert_eq!(b.take(2), None);
    }
}
