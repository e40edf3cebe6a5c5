#!/usr/bin/env python3
"""Cross-class prediction: is an edge device's time-to-accuracy predicted from trials on
another class plus the edge's probe alone?

    bench/cross_class.py [--workdir DIR] [--quota 0.25] [--period-ms 100] [--top 5] [--epochs 30] [--seeds 1]
                         [--top-seeds N [--candidates M]] [--probe-seconds 2]
                         [--reprobe | --interleave] [--short-probe-seconds S]
                         [--batch-sizes 16,64,256]

1. The "cloud" class (this machine, 2 threads) records a grid with real training:
   LeNet on the generated shapes-hard data (2,000 images), batch 16/64/256 (BATCH_SIZES) x 5 learning
   rates (1e-3 .. 0.1, log) x SGD (momentum 0.9) / Adam, SEEDS seeds, EPOCHS epochs; and
   probes itself (cloud-profile.csv, for bench/planner_holdout.py --profile).
2. The target accuracy is fixed by a rule before anything is predicted: the highest
   accuracy that a fifth of the configurations reach (bench/table_target.py --share 0.2).
3. The "edge" class is this machine at 1 thread inside a CPU quota (QUOTA of a core, a
   cgroup: v1 cpu.cfs_quota_us or v2 cpu.max). Its probe (topotune-worker probe) is the
   only thing measured on it before the prediction. The profile gives each batch size the
   probe's step (momentum SGD's) and, for Adam's configurations, the same step with Adam's
   update timed by the probe in place of SGD's; the prediction with every optimizer at the
   SGD step is printed too.
4. `topotune predict` ranks the cloud's configurations on the edge: the cloud's measured
   epochs to target x the edge's steps per epoch x the edge's probe step.
5. The top TOP configurations (by the cloud's measured TTA) are then trained on the edge
   for real (record-replay inside the same quota), and their measured TTA there is
   compared with the prediction. With --top-seeds and --candidates M, the best M on the
   grid's seeds get the extra seeds on the cloud first, and the top TOP are the best of
   them by the mean over every seed, among those that reach the target on each. With
   --reprobe the edge is probed again just before each configuration trains there, and
   that configuration is predicted from the fresh probe, the first probe's prediction
   printed beside it: a test of whether a probe closer in time follows the edge's drift
   on a shared machine (up to 30% within minutes). In session 21 it did not: one fresh
   probe was itself 29-42% slow (bench/RESULTS.md). With --interleave the edge trains the
   top configurations in one process, seed by seed (record-replay --configs: every
   configuration's first seed, then every one's second, ...), so that a spell of slowness
   during the training falls on all of them alike; without it, each configuration's seeds
   run together and a spell lands on whichever runs then (session 25's run i). With
   --short-probe-seconds S the edge also takes two probes of S seconds per size, one just
   before and one just after the main probe, and each row gets their predictions too
   (printed with their own count within +-15%): the probe's length compared within one run,
   on the same training, not across sessions. Every run also prints variant R, a
   diagnostic the prediction does not read: the prediction x the cloud's steady step in
   training over its own probe's step for that configuration (session 29: 5 of 5 on run p,
   3 of 5 on run q, where the cloud drifted; not adopted).

With SEEDS > 1 a configuration's time-to-accuracy, on either class, is the mean over its
seeds of each seed's seconds to the target, defined only when every seed reaches it (as
the planner reads a table: the mean epochs over seeds). One seed's crossing epoch of a
curve that hovers near the target is noise; the mean over seeds is what a prediction
from another class can be held to.

Prints one row per configuration (predicted, measured, ratio) and the share within
+-15%; then which term missed (seconds per epoch against epochs to target) and the edge's
probe step before and after its training (a second probe, a diagnostic of drift that
the prediction never reads). Needs root (cgroups) and the build: build/workers/topotune-worker,
build/workers/topotune-datagen, build/api/topotune. About 6 minutes on 2 cores.
"""

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)


