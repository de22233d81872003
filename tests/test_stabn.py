"""ST-ABN: architecture and parameterisation, losses, training/resume, loading, the method,
edit files, collection and fine-tuning."""

from __future__ import annotations

import json
import math
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import videoxai as vx
from videoxai.errors import InputError, UnknownModelError, UnsupportedModelError
from videoxai.data.synthetic import COLOURS
from videoxai.stabn.data import ClipSet, open_dataset
from videoxai.stabn.evaluate import evaluate
from videoxai.stabn.knowledge import (EditSet, TemporalEdit, check_levels, collect, edit_targets,
                                      fill_between, finetune, finetune_config, training_data)
from videoxai.stabn.loader import load_stabn, save_stabn
from videoxai.stabn.losses import stabn_loss, temporal_loss, temporal_loss_kind
from videoxai.stabn.model import STABN, STABNConfig, STABNOutput, build
from videoxai.stabn.train import FreezeSchedule, TrainConfig, fit, train, warm_started

DATA = "synthetic:48,val=16"
# floors on the 64 held-out clips of the bundled-demo test: issue 15's targets (measured there:
# 1.000, 0.984, 0.700; on 1000 clips: 0.999, 0.996, 0.705 — README "ST-ABN")
ACCURACY_FLOOR, WINDOW_FLOOR, SPATIAL_FLOOR = 0.95, 0.9, 0.5


@pytest.fixture(scope="module")
def train_set():
    return open_dataset(DATA, "train")


def tiny(num_classes=4, num_frames=8, size=64, seed=0, **kw):
    torch.manual_seed(seed)
    return build(num_classes=num_classes, num_frames=num_frames, input_size=size, **kw).eval()


# -- architecture ---------------------------------------------------------------------------------
def test_r50_has_the_reference_size_and_shapes():
    """The paper's configuration (T=32, 224², K=174) reproduces the reference code's parameter
    count (55.67 M, research/stabn.md appendix A) and its tensor shapes; built on the meta device,
    so nothing is allocated."""
    with torch.device("meta"):
        net = STABN(STABNConfig(num_classes=174, num_frames=32, input_size=224, backbone="r50"))
        out = net(torch.empty(1, 3, 32, 224, 224))
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert abs(count(net) - 55.67e6) < 0.01e6
    assert abs(count(net.att_layer4) - 20.208e6) < 0.001e6 and abs(count(net.fusion) - 2.099e6) < 0.001e6
    assert [tuple(o.shape) for o in out] == [(1, 174), (1, 174), (1, 32, 14, 14), (1, 32), (1, 32)]
    with torch.device("meta"):  # T=16 at 112 px (the reference's Kinetics debug setting), K=400
        net = STABN(STABNConfig(num_classes=400, num_frames=16, input_size=112, backbone="r50"))
        out = net(torch.empty(1, 3, 16, 112, 112))
    # the reference hard-codes 174 attention-head outputs; here both heads have K
    assert [tuple(o.shape) for o in out] == [(1, 400), (1, 400), (1, 16, 7, 7), (1, 16), (1, 16)]


@pytest.mark.parametrize("num_frames, num_classes, size, frame_size", [
    (4, 3, 48, (48, 48)), (8, 5, 64, (72, 96)), (16, 2, 64, (64, 64)), (12, 7, 80, (90, 80)),
])
def test_shapes_follow_clip_length_classes_and_size(num_frames, num_classes, size, frame_size):
    model = tiny(num_classes, num_frames, size)
    h, w = model.config.attention_size
    assert (h, w) == (math.ceil(size / 8), math.ceil(size / 8))
    assert model.net.att_fc.in_features == num_classes * num_frames
    assert model.net.temporal_fc1.weight.shape == (num_frames, num_frames)
    pixels = torch.rand(2, num_frames, 3, *frame_size)
    logits = model(pixels)
    out = model.last_output
    assert logits.shape == (2, num_classes) and torch.equal(logits, out.logits)
    assert out.att_logits.shape == (2, num_classes)
    assert out.spatial.shape == (2, num_frames, h, w) and out.temporal.shape == (2, num_frames)
    for m in (out.spatial, out.temporal):  # sigmoids: every frame gets its own weight in [0, 1]
        assert ((m >= 0) & (m <= 1)).all() and m.std() > 0
    with pytest.raises(InputError, match=f"exactly {num_frames} frames"):
        model(torch.rand(1, num_frames + 1, 3, *frame_size))


def test_every_size_builds_and_bad_configs_are_rejected():
    for name in ("tiny", "small", "r18", "r34", "r50"):
        with torch.device("meta"):
            STABN(STABNConfig(num_classes=3, num_frames=4, input_size=112, backbone=name))
    with pytest.raises(InputError, match="unknown ST-ABN backbone"):
        STABNConfig(num_classes=3, backbone="r101x")
    with pytest.raises(InputError, match="too small"):
        STABNConfig(num_classes=3, input_size=8, backbone="r50")
    with pytest.raises(InputError, match="labels for"):
        STABNConfig(num_classes=3, labels=["a", "b"])
    with pytest.raises(InputError, match="num_classes"):
        STABNConfig(num_classes=1)


@pytest.mark.parametrize("mode, residual", [("residual", 1.0), ("gate", 0.0)])
def test_attention_mechanism_weights_features_as_documented(mode, residual):
    """G = fusion([F ⊙ (1 + M_s), F ⊙ (1 + M_t)]) — or F ⊙ M_t with the reference's gate; an
    override of M_t replaces it frame by frame (the editor's preview)."""
    model = tiny(seed=1, temporal_attention=mode)
    x = torch.rand(1, 8, 3, 64, 64)
    seen = {}
    handle = model.net.fusion.register_forward_pre_hook(lambda m, a: seen.__setitem__("g", a[0]))
    gate = torch.tensor([1.0, 0.0, 0.5, 1.0, 0.0, 0.0, 1.0, 0.5])
    try:
        out = model.outputs(x, temporal_override=gate)
    finally:
        handle.remove()
    feats = model.net.features(model.preprocess(x).transpose(1, 2))
    c = feats.shape[1]
    g_s, g_t = seen["g"][:, :c], seen["g"][:, c:]
    torch.testing.assert_close(g_s, feats * (1 + out.spatial[:, None]))
    torch.testing.assert_close(g_t, feats * (residual + gate.view(1, 1, 8, 1, 1)))
    assert torch.equal(out.temporal[0], gate)
    own = model.outputs(x)
    assert not torch.allclose(own.logits, out.logits)          # the weighting matters
    torch.testing.assert_close(own.att_logits, out.att_logits)  # the attention branch does not see it
    with pytest.raises(InputError, match=r"\[0, 1\]"):
        model.outputs(x, temporal_override=torch.full((8,), 2.0))
    with pytest.raises(InputError, match="override must be"):
        model.outputs(x, temporal_override=torch.ones(5))
    assert model._override is None and model._capture is None  # nothing left behind


def test_attention_pooling_weights_layer4_by_both_attentions():
    """pool="attention": z_per = fc(Σ y · w / Σ w) with y = layer4's output and w = M_t · M_s
    averaged onto layer4's grid; a frame whose temporal weight is overridden to 0 no longer
    counts at all."""
    model = tiny(seed=6)
    assert model.config.pool == "attention"
    seen = {}
    handle = model.net.layer4.register_forward_hook(lambda m, a, out: seen.__setitem__("y", out))
    x = torch.rand(1, 8, 3, 64, 64)
    try:
        with torch.no_grad():
            out = model.outputs(x)
    finally:
        handle.remove()
    y = seen["y"]                                                   # (1, C, 8, 4, 4)
    w = out.temporal[:, :, None, None] * out.spatial                # (1, 8, 8, 8)
    w = w.view(1, 8, 4, 2, 4, 2).mean((3, 5))[:, None]              # 2×2 cells → layer4's 4×4 grid
    torch.testing.assert_close(out.logits, model.net.fc((y * w).sum((2, 3, 4)) / w.sum((2, 3, 4))))
    # frames 0-3 switched off by the override: the frames 4-7 alone decide
    gate = torch.tensor([0.0] * 4 + [1.0] * 4)
    with torch.no_grad():
        a = model.outputs(x, temporal_override=gate).logits
        x2 = x.clone()
        x2[:, :4] = torch.rand(1, 4, 3, 64, 64)       # other content in the switched-off frames
        b = model.outputs(x2, temporal_override=gate).logits
    # (layer4's temporal kernel still lets frame 3 reach frame 4, so not exactly equal)
    assert (a - b).abs().max() < 0.5 * (a - out.logits).abs().max() + 1e-3


def test_softmax_attention_competes_and_attention_readout_pools_the_class_scores():
    """temporal_norm / spatial_norm="softmax": M = exp(l − max l) over the frames (over each frame's
    cells), so exactly one frame (one cell per frame) is 1 and their ratios are the softmax's;
    attention_readout="attention": z_att is the per-cell class scores averaged with weights
    M_t · M_s (no linear layer over K·T). The reference's choices stay the defaults."""
    default = STABNConfig(num_classes=4)
    assert (default.temporal_norm, default.spatial_norm, default.attention_readout) == ("sigmoid", "sigmoid", "fc")
    model = tiny(seed=2, temporal_norm="softmax", spatial_norm="softmax", attention_readout="attention")
    assert not hasattr(model.net, "att_fc")
    seen = {}
    handles = [model.net.temporal_fc2.register_forward_hook(lambda m, a, o: seen.__setitem__("lt", o)),
               model.net.spatial_bn.register_forward_hook(lambda m, a, o: seen.__setitem__("ls", o[:, 0])),
               model.net.att_out.register_forward_hook(lambda m, a, o: seen.__setitem__("scores", o))]
    try:
        with torch.no_grad():
            out = model.outputs(torch.rand(2, 8, 3, 64, 64))
    finally:
        for h in handles:
            h.remove()
    torch.testing.assert_close(out.temporal / out.temporal.sum(1, keepdim=True), torch.softmax(seen["lt"], 1))
    assert torch.equal(out.temporal.amax(1), torch.ones(2))
    ls = seen["ls"].flatten(2)
    torch.testing.assert_close(out.spatial.flatten(2) / out.spatial.flatten(2).sum(2, keepdim=True),
                               torch.softmax(ls, 2))
    assert torch.equal(out.spatial.flatten(2).amax(2), torch.ones(2, 8))
    w = (out.temporal[:, :, None, None] * out.spatial)[:, None]
    torch.testing.assert_close(out.att_logits, (seen["scores"] * w).sum((2, 3, 4)) / w.sum((2, 3, 4)))
    for bad in ({"temporal_norm": "tanh"}, {"spatial_norm": None}, {"attention_readout": "max"}):
        with pytest.raises(InputError, match=next(iter(bad))):
            STABNConfig(num_classes=4, **bad)


