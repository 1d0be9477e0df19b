//! The decoded form of every datagram (proto-spec.md §3–§6).

use bytes::Bytes;

use super::{Flow, PacketType, SymbolRequest, TOKEN_LEN};
use crate::proto::fec::FecParams;

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

/// One parity symbol of a video frame's erasure code (§6.7). The header's seq is the
/// sequence number of the frame's chunk 0.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParityChunk {
    /// Frame identifier, as in the frame's video chunks.
    pub frame_id: u32,
    /// Presentation timestamp on the 90 kHz media clock.
    pub pts: u64,
    /// Frame width in pixels.
    pub width: u16,
    /// Frame height in pixels.
    pub height: u16,
    /// The frame's code: K data chunks of `chunk_len` bytes, R parity symbols, frame size.
    pub params: FecParams,
    /// Index of this symbol, below `params.parity_count()`.
    pub index: u16,
    /// The symbol: `params.shard_len()` bytes.
    pub symbol: Bytes,
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
    /// The node uses keys and the request came in the clear (§8.3): give the subscriber or
    /// publisher a key file.
    AuthRequired = 4,
    /// Another publisher feeds this stream name (§7.3): a DESCRIPTION from a second
    /// publisher is refused.
    NameTaken = 5,
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
    /// Video datagrams seen missing on first transmission in the last report interval, as a
    /// fraction × 65536 (§6.6; 0 from a sender that does not state it).
    pub loss_q16: u16,
    /// Mean length of the gaps seen in the video flow (runs of consecutive lost datagrams),
    /// × 256 (§6.6); 0 when not measured or not stated.
    pub burst_q8: u16,
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
        /// The viewer's playout latency in ms (0 = not stated), so that the relay paces
        /// and repairs within it (§6.2, §7.3).
        latency_ms: u16,
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
    /// §6.7
    Parity(ParityChunk),
    /// §6.8: 1..=`MAX_FEC_REQUESTS` entries.
    FecRequest {
        /// The symbols asked for, per frame.
        entries: Vec<SymbolRequest>,
    },
    /// §6.9: the stream has ended; nothing follows `last_pts`.
    End {
        /// Presentation timestamp (90 kHz) of the stream's last frame or audio block.
        last_pts: u64,
    },
    /// §6.10: a relay skipped a whole frame for this subscriber (overload, §7.3); its chunks
    /// will not come and are not to be asked for.
    Skip {
        /// The frame skipped.
        frame_id: u32,
        /// Video sequence number of its chunk 0 (§5.1: its chunks are consecutive).
        first_seq: u32,
        /// Its chunks, ≥ 1.
        chunk_count: u16,
    },
}

/// A whole decoded datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet {
    /// Common header.
    pub header: Header,
    /// Type-specific body.
    pub body: Body,
}
