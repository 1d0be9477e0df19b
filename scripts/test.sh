#!/usr/bin/env bash
# Every check in one command: installs what is missing, then formatting, lints, the test
# suites (with and without the OpenCV/ALSA features), examples, benchmarks (built, and the
# fan-out and loss-sweep benches run briefly) and each fuzz target for FUZZ_SECONDS (default 30).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
# One-shot builds gain nothing from incremental state, which otherwise takes GBs of disk.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
step() { printf '\n== %s\n' "$*" >&2; }

step "rustfmt"
cargo fmt --all -- --check
step "clippy (all features, all targets)"
cargo clippy --all-targets --quiet -- -D warnings
step "sans-IO boundary: clippy rejects I/O, clocks, threads and unseeded RNG in src/proto and src/sim"
scripts/check-core-boundary.sh
step "tests, protocol core only (no OpenCV, no ALSA, no turbojpeg)"
cargo test --no-default-features --quiet
step "tests, default features (under Xvfb, so the window test runs for real)"
FRAMECAST_REQUIRE_DISPLAY=1 xvfb-run -a cargo test --quiet
step "examples and benchmarks build"
cargo build --examples --benches --release --quiet
step "relay fan-out smoke run (50 viewers, 3 s)"
cargo bench --quiet --bench relay_fanout -- --subscribers 50 --seconds 3
step "HTTP MJPEG against framecast viewers smoke run (50 each, 3 s)"
cargo bench --quiet --bench http_fanout -- --viewers 50 --seconds 3
step "loss sweep smoke run (framecast and SRT through netsim, 5% loss, 3 s each)"
cargo bench --quiet --bench loss_sweep -- --seconds 3 --points 5
step "fuzz targets (${FUZZ_SECONDS:-30} s each)"
if ! command -v cargo-fuzz >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked --quiet
fi
fuzz/run-all.sh "${FUZZ_SECONDS:-30}"
step "all checks passed"
