#!/usr/bin/env python3
"""The target accuracy of a replay table, by the rule fixed before any tuner runs on it.

    bench/table_target.py TABLE.csv [--share 0.05]

Rule: a configuration's best accuracy is the highest val_accuracy any epoch of it reaches on
every seed recorded for it (the minimum over its seeds of each seed's best); the target is
the highest accuracy that at least `share` of the configurations (at least one) reach, rounded
down to 0.005. Prints the "# bench_target=" and "# target_rule=" lines to put in the table's
header, and what the rule found: the top accuracies, and for each configuration that reaches
the target on every seed, on how many epochs of each seed it is at or above it. A
configuration that touches the target on one epoch of a seed reaches it by that epoch's
noise; with one seed per configuration the benchmark's truth then rests on it (session 40,
bench/RESULTS.md), and the script says so.
"""

import argparse
import csv
import math
import sys


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("table")
    ap.add_argument("--share", type=float, default=0.05)
    args = ap.parse_args()
    curves = {}  # (batch, lr, optimizer) -> {seed: [val_accuracy by epoch]}
    with open(args.table) as f:
        rows = (line for line in f if not line.startswith("#"))
        for r in csv.DictReader(rows):
            key = (int(r["batch_size"]), float(r["lr"]), r["optimizer"])
            curves.setdefault(key, {}).setdefault(r["seed"], []).append(float(r["val_accuracy"]))
    best = {key: {seed: max(c) for seed, c in seeds.items()} for key, seeds in curves.items()}
    if not best:
        sys.exit(f"{args.table}: no rows")
    per_config = sorted((min(s.values()) for s in best.values()), reverse=True)
    k = max(1, math.ceil(args.share * len(per_config)))
    target = math.floor(per_config[k - 1] * 200) / 200
    print(f"# bench_target={target:.3f}")
    print(f"# target_rule=the highest accuracy reached (on every seed) by at least "
          f"{args.share:.0%} of the {len(per_config)} configurations ({k}), rounded down to "
          f"0.005")
    print(f"(best accuracies, top {k + 3}: " +
          ", ".join(f"{a:.3f}" for a in per_config[:k + 3]) + ")", file=sys.stderr)
    single = 0
    for key, seeds in sorted(curves.items()):
        above = [sum(a >= target for a in seeds[s]) for s in sorted(seeds)]
        if min(above) == 0:
            continue
        single += min(above) == 1
        print(f"{key[0]}/{key[1]:g}/{key[2]}: epochs at or above {target:.3f} on each seed: " +
              ", ".join(str(n) for n in above), file=sys.stderr)
    if single:
        print(f"{single} of these reach the target on a single epoch of some seed: that epoch's "
              "noise decides them; more seeds make the truth robust", file=sys.stderr)


if __name__ == "__main__":
    main()
