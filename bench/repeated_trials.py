#!/usr/bin/env python3
"""How many of a search's trials train a configuration the run had already trained.

Reads the controllers' databases that `search_benchmark.py --workdir DIR` keeps (one
topotune.db per lane, every job in it one run). Each trial is snapped to its recorded
configuration as the replay worker snaps it (ReplayTable::Nearest); a trial is a repeat
when the run had trained that recorded point before. The controller's reruns on other
seeds (incumbent_seeds, reason "reruns trial N ...") are not counted. Prints, per run, the
median and mean share of the grid's compute the repeats took, the median total, the mean
number of repeats, and quantiles of each repeat's distance in the normalised space (log
learning rate and log2 batch size over the table's ranges, each in [0, 1]) from the
nearest earlier trial of the same point.

  python3 bench/search_benchmark.py --table bench/replay/T.csv --seeds 40 --grid-seeds 0 \\
      --algorithms forecast --optuna '' --quiet --workdir /tmp/wd
  python3 bench/repeated_trials.py /tmp/wd bench/replay/T.csv
"""

import argparse
import glob
import math
import os
import sqlite3
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import search_benchmark as sb  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("workdir", help="search_benchmark.py --workdir folder")
    ap.add_argument("table", help="the replay table the runs replayed")
    args = ap.parse_args()
    table = sb.Table(args.table)
    truth = sb.Truth(table, float(table.meta.get("bench_target", 0.80)))
    lr_lo, lr_hi = math.log(table.lrs[0]), math.log(table.lrs[-1])
    b_lo, b_hi = math.log2(table.batch_sizes[0]), math.log2(table.batch_sizes[-1])

    def point(b, lr):
        return ((math.log(lr) - lr_lo) / max(lr_hi - lr_lo, 1e-12),
                (math.log2(b) - b_lo) / max(b_hi - b_lo, 1e-12))

    repeat_cost, total, repeats, distances = [], [], [], []
    dbs = sorted(glob.glob(os.path.join(args.workdir, "lane*", "topotune.db")))
    if not dbs:
        sys.exit(f"no lane*/topotune.db under {args.workdir}")
    for db in dbs:
        con = sqlite3.connect(db)
        try:
            for (job,) in con.execute("SELECT id FROM jobs"):
                seen = {}
                cost = spent = 0.0
                n = 0
                for b, lr, o, train_s in con.execute(
                        "SELECT batch_size, learning_rate, optimizer, train_s FROM trials "
                        "WHERE job_id = ? AND reason NOT LIKE 'reruns trial%' ORDER BY number",
                        (job,)):
                    key = table.nearest(b, lr, o)
                    x = point(b, lr)
                    spent += train_s
                    if key in seen:
                        cost += train_s
                        n += 1
                        distances.append(min(math.dist(x, y) for y in seen[key]))
                    seen.setdefault(key, []).append(x)
                repeat_cost.append(cost / truth.grid_full)
                total.append(spent / truth.grid_full)
                repeats.append(n)
        finally:
            con.close()
    print(f"runs {len(total)}; repeats' compute per run: median {statistics.median(repeat_cost):.3f}"
          f", mean {statistics.mean(repeat_cost):.3f} of grid; total compute median "
          f"{statistics.median(total):.3f}; repeats per run, mean {statistics.mean(repeats):.1f}")
    if distances:
        distances.sort()
        qs = [distances[min(len(distances) - 1, int(q * len(distances)))]
              for q in (0.1, 0.25, 0.5, 0.75, 0.9)]
        print("distance to the earlier trial of the same point, quantiles 10/25/50/75/90%: " +
              " ".join(f"{q:.3f}" for q in qs))


if __name__ == "__main__":
    main()
