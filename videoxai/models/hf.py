"""Hugging Face video transformers: TimeSformer, VideoMAE, ViViT, V-JEPA 2 and VideoPrism.

Each family is one small adapter class that says what is special about it: how its tokens lie on
the (time, row, col) grid, where its attention projections are, and its default CAM layer.
Preprocessing (resize, crop, mean/std) is read from the checkpoint's ``preprocessor_config.json``.
"""

from __future__ import annotations

import json
import logging
import threading
import types
import weakref
from contextlib import contextmanager
from pathlib import Path
from typing import ClassVar, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import UnknownModelError
from .attention import AttentionCall, AttentionSites
from .base import VideoModel
from .preprocess import IMAGENET_MEAN, IMAGENET_STD, Preprocess
from .token_grid import TokenGrid

log = logging.getLogger(__name__)


def _pair(x) -> tuple[int, int]:
    return (int(x), int(x)) if isinstance(x, (int, float)) else (int(x[0]), int(x[1]))


class HFVideoModel(VideoModel):
    """Base of the Hugging Face adapters (input layout ``(B, T, C, H, W)``)."""

    model_type: ClassVar[str]
    auto_class: ClassVar[str]
    #: the family's name (``model.family``) where it is not the config's ``model_type``
    family_name: ClassVar[str | None] = None
    #: the processor settings of a checkpoint saved without a processor config (``None``: the
    #: model's image size with ImageNet statistics)
    default_processor: ClassVar[dict | None] = None

    def __init__(self, net: nn.Module, preprocess: Preprocess, name: str | None = None) -> None:
        cfg = net.config
        channels = getattr(cfg, "num_channels", getattr(cfg, "in_chans", 3))
        if channels != 3:
            # frames are read and normalised as RGB: the network would fail deep in its patch
            # embedding on the first clip (a conv weight / channel-dimension message from torch or HF)
            raise UnknownModelError(f"{self.family_name or self.model_type} model with num_channels={channels} is not supported: "
                                    "videoxai feeds it RGB frames (3 channels)")
        labels = _labels(cfg)
        grid = self.build_grid(cfg)
        super().__init__(net, num_frames=self.frames_of(cfg), preprocess=preprocess, labels=labels,
                         num_classes=cfg.num_labels, layout="BTCHW", fixed_num_frames=True,
                         token_grid=grid, cam_layer=self.build_cam_layer(cfg),
                         cam_reshape=self._cam_reshape, family=self.family_name or self.model_type,
                         name=name,
                         # a model fine-tuned for several labels per clip scores each on its own
                         activation="sigmoid" if cfg.problem_type == "multi_label_classification" else "softmax")
        self.attention = self.build_attention(net)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        with returning_dicts(self.net):
            return self.net(pixel_values=x, return_dict=True).logits

    def _cam_reshape(self, out) -> torch.Tensor:
        """A transformer layer's output (a tensor or a tuple) → ``(B, D, T', H', W')``."""
        hidden = out[0] if isinstance(out, (tuple, list)) else out
        return self.token_grid.to_volume(hidden)

    # -- per family --------------------------------------------------------------------------
    @staticmethod
    def frames_of(cfg) -> int:
        """The number of frames the network takes."""
        return cfg.num_frames

    @staticmethod
    def build_grid(cfg) -> TokenGrid:
        raise NotImplementedError

    @staticmethod
    def build_cam_layer(cfg) -> str:
        raise NotImplementedError

    @staticmethod
    def build_attention(net) -> AttentionSites:
        raise NotImplementedError


def _labels(cfg) -> list[str] | None:
    """Class names by output index from ``id2label``; an index it skips (``{0: …, 1: …, 7: …}``
    for 3 outputs: Hugging Face sizes the head by the number of entries) gets ``class_<i>``
    instead of failing the load with a ``KeyError``."""
    if not cfg.id2label:
        return None
    names = {int(k): str(v) for k, v in cfg.id2label.items()}
    labels = [names.get(i, f"class_{i}") for i in range(cfg.num_labels)]
    stray = sorted(set(names) - set(range(cfg.num_labels)))
    if stray:
        log.warning("id2label names classes %s, but the model has %d outputs; their names are not used",
                    stray, cfg.num_labels)
    return labels


