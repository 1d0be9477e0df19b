//! The secure layer between two nodes, driven by hand: every refusal the issue names is
//! counted, and nothing reaches a node that its peer did not send.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::crypto::{self, Keys, ReplayWindow, Role, Sealer};
use super::msg::{self, Msg, RefuseReason};
use super::{Secure, SecureEvent};
use crate::proto::node::{Node, Transmit};

/// A node that records what it receives and sends what it is given.
#[derive(Debug, Default)]
struct Rec {
    got: Vec<Vec<u8>>,
    to_send: Vec<Transmit>,
}

impl Node for Rec {
    fn handle_datagram(&mut self, _: Instant, _: SocketAddr, d: &[u8]) {
        self.got.push(d.to_vec());
    }
    fn handle_timeout(&mut self, _: Instant) {}
    fn poll_timeout(&self) -> Option<Instant> {
        None
    }
    fn poll_transmit(&mut self, _: Instant) -> Option<Transmit> {
        (!self.to_send.is_empty()).then(|| self.to_send.remove(0))
    }
}

const C: &str = "10.0.0.1:4000";
const S: &str = "10.0.0.2:5000";

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn keys(b: u8) -> Keys {
    Keys::from_publish([b; 32])
}

/// A fake datagram of type `ptype` with a recognisable payload.
fn plain(ptype: u8, n: usize) -> Bytes {
    let mut v = msg::header(ptype, 7, 9).to_vec();
    v.extend((0..n).map(|i| i as u8));
    Bytes::from(v)
}

struct Pair {
    c: Secure<Rec>,
    s: Secure<Rec>,
    now: Instant,
    /// Every datagram that crossed, client → server.
    c2s: Vec<Bytes>,
    /// Every datagram that crossed, server → client.
    s2c: Vec<Bytes>,
}

impl Pair {
    fn new(client: Keys, server: Keys, role: Role) -> Pair {
        let mut c = Secure::new(Rec::default(), Some(client), [1; 32]);
        c.connect(addr(S), role);
        let s = Secure::new(Rec::default(), Some(server), [2; 32]);
        Pair {
            c,
            s,
            now: Instant::now(),
            c2s: vec![],
            s2c: vec![],
        }
    }

    /// Moves datagrams both ways until both sides are quiet.
    fn run(&mut self) {
        for _ in 0..20 {
            let mut moved = false;
            while let Some(t) = self.c.poll_transmit(self.now) {
                self.c2s.push(t.payload.clone());
                self.s.handle_datagram(self.now, addr(C), &t.payload);
                moved = true;
            }
            while let Some(t) = self.s.poll_transmit(self.now) {
                self.s2c.push(t.payload.clone());
                self.c.handle_datagram(self.now, addr(S), &t.payload);
                moved = true;
            }
            if !moved {
                return;
            }
        }
    }

    fn send_c(&mut self, d: Bytes) {
        self.c.to_send.push(Transmit {
            dest: addr(S),
            payload: d,
        });
        self.run();
    }

    fn send_s(&mut self, d: Bytes) {
        self.s.to_send.push(Transmit {
            dest: addr(C),
            payload: d,
        });
        self.run();
    }
}

#[test]
fn right_key_carries_datagrams_bit_exact_both_ways() {
    let mut p = Pair::new(keys(3).view_part(), keys(3), Role::View);
    let sub = plain(16, 60);
    p.send_c(sub.clone());
    assert!(p.c.connected(addr(S)) && p.s.connected(addr(C)));
    assert_eq!(p.s.got, vec![sub.to_vec()]);
    let video = plain(1, 1400);
    p.send_s(video.clone());
    assert_eq!(p.c.got, vec![video.to_vec()]);
    // The first datagram was queued behind the handshake: HELLO, HELLO+proof, then it.
    assert_eq!(p.c2s.len(), 3);
    assert!(p.c2s[..2].iter().all(|d| d.len() >= msg::MIN_HELLO_LEN));
    assert!(
        p.s2c
            .iter()
            .all(|d| !d.windows(4).any(|w| w == &video[16..20]))
    );
    assert_eq!(p.s.secure_stats().opened, 1);
    assert_eq!(p.c.secure_stats().opened, 1);
}

