"""Model adapters and the one loading function, :func:`load_model`.

A model spec is a string:

* ``"demo"`` — the tiny TimeSformer trained on the synthetic benchmark, shipped with the package
  (other bundled models: see :func:`available`);
* ``"hf:<hub id or directory>"`` — a Hugging Face TimeSformer / VideoMAE / ViViT / V-JEPA 2 / VideoPrism classifier;
* ``"torchvision:<name>"`` — a torchvision video model (``r3d_18``, ``r2plus1d_18``, …);
  a loader's options may follow, as in dataset specs: ``"torchvision:r3d_18,weights=download"``;
* a local directory — a Hugging Face ``save_pretrained`` directory or a videoxai model directory.

Loaders are registered by prefix (:func:`register_loader`), so a new family is one function.
"""

from __future__ import annotations

import inspect
import json
import math
import numbers
from pathlib import Path
from typing import Annotated, Callable, Literal, Mapping, Sequence

import torch
from torch import nn

from ..errors import InputError, UnknownModelError
from ..options import (Opt, declared_options, parse_assignments, parse_options, parse_value,
                       split_top_level)
from ..registry import Registry
from .base import Activation, Layout, VideoModel
from .preprocess import IMAGENET_MEAN, IMAGENET_STD, CropBox, Preprocess
from .token_grid import TokenGrid

ASSETS = Path(__file__).resolve().parent.parent / "assets"

Loader = Callable[..., VideoModel]  # fn(rest: str, device: torch.device, **options)
LOADERS: Registry[Loader] = Registry("model loader", UnknownModelError, package=__name__)
_BUNDLED: dict[str, str] = {}  # short name -> "prefix:rest" spec, with a one-line description
_BUNDLED_HELP: dict[str, str] = {}


def register_loader(prefix: str) -> Callable[[Loader], Loader]:
    """Register ``fn(rest, device, **options) -> VideoModel`` for specs ``"<prefix>:<rest>"``."""
    return LOADERS.register(name=prefix)


def register_bundled(name: str, spec: str, help: str) -> None:
    """Give a short name (``"demo"``) to a spec shipped with the package."""
    _BUNDLED[name] = spec
    _BUNDLED_HELP[name] = help


def available() -> dict[str, str]:
    """Bundled model names and loader prefixes, with a line of help each."""
    _ensure_loaders()
    out = {name: _BUNDLED_HELP[name] for name in _BUNDLED}
    out.update({f"{p}:…": (fn.__doc__ or "").strip().splitlines()[0] for p, fn in LOADERS.items().items()})
    return out


def load_model(spec: str | Path, device: str | torch.device = "cpu", **options) -> VideoModel:
    """Load a video classifier as a :class:`VideoModel` in eval mode.

    Args:
        spec: see the module docstring.
        device: where to put it.
        **options: passed to the loader (e.g. ``weights="r3d_18.pth"`` for torchvision models).
    """
    _ensure_loaders()
    device = torch.device(device)
    spec = str(spec)
    if not spec.strip():
        # Path("") is ".": `--model "$MODEL"` with MODEL unset was "'.' holds neither config.json …"
        raise UnknownModelError(f"the model spec is empty (a variable set to nothing?); give one of "
                                f"{', '.join(sorted(_BUNDLED))}, {', '.join(f'{p}:…' for p in LOADERS.names())} "
                                "or a directory")
    if spec in _BUNDLED:
        model = load_model(_BUNDLED[spec], device, **options)
        model.name = spec  # reports and results say "demo", not the install path
        return model
    prefix, sep, rest = spec.partition(":")
    if sep and prefix in LOADERS:
        loader = LOADERS.get(prefix)
        rest, given = _spec_options(spec, rest, loader)
        return loader(rest, device, **{**given, **options})
    path = Path(spec)
    if path.is_dir():
        return _load_dir(path, device, **options)
    if path.exists():
        raise UnknownModelError(f"{spec} is a file; give the directory that holds the model "
                                "(config.json or videoxai.json)")
    known = ", ".join(sorted(_BUNDLED)) + ", " + ", ".join(f"{p}:…" for p in LOADERS.names())
    raise UnknownModelError(f"unknown model {spec!r}: not a directory and not one of {known}")


