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

With ``--warp``, also Warp 10's answers to the same data (what ``crates/sim/src/replay_warp.rs``
serves to ``source.protocol = "warp10"``), the OpenTSDB files unchanged (same random draws):

* ``find/<metric>.txt``: the ``/api/v0/find`` answer to ``<metric>{}`` (the client's discovery
  selector): one ``class{labels}{}`` line per series, in the lookup's order.
* ``fetch/<metric>/<datacenter>/<start_ms>-<end_ms>.txt``: the ``/api/v0/fetch?format=text``
  answer to ``<metric>{datacenter=<dc>}`` for exactly ``[start_ms, end_ms)`` (Warp's range has
  no inclusive end: the client asks ``now = end*1000 - 1``, ``timespan = (end-start)*1000``),
  written as the simulator writes it (crates/sim/src/warp10.rs): the series in the JSON
  answer's order, each newest point first, ``TS// class{labels} VALUE`` then ``=TS// VALUE``,
  timestamps in microseconds, names percent-encoded, values as Java's ``Double.toString``.

The same arguments always give byte-identical files (seeded ``random.Random``).
"""

import argparse
import json
import os
import random
import string

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


def render_points(rng, s, w_start, w_end, end_ms, window=None):
    """One series' `dps` body for the window: its points in [w_start, w_end) and, like
    OpenTSDB's inclusive end, the next window's first point when it is stamped exactly w_end.
    That point is kept in s["carry"] so the next window answers the very same point.
    With `window` (a list), the points in [w_start, w_end) are also appended to it as
    (ts, value), for the Warp 10 answer: the same draws, so both answers hold the same data."""
    parts = []
    append = parts.append
    keep = window.append if window is not None else None
    t = w_start
    while t < w_end:
        if s.get("carry") is not None:
            ts, v = s.pop("carry")
        else:
            ts, v = next_point(rng, s, t)
        append(f'"{ts}":{v!r}')
        if keep is not None:
            keep((ts, v))
        t += STEP_MS
    if w_end < end_ms:
        s["carry"] = next_point(rng, s, w_end)
        if s["carry"][0] <= w_end:
            append(f'"{s["carry"][0]}":{s["carry"][1]!r}')
    return ",".join(parts)


def java_double(v):
    """`v` as Java's `Double.toString` writes it (Warp's `GTSHelper.encodeValue`, the
    simulator's `push_java_double`): the shortest round-trip digits (Python's repr), plain
    with a decimal point in [1e-3, 1e7) (`4.38`, `5.0`), else `d.dddE<exp>` (`3.090055095E7`,
    `1.0E-4`)."""
    r = repr(v)
    a = abs(v)
    if a == 0.0 or 1e-3 <= a < 1e7:
        return r  # repr is plain with a '.' from 1e-4 to 1e16
    sign = "-" if r.startswith("-") else ""
    mant, _, exp = r.lstrip("-").partition("e")
    whole, _, frac = mant.partition(".")
    digits = whole + frac
    lead = len(digits) - len(digits.lstrip("0"))
    digits = digits.strip("0") or "0"
    exp10 = len(whole) - 1 - lead + (int(exp) if exp else 0)
    return f"{sign}{digits[0]}.{digits[1:] or '0'}E{exp10}"


NAME_SAFE = frozenset(string.ascii_letters + string.digits + ".-*_")


def encode_name(name):
    """`name` as Warp's `GTSHelper.encodeName` writes it (the simulator's `encode_name`):
    ASCII letters, digits and `.-*_` as they are, every other UTF-8 byte `%XX`."""
    return "".join(chr(b) if chr(b) in NAME_SAFE else f"%{b:02X}" for b in name.encode())


def warp_class(metric, tags):
    """`class{label=value,...}`, labels in name order (the simulator's `push_class_labels`)."""
    labels = ",".join(f"{encode_name(k)}={encode_name(v)}" for k, v in sorted(tags.items()))
    return f"{encode_name(metric)}{{{labels}}}"


def warp_series(name, points):
    """One series of a `/api/v0/fetch?format=text` answer: newest point first, as Warp reads
    its store, the first line with the series' name, microsecond timestamps."""
    if not points:
        return ""  # Warp prints nothing for a series without points in range
    lines = []
    append = lines.append
    last = len(points) - 1
    for n in range(last, -1, -1):
        ts, v = points[n]
        if n == last:
            append(f"{ts * 1000}// {name} {java_double(v)}\n")
        else:
            append(f"={ts * 1000}// {java_double(v)}\n")
    return "".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("--series", type=int, default=2000)
    ap.add_argument("--days", type=int, default=1)
    ap.add_argument("--warp", action="store_true",
                    help="also write the Warp 10 answers (find/, fetch/) of the same data")
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
    if args.warp:
        os.makedirs(os.path.join(args.out, "find"), exist_ok=True)
        for m in METRICS:
            with open(os.path.join(args.out, "find", f"{m}.txt"), "w") as f:
                f.write("".join(f"{warp_class(m, s['tags'])}{{}}\n"
                                for s in series if s["metric"] == m))

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
            warp = None
            if args.warp:
                w_dir = os.path.join(args.out, "fetch", m, dc)
                os.makedirs(w_dir, exist_ok=True)
                warp = open(os.path.join(w_dir, f"{w_start}-{w_end}.txt"), "w")
            window = [] if warp is not None else None
            for j in order:
                s = series[j]
                body = render_points(rng, s, w_start, w_end, end_ms, window)
                points += body.count(":")
                tags = json.dumps(s["tags"], separators=(",", ":"))
                chunks.append(f'{{"metric":"{m}","tags":{tags},"aggregateTags":[],'
                              f'"dps":{{{body}}}}}')
                if warp is not None:
                    # Written series by series: one series' points held at a time.
                    warp.write(warp_series(warp_class(m, s["tags"]), window))
                    window.clear()
            if warp is not None:
                warp.close()
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