#[test]
fn wrong_key_is_refused_before_any_byte_reaches_either_node() {
    let mut p = Pair::new(keys(4).view_part(), keys(3), Role::View);
    p.send_c(plain(16, 60));
    assert!(p.s.got.is_empty());
    assert!(!p.c.connected(addr(S)));
    assert_eq!(p.c.refused_by(addr(S)), Some(RefuseReason::BadKey));
    assert_eq!(p.s.secure_stats().bad_key, 1);
    assert_eq!(
        p.c.poll_secure_event(),
        Some(SecureEvent::RefusedBy {
            peer: addr(S),
            reason: RefuseReason::BadKey
        })
    );
    // Every answer the server sent was smaller than the request it answered.
    assert!(p.s2c.iter().all(|d| d.len() < msg::MIN_HELLO_LEN));
    // The client asks again a second later; the refusal repeats, counted, logged once.
    p.now += Duration::from_secs(1);
    p.c.handle_timeout(p.now);
    p.run();
    assert_eq!(p.s.secure_stats().bad_key, 2);
    assert_eq!(p.s.refusal_counts(), vec![(addr(C), 2)]);
    let refused: Vec<_> = std::iter::from_fn(|| p.s.poll_secure_event())
        .filter(|e| matches!(e, SecureEvent::Refused { .. }))
        .collect();
    assert_eq!(refused.len(), 1);
}

#[test]
fn refusals_are_rate_limited_per_source() {
    let mut p = Pair::new(keys(4).view_part(), keys(3), Role::View);
    p.send_c(plain(16, 60));
    let hello = p.c2s[1].clone();
    let before = p.s.secure_stats().refusals_sent;
    for _ in 0..50 {
        p.s.handle_datagram(p.now, addr(C), &hello);
    }
    // The cookie is still valid: 50 wrong proofs, no more than one answer each 200 ms.
    let answers = std::iter::from_fn(|| p.s.poll_transmit(p.now)).count();
    assert_eq!(answers, 0);
    assert_eq!(p.s.secure_stats().refusals_sent, before);
    assert_eq!(p.s.secure_stats().bad_key, 51);
}

#[test]
fn view_key_cannot_publish() {
    // A view-only key asking for the publish role: the client cannot even prove it.
    let mut p = Pair::new(keys(3).view_part(), keys(3), Role::Publish);
    p.send_c(plain(3, 60));
    assert!(p.s.got.is_empty());
    assert!(p.c2s.is_empty());
    assert_eq!(p.c.refused_by(addr(S)), Some(RefuseReason::NoKey));
    // A view session sending media is refused and counted.
    let mut p = Pair::new(keys(3).view_part(), keys(3), Role::View);
    p.send_c(plain(16, 60));
    p.send_c(plain(1, 100));
    p.send_c(plain(3, 60));
    assert_eq!(p.s.got.len(), 1);
    assert_eq!(p.s.secure_stats().forbidden, 2);
    // With the publish key it is allowed.
    let mut p = Pair::new(keys(3), keys(3), Role::Publish);
    p.send_c(plain(3, 60));
    p.send_c(plain(1, 100));
    assert_eq!(p.s.got.len(), 2);
}

fn connected() -> Pair {
    let mut p = Pair::new(keys(3), keys(3), Role::View);
    p.send_c(plain(16, 60));
    p.s.got.clear();
    p.s2c.clear();
    p
}

