//! A playout latency the stream cannot meet (proto-spec.md §7.2): when many recent frames are
//! dropped because they were not whole by their playout time, the viewer raises its latency
//! to what the frames measurably need and says so once ([`ViewerEvent::LatencyRaised`]),
//! instead of playing nothing.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::{Viewer, ViewerEvent};
use crate::proto::reassembler::Partial;

/// Frames judged together for a quick raise.
const WINDOW: usize = 30;
/// Misses among them that call for a raise: 1 in 15 frames, far above what loss leaves once
/// repaired (a few per thousand, and those are not counted: only frames whose own chunks were
/// still arriving at playout are), yet reached within seconds by a latency a few frames in a
/// hundred miss.
const MISSES: usize = 2;
/// Frames judged together for a slow raise: misses too sparse ever to fall 2 in 30 frames
/// still cost a viewer about 1 % of the picture.
const LONG_WINDOW: usize = 300;
/// Misses among them that call for a raise (1 %).
const LONG_MISSES: usize = 3;
/// Margin over the largest need measured.
const MARGIN: Duration = Duration::from_millis(2);

/// Outcomes of recent frames and what the missed ones needed.
#[derive(Debug, Default)]
pub(super) struct LatencyGuard {
    /// Recent frames: `Some(need)` for a frame not whole by its playout time, `None` for one
    /// played.
    recent: VecDeque<Option<Duration>>,
    /// Raises so far.
    pub raises: u64,
}

impl LatencyGuard {
    /// Records one frame's outcome; returns the largest need among the misses when they
    /// call for a raise (2 in the last 30 frames, or 3 in the last 300).
    fn note(&mut self, outcome: Option<Duration>) -> Option<Duration> {
        if self.recent.len() >= LONG_WINDOW {
            self.recent.pop_front();
        }
        self.recent.push_back(outcome);
        let quick = self.recent.iter().rev().take(WINDOW).flatten().count();
        let slow = self.recent.iter().flatten().count();
        if quick < MISSES && slow < LONG_MISSES {
            return None;
        }
        let worst = self.recent.iter().flatten().copied().max();
        self.recent.clear();
        worst
    }
}

/// How long after its zero-latency playout time a frame would have been whole: its chunks so
/// far extrapolated to all of them (an incomplete frame), from `zero` (playout time minus the
/// latency).
fn need_of(p: &Partial, zero: Instant) -> Duration {
    let span = p.last_arrival.saturating_duration_since(p.first_arrival);
    let received = p.received().max(1) as u32;
    let whole = span * u32::from(p.chunk_count()) / received;
    p.first_arrival.saturating_duration_since(zero) + whole
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

impl Viewer {
    /// A frame was played (`missed` false) or dropped at or after its playout time (`missed`
    /// true); raises the latency when many recent frames were still arriving at theirs.
    pub(super) fn judge_latency(&mut self, frame_id: u32, pts: u64, missed: bool) {
        let latency = self.clock.latency();
        let need = if missed {
            let zero = self.clock.playout(pts).map(|t| t - latency);
            match (self.reasm.get(frame_id), zero) {
                // Only a frame whose own chunks were still coming in at its playout time
                // needed more time; one whose chunks stopped early lost some (repair's
                // business, not the latency's).
                (Some(p), Some(zero)) => {
                    let last = self.fec.last_original(frame_id).unwrap_or(p.last_arrival);
                    let still_arriving = last + latency / 4 >= zero + latency;
                    // Or nothing of it is lost: what it holds is everything the stream sent
                    // so far (no later sequence number arrived), so its tail was simply not
                    // there yet.
                    let tail_pending = p.first_seq.zip(self.video_loss.highest()).is_some_and(
                        |(first, highest)| {
                            let held = highest.0.saturating_sub(first.0) + 1;
                            highest.0 >= first.0
                                && held == p.received() as u64
                                && held < u64::from(p.chunk_count())
                        },
                    );
                    let need = need_of(p, zero);
                    log::debug!(
                        "viewer: frame {frame_id} missed its playout: {}/{} chunks, first {:.1} ms \
                         and last {:.1} ms after its zero-latency time (latency {:.1} ms), \
                         need {:.1} ms",
                        p.received(),
                        p.chunk_count(),
                        ms(p.first_arrival.saturating_duration_since(zero)),
                        ms(last.saturating_duration_since(zero)),
                        ms(latency),
                        ms(need),
                    );
                    (still_arriving || tail_pending).then_some(need)
                }
                // Whole, but after its playout time: it needed until its last original
                // chunk came, if that was still arriving then (a late repair is repair's
                // business).
                (None, Some(zero)) => self
                    .fec
                    .last_original(frame_id)
                    .filter(|last| *last + latency / 4 >= zero + latency)
                    .map(|last| {
                        let need = last.saturating_duration_since(zero);
                        log::debug!(
                            "viewer: frame {frame_id} came whole after its playout: last \
                             original chunk {:.1} ms after its zero-latency time (latency \
                             {:.1} ms)",
                            ms(need),
                            ms(latency),
                        );
                        need
                    }),
                _ => None,
            }
        } else {
            None
        };
        let Some(worst) = self.latency_guard.note(need) else {
            return;
        };
        let from = self.clock.latency();
        let to = (worst + MARGIN).max(from + Duration::from_millis(1));
        // Whole milliseconds, as users state it.
        let to = Duration::from_millis(to.as_millis() as u64 + 1);
        if to <= from || to > from + Duration::from_secs(2) {
            return;
        }
        self.clock.set_latency(to);
        self.latency_guard.raises += 1;
        self.sub
            .set_latency_ms(to.as_millis().min(u16::MAX.into()) as u16);
        self.events.push_back(ViewerEvent::LatencyRaised {
            from,
            to,
            need: worst,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(g: &mut LatencyGuard, misses_at: &[usize], frames: usize) -> Vec<usize> {
        (0..frames)
            .filter(|i| {
                let need = misses_at
                    .contains(i)
                    .then(|| Duration::from_millis(3 + *i as u64 % 5));
                g.note(need).is_some()
            })
            .collect()
    }

    #[test]
    fn two_misses_close_together_raise_at_once() {
        let mut g = LatencyGuard::default();
        assert_eq!(feed(&mut g, &[10, 25], 100), vec![25]);
    }

    #[test]
    fn sparse_misses_raise_at_the_third_in_300_frames() {
        let mut g = LatencyGuard::default();
        // 1 miss every 100 frames: never 2 in 30, but 3 in 300.
        assert_eq!(feed(&mut g, &[50, 150, 250, 350], 400), vec![250]);
    }

    #[test]
    fn misses_further_apart_than_the_long_window_never_raise() {
        let mut g = LatencyGuard::default();
        assert!(feed(&mut g, &[0, 200, 400, 600, 800], 1_000).is_empty());
    }

    #[test]
    fn the_raise_is_for_the_largest_need_in_the_window() {
        let mut g = LatencyGuard::default();
        assert_eq!(g.note(Some(Duration::from_millis(7))), None);
        assert_eq!(
            g.note(Some(Duration::from_millis(4))),
            Some(Duration::from_millis(7))
        );
    }
}
