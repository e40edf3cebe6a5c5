#!/usr/bin/env python3
"""Data-parallel placements measured for real, and the planner on held-out placements.

    sudo python3 bench/dp_placements.py [--build build] [--model lenet] [--mbit 100]
        [--table bench/replay/lenet_shapes_hard_cpu.csv] [--out DIR]

Issue 11 asks that the offline planner predict held-out *placements* as well as held-out
batch sizes. This measures placements and then holds each one out.

1. Devices. Each device is one process of `topotune-worker dp-probe` (LibTorch's c10d,
   Gloo's ring all-reduce over TCP, synchronous SGD with momentum, no overlap) with one
   thread inside its own cgroup v1 CPU quota of half a core (cpu.cfs_quota_us half of
   cpu.cfs_period_us, --period-ms, 100 ms by default): class "cpu-half". Four of them fit
   this 2-core machine without sharing a core's time beyond their quota.
2. Placements, each timed over at least --steps steps and --seconds seconds after warm-up
   (each rank's means, so that the quota's waits count as training pays them; then the
   median over the ranks):
   - one device (world 1) at local batches 16..256: the class's compute rows;
   - one node: 2, 3 and 4 devices over loopback;
   - two nodes: 1 and 2 devices in each of two network namespaces joined by a veth pair
     shaped with tc tbf at --mbit Mbit/s each way (no netem here: no added delay).
   each at local batches 32, 64 and 128.
   Written as PROFILE.csv (tuner/planner.h): step_seconds = the whole step, sync_seconds =
   its all-reduce.
3. Held out. For each multi-device row P, P's row leaves the profile and
   `topotune predict` costs a data-parallel target at P's placement (class cpu-half,
   P's nodes and devices, model_bytes = the gradient bytes measured): its compute from
   the one-device rows (alpha + beta x batch) and its sync from the ring's link fitted
   to the other placements with the same kind of slowest hop (FitRingLink). Truth: P's
   measured step. With the curve table, the same for the time-to-accuracy of every
   configuration whose global batch (P's devices x P's local batch) the table recorded:
   truth = the table's epochs to target x steps per epoch x P's measured step (synchronous
   data-parallel SGD at global batch B follows the curve of one device at B; only the
   step time belongs to the placement).
4. Both held out. Each multi-device P whose global batch G the table recorded, with G's
   rows removed from the curve table too: the planner reads G's epochs off the other
   batch sizes and P's step off the other placements. Truth: G's measured epochs x steps
   per epoch x P's measured step.
Reports per placement the predicted and measured step, and the median and p90 of the
errors. The target is the table's level that --target-share of its configurations reach
(0.4: most batch sizes then have configurations to compare). Removes every cgroup and
namespace it made. About a minute or two; --measured reruns only the holdouts.
"""

import argparse
import csv
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
CLASS = "cpu-half"
SHARE = 0.5  # of a core, each device
CG_ROOT = "/sys/fs/cgroup/cpu"
NS = ("tt-dp-a", "tt-dp-b")
ADDR = ("10.77.0.1", "10.77.0.2")


def sh(*args, check=True):
    return subprocess.run(args, check=check, capture_output=True, text=True)


