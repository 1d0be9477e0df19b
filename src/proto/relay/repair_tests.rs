use std::time::Duration;

use super::*;
use crate::proto::relay::RelayConfig;
use crate::proto::relay::test_util::{addr, description, drain, send, subscribe, video};
use crate::proto::wire::FLAG_RETRANSMIT;

const SSRC: u32 = 0xfeed;

/// A relay with publisher `addr(1)` pushing "cam" (one frame, sequence numbers 10..=12)
/// and subscribers `addr(2)` and `addr(3)`.
fn setup(t0: Instant) -> Relay {
    let mut r = Relay::new(RelayConfig::default());
    send(&mut r, t0, addr(1), &description(SSRC, "cam"));
    for i in 0..3 {
        send(&mut r, t0, addr(1), &video(SSRC, 10 + i, 0, i as u16, 3));
    }
    subscribe(&mut r, t0, addr(2), "cam");
    subscribe(&mut r, t0, addr(3), "cam");
    r
}

fn nack(start: u32, len: u16) -> Packet {
    Packet::new(
        PacketType::Nack,
        0,
        9,
        Body::Nack {
            flow: Flow::Video,
            ranges: vec![NackRange { start, len }],
        },
    )
}

/// The sequence numbers in the NACKs sent to the publisher.
fn asked_upstream(out: &[(SocketAddr, Packet)]) -> Vec<(u32, u16)> {
    out.iter()
        .filter(|(to, _)| *to == addr(1))
        .flat_map(|(_, p)| match &p.body {
            Body::Nack { ranges, .. } => {
                ranges.iter().map(|r| (r.start, r.len)).collect::<Vec<_>>()
            }
            b => panic!("unexpected {b:?} to the publisher"),
        })
        .collect()
}

#[test]
fn a_nack_is_answered_from_the_cache() {
    let t0 = Instant::now();
    let mut r = setup(t0);
    send(&mut r, t0, addr(2), &nack(11, 2));
    let out = drain(&mut r, t0);
    let got: Vec<(SocketAddr, u32, u8)> = out
        .iter()
        .map(|(to, p)| (*to, p.header.seq, p.header.flags))
        .collect();
    assert_eq!(
        got,
        vec![
            (addr(2), 11, FLAG_RETRANSMIT),
            (addr(2), 12, FLAG_RETRANSMIT)
        ]
    );
    let s = r.stats();
    assert_eq!(
        (s.cache_hits, s.retransmits_sent, s.upstream_requests),
        (2, 2, 0)
    );
}

#[test]
fn what_the_relay_lacks_is_asked_upstream_once() {
    let t0 = Instant::now();
    let ms = Duration::from_millis;
    let mut r = setup(t0);
    // Both subscribers miss 13 and 14 (the tail of a frame the relay never got).
    send(&mut r, t0, addr(2), &nack(13, 2));
    assert_eq!(asked_upstream(&drain(&mut r, t0)), vec![(13, 2)]);
    send(&mut r, t0, addr(3), &nack(13, 2));
    assert_eq!(asked_upstream(&drain(&mut r, t0)), vec![]);
    // A repeat within the re-ask interval is deduplicated too; after it, asked again.
    send(&mut r, t0 + ms(9), addr(2), &nack(13, 1));
    assert_eq!(asked_upstream(&drain(&mut r, t0 + ms(9))), vec![]);
    send(&mut r, t0 + ms(10), addr(2), &nack(13, 1));
    assert_eq!(asked_upstream(&drain(&mut r, t0 + ms(10))), vec![(13, 1)]);
    assert_eq!(r.stats().upstream_requests, 3);
    // The answer reaches both subscribers; later requests are answered from the cache.
    let mut answer = video(SSRC, 13, 1, 0, 2);
    answer.header.flags = FLAG_RETRANSMIT;
    send(&mut r, t0 + ms(11), addr(1), &answer);
    let out = drain(&mut r, t0 + ms(11));
    let to: Vec<(SocketAddr, u32)> = out.iter().map(|(a, p)| (*a, p.header.seq)).collect();
    assert_eq!(to, vec![(addr(2), 13), (addr(3), 13)]);
    send(&mut r, t0 + ms(12), addr(3), &nack(13, 1));
    let out = drain(&mut r, t0 + ms(12));
    assert_eq!(out.len(), 1);
    assert_eq!((out[0].0, out[0].1.header.seq), (addr(3), 13));
    assert_eq!(r.stats().upstream_requests, 3);
    assert_eq!(r.stats().cache_hits, 1);
}

