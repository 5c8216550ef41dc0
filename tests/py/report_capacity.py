"""DuckDB recomputation of the capacity and rightsizing tables of a `vscope-etl report` JSON.

Used by report_check.py (which owns the connection, the period and the every-number-checked
rule). The statistics come from SQL (hourly means, bucket p95 with quantile_cont, regr_slope /
regr_intercept / regr_r2, the residual sum of squares); the forecast dates are solved in closed
form here (the band's edges meet the capacity where a quadratic is zero), whereas the report
bisects: two independent routes to the same dates.
"""
import math

DAY_MS = 86_400_000
HOUR_MS = 3_600_000
KB_PER_GB = 1024.0 * 1024.0
HORIZON_DAYS = 3650.0
T_975 = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160,
         2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056,
         2.052, 2.048, 2.045, 2.042]
HOST_CPU, HOST_RAM = "vscope.host.cpu.usage.perc", "vscope.host.mem.usage.perc"
VM_CPU, VM_RAM = "vscope.vm.cpu.usage.perc", "vscope.vm.mem.usage.perc"
VM_RX, VM_TX = "vscope.vm.net.rx", "vscope.vm.net.tx"
USED = "vscope.filer.datastore.diskspace.used"


def t975(df):
    if df <= 30:
        return T_975[df - 1]
    z, v = 1.959964, float(df)
    return z + (z ** 3 + z) / (4 * v) + (5 * z ** 5 + 16 * z ** 3 + 3 * z) / (96 * v * v)


def date_of(to_ms, days):
    import datetime
    ms = to_ms + int(days * DAY_MS)
    return datetime.datetime.fromtimestamp(ms / 1000, datetime.timezone.utc).strftime("%Y-%m-%d")


def bucket_fits(con, points_sql, keys, frm):
    """{keys: (n, slope, intercept, r2, sse, mean_x, sxx, last_y)} from a query of (keys, b, y)."""
    k = ", ".join(keys)
    q = (f"WITH p AS (SELECT {k}, (b - {frm}) / {DAY_MS} AS x, y FROM ({points_sql})), "
         f"f AS (SELECT {k}, count(*) AS n, regr_slope(y, x) AS s, regr_intercept(y, x) AS i, "
         f"regr_r2(y, x) AS r2, avg(x) AS mx, regr_sxx(y, x) AS sxx, arg_max(y, x) AS last FROM p GROUP BY ALL) "
         f"SELECT f.*, (SELECT sum(power(p.y - (f.i + f.s * p.x), 2)) FROM p WHERE "
         + " AND ".join(f"p.{c} IS NOT DISTINCT FROM f.{c}" for c in keys)
         + ") AS sse FROM f")
    out = {}
    for r in con.execute(q).fetchall():
        n, s, i, r2, mx, sxx, last, sse = r[len(keys):]
        out[tuple(r[:len(keys)])] = dict(n=n, slope=s, icpt=i, r2=r2, mx=mx, sxx=sxx, last=last, sse=sse)
    return out


def remaining(f, cap, end_day, to_ms):
    """(status, days, date, earliest, latest) with the report's definitions."""
    if f["n"] < 3 or f["sxx"] is None or f["sxx"] <= 0:
        return ("not enough data", None, None, None, None)
    if f["last"] >= cap:
        return ("already", 0.0, None, None, None)
    b, a = f["slope"], f["icpt"]
    if b <= 0:
        return ("never", None, None, None, None)
    central = (cap - a) / b
    if central > end_day + HORIZON_DAYS:
        return ("beyond_horizon", None, None, None, None)
    central = max(central, end_day)
    n = f["n"]
    tt = t975(n - 2) * math.sqrt(f["sse"] / (n - 2))
    k = tt * tt / f["sxx"]
    c = cap - a
    mx = f["mx"]
    # (c - b x)^2 = tt^2 (1 + 1/n) + k (x - mx)^2
    qa = b * b - k
    qb = -2 * b * c + 2 * k * mx
    qc = c * c - tt * tt * (1 + 1 / n) - k * mx * mx
    roots = []
    if abs(qa) > 1e-15:
        disc = qb * qb - 4 * qa * qc
        if disc >= 0:
            roots = [(-qb - math.sqrt(disc)) / (2 * qa), (-qb + math.sqrt(disc)) / (2 * qa)]
    else:
        roots = [-qc / qb]
    # Upper edge: a root where c - b x >= 0 (before the central crossing); lower: after it.
    upper = [x for x in roots if c - b * x >= -1e-9 and x <= central + 1e-9]
    lower = [x for x in roots if c - b * x <= 1e-9 and x >= central - 1e-9]
    # The last root before the central crossing: further left the band widens again.
    earliest = max(max(upper), end_day) if upper else end_day
    latest = min(lower) if lower and qa > 0 else None
    if latest is not None and latest > end_day + HORIZON_DAYS:
        latest = None
    return ("in_days", central - end_day, date_of(to_ms, central - end_day),
            date_of(to_ms, earliest - end_day),
            None if latest is None else date_of(to_ms, latest - end_day))


