#!/usr/bin/env bash
# Proves the sans-IO boundary is enforced, not conventional: copies the tree, puts a socket
# bind, a clock read, a sleep, a thread and an unseeded RNG into a core module (src/proto),
# into the simulator (src/sim) and into the RTP packetizer (src/rtp), and expects clippy to
# reject each one. Exits non-zero if any of them slips through (or if the unmodified tree does
# not pass clippy to begin with).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
git ls-files -z | xargs -0 -I{} cp --parents {} "$tmp/"
# Reuse the dependency builds; the copy is a different package path, so only it is re-checked.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target}"
clippy() { (cd "$tmp" && cargo clippy --lib --no-default-features --quiet --message-format short -- -D warnings 2>&1); }

inject() { # file, line of Rust to add as a function
    printf '\n#[allow(dead_code, clippy::let_underscore_future)]\nfn boundary_probe() {\n    %s\n}\n' "$2" >>"$tmp/$1"
}
probes=(
    'src/proto/loss.rs@let _ = std::net::UdpSocket::bind("127.0.0.1:0");@disallowed'
    'src/proto/relay/mod.rs@let _ = std::time::Instant::now();@disallowed method `std::time::Instant::now`'
    'src/proto/viewer/mod.rs@std::thread::sleep(std::time::Duration::from_millis(1));@disallowed method `std::thread::sleep`'
    'src/proto/publisher.rs@let _ = std::thread::spawn(|| ());@disallowed method `std::thread::spawn`'
    'src/proto/jitter.rs@let _ = fastrand::u32(..);@disallowed method `fastrand::u32`'
    'src/sim/netem/mod.rs@let _ = std::time::SystemTime::now();@disallowed'
    'src/rtp/session.rs@let _ = std::time::SystemTime::now();@src/rtp/session.rs'
)
failed=0
for p in "${probes[@]}"; do
    IFS='@' read -r file code _ <<<"$p"
    [ -f "$tmp/$file" ] || file="${file%/mod.rs}.rs"
    [ -f "$tmp/$file" ] || { echo "boundary: $file not found" >&2; exit 1; }
    inject "$file" "$code"
done
# One clippy run reports every probe: each must be rejected by name.
if out=$(clippy); then
    echo "boundary: clippy accepted every probe: the core boundary is not enforced" >&2
    exit 1
fi
for p in "${probes[@]}"; do
    IFS='@' read -r file code expect <<<"$p"
    [ -f "$tmp/$file" ] || file="${file%/mod.rs}.rs"
    if grep -qF "$expect" <<<"$out"; then
        echo "boundary: rejected \`$code\` in $file"
    else
        echo "boundary: clippy did NOT reject \`$code\` in $file" >&2
        failed=1
    fi
done
if others=$(grep ': error' <<<"$out" | grep -v 'disallowed'); then
    echo "boundary: clippy also failed for other reasons:" >&2
    echo "$others" >&2
    failed=1
fi
exit "$failed"
