"""Training an ST-ABN from a dataset spec: :func:`train`, and the warm start it begins with
(:func:`warm_started`).

:func:`train` with a warm start first trains the plain backbone the same way in ``warm-start/``
(its own ``checkpoint.pt``, ``history.json`` and ``model/``): a run stopped during the warm start
continues it from its last epoch; once the ST-ABN has a checkpoint (mid-run or finished) the warm
start is not run again (the checkpoint holds every weight), and the warm start's checkpoint is
removed when the run finishes (its history and model stay).

The loop itself is :func:`~.loop.fit`, the settings and recipes :mod:`~videoxai.stabn.recipe`,
what a run writes and how it resumes :mod:`.run_directory`; the public names of those modules are
importable from here too (``from videoxai.stabn.train import TrainConfig, fit, train``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..errors import InputError
from ..models.preprocess import Preprocess
from .data import ClipSet, check_dataset, decoded_shortest_edge, open_dataset, recorded_spec
from .designs import DEFAULT_DESIGN, design as named_design
from .loop import TrainResult, fit
from .model import STABNConfig, STABNVideoModel, build
from .recipe import FreezeSchedule, TemporalTargets, TrainConfig
from .run_directory import (CHECKPOINT, MODEL_DIR, WARM_START_DIR, EpochRecord, check_no_model_without_checkpoint,
                            check_out_dir, output_lock)

log = logging.getLogger("videoxai.stabn")


def warm_started(model_config: STABNConfig, train_set: ClipSet, config: TrainConfig, epochs: int,
                 device: str | torch.device = "cpu",
                 on_epoch: Callable[[EpochRecord], None] | None = None, *, out: str | Path | None = None,
                 resume: bool = True) -> STABNVideoModel:
    """A new ST-ABN (initialisation seeded by ``config.seed``) whose shared layers come from its
    plain backbone trained ``epochs`` epochs on ``train_set`` with ``config`` (same seed).

    The stem, ``layer1`` … ``layer4`` and the head are the backbone's; the attention branch and
    the fusion keep their fresh initialisation. ``epochs=0``: just the fresh ST-ABN. The
    backbone's epochs are reported to ``on_epoch`` as ``"warm-start"`` epochs. ``out``: the
    backbone's output directory (checkpoints, history, ``model/``; ``resume``: continue from its
    checkpoint, as :func:`fit`), ``None``: nothing written.
    """
    if epochs < 0:
        raise InputError(f"warm_start must be ≥ 0 epochs, got {epochs}")
    backbone = None
    if epochs:
        torch.manual_seed(config.seed)
        backbone = build(replace(model_config, attention_branch=False)).to(device)
        fit(backbone, train_set, TrainConfig(**{**config.to_dict(), "epochs": epochs}), out=out, resume=resume,
            on_epoch=on_epoch, stage="warm-start", training_meta={"warm_start_of": "ST-ABN"} if out else None)
    torch.manual_seed(config.seed)
    model = build(model_config).to(device)
    if backbone is not None:  # every layer of the backbone exists in the ST-ABN with the same shape
        model.net.load_state_dict(backbone.net.state_dict(), strict=False)
    return model


def train(data: str = "synthetic", out: str | Path | None = None, *, val_data: str | None = None,
          design: str | None = DEFAULT_DESIGN, backbone: str | None = None, num_frames: int = 8,
          input_size: int | tuple[int, int] = 64, config: TrainConfig | None = None, resume: bool = True,
          device: str | torch.device = "cpu", on_epoch: Callable[[EpochRecord], None] | None = None,
          command: str | None = None, warm_start: int | None = None, **model_options) -> TrainResult:
    """Train an ST-ABN from scratch on a dataset spec (see :mod:`videoxai.stabn.data`).

    ``design`` names a :data:`~.designs.DESIGNS` entry that sets the backbone, the warm start and
    the branch's :class:`STABNConfig` fields; ``backbone``, ``warm_start`` and ``model_options``
    given explicitly win over it (``design=None``: ``tiny-hires``, 3 epochs, the config's own
    defaults, i.e. the paper's branch). ``model_options`` are further :class:`STABNConfig` fields
    (``attention_branch=False``: the plain backbone, trained by the same recipe; the branch's
    options are then unused).

    The class count and names come from the data. Validation after every epoch uses
    ``val_data``, or for the synthetic benchmark its ``"val"`` split (a stream disjoint from
    training); other data without ``val_data``, and ``val_data="none"``, is not validated. ``command`` is stored with the
    model.

    ``warm_start`` > 0 (3 by default; 0: from scratch) first trains the **plain backbone** (same
    seed, recipe and clips) for that many epochs and starts the ST-ABN's shared layers (stem …
    ``layer4``, head) from it; the attention branch and the fusion start fresh (with ``out``, the
    backbone is checkpointed in ``out/warm-start/``; resuming from the ST-ABN's own checkpoint
    does not run the warm start again: see the module docstring). Why: trained
    jointly from scratch, two seeds of three stall with one class pair unsolved, whatever the
    pooling or learning rate tried, while the plain backbone did not stall on any seed
    (docs/experiments/stabn.md). The default design's backbone ``tiny-hires`` keeps small shapes
    at 64 px and its branch finds the evidence frames (docs/experiments/stabn.md, "Held-out
    task"); the same defaults as ``videoxai stabn train``.
    """
    config = config or TrainConfig()
    chosen = named_design(design) if design is not None else None
    backbone = backbone or (chosen.backbone if chosen else "tiny-hires")
    warm_start = warm_start if warm_start is not None else (chosen.warm_start if chosen else 3)
    model_options = {**(chosen.options if chosen else {}), **model_options}
    size = (input_size, input_size) if isinstance(input_size, int) else tuple(input_size)
    # before any clip is decoded: a size of 0 otherwise fails deep inside the resize, and 0 frames
    # as an error about the first video file
    if num_frames < 1 or len(size) != 2 or min(size) < 1:
        raise InputError(f"frames and size must be ≥ 1, got {num_frames} frames of {size}")
    if out is not None:
        check_out_dir(out)
        if resume:  # before the clips are decoded and the warm start trains (fit checks it again)
            check_no_model_without_checkpoint(Path(out))
    # the model's options too (a backbone too big for the size, a misspelt pool): they were
    # checked only once every clip was decoded; the class count is the data's, 2 stands in for it
    try:
        STABNConfig(num_classes=2, num_frames=num_frames, input_size=size, backbone=backbone, **model_options)
    except TypeError as e:  # an option STABNConfig does not have
        raise InputError(f"unknown ST-ABN option: {e}") from None
    if not _synthetic(data) and "shortest_edge" not in model_options:
        # the model is saved with the geometry its decoded clips were made with, so that
        # vx.explain on a video of them sees what training saw (it squeezed whole frames instead)
        model_options["shortest_edge"] = decoded_shortest_edge(size)
    view = Preprocess(size=size, shortest_edge=model_options.get("shortest_edge"))
    val_spec = val_data if val_data is not None else (data if data.startswith("synthetic") else None)
    if val_spec is not None and val_spec.strip().lower() == "none":  # asked for no validation
        val_spec = None
    if val_spec is not None:
        # opened (no clip decoded) before the training clips are decoded: a misspelt --val-data,
        # or a validation CSV naming a class the training data lacks, was refused only after
        # minutes of decoding
        check_dataset(val_spec, num_frames=num_frames, labels=check_dataset(data, num_frames=num_frames) or None,
                      labels_from=f"the training data {recorded_spec(data)}")
    train_set = open_dataset(data, "train", num_frames=num_frames, frame_size=size, view=view)
    if train_set.num_classes < 2:
        # a labels.csv naming one class, or indices all 0: it was "num_classes must be ≥ 2, got 1",
        # naming an option nobody had given
        names = ", ".join(map(repr, train_set.label_names))
        raise InputError(f"the training data {data} has {train_set.num_classes} class ({names}); "
                         "an ST-ABN is trained on clips of at least 2 classes")
    empty = [name for name, n in zip(train_set.label_names, np.bincount(train_set.labels, minlength=train_set.num_classes))
             if n == 0]
    if empty and not _synthetic(data):  # (a few synthetic clips may miss a class: that is chance)
        # labels 1…K in a labels.csv are class indices: class 0 became a class without a clip,
        # which the model learnt never to predict, without a word
        warnings.warn(f"the training data {data} has no clip of {len(empty)} of its {train_set.num_classes} classes "
                      f"({', '.join(map(repr, empty[:5]))}{', …' if len(empty) > 5 else ''}): the model learns never to "
                      "predict them (numeric labels are class indices counted from 0)", stacklevel=2)
    val_set = (open_dataset(val_spec, "val", num_frames=num_frames, frame_size=size, labels=train_set.label_names,
                            labels_from=f"the training data {recorded_spec(data)}", view=view)
               if val_spec is not None else None)
    model_config = STABNConfig(num_classes=train_set.num_classes, num_frames=num_frames, input_size=size,
                               backbone=backbone, labels=train_set.label_names, **model_options)
    warm = warm_start if model_config.attention_branch else 0
    if warm < 0:
        raise InputError(f"warm_start must be ≥ 0 epochs, got {warm}")
    out = Path(out) if out is not None else None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    # held across the warm start and the ST-ABN's own epochs (fit takes it up again)
    with output_lock(out) if out is not None else contextlib.nullcontext():
        if out is not None and not resume:
            # starting over: stopped during the warm start, the next (resuming) run would otherwise
            # take up the old run's checkpoint and skip this run's warm start
            (out / CHECKPOINT).unlink(missing_ok=True)
        if out is not None and resume and (out / CHECKPOINT).is_file():
            # the checkpoint holds every weight: the warm start it began from is not run again (fit
            # checks the checkpoint's model and training settings; the warm start's, here)
            _check_warm_start(out, warm)
            log.info("%s exists: resuming without the %d warm-start epochs", out / CHECKPOINT, warm)
            torch.manual_seed(config.seed)
            model = build(model_config).to(device)
        else:
            model = warm_started(model_config, train_set, config, warm, device, on_epoch,
                                 out=out / WARM_START_DIR if out is not None and warm else None, resume=resume)
        log.info("ST-ABN %s: %.2f M parameters, %d training clips, %s validation clips", backbone,
                 sum(p.numel() for p in model.parameters()) / 1e6, len(train_set),
                 len(val_set) if val_set is not None else "no")
        meta = {"data": recorded_spec(data), "val_data": None if val_spec is None else recorded_spec(val_spec),
                "train_clips": len(train_set),
                "val_clips": len(val_set) if val_set is not None else 0, "command": command,
                "warm_start_epochs": warm, "design": design}
        result = fit(model, train_set, config, val=val_set, out=out, resume=resume, training_meta=meta,
                     on_epoch=on_epoch)
        if out is not None:  # finished: the ST-ABN's checkpoint makes the warm start's redundant
            (out / WARM_START_DIR / CHECKPOINT).unlink(missing_ok=True)
        return result


def _synthetic(spec: str) -> bool:
    """Whether ``spec`` names the synthetic benchmark (rendered at the model's size: no view)."""
    spec = str(spec).strip()
    return spec == "synthetic" or spec.startswith("synthetic:")


def _check_warm_start(out: Path, warm: int) -> None:
    """Refuse to resume a run that started from another number of warm-start epochs (the
    checkpoint's weights come from that warm start, and this run would not repeat it)."""
    from .loader import META

    try:
        recorded = json.loads((out / MODEL_DIR / META).read_text()).get("training", {}).get("warm_start_epochs")
    except (OSError, ValueError, AttributeError):
        return  # no readable record (removed by hand): the checkpoint's own checks stand
    if isinstance(recorded, int) and recorded != warm:
        raise InputError(f"{out / CHECKPOINT} continues a run that started from {recorded} warm-start epochs, "
                         f"not {warm}; use another output directory or --no-resume")


__all__ = ["TrainConfig", "FreezeSchedule", "TemporalTargets", "EpochRecord", "TrainResult", "fit", "train",
           "warm_started"]