#[test]
fn flipped_bits_and_truncated_tags_are_refused() {
    let mut p = connected();
    // A datagram the server sealed, not yet delivered.
    p.s.to_send.push(Transmit {
        dest: addr(C),
        payload: plain(1, 300),
    });
    let d = p.s.poll_transmit(p.now).unwrap().payload;
    // Every byte position, one bit flipped: none opens.
    let mut refused = 0;
    for i in 0..d.len() {
        let mut bad = d.to_vec();
        bad[i] ^= 0x10;
        p.c.handle_datagram(p.now, addr(S), &bad);
        refused += 1;
    }
    assert!(p.c.got.is_empty());
    let st = p.c.secure_stats().clone();
    assert_eq!(
        st.bad_tag + st.no_session + st.bad_handshake + st.plaintext + st.replayed,
        refused
    );
    // Truncated tags: 1..=16 bytes cut.
    for cut in 1..=16 {
        p.c.handle_datagram(p.now, addr(S), &d[..d.len() - cut]);
    }
    assert!(p.c.got.is_empty());
    assert_eq!(p.c.secure_stats().bad_tag, st.bad_tag + 16);
    // The genuine datagram still opens afterwards.
    p.c.handle_datagram(p.now, addr(S), &d);
    assert_eq!(p.c.got.len(), 1);
}

#[test]
fn replays_and_reordered_then_replayed_datagrams_are_refused() {
    let mut p = connected();
    for n in 0..3 {
        p.s.to_send.push(Transmit {
            dest: addr(C),
            payload: plain(1, 100 + n),
        });
    }
    let sealed: Vec<Bytes> = std::iter::from_fn(|| p.s.poll_transmit(p.now))
        .map(|t| t.payload)
        .collect();
    assert_eq!(sealed.len(), 3);
    for i in [2, 0, 1] {
        p.c.handle_datagram(p.now, addr(S), &sealed[i]);
    }
    assert_eq!(p.c.got.len(), 3);
    for d in sealed.iter().chain(sealed.iter().rev()) {
        p.c.handle_datagram(p.now, addr(S), d);
    }
    assert_eq!(p.c.got.len(), 3);
    assert_eq!(p.c.secure_stats().replayed, 6);
}

#[test]
fn a_replayed_capture_of_a_whole_session_is_ignored() {
    let mut p = connected();
    p.send_c(plain(19, 8));
    p.send_c(plain(22, 30));
    let capture = p.c2s.clone();
    assert_eq!(p.s.got.len(), 2);
    // Replayed while the session lives: every sealed datagram is a replay, the HELLOs
    // get the same ACCEPT back, nothing reaches the node again.
    for d in &capture {
        p.s.handle_datagram(p.now, addr(C), d);
    }
    assert_eq!(p.s.got.len(), 2);
    // Replayed after the server forgot the session (a fresh server, same key): the HELLO
    // with its old cookie gets a new cookie, the sealed datagrams no session.
    let mut fresh = Secure::new(Rec::default(), Some(keys(3)), [9; 32]);
    for d in &capture {
        fresh.handle_datagram(p.now, addr(C), d);
    }
    assert!(fresh.got.is_empty());
    assert!(fresh.secure_stats().no_session >= 2);
}

#[test]
fn a_forged_nack_from_another_address_is_refused() {
    let mut p = connected();
    let attacker = addr("10.0.0.66:4000");
    let nack = plain(22, 12);
    // In the clear.
    p.s.handle_datagram(p.now, attacker, &nack);
    // Sealed-looking, with the live session's id and a made-up tag.
    p.send_c(plain(19, 8));
    let mut forged = p.c2s.last().unwrap().to_vec();
    forged[12..16].copy_from_slice(&1000u32.to_be_bytes());
    p.s.handle_datagram(p.now, attacker, &forged);
    // From the client's own address (spoofed), with a counter not yet used.
    p.s.handle_datagram(p.now, addr(C), &forged);
    assert_eq!(p.s.got.len(), 1);
    let st = p.s.secure_stats();
    assert_eq!((st.plaintext, st.no_session, st.bad_tag), (1, 1, 1));
}

