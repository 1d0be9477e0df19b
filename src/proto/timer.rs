//! A node's named timers in one table (the pattern of quinn-proto's `connection/timer.rs`).
//!
//! Each node names its timers with a small enum (`ViewerTimer`, `PublisherTimer`, ...) and
//! keeps their deadlines in one [`TimerTable`] instead of loose `Option<Instant>` fields:
//! `poll_timeout` is then [`TimerTable::next_timeout`], and `handle_timeout` asks which
//! timers have expired. The table reads no clock: every instant comes from the caller.

use std::time::Instant;

/// Deadlines of a node's timers, at most one per timer `T`.
///
/// `T` is a small `Copy` enum naming the timers. The table holds a handful of entries, so
/// a vector searched linearly beats any map; iteration order is the order timers were first
/// set, which keeps [`TimerTable::next_expired`] deterministic when deadlines tie.
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
    /// An empty table: no timer is armed.
    pub fn new() -> Self {
        Self::default()
    }

    /// Arms `timer` to expire at `at`, replacing its previous deadline if any.
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

    /// Disarms `timer` (harmless if it was not armed).
    pub fn stop(&mut self, timer: T) {
        self.entries.retain(|(t, _)| *t != timer);
    }

    /// The deadline of `timer`, if armed.
    pub fn get(&self, timer: T) -> Option<Instant> {
        self.entries
            .iter()
            .find(|(t, _)| *t == timer)
            .map(|&(_, at)| at)
    }

    /// Whether `timer` is armed and its deadline is at or before `now`.
    pub fn is_expired(&self, timer: T, now: Instant) -> bool {
        self.get(timer).is_some_and(|at| at <= now)
    }

    /// The soonest deadline of any armed timer (what a node's `poll_timeout` reports).
    pub fn next_timeout(&self) -> Option<Instant> {
        self.entries.iter().map(|&(_, at)| at).min()
    }

    /// Disarms and returns the expired timer with the earliest deadline (ties: the one set
    /// first), or `None` if no timer has expired at `now`. Call in a loop from
    /// `handle_timeout` to run every due timer once.
    pub fn next_expired(&mut self, now: Instant) -> Option<T> {
        let (i, _) = self
            .entries
            .iter()
            .enumerate()
            .filter(|(_, (_, at))| *at <= now)
            .min_by_key(|(i, (_, at))| (*at, *i))?;
        Some(self.entries.remove(i).0)
    }

    /// Disarms every timer.
    pub fn clear(&mut self) {
        self.entries.clear();
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
        C,
    }

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn set_get_stop() {
        let t0 = Instant::now();
        let mut tt = TimerTable::new();
        assert_eq!(tt.get(T::A), None);
        assert_eq!(tt.next_timeout(), None);
        tt.set(T::A, t0 + 5 * MS);
        assert_eq!(tt.get(T::A), Some(t0 + 5 * MS));
        assert_eq!(tt.get(T::B), None);
        // Setting again replaces the deadline, it does not add a second one.
        tt.set(T::A, t0 + 7 * MS);
        assert_eq!(tt.get(T::A), Some(t0 + 7 * MS));
        assert_eq!(tt.next_timeout(), Some(t0 + 7 * MS));
        tt.stop(T::A);
        assert_eq!(tt.get(T::A), None);
        assert_eq!(tt.next_timeout(), None);
        // Stopping a timer that is not armed is harmless.
        tt.stop(T::C);
        assert_eq!(tt.next_timeout(), None);
    }

    #[test]
    fn next_timeout_is_the_soonest() {
        let t0 = Instant::now();
        let mut tt = TimerTable::new();
        tt.set(T::A, t0 + 30 * MS);
        tt.set(T::B, t0 + 10 * MS);
        tt.set(T::C, t0 + 20 * MS);
        assert_eq!(tt.next_timeout(), Some(t0 + 10 * MS));
        tt.stop(T::B);
        assert_eq!(tt.next_timeout(), Some(t0 + 20 * MS));
        tt.set(T::A, t0 + 5 * MS);
        assert_eq!(tt.next_timeout(), Some(t0 + 5 * MS));
        tt.clear();
        assert_eq!(tt.next_timeout(), None);
    }

    #[test]
    fn expiry_in_deadline_order() {
        let t0 = Instant::now();
        let mut tt = TimerTable::new();
        tt.set(T::A, t0 + 30 * MS);
        tt.set(T::B, t0 + 10 * MS);
        tt.set(T::C, t0 + 10 * MS);
        assert!(!tt.is_expired(T::B, t0 + 9 * MS));
        assert!(tt.is_expired(T::B, t0 + 10 * MS));
        assert!(!tt.is_expired(T::A, t0 + 10 * MS));
        assert_eq!(tt.next_expired(t0 + 9 * MS), None);
        // B and C tie: B was set first. A is not due yet.
        assert_eq!(tt.next_expired(t0 + 20 * MS), Some(T::B));
        assert_eq!(tt.next_expired(t0 + 20 * MS), Some(T::C));
        assert_eq!(tt.next_expired(t0 + 20 * MS), None);
        assert_eq!(tt.get(T::B), None, "an expired timer is disarmed");
        assert_eq!(tt.next_timeout(), Some(t0 + 30 * MS));
        assert_eq!(tt.next_expired(t0 + 30 * MS), Some(T::A));
        assert_eq!(tt.next_timeout(), None);
    }
}
