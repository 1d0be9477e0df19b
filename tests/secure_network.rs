//! The secure layer (proto-spec.md §8) in the simulated network: publisher → relay →
//! viewers with keys, under loss. Frames play bit-exact, no JPEG byte crosses a link in the
//! clear, a wrong key plays nothing, and a replayed capture is ignored.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use framecast::proto::node::{Node, Transmit};
use framecast::proto::publisher::{Publisher, PublisherConfig};
use framecast::proto::relay::{Relay, RelayConfig};
use framecast::proto::secure::{Keys, RefuseReason, Role, SEAL_OVERHEAD, Secure};
use framecast::proto::viewer::{Viewer, ViewerConfig, ViewerEvent};
use framecast::proto::wire::DEFAULT_DATAGRAM;
use framecast::sim::World;
use framecast::sim::netem::LinkConfig;

const FPS: u64 = 30;
/// What the publisher sends and must never show: a JFIF start and a known payload.
const JFIF: [u8; 10] = [0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x10, b'J', b'F', b'I', b'F'];
const SECRET: &[u8] = b"framecast-known-payload";

type Capture = Rc<RefCell<Vec<Bytes>>>;

/// A node that records every datagram it sends.
struct Tap<N> {
    inner: N,
    sent: Capture,
}

impl<N: Node> Node for Tap<N> {
    fn handle_datagram(&mut self, now: Instant, from: SocketAddr, d: &[u8]) {
        self.inner.handle_datagram(now, from, d)
    }
    fn handle_timeout(&mut self, now: Instant) {
        self.inner.handle_timeout(now)
    }
    fn poll_timeout(&self) -> Option<Instant> {
        self.inner.poll_timeout()
    }
    fn poll_transmit(&mut self, now: Instant) -> Option<Transmit> {
        let t = self.inner.poll_transmit(now)?;
        self.sent.borrow_mut().push(t.payload.clone());
        Some(t)
    }
}

fn addr(last: u8) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, last], 5000))
}

/// A JPEG-looking frame: SOI + JFIF, the known payload, varying bytes, EOI.
fn frame(i: u64) -> Bytes {
    let mut v = JFIF.to_vec();
    v.extend_from_slice(SECRET);
    v.extend((0..6000 + (i as usize * 7919) % 5000).map(|k| (k as u64 ^ (i * 31)) as u8));
    v.extend_from_slice(&[0xFF, 0xD9]);
    Bytes::from(v)
}

struct Net {
    world: World,
    publisher: SocketAddr,
    relay: SocketAddr,
    viewers: Vec<SocketAddr>,
    capture: Capture,
    played: BTreeMap<SocketAddr, Vec<Bytes>>,
    sent: Vec<Bytes>,
}

fn seed(n: u8) -> [u8; 32] {
    [n; 32]
}

impl Net {
    /// A publisher pushing into a relay; viewers with `viewer_keys[i]` (None: no keys).
    fn new(keys: Option<Keys>, viewer_keys: Vec<Option<Keys>>, loss: f64) -> Net {
        Net::with(keys.clone(), keys, viewer_keys, loss)
    }

    /// As [`Net::new`], the publisher holding `publisher_keys`, the relay `keys`.
    fn with(
        publisher_keys: Option<Keys>,
        keys: Option<Keys>,
        viewer_keys: Vec<Option<Keys>>,
        loss: f64,
    ) -> Net {
        let mut world = World::new(Instant::now(), 11);
        world.set_default_link(LinkConfig {
            delay: Duration::from_millis(5),
            loss,
            ..LinkConfig::default()
        });
        let capture = Capture::default();
        let (publisher, relay) = (addr(1), addr(2));
        let overhead = if keys.is_some() { SEAL_OVERHEAD } else { 0 };
        let mut pcfg = PublisherConfig::new("cam", 640, 480, FPS as u16);
        pcfg.max_datagram = DEFAULT_DATAGRAM - overhead;
        pcfg.push_to = Some(relay);
        pcfg.randomize(&mut fastrand::Rng::with_seed(3));
        let mut p = Secure::new(Publisher::new(pcfg), publisher_keys, seed(1));
        p.connect(relay, Role::Publish);
        let tap = |inner, capture: &Capture| Tap {
            inner,
            sent: capture.clone(),
        };
        world.add_node(publisher, tap(p, &capture));
        let r = Secure::new(Relay::new(RelayConfig::default()), keys, seed(2));
        world.add_node(
            relay,
            Tap {
                inner: r,
                sent: capture.clone(),
            },
        );
        let mut viewers = vec![];
        for (i, k) in viewer_keys.into_iter().enumerate() {
            let a = addr(10 + i as u8);
            let mut v = Secure::new(
                Viewer::new(ViewerConfig::new(relay, "cam")),
                k,
                seed(10 + i as u8),
            );
            v.connect(relay, Role::View);
            world.add_node(
                a,
                Tap {
                    inner: v,
                    sent: capture.clone(),
                },
            );
            viewers.push(a);
        }
        Net {
            world,
            publisher,
            relay,
            played: viewers.iter().map(|a| (*a, vec![])).collect(),
            viewers,
            capture,
            sent: vec![],
        }
    }

    fn viewer(&mut self, a: SocketAddr) -> &mut Secure<Viewer> {
        &mut self.world.node_mut::<Tap<Secure<Viewer>>>(a).inner
    }

