#!/usr/bin/env bash
# End-to-end benchmark (issue #7): recorded OpenTSDB answers served over loopback → raw Parquet,
# vscope-etl against DuckDB and Python json/orjson + pyarrow on the very same JSON.
#
# The peers run twice: on ONE answer holding every series of the day (the issue's peer
# workload, as in shared/reference/performance.md; benches/one_answer.py joins the recorded
# answers into it, once, cached as DATA/one/) and on the 520 per-(metric, datacenter, window)
# answer files vscope-etl fetches. vs_duckdb / vs_orjson_pyarrow compare with the one-answer
# peers; vs_duckdb_files / vs_orjson_pyarrow_files with the per-file peers. The one-answer
# peers need a one-day dataset, so --10x --peers runs only the per-file ones.
#
#   benches/e2e.sh            # 2000 series x 1 day at 20 s = 8.64 M points
#   benches/e2e.sh --10x      # 10 days (86.4 M points): memory must stay flat; peers skipped
#                             #   unless --peers is given too
#   benches/e2e.sh --pcc      # the PCC-scale case instead (benches/pcc.sh: one day, window 1d,
#                             #   1,000 and 10,000 VMs; a `pcc vms=… peak_rss_mb=…` line each)
#   benches/e2e.sh --warp     # only the protocol comparison (benches/protocols.sh: the same day
#                             #   through opentsdb and warp10, and Warp's fetch against exec; a
#                             #   `warp points_per_s=… bytes_per_point=…` line), which a full run
#                             #   also ends with unless --no-warp
#   options: --no-peers, --peers, --no-build, --runs N (vscope-etl runs, best kept; default 3),
#            --peer-runs N (default 1), --gzip (the replay server answers gzip, as nginx does in
#            front of the real endpoint; default plain: over loopback the bytes are free and
#            the peers read plain JSON, so the default measures the ETL, not zlib)
#
# Everything it makes lives in .bench/ (ignored): the generated answers (kept between runs,
# regenerated only when missing), a Python venv with duckdb, pyarrow, orjson and numpy, and
# the outputs. Steps: generate (benches/gen_answers.py) → `vscope-etl sim --replay` on
# 127.0.0.1 → one untimed warm-up run (page cache) → `vscope-etl run` raw only and raw + a 1h
# avg/min/max/p95/count rollup table, alternated →
# the peers → a check that every output holds the same (series, ts, value) set → a table and
# a last line: e2e points_per_s=… vs_duckdb=…x vs_orjson_pyarrow=…x peak_rss_mb=… bytes_per_point=…
# … vs_duckdb_files=…x vs_orjson_pyarrow_files=…x
# Wall times are whole processes (start-up included); peak RSS is /usr/bin/time's maximum RSS.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

