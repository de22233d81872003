"""What the methods that read a video transformer's attention share: which layers they read.

``rollout``, ``attention_relevance`` and ``staa`` read the attention of Hugging Face
TimeSformer, VideoMAE, ViViT, V-JEPA 2 and VideoPrism models (:class:`~videoxai.models.attention.AttentionSites`) and
take one ``layers`` option with one meaning: ``k`` (an integer ≥ 1) the last k layers, a list
the layers at those indices (negative ones count from the end), ``"all"`` every layer. A
value the model cannot satisfy is an :class:`~videoxai.options.OptionError` naming the method,
the option and the model's range, raised when the method is built.
"""

from __future__ import annotations

from typing import Annotated, Literal

import torch

from ..core.token_layout import token_frames_on_input, token_maps_on_input
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

    def chosen_options(self) -> dict:
        # a count, a name or the default stands for layers this model's depth decides; a list
        # given as such is already explicit
        return {} if isinstance(self.options.get("layers"), list) else {"layers": list(self.layers)}

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

    def check_attention_gradients(self, grads: list[torch.Tensor | None]) -> None:
        """Raise :class:`UnsupportedModelError` when the target logit's gradient reached none of
        the attention probabilities read (``grads``, ``None`` where it did not): a network that
        runs under ``no_grad`` failed in ``torch.autograd.grad`` ("appears to not have been used in the
        graph") or on a ``None`` gradient deep in the method."""
        if all(g is not None for g in grads):
            return
        raise UnsupportedModelError(
            f"the logits of {self.model.name} do not depend on its attention in autograd's graph (the network "
            f"runs part of its forward under torch.no_grad() or detaches a tensor); {self.name} weighs the "
            "attention by that gradient (rollout and staa without gradient_weighted need none)")

    def frames_of_tokens(self, values: torch.Tensor, num_frames: int) -> torch.Tensor:
        """Per token frame ``(B, T', …)`` → per input frame ``(B, T, …)``
        (:func:`~videoxai.core.token_layout.token_frames_on_input`)."""
        return token_frames_on_input(values, self.model.token_grid, num_frames)

    def on_input(self, maps: torch.Tensor, num_frames: int) -> torch.Tensor:
        """Token-grid maps ``(B, T', rows, cols)`` laid on the frames and pixels they cover
        (:func:`~videoxai.core.token_layout.token_maps_on_input`)."""
        return token_maps_on_input(maps, self.model.token_grid, self.model.preprocess.size, num_frames)