def _spec_options(spec: str, rest: str, loader: Loader) -> tuple[str, dict]:
    """``"r3d_18,weights=download"`` → ``("r3d_18", {"weights": "download"})``, typed by the loader.

    Loader options written into the spec (``torchvision:r3d_18,weights=download``), as dataset
    specs take theirs: the command line and an evaluation's workers, which know a model only by its
    spec, can ask for them too. A ``rest`` that is an existing path is never split (a directory
    may have a comma in its name).
    """
    if "," not in rest or Path(rest).expanduser().exists():
        return rest, {}
    head, *pairs = split_top_level(rest, ",")
    owner = f"model {spec!r}"
    given = parse_assignments(pairs, where=owner)
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in inspect.signature(loader).parameters.values())
    declared = {k: o for k, o in declared_options(loader, skip=2).items() if k != "name"}
    return head.strip(), parse_options(declared, given, owner, defaults=False, extra=takes_any)


def _load_dir(path: Path, device: torch.device, **options) -> VideoModel:
    if (path / "videoxai.json").is_file():
        try:
            meta = json.loads((path / "videoxai.json").read_text())
        except ValueError as e:  # the user's file: one line naming it, not a JSONDecodeError
            raise UnknownModelError(f"{path}/videoxai.json is not valid JSON: {e}") from e
        if not isinstance(meta, dict):
            raise UnknownModelError(f"{path}/videoxai.json is not a JSON object")
        kind = meta.get("loader")
        if kind not in LOADERS:
            raise UnknownModelError(f"{path}/videoxai.json names unknown loader {kind!r}")
        return LOADERS.get(kind)(str(path), device, **options)
    if (path / "config.json").is_file():
        return LOADERS.get("hf")(str(path), device, **options)
    # a run directory (`stabn train --out runs/x` saves its model in runs/x/model) or any folder
    # one level above a model: name the model folders it holds
    inside = sorted(str(d) for d in path.iterdir() if d.is_dir()
                    and ((d / "videoxai.json").is_file() or (d / "config.json").is_file())) if path.is_dir() else []
    hint = f"; it holds the model folder{'s' * (len(inside) > 1)} {', '.join(inside[:3])}" if inside else ""
    raise UnknownModelError(f"{path} holds neither config.json (Hugging Face) nor videoxai.json{hint}")


