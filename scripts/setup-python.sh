#!/usr/bin/env bash
# Creates .venv (ignored) with the Python tools the tests use to read what we write, the way
# users do: DuckDB (+ its httpfs extension from PyPI, since extensions cannot be downloaded
# here), moto's S3 server (a real S3-compatible server on loopback), and pyspark (Spark reads
# the dataset; needs Java 17, which the machine has), and kubernetes-validate (the manifests of
# deploy/kubernetes against Kubernetes' schemas), and two Delta Lake readers (the deltalake
# package, which is delta-rs, and DuckDB's delta extension). Idempotent: installs only what is
# missing.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=.venv
PY="$VENV/bin/python"
if [ ! -x "$PY" ]; then
  echo "== creating $VENV"
  python3 -m venv "$VENV"
fi
pip_install() { "$PY" -m pip install --quiet --disable-pip-version-check "$@"; }
if ! "$PY" -c 'import duckdb, pytz, duckdb_ext' 2>/dev/null; then
  echo "== installing duckdb + httpfs"
  pip_install 'duckdb==1.4.4' 'duckdb-ext-httpfs==1.4.4.20260205' 'pytz'
fi
if ! "$PY" -c 'import deltalake, pyarrow' 2>/dev/null \
  || [ -z "$(ls "$VENV"/lib/python3*/site-packages/duckdb_ext/extensions/v*/*/delta.duckdb_extension 2>/dev/null)" ]; then
  echo "== installing deltalake (delta-rs), pyarrow and DuckDB's delta extension (readers of our Delta tables)"
  pip_install 'deltalake==1.6.6' 'pyarrow==26.0.1' 'duckdb-ext-delta==1.4.4.20260205'
fi
if [ ! -x "$VENV/bin/moto_server" ] || ! "$PY" -c 'import boto3, flask' 2>/dev/null; then
  echo "== installing moto[server]"
  pip_install 'moto[server]==5.2.5'
fi
if ! "$PY" -c 'import kubernetes_validate' 2>/dev/null; then
  echo "== installing kubernetes-validate (Kubernetes' schemas, for deploy/kubernetes)"
  pip_install 'kubernetes-validate==1.37.0'
fi
if ! "$PY" -c 'import pyspark' 2>/dev/null; then
  echo "== installing pyspark (large: about a minute)"
  pip_install 'pyspark==4.3.0'
fi
