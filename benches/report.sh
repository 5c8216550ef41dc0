#!/usr/bin/env bash
# Capacity-report benchmark (issue 22): `vscope-etl report` over a year of 1,000 VMs, once from
# 1h rollup tables and once from raw tables, timed, with the peak RSS of each run.
#
#   benches/report.sh                         # 1,000 VMs, 365 days, raw every 300 s
#   benches/report.sh --vms 1000 --days 365 --raw-days 30 --raw-step 300
#   options: --no-build (use BIN or the release binary as it is)
#
# The datasets are written straight as the pipeline's Parquet layout by benches/report_data.py
# (DuckDB, the test venv's python: VSCOPE_TEST_PYTHON or .venv/bin/python) and cached under
# .bench/report/ (one directory per size; delete it to regenerate). Sizes on this layout: the
# rollup year is 96 M VM rows (1.2 GB, 22 min to write on the shared 2-core machine); the raw
# year at 300 s is 1.16 G VM rows (~2.5 GB, ~1.5 h at the 16 s a day measured there, 212 MB and
# 8 min for 30 days): --raw-days makes a shorter raw period.
#
# Ends with one line:
#   report rollup_s=… raw_s=… peak_rss_mb=… (vms=… days=… raw_days=… raw_step=…)
# peak_rss_mb is the larger of the two runs' maximum RSS (/usr/bin/time).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
VMS=1000
DAYS=365
RAW_DAYS=""
RAW_STEP=300
BUILD=1
while [ $# -gt 0 ]; do
  case "$1" in
    --vms) VMS=$2; shift ;;
    --days) DAYS=$2; shift ;;
    --raw-days) RAW_DAYS=$2; shift ;;
    --raw-step) RAW_STEP=$2; shift ;;
    --no-build) BUILD=0 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
RAW_DAYS=${RAW_DAYS:-$DAYS}
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
BIN=${BIN:-$TARGET/release/vscope-etl}
if [ "$BUILD" = 1 ] && [ "$BIN" = "$TARGET/release/vscope-etl" ]; then
  echo "== cargo build --release (the report feature)"
  cargo build --release --quiet --bin vscope-etl
fi
PY=${VSCOPE_TEST_PYTHON:-$ROOT/.venv/bin/python}
WORK=$ROOT/.bench/report
mkdir -p "$WORK"
echo "== machine: $(nproc) CPU, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), load $(cut -d' ' -f1-3 /proc/loadavg)"

dataset() { # kind days dir [args]
  local kind=$1 days=$2 dir=$3
  shift 3
  if [ ! -f "$dir/.done" ]; then
    echo "== writing the $kind dataset: $VMS VMs, $days days -> $dir"
    rm -rf "$dir"
    local t0=$SECONDS
    "$PY" benches/report_data.py "$dir" --vms "$VMS" --days "$days" "$@"
    touch "$dir/.done"
    echo "   written in $((SECONDS - t0)) s, $(du -sh "$dir" | cut -f1)"
  else
    echo "== cached $kind dataset: $dir ($(du -sh "$dir" | cut -f1))"
  fi
}

ROLLUP=$WORK/rollup-${VMS}vms-${DAYS}d
RAW=$WORK/raw-${VMS}vms-${RAW_DAYS}d-${RAW_STEP}s
dataset rollup "$DAYS" "$ROLLUP" --rollup
dataset raw "$RAW_DAYS" "$RAW" --raw-step "$RAW_STEP"

run() { # dataset out -> "seconds kb"
  local data=$1 out=$2
  rm -rf "$out"
  /usr/bin/time -f "%e %M" -o "$out.time" "$BIN" report --data "$data" --out "$out" --format all \
    >"$out.log" 2>&1 || { cat "$out.log" >&2; exit 1; }
  cat "$out.time"
}
echo "== report from the rollup tables"
read -r ROLLUP_S ROLLUP_KB < <(run "$ROLLUP" "$WORK/report-rollup")
echo "   ${ROLLUP_S} s, peak RSS $((ROLLUP_KB / 1024)) MB"
echo "== report from the raw tables"
read -r RAW_S RAW_KB < <(run "$RAW" "$WORK/report-raw")
echo "   ${RAW_S} s, peak RSS $((RAW_KB / 1024)) MB"
PEAK=$(( (ROLLUP_KB > RAW_KB ? ROLLUP_KB : RAW_KB) / 1024 ))
echo "report rollup_s=$ROLLUP_S raw_s=$RAW_S peak_rss_mb=$PEAK (vms=$VMS days=$DAYS raw_days=$RAW_DAYS raw_step=$RAW_STEP)"
