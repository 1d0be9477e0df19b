//! End of stream at the viewer (proto-spec.md §6.9): an END from the stream's source is
//! held until the last media it names has had its playout time, then handed to the
//! application once as [`ViewerEvent::Ended`]. Repeated ENDs (the publisher sends several
//! against loss) change nothing.

use std::time::{Duration, Instant};

use super::{Viewer, ViewerEvent, ViewerTimer};

/// Time after the last media's playout time at which the end is announced: the last audio
/// block (at most a few tens of ms long) has been handed out by then.
pub const END_MARGIN: Duration = Duration::from_millis(50);

impl Viewer {
    /// An END from source `ssrc`: arms the end timer at the playout time of `last_pts`
    /// (now if it has passed or the stream never started) plus [`END_MARGIN`].
    pub(super) fn on_end(&mut self, now: Instant, ssrc: u32, last_pts: u64) {
        self.sub.on_traffic(now);
        if self.ssrc.is_some_and(|s| s != ssrc) {
            self.stats.unknown_sender += 1;
            return;
        }
        if self.ended || self.timers.get(ViewerTimer::End).is_some() {
            return;
        }
        let at = self.clock.playout(last_pts).map_or(now, |t| t.max(now));
        self.timers.set(ViewerTimer::End, at + END_MARGIN);
    }

    /// Announces the end once its time has come.
    pub(super) fn poll_end(&mut self, now: Instant) {
        if self.timers.is_expired(ViewerTimer::End, now) {
            self.timers.stop(ViewerTimer::End);
            self.ended = true;
            self.events.push_back(ViewerEvent::Ended);
        }
    }

    /// Whether the stream's source said it ended and everything before has played.
    pub fn ended(&self) -> bool {
        self.ended
    }
}
