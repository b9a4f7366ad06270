//! A cancellable timer queue: an indexed binary min-heap ordered by `(deadline, sequence)`.
//!
//! Policies never spawn timers; they insert deadlines here and the owner pulls the earliest with
//! [`TimerQueue::peek`] (the `poll_timeout` of the sans-IO contract). Timers at equal deadlines
//! fire in insertion order, so a run is a pure function of its inputs. Cancelling removes the
//! entry at once (O(log n)), so the queue holds only live timers and `peek` is never stale: a
//! request that finishes early does not leave its 15 s deadline behind as a spurious wake-up.

use crate::time::Instant;

/// A handle to one inserted timer; valid until it fires or is cancelled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct TimerId {
    slot: u32,
    generation: u32,
}

#[derive(Clone, Debug)]
struct Slot<K> {
    at: Instant,
    seq: u64,
    kind: Option<K>,
    generation: u32,
    /// Position in `heap`, when live.
    pos: u32,
}

/// The queue. `K` says what a timer is for; it comes back from [`TimerQueue::pop_due`].
#[derive(Clone, Debug)]
pub(crate) struct TimerQueue<K> {
    slots: Vec<Slot<K>>,
    free: Vec<u32>,
    heap: Vec<u32>,
    seq: u64,
}

impl<K> Default for TimerQueue<K> {
    fn default() -> Self {
        TimerQueue {
            slots: Vec::new(),
            free: Vec::new(),
            heap: Vec::new(),
            seq: 0,
        }
    }
}

impl<K: Copy> TimerQueue<K> {
    /// Arms a timer for `at`.
    pub(crate) fn insert(&mut self, at: Instant, kind: K) -> TimerId {
        self.seq += 1;
        let slot = match self.free.pop() {
            Some(s) => s,
            None => {
                self.slots.push(Slot {
                    at,
                    seq: 0,
                    kind: None,
                    generation: 0,
                    pos: 0,
                });
                (self.slots.len() - 1) as u32
            }
        };
        let pos = self.heap.len() as u32;
        let s = &mut self.slots[slot as usize];
        s.at = at;
        s.seq = self.seq;
        s.kind = Some(kind);
        s.pos = pos;
        let id = TimerId {
            slot,
            generation: s.generation,
        };
        self.heap.push(slot);
        self.sift_up(pos as usize);
        id
    }

    /// Disarms a timer. A handle that already fired or was cancelled is ignored.
    pub(crate) fn cancel(&mut self, id: TimerId) {
        let Some(s) = self.slots.get(id.slot as usize) else {
            return;
        };
        if s.generation != id.generation || s.kind.is_none() {
            return;
        }
        let pos = s.pos as usize;
        self.remove_at(pos);
    }

    /// The earliest deadline, if any timer is armed.
    #[inline]
    pub(crate) fn peek(&self) -> Option<Instant> {
        self.heap.first().map(|&s| self.slots[s as usize].at)
    }

    /// Removes and returns the earliest timer due at or before `now`.
    pub(crate) fn pop_due(&mut self, now: Instant) -> Option<(Instant, K)> {
        let &top = self.heap.first()?;
        let at = self.slots[top as usize].at;
        if at > now {
            return None;
        }
        let kind = self.remove_at(0);
        Some((at, kind))
    }

    /// Number of armed timers.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.heap.len()
    }

    fn remove_at(&mut self, pos: usize) -> K {
        let slot = self.heap[pos];
        let last = self.heap.len() - 1;
        self.heap.swap(pos, last);
        self.heap.pop();
        if pos < self.heap.len() {
            let moved = self.heap[pos];
            self.slots[moved as usize].pos = pos as u32;
            self.sift_down(pos);
            self.sift_up(pos);
        }
        let s = &mut self.slots[slot as usize];
        s.generation = s.generation.wrapping_add(1);
        self.free.push(slot);
        s.kind.take().expect("a live timer has a kind")
    }

    #[inline]
    fn key(&self, heap_pos: usize) -> (Instant, u64) {
        let s = &self.slots[self.heap[heap_pos] as usize];
        (s.at, s.seq)
    }

    fn set(&mut self, pos: usize, slot: u32) {
        self.heap[pos] = slot;
        self.slots[slot as usize].pos = pos as u32;
    }

    fn sift_up(&mut self, mut pos: usize) {
        let slot = self.heap[pos];
        let key = self.key(pos);
        while pos > 0 {
            let parent = (pos - 1) / 2;
            if self.key(parent) <= key {
                break;
            }
            let p = self.heap[parent];
            self.set(pos, p);
            pos = parent;
        }
        self.set(pos, slot);
    }

    fn sift_down(&mut self, mut pos: usize) {
        let n = self.heap.len();
        let slot = self.heap[pos];
        let key = self.key(pos);
        loop {
            let l = 2 * pos + 1;
            if l >= n {
                break;
            }
            let r = l + 1;
            let c = if r < n && self.key(r) < self.key(l) {
                r
            } else {
                l
            };
            if key <= self.key(c) {
                break;
            }
            let cs = self.heap[c];
            self.set(pos, cs);
            pos = c;
        }
        self.set(pos, slot);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(n: u64) -> Instant {
        Instant::from_nanos(n)
    }

    #[test]
    fn fires_in_deadline_then_insertion_order_and_cancels() {
        let mut q = TimerQueue::default();
        let a = q.insert(t(30), 'a');
        q.insert(t(10), 'b');
        q.insert(t(30), 'c');
        let d = q.insert(t(5), 'd');
        q.insert(t(20), 'e');
        q.cancel(d);
        q.cancel(d); // twice: ignored
        assert_eq!(q.peek(), Some(t(10)));
        assert_eq!(q.pop_due(t(9)), None);
        let mut got = Vec::new();
        while let Some((_, k)) = q.pop_due(t(100)) {
            got.push(k);
        }
        assert_eq!(got, ['b', 'e', 'a', 'c']);
        q.cancel(a); // already fired: ignored, does not disturb a reused slot
        let f = q.insert(t(1), 'f');
        q.cancel(a);
        assert_eq!(q.len(), 1);
        q.cancel(f);
        assert_eq!(q.peek(), None);
    }

    #[test]
    fn random_inserts_and_cancels_pop_sorted() {
        use rand::Rng as _;
        let mut rng = crate::Seed::new(7).rng();
        let mut q = TimerQueue::default();
        let mut live = Vec::new();
        for i in 0..2000u32 {
            let at = t(u64::from(rng.next_u32() % 1000));
            live.push((q.insert(at, i), at, i));
            if rng.next_u32() % 3 == 0 {
                let k = (rng.next_u32() as usize) % live.len();
                let (id, _, _) = live.swap_remove(k);
                q.cancel(id);
            }
        }
        live.sort_by_key(|&(_, at, i)| (at, i));
        let mut got = Vec::new();
        while let Some((at, k)) = q.pop_due(Instant::MAX) {
            got.push((at, k));
        }
        let want: Vec<_> = live.iter().map(|&(_, at, i)| (at, i)).collect();
        assert_eq!(got, want);
    }
}
