//! The framecast wire format (proto-spec.md §3–§6): encoding and decoding of every datagram.
//!
//! Decoding never panics and never allocates more than the datagram itself: every length
//! read from the wire is checked against the datagram and against fixed bounds first.

pub mod seq;

use bytes::{BufMut, Bytes, BytesMut};
use thiserror::Error;

pub use seq::{SeqExtender, SeqNo};

/// `"FC"`: the first two bytes of every datagram (§3).
pub const MAGIC: u16 = 0x4643;
/// The protocol version this code speaks (§3).
pub const VERSION: u8 = 1;
/// Common header length in bytes (§3).
pub const HEADER_LEN: usize = 16;
/// CRC32 trailer length in bytes (§3).
pub const CRC_LEN: usize = 4;
/// Video chunk body header length (§5.1).
pub const VIDEO_HEADER_LEN: usize = 28;
/// Audio block body header length (§5.2).
pub const AUDIO_HEADER_LEN: usize = 16;
/// The largest datagram accepted or produced: a jumbo-frame ceiling (§3).
pub const MAX_DATAGRAM: usize = 9000;
/// The smallest configurable datagram size (§3).
pub const MIN_DATAGRAM: usize = 256;
/// Default datagram size: 1500-byte Ethernet MTU minus IPv6 (40) and UDP (8) headers, so it
/// never fragments on either address family (§3).
pub const DEFAULT_DATAGRAM: usize = 1452;
/// The largest JPEG frame accepted (§5.1): an 8K frame at high quality fits with room.
pub const MAX_FRAME_BYTES: u32 = 48 * 1024 * 1024;
/// The largest frame dimension accepted (§5.1).
pub const MAX_DIMENSION: u16 = 16384;
/// The longest stream name (§6.1).
pub const MAX_NAME_LEN: usize = 64;
/// Length of an address-validation token (§6.2).
pub const TOKEN_LEN: usize = 16;
/// A SUBSCRIBE without a valid token must be at least this long, so that the RETRY answer
/// is never larger than the request (anti-amplification, §6.2).
pub const MIN_SUBSCRIBE_LEN: usize = 64;
/// The most ranges one NACK carries (§6.5).
pub const MAX_NACK_RANGES: usize = 128;
/// The media clock rate shared by audio and video: 90 kHz, as RTP video (§4.2).
pub const CLOCK_RATE: u64 = 90_000;
/// The most audio channels accepted (§5.2).
pub const MAX_CHANNELS: u8 = 8;

/// Header flag: this datagram is a retransmission (§3).
pub const FLAG_RETRANSMIT: u8 = 0x01;
/// Header flag: this datagram replays the cached latest frame for a late joiner (§7.4).
pub const FLAG_REPLAY: u8 = 0x02;

/// Packet types (§3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum PacketType {
    /// A chunk of a JPEG frame.
    Video = 1,
    /// A block of PCM audio.
    Audio = 2,
    /// The stream description.
    Description = 3,
    /// A viewer asks for a stream.
    Subscribe = 16,
    /// The relay's address-validation challenge.
    Retry = 17,
    /// The relay refuses a subscription.
    Reject = 18,
    /// Subscription refresh, with a timestamp to echo.
    KeepAlive = 19,
    /// Echo of a keep-alive (RTT measurement).
    KeepAliveAck = 20,
    /// The viewer leaves.
    Bye = 21,
    /// Retransmission request.
    Nack = 22,
    /// Receiver statistics.
    ReceiverReport = 23,
}

impl PacketType {
    fn from_u8(v: u8) -> Option<PacketType> {
        Some(match v {
            1 => PacketType::Video,
            2 => PacketType::Audio,
            3 => PacketType::Description,
            16 => PacketType::Subscribe,
            17 => PacketType::Retry,
            18 => PacketType::Reject,
            19 => PacketType::KeepAlive,
            20 => PacketType::KeepAliveAck,
            21 => PacketType::Bye,
            22 => PacketType::Nack,
            23 => PacketType::ReceiverReport,
            _ => return None,
        })
    }
}

/// Media flows, each with its own sequence-number space (§4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum Flow {
    /// Video chunks.
    Video = 1,
    /// Audio blocks.
    Audio = 2,
}

impl Flow {
    fn from_u8(v: u8) -> Option<Flow> {
        match v {
            1 => Some(Flow::Video),
            2 => Some(Flow::Audio),
            _ => None,
        }
    }
}

