"""The ST-ABN losses: both branches' cross-entropy, and the human-knowledge term ``L_temp``.

``L(x_i) = L_att(x_i) + L_per(x_i) + L_temp(x_i)`` (poster, seed 003) with

* ``L_att``, ``L_per``: cross-entropy of the attention and perception logits (equal weights, as
  the reference code actually trains: its ``loss_weight=0.5`` is never read);
* ``L_temp(x_i) = γ_t · (1/T) Σ_t (M'_t(x_i) − M_t(x_i))²``, the mean squared error between the
  edited temporal attention ``M'_t`` and the predicted one ``M_t``, for a clip that has an edit,
  and 0 for a clip that has none.

The batch loss is the mean of the per-clip loss over the batch, so a batch with one edited clip
out of eight weighs that clip's ``L_temp`` by 1/8, exactly as its cross-entropies.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F

from ..errors import InputError
from .model import STABNOutput


class LossTerms(NamedTuple):
    """The batch loss and its parts (each a scalar tensor; ``total`` is what to back-propagate)."""

    total: torch.Tensor
    perception: torch.Tensor
    attention: torch.Tensor
    temporal: torch.Tensor


def temporal_loss(predicted: torch.Tensor, edited: torch.Tensor, has_edit: torch.Tensor | None = None,
                  gamma_t: float = 1.0) -> torch.Tensor:
    """``mean_i γ_t · 1[i edited] · mean_t (M'_t − M_t)²``.

    Args:
        predicted: ``(B, T)`` the model's temporal attention ``M_t``.
        edited: ``(B, T)`` the edited attention ``M'_t`` (any value where ``has_edit`` is False).
        has_edit: ``(B,)`` bool, which clips have an edit; ``None`` means all of them.
        gamma_t: the weight ``γ_t``.
    """
    if predicted.shape != edited.shape or predicted.ndim != 2:
        raise InputError(f"predicted and edited temporal attention must both be (B, T), got "
                         f"{tuple(predicted.shape)} and {tuple(edited.shape)}")
    edited = edited.to(predicted)
    if has_edit is not None:
        if has_edit.shape != predicted.shape[:1]:
            raise InputError(f"has_edit must be ({predicted.shape[0]},), got {tuple(has_edit.shape)}")
        # an unedited clip's target may be anything (NaN included): replace it by the prediction
        # itself *before* the square, so that it adds neither loss nor gradient (masking after
        # the square would give NaN · 0 = NaN gradients)
        edited = torch.where(has_edit.to(predicted.device)[:, None], edited, predicted.detach())
    return gamma_t * (edited - predicted).pow(2).mean(1).mean()


def stabn_loss(out: STABNOutput, target: torch.Tensor, edited: torch.Tensor | None = None,
               has_edit: torch.Tensor | None = None, gamma_t: float = 1.0,
               label_smoothing: float = 0.0) -> LossTerms:
    """``L_per + L_att (+ L_temp when edits are given)`` for a batch.

    Args:
        out: the model's outputs (:meth:`STABNVideoModel.outputs`).
        target: ``(B,)`` class indices.
        edited, has_edit, gamma_t: see :func:`temporal_loss`; without ``edited`` the temporal
            term is 0 (plain ST-ABN training).
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
        l_temp = temporal_loss(out.temporal, edited, has_edit, gamma_t)
    return LossTerms(l_per + l_att + l_temp, l_per, l_att, l_temp)


__all__ = ["LossTerms", "stabn_loss", "temporal_loss"]
