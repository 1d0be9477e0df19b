//! What the relay tells its driver (pulled with [`super::Relay::poll_event`]).

use std::net::SocketAddr;

/// Why a subscriber left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaveReason {
    /// Not heard from for `subscriber_timeout` (§6.4).
    Timeout,
    /// It said BYE.
    Bye,
    /// It subscribed to another stream from the same address.
    Replaced,
    /// It answered the stream's media with REJECT `unknown_stream`: it no longer knows the
    /// stream (a relay that restarted, §7.3).
    Forgotten,
}

/// Something that happened in the relay, pulled with [`Relay::poll_event`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RelayEvent {
    /// A subscriber was accepted (or added by the operator).
    SubscriberJoined {
        /// Its address.
        addr: SocketAddr,
        /// The stream.
        stream: String,
    },
    /// A subscriber is gone.
    SubscriberEvicted {
        /// Its address.
        addr: SocketAddr,
        /// The stream it watched.
        stream: String,
        /// Why.
        reason: LeaveReason,
    },
    /// A publisher got a stream name (§6.1), possibly from a silent one.
    StreamClaimed {
        /// The stream.
        stream: String,
        /// The publisher.
        publisher: SocketAddr,
        /// The silent publisher it displaced.
        displaced: Option<SocketAddr>,
    },
    /// A publisher's description was refused: someone else feeds the name, or the relay
    /// is at `max_streams`.
    StreamRefused {
        /// The stream.
        stream: String,
        /// The refused sender.
        from: SocketAddr,
    },
    /// A node this relay sends to (e.g. the relay a publisher pushes into) refused it
    /// with a REJECT that no subscription of ours was waiting for.
    Rejected {
        /// The refusing node.
        from: SocketAddr,
        /// Why.
        reason: crate::proto::wire::RejectReason,
    },
}
