//! The sender's pacer (proto-spec.md §7.1): spreads a frame's chunks over a pacing window so
//! they do not leave in one burst that overflows switch and receiver buffers.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::Bytes;

/// A datagram queue with release times.
#[derive(Debug, Clone)]
pub struct Pacer {
    queue: VecDeque<(Instant, Bytes)>,
    urgent: VecDeque<Bytes>,
    last_release: Option<Instant>,
    max_backlog: Duration,
}

impl Pacer {
    /// A pacer that never lets its schedule fall more than `max_backlog` behind real time
    /// (if the source outpaces the window, later frames start at once instead of queueing
    /// without bound).
    pub fn new(max_backlog: Duration) -> Pacer {
        Pacer {
            queue: VecDeque::new(),
            urgent: VecDeque::new(),
            last_release: None,
            max_backlog,
        }
    }

    /// Schedules one frame's datagrams evenly over `window`, after what is already queued.
    pub fn push_frame(&mut self, now: Instant, datagrams: Vec<Bytes>, window: Duration) {
        let n = datagrams.len() as u32;
        if n == 0 {
            return;
        }
        let mut start = self.last_release.map_or(now, |t| t.max(now));
        if start > now + self.max_backlog {
            start = now + self.max_backlog;
        }
        let spacing = window / n;
        for (i, d) in datagrams.into_iter().enumerate() {
            let at = start + spacing * i as u32;
            self.queue.push_back((at, d));
        }
        self.last_release = Some(start + spacing * n);
    }

    /// Queues a datagram to leave before any paced one (audio, control).
    pub fn push_urgent(&mut self, datagram: Bytes) {
        self.urgent.push_back(datagram);
    }

    /// When the next paced datagram is due (`None` when only urgent ones or none wait).
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.queue.front().map(|(t, _)| *t)
    }

    /// The next datagram due at `now`.
    pub fn pop(&mut self, now: Instant) -> Option<Bytes> {
        if let Some(d) = self.urgent.pop_front() {
            return Some(d);
        }
        match self.queue.front() {
            Some((t, _)) if *t <= now => self.queue.pop_front().map(|(_, d)| d),
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
}
