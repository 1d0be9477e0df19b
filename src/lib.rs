//! framecast: stream JPEG video and PCM audio over UDP on a local network.
//!
//! The crate is laid out in three rings:
//! - [`proto`]: the sans-IO protocol core (wire format, packetizer, reassembler, jitter
//!   buffers, loss tracking, retransmission cache, pacer, tokens, subscriptions, relay,
//!   publisher, viewer, the [`proto::node::Node`] trait). Datagrams and `now: Instant` in;
//!   datagrams, deadlines and events out. Clippy rejects a socket, a clock read, a thread, a
//!   sleep or an unseeded RNG there (see `clippy.toml`).
//! - [`sim`]: the seeded link emulator and the simulated network `World` in virtual time,
//!   used by tests, fuzz targets and the `netsim` proxy alike; as deterministic as the core.
//! - The edges: [`driver`] (mio event loops and sockets), [`media`] (capture, codecs, window,
//!   sound card, recorder) and `app` (the command-line roles).
#![warn(missing_docs)]

#[cfg(feature = "jpeg")]
pub mod app;
pub mod driver;
pub mod media;
pub mod proto;
pub mod rtp;
pub mod sim;
