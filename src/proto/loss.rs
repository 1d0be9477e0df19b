//! Loss detection and NACK scheduling for one flow (proto-spec.md §7.2).
//!
//! Invariant: every sequence number in `[floor, highest]` is either received or listed in
//! `missing`. So a duplicate is simply a number in that range that is not missing, and no
//! per-packet "received" set is needed.
//!
//! Asking is bounded by the deadline, not by a count: a missing number is asked for again
//! every retry interval for as long as an answer can still arrive before its deadline
//! (`deadline − now ≥ SRTT + deadline_margin`), with one last-chance request timed at that
//! limit when the regular interval would overshoot it. `max_retries` is only a safety cap;
//! numbers without a deadline stop after `max_retries_no_deadline`. Gaps wait for the reorder
//! hold, which [`ReorderEstimator`] can widen to the reordering actually measured.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::proto::reorder::{ReorderConfig, ReorderEstimator};
use crate::proto::rtt::RttEstimator;
use crate::proto::wire::{NackRange, SeqNo};

/// Sequence numbers the first loss measurement must cover (about two 65 kB frames).
pub const FIRST_ESTIMATE_SPAN: u64 = 96;
/// How strongly one interval's loss figure moves [`LossTracker::loss_rate`].
pub const LOSS_RATE_GAIN: f64 = 0.3;

/// What an arriving sequence number was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    /// In order, or ahead (opening a gap).
    New,
    /// It was missing and is now filled; `requested` if a NACK asked for it.
    Filled {
        /// Whether it had been asked for.
        requested: bool,
    },
    /// Already received.
    Duplicate,
}

#[derive(Debug, Clone, Copy)]
struct Missing {
    /// When its gap opened (it was first known missing).
    opened: Instant,
    /// When it was first asked for.
    first_asked: Option<Instant>,
    /// When it may be asked for (next).
    next_at: Instant,
    retries: u8,
    deadline: Option<Instant>,
    gave_up: bool,
}

/// Tunables of the NACK logic.
#[derive(Debug, Clone, Copy)]
pub struct LossConfig {
    /// Safety cap on NACKs per sequence number; the deadline is what normally ends asking.
    pub max_retries: u8,
    /// Most NACKs of a number that has no deadline (nothing else would end them).
    pub max_retries_no_deadline: u8,
    /// Floor of the interval between two NACKs of the same number.
    pub min_retry_interval: Duration,
    /// Most sequence numbers tracked as missing (older ones are given up).
    pub max_missing: usize,
    /// Asking stops once `deadline − now < SRTT + deadline_margin`: the answer, a round trip
    /// away, could no longer arrive in time.
    pub deadline_margin: Duration,
    /// Whether gaps wait at least the learned reorder hold ([`ReorderEstimator`]) on top of
    /// the hold the caller passes. The estimator learns either way.
    pub adaptive_hold: bool,
    /// Tunables of the learned reorder hold.
    pub reorder: ReorderConfig,
}

impl Default for LossConfig {
    fn default() -> Self {
        LossConfig {
            // A cap, not the limit: at 1 ms RTT and a 300 ms latency budget the deadline
            // allows about 60 requests; the deadline check ends them in time.
            max_retries: 64,
            // Ten tries at one RTO each (the relay, which has no deadline, §7.3).
            max_retries_no_deadline: 10,
            min_retry_interval: Duration::from_millis(5),
            max_missing: 8192,
            deadline_margin: Duration::ZERO,
            adaptive_hold: false,
            reorder: ReorderConfig::default(),
        }
    }
}

/// Loss counters of one flow.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LossStats {
    /// Sequence numbers seen missing (gaps).
    pub detected: u64,
    /// Gaps: runs of consecutive missing numbers, each opened by one arrival.
    pub gaps: u64,
    /// Missing numbers that later arrived after a NACK.
    pub recovered: u64,
    /// Missing numbers that arrived without being asked for (reordering).
    pub reordered: u64,
    /// Missing numbers given up (retries exhausted or too late).
    pub given_up: u64,
    /// Of the given up: because the deadline was nearer than one RTT.
    pub too_late: u64,
    /// NACK entries sent (one per sequence number per request).
    pub requested: u64,
    /// Duplicates.
    pub duplicates: u64,
    /// Of the recovered: arrived sooner after the first request than half the SRTT, so they
    /// were reordered, not repaired (the request was spurious).
    pub spurious: u64,
}

