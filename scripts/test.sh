#!/usr/bin/env bash
# The whole test suite, as CI runs it (README: "Two commands"). Idempotent; safe on a fresh clone.
# - makes .venv (ignored) with the Python tools the tests read our output with (DuckDB);
# - checks formatting and lints (warnings are errors);
# - runs every Rust test (unit, property, end-to-end against the simulator, DuckDB checks).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/vscope-etl/target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

scripts/setup-python.sh

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --all-targets --quiet -- -D warnings
echo "== cargo test"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
set +e
VSCOPE_TEST_PYTHON="$PWD/.venv/bin/python" cargo test --all-targets 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
# One closing line for the whole suite (every test binary's counts added up).
awk '/^test result:/ { p += $4; f += $6 } END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
exit "$status"