DAYS=1
PEERS=auto
BUILD=1
RUNS=3
PEER_RUNS=1
GZIP=0
WARP=1
while [ $# -gt 0 ]; do
  case "$1" in
    --pcc) shift; exec "$(dirname "$0")/pcc.sh" "$@" ;;
    --warp) shift; exec "$(dirname "$0")/protocols.sh" "$@" ;;
    --no-warp) WARP=0 ;;
    --10x) DAYS=10 ;;
    --peers) PEERS=1 ;;
    --no-peers) PEERS=0 ;;
    --no-build) BUILD=0 ;;
    --runs) RUNS=$2; shift ;;
    --peer-runs) PEER_RUNS=$2; shift ;;
    --gzip) GZIP=1 ;;
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
JSON_BYTES=$(find "$DATA/query" -name '*.json' -printf '%s\n' | awk '{s+=$1} END {print s}')
ONE=0
if [ "$PEERS" = 1 ] && [ "$DAYS" = 1 ]; then
  ONE=1
  if ! ls "$DATA"/one/*.json >/dev/null 2>&1; then
    echo "== joining the answers into one answer of the day (benches/one_answer.py)"
    python3 benches/one_answer.py "$DATA" >/dev/null
  fi
  ONE_BYTES=$(du -sb "$DATA"/one/*.json | cut -f1)
fi
START_MS=$("$PY" -c "import json;print(json.load(open('$DATA/meta.json'))['start_ms'])")
END_MS=$("$PY" -c "import json;print(json.load(open('$DATA/meta.json'))['end_ms'])")

# --- the binary
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
BIN=${BIN:-$TARGET/release/vscope-etl}
if [ "$BUILD" = 1 ]; then
  echo "== cargo build --release --no-default-features"
  cargo build --release --no-default-features --quiet
  # The build keeps both cores busy for minutes: wait (at most a minute) until the 1-minute
  # load average falls below 1, so the timed runs do not measure its tail.
  for _ in $(seq 60); do
    awk '{ exit !($1 < 1.0) }' /proc/loadavg && break
    sleep 1
  done
  echo "== load after the build: $(cut -d' ' -f1-3 /proc/loadavg)"
fi
[ -x "$BIN" ] || { echo "no binary at $BIN (build it or drop --no-build)" >&2; exit 1; }

# --- the replay server
mkdir -p "$OUT"
source benches/replay-lib.sh
REPLAY_FLAGS=()
if [ "$GZIP" = 0 ]; then REPLAY_FLAGS+=(--no-gzip); fi
start_replay replay "${REPLAY_FLAGS[@]}"
URL=$REPLAY_URL
REPLAY_PID=${REPLAY_PIDS[-1]}
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

run_etl() { # name
  rm -rf "${OUT:?}/$1"
  timed "$1" "$BIN" run "$OUT/$1.toml"
  record "$1"
}

pipeline rust_raw "$OUT/rust_raw" 0 >"$OUT/rust_raw.toml"
pipeline rust_rollup "$OUT/rust_rollup" 1 >"$OUT/rust_rollup.toml"
# Alternated (raw, raw + rollup, raw, …) so that a change of load during the runs weighs on
# both alike: the rollup overhead is a ratio of the two.
# One untimed run first, and the one-answer file read once: the answers are then in the page
# cache for every timed run, ours and the peers' (reading them from disk is not what is
# measured), and the binary is paged in. Without it the first timed run is the slow one.
echo "== warm-up: one untimed vscope-etl run, the one-answer file read once"
rm -rf "${OUT:?}/rust_raw"
"$BIN" run "$OUT/rust_raw.toml" >"$OUT/warmup.log" 2>&1 || { echo "warm-up run failed:"; cat "$OUT/warmup.log"; exit 1; }
if [ "$ONE" = 1 ]; then cat "$DATA"/one/*.json >/dev/null; fi
echo "== vscope-etl run, raw table and raw + 1h rollup table, alternated ($RUNS runs each)"
for _ in $(seq "$RUNS"); do
  run_etl rust_raw
  run_etl rust_rollup
done

MANIFEST=$(ls "$OUT"/rust_raw/_runs/*.json | head -n1)
read -r POINTS SERIES REQUESTS WIRE_BYTES < <("$PY" -c "
import json; m = json.load(open('$MANIFEST'))
print(m['points']['points'], m['series'], m['requests'], m.get('bytes_on_wire', 0))")
RAW_BYTES=$(find "$OUT/rust_raw/vm_metrics" -name '*.parquet' -printf '%s\n' | awk '{s+=$1} END {print s}')

# peer NAME MODE(one|files): DuckDB or Python json/orjson + pyarrow, timed and recorded.
peer() {
  local name=$1 mode=$2 base=${1%_files}
  case "$base" in
    duckdb) timed "$name" "$PY" benches/peers/duckdb_peer.py "$DATA" "$OUT/$name.parquet" 2 "$mode" ;;
    orjson_pyarrow) timed "$name" "$PY" benches/peers/pyarrow_peer.py "$DATA" "$OUT/$name.parquet" orjson "$mode" ;;
    json_pyarrow) timed "$name" "$PY" benches/peers/pyarrow_peer.py "$DATA" "$OUT/$name.parquet" json "$mode" ;;
  esac
  record "$name"
}
PEER_NAMES=()
if [ "$PEERS" = 1 ]; then
  if [ "$ONE" = 1 ]; then
    echo "== peers on one answer of the day ($PEER_RUNS run(s) each)"
    for _ in $(seq "$PEER_RUNS"); do
      for p in duckdb orjson_pyarrow json_pyarrow; do peer "$p" one; done
    done
    PEER_NAMES+=(duckdb orjson_pyarrow json_pyarrow)
  fi
  echo "== peers on the per-(metric, datacenter, window) answer files ($PEER_RUNS run(s) each)"
  for _ in $(seq "$PEER_RUNS"); do
    for p in duckdb_files orjson_pyarrow_files json_pyarrow_files; do peer "$p" files; done
  done
  PEER_NAMES+=(duckdb_files orjson_pyarrow_files json_pyarrow_files)
fi

echo "== checking that every output holds the same (series, ts, value) set"
"$PY" benches/check_outputs.py "$OUT" "${PEER_NAMES[@]}"

kill -INT $REPLAY_PID 2>/dev/null || true
wait $REPLAY_PID 2>/dev/null || true
trap - EXIT

# --- the table and the last line
W_RAW=${BEST_WALL[rust_raw]}
W_ROLL=${BEST_WALL[rust_rollup]}
mpts() { echo "$POINTS / $1 / 1000000" | bc -l; }
echo
echo "dataset: $SERIES series, $POINTS points, $JSON_BYTES bytes of JSON ($(echo "$JSON_BYTES / $POINTS" | bc -l | xargs printf '%.2f') B/pt), $REQUESTS requests (raw run)"
echo "on the wire ($([ "$GZIP" = 1 ] && echo gzip || echo plain)): $WIRE_BYTES bytes ($(echo "$WIRE_BYTES / $POINTS" | bc -l | xargs printf '%.2f') B/pt)"
if [ "$ONE" = 1 ]; then
  echo "peers: one answer of the day ($ONE_BYTES bytes) and, *_files, the $(find "$DATA/query" -name '*.json' | wc -l) answer files"
fi
printf '%-26s %9s %10s %12s\n' "pipeline" "wall s" "Mpts/s" "peak RSS MB"
for name in rust_raw rust_rollup duckdb orjson_pyarrow json_pyarrow duckdb_files orjson_pyarrow_files json_pyarrow_files; do
  [ -n "${BEST_WALL[$name]:-}" ] || continue
  printf '%-26s %9.2f %10.2f %12.1f\n' "$name" "${BEST_WALL[$name]}" "$(mpts "${BEST_WALL[$name]}")" "${BEST_RSS[$name]}"
done
BPP=$(echo "$RAW_BYTES / $POINTS" | bc -l)
OVERHEAD=$(echo "($W_ROLL / $W_RAW - 1) * 100" | bc -l)
printf 'raw output %s bytes = %.3f B/pt; rollup overhead %+.1f %% (raw + 1h table vs raw only)\n' "$RAW_BYTES" "$BPP" "$OVERHEAD"
PPS=$(echo "$POINTS / $W_RAW" | bc -l)
# ratio NAME: the peer's best wall time over vscope-etl's raw run ("5.12x"), or n/a when it
# did not run.
ratio() {
  if [ -n "${BEST_WALL[$1]:-}" ]; then
    printf '%.2fx' "$(echo "${BEST_WALL[$1]} / $W_RAW" | bc -l)"
  else
    echo n/a
  fi
}
printf 'e2e points_per_s=%.0f vs_duckdb=%s vs_orjson_pyarrow=%s peak_rss_mb=%s bytes_per_point=%.3f requests=%s series=%s rollup_overhead_pct=%.1f vs_duckdb_files=%s vs_orjson_pyarrow_files=%s\n' \
  "$PPS" "$(ratio duckdb)" "$(ratio orjson_pyarrow)" "${BEST_RSS[rust_raw]}" "$BPP" "$REQUESTS" "$SERIES" "$OVERHEAD" \
  "$(ratio duckdb_files)" "$(ratio orjson_pyarrow_files)"

# --- the Warp line: the same synthetic day through both protocols (benches/protocols.sh)
if [ "$WARP" = 1 ]; then
  echo
  echo "== protocols: opentsdb against warp10 (benches/protocols.sh)"
  BIN=$BIN benches/protocols.sh --no-build --runs "$RUNS"
fi
