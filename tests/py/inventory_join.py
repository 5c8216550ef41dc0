"""Joins the metric tables with the live inventory snapshots in DuckDB, as an analyst would,
and prints facts as JSON.

Usage: inventory_join.py SINK

For each pair (vm_metrics/vms on datacenter+vm, host_metrics/hosts on datacenter+host,
filer_metrics/filers on datacenter+datastore): metric rows, rows that find their object in the
latest snapshot, rows that do not, and a sample of the joined attributes. Also the column types
DuckDB sees for the snapshot tables. The Rust test (tests/e2e/inventory.rs) asserts on these.
"""
import json
import sys

import duckdb

PAIRS = [
    ("vm_metrics", "vms", "vm", "name"),
    ("host_metrics", "hosts", "host", "cpu_num"),
    ("filer_metrics", "filers", "datastore", "size_value"),
]


def src(sink, table):
    return f"read_parquet('{sink}/{table}/**/*.parquet', hive_partitioning = true)"


def main():
    sink = sys.argv[1]
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    facts = {}
    for metrics, objects, label, attr in PAIRS:
        # The current state: the latest snapshot only (each snapshot adds a file).
        latest = (
            f"(SELECT * FROM {src(sink, objects)} "
            f"WHERE snapshot_ts = (SELECT max(snapshot_ts) FROM {src(sink, objects)}))"
        )
        rows, matched, unmatched, with_attr = con.execute(
            f"""
            SELECT count(*),
                   count(o.{label}),
                   count(*) - count(o.{label}),
                   count(o.{attr})
            FROM {src(sink, metrics)} m
            LEFT JOIN {latest} o ON m.datacenter = o.datacenter AND m.{label} = o.{label}
            """
        ).fetchone()
        types = {
            c[0]: c[1]
            for c in con.execute(f"DESCRIBE SELECT * FROM {src(sink, objects)}").fetchall()
        }
        objects_n = con.execute(f"SELECT count(*) FROM {latest}").fetchone()[0]
        facts[metrics] = {
            "rows": rows,
            "matched": matched,
            "unmatched": unmatched,
            "with_attr": with_attr,
            "objects": objects_n,
            "types": types,
        }
    # One analyst question: average CPU usage per VM display name and power state.
    facts["vm_cpu_by_name"] = [
        [name, state, n]
        for name, state, n in con.execute(
            f"""
            SELECT v.name, v.power_state, count(*)
            FROM {src(sink, 'vm_metrics')} m
            JOIN {src(sink, 'vms')} v USING (datacenter, vm)
            WHERE m.metric = 'vscope.vm.cpu.usage.perc'
            GROUP BY ALL ORDER BY 1 LIMIT 3
            """
        ).fetchall()
    ]
    print(json.dumps(facts))


if __name__ == "__main__":
    main()
