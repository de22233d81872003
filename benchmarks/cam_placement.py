"""Where a CNN's CAM grid goes on the input: on its cells' centres, or stretched over the input.

A padded stride-2 convolution centres output cell ``o`` on input index ``2·o``; stretching the
layer's grid over the input (``align_corners=False``, as an image is resized) puts it at
``2·o + ½``, and half a stride minus half a pixel more per strided stage: the bundled 3D CNN's
8 × 8 grid over 64 pixels lands 3.5 pixels down and to the right of where its cells look. This
script explains the true class of held-out synthetic clips (known object pixels and evidence
window) with each CAM method the model supports, in one run, three ways on the same clips:

* ``centres`` — the default: the grid laid on the input indices its cells are centred on
  (:mod:`videoxai.core.footprint`), interpolated linearly between them;
* ``stretch`` — ``placement="stretch"``: the grid stretched over the input;
* ``pytorch-grad-cam`` — the peer library's own Grad-CAM / Grad-CAM++ output for the same layer
  and clip (its ``scipy.ndimage.zoom`` of a 3D map, which pins the first and last cells to the
  first and last pixels: cell ``o`` at ``o·(n − 1)/(n' − 1)``; its per-frame mass is its
  temporal score; skipped where it is not installed, or for methods it lacks).

and prints, over the clips whose object the model needs (the fully blurred clip loses the class),
the top frame inside the evidence window (``temporal``), the share of window frames whose peak
pixel lies on the object (``peak``), the median distance from that peak to the object's centre
(``px``), and the project's ``pointing_game`` and ``iou`` metrics. Maps are unrefined
(``refine=False``: the raw grid, upsampled), so the rows differ only by where the grid goes.

    python benchmarks/cam_placement.py                                  # demo-cnn, validation, 50 clips
    python benchmarks/cam_placement.py --split test --clips 100
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, str(ROOT))

import videoxai as vx  # noqa: E402
from videoxai.data.synthetic import SyntheticVideos  # noqa: E402
from videoxai.metrics.base import evaluate  # noqa: E402

CAM_METHODS = ("gradcam", "gradcam_pp", "saliency_tubes")
PEER = {"gradcam": "GradCAM", "gradcam_pp": "GradCAMPlusPlus"}


def peer_maps(model: vx.VideoModel, clip: vx.Clip, layer: str, method: str, target: int) -> np.ndarray | None:
    """pytorch-grad-cam's ``(T, H, W)`` map of ``method`` on ``layer``; None where it is missing."""
    try:
        import pytorch_grad_cam
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
    except ImportError:
        return None
    if method not in PEER or model.layout != "BCTHW":
        return None
    x = model.preprocess(clip.to_tensor(model.device)).transpose(1, 2)   # what the network sees
    cam_cls = getattr(pytorch_grad_cam, PEER[method])
    with cam_cls(model=model.net, target_layers=[model.submodule(layer)]) as cam:
        return cam(input_tensor=x, targets=[ClassifierOutputTarget(target)])[0]


def scores(model, clip, exp: vx.Explanation, sample) -> tuple[bool, list[bool], list[float], float, float]:
    """(top frame in the window, [peak on the object], [peak's distance to the object's centre],
    pointing game, IoU) over the window frames."""
    start, end = sample.window
    temporal = start <= int(np.argmax(exp.temporal)) < end
    peaks, distances = [], []
    for t in range(start, end):
        ys, xs = np.nonzero(sample.masks[t])
        if not len(ys):
            continue
        peak = np.unravel_index(int(np.argmax(exp.spatial[t])), exp.spatial[t].shape)
        peaks.append(bool(sample.masks[t][peak]))
        distances.append(float(np.hypot(peak[0] - ys.mean(), peak[1] - xs.mean())))
    pointing = float(evaluate("pointing_game", model, clip, exp, sample=sample))
    iou = float(evaluate("iou", model, clip, exp, sample=sample))
    return temporal, peaks, distances, pointing, iou


def blurred_class(model: vx.VideoModel, clip: vx.Clip) -> int:
    """The class the model gives ``clip`` fully blurred (the extremal methods' mask 0)."""
    from videoxai.core.baselines import blur

    x = clip.to_tensor(model.device)
    sigma = vx.methods.get("ep2d")(model).size("max_blur", min(x.shape[-2:]))
    with torch.no_grad():
        return int(model(blur(x, sigma=sigma)).argmax(-1).item())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="demo-cnn", help="model spec for vx.load_model (default: demo-cnn)")
    ap.add_argument("--split", default="val", help="split of the synthetic benchmark (default val)")
    ap.add_argument("--clips", type=int, default=50, help="clips of the split (default 50)")
    ap.add_argument("--methods", default=",".join(CAM_METHODS),
                    help="CAM methods (default: those of gradcam, gradcam_pp, saliency_tubes the model supports)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    os.environ.setdefault("VIDEOXAI_PROGRESS", "0")
    model = vx.load_model(args.model)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in methods if m not in CAM_METHODS]
    if unknown:
        ap.error(f"--methods: {', '.join(unknown)} is not a CAM method ({', '.join(CAM_METHODS)})")
    methods = [m for m in methods if vx.methods.get(m).supports(model)]
    ds = SyntheticVideos(args.clips, split=args.split, seed=0, num_frames=model.num_frames)
    rows: dict[tuple[str, str], list] = {}
    skipped = 0
    for i in range(args.clips):
        sample = ds[i]
        if blurred_class(model, sample.clip) == sample.label:
            skipped += 1   # the blurred clip keeps the class: the object is not what it needs
            continue
        for m in methods:
            ours = {p: vx.explain(model, sample.clip, m, target=sample.label, refine=False, placement=p)
                    for p in ("centres", "stretch")}
            peer = peer_maps(model, sample.clip, ours["centres"].options["layer"], m, sample.label)
            if peer is not None:
                mass = peer.sum((1, 2)).astype(np.float32)
                ours["pytorch-grad-cam"] = dataclasses.replace(ours["stretch"], spatial=peer.astype(np.float32),
                                                               temporal=mass / max(float(mass.sum()), 1e-12))
            for placement, exp in ours.items():
                rows.setdefault((m, placement), []).append(scores(model, sample.clip, exp, sample))
    n = args.clips - skipped
    print(f"model {args.model}, split {args.split}: {n} of {args.clips} clips whose object the model "
          f"needs (blurred, {skipped} keep their class), {torch.get_num_threads()} threads; maps unrefined")
    print(f"{'method':<15}{'placement':<18}{'temporal':>9}{'peak':>7}{'px':>6}{'pointing':>10}{'IoU':>7}")
    for (m, placement), r in rows.items():
        temporal = np.mean([x[0] for x in r])
        peak = np.mean([p for x in r for p in x[1]])
        px = np.median([d for x in r for d in x[2]])
        pointing, iou = np.nanmean([x[3] for x in r]), np.nanmean([x[4] for x in r])
        print(f"{m:<15}{placement:<18}{temporal:>9.2f}{peak:>7.2f}{px:>6.1f}{pointing:>10.2f}{iou:>7.3f}")


if __name__ == "__main__":
    main()
