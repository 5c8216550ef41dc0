#!/usr/bin/env bash
# The whole test suite, as CI runs it (README: "Two commands"). Idempotent; safe on a fresh clone.
# - makes .venv (ignored) with the Python tools the tests read our output with (DuckDB);
# - checks formatting, unused dependencies, lints (warnings are errors), the build without the
#   `report` feature, and the API docs (warnings are errors), on every crate of the workspace;
# - runs every Rust test of every crate (unit, property, end-to-end against the simulator,
#   DuckDB checks, the examples of the API docs).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/vscope-etl/target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

# Each step says how long the one before took, so a slow CI run tells where its time went.
step_name="" step_start=$SECONDS
step() {
    if [ -n "$step_name" ]; then echo "   ($step_name: $((SECONDS - step_start)) s)"; fi
    step_name=$1 step_start=$SECONDS
    echo "== $1"
}

step "python tools (.venv)"
scripts/setup-python.sh

step "cargo fmt --check"
cargo fmt --all -- --check

# Unused dependencies: cargo-machete reads the sources, builds nothing (well under a second).
# Installed once into the cache (about 1.5 min on 2 cores), pinned.
tools="$HOME/.cache/vscope-etl/tools"
machete_version=0.9.2
if ! "$tools/bin/cargo-machete" --version 2>/dev/null | grep -q "$machete_version"; then
    step "installing cargo-machete $machete_version into $tools"
    cargo install cargo-machete --version "$machete_version" --locked --quiet --root "$tools"
fi
step "cargo machete (unused dependencies)"
"$tools/bin/cargo-machete"

step "cargo clippy"
cargo clippy --workspace --all-targets --quiet -- -D warnings
# Everything but the report crate, without the `report` feature (no polars): type-check only.
step "cargo check --no-default-features"
cargo check --workspace --exclude vscope-report --no-default-features --all-targets --quiet
step "cargo doc"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --quiet

step "cargo test"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
set +e
VSCOPE_TEST_PYTHON="$PWD/.venv/bin/python" cargo test --workspace --all-targets 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
# The examples of the API docs, which --all-targets leaves out (a few seconds).
cargo test --workspace --doc 2>&1 | tee -a "$log"
[ "${PIPESTATUS[0]}" = 0 ] || status=1
set -e
# One closing line for the whole suite (every test binary's counts added up).
awk '/^test result:/ { p += $4; f += $6 } END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
step "done: $SECONDS s in all"
exit "$status"
