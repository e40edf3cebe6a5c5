#!/usr/bin/env python3
"""Search efficiency on a replay table: Topotune's algorithms vs grid search vs Optuna.

    bench/search_benchmark.py --table bench/replay/lenet_shapes_cpu.csv [--target 0.80]
        [--seeds 20] [--first-seed 0] [--budget 60] [--lanes 4] [--json OUT.json]

What it measures (DESIGN.md, "Search efficiency: how it is measured"):

Ground truth, from the table alone. A recorded configuration's TTA on one seed is the sum
of epoch_seconds up to and including the first epoch whose val_accuracy >= target (inf if
none); its true TTA is the mean over the seeds recorded for it (inf if any never reaches):
a table may be ragged, with more seeds for some configurations than for others.
TTA* is the least true TTA; a configuration is near-optimal when its true TTA <= 1.1 TTA*.

Grid cost, the reference of every ratio: the whole grid, every recorded configuration
trained for all the table's epochs (mean over seeds of the recorded curve's seconds; a
curve that ends early, a diverged run, costs what was recorded). A second reference column
is the grid that stops each run at the target.

A tuner run is a sequence of epochs in the order they were trained, each with its
simulated seconds. After each epoch, the incumbent is the trial with the least measured TTA
(its own cumulative seconds to the epoch that reached the target) among the trials that
reached the target so far. It is judged by the true TTA of its configuration snapped to the
nearest recorded one, exactly as the replay worker snaps (same optimizer, least distance in
(log2 batch size, log10 learning rate)). Cost to near-optimal = the cumulative seconds at
the first epoch from which the incumbent is near-optimal and stays so to the end of the
run; inf (a failure) if the final incumbent is not near-optimal.

Topotune runs go through the real product: topotuned (REST, gateway, SQLite) and one
`topotune-worker --replay TABLE --speedup 0` per lane; jobs are submitted one at a time per
lane and waited for, so each job has the worker to itself. Its epochs are read from the
SQLite file, curve_points in rowid (arrival) order.

Replay artifact corrected: at --speedup 0 the replay worker plays a whole segment at once.
The worker applies the bound it was given with the assignment (the incumbent's TTA when the
segment began), but a "stop" the controller sends after an epoch because the incumbent
improved during the segment arrives after the segment is over; the epochs after the
verdict are recorded although a worker that trains for real stops within a step. The
benchmark replays the controller's rule over the arrival order (a trial not at the target
whose cumulative seconds >= the least TTA reached so far is stopped) and drops the epochs a
trial recorded after its stop verdict; they are reported ("overrun") and the uncorrected
ratios are in the JSON ("raw").

Optuna (3.1, Debian's python3-optuna), same table, same budget of trials, same snapping:
  optuna-tpe-sha: TPESampler(seed) + SuccessiveHalvingPruner(min_resource=1,
                  reduction_factor=3)
  optuna-random-hb: RandomSampler(seed) + HyperbandPruner(min_resource=1,
                  max_resource=table epochs, reduction_factor=3)
The objective suggests batch_size (categorical over the table's batch sizes), lr (float,
log, over the table's range) and optimizer (categorical), snaps, replays the recorded curve
of seed index trial.number mod number of seeds epoch by epoch, reports the validation
error 1 - val_accuracy at each epoch (lower is better, as the study minimises), prunes
when should_prune(), returns the measured TTA at the first epoch that reaches the target,
and otherwise a penalty that is larger than any TTA and decreases with the best accuracy
reached: 10 x (longest recorded curve's seconds) x (2 - best accuracy).
"""

import argparse
import concurrent.futures
import datetime
import json
import secrets
import math
import os
import random
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

INF = float("inf")
TOPOTUNE_ALGORITHMS = ["random", "asha", "sha", "hyperband", "tpe", "gp", "bohb", "auto",
                       "asha@s", "gp@s", "bohb@s", "forecast", "forecast-gp"]
SECONDS_SUFFIX = "@s"  # the same algorithm with rungs in seconds ("rung_unit": "seconds")
OPTUNA_SETUPS = ["optuna-tpe-sha", "optuna-random-hb"]
NEAR = 1.1  # near-optimal: true TTA within 10% of TTA*


# ----------------------------------------------------------------------------- the table


class Table:
    """A replay table as workers/replay_table.cc reads it."""

    def __init__(self, path):
        self.path = path
        self.meta = {}
        self.order = []  # configuration keys in order of first appearance (the worker's)
        self.curves = {}  # key -> {seed: [(val_accuracy, seconds), ...]}
        header = "batch_size,lr,optimizer,seed,epoch,val_accuracy,epoch_seconds"
        seen_header = False
        with open(path) as f:
            for number, line in enumerate(f, 1):
                line = line.rstrip("\r\n")
                if not line:
                    continue
                if line.startswith("#"):
                    if "=" in line:
                        k, v = line[1:].split("=", 1)
                        self.meta[k.strip()] = v
                    continue
                if not seen_header:
                    if not line.startswith(header):
                        raise ValueError(f"{path}:{number}: expected the header")
                    seen_header = True
                    continue
                f7 = line.split(",")
                key = (int(f7[0]), float(f7[1]), f7[2])
                seed, epoch = int(f7[3]), int(f7[4])
                if key not in self.curves:
                    self.curves[key] = {}
                    self.order.append(key)
                curve = self.curves[key].setdefault(seed, [])
                if epoch != len(curve) + 1:
                    raise ValueError(f"{path}:{number}: epoch {epoch} after {len(curve)}")
                curve.append((float(f7[5]), float(f7[6])))
        if not self.order:
            raise ValueError(f"{path}: no rows")
        self.batch_sizes = sorted({k[0] for k in self.order})
        self.lrs = sorted({k[1] for k in self.order})
        self.optimizers = sorted({k[2] for k in self.order})
        self.seeds = sorted({s for c in self.curves.values() for s in c})
        self.epochs = max(len(c) for cs in self.curves.values() for c in cs.values())
        self._nearest_cache = {}

    def nearest(self, batch_size, lr, optimizer):
        """ReplayTable::Nearest: same optimizer when recorded, least squared distance in
        (log2 batch, log10 lr), the first in table order on ties."""
        cache_key = (batch_size, lr, optimizer)
        got = self._nearest_cache.get(cache_key)
        if got is not None:
            return got
        recorded = optimizer in self.optimizers
        best, best_d = self.order[0], INF
        for key in self.order:
            if recorded and key[2] != optimizer:
                continue
            db = math.log2(key[0]) - math.log2(batch_size)
            dl = math.log10(key[1]) - math.log10(lr)
            d = db * db + dl * dl
            if d < best_d:
                best, best_d = key, d
        self._nearest_cache[cache_key] = best
        return best

    def curve_for(self, key, trial_seed):
        """ReplayTable::CurveFor: the recorded seeds in ascending order, trial seed mod n."""
        seeds = sorted(self.curves[key])
        return self.curves[key][seeds[trial_seed % len(seeds)]]