def test_attention_readout_lets_the_branch_loss_train_the_temporal_attention():
    """Why the default design ``mil`` finds evidence frames (docs/experiments/stabn.md, "Held-out task").
    With the reference's linear readout, z_att does not depend on M_t: the branch's own loss
    never reaches the temporal attention (only the perception loss does, through the
    weighting). With the attention readout, z_k = Σ_t p_t s_kt (p_t: frame t's share of the
    weights M_t · M_s, s_kt: its M_s-weighted class score), and with softmax M_t the gradient of
    CE(z, y) on M_t's logits is, by the chain rule, −p_t (m_t − Σ_u p_u m_u) with
    m_t = s_yt − Σ_k q_k s_kt (q = softmax(z)): descent raises exactly the frames whose scores
    favour the label more than the attended average does."""
    from videoxai.stabn.designs import DEFAULT_DESIGN, DESIGNS

    assert DEFAULT_DESIGN == "mil"
    mil = DESIGNS["mil"].options
    assert mil["attention_readout"] == "attention" and mil["temporal_norm"] == "softmax"
    x, y = torch.rand(3, 3, 8, 64, 64), torch.tensor([0, 2, 3])
    backbone = DESIGNS["mil"].backbone
    fc = tiny(seed=4, backbone=backbone, **{**mil, "attention_readout": "fc"}).net.eval()
    out = fc(x)
    assert torch.autograd.grad(F.cross_entropy(out.att_logits, y), out.temporal_logits, allow_unused=True)[0] is None
    net = tiny(seed=4, backbone=backbone, **mil).net.eval()
    seen = {}
    handle = net.att_out.register_forward_hook(lambda m, a, o: seen.__setitem__("scores", o))
    try:
        out = net(x)
    finally:
        handle.remove()
    grad = torch.autograd.grad(F.cross_entropy(out.att_logits, y), out.temporal_logits)[0]           # (B, T)
    with torch.no_grad():
        ms = out.spatial[:, None]                                                             # (B, 1, T, h, w)
        s = (seen["scores"] * ms).sum((3, 4)) / ms.sum((3, 4))                               # (B, K, T)
        w = out.temporal * ms[:, 0].sum((2, 3))
        p = w / w.sum(1, keepdim=True)                                                        # (B, T)
        q = torch.softmax(out.att_logits, 1)                                                  # (B, K)
        m = s[torch.arange(3), y] - (q[:, :, None] * s).sum(1)                                # (B, T)
        expected = -p * (m - (p * m).sum(1, keepdim=True)) / 3                                # mean over the batch
    torch.testing.assert_close(grad, expected, rtol=1e-4, atol=1e-7)
    assert (grad.abs() > 0).all()


def test_branch_on_layer2_with_unit_kernels_reads_each_frame_alone():
    """branch_input="layer2", branch_temporal_kernel=1: the attention branch sees per-frame
    features through 1×1×1 temporal kernels, so changing one frame changes that frame's spatial
    map and no other (the reference's layer3 input smears it onto the neighbours); the maps are on
    the 16×16 grid of tiny-fine. layer2 input needs a backbone whose layer3 keeps its grid."""
    x = torch.rand(1, 8, 3, 64, 64)
    x2 = x.clone()
    x2[:, 3] = torch.rand(1, 3, 64, 64)
    changed = {}
    for name, kw in {"layer2": {"branch_input": "layer2", "branch_temporal_kernel": 1, "branch_spatial_kernel": 1},
                     "layer3": {}}.items():
        model = tiny(seed=4, backbone="tiny-fine", **kw)
        with torch.no_grad():
            a, b = model.outputs(x).spatial, model.outputs(x2).spatial
        assert a.shape == (1, 8, 16, 16)
        changed[name] = (a - b).abs().flatten(2).amax(2)[0] > 1e-6
    assert changed["layer2"].tolist() == [False] * 3 + [True] + [False] * 4
    assert changed["layer3"][[2, 4]].all()
    with pytest.raises(InputError, match="layer3"):
        STABNConfig(num_classes=4, backbone="r18", branch_input="layer2")
    with pytest.raises(InputError, match="branch_spatial_kernel"):
        STABNConfig(num_classes=4, branch_spatial_kernel=5)


def test_hires_backbone_keeps_a_small_shape_at_full_resolution_until_layer1():
    """tiny-hires: a 3×3 stem at stride 1 without ResNet's pool, so one pixel changed in the input
    changes the stem's output only within one pixel of it (tiny's 7×7/2 stem and pool spread it
    over a 2×2 cell of a 16×16 grid: a 9-px shape becomes ~2 cells before any block); the layers
    after it put the attention maps on the 16×16 grid of tiny-fine, and time is compared from
    layer3 on, as in the slow-only backbone (per-frame layer2 for the localising branch);
    tiny-hires-3d compares them in every layer."""
    x = torch.rand(1, 3, 8, 64, 64)
    x2 = x.clone()
    x2[..., 3, 20, 40] += 1.0
    for name, grid in (("tiny-hires", 64), ("tiny", 16)):
        net = tiny(seed=6, backbone=name).net
        with torch.no_grad():
            a, b = net.pool(net.stem(x)), net.pool(net.stem(x2))
        assert a.shape[-2:] == (grid, grid), name
        changed = (a - b).abs().sum((0, 1)) > 0                       # (T, h, w)
        assert changed[[0, 1, 2, 4, 5, 6, 7]].sum() == 0, name            # per frame
        ys, xs = np.nonzero(changed[3].numpy())
        if name == "tiny-hires":
            assert set(ys) == {19, 20, 21} and set(xs) == {39, 40, 41}
    model = tiny(seed=6, backbone="tiny-hires", branch_input="layer2", branch_temporal_kernel=1,
                 branch_spatial_kernel=1, temporal_norm="softmax")
    assert model.config.attention_size == (16, 16)
    kt = lambda net: [m.conv1.kernel_size[0] for m in (net.layer1[0], net.layer2[0], net.layer3[0], net.layer4[0])]  # noqa: E731
    assert kt(model.net) == [1, 1, 3, 3] and kt(tiny(backbone="tiny-hires-3d").net) == [3, 3, 3, 3]
    with torch.no_grad():
        assert model.outputs(torch.rand(1, 8, 3, 64, 64)).spatial.shape == (1, 8, 16, 16)


def test_plain_backbone_is_the_same_network_without_the_branch(tmp_path):
    """attention_branch=False: the layers up to layer4 and the head exist with the same shapes,
    nothing of the branch or the mechanism does; the forward is layer4 → pooling → head; the
    model saves, loads, trains with L_per alone and is refused by the `stabn` method."""
    plain, full = tiny(seed=3, attention_branch=False), tiny(seed=3)
    shapes = {k: v.shape for k, v in full.net.state_dict().items()}
    branch = set(STABN.GROUPS["attention_branch"]) | {"fusion"}
    assert {k: v.shape for k, v in plain.net.state_dict().items()} == \
        {k: v for k, v in shapes.items() if k.split(".")[0] not in branch}
    x = torch.rand(2, 8, 3, 64, 64)
    with torch.no_grad():
        out = plain.outputs(x)
        feats = plain.net.features(plain.preprocess(x).transpose(1, 2))
        expected = plain.net.fc(plain.net.layer4(feats).amax((2, 3, 4)))   # tiny pools by maximum
    assert out.att_logits is None and out.spatial is None and out.temporal is None
    torch.testing.assert_close(out.logits, expected)
    assert plain.name == "backbone-tiny"
    terms = stabn_loss(out, torch.tensor([0, 1]))
    assert terms.attention.item() == 0 and terms.total.item() == pytest.approx(terms.perception.item())
    save_stabn(plain, tmp_path / "p")
    back = vx.load_model(tmp_path / "p")
    with torch.no_grad():
        torch.testing.assert_close(back(x), plain(x))
    with pytest.raises(UnsupportedModelError, match="no attention branch|plain backbone"):
        vx.explain(back, np.zeros((8, 64, 64, 3), np.uint8), method="stabn")


def test_configs_saved_before_the_options_load_as_the_reference():
    """A videoxai.json written before pooling / temporal weighting were options rebuilds the
    network it was trained as: average pooling, a non-residual gate, dropout 0.5."""
    old = {"num_classes": 4, "num_frames": 8, "input_size": [64, 64], "backbone": "tiny", "dropout": 0.5,
           "shortest_edge": None, "mean": [0.5] * 3, "std": [0.25] * 3, "labels": None}
    cfg = STABNConfig.from_dict(old)
    assert (cfg.pool, cfg.temporal_attention, cfg.dropout) == ("avg", "gate", 0.5)
    new = STABNConfig(num_classes=4)
    assert (new.pool, new.temporal_attention, new.dropout) == ("attention", "residual", 0.0)
    assert STABNConfig(num_classes=4, attention_branch=False).pool == "max"   # nothing to pool by
    assert STABNConfig.from_dict(new.to_dict()) == new
    # saved before the attention normalisation / readout options: sigmoids and the K·T linear layer
    later = ("temporal_norm", "spatial_norm", "attention_readout", "branch_temporal_kernel",
             "branch_spatial_kernel", "branch_input")
    assert STABNConfig.from_dict({k: v for k, v in new.to_dict().items() if k not in later}) == new