/// Why a datagram was rejected. Every variant is counted by the node that drops it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Error)]
pub enum DecodeError {
    /// Shorter than the header and CRC, or than its body claims.
    #[error("datagram truncated")]
    Truncated,
    /// Longer than any valid datagram.
    #[error("datagram too large")]
    TooLarge,
    /// The first two bytes are not `"FC"`.
    #[error("bad magic")]
    BadMagic,
    /// A version this code does not speak.
    #[error("unsupported version {0}")]
    BadVersion(u8),
    /// The CRC32 trailer does not match.
    #[error("CRC mismatch")]
    BadCrc,
    /// An unknown packet type.
    #[error("unknown packet type {0}")]
    UnknownType(u8),
    /// A field value is impossible (chunk index beyond count, chunk beyond frame, zero
    /// dimension, bad UTF-8 name, ...).
    #[error("invalid field: {0}")]
    Invalid(&'static str),
}

impl DecodeError {
    /// A short stable name, used as a counter key in statistics.
    pub fn reason(&self) -> &'static str {
        match self {
            DecodeError::Truncated => "truncated",
            DecodeError::TooLarge => "too_large",
            DecodeError::BadMagic => "bad_magic",
            DecodeError::BadVersion(_) => "bad_version",
            DecodeError::BadCrc => "bad_crc",
            DecodeError::UnknownType(_) => "unknown_type",
            DecodeError::Invalid(_) => "invalid_field",
        }
    }
}

/// The common header (§3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Packet type.
    pub ptype: PacketType,
    /// Flags (`FLAG_*`).
    pub flags: u8,
    /// Stream source identifier: random per publisher session (0 in viewer messages that
    /// name no source yet).
    pub ssrc: u32,
    /// Sequence number in the packet's flow (video, audio, or the sender's control flow).
    pub seq: u32,
}

/// One chunk of a JPEG frame (§5.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VideoChunk {
    /// Frame identifier, +1 per frame (wraps).
    pub frame_id: u32,
    /// Presentation timestamp on the 90 kHz media clock.
    pub pts: u64,
    /// Size of the whole JPEG in bytes.
    pub frame_size: u32,
    /// Frame width in pixels.
    pub width: u16,
    /// Frame height in pixels.
    pub height: u16,
    /// Index of this chunk in the frame.
    pub chunk_index: u16,
    /// Number of chunks in the frame.
    pub chunk_count: u16,
    /// Byte offset of this chunk's payload in the frame.
    pub offset: u32,
    /// The chunk's bytes of the JPEG.
    pub payload: Bytes,
}

/// Audio sample formats (§5.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum SampleFormat {
    /// Signed 16-bit little-endian, interleaved.
    S16Le = 1,
}

/// One block of PCM audio (§5.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AudioBlock {
    /// Presentation timestamp of the first sample on the 90 kHz media clock.
    pub pts: u64,
    /// Samples per second.
    pub sample_rate: u32,
    /// Interleaved channels.
    pub channels: u8,
    /// Sample format.
    pub format: SampleFormat,
    /// Sample frames (samples per channel) in the block.
    pub frames: u16,
    /// `frames * channels * 2` bytes of s16le samples.
    pub payload: Bytes,
}

/// Audio parameters of a stream (§6.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AudioParams {
    /// Samples per second.
    pub sample_rate: u32,
    /// Interleaved channels.
    pub channels: u8,
    /// Sample frames per block.
    pub block_frames: u16,
}

/// The stream description (§6.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Description {
    /// Stream name (UTF-8, 1..=64 bytes).
    pub name: String,
    /// Frame width.
    pub width: u16,
    /// Frame height.
    pub height: u16,
    /// Frame rate numerator.
    pub fps_num: u16,
    /// Frame rate denominator.
    pub fps_den: u16,
    /// Audio format, if the stream has audio.
    pub audio: Option<AudioParams>,
    /// Sequence number of the first video chunk of the first frame the sender ever sent.
    /// Lets a joiner tell "frames before my first" from losses.
    pub video_seq_base: u32,
}

/// Why a relay refused a subscription (§6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum RejectReason {
    /// No stream of that name.
    UnknownStream = 1,
    /// The subscriber table is full.
    Full = 2,
    /// The token was invalid or expired (ask again without one).
    BadToken = 3,
}

