#!/usr/bin/env bash
# The demo in one command: installs what is missing, builds, then runs serve + relay + two
# players on loopback through a simulated network (5 % loss, 5 ms each way) and prints the summary.
# Extra arguments go to `framecast demo` (e.g. --duration 30 --loss 10).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo build --release --quiet
exec target/release/framecast demo --loss 5 "$@"
