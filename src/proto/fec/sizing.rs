//! How many symbols to send, from the loss rate receivers report (proto-spec.md §7.6).
//!
//! Losses are modelled as independent with probability `loss` per datagram. Every function is
//! pure, bounded (loops run at most [`MAX_PARITY`] + [`MAX_FEC_DATA`] times) and treats a
//! hostile or meaningless `loss` (NaN, negative, ≥ 1) as clamped to `0..=MAX_LOSS`.

use crate::proto::fec::{MAX_FEC_DATA, MAX_PARITY, parity_space};

/// Highest loss rate the sizing believes (reports above are clamped): beyond it FEC cannot keep
/// frames anyway, and the sizes would explode.
pub const MAX_LOSS: f64 = 0.5;
/// Default chance that a frame's proactive parity alone suffices. Lower than a frame target
/// on purpose: repair rounds (§7.6) fix the rest for fewer bytes than more proactive parity.
pub const PROACTIVE_TARGET: f64 = 0.8;
/// Default chance that one repair round (request and answers) restores the frame.
pub const REPAIR_TARGET: f64 = 0.99;

fn clamp_loss(loss: f64) -> f64 {
    if loss.is_nan() {
        0.0
    } else {
        loss.clamp(0.0, MAX_LOSS)
    }
}

/// A reported loss fraction in 1/65536 (the `loss_q16` field of §6.6) as a probability.
pub fn loss_from_q16(q: u16) -> f64 {
    f64::from(q) / 65536.0
}

/// A reported mean burst length in 1/256 (the `burst_q8` field of §6.6); infinite (unknown)
/// for 0.
pub fn burst_from_q8(q: u16) -> f64 {
    if q == 0 {
        f64::INFINITY
    } else {
        (f64::from(q) / 256.0).max(1.0)
    }
}

/// A mean burst length (≥ 1) as `burst_q8` (§6.6), saturating at 65535; 0 (not stated) when
/// unknown (infinite or NaN).
pub fn burst_to_q8(burst: f64) -> u16 {
    if burst.is_finite() {
        (burst.max(1.0) * 256.0).round().min(65535.0) as u16
    } else {
        0
    }
}

/// A loss fraction (0..=1) as `loss_q16` (§6.6), saturating at 65535.
pub fn loss_to_q16(loss: f64) -> u16 {
    (loss * 65536.0).round().clamp(0.0, 65535.0) as u16
}

/// P(X ≤ x) for X ~ Binomial(n, p), summed term by term in f64 (n is bounded by the callers).
pub fn binomial_cdf(n: usize, p: f64, x: usize) -> f64 {
    if x >= n {
        return 1.0;
    }
    let p = p.clamp(0.0, 1.0);
    if p == 0.0 {
        return 1.0;
    }
    if p == 1.0 {
        return 0.0;
    }
    let q = 1.0 - p;
    // pmf(0) = q^n, pmf(i+1) = pmf(i) · (n−i)/(i+1) · p/q. In log space for the start, so
    // that q^n does not underflow for large n.
    let mut log_pmf = n as f64 * q.ln();
    let ratio = (p / q).ln();
    let mut sum = 0.0;
    for i in 0..=x {
        sum += log_pmf.exp();
        log_pmf += ((n - i) as f64 / (i + 1) as f64).ln() + ratio;
    }
    sum.min(1.0)
}

/// Proactive parity for a frame of `k` data chunks: the smallest r such that of the frame's
/// k + r symbols, sent in a row over a path with mean loss `loss` and mean burst
/// `mean_burst` (the channel of [`repair_count`]), ≥ k arrive with probability ≥ `target`;
/// at most [`parity_space`]`(k)`. 0 when `loss` is 0.
pub fn proactive_parity(k: usize, loss: f64, mean_burst: f64, target: f64) -> usize {
    let k = k.min(MAX_FEC_DATA);
    if k == 0 {
        return 0;
    }
    let space = parity_space(k);
    arrivals_needed(k, loss, mean_burst, target, k + space) - k
}

/// Longest mean burst the sizing believes (longer measurements are clamped).
pub const MAX_BURST: f64 = 16.0;

/// Symbols to ask for (and to send) in one repair round for a frame that lacks `missing`
/// symbols: the smallest n ≥ missing such that ≥ `missing` of n symbols sent back to back
/// arrive with probability ≥ `target`; at most [`MAX_PARITY`]. 0 when nothing is missing.
///
/// Losses follow a two-state (Gilbert) channel with mean loss `loss` and mean burst length
/// `mean_burst`: a datagram is lost with probability 1 − 1/b after a lost one and
/// p / (b (1 − p)) after one that arrived. b = 1/(1 − p), what independent losses show, is
/// the binomial model; a measured b below it, or an unknown (infinite or NaN) one, is taken
/// as that, and b is at most [`MAX_BURST`].
pub fn repair_count(missing: usize, loss: f64, mean_burst: f64, target: f64) -> usize {
    let missing = missing.min(MAX_PARITY);
    if missing == 0 {
        return 0;
    }
    arrivals_needed(missing, loss, mean_burst, target, MAX_PARITY)
}

