"""Accuracy of both ST-ABN branches and agreement of the temporal attention with true windows.

Temporal agreement needs the ground-truth evidence window ``[start, end)`` of each clip (the
synthetic benchmark has it). Three numbers, each a mean over clips:

* ``window_hit``: the frame with the highest temporal attention lies inside the window (ties go
  to the earliest frame; chance is ``window length / T``);
* ``window_corr``: Pearson correlation between ``M_t`` and the window's 0/1 indicator over the
  clip's frames (clips whose ``M_t`` is constant count as 0: no agreement; clips whose window
  covers every frame have no defined correlation and are left out; ``None`` where no clip has one);
* ``window_mass``: the share of the clip's total temporal attention that lies inside the window
  (chance, for flat attention, is again ``window length / T``).

Where the clips have ground-truth masks (the synthetic benchmark), ``spatial_hit`` is the share of
window frames whose spatial attention map, resized bilinearly to the frame, peaks on the
evidence object (``spatial_chance``: the object's mean share of those frames' pixels). The
resize stretches the grid over the frame (``align_corners=False``), as every recorded run was
measured; the ``stabn`` explanation method lays it on its cells' centres instead
(:mod:`videoxai.methods.stabn`), which puts the bundled model's peak on the object more often
(0.73 → 0.77 of the test clips' window frames).
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Iterator, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from ..progress import track
from .data import ClipSet
from .model import STABNVideoModel


class Predictions(NamedTuple):
    """A model's outputs on a whole clip set (float32 numpy arrays)."""

    logits: np.ndarray              # (N, K) perception branch
    att_logits: np.ndarray | None   # (N, K) attention branch (None: a plain backbone)
    temporal: np.ndarray | None     # (N, T) temporal attention M_t (None: a plain backbone)
    spatial: np.ndarray | None = None  # (N, T, h, w) spatial attention M_s


@dataclass
class Evaluation:
    """Scores of one model on one clip set (``None`` where the set has no windows)."""

    accuracy: float
    attention_accuracy: float | None
    window_hit: float | None
    window_corr: float | None
    window_mass: float | None
    window_chance: float | None
    clips: int
    spatial_hit: float | None = None
    spatial_chance: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        s = f"accuracy {self.accuracy:.3f}"
        if self.attention_accuracy is not None:
            s += f" (attention branch {self.attention_accuracy:.3f})"
        if self.window_hit is not None:
            corr = "n/a" if self.window_corr is None else f"{self.window_corr:.3f}"
            s += (f", temporal attention vs window: hit {self.window_hit:.3f}, corr "
                  f"{corr}, mass {self.window_mass:.3f} (chance {self.window_chance:.3f})")
        if self.spatial_hit is not None:
            s += f", spatial peak on the object {self.spatial_hit:.3f} (chance {self.spatial_chance:.3f})"
        return s + f", {self.clips} clips"


