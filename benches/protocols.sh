#!/usr/bin/env bash
# OpenTSDB against Warp 10 (issue 23): the same synthetic day exported once per
# `source.protocol`, and Warp's two ways of reading it (`/api/v0/fetch` against WarpScript
# `FETCH` on `/api/v0/exec`) on one unit's worth of data.
#
# The day: `vscope-etl sim` serving 2 datacenters x 72 VMs x 14 VM metrics = 2016 series at
# 20 s (8.7 M points, about the 2000 x 8640 of benches/e2e.sh), live (the replay server of
# e2e.sh did not hold Warp's), gzip asked, each API compressed as its real server does
# (crates/sim/src/gzip.rs): OpenTSDB through Erlenmeyer's `ovh` dialect comes plain, as
# Erlenmeyer sends it; Warp 10 at Jetty's level 6. The simulator makes and compresses the
# answers as they are sent, on the same cores as the export: compare the protocols by the
# client's CPU seconds (Warp's include inflating its answers); their speed over a network is
# benches/wire.sh's.
#
#   benches/protocols.sh [--no-build] [--runs N]    (benches/e2e.sh runs it last, unless --no-warp)
#
# Steps: the simulator on 127.0.0.1 → for each of N rounds, `vscope-etl run` through
# opentsdb (Erlenmeyer's `ovh` dialect), then through warp10, best wall time kept → a check that
# both wrote byte-identical files → curl of `/api/v0/fetch` and `/api/v0/exec` for one (metric,
# datacenter, day), plain and gzip → a table and a last line:
#   warp points_per_s=… bytes_per_point=… cpu_s=… opentsdb_points_per_s=… opentsdb_bytes_per_point=…
#   opentsdb_cpu_s=… (cpu_s: CPU seconds of the vscope-etl process alone, best run)
#   fetch_plain_bytes_per_point=… exec_plain_bytes_per_point=… fetch_ttfb_s=… exec_ttfb_s=…
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

BUILD=1
RUNS=3
while [ $# -gt 0 ]; do
  case "$1" in
    --no-build) BUILD=0 ;;
    --runs) RUNS=$2; shift ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
  shift
done

WORK=$ROOT/.bench
OUT=$WORK/out-protocols
mkdir -p "$OUT"
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
BIN=${BIN:-$TARGET/release/vscope-etl}
if [ "$BUILD" = 1 ]; then
  echo "== cargo build --release --no-default-features"
  cargo build --release --no-default-features --quiet
fi
[ -x "$BIN" ] || { echo "no binary at $BIN (build it or drop --no-build)" >&2; exit 1; }

TOKEN=bench-token
START="2026-11-01T00:00:00Z"
END="2026-11-02T00:00:00Z"
START_MS=1793491200000
END_MS=1793577600000

"$BIN" sim --listen 127.0.0.1:0 --token "$TOKEN" --datacenters 2 --vms 72 --hosts 1 \
  --filers 1 --step 20 >"$OUT/sim.url" 2>"$OUT/sim.log" &
SIM_PID=$!
trap 'kill -INT $SIM_PID 2>/dev/null || true' EXIT
for _ in $(seq 600); do [ -s "$OUT/sim.url" ] && break; sleep 0.05; done
URL=$(head -n1 "$OUT/sim.url")
[ -n "$URL" ] || { echo "the simulator did not start:" >&2; cat "$OUT/sim.log" >&2; exit 1; }
echo "== simulator $URL (pid $SIM_PID)"

pipeline() { # protocol url sink
  cat <<EOF
name = "protocols"
[source]
url = "$2"
protocol = "$1"
dialect = "ovh"
token = "$TOKEN"
concurrency = 8
requests_per_second = 0
timeout = "300s"
[scope]
start = "$START"
end = "$END"
window = "1d"
metrics = ["vscope.vm.*"]
[[table]]
name = "vm_metrics"
metrics = ["vscope.vm.*"]
[sink]
url = "$3"
partition_by = ["date"]
EOF
}
pipeline opentsdb "$URL" "$OUT/opentsdb" >"$OUT/opentsdb.toml"
pipeline warp10 "$URL/warp10" "$OUT/warp10" >"$OUT/warp10.toml"