/// The smallest n in `need..=most` such that ≥ `need` of n symbols in a row arrive with
/// probability ≥ `target` on the channel of [`repair_count`]; `most` if none is. At most
/// `most` · (`need` + 1) steps.
fn arrivals_needed(need: usize, loss: f64, mean_burst: f64, target: f64, most: usize) -> usize {
    let p = clamp_loss(loss);
    if p == 0.0 || need >= most {
        return need.min(most);
    }
    let independent = 1.0 / (1.0 - p);
    let b = if mean_burst.is_finite() {
        mean_burst.clamp(independent, MAX_BURST.max(independent))
    } else {
        independent
    };
    if b <= independent {
        return (need..=most)
            .find(|&n| binomial_cdf(n, p, n - need) >= target)
            .unwrap_or(most);
    }
    let lost_after_lost = 1.0 - 1.0 / b;
    let lost_after_arrived = (p / (b * (1.0 - p))).min(1.0);
    // after_lost[k], after_arrived[k]: probability that k symbols arrived so far (capped at
    // `need`) and the last one was lost / arrived. Before the first, the state is stationary.
    let mut after_lost = vec![0.0; need + 1];
    let mut after_arrived = vec![0.0; need + 1];
    after_lost[0] = p;
    after_arrived[0] = 1.0 - p;
    let mut lost = vec![0.0; need + 1];
    let mut arrived = vec![0.0; need + 1];
    for n in 1..=most {
        lost.fill(0.0);
        arrived.fill(0.0);
        for k in 0..=need {
            let (l, a) = (after_lost[k], after_arrived[k]);
            lost[k] += l * lost_after_lost + a * lost_after_arrived;
            let up = (k + 1).min(need);
            arrived[up] += l * (1.0 - lost_after_lost) + a * (1.0 - lost_after_arrived);
        }
        std::mem::swap(&mut after_lost, &mut lost);
        std::mem::swap(&mut after_arrived, &mut arrived);
        if n >= need && after_lost[need] + after_arrived[need] >= target {
            return n;
        }
    }
    most
}

/// Most copies of one request ([`request_copies`]).
pub const MAX_REQUEST_COPIES: u8 = 8;
/// Loss assumed when sizing request copies, so that a request goes at least three times.
const MIN_COPY_LOSS: f64 = 0.05;
/// Accepted chance that every copy of a request is lost.
const REQUEST_LOSS_TARGET: f64 = 0.002;

