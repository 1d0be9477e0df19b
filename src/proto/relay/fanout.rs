//! Fan-out (proto-spec.md §7.3): one byte-bounded queue per subscriber, served round-robin.
//! A queue over its bound drops whole frames, oldest first, for that subscriber only; a
//! subscriber that asked for a rate cap (`max_kbps`, §6.2) is held back by the shared
//! [`TokenBucket`].

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::Instant;

use bytes::Bytes;

use crate::proto::node::Transmit;
use crate::proto::pacer::TokenBucket;
use crate::proto::wire::ReceiverReport;

/// One datagram queued for a subscriber, tagged with its frame id when it is a chunk that
/// may be dropped with its frame.
#[derive(Debug)]
pub(super) struct Queued {
    pub(super) datagram: Bytes,
    pub(super) frame: Option<u32>,
}

impl Queued {
    /// A datagram that is never dropped with a frame (description, audio, answers).
    pub(super) fn single(datagram: Bytes) -> Queued {
        Queued {
            datagram,
            frame: None,
        }
    }
}

/// One subscriber.
#[derive(Debug)]
pub(super) struct Subscriber {
    pub(super) stream: String,
    queue: VecDeque<Queued>,
    queued_bytes: usize,
    pub(super) last_heard: Instant,
    pub(super) permanent: bool,
    in_ready: bool,
    bucket: Option<TokenBucket>,
    skip_frame: Option<u32>,
    pub(super) report: Option<ReceiverReport>,
    pub(super) frames_dropped: u64,
    /// The playout latency it stated in its SUBSCRIBE, ms (0: not stated).
    pub(super) latency_ms: u16,
    /// (chunk count, proactive parity) last sized for its path; cleared when its report or
    /// latency changes.
    pub(super) proactive_memo: Option<(usize, usize)>,
}

impl Subscriber {
    /// Datagrams queued.
    pub(super) fn queued(&self) -> usize {
        self.queue.len()
    }

    /// Bytes queued.
    pub(super) fn queued_bytes(&self) -> usize {
        self.queued_bytes
    }
}

/// What the queues dropped, in all.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Drops {
    /// Whole frames.
    pub(super) frames: u64,
    /// Datagrams.
    pub(super) datagrams: u64,
}

/// Every subscriber's queue and the round-robin schedule over them.
#[derive(Debug)]
pub(super) struct Fanout {
    subs: HashMap<SocketAddr, Subscriber>,
    /// Subscribers with something queued and not rate-blocked, in service order.
    ready: VecDeque<SocketAddr>,
    /// Rate-blocked subscribers and when their bucket allows them again.
    blocked: Vec<(Instant, SocketAddr)>,
    queue_bytes: usize,
    pub(super) drops: Drops,
}

impl Fanout {
    /// Queues of at most `queue_bytes` bytes each.
    pub(super) fn new(queue_bytes: usize) -> Fanout {
        Fanout {
            subs: HashMap::new(),
            ready: VecDeque::new(),
            blocked: Vec::new(),
            queue_bytes,
            drops: Drops::default(),
        }
    }

    /// Adds a subscriber of `stream` with an empty queue, capped at `max_kbps` (0: no
    /// cap). Returns the subscriber it replaced at that address.
    pub(super) fn insert(
        &mut self,
        now: Instant,
        addr: SocketAddr,
        stream: &str,
        max_kbps: u32,
        permanent: bool,
    ) -> Option<Subscriber> {
        let old = self.subs.remove(&addr);
        self.subs.insert(
            addr,
            Subscriber {
                stream: stream.to_owned(),
                queue: VecDeque::new(),
                queued_bytes: 0,
                last_heard: now,
                permanent,
                in_ready: false,
                bucket: (max_kbps > 0).then(|| TokenBucket::for_kbps(now, max_kbps)),
                skip_frame: None,
                report: None,
                frames_dropped: 0,
                latency_ms: 0,
                proactive_memo: None,
            },
        );
        old
    }

    /// Removes a subscriber (its stale schedule entries are skipped later).
    pub(super) fn remove(&mut self, addr: &SocketAddr) -> Option<Subscriber> {
        self.subs.remove(addr)
    }

    pub(super) fn get(&self, addr: &SocketAddr) -> Option<&Subscriber> {
        self.subs.get(addr)
    }

    pub(super) fn get_mut(&mut self, addr: &SocketAddr) -> Option<&mut Subscriber> {
        self.subs.get_mut(addr)
    }

