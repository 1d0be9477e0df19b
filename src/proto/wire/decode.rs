//! Decoding and validation of every datagram (proto-spec.md §3–§6). Decoding never panics
//! and never allocates more than the datagram itself.

use bytes::Bytes;

use super::*;

impl Packet {
    /// Decodes and validates a datagram (§3–§6). `data` may be shared (`Bytes`) so that
    /// payloads are sliced, not copied.
    pub fn decode(data: &Bytes) -> Result<Packet, DecodeError> {
        if data.len() > MAX_DATAGRAM {
            return Err(DecodeError::TooLarge);
        }
        if data.len() < HEADER_LEN + CRC_LEN {
            return Err(DecodeError::Truncated);
        }
        if data[0..2] != MAGIC.to_be_bytes() {
            return Err(DecodeError::BadMagic);
        }
        if data[2] != VERSION {
            return Err(DecodeError::BadVersion(data[2]));
        }
        let n = data.len() - CRC_LEN;
        let want = u32::from_be_bytes([data[n], data[n + 1], data[n + 2], data[n + 3]]);
        if crc32(&data[..n]) != want {
            return Err(DecodeError::BadCrc);
        }
        let ptype = PacketType::from_u8(data[3]).ok_or(DecodeError::UnknownType(data[3]))?;
        let mut r = Reader {
            data,
            pos: HEADER_LEN,
            end: n,
        };
        let header = Header {
            ptype,
            flags: data[4],
            ssrc: u32::from_be_bytes([data[8], data[9], data[10], data[11]]),
            seq: u32::from_be_bytes([data[12], data[13], data[14], data[15]]),
        };
        let body = match ptype {
            PacketType::Video => {
                let frame_id = r.u32()?;
                let pts = r.u64()?;
                let frame_size = r.u32()?;
                let width = r.u16()?;
                let height = r.u16()?;
                let chunk_index = r.u16()?;
                let chunk_count = r.u16()?;
                let offset = r.u32()?;
                let payload = r.rest();
                if frame_size == 0 || frame_size > MAX_FRAME_BYTES {
                    return Err(DecodeError::FrameSize { size: frame_size });
                }
                if width == 0 || height == 0 || width > MAX_DIMENSION || height > MAX_DIMENSION {
                    return Err(DecodeError::Dimensions { width, height });
                }
                if chunk_count == 0 || chunk_index >= chunk_count {
                    return Err(DecodeError::ChunkIndex {
                        index: chunk_index,
                        count: chunk_count,
                    });
                }
                if payload.is_empty()
                    || offset as u64 + payload.len() as u64 > frame_size as u64
                    || (chunk_index + 1 == chunk_count
                        && offset as u64 + payload.len() as u64 != frame_size as u64)
                {
                    return Err(DecodeError::ChunkBounds {
                        offset,
                        len: payload.len(),
                        frame_size,
                    });
                }
                Body::Video(VideoChunk {
                    frame_id,
                    pts,
                    frame_size,
                    width,
                    height,
                    chunk_index,
                    chunk_count,
                    offset,
                    payload,
                })
            }
            PacketType::Audio => {
                let pts = r.u64()?;
                let sample_rate = r.u32()?;
                let channels = r.u8()?;
                let format = r.u8()?;
                let frames = r.u16()?;
                let payload = r.rest();
                if format != SampleFormat::S16Le as u8 {
                    return Err(DecodeError::SampleFormat { format });
                }
                if channels == 0 || channels > MAX_CHANNELS {
                    return Err(DecodeError::Channels { channels });
                }
                if !(8000..=192_000).contains(&sample_rate) {
                    return Err(DecodeError::SampleRate { rate: sample_rate });
                }
                if frames == 0 || payload.len() != frames as usize * channels as usize * 2 {
                    return Err(DecodeError::AudioLength {
                        frames,
                        len: payload.len(),
                    });
                }
                Body::Audio(AudioBlock {
                    pts,
                    sample_rate,
                    channels,
                    format: SampleFormat::S16Le,
                    frames,
                    payload,
                })
            }
            PacketType::Description => {
                let name = r.name()?;
                let codec = r.u8()?;
                if codec != 1 {
                    return Err(DecodeError::VideoCodec { codec });
                }
                let width = r.u16()?;
                let height = r.u16()?;
                let fps_num = r.u16()?;
                let fps_den = r.u16()?;
                let video_seq_base = r.u32()?;
                let afmt = r.u8()?;
                let sample_rate = r.u32()?;
                let channels = r.u8()?;
                let block_frames = r.u16()?;
                if width == 0 || height == 0 || width > MAX_DIMENSION || height > MAX_DIMENSION {
                    return Err(DecodeError::Dimensions { width, height });
                }
                if fps_num == 0 || fps_den == 0 {
                    return Err(DecodeError::FrameRate {
                        num: fps_num,
                        den: fps_den,
                    });
                }
                let audio = match afmt {
                    0 => None,
                    1 => {
                        if channels == 0
                            || channels > MAX_CHANNELS
                            || !(8000..=192_000).contains(&sample_rate)
                            || block_frames == 0
                        {
                            return Err(DecodeError::AudioParams {
                                sample_rate,
                                channels,
                                block_frames,
                            });
                        }
                        Some(AudioParams {
                            sample_rate,
                            channels,
                            block_frames,
                        })
                    }
                    format => return Err(DecodeError::SampleFormat { format }),
                };
                Body::Description(Description {
                    name,
                    width,
                    height,
                    fps_num,
                    fps_den,
                    audio,
                    video_seq_base,
                })
            }
            PacketType::Subscribe => {
                let name = r.name()?;
                let tlen = r.u8()? as usize;
                if tlen != 0 && tlen != TOKEN_LEN {
                    return Err(DecodeError::TokenLength { len: tlen });
                }
                let token = r.bytes(tlen)?.to_vec();
                let max_kbps = r.u32()?;
                // Added in place of padding: absent (0) from a name and token that leave none.
                let latency_ms = if r.remaining() >= 2 { r.u16()? } else { 0 };
                if data.len() < MIN_SUBSCRIBE_LEN {
                    return Err(DecodeError::SubscribeNotPadded { len: data.len() });
                }
                Body::Subscribe {
                    name,
                    token,
                    max_kbps,
                    latency_ms,
                }
            }
            PacketType::Retry => {
                let len = r.u8()? as usize;
                if len != TOKEN_LEN {
                    return Err(DecodeError::TokenLength { len });
                }
                let mut token = [0u8; TOKEN_LEN];
                token.copy_from_slice(r.bytes(TOKEN_LEN)?);
                Body::Retry { token }
            }
            PacketType::Reject => Body::Reject {
                reason: match r.u8()? {
                    1 => RejectReason::UnknownStream,
                    2 => RejectReason::Full,
                    3 => RejectReason::BadToken,
                    4 => RejectReason::AuthRequired,
                    5 => RejectReason::NameTaken,
                    code => return Err(DecodeError::RejectReason { code }),
                },
            },
            PacketType::KeepAlive => Body::KeepAlive { echo_us: r.u32()? },
            PacketType::KeepAliveAck => Body::KeepAliveAck { echo_us: r.u32()? },
            PacketType::Bye => Body::Bye,
            PacketType::End => Body::End { last_pts: r.u64()? },
            PacketType::Skip => {
                let frame_id = r.u32()?;
                let first_seq = r.u32()?;
                let chunk_count = r.u16()?;
                if chunk_count == 0 {
                    return Err(DecodeError::ChunkIndex { index: 0, count: 0 });
                }
                Body::Skip {
                    frame_id,
                    first_seq,
                    chunk_count,
                }
            }
            PacketType::Nack => {
                let code = r.u8()?;
                let flow = Flow::from_u8(code).ok_or(DecodeError::Flow { flow: code })?;
                let count = r.u8()? as usize;
                if count == 0 || count > MAX_NACK_RANGES {
                    return Err(DecodeError::NackCount { count });
                }
                // Bounded by MAX_NACK_RANGES, and checked against the datagram length first.
                if r.remaining() < count * 6 {
                    return Err(DecodeError::Truncated);
                }
                let mut ranges = Vec::with_capacity(count);
                for _ in 0..count {
                    let start = r.u32()?;
                    let len = r.u16()?;
                    if len == 0 {
                        return Err(DecodeError::NackRange { start });
                    }
                    ranges.push(NackRange { start, len });
                }
                Body::Nack { flow, ranges }
            }
            PacketType::ReceiverReport => Body::ReceiverReport(ReceiverReport {
                received: r.u32()?,
                lost: r.u32()?,
                recovered: r.u32()?,
                jitter: r.u32()?,
                frames_played: r.u32()?,
                frames_dropped: r.u32()?,
                rtt_us: r.u32()?,
                // §6.6 extension: older reports end before it.
                loss_q16: if r.remaining() >= 2 { r.u16()? } else { 0 },
                burst_q8: if r.remaining() >= 2 { r.u16()? } else { 0 },
            }),
            PacketType::Parity => {
                let body = r.rest();
                let p = crate::proto::fec::msg::decode_parity(&body)?;
                let at = crate::proto::fec::msg::PARITY_HEADER_LEN;
                Body::Parity(ParityChunk {
                    frame_id: p.frame_id,
                    pts: p.pts,
                    width: p.width,
                    height: p.height,
                    params: p.params,
                    index: p.index,
                    symbol: body.slice(at..),
                })
            }
            PacketType::FecRequest => {
                let body = r.rest();
                Body::FecRequest {
                    entries: crate::proto::fec::msg::decode_fec_request(&body)?,
                }
            }
        };
        Ok(Packet { header, body })
    }
}

struct Reader<'a> {
    data: &'a Bytes,
    pos: usize,
    end: usize,
}

impl Reader<'_> {
    fn remaining(&self) -> usize {
        self.end - self.pos
    }
    fn bytes(&mut self, n: usize) -> Result<&[u8], DecodeError> {
        if self.remaining() < n {
            return Err(DecodeError::Truncated);
        }
        let s = &self.data[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.bytes(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, DecodeError> {
        let b = self.bytes(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Result<u32, DecodeError> {
        let b = self.bytes(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self) -> Result<u64, DecodeError> {
        let b = self.bytes(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_be_bytes(a))
    }
    fn rest(&mut self) -> Bytes {
        let s = self.data.slice(self.pos..self.end);
        self.pos = self.end;
        s
    }
    fn name(&mut self) -> Result<String, DecodeError> {
        let n = self.u8()? as usize;
        if n == 0 || n > MAX_NAME_LEN {
            return Err(DecodeError::NameLength { len: n });
        }
        let s = std::str::from_utf8(self.bytes(n)?).map_err(|_| DecodeError::Name { len: n })?;
        if !valid_name(s) {
            return Err(DecodeError::Name { len: n });
        }
        Ok(s.to_owned())
    }
}
