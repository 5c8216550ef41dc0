#!/usr/bin/env python3
"""Peer: DuckDB converts the recorded answers to one sorted Parquet file.

read_json over the answers (dps as MAP(VARCHAR, DOUBLE)), unnest(map_entries(dps)), points
clipped to the half-open window named by the file (OpenTSDB's end is inclusive, like the ETL
does), ORDER BY (metric, datacenter, env, vm, ts), COPY to Parquet ZSTD(1), 1 Mi-row row groups.
INPUT `files` (default) reads the per-(metric, datacenter, window) answers DATA_DIR/query/*/*/,
`one` the single answer of the whole day DATA_DIR/one/ (benches/one_answer.py).
Usage: duckdb_peer.py DATA_DIR OUT.parquet [THREADS] [files|one]
"""
import sys

import duckdb

data, out = sys.argv[1], sys.argv[2]
threads = int(sys.argv[3]) if len(sys.argv) > 3 else 2
mode = sys.argv[4] if len(sys.argv) > 4 else "files"
pattern = {"files": f"{data}/query/*/*/*.json", "one": f"{data}/one/*.json"}[mode]
con = duckdb.connect()
con.execute(f"SET threads={threads}")
con.execute("SET preserve_insertion_order=false")
con.execute(f"""
COPY (
  WITH pts AS (
    SELECT metric, tags, unnest(map_entries(dps)) AS e,
           CAST(regexp_extract(filename, '(\\d+)-(\\d+)\\.json$', 1) AS BIGINT) AS w_start,
           CAST(regexp_extract(filename, '(\\d+)-(\\d+)\\.json$', 2) AS BIGINT) AS w_end
    FROM read_json('{pattern}', format='array', filename=true,
                   columns={{metric: 'VARCHAR',
                            tags: 'STRUCT(datacenter VARCHAR, env VARCHAR, vm VARCHAR)',
                            dps: 'MAP(VARCHAR, DOUBLE)'}})
  )
  SELECT metric, tags.datacenter AS datacenter, tags.env AS env, tags.vm AS vm,
         epoch_ms(CAST(e.key AS BIGINT)) AS ts, e.value AS value
  FROM pts
  WHERE CAST(e.key AS BIGINT) >= w_start AND CAST(e.key AS BIGINT) < w_end
  ORDER BY metric, datacenter, env, vm, ts
) TO '{out}' (FORMAT parquet, COMPRESSION zstd, COMPRESSION_LEVEL 1, ROW_GROUP_SIZE 1048576)
""")
