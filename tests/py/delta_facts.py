"""What two Delta readers we did not write see of our tables, and the same facts of the plain
Parquet layout, to compare them (tests/e2e/delta.rs).

    delta_facts.py delta SINK TABLE [VERSION]    # deltalake (delta-rs) and DuckDB's delta extension
    delta_facts.py parquet SINK TABLE            # read_parquet over TABLE/**/*.parquet
    delta_facts.py sorted FILE                   # rows of one file out of (series, ts) order

Prints one JSON object: per reader, the row count and an order-independent digest of every row
(all columns but the partition column `date`, `ts` as epoch milliseconds, so the microseconds a
Delta reader gives compare with our milliseconds), plus the number of distinct rows; for Delta,
the table version read and its file count. A VERSION reads that version (time travel, deltalake
only: DuckDB's extension reads the latest).
"""

import glob
import json
import os
import sys

import duckdb


def digest(con, relation):
    """Rows, distinct rows and a digest of `relation` (a FROM clause)."""
    q = f"""
        WITH t AS (SELECT * EXCLUDE (date) REPLACE (epoch_ms(ts) AS ts) FROM {relation})
        SELECT count(*), (SELECT count(*) FROM (SELECT DISTINCT * FROM t)),
               coalesce(sum(hash(t)::HUGEINT), 0)::VARCHAR
        FROM t"""
    rows, distinct, h = con.execute(q).fetchone()
    return {"rows": rows, "distinct": distinct, "digest": h}


def connect():
    con = duckdb.connect(config={"allow_unsigned_extensions": "true"})
    con.execute("SET TimeZone = 'UTC'")
    return con


def delta(sink, table, version):
    import deltalake

    path = os.path.join(sink, table)
    dt = deltalake.DeltaTable(path, version=version)
    arrow_table = dt.to_pyarrow_table()
    con = connect()
    con.register("from_delta_rs", arrow_table)
    out = {
        "version": dt.version(),
        "files": len(dt.file_uris()),
        "deltalake": digest(con, "from_delta_rs"),
    }
    if version is None:
        ext = glob.glob(os.path.join(os.path.dirname(duckdb.__file__), "..", "duckdb_ext",
                                     "extensions", "v*", "*", "delta.duckdb_extension"))
        if not ext:
            sys.exit("duckdb delta extension not found: run scripts/setup-python.sh")
        con.execute(f"LOAD '{ext[0]}'")
        out["duckdb"] = digest(con, f"delta_scan('{path}')")
    return out


def parquet(sink, table):
    con = connect()
    files = os.path.join(sink, table, "**", "*.parquet")
    return {"parquet": digest(con, f"read_parquet('{files}', hive_partitioning = true)")}


def unsorted(path):
    """Rows of the file at PATH, in file order, that sort before the row above them by its
    series (the string columns in schema order: metric, datacenter, the labels) and ts: a
    merged file must have none, as a window's file has none."""
    con = connect()
    described = con.execute(f"DESCRIBE SELECT * FROM read_parquet('{path}')").fetchall()
    labels = [c[0] for c in described if c[1] == "VARCHAR"]
    key = ", ".join([f"coalesce({c}, '')" for c in labels] + ["ts"])
    q = f"""
        WITH t AS (SELECT row_number() OVER () AS rn, {", ".join(labels)}, epoch_ms(ts) AS ts
                   FROM read_parquet('{path}'))
        SELECT count(*) FILTER (WHERE prev > cur), count(*) FROM (
            SELECT row({key}) AS cur, lag(row({key})) OVER (ORDER BY rn) AS prev FROM t)"""
    bad, rows = con.execute(q).fetchone()
    return {"out_of_order": bad, "rows": rows}


def main():
    if sys.argv[1] == "sorted":
        print(json.dumps(unsorted(sys.argv[2])))
        return
    kind, sink, table = sys.argv[1:4]
    version = int(sys.argv[4]) if len(sys.argv) > 4 else None
    facts = delta(sink, table, version) if kind == "delta" else parquet(sink, table)
    print(json.dumps(facts))


if __name__ == "__main__":
    main()