/// Tracks one flow's sequence numbers and decides what to NACK when.
#[derive(Debug, Clone)]
pub struct LossTracker {
    cfg: LossConfig,
    floor: Option<SeqNo>,
    /// Set once the floor was raised over numbers (truncation, `forget_below`): below it
    /// lies what is forgotten, not what came before the first arrival.
    floor_raised: bool,
    highest: Option<SeqNo>,
    missing: BTreeMap<SeqNo, Missing>,
    stats: LossStats,
    /// Smoothed first-transmission loss rate, 0..=1 ([`LossTracker::sample_loss_rate`]).
    loss_rate: f64,
    /// Whether `loss_rate` holds a measurement yet (the first one is taken as it is).
    estimated: bool,
    /// Smoothed mean length of a gap (≥ 1): how bursty losses are; `None` before a gap.
    burst_len: Option<f64>,
    /// (detected, reordered, highest, gaps) at the last sample; highest is `None` before
    /// the first sample since the start or a reset.
    rate_mark: (u64, u64, Option<u64>, u64),
    reorder: ReorderEstimator,
    /// SRTT at the last NACK poll (tells a repair from a reordered original).
    last_srtt: Duration,
    /// [`LossTracker::poll_timeout`]'s answer, kept between changes (`None`: to be worked
    /// out again): given-up numbers stay in `missing` until they fill or age out, up to
    /// `max_missing` of them, and a receiver asks for its next timer after every datagram.
    next_due: Cell<Option<Option<Instant>>>,
    /// Runs of numbers the sender said will not come (a relay's SKIP, §6.10): first and
    /// count, the latest [`SKIPPED_MEMORY`]. A gap over them does not make them missing.
    skipped: std::collections::VecDeque<(SeqNo, u64)>,
}

/// Runs of skipped numbers a [`LossTracker`] remembers.
const SKIPPED_MEMORY: usize = 64;

impl LossTracker {
    /// A tracker with the given tunables.
    pub fn new(cfg: LossConfig) -> LossTracker {
        LossTracker {
            cfg,
            floor: None,
            floor_raised: false,
            highest: None,
            missing: BTreeMap::new(),
            stats: LossStats::default(),
            loss_rate: 0.0,
            estimated: false,
            burst_len: None,
            rate_mark: (0, 0, None, 0),
            reorder: ReorderEstimator::new(cfg.reorder),
            last_srtt: Duration::ZERO,
            next_due: Cell::new(None),
            skipped: std::collections::VecDeque::new(),
        }
    }

    /// The reorder hold learned so far (what [`LossConfig::adaptive_hold`] applies).
    pub fn reorder_hold(&self, now: Instant) -> Duration {
        self.reorder.hold(now)
    }

    /// The reorder estimator.
    pub fn reorder(&self) -> &ReorderEstimator {
        &self.reorder
    }

    /// Counters.
    pub fn stats(&self) -> LossStats {
        self.stats
    }

    /// The newest sequence number seen.
    pub fn highest(&self) -> Option<SeqNo> {
        self.highest
    }

    /// Records a missing number restored locally (by the erasure code, §7.6) rather than
    /// received: counted as recovered, and never taken for reordering. Anything else is
    /// handled as [`LossTracker::on_arrival`].
    pub fn on_restored(
        &mut self,
        now: Instant,
        seq: SeqNo,
        hold: Duration,
        deadline: Option<Instant>,
    ) -> Arrival {
        if let Some(m) = self.missing.remove(&seq) {
            self.removed(&m);
            self.stats.recovered += 1;
            if m.gave_up {
                self.stats.given_up = self.stats.given_up.saturating_sub(1);
            }
            return Arrival::Filled { requested: true };
        }
        self.on_arrival(now, seq, hold, deadline)
    }

