//! Round-trip time estimation, smoothed as TCP does (RFC 6298), proto-spec.md §6.4.

use std::time::Duration;

/// Smoothed RTT and RTT variation.
#[derive(Debug, Clone, Copy)]
pub struct RttEstimator {
    srtt: Duration,
    rttvar: Duration,
    latest: Option<Duration>,
}

impl RttEstimator {
    /// Starts from an initial guess (used until the first sample).
    pub fn new(initial: Duration) -> RttEstimator {
        RttEstimator {
            srtt: initial,
            rttvar: initial / 2,
            latest: None,
        }
    }

    /// Adds one measured round trip.
    pub fn sample(&mut self, rtt: Duration) {
        if self.latest.is_none() {
            self.srtt = rtt;
            self.rttvar = rtt / 2;
        } else {
            let diff = self.srtt.abs_diff(rtt);
            self.rttvar = (self.rttvar * 3 + diff) / 4;
            self.srtt = (self.srtt * 7 + rtt) / 8;
        }
        self.latest = Some(rtt);
    }

    /// The smoothed RTT.
    pub fn srtt(&self) -> Duration {
        self.srtt
    }

    /// The RTT variation.
    pub fn rttvar(&self) -> Duration {
        self.rttvar
    }

    /// Whether any sample was taken yet.
    pub fn has_sample(&self) -> bool {
        self.latest.is_some()
    }

    /// How long to wait before asking again for something not yet answered (§7.2):
    /// `max(SRTT + 2 RTTVAR, floor)`: tighter than TCP's RTO, since a late retransmission costs
    /// a frame while a spurious one costs one datagram.
    pub fn retry_interval(&self, floor: Duration) -> Duration {
        (self.srtt + self.rttvar * 2).max(floor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converges_on_a_steady_rtt() {
        let mut r = RttEstimator::new(Duration::from_millis(100));
        r.sample(Duration::from_millis(10));
        assert_eq!(r.srtt(), Duration::from_millis(10));
        for _ in 0..50 {
            r.sample(Duration::from_millis(20));
        }
        assert!(r.srtt() > Duration::from_micros(19_900) && r.srtt() <= Duration::from_millis(20));
        assert!(r.rttvar() < Duration::from_millis(1));
        assert_eq!(
            r.retry_interval(Duration::from_millis(50)),
            Duration::from_millis(50)
        );
    }
}
