//! Wire-format tests: round trips, malformed input, and the hex test vectors of
//! proto-spec.md §9 (read from the spec itself, so code and spec cannot drift apart).

use super::*;
use proptest::prelude::*;

/// The packets whose encodings proto-spec.md §9 lists, by vector name.
pub(crate) fn spec_vectors() -> Vec<(&'static str, Packet)> {
    let mut retransmit = Packet::new(
        PacketType::Video,
        0x0A0B_0C0D,
        0xFFFF_FFFF,
        Body::Video(VideoChunk {
            frame_id: 7,
            pts: 630_000,
            frame_size: 4,
            width: 7680,
            height: 4320,
            chunk_index: 0,
            chunk_count: 1,
            offset: 0,
            payload: Bytes::from_static(&[0xFF, 0xD8, 0xFF, 0xD9]),
        }),
    );
    retransmit.header.flags = FLAG_RETRANSMIT;
    vec![
        ("video-chunk", {
            let mut p = retransmit.clone();
            p.header.flags = 0;
            p
        }),
        ("video-chunk-retransmit", retransmit),
        (
            "audio-block",
            Packet::new(
                PacketType::Audio,
                0x0A0B_0C0D,
                1,
                Body::Audio(AudioBlock {
                    pts: 90_000,
                    sample_rate: 48_000,
                    channels: 2,
                    format: SampleFormat::S16Le,
                    frames: 1,
                    payload: Bytes::from_static(&[0x01, 0x00, 0xFF, 0xFF]),
                }),
            ),
        ),
        (
            "description",
            Packet::new(
                PacketType::Description,
                0x0A0B_0C0D,
                0,
                Body::Description(Description {
                    name: "cam1".into(),
                    width: 1280,
                    height: 720,
                    fps_num: 30,
                    fps_den: 1,
                    audio: Some(AudioParams {
                        sample_rate: 48_000,
                        channels: 2,
                        block_frames: 240,
                    }),
                    video_seq_base: 100,
                }),
            ),
        ),
        (
            "subscribe",
            Packet::new(
                PacketType::Subscribe,
                0,
                0,
                Body::Subscribe {
                    name: "cam1".into(),
                    token: vec![],
                    max_kbps: 0,
                    latency_ms: 0,
                },
            ),
        ),
        (
            "retry",
            Packet::new(PacketType::Retry, 0, 0, Body::Retry { token: [0x11; 16] }),
        ),
        (
            "keepalive",
            Packet::new(
                PacketType::KeepAlive,
                0,
                2,
                Body::KeepAlive {
                    echo_us: 0x0102_0304,
                },
            ),
        ),
        (
            "nack",
            Packet::new(
                PacketType::Nack,
                0x0A0B_0C0D,
                3,
                Body::Nack {
                    flow: Flow::Video,
                    ranges: vec![
                        NackRange { start: 10, len: 1 },
                        NackRange {
                            start: 0xFFFF_FFFE,
                            len: 4,
                        },
                    ],
                },
            ),
        ),
        (
            "end",
            Packet::new(
                PacketType::End,
                0x0A0B_0C0D,
                1,
                Body::End { last_pts: 540_000 },
            ),
        ),
        (
            "skip",
            Packet::new(
                PacketType::Skip,
                0x0A0B_0C0D,
                2,
                Body::Skip {
                    frame_id: 7,
                    first_seq: 1000,
                    chunk_count: 48,
                },
            ),
        ),
    ]
}