    /// Records an arrival. A gap it opens is marked missing, askable after `hold` (the
    /// reorder hold; with [`LossConfig::adaptive_hold`], at least the learned one), with
    /// `deadline` (after which asking is pointless). A gap that fills without a repair teaches
    /// the reorder estimator how late reordered datagrams come.
    pub fn on_arrival(
        &mut self,
        now: Instant,
        seq: SeqNo,
        hold: Duration,
        deadline: Option<Instant>,
    ) -> Arrival {
        let hold = if self.cfg.adaptive_hold {
            hold.max(self.reorder.hold(now))
        } else {
            hold
        };
        let Some(highest) = self.highest else {
            self.highest = Some(seq);
            self.floor = Some(seq);
            return Arrival::New;
        };
        if seq > highest {
            if seq > highest.next() {
                self.stats.gaps += 1;
            }
            self.add_missing(highest.next(), seq, now, now + hold, deadline);
            self.highest = Some(seq);
            return Arrival::New;
        }
        if let Some(m) = self.missing.remove(&seq) {
            self.removed(&m);
            let requested = m.retries > 0;
            let delay = now.saturating_duration_since(m.opened);
            if requested {
                self.stats.recovered += 1;
                // Sooner than any answer could come: the original, reordered.
                if m.first_asked
                    .is_some_and(|a| now.saturating_duration_since(a) < self.last_srtt / 2)
                {
                    self.stats.spurious += 1;
                    self.reorder.observe(now, delay);
                }
            } else {
                self.stats.reordered += 1;
                self.reorder.observe(now, delay);
            }
            if m.gave_up {
                // It was counted as given up; it made it after all.
                self.stats.given_up = self.stats.given_up.saturating_sub(1);
            }
            return Arrival::Filled { requested };
        }
        match self.floor {
            Some(f) if seq < f => {
                // Before the first number seen (the head of the first frame, reordered):
                // the floor moves down to it, and what lies between becomes missing, as
                // `mark_missing` would make it. Below a raised floor it is simply too old.
                if !self.floor_raised && f.0 - seq.0 <= self.cfg.max_missing as u64 {
                    self.floor = Some(seq);
                    self.add_missing(seq.next(), f, now, now + hold, deadline);
                }
                Arrival::New
            }
            _ => {
                self.stats.duplicates += 1;
                Arrival::Duplicate
            }
        }
    }

    /// Marks `seq` missing if it is not known yet (the missing chunks of an incomplete frame,
    /// §7.2), askable at once. Numbers below the first one seen are accepted too (the head
    /// of the first frame).
    pub fn mark_missing(&mut self, now: Instant, seq: SeqNo, deadline: Option<Instant>) {
        let (Some(floor), Some(highest)) = (self.floor, self.highest) else {
            return;
        };
        if seq > highest {
            self.add_missing(highest.next(), seq.next(), now, now, deadline);
            self.highest = Some(seq);
        } else if seq < floor {
            if self.floor_raised || floor.0 - seq.0 > self.cfg.max_missing as u64 {
                return;
            }
            self.floor = Some(seq);
            self.add_missing(seq, floor, now, now, deadline);
        }
        // Inside [floor, highest]: received or already missing.
    }

    fn add_missing(
        &mut self,
        from: SeqNo,
        to_excl: SeqNo,
        now: Instant,
        at: Instant,
        deadline: Option<Instant>,
    ) {
        let n = to_excl.0.saturating_sub(from.0);
        let from = if n > self.cfg.max_missing as u64 {
            // An outage longer than we track: the older part is lost for good, and the
            // accounting restarts at what is still tracked (below the floor is unknown, not
            // received).
            self.stats.given_up += n - self.cfg.max_missing as u64;
            let from = SeqNo(to_excl.0 - self.cfg.max_missing as u64);
            self.missing.clear();
            self.next_due.set(Some(None));
            self.floor = Some(from);
            self.floor_raised = true;
            from
        } else {
            from
        };
        let mut s = from;
        if s < to_excl {
            // The new numbers are all due at `at`.
            if let Some(due) = self.next_due.get() {
                self.next_due.set(Some(Some(due.map_or(at, |d| d.min(at)))));
            }
        }
        // Runs the sender skipped that overlap this gap (usually none).
        let skipped: Vec<(SeqNo, u64)> = self
            .skipped
            .iter()
            .copied()
            .filter(|&(first, n)| first < to_excl && first.0 + n > s.0)
            .collect();
        while s < to_excl {
            if let Some(&(first, n)) = skipped.iter().find(|&&(f, n)| s >= f && s.0 - f.0 < n) {
                s = SeqNo(first.0 + n).min(to_excl);
                continue;
            }
            self.missing.insert(
                s,
                Missing {
                    opened: now,
                    first_asked: None,
                    next_at: at,
                    retries: 0,
                    deadline,
                    gave_up: false,
                },
            );
            self.stats.detected += 1;
            s = s.next();
        }
        while self.missing.len() > self.cfg.max_missing {
            if let Some((s, m)) = self.missing.pop_first() {
                self.removed(&m);
                if !m.gave_up {
                    self.stats.given_up += 1;
                }
                // Below the oldest tracked number nothing is known any more.
                self.floor = Some(s.next());
                self.floor_raised = true;
            }
        }
    }

