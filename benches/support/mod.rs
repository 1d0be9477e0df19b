//! Helpers shared by the benchmarks that run the `framecast` binary as separate processes
//! (`file_pipeline`, `loss_sweep`). Each bench includes this file with `mod support;`.

use std::path::PathBuf;
use std::process::Command;

/// A UDP port on 127.0.0.1 that was free a moment ago (bound, read, released).
pub fn free_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The value at fraction `p` (0..=1) of an ascending slice, nearest rank; NaN when empty.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i]
}

/// The crate's `target` directory.
pub fn target_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target")
}

/// Builds the release `framecast` binary with the features this bench was built with (so
/// nothing is rebuilt for another feature set) and returns its path. Panics if the build
/// fails.
pub fn framecast_release_bin() -> PathBuf {
    let mut features = vec!["jpeg"];
    if cfg!(feature = "opencv") {
        features.push("opencv");
    }
    if cfg!(feature = "cpal") {
        features.push("cpal");
    }
    if cfg!(feature = "webcam") {
        features.push("webcam");
    }
    let status = Command::new("cargo")
        .args(["build", "--release", "--quiet", "--bin", "framecast"])
        .args(["--no-default-features", "--features", &features.join(",")])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .expect("cannot run cargo");
    assert!(status.success(), "cargo build --release failed");
    target_dir().join("release").join("framecast")
}