def check_capacity(con, T, P, frm, to, period, src, is_rollup, check, errors):
    bucket = P["trend_bucket_ms"]
    want_bucket = DAY_MS if to - frm >= 7 * DAY_MS else HOUR_MS
    if bucket != want_bucket:
        errors.append(f"trend bucket {bucket} != {want_bucket}")
    end_day = (to - frm) / DAY_MS
    bsql = lambda h: f"{frm} + floor(({h} - {frm}) / {bucket})::BIGINT * {bucket}"
    cols = ["status", "days_remaining", "date", "earliest_date", "latest_date"]

    def check_remaining(table, i, f, cap):
        want = remaining(f, cap, end_day, to)
        for c, v in zip(cols, want):
            if c == "days_remaining":
                check(table, i, c, v, rel=1e-6, abs_tol=1e-6)
            else:
                check(table, i, c, v)

    if "time_remaining" in T and T["time_remaining"]["source"]:
        t = T["time_remaining"]["source"]
        y = "avg" if is_rollup(t) else "value"
        hourly = (f"SELECT metric, datacenter, host, epoch_ms(ts) // {HOUR_MS} * {HOUR_MS} AS h, avg({y}) AS v "
                  f"FROM {period(t, [HOST_CPU, HOST_RAM])} GROUP BY ALL")
        dc_hour = f"SELECT metric, datacenter, h, avg(v) AS mean, sum(v) AS total FROM ({hourly}) GROUP BY ALL"
        pts = (f"SELECT metric, datacenter, {bsql('h')} AS b, quantile_cont(mean, 0.95) AS y "
               f"FROM ({dc_hour}) GROUP BY ALL")
        fits = bucket_fits(con, pts, ["metric", "datacenter"], frm)
        usable = {"CPU": (HOST_CPU, P["usable_cpu_pct"]), "RAM": (HOST_RAM, P["usable_ram_pct"])}
        rows = T["time_remaining"]["rows"]
        if len(rows) != len(fits):
            errors.append(f"time_remaining: {len(rows)} rows, duckdb {len(fits)}")
        for i, r in enumerate(rows):
            m, u = usable[r["resource"]]
            f = fits[(m, r["datacenter"])]
            check("time_remaining", i, "buckets", f["n"])
            check("time_remaining", i, "last_p95", f["last"])
            check("time_remaining", i, "slope", f["slope"] if f["n"] >= 3 else None, rel=1e-6, abs_tol=1e-9)
            check("time_remaining", i, "r2", f["r2"] if f["n"] >= 3 else None, rel=1e-6, abs_tol=1e-9)
            check("time_remaining", i, "usable", u)
            check_remaining("time_remaining", i, f, u)
        # N+1.
        demand = {(r[0], r[1]): r[2] for r in con.execute(
            f"SELECT metric, datacenter, quantile_cont(total, 0.95) FROM ({dc_hour}) GROUP BY ALL").fetchall()}
        hosts = {}
        for m, dc, host, p in con.execute(
                f"SELECT metric, datacenter, host, quantile_cont(v, 0.95) FROM ({hourly}) GROUP BY ALL").fetchall():
            hosts.setdefault((m, dc), []).append((p, host))
        rows = T["headroom_n1"]["rows"]
        if len(rows) != len(demand):
            errors.append(f"headroom_n1: {len(rows)} rows, duckdb {len(demand)}")
        for i, r in enumerate(rows):
            m, u = usable[r["resource"]]
            key = (m, r["datacenter"])
            n = len(hosts[key])
            p, host = sorted(hosts[key], key=lambda x: (-x[0], x[1]))[0]
            d = demand[key]
            util = d / (n - 1) if n > 1 else None
            check("headroom_n1", i, "hosts", n)
            check("headroom_n1", i, "busiest_host", host)
            check("headroom_n1", i, "busiest_host_p95", p)
            check("headroom_n1", i, "demand_p95", d)
            check("headroom_n1", i, "capacity_n_minus_1", (n - 1) * 100.0)
            check("headroom_n1", i, "utilisation_n_minus_1", util)
            check("headroom_n1", i, "usable", u)
            want = ("no (a single host)" if util is None else "yes" if util <= u
                    else "over usable" if util <= 100 else "no")
            check("headroom_n1", i, "survives", want)

    if "datastore_time_remaining" in T:
        t = T["datastore_time_remaining"]["source"]
        y = "avg" if is_rollup(t) else "value"
        hourly = (f"SELECT datacenter, datastore, epoch_ms(ts) // {HOUR_MS} * {HOUR_MS} AS h, avg({y}) AS v "
                  f"FROM {period(t, [USED])} GROUP BY ALL")
        pts = (f"SELECT datacenter, datastore, {bsql('h')} AS b, quantile_cont(v, 0.95) / {KB_PER_GB} AS y "
               f"FROM ({hourly}) GROUP BY ALL")
        fits = bucket_fits(con, pts, ["datacenter", "datastore"], frm)
        caps = {}
        try:
            for dc, ds, v, unit in con.execute(
                    f"SELECT datacenter, datastore, arg_max(size_value, snapshot_ts), arg_max(size_unit, snapshot_ts) "
                    f"FROM {src('filers')} GROUP BY ALL").fetchall():
                if v is not None and unit is not None:
                    caps[(dc, ds)] = v * {"KB": 1, "MB": 1024, "GB": KB_PER_GB, "TB": KB_PER_GB * 1024}[unit.upper()]
        except Exception:
            pass
        override = P["capacity_override_kb"]
        pct = P["usable_datastore_pct"]
        rows = T["datastore_time_remaining"]["rows"]
        if len(rows) != len(fits):
            errors.append(f"datastore_time_remaining: {len(rows)} rows, duckdb {len(fits)}")
        for i, r in enumerate(rows):
            f = fits[(r["datacenter"], r["datastore"])]
            cap = override if override is not None else caps.get((r["datacenter"], r["datastore"]))
            cap_gb = None if cap is None else cap / KB_PER_GB
            check("datastore_time_remaining", i, "buckets", f["n"])
            check("datastore_time_remaining", i, "last_p95", f["last"])
            check("datastore_time_remaining", i, "slope", f["slope"] if f["n"] >= 3 else None, rel=1e-6,
                  abs_tol=1e-9)
            check("datastore_time_remaining", i, "capacity", cap_gb)
            check("datastore_time_remaining", i, "usable", None if cap_gb is None else cap_gb * pct / 100)
            if cap_gb is None:
                check("datastore_time_remaining", i, "status", "unknown capacity")
            else:
                check_remaining("datastore_time_remaining", i, f, cap_gb * pct / 100)


