"""STAA's overhead over a plain prediction, measured side by side in one run.

For TimeSformer-base (8×224), VideoMAE-base (16×224, its default SDPA attention), ViViT-base
(32×224) and V-JEPA 2 ViT-L (16×256, as its fpc16 classifiers; RoPE, SDPA) built from their
default configs with random weights, times, interleaved and repeated:

* ``hf``: the plain Hugging Face forward, ``net(pixel_values=…)`` on the already normalised clip,
  no grad (what a user runs without videoxai);
* ``predict``: the adapter's forward on a pixel clip (resize/crop/normalise included), no grad;
* ``staa``: ``STAA.attribute`` on the same clip (the same forward plus the attention capture);
* ``explain``: ``vx.explain(model, clip, "staa")`` end to end (maps upsampled to the frames,
  normalised, Explanation built).

Prints the fastest run of each (the least disturbed one: on a shared 2-core machine the medians of
two *identical* calls differ by ±5 %) and the ratios ``staa / hf``, ``staa / predict`` and
``explain / predict`` of the fastest runs and of the medians, and the machine's load average.
Usage: ``python benchmarks/staa_overhead.py [--repeats 9] [--device cpu] [--families …]``.
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


FAMILIES = ("timesformer-base 8x224", "videomae-base 16x224 (sdpa)", "vivit-base 32x224 (sdpa)",
            "vjepa2-vitl 16x256 (sdpa)", "videoprism-base 16x288")


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
    if family == "vjepa2-vitl 16x256 (sdpa)":
        from transformers import VJEPA2Config, VJEPA2ForVideoClassification

        return VJEPA2ForVideoClassification(VJEPA2Config(frames_per_clip=16, num_labels=174,
                                                         attn_implementation="sdpa"))
    if family == "videoprism-base 16x288":   # factorised: 12 spatial layers over 324 patches, 4 temporal over 16 frames
        from transformers import VideoPrismForVideoClassification, VideoPrismVisionConfig

        return VideoPrismForVideoClassification(VideoPrismVisionConfig(num_labels=400))
    raise ValueError(family)


def timed(fn, device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    t0 = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - t0


def measure(family: str, device: torch.device, repeats: int) -> None:
    """Time the plain HF forward, predict, STAA and vx.explain on one family, interleaved."""
    model = from_hf_module(build(family)).to(device)
    h, w = model.input_size
    clip = vx.Clip.from_array(np.random.default_rng(0).random((model.num_frames, h, w, 3), dtype=np.float32))
    x = clip.to_tensor(device)
    with torch.no_grad():
        pixel_values = model.preprocess(x)
    staa = get("staa")(model)

    name = "pixel_values_videos" if model.family in ("vjepa2", "videoprism") else "pixel_values"

    def hf():
        with torch.no_grad():
            return model.net(**{name: pixel_values}).logits

    calls = {"hf": hf, "predict": lambda: model.predict(x), "staa": lambda: staa.attribute(x),
             "explain": lambda: vx.explain(model, clip, staa)}
    for fn in calls.values():  # warm-up (allocator, kernels)
        fn()
    runs = {k: [] for k in calls}
    for _ in range(repeats):  # interleaved, so drift affects all alike
        for k, fn in calls.items():
            runs[k].append(timed(fn, device))
    for label, stat in (("best", min), ("median", statistics.median)):
        v = {k: stat(r) for k, r in runs.items()}
        print(f"{family if label == 'best' else '':30s} {label:6s} {v['hf']:7.3f} {v['predict']:9.3f} {v['staa']:7.3f}"
              f" {v['explain']:9.3f} {v['staa'] / v['hf']:8.3f} {v['staa'] / v['predict']:9.3f}"
              f" {v['explain'] / v['predict']:9.3f}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=9)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--families", default=",".join(FAMILIES), help=f"comma-separated, of: {'; '.join(FAMILIES)}")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                    help="CPU threads (default: every core; 1 on a machine other jobs share)")
    args = ap.parse_args()
    unknown = [f for f in args.families.split(",") if f not in FAMILIES]
    if unknown:  # was a ValueError traceback after the table's header
        ap.error(f"--families: unknown {', '.join(map(repr, unknown))}; known: {'; '.join(FAMILIES)}")
    device = torch.device(args.device)
    torch.set_num_threads(args.threads)
    print(f"device: {device} ({torch.cuda.get_device_name(device) if device.type == 'cuda' else f'{args.threads} CPU threads'}), "
          f"torch {torch.__version__}, repeats {args.repeats}, interleaved; load average before: "
          f"{' / '.join(f'{v:.1f}' for v in os.getloadavg())}")
    print(f"{'model':30s} {'':6s} {'hf s':>7s} {'predict s':>9s} {'staa s':>7s} {'explain s':>9s} {'staa/hf':>8s}"
          f" {'staa/pred':>9s} {'expl/pred':>9s}")
    for family in args.families.split(","):
        measure(family, device, args.repeats)  # one family's model at a time in memory
    print(f"load average after: {' / '.join(f'{v:.1f}' for v in os.getloadavg())}")
    sys.exit(0)


if __name__ == "__main__":
    main()