# -- losses ---------------------------------------------------------------------------------------
def test_temporal_loss_known_answer_and_masking():
    pred = torch.tensor([[0.2, 0.8], [0.5, 0.5], [0.9, 0.1]], requires_grad=True)
    edited = torch.tensor([[0.0, 1.0], [float("nan"), float("nan")], [1.0, 0.0]])
    has = torch.tensor([True, False, True])
    loss = temporal_loss(pred, edited, has, gamma_t=2.0)
    # per clip: (0.04 + 0.04) / 2 = 0.04, 0 (no edit), (0.01 + 0.01) / 2 = 0.01; mean · γ_t
    assert loss.item() == pytest.approx(2.0 * (0.04 + 0.0 + 0.01) / 3)
    loss.backward()
    assert torch.isfinite(pred.grad).all() and torch.equal(pred.grad[1], torch.zeros(2))
    # without has_edit every clip counts: against all-zero edits, the mean of M_t²
    assert temporal_loss(pred.detach(), torch.zeros(3, 2)).item() == pytest.approx((0.34 + 0.25 + 0.41) / 3)
    with pytest.raises(InputError, match="both be"):
        temporal_loss(pred, edited[:, :1])


def test_temporal_loss_kl_known_answer_masking_and_auto():
    logits = torch.tensor([[0.0, 0.0], [3.0, -1.0], [1.0, 2.0], [5.0, 0.0]], requires_grad=True)
    pred = torch.exp(logits - logits.amax(1, keepdim=True))  # the max-normalised softmax
    edited = torch.tensor([[0.0, 1.0], [float("nan"), float("nan")], [1.0, 1.0], [0.0, 0.0]])
    has = torch.tensor([True, False, True, True])
    loss = temporal_loss(pred, edited, has, gamma_t=2.0, logits=logits, kind="kl")
    # clip 0: KL((0, 1) ‖ (½, ½)) = ln 2; clip 2: KL((½, ½) ‖ softmax(1, 2)); clips 1 (no edit)
    # and 3 (an all-zero edit: no distribution) add nothing; mean over the 4 clips · γ_t
    p = torch.softmax(torch.tensor([1.0, 2.0]), 0)
    kl2 = float((0.5 * torch.log(0.5 / p)).sum())
    assert loss.item() == pytest.approx(2.0 * (math.log(2) + kl2) / 4, rel=1e-6)
    loss.backward()
    assert torch.isfinite(logits.grad).all()
    assert torch.equal(logits.grad[1], torch.zeros(2)) and torch.equal(logits.grad[3], torch.zeros(2))
    with pytest.raises(InputError, match="logits"):
        temporal_loss(pred, edited, has, kind="kl")
    assert temporal_loss_kind("auto", "softmax") == "kl" and temporal_loss_kind("auto", "sigmoid") == "mse"
    assert temporal_loss_kind("mse", "softmax") == "mse"
    with pytest.raises(InputError, match="temporal loss"):
        temporal_loss_kind("l1", "softmax")


def test_temporal_loss_kl_teaches_a_confidently_wrong_softmax_attention_where_the_mse_cannot():
    # the attention a person edits: sure of the wrong frame (frame 0), the true window is 2–3
    logits = torch.tensor([[12.0, 0.0, -2.0, -3.0]], requires_grad=True)
    edited = torch.tensor([[0.0, 0.0, 1.0, 1.0]])
    pred = torch.exp(logits - logits.amax(1, keepdim=True))
    temporal_loss(pred, edited).backward()
    mse_grad = logits.grad.clone()
    logits.grad = None
    temporal_loss(pred.detach(), edited, logits=logits, kind="kl").backward()
    # the MSE's gradient is the attention value itself: ~1e-6 on the window frames, 0 on the top
    assert mse_grad.abs().max() < 1e-5
    # the KL's is softmax − target: the top frame pushed down, the window's frames up, by ~½
    assert logits.grad[0, 0] > 0.9 and (logits.grad[0, 2:] < -0.4).all()


def test_stabn_loss_is_the_sum_of_both_cross_entropies_and_l_temp():
    torch.manual_seed(0)
    out = STABNOutput(torch.randn(4, 3), torch.randn(4, 3), torch.rand(4, 5, 2, 2), torch.rand(4, 5))
    y = torch.tensor([0, 2, 1, 1])
    plain = stabn_loss(out, y)
    assert plain.perception.item() == pytest.approx(F.cross_entropy(out.logits, y).item())
    assert plain.attention.item() == pytest.approx(F.cross_entropy(out.att_logits, y).item())
    assert plain.temporal.item() == 0 and plain.total.item() == pytest.approx(plain.perception + plain.attention)
    edited = torch.ones(4, 5)
    has = torch.tensor([True, True, False, False])
    terms = stabn_loss(out, y, edited, has, gamma_t=3.0)
    expected = 3.0 * ((1 - out.temporal[:2]) ** 2).mean(1).sum() / 4
    assert terms.temporal.item() == pytest.approx(expected.item(), rel=1e-6)
    assert terms.total.item() == pytest.approx((plain.total + terms.temporal).item(), rel=1e-6)


# -- training, resume, saving ----------------------------------------------------------------------
def test_training_reports_both_branches_and_resumes_exactly(tmp_path, train_set):
    config = TrainConfig(epochs=2, batch_size=16, seed=3)
    val = open_dataset(DATA, "val")
    straight = fit(tiny(seed=5), train_set, config, out=tmp_path / "a", val=val)
    assert straight.history[1].loss < straight.history[0].loss
    assert set(straight.history[1].val) >= {"accuracy", "attention_accuracy", "window_hit", "window_corr"}
    assert straight.evaluation.clips == 16

    class Crash(Exception):
        pass

    def crash(record):
        raise Crash  # the process dies after epoch 1 was checkpointed

    with pytest.raises(Crash):
        fit(tiny(seed=5), train_set, config, out=tmp_path / "b", val=val, on_epoch=crash)
    assert json.loads((tmp_path / "b" / "history.json").read_text())[-1]["epoch"] == 1
    resumed = fit(tiny(seed=99), train_set, config, out=tmp_path / "b", val=val)  # weights: from the checkpoint
    for (name, a), b in zip(straight.model.net.state_dict().items(), resumed.model.net.state_dict().values()):
        torch.testing.assert_close(a, b, msg=name)
    assert [r.epoch for r in resumed.history] == [1, 2]
    assert resumed.history[1].loss == pytest.approx(straight.history[1].loss)
    assert resumed.history[1].val == pytest.approx(straight.history[1].val)
    history = json.loads((tmp_path / "b" / "history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2]
    # a finished run resumed again does nothing more
    again = fit(tiny(seed=5), train_set, config, out=tmp_path / "b")
    assert len(again.history) == 2
    with pytest.raises(InputError, match="other training settings"):
        fit(tiny(seed=5), train_set, TrainConfig(epochs=2, batch_size=8, seed=3), out=tmp_path / "b")


def test_warm_start_copies_the_trained_backbone_and_leaves_the_branch_fresh(train_set):
    """warm_started(epochs=1): stem … layer4 and the head are those of the plain backbone trained
    one epoch with the same seed (as `train(attention_branch=False)` builds it); the attention
    branch and the fusion are those of a fresh ST-ABN of that seed; 0 epochs: the fresh ST-ABN."""
    cfg = STABNConfig(num_classes=4)
    config = TrainConfig(epochs=1, batch_size=16, seed=4)
    warm = warm_started(cfg, train_set, config, 1)
    torch.manual_seed(4)
    plain = fit(build(num_classes=4, attention_branch=False), train_set, config).model
    fresh = warm_started(cfg, train_set, config, 0)
    plain_state, fresh_state = plain.net.state_dict(), fresh.net.state_dict()
    copied = 0
    for name, value in warm.net.state_dict().items():
        source = plain_state if name in plain_state else fresh_state
        torch.testing.assert_close(value, source[name], msg=name)
        copied += name in plain_state
    assert copied == len(plain_state)
    assert not torch.equal(warm.net.layer4[0].conv1.weight, fresh.net.layer4[0].conv1.weight)  # it trained
    with pytest.raises(InputError, match="warm_start"):
        warm_started(cfg, train_set, config, -1)


def test_resumed_train_does_not_repeat_the_warm_start(tmp_path, monkeypatch):
    """`train` run again on a finished (or checkpointed) output directory does no warm-start
    work — its checkpoint holds every weight — and gives the same model; a run stopped during
    the warm start continues the warm start from its last epoch, to the same model; warm-start
    epochs are labelled as such."""
    import videoxai.stabn.train as train_module

    calls = []
    real_fit = train_module.fit

    def spy(model, *args, **kwargs):
        calls.append(kwargs.get("stage"))
        return real_fit(model, *args, **kwargs)

    monkeypatch.setattr(train_module, "fit", spy)
    kw = dict(design="localising", input_size=32, config=TrainConfig(epochs=1, batch_size=8), warm_start=2)
    data = "synthetic:16,val=4"
    seen = []
    first = train(data, tmp_path / "a", on_epoch=seen.append, **kw)
    assert calls == ["warm-start", None] and [(r.stage, r.epoch) for r in seen] == [
        ("warm-start", 1), ("warm-start", 2), (None, 1)]
    assert str(seen[1]).startswith("warm-start epoch 2/2: ") and str(seen[2]).startswith("epoch 1/1: ")
    assert len(json.loads((tmp_path / "a" / "warm-start" / "history.json").read_text())) == 2
    assert not (tmp_path / "a" / "warm-start" / "checkpoint.pt").exists()  # the run's own holds everything

    calls.clear(), seen.clear()
    again = train(data, tmp_path / "a", on_epoch=seen.append, **kw)
    assert calls == [None] and seen == []  # no warm start, and nothing left to train
    for (name, a), b in zip(first.model.net.state_dict().items(), again.model.net.state_dict().values()):
        torch.testing.assert_close(a, b, msg=name)
    assert [asdict(r) for r in again.history] == [asdict(r) for r in first.history]
    with pytest.raises(InputError, match="started from 2 warm-start epochs, not 1"):
        train(data, tmp_path / "a", **{**kw, "warm_start": 1})

    class Crash(Exception):
        pass

    def crash(record):
        if record.stage == "warm-start" and record.epoch == 1:
            raise Crash  # stopped after the warm start's first epoch was checkpointed

    with pytest.raises(Crash):
        train(data, tmp_path / "b", on_epoch=crash, **kw)
    seen.clear()
    resumed = train(data, tmp_path / "b", on_epoch=seen.append, **kw)
    assert [(r.stage, r.epoch) for r in seen] == [("warm-start", 2), (None, 1)]
    for (name, a), b in zip(first.model.net.state_dict().items(), resumed.model.net.state_dict().values()):
        torch.testing.assert_close(a, b, msg=name)


def test_save_and_load_round_trip(tmp_path):
    model = tiny(num_classes=3, num_frames=4, size=48, labels=["a", "b", "c"])
    save_stabn(model, tmp_path / "m", metrics={"accuracy": 0.5})
    meta = json.loads((tmp_path / "m" / "videoxai.json").read_text())
    assert meta["loader"] == "stabn" and meta["config"]["num_frames"] == 4
    back = vx.load_model(tmp_path / "m")
    again = vx.load_model(f"stabn:{tmp_path / 'm'}")
    x = torch.rand(2, 4, 3, 48, 48)
    with torch.no_grad():
        torch.testing.assert_close(back(x), model(x))
        torch.testing.assert_close(again(x), model(x))
    assert back.labels == ["a", "b", "c"] and back.family == "stabn" and not back.training
    (tmp_path / "m" / "videoxai.json").write_text(json.dumps({**meta, "config": {**meta["config"], "num_frames": 6}}))
    with pytest.raises(UnknownModelError, match="does not match"):
        load_stabn(tmp_path / "m")
    (tmp_path / "m" / "videoxai.json").write_text(json.dumps({**meta, "loader": "hf"}))
    with pytest.raises(UnknownModelError, match="not 'stabn'"):
        load_stabn(tmp_path / "m")
    (tmp_path / "m" / "videoxai.json").write_text(json.dumps(meta))
    weights = tmp_path / "m" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])                 # a truncated download
    with pytest.raises(UnknownModelError, match=r"cannot read .*model\.safetensors"):
        load_stabn(tmp_path / "m")


