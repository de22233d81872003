"""The ST-ABN losses: both branches' cross-entropy, and the human-knowledge term ``L_temp``.

``L(x_i) = L_att(x_i) + L_per(x_i) + L_temp(x_i)`` (poster, seed 003) with

* ``L_att``, ``L_per``: cross-entropy of the attention and perception logits (equal weights, as
  the reference code actually trains: its ``loss_weight=0.5`` is never read);
* ``L_temp(x_i) = γ_t · (1/T) Σ_t (M'_t(x_i) − M_t(x_i))²``, the mean squared error between the
  edited temporal attention ``M'_t`` and the predicted one ``M_t``, for a clip that has an edit,
  and 0 for a clip that has none (``kind="mse"``, the paper's).

**A softmax attention gets** ``kind="kl"``: ``L_temp(x_i) = γ_t · KL(q ‖ softmax(l))`` with ``q``
the edit normalised to sum 1 and ``l`` the attention's logits. The MSE cannot teach a softmax
attention that is confidently wrong, which is exactly the attention a person edits: its top frame
is ``exp(l − max l) = 1`` whatever ``l`` (no gradient), and every other frame sits at ``≈ 0`` where
``exp`` is flat (the gradient is the value itself). Measured on the confound experiment's start
model (:mod:`.experiment`, seed 2): the attention peaked on the confound in every edited clip and,
after fine-tuning with the MSE at ``γ_t = 30``, still did in 94 % of them. The KL's gradient with
respect to the logits is ``softmax(l) − q``: largest exactly there. A sigmoid attention keeps the
MSE (each frame's weight has its own logit, and the paper's form is the MSE).

The batch loss is the mean of the per-clip loss over the batch, so a batch with one edited clip
out of eight weighs that clip's ``L_temp`` by 1/8, exactly as its cross-entropies.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F

from ..errors import InputError
from .network import STABNOutput


class LossTerms(NamedTuple):
    """The batch loss and its parts (each a scalar tensor; ``total`` is what to back-propagate)."""

    total: torch.Tensor
    perception: torch.Tensor
    attention: torch.Tensor
    temporal: torch.Tensor


#: the forms of ``L_temp`` (module docstring); ``"auto"`` resolves by the attention's squashing
TEMPORAL_LOSSES = ("auto", "mse", "kl")


def temporal_loss_kind(kind: str, temporal_norm: str) -> str:
    """``kind`` with ``"auto"`` resolved for an attention squashed by ``temporal_norm``: ``"kl"``
    for ``"softmax"``, ``"mse"`` (the paper's) for ``"sigmoid"``."""
    if kind not in TEMPORAL_LOSSES:
        raise InputError(f"temporal loss must be one of {TEMPORAL_LOSSES}, got {kind!r}")
    if kind == "auto":
        return "kl" if temporal_norm == "softmax" else "mse"
    return kind


def temporal_loss(predicted: torch.Tensor, edited: torch.Tensor, has_edit: torch.Tensor | None = None,
                  gamma_t: float = 1.0, *, logits: torch.Tensor | None = None, kind: str = "mse") -> torch.Tensor:
    """``mean_i γ_t · 1[i edited] · ℓ_i`` with ``ℓ_i = mean_t (M'_t − M_t)²`` (``kind="mse"``) or
    ``KL(M'/ΣM' ‖ softmax(logits))`` (``kind="kl"``; an edit that is 0 everywhere adds nothing).

    Args:
        predicted: ``(B, T)`` the model's temporal attention ``M_t``.
        edited: ``(B, T)`` the edited attention ``M'_t`` (any value where ``has_edit`` is False).
        has_edit: ``(B,)`` bool, which clips have an edit; ``None`` means all of them.
        gamma_t: the weight ``γ_t``.
        logits: ``(B, T)`` the logits of ``M_t``; needed by ``kind="kl"``.
        kind: ``"mse"`` or ``"kl"`` (module docstring).
    """
    if predicted.shape != edited.shape or predicted.ndim != 2:
        raise InputError(f"predicted and edited temporal attention must both be (B, T), got "
                         f"{tuple(predicted.shape)} and {tuple(edited.shape)}")
    if kind not in ("mse", "kl"):
        raise InputError(f"temporal loss kind must be 'mse' or 'kl', got {kind!r}")
    edited = edited.to(predicted)
    mask = torch.ones(predicted.shape[0], dtype=torch.bool, device=predicted.device)
    if has_edit is not None:
        if has_edit.shape != predicted.shape[:1]:
            raise InputError(f"has_edit must be ({predicted.shape[0]},), got {tuple(has_edit.shape)}")
        mask = has_edit.to(predicted.device)
    if kind == "mse":
        # an unedited clip's target may be anything (NaN included): replace it by the prediction
        # itself *before* the square, so that it adds neither loss nor gradient (masking after
        # the square would give NaN · 0 = NaN gradients)
        edited = torch.where(mask[:, None], edited, predicted.detach())
        return gamma_t * (edited - predicted).pow(2).mean(1).mean()
    if logits is None or logits.shape != predicted.shape:
        raise InputError("temporal loss 'kl' needs the attention's (B, T) logits (a softmax temporal attention)")
    # unedited rows (NaN allowed) and all-zero edits get a uniform target and are masked out
    # *before* the logs, for the same reason as above
    total = edited.clamp_min(0).sum(1, keepdim=True)
    mask = mask & (total[:, 0] > 0)
    q = torch.where(mask[:, None], edited.clamp_min(0) / total.clamp_min(1e-12), torch.full_like(edited, 1 / edited.shape[1]))
    kl = (torch.xlogy(q, q) - q * F.log_softmax(logits, dim=1)).sum(1)
    return gamma_t * (kl * mask).mean()


def stabn_loss(out: STABNOutput, target: torch.Tensor, edited: torch.Tensor | None = None,
               has_edit: torch.Tensor | None = None, gamma_t: float = 1.0,
               label_smoothing: float = 0.0, temporal_kind: str = "mse") -> LossTerms:
    """``L_per + L_att (+ L_temp when edits are given)`` for a batch.

    Args:
        out: the model's outputs (:meth:`STABNVideoModel.outputs`).
        target: ``(B,)`` class indices.
        edited, has_edit, gamma_t: see :func:`temporal_loss`; without ``edited`` the temporal
            term is 0 (plain ST-ABN training).
        temporal_kind: ``L_temp``'s form, ``"mse"`` or ``"kl"`` (:func:`temporal_loss`).
        label_smoothing: of both cross-entropies.
    """
    target = target.to(out.logits.device).long()
    l_per = F.cross_entropy(out.logits, target, label_smoothing=label_smoothing)
    zero = out.logits.new_zeros(())
    # a plain backbone has no attention branch: L_per alone
    l_att = zero if out.att_logits is None else F.cross_entropy(out.att_logits, target, label_smoothing=label_smoothing)
    if edited is not None and out.temporal is None:
        raise InputError("temporal-attention edits need an ST-ABN; this model has no attention branch")
    if edited is None:
        l_temp = zero
    else:
        l_temp = temporal_loss(out.temporal, edited, has_edit, gamma_t, logits=out.temporal_logits,
                               kind=temporal_kind)
    return LossTerms(l_per + l_att + l_temp, l_per, l_att, l_temp)


__all__ = ["LossTerms", "TEMPORAL_LOSSES", "stabn_loss", "temporal_loss", "temporal_loss_kind"]
