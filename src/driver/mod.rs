//! Drivers: the thin, socket-owning layers (mio event loops) around the sans-IO core.

pub mod batch;
pub mod event_loop;
pub mod netsim;
pub mod udp;
