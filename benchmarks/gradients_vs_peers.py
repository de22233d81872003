"""Grad-CAM vs pytorch-grad-cam, Integrated Gradients and occlusion vs Captum: time and peak memory,
side by side in one run, on the same model, clip and settings.

Cases (random weights, no downloads):

* r2plus1d_18, 16×112×112 (torchvision, ``layer4``);
* TimeSformer-base, 8×224×224 (``TimesformerConfig()`` defaults, 400 classes; CAM layer: the
  output of layer 10, the input of the last layer).

Sides:

* **Grad-CAM.** ours: ``vx.explain(model, clip, "gradcam", refine=False)`` — map, upsampling to the
  clip's frames, normalisation, probabilities, the :class:`~videoxai.Explanation`. pytorch-grad-cam:
  ``GradCAM(model=net, target_layers=[layer])(input_tensor, targets)`` on the network with the
  input it sees (its result: maps upsampled to the clip and normalised). For TimeSformer the peer
  needs what a user must write: a wrapper that returns a logits tensor from ``(B, C, T, H, W)``
  input, a ``reshape_transform`` for the ``[CLS] + (row, col, frame)`` tokens, and an
  ``nn.Identity`` after the layer's tuple output (grad-cam cannot hook a tuple).
* **Integrated Gradients.** ours: ``IntegratedGradients.attribute_pixels`` (signed per-pixel
  attribution, like Captum's return value); Captum: ``IntegratedGradients(model).attribute`` on the
  same :class:`~videoxai.VideoModel`, same target, ``n_steps``, ``internal_batch_size``, black
  baseline and Gauss–Legendre rule.
* **Occlusion** (r2plus1d_18 only). ours: ``Occlusion.attribute`` with half-clip boxes sliding
  by a quarter, black baseline, probabilities;
  Captum: ``Occlusion`` on the softmax of the same model, the same boxes (spanning the three
  channels) and ``perturbations_per_eval`` equal to our ``batch_size``.

Each Grad-CAM side runs once to warm up (IG: one plain forward pass of the model), then
``--repeats`` times, interleaved and alternating who goes first; the table shows medians and the
ratios ours / peer (< 1: ours is cheaper). Peak memory is measured the
same way for both: :class:`videoxai.cost.CostMeter` (on CPU, the peak rise of the process's
resident set, sampled every 5 ms); the CPU time of the process is shown beside the wall time, as
it is less sensitive to other work on a shared machine. The script re-executes itself with glibc's
``MALLOC_MMAP_THRESHOLD_`` fixed, so that freed tensors are returned to the system and one run's
memory does not hide the next run's. The ``agree`` column is the largest difference between the
two results (Grad-CAM: after the peer's own post-processing; IG: relative to the largest value).

Usage: ``python benchmarks/gradients_vs_peers.py [--repeats 3] [--cases r2plus1d,timesformer]
[--ig-steps-cnn 4] [--ig-steps-transformer 2] [--internal-batch-size 2]
[--occlusion-batch-size 8]`` (about 7 minutes on an idle 2-core CPU; IG on TimeSformer-base is
most of it, occlusion one; ``--cases r2plus1d`` about 2).
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import time
from typing import Callable

import numpy as np
import torch
from torch import nn

_MMAP = "MALLOC_MMAP_THRESHOLD_"
# before torch allocates anything that matters; only when run, not when imported (the importer —
# a test — would be replaced by a fresh run of this script)
if __name__ == "__main__" and os.environ.get(_MMAP) is None:
    os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, _MMAP: str(1 << 17)})

import videoxai as vx  # noqa: E402
from videoxai.cost import CostMeter  # noqa: E402
from videoxai.methods import get  # noqa: E402
from videoxai.models.hf import from_hf_module  # noqa: E402


class _PixelValues(nn.Module):
    """A Hugging Face classifier behind pytorch-grad-cam's conventions."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(pixel_values=x.transpose(1, 2)).logits


class _TensorOut(nn.Module):
    """Wraps a layer that returns a tuple so that grad-cam can hook a tensor (``.out``)."""

    def __init__(self, layer: nn.Module) -> None:
        super().__init__()
        self.layer, self.out = layer, nn.Identity()

    def forward(self, *args, **kwargs):
        out = self.layer(*args, **kwargs)
        return (self.out(out[0]), *out[1:])