/// How many copies of a request to send, spread over one round trip, so that all are lost
/// with probability ≤ 0.2 %: the smallest c in 1..=[`MAX_REQUEST_COPIES`] with
/// p · q^(c−1) ≤ 0.002, where p = max(`loss`, 0.05) and q = max(p, 1 − 1/`mean_burst`) is the
/// chance that a copy is lost after the one before it was (a burst of mean length b goes on
/// with probability 1 − 1/b; an infinite `mean_burst`, burstiness not yet measured, gives
/// the most copies).
pub fn request_copies(loss: f64, mean_burst: f64) -> u8 {
    let p = clamp_loss(loss).max(MIN_COPY_LOSS);
    // Unknown burstiness (infinite) is the worst case; nonsense (NaN) counts as none.
    let burst = if mean_burst.is_nan() {
        1.0
    } else {
        mean_burst.max(1.0)
    };
    let q = p.max(1.0 - 1.0 / burst);
    (1..=MAX_REQUEST_COPIES)
        .find(|&c| p * q.powi(i32::from(c) - 1) <= REQUEST_LOSS_TARGET)
        .unwrap_or(MAX_REQUEST_COPIES)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binomial_cdf_matches_small_cases() {
        // n = 2, p = 0.5: P(X ≤ 0) = 0.25, P(X ≤ 1) = 0.75.
        assert!((binomial_cdf(2, 0.5, 0) - 0.25).abs() < 1e-12);
        assert!((binomial_cdf(2, 0.5, 1) - 0.75).abs() < 1e-12);
        assert_eq!(binomial_cdf(2, 0.5, 2), 1.0);
        assert_eq!(binomial_cdf(10, 0.0, 0), 1.0);
        assert_eq!(binomial_cdf(10, 1.0, 3), 0.0);
        // Large n does not underflow to 0.
        assert!(binomial_cdf(2048, 0.5, 1024) > 0.5);
    }

    #[test]
    fn proactive_parity_grows_with_loss_and_fits_the_overhead_budget() {
        let independent = |p: f64| 1.0 / (1.0 - p);
        assert_eq!(proactive_parity(48, 0.0, 1.0, PROACTIVE_TARGET), 0);
        let r10 = proactive_parity(48, 0.10, independent(0.1), PROACTIVE_TARGET);
        let r20 = proactive_parity(48, 0.20, independent(0.2), PROACTIVE_TARGET);
        assert!(r10 > 0 && r10 < r20, "{r10} {r20}");
        // Within the wire budgets (1.18 at 10 %, 1.35 at 20 %), leaving room for repairs.
        assert!((48 + r10) as f64 / 48.0 <= 1.18, "{r10}");
        assert!((48 + r20) as f64 / 48.0 <= 1.35, "{r20}");
        // Hostile reports are clamped, never panic or exceed the parity space.
        for loss in [f64::NAN, -1.0, 1.0, f64::INFINITY] {
            for burst in [f64::NAN, 0.0, 1.0, 4.0, f64::INFINITY, 1e300] {
                assert!(proactive_parity(48, loss, burst, 0.999) <= parity_space(48));
            }
        }
        assert_eq!(proactive_parity(1, 0.5, 2.0, 1.0), parity_space(1));
        // Bursts: the same mean loss falls on fewer frames, so at a lean target (most
        // frames repaired in rounds) fewer symbols go proactively, and at a high one more.
        let lean_bursty = proactive_parity(48, 0.10, 4.0, 0.15);
        assert!(lean_bursty < proactive_parity(48, 0.10, independent(0.1), 0.15));
        let safe_bursty = proactive_parity(48, 0.10, 4.0, 0.95);
        assert!(safe_bursty > proactive_parity(48, 0.10, independent(0.1), 0.95));
    }

    #[test]
    fn repairs_and_copies() {
        assert_eq!(repair_count(0, 0.2, 1.25, REPAIR_TARGET), 0);
        assert_eq!(repair_count(3, 0.0, 4.0, REPAIR_TARGET), 3);
        // Independent losses (b = 1/(1 − p)): the binomial answer.
        for missing in [1, 3, 10] {
            let n = repair_count(missing, 0.2, 1.25, REPAIR_TARGET);
            assert!(n > missing && binomial_cdf(n, 0.2, n - missing) >= REPAIR_TARGET);
            assert!(binomial_cdf(n - 1, 0.2, n - 1 - missing) < REPAIR_TARGET);
            // Unknown burstiness is taken as independent.
            assert_eq!(repair_count(missing, 0.2, f64::INFINITY, REPAIR_TARGET), n);
            assert_eq!(repair_count(missing, 0.2, f64::NAN, REPAIR_TARGET), n);
        }
        // Bursts of mean 4 at 10 %: one symbol needs more copies than independent loss
        // (0.1³ would do there; here a lost symbol is followed by a lost one 75 % of the time).
        assert_eq!(repair_count(1, 0.1, 1.0 / 0.9, REPAIR_TARGET), 2);
        let bursty = repair_count(1, 0.1, 4.0, REPAIR_TARGET);
        assert!(bursty > 2, "{bursty}");
        assert!(
            repair_count(10, 0.1, 4.0, REPAIR_TARGET) > repair_count(10, 0.1, 1.1, REPAIR_TARGET)
        );
        assert_eq!(repair_count(5000, 0.5, 2.0, 1.0), MAX_PARITY);
        // Independent losses: 0.05³ ≤ 0.002 < 0.05²; 0.1³; 0.2⁴.
        assert_eq!(request_copies(0.0, 1.0), 3);
        assert_eq!(request_copies(0.05, 1.0), 3);
        assert_eq!(request_copies(0.1, 1.0), 3);
        assert_eq!(request_copies(0.2, 1.0), 4);
        // Bursts of mean 2 at 10 %: 0.1 · 0.5^6 ≤ 0.002 < 0.1 · 0.5^5.
        assert_eq!(request_copies(0.1, 2.0), 7);
        // Longer bursts: as many as allowed.
        assert_eq!(request_copies(0.1, 4.0), MAX_REQUEST_COPIES);
        assert_eq!(request_copies(f64::NAN, f64::NAN), 3);
        assert_eq!(request_copies(1.0, f64::INFINITY), MAX_REQUEST_COPIES);
        assert_eq!(request_copies(0.0, f64::INFINITY), MAX_REQUEST_COPIES);
        // The report field round-trips, and 0 means unknown.
        assert_eq!(burst_from_q8(burst_to_q8(4.0)), 4.0);
        assert_eq!(burst_to_q8(f64::INFINITY), 0);
        assert_eq!(burst_to_q8(f64::NAN), 0);
        assert_eq!(burst_from_q8(0), f64::INFINITY);
        assert_eq!(burst_from_q8(1), 1.0);
    }
}