class TimesformerAdapter(HFVideoModel):
    """TimeSformer. Tokens are ``[CLS] + (row, col, frame)``-ordered patches.

    With ``attention_type="divided_space_time"`` (every published checkpoint) each layer has a
    temporal then a spatial attention: the spatial attention of frame t runs over
    ``[CLS_t] + patches of t``, the temporal attention of a patch over its T frames. With
    ``"joint_space_time"`` each layer has one attention over all tokens, read as ViViT's.
    ``"space_only"`` is refused: Hugging Face's model then returns a prediction per *frame*
    (``B·T`` rows of logits), not per clip.
    """

    model_type = "timesformer"
    auto_class = "TimesformerForVideoClassification"

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        with fused_attention(self.net), returning_dicts(self.net):
            return self.net(pixel_values=x, return_dict=True).logits

    @staticmethod
    def build_grid(cfg) -> TokenGrid:
        n = cfg.image_size // cfg.patch_size
        return TokenGrid(cfg.num_frames, n, n, tubelet=1, patch=(cfg.patch_size, cfg.patch_size),
                         prefix_tokens=1, order="hwt")

    @staticmethod
    def build_cam_layer(cfg) -> str:
        # Only the CLS token of the last layer's output reaches the head, so Grad-CAM there has zero
        # gradient on every patch. Use that layer's input (the previous layer's output, or the
        # embeddings), which its attention reads into the CLS token — the ViT "norm1" choice.
        last = cfg.num_hidden_layers - 1
        return f"timesformer.encoder.layer.{last - 1}" if last else "timesformer.embeddings"

    @staticmethod
    def build_attention(net) -> AttentionSites:
        cfg = net.config
        if cfg.attention_type == "divided_space_time":
            kinds = (("temporal", "temporal_attention"), ("spatial", "attention"))
        elif cfg.attention_type == "joint_space_time":
            kinds = (("joint", "attention"),)
        else:
            raise UnknownModelError(f"TimeSformer attention_type {cfg.attention_type!r} is not supported: Hugging "
                                    "Face's TimeSformer then classifies each frame on its own (one row of logits "
                                    "per frame, not per clip); divided_space_time and joint_space_time are")
        scale = (cfg.hidden_size // cfg.num_attention_heads) ** -0.5
        layers = []
        for layer in net.timesformer.encoder.layer:
            calls = {}
            for kind, attribute in kinds:  # in the order the layer runs them (rollout multiplies so)
                sa = getattr(layer, attribute).attention
                calls[kind] = AttentionCall(sa, sa.qkv, sa.qkv, sa.qkv, sa.num_heads, scale, fused=True)
            layers.append(calls)
        return AttentionSites(layers)


@contextmanager
def returning_dicts(net: nn.Module) -> Iterator[None]:
    """``net.config.return_dict`` true inside the block, put back after.

    A config saved with ``return_dict=False`` makes the network return a tuple; asking for a dict
    in the call is not enough for VideoMAE and ViViT, whose classification head reads its
    backbone's output as an object while the backbone follows the config (transformers 5.x:
    ``'tuple' object has no attribute 'last_hidden_state'``). The caller holds the model's lock.
    """
    cfg = net.config
    if getattr(cfg, "return_dict", True):
        yield
        return
    cfg.return_dict = True
    try:
        yield
    finally:
        cfg.return_dict = False


# -- TimeSformer's attention on the fused kernel ---------------------------------------------------
# Hugging Face's TimeSformer computes every attention eagerly (q·kᵀ, scale, softmax, ·v: three
# passes over a materialised B'×heads×N×N tensor and a copy of the permuted q/k/v) and has no
# ``attn_implementation`` switch. The same maths on PyTorch's fused kernel makes the demo model's
# forward 1.3x faster on CPU (logits equal to 3e-7). It is installed only for the duration of the
# adapter's own forward (an instance ``forward`` on the self-attention modules, removed after;
# reference-counted, so concurrent forwards of one model are safe); ``output_attentions=True`` and
# training mode keep the eager code. The qkv projection is still called, so attention taps work.
_FUSED_LOCK = threading.Lock()
_FUSED_DEPTH: "weakref.WeakKeyDictionary[nn.Module, int]" = weakref.WeakKeyDictionary()


def _timesformer_self_attention(self, hidden_states: torch.Tensor, output_attentions: bool = False):
    """``TimesformerSelfAttention.forward`` on ``scaled_dot_product_attention``: ``(B', N, D)`` →
    ``((B', N, D),)``, as the eager code returns it without attentions."""
    if output_attentions or self.training:
        return type(self).forward(self, hidden_states, output_attentions)
    b, n, d = hidden_states.shape
    qkv = self.qkv(hidden_states).view(b, n, 3, self.num_heads, d // self.num_heads).permute(2, 0, 3, 1, 4)
    query, key, value = qkv.unbind(0)
    context = F.scaled_dot_product_attention(query, key, value, scale=self.scale)
    return (context.transpose(1, 2).reshape(b, n, d),)


@contextmanager
def fused_attention(net: nn.Module) -> Iterator[None]:
    """Run the self-attention modules of a HF TimeSformer ``net`` on the fused kernel inside the block."""
    modules = [m for m in net.modules() if type(m).__name__ == "TimesformerSelfAttention"]
    with _FUSED_LOCK:
        depth = _FUSED_DEPTH.get(net, 0)
        if depth == 0:
            for m in modules:
                # a module with a forward of its own (a user's patch, accelerate's offloading hook)
                # keeps it and runs eagerly: it was replaced, then deleted on the way out
                if "forward" not in m.__dict__:
                    m.forward = types.MethodType(_timesformer_self_attention, m)
        _FUSED_DEPTH[net] = depth + 1
    try:
        yield
    finally:
        with _FUSED_LOCK:
            _FUSED_DEPTH[net] -= 1
            if _FUSED_DEPTH[net] == 0:
                for m in modules:
                    if getattr(m.__dict__.get("forward"), "__func__", None) is _timesformer_self_attention:
                        del m.forward


class VideoMAEAdapter(HFVideoModel):
    """VideoMAE: joint space-time attention over ``(frame/tubelet, row, col)`` tokens, no CLS token.

    The head reads the mean of all tokens (``use_mean_pooling=True``, the published
    checkpoints), so STAA uses the attention each token receives; with ``use_mean_pooling=False``
    it reads the first patch token, whose attention row the attention methods then follow.
    """

    model_type = "videomae"
    auto_class = "VideoMAEForVideoClassification"

    @staticmethod
    def build_grid(cfg) -> TokenGrid:
        # Hugging Face's patch embedding takes an int or an (H, W) pair for both sizes
        (h, w), (ph, pw) = _pair(cfg.image_size), _pair(cfg.patch_size)
        return TokenGrid(cfg.num_frames // cfg.tubelet_size, h // ph, w // pw, tubelet=cfg.tubelet_size,
                         patch=(ph, pw), prefix_tokens=0, order="thw",
                         readout="mean" if cfg.use_mean_pooling else "first")

    @staticmethod
    def build_cam_layer(cfg) -> str:
        last = cfg.num_hidden_layers - 1
        if cfg.use_mean_pooling:
            return f"videomae.encoder.layer.{last}"
        # the head reads token 0 of the last layer's output: every other token's gradient is zero
        # there (see TimeSformer), so take the last layer's input
        return f"videomae.encoder.layer.{last - 1}" if last else "videomae.embeddings"

    @staticmethod
    def build_attention(net) -> AttentionSites:
        layers = []
        for layer in net.videomae.encoder.layer:
            sa = layer.attention.attention
            if hasattr(sa, "scaling"):
                call = AttentionCall(sa, sa.query, sa.key, sa.value, sa.num_attention_heads, sa.scaling)
            else:
                # transformers 4 applies the projections' weights with its own q/v biases (the key
                # has none) and never calls the modules, so their hooks would see nothing
                call = AttentionCall(sa, sa.query, sa.key, sa.value, sa.num_attention_heads,
                                     sa.attention_head_size ** -0.5, project=_videomae4_projections(sa))
            layers.append({"joint": call})
        return AttentionSites(layers)


def _videomae4_projections(sa: nn.Module):
    """``hidden → (q, k, v)`` as transformers 4's ``VideoMAESelfAttention.forward`` computes them."""
    def project(hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return (F.linear(hidden, sa.query.weight, sa.q_bias), F.linear(hidden, sa.key.weight),
                F.linear(hidden, sa.value.weight, sa.v_bias))
    return project


class VivitAdapter(HFVideoModel):
    """ViViT (model 1, joint attention): ``[CLS] + (frame/tubelet, row, col)`` tokens."""

    model_type = "vivit"
    auto_class = "VivitForVideoClassification"

    @staticmethod
    def build_grid(cfg) -> TokenGrid:
        tt, th, tw = cfg.tubelet_size
        h, w = _pair(cfg.image_size)
        return TokenGrid(cfg.num_frames // tt, h // th, w // tw, tubelet=tt, patch=(th, tw),
                         prefix_tokens=1, order="thw")

    @staticmethod
    def build_cam_layer(cfg) -> str:
        # CLS pooling: the last layer's output has zero gradient on patches (see TimeSformer); its
        # layernorm_before (the input of its attention) is the ViT "norm1" choice.
        return f"{_vivit_layers_path()}.{cfg.num_hidden_layers - 1}.layernorm_before"

    @staticmethod
    def build_attention(net) -> AttentionSites:
        layers = []
        for layer in net.get_submodule(_vivit_layers_path()):
            a = layer.attention
            if hasattr(a, "q_proj"):  # transformers 5: one module, output projection inside
                call = AttentionCall(a, a.q_proj, a.k_proj, a.v_proj, a.num_attention_heads, a.scaling,
                                     finish=a.o_proj)
            else:                     # transformers 4: self-attention, then a separate output module
                sa = a.attention
                call = AttentionCall(sa, sa.query, sa.key, sa.value, sa.num_attention_heads,
                                     sa.attention_head_size ** -0.5)
            layers.append({"joint": call})
        return AttentionSites(layers)


def _vivit_layers_path() -> str:
    """Where ViViT keeps its layers: ``vivit.layers`` from transformers 5 on, ``vivit.encoder.layer``
    in transformers 4 (which the package allows; reading the 5.x names there failed every load)."""
    from transformers.models.vivit import modeling_vivit

    return "vivit.encoder.layer" if hasattr(modeling_vivit, "VivitEncoder") else "vivit.layers"


class VJEPA2Adapter(HFVideoModel):
    """V-JEPA 2: joint space-time attention over ``(tubelet, row, col)`` tokens, no CLS token,
    rotary position embeddings (RoPE) on the queries and keys; an attentive pooler (learned
    queries cross-attending to every token) reads the last layer out for the classifier.

    The attention methods read the queries and keys as the model uses them, rotated: the tap
    computes them from the attention's input with the module's own projections and rotations.
    """

    model_type = "vjepa2"
    auto_class = "VJEPA2ForVideoClassification"

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        with returning_dicts(self.net):
            return self.net(pixel_values_videos=x, return_dict=True).logits

    @staticmethod
    def frames_of(cfg) -> int:
        return cfg.frames_per_clip

    @staticmethod
    def build_grid(cfg) -> TokenGrid:
        (h, w), (ph, pw) = _pair(cfg.crop_size), _pair(cfg.patch_size)
        return TokenGrid(cfg.frames_per_clip // cfg.tubelet_size, h // ph, w // pw, tubelet=cfg.tubelet_size,
                         patch=(ph, pw), prefix_tokens=0, order="thw", readout="mean")

    @staticmethod
    def build_cam_layer(cfg) -> str:
        # the pooler's learned queries attend to every token of the encoder's output (its final
        # layer norm's): each token has a gradient there, as under mean pooling
        return "vjepa2.encoder.layernorm"

    @staticmethod
    def build_attention(net) -> AttentionSites:
        layers = []
        for layer in net.vjepa2.encoder.layer:
            sa = layer.attention
            layers.append({"joint": AttentionCall(sa, sa.query, sa.key, sa.value, sa.num_attention_heads, sa.scaling,
                                                  finish=sa.proj, project=_rotated_projections(sa))})
        return AttentionSites(layers)


def _rotated_projections(sa: nn.Module):
    """``hidden (B, N, D) → (q, k, v)`` each ``(B, N, D)`` as ``VJEPA2RopeAttention.forward``
    uses them: the queries and keys rotated by their tokens' (frame, row, column) positions."""
    def project(hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        b, n, _ = hidden.shape
        heads = (b, n, -1, sa.attention_head_size)
        positions = sa.get_position_ids(hidden)
        q, k = (sa.apply_rotary_embeddings(proj(hidden).view(heads).transpose(1, 2), positions)
                .transpose(1, 2).reshape(b, n, -1) for proj in (sa.query, sa.key))
        return q, k, sa.value(hidden)
    return project


class VideoPrismAdapter(HFVideoModel):
    """VideoPrism: a factorised encoder (ViViT's "model 2"). Its spatial layers attend over the
    patches of each frame alone (``B·T`` sequences, no CLS token), then its temporal layers over
    the frames of each patch position alone (``B·P`` sequences); an attention-pooling head (a
    learned query over every token) reads the result out. Attention logits are soft-capped
    (``attn_logit_softcapping``), which the attention methods apply as the model does.
    """

    model_type = "videoprism_vision_model"
    family_name = "videoprism"
    auto_class = "VideoPrismForVideoClassification"
    #: VideoPrism's processor: the whole frame resized (no crop), pixels in [0, 1], not normalised
    default_processor = {"video_processor_type": "LlavaOnevisionVideoProcessor", "do_center_crop": False,
                         "do_normalize": False, "resample": 3}

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        with returning_dicts(self.net):
            logits = self.net(pixel_values_videos=x, return_dict=True).logits
        # the pooling head keeps its query's axis: Hugging Face returns (B, 1, classes)
        return logits[:, 0] if logits.ndim == 3 else logits

    def _cam_reshape(self, out) -> torch.Tensor:
        """The temporal layers' output ``(B·P, T, D)`` (a sequence per patch position) →
        ``(B, D, T, H', W')``."""
        hidden = out[0] if isinstance(out, (tuple, list)) else out
        g = self.token_grid
        b = hidden.shape[0] // (g.rows * g.cols)
        return hidden.reshape(b, g.rows, g.cols, g.frames, -1).permute(0, 4, 3, 1, 2).contiguous()

    @staticmethod
    def build_grid(cfg) -> TokenGrid:
        (h, w), (_, ph, pw) = _pair(cfg.image_size), cfg.tubelet_size
        return TokenGrid(cfg.num_frames, h // ph, w // pw, tubelet=1, patch=(ph, pw), prefix_tokens=0,
                         order="thw", readout="mean")

    @staticmethod
    def build_cam_layer(cfg) -> str:
        # the encoder's last layer norm: every token reaches the pooling head from there
        return "vision_model.layernorm2"

    @staticmethod
    def build_attention(net) -> AttentionSites:
        vm = net.vision_model
        layers = [{kind: AttentionCall(layer.attention, layer.attention.q_proj, layer.attention.k_proj,
                                       layer.attention.v_proj, net.config.num_attention_heads,
                                       layer.attention.scaling, finish=layer.attention.o_proj,
                                       softcap=layer.attention.attn_logit_softcapping)}
                  for kind, stack in (("spatial", vm.spatial_layers), ("temporal", vm.temporal_layers))
                  for layer in stack]
        return AttentionSites(layers)


HF_FAMILIES: dict[str, type[HFVideoModel]] = {
    cls.model_type: cls for cls in (TimesformerAdapter, VideoMAEAdapter, VivitAdapter, VJEPA2Adapter,
                                    VideoPrismAdapter)
}


# PIL's resampling filters (a preprocessor config's ``resample``) → torch's interpolation modes
_RESAMPLE = {0: "nearest-exact", 2: "bilinear", 3: "bicubic"}


def _hw(value) -> tuple[int, int] | None:
    """A ``{"height", "width"}`` dict or an int → ``(h, w)``; ``None`` for anything else."""
    if isinstance(value, dict) and "height" in value and "width" in value:
        return int(value["height"]), int(value["width"])
    if isinstance(value, int) and not isinstance(value, bool):
        return value, value
    return None


def _per_channel(value) -> tuple[float, float, float]:
    """A processor's ``image_mean`` / ``image_std``: three values, or one for every channel (which
    Hugging Face's processors accept, e.g. ``"image_mean": 0.5``; ``tuple(0.5)`` failed the load)."""
    if isinstance(value, (int, float)):
        return (float(value),) * 3
    return tuple(float(v) for v in value)


def preprocess_from_config(pp: dict | None, cfg) -> Preprocess:
    """Build :class:`Preprocess` from a ``preprocessor_config.json`` dict (or model defaults).

    What Hugging Face's image and video processors do with it: resize (``size`` as
    ``{"shortest_edge"}`` keeps the aspect ratio, ``{"height", "width"}`` does not), centre-crop to
    ``crop_size`` (offset floored), rescale (``rescale_factor``; ViViT then subtracts 1: ``offset``,
    on by default for its processors), normalise, with the ``resample`` filter.
    """
    image = _pair(getattr(cfg, "image_size", None) or cfg.crop_size)   # V-JEPA 2 calls it crop_size
    pp = pp or {}
    kind = str(pp.get("image_processor_type") or pp.get("video_processor_type") or "")
    size = pp.get("size") or {}
    if isinstance(size, dict) and "shortest_edge" in size:
        size = int(size["shortest_edge"])  # an int size means the shortest edge too (default_to_square=False)
    fixed = _hw(size) if isinstance(size, dict) else None
    shortest = size if isinstance(size, int) and not isinstance(size, bool) else None
    if not pp:
        shortest = image[0]
    out = image
    if pp.get("do_center_crop", True):
        out = _hw(pp.get("crop_size")) or image
    elif fixed is not None:  # no crop: the resized frame is the input
        out, fixed = fixed, None
    if out != image:
        log.warning("preprocessor crop %s differs from the model's image_size %s; using the model's", out, image)
        out = image
    if not pp.get("do_center_crop", True):
        if shortest is not None:
            log.warning("preprocessor has a shortest_edge resize and no centre crop: Hugging Face gives the "
                        "network a frame of the video's aspect ratio; videoxai stretches it to %s", out)
        shortest = None  # the whole frame resized to the model's input (square frames: as Hugging Face)
    if pp and not pp.get("do_resize", True):
        log.warning("preprocessor has do_resize=false (the network gets the centre %s of the raw frame); "
                    "videoxai resizes frames as size=%s says", out, pp.get("size"))
    if shortest is not None:
        fixed = None
        if shortest < min(out):  # Hugging Face would pad the crop with zeros
            shortest = min(out)
    mean = _per_channel(pp.get("image_mean", IMAGENET_MEAN)) if pp.get("do_normalize", True) else (0.0, 0.0, 0.0)
    std = _per_channel(pp.get("image_std", IMAGENET_STD)) if pp.get("do_normalize", True) else (1.0, 1.0, 1.0)
    # the processor sees bytes 0..255 = 255·p; it computes (255·p·factor − offset − mean) / std, which
    # is (p − (offset + mean)/k) / (std/k) with k = 255·factor: folded into mean/std so that the
    # adapter keeps taking pixels in [0, 1]
    rescale = pp.get("do_rescale", True)
    k = 255 * float(pp.get("rescale_factor", 1 / 255)) if rescale else 255.0
    offset = 1.0 if rescale and pp.get("offset", kind.startswith("Vivit")) else 0.0
    if offset or k != 1.0:  # (1/255 stored in JSON reads back as exactly 1 here: the usual case untouched)
        mean = tuple((offset + m) / k for m in mean)
        std = tuple(s / k for s in std)
    resample = pp.get("resample", 2)
    interpolation = _RESAMPLE.get(resample)
    if interpolation is None:
        log.warning("preprocessor resample=%r (a PIL filter torch has no mode for) is read as bilinear", resample)
        interpolation = "bilinear"
    # no config: no processor to follow, videoxai's own exact centre
    return Preprocess(size=out, shortest_edge=shortest, mean=mean, std=std, resize=fixed,
                      interpolation=interpolation, crop_offset="floor" if pp else "centre")


def load_hf(spec: str, *, device: str | torch.device = "cpu", name: str | None = None,
            attn_implementation: str | None = None) -> HFVideoModel:
    """Load a Hugging Face video classifier from a hub id or a local directory.

    The model type is read from its config; preprocessing from its preprocessor config when
    there is one (otherwise the model's own ``image_size`` with ImageNet statistics). Weights
    without a classifier (a backbone, a pre-training checkpoint) are refused: Hugging Face would
    draw one at random.
    """
    import transformers
    from transformers import AutoConfig

    # a hub id is "name" or "org/name"; anything else is a path: if it is missing, say so, not the hub's id rules
    looks_local = spec.startswith(("/", ".", "~")) or spec.count("/") > 1 or "\\" in spec
    if looks_local and not Path(spec).expanduser().is_dir():
        raise UnknownModelError(f"no such model directory: {spec!r} (a Hugging Face model is a hub id such "
                                "as 'facebook/timesformer-base-finetuned-k400' or a save_pretrained directory)")
    if looks_local:
        spec = str(Path(spec).expanduser())
    try:
        cfg = AutoConfig.from_pretrained(spec)
    except (OSError, ValueError) as e:
        raise UnknownModelError(f"cannot load a Hugging Face config from {spec!r}: {e}") from e
    family = HF_FAMILIES.get(cfg.model_type)
    if cfg.model_type == "videoprism":   # VideoPrism's video-text checkpoints: no classes to explain
        raise UnknownModelError(f"{spec!r} is a VideoPrism video-text model (VideoPrismClipModel), not a video "
                                "classifier; videoxai explains VideoPrismForVideoClassification checkpoints")
    if family is None:
        raise UnknownModelError(f"{spec!r} is a {cfg.model_type!r} model; supported Hugging Face video "
                                f"families: {', '.join(sorted(c.family_name or c.model_type for c in HF_FAMILIES.values()))}")
    kwargs = {"attn_implementation": attn_implementation} if attn_implementation else {}
    # transformers prints a "Loading weights" bar on every load: noise for a local directory,
    # but a hub download keeps its bars (the switch also silences huggingface_hub's)
    bar = transformers.utils.logging.is_progress_bar_enabled()
    if Path(spec).is_dir():
        transformers.utils.logging.disable_progress_bar()
    from safetensors import SafetensorError

    try:
        net, loaded = getattr(transformers, family.auto_class).from_pretrained(spec, output_loading_info=True,
                                                                               **kwargs)
    except (OSError, ValueError, RuntimeError, SafetensorError, ImportError) as e:
        # missing, truncated or mismatched weights are the user's files: one line naming them; an
        # attention implementation that the model or this install lacks (TimeSformer has no sdpa,
        # flash_attention_2 needs its package: an ImportError with a traceback) names the option
        what = (f"{spec!r} with attn_implementation={attn_implementation!r}" if attn_implementation
                else f"the weights of {spec!r}")
        raise UnknownModelError(f"cannot load {what}: {type(e).__name__}: {e}") from e
    finally:
        if bar:
            transformers.utils.logging.enable_progress_bar()
    _refuse_an_untrained_head(spec, cfg, loaded.get("missing_keys") or ())
    try:
        pp = _read_preprocessor(spec)
    except ValueError as e:  # a preprocessor_config.json that is not JSON
        raise UnknownModelError(f"cannot read the preprocessor config of {spec!r}: {e}") from e
    model = family(net.eval(), preprocess_from_config(pp or family.default_processor, cfg), name=name or spec)
    return model.to(device).eval()


def _refuse_an_untrained_head(spec: str, cfg, missing) -> None:
    """Refuse a checkpoint whose weights hold no classifier (a backbone such as ``VideoMAEModel``,
    a pre-training checkpoint such as ``MCG-NJU/videomae-base``): Hugging Face loads it into the
    classification class with a classifier drawn at random (a load report, no error), so its
    predictions and every class's map were those of a random layer, and a different one in each
    process that loaded it (an evaluation's workers)."""
    head = sorted(k for k in missing if k.split(".")[0] == "classifier")
    if head:
        kind = ", ".join(cfg.architectures or ()) or "a backbone"
        raise UnknownModelError(f"{spec!r} is no video classifier: its weights hold no {', '.join(head)} "
                                f"(saved from {kind}, a backbone or pre-training model), so its classifier would "
                                "be drawn at random; fine-tune it for video classification and load that model")


# an image processor's file, then a video processor's (transformers >= 4.52 saves those alone)
_PREPROCESSOR_FILES = ("preprocessor_config.json", "video_preprocessor_config.json")


def _read_preprocessor(spec: str) -> dict | None:
    if Path(spec).is_dir():
        for name in _PREPROCESSOR_FILES:
            if (Path(spec) / name).is_file():
                return json.loads((Path(spec) / name).read_text())
        return None
    try:
        from huggingface_hub import hf_hub_download
        from huggingface_hub.errors import EntryNotFoundError

        for name in _PREPROCESSOR_FILES:
            try:
                return json.loads(Path(hf_hub_download(spec, name)).read_text())
            except EntryNotFoundError:
                if name == _PREPROCESSOR_FILES[-1]:
                    raise
    except Exception as e:  # no preprocessor on the hub, or offline: fall back to model defaults
        log.warning("no preprocessor config for %s (%s); using the model's image size and ImageNet "
                    "statistics", spec, e)
        return None


def from_hf_module(net: nn.Module, preprocess: Preprocess | None = None, name: str | None = None) -> HFVideoModel:
    """Adapt an already-built Hugging Face video classifier (e.g. from a config, in tests)."""
    family = HF_FAMILIES.get(net.config.model_type)
    if family is None:
        raise UnknownModelError(f"unsupported Hugging Face model type {net.config.model_type!r}")
    net.eval()  # (not its return value: see vx.wrap)
    return family(net, preprocess or preprocess_from_config(family.default_processor, net.config), name=name)
