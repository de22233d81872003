"""What the perturbation methods share: the canvas they perturb, and batched scoring.

Perturbation methods (``shap_temporal``, ``lime``, ``occlusion``, ``rise``, ``ep2d``, ``ep3d``,
``step``) explain a clip by running the model again on altered copies of it. Three things are
common to all of them and live here:

* **The canvas.** Masks are made on the model's input grid (``model.input_size``) and applied to
  *pixels*: to the region of the original frames that the model sees (its crop box). A large
  video is first scaled down so that its crop box is about the size of the model input; the
  model would do that scaling anyway, and perturbing, say, a 1080p clip 1000 times at full size
  would cost memory for nothing. Frames already at or below the model's resolution are used
  unchanged, so on those the perturbed clips are exactly what a user would feed the model.
  Maps are returned on the model grid with ``space="crop"``, and :func:`videoxai.explain` pastes
  them back through the crop box.
* **The baseline** that stands in for absent pixels: a pixel-space clip from
  :mod:`videoxai.core.baselines` (``black``, ``blur``, ``mean``, ``freeze``, ``fade``), computed
  once per clip on the canvas.
* **Scoring in batches**: perturbed clips are built ``batch_size`` at a time (never all at once,
  so 4096 SHAP coalitions cost the memory of ``batch_size`` clips) and the target's
  probability (``model.probabilities``: softmax, or sigmoid) or logit is read off.

Each method overrides one function, :meth:`PerturbationMethod.explain_clip`, which explains one
clip; :meth:`PerturbationMethod.attribute` runs it for every clip of a batch with a fresh random
generator seeded by ``seed``, so a clip's explanation does not depend on its position in the
batch, on ``batch_size`` or on global random state.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from ..core import baselines
from ..models.base import VideoModel
from ..models.forward_cache import forward_batched
from ..errors import InputError
from ..options import OptionError
from .base import Attribution, Method, Output, Target, check_baseline


@dataclass
class Canvas:
    """One clip prepared for perturbation.

    Attributes:
        pixels: ``(1, T, 3, H', W')`` in [0, 1]: the clip, scaled down (never up) so that its crop
            box is at most the model's input size.
        box: ``(top, left, height, width)`` of the crop box in canvas pixels.
        grid: ``(h, w)`` of the model input: the resolution masks and maps are made at.
    """

    pixels: torch.Tensor
    box: tuple[int, int, int, int]
    grid: tuple[int, int]

    @classmethod
    def of(cls, model: VideoModel, clip: torch.Tensor) -> Canvas:
        """The canvas of ``clip`` ``(1, T, 3, H, W)`` for ``model``."""
        _, t, c, fh, fw = clip.shape
        h, w = model.input_size
        box = model.preprocess.crop_box(fh, fw)
        ry, rx = min(1.0, h / box.height), min(1.0, w / box.width)
        pixels = clip
        if ry < 1.0 or rx < 1.0:
            size = (max(1, round(fh * ry)), max(1, round(fw * rx)))
            # the model's own resampling (its filter, its antialiasing): with the libraries'
            # geometry the canvas is then the very frame they resize, and the intact canvas gets
            # the model's own prediction (a torchvision model, whose preset does not antialias,
            # was shown an antialiased canvas)
            pixels = model.preprocess.resize_box(clip, size=size).clamp(0, 1)
        ch, cw = pixels.shape[-2:]
        return cls(pixels, model.preprocess.crop_box(ch, cw).as_ints(ch, cw), (h, w))

    @property
    def num_frames(self) -> int:
        return self.pixels.shape[1]

    def region(self, x: torch.Tensor | None = None) -> torch.Tensor:
        """The crop-box part of ``x`` (default: the canvas): ``(n, T, 3, bh, bw)``."""
        top, left, bh, bw = self.box
        x = self.pixels if x is None else x
        return x[..., top:top + bh, left:left + bw]

    def to_grid(self, x: torch.Tensor) -> torch.Tensor:
        """The crop-box part of ``x`` ``(n, T, 3, H', W')`` resampled to the grid: ``(n, T, 3, h, w)``."""
        r = self.region(x)
        n, t, c, bh, bw = r.shape
        if (bh, bw) == self.grid:
            return r
        return F.interpolate(r.reshape(n * t, c, bh, bw), size=self.grid, mode="bilinear",
                             align_corners=False, antialias=True).reshape(n, t, c, *self.grid)

    def to_box(self, maps: torch.Tensor, mode: str = "bilinear") -> torch.Tensor:
        """Grid-resolution ``(n, T, [C,] h, w)`` → crop-box resolution ``(n, T, [C,] bh, bw)``."""
        _, _, bh, bw = self.box
        if maps.shape[-2:] == (bh, bw):
            return maps
        lead = maps.shape[:-2]
        flat = maps.reshape(-1, 1, *maps.shape[-2:])
        kw = {} if mode.startswith("nearest") else {"align_corners": False}
        return F.interpolate(flat, size=(bh, bw), mode=mode, **kw).reshape(*lead, bh, bw)

    def paste(self, inner: torch.Tensor) -> torch.Tensor:
        """Put crop-box content ``(n, T, 3, bh, bw)`` into copies of the canvas: ``(n, T, 3, H', W')``.

        Differentiable in ``inner``. Pixels outside the crop box are never seen by the model, so
        they keep the canvas's values.
        """
        top, left, bh, bw = self.box
        full = self.pixels.shape[-2:]
        if (bh, bw) == tuple(full):
            return inner
        out = self.pixels.expand(inner.shape[0], *self.pixels.shape[1:]).clone()
        out[..., top:top + bh, left:left + bw] = inner
        return out

    def compose(self, keep: torch.Tensor, fill: torch.Tensor, mode: str = "bilinear") -> torch.Tensor:
        """Blend the canvas with ``fill`` where ``keep`` is 0: ``(n, T, 3, H', W')``.

        Args:
            keep: ``(n, T, h, w)`` in [0, 1] on the grid (1 keeps the pixel, 0 replaces it), or
                ``(n, T, 1, 1)`` to keep or replace whole frames.
            fill: ``(1, T, 3, H', W')`` baseline clip on the canvas.
            mode: how ``keep`` is resized to the crop box (``"nearest-exact"`` for label masks).
        """
        if keep.shape[-2:] == (1, 1):
            return fill + keep[:, :, None] * (self.pixels - fill)
        k = self.to_box(keep, mode)[:, :, None]
        base, x = self.region(fill), self.region()
        return self.paste(base + k * (x - base))


@dataclass
class ClipResult:
    """What :meth:`PerturbationMethod.explain_clip` returns for one clip.

    Attributes:
        maps: non-negative ``(T', h, w)``.
        temporal: optional non-negative ``(T,)`` per-frame scores.
        extras: fixed-shape per-clip arrays (stacked over the batch into ``Attribution.extras``).
        resolved: the values the method chose for this clip for options it was given as ``None``
            or ``"auto"`` (an occlusion window, a number of superpixels, an extremal preset's
            iterations), ``{option: value}``: given explicitly, they make the same map.
    """

    maps: torch.Tensor
    temporal: torch.Tensor | None = None
    extras: dict[str, torch.Tensor] = field(default_factory=dict)
    resolved: dict = field(default_factory=dict)


class PerturbationMethod(Method):
    """Base of the methods that explain by re-running the model on perturbed copies of a clip.

    Subclasses set :attr:`space` and implement :meth:`explain_clip`; their ``__init__`` stores
    the common options through :meth:`_setup`. :meth:`attribute` takes pixels
    ``(B, T, 3, H, W)`` and returns ``maps (B, T', h, w)``, non-negative: ``(B, T, h, w)`` on the
    model's input grid ``h × w`` with ``space="crop"``, or for a temporal method
    (``shap_temporal``) ``(B, T, 1, 1)`` with ``space="frame"``; ``temporal (B, T)`` where the
    method has its own, and per-clip ``extras`` stacked over the batch, with
    ``extras["resolved_options"]``: a list of each clip's :attr:`ClipResult.resolved`, those of
    the options left to the method (``None``, ``"auto"``) that were chosen from the clip
    (:func:`videoxai.explain` keeps it as ``meta["resolved_options"]``).
    """

    #: which pixels a map's grid covers (see :class:`~videoxai.methods.base.Attribution`)
    space: str = "crop"
    # 8 clips (64+ frames) a pass: on the demo TimeSformer (one thread) 32 were no faster per
    # clip (8.1 against 7.8 ms) and the forward's own peak memory grows with the batch (32, 72
    # and 142 MiB at 8, 16 and 32), which made up most of RISE's peak on the 720p sample
    batch_size: int = 8
    output: Output = "probability"
    seed: int = 0
    baseline_name: str | Callable = "black"

    def _setup(self, *, batch_size: int, output: Output = "probability", seed: int = 0,
               baseline: str | Callable | None = None) -> None:
        """Store the common options, already parsed and range-checked from the subclass's
        declarations (``BatchSize``, ``Output``, ``Seed``)."""
        self.batch_size = batch_size
        self.output = output
        self.seed = seed
        if baseline is not None:
            check_baseline(self._owner(), baseline)  # fail now, with the names, not mid-explanation
            self.baseline_name = baseline

    # -- the one method to implement --------------------------------------------------------------
    def explain_clip(self, canvas: Canvas, target: int, generator: torch.Generator) -> ClipResult:
        """Explain one clip (as a :class:`Canvas`) for class ``target``."""
        raise NotImplementedError

    # -- shared machinery -------------------------------------------------------------------------
    def attribute(self, inputs: torch.Tensor, target: Target = None) -> Attribution:
        self.model.check_input(inputs)
        # pixels that are part of the caller's graph (a clip computed from tensors that require
        # grad) are explained as their values: the extremal methods' backward passes ran on into
        # that graph and failed ("backward through the graph a second time") or filled its .grad
        inputs = inputs.detach()
        logits = self.clean_logits(inputs)
        target = self.resolve_target(target, logits)
        results = []
        for b in range(inputs.shape[0]):
            canvas = Canvas.of(self.model, inputs[b:b + 1].to(self.model.device))
            generator = torch.Generator().manual_seed(self.seed)
            results.append(self.explain_clip(canvas, int(target[b]), generator))
        maps = torch.stack([r.maps for r in results]).clamp_min(0)
        temporal = None
        if all(r.temporal is not None for r in results):
            temporal = torch.stack([r.temporal for r in results]).clamp_min(0)
        extras = {k: torch.stack([torch.as_tensor(r.extras[k]) for r in results])
                  for k in results[0].extras}
        extras["resolved_options"] = [self._left_to_us(r.resolved) for r in results]
        return Attribution(maps=maps, space=self.space, target=target, logits=logits,
                           temporal=temporal, time_align="repeat", extras=extras or None)

    def _left_to_us(self, resolved: dict) -> dict:
        """``resolved`` without the options the caller gave a value of their own: what was run
        for the options recorded as ``None`` or ``"auto"`` in :attr:`options`."""
        return {k: v for k, v in resolved.items()
                if k in self.options and (self.options[k] is None or self.options[k] == "auto")}

    def baseline(self, canvas: Canvas) -> torch.Tensor:
        """The pixel-space baseline clip ``(1, T, 3, H', W')`` of ``canvas``."""
        out = baselines.get(self.baseline_name)(canvas.pixels)
        if not isinstance(out, torch.Tensor) or out.shape != canvas.pixels.shape:
            # a user's function: said here, not as a broadcasting error deep in a batch
            got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise InputError(f"{self._owner()}: baseline returned {got}, expected a tensor of shape "
                             f"{tuple(canvas.pixels.shape)} (the clip's pixels)")
        if not torch.isfinite(out).all():
            # the maps came out non-finite, and the error blamed an option's scale or the model
            raise InputError(f"{self._owner()}: baseline returned NaN or infinite values")
        wrong = baselines.range_error(self._owner(), "baseline returned", out)
        if wrong:
            raise InputError(wrong)
        return out.to(canvas.pixels.dtype)

    def read(self, logits: torch.Tensor, target: int) -> torch.Tensor:
        """The scalar each perturbed clip is scored by: ``(n,)`` probability or logit of ``target``."""
        if self.output == "logit":
            return logits[:, target].double()
        return self.model.probabilities(logits.double())[:, target]

    @torch.no_grad()
    def scores(self, make_batch: Callable[[slice], torch.Tensor], n: int, target: int,
               description: str) -> torch.Tensor:
        """Score ``n`` perturbed clips, built ``batch_size`` at a time by ``make_batch(slice)``.

        Returns ``(n,)`` float64 on the model's device. Inside a
        :func:`videoxai.models.forward_cache.sharing` block (the evaluation runner's), clips already run
        are looked up instead: none of these methods' clips depend on ``target``, so explaining
        another class of the same clip runs the model on none of them again.
        """
        out = []
        for sl in self.batches(n, self.batch_size, description):
            def make(s: slice, start: int = sl.start) -> torch.Tensor:
                return make_batch(slice(start + s.start, start + s.stop))
            out.append(self.read(forward_batched(self.model, sl.stop - sl.start, make, self.batch_size), target))
        scores = torch.cat(out) if out else torch.zeros(0, dtype=torch.float64)
        bad = (~torch.isfinite(scores)).nonzero().flatten()
        if bad.numel():
            # said here, where it is known: the map's non-finite check could only guess at an
            # option far out of scale or the model
            raise InputError(f"{self._owner()}: the model's {self.output} for class {target} is not finite on "
                             f"{bad.numel()} of the {n} perturbed clips ({description}; the first is clip "
                             f"{int(bad[0])}): its output on perturbed input is NaN or infinite, so nothing "
                             "can be read from the perturbations")
        return scores


def check_fits(owner: str, option: str, what: str, size: tuple[int, ...], limit: tuple[int, ...],
               axes: tuple[str, ...] = ("frames", "rows", "cols")) -> None:
    """Raise :class:`~videoxai.options.OptionError` if a window/kernel ``size`` set by ``option``
    does not fit in ``limit``, the clip on the model's grid: an option's range that depends on
    the clip, so it is checked when the clip is known (and by ``forward_passes`` before the work).

    The reference STEP code crashes deep inside ``conv3d`` when a clip is shorter than its
    kernel; here the user gets the numbers.
    """
    grid = " x ".join(map(str, limit))
    for s, lim, axis in zip(size, limit, axes):
        if s > lim:
            raise OptionError(f"{owner}: option {option}: the {what} spans {s} {axis} but the clip has only "
                              f"{lim} {axis} on the model's grid ({grid}); choose a smaller {what}, at most {grid}")
        if s < 1:
            raise OptionError(f"{owner}: option {option}: the {what} must be at least 1 along every axis, got {size}")
