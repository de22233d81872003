"""Named ST-ABN designs: a backbone, further :class:`~.model.STABNConfig` fields and how many
epochs of the plain backbone to start from (README "ST-ABN" has the measurements behind each).

One definition for everything that builds an ST-ABN by design name: ``videoxai stabn train
--design`` and :func:`.train.train` (default :data:`DEFAULT_DESIGN`), ``scripts/train_demo.py
--design`` (the bundled ``demo-stabn``) and the human-knowledge experiment's start models
(:mod:`.experiment`, ``scripts/stabn_experiment.py --design``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Mapping

from ..errors import InputError


@dataclass(frozen=True)
class Design:
    """An ST-ABN design.

    Attributes:
        backbone: a key of :data:`~.model.BACKBONES`.
        warm_start: epochs of the plain backbone (same seed, recipe and clips) the ST-ABN's shared
            layers start from (:func:`~.train.warm_started`); 0: from scratch.
        options: further ``STABNConfig`` fields of the attention branch (the plain backbone
            ignores them) and ``padding``, the whole network's (``videoxai stabn train
            --backbone-only`` takes the design's).
    """

    backbone: str
    warm_start: int = 0
    options: Mapping[str, Any] = field(default_factory=dict)


DESIGNS: Mapping[str, Design] = MappingProxyType({
    # round 4, the default: the attention branch classifies *through* its attention (its class
    # scores averaged with weights M_t · M_s, multiple-instance attention pooling), frames and
    # cells compete (softmax), and the perception branch takes the maximum. The branch's own loss
    # then puts the attention where the class shows; the perception no longer depends on it being
    # right from the start (held-out task: top frame in the flash 0.98–1.00 over three seeds,
    # "reference" 0.47–0.77; accuracy as the plain backbone's within noise). Replicate padding
    # (round 5): with zeros a corner cell became a constant "triangle" vote that the attention
    # chose for every triangle clip on one seed (STABNConfig.padding)
    "mil": Design("tiny-hires", 3, {"attention_readout": "attention", "temporal_norm": "softmax",
                                    "spatial_norm": "softmax", "pool": "max", "padding": "replicate"}),
    # the paper's branch (layer3, 3×3×3 kernels, sigmoid attention, linear readout) on the
    # full-resolution backbone; the perception pools by the attention (the backbone's default)
    "reference": Design("tiny-hires", 3, {}),
    # round 3: attention that localises — 16×16 maps, the branch on per-frame layer2 features
    # with 1×1×1 kernels, frames competing for M_t; started from the plain backbone
    "localising": Design("tiny-fine", 3, {"temporal_norm": "softmax", "branch_input": "layer2",
                                          "branch_temporal_kernel": 1, "branch_spatial_kernel": 1}),
    # round 2: the branch on layer3 with 3×3×3 kernels and sigmoid attention, 8×8 maps, from scratch
    "layer3": Design("tiny", 0, {}),
})


#: the design of ``videoxai stabn train`` and :func:`.train.train` when none is named
DEFAULT_DESIGN = "mil"


def design(name: str) -> Design:
    """The design called ``name`` (a clear error naming the choices otherwise)."""
    if name not in DESIGNS:
        raise InputError(f"unknown ST-ABN design {name!r}; choose one of {sorted(DESIGNS)}")
    return DESIGNS[name]


__all__ = ["DEFAULT_DESIGN", "DESIGNS", "Design", "design"]
