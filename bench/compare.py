#!/usr/bin/env python3
"""Compares two builds of Ember with ember-bench, side by side in one run.

    bench/compare.py BEFORE_BIN AFTER_BIN [--rounds R] [--benchmarks boot,restore,reset,invoke]
                     [--out DIR] [-- EXTRA ember-bench ARGS...]

BEFORE_BIN and AFTER_BIN are build/bin directories (e.g. of a `git worktree`
at the older commit). Each round runs every benchmark once per build,
alternating, so that a noisy machine drifts both alike; the table gives each
series' p50 per build (the mean over rounds) and after/before. The JSON of
every run stays in DIR (default: a temporary directory, printed).

Timings count on a machine with /dev/kvm. Under scripts/kvm-in-qemu (QEMU
TCG) they vary by 2x from round to round: there, compare counts only.

example (on a KVM host):
    git worktree add /tmp/before HEAD~5 && make -C /tmp/before build
    bench/compare.py /tmp/before/build/bin build/bin --rounds 3
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

# Per benchmark: the arguments for a run that takes a minute or so on KVM.
DEFAULT_ARGS = {
    "boot": ["-n", "200"],
    "restore": ["-n", "500"],
    "reset": ["-n", "1000"],
    "invoke": ["-n", "300", "--seconds", "5", "--unjailed"],
}


def summaries(j, path=""):
    """Every {n, p50, ...} object in a report, by its dotted path."""
    if isinstance(j, dict):
        if "p50" in j and "n" in j:
            yield path, j
        for k, v in j.items():
            yield from summaries(v, f"{path}.{k}" if path else k)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("before")
    ap.add_argument("after")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--benchmarks", default="boot,restore,reset,invoke")
    ap.add_argument("--out")
    a, extra = ap.parse_known_args()
    extra = [x for x in extra if x != "--"]
    out = a.out or tempfile.mkdtemp(prefix="ember-compare-")
    os.makedirs(out, exist_ok=True)
    sides = {"before": a.before, "after": a.after}
    for side, d in sides.items():
        if not os.access(os.path.join(d, "ember-bench"), os.X_OK):
            sys.exit(f"compare: no ember-bench in {d} ({side})")
    benches = a.benchmarks.split(",")
    for r in range(1, a.rounds + 1):
        for bench in benches:
            for side, d in sides.items():
                path = os.path.join(out, f"{side}-{bench}-{r}.json")
                argv = [os.path.join(d, "ember-bench"), bench] + DEFAULT_ARGS.get(bench, []) + extra + ["--json", path]
                print(f"round {r}: {bench} ({side})", flush=True)
                p = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
                if p.returncode != 0:
                    sys.exit(f"compare: {' '.join(argv)} failed ({p.returncode}):\n{p.stderr[-2000:]}")
    print(f"\n{'series':64} {'before p50':>12} {'after p50':>12} {'after/before':>12}")
    report = []
    for bench in benches:
        runs = {side: [json.load(open(os.path.join(out, f"{side}-{bench}-{r}.json"))) for r in range(1, a.rounds + 1)]
                for side in sides}
        for key, _ in summaries(runs["before"][0]):
            p50 = {side: [s["p50"] for j in runs[side] for k, s in summaries(j) if k == key and s.get("n")]
                   for side in sides}
            if not p50["before"] or not p50["after"]:
                continue
            b, f = statistics.mean(p50["before"]), statistics.mean(p50["after"])
            ratio = f / b if b else None
            report.append({"benchmark": bench, "series": key, "before_p50": b, "after_p50": f, "ratio": ratio})
            print(f"{bench + ' ' + key:64.64} {b:12.1f} {f:12.1f} {ratio if ratio is not None else float('nan'):12.2f}")
    with open(os.path.join(out, "compare.json"), "w") as fp:
        json.dump({"rounds": a.rounds, "before": a.before, "after": a.after, "series": report}, fp, indent=1)
    print(f"\nruns and compare.json in {out}")


if __name__ == "__main__":
    main()
