#!/usr/bin/env python3
"""Offline planner accuracy on held-out batch sizes.

    bench/planner_holdout.py [--topotune build/api/topotune] [--json OUT.json]
        [--table T.csv --train-samples N [--target X] [--profile PROFILE.csv]]

For every committed replay table (bench/replay/*.csv, recorded on this machine) and every
batch size B in it:

1. B's rows are removed from the table, and `topotune predict --batch-sizes B` ranks
   the remaining table's configurations at B on a single device of the recording class:
   - epochs to target: each (learning rate, optimizer) read off the nearest remaining
     batch sizes below and above B at the learning rate of equal gradient-noise
     temperature (lr x B_r / B for SGD, lr x sqrt(B_r / B) for Adam), interpolated between
     the rates recorded there; where none surround it, the same rate scaled by the
     optimizer's batch-size model (McCandlish et al., fitted to the least epochs measured
     at each remaining batch size);
   - step time: "curves" mode fits alpha + beta x batch to the remaining batch sizes'
     recorded epoch seconds, per optimizer; "probe" mode (only for the table the example profile was
     probed on, lenet_shapes_hard_cpu) uses the cpu-1t probe rows of
     examples/topologies/lenet-profile.csv with B's row removed too.
2. The truth is the full table: a configuration's time-to-accuracy at B is the mean over
   its seeds of the recorded epoch seconds summed up to the first epoch at the table's
   target (only configurations whose every seed reaches it).

Reports, per table and mode, two errors |predicted - measured| / measured:
 - best: the planner's best predicted TTA at B against the fastest measured at B (the
   question a user asks: "how fast can batch B get there?");
 - per configuration: every (learning rate, optimizer) measured at B and predicted at B.
Then the median and p90 over the held-out batch sizes (best) and over all held-out
configurations. Nothing is trained: it reads the committed tables. A few seconds.

With --table, only that table is read (for example one that bench/cross_class.py recorded
with several seeds and batch sizes): its target is its "# bench_target=" line or --target,
and --profile (PROFILE.csv rows of one class, probed on its data) adds the "probe" mode.
"""

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)

# The training set sizes of the recorded datasets: the two late tables say so in their
# "# generated=" line; the two early ones were made with topotune-datagen's default (5,000).
TRAIN_SAMPLES = {
    "lenet_shapes_cpu.csv": 5000,
    "lenet_shapes_mnist_cpu.csv": 5000,
    "lenet_shapes_hard_cpu.csv": 2000,
    "lenet_shapes_mnist_hard_cpu.csv": 1500,
}
PROBED = "lenet_shapes_hard_cpu.csv"  # the table whose data the example profile probed
PROFILE = os.path.join(REPO, "examples", "topologies", "lenet-profile.csv")


def read_table(path):
    meta, header, rows = [], None, []
    with open(path) as f:
        for line in f:
            if line.startswith("#"):
                meta.append(line)
            elif header is None:
                header = line
            elif line.strip():
                rows.append(line)
    return meta, header, rows


def measured_tta(rows, target):
    """{(batch, lr text, optimizer): (mean seconds to the target over seeds, mean first epoch
    at it)}, configurations whose every seed reaches it."""
    curves = {}
    for r in csv.reader(rows):
        key = (int(r[0]), r[1], r[2])
        curves.setdefault(key, {}).setdefault(r[3], []).append((int(r[4]), float(r[5]), float(r[6])))
    out = {}
    for key, seeds in curves.items():
        times, epochs = [], []
        for points in seeds.values():
            points.sort()
            elapsed, hit = 0.0, None
            for epoch, acc, sec in points:
                elapsed += sec
                if acc >= target:
                    hit = elapsed
                    epochs.append(epoch)
                    break
            if hit is None:
                break
            times.append(hit)
        if len(times) == len(seeds):
            out[key] = (sum(times) / len(times), sum(epochs) / len(epochs))
    return out


def target_of(meta):
    for line in meta:
        if line.startswith("# bench_target="):
            return float(line.split("=", 1)[1])
    raise SystemExit("no '# bench_target=' line")


