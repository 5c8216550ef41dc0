#!/usr/bin/env bash
# End-to-end benchmark (issue #7): recorded OpenTSDB answers served over loopback → raw Parquet,
# vscope-etl against DuckDB and Python json/orjson + pyarrow on the very same JSON.
#
#   benches/e2e.sh            # 2000 series x 1 day at 20 s = 8.64 M points
#   benches/e2e.sh --10x      # 10 days (86.4 M points): memory must stay flat; peers skipped
#                             #   unless --peers is given too
#   options: --no-peers, --peers, --no-build, --runs N (vscope-etl runs, best kept; default 3),
#            --peer-runs N (default 1)
#
# Everything it makes lives in .bench/ (ignored): the generated answers (kept between runs,
# regenerated only when missing), a Python venv with duckdb, pyarrow, orjson and numpy, and
# the outputs. Steps: generate (benches/gen_answers.py) → `vscope-etl sim --replay` on
# 127.0.0.1 → `vscope-etl run` raw only, then raw + a 1h avg/min/max/p95/count rollup table →
# the peers → a check that every output holds the same (series, ts, value) set → a table and
# a last line: e2e points_per_s=… vs_duckdb=…x vs_orjson_pyarrow=…x peak_rss_mb=… bytes_per_point=…
# Wall times are whole processes (start-up included); peak RSS is /usr/bin/time's maximum RSS.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

DAYS=1
PEERS=auto
BUILD=1
RUNS=3
PEER_RUNS=1
while [ $# -gt 0 ]; do
  case "$1" in
    --10x) DAYS=10 ;;
    --peers) PEERS=1 ;;
    --no-peers) PEERS=0 ;;
    --no-build) BUILD=0 ;;
    --runs) RUNS=$2; shift ;;
    --peer-runs) PEER_RUNS=$2; shift ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
if [ "$PEERS" = auto ]; then
  if [ "$DAYS" = 1 ]; then PEERS=1; else PEERS=0; fi
fi

WORK=$ROOT/.bench
DATA=$WORK/data-${DAYS}d
OUT=$WORK/out-${DAYS}d
VENV=$WORK/venv
PY=$VENV/bin/python
mkdir -p "$WORK"

echo "== machine: $(nproc) CPU, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), load $(cut -d' ' -f1-3 /proc/loadavg)"

# --- Python tools for the peers and the check
if [ ! -x "$PY" ]; then
  echo "== creating $VENV"
  python3 -m venv "$VENV"
fi
if ! "$PY" -c 'import duckdb, pyarrow, orjson, numpy' 2>/dev/null; then
  echo "== installing duckdb pyarrow orjson numpy into $VENV"
  "$PY" -m pip install --quiet --disable-pip-version-check \
    duckdb==2.0.0 pyarrow==26.0.1 orjson==3.13.0 numpy==2.4.6
fi

# --- the dataset (deterministic; regenerated only when missing)
if [ ! -f "$DATA/meta.json" ]; then
  echo "== generating $DATA (2000 series x $DAYS day(s) at 20 s)"
  rm -rf "$DATA"
  python3 benches/gen_answers.py "$DATA" --days "$DAYS" >/dev/null
fi
JSON_BYTES=$(du -sb "$DATA/query" | cut -f1)
START_MS=$("$PY" -c "import json;print(json.load(open('$DATA/meta.json'))['start_ms'])")
END_MS=$("$PY" -c "import json;print(json.load(open('$DATA/meta.json'))['end_ms'])")

# --- the binary
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
BIN=$TARGET/release/vscope-etl
if [ "$BUILD" = 1 ]; then
  echo "== cargo build --release --no-default-features"
  cargo build --release --no-default-features --quiet
fi
[ -x "$BIN" ] || { echo "no binary at $BIN (build it or drop --no-build)" >&2; exit 1; }

# --- the replay server
URL_FILE=$WORK/replay.url
"$BIN" sim --replay "$DATA" --listen 127.0.0.1:0 >"$URL_FILE" 2>"$WORK/replay.log" &
REPLAY_PID=$!
trap 'kill -INT $REPLAY_PID 2>/dev/null || true' EXIT
for _ in $(seq 600); do [ -s "$URL_FILE" ] && break; sleep 0.05; done
URL=$(head -n1 "$URL_FILE")
[ -n "$URL" ] || { echo "the replay server did not start:"; cat "$WORK/replay.log"; exit 1; }
echo "== replay server $URL (pid $REPLAY_PID)"

pipeline() { # name sink rollup(0/1)
  cat <<EOF
name = "$1"
[source]
url = "$URL"
dialect = "opentsdb"
concurrency = 8
requests_per_second = 0
timeout = "300s"
[scope]
start = "$START_MS"
end = "$END_MS"
window = "1d"
metrics = ["vscope.vm.*"]
[[table]]
name = "vm_metrics"
metrics = ["vscope.vm.*"]
EOF
  if [ "$3" = 1 ]; then
    cat <<EOF
[[table]]
name = "vm_metrics_1h"
metrics = ["vscope.vm.*"]
downsample = "1h"
aggregates = ["avg", "min", "max", "p95", "count"]
EOF
  fi
  cat <<EOF
[sink]
url = "$2"
partition_by = ["date"]
EOF
}

