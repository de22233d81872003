"""Perturbation methods next to STAA on held-out synthetic clips: localisation, time and passes.

For each held-out clip of the synthetic benchmark (``SyntheticVideos(split="test")``, whose
evidence object is visible in a known window of frames and known pixels), every method explains
the clip's true class with ``vx.explain`` at its documented defaults, and the script scores:

* **temporal**: the share of clips whose top frame (argmax of ``exp.temporal``) lies inside the
  evidence window;
* **spatial**: over the frames of the windows, the share whose peak pixel (argmax of
  ``exp.spatial[t]``) lies on the evidence object's mask; **px**: the median distance from that
  peak to the object's centre (a near miss of a coarse map is a small distance);
* **pointing**, **IoU**: the project's ``pointing_game`` (peak within 4 px of the object) and
  ``iou`` (top voxels, as many as the object has, against the object's voxels) metrics;
* **consistency**: the mean Pearson correlation of consecutive frames' maps (1: the map moves
  smoothly over time), the temporal consistency STEP's smoothness term is meant to improve;
* **s/clip**, **fwd**, **bwd**: wall seconds, forward and backward passes per clip, as measured by
  ``exp.cost``.

Clips that the model calls by their true class when they are fully blurred (the extremal methods'
mask 0; on the demo TimeSformer one class is this "nothing" class) are scored separately in a
second table: there, removing the evidence does not remove the class, so no removal method can
find it. ``--randomisation N`` adds the cascading model-randomisation check (Spearman ρ between
the map and the maps of 4 progressively randomised copies, lower is better; ``--randomisation-seeds``
independent randomisations each) on the first N clips of each method. A clip whose randomised
models all gave a constant map (the extremal methods' blank map, when the masks carry no
evidence) has no ρ: the table counts those clips apart instead of averaging them. For the extremal
methods, and for any clip the check ran on, a line per clip gives its group, whether the map was on
the object (top frame, peak, pointing, IoU) and its ρ after each stage (a blank re-run map: ρ 0).

Methods run clip by clip, interleaved, so that a busy machine slows them alike. The extremal
perturbation variants cost a few hundred forward *and* backward passes per clip, so by default
they run on the first ``--ep-clips`` clips only (the table says on how many). The last lines give
STAA's time as a share of temporal SHAP's and LIME's (the STAA paper claims under 3 %), with the
chance rates of a uniformly random guess, and which class the model gives each clip fully
blurred (the extremal methods' mask 0): where that is the true class, the preserve game is won
by an empty mask and its map carries no evidence; and for the extremal methods, the mean area
their masks reached for each target area.

    python benchmarks/perturbation_quality.py                      # demo model, 20 clips
    python benchmarks/perturbation_quality.py --clips 50 --ep-clips 8 --model demo-cnn --randomisation 3
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
from videoxai.data.synthetic import SyntheticVideos, chance_rates, evidence_options
from videoxai.errors import InputError
from videoxai.metrics.base import evaluate

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


def consistency(exp: vx.Explanation) -> float:
    """Mean Pearson correlation of consecutive frames' maps (constant frames left out)."""
    flat = exp.spatial.reshape(exp.spatial.shape[0], -1).astype(np.float64)
    r = [np.corrcoef(a, b)[0, 1] for a, b in zip(flat[:-1], flat[1:]) if a.std() > 0 and b.std() > 0]
    return float(np.mean(r)) if r else float("nan")


def blurred_class(model, clip) -> int:
    """The class ``model`` predicts for ``clip`` with every frame blurred as the extremal methods'
    perturbation blurs a pixel whose mask is 0 (their ``max_blur``, scaled to the frame)."""
    from videoxai.core.baselines import blur

    x = clip.to_tensor(model.device)
    sigma = vx.methods.get("ep2d")(model).size("max_blur", min(x.shape[-2:]))
    with torch.no_grad():
        return int(model(blur(x, sigma=sigma)).argmax(-1).item())


