"""Gradient, CAM and attention-flow methods: known answers, references, clean-up, bad input.

The analytic model :class:`BoxScorer` scores only what lies inside a known box in known frames
(a fixed gate after a positive 1×1×1 convolution, then global average pooling and a linear head),
so the true attribution is known; the clip puts equally bright distractors outside the box and in
other frames. Rollout and relevance are checked against dense ``N × N`` references written
independently from the factored operators they use, and rollout on a transformer whose attention
is set by hand to flow to a known box and frames.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torchvision
from conftest import tiny_hf
from torch import nn
from torch.utils.checkpoint import checkpoint

import videoxai as vx
from videoxai.errors import InputError, UnsupportedModelError
from videoxai.methods import get
from videoxai.options import OptionError
from videoxai.models.attention import AttentionTap
from videoxai.models.hf import from_hf_module

T, S = 8, 16                                 # clip frames and size of the analytic model
BOX = (slice(4, 10), slice(8, 14))           # pixel rows, cols the model reads (feature cells 2..4, 4..6)
FRAMES = (2, 3)                              # the frames it reads (feature frame 1 of 4)
INPUT_METHODS = ["saliency", "grad_x_input", "integrated_gradients", "smoothgrad", "smoothgrad_sq"]
CAM_METHODS = ["gradcam", "gradcam_pp", "saliency_tubes"]
FAST = {"integrated_gradients": {"n_steps": 8}, "smoothgrad": {"n_samples": 4},
        "smoothgrad_sq": {"n_samples": 4}, "ep2d": {"iterations": 2}, "ep3d": {"iterations": 2},
        "step": {"iterations": 2}}


class Gate(nn.Module):
    """Multiplies a feature map by a fixed 0/1 mask over ``(T', H', W')``."""

    def __init__(self, mask: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("mask", mask)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.mask


class BoxScorer(nn.Module):
    """Class 0's logit is the mean of a positive feature over the box × frames; class 1's is minus
    that. Input ``(B, 3, 8, 16, 16)``; features ``(B, 4, 4, 8, 8)`` (stride 2 in time and space)."""

    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.features = nn.Sequential(nn.AvgPool3d(2), nn.Conv3d(3, 4, 1, bias=False), nn.ReLU())
        with torch.no_grad():
            self.features[1].weight.copy_(torch.rand(4, 3, 1, 1, 1, generator=g) + 0.5)
        mask = torch.zeros(4, 8, 8)
        mask[1, 2:5, 4:7] = 1
        self.gate = Gate(mask)
        self.pool = nn.AdaptiveAvgPool3d(1)
        self.fc = nn.Linear(4, 2)
        with torch.no_grad():
            self.fc.weight.copy_(torch.tensor([[1.0, 0.5, 2.0, 1.0], [-1.0, -0.5, -2.0, -1.0]]))
            self.fc.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.gate(self.features(x))).flatten(1))


def box_model() -> vx.VideoModel:
    return vx.wrap(BoxScorer(), num_frames=T, input_size=S, mean=(0, 0, 0), std=(1, 1, 1),
                   num_classes=2, cam_layer="gate")


def box_clip() -> np.ndarray:
    """Dim noise; a bright square inside the box in the key frames, and equally bright distractors
    outside the box in the key frames and inside the box's area in other frames."""
    rng = np.random.default_rng(0)
    f = (0.1 + 0.1 * rng.random((T, S, S, 3))).astype(np.float32)
    f[2:4, 5:9, 9:13] = 0.9       # evidence
    f[2:4, 11:15, 1:5] = 0.9      # distractor: right frames, wrong place
    f[6:8, 5:9, 9:13] = 0.9       # distractor: right place, wrong frames
    return f


def _in_box(t: int, h: int, w: int) -> bool:
    return t in FRAMES and BOX[0].start <= h < BOX[0].stop and BOX[1].start <= w < BOX[1].stop


# -- the analytic model: every method finds the box and the frames -------------------------------
@pytest.mark.parametrize("method", INPUT_METHODS + CAM_METHODS)
def test_analytic_model_every_method_finds_box_and_frames(method):
    exp = vx.explain(box_model(), box_clip(), method=method, target=0, refine=False, **FAST.get(method, {}))
    assert exp.spatial.shape == (T, S, S) and exp.temporal.shape == (T,)
    peak = np.unravel_index(np.argmax(exp.spatial), exp.spatial.shape)
    assert _in_box(*peak), f"{method} peaks at {peak}"
    assert int(np.argmax(exp.temporal)) in FRAMES
    assert exp.temporal[list(FRAMES)].sum() >= 0.74           # CAM: 0.75 after linear time alignment
    if method in INPUT_METHODS:                                # pixel gradients vanish outside exactly
        outside = np.ones_like(exp.spatial, dtype=bool)
        outside[FRAMES[0]:FRAMES[-1] + 1, BOX[0], BOX[1]] = False
        assert exp.spatial[outside].max() == 0
        assert exp.temporal[list(FRAMES)].sum() == pytest.approx(1.0)


def test_analytic_saliency_equals_the_true_gradient():
    model = box_model()
    x = vx.Clip.from_array(box_clip()).to_tensor()
    values = get("saliency")(model).attribute_pixels(x, 0).values[0]      # (T, 3, H, W)
    net = model.net
    n_features = 4 * 8 * 8
    # ∂logit0/∂x_c = Σ_k fc[0,k] · conv[k,c] / 8 (average pool) / n_features (global pool), in the box
    per_channel = (net.fc.weight[0] @ net.features[1].weight.view(4, 3)) / 8 / n_features
    expected = torch.zeros_like(values)
    expected[FRAMES[0]:FRAMES[-1] + 1, :, BOX[0], BOX[1]] = per_channel.view(3, 1, 1)
    torch.testing.assert_close(values, expected.detach(), rtol=1e-5, atol=1e-12)


def test_integrated_gradients_is_complete_on_a_piecewise_linear_path():
    # BoxScorer is linear along the path from black (positive weights, no bias), so IG is exact
    x = vx.Clip.from_array(box_clip()).to_tensor()
    pix = get("integrated_gradients")(box_model(), n_steps=4, return_convergence_delta=True).attribute_pixels(x, 0)
    assert abs(float(pix.extras["convergence_delta"][0])) < 1e-5
    assert float(pix.values.sum()) == pytest.approx(float(pix.logits[0, 0]), rel=1e-5)


@pytest.mark.parametrize("n", [50, 256, 257, 3000])
def test_gauss_legendre_nodes_are_captums_and_stay_exact_for_many_steps(n):
    # up to 256 nodes NumPy's rule (Captum's arithmetic); above, SciPy's O(n) rule, since NumPy's
    # eigenvalue solve made a large n_steps cost seconds before any pass (7.8 s at 3 000)
    from videoxai.methods.integrated_gradients import QUADRATURES
    alphas, weights = map(np.asarray, QUADRATURES["gausslegendre"](n))
    if n <= 256:
        nodes, w = np.polynomial.legendre.leggauss(n)
        assert np.array_equal(alphas, 0.5 * (1 + nodes)) and np.array_equal(weights, 0.5 * w)
    assert np.all(np.diff(alphas) > 0) and 0 < alphas[0] and alphas[-1] < 1
    assert weights.sum() == pytest.approx(1.0, abs=1e-12)
    for k in (1, 5, 11):  # exact for polynomials of degree < 2n: the integral of a^k on [0, 1]
        assert (weights * alphas ** k).sum() == pytest.approx(1 / (k + 1), abs=1e-12)


def test_cam_time_alignment_puts_feature_frames_at_their_centres():
    # feature frame 1 averages input frames 2 and 3: its evidence must be centred on 2.5. A
    # corner-aligned resize (scipy.ndimage.zoom, pytorch-grad-cam) would centre it on 7/3.
    exp = vx.explain(box_model(), box_clip(), method="gradcam", target=0, refine=False)
    assert float((exp.temporal * np.arange(T)).sum()) == pytest.approx(2.5, abs=1e-5)
    np.testing.assert_allclose(exp.temporal, [0, 0.125, 0.375, 0.375, 0.125, 0, 0, 0], atol=1e-6)
    attr = get("gradcam")(box_model()).attribute(vx.Clip.from_array(box_clip()).to_tensor(), 0)
    assert attr.maps.shape == (1, 4, 8, 8) and attr.time_align == "linear" and attr.space == "crop"


