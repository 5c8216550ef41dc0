"""Checks every number of a `vscope-etl report --format json` against DuckDB.

Usage: report_check.py SINK REPORT_JSON

Recomputes each statistic independently in DuckDB SQL on the same Parquet (read with
hive_partitioning, filtered to the report's period) following the definitions the report
states: p95 = quantile_cont(.., 0.95); rollup tables: count-weighted avg, max of max, p95 of the
bucket p95s; hours above = hours (raw: UTC hour means; rollup: buckets * bucket/1h) whose mean
is above the threshold; trend = regr_slope/regr_intercept/regr_r2 on x = days since the period
start; completeness from LAG() gaps. Prints {"checked": N, "errors": [...], "cells": M} and exits
1 on any mismatch or any numeric cell left unchecked.
"""
import json
import math
import sys

import duckdb

KB_PER_GB = 1024.0 * 1024.0
DAY_MS = 86_400_000.0
UNIT_KB = {"KB": 1.0, "MB": 1024.0, "GB": KB_PER_GB, "TB": KB_PER_GB * 1024, "PB": KB_PER_GB * 1024 ** 2}

sink, report_path = sys.argv[1], sys.argv[2]
report = json.load(open(report_path))
con = duckdb.connect()
FROM, TO = report["period"]["from_ms"], report["period"]["to_ms"]
P = report["parameters"]
T = report["tables"]
errors, checked = [], set()


def src(table):
    return f"read_parquet('{sink}/{table}/**/*.parquet', hive_partitioning = true, union_by_name = true)"


def period(table, metrics=None):
    w = f"epoch_ms(ts) >= {FROM} AND epoch_ms(ts) < {TO}"
    if metrics:
        w += " AND metric IN (" + ", ".join(f"'{m}'" for m in metrics) + ")"
    return f"(SELECT * FROM {src(table)} WHERE {w})"


def close(a, b, rel, abs_tol=1e-9):
    if a is None or b is None:
        return a is None and b is None
    return math.isclose(float(a), float(b), rel_tol=rel, abs_tol=abs_tol)


def check(table, i, col, expected, rel=1e-9, abs_tol=1e-9):
    got = T[table]["rows"][i][col]
    checked.add((table, i, col))
    if isinstance(expected, str) or isinstance(got, str):
        ok = got == expected
    else:
        ok = close(got, expected, rel, abs_tol)
    if not ok:
        errors.append(f"{table}[{i}].{col}: report {got!r} != duckdb {expected!r}")


def is_rollup(table):
    cols = [r[0] for r in con.execute(f"DESCRIBE SELECT * FROM {src(table)}").fetchall()]
    return "p95" in cols and "value" not in cols


def bucket_ms(table):
    return con.execute(
        f"SELECT min(d) FROM (SELECT t - lag(t) OVER (ORDER BY t) AS d FROM "
        f"(SELECT DISTINCT epoch_ms(ts) AS t FROM {src(table)})) WHERE d > 0"
    ).fetchone()[0]


def stats(table, metrics, labels):
    """{(metric, labels...): (avg, p95, peak)} with the report's definitions."""
    keys = ", ".join(["metric"] + labels)
    if is_rollup(table):
        q = (f"SELECT {keys}, sum(avg * count) / sum(count), quantile_cont(p95, 0.95), max(max) "
             f"FROM {period(table, metrics)} GROUP BY ALL")
    else:
        q = (f"SELECT {keys}, avg(value), quantile_cont(value, 0.95), max(value) "
             f"FROM {period(table, metrics)} GROUP BY ALL")
    n = 1 + len(labels)
    return {tuple(r[:n]): r[n:] for r in con.execute(q).fetchall()}


def hours_above(table, metrics, labels, thr):
    keys = ", ".join(["metric"] + labels)
    if is_rollup(table):
        b = bucket_ms(table) / 3_600_000.0
        q = f"SELECT {keys}, count(*) * {b} FROM {period(table, metrics)} WHERE avg > {thr} GROUP BY ALL"
    else:
        q = (f"SELECT {keys}, count(*) FROM (SELECT {keys}, epoch_ms(ts) // 3600000 AS h, avg(value) AS v "
             f"FROM {period(table, metrics)} GROUP BY ALL) WHERE v > {thr} GROUP BY ALL")
    n = 1 + len(labels)
    return {tuple(r[:n]): r[n] for r in con.execute(q).fetchall()}


