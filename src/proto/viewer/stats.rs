//! The viewer's counters (what `--stats-json` writes for a player).

use serde::Serialize;

use crate::proto::loss::LossStats;
use crate::proto::wire::MalformedCounters;

/// Viewer counters (what `--stats-json` writes for a player).
#[derive(Debug, Clone, Default, Serialize)]
pub struct ViewerStats {
    /// Datagrams received.
    pub datagrams: u64,
    /// Bytes received.
    pub bytes: u64,
    /// Malformed datagrams dropped, by reason.
    pub malformed: MalformedCounters,
    /// Datagrams from other addresses or sources.
    pub unknown_sender: u64,
    /// Retransmitted datagrams received.
    pub retransmits_received: u64,
    /// Video loss counters.
    pub video: LossCounters,
    /// Audio loss counters.
    pub audio: LossCounters,
    /// NACK datagrams sent.
    pub nacks_sent: u64,
    /// Frames played intact.
    pub frames_played: u64,
    /// Frames whose chunks came (partly) through retransmission.
    pub frames_recovered: u64,
    /// Frames dropped because they completed too late.
    pub frames_late: u64,
    /// Frames dropped incomplete at their deadline.
    pub frames_incomplete: u64,
    /// Frames dropped by the buffer ceiling.
    pub frames_overflow: u64,
    /// Frames the relay said it skipped for this viewer (SKIP, proto-spec.md §6.10): never
    /// sent to it, so neither asked for, lost nor late.
    pub frames_skipped_by_relay: u64,
    /// Video repair requests (NACKs, FEC requests) not sent because the relay skipped a frame
    /// for this viewer within the last second: an overloaded relay answers none (§7.3).
    pub repair_held_after_skip: u64,
    /// Chunks that were inconsistent with their frame.
    pub chunks_inconsistent: u64,
    /// Audio blocks played (received).
    pub audio_blocks: u64,
    /// Audio blocks concealed with silence.
    pub audio_concealed: u64,
    /// Audio blocks that arrived too late.
    pub audio_late: u64,
    /// Interarrival jitter (RFC 3550 A.8), milliseconds.
    pub jitter_ms: f64,
    /// Smoothed RTT, milliseconds.
    pub rtt_ms: f64,
    /// Mean time from a frame's first chunk to its playout, milliseconds.
    pub mean_frame_delay_ms: f64,
    /// Largest time from a frame's first chunk to its playout, milliseconds.
    pub max_frame_delay_ms: f64,
    /// Times the stream's source changed.
    pub source_changes: u64,
    /// Times the latency was raised because frames could not be whole in time (§7.2).
    pub latency_raises: u64,
    /// The playout latency in force, ms.
    pub latency_ms: f64,
    /// FEC repair counters (§7.6).
    pub fec: super::FecStats,
    /// FEC_REQUEST datagrams sent (each copy counted once).
    pub fec_requests_sent: u64,
    /// Measured first-transmission loss of the video flow, 0..=1 (reported as `loss_q16`).
    pub loss_estimate: f64,
}

/// Loss figures of one flow.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LossCounters {
    /// Datagrams seen missing.
    pub detected: u64,
    /// Recovered through retransmission.
    pub recovered: u64,
    /// Arrived late by themselves.
    pub reordered: u64,
    /// Never recovered.
    pub lost: u64,
    /// Of those, given up because the deadline came within an RTT.
    pub too_late: u64,
    /// Sequence numbers requested.
    pub requested: u64,
    /// Duplicates.
    pub duplicates: u64,
}

impl From<LossStats> for LossCounters {
    fn from(s: LossStats) -> Self {
        LossCounters {
            detected: s.detected,
            recovered: s.recovered,
            reordered: s.reordered,
            lost: s.given_up,
            too_late: s.too_late,
            requested: s.requested,
            duplicates: s.duplicates,
        }
    }
}
