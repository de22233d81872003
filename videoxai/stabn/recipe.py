"""How an ST-ABN is trained: the optimisation settings (:class:`TrainConfig`, named ones by
:meth:`TrainConfig.recipe`), which module groups are frozen until when (:class:`FreezeSchedule`),
and the edited temporal attention that fine-tuning trains towards (:class:`TemporalTargets`).

The recipe follows the reference code [V1], scaled to the run:

* loss ``CE(z_per, y) + CE(z_att, y)`` (+ ``L_temp`` when fine-tuning with edits);
* SGD, momentum 0.9, Nesterov, weight decay 5e-4, gradient clipping at L2 norm 20;
* learning rate ×0.1 at 1/2 and 5/6 of the epochs (the reference: epochs 75 and 125 of 150);
* dropout 0.5 before both heads; no flips (direction matters in Something-Something and a flip
  silently changes such labels; the reference re-implementation's "horizontal" flip was in fact
  vertical).
"""

from __future__ import annotations

import math
import numbers
from dataclasses import asdict, dataclass, fields

import numpy as np
import torch

from ..errors import InputError
from .network import STABN


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
            (docs/experiments/stabn.md, "Held-out task": which of two shapes flashes, 800
            training clips) 16 left 8 epochs
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
        if self.lr == math.inf:  # it made every weight NaN in one step
            raise InputError(f"lr must be finite, got {self.lr}")
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


__all__ = ["RECIPES", "FreezeSchedule", "TemporalTargets", "TrainConfig"]
