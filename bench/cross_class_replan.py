#!/usr/bin/env python3
"""Cross-class predictions made again, by a given `topotune`, from the files that
bench/cross_class.py kept in its workdirs: nothing is probed or trained.

    bench/cross_class_replan.py TOPOTUNE WORKDIR...

For each WORKDIR: the cloud table the run predicted from (cloud-top-N-seeds.csv, else
cloud.csv), its target (the run's JSON, else the 20% rule), its first edge probe
(edge-profile.csv) and its edge recordings (edge-B-LR-OPT.csv). Prints each configuration's
predicted / measured time-to-accuracy on the edge and the share within +-15%. A planner
change is compared on recorded runs by running this with the old and the new binary.
"""

import glob
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from cross_class import mean_tta, read_table  # noqa: E402


def replan(binary, d):
    tops = sorted(glob.glob(os.path.join(d, "cloud-top-*-seeds.csv")))
    cloud = tops[0] if tops else os.path.join(d, "cloud.csv")
    # The run's JSON, not the topology (edge.json) or the probes it kept (edge-profile*.json).
    js = [j for j in glob.glob(os.path.join(d, "*.json"))
          if not os.path.basename(j).startswith("edge")]
    if js:
        target = json.load(open(js[0]))["target"]
    else:
        out = subprocess.run([sys.executable, os.path.join(HERE, "table_target.py"), "--share", "0.2",
                              os.path.join(d, "cloud.csv")], capture_output=True, text=True, check=True).stdout
        target = float(out.split("bench_target=")[1].split()[0])
    pred = json.loads(subprocess.run([binary, "predict", "--curves", cloud, "--profile",
                                      os.path.join(d, "edge-profile.csv"), "--topology",
                                      os.path.join(d, "edge.json"), "--target-accuracy", str(target),
                                      "--json"], capture_output=True, text=True, check=True).stdout)
    rows = {(r["config"]["batch_size"], round(r["config"]["learning_rate"], 8), r["config"]["optimizer"]): r
            for r in pred["targets"][0]["ranked"]}
    ratios = []
    for f in sorted(glob.glob(os.path.join(d, "edge-[0-9]*.csv"))):
        curves, _ = read_table(f)
        key, c = next(iter(curves.items()))
        m = mean_tta(c, target)
        p = rows.get((key[0], round(key[1], 8), key[2]))
        if m is None or p is None:
            continue
        ratios.append((key, p["tta_s"]["value"] / m[0]))
    within = sum(abs(r - 1) <= 0.15 for _, r in ratios)
    print(f"{d:<16} target {target}: within 15% {within}/{len(ratios)}  " +
          " ".join(f"{k[0]}/{k[1]:g}/{k[2]}:{r:.3f}" for k, r in ratios))


def main():
    if len(sys.argv) < 3:
        sys.exit("usage: bench/cross_class_replan.py TOPOTUNE WORKDIR...")
    for d in sys.argv[2:]:
        replan(sys.argv[1], d)


if __name__ == "__main__":
    main()
