#!/usr/bin/env bash
# Over the wire (issue 21): the bench answers (benches/gen_answers.py --warp: 2000 series at
# 20 s, 8.64 M points a day, recorded for OpenTSDB and for Warp 10) exported through a link
# shaped like a WAN to the endpoint, with and without gzip, through both protocols.
# `tc netem` needs CAP_NET_ADMIN, which this machine does not give, so the replay server shapes
# its own answers (`sim --replay --link-rate --link-rtt`, crates/sim/src/link.rs): one token
# bucket for every connection at the link's rate, and a round trip before each answer starts.
#
# What compresses what on the real service (crates/sim/src/gzip.rs, with the sources): Warp
# 10's endpoint gzips its answers itself (Jetty's GzipHandler, zlib level 6); OpenTSDB's own
# server does too (Netty's HttpContentCompressor, level 6); Erlenmeyer, OVH's OpenTSDB proxy,
# compresses nothing, so on OVH the OpenTSDB protocol gets the plain figure whatever the client
# asks. The replay server compresses each API by those rules, and `--precompress`es: the
# answers are compressed once before the runs, as a remote endpoint compresses on its own
# CPUs, so the runs measure the link and the client, not a server compressing on the two
# cores the client runs on.
#
# Runs, each a whole export at the pipeline defaults (16 requests in flight) unless said:
# OpenTSDB plain (also what OVH's Erlenmeyer sends), OpenTSDB gzip (OpenTSDB's own level 6),
# OpenTSDB gzip at other concurrencies (what keeps the link full), OpenTSDB gzip at nginx's
# default level (a front that compresses looser), Warp 10 plain, Warp 10 gzip. Prints per run
# points/s, bytes on the wire per point and link utilisation (bytes on the wire / (wall x
# rate), the wall time from process start to exit); then
#   wire_opentsdb points_per_s_plain=… points_per_s_gzip=… gzip_speedup=…x link_busy_pct=… wire_bytes_per_point=…
#   wire_nginx_level1 points_per_s_gzip=… gzip_speedup=…x link_busy_pct=… wire_bytes_per_point=…
#   wire_ovh_opentsdb points_per_s=… (Erlenmeyer: the plain run) vs_warp10_gzip=…x
# and ends with the line of the protocol the shipped OVH pipeline uses (pipelines/vscope.toml:
# Warp 10, the one that OVH serves compressed), link_busy_pct and wire_bytes_per_point of its
# gzip run:
#   wire points_per_s_plain=… points_per_s_gzip=… gzip_speedup=…x link_busy_pct=… wire_bytes_per_point=…
#
#   benches/wire.sh [--days 10] [--rate 100Mbit] [--rtt 20ms] [--no-build] [--sweep "4 8"]
#     --days N  days of answers (1 or 10; default 10: 86 M points, about a day of a
#               1,400-VM PCC, so that start-up and the last file's commit, ~0.3 s, weigh < 1 %)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
RATE=100Mbit
RTT=20ms
BUILD=1
DAYS=10
SWEEP="4 8"
while [ $# -gt 0 ]; do
  case "$1" in
    --days) DAYS=$2; shift ;;
    --rate) RATE=$2; shift ;;
    --rtt) RTT=$2; shift ;;
    --no-build) BUILD=0 ;;
    --sweep) SWEEP=$2; shift ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
WORK=$ROOT/.bench
DATA=$WORK/data-${DAYS}d
OUT=$WORK/out-wire
mkdir -p "$OUT"
if [ ! -f "$DATA/meta.json" ] || [ ! -d "$DATA/fetch" ]; then
  echo "== generating $DATA (OpenTSDB and Warp 10 answers)"
  rm -rf "$DATA"
  python3 benches/gen_answers.py "$DATA" --days "$DAYS" --warp >/dev/null
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
echo "== machine: $(nproc) CPU, load $(cut -d' ' -f1-3 /proc/loadavg); link $RATE, RTT $RTT; $DAYS day(s) of answers"

source benches/replay-lib.sh
LINK=(--link-rate "$RATE" --link-rtt "$RTT")
start_replay plain "${LINK[@]}" --no-gzip
PLAIN_URL=$REPLAY_URL
start_replay gzip "${LINK[@]}" --precompress
GZIP_URL=$REPLAY_URL
# nginx's `gzip_comp_level 1` is flate2's level 2 (crates/sim/src/gzip.rs NGINX_DEFAULT_LEVEL).
start_replay nginx1 "${LINK[@]}" --gzip-level 2 --precompress
NGINX1_URL=$REPLAY_URL

# run LABEL URL CONCURRENCY PROTOCOL: sets PPS, BPP, BUSY
run() {
  local label=$1 url=$2 conc=$3 protocol=$4
  rm -rf "$OUT/$label"
  replay_pipeline wire "$url" "$OUT/$label" "protocol = \"$protocol\"" "token = \"wire\"" \
    "concurrency = $conc" "requests_per_second = 0" >"$OUT/$label.toml"
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
  printf '%-16s %-8s concurrency %2s  %8.0f points/s  %6s B/point on the wire  link %5s %% busy\n' \
    "$label" "$protocol" "$conc" "$PPS" "$BPP" "$BUSY"
}
ratio() { python3 -c "print(f'{$1 / $2:.2f}')"; }

run plain "$PLAIN_URL" 16 opentsdb
PLAIN_PPS=$PPS
run gzip "$GZIP_URL" 16 opentsdb
GZIP_PPS=$PPS; GZIP_BUSY=$BUSY; GZIP_BPP=$BPP
for c in $SWEEP; do
  run "gzip-c$c" "$GZIP_URL" "$c" opentsdb
done
echo "wire_opentsdb points_per_s_plain=$PLAIN_PPS points_per_s_gzip=$GZIP_PPS gzip_speedup=$(ratio "$GZIP_PPS" "$PLAIN_PPS")x link_busy_pct=$GZIP_BUSY wire_bytes_per_point=$GZIP_BPP"
run gzip-nginx1 "$NGINX1_URL" 16 opentsdb
echo "wire_nginx_level1 points_per_s_gzip=$PPS gzip_speedup=$(ratio "$PPS" "$PLAIN_PPS")x link_busy_pct=$BUSY wire_bytes_per_point=$BPP"
run warp10-plain "$PLAIN_URL" 16 warp10
WARP_PLAIN_PPS=$PPS
run warp10-gzip "$GZIP_URL" 16 warp10
echo "wire_ovh_opentsdb points_per_s=$PLAIN_PPS vs_warp10_gzip=$(ratio "$PLAIN_PPS" "$PPS")x"
echo "wire points_per_s_plain=$WARP_PLAIN_PPS points_per_s_gzip=$PPS gzip_speedup=$(ratio "$PPS" "$WARP_PLAIN_PPS")x link_busy_pct=$BUSY wire_bytes_per_point=$BPP"
