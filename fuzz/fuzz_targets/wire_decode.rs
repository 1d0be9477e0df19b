//! Decoding arbitrary bytes never panics; whatever decodes re-encodes to a datagram that
//! decodes to the same packet, and media payloads lie within the datagram. Each input is
//! also tried "resealed" (valid magic, version and CRC), so mutations reach the body parser.
#![no_main]

use bytes::Bytes;
use framecast::proto::wire::{
    Body, CRC_LEN, HEADER_LEN, MAGIC, MAX_DATAGRAM, Packet, VERSION, crc32, peek_header,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    check(Bytes::copy_from_slice(data));
    if data.len() >= HEADER_LEN + CRC_LEN {
        let mut v = data.to_vec();
        v[0..2].copy_from_slice(&MAGIC.to_be_bytes());
        v[2] = VERSION;
        let n = v.len() - CRC_LEN;
        let crc = crc32(&v[..n]);
        v[n..].copy_from_slice(&crc.to_be_bytes());
        check(Bytes::from(v));
    }
});

fn check(datagram: Bytes) {
    let Ok(p) = Packet::decode(&datagram) else {
        return;
    };
    assert!(datagram.len() <= MAX_DATAGRAM);
    match &p.body {
        Body::Video(v) => {
            assert!(!v.payload.is_empty());
            assert!(
                v.payload.len()
                    <= datagram.len() - HEADER_LEN - CRC_LEN - framecast::proto::wire::VIDEO_HEADER_LEN
            );
            assert!(v.offset as u64 + v.payload.len() as u64 <= v.frame_size as u64);
            assert!(v.chunk_index < v.chunk_count);
        }
        Body::Audio(a) => {
            assert!(
                a.payload.len()
                    <= datagram.len() - HEADER_LEN - CRC_LEN - framecast::proto::wire::AUDIO_HEADER_LEN
            );
            assert_eq!(a.payload.len(), a.frames as usize * a.channels as usize * 2);
        }
        _ => {}
    }
    let h = peek_header(&datagram).expect("a decoded datagram has a readable header");
    assert_eq!(
        h,
        (
            p.header.ptype as u8,
            p.header.flags,
            p.header.ssrc,
            p.header.seq
        )
    );

    let enc = p.encode();
    assert!(
        enc.len() <= MAX_DATAGRAM,
        "re-encoding grew past MAX_DATAGRAM"
    );
    let q = Packet::decode(&enc)
        .unwrap_or_else(|e| panic!("re-encoded packet does not decode: {e:?}\n{p:?}"));
    assert_eq!(p, q, "round trip changed the packet");
    // Encoding is canonical: a second round trip is byte-identical.
    assert_eq!(enc, q.encode());
    if matches!(p.body, Body::Video(_) | Body::Audio(_)) {
        // Media has no padding or reserved fields beyond the header's: same length.
        assert_eq!(enc.len(), datagram.len());
    }
}
