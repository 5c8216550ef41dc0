#!/usr/bin/env bash
# For the reader (issue 21): one month of VM metrics (the simulator: 2 datacenters x VMS VMs,
# a point a minute, with the live `vms` inventory table) in our layout, against the same rows
# written the way a user would otherwise get them: DuckDB `COPY ... TO` with its defaults and
# pyarrow `write_table` with its defaults. Four analyst queries in DuckDB on each layout: one
# VM's metrics over 30 days (the median VM by name), the top 10 VMs by CPU p95 over the month,
# one metric for every VM over one day, a join with the `vms` inventory. Per query and layout: the best of five times
# (the layouts' runs interleaved, so a busy minute weighs on each alike) and the bytes DuckDB
# read: on local files the process's `rchar` (/proc/self/io: every byte read from the files,
# page cache or not); then (unless --no-s3) the same queries through DuckDB's httpfs on a moto
# S3 server on loopback (a real S3 API), where the bytes and GET requests come from DuckDB's
# HTTP log (moto is slower per request than a real store: the S3 times weigh request counts).
# Ends with one line (local files)
#   query single_vm_bytes_pct=… vs_duckdb_default=…x vs_pyarrow_default=…x
# (single_vm_bytes_pct: bytes the single-VM query reads of our layout, in % of the layout's
# bytes; vs_*: over the four queries, the smallest ratio of their time to ours).
#
#   benches/query.sh [--vms N] [--compression zstd|snappy|lz4] [--zstd-level N]
#                    [--row-group-rows N] [--partition-by metric|month|metric-month]
#                    [--no-build] [--no-s3]
#                    [--no-export]
#     --vms N   VMs per datacenter, default 25 (30 M points); 250 is the 10x set (300 M points,
#               about 1.5 GB in our layout; the S3 pass is skipped above 50: moto holds objects
#               in memory)
#     --compression C  our layout's `sink.compression` (default zstd); other than zstd, it is
#               written to ours-C/ (the same rows: the default layouts are shared)
#     --zstd-level N  our layout's `sink.zstd_level` (default: the pipeline default); given, it
#               is written to ours-zN/
#     --row-group-rows N  our layout's `sink.row_group_rows` (default: the pipeline default);
#               given, it is written to ours-rgN/ (with --compression C: ours-C-rgN/)
#     --partition-by metric  our layout's `sink.partition_by = ["metric", "date"]` (default
#               ["date"]), written to ours-…-pmetric/; its row groups (64 Ki rows unless
#               --row-group-rows) and value pages (64 KiB) follow. With --compression lz4 it
#               is the reader layout of large PCCs (docs/performance.md "For the reader").
#     --partition-by month|metric-month  `["month"]` or `["metric", "month"]`, written to
#               ours-…-pmonth/ or ours-…-pmetric-month/, then `vscope-etl compact` (the month is
#               finished): one file per month (and metric), sorted by series.
#     --no-export  query the layout the last run wrote (same binary) instead of exporting anew
# Our layout is written anew each time (the binary may have changed) unless --no-export; the
# default layouts are made once from its rows and kept in .bench/query-N.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
VMS=25
BUILD=1
S3=1
EXPORT=1
COMPRESSION=zstd
ROW_GROUP_ROWS=
ZSTD_LEVEL=
PARTITION_BY=date
while [ $# -gt 0 ]; do
  case "$1" in
    --vms) VMS=$2; shift ;;
    --no-build) BUILD=0 ;;
    --no-s3) S3=0 ;;
    --no-export) EXPORT=0 ;;
    --compression) COMPRESSION=$2; shift ;;
    --row-group-rows) ROW_GROUP_ROWS=$2; shift ;;
    --zstd-level) ZSTD_LEVEL=$2; shift ;;
    --partition-by) PARTITION_BY=$2; shift ;;
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
OURS=ours
[ "$COMPRESSION" = zstd ] || OURS=ours-$COMPRESSION
[ -z "$ROW_GROUP_ROWS" ] || OURS=$OURS-rg$ROW_GROUP_ROWS
[ -z "$ZSTD_LEVEL" ] || OURS=$OURS-z$ZSTD_LEVEL
case "$PARTITION_BY" in
  date) PARTITIONS='["date"]' ;;
  metric) PARTITIONS='["metric", "date"]'; OURS=$OURS-pmetric ;;
  month) PARTITIONS='["month"]'; OURS=$OURS-pmonth ;;
  metric-month) PARTITIONS='["metric", "month"]'; OURS=$OURS-pmetric-month ;;
  *) echo "--partition-by is date, metric, month or metric-month" >&2; exit 2 ;;