thr = P["threshold_pct"]

# Hosts.
if "host_usage" in T:
    t = T["host_usage"]["source"]
    cpu, ram = "vscope.host.cpu.usage.perc", "vscope.host.mem.usage.perc"
    s = stats(t, [cpu, ram], ["datacenter", "host"])
    h = hours_above(t, [cpu, ram], ["datacenter", "host"], thr)
    rows = T["host_usage"]["rows"]
    hosts = {(k[1], k[2]) for k in s}
    if len(rows) != len(hosts):
        errors.append(f"host_usage: {len(rows)} rows, duckdb has {len(hosts)} hosts")
    prev = math.inf
    for i, r in enumerate(rows):
        dc, host = r["datacenter"], r["host"]
        for m, p in [(cpu, "cpu"), (ram, "ram")]:
            avg, p95, peak = s.get((m, dc, host), (None, None, None))
            check("host_usage", i, f"{p}_avg", avg)
            check("host_usage", i, f"{p}_p95", p95)
            check("host_usage", i, f"{p}_peak", peak)
            check("host_usage", i, f"{p}_hours_above", h.get((m, dc, host), 0))
        check("host_usage", i, "rank", i + 1)
        key = max(r["cpu_p95"], r["ram_p95"])
        if key > prev:
            errors.append(f"host_usage: row {i} out of rank order")
        prev = key

if "host_network" in T:
    t = T["host_network"]["source"]
    rx, tx = "vscope.host.net.rx", "vscope.host.net.tx"
    s = stats(t, [rx, tx], ["datacenter", "host", "nicname"])
    rows = T["host_network"]["rows"]
    if len(rows) != len({k[1:] for k in s}):
        errors.append("host_network: row count differs")
    for i, r in enumerate(rows):
        k = (r["datacenter"], r["host"], r["nicname"])
        for m, p in [(rx, "rx"), (tx, "tx")]:
            avg, p95, peak = s.get((m,) + k, (None, None, None))
            check("host_network", i, f"{p}_avg", avg)
            check("host_network", i, f"{p}_p95", p95)
            check("host_network", i, f"{p}_peak", peak)

# VMs.
if "vm_usage" in T:
    t = T["vm_usage"]["source"]
    M = {
        "cpu": "vscope.vm.cpu.usage.perc", "ram": "vscope.vm.mem.usage.perc", "ready": "vscope.vm.cpu.ready",
        "io_r": "vscope.vm.disk.io.read", "io_w": "vscope.vm.disk.io.write",
        "bw_r": "vscope.vm.disk.bandwidth.read", "bw_w": "vscope.vm.disk.bandwidth.write",
        "lat_r": "vscope.vm.disk.latency.read", "lat_w": "vscope.vm.disk.latency.write",
    }
    s = stats(t, list(M.values()), ["datacenter", "vm"])
    get = lambda m, dc, vm: s.get((M[m], dc, vm), (None, None, None))
    rows = T["vm_usage"]["rows"]
    vms = sorted({(k[1], k[2]) for k in s})
    if len(rows) != len(vms):
        errors.append(f"vm_usage: {len(rows)} rows, duckdb has {len(vms)} VMs")
    cols = [("cpu_avg", "cpu", 0), ("cpu_p95", "cpu", 1), ("cpu_peak", "cpu", 2),
            ("ram_avg", "ram", 0), ("ram_p95", "ram", 1), ("ram_peak", "ram", 2),
            ("cpu_ready_avg", "ready", 0), ("cpu_ready_p95", "ready", 1),
            ("disk_io_read_p95", "io_r", 1), ("disk_io_write_p95", "io_w", 1),
            ("disk_bandwidth_read_p95", "bw_r", 1), ("disk_bandwidth_write_p95", "bw_w", 1),
            ("disk_latency_read_p95", "lat_r", 1), ("disk_latency_write_p95", "lat_w", 1)]
    for i, r in enumerate(rows):
        for col, m, j in cols:
            check("vm_usage", i, col, get(m, r["datacenter"], r["vm"])[j])
    over_cpu, over_ram = P["over_provisioned_cpu_p95_below_pct"], P["over_provisioned_ram_p95_below_pct"]
    ready_ms = P["under_provisioned_cpu_ready_p95_ms"]
    want_over, want_under = set(), set()
    for dc, vm in vms:
        c, ra, rd = get("cpu", dc, vm)[1], get("ram", dc, vm)[1], get("ready", dc, vm)[1]
        if c is not None and ra is not None and c < over_cpu and ra < over_ram:
            want_over.add((dc, vm))
        if (c is not None and c >= thr) or (ra is not None and ra >= thr) or (rd is not None and rd >= ready_ms):
            want_under.add((dc, vm))
    for name, want in [("vm_over_provisioned", want_over), ("vm_under_provisioned", want_under)]:
        got = {(r["datacenter"], r["vm"]) for r in T[name]["rows"]}
        if got != want:
            errors.append(f"{name}: report {sorted(got)} != duckdb {sorted(want)}")
        for i, r in enumerate(T[name]["rows"]):
            dc, vm = r["datacenter"], r["vm"]
            check(name, i, "cpu_p95", get("cpu", dc, vm)[1])
            check(name, i, "ram_p95", get("ram", dc, vm)[1])
            check(name, i, "cpu_ready_p95", get("ready", dc, vm)[1])

