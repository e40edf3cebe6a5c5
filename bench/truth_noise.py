#!/usr/bin/env python3
"""How far a replay table's own measurements disagree with themselves: the noise floor of
planner_holdout.py's "best at a held-out batch".

    bench/truth_noise.py --table T.csv [--target X] [--shares 0.2 0.4]

planner_holdout.py scores the planner against the table's measured best time-to-accuracy
at each batch size: the least, over the configurations that reach the target on every
seed, of their mean seconds to it. That figure is itself an estimate from a few seeds. This
script splits the table's seeds into two halves (the lower half of the seed ids and the
upper), measures the best at each batch size from each half alone, the same way, and
prints how far the two disagree:

    |a - b| / b  and  |a - b| / a, averaged: one half's figure as a prediction of the other's

at every target level planner_holdout.py uses (the table's, then the shares' levels, from
the whole table), and the same for each configuration's own seconds to the target. Both
halves carry their seeds' noise: a prediction that knew each expectation exactly would
miss one half's figure by about 1/sqrt(2) of the printed spread, and the whole table's
(twice the seeds) by about half of it. Nothing is trained; a second.
"""

import argparse
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import planner_holdout as ph  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--table", required=True)
    ap.add_argument("--target", type=float, help="default: the table's '# bench_target=' line")
    ap.add_argument("--shares", type=float, nargs="*", default=[0.2, 0.4],
                    help="lower target levels, as in planner_holdout.py")
    args = ap.parse_args()

    meta, _, rows = ph.read_table(args.table)
    seeds = sorted({r.split(",")[3] for r in rows}, key=int)
    if len(seeds) < 2:
        raise SystemExit(f"{args.table}: needs two seeds or more, has {len(seeds)}")
    halves = [set(seeds[:len(seeds) // 2]), set(seeds[len(seeds) // 2:])]
    half_rows = [[r for r in rows if r.split(",")[3] in h] for h in halves]
    target = args.target if args.target is not None else ph.target_of(meta)
    batches = sorted({int(r.split(",", 1)[0]) for r in rows})

    print(f"{os.path.basename(args.table)}: seeds {sorted(halves[0], key=int)} against "
          f"{sorted(halves[1], key=int)}; best seconds to the target at each batch size")
    print(f"{'target':>6} {'batch':>5} {'half a':>7} {'half b':>7} {'diff':>6}")
    diffs, config_diffs = [], []
    for level in ph.levels_of(rows, target, args.shares):
        truths = [ph.measured_tta(h, level) for h in half_rows]
        for key in set(truths[0]) & set(truths[1]):
            a, b = truths[0][key][0], truths[1][key][0]
            config_diffs.append(0.5 * (abs(a - b) / a + abs(a - b) / b))
        for batch in batches:
            best = [min((v[0] for (b, _, _), v in t.items() if b == batch), default=None)
                    for t in truths]
            if None in best:
                print(f"{level:6.3f} {batch:>5} {'-':>7} {'-':>7}      -  (a half has no "
                      "configuration that reaches it)")
                continue
            a, b = best
            d = 0.5 * (abs(a - b) / a + abs(a - b) / b)
            diffs.append(d)
            print(f"{level:6.3f} {batch:>5} {a:7.2f} {b:7.2f} {d:6.1%}")
    if diffs:
        print(f"\nhalf against half: median {statistics.median(diffs):.1%}, "
              f"p90 {ph.quantile(diffs, 0.9):.1%} over {len(diffs)} (level, batch size)")
    if config_diffs:
        print(f"per configuration (each that reaches the level on every seed of both halves): "
              f"median {statistics.median(config_diffs):.1%}, "
              f"p90 {ph.quantile(config_diffs, 0.9):.1%} over {len(config_diffs)}")


if __name__ == "__main__":
    sys.exit(main())
