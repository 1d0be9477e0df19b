//! Encoding of every datagram (proto-spec.md §3–§6).

use bytes::{BufMut, Bytes, BytesMut};

use super::*;

impl Packet {
    /// Builds a packet.
    pub fn new(ptype: PacketType, ssrc: u32, seq: u32, body: Body) -> Packet {
        Packet {
            header: Header {
                ptype,
                flags: 0,
                ssrc,
                seq,
            },
            body,
        }
    }

    /// Encodes the packet with its CRC trailer.
    pub fn encode(&self) -> Bytes {
        let mut b = BytesMut::with_capacity(self.encoded_len_hint());
        self.encode_into(&mut b);
        b.freeze()
    }

    /// Appends the packet with its CRC trailer to `out` (after whatever `out` holds, which
    /// the CRC does not cover). The packetizer encodes a frame's datagrams one after another
    /// into one buffer and splits each off, so that they share one allocation.
    pub fn encode_into(&self, out: &mut BytesMut) {
        let start = out.len();
        let b = out;
        b.put_u16(MAGIC);
        b.put_u8(VERSION);
        b.put_u8(self.header.ptype as u8);
        b.put_u8(self.header.flags);
        b.put_bytes(0, 3);
        b.put_u32(self.header.ssrc);
        b.put_u32(self.header.seq);
        match &self.body {
            Body::Video(v) => {
                b.put_u32(v.frame_id);
                b.put_u64(v.pts);
                b.put_u32(v.frame_size);
                b.put_u16(v.width);
                b.put_u16(v.height);
                b.put_u16(v.chunk_index);
                b.put_u16(v.chunk_count);
                b.put_u32(v.offset);
                b.put_slice(&v.payload);
            }
            Body::Audio(a) => {
                b.put_u64(a.pts);
                b.put_u32(a.sample_rate);
                b.put_u8(a.channels);
                b.put_u8(a.format as u8);
                b.put_u16(a.frames);
                b.put_slice(&a.payload);
            }
            Body::Description(d) => {
                put_name(b, &d.name);
                b.put_u8(1); // video codec: JPEG
                b.put_u16(d.width);
                b.put_u16(d.height);
                b.put_u16(d.fps_num);
                b.put_u16(d.fps_den);
                b.put_u32(d.video_seq_base);
                match d.audio {
                    Some(a) => {
                        b.put_u8(SampleFormat::S16Le as u8);
                        b.put_u32(a.sample_rate);
                        b.put_u8(a.channels);
                        b.put_u16(a.block_frames);
                    }
                    None => {
                        b.put_u8(0);
                        b.put_bytes(0, 7);
                    }
                }
            }
            Body::Subscribe {
                name,
                token,
                max_kbps,
                latency_ms,
            } => {
                put_name(b, name);
                b.put_u8(token.len() as u8);
                b.put_slice(token);
                b.put_u32(*max_kbps);
                b.put_u16(*latency_ms);
                // Pad so that the request is never smaller than any answer to it (§6.2).
                let min = MIN_SUBSCRIBE_LEN - CRC_LEN;
                if b.len() - start < min {
                    b.put_bytes(0, min - (b.len() - start));
                }
            }
            Body::Retry { token } => {
                b.put_u8(TOKEN_LEN as u8);
                b.put_slice(token);
            }
            Body::Reject { reason } => b.put_u8(*reason as u8),
            Body::KeepAlive { echo_us } | Body::KeepAliveAck { echo_us } => b.put_u32(*echo_us),
            Body::Bye => {}
            Body::End { last_pts } => b.put_u64(*last_pts),
            Body::Skip {
                frame_id,
                first_seq,
                chunk_count,
            } => {
                b.put_u32(*frame_id);
                b.put_u32(*first_seq);
                b.put_u16(*chunk_count);
            }
            Body::Nack { flow, ranges } => {
                b.put_u8(*flow as u8);
                let n = ranges.len().min(MAX_NACK_RANGES);
                b.put_u8(n as u8);
                for r in &ranges[..n] {
                    b.put_u32(r.start);
                    b.put_u16(r.len);
                }
            }
            Body::ReceiverReport(r) => {
                b.put_u32(r.received);
                b.put_u32(r.lost);
                b.put_u32(r.recovered);
                b.put_u32(r.jitter);
                b.put_u32(r.frames_played);
                b.put_u32(r.frames_dropped);
                b.put_u32(r.rtt_us);
                b.put_u16(r.loss_q16);
                b.put_u16(r.burst_q8);
            }
            Body::Parity(p) => {
                let mut body =
                    Vec::with_capacity(crate::proto::fec::msg::PARITY_HEADER_LEN + p.symbol.len());
                crate::proto::fec::msg::encode_parity(
                    &crate::proto::fec::msg::Parity {
                        frame_id: p.frame_id,
                        pts: p.pts,
                        width: p.width,
                        height: p.height,
                        params: p.params,
                        index: p.index,
                        symbol: &p.symbol,
                    },
                    &mut body,
                );
                b.put_slice(&body);
            }
            Body::FecRequest { entries } => {
                let n = entries.len().min(crate::proto::fec::msg::MAX_FEC_REQUESTS);
                b.put_u8(n as u8);
                for e in &entries[..n] {
                    b.put_u32(e.frame_id);
                    b.put_u16(e.from);
                    b.put_u16(e.count);
                }
            }
        }
        let crc = crc32(&b[start..]);
        b.put_u32(crc);
    }

    /// Bytes [`Self::encode`] writes for a media packet (video, audio, parity: exact); for
    /// the others, a starting capacity.
    pub(crate) fn encoded_len_hint(&self) -> usize {
        HEADER_LEN
            + CRC_LEN
            + match &self.body {
                Body::Video(v) => VIDEO_HEADER_LEN + v.payload.len(),
                Body::Audio(a) => AUDIO_HEADER_LEN + a.payload.len(),
                Body::Parity(p) => crate::proto::fec::msg::PARITY_HEADER_LEN + p.symbol.len(),
                _ => MIN_SUBSCRIBE_LEN,
            }
    }
}

fn put_name(b: &mut BytesMut, name: &str) {
    let bytes = name.as_bytes();
    let n = bytes.len().min(MAX_NAME_LEN);
    b.put_u8(n as u8);
    b.put_slice(&bytes[..n]);
}