class Testbed:
    """The cgroups and the two namespaces; close() removes all of them."""

    def __init__(self, mbit, ranks, period_ms):
        self.period_us = int(period_ms * 1000)
        self.cgroups = []
        self.netns = False
        if not os.path.exists(os.path.join(CG_ROOT, "cpu.cfs_quota_us")):
            sys.exit("needs cgroup v1's cpu controller at " + CG_ROOT)
        try:
            self._make(mbit, ranks)
        except BaseException:
            self.close()  # whatever was made before the failure
            raise

    def _make(self, mbit, ranks):
        for i in range(ranks):
            cg = os.path.join(CG_ROOT, "topotune-dp-%d" % i)
            os.makedirs(cg, exist_ok=True)
            self.cgroups.append(cg)
            with open(os.path.join(cg, "cpu.cfs_period_us"), "w") as f:
                f.write(str(self.period_us))
            with open(os.path.join(cg, "cpu.cfs_quota_us"), "w") as f:
                f.write(str(int(self.period_us * SHARE)))
        for ns in NS:
            sh("ip", "netns", "del", ns, check=False)
        self.netns = True
        for ns in NS:
            sh("ip", "netns", "add", ns)
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        sh("ip", "link", "add", "tt-dp-va", "netns", NS[0], "type", "veth", "peer", "name",
           "tt-dp-vb", "netns", NS[1])
        for ns, dev, addr in ((NS[0], "tt-dp-va", ADDR[0]), (NS[1], "tt-dp-vb", ADDR[1])):
            sh("ip", "-n", ns, "addr", "add", addr + "/24", "dev", dev)
            sh("ip", "-n", ns, "link", "set", dev, "up")
            sh("ip", "netns", "exec", ns, "tc", "qdisc", "add", "dev", dev, "root", "tbf",
               "rate", "%dmbit" % mbit, "burst", "64kbit", "latency", "50ms")

    def command(self, rank, ns, argv):
        # Into the cgroup first: inside `ip netns exec` /sys is the namespace's, without it.
        join = "echo $$ > %s/cgroup.procs && exec \"$@\"" % self.cgroups[rank]
        inside = ["ip", "netns", "exec", ns] if ns else []
        return ["sh", "-c", join, "sh"] + inside + argv

    def close(self):
        for ns in NS if self.netns else ():
            sh("ip", "netns", "del", ns, check=False)
        for cg in self.cgroups:
            for _ in range(50):
                try:
                    os.rmdir(cg)
                    break
                except OSError:
                    time.sleep(0.1)


def run_placement(bed, worker, data, model, nodes, per_node, local, steps, seconds, port):
    world = nodes * per_node
    procs = []
    for rank in range(world):
        node = rank // per_node
        ns = NS[node] if nodes > 1 else None
        store = ADDR[0] if nodes > 1 else "127.0.0.1"
        bind = ADDR[node] if nodes > 1 else "127.0.0.1"
        argv = [worker, "dp-probe", "--data", data, "--model", model, "--local-batch",
                str(local), "--rank", str(rank), "--world", str(world), "--store",
                "%s:%d" % (store, port), "--bind", bind, "--threads", "1", "--steps",
                str(steps), "--min-seconds", str(seconds), "--warmup", "5", "--timeout", "120"]
        procs.append(subprocess.Popen(bed.command(rank, ns, argv), stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True))
        if rank == 0:
            time.sleep(0.3)  # rank 0 serves the store
    results = []
    try:
        for p in procs:
            out, err = p.communicate(timeout=600)
            if p.returncode != 0:
                raise RuntimeError("dp-probe failed (%d): %s" % (p.returncode,
                                                                 err.strip()[-400:]))
            results.append(json.loads(out))
    finally:
        for p in procs:  # the other ranks of a failed placement would wait out their timeout
            if p.poll() is None:
                p.kill()
                p.wait()
    return {
        "nodes": nodes, "devices_per_node": per_node, "local_batch": local,
        "gradient_bytes": results[0]["gradient_bytes"],
        "step_s": statistics.median(r["step_s"] for r in results),
        "compute_s": statistics.median(r["compute_s"] for r in results),
        "sync_s": statistics.median(r["sync_s"] for r in results),
        "ranks": results,
    }


def profile_csv(rows):
    lines = ["device_class,nodes,devices_per_node,local_batch,step_seconds,sync_seconds"]
    for r in rows:
        lines.append("%s,%d,%d,%d,%.6f,%.6f" % (CLASS, r["nodes"], r["devices_per_node"],
                                                 r["local_batch"], r["step_s"], r["sync_s"]))
    return "\n".join(lines) + "\n"


def quantile(values, q):
    v = sorted(values)
    if not v:
        return float("nan")
    return v[min(len(v) - 1, int(q * (len(v) - 1) + 0.5))]


