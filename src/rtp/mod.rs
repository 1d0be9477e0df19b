//! RTP output (`--rtp-out`): a framecast stream as RTP/JPEG (RFC 2435) and L16 audio
//! (RFC 3551 §4.5.11) with RTCP sender reports (RFC 3550 §6.4.1), described by an SDP file
//! (RFC 8866), so that ffplay, VLC and GStreamer can watch it.
//!
//! Sans-IO like [`crate::proto`]: media and `now` in, datagrams (tagged with the port they
//! belong to) and deadlines out; the same lints forbid sockets, clocks and threads here. The
//! RTP and RTCP packet structures come from the `rtp-types` and `rtcp-types` crates; only the
//! RFC 2435 payload headers are written here, because no crate covers them.
//! - `jpeg`: reads a baseline JPEG's quantization tables, dimensions, sampling, restart
//!   interval and entropy-coded data, and refuses what RFC 2435 cannot carry.
//! - `payload`: the RFC 2435 packetizer and the L16 packetizer.
//! - `session`: sequence numbers, timestamps on one media clock, sender reports.
//! - `sdp`: the session description.
#![cfg_attr(not(test), deny(clippy::disallowed_methods, clippy::disallowed_types))]

pub mod jpeg;
pub mod payload;
pub mod sdp;
pub mod session;

pub use jpeg::{JpegError, RtpJpeg};
pub use session::{RtpChannel, RtpConfig, RtpSession, RtpStats, RtpTransmit};
