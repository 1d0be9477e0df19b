//! A seeded, sans-IO network emulator for ONE direction of a link.
//!
//! Modelled on str0m's `crates/netem`: no clock, socket, thread or unseeded randomness lives
//! here. The caller injects `now`, pushes items in with [`Link::send`], asks
//! [`Link::poll_timeout`] when the next item is due, and pops due items with
//! [`Link::poll_recv`]. The same emulator backs the simulated [`crate::sim::World`] and the
//! user-facing UDP impairment proxy ([`crate::driver::netsim`]).
//!
//! # The path a datagram takes in [`Link::send`]
//!
//! 1. **In-flight cap.** At most [`MAX_IN_FLIGHT`] items are held; beyond that the item is
//!    dropped and counted in [`LinkStats::queue_dropped`].
//! 2. **Bottleneck** (only when [`LinkConfig::rate_bps`] is set). The link serialises
//!    `size_bytes * 8 / rate_bps` seconds per item, one after the other. The queue in front
//!    of it is *fluid*: its backlog is the number of bytes not yet serialised at `now`. An item
//!    is accepted when the link is idle, or when backlog + size fits in
//!    [`LinkConfig::queue_bytes`]; otherwise it is tail-dropped (`queue_dropped`). An
//!    accepted item leaves the bottleneck when its last bit is serialised.
//! 3. **Loss** on the wire after the bottleneck (a lost item still used bottleneck capacity,
//!    as on a real path): first the Gilbert-Elliott burst model ([`LinkConfig::burst`],
//!    counted in [`LinkStats::burst_lost`]), then independent random loss
//!    ([`LinkConfig::loss`], counted in [`LinkStats::lost`]). The two counters are disjoint.
//! 4. **Delay and jitter.** Delivery time = departure + `delay` + a uniform offset in
//!    `[-jitter, +jitter]` (never earlier than the departure). Jitter alone never reorders:
//!    the delivery time is clamped to be no earlier than the previous in-order delivery time,
//!    as on a real FIFO path, so jitter shows up as bunching, not as reordering.
//! 5. **Reordering.** With probability [`LinkConfig::reorder`] an item is held back by an
//!    extra [`LinkConfig::reorder_delay`] on top of its in-order delivery time, and does not
//!    hold later items back, so those later items overtake it (counted in
//!    [`LinkStats::reordered`], whether or not anything actually overtakes it).
//! 6. **Duplication.** With probability [`LinkConfig::duplicate`] a clone is delivered too,
//!    at the same instant, right after the original ([`LinkStats::duplicated`]).
//!
//! Random draws are only made for impairments that are switched on, so a perfect link draws
//! nothing and the same config, seed and input sequence always give the same output.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

use serde::Serialize;

/// Hard cap on items held by one [`Link`] (original items plus duplicates). Beyond it,
/// [`Link::send`] drops the item and counts it in [`LinkStats::queue_dropped`].
pub const MAX_IN_FLIGHT: usize = 1 << 16;

/// Default size of the bottleneck queue in bytes, used when a rate limit is set.
pub const DEFAULT_QUEUE_BYTES: usize = 64 * 1024;

/// A two-state Gilbert-Elliott burst-loss model.
///
/// Before each item the state may flip (good to bad with `p_good_to_bad`, bad to good with
/// `p_bad_to_good`); the item is then lost with the loss probability of the new state. A
/// bad run therefore lasts `1 / p_bad_to_good` items on average.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct GilbertElliott {
    /// Probability, per item, of moving from the good to the bad state.
    pub p_good_to_bad: f64,
    /// Probability, per item, of moving from the bad to the good state.
    pub p_bad_to_good: f64,
    /// Loss probability while in the good state.
    pub loss_good: f64,
    /// Loss probability while in the bad state.
    pub loss_bad: f64,
}