# timed NAME CMD... : runs CMD under /usr/bin/time -v; sets WALL (s) and RSS (MB)
timed() {
  local name=$1; shift
  local log=$OUT/$name.time
  local t0 t1
  t0=$(date +%s.%N)
  /usr/bin/time -v "$@" >"$OUT/$name.stdout" 2>"$log" || { echo "$name failed:"; tail -20 "$log"; exit 1; }
  t1=$(date +%s.%N)
  WALL=$(echo "$t1 - $t0" | bc -l)
  RSS=$(awk -F: '/Maximum resident set size/ {printf "%.1f", $2/1024}' "$log")
}

mkdir -p "$OUT"
declare -A BEST_WALL BEST_RSS
record() { # name
  if [ -z "${BEST_WALL[$1]:-}" ] || (( $(echo "$WALL < ${BEST_WALL[$1]}" | bc -l) )); then
    BEST_WALL[$1]=$WALL
  fi
  if [ -z "${BEST_RSS[$1]:-}" ] || (( $(echo "$RSS > ${BEST_RSS[$1]}" | bc -l) )); then
    BEST_RSS[$1]=$RSS
  fi
  printf '   %-22s %8.2f s  %8.1f MB  (load %s)\n' "$1" "$WALL" "$RSS" "$(cut -d' ' -f1 /proc/loadavg)"
}

run_etl() { # name rollup
  local sink=$OUT/$1
  pipeline "$1" "$sink" "$2" >"$OUT/$1.toml"
  for _ in $(seq "$RUNS"); do
    rm -rf "$sink"
    timed "$1" "$BIN" run "$OUT/$1.toml"
    record "$1"
  done
}

echo "== vscope-etl run, raw table ($RUNS runs)"
run_etl rust_raw 0
echo "== vscope-etl run, raw + 1h rollup table ($RUNS runs)"
run_etl rust_rollup 1

MANIFEST=$(ls "$OUT"/rust_raw/_runs/*.json | head -n1)
read -r POINTS SERIES REQUESTS < <("$PY" -c "
import json; m = json.load(open('$MANIFEST'))
print(m['points']['points'], m['series'], m['requests'])")
RAW_BYTES=$(find "$OUT/rust_raw/vm_metrics" -name '*.parquet' -printf '%s\n' | awk '{s+=$1} END {print s}')

if [ "$PEERS" = 1 ]; then
  echo "== peers ($PEER_RUNS run(s) each)"
  for _ in $(seq "$PEER_RUNS"); do
    timed duckdb "$PY" benches/peers/duckdb_peer.py "$DATA" "$OUT/duckdb.parquet" 2
    record duckdb
    timed orjson_pyarrow "$PY" benches/peers/pyarrow_peer.py "$DATA" "$OUT/orjson_pyarrow.parquet" orjson
    record orjson_pyarrow
    timed json_pyarrow "$PY" benches/peers/pyarrow_peer.py "$DATA" "$OUT/json_pyarrow.parquet" json
    record json_pyarrow
  done
fi

echo "== checking that every output holds the same (series, ts, value) set"
"$PY" benches/check_outputs.py "$OUT" "$PEERS"

kill -INT $REPLAY_PID 2>/dev/null || true
wait $REPLAY_PID 2>/dev/null || true
trap - EXIT

# --- the table and the last line
W_RAW=${BEST_WALL[rust_raw]}
W_ROLL=${BEST_WALL[rust_rollup]}
mpts() { echo "$POINTS / $1 / 1000000" | bc -l; }
echo
echo "dataset: $SERIES series, $POINTS points, $JSON_BYTES bytes of JSON ($(echo "$JSON_BYTES / $POINTS" | bc -l | xargs printf '%.2f') B/pt), $REQUESTS requests (raw run)"
printf '%-26s %9s %10s %12s\n' "pipeline" "wall s" "Mpts/s" "peak RSS MB"
for name in rust_raw rust_rollup duckdb orjson_pyarrow json_pyarrow; do
  [ -n "${BEST_WALL[$name]:-}" ] || continue
  printf '%-26s %9.2f %10.2f %12.1f\n' "$name" "${BEST_WALL[$name]}" "$(mpts "${BEST_WALL[$name]}")" "${BEST_RSS[$name]}"
done
BPP=$(echo "$RAW_BYTES / $POINTS" | bc -l)
OVERHEAD=$(echo "($W_ROLL / $W_RAW - 1) * 100" | bc -l)
printf 'raw output %s bytes = %.3f B/pt; rollup overhead %+.1f %% (raw + 1h table vs raw only)\n' "$RAW_BYTES" "$BPP" "$OVERHEAD"
PPS=$(echo "$POINTS / $W_RAW" | bc -l)
VS_DUCK=n/a
VS_ORJSON=n/a
if [ -n "${BEST_WALL[duckdb]:-}" ]; then
  VS_DUCK=$(printf '%.2f' "$(echo "${BEST_WALL[duckdb]} / $W_RAW" | bc -l)")
  VS_ORJSON=$(printf '%.2f' "$(echo "${BEST_WALL[orjson_pyarrow]} / $W_RAW" | bc -l)")
fi
printf 'e2e points_per_s=%.0f vs_duckdb=%sx vs_orjson_pyarrow=%sx peak_rss_mb=%s bytes_per_point=%.3f requests=%s series=%s rollup_overhead_pct=%.1f\n' \
  "$PPS" "$VS_DUCK" "$VS_ORJSON" "${BEST_RSS[rust_raw]}" "$BPP" "$REQUESTS" "$SERIES" "$OVERHEAD"
