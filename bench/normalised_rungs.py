#!/usr/bin/env python3
"""Normalised rungs: does a job on a fast and a slow worker find what a job on the slow
(target) class alone finds, for less?

    bench/normalised_rungs.py [--workdir DIR] [--trials 12] [--seed 1] [--min-seconds 4]
        [--concurrent]

One job spec, run twice on the emulated testbed (examples/testbed/testbed.sh):
1. "mixed": the cloud worker (2 threads, no limit) and the edge worker (1 thread in a
   quarter of a core, 1.5 GiB, behind 10 Mbit/s) both train its trials;
2. "edge alone": only the edge worker.
The job counts seconds on the edge ("reference_class": "edge"): ASHA with rungs in
seconds (MIN_SECONDS x 3^k, 3 rungs), so a trial on the cloud gets the epochs the edge
would train in the rung's edge seconds (its seconds x edge step / cloud step, from the
two classes' probes). Random sampling with a fixed seed proposes the same configurations
in both runs, so what differs is only where they train. The two runs go one after the
other, minutes apart, and the edge's speed can differ by 30-40% between them. With
--concurrent both jobs run at once, each on its own testbed with its own edge (the same
quota, memory and link), meant to put both edges under the same spells of this shared
machine. In session 30 it did not: each edge shares the cores with the mixed run's cloud
while that trains, at different moments of the two jobs (bench/RESULTS.md).

Prints, for each run: the best configuration and its time-to-accuracy (counted on the
edge: measured where the edge trained it, scaled where the cloud did), the training
seconds each worker spent, the edge-equivalent seconds, and the wall time of the job.
Then the comparison: the mixed run's best configuration (its best trial of the sampler's),
its time-to-accuracy measured on the edge by the mixed run's own confirmation (the engine
trains its best scaled trials again on the edge) and by the edge-alone run's trial of that
configuration and seed when it has one, and the ratio to the edge-alone run's best.

Needs root and the build (build/api/topotune, topotuned, build/workers/topotune-worker,
topotune-datagen). About 10 minutes on 2 cores; keep the machine otherwise idle (the
probes, and so the scales, are only as good as the machine is quiet).
"""

import argparse
import json
import os
import sqlite3
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
TESTBED = os.path.join(REPO, "examples", "testbed", "testbed.sh")


def run(cmd, env=None, **kw):
    print("+", " ".join(cmd), flush=True)
    return subprocess.run(cmd, check=True, env=env, **kw)


def job_spec(args):
    return {
        "name": "normalised-rungs",
        "model": "lenet",
        "dataset": {"format": "cifar10-bin", "path": "data/shapes"},
        "target_accuracy": args.target,
        "search_space": {"batch_size": {"min": 16, "max": 256},
                         "learning_rate": {"min": 1e-3, "max": 0.3, "scale": "log"},
                         "optimizer": ["sgd", "adam"]},
        "scheduler": {"algorithm": "asha", "rung_unit": "seconds",
                      "min_seconds": args.min_seconds, "reduction_factor": 3, "rungs": 3,
                      "max_epochs": 40},
        "max_trials": args.trials,
        "seed": args.seed,
        "reference_class": "edge",
    }


def env_of(testbed_dir):
    values = {}
    with open(os.path.join(testbed_dir, "testbed.env")) as f:
        for line in f:
            key, _, value = line.strip().partition("=")
            values[key] = value.strip('"')
    return values


def prepare_job(args, name, workers):
    """Brings a testbed up with `workers` and writes its data and job spec."""
    d = os.path.join(args.workdir, name)
    env = dict(os.environ, TESTBED_WORKERS=workers, BUILD_DIR=args.build)
    run(["bash", TESTBED, "up", d], env=env)
    try:
        run([os.path.join(args.build, "workers", "topotune-datagen"), "--out",
             os.path.join(d, "data", "shapes")], stdout=subprocess.DEVNULL)
        tb = env_of(d)
        cli = [os.path.join(args.build, "api", "topotune"), "--server",
               f"http://127.0.0.1:{tb['HTTP_PORT']}", "--token-file", tb["USER_TOKEN_FILE"]]
        spec_path = os.path.join(d, "job.json")
        with open(spec_path, "w") as f:
            json.dump(job_spec(args), f, indent=1)
    except BaseException:
        run(["bash", TESTBED, "down", d], env=env)
        raise
    return {"dir": d, "env": env, "cli": cli, "spec": spec_path}


def submit(job):
    """Submits the job; its workers probe the job's model when it arrives."""
    out = run(job["cli"] + ["submit", job["spec"]], capture_output=True, text=True).stdout
    job["job_id"] = int(out.split()[2])