/// A range of missing sequence numbers (§6.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NackRange {
    /// First missing sequence number (wire form).
    pub start: u32,
    /// Number of consecutive missing sequence numbers (1..=65535).
    pub len: u16,
}

/// Receiver statistics (§6.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReceiverReport {
    /// Datagrams received (media flows).
    pub received: u32,
    /// Datagrams still missing after recovery.
    pub lost: u32,
    /// Datagrams recovered by retransmission.
    pub recovered: u32,
    /// Interarrival jitter, RFC 3550 A.8, in 90 kHz units.
    pub jitter: u32,
    /// Frames played intact.
    pub frames_played: u32,
    /// Frames dropped (late or incomplete).
    pub frames_dropped: u32,
    /// Smoothed RTT in microseconds.
    pub rtt_us: u32,
}

/// A decoded datagram body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    /// §5.1
    Video(VideoChunk),
    /// §5.2
    Audio(AudioBlock),
    /// §6.1
    Description(Description),
    /// §6.2: `token` is empty on the first request.
    Subscribe {
        /// Stream name.
        name: String,
        /// Address-validation token from a RETRY, or empty.
        token: Vec<u8>,
        /// Most kbit/s the viewer wants (0 = no limit).
        max_kbps: u32,
    },
    /// §6.2
    Retry {
        /// Token to echo in the next SUBSCRIBE.
        token: [u8; TOKEN_LEN],
    },
    /// §6.3
    Reject {
        /// Why.
        reason: RejectReason,
    },
    /// §6.4
    KeepAlive {
        /// Sender's clock in microseconds, echoed back.
        echo_us: u32,
    },
    /// §6.4
    KeepAliveAck {
        /// The echoed value.
        echo_us: u32,
    },
    /// §6.4
    Bye,
    /// §6.5
    Nack {
        /// Flow whose sequence numbers are listed.
        flow: Flow,
        /// Missing ranges.
        ranges: Vec<NackRange>,
    },
    /// §6.6
    ReceiverReport(ReceiverReport),
}

/// A whole decoded datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet {
    /// Common header.
    pub header: Header,
    /// Type-specific body.
    pub body: Body,
}

/// Computes the CRC32 (IEEE) that trails a datagram (§3).
pub fn crc32(data: &[u8]) -> u32 {
    crc32fast::hash(data)
}

/// Sets or clears header flags of an encoded datagram and rewrites its CRC (used when a
/// cache retransmits a datagram, §7.3). Returns `None` if `datagram` is too short.
pub fn with_flags(datagram: &[u8], flags: u8) -> Option<Bytes> {
    if datagram.len() < HEADER_LEN + CRC_LEN {
        return None;
    }
    let mut out = BytesMut::from(datagram);
    out[4] = flags;
    let n = out.len() - CRC_LEN;
    let crc = crc32(&out[..n]);
    out[n..].copy_from_slice(&crc.to_be_bytes());
    Some(out.freeze())
}