def build_case(name: str):
    """``(model, clip, peer_net, peer_layer, reshape_transform)`` for a case."""
    torch.manual_seed(0)
    if name == "r2plus1d":
        import torchvision
        net = torchvision.models.video.r2plus1d_18(num_classes=400)
        model = vx.wrap(net, num_frames=16, input_size=112, cam_layer="layer4", name="r2plus1d_18")
        peer_net, layer, reshape = net, net.layer4, None
    elif name == "timesformer":
        from transformers import TimesformerConfig, TimesformerForVideoClassification
        net = TimesformerForVideoClassification(TimesformerConfig(num_labels=400)).eval()
        model = from_hf_module(net, name="timesformer-base")
        index = int(model.cam_layer.rsplit(".", 1)[1])
        layers = net.timesformer.encoder.layer
        layers[index] = _TensorOut(layers[index])   # same tensor for both sides; identity in value
        grid = model.token_grid

        def reshape(tokens: torch.Tensor) -> torch.Tensor:
            b, _, d = tokens.shape
            x = tokens[:, 1:].reshape(b, grid.rows, grid.cols, grid.frames, d)
            return x.permute(0, 4, 3, 1, 2)

        peer_net, layer = _PixelValues(net), layers[index].out
    else:
        raise SystemExit(f"unknown case {name!r}")
    h, w = model.input_size
    frames = np.random.default_rng(0).random((model.num_frames, h, w, 3), dtype=np.float32)
    return model, vx.Clip.from_array(frames), peer_net, layer, reshape


def measure(fn: Callable[[], object], model) -> tuple[float, float, float, object]:
    """Wall seconds, CPU seconds of this process and peak memory (MiB) of one call."""
    gc.collect()
    cpu0 = time.process_time()
    with CostMeter(model) as meter:
        out = fn()
    return meter.cost.seconds, time.process_time() - cpu0, meter.cost.peak_memory_mb, out


def side_by_side(ours: Callable, peer: Callable, model, repeats: int, warm_up: bool = True) -> dict:
    if warm_up:  # lazy imports and initialisation, first allocations
        ours(), peer()
    runs: dict[str, list[tuple[float, float, float]]] = {"ours": [], "peer": []}
    last = {}
    for i in range(repeats):
        # alternate who goes first, so that drift and the machine's other load hit both alike
        order = (("ours", ours), ("peer", peer)) if i % 2 == 0 else (("peer", peer), ("ours", ours))
        for side, fn in order:
            *numbers, last[side] = measure(fn, model)
            runs[side].append(tuple(numbers))
    med = {side: tuple(statistics.median(r[j] for r in v) for j in range(3)) for side, v in runs.items()}
    return {"median": med, "last": last}


def gradcam_case(model, clip, peer_net, layer, reshape, repeats: int) -> dict:
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    x = clip.to_tensor()
    target = 7

    def ours():
        return vx.explain(model, clip, "gradcam", target=target, refine=False)

    def peer():
        x_net = model.preprocess(x).transpose(1, 2)
        with GradCAM(model=peer_net, target_layers=[layer], reshape_transform=reshape) as cam:
            return cam(input_tensor=x_net, targets=[ClassifierOutputTarget(target)])

    res = side_by_side(ours, peer, model, repeats)
    from pytorch_grad_cam.utils.image import scale_cam_image
    raw = res["last"]["ours"].raw[None]                               # (1, T', H', W')
    size = (clip.width, clip.height, clip.num_frames)
    ours_as_peer = scale_cam_image(np.maximum(scale_cam_image(raw, size), 0))
    res["agree"] = float(np.abs(ours_as_peer - res["last"]["peer"]).max())
    return res


def ig_case(model, clip, steps: int, internal_batch_size: int, repeats: int) -> dict:
    from captum.attr import IntegratedGradients

    x = clip.to_tensor()
    target = torch.tensor([7])
    ig = get("integrated_gradients")(model, n_steps=steps, internal_batch_size=internal_batch_size)
    captum = IntegratedGradients(model)

    def ours():
        return ig.attribute_pixels(x, target).values

    def peer():
        return captum.attribute(x, baselines=torch.zeros_like(x), target=target, n_steps=steps,
                                method="gausslegendre", internal_batch_size=internal_batch_size)

    model.predict(x)  # warms the model up; a full IG call per side would double the run time
    res = side_by_side(ours, peer, model, repeats, warm_up=False)
    a, b = res["last"]["ours"], res["last"]["peer"]
    res["agree"] = float((a - b).abs().max() / b.abs().max())
    return res