@contextmanager
def eval_mode(model: torch.nn.Module) -> Iterator[None]:
    """Run a block with ``model`` in eval mode and no gradients; its mode is restored after."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        model.train(was_training)


def predict(model: STABNVideoModel, data: ClipSet, batch_size: int = 64,
            description: str = "ST-ABN inference") -> Predictions:
    """Run ``model`` (in eval mode; its mode is restored) over every clip of ``data``."""
    logits, att, temporal, spatial = [], [], [], []
    batches = list(data.batches(batch_size))
    with eval_mode(model):
        for idx in track(batches, total=len(batches), description=description):
            out = model.outputs(data.pixels(idx).to(model.device))
            logits.append(out.logits.float().cpu())
            if out.att_logits is not None:
                att.append(out.att_logits.float().cpu())
                temporal.append(out.temporal.float().cpu())
                spatial.append(out.spatial.float().cpu())
    k, t = model.num_classes, model.num_frames
    cat = lambda xs, d: torch.cat(xs).numpy() if xs else np.zeros((0, d), np.float32)  # noqa: E731
    if not model.config.attention_branch:
        return Predictions(cat(logits, k), None, None)
    h, w = model.config.attention_size
    grid = torch.cat(spatial).numpy() if spatial else np.zeros((0, t, h, w), np.float32)
    return Predictions(cat(logits, k), cat(att, k), cat(temporal, t), grid)


def temporal_agreement(temporal: np.ndarray, windows: np.ndarray) -> dict[str, float | None]:
    """``window_hit``, ``window_corr``, ``window_mass`` and ``window_chance`` (see the module docstring).

    Args:
        temporal: ``(N, T)`` non-negative temporal attention.
        windows: ``(N, 2)`` ``[start, end)`` frames.
    """
    n, t = temporal.shape
    inside = np.zeros((n, t), dtype=bool)
    for i, (a, b) in enumerate(windows):
        inside[i, a:b] = True
    hit = inside[np.arange(n), temporal.argmax(1)]
    mass = (temporal * inside).sum(1) / np.maximum(temporal.sum(1), 1e-12)
    ind = inside.astype(np.float64)
    m = temporal.astype(np.float64)
    mc, ic = m - m.mean(1, keepdims=True), ind - ind.mean(1, keepdims=True)
    sm, si = np.sqrt((mc ** 2).sum(1)), np.sqrt((ic ** 2).sum(1))
    defined = si > 0
    corr = np.where(sm > 1e-12, (mc * ic).sum(1) / np.maximum(sm * si, 1e-30), 0.0)
    return {"window_hit": float(hit.mean()),
            # None, not NaN, where every window spans its whole clip: NaN made history.json and
            # the model's videoxai.json invalid JSON (strict readers, a browser, refuse `NaN`)
            "window_corr": float(corr[defined].mean()) if defined.any() else None,
            "window_mass": float(mass.mean()), "window_chance": float(inside.mean())}


def spatial_agreement(spatial: np.ndarray, masks: np.ndarray, windows: np.ndarray) -> dict[str, float]:
    """``spatial_hit`` and ``spatial_chance`` (see the module docstring).

    Args:
        spatial: ``(N, T, h, w)`` spatial attention.
        masks: ``(N, T, H, W)`` bool evidence pixels.
        windows: ``(N, 2)`` ``[start, end)`` frames.
    """
    hits, chance = [], []
    size = masks.shape[2:]
    for i, (a, b) in enumerate(windows):
        up = F.interpolate(torch.from_numpy(spatial[i, a:b])[:, None], size=size, mode="bilinear",
                           align_corners=False)[:, 0].flatten(1)
        peak = up.argmax(1).numpy()
        on = masks[i, a:b].reshape(b - a, -1)
        hits += list(on[np.arange(b - a), peak])
        chance += list(on.mean(1))
    return {"spatial_hit": float(np.mean(hits)), "spatial_chance": float(np.mean(chance))}


def evaluate(model: STABNVideoModel, data: ClipSet, batch_size: int = 64,
             predictions: Predictions | None = None) -> Evaluation:
    """Accuracy of both branches and, where ``data`` has windows, temporal agreement."""
    p = predictions if predictions is not None else predict(model, data, batch_size, "ST-ABN evaluation")
    labels = data.labels
    acc = float((p.logits.argmax(1) == labels).mean()) if len(labels) else float("nan")
    att_acc = None
    if p.att_logits is not None:
        att_acc = float((p.att_logits.argmax(1) == labels).mean()) if len(labels) else float("nan")
    agree: dict[str, float | None] = dict.fromkeys(("window_hit", "window_corr", "window_mass", "window_chance"))
    if data.windows is not None and len(labels) and p.temporal is not None:
        agree = temporal_agreement(p.temporal, data.windows)
        if data.masks is not None and p.spatial is not None:
            agree.update(spatial_agreement(p.spatial, data.masks, data.windows))
    return Evaluation(accuracy=acc, attention_accuracy=att_acc, clips=len(labels), **agree)


__all__ = ["Evaluation", "Predictions", "eval_mode", "evaluate", "predict", "spatial_agreement",
           "temporal_agreement"]
