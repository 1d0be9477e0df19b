//! Turns JPEG frames and PCM blocks into datagrams (proto-spec.md §5).

use bytes::{Bytes, BytesMut};

use crate::proto::wire::{
    AUDIO_HEADER_LEN, AudioBlock, Body, CRC_LEN, HEADER_LEN, MAX_FRAME_BYTES, Packet, PacketType,
    SampleFormat, VIDEO_HEADER_LEN, VideoChunk,
};

/// Errors from packetizing a frame.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PacketizeError {
    /// The frame is empty or larger than `MAX_FRAME_BYTES`.
    #[error("frame of {size} bytes is outside 1..={max}")]
    FrameSize {
        /// Its size.
        size: usize,
        /// The limit.
        max: u32,
    },
    /// The frame would need more than 65535 chunks at this datagram size.
    #[error("frame of {size} bytes needs more than 65535 chunks of {chunk} bytes")]
    TooManyChunks {
        /// Its size.
        size: usize,
        /// Chunk payload size.
        chunk: usize,
    },
    /// An audio block does not fit one datagram or is malformed.
    #[error(
        "audio block of {frames} frames x {channels} channels does not fit a {max_datagram}-byte datagram"
    )]
    AudioBlock {
        /// Sample frames.
        frames: usize,
        /// Channels.
        channels: u8,
        /// Datagram size.
        max_datagram: usize,
    },
}

/// A datagram produced by the packetizer, with what a cache needs to file it.
#[derive(Debug, Clone)]
pub struct Chunk {
    /// Sequence number in its flow (wire form).
    pub seq: u32,
    /// The encoded datagram.
    pub datagram: Bytes,
    /// The packet it encodes (header and body as written), so that a local consumer such
    /// as the publisher's embedded relay need not decode it again.
    pub packet: Packet,
}

impl Chunk {
    /// The packet together with its bytes, for [`crate::proto::relay::Relay::ingest_local`].
    pub fn into_packetized(self) -> Packetized {
        Packetized {
            packet: self.packet,
            bytes: self.datagram,
        }
    }
}

/// A packet this process built, with its encoded bytes: handed from the packetizer to the
/// embedded relay without decoding or CRC-checking it again. Invariant: `bytes` is
/// `packet.encode()` (guaranteed by the constructors).
#[derive(Debug, Clone)]
pub struct Packetized {
    packet: Packet,
    bytes: Bytes,
}

impl Packetized {
    /// Encodes `packet`.
    pub fn new(packet: Packet) -> Packetized {
        Packetized {
            bytes: packet.encode(),
            packet,
        }
    }

    /// The packet's header and body as written.
    pub fn packet(&self) -> &Packet {
        &self.packet
    }

    /// The encoded datagram.
    pub fn bytes(&self) -> &Bytes {
        &self.bytes
    }

    /// Both parts.
    pub fn into_parts(self) -> (Packet, Bytes) {
        (self.packet, self.bytes)
    }
}

impl crate::proto::pacer::Paced for Packetized {
    fn wire_len(&self) -> usize {
        self.bytes.len()
    }
}

/// Stamps sequence numbers and frame ids on one source's media (§4.1, §5).
#[derive(Debug, Clone)]
pub struct Packetizer {
    ssrc: u32,
    max_datagram: usize,
    video_seq: u32,
    audio_seq: u32,
    frame_id: u32,
    first_video_seq: u32,
}

impl Packetizer {
    /// A packetizer for source `ssrc` whose datagrams never exceed `max_datagram` bytes.
    /// `video_seq` and `audio_seq` are the (random) first sequence numbers.
    pub fn new(ssrc: u32, max_datagram: usize, video_seq: u32, audio_seq: u32) -> Packetizer {
        Packetizer {
            ssrc,
            max_datagram,
            video_seq,
            audio_seq,
            frame_id: 0,
            first_video_seq: video_seq,
        }
    }

    /// The source identifier.
    pub fn ssrc(&self) -> u32 {
        self.ssrc
    }

    /// The first video sequence number this source used (for the description).
    pub fn first_video_seq(&self) -> u32 {
        self.first_video_seq
    }

    /// Chunk payload bytes per video datagram: even, so that a frame's parity symbols
    /// (§6.7, as long as a chunk) fit the same datagram size.
    pub fn chunk_payload(&self) -> usize {
        (self.max_datagram - HEADER_LEN - VIDEO_HEADER_LEN - CRC_LEN) & !1
    }

    /// The most audio sample frames of `channels` channels that fit one datagram.
    pub fn max_audio_frames(&self, channels: u8) -> usize {
        (self.max_datagram - HEADER_LEN - AUDIO_HEADER_LEN - CRC_LEN)
            / (2 * channels.max(1) as usize)
    }