def wrap(module: nn.Module, *, num_frames: int, input_size: int | tuple[int, int],
         layout: Layout = "BCTHW", mean: Sequence[float] = IMAGENET_MEAN,
         std: Sequence[float] = IMAGENET_STD, labels: Sequence[str] | Mapping[int, str] | None = None,
         num_classes: int | None = None, shortest_edge: int | None = None,
         fixed_num_frames: bool = False, cam_layer: str | nn.Module | None = None,
         cam_reshape: Callable | Literal["per_frame"] | None = None, token_grid: TokenGrid | None = None,
         output: int | str | Callable | None = None, name: str = "custom",
         activation: Activation = "softmax") -> VideoModel:
    """Adapt any PyTorch video classifier.

    ``module`` is put in eval mode, as :func:`load_model`'s models are; a model set back to
    training mode afterwards is explained in eval mode, each module's flag put back after.

    Recipes for the usual kinds of network:

    * **A per-frame 2D CNN** (TSN, TSM, a CNN + LSTM/GRU: frames folded into the batch,
      ``x.flatten(0, 1)``, inside): ``layout="BTCHW"``. Its layers' grids are ``(B·T, C, h, w)``;
      for CAM methods give ``cam_reshape="per_frame"``, which lays them out as ``(B, C, T, h, w)``
      for clips of any length.
    * **Several inputs** (SlowFast's ``[slow, fast]`` list, a clip and a mask): wrap a small
      ``nn.Module`` whose forward takes the one clip and builds them, e.g.
      ``return self.net([x[:, :, ::4], x])``; its layers keep their names under that module's
      attribute (``layer="net.slow.res5"``).
    * **Normalisation inside the network** (a buffer-only ``Normalize`` layer): ``mean=(0, 0, 0),
      std=(1, 1, 1)``, so that pixels in [0, 1] reach it unchanged.
    * **A softmax as its last layer**: ``activation="none"``.
    * **TorchScript** (``torch.jit.script`` / ``trace``): gradient and perturbation methods work;
      forward hooks do not run inside it, so CAM methods are refused: wrap the Python module.
      ``torch.compile`` (layers under ``_orig_mod.``) and ``nn.DataParallel`` (``module.``)
      work as they are.
    * **A fixed clip length** (position embeddings): ``fixed_num_frames=True``; a network that
      fails on another length without it is told so.
    * **One clip at a time** (a reshape to batch 1): give perturbation methods and metrics
      ``batch_size=1``; a network that fails on a batch but runs each clip is told so.
    * **Quantized** (``torch.ao.quantization.quantize_dynamic``): perturbation methods work;
      methods that need a gradient are refused, naming the quantized layers (autograd drops it).
    * **Batch norm without running statistics** (``track_running_stats=False``, which normalises
      with the batch's statistics in eval mode too): run one clip per forward pass, so that each
      clip is scored on its own whatever ``batch_size`` (slower; :meth:`VideoModel.batch_statistics_layers`).

    Args:
        module: maps a normalised clip laid out as ``layout`` to logits ``(B, C)``, an object
            with ``.logits``, or a tuple / dict holding them (see ``output``).
        num_frames: frames per clip it expects.
        fixed_num_frames: refuse clips of another length than ``num_frames`` (default: any
            length is given to the network as it is).
        input_size: ``h`` or ``(h, w)`` of its input.
        layout: ``"BCTHW"`` (3D CNNs) or ``"BTCHW"`` (Hugging Face style). When the network
            fails on its first input and runs on the other layout, the error says so.
        mean, std: its input normalisation, for pixels in [0, 1] (normalised inside; statistics
            on a 0–255 scale are refused with their values / 255); one number is every channel's.
        labels / num_classes: class names (a list, or a config's ``id2label`` dict of index → name),
            or their count (default: the width of the last
            ``nn.Linear``, else of the last 1×1 convolution). A network with a single output is
            read as a binary classifier's logit: its probability is the sigmoid (one label names
            the positive class).
        activation: how its outputs become class probabilities (what perturbation methods and
            metrics read): ``"softmax"``, ``"sigmoid"`` for a multi-label classifier (each
            class on its own, as trained with ``BCEWithLogitsLoss``), or ``"none"`` when its
            last layer already is a softmax (a second one would squash every score towards
            1 / C).
        shortest_edge: resize the shorter side to this and centre-crop; ``None`` resizes the whole
            frame to ``input_size``.
        cam_layer: the layer Grad-CAM should use by default: its dotted name, or the module.
        cam_reshape: turns a layer's output into ``(B, C, T', H', W')`` for CAM methods, when it
            is not one already (tokens, channels-last), or ``"per_frame"`` (see above).
        output: where the logits are when ``module`` returns a tuple, list, dict or object: an
            index, a key or attribute name, or a function of the output. Default: the one part
            shaped ``(B, C)`` (an error if there are several).
    """
    if not isinstance(module, nn.Module):
        raise InputError(f"vx.wrap needs a torch.nn.Module, got {type(module).__name__}")
    # checked here, where they enter: a zero size or frame count otherwise fails deep inside
    # interpolate or the network, at the first explanation
    num_frames = parse_value(num_frames, _Count, "vx.wrap", "num_frames")
    input_size = parse_value(input_size, _Size, "vx.wrap", "input_size")
    shortest_edge = parse_value(shortest_edge, _Count | None, "vx.wrap", "shortest_edge")
    num_classes = parse_value(num_classes, _Count | None, "vx.wrap", "num_classes")
    if labels is not None:
        labels = _class_names(labels, "vx.wrap")
    size = (input_size, input_size) if isinstance(input_size, int) else tuple(input_size)
    if labels is None and num_classes is None:
        num_classes = _infer_num_classes(module)
    if labels is not None and num_classes is not None and len(labels) != num_classes:
        raise InputError(f"{len(labels)} labels given but num_classes={num_classes}")
    mean, std = _per_channel("mean", mean), _per_channel("std", std)
    if len(mean) != 3 or len(std) != 3:
        raise InputError(f"mean and std need one value per RGB channel, got {list(mean)} and {list(std)}")
    if not all(math.isfinite(v) for v in mean):
        # a NaN reaches every pixel: every score was NaN, under maps that still looked like maps
        raise InputError(f"vx.wrap: mean must be finite for every channel, got {list(mean)}")
    if not all(math.isfinite(v) and v > 0 for v in std):
        # the clip is divided by std: a 0 turns every pixel into inf and the first map into NaN
        raise InputError(f"vx.wrap: std must be > 0 for every channel, got {list(std)}")
    if any(abs(v) > 1 for v in mean):
        # pixels reach the network in [0, 1]: 0–255 statistics (123.675, 58.395: OpenCV, mmaction)
        # would turn every clip into about −2 everywhere, and every map into noise, without a word
        scaled = [round(v / 255, 4) for v in (*mean, *std)]
        raise InputError(f"vx.wrap: mean {list(mean)} is on a 0–255 scale, but pixels are in [0, 1]: give "
                         f"mean={tuple(scaled[:3])}, std={tuple(scaled[3:])} (the same statistics / 255)")
    if isinstance(cam_layer, nn.Module):  # the layer itself, as a method's layer= takes it
        named = next((n for n, m in module.named_modules() if m is cam_layer), None)
        if not named:
            raise InputError(f"cam_layer (a {type(cam_layer).__name__}) is not a layer of {type(module).__name__}; "
                             "give one of its modules or its dotted name")
        cam_layer = named
    if cam_layer is not None and not isinstance(cam_layer, str):
        raise InputError(f"cam_layer must be a layer's dotted name or the layer, got {type(cam_layer).__name__}")
    if cam_layer is not None and cam_layer not in dict(module.named_modules()):
        # a wrapper's prefix (nn.DataParallel's "module.", torch.compile's "_orig_mod.") is part of
        # every name: say the name it has there
        inside = [n for n, _ in module.named_modules() if n.endswith("." + cam_layer)]
        hint = f"; did you mean {inside[0]!r}?" if inside else ""
        raise InputError(f"cam_layer {cam_layer!r} is not a module of {type(module).__name__}{hint}")
    pre = Preprocess(size=size, shortest_edge=shortest_edge, mean=tuple(float(v) for v in mean),
                     std=tuple(float(v) for v in std))
    # the module itself, not what eval() returns: a train() override that freezes batch norm and
    # forgets `return self` made eval() return None, and the model a network of None
    module.eval()
    return VideoModel(module, num_frames=num_frames, preprocess=pre, labels=labels,
                      num_classes=num_classes, layout=layout, fixed_num_frames=fixed_num_frames,
                      token_grid=token_grid, cam_layer=cam_layer, cam_reshape=cam_reshape,
                      family="custom", name=name, output=output, activation=activation)