#[test]
fn plaintext_subscribe_to_a_keyed_node_gets_auth_required() {
    let mut s = Secure::new(Rec::default(), Some(keys(3)), [2; 32]);
    let now = Instant::now();
    let sub = crate::proto::wire::Packet {
        header: crate::proto::wire::Header {
            ptype: crate::proto::wire::PacketType::Subscribe,
            flags: 0,
            ssrc: 0,
            seq: 1,
        },
        body: crate::proto::wire::Body::Subscribe {
            name: "live".into(),
            token: vec![],
            max_kbps: 0,
            latency_ms: 0,
        },
    }
    .encode();
    s.handle_datagram(now, addr(C), &sub);
    let t = s.poll_transmit(now).expect("a REJECT");
    let p = crate::proto::wire::Packet::decode(&t.payload).unwrap();
    assert!(matches!(
        p.body,
        crate::proto::wire::Body::Reject {
            reason: crate::proto::wire::RejectReason::AuthRequired
        }
    ));
    assert!(t.payload.len() < sub.len());
    assert!(s.got.is_empty());
}

#[test]
fn without_keys_everything_passes_through() {
    let mut s = Secure::new(Rec::default(), None, [0; 32]);
    let now = Instant::now();
    s.handle_datagram(now, addr(C), &plain(1, 10));
    assert_eq!(s.got.len(), 1);
    s.to_send.push(Transmit {
        dest: addr(C),
        payload: plain(1, 10),
    });
    assert_eq!(s.poll_transmit(now).unwrap().payload, plain(1, 10));
}

#[test]
fn handshake_garbage_never_panics() {
    let mut s = Secure::new(Rec::default(), Some(keys(3)), [2; 32]);
    let now = Instant::now();
    let mut rng = fastrand::Rng::with_seed(5);
    for _ in 0..20_000 {
        let n = rng.usize(0..200);
        let mut d: Vec<u8> = (0..n).map(|_| rng.u8(..)).collect();
        if n >= 4 {
            d[..3].copy_from_slice(&[0x46, 0x43, 1]);
            d[3] = rng.u8(30..38);
        }
        s.handle_datagram(now, addr(C), &d);
    }
    assert!(s.got.is_empty());
}

#[test]
fn replay_window_slides() {
    let mut w = ReplayWindow::default();
    assert!(w.accept(5));
    assert!(!w.accept(5));
    assert!(w.accept(3));
    assert!(w.accept(5000));
    assert!(!w.accept(5000 - super::crypto::WINDOW as u32));
    assert!(w.accept(5000 - super::crypto::WINDOW as u32 + 1));
    assert!(w.accept(4999));
    assert!(!w.accept(4999));
    for c in 5001..7000 {
        assert!(w.accept(c));
    }
    assert!(!w.accept(6999));
}

#[test]
fn key_files_round_trip_and_view_files_cannot_publish() {
    let k = keys(7);
    assert_eq!(Keys::parse(&k.to_file()).unwrap(), k);
    let v = k.view_part();
    let back = Keys::parse(&v.to_file()).unwrap();
    assert!(!back.can_publish());
    assert_eq!(back.for_role(Role::View), k.for_role(Role::View));
    assert!(Keys::parse("").is_err());
    assert!(Keys::parse("publish 12").is_err());
    let wrong_view = format!("publish {}\nview {}\n", "00".repeat(32), "11".repeat(32));
    assert_eq!(
        Keys::parse(&wrong_view),
        Err(crypto::KeyFileError::Mismatch)
    );
    assert!(!format!("{k:?}").contains("0707"));
}