def check_rightsizing(con, T, P, period, src, vm_table, check, errors):
    if "rightsizing" not in T:
        return
    basis = P["rightsize_on"]
    stat = "quantile_cont" if basis == "p95" else "max"
    y = lambda rollup: ("p95" if basis == "p95" else "max") if rollup else "value"
    rollup = vm_table is not None and "p95" in [c[0] for c in con.execute(
        f"DESCRIBE SELECT * FROM {src(vm_table)}").fetchall()]
    use = {}
    p95 = {}
    if vm_table is not None:
        q = "quantile_cont({c}, 0.95)" if basis == "p95" else "max({c})"
        for m, dc, vm, u, p in con.execute(
                f"SELECT metric, datacenter, vm, {q.format(c=y(rollup))}, "
                f"quantile_cont({'p95' if rollup else 'value'}, 0.95) "
                f"FROM {period(vm_table, [VM_CPU, VM_RAM, VM_RX, VM_TX])} GROUP BY ALL").fetchall():
            use[(m, dc, vm)] = u
            p95[(m, dc, vm)] = p
    inv = {}
    try:
        for dc, vm, name, power, cpu, mem in con.execute(
                f"SELECT datacenter, vm, name, power_state, cpu_num, memory_max FROM "
                f"(SELECT *, max(snapshot_ts) OVER (PARTITION BY datacenter) AS last FROM {src('vms')}) "
                f"WHERE snapshot_ts = last").fetchall():
            inv[(dc, vm)] = (name, power, cpu, None if mem is None else mem / 1024.0)
    except Exception:
        pass
    cpu_t, ram_t = P["usable_cpu_pct"], P["usable_ram_pct"]
    sized, reclaim = {}, {}
    for (dc, vm), (name, power, n, gb) in inv.items():
        cu, ru = use.get((VM_CPU, dc, vm)), use.get((VM_RAM, dc, vm))
        if power == "poweredOn" and None not in (n, gb, cu, ru):
            rc = max(1, math.ceil(n * cu / cpu_t - 1e-9))
            rg = max(1.0, math.ceil(gb * ru / ram_t - 1e-9))
            sized[(dc, vm)] = (name, n, cu, rc, gb, ru, rg)
    has_net = any(k[0] in (VM_RX, VM_TX) for k in p95)
    keys = {(k[1], k[2]) for k in p95} | set(inv)
    for dc, vm in keys:
        name, power, n, gb = inv.get((dc, vm), (None, None, None, None))
        c = p95.get((VM_CPU, dc, vm))
        quiet = lambda m: p95.get((m, dc, vm)) is not None and p95[(m, dc, vm)] < P["idle_net_p95_below"]
        if power == "poweredOff":
            reclaim[(dc, vm)] = (name, power, n, gb, c)
        elif c is not None and c < P["idle_cpu_p95_below_pct"] and (not has_net or (quiet(VM_RX) and quiet(VM_TX))):
            reclaim[(dc, vm)] = (name, power, n, gb, c)
    rows = T["rightsizing"]["rows"]
    if {(r["datacenter"], r["vm"]) for r in rows} != set(sized):
        errors.append(f"rightsizing: VMs {sorted((r['datacenter'], r['vm']) for r in rows)} != {sorted(sized)}")
    for i, r in enumerate(rows):
        name, n, cu, rc, gb, ru, rg = sized.get((r["datacenter"], r["vm"]), (None,) * 7)
        check("rightsizing", i, "name", name)
        check("rightsizing", i, "vcpu", n)
        check("rightsizing", i, f"cpu_{basis}", cu)
        check("rightsizing", i, "vcpu_recommended", rc)
        check("rightsizing", i, "vcpu_delta", None if rc is None else rc - n)
        check("rightsizing", i, "memory", gb)
        check("rightsizing", i, f"ram_{basis}", ru)
        check("rightsizing", i, "memory_recommended", rg)
        check("rightsizing", i, "memory_delta", None if rg is None else rg - gb)
    rows = T["reclaimable"]["rows"]
    if {(r["datacenter"], r["vm"]) for r in rows} != set(reclaim):
        errors.append(f"reclaimable: VMs {sorted((r['datacenter'], r['vm']) for r in rows)} != {sorted(reclaim)}")
    for i, r in enumerate(rows):
        dc, vm = r["datacenter"], r["vm"]
        name, power, n, gb, c = reclaim.get((dc, vm), (None,) * 5)
        check("reclaimable", i, "vcpu", n)
        check("reclaimable", i, "memory", gb)
        check("reclaimable", i, "cpu_p95", c)
        check("reclaimable", i, "net_rx_p95", p95.get((VM_RX, dc, vm)))
        check("reclaimable", i, "net_tx_p95", p95.get((VM_TX, dc, vm)))
        check("reclaimable", i, "power_state", power)
    per = {}
    for (dc, _), (_, n, _, rc, gb, _, rg) in sized.items():
        a = per.setdefault(dc, [0] * 9)
        a[0] += 1; a[1] += n; a[2] += rc; a[3] += gb; a[4] += rg
    for (dc, _), (_, _, n, gb, _) in reclaim.items():
        a = per.setdefault(dc, [0] * 9)
        a[5] += 1; a[6] += n or 0; a[7] += gb or 0.0
    rows = T["rightsizing_summary"]["rows"]
    for i, r in enumerate(rows):
        a = per.get(r["datacenter"], [0] * 9)
        check("rightsizing_summary", i, "vms_sized", a[0])
        check("rightsizing_summary", i, "vcpu", a[1])
        check("rightsizing_summary", i, "vcpu_recommended", a[2])
        check("rightsizing_summary", i, "vcpu_delta", a[2] - a[1])
        check("rightsizing_summary", i, "memory", a[3])
        check("rightsizing_summary", i, "memory_recommended", a[4])
        check("rightsizing_summary", i, "memory_delta", a[4] - a[3])
        check("rightsizing_summary", i, "reclaimable_vms", a[5])
        check("rightsizing_summary", i, "reclaimable_vcpu", a[6])
        check("rightsizing_summary", i, "reclaimable_memory", a[7])
    missing = set(per) - {r["datacenter"] for r in rows}
    if missing:
        errors.append(f"rightsizing_summary: datacenters missing {sorted(missing)}")
