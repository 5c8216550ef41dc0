#!/usr/bin/env python3
"""Renders the fixed benchmark dataset as recorded OpenTSDB answers, deterministically.

Dataset (as in shared/reference/performance.md): 2000 series vm-00001..vm-02000, the 13 first
vScope VM metrics assigned round-robin, tags datacenter (40 values) / vm / env, one point every
20 s (5 % of timestamps are 1 s late), values random walks rounded to 2 decimals and printed
with Python's shortest round-trip repr (e.g. ``30900550.95``, ``4.3``). ``--days 10`` gives the
10x variant (10 windows of one day).

Layout written under OUT (what ``vscope-etl sim --replay OUT`` serves, see crates/sim/src/replay.rs):

* ``lookup/<metric>.json``: the ``/api/search/lookup`` answer of the metric (every series).
* ``query/<metric>/<datacenter>/<start_ms>-<end_ms>.json``: the ``/api/query`` answer to
  ``{"start": start_ms, "end": end_ms, "msResolution": true, "queries": [{"metric": metric,
  "aggregator": "none", "filters": [literal_or datacenter]}]}``, one per day window. Like
  OpenTSDB, the end is inclusive and series come in no particular order (shuffled here).
* ``meta.json``: sizes, for the bench script.

The same arguments always give byte-identical files (seeded ``random.Random``).
"""

import argparse
import json
import os
import random

METRICS = [
    "vscope.vm.cpu.usage.perc",
    "vscope.vm.mem.usage.perc",
    "vscope.vm.mem.tps",
    "vscope.vm.cpu.ready",
    "vscope.vm.net.rx",
    "vscope.vm.net.tx",
    "vscope.vm.net.packetsrx",
    "vscope.vm.net.packetstx",
    "vscope.vm.disk.io.read",
    "vscope.vm.disk.io.write",
    "vscope.vm.disk.bandwidth.read",
    "vscope.vm.disk.bandwidth.write",
    "vscope.vm.disk.latency.read",
]
DATACENTERS = 40
DAY_MS = 86_400_000
STEP_MS = 20_000
# 2026-11-01T00:00:00Z
START_MS = 1_793_491_200_000


def series_tags(i):
    return {
        "datacenter": f"pcc-1_datacenter{i % DATACENTERS + 1}",
        "env": "prod" if i % 3 else "dev",
        "vm": f"vm-{i + 1:05d}",
    }


def next_point(rng, s, t):
    """The point of series `s` due at `t` (1 s late 5 % of the time), advancing its walk."""
    ts = t + 1000 if rng.random() < 0.05 else t
    s["v"] = abs(s["v"] + (rng.random() - 0.5) * s["scale"] * 0.02)
    return ts, round(s["v"], 2)


def render_points(rng, s, w_start, w_end, end_ms):
    """One series' `dps` body for the window: its points in [w_start, w_end) and, like
    OpenTSDB's inclusive end, the next window's first point when it is stamped exactly w_end.
    That point is kept in s["carry"] so the next window answers the very same point."""
    parts = []
    append = parts.append
    t = w_start
    while t < w_end:
        if s.get("carry") is not None:
            ts, v = s.pop("carry")
        else:
            ts, v = next_point(rng, s, t)
        append(f'"{ts}":{v!r}')
        t += STEP_MS
    if w_end < end_ms:
        s["carry"] = next_point(rng, s, w_end)
        if s["carry"][0] <= w_end:
            append(f'"{s["carry"][0]}":{s["carry"][1]!r}')
    return ",".join(parts)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("--series", type=int, default=2000)
    ap.add_argument("--days", type=int, default=1)
    args = ap.parse_args()

    end_ms = START_MS + args.days * DAY_MS
    # Series identities and per-series random walks (state carried across days).
    series = []
    for i in range(args.series):
        m = METRICS[i % len(METRICS)]
        scale = 10.0 ** (i % 8)
        series.append({"metric": m, "tags": series_tags(i), "scale": scale,
                       "v": scale * (1 + (i % 7))})
    os.makedirs(os.path.join(args.out, "lookup"), exist_ok=True)
    for m in METRICS:
        results = [{"metric": m, "tags": s["tags"], "tsuid": f"{j:018X}"}
                   for j, s in enumerate(series) if s["metric"] == m]
        answer = {"type": "LOOKUP", "metric": m, "tags": [], "limit": 1_000_000,
                  "time": 1, "results": results, "startIndex": 0,
                  "totalResults": len(results)}
        with open(os.path.join(args.out, "lookup", f"{m}.json"), "w") as f:
            json.dump(answer, f, separators=(",", ":"))

    groups = {}
    for j, s in enumerate(series):
        groups.setdefault((s["metric"], s["tags"]["datacenter"]), []).append(j)
    rng = random.Random(20261101)
    files = 0
    points = 0
    for d in range(args.days):
        w_start = START_MS + d * DAY_MS
        w_end = w_start + DAY_MS
        for (m, dc), members in sorted(groups.items()):
            order = list(members)
            rng.shuffle(order)
            chunks = []
            for j in order:
                s = series[j]
                body = render_points(rng, s, w_start, w_end, end_ms)
                points += body.count(":")
                tags = json.dumps(s["tags"], separators=(",", ":"))
                chunks.append(f'{{"metric":"{m}","tags":{tags},"aggregateTags":[],'
                              f'"dps":{{{body}}}}}')
            d_dir = os.path.join(args.out, "query", m, dc)
            os.makedirs(d_dir, exist_ok=True)
            with open(os.path.join(d_dir, f"{w_start}-{w_end}.json"), "w") as f:
                f.write("[" + ",".join(chunks) + "]")
            files += 1
    meta = {"series": args.series, "days": args.days, "start_ms": START_MS, "end_ms": end_ms,
            "answers": files, "points_rendered": points}
    with open(os.path.join(args.out, "meta.json"), "w") as f:
        json.dump(meta, f, indent=1)
    print(json.dumps(meta))


if __name__ == "__main__":
    main()