def run(cmd, **kw):
    print("+", " ".join(cmd), flush=True)
    return subprocess.run(cmd, check=True, **kw)


class Quota:
    """A cgroup that holds a process to `share` of one CPU; removed on exit."""

    def __init__(self, share, period_us=100000):
        self.period = period_us
        self.quota = int(share * self.period)
        self.path = None
        v1 = "/sys/fs/cgroup/cpu"
        v2 = "/sys/fs/cgroup/unified" if os.path.exists("/sys/fs/cgroup/unified/cgroup.controllers") \
            else "/sys/fs/cgroup"
        if os.path.exists(os.path.join(v1, "cpu.cfs_quota_us")):
            self.path = os.path.join(v1, f"topotune-cross-class-{os.getpid()}")
            os.makedirs(self.path)
            with open(os.path.join(self.path, "cpu.cfs_period_us"), "w") as f:
                f.write(str(self.period))
            with open(os.path.join(self.path, "cpu.cfs_quota_us"), "w") as f:
                f.write(str(self.quota))
        elif "cpu" in open(os.path.join(v2, "cgroup.controllers")).read().split():
            self.path = os.path.join(v2, f"topotune-cross-class-{os.getpid()}")
            os.makedirs(self.path)
            with open(os.path.join(self.path, "cpu.max"), "w") as f:
                f.write(f"{self.quota} {self.period}")
        else:
            sys.exit("no cgroup CPU controller (v1 cpu or v2 cpu.max): cannot emulate the edge")

    def wrap(self, cmd):
        """`cmd` run inside the cgroup (the shell joins it, then execs)."""
        tasks = "tasks" if os.path.exists(os.path.join(self.path, "tasks")) else "cgroup.procs"
        quoted = " ".join("'" + c.replace("'", "'\\''") + "'" for c in cmd)
        return ["sh", "-c", f"echo $$ > {os.path.join(self.path, tasks)} && exec {quoted}"]

    def remove(self):
        if self.path and os.path.isdir(self.path):
            os.rmdir(self.path)


def read_table(path):
    """(batch, lr, optimizer) -> {seed: list of (val_accuracy, epoch_seconds)}, and meta."""
    curves, meta = {}, {}
    with open(path) as f:
        lines = []
        for line in f:
            if line.startswith("#"):
                k, _, v = line[1:].strip().partition("=")
                meta[k.strip()] = v
            else:
                lines.append(line)
    for row in csv.DictReader(lines):
        key = (int(row["batch_size"]), float(row["lr"]), row["optimizer"])
        curves.setdefault(key, {}).setdefault(int(row["seed"]), []).append(
            (float(row["val_accuracy"]), float(row["epoch_seconds"])))
    return curves, meta


def write_profile(path, device_class, probe, adam=True):
    """A probe as PROFILE.csv rows of one device: its step (momentum SGD's) for any optimizer
    and, with `adam` and where the probe timed Adam's update, the same step with Adam's update
    (step_ms - optimizer_ms + adam_optimizer_ms) for Adam's configurations."""
    with open(path, "w") as f:
        f.write("device_class,nodes,devices_per_node,local_batch,step_seconds,sync_seconds,"
                "optimizer\n")
        for b in probe["probe"]["batches"]:
            if not b["fits"]:
                continue
            f.write(f"{device_class},1,1,{b['batch_size']},{b['step_ms'] / 1000:.6f},0,\n")
            if adam and b.get("adam_optimizer_ms", 0) > 0:
                step = b["step_ms"] - b["optimizer_ms"] + b["adam_optimizer_ms"]
                f.write(f"{device_class},1,1,{b['batch_size']},{step / 1000:.6f},0,adam\n")


def read_profile(path):
    """PROFILE.csv -> {(batch, optimizer): step seconds}; a row that names no optimizer is
    momentum SGD's step, and Adam's configurations take the Adam row where there is one."""
    steps = {}
    with open(path) as f:
        for row in csv.DictReader(f):
            steps[(int(row["local_batch"]), row.get("optimizer") or "sgd")] = \
                float(row["step_seconds"])
    return steps


