"""Held-out architectures: networks built from configs at toy size (no downloads), explained as a
user who brings their own would."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import tiny_hf
from torch import nn

import videoxai as vx
from videoxai.errors import UnsupportedModelError


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


@pytest.mark.parametrize("family", ["timesformer", "videomae", "vivit", "vjepa2", "videoprism"])
def test_cam_methods_on_a_wrapped_hugging_face_transformer_name_its_adapter(family):
    # given to vx.wrap (a network fine-tuned in the session), a Hugging Face video transformer got
    # the search's advice for an unknown network: on TimeSformer "its last grids are per frame, e.g.
    # '…attention.attn_drop'; wrap it with cam_reshape='per_frame'", which then mapped its spatial
    # attention matrices (B·T, heads, N, N) as if they were frames. Its adapter knows its tokens
    model = vx.wrap(tiny_hf(family), num_frames=8, input_size=32, layout="BTCHW")
    clip = np.random.default_rng(0).random((8, 32, 32, 3), dtype=np.float32)
    for method in ("gradcam", "gradcam_pp"):
        with pytest.raises(UnsupportedModelError, match=rf"^method '{method}' reads a layer with a .* grid, which "
                                                        rf"custom does not lay out: it wraps a Hugging Face {family} "
                                                        r"model, which videoxai\.models\.hf\.from_hf_module\(net\)"):
            vx.explain(model, clip, method)
    with pytest.raises(UnsupportedModelError, match=rf"^method 'saliency_tubes' explains CNNs .*; custom \(custom\) "
                                                    rf"wraps a Hugging Face {family} transformer$"):
        vx.explain(model, clip, "saliency_tubes")

    # told instead to lay its frames out (cam_reshape="per_frame"), the search read the dropout of its
    # spatial attention probabilities: grids inside token blocks are no frames either
    if family == "timesformer":
        per_frame = vx.wrap(tiny_hf(family), num_frames=8, input_size=32, layout="BTCHW", cam_reshape="per_frame")
        assert per_frame.locate_cam_layer() == "timesformer.embeddings.patch_embeddings.projection"


def test_a_wrapped_swin3d_whose_last_grid_is_channels_last_is_refused_by_supports_not_only_by_explain():
    # a Video Swin the user built: the layer search returns its final LayerNorm, whose output
    # (B, T', H', W', C) is 5-D; supports() of gradcam said yes (`videoxai methods --model`, the
    # evaluation runner's skip) and explain then refused the layer, and saliency_tubes said its
    # head "takes 32 features", which its CAM layer "does not give"
    from torchvision.models.video.swin_transformer import SwinTransformer3d

    torch.manual_seed(0)
    net = SwinTransformer3d(patch_size=[2, 4, 4], embed_dim=16, depths=[1, 1], num_heads=[1, 2],
                            window_size=[2, 4, 4], num_classes=3)
    clip = np.random.default_rng(0).random((4, 32, 32, 3), dtype=np.float32)
    model = vx.wrap(net, num_frames=4, input_size=32)
    reason = (r"^(method 'saliency_tubes' needs a CAM layer: )?layer 'norm' of custom is a LayerNorm over the last "
              r"axis of its output \(1, 2, 4, 4, 32\), so that axis holds its 32 features: it is laid out channels-last, "
              r"not \(B, C, T', H', W'\); .* needs vx.wrap\(\.\.\., cam_reshape=lambda t: t.permute\(0, 4, 1, 2, 3\)\)")
    for method in ("gradcam", "gradcam_pp", "saliency_tubes"):
        assert not vx.methods.get(method).supports(model)
        with pytest.raises(UnsupportedModelError, match=reason):
            vx.explain(model, clip, method)
    permuted = vx.wrap(net, num_frames=4, input_size=32, cam_reshape=lambda t: t.permute(0, 4, 1, 2, 3))
    exp = vx.explain(permuted, clip, "gradcam")
    assert exp.options["layer"] == "norm" and exp.spatial.shape == (4, 32, 32) and exp.spatial.max() > 0


@pytest.mark.skipif(not hasattr(torch.compiler, "set_stance"), reason="torch < 2.6 has no eager stance")
def test_grad_cam_on_a_compiled_hugging_face_transformer_reads_its_layer():
    # torch.compile(vivit): the compiled graph ran without the capture's hook on its CAM layer, and
    # gradcam said "layer 'vivit.layers.1.layernorm_before' did not run during the forward pass"
    from videoxai.models.hf import from_hf_module

    torch._dynamo.reset()
    clip = np.random.default_rng(0).random((8, 32, 32, 3), dtype=np.float32)
    compiled = from_hf_module(torch.compile(tiny_hf("vivit"), backend="eager"))
    plain = from_hf_module(tiny_hf("vivit"))
    for method in ("gradcam", "gradcam_pp"):
        exp = vx.explain(compiled, clip, method, target=1)
        np.testing.assert_allclose(exp.raw, vx.explain(plain, clip, method, target=1).raw, rtol=1e-5, atol=1e-8)
        assert exp.raw.max() > 0