# Datastores.
if "datastore_forecast" in T:
    t = T["datastore_forecast"]["source"]
    y = "avg" if is_rollup(t) else "value"
    used = "vscope.filer.datastore.diskspace.used"
    q = (f"SELECT datacenter, datastore, count(*), regr_slope(y, x), regr_intercept(y, x), regr_r2(y, x), "
         f"arg_min(y, t), arg_max(y, t) FROM (SELECT datacenter, datastore, epoch_ms(ts) AS t, "
         f"(epoch_ms(ts) - {FROM}) / {DAY_MS} AS x, {y}::DOUBLE AS y FROM {period(t, [used])} WHERE {y} IS NOT NULL) "
         f"GROUP BY ALL")
    fits = {(r[0], r[1]): r[2:] for r in con.execute(q).fetchall()}
    caps = {}
    try:
        for dc, ds, v, u in con.execute(
            f"SELECT datacenter, datastore, arg_max(size_value, snapshot_ts), arg_max(size_unit, snapshot_ts) "
            f"FROM {src('filers')} GROUP BY ALL").fetchall():
            if v is not None and u is not None:
                caps[(dc, ds)] = v * UNIT_KB[u.upper()]
    except duckdb.Error:
        pass  # no filers inventory table
    override = P["capacity_override_kb"]
    rows = T["datastore_forecast"]["rows"]
    if len(rows) != len(fits):
        errors.append(f"datastore_forecast: {len(rows)} rows, duckdb {len(fits)}")
    end_day = (TO - FROM) / DAY_MS
    for i, r in enumerate(rows):
        n, slope, icpt, r2, first, last = fits[(r["datacenter"], r["datastore"])]
        check("datastore_forecast", i, "points", n)
        check("datastore_forecast", i, "first_used", first / KB_PER_GB)
        check("datastore_forecast", i, "last_used", last / KB_PER_GB)
        check("datastore_forecast", i, "slope", slope / KB_PER_GB, rel=1e-6)
        check("datastore_forecast", i, "r2", r2 if r2 is not None else 0.0, rel=1e-6, abs_tol=1e-9)
        cap = override if override is not None else caps.get((r["datacenter"], r["datastore"]))
        check("datastore_forecast", i, "capacity", None if cap is None else cap / KB_PER_GB)
        check("datastore_forecast", i, "used_pct", None if cap is None else last / cap * 100)
        if cap is None:
            days = None
        elif last >= cap:
            days = 0.0
        elif slope <= 0:
            days = None
        else:
            days = max((cap - icpt) / slope - end_day, 0.0)
        # Forecast of a fitted line far out: relative to the distance, plus a minute.
        check("datastore_forecast", i, "days_until_full", days, rel=1e-6, abs_tol=1e-3)