def randomisation_line(check) -> str:
    """The randomisation check's ``Score`` as one line: ρ per stage (seeds separated by /), its
    mean, the blank re-runs and the first module of each stage."""
    d = check.details
    if np.isnan(check.value):
        return f"undefined ({d.get('undefined', 'nan')})"
    stages = " | ".join("/".join("blank" if v == 0.0 and d["blank_reruns"] else f"{v:.2f}" for v in stage)
                        for stage in zip(*d["per_seed_stage"]))
    return (f"{stages} per stage (seeds /; blank: a constant re-run map, ρ 0), mean {check.value:.2f}, blank "
            f"re-runs {d['blank_reruns']} of {d['stages'] * d['seeds']}, stages from "
            f"{', '.join(d['first_module_per_stage'])}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="demo", help="model spec for vx.load_model (default: demo)")
    ap.add_argument("--clips", type=int, default=20, help="held-out clips (default 20)")
    ap.add_argument("--ep-clips", type=int, default=2,
                    help="clips for ep2d/ep3d/step, the first of --clips (default 2)")
    ap.add_argument("--only", default=None, metavar="I,J,…",
                    help="run these clips of the split (0-based indices, in this order) instead of the "
                         "first --clips; --ep-clips and --randomisation count along this list")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--seed", type=int, default=0, help="seed of the held-out split")
    ap.add_argument("--split", default="test",
                    help="split of the synthetic benchmark (default test; val for choosing options)")
    ap.add_argument("--randomisation", type=int, default=0, metavar="N",
                    help="randomisation check on each method's first N clips (default 0: off)")
    ap.add_argument("--randomisation-seeds", type=int, default=3, metavar="K",
                    help="independent randomisations per clip in that check (default 3, the metric's)")
    ap.add_argument("--noise", type=float, default=0.0, metavar="SIGMA",
                    help="add seeded Gaussian pixel noise of this σ (pixels in [0, 1]) to every clip, "
                         "as grain on a real video (default 0)")
    ap.add_argument("--object-size", default=None, metavar="MIN,MAX",
                    help="evidence objects' side as fractions of the frame (default: the benchmark's "
                         "0.12,0.16); larger objects test methods on evidence the bundled models never saw")
    ap.add_argument("--window", default=None, metavar="MIN,MAX",
                    help="frames the evidence is visible in (default: the benchmark's 2,4)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--option", action="append", default=[], metavar="METHOD.KEY=VALUE",
                    help="override a method option, e.g. step.iterations=100 (repeatable)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    os.environ.setdefault("VIDEOXAI_PROGRESS", "0")

    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    # refused before the model loads, not after a clip's work (an unknown method) or never (an
    # option for a method not run was dropped: a typo in its name went unnoticed)
    unknown = [m for m in methods if m not in vx.methods.available()]
    if unknown or not methods:
        ap.error(f"--methods: unknown {', '.join(unknown) or '(none given)'}; "
                 f"available: {', '.join(vx.methods.available())}")
    if args.clips < 1:
        ap.error(f"--clips {args.clips}: at least 1")
    indices = list(range(args.clips))
    if args.only is not None:
        try:
            indices = [int(v) for v in args.only.split(",")]
        except ValueError:
            indices = []
        if not indices or min(indices) < 0 or len(set(indices)) < len(indices):
            ap.error(f"--only {args.only!r}: expected distinct clip indices ≥ 0, e.g. 4,2")
    options: dict[str, dict] = {m: {} for m in methods}
    for item in args.option:
        key, eq, value = item.partition("=")
        method, dot, name = key.partition(".")
        if not (eq and dot and name):
            ap.error(f"--option {item!r}: expected METHOD.KEY=VALUE")
        if method not in methods:
            ap.error(f"--option {item!r}: {method!r} is not one of --methods ({', '.join(methods)})")
        try:
            options[method][name] = ast.literal_eval(value)  # numbers, quoted strings, tuples
        except (ValueError, SyntaxError):
            options[method][name] = value  # a bare word: a string (baseline=fade)

    try:
        data = evidence_options(args.object_size, args.window)
    except InputError as e:
        ap.error(str(e))

    model = vx.load_model(args.model)
    ds = SyntheticVideos(max(indices) + 1, split=args.split, seed=args.seed, num_frames=model.num_frames, **data)
    chance = chance_rates(ds)  # with --only: over the split's clips up to the largest index
    fields = ("t", "s", "px", "pg", "iou", "cons", "sec", "fwd", "bwd", "rho", "reached", "chosen", "share",
              "frames", "one_frame")
    # rows[group][method]: group "object" (the blurred clip loses the class) or "nothing"
    rows = {g: {m: {k: [] for k in fields} for m in methods} for g in ("object", "nothing")}
    done = {m: 0 for m in methods}
    correct = 0
    blurred = []  # (class of the fully blurred clip, true class)
    areas = {}    # extremal method → its target areas
    # on stdout, with the tables: s/clip means nothing without the device and threads
    print(f"model {args.model} ({model.family}, {model.num_frames} frames, {model.input_size}) on {model.device}, "
          f"{len(indices)} held-out clips, torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs"
          + (f"; data {data}" if data else ""))
    t_start = time.perf_counter()
    for pos, i in enumerate(indices):
        sample = ds[i]
        clip = sample.clip
        if args.noise:  # the same grain for every method; the ground truth is the clean clip's
            grain = np.random.default_rng([args.seed, i]).normal(0.0, args.noise, clip.frames.shape)
            clip = vx.Clip((clip.to_tensor()[0].permute(0, 2, 3, 1).numpy() + grain).clip(0, 1).astype(np.float32))
        correct += int(model.predict(clip.to_tensor(model.device)).argmax(-1).item() == sample.label)
        blurred.append((blurred_class(model, clip), sample.label))
        group = "nothing" if blurred[-1][0] == sample.label else "object"
        for m in methods:
            if m in EXTREMAL and pos >= args.ep_clips:
                continue
            exp = vx.explain(model, clip, method=m, target=sample.label, **options.get(m, {}))
            temporal, spatial, distance = localisation(exp, sample)
            r = rows[group][m]
            r["t"].append(temporal)
            r["s"].extend(spatial)
            r["px"].extend(distance)
            r["pg"].append(float(evaluate("pointing_game", model, clip, exp, sample=sample)))
            r["iou"].append(float(evaluate("iou", model, clip, exp, sample=sample)))
            r["cons"].append(consistency(exp))
            r["sec"].append(exp.cost.seconds)
            r["fwd"].append(exp.cost.forward_passes)
            r["bwd"].append(exp.cost.backward_passes)
            check = None
            if done[m] < args.randomisation:
                check = evaluate("randomisation", model, clip, exp, seeds=args.randomisation_seeds)
                r["rho"].append(float(check))
            done[m] += 1
            if m in EXTREMAL:  # how close the optimised masks came to their target areas
                areas[m] = exp.meta["areas"][0]
                r["reached"].append(exp.meta["area_reached"][0])
                r["chosen"].append(float(exp.meta["area_chosen"][0]))
                r["share"].append(float(exp.meta["evidence_share"][0]))
                r["frames"].append(exp.meta["frame_area_reached"][0])    # (areas, T) shares of a frame
                # kept masks that keep voxels (≥ ½) in at most one frame of a window of several
                # (round 11's "one-frame masks", read without the object's pixels)
                kept = r["frames"][-1][list(areas[m]).index(r["chosen"][-1]):, slice(*sample.window)]
                r["one_frame"].append(int(((kept > 0).sum(-1) <= 1).sum()) if np.diff(sample.window)[0] > 1 else 0)
            if m in EXTREMAL or check is not None:  # each clip's line: was the map on the object, and its ρ
                print(f"  clip {i} ({group}) {m}: top frame {'in' if temporal else 'out of'} the window, peak on "
                      f"the object in {sum(spatial)} of {len(spatial)} window frames, pointing {r['pg'][-1]:.2f}, "
                      f"IoU {r['iou'][-1]:.3f}"
                      + (f", evidence share {r['share'][-1]:.2f}" if m in EXTREMAL else "")
                      + ("" if check is None else "; ρ " + randomisation_line(check)), flush=True)
        print(f"  clip {pos + 1}/{len(indices)} done ({time.perf_counter() - t_start:.0f} s)", file=sys.stderr)

    print(f"\nLocalisation on {len(indices)} held-out synthetic clips"
          + (f" ({', '.join(map(str, indices))} of the split)" if args.only is not None else "")
          + f" (model accuracy on them: {correct}/{len(indices)}); explained class: the true one.")
    for group, title in (("object", "clips whose fully blurred copy loses the class"),
                         ("nothing", "clips whose fully blurred copy keeps the class (the model's "
                                     "'nothing' class: no removal method can localise here)")):
        if not any(rows[group][m]["t"] for m in methods):
            continue
        print(f"\n{title}:\n")
        print("| method | clips | temporal | spatial | px | pointing | IoU | consistency | ρ random. "
              "| s/clip | forward | backward |")
        print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        for m in methods:
            r = rows[group][m]
            if not r["t"]:
                continue
            # a map constant over each frame has no spatial rate and no frame-to-frame correlation
            spatial = ("– | – | – | – | –" if m in TEMPORAL_ONLY else
                       f"{np.mean(r['s']):.2f} | {np.median(r['px']):.1f} | {np.mean(r['pg']):.2f} | "
                       f"{np.mean(r['iou']):.3f} | "
                       + ("–" if np.isnan(r["cons"]).all() else f"{np.nanmean(r['cons']):.2f}"))
            # ρ is undefined (nan) for a clip whose randomised models all gave a constant map
            # (the extremal methods' blank map: no evidence); counted apart, not averaged
            rho = np.array(r["rho"], dtype=float)
            blank = int(np.isnan(rho).sum())
            rho = ("–" if not rho.size else
                   (f"{np.nanmean(rho):.2f} (n={rho.size - blank})" if blank < rho.size else "undefined")
                   + (f", constant on {blank} of {rho.size}" if blank else ""))
            print(f"| {m} | {len(r['t'])} | {np.mean(r['t']):.2f} | {spatial} | "
                  f"{rho} | {np.mean(r['sec']):.3f} | {np.mean(r['fwd']):.0f} | {np.mean(r['bwd']):.0f} |")
        print(f"| chance | | {chance['temporal']:.2f} | {chance['spatial']:.3f} | | | | | | | | |")
    merged = {m: {k: rows["object"][m][k] + rows["nothing"][m][k] for k in fields} for m in methods}
    if "staa" in merged and merged["staa"]["sec"]:
        staa = np.mean(merged["staa"]["sec"])
        for other in ("shap_temporal", "lime"):
            if other in merged and merged[other]["sec"]:
                t = np.mean(merged[other]["sec"])
                print(f"\nSTAA time / {other} time: {100 * staa / t:.2f} % "
                      f"({staa * 1000:.1f} ms vs {t * 1000:.0f} ms per clip)")
    for m in methods:
        if merged[m]["reached"]:
            reached = np.mean(merged[m]["reached"], axis=0)
            print(f"{m}: padded mask area reached " + ", ".join(
                f"{r:.4f} for {a:g}" for a, r in zip(areas[m], reached)) +
                f"; area kept by the map (median) {np.median(merged[m]['chosen']):g}; "
                f"evidence share of the kept masks (median) {np.median(merged[m]['share']):.2f}")
            per_clip = [f"{a:g}→{r[list(areas[m]).index(a)]:.4f}" for a, r in
                        zip(merged[m]["chosen"], merged[m]["reached"])]
            print(f"{m}: kept area target→reached per clip: " + ", ".join(per_clip))
            # how each area's mask is spread in time (what max_frame_area caps): frames it keeps
            # voxels in, and its largest share of one padded frame
            frames = np.stack(merged[m]["frames"])                            # (clips, areas, T)
            one = rows["object"][m]["one_frame"]
            print(f"{m}: frames kept (mean) / largest share of one frame (mean) per area: " + ", ".join(
                f"{a:g}: {n:.1f} / {mx:.3f}" for a, n, mx in
                zip(areas[m], (frames > 0).sum(-1).mean(0), frames.max(-1).mean(0)))
                + f"; kept masks in at most one window frame: {sum(one)} on {sum(n > 0 for n in one)} of "
                f"{len(one)} object clips")
    classes = np.bincount([b for b, _ in blurred], minlength=len(model.labels))
    print("\nfully blurred clips classified as: " + ", ".join(
        f"{model.labels[c]} {n}" for c, n in enumerate(classes) if n) +
        f"; the true class for {sum(b == y for b, y in blurred)} of {len(blurred)} clips")
    print(f"\ntotal {time.perf_counter() - t_start:.0f} s")


if __name__ == "__main__":
    main()
