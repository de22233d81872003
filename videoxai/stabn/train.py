"""Training ST-ABN: the loop (with checkpoints, resume and progress) and ``train()``.

The recipe follows the reference code [V1], scaled to the run:

* loss ``CE(z_per, y) + CE(z_att, y)`` (+ ``L_temp`` when fine-tuning with edits);
* SGD, momentum 0.9, Nesterov, weight decay 5e-4, gradient clipping at L2 norm 20;
* learning rate ×0.1 at 1/2 and 5/6 of the epochs (the reference: epochs 75 and 125 of 150);
* dropout 0.5 before both heads; no flips (direction matters in Something-Something and a flip
  silently changes such labels; the reference re-implementation's "horizontal" flip was in fact
  vertical).

A run writes to its output directory after every epoch:

* ``checkpoint.pt`` — model, optimizer, epoch and history (``torch.save`` of plain state dicts,
  read back with ``weights_only=True``); a run started again on the same directory resumes from
  it (same result as an uninterrupted run: every epoch's shuffling and dropout are seeded from
  ``(seed, epoch)``);
* ``history.json`` — one record per epoch: losses, train accuracy, validation accuracy of both
  branches and temporal agreement;
* ``model/`` — the latest weights as a loadable model directory (``vx.load_model(out / "model")``).

Each file is replaced whole (written aside, then renamed), and a resumed run writes
``history.json`` and ``model/`` again from its checkpoint. One run at a time per directory: a
second one fails at once, naming the first (``.lock``, :class:`~videoxai.core.folder_lock.FolderLock`).

:func:`train` with a warm start first trains the plain backbone the same way in ``warm-start/``
(its own ``checkpoint.pt``, ``history.json`` and ``model/``): a run stopped during the warm start
continues it from its last epoch; once the ST-ABN has a checkpoint (mid-run or finished) the warm
start is not run again (the checkpoint holds every weight), and the warm start's checkpoint is
removed when the run finishes (its history and model stay).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import math
import numbers
import threading
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch

from ..core.folder_lock import FolderLock
from ..errors import InputError
from ..progress import track
from .atomic import write_atomically
from .data import ClipSet, open_dataset, recorded_spec
from .designs import DEFAULT_DESIGN, design as named_design
from .evaluate import Evaluation, evaluate
from .loader import save_stabn
from .losses import stabn_loss
from .model import STABN, STABNConfig, STABNVideoModel, build

log = logging.getLogger("videoxai.stabn")

CHECKPOINT = "checkpoint.pt"
HISTORY = "history.json"
MODEL_DIR = "model"
WARM_START_DIR = "warm-start"


@dataclass
class TrainConfig:
    """Optimisation settings.

    The defaults are a recipe for small models trained from scratch on a few thousand clips
    (AdamW, linear warm-up then cosine decay); ``optimizer="sgd",
    schedule="step", lr=0.01, weight_decay=5e-4, label_smoothing=0`` is the reference's [V1]
    (on the synthetic benchmark it leaves the tiny models near 0.74 after 12 epochs, where the
    default recipe reaches the accuracy of the bundled 3D CNN; README "ST-ABN").

    Attributes:
        epochs: passes over the training set.
        batch_size: clips per step. 8 by default, the reference's per GPU: on a held-out task
            (README "ST-ABN", which of two shapes flashes, 800 training clips) 16 left 8 epochs
            at 400 steps, where both the plain ``tiny-hires`` backbone and the ``mil`` ST-ABN
            still fitted their training clips without the rule (validation accuracy 0.65 and
            0.69–0.77); with 8 they reached 0.76–0.98 and 0.93–0.98 in 8 epochs, and 0.95–1.00
            and 0.99–1.00 in 12 (16: 0.96 for the ST-ABN). The ``"demo"`` recipe (the bundled models',
            and fine-tuning's) keeps 16.
        lr: peak learning rate.
        optimizer: ``"adamw"`` or ``"sgd"`` (momentum, Nesterov).
        momentum, nesterov: SGD settings.
        weight_decay: L2 (SGD) or decoupled (AdamW) weight decay, on weights only with AdamW.
        clip_grad: gradient L2-norm clipping threshold (``None``: off).
        schedule: ``"cosine"`` (per step, after ``warmup``) or ``"step"`` (×``decay`` at the
            ``milestones``, fractions of ``epochs``).
        warmup: share of the steps with a linearly rising learning rate (cosine schedule).
        label_smoothing: of both cross-entropies. 0 by default: on a held-out task (README "ST-ABN",
            which of two shapes flashes, 800 training clips) 0.1 took the plain ``tiny-hires``
            backbone from 0.93 to 0.83 test accuracy (the same clips and seed) while it fitted
            its training clips either way; on the synthetic benchmark it made no difference.
            The bundled ST-ABN pair and the human-knowledge experiment were trained with 0.1
            (the ``"demo"`` recipe).
        seed: seeds initialisation (by the caller), shuffling and dropout.
        eval_batch_size: clips per forward when validating.
    """

    epochs: int = 12
    batch_size: int = 8
    lr: float = 2e-3
    optimizer: str = "adamw"
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 1e-4
    clip_grad: float | None = 20.0
    schedule: str = "cosine"
    warmup: float = 0.05
    milestones: tuple[float, ...] = (0.5, 5 / 6)
    decay: float = 0.1
    label_smoothing: float = 0.0
    seed: int = 0
    eval_batch_size: int = 64

    def __post_init__(self) -> None:
        self.milestones = tuple(float(m) for m in self.milestones)
        for name in ("epochs", "batch_size", "eval_batch_size"):  # name the one that is wrong
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
                raise InputError(f"{name} must be a whole number ≥ 1, got {value!r}")
            setattr(self, name, int(value))  # a numpy integer (a sweep's) would not go into the JSON
        # seeds torch's generators as seed·100003 + epoch: a larger one overflowed there, as
        # "ValueError: Overflow when unpacking long long"
        if isinstance(self.seed, bool) or not isinstance(self.seed, numbers.Integral) or not 0 <= self.seed < 2**32:
            raise InputError(f"seed must be a whole number from 0 to 2^32 - 1, got {self.seed!r}")
        self.seed = int(self.seed)
        if not self.lr > 0:
            raise InputError(f"lr must be > 0, got {self.lr}")
        if self.optimizer not in ("adamw", "sgd"):
            raise InputError(f"optimizer must be 'adamw' or 'sgd', got {self.optimizer!r}")
        if self.schedule not in ("cosine", "step"):
            raise InputError(f"schedule must be 'cosine' or 'step', got {self.schedule!r}")
        if not 0 <= self.label_smoothing < 1 or not 0 <= self.warmup < 1:
            raise InputError("label_smoothing and warmup must be in [0, 1)")

    def lr_at(self, epoch: int, step: int = 0, steps_per_epoch: int = 1) -> float:
        """Learning rate of step ``step`` (0-based, within the epoch) of epoch ``epoch`` (0-based)."""
        if self.schedule == "step":
            passed = sum(epoch >= int(round(m * self.epochs)) for m in self.milestones)
            return self.lr * self.decay ** passed
        total = self.epochs * steps_per_epoch
        now = epoch * steps_per_epoch + step
        warm = int(self.warmup * total)
        if now < warm:
            return self.lr * (now + 1) / warm
        return self.lr * 0.5 * (1 + math.cos(math.pi * (now - warm) / max(1, total - warm)))

    def optimizer_for(self, params: list[torch.nn.Parameter]) -> torch.optim.Optimizer:
        if self.optimizer == "sgd":
            return torch.optim.SGD(params, lr=self.lr, momentum=self.momentum, nesterov=self.nesterov,
                                   weight_decay=self.weight_decay)
        # no decay of biases and batch-norm scales (they set scales, not features)
        return torch.optim.AdamW([{"params": [p for p in params if p.ndim >= 2], "weight_decay": self.weight_decay},
                                  {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0}], lr=self.lr)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["milestones"] = list(self.milestones)
        return d

    @classmethod
    def recipe(cls, name: str, **overrides) -> "TrainConfig":
        """``"small"`` (the defaults), ``"reference"`` (the paper code's SGD recipe [V1]) or ``"demo"``
        (the defaults with label smoothing 0.1 and 16 clips a step: what the bundled ST-ABN pair
        and the human-knowledge experiment were trained and chosen with)."""
        if name not in RECIPES:
            raise InputError(f"unknown training recipe {name!r}; recipes: {', '.join(RECIPES)}")
        return cls(**{**RECIPES[name], **overrides})

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


#: named recipes (:meth:`TrainConfig.recipe`)
RECIPES: dict[str, dict] = {
    "small": {},
    # the bundled models' recipe (scripts/train_demo.py), and what fine-tuning starts from
    "demo": {"label_smoothing": 0.1, "batch_size": 16},
    "reference": {"optimizer": "sgd", "schedule": "step", "lr": 0.01, "weight_decay": 5e-4,
                  "label_smoothing": 0.0, "warmup": 0.0},
}


@dataclass(frozen=True)
class FreezeSchedule:
    """Which parts of the network are frozen, and until when.

    Attributes:
        frozen: groups of :attr:`STABN.GROUPS` (``"feature_extractor"``, ``"attention_branch"``,
            ``"perception_branch"``) whose weights are not updated and whose batch-norm statistics
            are kept (their modules run in eval mode).
        until: the epoch (0-based) from which everything trains; ``None``: frozen to the end.
    """

    frozen: tuple[str, ...] = ()
    until: int | None = None

    def __post_init__(self) -> None:
        unknown = set(self.frozen) - set(STABN.GROUPS)
        if unknown:
            raise InputError(f"unknown module groups {sorted(unknown)}; groups: {', '.join(STABN.GROUPS)}")
        if self.until is not None and self.until < 0:  # epochs count from 0: a negative one is a typo
            raise InputError(f"unfreeze_at must be an epoch ≥ 0, got {self.until}")

    def frozen_at(self, epoch: int) -> tuple[str, ...]:
        return () if self.until is not None and epoch >= self.until else tuple(self.frozen)

    def apply(self, net: STABN, epoch: int) -> None:
        """Put ``net`` in train mode with this epoch's groups frozen (no grad, eval-mode BN)."""
        net.train()
        frozen = {name for g in self.frozen_at(epoch) for name in STABN.GROUPS[g]}
        for name, module in net.named_children():
            off = name in frozen
            module.requires_grad_(not off)
            if off:
                module.eval()


@dataclass
class TemporalTargets:
    """Edited temporal attention for some clips of a training set (for fine-tuning).

    Attributes:
        values: ``(N, T)`` float32, the edited ``M'_t`` (NaN rows for clips without an edit).
        has_edit: ``(N,)`` bool.
        gamma_t: weight of ``L_temp``.
        loss: ``L_temp``'s form, ``"mse"`` or ``"kl"`` (:func:`~.losses.temporal_loss`).
    """

    values: np.ndarray
    has_edit: np.ndarray
    gamma_t: float = 1.0
    loss: str = "mse"


@dataclass
class EpochRecord:
    """What one epoch did (one line of ``history.json``)."""

    epoch: int
    lr: float
    loss: float
    loss_perception: float
    loss_attention: float
    loss_temporal: float
    train_accuracy: float
    seconds: float
    frozen: list[str] = field(default_factory=list)
    val: dict | None = None
    epochs: int | None = None  # of the run (None: not recorded, as in histories written before it was)
    stage: str | None = None  # "warm-start" for the plain backbone's epochs before an ST-ABN's

    def __str__(self) -> str:
        which = f"{self.stage} epoch" if self.stage else "epoch"
        count = f"{self.epoch}/{self.epochs}" if self.epochs else f"{self.epoch}"
        s = (f"{which} {count}: lr {self.lr:.2g}, loss {self.loss:.3f} (per {self.loss_perception:.3f}, "
             f"att {self.loss_attention:.3f}, temp {self.loss_temporal:.4f}), "
             f"train acc {self.train_accuracy:.3f}")
        if self.val:
            s += f", val acc {self.val['accuracy']:.3f}"
            if self.val.get("attention_accuracy") is not None:
                s += f" / att {self.val['attention_accuracy']:.3f}"
            if self.val.get("window_hit") is not None:
                s += f", window hit {self.val['window_hit']:.3f}"
        return s + f" [{self.seconds:.0f}s]"


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
    """Train ``model`` in place on ``train`` (see the module docstring for what is written).

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
                log.info("resuming from %s at epoch %d", out / CHECKPOINT, start)
                # the checkpoint is the run: a history.json or model/ lost, or left behind by a
                # crash between the writes, is made whole even when no epoch is left to train
                _save_model(out, model, config, start, history, training_meta)
                _save_history(out / HISTORY, history)
            elif not resume:  # starting over: a run stopped before its first epoch must not resume the old one
                (out / CHECKPOINT).unlink(missing_ok=True)

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
        output = model.outputs(x)
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
    evaluation = evaluate(model, val, config.eval_batch_size) if val is not None and len(val) else None
    loss, l_per, l_att, l_temp = sums / seen
    record = EpochRecord(epoch=epoch + 1, lr=config.lr_at(epoch, 0, len(batches)), loss=loss, loss_perception=l_per, loss_attention=l_att,
                         loss_temporal=l_temp, train_accuracy=correct / seen,
                         seconds=time.perf_counter() - t0, frozen=list(freeze.frozen_at(epoch)),
                         val=evaluation.to_dict() if evaluation is not None else None,
                         epochs=config.epochs, stage=stage)
    history.append(record)
    if out is not None:
        _save_model(out, model, config, epoch + 1, history, training_meta)
        _save_checkpoint(out / CHECKPOINT, model, opt, config, epoch + 1, history, run)
        _save_history(out / HISTORY, history)
    log.info("%s", record)
    if on_epoch is not None:
        on_epoch(record)
    return evaluation


#: output directories this process trains into now, with the thread that does
_TRAINING: dict[Path, int] = {}


@contextlib.contextmanager
def output_lock(out: Path) -> Iterator[None]:
    """Hold ``out`` (an existing directory) for this run: a second run on it, in another process
    or thread, fails at once naming this one. Re-entrant in one thread: :func:`train` holds the
    directory across its warm start and the :func:`fit` that follows."""
    key = out.resolve()
    if _TRAINING.get(key) == threading.get_ident():
        yield
        return
    with contextlib.ExitStack() as held:
        try:
            held.enter_context(FolderLock(out, "another ST-ABN training",
                                          "wait for it to finish or choose another --out"))
        except OSError as e:
            # a file system without locks (Lustre mounted without -o flock answers ENOSYS): train
            # as before the lock existed rather than not at all
            log.warning("cannot lock %s (%s): a second run on it would not be refused", out, e.strerror or e)
        _TRAINING[key] = threading.get_ident()
        try:
            yield
        finally:
            del _TRAINING[key]


def check_out_dir(out: str | Path) -> None:
    """Refuse an output directory that is a file or lies below one, before any clip is decoded
    (``mkdir`` would fail only then, after the whole data set was read, as ``File exists``)."""
    for path in (Path(out), *Path(out).parents):
        if path.exists():
            if not path.is_dir():
                where = "" if path == Path(out) else f" (where the output directory {out} would be)"
                raise InputError(f"{path} is a file, not a directory{where}; give another output directory")
            return


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


def _run_facts(train: ClipSet, targets: TemporalTargets | None, freeze: FreezeSchedule) -> dict[str, str]:
    """What a run resumed from a checkpoint must share with it besides the model and the training
    settings: the training clips (ids and labels), the edited attention (fine-tuning) and the
    freezing. Without them, `stabn train --data B` on a finished run on A, or `stabn finetune`
    run again after more edits, printed the old model as if it were the new one."""
    clips = hashlib.sha256(json.dumps([list(train.ids), train.labels.tolist()]).encode()).hexdigest()[:16]
    facts = {"training clips": f"{len(train)} clips (ids and labels: sha256 {clips})",
             "frozen groups": f"{list(freeze.frozen)} until epoch {freeze.until}"}
    if targets is not None:
        digest = hashlib.sha256(np.nan_to_num(targets.values, nan=-1.0).astype(np.float32).tobytes()
                                + targets.has_edit.tobytes()).hexdigest()[:16]
        facts["edits"] = (f"{int(targets.has_edit.sum())} edited clips, gamma_t {targets.gamma_t:g}, "
                          f"{targets.loss} (sha256 {digest})")
    return facts


def _save_checkpoint(path: Path, model: STABNVideoModel, opt: torch.optim.Optimizer, config: TrainConfig,
                     epoch: int, history: list[EpochRecord], run: dict[str, str] | None = None) -> None:
    state = {"epoch": epoch, "model": model.net.state_dict(), "optimizer": opt.state_dict(),
             "model_config": model.config.to_dict(), "train_config": config.to_dict(),
             "history": json.dumps([asdict(r) for r in history]), "run": json.dumps(run or {})}
    buffer = io.BytesIO()
    torch.save(state, buffer)
    write_atomically(path, buffer.getvalue())  # a crash mid-write keeps the previous checkpoint


def _save_model(out: Path, model: STABNVideoModel, config: TrainConfig, epochs_done: int,
                history: list[EpochRecord], training_meta: dict | None) -> None:
    meta = {**(training_meta or {}), "train_config": config.to_dict(), "epochs_done": epochs_done}
    save_stabn(model, out / MODEL_DIR, metrics=history[-1].val or {}, training=meta)


def _save_history(path: Path, history: list[EpochRecord]) -> None:
    # atomically: a run killed while writing left a truncated history.json behind
    write_atomically(path, json.dumps([asdict(r) for r in history], indent=1) + "\n")


def _load_checkpoint(path: Path, model: STABNVideoModel, opt: torch.optim.Optimizer,
                     config: TrainConfig, run: dict[str, str] | None = None) -> tuple[int, list[EpochRecord]]:
    try:
        state = torch.load(path, map_location=model.device, weights_only=True)
    except Exception as e:  # a truncated or foreign file: say which one
        raise InputError(f"cannot read checkpoint {path}: {e}") from None
    if state["model_config"] != model.config.to_dict():
        raise InputError(f"{path} was written for a different model ({state['model_config']}); "
                         "use another output directory or --no-resume")
    saved = TrainConfig.from_dict(state["train_config"])
    if {**saved.to_dict(), "epochs": 0} != {**config.to_dict(), "epochs": 0}:
        raise InputError(f"{path} was written with other training settings ({saved.to_dict()}); "
                         "use another output directory or --no-resume")
    recorded = json.loads(state.get("run", "{}"))  # checkpoints written before it record none
    for what in sorted(set(recorded) & set(run or {})):
        if recorded[what] != run[what]:
            raise InputError(f"{path} continues a run with other {what} ({recorded[what]}; now {run[what]}); "
                             "use another output directory or --no-resume")
    model.net.load_state_dict(state["model"])
    opt.load_state_dict(state["optimizer"])
    history = [EpochRecord(**r) for r in json.loads(state["history"])]
    return int(state["epoch"]), history


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
    pooling or learning rate tried, while the plain backbone did not stall on any seed (README
    "ST-ABN"). The default design's backbone ``tiny-hires`` keeps small shapes at 64 px and its
    branch finds the evidence frames (README "ST-ABN", held-out task); the same defaults as
    ``videoxai stabn train``.
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
    # the model's options too (a backbone too big for the size, a misspelt pool): they were
    # checked only once every clip was decoded; the class count is the data's, 2 stands in for it
    try:
        STABNConfig(num_classes=2, num_frames=num_frames, input_size=size, backbone=backbone, **model_options)
    except TypeError as e:  # an option STABNConfig does not have
        raise InputError(f"unknown ST-ABN option: {e}") from None
    train_set = open_dataset(data, "train", num_frames=num_frames, frame_size=size)
    val_spec = val_data if val_data is not None else (data if data.startswith("synthetic") else None)
    if val_spec is not None and val_spec.strip().lower() == "none":  # asked for no validation
        val_spec = None
    val_set = (open_dataset(val_spec, "val", num_frames=num_frames, frame_size=size, labels=train_set.label_names,
                            labels_from=f"the training data {recorded_spec(data)}")
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
