#!/usr/bin/python3
"""Summarises the JSON lines of bench/run_throughput.sh: per case (model, batch, threads)
the median samples/s of the C++ Trainer and of Python PyTorch over the rounds, their
ratio, the per-round paired ratios, and where the C++ time goes.

usage: summarize_throughput.py RESULTS.jsonl
"""

import json
import statistics
import sys


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    runs = [json.loads(line) for line in open(sys.argv[1]) if line.startswith("{")]
    cases = {}
    for run in runs:
        key = (run["model"], run["batch"], run["threads"])
        cases.setdefault(key, {"cpp": [], "python": []})[run["impl"]].append(run)

    header = ("| model | batch | threads | samples/epoch | C++ samples/s (median) | "
              "Python samples/s (median) | ratio C++/Python | paired ratios per round | "
              "C++ data share | C++ fwd / bwd / opt share | same loss |")
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    below = []
    for (model, batch, threads), by_impl in cases.items():
        cpp, python = by_impl["cpp"], by_impl["python"]
        if not cpp or not python:
            continue
        cpp_median = statistics.median(r["samples_per_s"] for r in cpp)
        python_median = statistics.median(r["samples_per_s"] for r in python)
        ratio = cpp_median / python_median
        paired = [c["samples_per_s"] / p["samples_per_s"] for c, p in zip(cpp, python)]

        def share(field):
            return statistics.median(r[field] / r["compute_s"] for r in cpp)

        # The two sides train the same weights on the same batches: the epoch losses agree
        # to float rounding when the mirror is exact.
        same_loss = all(abs(c["train_loss"] - p["train_loss"]) <= 1e-4 * abs(p["train_loss"])
                        for c, p in zip(cpp, python))
        print("| %s | %d | %d | %d | %.1f | %.1f | **%.3f** | %s | %.2f%% | %.0f / %.0f / %.1f%% "
              "| %s |" % (
                  model, batch, threads, cpp[0]["samples"], cpp_median, python_median, ratio,
                  " ".join("%.3f" % r for r in paired), 100.0 * share("data_s"),
                  100.0 * share("forward_s"), 100.0 * share("backward_s"),
                  100.0 * share("optimizer_s"), "yes" if same_loss else "NO"))
        if ratio < 1.0:
            below.append("%s batch %d" % (model, batch))
    print()
    if below:
        print("C++/Python below 1.0 for: " + ", ".join(below))
    else:
        print("C++/Python >= 1.0 in every case.")


if __name__ == "__main__":
    main()
