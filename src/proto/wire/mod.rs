//! The framecast wire format (proto-spec.md §3–§6): encoding and decoding of every datagram.
//!
//! Decoding never panics and never allocates more than the datagram itself: every length
//! read from the wire is checked against the datagram and against fixed bounds first.

mod decode;
mod encode;
mod error;
mod packet;
pub mod seq;

use bytes::{Bytes, BytesMut};

pub use crate::proto::fec::msg::SymbolRequest;
pub use error::{DecodeError, MalformedCounters};
pub use packet::{
    AudioBlock, AudioParams, Body, Description, Header, NackRange, Packet, ParityChunk,
    ReceiverReport, RejectReason, SampleFormat, VideoChunk,
};
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
/// How long after skipping a frame for a subscriber a relay answers none of its video NACKs
/// or FEC requests, and the subscriber sends none (§6.10, §7.3).
pub const SKIP_QUIET: std::time::Duration = std::time::Duration::from_secs(1);
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
    /// A parity symbol of a video frame's erasure code (§6.7).
    Parity = 4,
    /// The publisher's stream has ended (§6.9).
    End = 5,
    /// The relay skipped a whole frame for this subscriber under overload (§6.10).
    Skip = 6,
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
    /// A request for more parity symbols of frames (§6.8).
    FecRequest = 24,
}

impl PacketType {
    fn from_u8(v: u8) -> Option<PacketType> {
        Some(match v {
            1 => PacketType::Video,
            2 => PacketType::Audio,
            3 => PacketType::Description,
            4 => PacketType::Parity,
            5 => PacketType::End,
            6 => PacketType::Skip,
            16 => PacketType::Subscribe,
            17 => PacketType::Retry,
            18 => PacketType::Reject,
            19 => PacketType::KeepAlive,
            20 => PacketType::KeepAliveAck,
            21 => PacketType::Bye,
            22 => PacketType::Nack,
            23 => PacketType::ReceiverReport,
            24 => PacketType::FecRequest,
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

/// Checks a stream name for the CLI: 1..=64 bytes of UTF-8 with no control characters.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= MAX_NAME_LEN && !name.chars().any(char::is_control)
}

#[cfg(test)]
pub(crate) mod tests;
