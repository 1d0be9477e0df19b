//! Drivers: the thin, socket-owning layers (mio event loops) around the sans-IO core.

pub mod batch;
pub mod ceilings;
pub mod event_loop;
pub mod netsim;
pub mod recv;
pub mod send_pool;
pub mod udp;