def seed_tta(curve, target):
    t = 0.0
    for acc, sec in curve:
        t += sec
        if acc >= target:
            return t
    return INF


class Truth:
    def __init__(self, table, target):
        self.target = target
        self.tta = {}
        for key in table.order:
            # From the seeds the configuration has: real grids rerun only some points, so a
            # table may be ragged. (A run that diverged in its first epoch leaves no rows
            # either; it counts as not recorded.)
            per_seed = [seed_tta(c, target) for c in table.curves[key].values()]
            self.tta[key] = INF if INF in per_seed else sum(per_seed) / len(per_seed)
        self.tta_star = min(self.tta.values())
        self.best_key = min(self.tta, key=self.tta.get)
        self.reaching = sum(1 for v in self.tta.values() if v < INF)
        self.near = sorted((k for k, v in self.tta.items() if v <= NEAR * self.tta_star),
                           key=self.tta.get)

        def mean(xs):
            return sum(xs) / len(xs)

        self.grid_full = sum(
            mean([sum(s for _, s in c) for c in table.curves[k].values()]) for k in table.order)
        self.grid_stop = 0.0
        for k in table.order:
            costs = []
            for c in table.curves[k].values():
                t = 0.0
                for acc, sec in c:
                    t += sec
                    if acc >= target:
                        break
                costs.append(t)
            self.grid_stop += mean(costs)

    def near_optimal(self, key):
        return self.tta[key] <= NEAR * self.tta_star


def seed_luck(table, truth, draws, ks, rng_seed=1):
    """How often a grid on random seeds names a near-optimal configuration (bench/seed_luck.py
    says more). Each draw picks one recorded seed for every configuration and names the least
    observed TTA, as evaluate() names the incumbent. Returns that share, and for each k of ks
    the share when the k least observed are trained on every seed and the least mean named,
    with the median cost of those confirmations (each stopped at its target or at twice the
    least observed TTA) as a share of the grid."""
    per_seed = {k: [seed_tta(c, truth.target) for _, c in sorted(table.curves[k].items())]
                for k in table.order}
    whole = {k: [sum(s for _, s in c) for _, c in sorted(table.curves[k].items())]
             for k in table.order}
    rng = random.Random(rng_seed)
    once = 0
    confirmed = {k: 0 for k in ks}
    costs = {k: [] for k in ks}
    for _ in range(draws):
        drawn = {key: rng.randrange(len(v)) for key, v in per_seed.items()}
        seen = {key: per_seed[key][i] for key, i in drawn.items()}
        ranked = sorted(seen, key=seen.get)
        once += truth.near_optimal(ranked[0])
        limit = 2.0 * seen[ranked[0]]
        for k in ks:
            confirmed[k] += truth.near_optimal(min(ranked[:k], key=truth.tta.get))
            costs[k].append(sum(min(per_seed[key][j], whole[key][j], limit)
                                for key in ranked[:k] for j in range(len(per_seed[key]))
                                if j != drawn[key]) / truth.grid_full)
    return once / draws, {k: (confirmed[k] / draws, quantile(costs[k], 0.5)) for k in ks}


# ------------------------------------------------------------------------- the evaluation


def repeat_epochs(theirs, at_least=3):
    """The epochs after which the controller compares a rerun's curve with an earlier run's
    (JobEngine::RepeatedRun): 3, and more while that run's curve has not moved."""
    n = at_least
    while n < len(theirs) and all(a == theirs[0] for a in theirs[:n]):
        n += 1
    return n


