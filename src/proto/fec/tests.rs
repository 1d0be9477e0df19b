//! FEC tests: exhaustive loss patterns for small frames, seeded random ones for K = 48,
//! hostile input, and the test vectors of proto-spec.md §9 (read from the spec itself).

use super::msg::*;
use super::*;

/// A frame of `k` chunks of `chunk_len` bytes, the last `last` bytes, from a seeded RNG.
fn frame(rng: &mut fastrand::Rng, k: usize, chunk_len: usize, last: usize) -> Vec<Vec<u8>> {
    (0..k)
        .map(|i| {
            let n = if i + 1 == k { last } else { chunk_len };
            (0..n).map(|_| rng.u8(..)).collect()
        })
        .collect()
}

/// Feeds the symbols not in `lost` (indexes 0..k data, k.. parity) and checks the frame
/// comes back whole.
fn check_recovers(chunks: &[Vec<u8>], enc: &FecEncoder, lost: &[usize], order_seed: u64) {
    let params = enc.params();
    let k = params.k();
    let total = k + params.parity_count();
    let mut order: Vec<usize> = (0..total).filter(|i| !lost.contains(i)).collect();
    fastrand::Rng::with_seed(order_seed).shuffle(&mut order);
    let mut dec = FecDecoder::new(params);
    for &s in &order {
        let before = dec.needed();
        let r = if s < k {
            dec.add_data(s, &chunks[s])
        } else {
            dec.add_parity(s - k, enc.parity(s - k).unwrap())
        }
        .unwrap();
        match r {
            Added::Need(n) => assert_eq!(n, before - 1),
            Added::Ready => assert_eq!(dec.needed(), 0),
            Added::Ignored => assert_eq!(before, 0),
        }
    }
    assert_eq!(dec.needed(), 0, "lost {lost:?}");
    let restored = dec.recover().unwrap();
    let want: Vec<usize> = lost.iter().copied().filter(|&i| i < k).collect();
    let mut got = restored.clone();
    got.sort_unstable();
    let mut want_sorted = want.clone();
    want_sorted.sort_unstable();
    // Restored = the lost data chunks (those not received).
    assert_eq!(got, want_sorted, "lost {lost:?}");
    assert!(dec.is_complete());
    for (i, c) in chunks.iter().enumerate() {
        assert_eq!(dec.data(i), Some(&c[..]), "chunk {i}, lost {lost:?}");
    }
    assert_eq!(dec.frame().unwrap(), chunks.concat());
}

/// Every subset of `0..n` with at most `max` elements.
fn subsets(n: usize, max: usize) -> Vec<Vec<usize>> {
    (0u32..1 << n)
        .filter(|m| m.count_ones() as usize <= max)
        .map(|m| (0..n).filter(|i| m & (1 << i) != 0).collect())
        .collect()
}

#[test]
fn every_pattern_of_at_most_parity_losses_is_recovered_for_small_frames() {
    let mut rng = fastrand::Rng::with_seed(1);
    for k in 1..=6 {
        for parity in 1..=4 {
            // Odd chunk length and a short last chunk: padding and trimming are exercised.
            let chunks = frame(&mut rng, k, 7, 3);
            let enc = FecEncoder::new(&chunks, parity).unwrap();
            for (n, lost) in subsets(k + parity, parity).into_iter().enumerate() {
                check_recovers(&chunks, &enc, &lost, n as u64);
            }
        }
    }
}

#[test]
fn random_patterns_recover_for_48_chunks() {
    let mut rng = fastrand::Rng::with_seed(48);
    let chunks = frame(&mut rng, 48, 1316, 555);
    let parity = parity_space(48);
    let enc = FecEncoder::new(&chunks, parity).unwrap();
    for round in 0..40 {
        let n_lost = rng.usize(0..=parity);
        let mut all: Vec<usize> = (0..48 + parity).collect();
        rng.shuffle(&mut all);
        check_recovers(&chunks, &enc, &all[..n_lost], round);
    }
}