impl GilbertElliott {
    /// A model with the given long-run loss fraction (`0..=1`) and mean burst length in
    /// items (`>= 1`): the good state never loses, the bad state always loses.
    ///
    /// Out-of-range inputs are clamped (NaN counts as 0 loss, burst length below 1 as 1).
    /// Short bursts cannot produce a high mean loss: with a mean burst of `b`, the highest
    /// reachable loss is `b / (b + 1)` (the good state then lasts one item).
    pub fn new(mean_loss: f64, mean_burst_len: f64) -> Self {
        let loss = if mean_loss.is_nan() {
            0.0
        } else {
            mean_loss.clamp(0.0, 1.0)
        };
        let burst = if mean_burst_len.is_nan() {
            1.0
        } else {
            mean_burst_len.max(1.0)
        };
        let p_bad_to_good = 1.0 / burst;
        let p_good_to_bad = if loss >= 1.0 {
            1.0
        } else {
            (loss * p_bad_to_good / (1.0 - loss)).min(1.0)
        };
        let p_bad_to_good = if loss >= 1.0 { 0.0 } else { p_bad_to_good };
        Self {
            p_good_to_bad,
            p_bad_to_good,
            loss_good: 0.0,
            loss_bad: 1.0,
        }
    }

    /// The long-run (stationary) loss fraction this model produces.
    pub fn mean_loss(&self) -> f64 {
        let to_bad = clamp_prob(self.p_good_to_bad);
        let to_good = clamp_prob(self.p_bad_to_good);
        if to_bad + to_good == 0.0 {
            // The chain never leaves its start state, which is good.
            return clamp_prob(self.loss_good);
        }
        let p_bad = to_bad / (to_bad + to_good);
        p_bad * clamp_prob(self.loss_bad) + (1.0 - p_bad) * clamp_prob(self.loss_good)
    }
}

/// The impairments of one direction of a link. Probabilities are fractions in `0..=1`
/// (values outside are clamped when used, NaN counts as 0).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LinkConfig {
    /// Fixed one-way propagation delay.
    pub delay: Duration,
    /// Maximum jitter: a uniform offset in `[-jitter, +jitter]` added to `delay`. Jitter alone
    /// never reorders (see the module docs).
    pub jitter: Duration,
    /// Independent random loss probability per item.
    pub loss: f64,
    /// Optional Gilbert-Elliott burst loss, applied before `loss`.
    pub burst: Option<GilbertElliott>,
    /// Probability that an item is held back by `reorder_delay` so later items overtake it.
    pub reorder: f64,
    /// Extra delay of a held-back (reordered) item. Zero switches reordering off.
    pub reorder_delay: Duration,
    /// Probability that an item is delivered twice.
    pub duplicate: f64,
    /// Bottleneck rate in bits per second; `None` means unlimited (no queue). `Some(0)` is
    /// treated as 1 bit/s.
    pub rate_bps: Option<u64>,
    /// Size of the bounded bottleneck queue in bytes (tail drop). Only used with `rate_bps`.
    pub queue_bytes: usize,
}

impl Default for LinkConfig {
    /// A perfect link: no delay, no loss, no reordering, unlimited rate.
    fn default() -> Self {
        Self {
            delay: Duration::ZERO,
            jitter: Duration::ZERO,
            loss: 0.0,
            burst: None,
            reorder: 0.0,
            reorder_delay: Duration::ZERO,
            duplicate: 0.0,
            rate_bps: None,
            queue_bytes: DEFAULT_QUEUE_BYTES,
        }
    }
}

impl LinkConfig {
    /// A link with independent random loss of `pct` percent and nothing else.
    pub fn lossy(pct: f64) -> Self {
        Self {
            loss: pct / 100.0,
            ..Self::default()
        }
    }

    /// A link with Gilbert-Elliott burst loss: `pct` percent long-run loss in bursts of
    /// `mean_burst_len` items on average (see [`GilbertElliott::new`]).
    pub fn bursty(pct: f64, mean_burst_len: f64) -> Self {
        Self {
            burst: Some(GilbertElliott::new(pct / 100.0, mean_burst_len)),
            ..Self::default()
        }
    }

    /// A loss-free link with a fixed one-way delay.
    pub fn delayed(delay: Duration) -> Self {
        Self {
            delay,
            ..Self::default()
        }
    }