/// Reads the header of a datagram without checking its CRC or body: for fast paths that
/// have already validated it (e.g. a cache). Returns `None` if too short or bad magic.
pub fn peek_header(datagram: &[u8]) -> Option<(u8, u8, u32, u32)> {
    if datagram.len() < HEADER_LEN + CRC_LEN || datagram[0..2] != MAGIC.to_be_bytes() {
        return None;
    }
    let ptype = datagram[3];
    let flags = datagram[4];
    let ssrc = u32::from_be_bytes([datagram[8], datagram[9], datagram[10], datagram[11]]);
    let seq = u32::from_be_bytes([datagram[12], datagram[13], datagram[14], datagram[15]]);
    Some((ptype, flags, ssrc, seq))
}

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
                put_name(&mut b, &d.name);
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
            } => {
                put_name(&mut b, name);
                b.put_u8(token.len() as u8);
                b.put_slice(token);
                b.put_u32(*max_kbps);
                // Pad so that the request is never smaller than any answer to it (§6.2).
                let min = MIN_SUBSCRIBE_LEN - CRC_LEN;
                if b.len() < min {
                    b.put_bytes(0, min - b.len());
                }
            }
            Body::Retry { token } => {
                b.put_u8(TOKEN_LEN as u8);
                b.put_slice(token);
            }
            Body::Reject { reason } => b.put_u8(*reason as u8),
            Body::KeepAlive { echo_us } | Body::KeepAliveAck { echo_us } => b.put_u32(*echo_us),
            Body::Bye => {}
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
            }
        }
        let crc = crc32(&b);
        b.put_u32(crc);
        b.freeze()
    }

    fn encoded_len_hint(&self) -> usize {
        HEADER_LEN
            + CRC_LEN
            + match &self.body {
                Body::Video(v) => VIDEO_HEADER_LEN + v.payload.len(),
                Body::Audio(a) => AUDIO_HEADER_LEN + a.payload.len(),
                _ => MIN_SUBSCRIBE_LEN,
            }
    }

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
                    return Err(DecodeError::Invalid("frame size"));
                }
                if width == 0 || height == 0 || width > MAX_DIMENSION || height > MAX_DIMENSION {
                    return Err(DecodeError::Invalid("dimensions"));
                }
                if chunk_count == 0 || chunk_index >= chunk_count {
                    return Err(DecodeError::Invalid("chunk index"));
                }
                if payload.is_empty()
                    || offset as u64 + payload.len() as u64 > frame_size as u64
                    || (chunk_index + 1 == chunk_count
                        && offset as u64 + payload.len() as u64 != frame_size as u64)
                {
                    return Err(DecodeError::Invalid("chunk bounds"));
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
                    return Err(DecodeError::Invalid("sample format"));
                }
                if channels == 0 || channels > MAX_CHANNELS {
                    return Err(DecodeError::Invalid("channels"));
                }
                if !(8000..=192_000).contains(&sample_rate) {
                    return Err(DecodeError::Invalid("sample rate"));
                }
                if frames == 0 || payload.len() != frames as usize * channels as usize * 2 {
                    return Err(DecodeError::Invalid("audio length"));
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
                if r.u8()? != 1 {
                    return Err(DecodeError::Invalid("video codec"));
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
                    return Err(DecodeError::Invalid("dimensions"));
                }
                if fps_num == 0 || fps_den == 0 {
                    return Err(DecodeError::Invalid("frame rate"));
                }
                let audio = match afmt {
                    0 => None,
                    1 => {
                        if channels == 0
                            || channels > MAX_CHANNELS
                            || !(8000..=192_000).contains(&sample_rate)
                            || block_frames == 0
                        {
                            return Err(DecodeError::Invalid("audio params"));
                        }
                        Some(AudioParams {
                            sample_rate,
                            channels,
                            block_frames,
                        })
                    }
                    _ => return Err(DecodeError::Invalid("sample format")),
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
                    return Err(DecodeError::Invalid("token length"));
                }
                let token = r.bytes(tlen)?.to_vec();
                let max_kbps = r.u32()?;
                if data.len() < MIN_SUBSCRIBE_LEN {
                    return Err(DecodeError::Invalid("subscribe not padded"));
                }
                Body::Subscribe {
                    name,
                    token,
                    max_kbps,
                }
            }
            PacketType::Retry => {
                if r.u8()? as usize != TOKEN_LEN {
                    return Err(DecodeError::Invalid("token length"));
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
                    _ => return Err(DecodeError::Invalid("reject reason")),
                },
            },
            PacketType::KeepAlive => Body::KeepAlive { echo_us: r.u32()? },
            PacketType::KeepAliveAck => Body::KeepAliveAck { echo_us: r.u32()? },
            PacketType::Bye => Body::Bye,
            PacketType::Nack => {
                let flow = Flow::from_u8(r.u8()?).ok_or(DecodeError::Invalid("flow"))?;
                let count = r.u8()? as usize;
                if count == 0 || count > MAX_NACK_RANGES {
                    return Err(DecodeError::Invalid("nack count"));
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
                        return Err(DecodeError::Invalid("nack range"));
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
            }),
        };
        Ok(Packet { header, body })
    }
}

fn put_name(b: &mut BytesMut, name: &str) {
    let bytes = name.as_bytes();
    let n = bytes.len().min(MAX_NAME_LEN);
    b.put_u8(n as u8);
    b.put_slice(&bytes[..n]);
}

/// Checks a stream name for the CLI: 1..=64 bytes of UTF-8 with no control characters.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= MAX_NAME_LEN && !name.chars().any(char::is_control)
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
            return Err(DecodeError::Invalid("name length"));
        }
        let s = std::str::from_utf8(self.bytes(n)?).map_err(|_| DecodeError::Invalid("name"))?;
        if !valid_name(s) {
            return Err(DecodeError::Invalid("name"));
        }
        Ok(s.to_owned())
    }
}

#[cfg(test)]
mod tests;