    /// The sender (a relay under overload, §6.10) says the `count` numbers from `first` will
    /// not come: those missing are forgotten (neither asked for nor lost, and not counted as
    /// detected), and a later gap over them does not mark them missing. Returns how many
    /// were missing. Ignored before the first arrival, and for runs longer than
    /// `max_missing`.
    pub fn on_skipped(&mut self, first: SeqNo, count: u64) -> usize {
        if self.highest.is_none() || count == 0 || count > self.cfg.max_missing as u64 {
            return 0;
        }
        let last = first.plus(count - 1);
        if self.highest.is_some_and(|h| first == h.next()) {
            // Right after the newest number (the usual case: the relay says so before it
            // sends anything newer): as if they had arrived.
            self.highest = Some(last);
            return 0;
        }
        let gone: Vec<SeqNo> = self.missing.range(first..=last).map(|(s, _)| *s).collect();
        for s in &gone {
            if let Some(m) = self.missing.remove(s) {
                self.removed(&m);
                self.stats.detected = self.stats.detected.saturating_sub(1);
                if m.gave_up {
                    self.stats.given_up = self.stats.given_up.saturating_sub(1);
                }
            }
        }
        if self.skipped.len() >= SKIPPED_MEMORY {
            self.skipped.pop_front();
        }
        self.skipped.push_back((first, count));
        gone.len()
    }

    /// Sets the deadline of missing numbers in `[from, to]` that have none yet or a later one.
    pub fn set_deadline(&mut self, from: SeqNo, to: SeqNo, deadline: Instant) {
        for (_, m) in self.missing.range_mut(from..=to) {
            if m.deadline.is_none_or(|d| d > deadline) {
                m.deadline = Some(deadline);
            }
        }
    }

