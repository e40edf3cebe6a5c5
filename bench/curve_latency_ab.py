#!/usr/bin/env python3
"""The curve model's prediction latency on the replay tables, two builds side by side.

Runs two `bench_curve_calibration` binaries (A: a baseline, B: a change) in alternating
order, A B B A A B ..., each round on every table at the 25%, 50% and 75% cuts with
`--levels --json`, pinned to one core with taskset. Prints per table and cut the median
over rounds of each build's p50, p99 and max latency (microseconds; "max" is the median of
the rounds' maxima) and the ratio B/A of the p99s. It also compares, in every round, each
table and cut's digest of all predictions (every sample and P(reach)): it fails unless the
two builds predicted alike, sample for sample, so that the times compared are of the same
work; with --predictions-may-differ it reports where they differ and still succeeds, for
a change meant to alter the predictions (then check them with the calibration and the
search benchmark).

  python3 bench/curve_latency_ab.py A_BINARY B_BINARY [--rounds 5] [--core 1]
      [--predictions-may-differ] [TABLE.csv...]

Both binaries must print `predictions_digest` (bench/curve_calibration.cc since session 37).
For a baseline older than that, compile this bench/curve_calibration.cc against the
baseline's tuner library, for example:
  g++ -O3 -DNDEBUG -std=c++17 -I. -I/usr/include/eigen3 bench/curve_calibration.cc \
      build/workers/libtopotune_replay.a BASELINE/libtopotune_tuner.a -o A -lpthread
The tables default to bench/replay/*.csv.
"""

import argparse
import glob
import json
import os
import statistics
import subprocess
import sys

def run(binary, tables, core):
    out = subprocess.run(["taskset", "-c", str(core), binary, "--levels", "--json", "--cuts",
                          "0.25,0.5,0.75", *tables], capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"{binary} failed ({out.returncode}): {out.stderr.strip()}")
    rows = {}
    for line in out.stdout.splitlines():
        row = json.loads(line)
        if row.get("kind") == "reliability":
            continue
        rows[(row["table"], row["cut"])] = row
    return rows


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("a")
    ap.add_argument("b")
    ap.add_argument("tables", nargs="*")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--core", type=int, default=1)
    ap.add_argument("--predictions-may-differ", action="store_true",
                    help="report, do not fail on, tables and cuts predicted differently")
    args = ap.parse_intermixed_args()
    if args.rounds < 1:
        sys.exit("--rounds must be at least 1")
    tables = args.tables or sorted(glob.glob(os.path.join(here, "replay", "*.csv")))
    runs = {"a": [], "b": []}
    for r in range(args.rounds):
        order = ("a", "b") if r % 2 == 0 else ("b", "a")
        for which in order:
            runs[which].append(run(getattr(args, which), tables, args.core))
    keys = set(runs["a"][0])
    differ = set()
    for a_rows, b_rows in zip(runs["a"], runs["b"]):
        if set(a_rows) != keys or set(b_rows) != keys:
            sys.exit("the two builds reported different tables or cuts")
        differ |= {key for key in keys
                   if a_rows[key].get("predictions_digest") is None or
                   a_rows[key]["predictions_digest"] != b_rows[key].get("predictions_digest")}
    print(f"{args.rounds} rounds, alternating, core {args.core}; A = {args.a}, B = {args.b}")
    print(f"{'table':32} {'cut':>5} {'A p50':>7} {'A p99':>7} {'A max':>7} "
          f"{'B p50':>7} {'B p99':>7} {'B max':>7} {'p99 B/A':>8}")
    for key in sorted(keys):
        med = {w: {s: statistics.median(r[key][f"latency_{s}_us"] for r in runs[w])
                   for s in ("p50", "p99", "max")} for w in ("a", "b")}
        print(f"{key[0]:32} {key[1]:5.2f} {med['a']['p50']:7.0f} {med['a']['p99']:7.0f} "
              f"{med['a']['max']:7.0f} {med['b']['p50']:7.0f} {med['b']['p99']:7.0f} "
              f"{med['b']['max']:7.0f} {med['b']['p99'] / med['a']['p99']:8.3f}")
    if differ:
        print("the two builds predicted differently (or gave no digest) at: " +
              ", ".join(f"{t} {c:.2f}" for t, c in sorted(differ)))
        if not args.predictions_may_differ:
            sys.exit(1)
        return
    print("both builds predicted alike, sample for sample, at every table and cut")


if __name__ == "__main__":
    main()