    pub(super) fn len(&self) -> usize {
        self.subs.len()
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = (&SocketAddr, &Subscriber)> {
        self.subs.iter()
    }

    /// Bytes queued over all subscribers.
    pub(super) fn queued_bytes(&self) -> usize {
        self.subs.values().map(|s| s.queued_bytes).sum()
    }

    /// Queues a datagram for one subscriber, at the front for answers that should overtake
    /// media. On overflow drops the oldest whole frames for that subscriber only, and the
    /// rest of a dropped frame when it arrives (§7.3).
    pub(super) fn enqueue(&mut self, addr: SocketAddr, q: Queued, front: bool) {
        let cap = self.queue_bytes;
        let Some(sub) = self.subs.get_mut(&addr) else {
            return;
        };
        if q.frame.is_some() && q.frame == sub.skip_frame {
            self.drops.datagrams += 1;
            return;
        }
        while sub.queued_bytes + q.datagram.len() > cap {
            let Some(old) = sub.queue.pop_front() else {
                break;
            };
            sub.queued_bytes -= old.datagram.len();
            self.drops.datagrams += 1;
            if let Some(f) = old.frame {
                let before = sub.queue.len();
                sub.queue.retain(|e| e.frame != Some(f));
                self.drops.datagrams += (before - sub.queue.len()) as u64;
                sub.queued_bytes = sub.queue.iter().map(|e| e.datagram.len()).sum();
                sub.skip_frame = Some(f);
                sub.frames_dropped += 1;
                self.drops.frames += 1;
            }
        }
        if q.frame.is_some() && q.frame == sub.skip_frame {
            self.drops.datagrams += 1;
            return;
        }
        sub.queued_bytes += q.datagram.len();
        if front {
            sub.queue.push_front(q);
        } else {
            sub.queue.push_back(q);
        }
        if !sub.in_ready {
            sub.in_ready = true;
            self.ready.push_back(addr);
        }
    }

    /// Queues one datagram for every address in `members`.
    pub(super) fn broadcast(
        &mut self,
        members: &[SocketAddr],
        datagram: &Bytes,
        frame: Option<u32>,
    ) {
        for m in members {
            self.enqueue(
                *m,
                Queued {
                    datagram: datagram.clone(),
                    frame,
                },
                false,
            );
        }
    }

    /// The next datagram to send at `now`, round-robin over the subscribers. A subscriber
    /// out of tokens is set aside until [`Fanout::next_wake`].
    pub(super) fn pop(&mut self, now: Instant) -> Option<Transmit> {
        for _ in 0..self.ready.len() {
            let addr = self.ready.pop_front()?;
            let Some(sub) = self.subs.get_mut(&addr) else {
                continue;
            };
            let Some(front_len) = sub.queue.front().map(|q| q.datagram.len()) else {
                sub.in_ready = false;
                continue;
            };
            if let Some(b) = &mut sub.bucket {
                if let Err(retry) = b.take(now, front_len) {
                    sub.in_ready = false;
                    self.blocked.push((retry, addr));
                    continue;
                }
            }
            let Some(q) = sub.queue.pop_front() else {
                continue;
            };
            sub.queued_bytes -= q.datagram.len();
            if sub.queue.is_empty() {
                sub.in_ready = false;
            } else {
                self.ready.push_back(addr);
            }
            return Some(Transmit {
                dest: addr,
                payload: q.datagram,
            });
        }
        None
    }

    /// Whether some subscriber waits for its rate limit.
    pub(super) fn has_blocked(&self) -> bool {
        !self.blocked.is_empty()
    }

    /// When the first rate-blocked subscriber may send again.
    pub(super) fn next_wake(&self) -> Option<Instant> {
        self.blocked.iter().map(|(t, _)| *t).min()
    }

    /// Puts rate-blocked subscribers whose wait is over back into the schedule.
    pub(super) fn wake(&mut self, now: Instant) {
        let mut still = Vec::new();
        for (t, a) in std::mem::take(&mut self.blocked) {
            if t <= now {
                if let Some(s) = self.subs.get_mut(&a) {
                    if !s.in_ready && !s.queue.is_empty() {
                        s.in_ready = true;
                        self.ready.push_back(a);
                    }
                }
            } else {
                still.push((t, a));
            }
        }
        self.blocked = still;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn addr(n: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], n))
    }

    fn chunk(frame: u32, byte: u8, len: usize) -> Queued {
        Queued {
            datagram: Bytes::from(vec![byte; len]),
            frame: Some(frame),
        }
    }

    #[test]
    fn overflow_drops_whole_frames_oldest_first() {
        let t0 = Instant::now();
        let mut f = Fanout::new(1000);
        let (a, b) = (addr(1), addr(2));
        f.insert(t0, a, "s", 0, false);
        f.insert(t0, b, "s", 0, false);
        // Frames 1 and 2, 400 bytes each, to both.
        for (frame, byte) in [(1, 1u8), (1, 1), (2, 2), (2, 2)] {
            f.enqueue(a, chunk(frame, byte, 200), false);
            f.enqueue(b, chunk(frame, byte, 200), false);
        }
        // Only `a` gets frame 3: it overflows and loses frame 1, all of it.
        f.enqueue(a, chunk(3, 3, 300), false);
        assert_eq!(f.get(&a).unwrap().queued_bytes(), 700);
        assert_eq!(f.get(&a).unwrap().queued(), 3);
        assert_eq!(f.get(&a).unwrap().frames_dropped, 1);
        assert_eq!(f.get(&b).unwrap().queued_bytes(), 800);
        assert_eq!(
            f.drops,
            Drops {
                frames: 1,
                datagrams: 2
            }
        );
        // The rest of a dropped frame is dropped when it arrives.
        f.enqueue(a, chunk(1, 1, 10), false);
        assert_eq!(f.drops.datagrams, 3);
        // 400 more bytes push frame 2 (400 bytes) out, whole.
        f.enqueue(a, Queued::single(Bytes::from(vec![9; 400])), false);
        assert_eq!(f.get(&a).unwrap().queued_bytes(), 700);
        assert_eq!(f.drops.datagrams, 5);
        assert_eq!(f.drops.frames, 2);
        let mut out = Vec::new();
        while let Some(t) = f.pop(t0) {
            if t.dest == a {
                out.push(t.payload[0]);
            }
        }
        assert_eq!(out, vec![3, 9]);
        assert_eq!(f.queued_bytes(), 0);
    }

    #[test]
    fn round_robin_and_answers_first() {
        let t0 = Instant::now();
        let mut f = Fanout::new(10_000);
        let (a, b) = (addr(1), addr(2));
        f.insert(t0, a, "s", 0, false);
        f.insert(t0, b, "s", 0, false);
        f.broadcast(&[a, b], &Bytes::from_static(b"m1"), Some(1));
        f.broadcast(&[a, b], &Bytes::from_static(b"m2"), Some(1));
        f.enqueue(b, Queued::single(Bytes::from_static(b"rx")), true);
        let out: Vec<(u16, Bytes)> = std::iter::from_fn(|| f.pop(t0))
            .map(|t| (t.dest.port(), t.payload))
            .collect();
        let want: Vec<(u16, &[u8])> =
            vec![(1, b"m1"), (2, b"rx"), (1, b"m2"), (2, b"m1"), (2, b"m2")];
        assert_eq!(
            out,
            want.into_iter()
                .map(|(p, d)| (p, Bytes::from_static(d)))
                .collect::<Vec<_>>()
        );
    }

    #[test]
    fn rate_limit_holds_a_subscriber_back_until_its_tokens_refill() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut f = Fanout::new(1 << 20);
        let (a, b) = (addr(1), addr(2));
        // 8 kbit/s = 1000 bytes/s, 16 000 bytes of burst.
        f.insert(t0, a, "s", 8, false);
        f.insert(t0, b, "s", 0, false);
        for _ in 0..3 {
            f.broadcast(&[a, b], &Bytes::from(vec![0; 8250]), None);
        }
        let sent = |f: &mut Fanout, now| {
            std::iter::from_fn(|| f.pop(now))
                .map(|t| t.dest.port())
                .collect::<Vec<_>>()
        };
        // Two datagrams use the burst and 500 bytes of debt; `b` is not held back.
        assert_eq!(sent(&mut f, t0), vec![1, 2, 1, 2, 2]);
        assert!(f.has_blocked());
        assert_eq!(f.next_wake(), Some(t0 + ms(500)));
        f.wake(t0 + ms(499));
        assert_eq!(sent(&mut f, t0 + ms(499)), Vec::<u16>::new());
        f.wake(t0 + ms(500));
        assert!(!f.has_blocked());
        // Exactly repaid is not enough: the bucket needs a token left.
        assert_eq!(sent(&mut f, t0 + ms(500)), Vec::<u16>::new());
        let wake = f.next_wake().unwrap();
        assert_eq!(wake, t0 + ms(500) + Duration::from_micros(100));
        f.wake(wake);
        assert_eq!(sent(&mut f, wake), vec![1]);
    }
}