def levels_of(rows, bench_target, shares):
    """The table's target, then for each share the highest accuracy that at least that
    share of the configurations reach on every seed (rounded down to 0.005): lower targets,
    which more configurations reach, fixed by rule before anything is predicted."""
    best = {}
    for r in csv.reader(rows):
        key, seed, acc = (r[0], r[1], r[2]), r[3], float(r[5])
        best.setdefault(key, {})[seed] = max(best.get(key, {}).get(seed, 0.0), acc)
    reached = sorted((min(seeds.values()) for seeds in best.values()), reverse=True)
    levels = [bench_target]
    for share in shares:
        k = max(1, int(share * len(reached))) - 1
        level = int(reached[k] / 0.005) * 0.005
        if all(abs(level - l) > 1e-9 for l in levels):
            levels.append(round(level, 3))
    return levels


def quantile(values, q):
    s = sorted(values)
    if not s:
        return float("nan")
    i = q * (len(s) - 1)
    lo = int(i)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (i - lo)


def predict(topotune, table_text, profile_text, train_samples, batch, target, workdir):
    table = os.path.join(workdir, "table.csv")
    profile = os.path.join(workdir, "profile.csv")
    topology = os.path.join(workdir, "topology.json")
    with open(table, "w") as f:
        f.write(table_text)
    with open(profile, "w") as f:
        f.write(profile_text)
    with open(topology, "w") as f:
        json.dump({"name": "holdout", "sites": {"here": {"cpu-1t": 1}},
                   "train_samples": train_samples,
                   "targets": [{"name": "one", "kind": "single", "class": "cpu-1t",
                                "site": "here"}]}, f)
    out = subprocess.run([topotune, "predict", "--curves", table, "--profile", profile,
                          "--topology", topology, "--curves-class", "cpu-1t",
                          "--train-samples", str(train_samples), "--batch-sizes", str(batch),
                          "--target-accuracy", str(target), "--json"], check=True, capture_output=True, text=True).stdout
    ranked = json.loads(out)["targets"][0]["ranked"]
    return {(r["config"]["learning_rate"], r["config"]["optimizer"]): r
            for r in ranked if r["config"]["batch_size"] == batch}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--topotune", default=os.path.join(REPO, "build", "api", "topotune"))
    ap.add_argument("--json", help="also write every row here")
    ap.add_argument("--shares", type=float, nargs="*", default=[0.2, 0.4],
                    help="lower target levels: reached by these shares of configurations")
    ap.add_argument("--table", help="read this table instead of the committed ones")
    ap.add_argument("--train-samples", type=int, help="--table's training samples")
    ap.add_argument("--target", type=float, help="--table's target, if it has no bench_target")
    ap.add_argument("--profile", help="--table's probe profile (its rows' class is renamed)")
    args = ap.parse_args()

    tables = {os.path.join(HERE, "replay", name): n for name, n in TRAIN_SAMPLES.items()}
    probed, profile_path = os.path.join(HERE, "replay", PROBED), PROFILE
    if args.table:
        if not args.train_samples:
            ap.error("--table needs --train-samples")
        tables = {args.table: args.train_samples}
        probed, profile_path = (args.table, args.profile) if args.profile else (None, PROFILE)
    with open(profile_path) as f:
        lines = f.readlines()
    if args.table and args.profile:  # one class's rows, as the class the planner is asked for
        lines = ["cpu-1t," + l.split(",", 1)[1] for l in lines[1:] if l.strip()]
    profile_lines = lines
    header_only = "device_class,nodes,devices_per_node,local_batch,step_seconds,sync_seconds\n"
    records = []
    with tempfile.TemporaryDirectory() as workdir:
        for path in sorted(tables):
            name = os.path.basename(path)
            meta, header, rows = read_table(path)
            batches = sorted({int(r.split(",", 1)[0]) for r in rows})
            modes = ["curves"] + (["probe"] if path == probed else [])
            table_target = args.target if args.table and args.target else target_of(meta)
            for target, mode, batch in [(t, m, b)
                                        for t in levels_of(rows, table_target, args.shares)
                                        for m in modes for b in batches]:
                truth = measured_tta(rows, target)
                kept = [r for r in rows if int(r.split(",", 1)[0]) != batch]
                text = "".join(meta) + header + "".join(kept)
                if mode == "curves":
                    profile = header_only
                else:  # the probe's cpu-1t rows, without the held-out batch
                    profile = header_only + "".join(
                        l for l in profile_lines
                        if l.startswith("cpu-1t,") and int(l.split(",")[3]) != batch)
                got = predict(args.topotune, text, profile, tables[path], batch, target, workdir)
                at_batch = {(float(lr), opt): v for (b, lr, opt), v in truth.items()
                            if b == batch}
                pairs = []
                for (lr, opt), (seconds, epochs) in at_batch.items():
                    p = next((r for (plr, popt), r in got.items()
                              if popt == opt and abs(plr - lr) <= 1e-9 * lr), None)
                    if p is not None:
                        pairs.append((lr, opt, p["tta_s"]["value"], seconds,
                                      p["tta_s"]["lo"] <= seconds <= p["tta_s"]["hi"],
                                      p["terms"]["epochs"]["value"], epochs))
                best_true = min(v[0] for v in at_batch.values()) if at_batch else None
                best_pred = min((r["tta_s"]["value"] for r in got.values()), default=None)
                records.append({"table": name, "mode": mode, "batch": batch, "target": target,
                                "best_measured_s": best_true, "best_predicted_s": best_pred,
                                "configs": pairs})

    print("Offline planner, held-out batch sizes (predicted vs measured time-to-accuracy)")
    print(f"{'table':34} {'mode':6} {'target':>6} {'batch':>5} {'best meas':>9} {'best pred':>9} "
          f"{'err':>6} {'configs':>7} {'cfg med':>7} {'in 80%':>6}")
    best_errors, config_errors, covered, epoch_errors, seconds_errors = {}, {}, {}, {}, {}
    for r in records:
        key = r["mode"]
        err = None
        if r["best_measured_s"] and r["best_predicted_s"]:
            err = abs(r["best_predicted_s"] - r["best_measured_s"]) / r["best_measured_s"]
            best_errors.setdefault(key, []).append(err)
        errs = [abs(c[2] - c[3]) / c[3] for c in r["configs"]]
        epoch_errors.setdefault(key, []).extend(abs(c[5] - c[6]) / c[6] for c in r["configs"])
        seconds_errors.setdefault(key, []).extend(
            abs((c[2] / c[5]) / (c[3] / c[6]) - 1) for c in r["configs"])
        config_errors.setdefault(key, []).extend(errs)
        covered.setdefault(key, []).extend(c[4] for c in r["configs"])
        fmt = lambda v, spec: format(v, spec) if v is not None else "-"
        print(f"{r['table']:34} {r['mode']:6} {r['target']:6.3f} {r['batch']:>5} "
              f"{fmt(r['best_measured_s'], '9.2f')} {fmt(r['best_predicted_s'], '9.2f')} "
              f"{fmt(err, '6.1%')} {len(errs):>7} "
              f"{fmt(statistics.median(errs) if errs else None, '7.1%')} "
              f"{fmt(sum(c[4] for c in r['configs']) / len(errs) if errs else None, '6.0%')}")
    print()
    for key in best_errors:
        b, c = best_errors[key], config_errors[key]
        print(f"{key}: best at a held-out batch: median error {statistics.median(b):.1%}, "
              f"p90 {quantile(b, 0.9):.1%} over {len(b)} held-out batch sizes; "
              f"per configuration: median {statistics.median(c):.1%}, p90 {quantile(c, 0.9):.1%} "
              f"over {len(c)}, 80% interval covers {sum(covered[key]) / len(c):.0%}; of which "
              f"epochs to target: median {statistics.median(epoch_errors[key]):.1%}, "
              f"seconds per epoch: median {statistics.median(seconds_errors[key]):.1%}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(records, f, indent=1)


if __name__ == "__main__":
    sys.exit(main())