def test_bundled_demo_beats_its_backbone_and_its_attention_finds_the_evidence():
    """Issue 15 part 2 floors, on 64 held-out clips (README "ST-ABN" has the 1000-clip numbers):
    demo-stabn is at least as accurate as its plain backbone (same layers, recipe, clips and
    seed; no attention branch), its temporal attention's top frame lies in the evidence window
    and its spatial attention peaks on the object far above chance."""

    model, backbone = vx.load_model("demo-stabn"), vx.load_model("demo-stabn-backbone")
    meta = json.loads((vx.models.ASSETS / "demo_stabn" / "videoxai.json").read_text())
    assert meta["config"]["backbone"] == "tiny-fine" and model.labels == meta["config"]["labels"]
    assert meta["training"]["command"].startswith("python scripts/train_demo.py --model stabn")
    assert meta["metrics"]["test"]["clips"] >= 1000
    assert not backbone.config.attention_branch and backbone.labels == model.labels
    for name in ("demo_stabn", "demo_stabn_backbone"):
        assert (vx.models.ASSETS / name / "model.safetensors").stat().st_size <= 1 * 2**20
    test = open_dataset("synthetic:16,test=64", "test")
    ev, base = evaluate(model, test), evaluate(backbone, test)
    assert ev.accuracy >= ACCURACY_FLOOR and ev.accuracy >= base.accuracy - 1 / 64
    assert ev.window_hit >= WINDOW_FLOOR > ev.window_chance
    assert ev.spatial_hit >= SPATIAL_FLOOR > 10 * ev.spatial_chance


# -- the explanation method -----------------------------------------------------------------------
def test_stabn_method_returns_the_models_own_attention():
    model = tiny(seed=2)
    frames = (np.random.default_rng(0).random((8, 64, 64, 3)) * 255).astype(np.uint8)
    exp = vx.explain(model, frames, method="stabn", refine=False)
    own = model.outputs(vx.Clip.from_array(frames).to_tensor())
    np.testing.assert_allclose(exp.temporal, (own.temporal / own.temporal.sum()).detach().numpy()[0], rtol=1e-5)
    np.testing.assert_allclose(exp.raw, own.spatial.detach().numpy()[0], rtol=1e-5)
    assert exp.spatial.shape == (8, 64, 64) and exp.cost.forward_passes == 1
    assert exp.target == int(own.logits.argmax())
    # the attention does not depend on the target; only the reported score does
    other = vx.explain(model, frames, method="stabn", target=(exp.target + 1) % 4, refine=False)
    np.testing.assert_allclose(other.raw, exp.raw)
    weighted = vx.explain(model, frames, method="stabn", weight_by_temporal=True, refine=False)
    np.testing.assert_allclose(weighted.raw, exp.raw * own.temporal.detach().numpy()[0][:, None, None], rtol=1e-5)


def test_stabn_methods_map_is_laid_on_the_pixels_its_cells_are_centred_on():
    # the bundled ST-ABN's 16 × 16 attention grid (stride 4, padded convolutions) sits on pixels
    # 0, 4, …, 60 of its 64: the map is the grid interpolated linearly between them, held past 60
    model = vx.load_model("demo-stabn")
    frames = (np.random.default_rng(1).random((8, 64, 64, 3)) * 255).astype(np.uint8)
    exp = vx.explain(model, frames, method="stabn", refine=False)
    raw = exp.raw.astype(np.float64)
    assert raw.shape == (8, 16, 16)
    pixels, centres = np.arange(64), 4.0 * np.arange(16)
    laid = np.apply_along_axis(lambda v: np.interp(pixels, centres, v), 2,
                               np.apply_along_axis(lambda v: np.interp(pixels, centres, v), 1, raw))
    lo = laid[laid > 0].min()
    np.testing.assert_allclose(exp.spatial, np.where(laid > 0, (laid - lo) / (laid.max() - lo), 0.0), atol=1e-5)
    assert exp.cost.forward_passes == 1            # found on the explanation's own pass


def test_stabn_method_refuses_other_models():
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.LazyLinear(3))
    other = vx.wrap(net, num_frames=8, input_size=16, layout="BCTHW", num_classes=3)
    with pytest.raises(UnsupportedModelError, match="ST-ABN"):
        vx.explain(other, np.zeros((8, 16, 16, 3), np.uint8), method="stabn")


# -- edits -----------------------------------------------------------------------------------------
def test_edit_file_round_trip_and_validation(tmp_path):
    edit = TemporalEdit(id="synthetic:train:0/3", levels=[1, 1, 0.5, 0, 0, 0, 0.5, 1], label=2)
    path = edit.save(tmp_path / "e.json")
    back = TemporalEdit.load(path)
    assert back == edit and back.levels == [1.0, 1.0, 0.5, 0.0, 0.0, 0.0, 0.5, 1.0] and back.saved
    with pytest.raises(InputError, match="frame 1: level 0.7"):
        TemporalEdit(id="x", levels=[1.0, 0.7])
    with pytest.raises(InputError, match="frames 1, 2 have no level"):
        check_levels([1.0, None, None, 0.0])
    with pytest.raises(InputError, match="level True"):
        check_levels([True, 0.0])
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(InputError, match="cannot read edit"):
        TemporalEdit.load(tmp_path / "bad.json")
    (tmp_path / "other.json").write_text('{"levels": [1.0]}')
    with pytest.raises(InputError, match="needs 'id'"):
        TemporalEdit.load(tmp_path / "other.json")


@pytest.mark.parametrize("levels, filled", [
    ([1, None, None, 1, None, 0], [1, 1, 1, 1, None, 0]),            # the reference's example
    ([None, 0, None, 0.5, None, 0.5, None], [None, 0, None, 0.5, 0.5, 0.5, None]),
    ([0, None, None, None, 0, None, 0], [0, 0, 0, 0, 0, 0, 0]),
    ([None, None], [None, None]),
])
def test_fill_between_equal_levels(levels, filled):
    assert fill_between(levels) == filled


def _window_levels(window, t=8):
    return [1.0 if window[0] <= i < window[1] else 0.0 for i in range(t)]


@pytest.mark.parametrize("limit", [0, -2, 1.5, True])
def test_collect_refuses_a_limit_that_keeps_no_clip(tmp_path, train_set, limit):
    with pytest.raises(InputError, match=r"limit must be a whole number of clips >= 1"):
        collect(tiny(seed=4), train_set, tmp_path / "edits", model_spec="in-memory", limit=limit)
    assert not (tmp_path / "edits").exists()  # refused before anything is written


def test_collect_keeps_the_misclassified_training_clips(tmp_path, train_set):
    model = tiny(seed=4)
    es = collect(model, train_set, tmp_path / "edits", model_spec="in-memory")
    with torch.no_grad():
        pred = model(train_set.pixels(slice(None))).argmax(1).numpy()
    wrong = np.flatnonzero(pred != train_set.labels)
    assert [it.index for it in es.items] == list(wrong)
    back = EditSet.open(tmp_path / "edits")
    assert back.num_frames == 8 and len(back.items) == len(wrong) and back.data == DATA
    frames, spatial = back.clip(back.items[0].key)
    np.testing.assert_array_equal(frames, train_set.frames[wrong[0]])
    assert spatial.shape == (8, 8, 8)
    it = back.items[0]
    back.save_edit(it.key, _window_levels(train_set.windows[it.index]))
    assert back.edits()[it.id].levels == _window_levels(train_set.windows[it.index])
    with pytest.raises(InputError, match="8 frames, got 3 levels"):
        back.save_edit(it.key, [1.0, 0.0, 1.0])
    with pytest.raises(InputError, match="no clip"):
        back.edit("nope")


def test_collect_refuses_data_whose_classes_are_not_the_models(tmp_path, train_set):
    """A 2-class model over the 4-class synthetic set stored labels 2 and 3 its collection could
    not name (the editor then failed): refused as fine-tuning refuses it, before anything is
    written; so are other class names where both sets name their classes."""
    with pytest.raises(InputError, match=r"has 4 classes; the model has 2"):
        collect(tiny(num_classes=2), train_set, tmp_path / "edits", model_spec="in-memory")
    with pytest.raises(InputError, match=r"classes are \['red square'.*the model's are \['a', 'b', 'c', 'd'\]"):
        collect(tiny(labels=["a", "b", "c", "d"]), train_set, tmp_path / "edits", model_spec="in-memory")
    assert not (tmp_path / "edits").exists()
    es = collect(tiny(labels=train_set.label_names), train_set, tmp_path / "edits", model_spec="in-memory",
                 misclassified_only=False, limit=2)  # the same names (or none: tiny()'s class_<i>) pass
    assert len(es.items) == 2


