"""Why extremal masks stay off the frame's margin: the area term over the padded mask.

The mask generator (TorchRay's) draws each frame's mask on a grid padded by σ on every side,
and the area term of the energy counts every voxel of that padded mask (the recipe's
constraint). A parameter cell on the frame's edge spends about half its bump outside the frame,
where the area term charges for it and the reward never sees it, so the optimised masks — and
the map — stay near zero on the frame's outer pixels unless the model's evidence is there.
This script runs ep3d (or STEP) as shipped beside a variant whose area term counts only the
voxels inside the frame, with the same number of voxels (a·V of the padded volume, so the
shares of the frame are (Ho·Wo)/(h·w) × larger), and prints per clip the object's distance from
the frame's edge, the localisation scores and the map's mean on the 4-px margin against its
mean inside.

    python benchmarks/extremal_margin.py --model demo --split val --clips 13 --threads 1
    python benchmarks/extremal_margin.py --model demo-cnn --split val --clips 13 --threads 1
"""

from __future__ import annotations

import argparse
import ast
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent
sys.path[:0] = [str(ROOT.parent), str(ROOT)]

import videoxai as vx  # noqa: E402
from perturbation_quality import localisation  # noqa: E402
from videoxai.data.synthetic import SyntheticVideos  # noqa: E402
from videoxai.methods.extremal.base import ExtremalPerturbation  # noqa: E402
from videoxai.methods.extremal.energy import area_loss  # noqa: E402
from videoxai.methods.extremal.ep3d import EP3D  # noqa: E402
from videoxai.methods.extremal.step import STEP  # noqa: E402
from videoxai.metrics.base import evaluate  # noqa: E402

#: the border ring the map's margin mean is taken over (pixels of the model's grid)
MARGIN = 4
#: objects at most this far from the frame's edge count as "at the border" in the summary
NEAR = 7


class FrameAreaTerm(ExtremalPerturbation):
    """The area term over the voxels inside the frame only (the padded margin costs nothing).

    Placed between a variant and :class:`ExtremalPerturbation` in the method resolution order
    (``class V(EP3D, FrameAreaTerm)``), so that STEP keeps its smoothness term on the padded mask
    and only the area term changes."""

    def optimise(self, gen, *args, **kwargs):
        self._frame_gen = gen  # the stage's generator: its margin and frame size locate the frame
        return super().optimise(gen, *args, **kwargs)

    def draw_orders(self, generator, t, padded):
        orders = super().draw_orders(generator, t, padded)
        h, w = self._frame_gen.shape
        orders["frame_area"] = torch.randperm(t * h * w, generator=generator)
        return orders

    def regulariser(self, padded, areas, progress, orders, caps=None):
        if caps is not None:
            raise NotImplementedError("the frame-only area term is written for max_frame_area=1")
        gen = self._frame_gen
        top, (h, w) = gen.margin, gen.shape
        inside = padded[..., top:top + h, top:top + w]
        # the same number of voxels as the shipped term: a share of the padded frame → of the frame
        shares = (areas * (padded.shape[-2] * padded.shape[-1]) / (h * w)).clamp(max=1)
        weight = self.area_weight * self.area_growth ** progress
        return weight * area_loss(inside, shares, False, orders["frame_area"])


class EP3DFrameArea(EP3D, FrameAreaTerm):
    """ep3d with :class:`FrameAreaTerm`."""


class STEPFrameArea(STEP, FrameAreaTerm):
    """STEP with :class:`FrameAreaTerm` (its L_K unchanged)."""


VARIANTS = {"ep3d": {"shipped": EP3D, "frame": EP3DFrameArea}, "step": {"shipped": STEP, "frame": STEPFrameArea}}


def border_distance(sample) -> int:
    """Pixels between the evidence object (any window frame) and the nearest edge of the frame."""
    start, end = sample.window
    ys, xs = np.nonzero(np.asarray(sample.masks[start:end]).any(0))
    h, w = sample.masks.shape[-2:]
    return int(min(ys.min(), xs.min(), h - 1 - ys.max(), w - 1 - xs.max()))


