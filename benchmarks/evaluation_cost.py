"""What a whole evaluation costs, read from a run that is still going or was stopped partway.

``videoxai evaluate`` records the worker seconds of every explanation and every result. For each
(method, metric) pair this script takes the mean over the clips the run has finished and
multiplies it by the clips the pair runs on (the run's own plan: the data's clips, ``clips=N``,
the re-run budget of the slow methods of ``all``), and prints the whole table's worker seconds
by part, by metric and by method, and the wall time that would take on ``--workers`` workers if
they were never idle (a lower bound). A pair the run has not reached yet cannot be extrapolated:
the script says how many there are.

The seconds are the workers' wall seconds, so a machine that runs other work inflates them;
the extrapolation assumes the finished clips are typical of the rest of each pair's clips.

Usage: ``python benchmarks/evaluation_cost.py OUT [--methods all] [--metrics all] [--workers 2]``,
with the ``--methods`` and ``--metrics`` the run was started with (``OUT``: its ``--out``).
"""

from __future__ import annotations

import argparse
import json
import sqlite3
from collections import Counter, defaultdict
from pathlib import Path

PARTS = (("randomisation", "the randomisation check"), ("class_sensitivity", "sensitivity"),
         ("max_sensitivity", "sensitivity"), ("local_lipschitz", "sensitivity"), ("deletion", "curves"),
         ("insertion", "curves"), ("faithfulness", "curves"), ("monotonicity", "curves"),
         ("frame_faithfulness", "curves"))


def part_of(metric: str) -> str:
    name = metric.split("(")[0]
    return next((part for prefix, part in PARTS if name == prefix), "other metrics")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out", type=Path, help="the evaluation's --out folder (holding results.sqlite)")
    ap.add_argument("--methods", default="all", help="the --methods the run was started with")
    ap.add_argument("--metrics", default="all", help="the --metrics the run was started with")
    ap.add_argument("--workers", type=int, default=2, help="workers to divide the whole table's seconds by")
    args = ap.parse_args(argv)
    database = args.out / "results.sqlite"
    if not database.is_file():
        raise SystemExit(f"{database}: no such file (give an evaluation's --out folder)")
    if args.workers < 1:
        raise SystemExit(f"--workers must be ≥ 1, got {args.workers}")

    import videoxai as vx
    from videoxai.data.datasets import load_dataset
    from videoxai.evaluation.runner import resolve_methods, resolve_metrics, scopes

    db = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
    configs = [json.loads(c) for (c,) in db.execute("SELECT config FROM runs ORDER BY id") if c]
    if not configs:
        raise SystemExit(f"{database}: no run recorded in it")
    config = configs[-1]
    model = vx.load_model(config["model"])
    n_videos = len(load_dataset(config["data"], num_frames=model.num_frames))
    methods, metrics = resolve_methods(args.methods, model), resolve_metrics(args.metrics)
    scope = scopes(n_videos, methods, metrics)
    if set(config["methods"]) != set(methods.specs) or set(config["metrics"]) != set(metrics.specs):
        raise SystemExit("--methods / --metrics do not give the run's specs: give those it was started with")

    seconds = defaultdict(list)    # (method, metric or None for its explanations) → seconds per clip
    for method, metric, s in db.execute("SELECT method, metric, seconds FROM results WHERE seconds IS NOT NULL"):
        seconds[(method, metric)].append(s)
    for method, s in db.execute("SELECT method, seconds FROM explanations WHERE seconds IS NOT NULL"):
        seconds[(method, None)].append(s)
    clips_of = {m: max((scope[(m, s)] for s in metrics.specs), default=0) for m in methods.specs}

    done = sum(sum(v) for v in seconds.values())
    whole, by_part, by_metric, by_method = 0.0, Counter(), Counter(), Counter()
    unreached = 0
    for method in methods.specs:
        for metric in [None, *metrics.specs]:
            n = clips_of[method] if metric is None else scope[(method, metric)]
            got = seconds.get((method, metric), [])
            if n and not got:
                unreached += 1
                continue
            estimate = sum(got) + (sum(got) / len(got)) * max(0, n - len(got)) if got else 0.0
            whole += estimate
            by_part["explanations" if metric is None else part_of(metric)] += estimate
            by_method[method] += estimate
            if metric is not None:
                by_metric[metric] += estimate
    stored = db.execute("SELECT COUNT(*) FROM results").fetchone()[0]
    planned = sum(scope.values())
    started, last = db.execute("SELECT MIN(started), (SELECT MAX(created) FROM results) FROM runs").fetchone()

    print(f"{database}: {stored} of {planned} results stored ({100 * stored / planned:.1f} %), "
          f"{done:.0f} worker-s recorded; the run's first start to its last result: {(last - started) / 60:.0f} min")
    left_out = f"; {unreached} pairs not reached yet (left out)" if unreached else ""
    print(f"whole table, extrapolated: {whole:.0f} worker-s = {whole / args.workers / 60:.0f} min on "
          f"{args.workers} workers never idle{left_out}")
    print("by part:   " + ", ".join(f"{k} {v:.0f}" for k, v in by_part.most_common()))
    print("by metric: " + ", ".join(f"{k} {v:.0f}" for k, v in by_metric.most_common()))
    print("by method: " + ", ".join(f"{k} {v:.0f}" for k, v in by_method.most_common()))


if __name__ == "__main__":
    main()
