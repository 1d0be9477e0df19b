//! The subscriber side of the handshake (proto-spec.md §6.2–§6.4), shared by the
//! viewer and by a relay that pulls a stream from its upstream.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::proto::rtt::RttEstimator;
use crate::proto::wire::{Body, Packet, PacketType, RejectReason, TOKEN_LEN};

/// How often keep-alives go out.
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(1);
/// With no answer for this long, subscribe again (the relay may have restarted).
pub const RESUBSCRIBE_AFTER: Duration = Duration::from_secs(3);
/// How long after a REJECT the subscription is asked for again.
pub const REJECT_RETRY: Duration = Duration::from_millis(200);
/// How often an unanswered SUBSCRIBE is repeated.
pub const SUBSCRIBE_RETRY: Duration = Duration::from_millis(250);

/// Where the handshake stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubState {
    /// Asking (with or without a token).
    Subscribing,
    /// Accepted: media or an acknowledgement came back.
    Active,
    /// The relay refused; asking again later.
    Rejected(RejectReason),
}

/// One subscription to one stream at one publisher or relay.
#[derive(Debug, Clone)]
pub struct Subscription {
    server: SocketAddr,
    name: String,
    max_kbps: u32,
    latency_ms: u16,
    token: Option<[u8; TOKEN_LEN]>,
    state: SubState,
    next_send: Option<Instant>,
    last_heard: Option<Instant>,
    epoch: Option<Instant>,
    ctrl_seq: u32,
    rtt: RttEstimator,
    /// When the first SUBSCRIBE without a token of this attempt went, and how many went:
    /// its RETRY is the first RTT sample, taken only when one went (RFC 6298's Karn rule).
    handshake: Option<(Instant, u32)>,
    /// True until the first SUBSCRIBE went out (no deadline exists before the first `now`).
    send_now: bool,
    closed: bool,
}

impl Subscription {
    /// Starts subscribing to `name` at `server`.
    pub fn new(server: SocketAddr, name: &str, max_kbps: u32) -> Subscription {
        Subscription {
            server,
            name: name.to_owned(),
            max_kbps,
            latency_ms: 0,
            token: None,
            state: SubState::Subscribing,
            next_send: None,
            last_heard: None,
            epoch: None,
            ctrl_seq: 0,
            rtt: RttEstimator::new(Duration::from_millis(5)),
            handshake: None,
            send_now: true,
            closed: false,
        }
    }

    /// States the subscriber's playout latency (ms) in its SUBSCRIBEs (§6.2), so that the
    /// relay paces and repairs within it. 0 (the default) states none.
    pub fn set_latency_ms(&mut self, ms: u16) {
        self.latency_ms = ms;
    }

    /// The server's address.
    pub fn server(&self) -> SocketAddr {
        self.server
    }

    /// The stream name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether [`Subscription::bye`] was called.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// Current state.
    pub fn state(&self) -> SubState {
        self.state
    }

    /// The RTT estimate: the handshake's round trip (SUBSCRIBE to RETRY), then keep-alive
    /// echoes (§6.4).
    pub fn rtt(&self) -> &RttEstimator {
        &self.rtt
    }

    fn micros(&mut self, now: Instant) -> u32 {
        let e = *self.epoch.get_or_insert(now);
        now.saturating_duration_since(e).as_micros() as u32
    }

    /// Notes that something from the server arrived (media counts: it proves the
    /// subscription is alive).
    pub fn on_traffic(&mut self, now: Instant) {
        self.last_heard = Some(now);
        if self.state == SubState::Subscribing && self.token.is_some() {
            self.state = SubState::Active;
            self.next_send = Some(now + KEEPALIVE_INTERVAL);
        }
    }

    /// Handles a control packet from the server. Returns true if it was one of ours.
    pub fn handle_control(&mut self, now: Instant, p: &Packet) -> bool {
        match &p.body {
            Body::Retry { token } => {
                if let Some((sent, 1)) = self.handshake.take() {
                    if !self.rtt.has_sample() {
                        self.rtt.sample(now.saturating_duration_since(sent));
                    }
                }
                self.token = Some(*token);
                self.next_send = Some(now);
                true
            }
            Body::Reject { reason } => {
                self.state = SubState::Rejected(*reason);
                if *reason == RejectReason::BadToken {
                    self.token = None;
                }
                self.next_send = Some(now + REJECT_RETRY);
                true
            }
            Body::KeepAliveAck { echo_us } => {
                let rtt = self.micros(now).wrapping_sub(*echo_us);
                if rtt < 10_000_000 {
                    self.rtt.sample(Duration::from_micros(rtt as u64));
                }
                self.on_traffic(now);
                true
            }
            _ => false,
        }
    }

