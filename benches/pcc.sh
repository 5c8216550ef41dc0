#!/usr/bin/env bash
# PCC-scale benchmark (issue 18): memory bounded by what is in flight, whatever the PCC's size.
# One day, window 1d, the demo pipeline's tables (raw VM/host/filer tables and a 1h VM rollup),
# against `vscope-etl sim` in its own process (its memory is not the run's) for a PCC of
# 1,000 VMs and one of 10,000 VMs (2 datacenters, 20 hosts, 2 filers each, a point every 20 s).
#
#   benches/pcc.sh                 # both sizes
#   benches/pcc.sh --vms 1000      # one size (repeatable)
#   options: --no-build, --memory-limit SIZE, --max-answer-size SIZE, --concurrency N
#   (source.memory_limit, source.max_answer_size and source.concurrency; default the pipeline
#   defaults), --reader-layout (sink partition_by = ["metric", "date"], compression = "lz4":
#   the reader layout of large PCCs, one file per metric-day)
#
# Prints one last line per size:
#   pcc vms=… series=… points=… points_per_s=… peak_rss_mb=… memory_waits=… files=…
# peak RSS is /usr/bin/time's maximum RSS of the run (the simulator is another process).
# BIN=path/to/vscope-etl runs another build (e.g. an older release, to compare; its manifest may
# have no memory_waits: printed n/a); SIM_BIN serves the data (default BIN), PCC_WORK is where
# the output goes (default .bench/pcc), so that two builds can be compared on the same data.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
SIZES=()
BUILD=1
LIMIT=""
ANSWER=""
CONC=""
SINK_EXTRA=""
while [ $# -gt 0 ]; do
  case "$1" in
    --vms) SIZES+=("$2"); shift ;;
    --no-build) BUILD=0 ;;
    --memory-limit) LIMIT=$2; shift ;;
    --max-answer-size) ANSWER=$2; shift ;;
    --concurrency) CONC=$2; shift ;;
    --reader-layout) SINK_EXTRA=$'partition_by = ["metric", "date"]\ncompression = "lz4"' ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
[ ${#SIZES[@]} -gt 0 ] || SIZES=(1000 10000)

TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
BIN=${BIN:-$TARGET/release/vscope-etl}
if [ "$BUILD" = 1 ] && [ "$BIN" = "$TARGET/release/vscope-etl" ]; then
  echo "== cargo build --release --no-default-features"
  cargo build --release --no-default-features --quiet
fi
SIM_BIN=${SIM_BIN:-$BIN}
WORK=${PCC_WORK:-$ROOT/.bench/pcc}
mkdir -p "$WORK"
echo "== machine: $(nproc) CPU, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), load $(cut -d' ' -f1-3 /proc/loadavg)"

LINES=()
for vms in "${SIZES[@]}"; do
  per_dc=$((vms / 2))
  rm -rf "$WORK/out-$vms" "$WORK/sim-$vms.url"
  "$SIM_BIN" sim --listen 127.0.0.1:0 --datacenters 2 --hosts 20 --vms "$per_dc" --filers 2 \
    --step 20 --token bench >"$WORK/sim-$vms.url" 2>/dev/null &
  SIM=$!
  trap 'kill $SIM 2>/dev/null || true' EXIT
  for _ in $(seq 100); do [ -s "$WORK/sim-$vms.url" ] && break; sleep 0.1; done
  URL=$(head -1 "$WORK/sim-$vms.url")
  cat >"$WORK/pcc-$vms.toml" <<TOML
name = "pcc"
[source]
url = "$URL"
token = "bench"
dialect = "ovh"
requests_per_second = 0
$([ -n "$LIMIT" ] && echo "memory_limit = \"$LIMIT\"")
$([ -n "$ANSWER" ] && echo "max_answer_size = \"$ANSWER\"")
$([ -n "$CONC" ] && echo "concurrency = $CONC")
[scope]
start = "2026-11-01T00:00:00Z"
end = "2026-11-02T00:00:00Z"
window = "1d"
[[table]]
name = "vm_metrics"
metrics = ["vscope.vm.*"]
[[table]]
name = "host_metrics"
metrics = ["vscope.host.*"]
[[table]]
name = "filer_metrics"
metrics = ["vscope.filer.*"]
[[table]]
name = "vm_metrics_1h"
metrics = ["vscope.vm.*"]
downsample = "1h"
aggregates = ["avg", "min", "max", "p95", "count"]
[sink]
url = "$WORK/out-$vms"
$SINK_EXTRA
TOML
  echo "== $vms VMs"
  /usr/bin/time -f '%M' -o "$WORK/rss-$vms" "$BIN" run "$WORK/pcc-$vms.toml" --json \
    --now 2026-11-03T00:00:00Z >"$WORK/summary-$vms.json"
  kill $SIM 2>/dev/null || true
  wait $SIM 2>/dev/null || true
  RSS_MB=$(echo "$(cat "$WORK/rss-$vms") / 1024" | bc -l)
  MANIFEST=$WORK/out-$vms/$(python3 -c "import json;print(json.load(open('$WORK/summary-$vms.json'))['manifest'])")
  LINE=$(python3 - "$WORK/summary-$vms.json" "$MANIFEST" "$vms" "$RSS_MB" <<'PY'
import json, sys
s = json.load(open(sys.argv[1])); m = json.load(open(sys.argv[2]))
print(f"pcc vms={sys.argv[3]} series={s['series']} points={s['points']} "
      f"points_per_s={s['points'] / s['seconds']:.0f} peak_rss_mb={float(sys.argv[4]):.1f} "
      f"memory_waits={m.get('memory_waits', 'n/a')} files={s['files']} seconds={s['seconds']:.1f}")
PY
)
  echo "$LINE"
  LINES+=("$LINE")
done
echo
printf '%s\n' "${LINES[@]}"
