# Shared by the benches that export the recorded bench answers (benches/gen_answers.py) served by
# the replay server (e2e.sh, shards.sh, wire.sh): `source benches/replay-lib.sh`, after setting BIN,
# DATA, OUT (and START_MS, END_MS for replay_pipeline).

REPLAY_PIDS=()
trap 'for p in "${REPLAY_PIDS[@]}"; do kill -INT "$p" 2>/dev/null || true; done' EXIT

# start_replay NAME [FLAG...]: a replay server of $DATA on 127.0.0.1 (its log in $OUT/NAME.log);
# sets REPLAY_URL (not printed: run in a $(...) subshell, the exit trap would not know the pid).
start_replay() {
  local name=$1; shift
  local url_file=$OUT/$name.url
  rm -f "$url_file"
  "$BIN" sim --replay "$DATA" --listen 127.0.0.1:0 "$@" >"$url_file" 2>"$OUT/$name.log" &
  local pid=$!
  REPLAY_PIDS+=($pid)
  # The URL comes once the server is ready: with --precompress, after every answer is
  # compressed (about a minute for ten days of answers), so wait while it lives (10 min at most).
  for _ in $(seq 12000); do
    [ -s "$url_file" ] && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.05
  done
  REPLAY_URL=$(head -n1 "$url_file")
  [ -n "$REPLAY_URL" ] || { echo "the replay server did not start:" >&2; cat "$OUT/$name.log" >&2; exit 1; }
}

# replay_pipeline NAME URL SINK [SOURCE_LINE...]: the bench's pipeline (the VM metrics of the
# recorded range, one-day windows, one raw table) with extra [source] lines.
replay_pipeline() {
  local name=$1 url=$2 sink=$3; shift 3
  cat <<TOML
name = "$name"
[source]
url = "$url"
dialect = "opentsdb"
timeout = "300s"
$(printf '%s\n' "$@")
[scope]
start = "$START_MS"
end = "$END_MS"
window = "1d"
metrics = ["vscope.vm.*"]
[[table]]
name = "vm_metrics"
metrics = ["vscope.vm.*"]
[sink]
url = "$sink"
partition_by = ["date"]
TOML
}
