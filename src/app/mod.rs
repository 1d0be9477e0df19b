//! The roles behind the command line (`serve`, `relay`, `play`, `demo`, `load`): each binds its
//! socket first (so a caller learns the address, and a busy port is reported before
//! anything starts), then runs its node in an [`crate::driver::event_loop::EventLoop`].

pub mod demo;
pub mod figures;
pub mod http;
pub mod hub;
pub mod keys;
pub mod load;
pub mod outputs;
pub mod play;
pub mod relay;
pub mod rtp_out;
pub mod serve;
pub mod status;
mod tap;

use std::path::Path;

/// Writes a role's figures as pretty JSON (`--stats-json FILE`).
pub fn write_stats_json<T: serde::Serialize>(path: &Path, stats: &T) -> anyhow::Result<()> {
    use anyhow::Context;
    let text = serde_json::to_string_pretty(stats)?;
    std::fs::write(path, text + "\n").with_context(|| {
        format!(
            "cannot write stats to {}: check the directory exists and is writable",
            path.display()
        )
    })
}

/// Seconds from a command-line float, refusing negative or absurd values.
pub fn duration_arg(flag: &str, secs: Option<f64>) -> anyhow::Result<Option<std::time::Duration>> {
    match secs {
        None => Ok(None),
        Some(s) if s.is_finite() && s > 0.0 && s < 1e9 => {
            Ok(Some(std::time::Duration::from_secs_f64(s)))
        }
        Some(s) => anyhow::bail!("--{flag} {s}: expected a positive number of seconds"),
    }
}

/// Checks a stream name given as `--FLAG`.
pub fn check_name(flag: &str, name: &str) -> anyhow::Result<()> {
    if !crate::proto::wire::valid_name(name) {
        anyhow::bail!("--{flag} {name:?}: a stream name is 1-64 bytes with no control characters");
    }
    Ok(())
}