def predict(topotune, table, target, train_samples, profile_text, p, model_bytes, mbit, work):
    profile = os.path.join(work, "profile.csv")
    topology = os.path.join(work, "topology.json")
    with open(profile, "w") as f:
        f.write(profile_text)
    devices = p["nodes"] * p["devices_per_node"]
    with open(topology, "w") as f:
        json.dump({"name": "held-out", "sites": {"here": {CLASS: devices}},
                   "model_bytes": model_bytes, "train_samples": train_samples,
                   "targets": [{"name": "dp", "kind": "data_parallel", "class": CLASS,
                                "site": "here", "devices": devices, "nodes": p["nodes"],
                                "intra_node": {"bandwidth_mbit_s": 20000, "latency_ms": 0.05},
                                "inter_node": {"bandwidth_mbit_s": mbit,
                                               "latency_ms": 0.1}}]}, f)
    out = subprocess.run([topotune, "predict", "--curves", table, "--profile", profile,
                          "--topology", topology, "--train-samples", str(train_samples),
                          "--target-accuracy", str(target), "--json",
                          "--batch-sizes", str(devices * p["local_batch"])],
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out)["targets"][0]


def measure(args, worker, work, out_dir):
    """Measures every placement; writes profile.csv and placements.json to out_dir."""
    data = os.path.join(work, "shapes")
    sh(os.path.join(args.build, "workers", "topotune-datagen"), "--out", data, "--train", "64",
       "--test", "16")
    placements = [(1, 1, b) for b in (16, 32, 64, 128, 256)]
    placements += [(1, n, b) for n in (2, 3, 4) for b in (32, 64, 128)]
    placements += [(2, n, b) for n in (1, 2) for b in (32, 64, 128)]
    bed = Testbed(args.mbit, 4, args.period_ms)
    rows = []
    try:
        port = 29600
        for nodes, per_node, local in placements:
            port += 1
            r = run_placement(bed, worker, data, args.model, nodes, per_node, local, args.steps,
                              args.seconds, port)
            rows.append(r)
            print("measured %d node(s) x %d device(s), local batch %3d: step %.2f ms, compute "
                  "%.2f ms, sync %.2f ms" % (nodes, per_node, local, r["step_s"] * 1e3,
                                            r["compute_s"] * 1e3, r["sync_s"] * 1e3),
                  flush=True)
    finally:
        bed.close()
        shutil.rmtree(data, ignore_errors=True)
    for r in rows:  # one device has no sync; its whole step is compute
        if r["nodes"] * r["devices_per_node"] == 1:
            r["sync_s"] = 0.0
    with open(os.path.join(out_dir, "profile.csv"), "w") as f:
        f.write("# %s on cpu-half devices (one thread, a CPU quota of half a core each, CFS "
                "period %g ms; means over >= %g s), measured by bench/dp_placements.py on %s; "
                "two nodes: veth with tc tbf at %d Mbit/s\n"
                % (args.model, args.period_ms, args.seconds,
                   time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), args.mbit))
        f.write(profile_csv(rows))
    with open(os.path.join(out_dir, "placements.json"), "w") as f:
        json.dump(rows, f, indent=1)
    return rows

def epochs_at(table_path, batch, target):
    """{(lr, optimizer): mean first epoch at the target over seeds} at `batch`, for the
    configurations whose every seed reaches it (as the planner counts them measured)."""
    first = {}  # (lr, optimizer) -> {seed: first epoch at target or None}
    with open(table_path) as f:
        for r in csv.DictReader(l for l in f if not l.startswith("#")):
            if int(r["batch_size"]) != batch:
                continue
            seeds = first.setdefault((float(r["lr"]), r["optimizer"]), {})
            seeds.setdefault(r["seed"], None)
            if float(r["val_accuracy"]) >= target:
                e = int(r["epoch"])
                if seeds[r["seed"]] is None or e < seeds[r["seed"]]:
                    seeds[r["seed"]] = e
    return {k: statistics.mean(v.values()) for k, v in first.items()
            if all(e is not None for e in v.values())}


