#!/usr/bin/env bash
# Fuzzes the parsers that read server or user input, each for a bounded time:
#   dps_decoder      /api/query answers (src/extract/decode.rs)
#   downsample_spec  downsample specs, OpenTSDB and Erlenmeyer rules (crates/core/src/semantics/downsample.rs)
#   partition_path   the Hive partition-path encoder (src/load/partition.rs)
#
# Usage: scripts/fuzz.sh [SECONDS_PER_TARGET]   (default 60)
#
# With a nightly toolchain, runs libFuzzer through cargo-fuzz (installed with `cargo install`
# when missing). Without nightly, or with FUZZ_STABLE=1, runs the same properties as bounded
# random loops on stable (fuzz/tests/stable.rs). Either way a violated property fails the script
# with the input that broke it (libFuzzer also saves it under fuzz/artifacts/<target>/).
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-60}"
targets=(dps_decoder downsample_spec partition_path)

stable() {
    echo "fuzz: bounded stable loops, ${secs}s per target"
    FUZZ_SECONDS="$secs" cargo test --release --manifest-path fuzz/Cargo.toml --test stable -- --test-threads 1 --nocapture
}

if [[ "${FUZZ_STABLE:-0}" == 1 ]] || ! rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
    stable
    exit 0
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz: installing cargo-fuzz"
    cargo install cargo-fuzz --locked
fi
for t in "${targets[@]}"; do
    echo "fuzz: $t for ${secs}s (libFuzzer)"
    mkdir -p "fuzz/corpus/$t"
    cargo +nightly fuzz run --features libfuzzer "$t" "fuzz/corpus/$t" -- -max_total_time="$secs" -max_len=4096
done
