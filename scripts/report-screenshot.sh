#!/usr/bin/env bash
# Renders the capacity report of the demo dataset in headless Chromium and saves
# docs/report.png (shown in docs/report.md). Installs Debian's `chromium` if it is missing.
#
#   scripts/report-screenshot.sh            # demo dataset in ./out, report in ./out/report
#   DATA=/path/to/sink scripts/report-screenshot.sh
#   VSCOPE_ETL=target/debug/vscope-etl scripts/report-screenshot.sh   # a binary already built
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v chromium >/dev/null 2>&1; then
    echo "installing chromium (apt-get)" >&2
    SUDO=""
    [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi

DATA="${DATA:-out}"
OUT="${OUT:-out/report}"
if [ -n "${VSCOPE_ETL:-}" ]; then
    BIN=("$VSCOPE_ETL")
else
    BIN=(cargo run --release --quiet --)
fi
if [ "$DATA" = "out" ] && [ ! -d out/vm_metrics ]; then
    # The demo pipeline (simulator source, 2 days), plus an inventory snapshot of the same PCC
    # into the same sink so that the datastore forecast has capacities.
    "${BIN[@]}" run pipelines/demo.toml
    inv="$(mktemp --suffix=.toml)"
    cat >"$inv" <<'TOML'
# The PCC of pipelines/demo.toml, its API v6 inventory written into the same sink.
name = "demo-inventory-snapshot"
[source]
url = "sim"
requests_per_second = 0
[source.sim]
datacenters = 2
hosts_per_datacenter = 3
vms_per_datacenter = 12
filers_per_datacenter = 2
step = "60s"
[source.ovh]
user_id = 1
[scope]
start = "2026-11-01T00:00:00Z"
end = "2026-11-03T00:00:00Z"
window = "6h"
metrics = ["vscope.*"]
[[table]]
name = "vm_metrics"
metrics = ["vscope.vm.*"]
[sink]
url = "./out"
partition_by = ["date"]
TOML
    "${BIN[@]}" inventory "$inv" --now 2026-11-03T00:00:00Z
    rm -f "$inv"
fi
"${BIN[@]}" report --data "$DATA" --out "$OUT" --format all
html="$(realpath "$OUT/report.html")"
chromium --headless --no-sandbox --disable-gpu --hide-scrollbars \
    --screenshot="$PWD/docs/report.png" --window-size=1280,2400 "file://$html"
echo "docs/report.png from $html"
