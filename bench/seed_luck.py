#!/usr/bin/env python3
"""What seed luck does to a search's success on a replay table with several seeds.

    bench/seed_luck.py TABLE.csv [--target X] [--draws 20000] [--confirm 2,3,5]

A search that names its incumbent as the trial of least observed time-to-accuracy (TTA),
as search_benchmark.py did for every job before session 41 (and still does for a job with
incumbent_seeds 1), calls the run a success when that configuration's true TTA (the mean over the
seeds recorded for it) is within 10% of the best. A trial replays one recorded seed. Where
seeds of one configuration differ by more than that 10%, a trial's seed can decide which
configuration looks best.

This script draws, many times over, one recorded seed for every configuration, names the
least observed TTA, and prints how often that is near-optimal: the success of a search that
trains every configuration once to the target (a grid on random seeds). It is not a bound
on other searches: one that never trains a configuration on its lucky seed, or stops it
first, can do better.

Then, for each k of --confirm, the same draws with the k least observed trained again on
every recorded seed and the least mean named: what confirming the top k across seeds would
reach, and what those confirmations cost (median over the draws, as a share of the grid,
each stopped at its target or at twice the least observed TTA, as the engine's
confirmations are; the naming takes every seed's whole TTA, so it does not count what such a
stop would hide). Nothing is trained; a few seconds.
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import search_benchmark as sb  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("table")
    ap.add_argument("--target", type=float, help="default: the table's '# bench_target=' line")
    ap.add_argument("--draws", type=int, default=20000)
    ap.add_argument("--confirm", default="2,3,5", help="k values, comma-separated")
    args = ap.parse_args()

    table = sb.Table(args.table)
    target = args.target if args.target is not None else float(table.meta.get("bench_target", 0.80))
    truth = sb.Truth(table, target)
    if truth.reaching == 0:
        sys.exit(f"no configuration reaches {target} on every seed it has: lower --target")
    ks = [int(x) for x in args.confirm.split(",") if x]
    once, confirmed = sb.seed_luck(table, truth, args.draws, ks)

    seeds = sorted({len(s) for s in table.curves.values()})
    print(f"{args.table}: target {target}, seeds per configuration {seeds}, "
          f"near-optimal: {', '.join('%d/%g/%s' % k for k in truth.near)}")
    print(f"  each configuration once, least observed TTA named: near-optimal in "
          f"{100.0 * once:.1f}% of {args.draws} draws")
    for k in ks:
        share, cost = confirmed[k]
        print(f"  then the {k} least observed on every seed, least mean named: "
              f"{100.0 * share:.1f}%, for {cost:.3f} of grid")


if __name__ == "__main__":
    main()