/// The vectors of proto-spec.md §9 (secure-*), computed; checked against the spec text and
/// (when written) against an independent implementation (Python's `cryptography`).
fn secure_vectors() -> Vec<(&'static str, Vec<u8>)> {
    let publish: [u8; 32] = std::array::from_fn(|i| i as u8);
    let view = crypto::view_key(&publish);
    let cr: [u8; 16] = std::array::from_fn(|i| 0x10 + i as u8);
    let cookie: [u8; 16] = std::array::from_fn(|i| 0x20 + i as u8);
    let sr: [u8; 16] = std::array::from_fn(|i| 0x30 + i as u8);
    let sid = 0x0102_0304;
    let proof = crypto::proof(&view, Role::View, &cr, &cookie);
    let k = crypto::session_keys(&view, &cr, &cookie, &sr, sid);
    let mut accept_tag = msg::accept_aad(sid, &cr, &sr);
    let n = accept_tag.len();
    Sealer::new(&k.s2c).seal(0, &mut accept_tag, n);
    let mut tag = [0u8; 16];
    tag.copy_from_slice(&accept_tag[n..]);
    let mut sealed = msg::header(msg::SEALED, sid, 1).to_vec();
    sealed.extend_from_slice(&keepalive());
    Sealer::new(&k.c2s).seal(1, &mut sealed, 16);
    vec![
        ("secure-view-key", view.to_vec()),
        ("secure-proof", proof.to_vec()),
        ("secure-c2s-key", k.c2s.to_vec()),
        ("secure-s2c-key", k.s2c.to_vec()),
        (
            "secure-hello",
            Msg::Hello {
                role: Role::View,
                client_random: cr,
                cookie: None,
            }
            .encode(),
        ),
        (
            "secure-cookie",
            Msg::Cookie {
                client_random: cr,
                cookie,
            }
            .encode(),
        ),
        (
            "secure-hello-proof",
            Msg::Hello {
                role: Role::View,
                client_random: cr,
                cookie: Some((cookie, proof)),
            }
            .encode(),
        ),
        (
            "secure-accept",
            Msg::Accept {
                sid,
                client_random: cr,
                server_random: sr,
                tag,
            }
            .encode(),
        ),
        (
            "secure-refuse",
            Msg::Refuse {
                sid: 0,
                reason: RefuseReason::BadKey,
                client_random: cr,
            }
            .encode(),
        ),
        ("secure-sealed", sealed),
    ]
}

/// A KEEPALIVE (§6.4): ssrc 0, seq 5, echo_us 12345, with its CRC.
fn keepalive() -> Bytes {
    use crate::proto::wire::{Body, Packet, PacketType};
    Packet::new(
        PacketType::KeepAlive,
        0,
        5,
        Body::KeepAlive { echo_us: 12345 },
    )
    .encode()
}

#[test]
fn spec_vectors_match() {
    let spec = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/proto-spec.md"))
        .expect("proto-spec.md at the crate root");
    for (name, bytes) in secure_vectors() {
        let want = crate::proto::wire::tests::spec_hex(&spec, name).unwrap_or_else(|| {
            panic!(
                "vector {name} missing from proto-spec.md; it is:\n{}",
                crate::proto::wire::tests::hex(&bytes)
            )
        });
        assert_eq!(
            crate::proto::wire::tests::hex(&bytes),
            crate::proto::wire::tests::hex(&want),
            "{name}"
        );
        if let Some(m) = Msg::decode(&bytes) {
            assert_eq!(m.encode(), bytes, "{name} decodes and encodes back");
        }
    }
    // The sealed vector opens to the KEEPALIVE, which decodes.
    let (_, mut sealed) = secure_vectors().pop().unwrap();
    let k = crypto::session_keys(
        &crypto::view_key(&std::array::from_fn(|i| i as u8)),
        &std::array::from_fn(|i| 0x10 + i as u8),
        &std::array::from_fn(|i| 0x20 + i as u8),
        &std::array::from_fn(|i| 0x30 + i as u8),
        0x0102_0304,
    );
    let r = Sealer::new(&k.c2s).open(1, &mut sealed, 16).unwrap();
    assert_eq!(&sealed[r.clone()], &keepalive()[..]);
    let plain = Bytes::copy_from_slice(&sealed[r]);
    assert!(crate::proto::wire::Packet::decode(&plain).is_ok());
}
