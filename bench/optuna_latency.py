#!/usr/bin/env python3
"""Suggestion latency of Optuna's TPE sampler, beside bench_sampler_latency's.

    bench/optuna_latency.py [--n 100,1000] [--rounds 100] [--ours OURS.jsonl]

For each N, an in-memory study (direction minimize) with TPESampler(seed=1) (Optuna's
default, univariate; and multivariate=True, which is what Topotune's TPE mirrors) gets N
completed trials at once (study.add_trials of optuna.trial.create_trial: random batch size
16..512, learning rate 1e-4..1 log, optimizer sgd/adam; 10% FAIL, the rest valued by the
same smooth TTA surface as bench/sampler_latency.cc). One untimed round, then `rounds`
timed rounds of study.ask(fixed_distributions) (which samples every parameter at once, as
a define-and-run objective would) followed by study.tell(value). p50 / p90 / max in ms.

--ours FILE reads bench_sampler_latency --json output and prints one table with both.
"""

import argparse
import json
import math
import random
import time


def tta(bs, lr, opt, rng):
    dl = math.log10(lr) - (-3.0 if opt == "adam" else -2.5)
    db = math.log2(bs) - 6.0
    return 20.0 * math.exp(0.8 * dl * dl + 0.15 * db * db + rng.gauss(0.0, 0.05))


def quantile(xs, q):
    xs = sorted(xs)
    pos = q * (len(xs) - 1)
    lo, hi = math.floor(pos), math.ceil(pos)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def measure(n, rounds, multivariate, seed=1):
    import optuna  # noqa: PLC0415

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    dists = {
        "batch_size": optuna.distributions.CategoricalDistribution([16, 32, 64, 128, 256, 512]),
        "lr": optuna.distributions.FloatDistribution(1e-4, 1.0, log=True),
        "optimizer": optuna.distributions.CategoricalDistribution(["sgd", "adam"]),
    }
    rng = random.Random(seed)
    trials = []
    for _ in range(n):
        p = {"batch_size": rng.choice([16, 32, 64, 128, 256, 512]),
             "lr": 10 ** rng.uniform(-4, 0), "optimizer": rng.choice(["sgd", "adam"])}
        if rng.random() < 0.1:
            trials.append(optuna.trial.create_trial(params=p, distributions=dists,
                                                    state=optuna.trial.TrialState.FAIL))
        else:
            trials.append(optuna.trial.create_trial(
                params=p, distributions=dists, value=tta(p["batch_size"], p["lr"],
                                                         p["optimizer"], rng)))
    sampler = optuna.samplers.TPESampler(seed=seed, multivariate=multivariate)
    study = optuna.create_study(direction="minimize", sampler=sampler)
    study.add_trials(trials)

    def one_round():
        t0 = time.perf_counter()
        trial = study.ask(fixed_distributions=dists)
        p = trial.params
        study.tell(trial, tta(p["batch_size"], p["lr"], p["optimizer"], rng))
        return (time.perf_counter() - t0) * 1000.0

    first = one_round()
    ms = [one_round() for _ in range(rounds)]
    name = "optuna-tpe-mv" if multivariate else "optuna-tpe"
    return {"sampler": name, "n": n, "rounds": rounds, "first_ms": first,
            "p50_ms": quantile(ms, 0.5), "p90_ms": quantile(ms, 0.9), "max_ms": max(ms)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", default="100,1000")
    ap.add_argument("--rounds", type=int, default=100)
    ap.add_argument("--ours", default=None, help="bench_sampler_latency --json output")
    ap.add_argument("--json", default=None, help="write every row here (JSON lines)")
    args = ap.parse_args()
    import optuna  # noqa: PLC0415

    rows = []
    if args.ours:
        with open(args.ours) as f:
            rows += [json.loads(line) for line in f if line.strip().startswith("{")]
    for n in [int(x) for x in args.n.split(",") if x]:
        for mv in (False, True):
            rows.append(measure(n, args.rounds, mv))
    rows.sort(key=lambda r: (r["n"], r["sampler"]))
    print(f"suggestion latency: one Propose+Observe (ours) / ask+tell (Optuna {optuna.__version__})"
          " round after N completed trials, ms")
    print(f"{'sampler':<16} {'N':>6} {'rounds':>6} {'first':>9} {'p50':>9} {'p90':>9} {'max':>9}")
    for r in rows:
        print(f"{r['sampler']:<16} {r['n']:>6} {r['rounds']:>6} {r['first_ms']:>9.3f} "
              f"{r['p50_ms']:>9.3f} {r['p90_ms']:>9.3f} {r['max_ms']:>9.3f}")
    if args.json:
        with open(args.json, "w") as f:
            for r in rows:
                f.write(json.dumps(r) + "\n")


if __name__ == "__main__":
    main()
