"""The ST-ABN training loop: :func:`fit` trains a model in place on a set of clips, epoch by epoch
(train, validate, record, checkpoint), after refusing clips that are not the model's
(:func:`check_data`).

Every epoch's shuffling and dropout are seeded from ``(seed, epoch)`` alone, so a run resumed from
its checkpoint (:mod:`.run_directory`) is the same run as one never stopped.
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..errors import InputError
from ..progress import track
from .data import ClipSet
from .evaluate import Evaluation, evaluate
from .losses import stabn_loss
from .model import STABNVideoModel
from .recipe import FreezeSchedule, TemporalTargets, TrainConfig
from .run_directory import (CHECKPOINT, HISTORY, MODEL_DIR, EpochRecord, _load_checkpoint, _run_facts,
                            _save_checkpoint, _save_history, _save_model, check_no_model_without_checkpoint,
                            check_out_dir, output_lock)

log = logging.getLogger("videoxai.stabn")


@dataclass
class TrainResult:
    model: STABNVideoModel
    history: list[EpochRecord]
    evaluation: Evaluation | None
    model_dir: Path | None


def fit(model: STABNVideoModel, train: ClipSet, config: TrainConfig, *, val: ClipSet | None = None,
        out: str | Path | None = None, resume: bool = True, targets: TemporalTargets | None = None,
        freeze: FreezeSchedule = FreezeSchedule(), training_meta: dict | None = None,
        on_epoch: Callable[[EpochRecord], None] | None = None, stage: str | None = None) -> TrainResult:
    """Train ``model`` in place on ``train`` (see :mod:`.run_directory` for what is written).

    Args:
        model: the ST-ABN adapter to train.
        train: training clips; ``val``: clips validated after every epoch.
        config: optimisation settings.
        out: output directory (``None``: nothing written, no resume).
        resume: continue from ``out/checkpoint.pt`` if it exists.
        targets: edited temporal attention per training clip (adds ``L_temp``).
        freeze: frozen module groups per epoch.
        training_meta: extra facts stored with the model (data spec, …).
        on_epoch: called with each epoch's record (progress reporting).
        stage: names the epochs in records and progress (``"warm-start"``; ``None``: plain epochs).
    """
    if not isinstance(model, STABNVideoModel):
        raise InputError(f"fit needs an ST-ABN model, got {type(model).__name__}")
    check_data(model, train, "training")
    if val is not None:
        check_data(model, val, "validation")
    if targets is not None and targets.values.shape != (len(train), model.num_frames):
        raise InputError(f"temporal targets must be ({len(train)}, {model.num_frames}), "
                         f"got {targets.values.shape}")
    if len(train) == 0:
        raise InputError("the training set is empty")
    if out is not None:
        check_out_dir(out)
    out = Path(out) if out is not None else None
    run = _run_facts(train, targets, freeze)
    params = list(model.net.parameters())
    opt = config.optimizer_for(params)
    history: list[EpochRecord] = []
    start = 0
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    # one run per output directory: two at once each resumed from, and overwrote, the other's
    # checkpoint, history and model/ (different settings were checked only at the start)
    with output_lock(out) if out is not None else contextlib.nullcontext():
        if out is not None:
            if resume and (out / CHECKPOINT).is_file():
                start, history = _load_checkpoint(out / CHECKPOINT, model, opt, config, run)
                began = history[-1].epochs if history else None
                if stage is not None and began not in (None, config.epochs):
                    # a warm start stopped after 2 of 3 epochs, resumed with --warm-start 1, went on
                    # from its 2 epochs, and the model recorded a warm start of 1
                    raise InputError(f"{out / CHECKPOINT} continues a {stage} of {began} epochs, not {config.epochs} "
                                     f"(--{stage} {began} continues it); use another output directory or --no-resume")
                log.info("resuming from %s at epoch %d", out / CHECKPOINT, start)
                # the checkpoint is the run: a history.json or model/ lost, or left behind by a
                # crash between the writes, is made whole even when no epoch is left to train
                _save_model(out, model, config, start, history, training_meta)
                _save_history(out / HISTORY, history)
            elif not resume:  # starting over: a run stopped before its first epoch must not resume the old one
                (out / CHECKPOINT).unlink(missing_ok=True)
            elif stage is None:  # (a warm start's model/ is its run's by-product, replaced as it goes)
                check_no_model_without_checkpoint(out)

        evaluation = None
        if history and history[-1].val is not None:
            evaluation = Evaluation(**history[-1].val)
        device = model.device
        # the global RNG (dropout) is seeded per epoch inside a fork, so the caller's stream is
        # untouched; what the freezing schedule switched off is switched back, also on an exception
        grad_was = [p.requires_grad for p in params]
        try:
            with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
                for epoch in range(start, config.epochs):
                    evaluation = _epoch(model, train, val, config, epoch, opt, params, targets, freeze, out,
                                        history, training_meta, on_epoch, stage, run) or evaluation
        finally:
            for p, flag in zip(params, grad_was):
                p.requires_grad_(flag)
            model.eval()
    return TrainResult(model=model, history=history, evaluation=evaluation,
                       model_dir=(out / MODEL_DIR) if out is not None else None)


def _epoch(model: STABNVideoModel, train: ClipSet, val: ClipSet | None, config: TrainConfig, epoch: int,
           opt: torch.optim.Optimizer, params: list[torch.nn.Parameter], targets: TemporalTargets | None,
           freeze: FreezeSchedule, out: Path | None, history: list[EpochRecord], training_meta: dict | None,
           on_epoch: Callable[[EpochRecord], None] | None, stage: str | None = None,
           run: dict[str, str] | None = None) -> Evaluation | None:
    """One epoch of :func:`fit`: train, validate, record, checkpoint; returns the validation."""
    t0 = time.perf_counter()
    device = model.device
    freeze.apply(model.net, epoch)
    # every epoch's randomness is a function of (seed, epoch) alone: a resumed run is the same run
    torch.manual_seed(config.seed * 100_003 + epoch)
    shuffle = torch.Generator().manual_seed(config.seed + 7919 * epoch)
    order = torch.randperm(len(train), generator=shuffle).numpy()
    sums = np.zeros(4)
    correct, seen = 0, 0
    batches = list(train.batches(config.batch_size, order))
    for step, idx in enumerate(track(batches, total=len(batches), description=f"{stage or 'ST-ABN'} epoch {epoch + 1}/{config.epochs}")):
        lr = config.lr_at(epoch, step, len(batches))
        for group in opt.param_groups:
            group["lr"] = lr
        x = train.pixels(idx).to(device)
        y = torch.from_numpy(train.labels[idx]).to(device)
        try:
            output = model.outputs(x)
        except ValueError as e:
            if "more than 1 value per channel" not in str(e):
                raise
            # one clip of 1 frame at a small size: a batch-norm layer sees one value per channel
            raise InputError(f"a training batch of {len(idx)} clip of {model.num_frames} frame(s) at "
                             f"{tuple(model.config.input_size)} pixels leaves a batch-norm layer one value per "
                             f"channel ({len(train)} clips, batch size {config.batch_size}): choose a batch size "
                             "that leaves no batch of one clip, or more frames or pixels") from None
        if targets is not None:
            terms = stabn_loss(output, y, torch.from_numpy(targets.values[idx]).to(device),
                               torch.from_numpy(targets.has_edit[idx]).to(device), targets.gamma_t,
                               label_smoothing=config.label_smoothing, temporal_kind=targets.loss)
        else:
            terms = stabn_loss(output, y, label_smoothing=config.label_smoothing)
        if not torch.isfinite(terms.total):
            raise InputError(f"training diverged: the loss became {terms.total.item()} at epoch "
                             f"{epoch + 1}; lower the learning rate (now {lr:g})")
        opt.zero_grad(set_to_none=True)
        terms.total.backward()
        if config.clip_grad is not None:
            torch.nn.utils.clip_grad_norm_(params, config.clip_grad)
        opt.step()
        sums += np.array([t.item() for t in terms]) * len(idx)
        correct += int((output.logits.argmax(1) == y).sum())
        seen += len(idx)
    # the loss is checked before each step, so the last one's divergence reached only the saved
    # model: `stabn train --lr inf` wrote a model of NaN weights and printed it as trained
    if not all(bool(torch.isfinite(p).all()) for p in params):
        raise InputError(f"training diverged: the weights became non-finite at epoch {epoch + 1}; "
                         f"lower the learning rate (now {lr:g})")
    evaluation = evaluate(model, val, config.eval_batch_size) if val is not None and len(val) else None
    loss, l_per, l_att, l_temp = sums / seen
    record = EpochRecord(epoch=epoch + 1, lr=config.lr_at(epoch, 0, len(batches)), loss=loss, loss_perception=l_per, loss_attention=l_att,
                         loss_temporal=l_temp, train_accuracy=correct / seen,
                         seconds=time.perf_counter() - t0, frozen=list(freeze.frozen_at(epoch)),
                         val=evaluation.to_dict() if evaluation is not None else None,
                         epochs=config.epochs, stage=stage)
    history.append(record)
    if out is not None:
        # the checkpoint first: it is the run (a resume rewrites model/ from it), so a run stopped
        # between the writes never leaves a model/ that no checkpoint continues
        _save_checkpoint(out / CHECKPOINT, model, opt, config, epoch + 1, history, run)
        _save_model(out, model, config, epoch + 1, history, training_meta)
        _save_history(out / HISTORY, history)
    log.info("%s", record)
    if on_epoch is not None:
        on_epoch(record)
    return evaluation


def check_data(model: STABNVideoModel, data: ClipSet, what: str) -> None:
    """Refuse ``data`` whose clips or classes are not the model's: frames per clip, class count,
    class names (where both name their classes: the generated ``class_<i>`` are no names) and
    labels in range. ``what`` names the set in the message (``"training"``, …)."""
    if data.num_frames != model.num_frames:
        raise InputError(f"the {what} clips have {data.num_frames} frames; the model takes {model.num_frames}")
    if data.num_classes != model.num_classes:
        raise InputError(f"the {what} set has {data.num_classes} classes; the model has {model.num_classes}")
    ours, theirs = _class_names(model.labels), _class_names(data.label_names)
    if ours is not None and theirs is not None and ours != theirs:
        raise InputError(f"the {what} set's classes are {theirs}; the model's are {ours}")
    if len(data) and (data.labels.min() < 0 or data.labels.max() >= model.num_classes):
        raise InputError(f"the {what} set has labels outside [0, {model.num_classes})")


def _class_names(names) -> list[str] | None:
    """``names`` as a list, or ``None`` where there are none or only the generated ``class_<i>``."""
    names = [str(n) for n in (names or [])]
    return None if names == [f"class_{i}" for i in range(len(names))] else names


__all__ = ["TrainResult", "check_data", "fit"]
