"""Writes a synthetic vScope dataset for the report benchmark (benches/report.sh), straight as
the Hive-partitioned Parquet the pipeline writes (`<table>/date=YYYY-MM-DD/part-*.parquet`, one
file per day and table, rows sorted by metric, series, time), with the columns the report
reads. Going through the simulator and the ETL would take hours for a year of 1,000 VMs on a
2-core machine; the report only reads Parquet, so the files are what matters. DuckDB SQL
generates and writes each day (the venv has duckdb, not numpy).

Usage: report_data.py OUT --vms N --days D [--rollup] [--raw-step S]

--rollup writes 1h rollup tables (vm_metrics_1h, host_metrics_1h: avg, min, max, p95, count);
otherwise raw tables (value) with a point every S seconds (default 300). Both write
filer_metrics (raw, one point an hour: used space, growing) and one snapshot of the vms and
filers inventory tables at the end. Series: the 11 VM metrics the report reads (CPU, RAM,
ready, disk, network), host CPU and RAM (one host per 25 VMs). Values have a daily cycle, a slow
growth, uniform noise; 5 % of the VMs are idle, 3 % powered off. Deterministic (hash-based).
"""
import argparse
import datetime as dt
import os

import duckdb

VM_METRICS = ["vscope.vm.cpu.usage.perc", "vscope.vm.mem.usage.perc", "vscope.vm.cpu.ready",
              "vscope.vm.disk.io.read", "vscope.vm.disk.io.write", "vscope.vm.disk.bandwidth.read",
              "vscope.vm.disk.bandwidth.write", "vscope.vm.disk.latency.read",
              "vscope.vm.disk.latency.write", "vscope.vm.net.rx", "vscope.vm.net.tx"]
HOST_METRICS = ["vscope.host.cpu.usage.perc", "vscope.host.mem.usage.perc"]
START = dt.datetime(2025, 11, 1, tzinfo=dt.timezone.utc)


def u(expr, salt):
    """A deterministic uniform in [0, 1) from an integer expression."""
    return f"((hash({expr}, {salt}) % 1000003) / 1000003.0)"


