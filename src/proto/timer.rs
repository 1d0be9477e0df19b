//! A node's named timers in one table (the pattern of quinn-proto's `connection/timer.rs`):
//! each node lists its timers in an enum and keeps their deadlines here instead of in loose
//! `Option<Instant>` fields, so that `poll_timeout` is one lookup and `handle_timeout` runs
//! exactly the timers that expired.

use std::time::Instant;

/// Deadlines keyed by a node's timer enum `T`. At most one deadline per timer.
#[derive(Debug, Clone)]
pub struct TimerTable<T> {
    entries: Vec<(T, Instant)>,
}

impl<T> Default for TimerTable<T> {
    fn default() -> Self {
        TimerTable {
            entries: Vec::new(),
        }
    }
}

impl<T: Copy + Eq> TimerTable<T> {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Arms `timer` to expire at `at`, replacing any earlier deadline it had.
    pub fn set(&mut self, timer: T, at: Instant) {
        match self.entries.iter_mut().find(|(t, _)| *t == timer) {
            Some(e) => e.1 = at,
            None => self.entries.push((timer, at)),
        }
    }

    /// Arms `timer` at `at`, or disarms it when `at` is `None`.
    pub fn set_or_stop(&mut self, timer: T, at: Option<Instant>) {
        match at {
            Some(at) => self.set(timer, at),
            None => self.stop(timer),
        }
    }

    /// Disarms `timer`.
    pub fn stop(&mut self, timer: T) {
        self.entries.retain(|(t, _)| *t != timer);
    }

    /// The deadline of `timer`, if armed.
    pub fn get(&self, timer: T) -> Option<Instant> {
        self.entries
            .iter()
            .find(|(t, _)| *t == timer)
            .map(|(_, at)| *at)
    }

    /// Whether `timer` is armed and due at `now`.
    pub fn is_expired(&self, timer: T, now: Instant) -> bool {
        self.get(timer).is_some_and(|at| at <= now)
    }

    /// The soonest deadline of all armed timers.
    pub fn next_timeout(&self) -> Option<Instant> {
        self.entries.iter().map(|(_, at)| *at).min()
    }

    /// Disarms and returns the earliest timer due at `now`, if any: call until `None`.
    pub fn pop_expired(&mut self, now: Instant) -> Option<T> {
        let (i, _) = self
            .entries
            .iter()
            .enumerate()
            .filter(|(_, (_, at))| *at <= now)
            .min_by_key(|(_, (_, at))| *at)?;
        Some(self.entries.swap_remove(i).0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum T {
        A,
        B,
    }

    #[test]
    fn earliest_expires_first_and_rearming_replaces() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut t = TimerTable::new();
        assert_eq!(t.next_timeout(), None);
        t.set(T::A, t0 + ms(10));
        t.set(T::B, t0 + ms(5));
        assert_eq!(t.next_timeout(), Some(t0 + ms(5)));
        t.set(T::B, t0 + ms(20));
        assert_eq!(t.next_timeout(), Some(t0 + ms(10)));
        assert_eq!(t.pop_expired(t0 + ms(9)), None);
        assert!(t.is_expired(T::A, t0 + ms(10)));
        assert_eq!(t.pop_expired(t0 + ms(30)), Some(T::A));
        assert_eq!(t.pop_expired(t0 + ms(30)), Some(T::B));
        assert_eq!(t.pop_expired(t0 + ms(30)), None);
        t.set_or_stop(T::A, Some(t0));
        t.set_or_stop(T::A, None);
        assert_eq!(t.get(T::A), None);
    }
}
