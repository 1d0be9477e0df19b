//! What a proxy run did ([`NetsimStats`]): the proxy's own counters and both links'.

use serde::Serialize;

use super::Netsim;
use crate::sim::netem::LinkStats;

/// What a proxy run did. The link counters are summed over both directions; the
/// per-direction ones are in `upstream` (client to `--forward`) and `downstream`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct NetsimStats {
    /// Datagrams put on a link, both directions.
    pub sent: u64,
    /// Datagrams (duplicates included) that left a link, both directions.
    pub delivered: u64,
    /// Random losses, both directions.
    pub lost: u64,
    /// Burst losses, both directions.
    pub burst_lost: u64,
    /// Bottleneck tail drops, both directions.
    pub queue_dropped: u64,
    /// Duplicates made, both directions.
    pub duplicated: u64,
    /// Datagrams held back for reordering, both directions.
    pub reordered: u64,
    /// Datagrams read from the sockets and put on a link.
    pub datagrams_in: u64,
    /// Datagrams written to the sockets.
    pub datagrams_out: u64,
    /// UDP payload bytes of the datagrams counted in `datagrams_in` (both directions): what
    /// the endpoints put on the wire, before any loss.
    pub bytes_in: u64,
    /// Viewer mappings created.
    pub clients: u64,
    /// Viewer mappings removed after [`CLIENT_IDLE_TIMEOUT`](super::CLIENT_IDLE_TIMEOUT).
    pub clients_expired: u64,
    /// Datagrams dropped because [`MAX_CLIENTS`](super::MAX_CLIENTS) mappings existed or an upstream socket
    /// could not be opened.
    pub clients_rejected: u64,
    /// Datagrams reaching an upstream socket from an address other than `--forward`.
    pub foreign_dropped: u64,
    /// Upstream datagrams dropped because their client mapping had expired meanwhile.
    pub unmapped_dropped: u64,
    /// Datagrams dropped on a send error other than `WouldBlock`.
    pub send_errors: u64,
    /// Receive errors other than `WouldBlock` and `Interrupted`.
    pub recv_errors: u64,
    /// The client-to-`--forward` link.
    pub upstream: LinkStats,
    /// The `--forward`-to-client link.
    pub downstream: LinkStats,
}

impl Netsim {
    /// The counters so far.
    pub fn stats(&self) -> NetsimStats {
        let (up, down) = (self.up.stats(), self.down.stats());
        let mut both = up;
        both += down;
        NetsimStats {
            sent: both.sent,
            delivered: both.delivered,
            lost: both.lost,
            burst_lost: both.burst_lost,
            queue_dropped: both.queue_dropped,
            duplicated: both.duplicated,
            reordered: both.reordered,
            upstream: up,
            downstream: down,
            ..self.stats
        }
    }
}