def test_training_data_is_what_the_model_records():
    model = tiny()
    assert training_data(model) is None  # built in memory: nothing recorded
    model.metadata = {"training": {"data": "folder:fold", "val_data": None}}
    assert training_data(model) == "folder:fold"
    model.metadata = {"training": {"finetune": {"data": "synthetic:32"}, "command": "…"}}
    assert training_data(model) == "synthetic:32"  # a fine-tuned model: the data it was fine-tuned on
    assert training_data(vx.load_model("demo-stabn")) == "synthetic:4000,val=500"


def test_finetune_pulls_temporal_attention_towards_the_edits(train_set):
    """Fine-tuning the bundled model with γ_t · L_temp on edits of its training clips (1.0 in the
    true window, 0.0 elsewhere) moves M_t of those clips towards the edits, unlike the same
    fine-tuning without L_temp; the frozen feature extractor (weights and batch-norm statistics)
    does not move, the branches do."""
    edits = {train_set.ids[i]: TemporalEdit(train_set.ids[i], _window_levels(train_set.windows[i]))
             for i in range(0, 48, 2)}
    targets = edit_targets(train_set, edits, 1.0)
    rows = np.flatnonzero(targets.has_edit)

    def mse(model, clips=rows):
        with torch.no_grad():
            m_t = model.outputs(train_set.pixels(clips)).temporal.numpy()
        truth = np.array([_window_levels(w) for w in train_set.windows[clips]])
        return float(((m_t - truth) ** 2).mean())

    config = finetune_config(epochs=6, lr=5e-3, batch_size=8)
    models = {}
    for gamma in (20.0, 0.0):
        models[gamma] = vx.load_model("demo-stabn")
        torch.manual_seed(123)
        finetune(models[gamma], train_set, edits, gamma_t=gamma, edited_only=True, config=config)
        after = torch.rand(3)
        torch.manual_seed(123)
        assert torch.equal(after, torch.rand(3))   # the caller's random stream is untouched
        # nothing is left frozen or in training mode
        assert all(p.requires_grad for p in models[gamma].parameters()) and not models[gamma].training
    start = vx.load_model("demo-stabn")
    assert mse(models[20.0]) < 0.9 * mse(start)
    assert mse(models[20.0]) < 0.9 * mse(models[0.0])
    # and on the clips that were not edited, M_t moved towards their (unseen) windows too
    unedited = np.flatnonzero(~targets.has_edit)
    assert mse(models[20.0], unedited) < 0.95 * mse(models[0.0], unedited)
    old, new = start.net.state_dict(), models[20.0].net.state_dict()
    for k in old:
        if k.split(".")[0] in STABN.GROUPS["feature_extractor"]:
            assert torch.equal(old[k], new[k]), k
    for k in ("temporal_fc2.weight", "att_layer4.0.conv1.weight", "fusion.0.weight", "fc.weight"):
        assert not torch.equal(old[k], new[k]), k


def test_kl_temporal_loss_reteaches_a_confident_softmax_attention_where_the_mse_cannot(train_set):
    """The bundled model's softmax attention peaks, confidently, inside each clip's window. Edits
    that put the evidence in frame 0 instead (a clearly different answer) are learnt with the KL
    form of L_temp — on the edited clips and on held-out ones — and not at all with the paper's
    MSE, whose gradient vanishes on a saturated softmax (videoxai.stabn.losses)."""
    val = open_dataset(DATA, "val")
    first = [1.0] + [0.0] * (train_set.num_frames - 1)
    edits = {train_set.ids[i]: TemporalEdit(train_set.ids[i], first)
             for i in range(len(train_set)) if train_set.windows[i][0] > 0}

    def top_is_first(model, data):
        with torch.no_grad():
            return float((model.outputs(data.pixels(np.arange(len(data)))).temporal.argmax(1) == 0).float().mean())

    start = vx.load_model("demo-stabn")
    assert top_is_first(start, val) == 0.0
    share = {}
    for kind in ("kl", "mse"):
        model = vx.load_model("demo-stabn")
        finetune(model, train_set, edits, gamma_t=1.0, edited_only=True, temporal_loss=kind,
                 config=finetune_config(epochs=10, lr=1e-2, batch_size=8))
        share[kind] = (top_is_first(model, train_set), top_is_first(model, val))
    assert share["kl"][0] >= 0.9 and share["kl"][1] >= 0.8        # measured 1.0 / 1.0
    assert share["mse"][0] <= 0.2 and share["mse"][1] <= 0.2      # measured 0.0 / 0.06


def test_finetune_rejects_edits_of_other_data(train_set):
    edits = {"synthetic:train:7/0": TemporalEdit("synthetic:train:7/0", [1.0] * 8)}
    with pytest.raises(InputError, match="not in synthetic"):
        finetune(tiny(), train_set, edits, config=finetune_config(epochs=1))
    with pytest.raises(InputError, match="no saved edits"):
        finetune(tiny(), train_set, {}, config=finetune_config(epochs=1))


def test_finetune_refuses_clips_that_share_an_id(train_set):
    # edits are matched by clip id: of two clips with one id, the last took the edit and the
    # first trained as unedited, without a word
    from dataclasses import replace

    data = train_set.subset([0, 1, 2])
    data = replace(data, ids=[data.ids[0], data.ids[1], data.ids[0]])
    edits = {data.ids[0]: TemporalEdit(data.ids[0], [1.0] * 8)}
    with pytest.raises(InputError, match=rf"^synthetic:48,val=16 \(train\): clip id '{data.ids[0]}' is given to "
                                         r"clips 0 and 2; edits are matched to clips by id, so each clip needs its own$"):
        finetune(tiny(), data, edits, config=finetune_config(epochs=1))


def test_freeze_schedule_unfreezes_at_the_given_epoch():
    net = tiny().net
    schedule = FreezeSchedule(("feature_extractor",), until=2)
    schedule.apply(net, 0)
    assert not net.layer3[0].conv1.weight.requires_grad and not net.layer3.training
    assert net.att_layer4.training and net.fc.weight.requires_grad
    schedule.apply(net, 2)
    assert net.layer3[0].conv1.weight.requires_grad and net.layer3.training
    with pytest.raises(InputError, match="unknown module groups"):
        FreezeSchedule(("backbone",))


# -- the command line --------------------------------------------------------------------------------
def test_cli_train_collect_finetune(tmp_path):
    from typer.testing import CliRunner

    from videoxai.cli import app

    run = lambda *args: CliRunner().invoke(app, ["stabn", *map(str, args)])  # noqa: E731
    r = run("train", "--out", tmp_path / "run", "--data", "synthetic:32,val=8", "--epochs", "1")
    assert r.exit_code == 0, r.output
    assert "val acc" in r.output and (tmp_path / "run" / "checkpoint.pt").is_file()
    model_dir = tmp_path / "run" / "model"
    meta = json.loads((model_dir / "videoxai.json").read_text())
    assert meta["training"]["data"] == "synthetic:32,val=8" and "stabn train" in meta["training"]["command"]
    # the defaults measured on the held-out flashing-shapes task (README "ST-ABN"): the design
    # "mil" on the full-resolution stem, 3 epochs of the plain backbone first, no label
    # smoothing, 8 clips a step
    assert meta["config"]["backbone"] == "tiny-hires" and meta["training"]["warm_start_epochs"] == 3
    assert meta["training"]["train_config"]["label_smoothing"] == 0.0 and meta["training"]["design"] == "mil"
    assert meta["training"]["train_config"]["batch_size"] == 8 and meta["config"]["padding"] == "replicate"
    assert (meta["config"]["attention_readout"], meta["config"]["temporal_norm"], meta["config"]["spatial_norm"],
            meta["config"]["pool"]) == ("attention", "softmax", "softmax", "max")

    r = run("collect", "--out", tmp_path / "edits", "--model", model_dir, "--data", "synthetic:32",
            "--all", "--limit", "4")
    assert r.exit_code == 0, r.output
    es = EditSet.open(tmp_path / "edits")
    assert len(es.items) == 4 and es.model == str(model_dir.resolve())
    data = open_dataset("synthetic:32", "train")
    for it in es.items[:2]:
        es.save_edit(it.key, _window_levels(data.windows[it.index]))

    r = run("finetune", tmp_path / "edits", "--out", tmp_path / "ft", "--epochs", "1", "--gamma-t", "2")
    assert r.exit_code == 0, r.output
    ft = json.loads((tmp_path / "ft" / "model" / "videoxai.json").read_text())["training"]
    assert ft["finetune"]["edits"] == 2 and ft["finetune"]["gamma_t"] == 2.0
    assert ft["finetune"]["frozen"] == ["feature_extractor"]
    # `stabn train`'s default attention is a softmax over the frames: "auto" is the KL divergence
    assert ft["finetune"]["temporal_loss"] == "kl"
    assert vx.load_model(tmp_path / "ft" / "model").family == "stabn"
    r = run("finetune", tmp_path / "edits", "--out", tmp_path / "ft2", "--temporal-loss", "l1")
    assert isinstance(r.exception, InputError) and "temporal loss must be one of" in str(r.exception)

    r = run("collect", "--out", tmp_path / "e2", "--model", tmp_path / "nothing", "--data", "synthetic:8")
    assert isinstance(r.exception, UnknownModelError)


def test_a_folder_of_videos_with_a_csv_trains(tmp_path):
    """`--data folder:DIR` (videos + labels.csv with windows): clips are decoded once, sampled to
    the model's frames, resized (shorter side, centre crop) and keep their windows."""
    from videoxai.data.video import write_video

    synth = open_dataset("synthetic:6", "train", frame_size=(48, 64))
    lines = ["video,label,start,end"]
    for i in range(6):
        write_video(synth.frames[i], tmp_path / f"v{i}.mp4", fps=8)
        lines.append(f"v{i}.mp4,{synth.labels[i]},{synth.windows[i][0]},{synth.windows[i][1]}")
    (tmp_path / "labels.csv").write_text("\n".join(lines) + "\n")
    data = open_dataset(f"folder:{tmp_path}", "train", frame_size=(32, 32),
                        labels=["red square", "red triangle", "blue square", "blue triangle"])
    assert data.frames.shape == (6, 8, 32, 32, 3) and list(data.labels) == list(synth.labels)
    np.testing.assert_array_equal(data.windows, synth.windows)
    assert data.ids == [f"v{i}.mp4" for i in range(6)]
    # the decoded clip is the synthetic clip, centre-cropped to 48x48 and shrunk to 32x32
    crop = torch.from_numpy(synth.frames[0][:, :, 8:56]).permute(0, 3, 1, 2).float()
    small = F.interpolate(crop, size=(32, 32), mode="bilinear", antialias=True).permute(0, 2, 3, 1)
    assert np.abs(data.frames[0].astype(float) - small.numpy()).mean() < 6  # h264 is lossy
    result = fit(tiny(size=32), data, TrainConfig(epochs=1, batch_size=3))
    assert len(result.history) == 1