    fn collect(&mut self) {
        for a in self.viewers.clone() {
            while let Some(e) = self.viewer(a).poll_event() {
                if let ViewerEvent::Frame(f) = e {
                    self.played.get_mut(&a).unwrap().push(f.jpeg);
                }
            }
        }
    }

    /// Lets the handshakes settle, then sends `frames` frames in real time, then drains.
    fn run(&mut self, frames: u64) {
        let t0 = self.world.now() + Duration::from_millis(800);
        self.world.run_until(t0);
        self.collect();
        for i in 0..frames {
            let t = t0 + Duration::from_nanos(i * 1_000_000_000 / FPS);
            self.world.run_until(t);
            self.collect();
            let now = self.world.now();
            let f = frame(i);
            self.world
                .node_mut::<Tap<Secure<Publisher>>>(self.publisher)
                .inner
                .push_frame(now, i * 3000, &f)
                .unwrap();
            self.sent.push(f);
            self.world.poll_all();
        }
        let end = self.world.now() + Duration::from_millis(600);
        self.world.run_until(end);
        self.collect();
    }

    fn clear_text_hits(&self) -> usize {
        self.capture
            .borrow()
            .iter()
            .filter(|d| {
                d.windows(JFIF.len()).any(|w| w == JFIF)
                    || d.windows(SECRET.len()).any(|w| w == SECRET)
            })
            .count()
    }
}

fn keys() -> Keys {
    Keys::from_publish([0x42; 32])
}

#[test]
fn keyed_stream_plays_bit_exact_and_no_jpeg_crosses_the_wire() {
    let view = keys().view_part();
    let wrong = Keys::from_publish([0x43; 32]).view_part();
    let mut net = Net::new(
        Some(keys()),
        vec![Some(view.clone()), Some(view), Some(wrong)],
        0.02,
    );
    net.run(90);
    let (good, bad) = (net.viewers[0], net.viewers[2]);
    for a in [net.viewers[0], net.viewers[1]] {
        let played = &net.played[&a];
        // Loss is repaired through the relay's cache under encryption.
        assert!(played.len() >= 85, "{a}: {} of 90 frames", played.len());
        for f in played {
            assert!(
                net.sent.contains(f),
                "{a} played a frame the publisher did not send"
            );
        }
    }
    assert!(
        net.viewer(good).inner().stats().video.recovered > 0,
        "the loss was not repaired"
    );
    // The wrong key: refused, nothing played.
    assert!(net.played[&bad].is_empty());
    let relay_addr = net.relay;
    assert_eq!(
        net.viewer(bad).refused_by(relay_addr),
        Some(RefuseReason::BadKey)
    );
    let relay = &net.world.node::<Tap<Secure<Relay>>>(net.relay).inner;
    assert!(relay.secure_stats().bad_key >= 1);
    assert!(relay.secure_stats().sealed > 1000);
    // Nothing in the clear.
    assert!(
        net.capture.borrow().len() > 1500,
        "{}",
        net.capture.borrow().len()
    );
    assert_eq!(net.clear_text_hits(), 0);
}

#[test]
fn the_scan_finds_jpeg_bytes_without_keys() {
    // The control for the test above: the same scan over a keyless run finds the frames.
    let mut net = Net::new(None, vec![None], 0.0);
    net.run(10);
    assert_eq!(net.played[&net.viewers[0]].len(), 10);
    assert!(net.clear_text_hits() >= 20);
}

#[test]
fn a_replayed_capture_is_ignored() {
    let mut net = Net::new(Some(keys()), vec![Some(keys().view_part())], 0.0);
    net.run(30);
    let v = net.viewers[0];
    let played = net.played[&v].len();
    assert!(played >= 29);
    let capture = net.capture.borrow().clone();
    let now = net.world.now();
    let relay = net.relay;
    // Everything any node sent, replayed to the viewer as if from the relay, twice.
    for _ in 0..2 {
        for d in &capture {
            net.viewer(v).handle_datagram(now, relay, d);
        }
    }
    net.world.poll_all();
    net.collect();
    assert_eq!(net.played[&v].len(), played, "a replayed datagram played");
    let st = net.viewer(v).secure_stats().clone();
    assert!(st.replayed > 0 && st.replayed + st.bad_tag + st.no_session + st.bad_handshake > 0);
    // And to the relay as if from the publisher: nothing new goes to the viewer.
    let sealed_before = net
        .world
        .node::<Tap<Secure<Relay>>>(relay)
        .inner
        .secure_stats()
        .opened;
    let publisher = net.publisher;
    for d in &capture {
        net.world
            .node_mut::<Tap<Secure<Relay>>>(relay)
            .inner
            .handle_datagram(now, publisher, d);
    }
    let r = &net.world.node::<Tap<Secure<Relay>>>(relay).inner;
    // Only genuinely new datagrams could open; a capture has none.
    assert_eq!(r.secure_stats().opened, sealed_before);
}

#[test]
fn a_view_key_cannot_publish() {
    let view = keys().view_part();
    let mut net = Net::with(Some(view.clone()), Some(keys()), vec![Some(view)], 0.0);
    net.run(15);
    assert!(net.played[&net.viewers[0]].is_empty());
    let (p, relay) = (net.publisher, net.relay);
    let publisher = &net.world.node::<Tap<Secure<Publisher>>>(p).inner;
    assert_eq!(publisher.refused_by(relay), Some(RefuseReason::NoKey));
    // Not one datagram of the stream left the publisher.
    assert_eq!(net.clear_text_hits(), 0);
    assert_eq!(publisher.secure_stats().sealed, 0);
}