#: a positive count (frames, classes, pixels) and an input size, ``h`` or ``(h, w)``
_Count = Annotated[int, Opt(ge=1)]
_Size = Annotated[int | tuple[int, int], Opt(ge=1)]


def _per_channel(name: str, value) -> tuple:
    """``mean`` or ``std`` as given to :func:`wrap` → its values, one per channel (as given: the
    errors show them so); one number is every channel's (``std=0.5``, a TypeError before).
    Raises :class:`InputError` unless every value is a number."""
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return (value,) * 3
    try:
        values = tuple(value)
        for v in values:
            if isinstance(v, (str, bytes, bool)):
                raise TypeError
            float(v)
    except (TypeError, ValueError):
        raise InputError(f"vx.wrap: {name} must be numbers, one per RGB channel, got {value!r}") from None
    return values


def _class_names(labels, owner: str) -> list[str]:
    """``labels`` as given to :func:`wrap` (or a loader, ``owner`` in the errors) → one name per
    class, by output index.

    A config's ``id2label`` (``{0: "walk", …}``, keys possibly strings) gives its names: taken
    as a sequence it gave its keys, so that every explanation was labelled ``0``, ``1``, … and
    the names found no class. Names that are not strings (class ids) become their text; one
    string (its letters), an entry that is no name and a name given to two classes are refused.
    """
    if isinstance(labels, str):
        raise InputError(f"{owner}: labels is one string, {labels[:40]!r}; give one name per class, "
                         "e.g. labels=['walk', 'run']")
    if isinstance(labels, dict):
        try:
            index = {int(k): v for k, v in labels.items()}
        except (TypeError, ValueError):
            index = {}
        if sorted(index) != list(range(len(labels))):
            raise InputError(f"{owner}: labels given as a dict must map the class indices 0 to {len(labels) - 1} "
                             f"to names (a config's id2label), got keys {list(labels)[:5]}")
        labels = [index[i] for i in range(len(index))]
    try:
        labels = list(labels)
    except TypeError:
        raise InputError(f"{owner}: labels must be a list of class names, got {type(labels).__name__}") from None
    if not labels:
        raise InputError(f"{owner}: labels is empty; give one name per class")
    bad = [v for v in labels if isinstance(v, bool) or not isinstance(v, (str, numbers.Integral))]
    if bad:
        raise InputError(f"{owner}: class names must be strings, got {bad[0]!r} ({type(bad[0]).__name__}) "
                         f"for class {labels.index(bad[0])}")
    names = [str(v) for v in labels]
    seen: dict[str, int] = {}
    for i, name in enumerate(names):
        if name in seen:
            # target="walk" would pick the first of them and the report could not tell them apart
            raise InputError(f"{owner}: labels name {name!r} twice (classes {seen[name]} and {i}); "
                             "give each class its own name")
        seen[name] = i
    return names