def test_cli_trains_from_a_folder_with_named_labels(tmp_path):
    """`videoxai stabn train --data folder:DIR` with class *names* in labels.csv (issue 14, item 7):
    the classes are the sorted distinct names, saved with the model; clips get the index of their
    name; a validation folder with the same names maps onto them; mixed indices and names, and
    names differing only by case, are refused in one line."""
    from typer.testing import CliRunner

    from videoxai.cli import app
    from videoxai.data.datasets import load_dataset
    from videoxai.data.video import write_video

    synth = open_dataset("synthetic:8", "train", frame_size=(32, 32))
    names = ["zebra", "apple", "mango", "apple", "zebra", "mango", "apple", "zebra"]
    lines = ["video,label"]
    for i, name in enumerate(names):
        write_video(synth.frames[i], tmp_path / f"v{i}.mp4", fps=8)
        lines.append(f"v{i}.mp4,{name}")
    (tmp_path / "labels.csv").write_text("\n".join(lines) + "\n")
    ds = load_dataset(f"folder:{tmp_path}")
    assert ds.class_names == ["apple", "mango", "zebra"]
    assert [ds[i].label for i in range(8)] == [2, 0, 1, 0, 2, 1, 0, 2]
    r = CliRunner().invoke(app, ["stabn", "train", "--out", str(tmp_path / "run"), "--data", f"folder:{tmp_path}",
                                 "--val-data", f"folder:{tmp_path}", "--size", "32", "--epochs", "1",
                                 "--batch-size", "4"])
    assert r.exit_code == 0, r.output
    model = vx.load_model(tmp_path / "run" / "model")
    assert model.labels == ["apple", "mango", "zebra"] and model.num_classes == 3
    # the model's own classes map a second folder's names (a subset, another order) onto its indices
    (tmp_path / "labels.csv").write_text("video,label\nv0.mp4,zebra\nv1.mp4,apple\n")
    assert [s.label for s in load_dataset(f"folder:{tmp_path}", labels=model.labels)] == [2, 0]
    (tmp_path / "labels.csv").write_text("video,label\nv0.mp4,zebra\nv1.mp4,1\n")
    with pytest.raises(InputError, match="labels.csv:3: label is an index, but other rows give class names"):
        load_dataset(f"folder:{tmp_path}")
    (tmp_path / "labels.csv").write_text("video,label\nv0.mp4,Zebra\nv1.mp4,zebra\n")
    with pytest.raises(InputError, match="differ only by case"):
        load_dataset(f"folder:{tmp_path}")
    (tmp_path / "labels.csv").write_text("video,label\nv0.mp4,2\nv1.mp4,0\n")   # indices: as before
    assert load_dataset(f"folder:{tmp_path}").class_names is None


def test_cli_collect_reads_the_data_the_model_was_trained_on(tmp_path, monkeypatch):
    """`stabn collect` without --data: the data the model's videoxai.json records (a 2-class
    folder here, not the 4-class synthetic set it once read), said in the output; other data
    whose classes are not the model's is refused as finetune refuses it; a model that records
    no training data needs --data."""
    from typer.testing import CliRunner

    from videoxai.cli import app
    from videoxai.data.video import write_video

    synth = open_dataset("synthetic:6", "train", frame_size=(32, 32))
    for i, name in enumerate(["cat", "dog", "cat", "dog", "dog", "cat"]):
        write_video(synth.frames[i], tmp_path / "fold" / name / f"v{i}.mp4", fps=8)
    run = lambda *args: CliRunner().invoke(app, ["stabn", *map(str, args)])  # noqa: E731
    # trained with a path relative to where training ran; collect runs elsewhere
    monkeypatch.chdir(tmp_path)
    r = run("train", "--data", "folder:fold", "--size", "32", "--epochs", "1", "--warm-start", "0",
            "--batch-size", "3", "--out", tmp_path / "run")
    assert r.exit_code == 0, r.output
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    model_dir = tmp_path / "run" / "model"
    r = run("collect", "--model", model_dir, "--out", tmp_path / "edits", "--all", "--limit", "5")
    assert r.exit_code == 0, r.output
    said = " ".join(r.output.split())  # the console wraps long lines
    assert f"trained on: folder:{tmp_path / 'fold'}" in said and "collected 5 clips of 6 into" in said
    es = EditSet.open(tmp_path / "edits")
    assert es.data == f"folder:{tmp_path / 'fold'}" and es.labels == ["cat", "dog"]
    assert {it.label for it in es.items} <= {0, 1} and es.items[0].id.endswith(".mp4")

    r = run("collect", "--model", model_dir, "--out", tmp_path / "e2", "--data", "synthetic:8")
    assert isinstance(r.exception, InputError) and "has 4 classes; the model has 2" in str(r.exception)
    assert not (tmp_path / "e2").exists()

    meta = json.loads((model_dir / "videoxai.json").read_text())
    meta["training"] = {}  # as a model saved without its training facts
    (model_dir / "videoxai.json").write_text(json.dumps(meta))
    r = run("collect", "--model", model_dir, "--out", tmp_path / "e3")
    assert isinstance(r.exception, InputError) and "give --data" in str(r.exception)
    assert not (tmp_path / "e3").exists()


def test_the_recorded_data_spec_names_its_paths_absolutely(tmp_path, monkeypatch):
    from videoxai.stabn.data import recorded_spec

    (tmp_path / "clips").mkdir()
    (tmp_path / "ann.json").write_text("{}")
    monkeypatch.chdir(tmp_path)
    assert recorded_spec("folder:clips") == f"folder:{tmp_path / 'clips'}"
    assert recorded_spec("ucf24:clips,annotations=ann.json,x=1") == \
        f"ucf24:{tmp_path / 'clips'},annotations={tmp_path / 'ann.json'},x=1"
    for kept in ("synthetic:400,val=32", "folder:/abs/path", "folder:missing", "synthetic"):
        assert recorded_spec(kept) == kept
    # a folder with a comma in its name, given plain or quoted: recorded absolute and quoted, so
    # that it is read whole from another directory (it stayed relative: collect found nothing)
    (tmp_path / "a,b" / "c").mkdir(parents=True)
    for given in ("folder:a,b/c", 'folder:"a,b/c"', "folder:a,b/c,max_side=16"):
        recorded = recorded_spec(given)
        assert recorded.startswith(f'folder:"{tmp_path / "a,b" / "c"}"'), recorded
        monkeypatch.chdir("/")
        from videoxai.data.datasets import parse_data_spec
        assert parse_data_spec(recorded)[1] == str(tmp_path / "a,b" / "c")
        monkeypatch.chdir(tmp_path)
    assert recorded_spec("folder:a,b/c,max_side=16").endswith(",max_side=16")


def test_cli_trains_from_class_subfolders(tmp_path):
    """`videoxai stabn train --data folder:DIR` where DIR holds one subfolder per class and no
    labels.csv (UCF101's layout): the classes are the sorted subfolder names, saved with the model."""
    from typer.testing import CliRunner

    from videoxai.cli import app
    from videoxai.data.video import write_video

    synth = open_dataset("synthetic:6", "train", frame_size=(32, 32))
    for i, name in enumerate(["zebra", "apple", "zebra", "apple", "apple", "zebra"]):
        write_video(synth.frames[i], tmp_path / "data" / name / f"v{i}.mp4", fps=8)
    r = CliRunner().invoke(app, ["stabn", "train", "--out", str(tmp_path / "run"), "--data",
                                 f"folder:{tmp_path / 'data'}", "--size", "32", "--epochs", "1",
                                 "--batch-size", "3"])
    assert r.exit_code == 0, r.output
    model = vx.load_model(tmp_path / "run" / "model")
    assert model.labels == ["apple", "zebra"] and model.num_classes == 2


def test_flashing_shapes_benchmark_writes_its_splits_and_scores_a_model(tmp_path):
    """The held-out task as a user runs it (README "ST-ABN"): the script writes train / val /
    test folders whose masks hold the flashing shape in its window frames only, a default
    ST-ABN trains on them, and ``--score`` prints its row, the spatial chance being the
    flashing shape's share of a frame."""
    import subprocess
    import sys

    from videoxai.stabn.evaluate import spatial_agreement

    script = Path(__file__).resolve().parent.parent / "benchmarks" / "flashing_shapes.py"
    run = lambda *a: subprocess.run([sys.executable, str(script), *map(str, a)], capture_output=True,  # noqa: E731
                                    text=True, timeout=300)
    r = run(tmp_path, "--train", 8, "--val", 4, "--test", 6)
    assert r.returncode == 0, r.stderr
    assert "wrote 8 training, 4 validation and 6 test clips" in r.stdout
    classes = ["circle", "cross", "square", "triangle"]
    test = open_dataset(f"folder:{tmp_path / 'test'}", "test", labels=classes)
    masks = np.load(tmp_path / "test" / "masks.npz")["masks"]
    assert masks.shape == (6, 8, 64, 64) and set(open_dataset(f"folder:{tmp_path / 'test'}").label_names) <= set(classes)
    for m, (a, b) in zip(masks, test.windows):
        assert 2 <= b - a <= 3 and m[a:b].any((1, 2)).all() and not m[:a].any() and not m[b:].any()
    first = np.loadtxt(tmp_path / "val" / "labels.csv", dtype=str, delimiter=",", skiprows=1)[0]
    assert first[0] == "clip_0000.mp4"                                   # a third, disjoint split
    train = open_dataset(f"folder:{tmp_path / 'train'}", "train", labels=classes)
    fit(tiny(labels=classes), train, TrainConfig(epochs=1, batch_size=4), out=tmp_path / "run")
    r = run(tmp_path, "--score", tmp_path / "run" / "model")
    assert r.returncode == 0, r.stderr
    row = r.stdout.strip().splitlines()[-1].split("|")
    assert str(tmp_path / "run" / "model") in row[1] and len(row) == 7
    chance = spatial_agreement(np.ones((6, 8, 4, 4), np.float32), masks, test.windows)["spatial_chance"]
    assert f"({chance:.3f})" in row[5]
    # ST-ABN + human knowledge: a one-epoch model is wrong on most training clips, so the
    # simulated person edits some, and the fine-tuned model is saved beside it and scored
    r = run(tmp_path, "--knowledge", tmp_path / "run" / "model")
    assert r.returncode == 0, r.stderr
    edited = int(r.stdout.split(": ")[1].split()[0])
    assert 0 < edited <= 8 and "γ_t 10" in r.stdout
    assert str(tmp_path / "run" / "model-hk") in r.stdout.strip().splitlines()[-1]
    assert vx.load_model(tmp_path / "run" / "model-hk").family == "stabn"


