//! framecast: stream JPEG video and PCM audio over UDP on a local network.
//!
//! The protocol core (wire format, packetizer, reassembler, jitter buffer, NACK logic,
//! retransmission cache, pacer, relay subscriber table) is sans-IO: see [`node::Node`].
//! Sockets live in [`driver`]; media adapters live in [`media`].
#![warn(missing_docs)]

#[cfg(feature = "jpeg")]
pub mod app;
pub mod client;
pub mod driver;
pub mod jitter;
pub mod loss;
pub mod media;
pub mod netem;
pub mod node;
pub mod pacer;
pub mod packetizer;
pub mod reassembler;
pub mod relay;
pub mod rtt;
pub mod rtx_cache;
pub mod server;
pub mod sim;
pub mod subscription;
pub mod token;
pub mod wire;
