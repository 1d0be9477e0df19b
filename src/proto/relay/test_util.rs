//! Helpers for the relay's unit tests: a handshake, packets and a drain, in virtual time.

use std::net::SocketAddr;
use std::time::Instant;

use bytes::Bytes;

use super::Relay;
use crate::proto::node::Node;
use crate::proto::wire::{Body, Description, Packet, PacketType, VideoChunk};

/// A loopback address.
pub(crate) fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// Everything the relay sends at `now`, decoded.
pub(crate) fn drain(relay: &mut Relay, now: Instant) -> Vec<(SocketAddr, Packet)> {
    std::iter::from_fn(|| relay.poll_transmit(now))
        .map(|t| {
            (
                t.dest,
                Packet::decode(&t.payload).expect("relay sent garbage"),
            )
        })
        .collect()
}

/// Feeds `p` from `from`.
pub(crate) fn send(relay: &mut Relay, now: Instant, from: SocketAddr, p: &Packet) {
    relay.handle_datagram(now, from, &p.encode());
}

/// Subscribes `from` to `name` through the RETRY handshake (§6.2); returns what the relay
/// sent after accepting it.
pub(crate) fn subscribe(
    relay: &mut Relay,
    now: Instant,
    from: SocketAddr,
    name: &str,
) -> Vec<(SocketAddr, Packet)> {
    let ask = |token: Vec<u8>| {
        Packet::new(
            PacketType::Subscribe,
            0,
            1,
            Body::Subscribe {
                name: name.into(),
                token,
                max_kbps: 0,
                latency_ms: 0,
            },
        )
    };
    send(relay, now, from, &ask(Vec::new()));
    let out = drain(relay, now);
    let token = match &out[..] {
        [(to, p)] if *to == from => match &p.body {
            Body::Retry { token } => token.to_vec(),
            b => panic!("expected a RETRY, got {b:?}"),
        },
        o => panic!("expected one RETRY, got {o:?}"),
    };
    send(relay, now, from, &ask(token));
    drain(relay, now)
}

/// A DESCRIPTION of `name` from source `ssrc`.
pub(crate) fn description(ssrc: u32, name: &str) -> Packet {
    Packet::new(
        PacketType::Description,
        ssrc,
        0,
        Body::Description(Description {
            name: name.into(),
            width: 32,
            height: 32,
            fps_num: 30,
            fps_den: 1,
            audio: None,
            video_seq_base: 0,
        }),
    )
}

/// Chunk `index` of `count` (100 bytes each) of frame `frame`, sequence number `seq`.
pub(crate) fn video(ssrc: u32, seq: u32, frame: u32, index: u16, count: u16) -> Packet {
    Packet::new(
        PacketType::Video,
        ssrc,
        seq,
        Body::Video(VideoChunk {
            frame_id: frame,
            pts: frame as u64 * 3000,
            frame_size: 100 * count as u32,
            width: 32,
            height: 32,
            chunk_index: index,
            chunk_count: count,
            offset: 100 * index as u32,
            payload: Bytes::from(vec![index as u8; 100]),
        }),
    )
}
