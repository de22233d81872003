"""STAA's overhead over a plain prediction, measured side by side in one run.

For TimeSformer-base (8×224), VideoMAE-base (16×224, its default SDPA attention) and ViViT-base
(32×224) built from their default configs with random weights, times, interleaved and repeated:

* ``predict``: the adapter's forward on a pixel clip (resize/crop/normalise included), no grad;
* ``staa``: ``STAA.attribute`` on the same clip (the same forward plus the attention capture);
* ``explain``: ``vx.explain(model, clip, "staa")`` end to end (maps upsampled to the frames,
  normalised, Explanation built).

Prints the fastest run of each (the least disturbed one: on a shared 2-core machine the medians of
two *identical* calls differ by ±5 %) with the ratios ``staa / predict`` and ``explain / predict``
(target: ≤ 1.05), and the ratio of the medians beside it.
Usage: ``python benchmarks/staa_overhead.py [--repeats 9] [--device cpu]``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import numpy as np
import torch

import videoxai as vx
from videoxai.methods import get
from videoxai.models.hf import from_hf_module


def build(family: str):
    from transformers import (TimesformerConfig, TimesformerForVideoClassification, VideoMAEConfig,
                              VideoMAEForVideoClassification, VivitConfig, VivitForVideoClassification)
    torch.manual_seed(0)
    if family == "timesformer-base 8x224":
        return TimesformerForVideoClassification(TimesformerConfig(num_labels=400))
    if family == "videomae-base 16x224 (sdpa)":
        return VideoMAEForVideoClassification(VideoMAEConfig(num_labels=400, attn_implementation="sdpa"))
    if family == "vivit-base 32x224 (sdpa)":
        return VivitForVideoClassification(VivitConfig(num_labels=400, attn_implementation="sdpa"))
    raise ValueError(family)


def timed(fn, device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    t0 = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=9)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--families", default="timesformer-base 8x224,videomae-base 16x224 (sdpa),vivit-base 32x224 (sdpa)")
    args = ap.parse_args()
    device = torch.device(args.device)
    torch.set_num_threads(os.cpu_count() or 1)
    print(f"device: {device} ({torch.cuda.get_device_name(device) if device.type == 'cuda' else f'{os.cpu_count()} CPU threads'}), "
          f"torch {torch.__version__}, repeats {args.repeats} (fastest; medians in the last column)")
    print(f"{'model':30s} {'predict s':>10s} {'staa s':>10s} {'explain s':>10s} {'staa/pred':>10s} {'explain/pred':>12s}"
          f" {'median e/p':>11s}")
    worst = 0.0
    for family in args.families.split(","):
        model = from_hf_module(build(family)).to(device)
        h, w = model.input_size
        clip = vx.Clip.from_array(np.random.default_rng(0).random((model.num_frames, h, w, 3), dtype=np.float32))
        x = clip.to_tensor(device)
        staa = get("staa")(model)
        with torch.no_grad():
            model(x)  # warm-up (allocator, kernels)
        staa.attribute(x)
        vx.explain(model, clip, "staa")
        runs = {"predict": [], "staa": [], "explain": []}
        for _ in range(args.repeats):  # interleaved, so drift affects all three alike
            runs["predict"].append(timed(lambda: model.predict(x), device))
            runs["staa"].append(timed(lambda: staa.attribute(x), device))
            runs["explain"].append(timed(lambda: vx.explain(model, clip, staa), device))
        best = {k: min(v) for k, v in runs.items()}
        med = {k: statistics.median(v) for k, v in runs.items()}
        r1, r2 = best["staa"] / best["predict"], best["explain"] / best["predict"]
        worst = max(worst, r2)
        print(f"{family:30s} {best['predict']:10.3f} {best['staa']:10.3f} {best['explain']:10.3f} {r1:10.3f} {r2:12.3f}"
              f" {med['explain'] / med['predict']:11.3f}", flush=True)
        del model, staa
    print(f"worst explain/predict ratio: {worst:.3f} (target ≤ 1.05)")
    sys.exit(0)


if __name__ == "__main__":
    main()
