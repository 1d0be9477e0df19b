//! Deterministic network simulation beside the core: [`netem`], a seeded link emulator
//! (delay, jitter, random and Gilbert-Elliott burst loss, duplication, reordering, a
//! rate-limited queue), and [`world`], a `World` of sans-IO nodes joined by emulated links
//! and stepped in virtual time. Tests, fuzz targets and the `netsim` proxy share them.
//! Held to the same rule as [`crate::proto`]: no clock, socket, thread or unseeded RNG.
#![cfg_attr(not(test), deny(clippy::disallowed_methods, clippy::disallowed_types))]

pub mod netem;
pub mod world;

pub use world::World;