def evaluate(events, config_of, truth, apply_bound, reruns=None, seeds=1):
    """events: [(trial, epoch, val_accuracy, seconds)] in the order trained; config_of:
    trial -> recorded configuration key; reruns: trial -> (the sampler's trial it reruns on
    another seed, the run whose curve it repeated or -1), the product's reruns with
    incumbent_seeds = `seeds` (tuner/seed_groups.h). Returns the run's cost to near-optimal,
    its total compute, and the seconds dropped as overrun (apply_bound: the controller's
    bound rule: a sampler's trial is stopped at the slowest run of the settled incumbent,
    JobEngine::ChallengerBar, else at the incumbent's TTA). The incumbent is named as the
    controller names it: the settled configuration with the least mean TTA over its seeds,
    or while none is, the least single TTA among configurations whose runs so far all
    reached the target."""
    reruns = reruns or {}
    target = truth.target
    last = {}
    for i, (trial, _e, _a, _s) in enumerate(events):
        last[trial] = i
    cum = 0.0
    train = {}
    reached = set()
    stopped = set()
    overrun = 0.0
    overrun_epochs = 0
    # Per sampler's trial that reached the target: its runs' TTAs, and its group's state.
    groups = {}
    good_since = None
    inc = None

    def named():
        """The incumbent, its TTA, and the bar a sampler's trial must beat
        (JobEngine::ChallengerBar: the slowest run of a settled incumbent)."""
        best, best_mean = None, INF
        for first, g in groups.items():
            if g["running"] or g["missed"] or not (g["seed_free"] or len(g["tta"]) >= seeds):
                continue
            mean = sum(g["tta"]) / len(g["tta"])
            if mean < best_mean:
                best, best_mean = first, mean
        if best is not None:
            return best, best_mean, max(groups[best]["tta"])
        for first, g in groups.items():
            if not g["missed"] and g["tta"][0] < best_mean:
                best, best_mean = first, g["tta"][0]
        return best, best_mean, best_mean

    bar = INF
    curves = {}  # trial -> validation accuracies so far
    for i, (trial, _epoch, acc, sec) in enumerate(events):
        if trial in stopped or trial in reached:
            overrun += sec
            overrun_epochs += 1
            continue
        cum += sec
        train[trial] = train.get(trial, 0.0) + sec
        curves.setdefault(trial, []).append(acc)
        if trial in reruns:
            first, repeats = reruns[trial]
            g = groups.get(first)
            if g is None:  # its first run's crossing was not in the stream: nothing to name
                continue
            g["running"] = True
            if acc >= target and repeats < 0:
                reached.add(trial)
            if (apply_bound and repeats >= 0
                    and len(curves[trial]) == repeat_epochs(curves.get(repeats, []))):
                # The controller's repeat verdict (JobEngine::RepeatedRun): the epochs the
                # replay worker trains after it are replay artifacts, as a bound stop's are.
                stopped.add(trial)
            if i == last[trial] or trial in reached or trial in stopped:
                g["running"] = False
                if repeats >= 0:
                    g["seed_free"] = True
                elif trial in reached:
                    g["tta"].append(train[trial])
                else:
                    g["missed"] = True
        elif acc >= target:
            reached.add(trial)
            groups[trial] = {"tta": [train[trial]], "running": False, "missed": False,
                             "seed_free": False}
        elif apply_bound and train[trial] >= bar:
            stopped.add(trial)
        inc, _, bar = named()
        if inc is not None and truth.near_optimal(config_of[inc]):
            if good_since is None:
                good_since = cum
        else:
            good_since = None
    near_trials = {t for t, k in config_of.items() if truth.near_optimal(k) and t not in reruns}
    return {
        "cost": good_since if good_since is not None else INF,
        # Diagnostics: did the run try a near-optimal configuration, did one reach the target?
        "tried_near": len(near_trials),
        "near_reached": len(near_trials & reached),
        # Near-optimal trials the run stopped (or left) before they reached the target: the
        # late winners that early stopping loses.
        "near_stopped": len(near_trials - reached),
        "total": cum,
        "overrun_s": overrun,
        "overrun_epochs": overrun_epochs,
        "incumbent": list(config_of[inc]) if inc is not None else None,
        "incumbent_true_tta": truth.tta[config_of[inc]] if inc is not None else None,
        "trials": len(config_of) - len(reruns),
        "reruns": len(reruns),
        "epochs": len(events) - overrun_epochs,
    }


# --------------------------------------------------------------------- Topotune (product)


class Lane:
    """One topotuned with one replay worker, jobs one at a time."""

    def __init__(self, root, name, topotuned, worker, table_path):
        self.dir = os.path.join(root, name)
        os.makedirs(self.dir, exist_ok=True)
        self.db = os.path.join(self.dir, "topotune.db")
        ports = os.path.join(self.dir, "ports.json")
        self.procs = []
        self.logs = []
        # The lane's admin token (admins may do what users do) and, issued with it, the
        # worker's token: every request needs one.
        self.token = secrets.token_hex(32)
        admin_file = os.path.join(self.dir, "admin.token")
        with open(admin_file, "w") as f:
            f.write(self.token + "\n")
        self.procs.append(self._spawn([topotuned, "--db", self.db, "--http", "127.0.0.1:0",
                                       "--workers", "127.0.0.1:0", "--ports-file", ports,
                                       "--admin-token-file", admin_file],
                                      "topotuned.log"))
        for _ in range(200):
            if os.path.exists(ports) and os.path.getsize(ports) > 0:
                break
            time.sleep(0.05)
        p = json.load(open(ports))
        self.http = p["http"]
        worker_file = os.path.join(self.dir, "worker.token")
        with open(worker_file, "w") as f:
            f.write(self._call("/v1/tokens", {"role": "worker"})["token"] + "\n")
        self.procs.append(self._spawn([worker, "--controller", f"127.0.0.1:{p['workers']}",
                                       "--name", name + "-w1", "--replay", table_path,
                                       "--speedup", "0", "--token-file", worker_file,
                                       "--checkpoint-dir", os.path.join(self.dir, "ckpt")],
                                      "worker.log"))
        for _ in range(200):  # the worker is registered
            if any(w.get("state") == "idle" for w in self._get("/v1/workers").get("workers", [])):
                break
            time.sleep(0.05)

    def _spawn(self, argv, log):
        f = open(os.path.join(self.dir, log), "w")
        self.logs.append(f)
        return subprocess.Popen(argv, stdout=f, stderr=subprocess.STDOUT)

    def _call(self, path, body=None):
        """GET `path`, or POST `body` to it, with the lane's token; the JSON answer."""
        headers = {"Authorization": f"Bearer {self.token}"}
        data = None
        if body is not None:
            headers["Content-Type"] = "application/json"
            data = json.dumps(body).encode()
        req = urllib.request.Request(f"http://127.0.0.1:{self.http}{path}", data=data,
                                     method="POST" if body is not None else "GET",
                                     headers=headers)
        with urllib.request.urlopen(req, timeout=30) as r:
            return json.loads(r.read())

    def _get(self, path):
        return self._call(path)

    def run_job(self, spec, timeout_s=600):
        try:
            job_id = self._call("/v1/jobs", spec)["id"]
        except urllib.error.HTTPError as e:
            raise RuntimeError(f"POST /v1/jobs: {e.code} {e.read().decode()}")
        deadline = time.time() + timeout_s
        delay = 0.02
        while True:
            job = self._get(f"/v1/jobs/{job_id}")
            if job["state"] in ("completed", "failed", "cancelled"):
                break
            if time.time() > deadline:
                raise RuntimeError(f"job {job_id} still {job['state']} after {timeout_s} s")
            time.sleep(delay)
            delay = min(delay * 1.5, 0.25)
        if job["state"] != "completed":
            raise RuntimeError(f"job {job_id} {job['state']}: {job.get('message')}")
        return job_id, job["spec"]

    def events(self, job_id):
        con = sqlite3.connect(self.db, timeout=30)
        try:
            rows = con.execute(
                "SELECT t.number, t.batch_size, t.learning_rate, t.optimizer, t.seed, "
                "cp.epoch, cp.val_accuracy, cp.compute_s + cp.comm_s FROM curve_points cp "
                "JOIN trials t ON t.id = cp.trial_id WHERE t.job_id = ? ORDER BY cp.rowid",
                (job_id,)).fetchall()
            trials = con.execute(
                "SELECT number, batch_size, learning_rate, optimizer, seed, confirms, repeats "
                "FROM trials WHERE job_id = ?", (job_id,)).fetchall()
        finally:
            con.close()
        return rows, trials

    def close(self):
        for p in reversed(self.procs):
            if p.poll() is None:
                p.terminate()
        for p in self.procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
        for f in self.logs:
            f.close()