/// Bytes as spaced lower-case hex, as proto-spec.md §9 prints them.
pub(crate) fn hex(b: &[u8]) -> String {
    b.iter()
        .map(|x| format!("{x:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Extracts the hex bytes of vector `name` from proto-spec.md: the lines after a line
/// `vector NAME` up to the closing code fence.
pub(crate) fn spec_hex(spec: &str, name: &str) -> Option<Vec<u8>> {
    let mut lines = spec.lines();
    lines.find(|l| l.trim() == format!("vector {name}"))?;
    let mut out = Vec::new();
    for l in lines {
        let l = l.trim();
        if l.starts_with("```") || l.starts_with("vector ") {
            break;
        }
        for tok in l.split_whitespace() {
            out.push(u8::from_str_radix(tok, 16).ok()?);
        }
    }
    Some(out)
}

#[test]
fn spec_test_vectors_match() {
    let spec = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/proto-spec.md"))
        .expect("proto-spec.md at the crate root");
    for (name, packet) in spec_vectors() {
        let enc = packet.encode();
        let want = spec_hex(&spec, name).unwrap_or_else(|| {
            panic!(
                "vector {name} missing from proto-spec.md; encoding is:\n{}",
                hex(&enc)
            )
        });
        assert_eq!(hex(&enc), hex(&want), "vector {name}");
        assert_eq!(
            Packet::decode(&Bytes::from(want)).as_ref(),
            Ok(&packet),
            "vector {name}"
        );
    }
}

/// Packets encoded one after another into one buffer (as the packetizer does) are each the
/// bytes `encode` gives, their CRCs covering only themselves, and `encoded_len_hint` is exact
/// for them.
#[test]
fn packets_encoded_into_one_buffer_are_each_their_own_encoding() {
    // Bytes already in the buffer, which no packet's CRC may cover.
    let mut buf = bytes::BytesMut::from(&b"earlier bytes"[..]);
    for (name, p) in spec_vectors() {
        let alone = p.encode();
        let before = buf.len();
        p.encode_into(&mut buf);
        assert_eq!(&buf[before..], &alone[..], "{name}");
        if matches!(p.body, Body::Video(_) | Body::Audio(_) | Body::Parity(_)) {
            assert_eq!(alone.len(), p.encoded_len_hint(), "{name}");
        }
        let d = buf.split_off(before).freeze();
        assert_eq!(Packet::decode(&d).unwrap(), p, "{name}");
    }
}

#[test]
fn with_flags_rewrites_crc() {
    let (_, p) = spec_vectors().remove(0);
    let enc = p.encode();
    let rtx = with_flags(&enc, FLAG_RETRANSMIT).unwrap();
    let d = Packet::decode(&rtx).unwrap();
    assert_eq!(d.header.flags, FLAG_RETRANSMIT);
    assert_eq!(d.body, p.body);
}

#[test]
fn malformed_datagrams_are_rejected_with_a_reason() {
    let good = spec_vectors().remove(0).1.encode();
    let cases: Vec<(Vec<u8>, DecodeError)> = vec![
        (vec![], DecodeError::Truncated),
        (good[..10].to_vec(), DecodeError::Truncated),
        (vec![0u8; MAX_DATAGRAM + 1], DecodeError::TooLarge),
        (
            {
                let mut b = good.to_vec();
                b[0] = b'X';
                b
            },
            DecodeError::BadMagic,
        ),
        (
            {
                let mut b = good.to_vec();
                b[2] = 9;
                b
            },
            DecodeError::BadVersion(9),
        ),
        (
            {
                let mut b = good.to_vec();
                b[20] ^= 1;
                b
            },
            DecodeError::BadCrc,
        ),
        (reseal(&good, |b| b[3] = 99), DecodeError::UnknownType(99)),
        // chunk_index (byte 36..38) beyond chunk_count.
        (
            reseal(&good, |b| b[37] = 5),
            DecodeError::ChunkIndex { index: 5, count: 1 },
        ),
        // frame_size (byte 28..32) larger than the limit.
        (
            reseal(&good, |b| b[28] = 0xFF),
            DecodeError::FrameSize { size: 0xFF00_0004 },
        ),
        // width zero.
        (
            reseal(&good, |b| {
                b[32] = 0;
                b[33] = 0
            }),
            DecodeError::Dimensions {
                width: 0,
                height: 4320,
            },
        ),
        // A video header cut short: only 10 body bytes.
        (reseal_len(&good, HEADER_LEN + 10), DecodeError::Truncated),
    ];
    for (bytes, want) in cases {
        assert_eq!(Packet::decode(&Bytes::from(bytes)), Err(want));
    }
}

/// Applies `f` to the datagram minus its CRC, then appends a correct CRC.
fn reseal(good: &[u8], f: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut b = good[..good.len() - CRC_LEN].to_vec();
    f(&mut b);
    let crc = crc32(&b);
    b.extend_from_slice(&crc.to_be_bytes());
    b
}

fn reseal_len(good: &[u8], len: usize) -> Vec<u8> {
    reseal(&good[..len + CRC_LEN], |_| {})
}

fn arb_body() -> impl Strategy<Value = (PacketType, Body)> {
    prop_oneof![
        (
            any::<u32>(),
            any::<u64>(),
            1u16..=MAX_DIMENSION,
            1u16..=MAX_DIMENSION,
            proptest::collection::vec(any::<u8>(), 1..1400),
            0u32..100_000,
            1u16..100,
        )
            .prop_flat_map(|(frame_id, pts, w, h, payload, before, count)| {
                (0..count).prop_map(move |idx| {
                    let len = payload.len() as u32;
                    let last = idx + 1 == count;
                    let frame_size = if last { before + len } else { before + len + 7 };
                    (
                        PacketType::Video,
                        Body::Video(VideoChunk {
                            frame_id,
                            pts,
                            frame_size,
                            width: w,
                            height: h,
                            chunk_index: idx,
                            chunk_count: count,
                            offset: before,
                            payload: Bytes::from(payload.clone()),
                        }),
                    )
                })
            }),
        (any::<u64>(), 1u16..300, 1u8..=MAX_CHANNELS).prop_map(|(pts, frames, ch)| (
            PacketType::Audio,
            Body::Audio(AudioBlock {
                pts,
                sample_rate: 44_100,
                channels: ch,
                format: SampleFormat::S16Le,
                frames,
                payload: Bytes::from(vec![0x5a; frames as usize * ch as usize * 2]),
            })
        )),
        ("[a-z0-9]{1,64}", any::<bool>(), any::<u32>()).prop_map(|(name, tok, kbps)| (
            PacketType::Subscribe,
            Body::Subscribe {
                name,
                token: if tok { vec![3; TOKEN_LEN] } else { vec![] },
                max_kbps: kbps,
                latency_ms: (kbps % 5000) as u16,
            }
        )),
        (
            any::<u8>().prop_map(|f| if f % 2 == 0 { Flow::Video } else { Flow::Audio }),
            proptest::collection::vec((any::<u32>(), 1u16..), 1..=MAX_NACK_RANGES)
        )
            .prop_map(|(flow, r)| (
                PacketType::Nack,
                Body::Nack {
                    flow,
                    ranges: r
                        .into_iter()
                        .map(|(start, len)| NackRange { start, len })
                        .collect()
                }
            )),
        any::<u32>().prop_map(|e| (PacketType::KeepAliveAck, Body::KeepAliveAck { echo_us: e })),
        Just((PacketType::Bye, Body::Bye)),
        any::<u64>().prop_map(|p| (PacketType::End, Body::End { last_pts: p })),
        (any::<u32>(), any::<u32>(), 1u16..).prop_map(|(f, s, n)| (
            PacketType::Skip,
            Body::Skip {
                frame_id: f,
                first_seq: s,
                chunk_count: n
            }
        )),
    ]
}

proptest! {
    #[test]
    fn encode_decode_round_trip((ptype, body) in arb_body(), ssrc in any::<u32>(), seq in any::<u32>(), flags in any::<u8>()) {
        let mut p = Packet::new(ptype, ssrc, seq, body);
        p.header.flags = flags;
        let enc = p.encode();
        prop_assert!(enc.len() <= MAX_DATAGRAM);
        prop_assert_eq!(Packet::decode(&enc), Ok(p));
    }

    #[test]
    fn decode_never_panics(data in proptest::collection::vec(any::<u8>(), 0..2000)) {
        let _ = Packet::decode(&Bytes::from(data));
    }

    #[test]
    fn any_single_bit_flip_is_caught(bit in 0usize..(8 * 64)) {
        let enc = spec_vectors()[3].1.encode();
        let mut b = enc.to_vec();
        let bit = bit % (8 * b.len());
        b[bit / 8] ^= 1 << (bit % 8);
        prop_assert!(Packet::decode(&Bytes::from(b)).is_err());
    }
}

#[test]
fn a_skip_naming_no_chunks_is_an_invalid_field() {
    let d = Packet::new(
        PacketType::Skip,
        1,
        0,
        Body::Skip {
            frame_id: 1,
            first_seq: 1,
            chunk_count: 0,
        },
    )
    .encode();
    assert_eq!(d.len(), 30);
    let e = Packet::decode(&d).unwrap_err();
    assert_eq!(e.reason(), "invalid_field");
}

#[test]
fn receiver_report_carries_loss_and_burst_and_older_shorter_reports_still_decode() {
    let r = ReceiverReport {
        received: 1000,
        lost: 3,
        rtt_us: 20_000,
        loss_q16: 6554,
        burst_q8: 1024,
        ..ReceiverReport::default()
    };
    let p = Packet::new(PacketType::ReceiverReport, 9, 1, Body::ReceiverReport(r));
    let d = p.encode();
    assert_eq!(d.len(), 52);
    assert_eq!(
        &d[44..48],
        &[0x19, 0x9A, 0x04, 0x00],
        "loss_q16, burst_q8 big-endian"
    );
    assert_eq!(
        Packet::decode(&d).expect("valid").body,
        Body::ReceiverReport(r)
    );
    // A report from before the §6.6 extension (48 bytes) states neither.
    let old = Bytes::from(reseal_len(&d, 44));
    assert_eq!(old.len(), 48);
    let Body::ReceiverReport(o) = Packet::decode(&old).expect("valid").body else {
        unreachable!()
    };
    assert_eq!((o.loss_q16, o.burst_q8, o.rtt_us), (0, 0, 20_000));
}
