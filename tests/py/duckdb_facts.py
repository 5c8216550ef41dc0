"""Reads a vscope-etl sink with DuckDB, the way an analyst would, and prints facts as JSON.

Usage: duckdb_facts.py SINK TABLE [TABLE ...]

SINK is a directory, or s3://bucket/prefix when S3_ENDPOINT (host:port), S3_KEY and S3_SECRET
are set: DuckDB then reads through its httpfs extension (installed from PyPI by
scripts/setup-python.sh, since DuckDB cannot download extensions here).

For each table: row count, per-metric count and avg(value) (the README query), the column
types DuckDB sees (partition column `date` included), the number of duplicate (key, ts) rows,
and the partition dates. The Rust tests assert on these facts.
"""
import glob
import json
import os
import sys


import duckdb


def table_facts(con, sink, table):
    src = f"read_parquet('{sink}/{table}/**/*.parquet', hive_partitioning = true)"
    cols = con.execute(f"DESCRIBE SELECT * FROM {src}").fetchall()
    types = {c[0]: c[1] for c in cols}
    keys = [c for c in types if c not in ("value", "tags", "date") and types[c] in ("VARCHAR",)]
    rows = con.execute(f"SELECT count(*) FROM {src}").fetchone()[0]
    value_col = "value" if "value" in types else ("avg" if "avg" in types else None)
    per_metric = {}
    if value_col:
        for metric, n, avg in con.execute(
            f"SELECT metric, count(*), avg({value_col}) FROM {src} GROUP BY 1 ORDER BY 1"
        ).fetchall():
            per_metric[metric] = [n, avg]
    key_list = ", ".join(keys + ["ts"])
    dups = con.execute(
        f"SELECT count(*) FROM (SELECT {key_list}, count(*) AS c FROM {src} GROUP BY ALL HAVING c > 1)"
    ).fetchone()[0]
    dates = [str(d[0]) for d in con.execute(f"SELECT DISTINCT date FROM {src} ORDER BY 1").fetchall()]
    ts_range = con.execute(
        f"SELECT CAST(epoch_ms(min(ts)) AS BIGINT), CAST(epoch_ms(max(ts)) AS BIGINT) FROM {src}"
    ).fetchone()
    bad_dates = con.execute(
        f"SELECT count(*) FROM {src} WHERE CAST(timezone('UTC', ts) AS DATE) <> date"
    ).fetchone()[0]
    tag_keys = [r[0] for r in con.execute(
        f"SELECT DISTINCT unnest(map_keys(tags)) FROM {src} ORDER BY 1"
    ).fetchall()]
    return {
        "rows": rows,
        "per_metric": per_metric,
        "types": types,
        "duplicates": dups,
        "dates": dates,
        "ts_min_ms": ts_range[0],
        "ts_max_ms": ts_range[1],
        "rows_in_wrong_date_partition": bad_dates,
        "tag_keys": tag_keys,
    }


def connect(sink):
    """A DuckDB connection in UTC that reads SINK (a directory, or S3 through httpfs)."""
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    if sink.startswith("s3://"):
        ext = glob.glob(os.path.join(os.path.dirname(duckdb.__file__), "..", "duckdb_ext",
                                     "extensions", "v*", "*", "httpfs.duckdb_extension"))
        if not ext:
            sys.exit("duckdb httpfs extension not found: run scripts/setup-python.sh")
        con.execute(f"LOAD '{ext[0]}'")
        con.execute(
            "CREATE SECRET (TYPE s3, KEY_ID ?, SECRET ?, REGION 'us-east-1', ENDPOINT ?, "
            "URL_STYLE 'path', USE_SSL false)".replace("?", "'{}'").format(
                os.environ["S3_KEY"], os.environ["S3_SECRET"], os.environ["S3_ENDPOINT"]))
    return con


def main():
    sink, tables = sys.argv[1], sys.argv[2:]
    con = connect(sink)
    print(json.dumps({t: table_facts(con, sink, t) for t in tables}))


if __name__ == "__main__":
    main()
