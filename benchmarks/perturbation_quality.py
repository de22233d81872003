"""Perturbation methods next to STAA on held-out synthetic clips: localisation, time and passes.

For each held-out clip of the synthetic benchmark (``SyntheticVideos(split="test")``, whose
evidence object is visible in a known window of frames and known pixels), every method explains
the clip's true class with ``vx.explain`` at its documented defaults, and the script scores:

* **temporal**: the share of clips whose top frame (argmax of ``exp.temporal``) lies inside the
  evidence window;
* **spatial**: over the frames of the windows, the share whose peak pixel (argmax of
  ``exp.spatial[t]``) lies on the evidence object's mask; **px**: the median distance from that
  peak to the object's centre (a near miss of a coarse map is a small distance);
* **s/clip**, **fwd**, **bwd**: wall seconds, forward and backward passes per clip, as measured by
  ``exp.cost``.

Methods run clip by clip, interleaved, so that a busy machine slows them alike. The extremal
perturbation variants cost a few hundred forward *and* backward passes per clip, so by default
they run on the first ``--ep-clips`` clips only (the table says on how many). The last lines give
STAA's time as a share of temporal SHAP's and LIME's (the STAA paper claims under 3 %), with the
chance rates of a uniformly random guess, and which class the model gives each clip fully
blurred (the extremal methods' mask 0): where that is the true class, the preserve game is won
by an empty mask and its map carries no evidence; and for the extremal methods, the mean area
their masks reached for each target area.

    python benchmarks/perturbation_quality.py                      # demo model, 20 clips
    python benchmarks/perturbation_quality.py --clips 50 --ep-clips 8 --model demo
"""

from __future__ import annotations

import argparse
import ast
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, str(ROOT))

import videoxai as vx
from videoxai.data.synthetic import SyntheticVideos, chance_rates

METHODS = ["staa", "shap_temporal", "lime", "occlusion", "rise", "ep2d", "ep3d", "step"]
EXTREMAL = {"ep2d", "ep3d", "step"}
#: methods whose map is constant over each frame: a spatial rate would only measure ties
TEMPORAL_ONLY = {"shap_temporal"}


def localisation(exp: vx.Explanation, sample) -> tuple[bool, list[bool], list[float]]:
    """(top frame inside the window, [peak pixel on the object], [distance in pixels from the peak
    to the object's centre]) for each frame of the window."""
    start, end = sample.window
    temporal = start <= int(np.argmax(exp.temporal)) < end
    spatial, distance = [], []
    for t in range(start, end):
        peak = np.unravel_index(int(np.argmax(exp.spatial[t])), exp.spatial[t].shape)
        ys, xs = np.nonzero(sample.masks[t])
        spatial.append(bool(sample.masks[t][peak]))
        distance.append(float(np.hypot(peak[0] - ys.mean(), peak[1] - xs.mean())))
    return temporal, spatial, distance