def incumbent_seeds(args, algorithm):
    """The incumbent_seeds the job gives: 3 for "forecast-seeds", else --incumbent-seeds
    (None: the job leaves it to the controller's default)."""
    return 3 if algorithm == "forecast-seeds" else getattr(args, "incumbent_seeds", None)


def job_spec(table, args, algorithm, seed):
    spec = {
        "name": f"bench-{algorithm}-{seed}",
        "model": table.meta.get("model", "lenet"),
        # The replay worker ignores the dataset; the spec needs one.
        "dataset": {"format": "cifar10-bin", "path": "replay-ignores-this"},
        "target_accuracy": args.target,
        "search_space": {
            # The table's own batch sizes, as Optuna's objective gets them. A range (every
            # power of two between the least and the largest) adds sizes the 80-epoch tables
            # lack (32, 128), which replay a neighbour's curve: until session 42 it did, and
            # on those tables about a third of a run's trials repeated a configuration the
            # run had already trained (bench/RESULTS.md).
            "batch_size": {"values": table.batch_sizes},
            "learning_rate": {"min": table.lrs[0], "max": table.lrs[-1], "scale": "log"},
            "optimizer": table.optimizers,
        },
        "scheduler": {"algorithm": algorithm, "min_epochs": args.min_epochs,
                      "reduction_factor": args.eta, "rungs": args.rungs},
        "max_trials": args.budget,
        "seed": seed,
        "grid_lr_points": len(table.lrs),
    }
    if algorithm.endswith(SECONDS_SUFFIX):
        # Rung 0 gets the seconds of min_epochs median epochs; no trial runs past the table.
        spec["scheduler"] = {"algorithm": algorithm[:-len(SECONDS_SUFFIX)],
                             "rung_unit": "seconds", "min_seconds": args.min_seconds,
                             "max_epochs": table.epochs, "reduction_factor": args.eta,
                             "rungs": args.rungs}
    if algorithm in ("forecast", "auto", "forecast-gp", "forecast-seeds"):
        # No rung schedule: the epoch limit alone (the table's length), as a user would
        # give it; "auto" picks the algorithm (and for a short limit, the rungs) from it.
        # "forecast-gp": the forecast with the GP sampler ("sampler": "gp");
        # "forecast-seeds": with "incumbent_seeds": 3 (tuner/seed_groups.h), which has been
        # the forecast's default since session 41; not in the default list.
        spec["scheduler"] = {"algorithm": algorithm, "max_epochs": table.epochs}
        if algorithm == "forecast-seeds":
            spec["scheduler"] = {"algorithm": "forecast", "max_epochs": table.epochs}
        if algorithm == "forecast-gp":
            spec["scheduler"] = {"algorithm": "forecast", "sampler": "gp",
                                 "max_epochs": table.epochs}
    if algorithm == "grid":
        spec["max_trials"] = len(table.batch_sizes) * len(table.lrs) * len(table.optimizers)
    if getattr(args, "time_budget_s", 0) > 0:
        spec["time_budget_s"] = args.time_budget_s
    if incumbent_seeds(args, algorithm) is not None:
        spec["incumbent_seeds"] = incumbent_seeds(args, algorithm)
    return spec


def topotune_run(lane, table, truth, args, algorithm, seed):
    job_id, spec = lane.run_job(job_spec(table, args, algorithm, seed))
    rows, trials = lane.events(job_id)
    config_of, seed_of, reruns = {}, {}, {}
    for number, bs, lr, opt, tseed, _confirms, _repeats in trials:
        config_of[number] = table.nearest(bs, lr, opt)
        seed_of[number] = tseed
    for number, _bs, _lr, _opt, tseed, confirms, repeats in trials:
        if confirms >= 0 and tseed != seed_of.get(confirms):
            reruns[number] = (confirms, repeats)
    events, mismatches = [], 0
    for number, bs, lr, opt, tseed, epoch, acc, sec in rows:
        curve = table.curve_for(config_of[number], tseed & 0xFFFFFFFFFFFFFFFF)
        if epoch > len(curve) or abs(curve[epoch - 1][0] - acc) > 1e-9:
            mismatches += 1
        events.append((number, epoch, acc, sec))
    # As the controller normalised it: "auto" may have chosen it (api/job_spec_json.h).
    seeds = spec.get("incumbent_seeds", 1)
    result = evaluate(events, config_of, truth, True, reruns, seeds)
    raw = evaluate(events, config_of, truth, False, reruns, seeds)
    result["raw_cost"], result["raw_total"] = raw["cost"], raw["total"]
    result["replay_mismatches"] = mismatches
    result["job_id"] = job_id
    result["chosen"] = spec["scheduler"].get("algorithm")
    result["incumbent_seeds"] = seeds
    return result