#[test]
fn one_symbol_too_few_is_not_enough() {
    let mut rng = fastrand::Rng::with_seed(2);
    let chunks = frame(&mut rng, 5, 10, 10);
    let enc = FecEncoder::new(&chunks, 3).unwrap();
    let mut dec = FecDecoder::new(enc.params());
    assert_eq!(dec.add_data(0, &chunks[0]), Ok(Added::Need(4)));
    assert_eq!(dec.add_data(0, &chunks[0]), Ok(Added::Ignored));
    assert_eq!(
        dec.add_parity(2, enc.parity(2).unwrap()),
        Ok(Added::Need(3))
    );
    assert_eq!(
        dec.add_parity(2, enc.parity(2).unwrap()),
        Ok(Added::Ignored)
    );
    assert_eq!(
        dec.add_parity(0, enc.parity(0).unwrap()),
        Ok(Added::Need(2))
    );
    assert_eq!(dec.add_data(4, &chunks[4]), Ok(Added::Need(1)));
    assert_eq!(dec.recover(), Err(FecError::NotEnough { have: 4, k: 5 }));
    assert_eq!(dec.missing_data().collect::<Vec<_>>(), vec![1, 2, 3]);
    assert_eq!(dec.add_parity(1, enc.parity(1).unwrap()), Ok(Added::Ready));
    // Once restorable, more symbols are not stored.
    assert_eq!(dec.add_data(1, &chunks[1]), Ok(Added::Ready));
    assert_eq!(dec.recover(), Ok(vec![2, 3]));
    assert_eq!(dec.frame().unwrap(), chunks.concat());
    assert_eq!(dec.recover(), Ok(vec![]));
}

#[test]
fn parity_is_deterministic() {
    let mut rng = fastrand::Rng::with_seed(3);
    let chunks = frame(&mut rng, 12, 100, 40);
    let a = FecEncoder::new(&chunks, 16).unwrap();
    let b = FecEncoder::new(&chunks, 16).unwrap();
    for i in 0..16 {
        assert_eq!(a.parity(i), b.parity(i));
    }
}

#[test]
fn hostile_shapes_and_symbols_are_refused() {
    let e = |k, p, c, s| FecParams::new(k, p, c, s).unwrap_err();
    assert_eq!(
        e(0, 1, 1, 1),
        FecError::DataCount {
            k: 0,
            max: MAX_FEC_DATA
        }
    );
    assert!(matches!(
        e(MAX_FEC_DATA + 1, 1, 1, 1),
        FecError::DataCount { .. }
    ));
    assert!(matches!(e(1, 0, 1, 1), FecError::ParityCount { .. }));
    assert!(matches!(
        e(1, MAX_PARITY + 1, 1, 1),
        FecError::ParityCount { .. }
    ));
    assert!(matches!(e(1, 1, 0, 1), FecError::ChunkLen { .. }));
    assert!(matches!(
        e(1, 1, MAX_SHARD_LEN + 1, 1),
        FecError::ChunkLen { .. }
    ));
    // 3 chunks of 8: the frame is 17..=24 bytes.
    assert!(matches!(e(3, 2, 8, 16), FecError::FrameSize { .. }));
    assert!(matches!(e(3, 2, 8, 25), FecError::FrameSize { .. }));
    assert!(matches!(e(3, 2, 8, u64::MAX), FecError::FrameSize { .. }));
    // The largest shape is accepted (and allocates nothing until symbols arrive).
    let big = FecParams::new(
        MAX_FEC_DATA,
        MAX_PARITY,
        MAX_SHARD_LEN,
        (MAX_FEC_DATA * MAX_SHARD_LEN) as u64,
    )
    .unwrap();
    let mut dec = FecDecoder::new(big);
    assert_eq!(dec.needed(), MAX_FEC_DATA);
    assert!(matches!(
        dec.add_data(MAX_FEC_DATA, &[0; MAX_SHARD_LEN]),
        Err(FecError::DataIndex { .. })
    ));
    assert!(matches!(
        dec.add_data(usize::MAX, &[]),
        Err(FecError::DataIndex { .. })
    ));
    assert!(matches!(
        dec.add_parity(MAX_PARITY, &[0; MAX_SHARD_LEN]),
        Err(FecError::ParityIndex { .. })
    ));
    assert!(matches!(
        dec.add_parity(0, &[0; 10]),
        Err(FecError::SymbolLen { parity: true, .. })
    ));
    assert!(matches!(
        dec.add_data(0, &[0; 10]),
        Err(FecError::SymbolLen { parity: false, .. })
    ));
    assert_eq!(dec.needed(), MAX_FEC_DATA);
    // Encoder: chunks of unequal length, a last chunk longer than the others, none at all.
    assert!(matches!(
        FecEncoder::new(&[vec![0u8; 4], vec![0; 3], vec![0; 2]], 1),
        Err(FecError::SymbolLen { index: 1, .. })
    ));
    assert!(matches!(
        FecEncoder::new(&[vec![0u8; 4], vec![0; 5]], 1),
        Err(FecError::FrameSize { .. })
    ));
    assert!(matches!(
        FecEncoder::new::<Vec<u8>>(&[], 1),
        Err(FecError::DataCount { .. })
    ));
    let enc = FecEncoder::new(&[vec![1u8; 4]], 2).unwrap();
    assert!(matches!(enc.parity(2), Err(FecError::ParityIndex { .. })));
}

