//! Rate limiting of the small answers a node sends to sources it does not know (REJECT,
//! the secure layer's refusals, §6.3, §8.3): at most one per [`REFUSAL_INTERVAL`] per source
//! address and [`MAX_REFUSALS_PER_SEC`] a second in all, so that spoofed sources cannot turn
//! them into a flood towards a victim.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// A node answers one source with at most one refusal per this interval.
pub const REFUSAL_INTERVAL: Duration = Duration::from_millis(200);
/// The most refusals a node sends per second, all sources together.
pub const MAX_REFUSALS_PER_SEC: u32 = 100;
/// Sources remembered (for rate limiting and counting); past it the table starts again.
const MAX_SOURCES: usize = 1024;

#[derive(Debug, Clone, Copy)]
struct Source {
    last_sent: Option<Instant>,
    count: u64,
}

/// What [`RefusalLimiter::note`] decided for one refused datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    /// The source's first refusal (since it was last forgotten): worth one log line.
    pub first: bool,
    /// An answer may go now.
    pub may_send: bool,
}

/// Counts refused datagrams by source and says when an answer may go. Bounded: at most
/// 1024 sources are remembered.
#[derive(Debug, Default)]
pub struct RefusalLimiter {
    sources: HashMap<SocketAddr, Source>,
    /// Answers sent in the current second (all sources), and when that second began.
    budget: (Option<Instant>, u32),
}

impl RefusalLimiter {
    /// Counts one refused datagram from `peer` at `now`; an answer it allows is taken as
    /// sent.
    pub fn note(&mut self, now: Instant, peer: SocketAddr) -> Refusal {
        if self.sources.len() >= MAX_SOURCES && !self.sources.contains_key(&peer) {
            self.sources.clear();
        }
        let s = self.sources.entry(peer).or_insert(Source {
            last_sent: None,
            count: 0,
        });
        s.count += 1;
        let due = s
            .last_sent
            .is_none_or(|t| now.saturating_duration_since(t) >= REFUSAL_INTERVAL);
        let budget = &mut self.budget;
        if budget
            .0
            .is_none_or(|t| now.saturating_duration_since(t) >= Duration::from_secs(1))
        {
            *budget = (Some(now), 0);
        }
        let may_send = due && budget.1 < MAX_REFUSALS_PER_SEC;
        if may_send {
            budget.1 += 1;
            s.last_sent = Some(now);
        }
        Refusal {
            first: s.count == 1,
            may_send,
        }
    }

    /// Refused datagrams by source address, sorted by address.
    pub fn counts(&self) -> Vec<(SocketAddr, u64)> {
        let mut v: Vec<_> = self.sources.iter().map(|(a, s)| (*a, s.count)).collect();
        v.sort();
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn one_answer_per_interval_per_source_and_a_budget_for_all() {
        let t0 = Instant::now();
        let mut l = RefusalLimiter::default();
        let a = l.note(t0, addr(1));
        assert_eq!(
            a,
            Refusal {
                first: true,
                may_send: true
            }
        );
        let again = l.note(t0 + REFUSAL_INTERVAL / 2, addr(1));
        assert_eq!(
            again,
            Refusal {
                first: false,
                may_send: false
            }
        );
        assert!(l.note(t0 + REFUSAL_INTERVAL, addr(1)).may_send);
        // Other sources within the same second use up the shared budget.
        let later = t0 + REFUSAL_INTERVAL;
        let sent = (2..=200)
            .filter(|p| l.note(later, addr(*p)).may_send)
            .count();
        assert_eq!(sent as u32, MAX_REFUSALS_PER_SEC - 2);
        assert!(l.note(t0 + Duration::from_secs(1), addr(300)).may_send);
        assert_eq!(l.counts()[0], (addr(1), 3));
    }
}
