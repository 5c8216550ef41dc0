#!/usr/bin/env bash
# Sharded backfill benchmark (issue 19): the 10x dataset (benches/gen_answers.py --days 10:
# 2000 series, 10 one-day windows, 5,200 recorded answers, 86.4 M points) exported by 1, 2 and
# 4 shard processes started together (`--shard I/N`, as the pods of an Indexed Job), over the
# replay server with a request budget per token (`sim --replay --token-rate R`: 429 past R
# queries a second). The shards share the token's budget (`source.requests_per_second = R`,
# `source.shard_rate = "share"`: each takes R/N), so the wall time is bounded by
# 5,200 / R seconds whatever N: the budget, not our code, is the limit. The same three runs
# against an unlimited server show what N buys when the budget is not the bound (little on 2
# cores: one process already keeps both busy). One more run gives each of 4 shards the whole
# budget (`shard_rate = "each"`) to show what overrunning it costs (429s waited out).
#
#   benches/shards.sh                # R = 100 queries/s
#   options: --rate R, --no-build, --shards "1 2 4", --1x (the one-day set: a quick check)
#
# Every output is checked: the same rows (DuckDB count and distinct (vm, metric, ts)) for
# every N. Ends with one line:
#   shards rate=… budget_s=… wall_s_n1=… wall_s_n2=… wall_s_n4=… unlimited_wall_s_n1=… … each4_wall_s=… each4_throttled=…
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

RATE=100
BUILD=1
SHARDS="1 2 4"
DAYS=10
while [ $# -gt 0 ]; do
  case "$1" in
    --rate) RATE=$2; shift ;;
    --no-build) BUILD=0 ;;
    --shards) SHARDS=$2; shift ;;
    --1x) DAYS=1 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
  shift
done

WORK=$ROOT/.bench
DATA=$WORK/data-${DAYS}d
OUT=$WORK/out-shards
VENV=$WORK/venv
PY=$VENV/bin/python
mkdir -p "$WORK" "$OUT"
echo "== machine: $(nproc) CPU, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), load $(cut -d' ' -f1-3 /proc/loadavg)"

if [ ! -x "$PY" ]; then
  python3 -m venv "$VENV"
fi
if ! "$PY" -c 'import duckdb' 2>/dev/null; then
  "$PY" -m pip install --quiet --disable-pip-version-check duckdb==2.0.0
fi
if [ ! -f "$DATA/meta.json" ]; then
  echo "== generating $DATA (2000 series x $DAYS day(s) at 20 s)"
  rm -rf "$DATA"
  python3 benches/gen_answers.py "$DATA" --days "$DAYS" >/dev/null
fi
START_MS=$("$PY" -c "import json;print(json.load(open('$DATA/meta.json'))['start_ms'])")
END_MS=$("$PY" -c "import json;print(json.load(open('$DATA/meta.json'))['end_ms'])")
ANSWERS=$("$PY" -c "import json;print(json.load(open('$DATA/meta.json'))['answers'])")

TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
BIN=${BIN:-$TARGET/release/vscope-etl}
if [ "$BUILD" = 1 ]; then
  echo "== cargo build --release --no-default-features"
  cargo build --release --no-default-features --quiet
  for _ in $(seq 60); do
    awk '{ exit !($1 < 1.0) }' /proc/loadavg && break
    sleep 1
  done
fi
[ -x "$BIN" ] || { echo "no binary at $BIN (build it or drop --no-build)" >&2; exit 1; }

source benches/replay-lib.sh

# backfill LABEL URL N RATE SHARD_RATE: N shard processes at once; sets WALL (s), THROTTLED.
backfill() {
  local label=$1 url=$2 n=$3 rate=$4 shard_rate=$5
  local sink=$OUT/$label
  rm -rf "$sink"
  replay_pipeline shards "$url" "$sink" "concurrency = 8" "requests_per_second = $rate" \
    "shard_rate = \"$shard_rate\"" >"$OUT/$label.toml"
  local t0 t1 pids=()
  t0=$(date +%s.%N)
  for i in $(seq 0 $((n - 1))); do
    "$BIN" run "$OUT/$label.toml" --json --shard "$i/$n" >"$OUT/$label.$i.json" 2>"$OUT/$label.$i.log" &
    pids+=($!)
  done
  for i in "${!pids[@]}"; do
    wait "${pids[$i]}" || { echo "$label shard $i/$n failed:"; tail -5 "$OUT/$label.$i.log"; exit 1; }
  done
  t1=$(date +%s.%N)
  WALL=$(echo "$t1 - $t0" | bc -l)
  THROTTLED=$(cat "$OUT/$label".*.json | "$PY" -c 'import sys,json; print(sum(json.loads(l)["throttled"] for l in sys.stdin if l.strip()))')
  ROWS=$("$PY" - "$sink" <<'EOF'
import duckdb, sys
con = duckdb.connect()
n, d = con.execute(f"""select count(*), count(distinct (vm, metric, ts))
  from read_parquet('{sys.argv[1]}/vm_metrics/**/*.parquet')""").fetchone()
print(f"{n}/{d}")
EOF
)
  printf '%-22s %2d shard(s)  %7.1f s  rows/distinct %s  429s %s\n' "$label" "$n" "$WALL" "$ROWS" "$THROTTLED"
  if [ -z "${EXPECTED_ROWS:-}" ]; then EXPECTED_ROWS=$ROWS; fi
  [ "$ROWS" = "$EXPECTED_ROWS" ] || { echo "$label: rows $ROWS, expected $EXPECTED_ROWS"; exit 1; }
  rm -rf "$sink"
}

BUDGET_S=$(echo "$ANSWERS / $RATE" | bc -l)
echo "== $ANSWERS queries; budget $RATE queries/s per token: at least $(printf %.1f "$BUDGET_S") s"
declare -A LIMITED UNLIMITED
start_replay limited --no-gzip --token-rate "$RATE"
LIMITED_URL=$REPLAY_URL
for n in $SHARDS; do
  backfill "limited-n$n" "$LIMITED_URL" "$n" "$RATE" share
  LIMITED[$n]=$WALL
done
backfill "limited-each-n4" "$LIMITED_URL" 4 "$RATE" each
EACH_WALL=$WALL
EACH_THROTTLED=$THROTTLED
start_replay unlimited --no-gzip
UNLIMITED_URL=$REPLAY_URL
for n in $SHARDS; do
  backfill "unlimited-n$n" "$UNLIMITED_URL" "$n" 0 share
  UNLIMITED[$n]=$WALL
done

line="shards rate=$RATE budget_s=$(printf %.1f "$BUDGET_S")"
for n in $SHARDS; do line+=" wall_s_n$n=$(printf %.1f "${LIMITED[$n]}")"; done
for n in $SHARDS; do line+=" unlimited_wall_s_n$n=$(printf %.1f "${UNLIMITED[$n]}")"; done
line+=" each4_wall_s=$(printf %.1f "$EACH_WALL") each4_throttled=$EACH_THROTTLED"
echo "$line"
