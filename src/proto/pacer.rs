//! The sender's pacer (proto-spec.md §7.1): spreads a frame's chunks over a pacing window so
//! they do not leave in one burst that overflows switch and receiver buffers. Also home of
//! the one token bucket the protocol core uses to cap a byte rate: the pacer's optional
//! rate cap and the relay's per-subscriber `max_kbps` limit (§6.2, §7.3) share it.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::Bytes;

/// The longest a [`TokenBucket`] asks to wait at a time.
const MAX_WAIT: Duration = Duration::from_secs(3600);

/// A byte-rate limiter. It may go into debt by one datagram: a datagram is allowed while
/// any tokens are left, and the next one waits until the debt is repaid, so the long-run
/// rate is exact whatever the datagram sizes.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    /// Bytes per second.
    rate: f64,
    /// Most tokens saved up, bytes.
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket refilling at `rate` bytes per second, holding at most `burst` bytes.
    pub fn new(now: Instant, rate: f64, burst: f64) -> TokenBucket {
        TokenBucket {
            rate,
            burst,
            tokens: burst,
            last: now,
        }
    }

    /// The relay's bucket for a subscriber asking for at most `kbps` kilobits per second
    /// (§6.2): a burst of a tenth of a second, at least 16 000 bytes.
    pub fn for_kbps(now: Instant, kbps: u32) -> TokenBucket {
        let rate = kbps as f64 * 1000.0 / 8.0;
        TokenBucket::new(now, rate, (rate / 10.0).max(16_000.0))
    }

    /// Takes `bytes` tokens if any are left at `now`; otherwise returns when to try again
    /// (at least 100 µs later).
    pub fn take(&mut self, now: Instant, bytes: usize) -> Result<(), Instant> {
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + dt * self.rate).min(self.burst);
        self.last = self.last.max(now);
        if self.tokens <= 0.0 {
            // A zero or absurd rate waits at most an hour at a time, never overflows.
            let wait = Duration::try_from_secs_f64(-self.tokens / self.rate)
                .unwrap_or(MAX_WAIT)
                .clamp(Duration::from_micros(100), MAX_WAIT);
            return Err(now + wait);
        }
        self.tokens -= bytes as f64;
        Ok(())
    }
}

/// The shortest time between two of a frame's release times (§7.1): each release wakes the
/// sender's thread (and, on one host, the receiver's), and a wake-up costs more CPU than the
/// few datagrams a 1 ms tick carries: a 720p30 frame's 40 datagrams spread over 16 ms woke
/// `serve` 17 times; in 4 ms slices it wakes 4 times (its context switches over an 8 s 720p
/// run fell from about 8,100 to 2,900, 3.5 % less CPU than 2 ms slices), with the same
/// capture-to-playout latency at `play --latency 10` and 40.
pub const MIN_SLICE: Duration = Duration::from_millis(4);

/// A datagram queue with release times.
#[derive(Debug, Clone)]
pub struct Pacer<T = Bytes> {
    queue: VecDeque<(Instant, T)>,
    urgent: VecDeque<T>,
    last_release: Option<Instant>,
    max_backlog: Duration,
    /// Optional byte-rate cap on paced (not urgent) datagrams.
    cap: Option<TokenBucket>,
    /// Set while the cap holds the head back: when to try again.
    capped_until: Option<Instant>,
}

/// What the pacer needs to know of a queued item.
pub trait Paced {
    /// Bytes it takes on the wire.
    fn wire_len(&self) -> usize;
}

impl Paced for Bytes {
    fn wire_len(&self) -> usize {
        self.len()
    }
}

impl<T: Paced> Pacer<T> {
    /// A pacer that never lets its schedule fall more than `max_backlog` behind real time
    /// (if the source outpaces the window, later frames start at once instead of queueing
    /// without bound).
    pub fn new(max_backlog: Duration) -> Pacer<T> {
        Pacer {
            queue: VecDeque::new(),
            urgent: VecDeque::new(),
            last_release: None,
            max_backlog,
            cap: None,
            capped_until: None,
        }
    }

    /// Caps the rate of paced datagrams with `bucket` (none by default).
    pub fn set_rate_cap(&mut self, bucket: Option<TokenBucket>) {
        self.cap = bucket;
        self.capped_until = None;
    }

    /// Schedules one frame's datagrams evenly over `window`, in slices at least [`MIN_SLICE`]
    /// apart, after what is already queued.
    pub fn push_frame(&mut self, now: Instant, datagrams: Vec<T>, window: Duration) {
        let n = datagrams.len() as u32;
        if n == 0 {
            return;
        }
        let mut start = self.last_release.map_or(now, |t| t.max(now));
        if start > now + self.max_backlog {
            start = now + self.max_backlog;
        }
        // Slices of at least MIN_SLICE (at least two when the frame has two datagrams):
        // datagram i of n leaves with slice floor(i × slices / n), at its share of the window.
        let slices = u32::try_from(window.as_nanos() / MIN_SLICE.as_nanos())
            .unwrap_or(u32::MAX)
            .max(2)
            .min(n);
        for (i, d) in datagrams.into_iter().enumerate() {
            let slice = (u64::from(i as u32) * u64::from(slices) / u64::from(n)) as u32;
            let at = start + window * slice / slices;
            self.queue.push_back((at, d));
        }
        self.last_release = Some(start + window);
    }

    /// Queues a datagram to leave before any paced one (audio, control).
    pub fn push_urgent(&mut self, datagram: T) {
        self.urgent.push_back(datagram);
    }