def both_held_out(args, topotune, rows, target, model_bytes, table_batches, work):
    """Each multi-device placement P whose global batch G the table recorded, held out
    with G's rows of the table: the planner reads G's epochs from the other batch sizes
    and P's step from the other placements. Truth: G's measured epochs x P's step."""
    with open(args.table) as f:
        lines = f.readlines()
    print("\nplacement and its global batch both held out (curves %s, target %.3f):" % (
        os.path.basename(args.table), target))
    print("| nodes x devices | local batch | global batch | best at G: predicted / measured s "
          "| error | per configuration: median error (n) |")
    print("|---|---|---|---|---|---|")
    best_errors, config_errors = [], []
    for i, p in enumerate(rows):
        devices = p["nodes"] * p["devices_per_node"]
        g = devices * p["local_batch"]
        if devices == 1 or g not in table_batches:
            continue
        truth_epochs = epochs_at(args.table, g, target)
        if not truth_epochs:
            continue
        table = os.path.join(work, "held-out-table.csv")
        with open(table, "w") as f:
            for line in lines:
                if line.startswith("#") or line.startswith("batch_size") or \
                        int(line.split(",", 1)[0]) != g:
                    f.write(line)
        rest = profile_csv(rows[:i] + rows[i + 1:])
        plan = predict(topotune, table, target, args.train_samples, rest, p, model_bytes,
                       args.mbit, work)
        steps = -(-args.train_samples // g)
        truth = {k: e * steps * p["step_s"] for k, e in truth_epochs.items()}
        got = {}
        for c in plan.get("ranked", []):
            if c["global_batch"] == g and c["local_batch"] == p["local_batch"]:
                key = (c["config"]["learning_rate"], c["config"]["optimizer"])
                got.setdefault(key, c["tta_s"]["value"])
        errs = []
        for (lr, opt), t in truth.items():
            match = [v for (l2, o2), v in got.items()
                     if o2 == opt and abs(l2 - lr) <= 1e-6 * lr]
            if match:
                errs.append(abs(match[0] - t) / t)
        config_errors.extend(errs)
        if got:
            best_p, best_t = min(got.values()), min(truth.values())
            best_errors.append(abs(best_p - best_t) / best_t)
            print("| %d x %d | %d | %d | %.1f / %.1f | %.1f%% | %s |" % (
                p["nodes"], p["devices_per_node"], p["local_batch"], g, best_p, best_t,
                best_errors[-1] * 100,
                "%.1f%% (%d)" % (statistics.median(errs) * 100, len(errs)) if errs else "-"))
        else:
            print("| %d x %d | %d | %d | no prediction at G | | |" % (
                p["nodes"], p["devices_per_node"], p["local_batch"], g))
    if best_errors:
        print("\nbest at a held-out (placement, global batch): median %.1f%%, p90 %.1f%% "
              "(%d); per configuration: median %.1f%%, p90 %.1f%% (%d)" % (
                  quantile(best_errors, 0.5) * 100, quantile(best_errors, 0.9) * 100,
                  len(best_errors), quantile(config_errors, 0.5) * 100,
                  quantile(config_errors, 0.9) * 100, len(config_errors)))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default=os.path.join(REPO, "build"))
    ap.add_argument("--model", default="lenet")
    ap.add_argument("--mbit", type=int, default=100)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--period-ms", type=float, default=100.0,
                    help="the devices' CFS period (cpu.cfs_period_us); each gets half of it")
    ap.add_argument("--seconds", type=float, default=1.0,
                    help="time each placement for at least this long (a CFS period is 0.1 s)")
    ap.add_argument("--table", default=os.path.join(HERE, "replay", "lenet_shapes_cpu.csv"))
    ap.add_argument("--train-samples", type=int, default=5000)
    ap.add_argument("--target", type=float, default=None,
                    help="target accuracy (default: by the rule of --target-share)")
    ap.add_argument("--target-share", type=float, default=0.4,
                    help="the target is the highest accuracy this share of the table's "
                         "configurations reach on every seed (rounded down to 0.005)")
    ap.add_argument("--measured", default=None,
                    help="placements.json of an earlier run: hold out its placements, "
                         "measure nothing")
    ap.add_argument("--out", default=None, help="folder for profile.csv and placements.json")
    args = ap.parse_args()
    worker = os.path.join(args.build, "workers", "topotune-worker")
    topotune = os.path.join(args.build, "api", "topotune")
    work = tempfile.mkdtemp(prefix="topotune-dp-")
    out_dir = args.out or work
    os.makedirs(out_dir, exist_ok=True)
    if args.measured:
        with open(args.measured) as f:
            rows = json.load(f)
    else:
        rows = measure(args, worker, work, out_dir)

    model_bytes = rows[0]["gradient_bytes"]
    table_batches = set()
    best = {}  # (batch, lr, optimizer) -> {seed: best accuracy}
    with open(args.table) as f:
        for r in csv.DictReader(l for l in f if not l.startswith("#")):
            table_batches.add(int(r["batch_size"]))
            seeds = best.setdefault((r["batch_size"], r["lr"], r["optimizer"]), {})
            seeds[r["seed"]] = max(seeds.get(r["seed"], 0.0), float(r["val_accuracy"]))
    # The target, by bench/table_target.py's rule at --target-share: most batch sizes have
    # configurations that reach it, so most placements have a time-to-accuracy to compare.
    per_config = sorted((min(v.values()) for v in best.values()), reverse=True)
    k = max(1, int(args.target_share * len(per_config) + 0.999999))
    target = args.target or int(per_config[k - 1] * 200) / 200
    print("\nheld out, one at a time (model %d bytes; curves %s, target %.3f):" % (
        model_bytes, os.path.basename(args.table), target))
    print("| nodes x devices | local batch | measured step ms | predicted step ms (compute + "
          "sync) | error | sync predicted from | TTA error median (configs) |")
    print("|---|---|---|---|---|---|---|")
    step_errors, tta_errors = [], []
    for i, p in enumerate(rows):
        devices = p["nodes"] * p["devices_per_node"]
        if devices == 1:
            continue
        rest = profile_csv(rows[:i] + rows[i + 1:])
        plan = predict(topotune, args.table, target, args.train_samples, rest, p, model_bytes,
                       args.mbit, work)
        mine = [c for c in plan.get("ranked", []) if c["local_batch"] == p["local_batch"]]
        if not mine:
            print("| %d x %d | %d | %.2f | (no prediction: %s) | | | |" % (
                p["nodes"], p["devices_per_node"], p["local_batch"], p["step_s"] * 1e3,
                plan.get("note", "")))
            continue
        terms = mine[0]["terms"]
        predicted = terms["step_compute_s"]["value"] + terms["step_sync_s"]["value"]
        err = abs(predicted - p["step_s"]) / p["step_s"]
        step_errors.append(err)
        errs = []
        global_batch = devices * p["local_batch"]
        for c in mine:
            if global_batch not in table_batches or not c["epochs_from"].startswith("measured"):
                continue
            truth = c["terms"]["epochs"]["value"] * c["steps_per_epoch"] * p["step_s"]
            errs.append(abs(c["tta_s"]["value"] - truth) / truth)
        tta_errors.extend(errs)
        print("| %d x %d | %d | %.2f | %.2f (%.2f + %.2f) | %.1f%% | %s | %s |" % (
            p["nodes"], p["devices_per_node"], p["local_batch"], p["step_s"] * 1e3,
            predicted * 1e3, terms["step_compute_s"]["value"] * 1e3,
            terms["step_sync_s"]["value"] * 1e3, err * 100, mine[0]["sync_from"],
            "%.1f%% (%d)" % (statistics.median(errs) * 100, len(errs)) if errs else "-"))
    print("\nstep of a held-out placement: median %.1f%%, p90 %.1f%% (%d placements)" % (
        quantile(step_errors, 0.5) * 100, quantile(step_errors, 0.9) * 100, len(step_errors)))
    if tta_errors:
        print("time-to-accuracy at a held-out placement (epochs measured at its global batch): "
              "median %.1f%%, p90 %.1f%% (%d configurations)" % (
                  quantile(tta_errors, 0.5) * 100, quantile(tta_errors, 0.9) * 100,
                  len(tta_errors)))
    both_held_out(args, topotune, rows, target, model_bytes, table_batches, work)
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
