#!/usr/bin/env python3
"""Does the probe survive a spell of slowness? Sequential against interleaved rounds.

    bench/probe_spells.py [--trials 6] [--quota 0.25] [--seconds 6] [--spell 8]
                          [--batch-sizes 16,32,64,128,256] [--workdir DIR] [--seed 1]

On a shared machine the emulated edge (a quarter of a core) slows down for some seconds at a
time. A probe that times its batch sizes one after another (`--rounds 1`) then reads the
sizes it was timing during the spell as slower than the others, and a prediction built on
them misses at those sizes (bench/RESULTS.md, cross-class run e: batch 64 read 18% slow).
The probe's default splits each size's seconds into rounds that cycle through the sizes,
and takes each size's median round (`--rounds 5`).

Each trial, inside one cgroup holding QUOTA of a CPU (as bench/cross_class.py's edge):
1. a probe with no spell, `--rounds 1`;
2. and 3. a probe with `--rounds 1` and one with `--rounds ROUNDS` (order alternating between
   trials), each with the same spell: a busy loop joins the cgroup SPELL seconds after a
   random moment within the probe's timed part, so the probe gets about half the quota
   for that long;
4. a probe with no spell, `--rounds ROUNDS` (default 5).
The reference step of a batch size is the mean of 1 and 4 (one of each kind, so neither
kind is its own reference). Prints each probe's error against it per batch size, then per
kind: the median and the largest absolute error, and the share of (trial, batch size)
within +-10%. The spread between 1 and 4 is the noise floor of this machine. Needs root
(cgroups) and build/workers/topotune-worker, build/workers/topotune-datagen. About 2.5
minutes a trial at the defaults.
"""

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, HERE)
from cross_class import Quota  # noqa: E402  (the same cgroup as the cross-class edge)


def probe(worker, quota, data, args, rounds, spell_at=None):
    """One probe inside the quota, with a spell SPELL seconds long starting spell_at seconds
    after the probe starts (None: no spell). Returns {batch size: step ms}."""
    cmd = quota.wrap([worker, "probe", "--data", data, "--model", "lenet", "--batch-sizes",
                      args.batch_sizes, "--threads", "1", "--seconds", str(args.seconds),
                      "--rounds", str(rounds)])
    hog = []

    def start_spell():
        hog.append(subprocess.Popen(
            quota.wrap(["timeout", str(args.spell), "sh", "-c", "while :; do :; done"])))

    timer = threading.Timer(spell_at, start_spell) if spell_at is not None else None
    out = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    if timer:
        timer.start()
    text, _ = out.communicate()
    if timer:
        timer.cancel()
    for h in hog:
        h.wait()
    if out.returncode != 0:
        sys.exit(f"probe failed (rc {out.returncode})")
    return {b["batch_size"]: b["step_ms"] for b in json.loads(text)["probe"]["batches"]
            if b["fits"]}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--trials", type=int, default=6)
    ap.add_argument("--quota", type=float, default=0.25, help="the edge's share of one CPU")
    ap.add_argument("--seconds", type=float, default=6.0, help="timed seconds per batch size")
    ap.add_argument("--spell", type=float, default=8.0, help="seconds the busy loop runs")
    ap.add_argument("--batch-sizes", default="16,32,64,128,256")
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=5, help="the interleaved probe's rounds")
    args = ap.parse_args()
    build = os.path.join(REPO, "build")
    worker = os.path.join(build, "workers/topotune-worker")
    work = args.workdir or tempfile.mkdtemp(prefix="topotune-probe-spells-")
    data = os.path.join(work, "data")
    if not os.path.isdir(data):
        subprocess.run([os.path.join(build, "workers/topotune-datagen"), "--out", data,
                        "--train", "2000", "--test", "500"], check=True,
                       stdout=subprocess.DEVNULL)
    sizes = [int(b) for b in args.batch_sizes.split(",")]
    timed = args.seconds * len(sizes)  # the probe's timed part, in wall seconds
    rng = random.Random(args.seed)
    quota = Quota(args.quota)
    errors = {"sequential": [], "interleaved": [], "no spell": []}
    try:
        print(f"# quota {args.quota} of a core, {args.seconds} s per size, spell {args.spell} s, "
              f"interleaved: {args.rounds} rounds, "
              f"sizes {args.batch_sizes}; error = probe / reference - 1, in %", flush=True)
        print("trial | spell at s | kind | " + " | ".join(str(b) for b in sizes))
        for t in range(args.trials):
            # The spell starts within the timed part, after about 2 s of start-up and warm-up.
            spell_at = 2.0 + rng.uniform(0, max(0.0, timed - args.spell))
            ref1 = probe(worker, quota, data, args, rounds=1)
            kinds = [("sequential", 1), ("interleaved", args.rounds)]
            if t % 2:
                kinds.reverse()
            spelled = {kind: probe(worker, quota, data, args, rounds, spell_at)
                       for kind, rounds in kinds}
            ref5 = probe(worker, quota, data, args, rounds=args.rounds)
            ref = {b: (ref1[b] + ref5[b]) / 2 for b in sizes if b in ref1 and b in ref5}
            rows = [(kind, spelled[kind]) for kind, _ in kinds]
            rows.append(("no spell", ref1))  # half the gap between the two references
            for kind, steps in rows:
                err = {b: 100.0 * (steps[b] / ref[b] - 1) for b in ref if b in steps}
                errors[kind].extend(err.values())
                print(f"{t} | {spell_at:.1f} | {kind} | " +
                      " | ".join(f"{err[b]:+.1f}" if b in err else "-" for b in sizes),
                      flush=True)
    finally:
        quota.remove()
    print("\nkind | median abs error % | largest abs error % | within +-10%")
    for kind, e in errors.items():
        a = [abs(x) for x in e]
        print(f"{kind} | {statistics.median(a):.1f} | {max(a):.1f} | "
              f"{sum(x <= 10 for x in a)}/{len(a)}")


if __name__ == "__main__":
    main()