    /// When the next paced datagram is due (`None` when only urgent ones or none wait).
    pub fn poll_timeout(&self) -> Option<Instant> {
        let due = self.queue.front().map(|(t, _)| *t)?;
        Some(self.capped_until.map_or(due, |c| c.max(due)))
    }

    /// The next datagram due at `now`.
    pub fn pop(&mut self, now: Instant) -> Option<T> {
        if let Some(d) = self.urgent.pop_front() {
            return Some(d);
        }
        match self.queue.front() {
            Some((t, d)) if *t <= now => {
                if let Some(b) = &mut self.cap {
                    if let Err(retry) = b.take(now, d.wire_len()) {
                        self.capped_until = Some(retry);
                        return None;
                    }
                }
                self.capped_until = None;
                self.queue.pop_front().map(|(_, d)| d)
            }
            _ => None,
        }
    }

    /// Datagrams waiting.
    pub fn len(&self) -> usize {
        self.queue.len() + self.urgent.len()
    }

    /// True when nothing waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spreads_a_frame_over_the_window() {
        let t0 = Instant::now();
        let mut p = Pacer::new(Duration::from_millis(100));
        let dg: Vec<Bytes> = (0..4u8).map(|i| Bytes::from(vec![i])).collect();
        p.push_frame(t0, dg, Duration::from_millis(20));
        p.push_urgent(Bytes::from_static(b"a"));
        assert_eq!(p.pop(t0).unwrap(), Bytes::from_static(b"a"));
        assert_eq!(p.pop(t0).unwrap()[0], 0);
        assert!(p.pop(t0).is_none());
        assert_eq!(p.poll_timeout(), Some(t0 + Duration::from_millis(5)));
        assert_eq!(p.pop(t0 + Duration::from_millis(5)).unwrap()[0], 1);
        // The next frame queues behind the first.
        p.push_frame(
            t0,
            vec![Bytes::from_static(b"x")],
            Duration::from_millis(20),
        );
        let t = t0 + Duration::from_millis(20);
        assert_eq!(p.pop(t).unwrap()[0], 2);
        assert_eq!(p.pop(t).unwrap()[0], 3);
        assert_eq!(p.pop(t).unwrap(), Bytes::from_static(b"x"));
        assert!(p.is_empty());
    }

    #[test]
    fn releases_are_sliced_at_least_min_slice_apart() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut p = Pacer::new(ms(100));
        // 40 datagrams over 16 ms: 4 slices of 10, 4 ms apart.
        let dg: Vec<Bytes> = (0..40u8).map(|i| Bytes::from(vec![i])).collect();
        p.push_frame(t0, dg, ms(16));
        let times: Vec<Instant> = p.queue.iter().map(|(t, _)| *t).collect();
        for (i, t) in times.iter().enumerate() {
            assert_eq!(*t, t0 + ms(4) * (i as u32 / 10), "datagram {i}");
        }
        // A window shorter than two slices still has two releases.
        let mut p = Pacer::new(ms(100));
        let dg: Vec<Bytes> = (0..5u8).map(|i| Bytes::from(vec![i])).collect();
        p.push_frame(t0, dg, ms(3));
        let times: Vec<Instant> = p.queue.iter().map(|(t, _)| *t).collect();
        let half = t0 + ms(3) / 2;
        assert_eq!(times, [t0, t0, t0, half, half]);
        // The next frame starts where the window ended.
        p.push_frame(t0, vec![Bytes::from_static(b"x")], ms(3));
        assert_eq!(p.queue.back().unwrap().0, t0 + ms(3));
    }

    #[test]
    fn backlog_is_capped() {
        let t0 = Instant::now();
        let mut p = Pacer::new(Duration::from_millis(50));
        for _ in 0..100 {
            p.push_frame(
                t0,
                vec![Bytes::from_static(b"x")],
                Duration::from_millis(30),
            );
        }
        let last = p.queue.back().unwrap().0;
        assert!(last <= t0 + Duration::from_millis(50));
    }

    #[test]
    fn token_bucket_goes_into_debt_by_one_datagram() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        // 1000 bytes/s, 100 bytes of burst.
        let mut b = TokenBucket::new(t0, 1000.0, 100.0);
        assert_eq!(b.take(t0, 350), Ok(()));
        // 250 bytes of debt: repaid after 250 ms.
        assert_eq!(b.take(t0, 1), Err(t0 + ms(250)));
        assert!(b.take(t0 + ms(249), 1).is_err());
        assert_eq!(b.take(t0 + ms(251), 50), Ok(()));
        assert!(b.take(t0 + ms(251), 1).is_err());
        assert_eq!(TokenBucket::for_kbps(t0, 8).take(t0, 16_000), Ok(()));
        let mut zero = TokenBucket::new(t0, 0.0, 0.0);
        assert_eq!(zero.take(t0, 1), Err(t0 + MAX_WAIT));
    }

    #[test]
    fn rate_cap_holds_paced_datagrams_back() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut p = Pacer::new(ms(100));
        p.set_rate_cap(Some(TokenBucket::new(t0, 1000.0, 10.0)));
        let dg: Vec<Bytes> = (0..2u8).map(|i| Bytes::from(vec![i; 260])).collect();
        p.push_frame(t0, dg, Duration::ZERO);
        assert_eq!(p.pop(t0).unwrap()[0], 0);
        // 250 bytes of debt at 1000 bytes/s.
        assert!(p.pop(t0).is_none());
        assert_eq!(p.poll_timeout(), Some(t0 + ms(250)));
        assert!(p.pop(t0 + ms(250)).is_none());
        assert_eq!(p.pop(t0 + ms(251)).unwrap()[0], 1);
        assert!(p.is_empty());
    }
}
