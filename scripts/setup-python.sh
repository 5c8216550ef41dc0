#!/usr/bin/env bash
# Creates .venv with the Python packages the tests use to read our Parquet (DuckDB). Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=.venv
if [ ! -x "$VENV/bin/python" ]; then
  echo "== creating $VENV"
  python3 -m venv "$VENV"
fi
if ! "$VENV/bin/python" -c 'import duckdb, pytz' 2>/dev/null; then
  echo "== installing duckdb into $VENV"
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check 'duckdb==1.4.4' 'pytz'
fi
