//! Why a datagram is rejected ([`DecodeError`]), and per-reason counters of the datagrams a
//! node dropped ([`MalformedCounters`]).

use serde::ser::{Serialize, SerializeMap, Serializer};
use thiserror::Error;

/// Why a datagram was rejected. Every variant is counted by the node that drops it
/// ([`MalformedCounters::record`]); [`DecodeError::reason`] gives its counter key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// Shorter than the header and CRC, or than its body claims (§3).
    #[error("datagram truncated")]
    Truncated,
    /// Longer than any valid datagram (§2).
    #[error("datagram too large")]
    TooLarge,
    /// The first two bytes are not `"FC"` (§3).
    #[error("bad magic")]
    BadMagic,
    /// A version this code does not speak (§3).
    #[error("unsupported version {0}")]
    BadVersion(u8),
    /// The CRC32 trailer does not match (§3).
    #[error("CRC mismatch")]
    BadCrc,
    /// An unknown packet type (§3).
    #[error("unknown packet type {0}")]
    UnknownType(u8),
    /// A PARITY or FEC_REQUEST body field out of range or inconsistent (§6.7, §6.8).
    #[error("invalid field: {field} = {value}")]
    Fec {
        /// The field, as proto-spec.md names it.
        field: &'static str,
        /// Its value.
        value: u64,
    },
    /// A video frame size of zero or over `MAX_FRAME_BYTES` (§5.1).
    #[error("invalid field: frame size {size}")]
    FrameSize {
        /// The frame size read, bytes.
        size: u32,
    },
    /// A zero width or height, or one over `MAX_DIMENSION` (§5.1, §6.1).
    #[error("invalid field: dimensions {width}x{height}")]
    Dimensions {
        /// Width read, pixels.
        width: u16,
        /// Height read, pixels.
        height: u16,
    },
    /// A chunk index not below the chunk count, or a zero count (§5.1).
    #[error("invalid field: chunk index {index} of {count}")]
    ChunkIndex {
        /// Chunk index read.
        index: u16,
        /// Chunk count read.
        count: u16,
    },
    /// An empty chunk, one reaching past its frame, or a last chunk that does not end it
    /// (§5.1).
    #[error("invalid field: chunk bounds (offset {offset}, {len} bytes, frame {frame_size})")]
    ChunkBounds {
        /// Offset read, bytes.
        offset: u32,
        /// Payload length, bytes.
        len: usize,
        /// Frame size read, bytes.
        frame_size: u32,
    },
    /// A sample format other than s16le (§5.2, §6.1).
    #[error("invalid field: sample format {format}")]
    SampleFormat {
        /// Format code read.
        format: u8,
    },
    /// Zero channels or more than `MAX_CHANNELS` (§5.2).
    #[error("invalid field: channels {channels}")]
    Channels {
        /// Channel count read.
        channels: u8,
    },
    /// A sample rate outside 8000..=192000 Hz (§5.2).
    #[error("invalid field: sample rate {rate}")]
    SampleRate {
        /// Rate read, Hz.
        rate: u32,
    },
    /// An audio payload whose length is not `frames * channels * 2`, or zero frames (§5.2).
    #[error("invalid field: audio length ({frames} frames, {len} bytes)")]
    AudioLength {
        /// Sample frames read.
        frames: u16,
        /// Payload length, bytes.
        len: usize,
    },
    /// A video codec other than JPEG (§6.1).
    #[error("invalid field: video codec {codec}")]
    VideoCodec {
        /// Codec code read.
        codec: u8,
    },
    /// A zero frame-rate numerator or denominator (§6.1).
    #[error("invalid field: frame rate {num}/{den}")]
    FrameRate {
        /// Numerator read.
        num: u16,
        /// Denominator read.
        den: u16,
    },
    /// Impossible audio parameters in a description (§6.1).
    #[error("invalid field: audio params ({sample_rate} Hz, {channels} ch, {block_frames} frames)")]
    AudioParams {
        /// Sample rate read, Hz.
        sample_rate: u32,
        /// Channels read.
        channels: u8,
        /// Block length read, sample frames.
        block_frames: u16,
    },
    /// A token length other than 0 (SUBSCRIBE only) or `TOKEN_LEN` (§6.2, §6.3).
    #[error("invalid field: token length {len}")]
    TokenLength {
        /// Length read, bytes.
        len: usize,
    },
    /// A SUBSCRIBE shorter than `MIN_SUBSCRIBE_LEN` (§6.2).
    #[error("invalid field: subscribe not padded ({len} bytes)")]
    SubscribeNotPadded {
        /// Datagram length, bytes.
        len: usize,
    },
    /// An unknown REJECT reason (§6.4).
    #[error("invalid field: reject reason {code}")]
    RejectReason {
        /// Reason code read.
        code: u8,
    },
    /// An unknown flow in a NACK (§6.5).
    #[error("invalid field: flow {flow}")]
    Flow {
        /// Flow code read.
        flow: u8,
    },
    /// A NACK with zero or more than `MAX_NACK_RANGES` ranges (§6.5).
    #[error("invalid field: nack count {count}")]
    NackCount {
        /// Range count read.
        count: usize,
    },
    /// A NACK range of length zero (§6.5).
    #[error("invalid field: empty nack range at {start}")]
    NackRange {
        /// First sequence number of the range.
        start: u32,
    },
    /// A stream name of zero or more than `MAX_NAME_LEN` bytes (§6.1).
    #[error("invalid field: name length {len}")]
    NameLength {
        /// Length read, bytes.
        len: usize,
    },
    /// A stream name that is not UTF-8 or holds control characters (§6.1).
    #[error("invalid field: name ({len} bytes)")]
    Name {
        /// Length of the name, bytes.
        len: usize,
    },
}

