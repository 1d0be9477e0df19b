//! The sans-IO protocol core: every state machine that speaks proto-spec.md.
//!
//! Each part takes datagrams and `now: Instant` in and gives datagrams, deadlines and events
//! out (see [`node::Node`]). Nothing here owns a socket, reads a clock, starts a thread,
//! sleeps or draws from an unseeded RNG, so the same code runs under the mio driver, inside
//! the simulated network in virtual time, and under the fuzzer. The rule is enforced, not
//! conventional: the lints below turn every method and type listed in `clippy.toml`
//! (`Instant::now`, `SystemTime::now`, `thread::sleep`, `thread::spawn`, `UdpSocket`, mio's
//! and socket2's sockets, fastrand's global RNG) into an error in this module's non-test
//! build. Unit tests may take one real `Instant` as their time origin.
#![cfg_attr(not(test), deny(clippy::disallowed_methods, clippy::disallowed_types))]

pub mod fec;
pub mod jitter;
pub mod loss;
pub mod node;
pub mod pacer;
pub mod packetizer;
pub mod publisher;
pub mod reassembler;
pub mod refusal;
pub mod relay;
pub mod reorder;
pub mod rtt;
pub mod rtx_cache;
pub mod secure;
pub mod subscription;
pub mod timer;
pub mod token;
pub mod viewer;
pub mod wire;