def _infer_num_classes(module: nn.Module) -> int:
    """The width of the classifier: the last ``nn.Linear``, or, in a network without one, the last
    convolution with a kernel of ones (torchvision's S3D classifies with a 1×1×1 ``Conv3d``); a
    wrong guess is caught at the first forward pass, which names the outputs' real count."""
    # a scripted or traced layer is no nn.Linear / nn.Conv3d any more, and not every one keeps
    # out_features: its weight, (out, in, *kernel), says the same
    # (a quantized Linear, torch.ao.quantization.quantize_dynamic's, keeps out_features too)
    linear = [m for m in module.modules() if isinstance(m, nn.Linear) or _scripted(m, "Linear")
              or type(m).__name__ == "Linear" and type(m).__module__.startswith("torch.ao.nn.quantized")]
    if linear:
        last = linear[-1]
        return last.out_features if hasattr(last, "out_features") else last.weight.shape[0]
    pointwise = [m for m in module.modules()
                 if isinstance(m, nn.modules.conv._ConvNd) and all(k == 1 for k in m.kernel_size)
                 or _scripted(m, "Conv1d", "Conv2d", "Conv3d") and all(k == 1 for k in m.weight.shape[2:])]
    if pointwise:
        last = pointwise[-1]
        return last.out_channels if isinstance(last, nn.modules.conv._ConvNd) else last.weight.shape[0]
    raise InputError("cannot infer the number of classes (no Linear layer or 1×1 convolution "
                     "to read it from); pass labels= or num_classes=")


def _scripted(m: nn.Module, *kinds: str) -> bool:
    """Whether ``m`` is a TorchScript module (``torch.jit.script`` / ``trace``) made from an
    ``nn.<kind>`` of ``kinds`` (its ``original_name``): a scripted network's layers are not
    ``nn.Linear`` any more, and every one had to be wrapped with ``num_classes=``."""
    return isinstance(m, torch.jit.ScriptModule) and getattr(m, "original_name", None) in kinds


def _ensure_loaders() -> None:
    """Import every module of this package once: loader modules register themselves (and their
    bundled names)."""
    LOADERS.names()


__all__ = ["VideoModel", "Preprocess", "TokenGrid", "CropBox", "load_model", "wrap", "available",
           "register_loader", "register_bundled"]