esac
mkdir -p "$WORK"
echo "== machine: $(nproc) CPU, load $(cut -d' ' -f1-3 /proc/loadavg)"
if [ "$EXPORT" = 1 ] || [ ! -d "$WORK/$OURS" ]; then
  rm -rf "$WORK/$OURS"
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
url = "$WORK/$OURS"
compression = "$COMPRESSION"
${ROW_GROUP_ROWS:+row_group_rows = $ROW_GROUP_ROWS}
partition_by = $PARTITIONS
${ZSTD_LEVEL:+zstd_level = $ZSTD_LEVEL}
TOML
  echo "== exporting a month ($VMS VMs per datacenter, 60 s) with the inventory"
  "$BIN" run "$WORK/p.toml" --now 2026-11-01T00:00:00Z --json >"$WORK/run.json" 2>"$WORK/run.log"
  case "$PARTITION_BY" in
    *month)
      echo "== compacting the month"
      "$BIN" compact "$WORK/p.toml" --until 2026-11-01 2>>"$WORK/run.log" ;;
  esac
fi
if [ ! -f "$WORK/defaults-done" ]; then
  echo "== the default layouts (DuckDB COPY, pyarrow write_table), made once"
  rm -f "$WORK"/*.parquet
  "$PY" - "$WORK" "$OURS" <<'PY'
import sys, duckdb, pyarrow as pa, pyarrow.dataset as ds, pyarrow.parquet as pq
work, ours = sys.argv[1], sys.argv[2]
src = f"read_parquet('{work}/{ours}/vm_metrics/**/*.parquet', hive_partitioning = true)"
duckdb.sql(f"COPY (SELECT * FROM {src}) TO '{work}/duckdb_default.parquet'")
# What `pq.write_table(whole_month)` writes (row groups of its default 1 Mi rows), fed a
# row group at a time so that the 10x set need not fit in memory.
rows = 1024 * 1024
data = ds.dataset(f"{work}/{ours}/vm_metrics", partitioning="hive")
pending = []
with pq.ParquetWriter(f"{work}/pyarrow_default.parquet", data.schema) as w:
    for batch in data.to_batches():
        pending.append(batch)
        if sum(b.num_rows for b in pending) >= rows:
            t = pa.Table.from_batches(pending)
            w.write_table(t.slice(0, rows))
            pending = t.slice(rows).to_batches()
    if pending:
        w.write_table(pa.Table.from_batches(pending, schema=data.schema))
PY
  touch "$WORK/defaults-done"
fi
"$PY" - "$WORK" "$S3" "$VMS" "$OURS" <<'PY'
import glob, os, socket, subprocess, sys, time
import duckdb

work, s3, vms_per_dc, ours = sys.argv[1], sys.argv[2] == "1", int(sys.argv[3]), sys.argv[4]
files = {
    "ours": sorted(glob.glob(f"{work}/{ours}/vm_metrics/**/*.parquet", recursive=True)),
    "duckdb_default": [f"{work}/duckdb_default.parquet"],
    "pyarrow_default": [f"{work}/pyarrow_default.parquet"],
}
inventory_files = sorted(glob.glob(f"{work}/{ours}/vms/**/*.parquet", recursive=True))
sizes = {k: sum(os.path.getsize(f) for f in v) for k, v in files.items()}


def rchar():
    with open("/proc/self/io") as f:
        return int(next(l for l in f if l.startswith("rchar")).split()[1])


def queries(t, inventory, one_vm):
    return {
        "single VM, 30 days": f"SELECT metric, date_trunc('hour', ts) AS h, avg(value) FROM {t} "
                              f"WHERE vm = '{one_vm}' GROUP BY ALL",
        "top 10 VMs by CPU p95": f"SELECT vm, quantile_cont(value, 0.95) AS p95 FROM {t} "
                                 "WHERE metric = 'vscope.vm.cpu.usage.perc' GROUP BY vm "
                                 "ORDER BY p95 DESC LIMIT 10",
        "one metric, every VM, one day": f"SELECT vm, avg(value), max(value) FROM {t} "
                                         "WHERE metric = 'vscope.vm.mem.usage.perc' AND "
                                         "ts >= '2026-10-15 00:00:00+00' AND ts < '2026-10-16 00:00:00+00' "
                                         "GROUP BY vm",
        "join with the vms inventory": f"SELECT i.name, avg(m.value) FROM {t} m JOIN "
                                       f"(SELECT DISTINCT vm, name FROM {inventory}) i USING (vm) "
                                       "WHERE m.metric = 'vscope.vm.cpu.usage.perc' GROUP BY 1",
    }


def http_bytes(con):
    """Bytes and requests of the ranged GETs httpfs made since the last call (DuckDB's HTTP log:
    `rchar` does not count socket reads)."""
    got = con.execute("SELECT coalesce(sum(CAST(response.headers['Content-Length'] AS BIGINT)), 0), "
                      "count(*) FROM duckdb_logs_parsed('HTTP') WHERE request.type = 'GET'").fetchone()
    con.execute("CALL truncate_duckdb_logs()")
    return got