    /// When the next subscribe or keep-alive is due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.closed {
            return None;
        }
        self.next_send
    }

    /// The next control datagram to send, if one is due.
    pub fn poll_transmit(&mut self, now: Instant) -> Option<Bytes> {
        // With nothing heard for a while, start over (keeping no token: it may be stale).
        if self.state == SubState::Active
            && self
                .last_heard
                .is_some_and(|t| now.saturating_duration_since(t) > RESUBSCRIBE_AFTER)
        {
            self.state = SubState::Subscribing;
            self.token = None;
            self.next_send = Some(now);
        }
        if self.closed || (!self.send_now && self.next_send.is_some_and(|t| t > now)) {
            return None;
        }
        self.send_now = false;
        self.ctrl_seq = self.ctrl_seq.wrapping_add(1);
        let seq = self.ctrl_seq;
        let (body, ptype, next) = match self.state {
            SubState::Active => (
                Body::KeepAlive {
                    echo_us: self.micros(now),
                },
                PacketType::KeepAlive,
                KEEPALIVE_INTERVAL,
            ),
            SubState::Subscribing | SubState::Rejected(_) => {
                if let SubState::Rejected(_) = self.state {
                    self.state = SubState::Subscribing;
                }
                if self.token.is_none() {
                    let (first, n) = self.handshake.unwrap_or((now, 0));
                    self.handshake = Some((first, n + 1));
                }
                (
                    Body::Subscribe {
                        name: self.name.clone(),
                        token: self.token.map(|t| t.to_vec()).unwrap_or_default(),
                        max_kbps: self.max_kbps,
                        latency_ms: self.latency_ms,
                    },
                    PacketType::Subscribe,
                    SUBSCRIBE_RETRY,
                )
            }
        };
        // Keep the epoch in step so that echoes are measured against it.
        self.micros(now);
        self.next_send = Some(now + next);
        Some(Packet::new(ptype, 0, seq, body).encode())
    }

    /// A BYE to send when leaving. The subscription sends nothing more afterwards.
    pub fn bye(&mut self) -> Bytes {
        self.closed = true;
        self.ctrl_seq = self.ctrl_seq.wrapping_add(1);
        Packet::new(PacketType::Bye, 0, self.ctrl_seq, Body::Bye).encode()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 4000))
    }

    fn kind(d: &Bytes) -> Body {
        Packet::decode(d).expect("valid").body
    }

    /// A subscription accepted at `t0`: SUBSCRIBE, RETRY, SUBSCRIBE with token, media.
    fn active(t0: Instant) -> Subscription {
        let mut s = Subscription::new(server(), "cam", 0);
        assert!(
            matches!(kind(&s.poll_transmit(t0).unwrap()), Body::Subscribe { token, .. } if token.is_empty())
        );
        let retry = Packet::new(
            PacketType::Retry,
            0,
            1,
            Body::Retry {
                token: [7; TOKEN_LEN],
            },
        );
        assert!(s.handle_control(t0, &retry));
        assert_eq!(s.poll_timeout(), Some(t0));
        match kind(&s.poll_transmit(t0).unwrap()) {
            Body::Subscribe { token, name, .. } => {
                assert_eq!(token, vec![7; TOKEN_LEN]);
                assert_eq!(name, "cam");
            }
            b => panic!("{b:?}"),
        }
        s.on_traffic(t0);
        assert_eq!(s.state(), SubState::Active);
        s
    }

    fn retry() -> Packet {
        Packet::new(
            PacketType::Retry,
            0,
            1,
            Body::Retry {
                token: [7; TOKEN_LEN],
            },
        )
    }

    #[test]
    fn the_handshake_gives_the_first_rtt_sample_unless_the_subscribe_was_repeated() {
        let t0 = Instant::now();
        let mut s = Subscription::new(server(), "cam", 0);
        s.poll_transmit(t0).expect("subscribe");
        assert!(!s.rtt().has_sample());
        assert!(s.handle_control(t0 + Duration::from_millis(20), &retry()));
        assert_eq!(s.rtt().srtt(), Duration::from_millis(20));

        // Two SUBSCRIBEs before the RETRY: which one it answers is unknown, so no sample.
        let mut s = Subscription::new(server(), "cam", 0);
        s.poll_transmit(t0).expect("subscribe");
        s.poll_transmit(t0 + SUBSCRIBE_RETRY).expect("again");
        assert!(s.handle_control(t0 + SUBSCRIBE_RETRY + Duration::from_millis(3), &retry()));
        assert!(!s.rtt().has_sample());
    }

    #[test]
    fn an_unanswered_subscribe_is_repeated() {
        let t0 = Instant::now();
        let mut s = Subscription::new(server(), "cam", 0);
        assert_eq!(s.poll_timeout(), None);
        assert!(s.poll_transmit(t0).is_some());
        assert_eq!(s.poll_timeout(), Some(t0 + SUBSCRIBE_RETRY));
        assert!(
            s.poll_transmit(t0 + SUBSCRIBE_RETRY - Duration::from_millis(1))
                .is_none()
        );
        assert!(matches!(
            kind(&s.poll_transmit(t0 + SUBSCRIBE_RETRY).unwrap()),
            Body::Subscribe { .. }
        ));
    }

    #[test]
    fn an_active_subscription_is_refreshed_by_keepalives() {
        let t0 = Instant::now();
        let mut s = active(t0);
        assert_eq!(s.poll_timeout(), Some(t0 + KEEPALIVE_INTERVAL));
        assert!(s.poll_transmit(t0 + Duration::from_millis(999)).is_none());
        let t1 = t0 + KEEPALIVE_INTERVAL;
        assert!(matches!(
            kind(&s.poll_transmit(t1).unwrap()),
            Body::KeepAlive { .. }
        ));
        assert_eq!(s.poll_timeout(), Some(t1 + KEEPALIVE_INTERVAL));
        // Traffic keeps it alive: still keep-alives, never a new SUBSCRIBE.
        for i in 2..=6u32 {
            s.on_traffic(t0 + KEEPALIVE_INTERVAL * i - Duration::from_millis(1));
            let p = s.poll_transmit(t0 + KEEPALIVE_INTERVAL * i).unwrap();
            assert!(matches!(kind(&p), Body::KeepAlive { .. }), "{i}");
        }
        assert_eq!(s.state(), SubState::Active);
    }

    #[test]
    fn silence_expires_the_subscription_and_it_starts_over_without_token() {
        let t0 = Instant::now();
        let mut s = active(t0);
        // Keep-alives go out but nothing comes back.
        for i in 1..=3u32 {
            assert!(s.poll_transmit(t0 + KEEPALIVE_INTERVAL * i).is_some());
            assert_eq!(s.state(), SubState::Active);
        }
        let expired = t0 + RESUBSCRIBE_AFTER + Duration::from_millis(1);
        match kind(&s.poll_transmit(expired).unwrap()) {
            Body::Subscribe { token, .. } => assert!(token.is_empty()),
            b => panic!("{b:?}"),
        }
        assert_eq!(s.state(), SubState::Subscribing);
        assert_eq!(s.poll_timeout(), Some(expired + SUBSCRIBE_RETRY));
    }

    #[test]
    fn a_reject_is_retried_later_and_bye_ends_everything() {
        let t0 = Instant::now();
        let mut s = active(t0);
        let rej = Packet::new(
            PacketType::Reject,
            0,
            2,
            Body::Reject {
                reason: RejectReason::Full,
            },
        );
        assert!(s.handle_control(t0, &rej));
        assert_eq!(s.state(), SubState::Rejected(RejectReason::Full));
        assert_eq!(s.poll_timeout(), Some(t0 + REJECT_RETRY));
        assert!(matches!(
            kind(&s.poll_transmit(t0 + REJECT_RETRY).unwrap()),
            Body::Subscribe { .. }
        ));
        assert!(matches!(kind(&s.bye()), Body::Bye));
        assert!(s.is_closed());
        assert_eq!(s.poll_timeout(), None);
        assert!(s.poll_transmit(t0 + Duration::from_secs(60)).is_none());
        // Not a control packet of a subscription.
        assert!(!s.handle_control(t0, &Packet::new(PacketType::Bye, 0, 3, Body::Bye)));
    }
}