def finished(job):
    """The job's report once it has ended, else None."""
    report = json.loads(run(job["cli"] + ["report", str(job["job_id"]), "--json"],
                            capture_output=True, text=True).stdout)
    return report if report["job"]["state"] in ("completed", "cancelled", "failed") else None


def finish_job(job, report):
    """Takes the testbed down and reads the job's trials from its database."""
    d, job_id = job["dir"], job["job_id"]
    try:
        devices = run(job["cli"] + ["devices"], capture_output=True, text=True).stdout
    finally:
        run(["bash", TESTBED, "down", d], env=job["env"])
    db = sqlite3.connect(os.path.join(d, "topotune.db"))
    trials = {}
    for tid, number, batch, lr, opt, seed, worker, reached, tta, confirms in db.execute(
            "SELECT id, number, batch_size, learning_rate, optimizer, seed, worker, "
            "reached_target, tta_s, confirms FROM trials WHERE job_id = ?", (job_id,)):
        trials[tid] = {"number": number, "config": (batch, lr, opt), "seed": seed,
                       "worker": worker, "reached": bool(reached), "tta_s": tta,
                       "confirms": confirms, "measured_s": {}, "reference_s": 0.0,
                       "edge_epochs_s": []}
    for tid, measured, reference in db.execute(
            "SELECT c.trial_id, c.compute_s + c.comm_s, c.reference_s FROM curve_points AS c "
            "JOIN trials AS t ON t.id = c.trial_id WHERE t.job_id = ? ORDER BY c.epoch",
            (job_id,)):
        # Points do not name their worker (a promoted trial may change worker): an epoch
        # counted as measured ran on the edge, the reference class; a scaled one on the cloud.
        t = trials[tid]
        w = "edge-1" if abs(reference - measured) <= 1e-9 * max(1.0, measured) else "cloud-1"
        t["measured_s"][w] = t["measured_s"].get(w, 0.0) + measured
        t["reference_s"] += reference
        if w == "edge-1":
            t["edge_epochs_s"].append(measured)
    created, ended = db.execute("SELECT created_at, finished_at FROM jobs WHERE id = ?",
                                (job_id,)).fetchone()
    return {"report": report, "trials": trials, "wall_s": ended - created, "devices": devices}


def run_jobs(args, runs):
    """Runs each (name, workers) job; with --concurrent all at once, each on its own
    testbed (so its own edge), else one after the other. Concurrent jobs are submitted
    together once every testbed is up and has its data: the workers probe the job's model
    when it arrives, and a probe taken while the other testbed generates its data reads a
    class slow (the cloud's read about 3x slow in this script's first concurrent runs)."""
    jobs = []
    try:
        if not args.concurrent:
            results = []
            for name, workers in runs:
                job = prepare_job(args, name, workers)
                jobs = [job]
                submit(job)
                report = None
                while report is None:
                    time.sleep(5)
                    report = finished(job)
                jobs = []
                results.append(finish_job(job, report))
            return results
        for name, workers in runs:
            jobs.append(prepare_job(args, name, workers))
        for job in jobs:
            submit(job)
        reports = [None] * len(jobs)
        while any(r is None for r in reports):
            time.sleep(5)
            reports = [r if r is not None else finished(j) for j, r in zip(jobs, reports)]
    except BaseException:
        for job in jobs:
            run(["bash", TESTBED, "down", job["dir"]], env=job["env"])
        raise
    return [finish_job(j, r) for j, r in zip(jobs, reports)]


def per_worker(trials):
    spent = {}
    for t in trials.values():
        for w, s in t["measured_s"].items():
            spent[w] = spent.get(w, 0.0) + s
    return spent


