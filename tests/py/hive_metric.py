"""Reads TABLE of a vscope-etl sink partitioned by metric with DuckDB and prints, per file, the
`metric` column stored in the file and the value DuckDB decodes from the Hive path
(`hive_partitioning = true`), as JSON: [[file_metric, hive_metric], ...], sorted.

Usage: hive_metric.py SINK TABLE

SINK is a directory, or s3://bucket/prefix with S3_ENDPOINT (host:port), S3_KEY and S3_SECRET
set (read through the httpfs extension, as in duckdb_facts.py).
"""
import json
import sys

import duckdb

from duckdb_facts import connect


def main():
    sink, table = sys.argv[1], sys.argv[2]
    con = connect(sink)
    src = f"'{sink}/{table}/**/*.parquet'"
    in_file = dict(con.execute(
        f"SELECT DISTINCT filename, metric FROM read_parquet({src}, hive_partitioning = false, filename = true)"
    ).fetchall())
    in_path = dict(con.execute(
        f"SELECT DISTINCT filename, metric FROM read_parquet({src}, hive_partitioning = true, filename = true)"
    ).fetchall())
    assert in_file.keys() == in_path.keys(), (in_file, in_path)
    print(json.dumps(sorted([in_file[f], in_path[f]] for f in in_file)))


if __name__ == "__main__":
    main()
