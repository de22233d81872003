"""What the methods that read a video transformer's attention share: which layers they read.

``rollout``, ``attention_relevance`` and ``staa`` read the attention of Hugging Face
TimeSformer, VideoMAE and ViViT models (:class:`~videoxai.models.attention.AttentionSites`) and
take one ``layers`` option with one meaning: ``k`` (an integer ≥ 1) the last k layers, a list
the layers at those indices (negative ones count from the end), ``"all"`` every layer. A
value the model cannot satisfy is an :class:`~videoxai.options.OptionError` naming the method,
the option and the model's range, raised when the method is built.
"""

from __future__ import annotations

from typing import Annotated, Literal

import torch
import torch.nn.functional as F

from ..core.align import align_time
from ..errors import InputError, UnsupportedModelError
from ..options import Opt, OptionError
from .base import Method

#: a number of last layers
LayerCount = Annotated[int, Opt(ge=1)]
#: the ``layers`` option of the attention methods whose default is every layer (``staa`` adds
#: its own names): ``"all"`` is ``None``, so both give one canonical spec
Layers = Annotated[LayerCount | list[int] | Literal["all"] | None,
                   Opt(normalise=lambda v: None if v == "all" else v)]


class AttentionMethod(Method):
    """Base of the methods that read the model's attention; subclasses resolve their ``layers``
    option with :meth:`attention_layers`.

    :meth:`attribute` returns ``maps (B, T', rows, cols)`` on the model's token grid (``T'`` =
    frames / tubelet), ``space="crop"``, and ``temporal (B, T)``; where the tokens do not tile the
    input (frames past the last whole tubelet, pixels past the last whole patch, both dropped by
    the patch embedding) the maps are laid over the input frames and pixels, zero on those
    (:meth:`on_input`).

    Args:
        layers: the layers read: the last k (an integer in [1, layers of the model]), the listed
            layer indices (negative from the end) or ``"all"`` (default, also ``None``).
    """

    requires = ("attention", "token_grid")

    def attention_layers(self, layers: int | list[int] | str | None) -> list[int]:
        """The layer indices (ascending, each once) of a ``layers`` value:
        ``None`` or ``"all"`` every layer, ``k`` the last k, a list those indices."""
        sites = self.model.attention
        n = sites.num_layers
        if layers is None or layers == "all":
            layers = n
        try:
            return sites.resolve_layers(layers)
        except (InputError, UnsupportedModelError) as e:
            raise OptionError(f"{self._owner()}: option layers: {e} (a {n}-layer model takes a count in [1, {n}], "
                              f"indices in [{-n}, {n - 1}] or all)") from None

    def frames_of_tokens(self, values: torch.Tensor, num_frames: int) -> torch.Tensor:
        """Per token frame ``(B, T', …)`` → per input frame ``(B, T, …)``: token frame k covers
        input frames ``k·tubelet … k·tubelet + tubelet − 1``; the frames past the last whole
        tubelet, which the patch embedding drops (e.g. the 9th of 9 frames with tubelets of 2),
        get zero. (Linear interpolation of 4 token frames over 9 input frames laid frame 2's
        score on frames 0-2 and gave the dropped frame 8 the last tubelet's.) A grid whose
        tubelet does not describe the input is spread over it as :func:`align_time` does."""
        tubelet = self.model.token_grid.tubelet
        extra = num_frames - values.shape[1] * tubelet
        if not 0 <= extra < tubelet:
            b, t = values.shape[:2]
            spread = align_time(values.reshape(b, t, -1, 1), num_frames, "repeat")
            return spread.reshape(b, num_frames, *values.shape[2:])
        out = values.repeat_interleave(tubelet, dim=1)
        return F.pad(out, (0, 0) * (values.ndim - 2) + (0, extra))

    def on_input(self, maps: torch.Tensor, num_frames: int) -> torch.Tensor:
        """Token-grid maps ``(B, T', rows, cols)`` as they are where the tokens tile the model's
        input (``T' · tubelet = T`` frames, the patches its crop); else maps that the ``"repeat"``
        alignment and the crop box place right: ``(B, T, …)`` over the input frames
        (:meth:`frames_of_tokens`) and, where the patches fall short of the crop by less than a
        patch, ``(B, T, H, W)`` at the input's pixel size, zero on the rows and columns past the
        last whole patch, which the patch embedding drops (a 36-pixel input with 8-pixel patches:
        32 pixels seen; the token grid stretched over all 36 put patches up to 4 pixels off)."""
        grid = self.model.token_grid
        if 0 < num_frames - maps.shape[1] * grid.tubelet < grid.tubelet:
            maps = self.frames_of_tokens(maps, num_frames)
        (h, w), (ph, pw) = self.model.preprocess.size, grid.patch
        seen = (grid.rows * ph, grid.cols * pw)
        if seen == (h, w) or not (0 <= h - seen[0] < ph and 0 <= w - seen[1] < pw):
            return maps  # tiled, or a grid whose patch size does not describe the input: over the crop
        maps = F.interpolate(maps, size=seen, mode="bilinear", align_corners=False)
        return F.pad(maps, (0, w - seen[1], 0, h - seen[0]))