    /// A loss-free link with a bottleneck of `rate_bps` bits per second and a queue of
    /// `queue_bytes` bytes.
    pub fn rate_limited(rate_bps: u64, queue_bytes: usize) -> Self {
        Self {
            rate_bps: Some(rate_bps),
            queue_bytes,
            ..Self::default()
        }
    }
}

/// Counters of one [`Link`]. Every sent item ends up in exactly one of `delivered`, `lost`,
/// `burst_lost`, `queue_dropped`, or is still in flight; duplicates add to `delivered` too.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct LinkStats {
    /// Items passed to [`Link::send`].
    pub sent: u64,
    /// Items returned by [`Link::poll_recv`], duplicates included.
    pub delivered: u64,
    /// Items lost to independent random loss ([`LinkConfig::loss`]).
    pub lost: u64,
    /// Items lost to Gilbert-Elliott burst loss ([`LinkConfig::burst`]).
    pub burst_lost: u64,
    /// Items tail-dropped by the bottleneck queue or by the in-flight cap.
    pub queue_dropped: u64,
    /// Extra copies created by duplication.
    pub duplicated: u64,
    /// Items held back by the reorder delay.
    pub reordered: u64,
}

impl LinkStats {
    /// All items dropped, whatever the cause (`lost + burst_lost + queue_dropped`).
    pub fn dropped(&self) -> u64 {
        self.lost + self.burst_lost + self.queue_dropped
    }
}

impl std::ops::AddAssign for LinkStats {
    fn add_assign(&mut self, o: Self) {
        self.sent += o.sent;
        self.delivered += o.delivered;
        self.lost += o.lost;
        self.burst_lost += o.burst_lost;
        self.queue_dropped += o.queue_dropped;
        self.duplicated += o.duplicated;
        self.reordered += o.reordered;
    }
}

/// An item in flight, ordered by (delivery time, insertion order) as a min-heap.
struct Entry<T> {
    at: Instant,
    seq: u64,
    item: T,
}

impl<T> PartialEq for Entry<T> {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}

impl<T> Eq for Entry<T> {}