def run_topotune(table, truth, args, algorithms, progress):
    first = args.first_seed
    tasks = [(a, s) for s in range(first, first + args.seeds) for a in algorithms]
    if args.grid_seeds > 0:
        tasks = [("grid", s) for s in range(first, first + args.grid_seeds)] + tasks
    results = {a: [None] * (args.grid_seeds if a == "grid" else args.seeds)
               for a in (["grid"] if args.grid_seeds > 0 else []) + algorithms}
    root = args.workdir or tempfile.mkdtemp(prefix="topotune-search-")
    os.makedirs(root, exist_ok=True)
    lock = threading.Lock()
    errors = []

    def lane_main(index):
        lane = Lane(root, f"lane{index}", args.topotuned, args.worker, table.path)
        try:
            while True:
                with lock:
                    if not tasks or errors:
                        return
                    algorithm, seed = tasks.pop(0)
                r = topotune_run(lane, table, truth, args, algorithm, seed)
                with lock:
                    results[algorithm][seed - first] = r
                    progress(f"topotune {algorithm} seed {seed}")
        except Exception as e:  # noqa: BLE001 - reported, and the run fails
            with lock:
                errors.append(f"lane {index}: {e} (logs in {lane.dir})")
        finally:
            lane.close()

    threads = [threading.Thread(target=lane_main, args=(i,)) for i in range(args.lanes)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise RuntimeError("; ".join(errors))
    if not args.workdir and not args.keep:
        shutil.rmtree(root, ignore_errors=True)
    return results


def grid_run(table, truth, order, seed, max_epochs):
    """The product's grid simulated on the table: the configurations in `order`, each
    trained until it reaches the target, the incumbent's bound or `max_epochs` (the top
    rung), on the recorded seed that trial seed `seed` replays."""
    events, config_of = [], {}
    inc_tta = INF
    for number, key in enumerate(order):
        config_of[number] = key
        trained = 0.0
        for epoch, (acc, sec) in enumerate(table.curve_for(key, seed)[:max_epochs], 1):
            events.append((number, epoch, acc, sec))
            trained += sec
            if acc >= truth.target:
                inc_tta = min(inc_tta, trained)
                break
            if trained >= inc_tta:
                break
    result = evaluate(events, config_of, truth, apply_bound=True)
    result["raw_cost"], result["raw_total"] = result["cost"], result["total"]
    return result


def shuffled_grid_run(table, truth, seed, max_epochs):
    """The grid in an order shuffled by `seed`: how much of the product's grid's cost comes
    from its fixed order (batch sizes ascending, then optimizers, then learning rates)
    rather than from the grid itself."""
    order = list(table.order)
    random.Random(seed).shuffle(order)
    return grid_run(table, truth, order, seed, max_epochs)


def product_grid_order(table, args):
    """The product's grid order (GridSampler) over the job spec's space, each point snapped
    to its recorded configuration, as many points as the grid job's max_trials."""
    sizes = job_spec(table, args, "grid", 0)["search_space"]["batch_size"]["values"]
    n, lo, hi = len(table.lrs), table.lrs[0], table.lrs[-1]
    lrs = [lo * (hi / lo) ** (i / (n - 1)) for i in range(n)] if n > 1 else [math.sqrt(lo * hi)]
    order = [table.nearest(b, lr, o) for b in sizes for o in table.optimizers for lr in lrs]
    return order[:job_spec(table, args, "grid", 0)["max_trials"]]


# --------------------------------------------------------------------------------- Optuna


def optuna_run(table_path, target, setup, seed, budget):
    import optuna  # noqa: PLC0415 - only the Optuna runs need it

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    table = Table(table_path)
    truth = Truth(table, target)
    longest = max(sum(s for _, s in c) for cs in table.curves.values() for c in cs.values())
    penalty_unit = 10.0 * longest
    if setup == "optuna-tpe-sha":
        sampler = optuna.samplers.TPESampler(seed=seed)
        pruner = optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=3)
    elif setup == "optuna-random-hb":
        sampler = optuna.samplers.RandomSampler(seed=seed)
        pruner = optuna.pruners.HyperbandPruner(min_resource=1, max_resource=table.epochs,
                                                reduction_factor=3)
    else:
        raise ValueError(setup)
    events, config_of = [], {}

    def objective(trial):
        bs = trial.suggest_categorical("batch_size", table.batch_sizes)
        lr = trial.suggest_float("lr", table.lrs[0], table.lrs[-1], log=True)
        opt = trial.suggest_categorical("optimizer", table.optimizers)
        key = table.nearest(bs, lr, opt)
        config_of[trial.number] = key
        curve = table.curve_for(key, trial.number)  # seed index = trial.number mod seeds
        t, best = 0.0, 0.0
        for epoch, (acc, sec) in enumerate(curve, 1):
            t += sec
            best = max(best, acc)
            events.append((trial.number, epoch, acc, sec))
            if acc >= target:
                return t
            trial.report(1.0 - acc, epoch)
            if trial.should_prune():
                raise optuna.TrialPruned()
        return penalty_unit * (2.0 - best)

    # A fixed name: HyperbandPruner assigns brackets by hashing the study name.
    study = optuna.create_study(study_name=f"{setup}-{seed}", direction="minimize",
                                sampler=sampler, pruner=pruner)
    study.optimize(objective, n_trials=budget)
    result = evaluate(events, config_of, truth, apply_bound=False)
    result["raw_cost"], result["raw_total"] = result["cost"], result["total"]
    result["pruned"] = sum(1 for t in study.trials if t.state == optuna.trial.TrialState.PRUNED)
    return result


