"""Evaluation throughput before and after, side by side in one run: results per CPU-second.

Runs the same small evaluation (inline backend, one torch thread, the bundled demo model) with the
code of an earlier commit ("before", checked out in a temporary ``git worktree``) and with this
tree ("after"), alternately, each in its own process, and prints for each: results computed, CPU
seconds, results per CPU-second, where the time went (explanations, the randomisation check, the
perturbation curves, the rest: the wall seconds the runner records per result, which a busy
machine inflates, so the CPU seconds are the figure to compare), and the largest difference
between the two runs' values (cost aside).

The default subset has every kind of work of ``--methods all --metrics all``: forward-only
perturbation methods (RISE and occlusion, RISE with fewer masks), gradient methods, an extremal
method (fewer iterations), STAA and the random reference, the whole metric suite, the
randomisation check on the first clip. The full 100-clip table is too long for a benchmark; the
README extrapolates to it from the per-part speed-ups printed here.

Usage: ``python benchmarks/evaluation_throughput.py [--before REV] [--clips 2] [--repeats 1]``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: the last commit before the evaluation was made faster (shared perturbation logits, fused
#: TimeSformer attention)
BEFORE = "f21a1ff"
METHODS = ("staa,saliency,integrated_gradients,occlusion,rise(n_samples=200),ep3d(iterations=20),random")
METRICS = ("deletion,insertion,deletion(unit=frame),insertion(unit=frame),faithfulness,monotonicity,"
           "pointing_game,energy,iou,temporal_grounding,sparseness,randomisation(clips=1),cost")

RUN = r"""
import json, sqlite3, sys, time
import torch
torch.set_num_threads(1)
from videoxai.evaluation import evaluate
data, methods, metrics, out = sys.argv[1:]
c0, w0 = time.process_time(), time.perf_counter()
s = evaluate("demo", data, methods, metrics, out, backend="inline", progress=False, report=False)
cpu, wall = time.process_time() - c0, time.perf_counter() - w0
db = sqlite3.connect(s.database)
parts = {"explanations": db.execute("SELECT SUM(seconds) FROM explanations").fetchone()[0] or 0.0}
for metric, seconds in db.execute("SELECT metric, SUM(seconds) FROM results GROUP BY metric"):
    part = ("randomisation" if metric.startswith("randomisation") else
            "curves" if metric.split("(")[0] in ("deletion", "insertion", "faithfulness", "monotonicity")
            else "sensitivity" if metric.split("(")[0] in ("class_sensitivity", "max_sensitivity")
            else "other metrics")
    parts[part] = parts.get(part, 0.0) + seconds
values = {"|".join(k): v for *k, v in db.execute("SELECT video, method, metric, value FROM results WHERE metric != 'cost'")}
print(json.dumps({"computed": s.computed, "errors": s.errors, "cpu": cpu, "wall": wall, "parts": parts,
                  "values": values}))
"""


def run(tree: Path, args, out: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(tree), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", RUN, f"synthetic:{args.clips}", args.methods, args.metrics, str(out)],
                          env=env, cwd=tree, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"evaluation in {tree} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--before", default=BEFORE, help="git revision of the 'before' code")
    ap.add_argument("--clips", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=1, help="alternating before/after pairs (the fastest is kept)")
    ap.add_argument("--methods", default=METHODS)
    ap.add_argument("--metrics", default=METRICS)
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="vx-throughput-") as tmp:
        tmp = Path(tmp)
        old = tmp / "before"
        added = subprocess.run(["git", "worktree", "add", "--detach", str(old), args.before], cwd=ROOT,
                               capture_output=True, text=True)
        if added.returncode != 0:  # a revision that is not there: git's own words, not a traceback
            raise SystemExit(f"--before {args.before}: {added.stderr.strip()}")
        try:
            best: dict[str, dict] = {}
            for r in range(args.repeats):
                for label, tree in (("before", old), ("after", ROOT)):
                    res = run(tree, args, tmp / f"{label}{r}")
                    print(f"  {label} run {r + 1}: {res['computed']} results, {res['cpu']:.1f} CPU-s, "
                          f"{res['wall']:.1f} s wall", flush=True)
                    if label not in best or res["cpu"] < best[label]["cpu"]:
                        best[label] = res
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(old)], cwd=ROOT, capture_output=True)

    b, a = best["before"], best["after"]
    common = set(b["values"]) & set(a["values"])
    diffs = sorted((abs(b["values"][k] - a["values"][k]), k) for k in common
                   if b["values"][k] is not None and a["values"][k] is not None)
    load = os.getloadavg()
    print(f"\nsynthetic:{args.clips}, demo model on the CPU, inline, 1 thread; before = {args.before}, after = this tree; "
          f"load average {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} on {os.cpu_count()} CPUs")
    print(f"{'':24s} {'before':>10s} {'after':>10s} {'speed-up':>9s}")
    print(f"{'results':24s} {b['computed']:10d} {a['computed']:10d}")
    print(f"{'CPU seconds':24s} {b['cpu']:10.1f} {a['cpu']:10.1f} {b['cpu'] / a['cpu']:9.2f}")
    rb, ra = b["computed"] / b["cpu"], a["computed"] / a["cpu"]
    print(f"{'results per CPU-second':24s} {rb:10.2f} {ra:10.2f} {ra / rb:9.2f}")
    for part in ("explanations", "randomisation", "sensitivity", "curves", "other metrics"):
        pb, pa = b["parts"].get(part, 0.0), a["parts"].get(part, 0.0)
        print(f"{'  ' + part + ' (wall s)':24s} {pb:10.1f} {pa:10.1f} {pb / pa if pa else float('nan'):9.2f}")
    print(f"values: {len(common)} in common of {len(b['values'])} / {len(a['values'])}; largest differences:")
    for d, k in diffs[-3:][::-1]:
        print(f"  {d:.2e}  {k.replace('|', '  ')}")


if __name__ == "__main__":
    main()
