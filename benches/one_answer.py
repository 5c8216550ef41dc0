#!/usr/bin/env python3
"""Joins the recorded answers of a one-day dataset into ONE OpenTSDB answer: every series of the
day in one JSON array, as `/api/query` gives for a single query over all of them (the peer
workload of issue #7 and shared/reference/performance.md: one 8.64 M-point answer).

Reads DATA/query/<metric>/<datacenter>/<start>-<end>.json (benches/gen_answers.py) and writes
DATA/one/<start>-<end>.json, named by its window like the per-file answers so the peers clip
points the same way. The series objects are copied byte for byte (same points, same number
formatting), in (metric, datacenter) file order. Only for a one-window dataset: with several
days, a series would appear once per day and the day files' inclusive ends would repeat points.
Written to a temporary name, then renamed, so an interrupted run leaves no partial answer.
Usage: one_answer.py DATA_DIR  (prints the path written)
"""
import glob
import json
import os
import sys

data = sys.argv[1]
meta = json.load(open(os.path.join(data, "meta.json")))
if meta["days"] != 1:
    sys.exit(f"one_answer.py: {data} has {meta['days']} windows; one answer is for one day only")
window = f"{meta['start_ms']}-{meta['end_ms']}"
paths = sorted(glob.glob(os.path.join(data, "query", "*", "*", f"{window}.json")))
if len(paths) != meta["answers"]:
    sys.exit(f"one_answer.py: found {len(paths)} answers for {window}, meta.json says {meta['answers']}")
out_dir = os.path.join(data, "one")
os.makedirs(out_dir, exist_ok=True)
out = os.path.join(out_dir, f"{window}.json")
tmp = out + ".tmp"
with open(tmp, "wb") as f:
    f.write(b"[")
    first = True
    for path in paths:
        with open(path, "rb") as src:
            body = src.read().strip()
        if not (body.startswith(b"[") and body.endswith(b"]")):
            sys.exit(f"one_answer.py: {path} is not a JSON array")
        inner = body[1:-1].strip()
        if not inner:
            continue
        if not first:
            f.write(b",")
        f.write(inner)
        first = False
    f.write(b"]")
os.replace(tmp, out)
print(out)
