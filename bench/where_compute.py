#!/usr/bin/env python3
"""Where a search's compute goes before it finds a near-optimal configuration.

Reads the controllers' databases that `search_benchmark.py --workdir DIR` keeps (one
topotune.db per lane, every job in it one run) and, for each run that succeeded, splits
the compute spent before its cost point (the benchmark's definition: the incumbent is
near-optimal from then on; the engine's own stops, no bound applied here) by the kind of
trial it went to:

  near      near-optimal configurations
  reached   other trials that reached the target
  learning  trials whose accuracy left chance (>= CHANCE) but never reached the target
  flat      trials still below CHANCE, their accuracy changing
  stuck     trials still below CHANCE whose last 3 accuracies are identical (a network
            that predicts one class)

It also prints when a near-optimal configuration was first proposed (trial number over
all runs, failed ones included; `never` = not in the run's trials) and, of the trials that
ended by epoch 3, the share of the cost their epochs 2 and 3 took.

It names the incumbent by the least single TTA, as jobs with one seed do: since session 41
the forecast's default reruns a winner on 3 seeds (tuner/seed_groups.h), so give the
search --incumbent-seeds 1.

  python3 bench/search_benchmark.py --table bench/replay/T.csv --seeds 160 --grid-seeds 0 \\
      --algorithms forecast --optuna '' --quiet --workdir /tmp/wd --incumbent-seeds 1
  python3 bench/where_compute.py /tmp/wd bench/replay/T.csv [--target X]
"""

import argparse
import collections
import glob
import os
import sqlite3
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import search_benchmark as sb  # noqa: E402

CHANCE = 0.15
KINDS = ["near", "reached", "learning", "flat", "stuck"]


def runs_of(workdir, table, truth):
    """Yields (configuration of each trial number, events in the order trained) per job."""
    dbs = sorted(glob.glob(os.path.join(workdir, "lane*", "topotune.db")))
    if not dbs:
        sys.exit(f"no lane*/topotune.db under {workdir}")
    for db in dbs:
        con = sqlite3.connect(db)
        try:
            for (job,) in con.execute("SELECT id FROM jobs"):
                config = {n: table.nearest(b, lr, o) for n, b, lr, o in con.execute(
                    "SELECT number, batch_size, learning_rate, optimizer FROM trials "
                    "WHERE job_id = ?", (job,))}
                events = con.execute(
                    "SELECT t.number, cp.epoch, cp.val_accuracy, cp.compute_s + cp.comm_s "
                    "FROM curve_points cp JOIN trials t ON t.id = cp.trial_id "
                    "WHERE t.job_id = ? ORDER BY cp.rowid", (job,)).fetchall()
                yield config, events
        finally:
            con.close()


def until_cost_point(events, config, truth):
    """Each trial's (epoch, accuracy, seconds) up to the run's cost point, the trials that
    reached the target by then, and the cost; None if the run never got there."""
    spent = collections.defaultdict(list)
    reached = set()
    incumbent, incumbent_s = None, float("inf")
    cost = 0.0
    for number, epoch, accuracy, seconds in events:
        if number in reached:
            continue
        cost += seconds
        spent[number].append((epoch, accuracy, seconds))
        if accuracy >= truth.target:
            reached.add(number)
            trained = sum(s for _, _, s in spent[number])
            if trained < incumbent_s:
                incumbent, incumbent_s = number, trained
        if incumbent is not None and truth.near_optimal(config[incumbent]):
            return spent, reached, cost
    return None


def kind(number, points, reached, config, truth):
    if truth.near_optimal(config[number]):
        return "near"
    if number in reached:
        return "reached"
    accuracies = [a for _, a, _ in points]
    if max(accuracies) >= CHANCE:
        return "learning"
    if len(accuracies) >= 3 and len(set(accuracies[-3:])) == 1:
        return "stuck"
    return "flat"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("workdir", help="search_benchmark.py --workdir folder")
    ap.add_argument("table", help="the replay table the runs replayed")
    ap.add_argument("--target", type=float, default=None,
                    help="default: the table's '# bench_target=' comment, else 0.80")
    args = ap.parse_args()
    table = sb.Table(args.table)
    target = args.target
    if target is None:
        target = float(table.meta.get("bench_target", 0.80))
    truth = sb.Truth(table, target)
    grid = truth.grid_full

    share = collections.Counter()
    trials = collections.Counter()
    epochs = collections.Counter()
    first_near = []
    succeeded = failed = 0
    cost_total = early_23 = 0.0
    for config, events in runs_of(args.workdir, table, truth):
        near = [n for n in config if truth.near_optimal(config[n])]
        first_near.append(min(near) if near else None)
        result = until_cost_point(events, config, truth)
        if result is None:
            failed += 1
            continue
        spent, reached, cost = result
        succeeded += 1
        cost_total += cost
        for number, points in spent.items():
            k = kind(number, points, reached, config, truth)
            share[k] += sum(s for _, _, s in points) / grid
            trials[k] += 1
            epochs[k] += len(points)
            if k not in ("near", "reached") and len(points) <= 3:
                early_23 += sum(s for e, _, s in points if e >= 2)

    if not succeeded:
        sys.exit(f"no run reached a near-optimal configuration ({failed} failed)")
    proposed = sorted(f for f in first_near if f is not None)
    never = sum(f is None for f in first_near)
    quartile = (lambda q: proposed[min(len(proposed) - 1, int(q * len(proposed)))]
                if proposed else "-")
    print(f"{succeeded} successful runs, {failed} failed; target {target}")
    print(f"first near-optimal proposal (trial number): quartiles {quartile(0.25)} / "
          f"{quartile(0.5)} / {quartile(0.75)}; never proposed in {never} runs")
    print("per successful run, before its cost point:")
    print(f"{'kind':10s} {'grid share':>10s} {'trials':>7s} {'epochs':>7s}")
    for k in KINDS + ["all"]:
        s = sum(share.values()) if k == "all" else share[k]
        t = sum(trials.values()) if k == "all" else trials[k]
        e = sum(epochs.values()) if k == "all" else epochs[k]
        print(f"{k:10s} {s / succeeded:10.4f} {t / succeeded:7.1f} {e / succeeded:7.1f}")
    print(f"epochs 2-3 of non-winning trials that ended by epoch 3: "
          f"{early_23 / succeeded / grid:.4f} of grid ({100 * early_23 / cost_total:.0f}% of "
          f"the cost)")


if __name__ == "__main__":
    main()
