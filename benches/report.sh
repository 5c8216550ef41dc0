#!/usr/bin/env bash
# Capacity-report benchmark (issue 22): `vscope-etl report` over a year of 1,000 VMs, once from
# 1h rollup tables and once from raw tables, timed, with the peak RSS of each run.
#
#   benches/report.sh                         # 1,000 VMs, 365 days, raw every 300 s
#   benches/report.sh --vms 1000 --days 365 --raw-days 30 --raw-step 300
#   options: --no-build (use BIN or the release binary as it is)
#
# The datasets are written straight as the pipeline's Parquet files by the Rust generator
# benches/report_data.rs (`cargo bench --bench report_data -- OUT --vms N --days D [--rollup]
# [--raw-step S]`: the pipeline's schemas, PartWriter and writer settings, one file per table and
# day, days written on every core) and cached under .bench/report/ (one directory per size, the
# `-rs` suffix keeps them apart from the older DuckDB-written ones; delete it to regenerate).
# Measured on the 2-core machine: the raw year (1.16 G VM rows at 300 s, 3.4 GB) is written in
# 85 s, the rollup year (96 M VM rows) in about 40 s; --raw-days makes a shorter raw period.
# The report itself (docs/report.md "Scale"): 9.7-10.0 s from the rollups, 47-50 s from the raw
# year, 530 MB peak.
# Writing a missing dataset runs cargo with the default features, so with --no-build it also
# rebuilds the release binary if the sources changed since it was built.
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
    cargo bench --quiet --bench report_data -- "$dir" --vms "$VMS" --days "$days" "$@"
    touch "$dir/.done"
    echo "   written in $((SECONDS - t0)) s, $(du -sh "$dir" | cut -f1)"
  else
    echo "== cached $kind dataset: $dir ($(du -sh "$dir" | cut -f1))"
  fi
}

ROLLUP=$WORK/rollup-${VMS}vms-${DAYS}d-rs
RAW=$WORK/raw-${VMS}vms-${RAW_DAYS}d-${RAW_STEP}s-rs
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