declare -A BEST CPU
for round in $(seq "$RUNS"); do
  for p in opentsdb warp10; do
    rm -rf "${OUT:?}/$p"
    t0=$(date +%s.%N)
    /usr/bin/time -f '%U %S' -o "$OUT/$p.cpu" "$BIN" run "$OUT/$p.toml" >"$OUT/$p.stdout" 2>"$OUT/$p.log" \
      || { echo "$p failed:"; tail -20 "$OUT/$p.log"; exit 1; }
    t1=$(date +%s.%N)
    wall=$(echo "$t1 - $t0" | bc -l)
    # CPU seconds of the export process alone (user + system), the simulator's not counted.
    cpu=$(awk '{print $1 + $2}' "$OUT/$p.cpu")
    printf '   round %s %-9s %6.2f s wall, %6.2f s CPU of vscope-etl\n' "$round" "$p" "$wall" "$cpu"
    if [ -z "${BEST[$p]:-}" ] || (( $(echo "$wall < ${BEST[$p]}" | bc -l) )); then BEST[$p]=$wall; fi
    if [ -z "${CPU[$p]:-}" ] || (( $(echo "$cpu < ${CPU[$p]}" | bc -l) )); then CPU[$p]=$cpu; fi
  done
done

echo "== checking that both protocols wrote the same files"
(cd "$OUT/opentsdb" && find vm_metrics -name '*.parquet' | sort) >"$OUT/files.opentsdb"
(cd "$OUT/warp10" && find vm_metrics -name '*.parquet' | sort) >"$OUT/files.warp10"
cmp -s "$OUT/files.opentsdb" "$OUT/files.warp10" || { echo "different file lists" >&2; exit 1; }
[ -s "$OUT/files.opentsdb" ] || { echo "no file written" >&2; exit 1; }
while read -r f; do
  cmp -s "$OUT/opentsdb/$f" "$OUT/warp10/$f" || { echo "$f differs" >&2; exit 1; }
done <"$OUT/files.opentsdb"

manifest() { # protocol → "points wire received requests"
  python3 -c "
import json, glob
m = json.load(open(sorted(glob.glob('$OUT/$1/_runs/*.json'))[0]))
print(m['points']['points'], m.get('bytes_on_wire', 0), m.get('bytes_received', 0), m['requests'])"
}
read -r POINTS O_WIRE O_RECV O_REQ < <(manifest opentsdb)
read -r W_POINTS W_WIRE W_RECV W_REQ < <(manifest warp10)
[ "$POINTS" = "$W_POINTS" ] || { echo "point counts differ: $POINTS vs $W_POINTS" >&2; exit 1; }

# One unit's worth through each Warp 10 endpoint: the points of one metric in one datacenter
# for the day. curl reports the body size and the time to the first byte and to the last.
METRIC=vscope.vm.cpu.usage.perc
DC=pcc-37-187-228-180_datacenter869
NOW_US=$((END_MS * 1000 - 1))
SPAN_US=$(((END_MS - START_MS) * 1000))
SCRIPT="'$TOKEN' AUTHENTICATE 20000000 LIMIT
[ '$TOKEN' '$METRIC' { 'datacenter' '$DC' } $NOW_US $SPAN_US ] FETCH"
fetch() { # extra curl flags
  curl -s -o /dev/null -w '%{size_download} %{time_starttransfer} %{time_total}\n' "$@" \
    -H "X-Warp10-Token: $TOKEN" -G "$URL/warp10/api/v0/fetch" \
    --data-urlencode "selector=$METRIC{datacenter=$DC}" --data-urlencode "now=$NOW_US" \
    --data-urlencode "timespan=$SPAN_US" --data-urlencode format=text
}
execs() { # extra curl flags
  curl -s -o /dev/null -w '%{size_download} %{time_starttransfer} %{time_total}\n' "$@" \
    --data-binary "$SCRIPT" "$URL/warp10/api/v0/exec"
}
UNIT_POINTS=$(curl -s -H "X-Warp10-Token: $TOKEN" -G "$URL/warp10/api/v0/fetch" \
  --data-urlencode "selector=$METRIC{datacenter=$DC}" --data-urlencode "now=$NOW_US" \
  --data-urlencode "timespan=$SPAN_US" | wc -l)