# Completeness.
if "completeness" in T:
    rows = T["completeness"]["rows"]
    by_table = {}
    for i, r in enumerate(rows):
        by_table.setdefault(r["table"], []).append(i)
    for table, idx in by_table.items():
        cols = [c[0] for c in con.execute(f"DESCRIBE SELECT * FROM {src(table)}").fetchall()]
        obj = next(c for c in ("vm", "datastore", "host") if c in cols)
        labels = ["datacenter", obj] + (["nicname"] if "nicname" in cols else [])
        present = "value" if "value" in cols else "count"
        keys = ", ".join(["metric"] + labels)
        # Gaps need each series' own median: a second pass joined on the key.
        q = (f"WITH d AS (SELECT {keys}, t - lag(t) OVER (PARTITION BY {keys} ORDER BY t) AS d FROM "
             f"(SELECT {keys}, epoch_ms(ts) AS t FROM {period(table)} WHERE {present} IS NOT NULL)), "
             f"m AS (SELECT {keys}, count(*) AS n, quantile_cont(d, 0.5) AS step FROM d GROUP BY ALL) "
             f"SELECT m.*, (SELECT count(*) FROM d WHERE d.d > 1.5 * m.step AND "
             + " AND ".join(f"d.{k} IS NOT DISTINCT FROM m.{k}" for k in ["metric"] + labels)
             + ") FROM m")
        n = 1 + len(labels)
        facts = {tuple(r[:n]): r[n:] for r in con.execute(q).fetchall()}
        if len(facts) != len(idx):
            errors.append(f"completeness {table}: {len(idx)} rows, duckdb {len(facts)} series")
        for i in idx:
            r = rows[i]
            k = (r["metric"], r["datacenter"], r["object"]) + ((r["nicname"],) if "nicname" in cols else ())
            cnt, step, gaps = facts[k]
            expected = math.floor((TO - FROM) / step) if step else None
            check("completeness", i, "step", step / 1000.0 if step is not None else None)
            check("completeness", i, "present", cnt)
            check("completeness", i, "gaps", gaps)
            check("completeness", i, "expected", expected)
            check("completeness", i, "missing", None if expected is None else max(expected - cnt, 0))
            check("completeness", i, "completeness_pct", cnt / expected * 100 if expected else None)

# Summary: totals of the completeness rows (checked above) and the period.
if "summary" in T:
    kv = {r["item"]: i for i, r in enumerate(T["summary"]["rows"])}
    comp = T["completeness"]["rows"]

    def put(item, v, rel=1e-9):
        i = kv[item]
        got = T["summary"]["rows"][i]["value"]
        checked.add(("summary", i, "value"))
        if not (got == v if isinstance(v, str) else close(got, v, rel)):
            errors.append(f"summary.{item}: {got!r} != {v!r}")

    exp = sum(r["expected"] if r["expected"] is not None else r["present"] for r in comp)
    pres = sum(r["present"] for r in comp)
    put("period_days", (TO - FROM) / DAY_MS)
    put("series", len(comp))
    put("points_expected", exp)
    put("points_present", pres)
    put("gaps", sum(r["gaps"] for r in comp))
    put("completeness_pct", pres / exp * 100)
    put("threshold_pct", thr)

if "findings" in T:
    rows = T["findings"]["rows"]
    order = ["critical", "high", "medium", "info"]
    for i, r in enumerate(rows):
        check("findings", i, "rank", i + 1)
        if i and order.index(r["severity"]) < order.index(rows[i - 1]["severity"]):
            errors.append("findings not sorted by severity")
    if len(rows) > 15:
        errors.append("more than 15 findings")

# Capacity (time remaining, N+1) and rightsizing / reclaimable: tests/py/report_capacity.py.
sys.path.insert(0, __import__("os").path.dirname(__file__))
import report_capacity  # noqa: E402

report_capacity.check_capacity(con, T, P, FROM, TO, period, src, is_rollup, check, errors)
report_capacity.check_rightsizing(con, T, P, period, src, T.get("reclaimable", {}).get("source"), check, errors)

# Every numeric cell must have been checked.
cells = 0
for name, t in T.items():
    for i, r in enumerate(t["rows"]):
        for c, v in r.items():
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                cells += 1
                if (name, i, c) not in checked:
                    errors.append(f"unchecked number {name}[{i}].{c} = {v}")

print(json.dumps({"checked": len(checked), "cells": cells, "errors": errors[:50], "error_count": len(errors)}))
sys.exit(1 if errors else 0)