def metric_day(con, out, table, day, metrics, obj_label, objs_sql, step, rollup):
    """One day of `metrics` for the objects of `objs_sql` (columns: o, datacenter, name, idle)."""
    per_day = 86400 // step
    t0 = (day - START).days
    mvals = ", ".join(f"({i}, '{m}', {str(m.endswith('.perc')).lower()})" for i, m in enumerate(metrics))
    # Level per series: percent metrics 5..45 growing up to 0.06 %/day, others 10..500.
    v = (f"(CASE WHEN m.pct THEN 5 + 40 * {u('o.o * 64 + m.i', 1)} ELSE 10 + 490 * {u('o.o * 64 + m.i', 2)} END"
         f" * (1 + 0.3 * sin(2 * pi() * t.k / {per_day}))"
         f" + CASE WHEN m.pct THEN 0.06 * {u('o.o * 64 + m.i', 3)} ELSE 0.2 * {u('o.o * 64 + m.i', 3)} END"
         f" * ({t0} + t.k / {per_day}.0)"
         f" + (CASE WHEN m.pct THEN 3 ELSE 20 END) * ({u(f'o.o * 1000000 + m.i * 100000 + {t0} * {per_day} + t.k', 4)} - 0.5))"
         f" * CASE WHEN o.idle THEN 0.02 ELSE 1 END")
    if rollup:
        vals = ("round(greatest(v, 0), 2) AS avg, round(greatest(v - 2 * sd, 0), 2) AS min, "
                "round(greatest(v + 2.5 * sd, 0), 2) AS max, round(greatest(v + 1.6 * sd, 0), 2) AS p95, "
                "180::BIGINT AS count")
    else:
        vals = "round(greatest(v, 0), 2) AS value"
    d = os.path.join(out, table, f"date={day:%Y-%m-%d}")
    os.makedirs(d, exist_ok=True)
    con.execute(f"""
        COPY (
          SELECT ts, metric, datacenter, name AS {obj_label}, {vals} FROM (
            SELECT (TIMESTAMP '{day:%Y-%m-%d}' + to_seconds(t.k * {step}))::TIMESTAMP_MS AS ts,
                   m.name AS metric, o.datacenter, o.name, {v} AS v,
                   CASE WHEN m.pct THEN 1.5 ELSE 10 END * CASE WHEN o.idle THEN 0.02 ELSE 1 END AS sd
            FROM (VALUES {mvals}) m(i, name, pct), ({objs_sql}) o, range({per_day}) t(k))
          ORDER BY metric, datacenter, {obj_label}, ts
        ) TO '{d}/part-{day:%Y%m%dT%H%M%SZ}.parquet' (FORMAT parquet, COMPRESSION zstd, ROW_GROUP_SIZE 1048576)
    """)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--vms", type=int, default=1000)
    ap.add_argument("--days", type=int, default=365)
    ap.add_argument("--rollup", action="store_true")
    ap.add_argument("--raw-step", type=int, default=300)
    a = ap.parse_args()
    con = duckdb.connect()
    dc = "'pcc-bench_datacenter' || (i % 2 + 1)"
    vms = (f"SELECT i AS o, {dc} AS datacenter, printf('vm-%05d', i) AS name, "
           f"{u('i', 5)} < 0.05 AS idle FROM range({a.vms}) r(i)")
    hosts = (f"SELECT i AS o, {dc} AS datacenter, printf('172.16.%d.%d', i // 250, i % 250 + 1) AS name, "
             f"false AS idle FROM range({max(4, a.vms // 25)}) r(i)")
    step = 3600 if a.rollup else a.raw_step
    suffix = "_1h" if a.rollup else ""
    for d in range(a.days):
        day = START + dt.timedelta(days=d)
        metric_day(con, a.out, "vm_metrics" + suffix, day, VM_METRICS, "vm", vms, step, a.rollup)
        metric_day(con, a.out, "host_metrics" + suffix, day, HOST_METRICS, "host", hosts, step, a.rollup)
        # Used space in KB: 1 to 4 TB growing 0.2 %/day of its level.
        fd = os.path.join(a.out, "filer_metrics", f"date={day:%Y-%m-%d}")
        os.makedirs(fd, exist_ok=True)
        con.execute(f"""
            COPY (SELECT (TIMESTAMP '{day:%Y-%m-%d}' + to_seconds(k * 3600))::TIMESTAMP_MS AS ts,
                         'vscope.filer.datastore.diskspace.used' AS metric,
                         'pcc-bench_datacenter' || (i % 2 + 1) AS datacenter, printf('pcc-%06d', i) AS datastore,
                         round((1 + 3 * {u('i', 6)}) * 1073741824 * (1 + 0.002 * ({d} + k / 24.0))
                               + 1e6 * {u(f'i * 100000 + {d} * 24 + k', 7)}, 0) AS value
                  FROM range(4) r(i), range(24) t(k) ORDER BY datastore, ts)
            TO '{fd}/part-{day:%Y%m%dT%H%M%SZ}.parquet' (FORMAT parquet, COMPRESSION zstd)""")
    end = START + dt.timedelta(days=a.days)
    for table, sql in [
        ("vms", f"SELECT TIMESTAMP '{end:%Y-%m-%d}'::TIMESTAMP_MS AS snapshot_ts, {dc} AS datacenter, "
                f"printf('vm-%05d', i) AS vm, printf('app-%05d', i) AS name, "
                f"CASE WHEN {u('i', 8)} < 0.03 THEN 'poweredOff' ELSE 'poweredOn' END AS power_state, "
                f"(1 << (hash(i, 9) % 4))::BIGINT AS cpu_num, (2048 << (hash(i, 10) % 4))::BIGINT AS memory_max "
                f"FROM range({a.vms}) r(i)"),
        ("filers", f"SELECT TIMESTAMP '{end:%Y-%m-%d}'::TIMESTAMP_MS AS snapshot_ts, {dc} AS datacenter, "
                   f"printf('pcc-%06d', i) AS datastore, 8::BIGINT AS size_value, 'TB' AS size_unit "
                   f"FROM range(4) r(i)"),
    ]:
        d = os.path.join(a.out, table, f"date={end:%Y-%m-%d}")
        os.makedirs(d, exist_ok=True)
        con.execute(f"COPY ({sql}) TO '{d}/part-{end:%Y%m%dT%H%M%SZ}.parquet' (FORMAT parquet)")


if __name__ == "__main__":
    main()