#[test]
fn requests_to_a_publisher_stay_within_what_it_sent() {
    let t0 = Instant::now();
    let mut r = Relay::new(RelayConfig::default());
    // A description alone is about 50 bytes: room for one NACK, not two.
    send(&mut r, t0, addr(1), &description(SSRC, "cam"));
    send(&mut r, t0, addr(1), &video(SSRC, 10, 0, 0, 3));
    subscribe(&mut r, t0, addr(2), "cam");
    let mut asked = 0;
    for i in 0..20 {
        send(&mut r, t0, addr(2), &nack(20 + 2 * i, 1));
        asked += asked_upstream(&drain(&mut r, t0)).len();
    }
    let s = r.stats();
    assert!(asked > 0 && asked < 20, "{asked}");
    assert_eq!(s.origin_budget_exceeded, 20 - asked as u64);
}

#[test]
fn ranges_are_compressed() {
    let seqs: Vec<SeqNo> = [1u64, 2, 3, 5, 7, 8].into_iter().map(SeqNo).collect();
    let r: Vec<(u32, u16)> = ranges_of(&seqs).iter().map(|r| (r.start, r.len)).collect();
    assert_eq!(r, vec![(1, 3), (5, 1), (7, 2)]);
}

/// A relay that fell behind still has the chunks asked for queued for that subscriber: a
/// NACK for them is not answered (they are on their way), and one for what went out is.
#[test]
fn a_nack_for_chunks_still_queued_is_not_answered() {
    let t0 = Instant::now();
    let mut r = setup(t0);
    drain(&mut r, t0);
    // Frame 1 arrives; nothing has gone out of it when addr(2) asks for two of its chunks.
    for i in 0..3 {
        send(&mut r, t0, addr(1), &video(SSRC, 13 + i, 1, i as u16, 3));
    }
    send(&mut r, t0, addr(2), &nack(13, 2));
    let out = drain(&mut r, t0);
    let to_2: Vec<(u32, bool)> = out
        .iter()
        .filter(|(to, _)| *to == addr(2))
        .map(|(_, p)| (p.header.seq, p.header.flags & FLAG_RETRANSMIT != 0))
        .collect();
    assert_eq!(to_2, vec![(13, false), (14, false), (15, false)]);
    assert_eq!(r.stats().requests_still_queued, 2);
    // Sent now: asked again, they are answered.
    send(&mut r, t0, addr(2), &nack(13, 2));
    let out = drain(&mut r, t0);
    assert_eq!(
        out.iter()
            .filter(|(to, p)| *to == addr(2) && p.header.flags & FLAG_RETRANSMIT != 0)
            .count(),
        2
    );
}

/// A NACK for a chunk held for gathering (§7.3: 16 subscribers or more) is not answered:
/// the chunk goes out with its frame, once.
#[test]
fn a_nack_for_a_held_chunk_is_not_answered() {
    let t0 = Instant::now();
    let mut r = Relay::new(RelayConfig::default());
    send(&mut r, t0, addr(1), &description(SSRC, "cam"));
    for s in 0..16 {
        subscribe(&mut r, t0, addr(100 + s), "cam");
    }
    drain(&mut r, t0);
    for i in 0..2 {
        send(&mut r, t0, addr(1), &video(SSRC, i, 0, i as u16, 3));
    }
    send(&mut r, t0, addr(100), &nack(0, 2));
    assert_eq!(drain(&mut r, t0).len(), 0);
    send(&mut r, t0, addr(1), &video(SSRC, 2, 0, 2, 3));
    let to_first: Vec<u32> = drain(&mut r, t0)
        .into_iter()
        .filter(|(to, _)| *to == addr(100))
        .map(|(_, p)| p.header.seq)
        .collect();
    assert_eq!(to_first, vec![0, 1, 2]);
}
