//! Hostile input (proto-spec.md §7.5): each kind of bad datagram is counted under its
//! reason and dropped by the relay, the server and the client; nothing panics and nothing is
//! sent in answer.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use framecast::proto::node::Node;
use framecast::proto::publisher::{Publisher, PublisherConfig};
use framecast::proto::relay::{Relay, RelayConfig};
use framecast::proto::viewer::{Viewer, ViewerConfig};
use framecast::proto::wire::{self, Body, Packet, PacketType, VideoChunk};

fn video(seq: u32) -> Packet {
    Packet::new(
        PacketType::Video,
        0x0102_0304,
        seq,
        Body::Video(VideoChunk {
            frame_id: 1,
            pts: 3000,
            frame_size: 100,
            width: 64,
            height: 48,
            chunk_index: 0,
            chunk_count: 1,
            offset: 0,
            payload: Bytes::from(vec![7u8; 100]),
        }),
    )
}

/// Re-seals a datagram after `f` edits it, so that only the edited field is wrong.
fn reseal(good: &[u8], f: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut b = good[..good.len() - 4].to_vec();
    f(&mut b);
    let crc = wire::crc32(&b);
    b.extend_from_slice(&crc.to_be_bytes());
    b
}

fn bad_datagrams() -> Vec<(&'static str, Vec<u8>)> {
    let good = video(5).encode();
    vec![
        ("truncated", good[..12].to_vec()),
        ("truncated", reseal(&good[..good.len() - 110], |_| {})),
        ("too_large", vec![0u8; wire::MAX_DATAGRAM + 1]),
        ("bad_magic", reseal(&good, |b| b[0] = 0)),
        ("bad_version", reseal(&good, |b| b[2] = 2)),
        ("bad_crc", {
            let mut b = good.to_vec();
            b[40] ^= 0xff;
            b
        }),
        ("unknown_type", reseal(&good, |b| b[3] = 200)),
        // chunk_index 3 of chunk_count 1
        ("invalid_field", reseal(&good, |b| b[37] = 3)),
        // offset + length beyond frame_size
        ("invalid_field", reseal(&good, |b| b[41] = 50)),
        // frame_size of 4 GiB claimed
        (
            "invalid_field",
            reseal(&good, |b| {
                b[28..32].copy_from_slice(&u32::MAX.to_be_bytes())
            }),
        ),
        // dimensions 0
        (
            "invalid_field",
            reseal(&good, |b| b[32..34].copy_from_slice(&[0, 0])),
        ),
        // NACK claiming 255 ranges in a short datagram
        ("invalid_field", {
            let n = Packet::new(
                PacketType::Nack,
                0,
                0,
                Body::Nack {
                    flow: wire::Flow::Video,
                    ranges: vec![wire::NackRange { start: 1, len: 1 }],
                },
            )
            .encode();
            reseal(&n, |b| b[17] = 255)
        }),
    ]
}

/// A node's malformed counters as the string-keyed map the stats JSON shows.
fn counts(
    m: &framecast::proto::wire::MalformedCounters,
) -> std::collections::BTreeMap<String, u64> {
    m.iter().map(|(k, n)| (k.to_string(), n)).collect()
}

fn expected_counts() -> std::collections::BTreeMap<String, u64> {
    let mut m = std::collections::BTreeMap::new();
    for (reason, _) in bad_datagrams() {
        *m.entry(reason.to_string()).or_insert(0) += 1;
    }
    m
}

#[test]
fn relay_counts_and_drops_every_bad_kind() {
    let t0 = Instant::now();
    let mut relay = Relay::new(RelayConfig::default());
    let from: SocketAddr = "127.0.0.9:9999".parse().unwrap();
    for (_, d) in bad_datagrams() {
        relay.handle_datagram(t0, from, &d);
    }
    assert!(
        relay.poll_transmit(t0).is_none(),
        "nothing is sent in answer"
    );
    assert_eq!(counts(&relay.stats().malformed), expected_counts());
    // Well-formed media and control from a stranger: counted as unknown sender; only the
    // media is answered, with one REJECT `unknown_stream` smaller than it (§7.3), so that a
    // publisher the relay does not know announces its stream again.
    let media = video(6).encode();
    relay.handle_datagram(t0, from, &media);
    let answer = relay.poll_transmit(t0).expect("media is answered");
    assert_eq!(answer.dest, from);
    assert!(answer.payload.len() < media.len());
    assert_eq!(
        Packet::decode(&answer.payload).unwrap().body,
        Body::Reject {
            reason: wire::RejectReason::UnknownStream
        }
    );
    assert!(relay.poll_transmit(t0).is_none());
    for body in [
        Body::KeepAlive { echo_us: 1 },
        Body::Bye,
        Body::ReceiverReport(Default::default()),
    ] {
        let t = match body {
            Body::KeepAlive { .. } => PacketType::KeepAlive,
            Body::Bye => PacketType::Bye,
            _ => PacketType::ReceiverReport,
        };
        relay.handle_datagram(t0, from, &Packet::new(t, 0, 1, body).encode());
    }
    assert_eq!(relay.stats().unknown_sender, 4);
    relay.handle_timeout(t0 + Duration::from_secs(1));
    assert!(relay.poll_transmit(t0 + Duration::from_secs(1)).is_none());
}

