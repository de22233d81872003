"""What part of a frame a model sees, and how its pixels become the model's input.

A model's preprocessing (resize, centre crop, mean/std normalisation) runs inside
:meth:`~videoxai.models.base.VideoModel.forward`, differentiably, so that
methods perturb and differentiate real pixels of the original frames. The geometry lives here on
its own because more than the forward needs it: maps are pasted back onto the frame through the
:class:`CropBox`, and methods that work at the model's size resize the crop once
(:meth:`Preprocess.resize_box`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class CropBox:
    """The region of an original frame that the model sees, in original pixel coordinates."""

    top: float
    left: float
    height: float
    width: float

    def as_ints(self, frame_h: int, frame_w: int) -> tuple[int, int, int, int]:
        """``(top, left, height, width)`` rounded and clipped to the frame."""
        top, left = int(round(self.top)), int(round(self.left))
        h, w = int(round(self.height)), int(round(self.width))
        top, left = max(0, top), max(0, left)
        return top, left, max(1, min(h, frame_h - top)), max(1, min(w, frame_w - left))


@dataclass(frozen=True)
class Preprocess:
    """Resize / centre-crop / normalise, as a model's preprocessor config describes it.

    Args:
        size: ``(h, w)`` of the model input.
        shortest_edge: if set, the frame is scaled so that its shorter side has this length and
            then centre-cropped to ``size`` (Hugging Face / torchvision video convention). If
            ``None`` the whole frame is resized to ``size`` (aspect ratio not kept).
        mean, std: per-channel normalisation applied after resizing.
    """

    size: tuple[int, int]
    shortest_edge: int | None = None
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    def crop_box(self, frame_h: int, frame_w: int) -> CropBox:
        """Where the model's input window lies in an ``frame_h × frame_w`` frame."""
        if self.shortest_edge is None:
            return CropBox(0.0, 0.0, float(frame_h), float(frame_w))
        scale = self.shortest_edge / min(frame_h, frame_w)
        ch, cw = min(self.size[0] / scale, frame_h), min(self.size[1] / scale, frame_w)
        return CropBox((frame_h - ch) / 2, (frame_w - cw) / 2, ch, cw)

    def __call__(self, pixels: torch.Tensor) -> torch.Tensor:
        """``(B, T, 3, H, W)`` in [0, 1] → normalised ``(B, T, 3, h, w)``.

        The crop is taken first in original coordinates and then resized, which equals
        resize-then-crop and keeps :meth:`crop_box` exact.
        """
        b, t, c, h, w = pixels.shape
        top, left, ch, cw = self.crop_box(h, w).as_ints(h, w)
        x = self.resize_box(pixels[..., top:top + ch, left:left + cw])
        mean = x.new_tensor(self.mean).view(1, 1, 3, 1, 1)
        std = x.new_tensor(self.std).view(1, 1, 3, 1, 1)
        return (x - mean) / std

    def resize_box(self, box: torch.Tensor) -> torch.Tensor:
        """The crop box's pixels ``(B, T, 3, bh, bw)`` → the model's view ``(B, T, 3, h, w)``, in [0, 1].

        Exactly the resampling :meth:`__call__` does (antialiased when shrinking), without the
        normalisation: on its output, :meth:`at_model_size`'s preprocessing gives the same model
        input as this one gives on the original frames.
        """
        b, t, c, ch, cw = box.shape
        if (ch, cw) == tuple(self.size):
            return box
        x = F.interpolate(box.reshape(b * t, c, ch, cw), size=self.size, mode="bilinear",
                          align_corners=False, antialias=ch > self.size[0] or cw > self.size[1])
        return x.view(b, t, c, *self.size)

    def at_model_size(self) -> "Preprocess":
        """The preprocessing for frames that already are the model's view (:meth:`resize_box`):
        no crop, no resize, the same normalisation."""
        return replace(self, shortest_edge=None)
