#!/usr/bin/python3
"""Summarises the JSON lines of bench/run_throughput.sh: per case (model, batch, threads)
the median samples/s of the C++ Trainer and of Python PyTorch over the rounds and their
ratio (and the ratio of samples per CPU second, which does not count time spent waiting
for a core), then the per-round paired ratios with their median and its 95% bootstrap
interval, how much CPU each side got, and where the C++ time goes.

usage: summarize_throughput.py RESULTS.jsonl [MORE.jsonl ...]   (several files: pooled)
"""

import json
import random
import statistics
import sys


def median_ci(values, resamples=2000, seed=1):
    """The median of `values` and a 95% bootstrap interval for it (percentile method)."""
    rng = random.Random(seed)
    medians = sorted(statistics.median(rng.choices(values, k=len(values)))
                     for _ in range(resamples))
    return (statistics.median(values), medians[int(0.025 * resamples)],
            medians[int(0.975 * resamples) - 1])


def table(header, rows):
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(row) + " |")


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    runs = [json.loads(line) for path in sys.argv[1:] for line in open(path)
            if line.startswith("{")]
    cases = {}
    for run in runs:
        # Files from before the GPU support hold CPU runs without a "device" field.
        key = (run.get("device", "cpu"), run["model"], run["batch"], run["threads"])
        cases.setdefault(key, {"cpp": [], "python": []})[run["impl"]].append(run)

    main_rows, detail_rows, below = [], [], []
    for (device, model, batch, threads), by_impl in cases.items():
        cpp, python = by_impl["cpp"], by_impl["python"]
        if not cpp or not python:
            continue

        def median(side, field):
            # Older result files lack some fields: nan when no run has it.
            values = [r[field] for r in side if field in r]
            return statistics.median(values) if values else float("nan")

        def share(field):
            return statistics.median(r[field] / r["compute_s"] for r in cpp)

        ratio = median(cpp, "samples_per_s") / median(python, "samples_per_s")
        paired = [c["samples_per_s"] / p["samples_per_s"] for c, p in zip(cpp, python)]
        # Same seed, same data: both sides train the same weights on the same batches, so
        # the epoch losses agree to float rounding when the mirror is exact.
        same_loss = all(abs(c["train_loss"] - p["train_loss"]) <= 1e-4 * abs(p["train_loss"])
                        for c, p in zip(cpp, python))
        main_rows.append([
            device, model, str(batch), str(threads), str(cpp[0]["samples"]),
            "%.1f" % median(cpp, "samples_per_s"), "%.1f" % median(python, "samples_per_s"),
            "**%.3f**" % ratio,
            "%.3f" % (median(cpp, "samples_per_cpu_s") / median(python, "samples_per_cpu_s")),
            "%.2f%%" % (100.0 * share("data_s")),
            "yes" if same_loss else "NO"])
        paired_median, low, high = median_ci(paired)
        detail_rows.append([
            model, str(batch), " ".join("%.3f" % r for r in paired),
            "%.3f (%.3f–%.3f)" % (paired_median, low, high),
            "%.3f" % (median(python, "step_ms_p50") / median(cpp, "step_ms_p50")),
            "%.2f / %.2f" % (median(cpp, "cpu_per_wall"), median(python, "cpu_per_wall")),
            "%.1f / %.1f / %.1f%%" % (100.0 * share("forward_s"), 100.0 * share("backward_s"),
                                      100.0 * share("optimizer_s")),
            "%.0f / %.0f" % (median(cpp, "page_faults_per_step"),
                             median(python, "page_faults_per_step")),
            "%.1f / %.1f%%" % (100.0 * statistics.median(
                r["optimizer_s"] / r["compute_s"] for r in python),
                100.0 * statistics.median(r["data_s"] / r["compute_s"] for r in python))])
        if ratio < 1.0:
            below.append("%s %s batch %d" % (device, model, batch))

    table(["device", "model", "batch", "threads", "samples/epoch", "C++ samples/s (median)",
           "Python samples/s (median)", "ratio C++/Python", "ratio per CPU second",
           "C++ data share", "same loss"],
          main_rows)
    print()
    table(["model", "batch", "paired C++/Python per round",
           "paired median (95% bootstrap CI)", "step p50 Python/C++",
           "CPU/wall C++ / Python (median)", "C++ fwd / bwd / opt share",
           "page faults per step C++ / Python",
           "Python opt / data share"], detail_rows)
    print()
    if below:
        print("C++/Python below 1.0 for: " + ", ".join(below))
    else:
        print("C++/Python >= 1.0 in every case.")


if __name__ == "__main__":
    main()