def test_saliency_tubes_is_gradcam_on_a_gap_linear_head():
    # for global average pooling + linear, the Grad-CAM weights are the classifier row / N
    model, x = box_model(), vx.Clip.from_array(box_clip()).to_tensor()
    tubes = get("saliency_tubes")(model).attribute(x, 0).maps
    cam = get("gradcam")(model).attribute(x, 0).maps
    torch.testing.assert_close(tubes / tubes.max(), cam / cam.max())


def test_saliency_tubes_refuses_a_head_that_is_not_gap_linear():
    torch.manual_seed(0)
    net = torchvision.models.video.r3d_18(num_classes=3)
    model = vx.wrap(net, num_frames=4, input_size=32, cam_layer="layer3")   # layer3 → layer4 → fc
    with pytest.raises(UnsupportedModelError, match="channels|global average pooling"):
        get("saliency_tubes")(model).attribute(torch.rand(1, 4, 3, 32, 32))


class TwoHeads(nn.Module):
    """A 3D CNN with a main head and an auxiliary head of as many classes defined after it (deep
    supervision); it returns the main head's logits, or the auxiliary's with ``aux=True``."""

    def __init__(self, aux: bool = False) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.features = nn.Sequential(nn.Conv3d(3, 6, 3, stride=(2, 4, 4), padding=1), nn.ReLU())
        self.head = nn.Linear(6, 3)
        self.aux_head = nn.Linear(6, 3)
        self.aux = aux

    def forward(self, x):
        pooled = self.features(x).mean((2, 3, 4))
        return (self.aux_head if self.aux else self.head)(pooled)


@pytest.mark.parametrize("aux", [False, True])
def test_saliency_tubes_reads_the_head_that_gives_the_logits_of_several(aux):
    # the last nn.Linear of as many classes was taken for the classifier: a network whose main head
    # comes before an auxiliary one was refused ("logits differ from that by up to …"), the
    # auxiliary head's weights read against the main head's logits
    net = TwoHeads(aux)
    model = vx.wrap(net, num_frames=4, input_size=16, num_classes=3)
    x = torch.rand(2, 4, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    assert get("saliency_tubes").supports(model)
    a, _ = _layer_tensors(model, x, [2, 0], layer="features")
    head = net.aux_head if aux else net.head
    ref = torch.einsum("bcthw,bc->bthw", a, head.weight[[2, 0]])
    ref = ref - ref.flatten(1).amin(1).view(-1, 1, 1, 1)
    torch.testing.assert_close(get("saliency_tubes")(model).attribute(x, [2, 0]).maps, ref)
    with pytest.raises(UnsupportedModelError, match="logits differ from that"):   # a head named is the one read
        get("saliency_tubes")(model, classifier="head" if aux else "aux_head").attribute(x, [2, 0])


class S3DStyle(nn.Module):
    """torchvision S3D's head on a small trunk: a ``(2, 4, 4)`` average pool with stride 1 (S3D's is
    ``(2, 7, 7)``), a ``1×1×1`` convolution as the classifier, then the mean of its output."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.features = nn.Sequential(nn.Conv3d(3, 6, 3, stride=(2, 4, 4), padding=1), nn.ReLU())
        self.avgpool = nn.AvgPool3d((2, 4, 4), stride=1)
        self.classifier = nn.Sequential(nn.Dropout(0.5), nn.Conv3d(6, 3, 1))

    def forward(self, x):
        return self.classifier(self.avgpool(self.features(x))).mean((2, 3, 4))


def test_saliency_tubes_reads_a_1x1x1_convolution_head_where_its_pool_covers_the_grid():
    # S3D's class weights are a 1×1×1 conv: the method looked for an nn.Linear only and refused it.
    # The maths holds where the pool's window covers the layer's grid (2 feature frames); on 4 the
    # windows count the first and last feature frames half: refused by the probe, whose random
    # clip's features are alike in every frame, so its numeric check alone passed
    net = S3DStyle()
    model = vx.wrap(net, num_frames=4, input_size=16, num_classes=3)              # grid 2×4×4
    x = torch.rand(2, 4, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    assert get("saliency_tubes").supports(model)
    a, _ = _layer_tensors(model, x, [2, 0], layer="features")
    ref = torch.einsum("bcthw,bc->bthw", a, net.classifier[1].weight.flatten(1)[[2, 0]])
    ref = ref - ref.flatten(1).amin(1).view(-1, 1, 1, 1)
    torch.testing.assert_close(get("saliency_tubes")(model).attribute(x, [2, 0]).maps, ref)
    longer = vx.wrap(S3DStyle(), num_frames=8, input_size=16, num_classes=3, cam_layer="features")  # 4×4×4
    reason = get("saliency_tubes").unsupported(longer)
    assert reason is not None and "averages the 4×4×4 grid of layer 'features' in 2×4×4 windows ('avgpool')" in reason


def test_the_layer_search_prefers_a_grid_with_space_to_a_later_one_of_frames_only():
    # S3D's head pools 2×7×7 windows with stride 1 and applies a 1×1×1 conv: on more than 16 frames
    # their outputs are T'×1×1 grids, the last ones, and a wrapped S3D's Grad-CAM read its class
    # logits per window: a map flat in space. A network with no spatial grid still gets its frames
    model = vx.wrap(S3DStyle(), num_frames=8, input_size=16, num_classes=3)      # features: 4×4×4
    assert model.locate_cam_layer() == "features"
    maps = get("gradcam")(model).attribute(torch.rand(1, 8, 3, 16, 16, generator=torch.Generator().manual_seed(2)), 1).maps
    assert maps.shape == (1, 4, 4, 4) and float(maps.std((2, 3)).max()) > 0
    frames_only = vx.wrap(nn.Sequential(nn.Conv3d(3, 4, (1, 8, 8), stride=(1, 8, 8)), nn.ReLU(), nn.Flatten(2),
                                        nn.Unflatten(2, (4, 1, 1)), nn.AdaptiveAvgPool3d(1), nn.Flatten(), nn.Linear(4, 2)),
                          num_frames=4, input_size=8, num_classes=2)
    assert frames_only.locate_cam_layer() == "3"
    # a wrapped Swin3D with the channels-last reshape its error names: the search took the pooled
    # (B, C, 1, 1, 1) read as C frames, and Grad-CAM refused it; its last stage's norm is the grid
    from torchvision.models.video.swin_transformer import SwinTransformer3d

    torch.manual_seed(0)
    swin = SwinTransformer3d(patch_size=[2, 4, 4], embed_dim=16, depths=[1, 1, 1, 1], num_heads=[1, 1, 2, 2],
                             window_size=[2, 4, 4], num_classes=5).eval()
    wrapped = vx.wrap(swin, num_frames=4, input_size=(32, 64), cam_reshape=lambda t: t.permute(0, 4, 1, 2, 3))
    assert wrapped.locate_cam_layer() == "norm"
    assert get("gradcam")(wrapped).attribute(torch.rand(1, 4, 3, 32, 64), 1).maps.shape == (1, 2, 1, 2)


def test_saliency_tubes_refuses_swin3d_without_a_forward_pass_and_reads_its_norm():
    # Swin3D's last stage goes through a LayerNorm before the pooling: the probe's forward (14 s for
    # swin3d_t on a CPU) was needed to refuse it. Its `norm` output is what the head averages
    from torchvision.models.video.swin_transformer import SwinTransformer3d

    from videoxai.models.torchvision_zoo import MODELS

    torch.manual_seed(0)
    net = SwinTransformer3d(patch_size=[2, 4, 4], embed_dim=16, depths=[1, 1, 1, 1], num_heads=[1, 1, 2, 2],
                            window_size=[2, 4, 4], num_classes=5).eval()
    spec = MODELS["swin3d_t"]
    model = vx.wrap(net, num_frames=4, input_size=(32, 64), cam_layer=spec.cam_layer, cam_reshape=spec.cam_reshape)
    runs = []
    net.register_forward_pre_hook(lambda *_: runs.append(1))
    reason = get("saliency_tubes").unsupported(model)
    assert reason is not None and "LayerNorm 'norm'" in reason and "layer='norm'" in reason and runs == []
    x = torch.rand(2, 4, 3, 32, 64, generator=torch.Generator().manual_seed(7))
    a, _ = _layer_tensors(model, x, [1, 2], layer="norm")
    ref = torch.einsum("bthwc,bc->bthw", a, net.head.weight[[1, 2]])
    ref = ref - ref.flatten(1).amin(1).view(-1, 1, 1, 1)
    torch.testing.assert_close(get("saliency_tubes")(model, layer="norm").attribute(x, [1, 2]).maps, ref)


def test_a_channels_last_layer_whose_channels_fit_in_the_input_is_refused_naming_the_reshape():
    # a small Swin3D (32 channels at its last stage) on 32-pixel frames: its final LayerNorm's
    # (B, T', H', W', C) output fits in the 8×32×32 input read as (B, C, T', H', W'), so the size
    # check let it through and Grad-CAM "mapped" its 4×4×32 (H', W', channels) grid without a word
    from torchvision.models.video.swin_transformer import SwinTransformer3d

    torch.manual_seed(0)
    swin = SwinTransformer3d(patch_size=[2, 4, 4], embed_dim=16, depths=[1, 1], num_heads=[2, 2],
                             window_size=[2, 4, 4], num_classes=4).eval()
    x = torch.rand(1, 8, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    plain = vx.wrap(swin, num_frames=8, input_size=32)
    assert plain.locate_cam_layer() == "norm"
    for name in ("gradcam", "gradcam_pp"):
        with pytest.raises(vx.UnsupportedModelError, match=r"^layer 'norm' of custom is a LayerNorm over the last axis "
                                                           r"of its output \(1, 4, 4, 4, 32\), so that axis holds its 32 "
                                                           r"features: it is laid out channels-last.*cam_reshape=lambda t"):
            get(name)(plain).attribute(x, 1)
    # with the reshape the error names, the map is over the (T', H', W') = 4×4×4 grid
    wrapped = vx.wrap(swin, num_frames=8, input_size=32, cam_reshape=lambda t: t.permute(0, 4, 1, 2, 3))
    assert get("gradcam")(wrapped).attribute(x, 1).maps.shape == (1, 4, 4, 4)


# -- CAM details -------------------------------------------------------------------------------
def small_cnn() -> vx.VideoModel:
    """A small non-linear 3D CNN (fast; gradients depend on the input)."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv3d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv3d(8, 8, 3, stride=2), nn.ReLU(),
                        nn.AdaptiveAvgPool3d(1), nn.Flatten(), nn.Linear(8, 3))
    return vx.wrap(net, num_frames=T, input_size=S, num_classes=3, cam_layer="3")