impl<T> PartialOrd for Entry<T> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl<T> Ord for Entry<T> {
    fn cmp(&self, other: &Self) -> Ordering {
        // Reversed so that `BinaryHeap` (a max-heap) pops the earliest, then first-sent item.
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

/// One direction of an emulated link carrying items of type `T` (a datagram, or a datagram
/// with its addresses). See the module docs for what happens to an item.
pub struct Link<T> {
    cfg: LinkConfig,
    rng: fastrand::Rng,
    in_flight: BinaryHeap<Entry<T>>,
    next_seq: u64,
    /// Latest `now` seen; time never goes backwards (earlier values are clamped to it).
    last_now: Option<Instant>,
    /// Delivery time of the latest in-order (not held back) item; FIFO floor for the next.
    fifo_tail: Option<Instant>,
    /// When the bottleneck finishes serialising everything accepted so far.
    busy_until: Option<Instant>,
    /// Gilbert-Elliott state: `true` while in the bad state.
    ge_bad: bool,
    stats: LinkStats,
}

impl<T: std::fmt::Debug> std::fmt::Debug for Link<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link")
            .field("cfg", &self.cfg)
            .field("in_flight", &self.in_flight.len())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl<T: Clone> Link<T> {
    /// A link with the given impairments whose random draws come from `seed` only.
    pub fn new(cfg: LinkConfig, seed: u64) -> Self {
        Self {
            cfg,
            rng: fastrand::Rng::with_seed(seed),
            in_flight: BinaryHeap::new(),
            next_seq: 0,
            last_now: None,
            fifo_tail: None,
            busy_until: None,
            ge_bad: false,
            stats: LinkStats::default(),
        }
    }

    /// Puts `item` (of `size_bytes` bytes on the wire, used by the rate limit) on the link at
    /// `now`. The item is dropped, delayed, reordered or duplicated as the config says; call
    /// [`Link::poll_timeout`] afterwards to learn when something is next due.
    pub fn send(&mut self, now: Instant, item: T, size_bytes: usize) {
        let now = self.clamp_now(now);
        self.stats.sent += 1;
        if self.in_flight.len() >= MAX_IN_FLIGHT {
            self.stats.queue_dropped += 1;
            return;
        }

        // 1. The bottleneck and its bounded queue.
        let departure = match self.cfg.rate_bps {
            None => now,
            Some(rate) => {
                let rate = rate.max(1);
                let start = self.busy_until.filter(|b| *b > now).unwrap_or(now);
                let backlog = bytes_serialised_in(start.duration_since(now), rate);
                let size = size_bytes as u128;
                if backlog > 0 && backlog.saturating_add(size) > self.cfg.queue_bytes as u128 {
                    self.stats.queue_dropped += 1;
                    return;
                }
                let done = add_sat(start, serialisation_time(size_bytes, rate));
                self.busy_until = Some(done);
                done
            }
        };

        // 2. Loss on the wire: burst model first, then independent loss.
        if let Some(ge) = self.cfg.burst {
            let flip = if self.ge_bad {
                ge.p_bad_to_good
            } else {
                ge.p_good_to_bad
            };
            if chance(&mut self.rng, flip) {
                self.ge_bad = !self.ge_bad;
            }
            let p = if self.ge_bad {
                ge.loss_bad
            } else {
                ge.loss_good
            };
            if chance(&mut self.rng, p) {
                self.stats.burst_lost += 1;
                return;
            }
        }
        if chance(&mut self.rng, self.cfg.loss) {
            self.stats.lost += 1;
            return;
        }

        // 3. Delay and jitter, clamped to keep FIFO order.
        let mut at = add_sat(departure, self.cfg.delay);
        let jitter = duration_nanos(self.cfg.jitter);
        if jitter > 0 {
            let offset = self.rng.u64(0..=jitter.saturating_mul(2));
            at = if offset >= jitter {
                add_sat(at, Duration::from_nanos(offset - jitter))
            } else {
                at.checked_sub(Duration::from_nanos(jitter - offset))
                    .map_or(departure, |t| t.max(departure))
            };
        }
        if let Some(tail) = self.fifo_tail {
            at = at.max(tail);
        }

        // 4. Reordering: hold this one back without holding back the ones behind it.
        if !self.cfg.reorder_delay.is_zero() && chance(&mut self.rng, self.cfg.reorder) {
            self.stats.reordered += 1;
            at = add_sat(at, self.cfg.reorder_delay);
        } else {
            self.fifo_tail = Some(at);
        }

        // 5. Duplication.
        let duplicate = chance(&mut self.rng, self.cfg.duplicate);
        if duplicate && self.in_flight.len() + 1 < MAX_IN_FLIGHT {
            self.stats.duplicated += 1;
            self.push(at, item.clone());
        }
        // The copy is queued first so the original can be moved in without a second clone;
        // both carry the same delivery time and content, so the order between them is moot.
        self.push(at, item);
    }

    /// The delivery time of the next item in flight, if any. Call [`Link::poll_recv`] at or
    /// after it.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.in_flight.peek().map(|e| e.at)
    }

    /// The next item whose delivery time is `<= now`, in delivery-time order (FIFO among
    /// equal times). Drain until `None` after every wake-up.
    pub fn poll_recv(&mut self, now: Instant) -> Option<T> {
        let now = self.clamp_now(now);
        if self.in_flight.peek()?.at > now {
            return None;
        }
        let entry = self.in_flight.pop()?;
        self.stats.delivered += 1;
        Some(entry.item)
    }

    /// Counters since creation.
    pub fn stats(&self) -> LinkStats {
        self.stats
    }

    /// The current impairments.
    pub fn config(&self) -> &LinkConfig {
        &self.cfg
    }

    /// Replaces the impairments. Items already in flight keep their delivery times; the
    /// bottleneck backlog and the burst-loss state carry over.
    pub fn set_config(&mut self, cfg: LinkConfig) {
        self.cfg = cfg;
    }

    /// How many items (duplicates included) are in flight.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    fn push(&mut self, at: Instant, item: T) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.in_flight.push(Entry { at, seq, item });
    }