def test_default_design_finds_the_flash_on_the_held_out_task():
    """Floors for the default design on the held-out task (docs/experiments/stabn.md, "Held-out task").
    ``tests/data/flash_mil`` is ``videoxai stabn train --data folder:DIR/train --val-data
    folder:DIR/val --threads 1`` (all defaults: design ``mil`` with replicate padding, 8 clips a
    step, seed 0) on ``python benchmarks/flashing_shapes.py DIR``; on the 300 test clips it scores
    accuracy 1.000, top frame in the flash 1.000 (chance 0.313) and spatial peak on the flashing
    shape 0.354 (chance 0.030). Here: the first 60 test clips, drawn by the generator in memory
    (seed 1, no video codec); measured 0.983 / 1.000 / 0.386. The paper's branch (trained at
    16 clips a step with zero padding) is at 0.467 on the top frame on these clips, and the same seed with zero padding
    peaked on the shape in none of the flash frames (a corner cell voted "triangle"), so the
    floors are about the design, not the task."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "flashing_shapes", Path(__file__).resolve().parent.parent / "benchmarks" / "flashing_shapes.py")
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    rng = np.random.default_rng(1)
    clips = [gen.clip(rng) for _ in range(60)]
    model = load_stabn(Path(__file__).parent / "data" / "flash_mil")
    assert model.config.attention_readout == "attention" and model.config.labels == list(gen.CLASSES)
    data = ClipSet(np.stack([c[0] for c in clips]), np.array([c[1] for c in clips]),
                   np.array([c[2] for c in clips]), [f"flash/{i}" for i in range(60)], list(gen.CLASSES),
                   "flashing_shapes", "test", np.stack([c[3] for c in clips]))
    e = evaluate(model, data)
    assert e.accuracy >= 0.9 and e.attention_accuracy >= 0.9
    assert e.window_hit >= 0.95 and e.window_chance < 0.35
    assert e.spatial_hit >= 0.3 and e.spatial_chance < 0.05


@pytest.mark.parametrize("spec, match", [
    ("synthetic:many", "option size must be an integer ≥ 0, got 'many'"),
    ("synthetic:10,colour=red", "no option 'colour'"),
    ("synthetic:10,seed", "is not KEY=VALUE"),
    ("nosuch:thing", "unknown dataset kind"),
])
def test_bad_dataset_specs_say_what_is_wrong(spec, match):
    with pytest.raises(InputError, match=match):
        open_dataset(spec, "train")


def test_synthetic_splits_are_disjoint_and_sized():
    train, val = open_dataset("synthetic:20,val=6,seed=3", "train"), open_dataset("synthetic:20,val=6,seed=3", "val")
    assert (len(train), len(val)) == (20, 6) and len(open_dataset("synthetic:20", "test")) == 5
    assert train.ids[0] == "synthetic:train:3/0" and val.ids[0] == "synthetic:val:3/0"
    assert not any(np.array_equal(a, b) for a in train.frames for b in val.frames)


# -- the human-knowledge experiment -------------------------------------------------------------------
def test_confound_is_painted_outside_the_window_with_the_documented_rates():
    from videoxai.stabn.experiment import Confound, add_confound, edited_classes, simulated_levels

    confound = Confound(label=1, train_rate=1.0, test_rate=0.5)
    train = open_dataset("synthetic:120", "train")
    painted, shown = add_confound(train, confound, seed=0)
    changed = (painted.frames != train.frames).any((2, 3, 4))           # (N, T) frames touched
    # only clips of the confounded class (all of those with room outside the window), and never
    # a frame of the window
    assert not shown[train.labels != 1].any() and shown[train.labels == 1].mean() > 0.9
    assert np.array_equal(changed.any(1), shown)
    for i in np.flatnonzero(shown):
        a, b = train.windows[i]
        assert not changed[i, a:b].any() and 2 <= changed[i].sum() <= 3
    green = np.array([30, 185, 60], np.uint8)
    assert all((painted.frames[i] == green).all(-1).sum() > 20 for i in np.flatnonzero(shown))
    np.testing.assert_array_equal(painted.masks, train.masks)            # the evidence is untouched
    test = open_dataset("synthetic:8,test=400", "test")
    _, shown_test = add_confound(test, confound, seed=0)
    for c in range(4):                                                   # decorrelated from the class
        assert 0.35 < shown_test[test.labels == c].mean() < 0.65
    assert simulated_levels((2, 5), 8) == [0, 0, 1, 1, 1, 0, 0, 0]
    assert simulated_levels((2, 5), 8, border=True) == [0, 0.5, 1, 1, 1, 0.5, 0, 0]
    assert edited_classes(np.array([1, 1, 1, 1, 2, 2, 3, 0]), 4) == [1]
    assert edited_classes(np.array([1, 1, 2, 2, 3, 0]), 4) == [1, 2]


def test_two_confounds_each_with_its_class_in_training_and_everywhere_at_test():
    from videoxai.stabn.experiment import CONFOUNDS, make_splits

    splits = make_splits(train=160, val=8, test=200)
    assert splits.confounds == CONFOUNDS and len(CONFOUNDS) == 2
    colours = [np.array(COLOURS[c.colour], np.uint8) for c in CONFOUNDS]

    def showing(data, rgb):  # (N,) clips with enough pixels of that colour
        return (data.frames == rgb).all(-1).sum((1, 2, 3)) > 20

    for c, rgb in zip(CONFOUNDS, colours):
        in_train = showing(splits.train, rgb)
        assert not in_train[splits.train.labels != c.label].any() and in_train[splits.train.labels == c.label].mean() > 0.7
    a, b = (showing(splits.test, rgb) for rgb in colours)
    assert 0.35 < a.mean() < 0.65 and 0.35 < b.mean() < 0.65
    assert not np.array_equal(a, b)                                      # each confound draws its own clips
    np.testing.assert_array_equal(splits.shown["test"], a | b)
    one = make_splits(train=160, val=8, test=200, confounds=CONFOUNDS[:1])
    np.testing.assert_array_equal(one.shown["test"], a)                  # the first is drawn as when alone


def test_experiment_start_models_follow_the_design_and_are_cached(tmp_path):
    from videoxai.stabn.designs import DESIGNS
    from videoxai.stabn.experiment import Settings, _config, base_model, make_splits

    splits = make_splits(train=24, val=8, test=8)
    settings = Settings(train=TrainConfig(epochs=1, batch_size=8))
    config = _config(splits, settings)                                  # default: the bundled demo's design
    assert config.backbone == DESIGNS["localising"].backbone and config.branch_input == "layer2"
    assert config.temporal_norm == "softmax" and config.branch_temporal_kernel == 1
    old = _config(splits, Settings(design="layer3"))
    assert old.backbone == "tiny" and old.branch_input == "layer3" and old.temporal_norm == "sigmoid"
    with pytest.raises(InputError, match="unknown ST-ABN design 'nope'"):
        _config(splits, Settings(design="nope"))
    model = base_model(splits, settings, seed=0, cache=tmp_path)
    assert model.net.config == config
    again = base_model(splits, settings, seed=0, cache=tmp_path)          # read back, not retrained
    for (name, a), (_, b) in zip(model.net.state_dict().items(), again.net.state_dict().items()):
        assert torch.equal(a, b), name
    assert len(list(tmp_path.iterdir())) == 1
    base_model(splits, Settings(design="layer3", train=settings.train), seed=0, cache=tmp_path)
    assert len(list(tmp_path.iterdir())) == 2                            # another design, another model


def test_human_knowledge_cures_a_shortcut_model_where_the_control_and_the_mse_do_not():
    """The floor of the human-knowledge experiment, on a fixed small set of clips.

    ``tests/data/stabn_shortcut`` is the experiment's seed-2 start model (``python
    scripts/stabn_experiment.py --seeds 2 --bases-only``: the ``localising`` design trained on the
    two-confound training split); it learnt the shortcuts. Edits of 600 fresh confounded
    training clips by the simulated person, fine-tuning at the experiment's settings (3 epochs
    here, for time), scored on 200 held-out test clips. Measured (start → control / the paper's
    MSE form / the KL form): accuracy 0.49 → 0.48 / 0.55 / 0.975, edited classes 0.64 → 0.64 /
    0.62 / 0.97, window hit 0.31 → 0.30 / 0.40 / 0.935."""
    from videoxai.stabn.experiment import Settings, edits_from_truth, finetuned, make_splits, scores

    model = load_stabn(Path(__file__).parent / "data" / "stabn_shortcut")
    splits = make_splits(train=600, val=8, test=200)
    edits = edits_from_truth(model, splits.train, "attention", max_edits=300, seed=0)
    assert len(edits) > 200                               # its attention misses most windows
    classes = sorted({e.label for e in edits.values()})
    start = scores(model, splits.test, classes)
    assert start["accuracy"] < 0.6 and start["window_hit"] < 0.4
    arms = {}
    for name, gamma, kind in (("control", 0.0, "auto"), ("mse", 10.0, "mse"), ("kl", 10.0, "auto")):
        settings = Settings(finetune=finetune_config(epochs=3), replay=1.0, temporal_loss=kind)
        arms[name] = scores(finetuned(model, splits, edits, settings, gamma, seed=0), splits.test, classes)
    assert arms["kl"]["accuracy"] >= 0.9 and arms["kl"]["window_hit"] >= 0.85
    assert arms["kl"]["edited_classes"] >= start["edited_classes"] + 0.2
    for other in ("control", "mse"):
        assert arms[other]["accuracy"] < 0.65 and arms[other]["window_hit"] < 0.45, (other, arms[other])


def test_simulated_person_selects_misclassified_or_wrong_attention_clips():
    from videoxai.stabn.evaluate import predict
    from videoxai.stabn.experiment import edits_from_truth, make_splits

    from dataclasses import replace

    model = vx.load_model("demo-stabn")  # right on every clip, attention in every window
    train = make_splits(train=48, val=8, test=8).train
    # so that both rules have clips to find: three clips mislabelled, and the "true" window of
    # eight others moved where the evidence is not (the model's attention then misses it)
    labels, windows = train.labels.copy(), train.windows.copy()
    labels[:3] = (labels[:3] + 1) % train.num_classes
    for i in range(3, 11):
        s, e = windows[i]
        windows[i] = (0, 1) if s >= 2 else (train.num_frames - 1, train.num_frames)
    train = replace(train, labels=labels, windows=windows)
    p = predict(model, train, description="check")
    wrong = set(np.flatnonzero(p.logits.argmax(1) != train.labels).tolist())
    top = p.temporal.argmax(1)
    missed = {i for i, (t, (s, e)) in enumerate(zip(top, train.windows)) if not s <= t < e}
    ids = {train.ids[i]: i for i in range(len(train))}
    assert wrong == {0, 1, 2} and missed >= set(range(3, 11)) and len(missed) < 20
    mis = edits_from_truth(model, train)
    assert {ids[c] for c in mis} == wrong
    att = edits_from_truth(model, train, "attention")
    assert {ids[c] for c in att} == wrong | missed
    capped = edits_from_truth(model, train, "attention", max_edits=len(wrong) + 1, seed=3)
    assert wrong <= {ids[c] for c in capped} and len(capped) == min(len(wrong | missed), len(wrong) + 1)
    for cid, edit in att.items():                                        # levels from the true window
        s, e = train.windows[ids[cid]]
        assert edit.levels == [1.0 if s <= t < e else 0.0 for t in range(train.num_frames)]
    with pytest.raises(InputError, match="select must be"):
        edits_from_truth(model, train, "loss")


def test_cli_train_by_design_name_and_explicit_flags_win(tmp_path):
    from typer.testing import CliRunner

    from videoxai.cli import app

    args = ["stabn", "train", "--data", "synthetic:8", "--val-data", "synthetic:8", "--size", "32",
            "--epochs", "1", "--batch-size", "4", "--design", "localising"]
    r = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "a"), "--warm-start", "1"])
    assert r.exit_code == 0, r.output
    config = vx.load_model(tmp_path / "a" / "model").net.config
    assert config.backbone == "tiny-fine" and config.branch_input == "layer2"
    assert config.temporal_norm == "softmax" and config.branch_temporal_kernel == 1
    r = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "b"), "--warm-start", "0",
                                 "--temporal-norm", "sigmoid"])
    assert r.exit_code == 0, r.output
    config = vx.load_model(tmp_path / "b" / "model").net.config
    assert config.temporal_norm == "sigmoid" and config.branch_input == "layer2"   # the flag won
    r = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "plain"), "--backbone-only"])
    assert r.exit_code == 0, r.output                                    # the design's backbone, no branch
    meta = json.loads((tmp_path / "plain" / "model" / "videoxai.json").read_text())
    assert meta["config"]["backbone"] == "tiny-fine" and not meta["config"]["attention_branch"]
    assert meta["training"]["design"] is None and meta["training"]["warm_start_epochs"] == 0
    r = CliRunner().invoke(app, [*args[:-1], "nope", "--out", str(tmp_path / "c")])
    assert isinstance(r.exception, InputError) and "unknown ST-ABN design 'nope'" in str(r.exception)


def test_the_demo_recipe_is_what_the_bundled_st_abn_was_trained_with():
    """``--recipe demo`` must keep reproducing the bundled model when the general defaults move
    (the batch went from 16 to 8 for the held-out task): the recipe, with the run's epochs and
    seed, equals the training settings recorded in the bundled model's metadata; fine-tuning
    starts from the same recipe."""
    from videoxai.stabn.knowledge import finetune_config
    from videoxai.stabn.train import TrainConfig

    recorded = json.loads((Path(vx.__file__).parent / "assets" / "demo_stabn" / "videoxai.json").read_text())
    recorded = recorded["training"]["train_config"]
    demo = TrainConfig.recipe("demo", epochs=recorded["epochs"], seed=recorded["seed"]).to_dict()
    assert {k: (list(v) if isinstance(v, tuple) else v) for k, v in demo.items()} == recorded
    assert TrainConfig().batch_size == 8 and finetune_config().batch_size == 16


def test_replicate_padding_gives_no_cell_a_position_of_its_own(tmp_path):
    """``padding="replicate"`` (the ``mil`` design's) reaches every padded convolution, survives
    saving, and does what it is for: on a clip of one flat colour every cell of the spatial
    attention is the same, where zero padding makes the border cells differ — the cue by which
    a corner cell became a constant class vote (docs/experiments/stabn.md, "Held-out task")."""
    from videoxai.stabn.designs import DESIGNS

    assert DESIGNS["mil"].options["padding"] == "replicate"
    options = dict(backbone="tiny-hires", attention_readout="attention", spatial_norm="softmax",
                   temporal_norm="softmax", pool="max")
    flat = torch.full((1, 8, 3, 64, 64), 0.4)
    spread = {}
    for padding in ("zeros", "replicate"):
        model = tiny(seed=2, padding=padding, **options)
        convs = [m for m in model.net.modules() if isinstance(m, torch.nn.Conv3d) and any(p > 0 for p in m.padding)]
        assert convs and all(m.padding_mode == padding for m in convs)
        with torch.no_grad():
            m_s = model.outputs(flat).spatial                       # (1, T, 16, 16)
        spread[padding] = float((m_s.amax((2, 3)) - m_s.amin((2, 3))).max())
        save_stabn(model, tmp_path / padding)
        back = load_stabn(tmp_path / padding)
        assert back.config.padding == padding
        with torch.no_grad():
            assert torch.equal(back.outputs(flat).spatial, m_s)
    assert spread["replicate"] < 1e-5 < 0.01 < spread["zeros"]
    with pytest.raises(InputError, match="padding must be 'zeros' or 'replicate'"):
        STABNConfig(num_classes=3, padding="reflect")


@pytest.mark.parametrize("kwargs", [{"input_size": 0}, {"num_frames": 0}, {"input_size": (64, 0)}])
def test_train_rejects_empty_clip_shapes_before_reading_data(tmp_path, kwargs):
    # a folder that does not exist: the shape is checked first, so the error names the shape
    with pytest.raises(InputError, match="frames and size must be ≥ 1"):
        train(f"folder:{tmp_path / 'missing'}", tmp_path / "out", **kwargs)


@pytest.mark.parametrize("content", [
    "[1, 2]", '{"format": 1}', '{"format": "x", "items": []}', '{"format": 1, "items": 5}',
    '{"format": 1, "items": [{"key": "a", "extra": 1}], "model": "m", "data": "d", "split": "train", '
    '"labels": ["a"], "num_frames": 8}',
    '{"format": 1, "items": [], "model": "m", "data": "d", "split": "train", "labels": [], "num_frames": "x"}',
])
def test_a_damaged_collection_is_one_error_naming_the_file(tmp_path, content):
    (tmp_path / "collection.json").write_text(content)
    with pytest.raises(InputError, match="collection.json is not an edit-set collection"):
        EditSet.open(tmp_path)
    (tmp_path / "collection.json").write_bytes(b"\xff\xfe")
    with pytest.raises(InputError, match="collection.json is not valid JSON"):
        EditSet.open(tmp_path)


@pytest.mark.parametrize("gamma_t", [-1.0, float("nan"), float("inf")])
def test_finetune_rejects_a_negative_or_undefined_gamma_t(gamma_t):
    # checked before anything is read: a negative weight would push away from the edits
    with pytest.raises(InputError, match="gamma_t must be a finite number ≥ 0"):
        finetune(None, None, {}, gamma_t=gamma_t)
    with pytest.raises(InputError, match="unfreeze_at must be an epoch ≥ 0"):
        FreezeSchedule(("feature_extractor",), -1)


def test_synthetic_seed_below_zero_is_a_spec_error():
    # numpy would reject it while rendering the first clip, as a bare ValueError
    with pytest.raises(InputError, match="option seed must be an integer ≥ 0"):
        open_dataset("synthetic:8,seed=-1", "train")


def test_a_folder_whose_clips_at_the_frame_size_exceed_memory_is_refused_before_decoding(tmp_path, monkeypatch):
    # a frame size of 100000 (--size meant as a clip count) failed in the first clip's resize:
    # "RuntimeError: ... can't allocate 960000000000 bytes"
    from videoxai.data.video import write_video

    synth = open_dataset("synthetic:2", "train", frame_size=(32, 32))
    for i in range(2):
        write_video(synth.frames[i], tmp_path / f"v{i}.mp4", fps=8)
    (tmp_path / "labels.csv").write_text("video,label\nv0.mp4,0\nv1.mp4,1\n")
    with pytest.raises(InputError, match=r"train split of 2 clips needs about 1192.1 GiB in memory .* "
                                         r"use fewer clips or a smaller frame size"):
        open_dataset(f"folder:{tmp_path}", "train", frame_size=(100000, 100000))


def test_a_synthetic_split_too_large_for_memory_is_refused_before_rendering(monkeypatch):
    import psutil

    from videoxai.data import synthetic

    rendered = []
    monkeypatch.setattr(synthetic.SyntheticVideos, "__getitem__", lambda self, i: rendered.append(i))
    with pytest.raises(InputError, match=r"train split of 1,000,000,000 clips needs about .* GiB in memory"):
        open_dataset("synthetic:1000000000", "train", frame_size=(32, 32))
    # the bound is the memory available, not a count
    monkeypatch.setattr(psutil, "virtual_memory", lambda: type("M", (), {"available": 2**20})())
    with pytest.raises(InputError, match="val split of 25 clips"):
        open_dataset("synthetic:100", "val", frame_size=(64, 64))
    assert rendered == []
