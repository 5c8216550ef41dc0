#!/usr/bin/env python3
"""Checks that every e2e output holds the same (series, ts, value) multiset as vscope-etl's.

One DuckDB scan per output: row count, distinct (series, ts) count, and an order-independent
fingerprint of the rows (the sum of 64-bit hashes of (metric, datacenter, env, vm, ts, value)).
Usage: check_outputs.py OUT_DIR [PEER...]  (each peer's output is OUT_DIR/PEER.parquet)
"""
import sys

import duckdb

out, peers = sys.argv[1], sys.argv[2:]
con = duckdb.connect()
ours = f"""SELECT metric, datacenter, map_extract_value(tags, 'env') AS env, vm,
                  epoch_ms(ts) AS t, value
           FROM read_parquet('{out}/rust_raw/vm_metrics/**/*.parquet')"""
outputs = {"vscope-etl": ours,
           "vscope-etl raw+rollup run": ours.replace("rust_raw", "rust_rollup")}
for p in peers:
    outputs[p] = (f"SELECT metric, datacenter, env, vm, epoch_ms(ts) AS t, value "
                  f"FROM read_parquet('{out}/{p}.parquet')")
ref = None
for name, q in outputs.items():
    row = con.execute(f"""SELECT count(*), count(DISTINCT (metric, datacenter, env, vm, t)),
                                 sum(hash(metric, datacenter, env, vm, t, value)::HUGEINT)
                          FROM ({q})""").fetchone()
    if ref is None:
        ref = row
        if row[0] != row[1]:
            sys.exit(f"vscope-etl output has {row[0] - row[1]} duplicate (series, ts)")
    same = row == ref
    print(f"   {name:<28} rows {row[0]:>10}  {'same' if same else f'DIFFERENT: {row} vs {ref}'}")
    if not same:
        sys.exit(1)
rollup = con.execute(
    f"SELECT count(*) FROM read_parquet('{out}/rust_rollup/vm_metrics_1h/**/*.parquet')"
).fetchone()[0]
print(f"   rollup table rows {rollup}")