def trained_over_probe(curves, profile, train_samples):
    """(batch, lr, optimizer) -> the class's steady step in training (the mean epoch over
    epochs 2.. of every seed, over the steps of an epoch, as the planner reads a table's
    own seconds) over its probe's step at that batch and optimizer: what training costs
    beyond the probe's steps on the class that trained."""
    out = {}
    for (b, lr, o), seeds in curves.items():
        epochs = [s for curve in seeds.values() for _, s in curve[1:]]
        step = profile.get((b, o), profile.get((b, "sgd")))
        if epochs and step:
            out[(b, lr, o)] = sum(epochs) / len(epochs) / -(-train_samples // b) / step
    return out


def tta(curve, target):
    """Seconds of training until the first epoch at the target, and that epoch; None if never."""
    seconds = 0.0
    for epoch, (accuracy, s) in enumerate(curve, 1):
        seconds += s
        if accuracy >= target:
            return seconds, epoch
    return None


def mean_tta(seeds, target):
    """(mean seconds, mean epoch, slowest epoch) over the seeds; None unless every seed
    reaches the target."""
    each = [tta(curve, target) for curve in seeds.values()]
    if not each or any(e is None for e in each):
        return None
    return (sum(e[0] for e in each) / len(each), sum(e[1] for e in each) / len(each),
            max(e[1] for e in each))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--quota", type=float, default=0.25, help="the edge's share of one CPU")
    ap.add_argument("--period-ms", type=float, default=100.0,
                    help="the quota's CFS period (session 26: under 100 ms an epoch's wall "
                         "time comes in steps of about one period; under 10 ms it did not. "
                         "Session 27's paired A/B: no effect on Adam against SGD, and 10 ms "
                         "runs 6-10%% slower)")
    ap.add_argument("--top", type=int, default=5)
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--seeds", type=int, default=1, help="seeds per configuration, both classes")
    ap.add_argument("--top-seeds", type=int, default=0,
                    help="seeds of the top configurations on both classes (more than --seeds: "
                         "the cloud trains the missing ones after the target and the top are "
                         "fixed, and the prediction reads them all)")
    ap.add_argument("--candidates", type=int, default=0,
                    help="with --top-seeds: this many of the best configurations on the grid's "
                         "seeds get the extra seeds, and the top are the best of them by the "
                         "mean over all seeds, among those that reach the target on every seed "
                         "(default: --top, which fixes the top on the grid's seeds)")
    ap.add_argument("--reprobe", action="store_true",
                    help="probe the edge again just before each configuration trains there, "
                         "and predict that configuration from the fresh probe (the first "
                         "probe's prediction is printed beside it)")
    ap.add_argument("--interleave", action="store_true",
                    help="the edge trains the top configurations seed by seed in one process "
                         "(record-replay --configs), so that a spell of slowness on the "
                         "machine falls on all of them alike, not on the one training then")
    ap.add_argument("--probe-seconds", type=float, default=2.0,
                    help="seconds timed per batch size by each probe (the edge's before and "
                         "after its training, the cloud's)")
    ap.add_argument("--short-probe-seconds", type=float, default=0.0,
                    help="also probe the edge for this many seconds per size just before and "
                         "just after the main probe, and predict from each (a comparison of "
                         "probe lengths within one run; the main prediction is unchanged)")
    ap.add_argument("--batch-sizes", default="16,64,256", help="the cloud's grid")
    ap.add_argument("--json", default=None, help="write the rows here")
    args = ap.parse_args()
    if args.interleave and args.reprobe:
        ap.error("--interleave trains every configuration in one process: no probe between them")
    build = os.path.join(REPO, "build")
    worker = os.path.join(build, "workers/topotune-worker")
    topotune = os.path.join(build, "api/topotune")
    work = args.workdir or tempfile.mkdtemp(prefix="topotune-cross-class-")
    os.makedirs(work, exist_ok=True)
    data = os.path.join(work, "shapes-hard")
    if not os.path.exists(os.path.join(data, "data_batch_1.bin")):
        run([os.path.join(build, "workers/topotune-datagen"), "--out", data, "--train", "2000",
             "--test", "1000", "--noise", "0.45", "--seed", "21"])
    lrs = "0.001,0.00316,0.01,0.0316,0.1"
    seeds = ",".join(str(s) for s in range(args.seeds))
    cloud = os.path.join(work, "cloud.csv")
    if not os.path.exists(cloud):
        run([worker, "record-replay", "--out", cloud, "--data", data, "--model", "lenet",
             "--batch-sizes", args.batch_sizes, "--lrs", lrs, "--optimizers", "sgd,adam",
             "--seeds", seeds, "--epochs", str(args.epochs), "--threads", "2"])
    cloud_profile = os.path.join(work, "cloud-profile.csv")
    if not os.path.exists(cloud_profile):
        probe = json.loads(subprocess.run(
            [worker, "probe", "--data", data, "--model", "lenet", "--batch-sizes",
             args.batch_sizes, "--threads", "2", "--seconds", str(args.probe_seconds)],
            check=True, capture_output=True, text=True).stdout)
        write_profile(cloud_profile, "cloud", probe)
    rule = subprocess.run([sys.executable, os.path.join(HERE, "table_target.py"), "--share", "0.2",
                           cloud], check=True, capture_output=True, text=True).stdout
    target = float(rule.split("bench_target=")[1].split()[0])
    curves, _ = read_table(cloud)
    measured_cloud = {k: mean_tta(c, target) for k, c in curves.items()}
    reaching = sorted((v[0], k) for k, v in measured_cloud.items() if v is not None)
    candidates = max(args.top, args.candidates)
    top = [k for _, k in reaching[:candidates]]
    print(f"target {target}: {len(reaching)} of {len(curves)} configurations reach it on the cloud")
    top_seeds = max(args.seeds, args.top_seeds)
    fresh_cloud = None
    if top_seeds > args.seeds:
        # More seeds of the top configurations, on the cloud, after the target and the top
        # were fixed on the grid's seeds; the prediction reads every seed.
        extra = ",".join(str(s) for s in range(args.seeds, top_seeds))
        rows_of = []
        fresh_cloud = {}  # the seeds trained in this run, after the cloud's probe
        for b, lr, o in top:
            out = os.path.join(work, f"cloud-{b}-{lr}-{o}-seeds-{extra.replace(',', '-')}.csv")
            if not os.path.exists(out):
                run([worker, "record-replay", "--out", out, "--data", data, "--model", "lenet",
                     "--batch-sizes", str(b), "--lrs", repr(lr), "--optimizers", o, "--seeds",
                     extra, "--epochs", str(args.epochs), "--threads", "2"])
            fresh_cloud.update(read_table(out)[0])
            with open(out) as f:
                rows_of += [l for l in f if not l.startswith("#") and
                            not l.startswith("batch_size,")]
        every = os.path.join(work, f"cloud-top-{top_seeds}-seeds.csv")
        with open(cloud) as f, open(every, "w") as g:
            g.write(f.read())
            g.writelines(rows_of)
        cloud = every
        curves, _ = read_table(cloud)
        measured_cloud = {k: mean_tta(c, target) for k, c in curves.items()}
        if candidates > args.top:
            # The top by the mean over every seed; a candidate that misses the target on a
            # seed has no time-to-accuracy and is listed apart.
            top = sorted(top, key=lambda k: (measured_cloud[k] is None,
                                             measured_cloud[k][0] if measured_cloud[k] else 0))
            missed = [k for k in top if measured_cloud[k] is None]
            top = [k for k in top if measured_cloud[k] is not None][:args.top] + missed
            print(f"the top {args.top} of {candidates} candidates by the mean over {top_seeds} "
                  f"cloud seeds; {len(missed)} miss the target on a seed")
    seeds = ",".join(str(s) for s in range(top_seeds))
    # Variant R, a diagnostic the prediction does not read: each configuration's trained
    # step on the cloud over the cloud's probe step, from the seeds the cloud trained next
    # to its probe (else the grid), carried to the edge's probe step.
    cloud_ratio = trained_over_probe(fresh_cloud or curves, read_profile(cloud_profile), 2000)

    quota = Quota(args.quota, int(args.period_ms * 1000))
    try:
        def edge_probe(name, seconds=args.probe_seconds):
            """The edge's probe, written as a profile for `topotune predict`."""
            probe = json.loads(subprocess.run(
                quota.wrap([worker, "probe", "--data", data, "--model", "lenet",
                            "--batch-sizes", args.batch_sizes, "--threads", "1", "--seconds",
                            str(seconds)]),
                check=True, capture_output=True, text=True).stdout)
            with open(os.path.join(work, name.replace(".csv", ".json")), "w") as f:
                json.dump(probe, f, indent=1)
            profile = os.path.join(work, name)
            write_profile(profile, "edge", probe)
            # The same probe without Adam's rows: every optimizer at momentum SGD's step.
            write_profile(profile.replace(".csv", "-sgd-step.csv"), "edge", probe, adam=False)
            return probe, profile

        topology = os.path.join(work, "edge.json")
        with open(topology, "w") as f:
            json.dump({"sites": {"edge-1": {"edge": 1}}, "train_samples": 2000,
                       "targets": [{"name": "edge", "class": "edge", "site": "edge-1"}]}, f)

        def predict(profile):
            """(batch, lr, optimizer) -> the planner's ranked row for the edge."""
            predicted = json.loads(subprocess.run(
                [topotune, "predict", "--curves", cloud, "--profile", profile, "--topology",
                 topology, "--target-accuracy", str(target), "--json"],
                check=True, capture_output=True, text=True).stdout)
            return {(r["config"]["batch_size"], round(r["config"]["learning_rate"], 8),
                     r["config"]["optimizer"]): r for r in predicted["targets"][0]["ranked"]}

        # The edge's probe: the only measurement on the edge before the prediction. With
        # --short-probe-seconds, a short probe just before it and another just after it.
        short = []
        if args.short_probe_seconds > 0:
            short.append(predict(edge_probe("edge-profile-short-before.csv",
                                            args.short_probe_seconds)[1]))
        probe, profile = edge_probe("edge-profile.csv")
        if args.short_probe_seconds > 0:
            short.append(predict(edge_probe("edge-profile-short-after.csv",
                                            args.short_probe_seconds)[1]))
        prediction = predict(profile)
        sgd_step_prediction = predict(profile.replace(".csv", "-sgd-step.csv"))
        # Then the edge trains the top configurations for real.
        def edge_epochs(key):
            return min(args.epochs, int(measured_cloud[key][2] * 1.5) + 2)

        def edge_out(key):
            b, lr, o = key
            return os.path.join(work, f"edge-{b}-{lr}-{o}.csv")

        trained = [k for k in top if measured_cloud[k] is not None]
        if args.interleave and not all(os.path.exists(edge_out(k)) for k in trained):
            together = os.path.join(work, "edge-seed-by-seed.csv")
            run(quota.wrap([worker, "record-replay", "--out", together, "--data", data,
                            "--model", "lenet", "--configs",
                            ",".join(f"{b}:{lr!r}:{o}:{edge_epochs((b, lr, o))}"
                                     for b, lr, o in trained),
                            "--seeds", seeds, "--threads", "1"]))
            # One file per configuration, as the runs one at a time write them.
            with open(together) as f:
                lines = f.readlines()
            head = [l for l in lines if l.startswith("#") or l.startswith("batch_size,")]
            for b, lr, o in trained:
                with open(edge_out((b, lr, o)), "w") as g:
                    g.writelines(head)
                    g.writelines(l for l in lines if not l.startswith("#") and
                                 l.split(",")[:3] == [str(b), f"{lr:.6g}", o])
        rows = []
        for key in top:
            b, lr, o = key
            if measured_cloud[key] is None:  # a seed added by --top-seeds never reaches it
                rows.append({"config": [b, lr, o], "cloud_tta_s": None})
                continue
            epochs = edge_epochs(key)
            out = edge_out(key)
            fresh = None
            if args.reprobe:
                # The edge probed again just before this configuration trains there, and
                # the configuration predicted from that probe alone (a rerun in the same
                # WORKDIR reads the probe it kept).
                name = f"edge-profile-{b}-{lr}-{o}.csv"
                again = os.path.join(work, name)
                if not os.path.exists(out):
                    edge_probe(name)
                fresh = predict(again)[(b, round(lr, 8), o)]["tta_s"]["value"]
            if not os.path.exists(out):
                run(quota.wrap([worker, "record-replay", "--out", out, "--data", data,
                                "--model", "lenet", "--batch-sizes", str(b), "--lrs", repr(lr),
                                "--optimizers", o, "--seeds", seeds, "--epochs", str(epochs),
                                "--threads", "1"]))
            edge_curves, _ = read_table(out)
            measured = mean_tta(next(iter(edge_curves.values())), target)
            p = prediction[(b, round(lr, 8), o)]
            rows.append({"config": [b, lr, o], "cloud_tta_s": measured_cloud[key][0],
                         "cloud_epochs": measured_cloud[key][1],
                         "predicted_edge_tta_s": fresh if fresh is not None else p["tta_s"]["value"],
                         "predicted_first_probe_tta_s": p["tta_s"]["value"],
                         "predicted_sgd_step_tta_s":
                             sgd_step_prediction[(b, round(lr, 8), o)]["tta_s"]["value"],
                         "cloud_trained_over_probe": cloud_ratio.get(key),
                         "predicted_r_tta_s": p["tta_s"]["value"] * cloud_ratio[key]
                         if key in cloud_ratio else None,
                         "predicted_short_probe_tta_s":
                             [s[(b, round(lr, 8), o)]["tta_s"]["value"] for s in short],
                         "measured_edge_tta_s": measured[0] if measured else None,
                         "measured_edge_epochs": measured[1] if measured else None})
        # A diagnostic only, never used above: the edge probed again after its training.
        # A second probe far from the first means the edge's speed drifted while it was
        # measured, which no prediction made before can follow.
        after = json.loads(subprocess.run(
            quota.wrap([worker, "probe", "--data", data, "--model", "lenet", "--batch-sizes",
                        args.batch_sizes, "--threads", "1", "--seconds",
                        str(args.probe_seconds)]),
            check=True, capture_output=True, text=True).stdout)
        before = {b["batch_size"]: b["step_ms"] for b in probe["probe"]["batches"] if b["fits"]}
        drift = {b["batch_size"]: (before[b["batch_size"]], b["step_ms"])
                 for b in after["probe"]["batches"] if b["fits"] and b["batch_size"] in before}
    finally:
        quota.remove()

    print(f"\nedge = 1 thread at {args.quota:g} of a CPU; cloud = 2 threads; target {target}; "
          f"{args.seeds} seed(s), the top {args.top} with {top_seeds}, means over seeds")
    print(f"{'batch':>5} {'lr':>8} {'opt':<4} {'cloud s':>8} {'ep':>5} {'pred edge s':>11} "
          f"{'meas edge s':>11} {'ep':>5} {'pred/meas':>9}")
    within = 0
    unreached = [r for r in rows if r["cloud_tta_s"] is None]
    for r in unreached:
        b, lr, o = r["config"]
        print(f"{b:>5} {lr:>8.4g} {o:<4} not every one of the cloud's {top_seeds} seeds reaches "
              "the target: no time-to-accuracy, on either class")
    rows = [r for r in rows if r["cloud_tta_s"] is not None]
    for r in rows:
        b, lr, o = r["config"]
        m = r["measured_edge_tta_s"]
        ratio = r["predicted_edge_tta_s"] / m if m else float("inf")
        within += abs(ratio - 1) <= 0.15
        me = r["measured_edge_epochs"]
        print(f"{b:>5} {lr:>8.4g} {o:<4} {r['cloud_tta_s']:>8.2f} {r['cloud_epochs']:>5.1f} "
              f"{r['predicted_edge_tta_s']:>11.2f} {m if m else float('inf'):>11.2f} "
              f"{me if me else float('nan'):>5.1f} {ratio:>9.3f}")
    if args.reprobe:
        print("predicted from the probe taken just before each configuration's edge run; from "
              "the first probe (before any edge run), pred/meas: " +
              ", ".join(f"{r['predicted_first_probe_tta_s'] / r['measured_edge_tta_s']:.3f}"
                        for r in rows if r["measured_edge_tta_s"]))
    print("every optimizer at the probe's momentum SGD step (no Adam rows), pred/meas: " +
          ", ".join(f"{r['predicted_sgd_step_tta_s'] / r['measured_edge_tta_s']:.3f}"
                    for r in rows if r["measured_edge_tta_s"]))
    with_r = [r for r in rows if r["measured_edge_tta_s"] and r["predicted_r_tta_s"]]
    if with_r:
        ratios = [r["predicted_r_tta_s"] / r["measured_edge_tta_s"] for r in with_r]
        print("variant R, the prediction x the cloud's trained step over its probe step (" +
              ", ".join(f"{r['cloud_trained_over_probe']:.3f}" for r in with_r) +
              "), pred/meas: " + ", ".join(f"{x:.3f}" for x in ratios) +
              f" (within +-15%: {sum(abs(x - 1) <= 0.15 for x in ratios)} of {len(rows)})")
    for i, when in enumerate(["just before", "just after"]):
        if not all(len(r["predicted_short_probe_tta_s"]) > i for r in rows):
            continue
        ratios = [r["predicted_short_probe_tta_s"][i] / r["measured_edge_tta_s"] for r in rows
                  if r["measured_edge_tta_s"]]
        print(f"from a {args.short_probe_seconds:g} s probe {when} the main one, pred/meas: " +
              ", ".join(f"{x:.3f}" for x in ratios) +
              f" (within +-15%: {sum(abs(x - 1) <= 0.15 for x in ratios)} of {len(rows)})")
    print(f"within +-15%: {within} of {len(rows)}" +
          (f" ({len(unreached)} of the {'candidates' if candidates > args.top else 'top'} "
           "left out: a seed never reaches it)" if unreached else ""))
    # Which term missed: seconds per epoch (the probe) or epochs to target (the curves).
    print(f"\n{'batch':>5} {'lr':>8} {'opt':<4} {'s/ep pred':>9} {'s/ep meas':>9} {'ratio':>6} "
          f"{'ep cloud':>8} {'ep edge':>7} {'ratio':>6}")
    for r in rows:
        b, lr, o = r["config"]
        me = r["measured_edge_epochs"]
        if not me:
            continue
        pe = r["predicted_edge_tta_s"] / r["cloud_epochs"]
        ms = r["measured_edge_tta_s"] / me
        print(f"{b:>5} {lr:>8.4g} {o:<4} {pe:>9.3f} {ms:>9.3f} {pe / ms:>6.3f} "
              f"{r['cloud_epochs']:>8.1f} {me:>7.1f} {r['cloud_epochs'] / me:>6.3f}")
    print("\nthe edge's probe step (ms) before and after its training (drift):")
    for b, (before, later) in sorted(drift.items()):
        print(f"  batch {b:>4}: {before:8.2f} -> {later:8.2f} ({later / before - 1:+.1%})")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"target": target, "quota": args.quota, "seeds": args.seeds,
                       "probe_seconds": args.probe_seconds,
                       "short_probe_seconds": args.short_probe_seconds,
                       "top_seeds": top_seeds, "rows": rows,
                       "unreached": [r["config"] for r in unreached],
                       "probe_drift_ms": {str(b): v for b, v in drift.items()}}, f,
                      indent=1)


if __name__ == "__main__":
    main()
