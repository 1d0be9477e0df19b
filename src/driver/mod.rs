//! Drivers: the thin, socket-owning layers (mio event loops) around the sans-IO core.

pub mod netsim;