    fn clamp_now(&mut self, now: Instant) -> Instant {
        let now = self.last_now.map_or(now, |last| now.max(last));
        self.last_now = Some(now);
        now
    }
}

/// `true` with probability `p` (clamped to `0..=1`, NaN is 0). Draws nothing for 0 or 1.
fn chance(rng: &mut fastrand::Rng, p: f64) -> bool {
    let p = clamp_prob(p);
    if p <= 0.0 {
        false
    } else if p >= 1.0 {
        true
    } else {
        rng.f64() < p
    }
}

fn clamp_prob(p: f64) -> f64 {
    if p.is_nan() { 0.0 } else { p.clamp(0.0, 1.0) }
}

fn duration_nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos())
        .unwrap_or(u64::MAX / 4)
        .min(u64::MAX / 4)
}

/// Time to serialise `size` bytes at `rate` bits per second, rounded up to the nanosecond.
fn serialisation_time(size: usize, rate: u64) -> Duration {
    let nanos = (size as u128 * 8 * 1_000_000_000).div_ceil(rate as u128);
    Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
}

/// Bytes serialised in `d` at `rate` bits per second, rounded up.
fn bytes_serialised_in(d: Duration, rate: u64) -> u128 {
    (d.as_nanos() * rate as u128).div_ceil(8 * 1_000_000_000)
}

