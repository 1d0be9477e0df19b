//! Real sockets on loopback: serve -> relay -> two players, every frame byte-identical
//! (CRC32 of the JPEG bytes) and the audio bit-exact. Bounded in time by the roles' own
//! `--duration`; no sleep is used to synchronise anything.
#![cfg(feature = "jpeg")]

use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;

use framecast::app::play::{Play, PlayArgs};
use framecast::app::relay::{RelayArgs, RelayRole};
use framecast::app::serve::{Serve, ServeArgs};

fn bind_serve(lo: SocketAddr, relay: Option<SocketAddr>) -> Serve {
    let mut s = ServeArgs::new(lo);
    s.source = "test:320x240@30".into();
    s.duration = Some(2.0);
    s.start_delay_ms = 300;
    s.seed = Some(5);
    s.name = "cam1".into();
    s.relay = relay;
    let mut serve = Serve::bind(s).unwrap();
    serve.record_checksums = true;
    serve.status = false;
    serve
}

fn run_chain(lo: SocketAddr, push: bool) {
    let mut r = RelayArgs::new(lo);
    r.duration = Some(3.2);
    let upstream = (!push).then(|| bind_serve(lo, None));
    r.upstream = upstream.as_ref().map(|s| s.local_addr());
    let mut relay = RelayRole::bind(r).unwrap();
    relay.status = false;
    let relay_addr = relay.local_addr();
    // Pull: the relay subscribes to the server; push: the server feeds the relay.
    let serve = upstream.unwrap_or_else(|| bind_serve(lo, Some(relay_addr)));
    let players: Vec<Play> = (0..2)
        .map(|_| {
            let mut p = PlayArgs::new(relay_addr, "cam1");
            p.duration = Some(3.0);
            let mut play = Play::bind(p).unwrap();
            play.record_checksums = true;
            play.status = false;
            play
        })
        .collect();
    let never = AtomicBool::new(false);
    std::thread::scope(|sc| {
        let relay_t = sc.spawn(|| relay.run(&AtomicBool::new(false)).unwrap());
        let player_t: Vec<_> = players
            .into_iter()
            .map(|p| sc.spawn(|| p.run(&AtomicBool::new(false)).unwrap()))
            .collect();
        let sent = serve.run(&never).unwrap();
        let relay = relay_t.join().unwrap();
        assert!(
            sent.frame_crcs.len() >= 55,
            "sent {} frames",
            sent.frame_crcs.len()
        );
        for t in player_t {
            let played = t.join().unwrap();
            // In push mode the players may have been refused until the stream was
            // announced; in pull mode they subscribed before the first frame.
            let offset = sent
                .frame_crcs
                .iter()
                .position(|c| Some(c) == played.frame_crcs.first())
                .expect("first frame played was sent");
            if !push {
                assert_eq!(offset, 0);
            }
            assert_eq!(
                played.frame_crcs,
                sent.frame_crcs[offset..],
                "every frame, byte-identical, in order"
            );
            assert_eq!(
                played.frames_decoded + played.decode_skipped,
                played.frame_crcs.len() as u64
            );
            assert_eq!(played.decode_errors, 0);
            assert_eq!(
                played.client.frames_late + played.client.frames_incomplete,
                0
            );
            if !push {
                assert_eq!(played.audio_crc, sent.audio_crc, "audio bit-exact");
                assert_eq!(played.client.audio_concealed, 0);
            }
        }
        assert_eq!(relay.relay.queue_frames_dropped, 0);
        assert!(relay.relay.malformed.is_empty());
    });
}

#[test]
fn serve_relay_two_players_ipv4_pull() {
    run_chain("127.0.0.1:0".parse().unwrap(), false);
}

#[test]
fn serve_relay_two_players_ipv6_push() {
    run_chain("[::1]:0".parse().unwrap(), true);
}

#[test]
fn a_busy_port_is_a_one_line_error() {
    let taken = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let err = Serve::bind(ServeArgs::new(taken.local_addr().unwrap())).unwrap_err();
    let msg = format!("{err:#}");
    assert!(
        msg.contains("address already in use") && !msg.contains('\n'),
        "{msg}"
    );
    let err = Serve::bind(ServeArgs {
        source: "webcam:7".into(),
        ..ServeArgs::new("127.0.0.1:0".parse().unwrap())
    })
    .unwrap_err();
    assert!(format!("{err:#}").contains("--source webcam:7"));
}