#[test]
fn server_and_client_count_and_drop_every_bad_kind() {
    let t0 = Instant::now();
    let server_addr: SocketAddr = "127.0.0.1:5000".parse().unwrap();
    let mut server = Publisher::new(PublisherConfig::new("cam1", 64, 48, 30));
    let mut client = Viewer::new(ViewerConfig::new(server_addr, "cam1"));
    let _ = server.poll_transmit(t0);
    while client.poll_transmit(t0).is_some() {}
    for (_, d) in bad_datagrams() {
        server.handle_datagram(t0, "127.0.0.9:1".parse().unwrap(), &d);
        client.handle_datagram(t0, server_addr, &d);
    }
    assert_eq!(counts(&server.stats().relay.malformed), expected_counts());
    assert_eq!(counts(&client.stats().malformed), expected_counts());
    // Media from an address other than the server: unknown sender.
    client.handle_datagram(t0, "127.0.0.9:1".parse().unwrap(), &video(1).encode());
    assert_eq!(client.stats().unknown_sender, 1);
    assert_eq!(client.stats().frames_played, 0);
    assert!(client.poll_event().is_none());
}

/// A node that sends what it is given (the client side of a keyed session in the test below).
#[derive(Default)]
struct Pipe(std::collections::VecDeque<framecast::proto::node::Transmit>);

impl Node for Pipe {
    fn handle_datagram(&mut self, _: Instant, _: SocketAddr, _: &[u8]) {}
    fn handle_timeout(&mut self, _: Instant) {}
    fn poll_timeout(&self) -> Option<Instant> {
        None
    }
    fn poll_transmit(&mut self, _: Instant) -> Option<framecast::proto::node::Transmit> {
        self.0.pop_front()
    }
}

/// With keys (proto-spec.md §8): in the clear, every bad kind is dropped by the secure layer
/// before the relay sees it (answered, if at all, by one REJECT `auth_required` no larger
/// than the request); sealed inside a valid session, the relay counts each bad kind exactly
/// as without keys, and answers nothing.
#[test]
fn with_keys_bad_datagrams_are_dropped_in_the_clear_and_counted_when_sealed() {
    use framecast::proto::node::Transmit;
    use framecast::proto::secure::{Keys, Role, Secure};
    let t0 = Instant::now();
    let keys = Keys::from_publish([5; 32]);
    let relay_addr: SocketAddr = "127.0.0.1:6000".parse().unwrap();
    let from: SocketAddr = "127.0.0.9:9999".parse().unwrap();
    let mut relay = Secure::new(
        Relay::new(RelayConfig::default()),
        Some(keys.clone()),
        [3; 32],
    );
    for (_, d) in bad_datagrams() {
        relay.handle_datagram(t0, from, &d);
        while let Some(t) = relay.poll_transmit(t0) {
            assert!(t.payload.len() <= d.len());
            let p = Packet::decode(&t.payload).unwrap();
            assert!(matches!(
                p.body,
                Body::Reject {
                    reason: wire::RejectReason::AuthRequired
                }
            ));
        }
    }
    assert_eq!(
        relay.stats().malformed.total(),
        0,
        "nothing reached the relay"
    );
    let s = relay.secure_stats();
    assert_eq!(s.plaintext + s.bad_handshake, bad_datagrams().len() as u64);

    // A publisher's session, then the same bad datagrams sealed inside it.
    let mut client = Secure::new(Pipe::default(), Some(keys), [4; 32]);
    client.connect(relay_addr, Role::Publish);
    let mut t = t0 + Duration::from_millis(300);
    for (_, d) in bad_datagrams() {
        client.0.push_back(Transmit {
            dest: relay_addr,
            payload: Bytes::from(d),
        });
    }
    for _ in 0..8 {
        while let Some(x) = client.poll_transmit(t) {
            relay.handle_datagram(t, from, &x.payload);
        }
        while let Some(x) = relay.poll_transmit(t) {
            assert_eq!(x.dest, from);
            client.handle_datagram(t, relay_addr, &x.payload);
        }
        t += Duration::from_millis(1);
    }
    assert!(relay.connected(from));
    assert_eq!(counts(&relay.stats().malformed), expected_counts());
    assert_eq!(relay.secure_stats().opened, bad_datagrams().len() as u64);
}
