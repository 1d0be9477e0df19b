//! The retransmission cache of a sender or relay (proto-spec.md §7.1, §7.3): recent datagrams
//! of one flow by extended sequence number, bounded by count and by age.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::proto::wire::SeqNo;

/// What [`RtxCache::insert`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inserted {
    /// Stored.
    New,
    /// That sequence number is already cached.
    Duplicate,
    /// Older than everything the cache can hold.
    TooOld,
}

#[derive(Debug, Clone)]
struct Entry {
    datagram: Bytes,
    at: Instant,
}

/// A window of datagrams indexed by sequence number.
///
/// Holds at most `capacity` consecutive sequence numbers (gaps included) and evicts entries
/// older than `max_age` on every insert, so memory is bounded by `capacity` datagrams.
#[derive(Debug, Clone)]
pub struct RtxCache {
    base: Option<SeqNo>,
    slots: VecDeque<Option<Entry>>,
    capacity: usize,
    max_age: Duration,
    stored: usize,
}

impl RtxCache {
    /// A cache for at most `capacity` datagrams, none older than `max_age`.
    pub fn new(capacity: usize, max_age: Duration) -> RtxCache {
        RtxCache {
            base: None,
            slots: VecDeque::new(),
            capacity: capacity.max(1),
            max_age,
            stored: 0,
        }
    }

    /// Stores `datagram` under `seq`, evicting what falls out of the window.
    pub fn insert(&mut self, now: Instant, seq: SeqNo, datagram: Bytes) -> Inserted {
        let base = *self.base.get_or_insert(seq);
        if seq < base {
            return Inserted::TooOld;
        }
        let mut idx = (seq.0 - base.0) as usize;
        if idx >= self.capacity {
            // Slide the window so that `seq` is its last slot.
            let shift = idx + 1 - self.capacity;
            self.pop_front(shift);
            idx = self.capacity - 1;
        }
        while self.slots.len() <= idx {
            self.slots.push_back(None);
        }
        let slot = &mut self.slots[idx];
        if slot.is_some() {
            return Inserted::Duplicate;
        }
        *slot = Some(Entry { datagram, at: now });
        self.stored += 1;
        self.evict_aged(now);
        Inserted::New
    }

    /// Drops the first `n` slots (sequence numbers), in time bounded by the slots held: a
    /// jump of 2^31 sequence numbers costs no more than clearing the window.
    fn pop_front(&mut self, n: usize) {
        if n >= self.slots.len() {
            self.slots.clear();
            self.stored = 0;
        } else {
            for _ in 0..n {
                if let Some(Some(_)) = self.slots.pop_front() {
                    self.stored -= 1;
                }
            }
        }
        if let Some(b) = self.base.as_mut() {
            *b = b.plus(n as u64);
        }
    }

    fn evict_aged(&mut self, now: Instant) {
        let mut n = 0;
        for slot in &self.slots {
            match slot {
                Some(e) if now.saturating_duration_since(e.at) <= self.max_age => break,
                _ => n += 1,
            }
        }
        if n > 0 {
            self.pop_front(n);
        }
    }

    /// The datagram cached under `seq`, if it is present and not older than the age bound.
    pub fn get(&self, now: Instant, seq: SeqNo) -> Option<&Bytes> {
        let base = self.base?;
        if seq < base {
            return None;
        }
        let e = self.slots.get((seq.0 - base.0) as usize)?.as_ref()?;
        (now.saturating_duration_since(e.at) <= self.max_age).then_some(&e.datagram)
    }

    /// Whether `seq` is cached (regardless of age).
    pub fn contains(&self, seq: SeqNo) -> bool {
        match self.base {
            Some(base) if seq >= base => {
                matches!(self.slots.get((seq.0 - base.0) as usize), Some(Some(_)))
            }
            _ => false,
        }
    }

    /// Number of datagrams held.
    pub fn len(&self) -> usize {
        self.stored
    }

    /// True when nothing is held.
    pub fn is_empty(&self) -> bool {
        self.stored == 0
    }

    /// Bytes held (the datagrams' lengths; a datagram split off its frame's buffer keeps that
    /// buffer alive until the frame's last datagram leaves, about one JPEG more per stream).
    pub fn bytes(&self) -> usize {
        self.slots.iter().flatten().map(|e| e.datagram.len()).sum()
    }

    /// Forgets everything (a new source).
    pub fn clear(&mut self) {
        self.base = None;
        self.slots.clear();
        self.stored = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(x: u8) -> Bytes {
        Bytes::from(vec![x])
    }

    #[test]
    fn bounded_by_count_and_age() {
        let t0 = Instant::now();
        let mut c = RtxCache::new(4, Duration::from_secs(1));
        for i in 0..6u64 {
            assert_eq!(c.insert(t0, SeqNo(100 + i), b(i as u8)), Inserted::New);
        }
        assert_eq!(c.len(), 4);
        assert!(c.get(t0, SeqNo(101)).is_none());
        assert_eq!(c.get(t0, SeqNo(105)), Some(&b(5)));
        assert_eq!(c.insert(t0, SeqNo(105), b(9)), Inserted::Duplicate);
        assert_eq!(c.insert(t0, SeqNo(50), b(9)), Inserted::TooOld);
        // Ageing: everything older than a second is gone after the next insert.
        let t1 = t0 + Duration::from_millis(1500);
        assert!(c.get(t1, SeqNo(105)).is_none());
        c.insert(t1, SeqNo(106), b(6));
        assert_eq!(c.len(), 1);
    }

    #[test]
    fn a_huge_jump_costs_no_more_than_the_window() {
        let t0 = Instant::now();
        let mut c = RtxCache::new(8, Duration::from_secs(1));
        c.insert(t0, SeqNo(1), b(1));
        let start = std::time::Instant::now();
        c.insert(t0, SeqNo(1 << 31), b(2));
        c.insert(t0, SeqNo(1 << 40), b(3));
        assert!(start.elapsed() < Duration::from_millis(50));
        assert_eq!(c.len(), 1);
        assert!(c.contains(SeqNo(1 << 40)));
    }

    #[test]
    fn fills_holes_out_of_order() {
        let t0 = Instant::now();
        let mut c = RtxCache::new(100, Duration::from_secs(1));
        c.insert(t0, SeqNo(10), b(0));
        c.insert(t0, SeqNo(13), b(3));
        assert!(!c.contains(SeqNo(11)));
        c.insert(t0, SeqNo(11), b(1));
        assert!(c.contains(SeqNo(11)) && c.contains(SeqNo(13)) && !c.contains(SeqNo(12)));
        assert_eq!(c.len(), 3);
        // A huge jump (a long outage) slides the window without growing it.
        c.insert(t0, SeqNo(1_000_000), b(7));
        assert_eq!(c.len(), 1);
        assert!(c.slots.len() <= 100);
    }
}
