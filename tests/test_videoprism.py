"""VideoPrism (Hugging Face ``VideoPrismForVideoClassification``), a factorised encoder: spatial
layers over each frame's patches, temporal layers over each patch's frames, soft-capped attention
logits, an attention-pooling head. The attention methods and Grad-CAM are checked against the
model's own eager attention (``output_attentions=True``) and its activations, the token layout
written out by hand."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import tiny_hf

import videoxai as vx
from videoxai.methods import get
from videoxai.models.preprocess import Preprocess

T, ROWS, COLS = 8, 4, 4   # conftest's tiny VideoPrism: 8 frames of 32 × 32 in 8 × 8 patches
P = ROWS * COLS


@pytest.fixture(scope="module")
def loaded(tmp_path_factory):
    """The tiny model saved and loaded by ``vx.load_model`` (no processor config), and the same
    weights on the eager attention, logits soft-capped at 2 so that the cap matters."""
    path = tmp_path_factory.mktemp("videoprism")
    tiny_hf("videoprism", attn_logit_softcapping=2.0).save_pretrained(path)
    ref = tiny_hf("videoprism", attn_logit_softcapping=2.0)
    ref.config._attn_implementation = "eager"
    return vx.load_model(str(path)), ref


def _eager(model, net, target=None):
    x = torch.rand(1, T, 3, 40, 48, generator=torch.Generator().manual_seed(1))
    out = net(pixel_values_videos=model.preprocess(x), output_attentions=True)
    for a in out.attentions:
        a.retain_grad()
    logits = out.logits.reshape(1, -1)
    target = int(logits[0].argmin()) if target is None else target   # not the predicted class
    logits[0, target].backward()
    return x, out.attentions, target


def _mixing(a: torch.Tensor, spatial: bool) -> torch.Tensor:
    """A layer's head-mean attention as one ``(N, N)`` matrix over the tokens in (frame, row, col)
    order, token ``t·P + p``: a spatial layer mixes the patches of one frame, a temporal layer the
    frames of one patch position (its sequences are the patch positions, ``(P, T, T)``)."""
    m = torch.zeros(T * P, T * P)
    for s in range(a.shape[0]):
        for i in range(a.shape[-1]):
            for j in range(a.shape[-1]):
                if spatial:   # sequence s is frame s; i, j its patches
                    m[s * P + i, s * P + j] = a[s, i, j]
                else:         # sequence s is patch s; i, j its frames
                    m[i * P + s, j * P + s] = a[s, i, j]
    return m


def test_its_family_grid_and_processor(loaded):
    model, net = loaded
    assert model.family == "videoprism" and model.num_frames == T and model.num_classes == 5
    assert (model.token_grid.frames, model.token_grid.rows, model.token_grid.cols) == (T, ROWS, COLS)
    # VideoPrism's processor: the whole frame resized (bicubic), pixels in [0, 1], no normalisation
    assert model.preprocess == Preprocess(size=(32, 32), shortest_edge=None, mean=(0.0,) * 3, std=(1.0,) * 3,
                                          interpolation="bicubic", crop_offset="floor")
    x = torch.rand(2, T, 3, 40, 48, generator=torch.Generator().manual_seed(0))
    by_hand = F.interpolate(x.reshape(-1, 3, 40, 48), size=(32, 32), mode="bicubic", align_corners=False,
                            antialias=True).reshape(2, T, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model(x), net(pixel_values_videos=by_hand).logits.reshape(2, -1))


def test_the_attention_methods_follow_the_eager_soft_capped_attention(loaded):
    model, net = loaded
    sites = model.attention
    assert sites.factorised and [list(layer) for layer in sites.layers] == [["spatial"]] * 2 + [["temporal"]] * 2
    x, atts, target = _eager(model, net)
    assert [a.shape[0] for a in atts] == [T, T, P, P]            # sequences: frames, then patch positions
    spatial = [a.detach().mean(1) for a in atts[:2]]             # (T, P, P) head-mean
    temporal = [a.detach().mean(1) for a in atts[2:]]            # (P, T, T)
    # STAA: the attention each patch of a frame receives (spatial layers) times T × the attention
    # each frame receives at a patch (temporal layers), the layers of each kind averaged
    s = torch.stack([a.mean(1) for a in spatial]).mean(0)                         # (T, P)
    tau = torch.stack([a.mean(1) for a in temporal]).mean(0)                      # (P, T)
    staa = (s * T * tau.T).reshape(1, T, ROWS, COLS)
    got = get("staa")(model, layers="all").attribute(x, target=torch.tensor([target]))
    torch.testing.assert_close(got.maps, staa, rtol=1e-4, atol=1e-6)
    # rollout and Chefer relevance through the four layers' token mixings, from the uniform readout
    n = T * P
    roll, rel = torch.eye(n), torch.eye(n)
    for k, a in enumerate(atts):
        m = _mixing(a.detach().mean(1), k < 2) + torch.eye(n)
        roll = (m / m.sum(-1, keepdim=True)) @ roll
        rel = rel + _mixing((a.grad * a.detach()).clamp_min(0).mean(1), k < 2) @ rel
    for name, ref in (("rollout", roll.mean(0)), ("attention_relevance", (rel - torch.eye(n)).mean(0))):
        got = get(name)(model).attribute(x, target=torch.tensor([target]))
        torch.testing.assert_close(got.maps, ref.clamp_min(0).reshape(1, T, ROWS, COLS), rtol=1e-4, atol=1e-6,
                                   msg=name)


def test_the_soft_cap_is_what_the_maps_follow(loaded):
    """Without the cap the same queries and keys give other maps: the cap is read, not ignored."""
    model, _ = loaded
    x = torch.rand(1, T, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    capped = get("staa")(model, layers="all").attribute(x).maps
    calls = [call for layer in model.attention.layers for call in layer.values()]
    try:
        for call in calls:
            call.softcap = None
        uncapped = get("staa")(model, layers="all").attribute(x).maps
    finally:
        for call in calls:
            call.softcap = 2.0
    assert (capped - uncapped).abs().max() > 1e-3


def test_staa_reads_the_last_half_of_each_kind_by_default(loaded):
    model, _ = loaded
    assert get("staa")(model).layers == [1, 3]


def test_gradcam_is_the_textbook_map_of_the_encoders_last_norm(loaded):
    model, net = loaded
    x = torch.rand(1, T, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    acts = {}
    hook = net.vision_model.layernorm2.register_forward_hook(lambda _m, _i, out: acts.setdefault("a", out))
    try:
        logits = net(pixel_values_videos=model.preprocess(x)).logits.reshape(1, -1)
    finally:
        hook.remove()
    a = acts["a"]                                                      # (P, T, D): a sequence per patch
    target = 2
    grad, = torch.autograd.grad(logits[0, target], a)
    weights = grad.mean((0, 1))                                        # over every token
    cam = torch.relu((a.detach() * weights).sum(-1))                   # (P, T)
    cam = cam.T.reshape(1, T, ROWS, COLS)
    got = get("gradcam")(model).attribute(x, target=torch.tensor([target]))
    torch.testing.assert_close(got.maps, cam, rtol=1e-4, atol=1e-6)   # (1, T, rows, cols)


def test_explain_and_the_model_are_left_as_they_were(loaded):
    model, net = loaded
    clip = np.random.default_rng(0).integers(0, 255, (T, 36, 44, 3), dtype=np.uint8)
    before = {k: v.clone() for k, v in model.net.state_dict().items()}
    for method in ("staa", "rollout", "gradcam"):
        exp = vx.explain(model, clip, method)
        assert exp.spatial.shape == (T, 36, 44) and abs(float(exp.temporal.sum()) - 1) < 1e-5
    assert all(torch.equal(before[k], v) for k, v in model.net.state_dict().items())
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.net.modules())


def test_a_video_text_checkpoint_is_named_as_one(tmp_path):
    from transformers import VideoPrismClipModel, VideoPrismConfig

    from videoxai.errors import UnknownModelError

    small = dict(hidden_size=32, num_attention_heads=2, intermediate_size=64)
    VideoPrismClipModel(VideoPrismConfig(
        vision_config=dict(image_size=32, tubelet_size=[1, 8, 8], num_frames=4, num_spatial_layers=1,
                           num_temporal_layers=1, **small),
        text_config=dict(num_hidden_layers=1, **small))).save_pretrained(tmp_path)
    with pytest.raises(UnknownModelError, match=r"is a VideoPrism video-text model \(VideoPrismClipModel\), not a "
                                                r"video classifier"):
        vx.load_model(f"hf:{tmp_path}")
