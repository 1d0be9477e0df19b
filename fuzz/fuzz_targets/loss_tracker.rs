//! Random arrivals, gap marks, time advances and NACK polls on a `LossTracker`.
//!
//! Invariants: a NACK never asks for a sequence number that arrived before it; ranges are
//! non-empty, ascending and non-overlapping; the missing list stays within `max_missing`;
//! nothing is NACKed more than `max_retries` times (the safety cap; the deadline normally ends
//! asking sooner); `Duplicate` is only reported for a number
//! that arrived before (including numbers below the first one seen, and numbers that fell
//! out of tracking when the missing list was truncated).
#![no_main]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use arbitrary::Arbitrary;
use framecast::proto::loss::{Arrival, LossConfig, LossTracker};
use framecast::proto::rtt::RttEstimator;
use framecast::proto::wire::SeqNo;
use libfuzzer_sys::fuzz_target;

fn t0() -> Instant {
    static T0: OnceLock<Instant> = OnceLock::new();
    *T0.get_or_init(Instant::now)
}

const BASE: u64 = 1 << 32;

#[derive(Debug, Arbitrary)]
enum Op {
    Arrive {
        seq: i16,
        hold_ms: u8,
        deadline_ms: Option<u16>,
    },
    MarkMissing {
        seq: i16,
        deadline_ms: Option<u16>,
    },
    SetDeadline {
        from: i16,
        len: u8,
        deadline_ms: u16,
    },
    Advance {
        ms: u16,
    },
    Nack,
    RttSample {
        ms: u8,
    },
    Reset,
}

#[derive(Debug, Arbitrary)]
struct Script {
    max_retries: u8,
    max_missing: u8,
    adaptive_hold: bool,
    ops: Vec<Op>,
}

fn seq_of(s: i16) -> SeqNo {
    SeqNo(BASE.wrapping_add_signed(s as i64))
}

/// Maps a wire value back to the extended number near BASE.
fn unwire(w: u32) -> u64 {
    BASE.wrapping_add_signed(w.wrapping_sub(BASE as u32) as i32 as i64)
}

fuzz_target!(|script: Script| {
    let cfg = LossConfig {
        max_retries: script.max_retries % 12,
        min_retry_interval: Duration::from_millis(5),
        max_missing: (script.max_missing as usize % 200) + 1,
        // The safety cap: asking is otherwise bounded by the deadline (or, without one, by
        // max_retries_no_deadline, which is ≤ the cap in effect).
        max_retries_no_deadline: 10,
        adaptive_hold: script.adaptive_hold,
        ..LossConfig::default()
    };
    let mut l = LossTracker::new(cfg);
    let mut rtt = RttEstimator::new(Duration::from_millis(5));
    let mut now = t0();
    let mut arrived: BTreeSet<u64> = BTreeSet::new();
    let mut asked: BTreeMap<u64, u32> = BTreeMap::new();
    for op in script.ops.into_iter().take(2048) {
        match op {
            Op::Arrive {
                seq,
                hold_ms,
                deadline_ms,
            } => {
                let s = seq_of(seq);
                let a = l.on_arrival(
                    now,
                    s,
                    Duration::from_millis(hold_ms as u64),
                    deadline_ms.map(|d| now + Duration::from_millis(d as u64)),
                );
                if a == Arrival::Duplicate {
                    assert!(
                        arrived.contains(&s.0),
                        "{} reported duplicate but never arrived",
                        s.0
                    );
                }
                arrived.insert(s.0);
            }
            Op::MarkMissing { seq, deadline_ms } => {
                l.mark_missing(
                    now,
                    seq_of(seq),
                    deadline_ms.map(|d| now + Duration::from_millis(d as u64)),
                );
            }
            Op::SetDeadline {
                from,
                len,
                deadline_ms,
            } => {
                let from = seq_of(from);
                l.set_deadline(
                    from,
                    SeqNo(from.0 + len as u64),
                    now + Duration::from_millis(deadline_ms as u64),
                );
            }
            Op::Advance { ms } => now += Duration::from_millis(ms as u64),
            Op::RttSample { ms } => rtt.sample(Duration::from_millis(ms as u64)),
            Op::Nack => {
                let ranges = l.poll_nack(now, &rtt);
                let mut prev_end: Option<u64> = None;
                for r in &ranges {
                    assert!(r.len > 0, "empty NACK range");
                    let start = unwire(r.start);
                    if let Some(p) = prev_end {
                        assert!(
                            start > p,
                            "NACK ranges overlap or are unordered: {ranges:?}"
                        );
                    }
                    for s in start..start + r.len as u64 {
                        assert!(
                            !arrived.contains(&s),
                            "NACK asks for {s}, which already arrived ({ranges:?})"
                        );
                        let n = asked.entry(s).or_default();
                        *n += 1;
                        assert!(
                            *n <= cfg.max_retries as u32,
                            "{s} NACKed {n} times, max_retries {}",
                            cfg.max_retries
                        );
                    }
                    prev_end = Some(start + r.len as u64);
                }
            }
            Op::Reset => {
                l.reset();
                arrived.clear();
                asked.clear();
            }
        }
        assert!(
            l.missing_len() <= cfg.max_missing,
            "missing list {} > {}",
            l.missing_len(),
            cfg.max_missing
        );
    }
});
