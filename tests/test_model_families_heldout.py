"""Held-out architectures: networks built from configs at toy size (no downloads), explained as a
user who brings their own would."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

import videoxai as vx


class _Tokens(nn.Module):
    """A 2×4×4 tubelet embedding of a 4×16×16 clip as tokens (B, 32, 16)."""

    def __init__(self):
        super().__init__()
        self.proj = nn.Conv3d(3, 16, (2, 4, 4), (2, 4, 4))

    def forward(self, x):
        return self.proj(x).flatten(2).transpose(1, 2)


class _MeanHead(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(16, 3)

    def forward(self, tokens):
        return self.fc(tokens.mean(1))


def test_the_layer_search_with_a_token_reshape_names_the_last_block_inside_an_encoder():
    # a ViT whose blocks sit in an nn.Sequential encoder (a module taking and giving tokens): with
    # the layout of its tokens given, the search names its last block, as it does for blocks at the
    # top level; grids inside token blocks are set aside only where no cam_reshape describes tokens
    torch.manual_seed(0)
    net = nn.Sequential(_Tokens(), nn.Sequential(*(nn.TransformerEncoderLayer(16, 2, 32, batch_first=True)
                                                   for _ in range(2))), _MeanHead())

    def tokens(out):   # (B, 2·4·4, 16) → (B, 16, 2, 4, 4)
        return out.reshape(len(out), 2, 4, 4, 16).permute(0, 4, 1, 2, 3)

    model = vx.wrap(net, num_frames=4, input_size=16, cam_reshape=tokens)
    clip = np.random.default_rng(0).random((4, 16, 16, 3), dtype=np.float32)
    assert vx.explain(model, clip, "gradcam").options["layer"] == "1.1"