    /// Cuts one JPEG frame into datagrams: chunks of equal size but the last, with
    /// consecutive sequence numbers (§5.1). Returns the frame id used and the chunks.
    pub fn packetize_frame(
        &mut self,
        pts: u64,
        width: u16,
        height: u16,
        jpeg: &Bytes,
    ) -> Result<(u32, Vec<Chunk>), PacketizeError> {
        if jpeg.is_empty() || jpeg.len() > MAX_FRAME_BYTES as usize {
            return Err(PacketizeError::FrameSize {
                size: jpeg.len(),
                max: MAX_FRAME_BYTES,
            });
        }
        let chunk = self.chunk_payload();
        let count = jpeg.len().div_ceil(chunk);
        if count > u16::MAX as usize {
            return Err(PacketizeError::TooManyChunks {
                size: jpeg.len(),
                chunk,
            });
        }
        let frame_id = self.frame_id;
        self.frame_id = self.frame_id.wrapping_add(1);
        let mut out = Vec::with_capacity(count);
        // Every datagram of the frame in one buffer, each split off it: one allocation per
        // frame, and the relay's copies of a datagram only count references.
        let mut buf =
            BytesMut::with_capacity(count * (HEADER_LEN + VIDEO_HEADER_LEN + CRC_LEN) + jpeg.len());
        for i in 0..count {
            let start = i * chunk;
            let end = (start + chunk).min(jpeg.len());
            let seq = self.video_seq;
            self.video_seq = self.video_seq.wrapping_add(1);
            let p = Packet::new(
                PacketType::Video,
                self.ssrc,
                seq,
                Body::Video(VideoChunk {
                    frame_id,
                    pts,
                    frame_size: jpeg.len() as u32,
                    width,
                    height,
                    chunk_index: i as u16,
                    chunk_count: count as u16,
                    offset: start as u32,
                    payload: jpeg.slice(start..end),
                }),
            );
            p.encode_into(&mut buf);
            out.push(Chunk {
                seq,
                datagram: buf.split().freeze(),
                packet: p,
            });
        }
        Ok((frame_id, out))
    }

    /// Wraps one block of interleaved s16 samples (§5.2).
    pub fn packetize_audio(
        &mut self,
        pts: u64,
        sample_rate: u32,
        channels: u8,
        samples: &[i16],
    ) -> Result<Chunk, PacketizeError> {
        let ch = channels.max(1) as usize;
        let frames = samples.len() / ch;
        if frames == 0 || samples.len() % ch != 0 || frames > self.max_audio_frames(channels) {
            return Err(PacketizeError::AudioBlock {
                frames,
                channels,
                max_datagram: self.max_datagram,
            });
        }
        let mut payload = Vec::with_capacity(samples.len() * 2);
        for s in samples {
            payload.extend_from_slice(&s.to_le_bytes());
        }
        let seq = self.audio_seq;
        self.audio_seq = self.audio_seq.wrapping_add(1);
        let p = Packet::new(
            PacketType::Audio,
            self.ssrc,
            seq,
            Body::Audio(AudioBlock {
                pts,
                sample_rate,
                channels,
                format: SampleFormat::S16Le,
                frames: frames as u16,
                payload: Bytes::from(payload),
            }),
        );
        Ok(Chunk {
            seq,
            datagram: p.encode(),
            packet: p,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::wire::DEFAULT_DATAGRAM;

    #[test]
    fn chunks_fit_the_datagram_size_and_are_consecutive() {
        let mut p = Packetizer::new(1, DEFAULT_DATAGRAM, u32::MAX - 1, 0);
        let jpeg = Bytes::from((0..5000u32).map(|i| i as u8).collect::<Vec<_>>());
        let (id, chunks) = p.packetize_frame(0, 7680, 4320, &jpeg).unwrap();
        assert_eq!(id, 0);
        assert_eq!(chunks.len(), 5000usize.div_ceil(p.chunk_payload()));
        let mut rebuilt = Vec::new();
        for (i, c) in chunks.iter().enumerate() {
            assert!(c.datagram.len() <= DEFAULT_DATAGRAM);
            assert_eq!(c.seq, (u32::MAX - 1).wrapping_add(i as u32));
            match Packet::decode(&c.datagram).unwrap().body {
                Body::Video(v) => {
                    assert_eq!(v.offset as usize, rebuilt.len());
                    rebuilt.extend_from_slice(&v.payload)
                }
                b => panic!("{b:?}"),
            }
        }
        assert_eq!(rebuilt, jpeg.to_vec());
    }

    #[test]
    fn audio_blocks_must_fit() {
        let mut p = Packetizer::new(1, DEFAULT_DATAGRAM, 0, 0);
        assert_eq!(p.max_audio_frames(2), 354);
        assert!(p.packetize_audio(0, 48_000, 2, &[0; 480]).is_ok());
        assert!(p.packetize_audio(0, 48_000, 2, &[0; 1920]).is_err());
        assert!(p.packetize_audio(0, 48_000, 2, &[0; 3]).is_err());
    }
}
