//! Subscribers coming and going (proto-spec.md §6.2–§6.4, §7.4): the SUBSCRIBE handshake
//! with its address-validation token, admission within the relay's limits, the late-join
//! replay of the description and latest complete frame, and eviction of silent
//! subscribers.

use std::net::SocketAddr;
use std::time::Instant;

use super::fanout::Queued;
use super::{LeaveReason, Relay, RelayEvent};
use crate::proto::wire::{self, Body, FLAG_REPLAY, Packet, PacketType, RejectReason};

impl Relay {
    pub(super) fn insert_subscriber(
        &mut self,
        now: Instant,
        addr: SocketAddr,
        stream: &str,
        max_kbps: u32,
        permanent: bool,
    ) {
        if let Some(old) = self.fanout.insert(now, addr, stream, max_kbps, permanent) {
            self.streams.leave(&old.stream, &addr);
            self.event(RelayEvent::SubscriberEvicted {
                addr,
                stream: old.stream,
                reason: LeaveReason::Replaced,
            });
        }
        self.stats.subscribed += 1;
        self.event(RelayEvent::SubscriberJoined {
            addr,
            stream: stream.to_owned(),
        });
        let Some(idx) = self.streams.join(stream, addr) else {
            return;
        };
        let s = self.streams.get_mut(idx);
        // Late join (§7.4): the description and the latest complete frame, at once.
        let mut first: Vec<Queued> = Vec::new();
        if let Some(d) = &s.description {
            first.push(Queued::single(d.clone()));
        }
        if let Some((id, chunks)) = &s.late.latest {
            for c in chunks {
                if let Some(d) = wire::with_flags(c, FLAG_REPLAY) {
                    first.push(Queued::of_frame(d, *id));
                }
            }
            self.stats.late_join_frames += 1;
        }
        // Then what came of the frames in progress, as received (not replayed: the rest of
        // them follows live, and the whole frame is the joiner's to play and repair).
        // Chunks held for gathering (§7.3) are not: the joiner gets them when they go out.
        let held = s.held.as_ref();
        for (id, datagrams) in s.late.in_progress(now) {
            first.extend(
                datagrams
                    .into_iter()
                    .filter(|d| !held.is_some_and(|h| h.holds(id, d)))
                    .map(|d| Queued::of_frame(d, id)),
            );
        }
        // An ended stream says so to late joiners too (§6.9).
        if let Some(e) = &s.ended {
            first.push(Queued::single(e.clone()));
        }
        for q in first {
            self.fanout.enqueue(addr, q, false);
        }
    }

    pub(super) fn remove_subscriber(&mut self, addr: &SocketAddr, reason: LeaveReason) {
        if let Some(old) = self.fanout.remove(addr) {
            self.streams.leave(&old.stream, addr);
            self.event(RelayEvent::SubscriberEvicted {
                addr: *addr,
                stream: old.stream,
                reason,
            });
        }
    }

    pub(super) fn on_subscribe(
        &mut self,
        now: Instant,
        from: SocketAddr,
        name: String,
        token: Vec<u8>,
        max_kbps: u32,
    ) {
        if let Some(sub) = self.fanout.get_mut(&from) {
            if sub.stream == name {
                sub.last_heard = now;
                return;
            }
        }
        let known = self.streams.position(&name).is_some();
        let can_pull = self.cfg.upstream.is_some() && !self.streams.pulls_other_than(&name);
        if !known && !can_pull {
            self.reject(from, RejectReason::UnknownStream);
            return;
        }
        if token.is_empty() || !self.tokens.check(now, &token, &from, &name) {
            // Never more bytes than the request (the SUBSCRIBE is padded to 64 bytes, a
            // RETRY is 37): §6.2.
            let t = self.tokens.mint(now, &from, &name);
            let seq = self.next_ctrl_seq();
            self.send_control(
                from,
                Packet::new(PacketType::Retry, 0, seq, Body::Retry { token: t }).encode(),
            );
            self.stats.retries_sent += 1;
            return;
        }
        if self.fanout.len() >= self.cfg.max_subscribers {
            self.reject(from, RejectReason::Full);
            return;
        }
        if !known {
            let Some(up) = self.cfg.upstream else { return };
            if !self.streams.add_upstream(&name, up, &self.cfg) {
                self.reject(from, RejectReason::Full);
                return;
            }
        }
        self.insert_subscriber(now, from, &name, max_kbps, false);
    }

    pub(super) fn reject(&mut self, to: SocketAddr, reason: RejectReason) {
        let seq = self.next_ctrl_seq();
        self.send_control(
            to,
            Packet::new(PacketType::Reject, 0, seq, Body::Reject { reason }).encode(),
        );
        self.stats.rejects_sent += 1;
    }

    /// Evicts subscribers not heard from for `subscriber_timeout` (§6.4).
    pub(super) fn evict_silent(&mut self, now: Instant) {
        let timeout = self.cfg.subscriber_timeout;
        let gone: Vec<SocketAddr> = self
            .fanout
            .iter()
            .filter(|(_, s)| !s.permanent && now.saturating_duration_since(s.last_heard) > timeout)
            .map(|(a, _)| *a)
            .collect();
        for a in gone {
            self.remove_subscriber(&a, LeaveReason::Timeout);
            self.stats.evicted += 1;
        }
    }
}
