//! The relay's counters and per-subscriber figures (what `--stats-json` writes for the
//! relay role).

use serde::Serialize;

use crate::proto::wire::MalformedCounters;

/// Relay counters (also what `--stats-json` writes for the relay role).
#[derive(Debug, Clone, Default, Serialize)]
pub struct RelayStats {
    /// Datagrams received.
    pub datagrams_in: u64,
    /// Datagrams sent.
    pub datagrams_out: u64,
    /// Bytes received.
    pub bytes_in: u64,
    /// Bytes sent.
    pub bytes_out: u64,
    /// Malformed datagrams dropped, by reason.
    pub malformed: MalformedCounters,
    /// Datagrams from addresses with no business sending them.
    pub unknown_sender: u64,
    /// Subscribers now.
    pub subscribers: u64,
    /// Subscriptions accepted in all.
    pub subscribed: u64,
    /// Subscribers evicted for silence.
    pub evicted: u64,
    /// Subscribers that said bye.
    pub byes: u64,
    /// RETRY challenges sent.
    pub retries_sent: u64,
    /// REJECTs sent.
    pub rejects_sent: u64,
    /// Retransmission requests answered from the cache.
    pub cache_hits: u64,
    /// Retransmission requests forwarded upstream (once per sequence number).
    pub upstream_requests: u64,
    /// FEC request entries sent upstream for frames subscribers asked for and this relay
    /// did not hold whole (§7.3).
    pub upstream_fec_requests: u64,
    /// Requests for datagrams nobody can supply any more.
    pub cache_misses: u64,
    /// Retransmissions sent to subscribers.
    pub retransmits_sent: u64,
    /// Media datagrams received from the origin (first copies).
    pub media_in: u64,
    /// Duplicate media from the origin, dropped.
    pub duplicates: u64,
    /// Whole frames dropped from slow subscribers' queues.
    pub queue_frames_dropped: u64,
    /// Datagrams dropped from slow subscribers' queues (dropped and skipped frames).
    pub queue_datagrams_dropped: u64,
    /// Whole frames skipped because they waited longer than a subscriber's queue-delay
    /// budget (§7.3) while the relay's CPU was the limit (it could not send fast enough).
    pub frames_skipped_relay_cpu: u64,
    /// ... while the socket buffer was the limit (the kernel refused sends: EAGAIN/ENOBUFS).
    pub frames_skipped_socket_buffer: u64,
    /// ... while the subscriber's own rate cap (`max_kbps`) was the limit: one slow
    /// subscriber.
    pub frames_skipped_slow_subscriber: u64,
    /// NACKed sequence numbers and FEC request entries not answered because their frame
    /// was skipped for that subscriber.
    pub skipped_requests: u64,
    /// NACKed sequence numbers and FEC request entries not answered because the chunks asked
    /// for were still queued for that subscriber, on their way (§7.3).
    pub requests_still_queued: u64,
    /// The limit behind the latest skip if it was within the last second, else none: the
    /// relay is overloaded now.
    pub overloaded: Option<OverloadLimit>,
    /// Latest frames replayed to late joiners.
    pub late_join_frames: u64,
    /// DESCRIPTIONs sent again to a relay pushed into that answered media with REJECT
    /// `unknown_stream` (§7.3).
    pub reannounced: u64,
    /// Receiver reports received, latest per subscriber summed.
    pub reports: u64,
    /// Of those, reports stating loss (`loss_q16` > 0, §6.6).
    pub loss_reports: u64,
    /// Requests not sent to a pushing publisher because they would have exceeded the bytes
    /// it sent (anti-amplification, §8).
    pub origin_budget_exceeded: u64,
    /// Parity symbols sent with frames, sized per subscriber from its reports (§7.6).
    pub parity_sent: u64,
    /// Parity symbols sent in answer to FEC requests (§6.8).
    pub parity_answered: u64,
    /// FEC request entries received.
    pub fec_requests: u64,
    /// Of those, copies of a request already answered or waiting (not answered again).
    pub fec_request_copies: u64,
    /// Frames coded for parity (each at most once).
    pub frames_coded: u64,
    /// Parity symbols received from the origin (not forwarded: the relay codes its own).
    pub parity_from_origin: u64,
    /// Chunks the relay restored from its origin's parity.
    pub chunks_restored: u64,
}

impl RelayStats {
    /// Whether this relay has had a reason to code or restore a frame's parity (§7.6): a
    /// subscriber reported loss, asked for parity, or the origin sent some. A node whose
    /// counters all say no has never needed the Reed-Solomon coder.
    pub fn parity_may_be_needed(&self) -> bool {
        self.loss_reports > 0 || self.fec_requests > 0 || self.parity_from_origin > 0
    }
}

/// What made the relay skip frames for a subscriber (§7.3, overload).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OverloadLimit {
    /// The relay could not send fast enough (its CPU, or its event loop fell behind).
    RelayCpu = 0,
    /// The kernel refused sends: the socket buffer was full (EAGAIN/ENOBUFS).
    SocketBuffer = 1,
    /// The subscriber's own rate cap (`max_kbps`) held its queue back.
    SlowSubscriber = 2,
}

impl OverloadLimit {
    /// Words for the status line.
    pub fn words(self) -> &'static str {
        match self {
            OverloadLimit::RelayCpu => "relay CPU",
            OverloadLimit::SocketBuffer => "socket buffer",
            OverloadLimit::SlowSubscriber => "one slow subscriber",
        }
    }
}

/// Per-subscriber figures for statistics.
#[derive(Debug, Clone, Serialize)]
pub struct SubscriberInfo {
    /// Address.
    pub addr: String,
    /// Stream name.
    pub stream: String,
    /// Datagrams queued now.
    pub queued: usize,
    /// Whole frames dropped for this subscriber (byte bound).
    pub frames_dropped: u64,
    /// Whole frames skipped for this subscriber (time bound, §7.3).
    pub frames_skipped: u64,
    /// Frames played, from its last receiver report.
    pub frames_played: Option<u32>,
}
