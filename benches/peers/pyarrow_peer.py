#!/usr/bin/env python3
"""Peer: Python json or orjson + numpy + pyarrow convert the recorded answers to one sorted
Parquet file (dictionary string columns, ts ms, value float64, ZSTD(1), 1 Mi-row row groups).

Points are clipped to the half-open window named by each file (OpenTSDB's end is inclusive),
series sorted by (metric, datacenter, env, vm), points by ts, as the ETL does. INPUT `files`
(default) reads the per-(metric, datacenter, window) answers DATA_DIR/query/*/*/, `one` the
single answer of the whole day DATA_DIR/one/ (benches/one_answer.py).
Usage: pyarrow_peer.py DATA_DIR OUT.parquet json|orjson [files|one]
"""
import glob
import os
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

data, out, lib = sys.argv[1], sys.argv[2], sys.argv[3]
mode = sys.argv[4] if len(sys.argv) > 4 else "files"
pattern = {"files": ("query", "*", "*", "*.json"), "one": ("one", "*.json")}[mode]
if lib == "orjson":
    import orjson

    def load(path):
        with open(path, "rb") as f:
            return orjson.loads(f.read())
else:
    import json

    def load(path):
        with open(path, "rb") as f:
            return json.loads(f.read())

series = {}
for path in glob.glob(os.path.join(data, *pattern)):
    w_start, w_end = (int(x) for x in os.path.basename(path)[:-5].split("-"))
    for s in load(path):
        tags = s["tags"]
        key = (s["metric"], tags.get("datacenter"), tags.get("env"), tags.get("vm"))
        dps = s["dps"]
        ts = np.fromiter((int(k) for k in dps.keys()), dtype=np.int64, count=len(dps))
        vals = np.fromiter((v if v is not None else np.nan for v in dps.values()),
                           dtype=np.float64, count=len(dps))
        keep = (ts >= w_start) & (ts < w_end)
        series.setdefault(key, []).append((ts[keep], vals[keep]))

keys = sorted(series)
ts_parts, val_parts, lengths = [], [], []
for k in keys:
    ts = np.concatenate([p[0] for p in series[k]])
    vals = np.concatenate([p[1] for p in series[k]])
    order = np.argsort(ts, kind="stable")
    ts_parts.append(ts[order])
    val_parts.append(vals[order])
    lengths.append(len(ts))
ts = np.concatenate(ts_parts)
vals = np.concatenate(val_parts)
lengths = np.array(lengths)
series_idx = np.repeat(np.arange(len(keys)), lengths)


def dict_column(pos):
    values = sorted({k[pos] for k in keys})
    index = {v: i for i, v in enumerate(values)}
    per_series = np.array([index[k[pos]] for k in keys], dtype=np.int32)
    return pa.DictionaryArray.from_arrays(pa.array(per_series[series_idx]), pa.array(values))


table = pa.table({
    "metric": dict_column(0),
    "datacenter": dict_column(1),
    "env": dict_column(2),
    "vm": dict_column(3),
    "ts": pa.array(ts.astype("datetime64[ms]")),
    "value": pa.array(vals, from_pandas=True),
})
pq.write_table(table, out, compression="zstd", compression_level=1, row_group_size=1 << 20)
