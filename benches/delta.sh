#!/usr/bin/env bash
# Delta Lake costs (issue 20), on this machine:
#   1. commit cost per window and table open time after 1,000 commits, with and without a
#      checkpoint: our writer and reader (`cargo bench --bench delta_log`), then delta-rs (the
#      `deltalake` package) opening the same table both ways;
#   2. compaction throughput: a day of 1 h windows of a simulated PCC (2 datacenters x
#      VMS_PER_DC VMs, 20 s steps) exported to Delta by the release binary, then
#      `vscope-etl compact`: rows merged per second, files before and after.
# Ends with one line:
#   delta commit_ms_mean=… commit_ms_p95=… open_ms_checkpoint=… open_ms_replay=…
#         delta_rs_open_ms_checkpoint=… delta_rs_open_ms_replay=… compact_rows_per_s=…
#
#   benches/delta.sh [--no-build] [--vms N]   (VMs per datacenter, default 200)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BUILD=1
VMS=200
while [ $# -gt 0 ]; do
  case "$1" in
    --no-build) BUILD=0 ;;
    --vms) VMS=$2; shift ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
BIN=${BIN:-$TARGET/release/vscope-etl}
scripts/setup-python.sh >/dev/null
PY=$ROOT/.venv/bin/python
WORK=$ROOT/.bench/delta
rm -rf "$WORK"; mkdir -p "$WORK"
echo "== machine: $(nproc) CPU, load $(cut -d' ' -f1-3 /proc/loadavg)"

echo "== 1. the log: cargo bench --bench delta_log"
cargo bench --quiet --no-default-features --bench delta_log 2>/dev/null > "$WORK/log.txt"
cat "$WORK/log.txt"
LINE=$(grep "^delta commits=" "$WORK/log.txt")
TABLE=${LINE##*table=}
read -r RS_CHECKPOINT RS_REPLAY < <("$PY" - "$TABLE" <<'PYEOF'
import os, shutil, sys, time, deltalake
table = sys.argv[1]
def best(n=5):
    t = []
    for _ in range(n):
        s = time.perf_counter(); dt = deltalake.DeltaTable(table); dt.file_uris(); t.append(time.perf_counter() - s)
    return min(t) * 1000
with_cp = best()
log = os.path.join(table, "_delta_log"); aside = table + "-checkpoints"
os.makedirs(aside, exist_ok=True)
for n in os.listdir(log):
    if "checkpoint" in n: shutil.move(os.path.join(log, n), os.path.join(aside, n))
replay = best()
for n in os.listdir(aside): shutil.move(os.path.join(aside, n), os.path.join(log, n))
print(f"{with_cp:.1f} {replay:.1f}")
PYEOF
)
echo "delta-rs open: ${RS_CHECKPOINT} ms with the checkpoint, ${RS_REPLAY} ms replaying the commits"

echo "== 2. compaction"
if [ "$BUILD" = 1 ]; then cargo build --release --no-default-features --quiet; fi
cat >"$WORK/p.toml" <<TOML
name = "compact-bench"
[source]
url = "sim"
requests_per_second = 0
[source.sim]
datacenters = 2
hosts_per_datacenter = 4
vms_per_datacenter = $VMS
filers_per_datacenter = 2
step = "20s"
[scope]
start = "2026-11-01T00:00:00Z"
end = "2026-11-02T00:00:00Z"
window = "1h"
[[table]]
name = "vm_metrics"
metrics = ["vscope.vm.*"]
[sink]
url = "$WORK/out"
table_format = "delta"
TOML
"$BIN" run "$WORK/p.toml" --now 2026-11-03T00:00:00Z --json > "$WORK/run.json" 2>"$WORK/run.log"
/usr/bin/time -v "$BIN" compact "$WORK/p.toml" --until 2026-11-02 --json > "$WORK/compact.json" 2>"$WORK/compact.time"
RSS=$(awk -F: '/Maximum resident set size/ {printf "%.0f", $2/1024}' "$WORK/compact.time")
read -r ROWS SECS BEFORE AFTER < <("$PY" -c "import json; d=json.load(open('$WORK/compact.json')); print(d['rows'], d['seconds'], d['files_before'], d['files_after'])")
RATE=$(echo "$ROWS / $SECS" | bc -l)
printf 'compaction: %s rows (points) from %s files into %s in %.2f s: %.0f rows/s, peak RSS %s MB\n' "$ROWS" "$BEFORE" "$AFTER" "$SECS" "$RATE" "$RSS"
"$PY" tests/py/delta_facts.py delta "$WORK/out" vm_metrics

echo "delta ${LINE#delta } delta_rs_open_ms_checkpoint=$RS_CHECKPOINT delta_rs_open_ms_replay=$RS_REPLAY compact_rows_per_s=$(printf %.0f "$RATE") compact_peak_rss_mb=$RSS" | sed 's/ table=[^ ]*//'
