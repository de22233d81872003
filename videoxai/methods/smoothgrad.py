"""SmoothGrad (Smilkov et al., 2017) and its square: gradients averaged over noisy copies of a clip.

``smoothgrad``: ``E_ε[∂y/∂x (x + ε)]``; ``smoothgrad_sq``: ``E_ε[(∂y/∂x (x + ε))²]``, with Gaussian
noise ``ε ~ N(0, σ²)`` and ``σ = noise_level · (max(x) − min(x))`` of each clip, as in the paper
(which recommends 10–20 % of the input range). Each sample costs one forward and one backward
pass; ``batch_size`` noisy clips go through the model at a time.

The noise of each clip is drawn from a generator of its own seeded with ``seed``, one sample
``(T, 3, H, W)`` at a time, so a clip's noise depends on the seed alone: not on ``batch_size``
(one ``randn`` of k samples differs from k draws of one where a sample's size is not a multiple
of 16 on CPU, and on CUDA), nor on the other clips of the batch. ``batch_size`` changes the map
only by the rounding of the network's batched passes (a few 1e-8 of its maximum on the bundled
models). For equal seeds the signed result
on each clip equals ``NoiseTunnel(Saliency(abs=False))`` on that clip after
``torch.manual_seed(seed)`` (Captum's ``stdevs`` our σ: clips whose values span 1) where Captum's
draws do not depend on its ``nt_samples_batch_size`` either: on CPU, with ``T·3·H·W`` a multiple
of 16.
"""

from __future__ import annotations

from typing import Annotated, ClassVar

import torch

from ..options import Opt
from .base import Seed, Target, register
from .gradients import (ChannelReduce, InputGradientMethod, PixelAttribution, check_pixels,
                        frozen_parameters, target_gradients)


@register
class SmoothGrad(InputGradientMethod):
    """SmoothGrad; see the module docstring.

    Args:
        n_samples: noisy copies per clip (each a forward and a backward pass).
        noise_level: noise standard deviation as a fraction of each clip's value range
            (max − min of its pixels; the paper recommends 0.1–0.2).
        batch_size: noisy clips per forward + backward pass, shared by the batch's clips (at
            least one sample of each; memory: the map only in its last bits).
        seed: seed of the noise.
    """

    name = "smoothgrad"
    paper = 'Smilkov et al., SmoothGrad: removing noise by adding noise, arXiv 1706.03825 (2017)'
    #: whether the samples' gradients are squared before averaging (SmoothGrad²)
    squared: ClassVar[bool] = False

    def __init__(self, model, n_samples: Annotated[int, Opt(ge=1)] = 20,
                 noise_level: Annotated[float, Opt(ge=0)] = 0.15,
                 batch_size: Annotated[int, Opt(ge=1)] = 4,
                 seed: Seed = 0, channel_reduce: ChannelReduce = "abs") -> None:
        super().__init__(model, channel_reduce)
        self.n_samples = int(n_samples)
        self.noise_level = float(noise_level)
        self.batch_size = int(batch_size)
        self.seed = int(seed)

    def forward_passes(self, num_frames: int) -> int:
        return self.n_samples + 1

    def attribute_pixels(self, inputs: torch.Tensor, target: Target = None) -> PixelAttribution:
        x = check_pixels(self.model, inputs)
        target, logits = self.target_and_logits(x, target)
        b = x.shape[0]
        span = x.flatten(1).amax(1) - x.flatten(1).amin(1)
        sigma = (self.noise_level * span).view(b, 1, 1, 1, 1)
        generators = [torch.Generator(device=x.device).manual_seed(self.seed) for _ in range(b)]
        per_pass = max(1, self.batch_size // b)
        total = torch.zeros_like(x)
        with frozen_parameters(self.model):
            for sl in self.batches(self.n_samples, per_pass, "noisy samples"):
                k = sl.stop - sl.start
                # (B·k, T, 3, H, W), each clip's k samples next to each other, drawn one sample at
                # a time from the clip's own generator (see the module docstring), in float32 whatever
                # the pixels' precision: float64 pixels drew other numbers from the same seed
                noise = torch.stack([torch.randn(x.shape[1:], generator=g, device=x.device)
                                     for g in generators for _ in range(k)]).to(x.dtype)
                noisy = x.repeat_interleave(k, dim=0) + noise * sigma.repeat_interleave(k, dim=0)
                grads, _ = target_gradients(self.model, noisy, target.repeat_interleave(k))
                if self.squared:
                    grads = grads.square()
                total += grads.view(b, k, *x.shape[1:]).sum(1)
        return PixelAttribution(values=total / self.n_samples, target=target, logits=logits)


@register
class SmoothGradSquared(SmoothGrad):
    """SmoothGrad² (Hooker et al., 2019): the mean of the *squared* gradients over noisy copies,
    non-negative by construction; options as :class:`SmoothGrad`."""

    name = "smoothgrad_sq"
    squared = True