def run_optuna(args, setups, progress):
    results = {s: [None] * args.seeds for s in setups}
    with concurrent.futures.ProcessPoolExecutor(max_workers=args.lanes) as pool:
        futures = {pool.submit(optuna_run, args.table, args.target, s, seed, args.budget):
                   (s, seed) for s in setups
                   for seed in range(args.first_seed, args.first_seed + args.seeds)}
        for f in concurrent.futures.as_completed(futures):
            s, seed = futures[f]
            results[s][seed - args.first_seed] = f.result()
            progress(f"{s} seed {seed}")
    return results


# -------------------------------------------------------------------------------- summary


def quantile(xs, q):
    xs = sorted(xs)
    if not xs:
        return float("nan")
    pos = q * (len(xs) - 1)
    lo, hi = math.floor(pos), math.ceil(pos)
    frac = pos - lo
    if frac == 0 or xs[lo] == xs[hi]:
        return xs[lo]
    if xs[hi] == INF:
        return INF
    return xs[lo] + (xs[hi] - xs[lo]) * frac


def bootstrap_median(xs, reps=2000, seed=0):
    """A 95% percentile-bootstrap interval of the median (inf-aware)."""
    import random  # noqa: PLC0415

    rng = random.Random(seed)
    meds = sorted(quantile([rng.choice(xs) for _ in xs], 0.5) for _ in range(reps))
    return meds[int(0.025 * reps)], meds[int(0.975 * reps) - 1]


def sign_test(k, n):
    """Two-sided exact binomial p-value of k successes in n trials at p = 1/2."""
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(0, min(k, n - k) + 1)) / 2 ** n
    return min(1.0, 2 * tail)


def paired(a_runs, b_runs, grid):
    """B against A, run by run: both ran on the same seeds (results are indexed by seed),
    so the sampler's seed and the replayed curves match, and a difference that a comparison
    of two medians would drown in the seed-to-seed spread shows as a majority of runs.
    A run that never reached near-optimal counts as infinitely costly."""
    a = [r["cost"] / grid for r in a_runs]
    b = [r["cost"] / grid for r in b_runs]
    cheaper = sum(1 for x, y in zip(a, b) if y < x)
    dearer = sum(1 for x, y in zip(a, b) if y > x)
    ratios = [y / x for x, y in zip(a, b) if 0 < x < INF and y < INF]
    only_a = sum(1 for x, y in zip(a, b) if x < INF and y == INF)
    only_b = sum(1 for x, y in zip(a, b) if y < INF and x == INF)
    lo, hi = bootstrap_median(ratios) if ratios else (float("nan"), float("nan"))
    return {"runs": len(a), "cheaper": cheaper, "dearer": dearer,
            "equal": len(a) - cheaper - dearer,
            "sign_p": sign_test(cheaper, cheaper + dearer),
            "median_ratio": quantile(ratios, 0.5) if ratios else float("nan"),
            "median_ratio_ci95": [lo, hi],
            "success_only_a": only_a, "success_only_b": only_b,
            "success_p": sign_test(only_a, only_a + only_b)}


def summarize(name, runs, grid):
    costs = [r["cost"] / grid for r in runs]
    lo, hi = bootstrap_median(costs)
    raw = [r["raw_cost"] / grid for r in runs]
    return {
        "name": name,
        "runs": len(runs),
        "success": sum(1 for c in costs if c < INF) / len(runs),
        "p25": quantile(costs, 0.25),
        "median": quantile(costs, 0.5),
        "p75": quantile(costs, 0.75),
        "median_ci95": [lo, hi],
        "success_median": quantile([c for c in costs if c < INF], 0.5),
        "tried_near": sum(1 for r in runs if r["tried_near"] > 0) / len(runs),
        "near_reached": sum(1 for r in runs if r["near_reached"] > 0) / len(runs),
        "near_stopped": sum(1 for r in runs if r.get("near_stopped", 0) > 0) / len(runs),
        "raw_median": quantile(raw, 0.5),
        "total_median": quantile([r["total"] / grid for r in runs], 0.5),
        "raw_total_max": max(r.get("raw_total", r["total"]) / grid for r in runs),
        "overrun_epochs": sum(r.get("overrun_epochs", 0) for r in runs),
    }


def fmt(x, digits=3):
    if x == INF:
        return "inf"
    if x != x:
        return "-"
    return f"{x:.{digits}f}"


