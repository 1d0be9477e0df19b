//! A stream's headline figures, under the same names wherever they appear: `play
//! --stats-json` (`figures`), the relay's and server's `/stats.json`, the `/` page and
//! `/metrics` (as `framecast_stream_<name>`).

use std::time::Instant;

use serde::Serialize;

use crate::proto::viewer::ViewerStats;

/// A stream's headline figures as one viewer sees them.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct StreamFigures {
    /// Frames played per second (whole frames, at their playout time).
    pub fps: f64,
    /// Received bitrate, Mbit/s (every datagram, parity and retransmissions included).
    pub mbit_per_s: f64,
    /// Viewers of the stream at this relay or server (framecast subscribers, not counting
    /// the relay's own HTTP/RTP tap); 1 for `play` itself.
    pub viewers: u64,
    /// Datagrams seen missing, percent of those expected (before any repair).
    pub loss_percent: f64,
    /// Datagrams repaired: retransmitted in time or restored from parity.
    pub recovered: u64,
    /// Frames dropped because they were not whole by their playout time.
    pub late: u64,
}

/// Turns a viewer's cumulative counters into [`StreamFigures`], rates over the time since the
/// previous sample.
#[derive(Debug, Clone)]
pub struct FigureMeter {
    last: (Instant, u64, u64),
}

impl FigureMeter {
    /// A meter whose first rates count from `now`.
    pub fn new(now: Instant) -> FigureMeter {
        FigureMeter { last: (now, 0, 0) }
    }

    /// The figures at `now`; rates cover the time since the last call (or [`Self::new`]).
    pub fn sample(&mut self, now: Instant, s: &ViewerStats, viewers: u64) -> StreamFigures {
        let (t0, frames0, bytes0) = self.last;
        let dt = now.saturating_duration_since(t0).as_secs_f64();
        let rate = |x: u64, x0: u64| {
            if dt > 0.0 {
                x.saturating_sub(x0) as f64 / dt
            } else {
                0.0
            }
        };
        let detected = s.video.detected + s.audio.detected;
        let expected = s.datagrams + detected;
        let f = StreamFigures {
            fps: rate(s.frames_played, frames0),
            mbit_per_s: rate(s.bytes, bytes0) * 8.0 / 1e6,
            viewers,
            loss_percent: if expected > 0 {
                100.0 * detected as f64 / expected as f64
            } else {
                0.0
            },
            recovered: s.video.recovered + s.audio.recovered + s.fec.chunks_restored,
            late: s.frames_late,
        };
        self.last = (now, s.frames_played, s.bytes);
        f
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn rates_cover_the_interval_since_the_last_sample() {
        let t0 = Instant::now();
        let mut m = FigureMeter::new(t0);
        let mut s = ViewerStats {
            frames_played: 60,
            bytes: 2_000_000,
            datagrams: 990,
            frames_late: 2,
            ..ViewerStats::default()
        };
        s.video.detected = 10;
        s.video.recovered = 9;
        s.fec.chunks_restored = 1;
        let f = m.sample(t0 + Duration::from_secs(2), &s, 3);
        assert_eq!(
            f,
            StreamFigures {
                fps: 30.0,
                mbit_per_s: 8.0,
                viewers: 3,
                loss_percent: 1.0,
                recovered: 10,
                late: 2
            }
        );
        s.frames_played = 90;
        assert_eq!(m.sample(t0 + Duration::from_secs(3), &s, 3).fps, 30.0);
    }
}