    /// When the next NACK may be due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if let Some(due) = self.next_due.get() {
            return due;
        }
        let due = self
            .missing
            .values()
            .filter(|m| !m.gave_up)
            .map(|m| m.next_at)
            .min();
        self.next_due.set(Some(due));
        due
    }

    /// Keeps [`LossTracker::poll_timeout`]'s answer right when `m` leaves `missing`.
    fn removed(&self, m: &Missing) {
        if !m.gave_up && self.next_due.get() == Some(Some(m.next_at)) {
            self.next_due.set(None);
        }
    }

    /// Collects the numbers to ask for now, as ranges, and schedules their next try: one
    /// retry interval later, or at the last moment an answer can still make the deadline if
    /// that comes first. Numbers whose deadline is nearer than SRTT + `deadline_margin`
    /// (§7.2), that hit the safety cap, or that have no deadline and used up
    /// `max_retries_no_deadline`, are given up.
    pub fn poll_nack(&mut self, now: Instant, rtt: &RttEstimator) -> Vec<NackRange> {
        let mut ranges: Vec<NackRange> = Vec::new();
        let mut last: Option<SeqNo> = None;
        let retry = rtt.retry_interval(self.cfg.min_retry_interval);
        let answer_time = rtt.srtt() + self.cfg.deadline_margin;
        self.last_srtt = rtt.srtt();
        let mut newly_given_up = 0;
        let mut next_due: Option<Instant> = None;
        for (&seq, m) in self.missing.iter_mut() {
            if m.gave_up {
                continue;
            }
            if m.next_at > now {
                next_due = Some(next_due.map_or(m.next_at, |d| d.min(m.next_at)));
                continue;
            }
            // The last moment a request can still be answered in time.
            let last_call = m.deadline.and_then(|d| d.checked_sub(answer_time));
            let too_late = m
                .deadline
                .is_some_and(|d| d.saturating_duration_since(now) < answer_time);
            let cap = if m.deadline.is_some() {
                self.cfg.max_retries
            } else {
                self.cfg.max_retries.min(self.cfg.max_retries_no_deadline)
            };
            if too_late || m.retries >= cap {
                if too_late {
                    self.stats.too_late += 1;
                }
                m.gave_up = true;
                newly_given_up += 1;
                continue;
            }
            m.retries += 1;
            m.first_asked.get_or_insert(now);
            m.next_at = match last_call {
                // One last chance at the limit, if the regular retry would come too late
                // and the limit is not right behind this request.
                Some(l) if now + retry > l && l >= now + self.cfg.min_retry_interval => l,
                _ => now + retry,
            };
            next_due = Some(next_due.map_or(m.next_at, |d| d.min(m.next_at)));
            self.stats.requested += 1;
            match (ranges.last_mut(), last) {
                (Some(r), Some(l)) if l.next() == seq && r.len < u16::MAX => r.len += 1,
                _ => ranges.push(NackRange {
                    start: seq.wire(),
                    len: 1,
                }),
            }
            last = Some(seq);
        }
        self.stats.given_up += newly_given_up;
        self.next_due.set(Some(next_due));
        ranges
    }

    /// Number of entries tracked as missing (including given-up ones).
    pub fn missing_len(&self) -> usize {
        self.missing.len()
    }

    /// Whether `seq` is currently missing and still being asked for.
    pub fn is_pending(&self, seq: SeqNo) -> bool {
        self.missing.get(&seq).is_some_and(|m| !m.gave_up)
    }

    /// Updates and returns the smoothed first-transmission loss rate (0..=1): gaps seen since
    /// the last sample that reordering did not fill, over the sequence numbers the interval
    /// covered (§6.6 `loss_q16`), moved towards by [`LOSS_RATE_GAIN`]. The first measurement
    /// (over at least [`FIRST_ESTIMATE_SPAN`] numbers since the first arrival) is taken as
    /// it is, so that a lossy path is known as such from the first report. Call once per
    /// report interval.
    pub fn sample_loss_rate(&mut self) -> f64 {
        let s = self.stats;
        let Some(highest) = self.highest.map(|h| h.0) else {
            return self.loss_rate;
        };
        let (d0, r0, h0, g0) = self.rate_mark;
        // The first interval starts just below the first number seen.
        let h0 = h0.unwrap_or_else(|| self.floor.map_or(highest, |f| f.0.saturating_sub(1)));
        let span = highest.saturating_sub(h0);
        if !self.estimated && span < FIRST_ESTIMATE_SPAN {
            return self.loss_rate;
        }
        let lost = s
            .detected
            .saturating_sub(d0)
            .saturating_sub(s.reordered.saturating_sub(r0));
        if span > 0 {
            let p = (lost as f64 / span as f64).clamp(0.0, 1.0);
            if self.estimated {
                self.loss_rate += (p - self.loss_rate) * LOSS_RATE_GAIN;
            } else {
                self.loss_rate = p;
                self.estimated = true;
            }
        }
        let gaps = s.gaps.saturating_sub(g0);
        if gaps > 0 {
            let run = (s.detected.saturating_sub(d0) as f64 / gaps as f64).max(1.0);
            self.burst_len = Some(match self.burst_len {
                Some(b) => b + (run - b) * LOSS_RATE_GAIN,
                None => run,
            });
        }
        self.rate_mark = (s.detected, s.reordered, Some(highest), s.gaps);
        self.loss_rate
    }

    /// The smoothed mean length of a gap (≥ 1; 1 when losses are independent), as of the
    /// last [`LossTracker::sample_loss_rate`]; infinite before any gap was measured, so that
    /// callers sizing for bursts assume the worst.
    pub fn mean_burst(&self) -> f64 {
        self.burst_len.unwrap_or(f64::INFINITY)
    }

    /// The loss rate as of the last [`LossTracker::sample_loss_rate`].
    pub fn loss_rate(&self) -> f64 {
        self.loss_rate
    }

    /// Forgets everything (a new source). The loss rate, a property of the path, stays.
    pub fn reset(&mut self) {
        self.rate_mark = (
            self.stats.detected,
            self.stats.reordered,
            None,
            self.stats.gaps,
        );
        self.floor = None;
        self.floor_raised = false;
        self.highest = None;
        self.missing.clear();
        self.next_due.set(Some(None));
        self.skipped.clear();
        // The reorder estimator is kept: reordering is the path's, not the source's.
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn skipped_numbers_are_neither_missing_nor_asked_for() {
        let t0 = Instant::now();
        let hold = 2 * MS;
        let mut l = LossTracker::new(LossConfig::default());
        assert_eq!(l.on_skipped(SeqNo(1), 3), 0, "nothing seen yet: ignored");
        l.on_arrival(t0, SeqNo(100), hold, None);
        // The relay says 101..=103 will not come, before the gap shows: only 104 is missing.
        assert_eq!(l.on_skipped(SeqNo(101), 3), 0);
        l.on_arrival(t0, SeqNo(105), hold, None);
        assert_eq!(l.missing_len(), 1);
        assert!(l.is_pending(SeqNo(104)) && !l.is_pending(SeqNo(102)));
        assert_eq!(l.poll_timeout(), Some(t0 + hold));
        // A notice after its gap opened forgets what it names, and they count as never
        // detected.
        l.on_arrival(t0 + MS, SeqNo(110), hold, None);
        assert_eq!(l.stats().detected, 5);
        assert_eq!(l.on_skipped(SeqNo(106), 4), 4);
        assert_eq!((l.missing_len(), l.stats().detected), (1, 1));
        // The next timer follows what is left: 104, then nothing once it fills.
        assert_eq!(l.poll_timeout(), Some(t0 + hold));
        assert_eq!(
            l.on_arrival(t0 + 2 * MS, SeqNo(104), hold, None),
            Arrival::Filled { requested: false }
        );
        assert_eq!(l.poll_timeout(), None);
        assert_eq!(l.stats().given_up, 0);
    }

    #[test]
    fn gap_is_asked_after_the_hold_and_retried_then_given_up() {
        let t0 = Instant::now();
        let rtt = RttEstimator::new(MS);
        let mut l = LossTracker::new(LossConfig::default());
        assert_eq!(l.on_arrival(t0, SeqNo(10), 2 * MS, None), Arrival::New);
        assert_eq!(l.on_arrival(t0, SeqNo(14), 2 * MS, None), Arrival::New);
        assert!(l.poll_nack(t0 + MS, &rtt).is_empty());
        let n = l.poll_nack(t0 + 2 * MS, &rtt);
        assert_eq!(n, vec![NackRange { start: 11, len: 3 }]);
        // Reordered 12 arrives: filled, requested.
        assert_eq!(
            l.on_arrival(t0 + 3 * MS, SeqNo(12), 2 * MS, None),
            Arrival::Filled { requested: true }
        );
        assert_eq!(
            l.on_arrival(t0 + 3 * MS, SeqNo(12), 2 * MS, None),
            Arrival::Duplicate
        );
        let mut t = t0 + 2 * MS;
        let mut asked = 1;
        for _ in 0..100 {
            t += MS;
            let n = l.poll_nack(t, &rtt);
            if n.is_empty() {
                continue;
            }
            assert_eq!(
                n,
                vec![
                    NackRange { start: 11, len: 1 },
                    NackRange { start: 13, len: 1 }
                ]
            );
            asked += 1;
        }
        assert_eq!(asked, 10);
        assert_eq!(l.stats().given_up, 2);
        assert_eq!(l.stats().recovered, 1);
    }

    #[test]
    fn the_first_loss_measurement_is_taken_as_it_is_and_bursts_are_measured() {
        let t0 = Instant::now();
        let mut l = LossTracker::new(LossConfig::default());
        assert_eq!(l.mean_burst(), f64::INFINITY, "unknown before any gap");
        // Numbers 0..=199 with runs of 3 lost after every 17 that arrive.
        let lost = |n: u64| n % 20 >= 17;
        for n in (0..200).filter(|n| !lost(*n)) {
            l.on_arrival(t0, SeqNo(n), MS, None);
        }
        let rate = l.sample_loss_rate();
        // Up to the highest number seen (196), 9 runs of 3 are known: 27 of 196 numbers.
        assert!((rate - 27.0 / 196.0).abs() < 1e-9, "{rate}");
        assert!((l.mean_burst() - 3.0).abs() < 1e-9);
        // Later measurements are smoothed. The next interval (197..=399) holds only the
        // run 197..=199, seen when 200 arrives.
        for n in 200..400 {
            l.on_arrival(t0, SeqNo(n), MS, None);
        }
        let next = l.sample_loss_rate();
        let p = 3.0 / 203.0;
        assert!(
            (next - (rate + (p - rate) * LOSS_RATE_GAIN)).abs() < 1e-9,
            "{next}"
        );
        assert!((l.mean_burst() - 3.0).abs() < 1e-9);

        // A first interval shorter than FIRST_ESTIMATE_SPAN gives no measurement yet.
        let mut short = LossTracker::new(LossConfig::default());
        for n in [0, 1, 5, 6] {
            short.on_arrival(t0, SeqNo(n), MS, None);
        }
        assert_eq!(short.sample_loss_rate(), 0.0);
        for n in 7..=FIRST_ESTIMATE_SPAN + 1 {
            short.on_arrival(t0, SeqNo(n), MS, None);
        }
        let first = short.sample_loss_rate();
        assert!(
            (first - 3.0 / (FIRST_ESTIMATE_SPAN + 1) as f64).abs() < 1e-9,
            "{first}"
        );
    }

    #[test]
    fn nothing_is_asked_when_the_deadline_is_too_near() {
        let t0 = Instant::now();
        let rtt = RttEstimator::new(10 * MS);
        let mut l = LossTracker::new(LossConfig::default());
        l.on_arrival(t0, SeqNo(1), MS, None);
        l.on_arrival(t0, SeqNo(3), MS, Some(t0 + 5 * MS));
        assert!(l.poll_nack(t0 + MS, &rtt).is_empty());
        assert_eq!(l.stats().given_up, 1);
    }

    #[test]
    fn mark_missing_covers_head_and_tail_of_a_frame() {
        let t0 = Instant::now();
        let rtt = RttEstimator::new(MS);
        let mut l = LossTracker::new(LossConfig::default());
        l.on_arrival(t0, SeqNo(100), MS, None);
        l.mark_missing(t0, SeqNo(98), None);
        l.mark_missing(t0, SeqNo(102), None);
        let n = l.poll_nack(t0, &rtt);
        assert_eq!(
            n,
            vec![
                NackRange { start: 98, len: 2 },
                NackRange { start: 101, len: 2 }
            ]
        );
        assert_eq!(
            l.on_arrival(t0, SeqNo(98), MS, None),
            Arrival::Filled { requested: true }
        );
        assert_eq!(l.on_arrival(t0, SeqNo(100), MS, None), Arrival::Duplicate);
    }

    #[test]
    fn arrivals_below_the_floor_are_never_asked_for() {
        let t0 = Instant::now();
        let rtt = RttEstimator::new(MS);
        let mut l = LossTracker::new(LossConfig {
            max_missing: 4,
            ..Default::default()
        });
        l.on_arrival(t0, SeqNo(100), MS, None);
        // The head of the first frame, reordered: the floor moves down, 99 becomes missing.
        assert_eq!(l.on_arrival(t0, SeqNo(98), MS, None), Arrival::New);
        assert_eq!(
            l.poll_nack(t0 + MS, &rtt),
            vec![NackRange { start: 99, len: 1 }]
        );
        // An outage longer than tracked raises the floor over 98 and 100 ...
        l.on_arrival(t0, SeqNo(200), MS, None);
        // ... and late copies of them neither move it back nor get asked for, and are not
        // taken for duplicates of numbers that never arrived.
        assert_eq!(l.on_arrival(t0, SeqNo(100), MS, None), Arrival::New);
        assert_eq!(l.on_arrival(t0, SeqNo(150), MS, None), Arrival::New);
        l.mark_missing(t0, SeqNo(150), None);
        let asked: Vec<u32> = l
            .poll_nack(t0 + 10 * MS, &rtt)
            .iter()
            .flat_map(|r| r.start..r.start + r.len as u32)
            .collect();
        assert_eq!(asked, vec![196, 197, 198, 199]);
    }

    #[test]
    fn a_long_outage_is_bounded() {
        let t0 = Instant::now();
        let mut l = LossTracker::new(LossConfig {
            max_missing: 100,
            ..Default::default()
        });
        l.on_arrival(t0, SeqNo(0), MS, None);
        l.on_arrival(t0, SeqNo(1_000_000), MS, None);
        assert_eq!(l.missing_len(), 100);
        assert_eq!(l.stats().given_up, 999_999 - 100);
        // What fell out of tracking is unknown, not "received": no false duplicate.
        assert_eq!(l.on_arrival(t0, SeqNo(5), MS, None), Arrival::New);
    }

    #[test]
    fn asking_goes_on_until_the_deadline_with_a_last_chance_at_the_limit() {
        let t0 = Instant::now();
        // SRTT 10 ms, RTTVAR 5 ms: a retry every 20 ms.
        let rtt = RttEstimator::new(10 * MS);
        let mut l = LossTracker::new(LossConfig::default());
        l.on_arrival(t0, SeqNo(1), MS, None);
        l.on_arrival(t0, SeqNo(3), MS, Some(t0 + 97 * MS));
        let mut asked_at = Vec::new();
        for ms in 0..200 {
            if !l.poll_nack(t0 + ms * MS, &rtt).is_empty() {
                asked_at.push(ms);
            }
        }
        // Every retry interval, then once more at deadline − SRTT (87 ms), then given up.
        assert_eq!(asked_at, vec![1, 21, 41, 61, 81, 87]);
        assert_eq!(l.stats().too_late, 1);
        assert_eq!(l.stats().given_up, 1);

        // A long budget is used whole: more than the old cap of 10 requests.
        let rtt = RttEstimator::new(MS);
        let mut l = LossTracker::new(LossConfig::default());
        l.on_arrival(t0, SeqNo(1), MS, None);
        l.on_arrival(t0, SeqNo(3), MS, Some(t0 + 300 * MS));
        let asked = (0..400)
            .filter(|&ms| !l.poll_nack(t0 + ms * MS, &rtt).is_empty())
            .count();
        assert!(asked > 50 && asked <= 64, "{asked}");
    }

    /// 5 % of the datagrams come `delay` late (1..=8 ms), none is lost.
    fn reordered_stream(cfg: LossConfig, hold: Duration) -> LossStats {
        let t0 = Instant::now();
        let rtt = RttEstimator::new(20 * MS);
        let mut rng = fastrand::Rng::with_seed(5);
        // One datagram every 0.35 ms (48 chunks in half a frame interval at 30 fps).
        let mut arrivals: Vec<(Duration, u64)> = (0..20_000u64)
            .map(|i| {
                let sent = Duration::from_micros(350 * i);
                let late = if rng.f64() < 0.05 {
                    Duration::from_micros(rng.u64(1000..=8000))
                } else {
                    Duration::ZERO
                };
                (sent + late, 1000 + i)
            })
            .collect();
        arrivals.sort();
        let mut l = LossTracker::new(cfg);
        for (at, seq) in arrivals {
            let now = t0 + at;
            l.on_arrival(now, SeqNo(seq), hold, Some(now + 120 * MS));
            l.poll_nack(now, &rtt);
        }
        l.stats()
    }

    #[test]
    fn a_stream_that_is_only_reordered_draws_no_nack_with_the_adaptive_hold() {
        let adaptive = LossConfig {
            adaptive_hold: true,
            ..Default::default()
        };
        let s = reordered_stream(adaptive, 2 * MS);
        assert!(s.reordered > 500, "{s:?}");
        assert_eq!(s.requested, 0, "{s:?}");
        assert_eq!(s.recovered, 0, "{s:?}");
        // The fixed 2 ms hold NACKs most of the reordered datagrams, spuriously.
        let s = reordered_stream(LossConfig::default(), 2 * MS);
        assert!(s.requested > 100 && s.spurious > 100, "{s:?}");
    }
}
