#!/usr/bin/env bash
# Over the wire (issue 21): the bench day (benches/gen_answers.py: 2000 series, 8.64 M points,
# 520 answers) exported through a link shaped like a WAN to the endpoint, with and without gzip.
# `tc netem` needs CAP_NET_ADMIN, which this machine does not give, so the replay server shapes
# its own answers (`sim --replay --link-rate --link-rtt`, crates/sim/src/link.rs): one token
# bucket for every connection at the link's rate, and a round trip before each answer starts.
#
# Runs: plain JSON and gzip at the pipeline default (16 requests in flight), then gzip at other
# concurrencies, to see what keeps the link full, then gzip from a server compressing at zlib's
# default level 6 instead of the level that matches nginx's default (`--gzip-level 6`: which
# level OVH's endpoint uses is not published; this line says what a tighter server gives). Prints per run: wall time, points/s, bytes on
# the wire per point, link utilisation (bytes on the wire / (wall x rate)); ends with one line
#   wire points_per_s_plain=… points_per_s_gzip=… gzip_speedup=…x link_busy_pct=… wire_bytes_per_point=…
# (link_busy_pct and wire_bytes_per_point of the gzip run at the defaults).
#
#   benches/wire.sh [--rate 100Mbit] [--rtt 20ms] [--no-build] [--sweep "1 4 8"]
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
RATE=100Mbit
RTT=20ms
BUILD=1
SWEEP="1 4 8"
while [ $# -gt 0 ]; do
  case "$1" in
    --rate) RATE=$2; shift ;;
    --rtt) RTT=$2; shift ;;
    --no-build) BUILD=0 ;;
    --sweep) SWEEP=$2; shift ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
WORK=$ROOT/.bench
DATA=$WORK/data-1d
OUT=$WORK/out-wire
mkdir -p "$OUT"
if [ ! -f "$DATA/meta.json" ]; then
  echo "== generating $DATA"
  python3 benches/gen_answers.py "$DATA" --days 1 >/dev/null
fi
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
BIN=${BIN:-$TARGET/release/vscope-etl}
if [ "$BUILD" = 1 ]; then
  cargo build --release --no-default-features --quiet
fi
START_MS=$(python3 -c "import json;print(json.load(open('$DATA/meta.json'))['start_ms'])")
END_MS=$(python3 -c "import json;print(json.load(open('$DATA/meta.json'))['end_ms'])")
BITS=$(python3 -c "
import re,sys
m=re.fullmatch(r'([0-9.]+)(bit|kbit|Mbit|Gbit)', '$RATE')
print(float(m.group(1))*{'bit':1,'kbit':1e3,'Mbit':1e6,'Gbit':1e9}[m.group(2)])")
echo "== machine: $(nproc) CPU, load $(cut -d' ' -f1-3 /proc/loadavg); link $RATE, RTT $RTT"

source benches/replay-lib.sh
LINK=(--link-rate "$RATE" --link-rtt "$RTT")
start_replay plain "${LINK[@]}" --no-gzip
PLAIN_URL=$REPLAY_URL
# --precompress: the answers are compressed once before the runs (as a remote endpoint
# compresses on its own CPUs), so the runs measure the link and the client, not a server
# compressing on the two cores the client runs on.
start_replay gzip "${LINK[@]}" --precompress
GZIP_URL=$REPLAY_URL
start_replay gzip6 "${LINK[@]}" --gzip-level 6 --precompress
GZIP6_URL=$REPLAY_URL

# run LABEL URL CONCURRENCY: sets PPS, BPP, BUSY
run() {
  local label=$1 url=$2 conc=$3
  rm -rf "$OUT/$label"
  replay_pipeline wire "$url" "$OUT/$label" "concurrency = $conc" "requests_per_second = 0" \
    >"$OUT/$label.toml"
  local t0 t1
  t0=$(date +%s.%N)
  "$BIN" run "$OUT/$label.toml" --json >"$OUT/$label.json" 2>"$OUT/$label.log"
  t1=$(date +%s.%N)
  read -r PPS BPP BUSY < <(python3 - "$OUT/$label.json" "$t0" "$t1" "$BITS" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
wall = float(sys.argv[3]) - float(sys.argv[2])
pts, wire = s["points"], s["bytes_on_wire"]
print(f"{pts / wall:.0f} {wire / pts:.2f} {100 * wire * 8 / (wall * float(sys.argv[4])):.1f}")
PY
)
  printf '%-14s concurrency %2s  %8.0f points/s  %6s B/point on the wire  link %5s %% busy\n' \
    "$label" "$conc" "$PPS" "$BPP" "$BUSY"
}

run plain "$PLAIN_URL" 16
PLAIN_PPS=$PPS
run gzip "$GZIP_URL" 16
GZIP_PPS=$PPS; GZIP_BUSY=$BUSY; GZIP_BPP=$BPP
for c in $SWEEP; do
  run "gzip-c$c" "$GZIP_URL" "$c"
done
run gzip-level6 "$GZIP6_URL" 16
SPEEDUP6=$(python3 -c "print(f'{$PPS / $PLAIN_PPS:.2f}')")
echo "wire_level6 points_per_s_gzip=$PPS gzip_speedup=${SPEEDUP6}x link_busy_pct=$BUSY wire_bytes_per_point=$BPP"
SPEEDUP=$(python3 -c "print(f'{$GZIP_PPS / $PLAIN_PPS:.2f}')")
echo "wire points_per_s_plain=$PLAIN_PPS points_per_s_gzip=$GZIP_PPS gzip_speedup=${SPEEDUP}x link_busy_pct=$GZIP_BUSY wire_bytes_per_point=$GZIP_BPP"