#[test]
fn hostile_message_bodies_never_panic() {
    let mut rng = fastrand::Rng::with_seed(4);
    for _ in 0..20_000 {
        let len = rng.usize(0..80);
        let mut body: Vec<u8> = (0..len).map(|_| rng.u8(..)).collect();
        if len > 28 && rng.bool() {
            // Plausible shapes, so that the checks past the first few are reached too.
            body[12..16].copy_from_slice(&(rng.u32(1..60)).to_be_bytes());
            body[16..20].copy_from_slice(&[0, 1, 0, 1]);
            body[20..22].copy_from_slice(&rng.u16(0..4).to_be_bytes());
            body[22..24].copy_from_slice(&rng.u16(0..30).to_be_bytes());
            body[24..26].copy_from_slice(&rng.u16(0..4).to_be_bytes());
        }
        let _ = decode_parity(&body);
        if rng.bool() && !body.is_empty() {
            body[0] = rng.u8(0..4);
        }
        if let Ok(reqs) = decode_fec_request(&body) {
            assert!(!reqs.is_empty() && reqs.len() <= MAX_FEC_REQUESTS);
        }
    }
    assert_eq!(
        decode_fec_request(&[2, 0, 0, 0, 1, 0, 0, 0, 1]),
        Err(MsgError::Truncated { len: 9, need: 17 })
    );
    assert_eq!(
        decode_fec_request(&[0]),
        Err(MsgError::Invalid {
            field: "count",
            value: 0
        })
    );
    assert_eq!(
        decode_fec_request(&[1, 0, 0, 0, 1, 0, 0, 0, 0]),
        Err(MsgError::Invalid {
            field: "symbols",
            value: 0
        })
    );
    let mut out = Vec::new();
    assert!(encode_fec_request(&[], &mut out).is_err());
    let many = vec![
        SymbolRequest {
            frame_id: 0,
            from: 0,
            count: 1
        };
        MAX_FEC_REQUESTS + 1
    ];
    assert!(encode_fec_request(&many, &mut out).is_err());
    assert!(out.is_empty());
}

// ---- proto-spec.md §9 vectors -------------------------------------------------------------

use crate::proto::wire::tests::{hex, spec_hex};

/// Header + body + CRC, as §3 lays them out (until these messages join `wire/`).
fn seal(ptype: u8, flags: u8, ssrc: u32, seq: u32, body: &[u8]) -> Vec<u8> {
    let mut d = vec![0x46, 0x43, 1, ptype, flags, 0, 0, 0];
    d.extend_from_slice(&ssrc.to_be_bytes());
    d.extend_from_slice(&seq.to_be_bytes());
    d.extend_from_slice(body);
    let crc = crc32fast::hash(&d);
    d.extend_from_slice(&crc.to_be_bytes());
    d
}

/// The §9 parity example: K = 3 chunks of 8 bytes `00 01 … 17`, 2 parity symbols.
fn spec_frame() -> Vec<Vec<u8>> {
    (0u8..24)
        .collect::<Vec<_>>()
        .chunks(8)
        .map(<[u8]>::to_vec)
        .collect()
}

fn check_vector(spec: &str, name: &str, got: &[u8]) {
    let want = spec_hex(spec, name).unwrap_or_else(|| {
        panic!(
            "vector {name} missing from proto-spec.md; encoding is:\n{}",
            hex(got)
        )
    });
    assert_eq!(hex(got), hex(&want), "vector {name}");
}