def blurred_class(model, clip) -> int:
    """The class ``model`` predicts for ``clip`` with every frame blurred as the extremal methods'
    perturbation blurs a pixel whose mask is 0 (their ``max_blur``, scaled to the frame)."""
    from videoxai.methods.baselines import blur

    x = clip.to_tensor(model.device)
    sigma = vx.methods.get("ep2d")(model).size("max_blur", min(x.shape[-2:]))
    with torch.no_grad():
        return int(model(blur(x, sigma=sigma)).argmax(-1).item())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="demo", help="model spec for vx.load_model (default: demo)")
    ap.add_argument("--clips", type=int, default=20, help="held-out clips (default 20)")
    ap.add_argument("--ep-clips", type=int, default=2,
                    help="clips for ep2d/ep3d/step, the first of --clips (default 2)")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--seed", type=int, default=0, help="seed of the held-out split")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--option", action="append", default=[], metavar="METHOD.KEY=VALUE",
                    help="override a method option, e.g. step.iterations=100 (repeatable)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    os.environ.setdefault("VIDEOXAI_PROGRESS", "0")

    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    options: dict[str, dict] = {m: {} for m in methods}
    for item in args.option:
        key, _, value = item.partition("=")
        method, _, name = key.partition(".")
        options.setdefault(method, {})[name] = ast.literal_eval(value)  # numbers, strings, tuples

    model = vx.load_model(args.model)
    ds = SyntheticVideos(args.clips, split="test", seed=args.seed, num_frames=model.num_frames)
    chance = chance_rates(ds)
    rows = {m: {"t": [], "s": [], "px": [], "sec": [], "fwd": [], "bwd": [], "n": 0} for m in methods}
    correct = 0
    blurred = []  # (class of the fully blurred clip, true class)
    print(f"model {args.model} ({model.family}, {model.num_frames} frames, {model.input_size}), "
          f"{args.clips} held-out clips, torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{platform.processor() or platform.machine()}", file=sys.stderr)
    t_start = time.perf_counter()
    for i in range(args.clips):
        sample = ds[i]
        clip = sample.clip
        correct += int(model.predict(clip.to_tensor(model.device)).argmax(-1).item() == sample.label)
        blurred.append((blurred_class(model, clip), sample.label))
        for m in methods:
            if m in EXTREMAL and i >= args.ep_clips:
                continue
            exp = vx.explain(model, clip, method=m, target=sample.label, **options.get(m, {}))
            temporal, spatial, distance = localisation(exp, sample)
            r = rows[m]
            r["t"].append(temporal)
            r["s"].extend(spatial)
            r["px"].extend(distance)
            r["sec"].append(exp.cost.seconds)
            r["fwd"].append(exp.cost.forward_passes)
            r["bwd"].append(exp.cost.backward_passes)
            r["n"] += 1
            if m in EXTREMAL:  # how close the optimised masks came to their target areas
                r.setdefault("areas", exp.meta["areas"][0])
                r.setdefault("reached", []).append(exp.meta["area_reached"][0])
        print(f"  clip {i + 1}/{args.clips} done ({time.perf_counter() - t_start:.0f} s)", file=sys.stderr)

    print(f"\nLocalisation on {args.clips} held-out synthetic clips (model accuracy on them: "
          f"{correct}/{args.clips}); explained class: the true one.\n")
    print("| method | clips | temporal | spatial | px | s/clip | forward | backward |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for m in methods:
        r = rows[m]
        if not r["n"]:
            continue
        spatial = "– | –" if m in TEMPORAL_ONLY else f"{np.mean(r['s']):.2f} | {np.median(r['px']):.1f}"
        print(f"| {m} | {r['n']} | {np.mean(r['t']):.2f} | {spatial} | "
              f"{np.mean(r['sec']):.3f} | {np.mean(r['fwd']):.0f} | {np.mean(r['bwd']):.0f} |")
    print(f"| chance | | {chance['temporal']:.2f} | {chance['spatial']:.3f} | | | | |")
    if "staa" in rows and rows["staa"]["n"]:
        staa = np.mean(rows["staa"]["sec"])
        for other in ("shap_temporal", "lime"):
            if other in rows and rows[other]["n"]:
                t = np.mean(rows[other]["sec"])
                print(f"\nSTAA time / {other} time: {100 * staa / t:.2f} % "
                      f"({staa * 1000:.1f} ms vs {t * 1000:.0f} ms per clip)")
    for m in methods:
        if rows[m].get("reached"):
            reached = np.mean(rows[m]["reached"], axis=0)
            print(f"{m}: mask area reached " + ", ".join(
                f"{r:.3f} for {a:g}" for a, r in zip(rows[m]["areas"], reached)))
    classes = np.bincount([b for b, _ in blurred], minlength=len(model.labels))
    print("\nfully blurred clips classified as: " + ", ".join(
        f"{model.labels[c]} {n}" for c, n in enumerate(classes) if n) +
        f"; the true class for {sum(b == y for b, y in blurred)} of {len(blurred)} clips")
    print(f"\ntotal {time.perf_counter() - t_start:.0f} s")


if __name__ == "__main__":
    main()