read -r F_PLAIN F_TTFB F_TOTAL < <(fetch)
read -r E_PLAIN E_TTFB E_TOTAL < <(execs)
read -r F_GZ _ _ < <(fetch --compressed)
read -r E_GZ _ _ < <(execs --compressed)

kill -INT $SIM_PID 2>/dev/null || true
wait $SIM_PID 2>/dev/null || true
trap - EXIT

bpp() { echo "$1 / $2" | bc -l | xargs printf '%.2f'; }
echo
echo "day: $POINTS points of 2016 series; both protocols wrote byte-identical files"
printf '%-10s %8s %10s %8s %11s %9s %12s %12s\n' protocol "wall s" "Mpts/s" "CPU s" "Mpts/CPU s" requests "wire B/pt" "decoded B/pt"
for p in opentsdb warp10; do
  if [ "$p" = opentsdb ]; then req=$O_REQ; wire=$O_WIRE; recv=$O_RECV; else req=$W_REQ; wire=$W_WIRE; recv=$W_RECV; fi
  printf '%-10s %8.2f %10.2f %8.2f %11.2f %9s %12s %12s\n' "$p" "${BEST[$p]}" \
    "$(echo "$POINTS / ${BEST[$p]} / 1000000" | bc -l)" "${CPU[$p]}" \
    "$(echo "$POINTS / ${CPU[$p]} / 1000000" | bc -l)" "$req" "$(bpp "$wire" "$POINTS")" "$(bpp "$recv" "$POINTS")"
done
echo "one unit ($METRIC, $DC, the day: $UNIT_POINTS points) through Warp 10:"
printf '%-16s %11s %10s %9s %9s\n' endpoint "plain B/pt" "gzip B/pt" "ttfb s" "total s"
printf '%-16s %11s %10s %9.3f %9.3f\n' /api/v0/fetch "$(bpp "$F_PLAIN" "$UNIT_POINTS")" "$(bpp "$F_GZ" "$UNIT_POINTS")" "$F_TTFB" "$F_TOTAL"
printf '%-16s %11s %10s %9.3f %9.3f\n' /api/v0/exec "$(bpp "$E_PLAIN" "$UNIT_POINTS")" "$(bpp "$E_GZ" "$UNIT_POINTS")" "$E_TTFB" "$E_TOTAL"
printf 'warp points_per_s=%.0f bytes_per_point=%s cpu_s=%s opentsdb_points_per_s=%.0f opentsdb_bytes_per_point=%s opentsdb_cpu_s=%s fetch_plain_bytes_per_point=%s exec_plain_bytes_per_point=%s fetch_ttfb_s=%.3f exec_ttfb_s=%.3f\n' \
  "$(echo "$POINTS / ${BEST[warp10]}" | bc -l)" "$(bpp "$W_WIRE" "$POINTS")" "${CPU[warp10]}" \
  "$(echo "$POINTS / ${BEST[opentsdb]}" | bc -l)" "$(bpp "$O_WIRE" "$POINTS")" "${CPU[opentsdb]}" \
  "$(bpp "$F_PLAIN" "$UNIT_POINTS")" "$(bpp "$E_PLAIN" "$UNIT_POINTS")" "$F_TTFB" "$E_TTFB"