#[test]
fn spec_fec_vectors_match() {
    let spec = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/proto-spec.md"))
        .expect("proto-spec.md at the crate root");
    let chunks = spec_frame();
    let enc = FecEncoder::new(&chunks, 2).unwrap();
    let symbols = [enc.parity(0).unwrap(), enc.parity(1).unwrap()].concat();
    check_vector(&spec, "fec-parity-symbols", &symbols);
    // Chunks 0 and 2 lost: chunk 1 and both parity symbols restore them.
    let mut dec = FecDecoder::new(enc.params());
    dec.add_data(1, &chunks[1]).unwrap();
    dec.add_parity(0, &symbols[..8]).unwrap();
    dec.add_parity(1, &symbols[8..]).unwrap();
    assert_eq!(dec.recover(), Ok(vec![0, 2]));
    assert_eq!(dec.frame().unwrap(), chunks.concat());

    let parity = Parity {
        frame_id: 7,
        pts: 630_000,
        width: 640,
        height: 480,
        params: enc.params(),
        index: 1,
        symbol: enc.parity(1).unwrap(),
    };
    let mut body = Vec::new();
    encode_parity(&parity, &mut body);
    let datagram = seal(TYPE_PARITY, 0, 0x0A0B_0C0D, 100, &body);
    check_vector(&spec, "fec-parity", &datagram);
    assert_eq!(decode_parity(&datagram[16..datagram.len() - 4]), Ok(parity));

    let reqs = [
        SymbolRequest {
            frame_id: 7,
            from: 2,
            count: 3,
        },
        SymbolRequest {
            frame_id: 8,
            from: 0,
            count: 1,
        },
    ];
    let mut body = Vec::new();
    encode_fec_request(&reqs, &mut body).unwrap();
    let datagram = seal(TYPE_FEC_REQUEST, 0, 0x0A0B_0C0D, 5, &body);
    check_vector(&spec, "fec-request", &datagram);
    assert_eq!(
        decode_fec_request(&datagram[16..datagram.len() - 4]),
        Ok(reqs.to_vec())
    );
}

#[test]
fn warm_up_codes_and_restores_a_frame() {
    assert!(super::warm_up());
}

/// The table-light engine a process codes with before its SIMD tables are built gives the
/// same parity, and restores the same chunks, as the SIMD one: which of them coded a frame
/// never shows on the wire (`tables_built`).
#[test]
fn both_engines_code_and_restore_the_same_bytes() {
    let mut rng = fastrand::Rng::with_seed(7);
    // (K, parity count, chunk length, last chunk): one chunk, more parity than data (the
    // crate's low rate), less (its high rate), a 720p frame's shape.
    for (k, r, len, last) in [
        (1, 2, 100, 100),
        (5, 32, 64, 3),
        (48, 8, 1200, 700),
        (39, 78, 1400, 1000),
    ] {
        let chunks = frame(&mut rng, k, len, last);
        let params =
            FecParams::new(k, r, len, chunks.iter().map(|c| c.len() as u64).sum()).unwrap();
        let naive = encode(Naive::new(), &params, &chunks).unwrap();
        let simd = encode(DefaultEngine::new(), &params, &chunks).unwrap();
        assert!(naive == simd, "K {k}, R {r}: the engines' parity differs");
        let restored = |simd: bool| {
            let mut dec = FecDecoder::new(params);
            // The first min(K, R) data chunks lost, as many parity symbols in their place.
            let lost = k.min(r);
            for (i, c) in chunks.iter().enumerate().skip(lost) {
                dec.add_data(i, c).unwrap();
            }
            let n = params.shard_len();
            for p in 0..lost {
                dec.add_parity(p, &naive[p * n..(p + 1) * n]).unwrap();
            }
            let got = if simd {
                dec.restore(DefaultEngine::new())
            } else {
                dec.restore(Naive::new())
            };
            assert_eq!(got.unwrap(), (0..lost).collect::<Vec<_>>());
            dec.frame().unwrap()
        };
        assert_eq!(restored(false), chunks.concat());
        assert_eq!(restored(true), chunks.concat());
    }
}
