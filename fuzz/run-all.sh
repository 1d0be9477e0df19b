#!/usr/bin/env bash
# Builds every fuzz target, then runs each for SECONDS (default 30) from its seeds
# (fuzz/seeds/T) plus its local corpus (fuzz/corpus/T, gitignored, grows between runs),
# with libFuzzer's mutation seed FUZZ_SEED (default 1: CI explores the same inputs first;
# set another to explore elsewhere).
# Exits non-zero if any target crashes, fails an invariant or times out; the failing input
# is in fuzz/artifacts/T/.
#
# Works on stable Rust (RUSTC_BOOTSTRAP=1 lets cargo-fuzz pass its nightly-only flags).
# Environment: FUZZ_TIMEOUT (seconds per input before libFuzzer calls it a hang, default 10),
# FUZZ_SANITIZER (address | none, default address), FUZZ_TARGETS (space-separated subset).
set -uo pipefail
cd "$(dirname "$0")"
seconds="${1:-30}"
timeout="${FUZZ_TIMEOUT:-10}"
sanitizer="${FUZZ_SANITIZER:-address}"
export RUSTC_BOOTSTRAP=1

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "cargo-fuzz is missing: cargo install cargo-fuzz --locked" >&2
    exit 2
fi
targets="${FUZZ_TARGETS:-$(cargo fuzz list)}"

echo "== building fuzz targets" >&2
cargo fuzz build --sanitizer "$sanitizer" || exit 2

failed=()
for t in $targets; do
    echo "== fuzzing $t for ${seconds}s" >&2
    mkdir -p "corpus/$t" "seeds/$t"
    # The corpus comes first: libFuzzer writes new inputs there, never into seeds/.
    if ! cargo fuzz run --sanitizer "$sanitizer" "$t" "corpus/$t" "seeds/$t" -- \
        -max_total_time="$seconds" -timeout="$timeout" -seed="${FUZZ_SEED:-1}" \
        -print_final_stats=1 2>"corpus/$t.log"; then
        failed+=("$t")
        grep -E -A1 "panicked at" "corpus/$t.log" | head -2 >&2
        grep -E "ERROR: libFuzzer|Test unit written" "corpus/$t.log" | head -2 >&2
    else
        grep -E "^Done|stat::number_of_executed_units" "corpus/$t.log" | head -2 >&2
    fi
done

if ((${#failed[@]})); then
    echo "== FAILED: ${failed[*]} (inputs in fuzz/artifacts/<target>/, logs in fuzz/corpus/<target>.log)" >&2
    exit 1
fi
echo "== all fuzz targets ran ${seconds}s without failure" >&2