def clip_scores(model, sample, method, options: dict) -> dict:
    """Localisation of one explanation and its map's mean on the margin and inside."""
    exp = vx.explain(model, sample.clip, method, target=sample.label, **options)
    temporal, peak, _ = localisation(exp, sample)
    maps = exp.spatial
    ring = np.ones(maps.shape[1:], bool)
    ring[MARGIN:-MARGIN, MARGIN:-MARGIN] = False
    return {"temporal": float(temporal), "peak": float(np.mean(peak)),
            "pointing": float(evaluate("pointing_game", model, sample.clip, exp, sample=sample)),
            "iou": float(evaluate("iou", model, sample.clip, exp, sample=sample)),
            "margin": float(maps[:, ring].mean()), "inside": float(maps[:, ~ring].mean()),
            "seconds": exp.cost.seconds, "blank": bool(maps.max() == 0)}


def summary(rows: dict[str, list[dict]]) -> list[str]:
    """The table's lines: per variant, clips with the object near the edge, the others, all.
    A blank map (no evidence: the model's "nothing" class) has no peak, pointing game or IoU and
    is left out of the means, with its count in the clips column."""
    lines = [f"| variant | clips | temporal | peak on object | pointing | IoU | margin / inside "
             f"(object > {NEAR} px from the edge) | s/clip |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for v, runs in rows.items():
        for name, keep in ((f"object ≤ {NEAR} px from the edge", lambda r: r["border"] <= NEAR),
                           (f"object > {NEAR} px", lambda r: r["border"] > NEAR), ("all", lambda r: True)):
            sel = [r for r in runs if keep(r) and not r["blank"]]
            blank = sum(keep(r) and r["blank"] for r in runs)
            if not sel:
                continue
            inner = [r for r in sel if r["border"] > NEAR]
            ratio = f"{np.mean([r['margin'] / r['inside'] for r in inner]):.2f}" if inner else "–"
            lines.append(f"| {v} | {name} ({len(sel)}" + (f"; {blank} blank left out" if blank else "") + ") | "
                         + " | ".join(f"{np.mean([r[k] for r in sel]):.{d}f}"
                                      for k, d in (("temporal", 2), ("peak", 2), ("pointing", 2), ("iou", 3)))
                         + f" | {ratio} | {np.mean([r['seconds'] for r in sel]):.1f} |")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="demo", help="model spec for vx.load_model (default: demo)")
    ap.add_argument("--method", default="ep3d", choices=sorted(VARIANTS))
    ap.add_argument("--variants", default="shipped,frame", help="shipped, frame or both (default)")
    ap.add_argument("--split", default="val", help="split of the synthetic benchmark (default val)")
    ap.add_argument("--clips", type=int, default=13, help="the split's first clips (default 13)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                    help="a method option for every variant, e.g. iterations=20 (repeatable)")
    args = ap.parse_args()
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = sorted(set(variants) - set(VARIANTS[args.method]))
    if unknown or not variants:
        ap.error(f"--variants: unknown {', '.join(unknown) or '(none given)'}; available: shipped, frame")
    if args.clips < 1:
        ap.error(f"--clips {args.clips}: at least 1")
    options = {}
    for item in args.option:
        key, eq, value = item.partition("=")
        if not (eq and key):
            ap.error(f"--option {item!r}: expected KEY=VALUE")
        try:
            options[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            options[key] = value
    if args.threads:
        torch.set_num_threads(args.threads)
    os.environ.setdefault("VIDEOXAI_PROGRESS", "0")

    model = vx.load_model(args.model)
    ds = SyntheticVideos(args.clips, split=args.split, seed=0, num_frames=model.num_frames)
    print(f"model {args.model}, {args.method}, {args.split} clips 0–{args.clips - 1}, "
          f"{torch.get_num_threads()} threads, options {options or 'default'}")
    rows: dict[str, list[dict]] = {v: [] for v in variants}
    started = time.perf_counter()
    for i in range(args.clips):
        sample = ds[i]
        border = border_distance(sample)
        cells = []
        for v in variants:
            r = {"border": border, **clip_scores(model, sample, VARIANTS[args.method][v], options)}
            rows[v].append(r)
            cells.append(f"{v}: blank map (no evidence)" if r["blank"] else
                         f"{v}: top frame {'in' if r['temporal'] else 'out of'} the window, peak {r['peak']:.2f}, "
                         f"pointing {r['pointing']:.2f}, IoU {r['iou']:.3f}, "
                         f"margin / inside {r['margin']:.4f} / {r['inside']:.4f}")
        print(f"  clip {i} (object {border} px from the edge) " + "; ".join(cells), flush=True)

    print("\n" + "\n".join(summary(rows)))
    print(f"\ntotal {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
