#!/usr/bin/env bash
# For the reader (issue 21): one month of VM metrics (the simulator: 2 datacenters x VMS VMs,
# a point a minute, with the live `vms` inventory table) in our layout, against the same rows
# written the way a user would otherwise get them: DuckDB `COPY ... TO` with its defaults and
# pyarrow `write_table` with its defaults. Four analyst queries in DuckDB on each layout: one
# VM's metrics over 30 days, the top 10 VMs by CPU p95 over the month, one metric for every VM
# over one day, a join with the `vms` inventory. Per query and layout: best-of-3 time and the
# bytes DuckDB read (the process's `rchar` from /proc/self/io: every byte read from the files,
# page cache or not). Ends with one line
#   query single_vm_bytes_pct=… vs_duckdb_default=…x vs_pyarrow_default=…x
# (single_vm_bytes_pct: bytes the single-VM query reads of our layout, in % of the layout's
# bytes; vs_*: over the four queries, the smallest ratio of their time to ours).
#
#   benches/query.sh [--vms N] [--no-build]     (VMs per datacenter, default 25: 30 M points; pyarrow holds the month in memory to write it)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
VMS=25
BUILD=1
while [ $# -gt 0 ]; do
  case "$1" in
    --vms) VMS=$2; shift ;;
    --no-build) BUILD=0 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
scripts/setup-python.sh >/dev/null
PY=$ROOT/.venv/bin/python
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
BIN=${BIN:-$TARGET/release/vscope-etl}
if [ "$BUILD" = 1 ]; then cargo build --release --no-default-features --quiet; fi
WORK=$ROOT/.bench/query-$VMS
mkdir -p "$WORK"
echo "== machine: $(nproc) CPU, load $(cut -d' ' -f1-3 /proc/loadavg)"
if [ ! -f "$WORK/done" ]; then
  rm -rf "$WORK/ours" "$WORK"/*.parquet
  cat >"$WORK/p.toml" <<TOML
name = "query-bench"
[source]
url = "sim"
requests_per_second = 0
[source.sim]
datacenters = 2
hosts_per_datacenter = 4
vms_per_datacenter = $VMS
filers_per_datacenter = 2
step = "60s"
[source.ovh]
user_id = 1
[scope]
start = "2026-10-01T00:00:00Z"
end = "2026-10-31T00:00:00Z"
window = "1d"
[[table]]
name = "vm_metrics"
metrics = ["vscope.vm.*"]
[sink]
url = "$WORK/ours"
TOML
  echo "== exporting a month ($VMS VMs per datacenter, 60 s) with the inventory"
  "$BIN" run "$WORK/p.toml" --now 2026-11-01T00:00:00Z --json >"$WORK/run.json" 2>"$WORK/run.log"
  echo "== the default layouts (DuckDB COPY, pyarrow write_table)"
  "$PY" - "$WORK" <<'PY'
import sys, duckdb, pyarrow.parquet as pq
work = sys.argv[1]
src = f"read_parquet('{work}/ours/vm_metrics/**/*.parquet', hive_partitioning = true)"
duckdb.sql(f"COPY (SELECT * FROM {src}) TO '{work}/duckdb_default.parquet'")
pq.write_table(pq.read_table(f"{work}/ours/vm_metrics"), f"{work}/pyarrow_default.parquet")
PY
  touch "$WORK/done"
fi

"$PY" - "$WORK" <<'PY'
import glob, json, os, sys, time
import duckdb

work = sys.argv[1]
layouts = {
    "ours": f"read_parquet('{work}/ours/vm_metrics/**/*.parquet', hive_partitioning = true)",
    "duckdb_default": f"read_parquet('{work}/duckdb_default.parquet')",
    "pyarrow_default": f"read_parquet('{work}/pyarrow_default.parquet')",
}
sizes = {
    "ours": sum(os.path.getsize(f) for f in glob.glob(f"{work}/ours/vm_metrics/**/*.parquet", recursive=True)),
    "duckdb_default": os.path.getsize(f"{work}/duckdb_default.parquet"),
    "pyarrow_default": os.path.getsize(f"{work}/pyarrow_default.parquet"),
}
vms = glob.glob(f"{work}/ours/vms/**/*.parquet", recursive=True)
con = duckdb.connect()
con.execute("SET TimeZone = 'UTC'")
one_vm = con.execute(f"SELECT min(vm) FROM {layouts['ours']}").fetchone()[0]
inventory = f"read_parquet({vms!r})"
queries = {
    "single VM, 30 days": "SELECT metric, date_trunc('hour', ts) AS h, avg(value) FROM {t} "
                          f"WHERE vm = '{one_vm}' GROUP BY ALL",
    "top 10 VMs by CPU p95": "SELECT vm, quantile_cont(value, 0.95) AS p95 FROM {t} "
                             "WHERE metric = 'vscope.vm.cpu.usage.perc' GROUP BY vm "
                             "ORDER BY p95 DESC LIMIT 10",
    "one metric, every VM, one day": "SELECT vm, avg(value), max(value) FROM {t} "
                                     "WHERE metric = 'vscope.vm.mem.usage.perc' AND "
                                     "ts >= '2026-10-15 00:00:00+00' AND ts < '2026-10-16 00:00:00+00' "
                                     "GROUP BY vm",
    "join with the vms inventory": "SELECT i.name, avg(m.value) FROM {t} m JOIN "
                                   f"(SELECT DISTINCT vm, name FROM {inventory}) i USING (vm) "
                                   "WHERE m.metric = 'vscope.vm.cpu.usage.perc' GROUP BY 1",
}


def rchar():
    with open("/proc/self/io") as f:
        return int(next(l for l in f if l.startswith("rchar")).split()[1])


results = {}
print(f"{'query':32} {'layout':16} {'best s':>8} {'MB read':>9} {'% of layout':>11}")
for qname, q in queries.items():
    for lname, t in layouts.items():
        sql = q.format(t=t)
        times = []
        for _ in range(3):
            before = rchar()
            start = time.perf_counter()
            con.execute(sql).fetchall()
            times.append(time.perf_counter() - start)
            read = rchar() - before
        results[(qname, lname)] = (min(times), read)
        print(f"{qname:32} {lname:16} {min(times):8.3f} {read / 1e6:9.1f} {100 * read / sizes[lname]:10.1f}%")
print("layout sizes (MB):", {k: round(v / 1e6, 1) for k, v in sizes.items()})
single = results[("single VM, 30 days", "ours")][1] / sizes["ours"] * 100
ratio = lambda other: min(results[(q, other)][0] / results[(q, "ours")][0] for q in queries)
print(f"query single_vm_bytes_pct={single:.1f} vs_duckdb_default={ratio('duckdb_default'):.2f}x "
      f"vs_pyarrow_default={ratio('pyarrow_default'):.2f}x")
PY
