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
mod tests;
