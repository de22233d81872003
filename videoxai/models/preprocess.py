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

from ..errors import InputError

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

    The frame is resized (shorter side to ``shortest_edge``, or to a fixed ``resize``), then the
    centre ``size`` window is cropped from it. With ``crop_offset="round"`` or ``"floor"`` this is
    torchvision's or Hugging Face's geometry to the pixel (the loaders of their models set it): the
    longer side of the resize truncated to an integer, the crop's offset in the resized frame
    rounded or floored. The default, ``"centre"``, is the exact geometric centre (videoxai's own
    models and :func:`~videoxai.wrap`).

    Args:
        size: ``(h, w)`` of the model input (the centre crop).
        shortest_edge: if set, the frame is scaled so that its shorter side has this length and
            then centre-cropped to ``size`` (Hugging Face / torchvision video convention).
        mean, std: per-channel normalisation applied after resizing.
        resize: if set (and ``shortest_edge`` is not), the frame is first resized to this fixed
            ``(h, w)``, its aspect ratio not kept, then centre-cropped to ``size`` (torchvision's
            ResNet presets: ``(128, 171)`` then 112; a Hugging Face ``size={"height", "width"}``).
            With neither, the whole frame is resized to ``size`` (aspect ratio not kept).
        interpolation: ``"bilinear"``, ``"bicubic"`` or ``"nearest-exact"`` (the preprocessor's
            ``resample``).
        antialias: whether shrinking is antialiased (not with nearest): as Pillow does for Hugging
            Face's processors; torchvision's video presets hard-code ``False`` (their weights'
            accuracies were measured so), and their models are fed the same.
        crop_offset: ``"centre"`` (exact, sub-pixel), ``"round"`` (torchvision's ``resize`` and
            ``center_crop``) or ``"floor"`` (Hugging Face's).
    """

    size: tuple[int, int]
    shortest_edge: int | None = None
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    resize: tuple[int, int] | None = None
    interpolation: str = "bilinear"
    crop_offset: str = "centre"
    antialias: bool = True

    def __post_init__(self) -> None:
        # a misspelt choice ("center") would silently take another geometry or fail deep in torch
        for field, value, choices in (("crop_offset", self.crop_offset, ("centre", "round", "floor")),
                                      ("interpolation", self.interpolation,
                                       ("bilinear", "bicubic", "nearest", "nearest-exact"))):
            if value not in choices:
                raise InputError(f"Preprocess {field}={value!r}: expected one of {', '.join(map(repr, choices))}")

    def resized_size(self, frame_h: int, frame_w: int) -> tuple[int, int] | None:
        """``(h, w)`` the frame is resized to before the crop; ``None`` when it is resized whole to
        :attr:`size`. The longer side of a ``shortest_edge`` resize is truncated, as torchvision's
        ``resize`` and Hugging Face's ``get_resize_output_image_size`` do (``int(s · long / short)``),
        except with ``crop_offset="centre"`` (a float then)."""
        if self.shortest_edge is not None:
            s = int(self.shortest_edge)
            whole = float if self.crop_offset == "centre" else int
            if frame_w <= frame_h:
                return whole(s * frame_h / frame_w), s
            return s, whole(s * frame_w / frame_h)
        return None if self.resize is None else (int(self.resize[0]), int(self.resize[1]))

    def crop_box(self, frame_h: int, frame_w: int) -> CropBox:
        """Where the model's input window lies in an ``frame_h × frame_w`` frame.

        The centre crop of the resized frame, taken back to original coordinates: for the
        libraries' geometry its integer offset in the resized frame (:meth:`_margin`) times the
        resize's scale on each axis."""
        resized = self.resized_size(frame_h, frame_w)
        if resized is None:
            return CropBox(0.0, 0.0, float(frame_h), float(frame_w))
        if self.crop_offset == "centre":  # the box's own centre: no rounding anywhere
            ch, cw = min(self.size[0] * frame_h / resized[0], frame_h), min(self.size[1] * frame_w / resized[1], frame_w)
            if self.shortest_edge is not None:  # (one scale: the form that keeps whole boxes whole)
                scale = self.shortest_edge / min(frame_h, frame_w)
                ch, cw = min(self.size[0] / scale, frame_h), min(self.size[1] / scale, frame_w)
            return CropBox((frame_h - ch) / 2, (frame_w - cw) / 2, ch, cw)
        (rh, rw), (ch, cw) = resized, (min(self.size[0], resized[0]), min(self.size[1], resized[1]))
        sy, sx = frame_h / rh, frame_w / rw
        return CropBox(self._margin(rh - ch) * sy, self._margin(rw - cw) * sx, ch * sy, cw * sx)

    def _margin(self, spare: int) -> int:
        """The crop's offset in the resized frame, given its ``spare`` pixels on that axis."""
        return int(round(spare / 2.0)) if self.crop_offset == "round" else int(spare / 2.0)

    def __call__(self, pixels: torch.Tensor) -> torch.Tensor:
        """``(B, T, 3, H, W)`` in [0, 1] → normalised ``(B, T, 3, h, w)``.

        The frames are resampled and cropped by :meth:`view`, then normalised.
        """
        x = self.view(pixels)
        mean = x.new_tensor(self.mean).view(1, 1, 3, 1, 1)
        std = x.new_tensor(self.std).view(1, 1, 3, 1, 1)
        return (x - mean) / std

    def view(self, pixels: torch.Tensor) -> torch.Tensor:
        """``(B, T, 3, H, W)`` in [0, 1] → the model's view ``(B, T, 3, h, w)`` in [0, 1], before
        normalisation: what the network sees of the frames (working at the model's size, a method
        explains exactly this; :meth:`at_model_size` then only normalises it).

        With the libraries' geometry (``crop_offset`` ``"round"`` / ``"floor"``) the whole frame
        is resized and the crop taken on whole pixels of the result, as torchvision and Hugging
        Face do (cropping the box on whole original pixels first moved the samples by a fraction
        of a pixel: up to 1.3 normalised units off torchvision's preset on sharp edges). With
        ``"centre"`` (videoxai's own models, :func:`~videoxai.wrap`) the exact crop box is cut
        from the frame and resized.
        """
        b, t, c, h, w = pixels.shape
        resized = self.resized_size(h, w)
        if (self.crop_offset != "centre" and resized is not None
                and resized[0] >= self.size[0] and resized[1] >= self.size[1]):  # (else the libraries pad)
            x = self.resize_box(pixels, size=resized)
            y, z = self._margin(resized[0] - self.size[0]), self._margin(resized[1] - self.size[1])
            return x[..., y:y + self.size[0], z:z + self.size[1]]
        top, left, ch, cw = self.crop_box(h, w).as_ints(h, w)
        return self.resize_box(pixels[..., top:top + ch, left:left + cw])

    def resize_box(self, box: torch.Tensor, size: tuple[int, int] | None = None) -> torch.Tensor:
        """The crop box's pixels ``(B, T, 3, bh, bw)`` → the model's view ``(B, T, 3, h, w)``, in [0, 1].

        The resampling :meth:`view` does (antialiased when shrinking, unless :attr:`antialias` is
        off). ``size`` resamples to another ``(h, w)``.
        """
        b, t, c, ch, cw = box.shape
        size = tuple(self.size) if size is None else tuple(size)
        if (ch, cw) == size:
            return box
        shrink = ch > size[0] or cw > size[1]
        mode = self.interpolation
        extra = {} if mode.startswith("nearest") else {"align_corners": False, "antialias": shrink and self.antialias}
        x = F.interpolate(box.reshape(b * t, c, ch, cw), size=size, mode=mode, **extra)
        return x.view(b, t, c, *size)

    def at_model_size(self) -> "Preprocess":
        """The preprocessing for frames that already are the model's view (:meth:`resize_box`):
        no crop, no resize, the same normalisation."""
        return replace(self, shortest_edge=None, resize=None)