impl DecodeError {
    /// A short stable snake_case name, used as a counter key in statistics (every invalid
    /// field shares `invalid_field`).
    pub fn reason(&self) -> &'static str {
        match self {
            DecodeError::Truncated => "truncated",
            DecodeError::TooLarge => "too_large",
            DecodeError::BadMagic => "bad_magic",
            DecodeError::BadVersion(_) => "bad_version",
            DecodeError::BadCrc => "bad_crc",
            DecodeError::UnknownType(_) => "unknown_type",
            _ => "invalid_field",
        }
    }
}

/// Malformed datagrams dropped, one counter per [`DecodeError::reason`].
///
/// Serializes as a map from reason to count holding only the reasons seen (as the
/// string-keyed map it replaces did), e.g. `{"bad_crc": 2, "truncated": 1}`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct MalformedCounters {
    /// `truncated`.
    pub truncated: u64,
    /// `too_large`.
    pub too_large: u64,
    /// `bad_magic`.
    pub bad_magic: u64,
    /// `bad_version`.
    pub bad_version: u64,
    /// `bad_crc`.
    pub bad_crc: u64,
    /// `unknown_type`.
    pub unknown_type: u64,
    /// `invalid_field`.
    pub invalid_field: u64,
}

impl MalformedCounters {
    /// Counts one dropped datagram.
    pub fn record(&mut self, e: &DecodeError) {
        let c = match e {
            DecodeError::Truncated => &mut self.truncated,
            DecodeError::TooLarge => &mut self.too_large,
            DecodeError::BadMagic => &mut self.bad_magic,
            DecodeError::BadVersion(_) => &mut self.bad_version,
            DecodeError::BadCrc => &mut self.bad_crc,
            DecodeError::UnknownType(_) => &mut self.unknown_type,
            _ => &mut self.invalid_field,
        };
        *c += 1;
    }

    /// Every reason with its count, zeros included, in key order.
    pub fn all(&self) -> [(&'static str, u64); 7] {
        [
            ("bad_crc", self.bad_crc),
            ("bad_magic", self.bad_magic),
            ("bad_version", self.bad_version),
            ("invalid_field", self.invalid_field),
            ("too_large", self.too_large),
            ("truncated", self.truncated),
            ("unknown_type", self.unknown_type),
        ]
    }

    /// The reasons seen (non-zero counts), in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, u64)> {
        self.all().into_iter().filter(|&(_, n)| n > 0)
    }

    /// Datagrams dropped for any reason.
    pub fn total(&self) -> u64 {
        self.all().iter().map(|&(_, n)| n).sum()
    }

    /// Whether nothing was dropped.
    pub fn is_empty(&self) -> bool {
        self.total() == 0
    }
}

impl Serialize for MalformedCounters {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        for (k, n) in self.iter() {
            m.serialize_entry(k, &n)?;
        }
        m.end()
    }
}

impl From<crate::proto::fec::msg::MsgError> for DecodeError {
    fn from(e: crate::proto::fec::msg::MsgError) -> Self {
        use crate::proto::fec::FecError;
        use crate::proto::fec::msg::MsgError;
        let (field, value) = match e {
            MsgError::Truncated { .. } => return DecodeError::Truncated,
            MsgError::Invalid { field, value } => (field, value),
            MsgError::Fec { source } => match source {
                FecError::DataCount { k, .. } => ("chunk_count", k as u64),
                FecError::ParityCount { count, .. } => ("parity_count", count as u64),
                FecError::ChunkLen { chunk_len, .. } => ("chunk_len", chunk_len as u64),
                FecError::FrameSize { frame_size, .. } => ("frame_size", frame_size),
                FecError::DataIndex { index, .. } => ("chunk_index", index as u64),
                FecError::ParityIndex { index, .. } => ("parity_index", index as u64),
                FecError::SymbolLen { got, .. } => ("symbol", got as u64),
                FecError::NotEnough { have, .. } => ("symbols", have as u64),
                FecError::Codec { .. } => ("symbol", 0),
            },
        };
        DecodeError::Fec { field, value }
    }
}