def occlusion_case(model, clip, batch_size: int, repeats: int) -> dict:
    """Occlusion with half-clip boxes sliding by a quarter (3 × 3 × 3 = 27 positions; the
    default box, 1/64 of the clip, has 343, which only lengthens the run: the forward passes
    are the same on both sides, and what differs is the work around them). Ours runs one pass
    more: the clean clip once for the prediction and again as the boxes' reference, since on
    clips larger than the model's input the reference is the clip at the size the boxes are
    applied at (equal here, where the clip is at the input size)."""
    from captum.attr import Occlusion

    x = clip.to_tensor()
    target = torch.tensor([7])
    t, (h, w) = model.num_frames, model.input_size
    window, stride = (t // 2, h // 2, w // 2), (t // 4, h // 4, w // 4)
    occ = get("occlusion")(model, window=window, strides=stride, baseline="black", batch_size=batch_size)
    captum = Occlusion(lambda v: model(v).softmax(-1))

    def ours():
        return occ.attribute(x, target).maps

    def peer():
        return captum.attribute(x, sliding_window_shapes=(window[0], 3, *window[1:]),
                                strides=(stride[0], 3, *stride[1:]), baselines=0.0, target=target,
                                perturbations_per_eval=batch_size)

    model.predict(x)
    res = side_by_side(ours, peer, model, repeats, warm_up=False)
    a, b = res["last"]["ours"], res["last"]["peer"][:, :, 0].clamp_min(0)
    res["agree"] = float((a - b).abs().max() / b.abs().max().clamp_min(1e-12))
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--cases", default="r2plus1d,timesformer")
    ap.add_argument("--ig-steps-cnn", type=int, default=4)
    ap.add_argument("--ig-steps-transformer", type=int, default=2)
    ap.add_argument("--internal-batch-size", type=int, default=2)
    ap.add_argument("--occlusion-batch-size", type=int, default=8,
                    help="occluded clips per forward pass, ours (batch_size) and Captum's "
                         "(perturbations_per_eval)")
    args = ap.parse_args()
    import warnings
    warnings.filterwarnings("ignore", category=UserWarning)   # Captum: "required_grads has been set"
    print(f"CPU, {torch.get_num_threads()} threads, torch {torch.__version__}; median of {args.repeats} "
          f"interleaved runs; ratio = ours / peer (wall time, CPU time of the process, peak memory)")
    print(f"{'case':52s} {'wall s':>13s} {'ratio':>6s} {'cpu s':>13s} {'ratio':>6s} {'peak MiB':>11s} "
          f"{'ratio':>6s} {'agree':>8s}")
    print(f"{'':52s} {'ours / peer':>13s} {'':6s} {'ours / peer':>13s} {'':6s} {'ours / peer':>11s}")
    for name in args.cases.split(","):
        model, clip, peer_net, layer, reshape = build_case(name)
        steps = args.ig_steps_cnn if name == "r2plus1d" else args.ig_steps_transformer
        shape = f"{clip.num_frames}x{clip.height}"
        rows = [(f"Grad-CAM {model.name} {shape} vs pytorch-grad-cam",
                 gradcam_case(model, clip, peer_net, layer, reshape, args.repeats)),
                (f"IG {model.name} {shape} ({steps} steps) vs Captum",
                 ig_case(model, clip, steps, args.internal_batch_size, args.repeats))]
        if name == "r2plus1d":   # on TimeSformer-base the same passes take 10 minutes more
            rows.append((f"occlusion {model.name} {shape} (27 boxes) vs Captum",
                         occlusion_case(model, clip, args.occlusion_batch_size, args.repeats)))
        for label, res in rows:
            (wo, co, mo), (wp, cp, mp) = res["median"]["ours"], res["median"]["peer"]
            print(f"{label:52s} {wo:6.1f}/{wp:6.1f} {wo / wp:6.2f} {co:6.1f}/{cp:6.1f} {co / cp:6.2f} "
                  f"{mo:5.0f}/{mp:5.0f} {mo / max(mp, 1e-9):6.2f} {res['agree']:8.1e}", flush=True)
        del model, peer_net, layer
        gc.collect()


if __name__ == "__main__":
    main()