/// `t + d`, saturating at a far-future instant instead of panicking on overflow.
pub(crate) fn add_sat(t: Instant, d: Duration) -> Instant {
    t.checked_add(d).unwrap_or_else(|| {
        const CENTURY: Duration = Duration::from_secs(100 * 365 * 24 * 3600);
        t.checked_add(CENTURY).unwrap_or(t)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    /// Drains everything due at `now`.
    fn drain<T: Clone>(link: &mut Link<T>, now: Instant) -> Vec<T> {
        std::iter::from_fn(|| link.poll_recv(now)).collect()
    }

    /// Runs the link to completion, returning (delivery time, item) in delivery order.
    fn run_out<T: Clone>(link: &mut Link<T>) -> Vec<(Instant, T)> {
        simulate(link, Vec::new())
    }

    /// Feeds `sends` (time, item, size; times non-decreasing) into the link while draining
    /// deliveries in time order, as a driver would, until nothing is left in flight.
    fn simulate<T: Clone>(
        link: &mut Link<T>,
        sends: Vec<(Instant, T, usize)>,
    ) -> Vec<(Instant, T)> {
        let mut sends = sends.into_iter().peekable();
        let mut out = Vec::new();
        loop {
            let next_send = sends.peek().map(|s| s.0);
            match (link.poll_timeout(), next_send) {
                (Some(t), s) if s.is_none_or(|s| t <= s) => {
                    out.extend(drain(link, t).into_iter().map(|item| (t, item)));
                }
                (_, Some(_)) => {
                    if let Some((t, item, size)) = sends.next() {
                        link.send(t, item, size);
                    }
                }
                (_, None) => return out,
            }
        }
    }

    #[test]
    fn zero_config_delivers_everything_in_order_at_the_exact_time() {
        let t0 = Instant::now();
        let mut link = Link::new(LinkConfig::default(), 1);
        assert_eq!(link.poll_timeout(), None);
        for i in 0..100u32 {
            let now = t0 + MS * i;
            link.send(now, i, 1200);
            assert_eq!(link.poll_timeout(), Some(now));
            assert_eq!(link.poll_recv(now), Some(i));
            assert_eq!(link.poll_recv(now), None);
        }
        // Several at the same instant come out FIFO.
        for i in 0..10u32 {
            link.send(t0 + MS * 200, i, 10);
        }
        assert_eq!(drain(&mut link, t0 + MS * 200), (0..10).collect::<Vec<_>>());
        let s = link.stats();
        assert_eq!((s.sent, s.delivered, s.dropped()), (110, 110, 0));
    }

    #[test]
    fn fixed_delay_is_exact() {
        let t0 = Instant::now();
        let mut link = Link::new(LinkConfig::delayed(20 * MS), 1);
        link.send(t0, 'a', 1);
        link.send(t0 + 5 * MS, 'b', 1);
        assert_eq!(link.poll_timeout(), Some(t0 + 20 * MS));
        assert_eq!(link.poll_recv(t0 + 19 * MS), None);
        assert_eq!(drain(&mut link, t0 + 20 * MS), vec!['a']);
        assert_eq!(link.poll_timeout(), Some(t0 + 25 * MS));
        assert_eq!(drain(&mut link, t0 + 30 * MS), vec!['b']);
    }

    fn count_lost(cfg: LinkConfig, seed: u64, n: u32) -> LinkStats {
        let t0 = Instant::now();
        let mut link = Link::new(cfg, seed);
        for i in 0..n {
            link.send(t0, i, 100);
            drain(&mut link, t0);
        }
        link.stats()
    }

    #[test]
    fn random_loss_rate_is_within_tolerance_and_deterministic() {
        let n = 100_000;
        let a = count_lost(LinkConfig::lossy(10.0), 42, n);
        let b = count_lost(LinkConfig::lossy(10.0), 42, n);
        let c = count_lost(LinkConfig::lossy(10.0), 43, n);
        // Expected 10_000 lost, sigma ~95: 5 sigma tolerance.
        assert!((9_525..=10_475).contains(&a.lost), "lost {}", a.lost);
        assert_eq!(a, b, "same seed, same outcome");
        assert_ne!(a.lost, c.lost, "another seed, another outcome");
        assert_eq!(a.lost + a.delivered, u64::from(n));
        assert_eq!(a.burst_lost, 0);
        // Extremes draw nothing and are exact.
        assert_eq!(count_lost(LinkConfig::lossy(0.0), 1, 1000).lost, 0);
        assert_eq!(count_lost(LinkConfig::lossy(100.0), 1, 1000).lost, 1000);
    }

    /// Lengths of runs of consecutive losses among `n` items sent one per millisecond.
    fn loss_runs(cfg: LinkConfig, seed: u64, n: u32) -> (u64, Vec<u32>) {
        let t0 = Instant::now();
        let mut link = Link::new(cfg, seed);
        let mut runs = Vec::new();
        let mut run = 0;
        for i in 0..n {
            link.send(t0, i, 100);
            if link.poll_recv(t0).is_some() {
                if run > 0 {
                    runs.push(run);
                }
                run = 0;
            } else {
                run += 1;
            }
        }
        if run > 0 {
            runs.push(run);
        }
        let s = link.stats();
        (s.burst_lost + s.lost, runs)
    }

    #[test]
    fn burst_loss_produces_runs() {
        let ge = GilbertElliott::new(0.1, 5.0);
        assert!((ge.mean_loss() - 0.1).abs() < 1e-12);
        assert!((ge.p_bad_to_good - 0.2).abs() < 1e-12);

        let (lost, runs) = loss_runs(LinkConfig::bursty(10.0, 5.0), 7, 100_000);
        let mean_run = lost as f64 / runs.len() as f64;
        assert!((8_000..=12_000).contains(&lost), "lost {lost}");
        assert!((4.0..=6.0).contains(&mean_run), "mean burst {mean_run}");
        assert!(runs.iter().any(|&r| r >= 15), "some long bursts");
        assert_eq!(loss_runs(LinkConfig::bursty(10.0, 5.0), 7, 100_000).0, lost);

        // Independent loss of the same rate has runs of about 1 / (1 - 0.1).
        let (lost, runs) = loss_runs(LinkConfig::lossy(10.0), 7, 100_000);
        let mean_run = lost as f64 / runs.len() as f64;
        assert!((1.0..=1.3).contains(&mean_run), "mean run {mean_run}");
    }

    #[test]
    fn burst_constructor_clamps() {
        let never = GilbertElliott::new(0.0, 3.0);
        assert_eq!(never.p_good_to_bad, 0.0);
        assert_eq!(never.mean_loss(), 0.0);
        let always = GilbertElliott::new(1.0, 3.0);
        assert_eq!((always.p_good_to_bad, always.p_bad_to_good), (1.0, 0.0));
        assert_eq!(always.mean_loss(), 1.0);
        // Bursts of one item cannot lose more than half.
        let capped = GilbertElliott::new(0.9, 0.5);
        assert_eq!((capped.p_good_to_bad, capped.p_bad_to_good), (1.0, 1.0));
        assert!((capped.mean_loss() - 0.5).abs() < 1e-12);
        assert_eq!(GilbertElliott::new(f64::NAN, f64::NAN).mean_loss(), 0.0);
    }

    #[test]
    fn rate_limit_spaces_deliveries_and_tail_drops() {
        let t0 = Instant::now();
        // 8 Mbit/s = 1 byte per microsecond: 1000 bytes take exactly 1 ms.
        let mut link = Link::new(LinkConfig::rate_limited(8_000_000, 5_000), 1);
        for i in 0..10u32 {
            link.send(t0, i, 1000);
        }
        // Idle link accepts one; then backlog 1000..4000 + 1000 <= 5000 accepts four more.
        assert_eq!(link.stats().queue_dropped, 5);
        // Half a millisecond later 500 bytes left the queue: 4500 + 1000 > 5000, dropped.
        link.send(t0 + MS / 2, 10, 1000);
        assert_eq!(link.stats().queue_dropped, 6);
        // At 1 ms the backlog is 4000 bytes: room for one more, departing at 6 ms.
        link.send(t0 + MS, 11, 1000);
        assert_eq!(link.stats().queue_dropped, 6);
        let out = run_out(&mut link);
        let expect: Vec<_> = [0, 1, 2, 3, 4, 11]
            .into_iter()
            .zip(1..)
            .map(|(item, k)| (t0 + MS * k, item))
            .collect();
        assert_eq!(out, expect);
        // An idle link accepts even an item larger than the queue.
        let t = t0 + MS * 100;
        link.send(t, 99, 8_000);
        assert_eq!(run_out(&mut link), vec![(t + MS * 8, 99)]);
        assert_eq!(link.stats().queue_dropped, 6);
    }

    #[test]
    fn rate_limit_with_delay_adds_both() {
        let t0 = Instant::now();
        let cfg = LinkConfig {
            delay: 10 * MS,
            ..LinkConfig::rate_limited(800_000, 100_000)
        };
        let mut link = Link::new(cfg, 1);
        // 100 bytes at 800 kbit/s = 1 ms each.
        for i in 0..3u32 {
            link.send(t0, i, 100);
        }
        let times: Vec<_> = run_out(&mut link).into_iter().map(|(t, _)| t).collect();
        assert_eq!(times, vec![t0 + 11 * MS, t0 + 12 * MS, t0 + 13 * MS]);
    }

    #[test]
    fn duplicate_delivers_twice() {
        let t0 = Instant::now();
        let cfg = LinkConfig {
            duplicate: 1.0,
            ..LinkConfig::default()
        };
        let mut link = Link::new(cfg, 1);
        for i in 0..3u32 {
            link.send(t0, i, 10);
        }
        assert_eq!(drain(&mut link, t0), vec![0, 0, 1, 1, 2, 2]);
        let s = link.stats();
        assert_eq!((s.sent, s.delivered, s.duplicated), (3, 6, 3));

        let cfg = LinkConfig {
            duplicate: 0.2,
            ..LinkConfig::default()
        };
        let s = count_lost(cfg, 5, 10_000);
        assert!((1_800..=2_200).contains(&s.duplicated), "{s:?}");
        assert_eq!(s.delivered, 10_000 + s.duplicated);
    }

    #[test]
    fn reorder_actually_reorders() {
        let t0 = Instant::now();
        let cfg = LinkConfig {
            delay: 5 * MS,
            reorder: 0.1,
            reorder_delay: 10 * MS,
            ..LinkConfig::default()
        };
        let mut link = Link::new(cfg, 3);
        let sent_at: Vec<_> = (0..1000u32).map(|i| t0 + MS * i).collect();
        let sends = (0..1000u32)
            .map(|i| (sent_at[i as usize], i, 100))
            .collect();
        let out = simulate(&mut link, sends);
        assert_eq!(out.len(), 1000, "reordering loses nothing");
        let s = link.stats();
        assert!((60..=140).contains(&s.reordered), "{s:?}");
        let inversions = out.windows(2).filter(|w| w[0].1 > w[1].1).count();
        assert!(inversions > 0);
        // Each item arrives at exactly delay or delay + reorder_delay after it was sent.
        let held = out
            .iter()
            .filter(|(t, i)| {
                let d = *t - sent_at[*i as usize];
                assert!(d == 5 * MS || d == 15 * MS, "item {i} took {d:?}");
                d == 15 * MS
            })
            .count();
        assert_eq!(held as u64, s.reordered);
    }

    #[test]
    fn jitter_stays_within_bounds_and_does_not_reorder() {
        let t0 = Instant::now();
        let cfg = LinkConfig {
            delay: 50 * MS,
            jitter: 10 * MS,
            ..LinkConfig::default()
        };
        // Dense traffic (1 ms apart): the FIFO clamp binds often. Sparse traffic (25 ms apart,
        // more than the 20 ms jitter window): it never binds and the full spread shows.
        for (spacing, seed) in [(MS, 11), (25 * MS, 12)] {
            let mut link = Link::new(cfg.clone(), seed);
            let sends = (0..10_000u32).map(|i| (t0 + spacing * i, i, 100)).collect();
            let out = simulate(&mut link, sends);
            assert_eq!(out.len(), 10_000);
            let (mut lo, mut hi) = (Duration::MAX, Duration::ZERO);
            for (k, (t, i)) in out.iter().enumerate() {
                assert_eq!(*i as usize, k, "jitter alone keeps FIFO order");
                let d = *t - (t0 + spacing * *i);
                assert!((40 * MS..=60 * MS).contains(&d), "item {i} took {d:?}");
                lo = lo.min(d);
                hi = hi.max(d);
            }
            assert!(hi > 59 * MS, "spread {lo:?}..{hi:?}");
            if spacing > 20 * MS {
                assert!(lo < 41 * MS, "spread {lo:?}..{hi:?}");
            }
        }
    }

    #[test]
    fn jitter_larger_than_delay_never_delivers_before_send() {
        let t0 = Instant::now();
        let cfg = LinkConfig {
            delay: MS,
            jitter: 10 * MS,
            ..LinkConfig::default()
        };
        let mut link = Link::new(cfg, 2);
        let sends = (0..1000u32).map(|i| (t0 + MS * i, i, 100)).collect();
        let out = simulate(&mut link, sends);
        assert_eq!(out.len(), 1000);
        for (t, i) in out {
            assert!(t >= t0 + MS * i);
        }
    }

    #[test]
    fn in_flight_count_is_capped() {
        let t0 = Instant::now();
        let mut link = Link::new(LinkConfig::delayed(Duration::from_secs(1)), 1);
        for i in 0..(MAX_IN_FLIGHT as u32 + 100) {
            link.send(t0, i, 1);
        }
        assert_eq!(link.in_flight(), MAX_IN_FLIGHT);
        assert_eq!(link.stats().queue_dropped, 100);
    }

    #[test]
    fn time_going_backwards_is_clamped() {
        let t0 = Instant::now();
        let mut link = Link::new(LinkConfig::delayed(10 * MS), 1);
        link.send(t0 + 5 * MS, 1u8, 1);
        link.send(t0, 2u8, 1);
        assert_eq!(
            run_out(&mut link),
            vec![(t0 + 15 * MS, 1), (t0 + 15 * MS, 2)]
        );
    }

    #[test]
    fn set_config_applies_to_new_items_only() {
        let t0 = Instant::now();
        let mut link = Link::new(LinkConfig::delayed(10 * MS), 1);
        link.send(t0, 1u8, 1);
        link.set_config(LinkConfig::lossy(100.0));
        assert_eq!(link.config().loss, 1.0);
        link.send(t0, 2u8, 1);
        assert_eq!(run_out(&mut link), vec![(t0 + 10 * MS, 1)]);
        assert_eq!(link.stats().lost, 1);
    }
}