def measure(con, where, layouts, inventory, remote=False):
    """Best-of-3 time and bytes read of every query on every layout; prints a table."""
    # The median VM by name: a typical one. The first VM of a row group is the cheapest to read
    # (DuckDB reads the pages before a VM's rows to skip them: on our 50-VM month the first VM
    # reads 31 % of the layout, the median 62 %, the last 100 %), so min(vm) would flatter the
    # layouts that sort by VM.
    vms = [r[0] for r in con.execute(f"SELECT DISTINCT vm FROM {layouts['ours']} ORDER BY vm").fetchall()]
    one_vm = vms[len(vms) // 2]
    print(f"-- the single-VM query asks for {one_vm}, the median of {len(vms)} VMs")
    # Runs interleave the layouts (ours, theirs, theirs, then ours again...) so that a busy
    # minute of the machine weighs on every layout alike; best of five per query and layout.
    timings = {}
    print(f"-- {where}")
    print(f"{'query':32} {'layout':16} {'best s':>8} {'MB read':>9} {'% of layout':>11}"
          + (" requests" if remote else ""))
    for _ in range(5):
        for lname, t in layouts.items():
            for qname, sql in queries(t, inventory, one_vm).items():
                if remote:
                    http_bytes(con)
                before = rchar()
                start = time.perf_counter()
                con.execute(sql).fetchall()
                took = time.perf_counter() - start
                read, requests = (http_bytes(con) if remote else (rchar() - before, 0))
                best = timings.get((qname, lname), (took,))[0]
                timings[(qname, lname)] = (min(best, took), read, requests)
    results = timings
    for qname in queries("", "", ""):
        for lname in layouts:
            best, read, requests = results[(qname, lname)]
            print(f"{qname:32} {lname:16} {best:8.3f} {read / 1e6:9.1f} {100 * read / sizes[lname]:10.1f}%"
                  + (f" {requests:6} GETs" if remote else ""))
    ratio = lambda other: min(results[(q, other)][0] / results[(q, "ours")][0] for q in queries("", "", ""))
    single = results[("single VM, 30 days", "ours")][1] / sizes["ours"] * 100
    return single, ratio("duckdb_default"), ratio("pyarrow_default")


def parquet(paths, hive):
    return f"read_parquet({paths!r}{', hive_partitioning = true' if hive else ''})"


con = duckdb.connect()
con.execute("SET TimeZone = 'UTC'")
print("layout sizes (MB):", {k: round(v / 1e6, 1) for k, v in sizes.items()})
local = measure(con, "local files", {
    "ours": parquet(f"{work}/{ours}/vm_metrics/**/*.parquet", True),
    "duckdb_default": parquet(files["duckdb_default"][0], False),
    "pyarrow_default": parquet(files["pyarrow_default"][0], False),
}, parquet(inventory_files, True))

if s3 and vms_per_dc <= 50:
    # moto (the S3 server of the tests) on a loopback port; DuckDB reads through httpfs, loaded
    # from the PyPI package scripts/setup-python.sh installs.
    import boto3
    sock = socket.socket(); sock.bind(("127.0.0.1", 0)); port = sock.getsockname()[1]; sock.close()
    moto = subprocess.Popen([os.path.join(os.path.dirname(sys.executable), "moto_server"),
                             "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        endpoint = f"127.0.0.1:{port}"
        s3c = boto3.client("s3", endpoint_url=f"http://{endpoint}", region_name="us-east-1",
                           aws_access_key_id="bench", aws_secret_access_key="bench")
        for _ in range(100):
            try:
                s3c.create_bucket(Bucket="bench")
                break
            except Exception:
                time.sleep(0.2)
        for paths in list(files.values()) + [inventory_files]:
            for f in paths:
                s3c.upload_file(f, "bench", os.path.relpath(f, work))
        ext = glob.glob(os.path.join(os.path.dirname(duckdb.__file__), "..", "duckdb_ext",
                                     "extensions", "v*", "*", "httpfs.duckdb_extension"))
        con.execute(f"LOAD '{ext[0]}'")
        con.execute(f"CREATE SECRET (TYPE s3, KEY_ID 'bench', SECRET 'bench', REGION 'us-east-1', "
                    f"ENDPOINT '{endpoint}', URL_STYLE 'path', USE_SSL false)")
        # Every run reads from the store (no cache between the three), and logs its requests.
        con.execute("SET enable_external_file_cache = false")
        con.execute("CALL enable_logging('HTTP')")
        s3_inventory = parquet([f"s3://bench/{os.path.relpath(f, work)}" for f in inventory_files], True)
        remote = measure(con, "S3 (moto) through httpfs", {
            "ours": parquet(f"s3://bench/{ours}/vm_metrics/**/*.parquet", True),
            "duckdb_default": parquet("s3://bench/duckdb_default.parquet", False),
            "pyarrow_default": parquet("s3://bench/pyarrow_default.parquet", False),
        }, s3_inventory, remote=True)
        print(f"query_s3 single_vm_bytes_pct={remote[0]:.1f} vs_duckdb_default={remote[1]:.2f}x "
              f"vs_pyarrow_default={remote[2]:.2f}x")
    finally:
        moto.terminate()
        moto.wait()
print(f"query single_vm_bytes_pct={local[0]:.1f} vs_duckdb_default={local[1]:.2f}x "
      f"vs_pyarrow_default={local[2]:.2f}x")
PY