def jsonable(x):
    if isinstance(x, float):
        return None if (x == INF or x != x) else x
    if isinstance(x, dict):
        return {k: jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    return x


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    repo = os.path.dirname(here)
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--table", required=True)
    ap.add_argument("--target", type=float, default=None,
                    help="default: the table's '# bench_target=' comment, else 0.80")
    ap.add_argument("--seeds", type=int, default=20, help="runs per algorithm (>= 20)")
    ap.add_argument("--first-seed", type=int, default=0,
                    help="seeds first..first+seeds-1: a held-out check on seeds a change "
                         "was not chosen on")
    ap.add_argument("--grid-seeds", type=int, default=None,
                    help="runs of the product's grid algorithm (default --seeds; 0 = none)")
    ap.add_argument("--budget", type=int, default=60, help="trials per run (max_trials)")
    ap.add_argument("--shuffled-grid", type=int, default=0,
                    help="runs of the grid simulated on the table (no controller), in the "
                         "product's order (a check of the simulation against 'grid') and in "
                         "an order shuffled per seed: what the grid costs without its order")
    ap.add_argument("--time-budget", type=float, default=0.0,
                    help="each job's time_budget_s, as a share of the full grid's cost "
                         "(0 = none): success is then the share of runs that end with a "
                         "near-optimal incumbent within that budget")
    ap.add_argument("--incumbent-seeds", type=int, default=None,
                    help="the job's incumbent_seeds: seeds a configuration is trained on "
                    "before the job names it best (default: the controller's, 3 for the "
                    "forecast and 1 for the rest)")
    ap.add_argument("--min-epochs", type=int, default=1)
    ap.add_argument("--eta", type=int, default=3)
    ap.add_argument("--rungs", type=int, default=None,
                    help="default: as many as fit: min_epochs * eta^(rungs-1) <= table epochs")
    ap.add_argument("--min-seconds", type=float, default=None,
                    help="rung 0 of the '@s' algorithms (rungs in seconds); default: "
                         "min_epochs x the table's median epoch seconds")
    ap.add_argument("--algorithms", default=",".join(TOPOTUNE_ALGORITHMS))
    ap.add_argument("--optuna", default=",".join(OPTUNA_SETUPS), help="'' = skip Optuna")
    ap.add_argument("--lanes", type=int, default=4,
                    help="controllers (each with one replay worker) and Optuna processes")
    ap.add_argument("--topotuned", default=os.path.join(repo, "build/api/topotuned"))
    ap.add_argument("--worker", default=os.path.join(repo, "build/workers/topotune-worker"))
    ap.add_argument("--workdir", default=None, help="keep controllers' databases here")
    ap.add_argument("--keep", action="store_true", help="keep the temporary work folder")
    ap.add_argument("--json", default=None, help="write the results here")
    ap.add_argument("--quiet", action="store_true")
    ap.add_argument("--paired", default=None, metavar="A,B",
                    help="compare two Topotune algorithms run by run on their common seeds "
                         "(e.g. a variant against HEAD): B cheaper / dearer, sign test, the "
                         "median per-run cost ratio B/A, runs only one of them got right")
    args = ap.parse_args()
    if args.grid_seeds is None:
        args.grid_seeds = args.seeds
    table = Table(args.table)
    if args.target is None:
        args.target = float(table.meta.get("bench_target", 0.80))
    if args.rungs is None:
        args.rungs = 1
        while args.min_epochs * args.eta ** args.rungs <= table.epochs:
            args.rungs += 1
    if args.min_seconds is None:
        seconds = sorted(sec for cs in table.curves.values() for c in cs.values() for _, sec in c)
        args.min_seconds = round(args.min_epochs * seconds[len(seconds) // 2], 3)
    top = args.min_epochs * args.eta ** (args.rungs - 1)
    if top > table.epochs:
        sys.exit(f"the top rung ({top} epochs) exceeds the table's {table.epochs} epochs")
    truth = Truth(table, args.target)
    if truth.tta_star == INF:
        sys.exit(f"no configuration reaches {args.target} on every seed it has: lower --target")
    args.time_budget_s = args.time_budget * truth.grid_full
    grid_points = len(table.order)
    algorithms = [a for a in args.algorithms.split(",") if a]
    setups = [s for s in args.optuna.split(",") if s]
    started = time.time()

    def progress(what):
        if not args.quiet:
            print(f"  [{time.time() - started:6.1f} s] {what}", file=sys.stderr, flush=True)

    rungs = [args.min_epochs * args.eta ** k for k in range(args.rungs)]
    print(f"table {args.table}: {grid_points} configurations ({len(table.batch_sizes)} batch "
          f"sizes x {len(table.lrs)} learning rates x {len(table.optimizers)} optimizers), "
          f"seeds {table.seeds}, {table.epochs} epochs; device {table.meta.get('device', '?')}")
    print(f"target {args.target}: {truth.reaching} of {grid_points} configurations reach it "
          f"on every seed they have; TTA* = {truth.tta_star:.3f} s (batch {truth.best_key[0]}, lr "
          f"{truth.best_key[1]:g}, {truth.best_key[2]}); {len(truth.near)} near-optimal "
          f"(true TTA <= {NEAR} x TTA*): " +
          ", ".join(f"{k[0]}/{k[1]:g}/{k[2]} {truth.tta[k]:.2f} s" for k in truth.near))
    print(f"grid cost (every configuration, all {table.epochs} epochs): {truth.grid_full:.1f} s;"
          f" grid stopping each run at the target: {truth.grid_stop:.1f} s "
          f"({truth.grid_stop / truth.grid_full:.3f} of the full grid)")
    luck = None
    if max(len(s) for s in table.curves.values()) > 1:
        once, confirmed = seed_luck(table, truth, 2000, [3])
        luck = {"grid": once, "confirm_top3": confirmed[3][0]}
        print(f"seed luck: a grid on random seeds names a near-optimal configuration in "
              f"{100 * once:.1f}% of 2000 draws, and {100 * confirmed[3][0]:.1f}% with its 3 "
              f"best confirmed on every seed (bench/seed_luck.py)")
    seeds = (f"{args.seeds} seeds" if args.first_seed == 0 else
             f"{args.seeds} seeds ({args.first_seed}..{args.first_seed + args.seeds - 1})")
    if args.time_budget_s > 0:
        print(f"time budget per Topotune job: {args.time_budget_s:.1f} s of training "
              f"({args.time_budget:g} of the full grid)")
    print(f"budget {args.budget} trials per run, {seeds}; Topotune rungs {rungs} "
          f"epochs (min_epochs {args.min_epochs}, reduction_factor {args.eta}); '@s' rungs "
          f"{[round(args.min_seconds * args.eta ** k, 3) for k in range(args.rungs)]} training "
          f"seconds, at most {table.epochs} epochs", flush=True)

    results = {}
    if algorithms or args.grid_seeds > 0:
        results.update(run_topotune(table, truth, args, algorithms, progress))
    if setups:
        results.update(run_optuna(args, setups, progress))
    if args.shuffled_grid > 0:
        # The product's grid trains a configuration to the top rung at most.
        seeds = range(args.first_seed, args.first_seed + args.shuffled_grid)
        order = product_grid_order(table, args)
        results["grid (simulated)"] = [grid_run(table, truth, order, s, top) for s in seeds]
        results["grid (shuffled)"] = [shuffled_grid_run(table, truth, s, top) for s in seeds]
    elapsed = time.time() - started

    rows = [summarize(name, runs, truth.grid_full) for name, runs in results.items()]
    by = {r["name"]: r for r in rows}
    optuna_rows = [r for r in rows if r["name"].startswith("optuna")]
    best_optuna = min(optuna_rows, key=lambda r: r["median"]) if optuna_rows else None
    random_row = by.get("random")

    print()
    print(f"cost to near-optimal / grid cost ({truth.grid_full:.1f} s), over seeds "
          "(smaller is better; inf = the final incumbent was not near-optimal)")
    head = (f"{'algorithm':<18} {'runs':>4} {'success':>7} {'p25':>7} {'median':>7} "
            f"{'p75':>7} {'median 95% CI':>15} {'vs random':>9} {'vs ' + (best_optuna['name'] if best_optuna else '-'):>20}"
            f" {'total/grid':>10} {'succ med':>8} {'tried':>5} {'hit':>5} {'lost':>5} {'overrun':>7}"
            f" {'raw med':>7}")
    print(head)
    print("-" * len(head))
    for r in rows:
        vr = r["median"] / random_row["median"] if random_row and random_row["median"] not in (0, INF) else float("nan")
        vo = r["median"] / best_optuna["median"] if best_optuna and best_optuna["median"] not in (0, INF) else float("nan")
        print(f"{r['name']:<18} {r['runs']:>4} {r['success']:>7.0%} {fmt(r['p25']):>7} "
              f"{fmt(r['median']):>7} {fmt(r['p75']):>7} "
              f"{fmt(r['median_ci95'][0]) + '-' + fmt(r['median_ci95'][1]):>15} {fmt(vr, 2):>9} {fmt(vo, 2):>20} "
              f"{fmt(r['total_median']):>10} {fmt(r['success_median']):>8} "
              f"{r['tried_near']:>5.0%} {r['near_reached']:>5.0%} {r['near_stopped']:>5.0%} "
              f"{r['overrun_epochs']:>7} "
              f"{fmt(r['raw_median']):>7}")
    if args.time_budget_s > 0:
        for r in rows:
            if r["name"] in algorithms or r["name"] == "grid":
                print(f"{r['name']}: the most compute a run spent, every epoch counted: "
                      f"{r['raw_total_max']:.4f} of grid (its time budget: {args.time_budget:g})")
    print(f"(grid stopping at the target: {truth.grid_stop / truth.grid_full:.3f} of the grid;"
          " 'grid' above is the product's grid algorithm in its order, with bound pruning; "
          "median 95% CI: bootstrap over the seeds; succ med = median over the successful runs only; tried = runs that tried a "
          "near-optimal configuration, hit = runs in which one reached the target; "
          "lost = runs in which a near-optimal configuration was tried but stopped before it "
          "reached the target; "
          "overrun = epochs dropped as replay artifacts, raw med = median without dropping them)")

    tt = [r for r in rows if r["name"] in algorithms]
    verdict = {}
    if tt:
        best = min(tt, key=lambda r: r["median"])
        verdict = {"best_topotune": best["name"], "best_topotune_median": best["median"],
                   "within_tenth_of_grid": best["median"] <= 0.1}
        print()
        print(f"best Topotune algorithm: {best['name']}, median cost to near-optimal "
              f"{fmt(best['median'])} of grid (95% CI {fmt(best['median_ci95'][0])}-"
              f"{fmt(best['median_ci95'][1])}, success {best['success']:.0%}): "
              f"{'<=' if best['median'] <= 0.1 else 'NOT <='} 1/10 of grid")
        if best_optuna:
            below = best["median"] < best_optuna["median"]
            verdict.update({"best_optuna": best_optuna["name"],
                            "best_optuna_median": best_optuna["median"],
                            "below_best_optuna": below})
            print(f"best Optuna setup: {best_optuna['name']}, median {fmt(best_optuna['median'])}"
                  f" of grid (95% CI {fmt(best_optuna['median_ci95'][0])}-"
                  f"{fmt(best_optuna['median_ci95'][1])}, success {best_optuna['success']:.0%}):"
                  f" Topotune's best is {'below' if below else 'NOT below'} it")
    if args.paired:
        name_a, name_b = args.paired.split(",")
        if name_a not in results or name_b not in results:
            sys.exit(f"--paired {args.paired}: both must be among --algorithms")
        pr = paired(results[name_a], results[name_b], truth.grid_full)
        verdict["paired"] = dict(pr, a=name_a, b=name_b)
        print()
        print(f"paired, {name_b} against {name_a} on the same {pr['runs']} seeds: cheaper in "
              f"{pr['cheaper']}, dearer in {pr['dearer']}, equal in {pr['equal']} (sign test "
              f"p = {pr['sign_p']:.3g}); median cost ratio {fmt(pr['median_ratio'])} (95% CI "
              f"{fmt(pr['median_ratio_ci95'][0])}-{fmt(pr['median_ratio_ci95'][1])}, runs where "
              f"both succeeded); near-optimal reached by {name_a} only in "
              f"{pr['success_only_a']}, by {name_b} only in {pr['success_only_b']} (p = "
              f"{pr['success_p']:.3g})")
    mism = sum(r.get("replay_mismatches", 0) for runs in results.values() for r in runs)
    if mism:
        print(f"WARNING: {mism} recorded epochs differ from the table's curve of their "
              "snapped configuration and seed")
    print(f"({elapsed:.0f} s)")

    if args.json:
        out = {
            "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
            "table": args.table, "meta": table.meta, "target": args.target,
            "budget": args.budget, "seeds": args.seeds, "rungs": rungs,
            "incumbent_seeds": args.incumbent_seeds,
            "configurations": grid_points, "reaching": truth.reaching,
            "tta_star": truth.tta_star, "best": list(truth.best_key),
            "near_optimal": [list(k) + [truth.tta[k]] for k in truth.near],
            "grid_full_s": truth.grid_full, "grid_stop_s": truth.grid_stop, "seed_luck": luck,
            "summary": rows, "verdict": verdict, "runs": results, "elapsed_s": elapsed,
        }
        with open(args.json, "w") as f:
            json.dump(jsonable(out), f, indent=1)


if __name__ == "__main__":
    main()