def _layer_tensors(model, x, target, layer="layer4"):
    """Activations and gradients of ``layer`` by plain hooks (the reference)."""
    store = {}

    def keep(_m, _i, out):
        out.retain_grad()
        store["a"] = out

    h = model.net.get_submodule(layer).register_forward_hook(keep)
    try:
        logits = model.net(model.preprocess(x).transpose(1, 2))
        logits.gather(1, torch.as_tensor(target)[:, None]).sum().backward()
    finally:
        h.remove()
    model.net.zero_grad(set_to_none=True)
    return store["a"].detach(), store["a"].grad


def test_a_network_without_a_grid_is_searched_once_not_on_every_supports_call():
    # the search remembered a layer it found but not its refusal: `videoxai methods --model`,
    # the evaluation runner and the service ask supports() of each CAM method, and each call ran
    # the search's forward pass again on a network that has no (T', H', W') grid
    flat = vx.wrap(nn.Sequential(nn.Flatten(), nn.Linear(4 * 3 * 8 * 8, 2)), num_frames=4, input_size=8,
                   layout="BTCHW")
    runs = []
    flat.net.register_forward_pre_hook(lambda *_: runs.append(1))
    for method in CAM_METHODS * 2:
        assert not get(method).supports(flat)
    assert len(runs) == flat.passes.forward == 1
    with pytest.raises(UnsupportedModelError, match="no layer of custom outputs a"):
        get("gradcam")(flat).attribute(torch.rand(1, 4, 3, 8, 8))
    assert len(runs) == 1
    # a working view of the model (vx.explain's) shares the refusal
    assert not get("gradcam").supports(flat.at_model_size()) and len(runs) == 1


def test_saliency_tubes_probes_a_model_once_not_once_per_explanation():
    # vx.explain explains a working view of the model (a copy per call): the probe's answer was
    # kept per view, so every explanation ran the probe's forward pass again (14 s for swin3d_t)
    model = small_cnn()
    runs = []
    model.net.register_forward_pre_hook(lambda *_: runs.append(1))
    frames = np.random.default_rng(0).integers(0, 256, size=(T, 20, 24, 3), dtype=np.uint8)  # not the model's size
    for expected in (2, 1, 1):                   # the probe, then the explanation's own forward
        runs.clear()
        vx.explain(model, frames, "saliency_tubes", target=0)
        assert len(runs) == expected
    assert get("saliency_tubes").supports(model) and len(runs) == 1
    other = vx.wrap(model.net, num_frames=T, input_size=S, num_classes=3, cam_layer="1")   # ReLU: no head on it
    assert "global average pooling" in get("saliency_tubes").unsupported(other)


def test_saliency_tubes_probes_a_network_again_after_its_head_is_replaced():
    # the probe's answer was kept per network object: a non-linear head replaced in place by a
    # linear one (and the network wrapped again) kept the old refusal, with the old head's numbers
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv3d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool3d(1), nn.Flatten(),
                        nn.Sequential(nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 3)))
    model = vx.wrap(net, num_frames=T, input_size=S, num_classes=3, cam_layer="1")
    assert "global average pooling" in get("saliency_tubes").unsupported(model)
    net[4] = nn.Linear(8, 3)
    model = vx.wrap(net, num_frames=T, input_size=S, num_classes=3, cam_layer="1")
    assert get("saliency_tubes").supports(model)
    x = torch.rand(1, T, 3, S, S, generator=torch.Generator().manual_seed(0))
    kept = []
    handle = net[1].register_forward_hook(lambda _m, _i, out: kept.append(out.detach()))
    with torch.no_grad():
        model(x)
    handle.remove()
    with model.inference():
        tubes = get("saliency_tubes")(model).attribute(x, 2).maps
    # the new head's class weights on the layer's channels, shifted by the minimum (the reference's)
    expected = torch.einsum("c,bcthw->bthw", net[4].weight[2].detach(), kept[0])
    expected = expected - expected.min()
    torch.testing.assert_close(tubes, expected)
    net[4] = nn.Sequential(nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 3))   # and back: refused again
    assert "global average pooling" in get("saliency_tubes").unsupported(model)


def test_saliency_tubes_leaves_a_network_that_does_not_run_as_wrapped_its_own_error():
    # a wrong layout: supports() raised the network's error out of the probe where the layer was
    # named, and refused the network for good where it was searched, also for a right wrapping of
    # the same network (the probe's answers are kept per network)
    net = nn.Sequential(nn.Conv3d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool3d(1), nn.Flatten(), nn.Linear(4, 2))
    frames = np.zeros((4, 16, 16, 3), np.uint8)
    for cam_layer in ("1", None):
        wrong = vx.wrap(net, num_frames=4, input_size=16, num_classes=2, layout="BTCHW", cam_layer=cam_layer)
        assert get("saliency_tubes").supports(wrong) == get("gradcam").supports(wrong) is True
        with pytest.raises(InputError, match="layout='BCTHW'"):
            vx.explain(wrong, frames, "saliency_tubes")
    right = vx.wrap(net, num_frames=4, input_size=16, num_classes=2)
    assert get("saliency_tubes").supports(right)
    assert vx.explain(right, frames, "saliency_tubes", target=1).options["layer"] == "1"


class InPlaceAfterLayer(nn.Module):
    """The head reads ``conv + 1``, added in place to the conv's output after the layer returned it."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv3d(3, 4, 3, stride=2, padding=1)
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        f = self.conv(x)
        f += 1.0
        return self.fc(f.mean((2, 3, 4)))


def test_saliency_tubes_probe_reads_the_layer_as_the_method_does():
    # the probe kept the output tensor, which the in-place add then changed: it saw a GAP-linear
    # head on `conv + 1` and called the model supported; the method (which reads the values the
    # layer returned) then refused it. torchvision's ResNet blocks add their identity in place.
    model = vx.wrap(InPlaceAfterLayer(), num_frames=4, input_size=8, num_classes=2, cam_layer="conv")
    reason = get("saliency_tubes").unsupported(model)
    assert reason is not None and "linear classifier after its CAM layer" in reason
    with pytest.raises(UnsupportedModelError, match="global average pooling and a linear classifier"):
        get("saliency_tubes")(model).attribute(torch.rand(1, 4, 3, 8, 8), 0)
    assert _no_hooks(model)


class Bright(nn.Module):
    """Large activations on a 8×32×32 grid: their per-channel sum (~1e6) is past float16's 65 504."""

    def __init__(self) -> None:
        super().__init__()
        self.feat = nn.Sequential(nn.Conv3d(3, 16, 1), nn.ReLU())
        self.fc = nn.Linear(16, 2)
        with torch.no_grad():
            self.feat[0].weight.uniform_(20.0, 40.0, generator=torch.Generator().manual_seed(0))
            self.feat[0].bias.fill_(10.0)

    def forward(self, x):
        return self.fc(self.feat(x).mean((2, 3, 4)))