def describe(name, result):
    r = result["report"]
    best = r["best"]
    print(f"\n== {name}: job {r['job']['state']}, wall {result['wall_s']:.1f} s")
    print(result["devices"].rstrip())
    spent = per_worker(result["trials"])
    edge_equivalent = sum(t["reference_s"] for t in result["trials"].values())
    print("training seconds by worker: " +
          ", ".join(f"{w} {s:.1f} s" for w, s in sorted(spent.items())) +
          f"; counted on the edge: {edge_equivalent:.1f} s")
    if best is None or not r["target_reached"]:
        print("no trial reached the target")
        return
    c = best["config"]
    print(f"best: batch {c['batch_size']}, lr {c['learning_rate']:.4g}, {c['optimizer']} "
          f"(trial {best['number']} on {best['worker']}): TTA {best['tta_s']:.2f} s on the edge")
    for t in sorted(result["trials"].values(), key=lambda t: t["number"]):
        batch, lr, opt = t["config"]
        tta = f"{t['tta_s']:.2f}" if t["reached"] else "-"
        note = f"  (confirms #{t['confirms']})" if t["confirms"] >= 0 else ""
        print(f"  #{t['number']:<3} batch {batch:4d} lr {lr:.4g} {opt:5s} on {t['worker']:8s} "
              f"edge-counted {t['reference_s']:7.2f} s  tta {tta}{note}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--workdir", default="/tmp/topotune-normalised-rungs")
    ap.add_argument("--build", default=os.path.join(REPO, "build"))
    ap.add_argument("--trials", type=int, default=12)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--min-seconds", type=float, default=4.0)
    ap.add_argument("--target", type=float, default=0.80)
    ap.add_argument("--concurrent", action="store_true",
                    help="run both jobs at once, each on its own testbed and edge, so that "
                    "both edges train under the same spells of the machine")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("normalised_rungs: needs root (the testbed's namespaces and cgroups)")
    os.makedirs(args.workdir, exist_ok=True)
    mixed, alone = run_jobs(args, [("mixed", "cloud edge"), ("edge-alone", "edge")])
    describe("mixed (cloud + edge)", mixed)
    describe("edge alone", alone)

    print("\n== comparison")
    if not (mixed["report"]["target_reached"] and alone["report"]["target_reached"]):
        print("a run reached no target: nothing to compare")
        return 1
    # Each run's answer is its report's best: in the mixed run, a configuration confirmed
    # on the edge counts by what its confirmation measured there.
    mb, ab = mixed["report"]["best"], alone["report"]["best"]
    for c in sorted((t for t in mixed["trials"].values() if t["confirms"] >= 0),
                    key=lambda t: t["number"]):
        counted = next(t for t in mixed["trials"].values() if t["number"] == c["confirms"])
        print(f"confirmation #{c['number']} of #{c['confirms']} on the edge: "
              + (f"measured {c['tta_s']:.2f} s" if c["reached"] else "target not reached")
              + f", counted {counted['tta_s']:.2f} s from the cloud")
    key = (mb["config"]["batch_size"], mb["config"]["learning_rate"], mb["config"]["optimizer"])
    same = key == (ab["config"]["batch_size"], ab["config"]["learning_rate"],
                   ab["config"]["optimizer"])
    print(f"same best configuration: {'yes' if same else 'no'}")
    measured = None
    if mb.get("confirms") is not None:
        measured, how = mb["tta_s"], f"its confirmation, trial {mb['number']}"
    else:
        # The same trial number has the same configuration and seed in both runs.
        on_edge = [t for t in alone["trials"].values()
                   if t["config"] == key and t["number"] == mb["number"] and t["reached"]]
        if on_edge:
            measured, how = on_edge[0]["tta_s"], "the edge-alone run's trial of it"
    print(f"mixed run's best: trial {mb['number']}, {mb['tta_s']:.2f} s on the edge; "
          f"edge-alone best: {ab['tta_s']:.2f} s measured")
    if measured is not None:
        print(f"mixed run's best measured on the edge ({how}): {measured:.2f} s = "
              f"{measured / ab['tta_s']:.3f} x the edge-alone best")
    else:
        print("the mixed run's best was not measured on the edge")

    def epochs_of(result, number):
        t = next(t for t in result["trials"].values() if t["number"] == number)
        return " ".join(f"{s:.2f}" for s in t["edge_epochs_s"]) or "none"

    # The same curve trained at two speeds shows here: the two runs' edges side by side.
    print(f"edge seconds per epoch: mixed run's trial {mb['number']}: "
          f"{epochs_of(mixed, mb['number'])}; edge-alone best, trial {ab['number']}: "
          f"{epochs_of(alone, ab['number'])}")
    edge_mixed = per_worker(mixed["trials"]).get("edge-1", 0.0)
    edge_alone = per_worker(alone["trials"]).get("edge-1", 0.0)
    cloud_mixed = per_worker(mixed["trials"]).get("cloud-1", 0.0)
    print(f"device seconds of training: mixed {edge_mixed + cloud_mixed:.1f} (edge "
          f"{edge_mixed:.1f} + cloud {cloud_mixed:.1f}) vs edge alone {edge_alone:.1f}")
    confirm_s = sum(sum(t["measured_s"].values()) for t in mixed["trials"].values()
                    if t["confirms"] >= 0)
    print(f"of the mixed run's edge seconds, confirmations: {confirm_s:.1f} s")
    print(f"wall time: mixed {mixed['wall_s']:.1f} s vs edge alone {alone['wall_s']:.1f} s "
          f"({mixed['wall_s'] / alone['wall_s']:.3f}); edge training seconds: {edge_mixed:.1f} "
          f"vs {edge_alone:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