@pytest.mark.parametrize("half", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("method", CAM_METHODS)
def test_cam_of_a_half_precision_network_equals_its_float32_map(method, half):
    # Grad-CAM++'s Σ A over the grid overflowed float16 to inf, and every α = 1 / (2 + g·inf) = 0:
    # a blank map; the maps are now computed in float32 from the layer's half-precision tensors.
    # saliency_tubes refused a bfloat16 network's GAP-linear head: its logits, rounded to 2⁻⁸,
    # missed the 1e-3 its check allowed
    torch.manual_seed(0)
    net = Bright()
    x = torch.rand(1, 8, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    maps = {}
    for dtype in (torch.float32, half):
        model = vx.wrap(Bright().to(dtype), num_frames=8, input_size=32, num_classes=2, cam_layer="feat")
        model.net.load_state_dict(net.state_dict())
        maps[dtype] = get(method)(model).attribute(x, 1).maps
    assert maps[half].dtype == torch.float32 and float(maps[torch.float32].max()) > 0
    tol = 1e-2 if half == torch.float16 else 5e-2   # bfloat16 keeps 8 bits: the layer's sum over channels cancels
    torch.testing.assert_close(maps[half], maps[torch.float32], rtol=tol,
                               atol=tol * float(maps[torch.float32].abs().max()))


def test_gradcam_per_frame_weights_match_reference():
    model = small_cnn()
    x = torch.rand(2, T, 3, S, S, generator=torch.Generator().manual_seed(1))
    # layer "1" feeds another convolution, so its gradient varies over frames (behind a global
    # average pool it would not, and per-frame weights would equal global ones)
    a, g = _layer_tensors(model, x, [1, 2], layer="1")
    attr = get("gradcam")(model, layer="1", per_frame_weights=True).attribute(x, [1, 2])
    ref = torch.relu((a * g.mean((3, 4), keepdim=True)).sum(1))     # w[c, t'] = mean over (H', W')
    assert a.shape[2] > 1 and ref.flatten(1).sum(1).min() > 0
    torch.testing.assert_close(attr.maps, ref, rtol=1e-5, atol=1e-9)
    glob = get("gradcam")(model, layer="1").attribute(x, [1, 2]).maps
    torch.testing.assert_close(glob, torch.relu((a * g.mean((2, 3, 4), keepdim=True)).sum(1)), rtol=1e-5, atol=1e-9)
    assert not torch.allclose(glob, attr.maps), "per-frame weights must differ from global ones"


def test_gradcam_pp_matches_the_paper_formula():
    model = small_cnn()
    x = torch.rand(2, T, 3, S, S, generator=torch.Generator().manual_seed(2))
    a, g = (t.double() for t in _layer_tensors(model, x, [2, 0], layer="3"))
    # Chattopadhay et al., eq. 19 with the sums over the whole (T', H', W') grid
    denom = 2 * g ** 2 + a.sum((2, 3, 4), keepdim=True) * g ** 3
    alpha = torch.where(g != 0, g ** 2 / torch.where(denom != 0, denom, torch.ones_like(denom)), 0)
    w = (alpha * g.clamp_min(0)).sum((2, 3, 4))
    ref = torch.relu(torch.einsum("bcthw,bc->bthw", a, w)).float()
    assert ref.flatten(1).sum(1).min() > 0
    attr = get("gradcam_pp")(model).attribute(x, [2, 0])
    torch.testing.assert_close(attr.maps, ref, rtol=1e-4, atol=1e-7)


def test_cam_backward_stops_at_the_layer_and_counts_passes():
    model = small_cnn()
    seen = []
    model.net[0].register_full_backward_hook(lambda *a: seen.append("first conv"))
    with vx.cost.CostMeter(model) as meter:
        get("gradcam")(model).attribute(torch.rand(2, T, 3, S, S))
    assert (meter.cost.forward_passes, meter.cost.backward_passes) == (2, 2)
    assert seen == [] and all(p.grad is None for p in model.parameters())


@pytest.mark.parametrize("family", ["timesformer", "videomae", "vivit"])
def test_transformer_gradcam_matches_manual_token_reshape(family):
    net = tiny_hf(family)
    model = from_hf_module(net)
    x = torch.rand(2, 8, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    module = model.submodule(model.cam_layer)
    store = {}

    def keep(m, i, o):
        h = o[0] if isinstance(o, tuple) else o
        h.retain_grad()
        store["h"] = h

    handle = module.register_forward_hook(keep)
    logits = net(pixel_values=model.preprocess(x)).logits
    handle.remove()
    logits[:, 1].sum().backward()
    h, g = store["h"].detach(), store["h"].grad
    t, n = 8 // (1 if family == "timesformer" else 2), 4
    if family == "timesformer":   # [CLS] + tokens ordered (row, col, frame)
        def vol(z): return z[:, 1:].reshape(2, n, n, t, -1).permute(0, 4, 3, 1, 2)
    elif family == "vivit":       # [CLS] + tokens ordered (frame, row, col)
        def vol(z): return z[:, 1:].reshape(2, t, n, n, -1).permute(0, 4, 1, 2, 3)
    else:                         # no CLS, (frame, row, col)
        def vol(z): return z.reshape(2, t, n, n, -1).permute(0, 4, 1, 2, 3)
    a, g = vol(h), vol(g)
    ref = torch.relu((a * g.mean((2, 3, 4), keepdim=True)).sum(1))
    assert ref.abs().sum() > 0, "the default CAM layer must carry gradient to the patch tokens"
    attr = get("gradcam")(model).attribute(x, 1)
    torch.testing.assert_close(attr.maps, ref, rtol=1e-4, atol=1e-7)
    assert attr.time_align == "repeat"


# -- rollout and relevance against dense references --------------------------------------------
def _normalised(a: torch.Tensor) -> torch.Tensor:
    """(A + I) / rowsum for a batch of matrices."""
    eye = torch.eye(a.shape[-1], dtype=a.dtype)
    m = a + eye
    return m / m.sum(-1, keepdim=True)


def _timesformer_dense(model, spatial: torch.Tensor, temporal: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Dense ``N × N`` mixing matrices of one layer from per-frame spatial ``(B, T, 1+P, 1+P)`` and
    per-patch temporal ``(B, P, T, T)`` attention; token ``1 + p·T + t`` is patch p in frame t."""
    grid = model.token_grid
    b, p, t = spatial.shape[0], grid.rows * grid.cols, grid.frames
    n = 1 + p * t
    ms, mt = torch.zeros(b, n, n, dtype=torch.float64), torch.zeros(b, n, n, dtype=torch.float64)
    idx = lambda q, f: 1 + q * t + f  # noqa: E731
    for bi in range(b):
        for f in range(t):
            ms[bi, 0, 0] += spatial[bi, f, 0, 0] / t
            for q in range(p):
                ms[bi, 0, idx(q, f)] = spatial[bi, f, 0, 1 + q] / t
                ms[bi, idx(q, f), 0] = spatial[bi, f, 1 + q, 0]
                for r in range(p):
                    ms[bi, idx(q, f), idx(r, f)] = spatial[bi, f, 1 + q, 1 + r]
        for q in range(p):
            for f in range(t):
                for f2 in range(t):
                    mt[bi, idx(q, f), idx(q, f2)] = temporal[bi, q, f, f2]
    return ms, mt


def _tap_matrices(model, rec_fn, b):
    grid = model.token_grid
    p = grid.rows * grid.cols
    out = []
    for layer in range(model.attention.num_layers):
        s = rec_fn(layer, "spatial").reshape(b, grid.frames, 1 + p, 1 + p).double()
        t = rec_fn(layer, "temporal").reshape(b, p, grid.frames, grid.frames).double()
        out.append(_timesformer_dense(model, s, t))
    return out


def test_rollout_timesformer_divided_matches_dense_product():
    model = from_hf_module(tiny_hf("timesformer"))
    x = torch.rand(1, 8, 3, 32, 32, generator=torch.Generator().manual_seed(4))
    with torch.no_grad(), AttentionTap(model.attention, range(model.attention.num_layers)) as tap:
        model(x)
    dense = _tap_matrices(model, lambda l, k: tap.records[(l, k)].full().mean(1), 1)
    rollout = torch.eye(dense[0][0].shape[-1], dtype=torch.float64)[None]
    for ms, mt in dense:                                   # layer by layer: temporal, then spatial
        rollout = _normalised(ms) @ _normalised(mt) @ rollout
    ref = model.token_grid.scores_to_volume(rollout[:, 0, 1:].float())
    attr = get("rollout")(model).attribute(x)
    torch.testing.assert_close(attr.maps, ref, rtol=1e-4, atol=1e-7)
    # the CLS row is a probability distribution: CLS self-mass + patches = 1
    assert float(rollout[0, 0].sum()) == pytest.approx(1.0)


def test_relevance_timesformer_divided_matches_dense_chefer():
    model = from_hf_module(tiny_hf("timesformer"))
    x = torch.rand(1, 8, 3, 32, 32, generator=torch.Generator().manual_seed(5))
    layers = range(model.attention.num_layers)
    with AttentionTap(model.attention, layers, grad=True) as tap:
        logits = model(x.clone().requires_grad_(True))
        logits[0, 3].backward()
    cam = lambda l, k: (tap.records[(l, k)].probs * tap.records[(l, k)].probs.grad).clamp_min(0).mean(1)  # noqa: E731
    dense = _tap_matrices(model, lambda l, k: cam(l, k).detach(), 1)
    model.zero_grad(set_to_none=True)
    r = torch.eye(dense[0][0].shape[-1], dtype=torch.float64)[None]
    for ms, mt in dense:                                   # R ← R + Ā R, in forward order
        r = r + mt @ r
        r = r + ms @ r
    ref = model.token_grid.scores_to_volume(r[:, 0, 1:].float())
    attr = get("attention_relevance")(model).attribute(x, 3)
    torch.testing.assert_close(attr.maps, ref, rtol=1e-4, atol=1e-8)
    assert ref.abs().sum() > 0


@pytest.mark.parametrize("family", ["videomae", "vivit", "timesformer_joint", "videomae_first"])
def test_joint_rollout_and_relevance_match_eager_attention(family):
    # timesformer_joint: TimeSformer with attention_type="joint_space_time" (was refused at load);
    # videomae_first: VideoMAE whose head reads its first patch token (rollout started from the
    # mean of all tokens)
    joint = {"timesformer_joint": {"attention_type": "joint_space_time"},
             "videomae_first": {"use_mean_pooling": False}}.get(family, {})
    variant, family = family, family.split("_")[0]
    net = tiny_hf(family, **joint)
    net.config._attn_implementation = "eager"
    model = from_hf_module(net)
    x = torch.rand(2, 8, 3, 32, 32, generator=torch.Generator().manual_seed(6))
    out = net(pixel_values=model.preprocess(x), output_attentions=True)
    atts = out.attentions
    for a in atts:
        a.retain_grad()
    out.logits[:, 2].sum().backward()
    pick = {"videomae": lambda m: m.mean(1), "videomae_first": lambda m: m[:, 0]}.get(variant, lambda m: m[:, 0, 1:])
    roll = torch.eye(atts[0].shape[-1])[None]
    rel = torch.eye(atts[0].shape[-1])[None].repeat(2, 1, 1)
    for a in atts:
        roll = _normalised(a.detach().mean(1)) @ roll
        rel = rel + (a.grad * a.detach()).clamp_min(0).mean(1) @ rel
    grid = model.token_grid
    fast = from_hf_module(tiny_hf(family, **joint))  # default (sdpa) attention: the tap reads q, k
    torch.testing.assert_close(get("rollout")(fast).attribute(x).maps,
                               grid.scores_to_volume(pick(roll)), rtol=1e-4, atol=1e-7)
    # relevance reads R − I: the identity, which no attention moved, was 1 on the first patch of
    # videomae_first (every map peaked there) and 1/N on every patch of videomae
    eye = torch.eye(atts[0].shape[-1])[None]
    torch.testing.assert_close(get("attention_relevance")(fast).attribute(x, 2).maps,
                               grid.scores_to_volume(pick(rel - eye)), rtol=1e-4, atol=1e-7)


def test_rollout_head_fusion_and_layers_options():
    model = from_hf_module(tiny_hf("vivit"))
    x = torch.rand(1, 8, 3, 32, 32)
    maps = {f: get("rollout")(model, head_fusion=f).attribute(x).maps for f in ("mean", "max", "min")}
    assert not torch.allclose(maps["mean"], maps["max"]) and not torch.allclose(maps["mean"], maps["min"])
    last = get("rollout")(model, layers=1).attribute(x).maps
    assert not torch.allclose(last, maps["mean"])
    with pytest.raises(InputError, match="head_fusion"):
        get("rollout")(model, head_fusion="median")
    # an empty list read no layer and gave an all-zero map
    for name in ("rollout", "staa", "attention_relevance"):
        with pytest.raises(InputError, match="layers is an empty list"):
            get(name)(model, layers=[]).attribute(x)


# -- rollout on a transformer whose attention flow is known -------------------------------------
def _routed_timesformer():
    """A tiny TimeSformer whose attention is set by hand: tokens carry only position and time
    embeddings (one-hot features), attention leaves the residual stream unchanged, the CLS query
    reads the patches of the box (rows 1-2, cols 2-3 of a 4×4 grid) and the temporal query reads
    frames 5 and 6."""
    from transformers import TimesformerConfig, TimesformerForVideoClassification
    cfg = TimesformerConfig(num_frames=8, image_size=32, patch_size=8, hidden_size=16, num_hidden_layers=2,
                            num_attention_heads=1, intermediate_size=16, num_labels=2)
    net = TimesformerForVideoClassification(cfg).eval()
    box = [r * 4 + c for r in (1, 2) for c in (2, 3)]
    with torch.no_grad():
        for p in net.parameters():
            p.zero_()
        emb = net.timesformer.embeddings
        emb.cls_token[0, 0, 3] = 10.0                         # feature 3: "I am the CLS token"
        emb.position_embeddings[0, 1:, 2] = 10.0             # feature 2: "ordinary patch"
        emb.position_embeddings[0, [1 + p for p in box], 2] = 0.0
        emb.position_embeddings[0, [1 + p for p in box], 1] = 10.0   # feature 1: "in the box"
        emb.time_embeddings[0, :, 5] = 10.0                  # feature 5: "ordinary frame"
        emb.time_embeddings[0, [5, 6], 5] = 0.0
        emb.time_embeddings[0, [5, 6], 4] = 10.0             # feature 4: "key frame"
        for layer in net.timesformer.encoder.layer:
            for ln in (layer.layernorm_before, layer.temporal_layernorm):
                ln.weight.fill_(1.0)
            d = cfg.hidden_size
            sq, tq = layer.attention.attention.qkv, layer.temporal_attention.attention.qkv
            sq.weight[0, 3] = 20.0                           # spatial query: CLS-ness
            sq.weight[d, 1] = 20.0                           # spatial key: in-the-box
            tq.bias[0] = 20.0                                # temporal query: constant
            tq.weight[d, 4] = 20.0                           # temporal key: key-frame-ness
    return net


def test_rollout_follows_attention_set_by_hand():
    model = from_hf_module(_routed_timesformer())
    attr = get("rollout")(model).attribute(torch.rand(1, 8, 3, 32, 32))
    maps = attr.maps[0]                                        # (T, 4, 4)
    peak = np.unravel_index(int(maps.argmax()), maps.shape)
    assert peak[0] in (5, 6) and peak[1] in (1, 2) and peak[2] in (2, 3), peak
    inside = maps[[5, 6]][:, 1:3, 2:4].sum() / maps.sum()
    assert inside > 5 * 8 / 128           # 8 of the 128 patch tokens hold ≥ 5× their uniform share
    assert int(attr.temporal[0].argmax()) in (5, 6)


# -- clean-up, determinism, bad input ----------------------------------------------------------
def _no_hooks(model) -> bool:
    return all(not m._forward_hooks and not m._forward_pre_hooks and not m._backward_hooks
               for m in model.modules())


@pytest.mark.parametrize("method", INPUT_METHODS + CAM_METHODS)
def test_model_left_as_it_was_cnn(method):
    model = box_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    get(method)(model, **FAST.get(method, {})).attribute(vx.Clip.from_array(box_clip()).to_tensor())
    assert _no_hooks(model) and all(p.requires_grad and p.grad is None for p in model.parameters())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


@pytest.mark.parametrize("method", ["gradcam", "gradcam_pp", "rollout", "attention_relevance", "saliency"])
def test_model_left_as_it_was_transformer(method):
    model = from_hf_module(tiny_hf("timesformer"))
    get(method)(model).attribute(torch.rand(1, 8, 3, 32, 32))
    assert _no_hooks(model) and all(p.requires_grad and p.grad is None for p in model.parameters())


class Exploding(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = BoxScorer()

    def forward(self, x):
        self.body.gate(self.body.features(x))
        raise RuntimeError("boom")


@pytest.mark.parametrize("method", ["gradcam", "saliency_tubes", "integrated_gradients", "saliency"])
def test_hooks_and_flags_restored_after_an_exception_inside_forward(method):
    model = vx.wrap(Exploding(), num_frames=T, input_size=S, num_classes=2, cam_layer="body.gate")
    with pytest.raises(RuntimeError, match="boom"):
        get(method)(model).attribute(torch.rand(1, T, 3, S, S), target=0)
    assert _no_hooks(model) and all(p.requires_grad for p in model.parameters())


@pytest.mark.parametrize("method", CAM_METHODS)
def test_a_constructed_cam_method_explains_the_model_it_is_given(method):
    # vx.explain runs a constructed method, as a copy, on the model it is given; the CAM methods kept
    # their hook on the layer of the model they were built for: "layer 'gate' did not run"
    built_for, other = box_model(), box_model()
    with torch.no_grad():
        other.net.fc.weight[0] = torch.tensor([3.0, 0.1, 0.5, 2.0])    # other channels count
    shared = get(method)(built_for)
    got = vx.explain(other, box_clip(), shared, target=0, refine=False).raw
    np.testing.assert_array_equal(got, vx.explain(other, box_clip(), method, target=0, refine=False).raw)
    assert not np.allclose(got, vx.explain(built_for, box_clip(), shared, target=0, refine=False).raw)
    # a method whose model is set by hand reads that model's layer (and saliency_tubes its head)
    moved, x = copy.copy(shared), vx.Clip.from_array(box_clip()).to_tensor()
    moved.model = other
    torch.testing.assert_close(moved.attribute(x, 0).maps, get(method)(other).attribute(x, 0).maps, rtol=0, atol=0)
    assert _no_hooks(built_for) and _no_hooks(other)


@pytest.mark.parametrize("method", ["rollout", "attention_relevance", "staa"])
def test_a_constructed_attention_method_explains_a_shallower_model_it_is_given(method):
    # the layer indices resolved on the model the method was built for ran past the other's (IndexError)
    deep, shallow = from_hf_module(tiny_hf("timesformer", num_hidden_layers=3)), from_hf_module(tiny_hf("timesformer"))
    clip = np.random.default_rng(0).random((8, 32, 32, 3), dtype=np.float32)
    got = vx.explain(shallow, clip, get(method)(deep), target=0, refine=False).raw
    np.testing.assert_array_equal(got, vx.explain(shallow, clip, method, target=0, refine=False).raw)
    with pytest.raises(OptionError, match=f"method '{method}': option layers: layer 2 out of range for a 2-layer"):
        vx.explain(shallow, clip, get(method)(deep, layers=[2]), target=0)


def test_layer_that_runs_twice_is_refused():
    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv3d(3, 4, 1)
            self.fc = nn.Linear(4, 2)

        def forward(self, x):                 # a shared layer, applied to two streams
            return self.fc(self.conv(x).mean((2, 3, 4)) + self.conv(x.flip(2)).mean((2, 3, 4)))

    model = vx.wrap(Twice(), num_frames=4, input_size=8, cam_layer="conv")
    with pytest.raises(UnsupportedModelError, match="more than once"):
        get("gradcam")(model).attribute(torch.rand(1, 4, 3, 8, 8))
    assert _no_hooks(model)


class AuxiliaryMap(nn.Module):
    """Returns its logits and, beside them, a feature map computed from the body (deep supervision,
    a segmentation head): the last layer with a (T', H', W') grid does not reach the logits."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Conv3d(3, 8, 3, stride=2, padding=1)
        self.aux = nn.Conv3d(8, 4, 1)
        self.fc = nn.Linear(8, 2)

    def forward(self, x):
        f = torch.relu(self.body(x))
        return self.fc(f.mean((2, 3, 4))), self.aux(f)


@pytest.mark.parametrize("method", ["gradcam", "gradcam_pp"])
def test_a_layer_that_does_not_reach_the_logits_is_named_in_a_one_line_error(method):
    # autograd's "element 0 of tensors does not require grad and does not have a grad_fn" named no layer
    model = vx.wrap(AuxiliaryMap(), num_frames=4, input_size=16, num_classes=2, output=0)
    x = torch.rand(1, 4, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    for layer, found in ((None, r" \(found as the last layer with a \(T', H', W'\) grid\)"), ("aux", "")):
        with pytest.raises(UnsupportedModelError, match=f"the logits of custom do not depend on layer 'aux'{found} in "
                                                        r"autograd's graph; choose a layer on the path to the logits"):
            get(method)(model, layer=layer).attribute(x, 1)
        assert _no_hooks(model) and all(p.requires_grad for p in model.parameters())
    assert float(get(method)(model, layer="body").attribute(x, 1).maps.abs().sum()) > 0


class LinearProbe(nn.Module):
    """A frozen backbone run under ``torch.no_grad()`` and a linear probe: the usual way of
    training a classifier on fixed features, and a network whose logits have no pixel gradient."""

    def __init__(self) -> None:
        super().__init__()
        self.backbone = nn.Conv3d(3, 8, 3, stride=2, padding=1)
        self.fc = nn.Linear(8, 2)

    def forward(self, x):
        with torch.no_grad():
            f = torch.relu(self.backbone(x))
        return self.fc(f.mean((2, 3, 4)))


@pytest.mark.parametrize("method", INPUT_METHODS + ["gradcam", "ep2d", "ep3d", "step"])
def test_a_network_that_runs_under_no_grad_is_named_in_a_one_line_error(method):
    # ep2d / ep3d / STEP: masks shaped by the area term alone gave an all-zero map, put down to "the
    # model's output may not change under what the method varies"
    # autograd's "element 0 of tensors does not require grad and does not have a grad_fn" said neither
    # which model nor why
    model = vx.wrap(LinearProbe(), num_frames=4, input_size=16, num_classes=2)
    what = "layer 'backbone' .*" if method == "gradcam" else "the pixels "
    with pytest.raises(UnsupportedModelError, match=f"the logits of custom do not depend on {what}in autograd's "
                                                    "graph.*torch.no_grad"):
        get(method)(model, **FAST.get(method, {})).attribute(torch.rand(1, 4, 3, 16, 16), 1)
    assert _no_hooks(model) and all(p.requires_grad for p in model.parameters())


@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore:.*quantiz:UserWarning")
@pytest.mark.parametrize("method, options", [("attention_relevance", {}), ("staa", {"gradient_weighted": True})])
def test_attention_gradients_of_a_quantized_transformer_are_refused_naming_its_quantized_layers(method, options):
    # torch.autograd.grad's "appears to not have been used in the graph" (relevance), and an
    # AttributeError on a None gradient deep in STAA; the attention itself is still read
    net = torch.ao.quantization.quantize_dynamic(tiny_hf("videomae"), {nn.Linear}, dtype=torch.qint8)
    model = from_hf_module(net)
    x = torch.rand(1, 8, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with pytest.raises(UnsupportedModelError, match=r"^method '.*' needs the gradient of videomae's logits, which "
                                                    r"its quantized layers 'videomae.encoder.layer.0.attention."
                                                    r"attention.query' .* and \d+ more do not pass"):
        get(method)(model, **options)
    assert float(get("staa")(model).attribute(x, 1).maps.max()) > 0


@pytest.mark.parametrize("method, options", [("attention_relevance", {}), ("staa", {"gradient_weighted": True})])
def test_attention_gradients_of_a_head_run_under_no_grad_are_named_in_one_line(method, options):
    net = tiny_hf("videomae")
    net.classifier.forward = torch.no_grad()(net.classifier.forward)
    model = from_hf_module(net)
    with pytest.raises(UnsupportedModelError, match=r"^the logits of videomae do not depend on its attention in "
                                                    r"autograd's graph .*torch.no_grad"):
        get(method)(model, **options).attribute(torch.rand(1, 8, 3, 32, 32), 1)
    assert _no_hooks(model) and all(p.requires_grad for p in model.parameters())


class CheckpointedBoxScorer(BoxScorer):
    """:class:`BoxScorer` with its features and gate in a ``torch.utils.checkpoint`` segment, as
    long-video models checkpoint their blocks: the reentrant variant runs the segment under
    ``no_grad`` and recomputes it, hooks included, in the backward pass; the other one recomputes
    the tensors it saved."""

    def __init__(self, reentrant: bool) -> None:
        super().__init__()
        self.reentrant = reentrant

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = checkpoint(lambda t: self.gate(self.features(t)), x, use_reentrant=self.reentrant)
        return self.fc(self.pool(h).flatten(1))


@pytest.mark.filterwarnings("ignore:None of the inputs have requires_grad")
@pytest.mark.parametrize("reentrant", [True, False])
@pytest.mark.parametrize("method, options", [
    *((m, FAST.get(m, {})) for m in INPUT_METHODS), ("gradcam", {}), ("gradcam_pp", {}),
    ("gradcam", {"layer": "features.1"}), ("ep3d", dict(iterations=4, areas=[0.05], lr=1.0, game="preserve", min_evidence=0.0))])
def test_a_checkpointed_network_gets_the_map_of_the_same_network_unchecked(method, options, reentrant):
    # reentrant: torch.autograd.grad raised "incompatible with .grad()" (input gradients, ep3d),
    # and a CAM layer in the segment "does not reach the logits"; non-reentrant: a CAM layer in the
    # middle of the segment, rerun by the backward, "runs more than once per forward pass"
    kw = dict(num_frames=T, input_size=S, mean=(0, 0, 0), std=(1, 1, 1), num_classes=2, cam_layer="gate")
    ref = vx.explain(vx.wrap(BoxScorer(), **kw), box_clip(), method=method, target=0, refine=False, **options)
    model = vx.wrap(CheckpointedBoxScorer(reentrant), **kw)
    got = vx.explain(model, box_clip(), method=method, target=0, refine=False, **options)
    assert ref.raw.max() > ref.raw.min()
    np.testing.assert_allclose(got.raw, ref.raw, rtol=1e-6, atol=1e-12)
    assert _no_hooks(model) and all(p.requires_grad and p.grad is None for p in model.parameters())


@pytest.mark.filterwarnings("ignore:None of the inputs have requires_grad")
@pytest.mark.parametrize("method", ["gradcam", "gradcam_pp"])
def test_a_reentrant_checkpointed_cam_layer_costs_one_forward_pass_after_the_first_explanation(method):
    # a CAM layer in a reentrant checkpoint segment is differentiated only when the pixels require
    # grad, which is known once the layer has run: every explanation ran the forward twice
    kw = dict(num_frames=T, input_size=S, mean=(0, 0, 0), std=(1, 1, 1), num_classes=2, cam_layer="gate")
    ref = get(method)(vx.wrap(BoxScorer(), **kw)).attribute(vx.Clip.from_array(box_clip()).to_tensor(), 0).maps
    model = vx.wrap(CheckpointedBoxScorer(reentrant=True), **kw)
    runs = []
    model.net.register_forward_pre_hook(lambda *_: runs.append(1))
    x = vx.Clip.from_array(box_clip()).to_tensor()
    for expected in (2, 1, 1):
        runs.clear()
        maps = get(method)(model).attribute(x, 0).maps
        assert len(runs) == expected
        torch.testing.assert_close(maps, ref)
    assert not x.requires_grad and all(p.requires_grad and p.grad is None for p in model.parameters())


def test_smoothgrad_is_deterministic_under_a_seed():
    model, x = small_cnn(), vx.Clip.from_array(box_clip()).to_tensor()
    a = get("smoothgrad")(model, n_samples=3, seed=1, noise_level=0.5).attribute_pixels(x, 0).values
    b = get("smoothgrad")(model, n_samples=3, seed=1, noise_level=0.5).attribute_pixels(x, 0).values
    c = get("smoothgrad")(model, n_samples=3, seed=2, noise_level=0.5).attribute_pixels(x, 0).values
    assert torch.equal(a, b) and not torch.equal(a, c)
    # no noise: SmoothGrad is the gradient
    s0 = get("smoothgrad")(model, n_samples=2, noise_level=0.0).attribute_pixels(x, 0).values
    torch.testing.assert_close(s0, get("saliency")(model).attribute_pixels(x, 0).values)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float64])
@pytest.mark.parametrize("method, options", [("integrated_gradients", {"n_steps": 4}),
                                             ("smoothgrad", {"n_samples": 3, "seed": 2})])
def test_pixels_of_another_precision_give_the_map_of_the_same_values_in_float32(method, options, dtype):
    # a caller's half-precision batch: Integrated Gradients' path and SmoothGrad's noise were made at
    # 8 bits (7 to 11 % of the map apart); float64 pixels drew other noise from the same seed
    model, x = small_cnn(), torch.rand(1, T, 3, S, S, generator=torch.Generator().manual_seed(5)).to(dtype)
    ours = get(method)(model, **options).attribute_pixels(x, 1).values
    ref = get(method)(model, **options).attribute_pixels(x.float(), 1).values
    assert float(ref.abs().max()) > 0
    torch.testing.assert_close(ours.float(), ref, rtol=1e-5, atol=1e-5 * float(ref.abs().max()))


def test_smoothgrad_map_depends_on_the_seed_not_on_batch_size_or_the_other_clips():
    # the noise was one randn over each batch of samples, which differs from the same samples drawn
    # in smaller batches where T·3·H·W is not a multiple of 16 (here 8·3·15·13): the map changed with
    # batch_size, and a clip's map with the clips explained beside it
    model = vx.wrap(small_cnn().net, num_frames=T, input_size=(15, 13), num_classes=3)
    x = torch.rand(2, T, 3, 15, 13, generator=torch.Generator().manual_seed(3))

    def smoothgrad(clips, batch_size):
        return get("smoothgrad")(model, n_samples=5, noise_level=0.5, batch_size=batch_size,
                                 seed=4).attribute_pixels(clips, 0).values

    alone = [smoothgrad(x[i:i + 1], 1) for i in range(2)]
    for batch_size in (2, 5):
        torch.testing.assert_close(smoothgrad(x[:1], batch_size), alone[0], rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(smoothgrad(x, 4), torch.cat(alone), rtol=1e-5, atol=1e-7)
    assert not torch.allclose(alone[0], get("saliency")(model).attribute_pixels(x[:1], 0).values)


def test_ig_batching_does_not_change_the_result():
    model = small_cnn()
    x = torch.rand(2, T, 3, S, S, generator=torch.Generator().manual_seed(7))
    one = get("integrated_gradients")(model, n_steps=5, internal_batch_size=2).attribute_pixels(x).values
    all_ = get("integrated_gradients")(model, n_steps=5, internal_batch_size=10).attribute_pixels(x).values
    torch.testing.assert_close(one, all_, rtol=1e-5, atol=1e-10)


@pytest.mark.parametrize("how, ref", [
    ("abs", lambda a: a.abs().sum(2)), ("l2", lambda a: a.norm(dim=2)),
    ("max", lambda a: a.abs().amax(2)), ("positive", lambda a: a.sum(2).clamp_min(0))])
def test_channel_reductions(how, ref):
    model, x = box_model(), vx.Clip.from_array(box_clip()).to_tensor()
    m = get("grad_x_input")(model, channel_reduce=how)
    torch.testing.assert_close(m.attribute(x, 1).maps, ref(m.attribute_pixels(x, 1).values))


@pytest.mark.parametrize("method", ["saliency", "rise"])
def test_a_methods_target_is_a_class_index_or_name_never_a_float_or_a_bool(method):
    # attribute() truncated 1.7 to class 1, read True as class 1, and failed on a class name
    # with torch's "new(): invalid data type 'str'"; vx.explain refuses the first two and takes names
    model, x = small_cnn(), torch.rand(2, T, 3, S, S, generator=torch.Generator().manual_seed(0))
    m = get(method)(model, **({"n_samples": 2} if method == "rise" else {}))
    assert m.attribute(x, "class_2").target.tolist() == [2, 2]
    assert m.attribute(x, ["class_1", 0]).target.tolist() == [1, 0]
    assert m.attribute(x, np.array([2, 1])).target.tolist() == [2, 1]
    for bad, match in [(1.7, r"got 1\.7 \(float\)"), (True, r"got True \(bool\)"),
                       (torch.tensor([0.5, 1.9]), r"class indices \(integers\) or class names, got torch.float32"),
                       ("walk", "has no class 'walk'"), (3, "target 3 out of range")]:
        with pytest.raises(InputError, match=match):
            m.attribute(x, bad)


def test_bad_inputs_and_options():
    model = box_model()
    with pytest.raises(InputError, match="shape"):
        get("saliency")(model).attribute(torch.rand(1, T, S, S))
    bad = torch.rand(1, T, 3, S, S)
    bad[0, 0, 0, 0, 0] = float("nan")
    with pytest.raises(InputError, match="NaN"):
        get("integrated_gradients")(model).attribute(bad)
    with pytest.raises(InputError, match="baseline"):
        get("integrated_gradients")(model, baseline="grey")
    with pytest.raises(InputError, match="method"):
        get("integrated_gradients")(model, method="simpson")
    with pytest.raises(InputError, match="channel_reduce"):
        get("saliency")(model, channel_reduce="mean")
    with pytest.raises(InputError, match="target"):
        get("gradcam")(model).attribute(torch.rand(1, T, 3, S, S), target=7)
    with pytest.raises(InputError, match="broadcast"):
        get("integrated_gradients")(model, baseline=torch.zeros(2, 3)).attribute(torch.rand(1, T, 3, S, S))
    no_layer = vx.wrap(BoxScorer(), num_frames=T, input_size=S, num_classes=2)
    assert get("gradcam")(no_layer).layer == "gate"  # found: the last module keeping a (T', H', W') grid
    with pytest.raises(InputError, match="no layer"):
        get("gradcam")(model, layer="nope")
    for empty in ("", "  "):  # '' is the whole network (get_submodule's root): refused when built
        with pytest.raises(InputError, match=f"layer {empty!r} names no layer"):
            get("gradcam")(model, layer=empty)
    with pytest.raises(UnsupportedModelError, match="attention"):
        get("rollout")(model)
    flat = vx.wrap(BoxScorer(), num_frames=T, input_size=S, num_classes=2, cam_layer="fc")
    with pytest.raises(UnsupportedModelError, match="cam_reshape"):
        get("gradcam")(flat).attribute(torch.rand(1, T, 3, S, S))


@pytest.mark.parametrize("method", ["gradcam", "gradcam_pp"])
@pytest.mark.parametrize("layer, shape", [("classifier", r"\(1, \d+\)"),
                                          ("timesformer.encoder.layer.0.attention", r"\(8, \d+, \d+\)")])
def test_a_transformer_layer_that_is_not_the_token_sequence_is_named_in_a_one_line_error(method, layer, shape):
    # the token reshape failed with a bare ValueError (unpacking a (B, classes) output) or with an
    # InputError that named no layer
    model = from_hf_module(tiny_hf("timesformer"))
    with pytest.raises(UnsupportedModelError, match=f"layer '{layer}' of .* gives {shape}, which the model's "
                                                    r"cam_reshape cannot lay out as \(B, C, T', H', W'\)"):
        get(method)(model, layer=layer).attribute(torch.rand(1, 8, 3, 32, 32))


def test_an_ig_baseline_function_that_returns_no_tensor_or_nan_is_named():
    # a number failed on out.shape (AttributeError); NaN made NaN maps, blamed on an option's scale
    x = torch.rand(1, T, 3, S, S, generator=torch.Generator().manual_seed(0))
    for baseline, said in ((lambda p: 0.5, r"returned float, expected a tensor of shape \(1, 8, 3, 16, 16\)"),
                           (lambda p: torch.full_like(p, float("inf")), "returned NaN or infinite values")):
        with pytest.raises(InputError, match=f"^integrated_gradients: baseline {said}$"):
            get("integrated_gradients")(box_model(), n_steps=2, baseline=baseline).attribute(x, 0)
    # a baseline on a 0–255 scale ran the path from 255 to the clip without a word; uint8 is read
    # as a clip's frames are (/ 255)
    for bad in (torch.full((1, T, 3, S, S), 255.0), lambda p: p * 255):
        with pytest.raises(InputError, match=r"^integrated_gradients: baseline (tensor has|returned) values in "
                                             r"\[.*, 2\d\d\], but pixels lie in \[0, 1\]; divide values on a 0–255 scale by 255$"):
            get("integrated_gradients")(box_model(), n_steps=2, baseline=bad).attribute(x, 0)
    grey8 = get("integrated_gradients")(box_model(), n_steps=2, baseline=torch.full((1, T, 3, S, S), 51, dtype=torch.uint8))
    grey = get("integrated_gradients")(box_model(), n_steps=2, baseline=torch.full((1, T, 3, S, S), 0.2))
    assert torch.equal(grey8.attribute_pixels(x, 0).values, grey.attribute_pixels(x, 0).values)
    with pytest.raises(InputError, match=r"^method 'rise': baseline returned values in \[.*\], but pixels lie in \[0, 1\]"):
        vx.explain(box_model(), box_clip(), "rise", n_samples=2, baseline=lambda p: p * 255 + 1)
    # so is a tensor of NaN (it was blamed on an option's scale or the model, as a function's was)
    with pytest.raises(InputError, match="^integrated_gradients: baseline tensor holds NaN or infinite values$"):
        vx.explain(box_model(), box_clip(), "integrated_gradients", n_steps=2,
                   baseline=torch.full((1, T, 3, S, S), float("nan")))
    # a float64 function is cast to the pixels' dtype: the same path as the float32 one
    ig = [get("integrated_gradients")(box_model(), n_steps=2, baseline=b).attribute_pixels(x, 0).values
          for b in (lambda p: torch.full_like(p, 0.5), lambda p: torch.full_like(p, 0.5, dtype=torch.float64))]
    assert ig[1].dtype == torch.float32 and torch.equal(ig[0], ig[1])


@pytest.mark.parametrize("delta", [False, True])
def test_ig_forward_passes_counts_the_convergence_deltas_pass(delta):
    # the service refuses requests over its work limit by this count: it left out the baseline's
    # pass that return_convergence_delta=True adds
    model = box_model()
    ig = get("integrated_gradients")(model, n_steps=3, return_convergence_delta=delta)
    exp = vx.explain(model, box_clip(), ig, target=0)
    assert ig.forward_passes(T) == exp.cost.forward_passes == 3 + 1 + delta


def test_an_ig_baseline_tensor_at_the_frames_size_needs_working_size_full():
    # vx.explain hands IG the model's view (S x S); the error called that "the clip's" shape
    model, frames = small_cnn(), np.random.default_rng(0).random((T, 2 * S, 3 * S, 3), dtype=np.float32)
    baseline = torch.zeros(1, T, 3, 2 * S, 3 * S)
    with pytest.raises(InputError, match=rf"the pixels explained, \(1, {T}, 3, {S}, {S}\) .*working_size='full'"):
        vx.explain(model, frames, "integrated_gradients", n_steps=2, baseline=baseline)
    full = vx.explain(model, frames, "integrated_gradients", n_steps=2, baseline=baseline, working_size="full")
    assert full.spatial.shape == (T, 2 * S, 3 * S)


def test_non_finite_maps_point_at_the_options_not_at_the_finite_clip():
    # the message asked "is the input finite?" about a clip already checked to be finite
    with pytest.raises(InputError, match="produced non-finite values: an option far out of scale"):
        vx.explain(small_cnn(), box_clip(), "rise", n_samples=4, p_keep=1e-300)


def test_ig_baselines_change_the_attribution():
    model, x = box_model(), vx.Clip.from_array(box_clip()).to_tensor()
    out = {b: get("integrated_gradients")(model, n_steps=4, baseline=b).attribute_pixels(x, 0).values
           for b in ("black", "blur", "mean")}
    assert not torch.allclose(out["black"], out["blur"]) and not torch.allclose(out["black"], out["mean"])
    # the mean-frame baseline removes what is constant over time: a static pixel gets nothing
    static = torch.rand(1, 1, 3, S, S).expand(1, T, 3, S, S).contiguous()
    flat = get("integrated_gradients")(model, n_steps=4, baseline="mean").attribute_pixels(static, 0).values
    assert float(flat.abs().max()) < 1e-6 * float(out["mean"].abs().max())


class _ConstantLogits(torch.nn.Module):
    """Logits that are a parameter, whatever the clip: differentiable, but not in the pixels."""

    def __init__(self) -> None:
        super().__init__()
        self.bias = torch.nn.Parameter(torch.tensor([1.0, 2.0, 0.5]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bias.expand(x.shape[0], 3)


@pytest.mark.parametrize("method,options", [("saliency", {}), ("ep3d", {"iterations": 2})])
def test_a_network_whose_output_ignores_its_input_is_told_so(method, options):
    # the message put it down to torch.no_grad() or a detached tensor only, neither of which
    # this network has
    model = vx.wrap(_ConstantLogits(), num_frames=4, input_size=16, num_classes=3)
    with pytest.raises(UnsupportedModelError, match=r"do not depend on the pixels .*computes its output "
                                                    r"without its input \(a constant\)"):
        vx.explain(model, np.random.default_rng(0).random((4, 16, 16, 3), dtype=np.float32), method, **options)
