"""vx.wrap with the modules users have: per-frame 2D CNNs, TorchScript, networks of a fixed length."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import torch
from torch import nn

import videoxai as vx
from videoxai.errors import InputError, UnsupportedModelError

T, S, K = 4, 16, 3

# torch.jit is deprecated in favour of torch.compile, but users still have scripted models
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit:FutureWarning")


class PerFrameCNN(nn.Module):
    """``(B, T, 3, H, W)`` → ``(B, K)``: a 2D CNN on each frame (``(B·T, C, h, w)`` inside), features
    averaged over space and time (TSN; a TSM or CNN + LSTM folds its frames the same way)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU())
        self.fc = nn.Linear(8, K)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t = x.shape[:2]
        return self.fc(self.conv(x.flatten(0, 1)).mean((2, 3)).view(b, t, -1).mean(1))


class Conv3DNet(nn.Module):
    """``(B, 3, T, H, W)`` → ``(B, K)``; with ``pos=True`` a learnt embedding per frame makes it
    take exactly ``T`` frames."""

    def __init__(self, pos: bool = False) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.features = nn.Sequential(nn.Conv3d(3, 8, 3, padding=1), nn.ReLU())
        self.pos = nn.Parameter(torch.randn(1, 8, T, 1, 1)) if pos else None
        self.fc = nn.Linear(8, K)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.features(x)
        if self.pos is not None:
            f = f + self.pos
        return self.fc(f.mean((2, 3, 4)))


def clip(t: int = T, seed: int = 0) -> torch.Tensor:
    return torch.rand(t, 3, S, S, generator=torch.Generator().manual_seed(seed))


def test_a_per_frame_cnns_grids_are_refused_naming_the_cam_reshape_that_lays_them_out_per_frame():
    net = PerFrameCNN()
    model = vx.wrap(net, num_frames=T, input_size=S, layout="BTCHW", mean=(0, 0, 0), std=(1, 1, 1))
    with pytest.raises(UnsupportedModelError, match=r"^method .gradcam. reads a layer .*per frame, \(B·T, C, h, w\) \(e.g. 'conv'\); wrap it with "
                                         r"vx.wrap\(..., cam_reshape='per_frame'\)"):
        vx.explain(model, clip(), "gradcam", target=0)

    # the recipe as given: the search finds the last block, and the map is Grad-CAM by hand on the
    # block's (T, C, h, w) activation, laid out frame by frame, for clips of any length
    model = vx.wrap(net, num_frames=T, input_size=S, layout="BTCHW", mean=(0, 0, 0), std=(1, 1, 1),
                    cam_reshape="per_frame")
    for t in (T, 6, 8):
        exp = vx.explain(model, clip(t), "gradcam", target=0)
        assert exp.options["layer"] == "conv"
        acts = {}
        handle = net.conv.register_forward_hook(lambda m, i, o: acts.setdefault("a", o))
        try:
            logits = model(clip(t)[None])
        finally:
            handle.remove()
        a = acts["a"]                                         # (T, C, h, w)
        (g,) = torch.autograd.grad(logits[0, 0], a)
        by_hand = torch.relu((g.mean((0, 2, 3), keepdim=True) * a).sum(1)).detach()   # (T, h, w)
        assert by_hand.shape == (t, S, S) and by_hand.max() > 0
        np.testing.assert_allclose(exp.raw, by_hand.numpy(), rtol=1e-4, atol=1e-6)

    # a network that pools each frame in a module (a torchvision ResNet trunk's avgpool): its
    # (B·T, C, 1, 1) output is after the pooling, and the search keeps the block before it
    pooled = PerFrameCNN()
    pooled.conv.append(nn.AdaptiveAvgPool2d(1))
    model_pooled = vx.wrap(pooled, num_frames=T, input_size=S, layout="BTCHW", mean=(0, 0, 0), std=(1, 1, 1),
                           cam_reshape="per_frame")
    assert model_pooled.at_model_size().locate_cam_layer() == "conv.3"  # a working view searches alike

    # a batch of two clips: each clip's frames stay with it
    x = torch.stack([clip(T, seed=1), clip(T, seed=2)])
    with model.exclusive():
        model(x)
        grid = model.unfold_frames(net.conv(x.flatten(0, 1)))
    assert grid.shape == (2, 8, T, S, S)
    torch.testing.assert_close(grid[1, :, 3], net.conv(x[1, 3:4])[0])
    with pytest.raises(InputError, match="cam_reshape must be a function or 'per_frame', got 'frames'"):
        vx.wrap(net, num_frames=T, input_size=S, layout="BTCHW", cam_reshape="frames")


def test_torchscript_networks_are_explained_by_gradients_and_refused_by_cam_methods_in_one_line():
    net = Conv3DNet()
    python = vx.wrap(net, num_frames=T, input_size=S, num_classes=K)
    expected = vx.explain(python, clip(), "saliency", target=1).raw
    for scripted in (torch.jit.script(net), torch.jit.trace(net, torch.rand(1, 3, T, S, S))):
        model = vx.wrap(scripted, num_frames=T, input_size=S, num_classes=K)
        np.testing.assert_allclose(vx.explain(model, clip(), "saliency", target=1).raw, expected, rtol=1e-4, atol=1e-7)
        # hooks do not run in TorchScript: the search found no layer, an explicit one a RuntimeError
        for layer, error in ((None, UnsupportedModelError), ("features", InputError)):
            with pytest.raises(error, match="TorchScript module"):
                vx.explain(model, clip(), "gradcam", target=1, layer=layer)


def test_a_scripted_submodule_is_skipped_by_the_layer_search_and_refused_as_a_layer():
    net = Conv3DNet()
    net.features = torch.jit.script(net.features)
    net.stem = nn.Identity()  # a Python module before it, for the search to find nothing else
    model = vx.wrap(net, num_frames=T, input_size=S, num_classes=K)
    with pytest.raises(InputError, match="'features' of custom is a TorchScript module"):
        vx.explain(model, clip(), "gradcam", target=0, layer="features")
    with pytest.raises(UnsupportedModelError, match="no layer of custom outputs"):  # not register_forward_hook's error
        vx.explain(model, clip(), "gradcam", target=0)


def test_a_network_of_a_fixed_length_given_another_is_told_to_wrap_with_fixed_num_frames():
    model = vx.wrap(Conv3DNet(pos=True), num_frames=T, input_size=S, num_classes=K)
    assert vx.explain(model, clip(T), "saliency", target=0).raw.shape == (T, S, S)
    with pytest.raises(InputError, match=r"clip of 6 frames: .* fixed_num_frames=True"):
        vx.explain(model, clip(6), "saliency", target=0)
    fixed = vx.wrap(Conv3DNet(pos=True), num_frames=T, input_size=S, num_classes=K, fixed_num_frames=True)
    with pytest.raises(InputError, match="exactly 4 frames, got 6"):
        vx.explain(fixed, clip(6), "saliency", target=0)
    # any length that works is not refused, and a failure at every length keeps its own error
    free = vx.wrap(Conv3DNet(), num_frames=T, input_size=S, num_classes=K)
    assert vx.explain(free, clip(6), "saliency", target=0).raw.shape == (6, S, S)

    class Broken(Conv3DNet):
        def forward(self, x):
            raise RuntimeError("broken at any length")
    with pytest.raises(RuntimeError, match="broken at any length"):
        vx.wrap(Broken(), num_frames=T, input_size=S, num_classes=K)(clip(6)[None])


def test_a_layer_named_without_a_wrappers_prefix_is_told_the_name_it_has():
    for wrapper, prefix in ((nn.DataParallel, "module."), (torch.compile, "_orig_mod.")):
        net = wrapper(Conv3DNet())
        with pytest.raises(InputError, match=f"cam_layer 'features' is not a module of .*; did you mean '{prefix}features'"):
            vx.wrap(net, num_frames=T, input_size=S, num_classes=K, cam_layer="features")
    # (torch.compile's first forward compiles for seconds: only DataParallel is explained)
    model = vx.wrap(nn.DataParallel(Conv3DNet()), num_frames=T, input_size=S, num_classes=K,
                    cam_layer="module.features")
    assert vx.explain(model, clip(), "gradcam", target=0).options["layer"] == "module.features"


@dataclass
class Scores:
    """A network's output object with attributes, not keys (no ``.logits``)."""

    scores: torch.Tensor
    aux: torch.Tensor


def test_output_names_an_attribute_of_an_output_object():
    class TwoHeads(Conv3DNet):
        def forward(self, x):
            logits = super().forward(x)
            return Scores(scores=logits, aux=-logits)

    net = TwoHeads()
    model = vx.wrap(net, num_frames=T, input_size=S, num_classes=K, output="scores", mean=(0, 0, 0), std=(1, 1, 1))
    x = clip()[None]
    torch.testing.assert_close(model(x), net(x.transpose(1, 2)).scores)
    with pytest.raises(InputError, match="output='logits' selects nothing in the network's Scores output"):
        vx.wrap(net, num_frames=T, input_size=S, num_classes=K, output="logits")(x)


def test_mean_and_std_on_a_0_255_scale_are_refused_with_the_values_for_pixels_in_0_1():
    with pytest.raises(InputError, match=r"mean \[123.675, 116.28, 103.53\] is on a 0–255 scale, but pixels are in "
                                         r"\[0, 1\]: give mean=\(0.485, 0.456, 0.406\), std=\(0.229, 0.224, 0.225\)"):
        vx.wrap(Conv3DNet(), num_frames=T, input_size=S, num_classes=K,
                mean=(123.675, 116.28, 103.53), std=(58.395, 57.12, 57.375))
    assert vx.wrap(Conv3DNet(), num_frames=T, input_size=S, num_classes=K, mean=(1, 1, 1), std=(1, 1, 1)).num_classes == K


class StridedConv3DNet(nn.Module):
    """One unpadded Conv3d of kernel (2, 4, 4), stride 2: on 5 frames it reads frames 0–3, never 4;
    on 17-pixel frames rows and columns 0–15, never 16."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv3d(3, 8, (2, 4, 4), stride=2)
        self.fc = nn.Linear(8, K)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.conv(x)).mean((2, 3, 4)))


def gradcam_by_hand(net: nn.Module, x: torch.Tensor, target: int) -> torch.Tensor:
    """Textbook Grad-CAM ``relu(Σ_c mean(∂y/∂A_c) · A_c)`` on ``net.conv`` for ``x`` ``(1, T, 3, H, W)``
    → ``(T', H', W')``."""
    a = net.conv(x.transpose(1, 2))
    (g,) = torch.autograd.grad(net.fc(torch.relu(a).mean((2, 3, 4)))[0, target], a)
    return torch.relu((g.mean((2, 3, 4), keepdim=True) * a).sum(1))[0].detach()


def strided_model(frames: int, size: int, net: nn.Module | None = None) -> vx.VideoModel:
    return vx.wrap(net or StridedConv3DNet(), num_frames=frames, input_size=size, layout="BCTHW",
                   mean=(0, 0, 0), std=(1, 1, 1), cam_layer="conv")


@pytest.mark.parametrize("frames, size", [(5, 17), (3, 16)])
def test_cam_maps_of_a_grid_that_does_not_cover_the_clip_are_zero_on_what_the_layer_never_reads(frames, size):
    # the (T', H', W') grid was stretched over the whole clip: on 5 frames the unread frame 4 had
    # the largest score (0.233), on 3 frames the unread frame 2 had a third of the evidence
    net = StridedConv3DNet()
    model = strided_model(frames, size, net)
    x = torch.rand(frames, 3, size, size, generator=torch.Generator().manual_seed(0))
    cam = gradcam_by_hand(net, x[None], 0)                        # (T', H', W')
    mass = cam.flatten(1).sum(1)                                  # each feature frame reads 2 frames
    by_hand = torch.cat([mass.repeat_interleave(2), torch.zeros(frames - 2 * len(mass))])
    exp = vx.explain(model, x, "gradcam", target=0)
    np.testing.assert_allclose(exp.temporal, (by_hand / by_hand.sum()).numpy(), rtol=1e-5, atol=1e-7)
    # the raw maps stay the layer's grid, Grad-CAM's own numbers
    assert exp.raw.shape == tuple(cam.shape)
    np.testing.assert_allclose(exp.raw, cam.numpy(), rtol=1e-5, atol=1e-7)
    assert exp.temporal[-1] == 0 and (exp.spatial[-1] == 0).all() and exp.spatial[:-1].max() == 1
    np.testing.assert_array_equal(exp.spatial[0], exp.spatial[1])   # one feature frame, two input frames
    if size == 17:   # row and column 16 are never read either
        assert (exp.spatial[:, 16] == 0).all() and (exp.spatial[:, :, 16] == 0).all()
        assert (exp.spatial[:4, :16, :16].reshape(4, -1).max(1) > 0).all()
    # Grad-CAM++ lays its map on the same footprint
    pp = vx.explain(model, x, "gradcam_pp", target=0)
    assert pp.temporal[-1] == 0 and (pp.spatial[-1] == 0).all() and pp.raw.shape == tuple(cam.shape)


def test_the_first_cam_explanation_of_a_strided_network_costs_what_the_later_ones_do():
    # the footprint is read off the explanation's own forward pass: no probe of its own (a probe
    # made the first explanation cost one forward and one backward pass more than the later ones)
    from videoxai.methods import cam

    net = StridedConv3DNet()
    model = strided_model(5, 17, net)
    runs = []
    net.register_forward_pre_hook(lambda *_: runs.append(1))
    x = torch.rand(5, 3, 17, 17, generator=torch.Generator().manual_seed(0))
    costs = []
    for _ in range(3):
        runs.clear()
        exp = vx.explain(model, x, "gradcam", target=0)
        costs.append((exp.cost.forward_passes, exp.cost.backward_passes, len(runs)))
        assert exp.temporal[-1] == 0
    assert costs == [(1, 1, 1)] * 3
    assert [f.reads_every_frame for f in cam._FOOTPRINTS[net].values()] == [False]   # found once

    # Saliency Tubes (a linear head on the layer's average: no ReLU) lays its map on the same
    # frames; its check of the head is one forward pass, once per network, as before
    class Linear(StridedConv3DNet):
        def forward(self, x):
            return self.fc(self.conv(x).mean((2, 3, 4)))
    tubes = Linear()
    model = strided_model(5, 17, tubes)
    tubes.register_forward_pre_hook(lambda *_: runs.append(1))
    for expected in (2, 1, 1):
        runs.clear()
        exp = vx.explain(model, x, "saliency_tubes", target=0)
        assert len(runs) == expected and exp.temporal[-1] == 0 and exp.temporal[:-1].min() > 0


class Raises(Exception):
    """A network's own error."""


class RaisingNet(StridedConv3DNet):
    """Raises its own error inside forward, after the CAM layer, while ``fail`` is set."""

    fail = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.conv(x)
        if self.fail:
            raise Raises("the network's own error")
        return self.fc(torch.relu(a).mean((2, 3, 4)))


def test_a_network_raising_inside_forward_raises_its_own_error_and_leaves_no_hook_or_footprint():
    from videoxai.methods import cam

    net = RaisingNet()
    model = strided_model(5, 17, net)
    x = torch.rand(5, 3, 17, 17, generator=torch.Generator().manual_seed(0))
    for method in ("gradcam", "gradcam_pp"):
        with pytest.raises(Raises, match="the network's own error"):
            vx.explain(model, x, method, target=0)
    assert not net._forward_pre_hooks and not net.conv._forward_hooks
    assert not cam._FOOTPRINTS.get(net)   # nothing kept from a forward that failed
    net.fail = False
    assert vx.explain(model, x, "gradcam", target=0).temporal[-1] == 0
    # an operation of the network that torch refuses keeps torch's own error and message
    bad = StridedConv3DNet()
    bad.fc = nn.Linear(7, K)
    with pytest.raises(RuntimeError) as bare:
        bad(x[None].transpose(1, 2))
    with pytest.raises(RuntimeError) as explained:
        vx.explain(strided_model(5, 17, bad), x, "gradcam", target=0)
    assert str(explained.value) == str(bare.value)


def test_cam_maps_of_a_grid_centred_where_the_stretch_puts_it_are_bit_identical_to_the_stretched_ones(monkeypatch):
    # a padded network of stride 1 reads every frame, row and column and centres cell o on pixel o:
    # its footprint is found, and its maps and scores are those of the stretch, bit for bit
    from videoxai.methods import cam

    padded = vx.wrap(Conv3DNet(), num_frames=T, input_size=S, layout="BCTHW", mean=(0, 0, 0), std=(1, 1, 1))
    cases = [(clip(6), "gradcam"), (clip(T), "gradcam_pp")]
    found = [vx.explain(padded, x, method, target=0) for x, method in cases]
    seen = list(cam._FOOTPRINTS[padded.net].values())
    assert seen and all(f is not None and f.reads_everything and f.stretched for f in seen)
    monkeypatch.setattr(cam.CAMMethod, "footprint_key", lambda self, x: None)   # the stretch alone
    for (x, method), exp in zip(cases, found):
        stretched = vx.explain(padded, x, method, target=0)
        for name in ("spatial", "temporal", "raw"):
            np.testing.assert_array_equal(getattr(exp, name), getattr(stretched, name))


def test_the_bundled_3d_cnns_grid_is_laid_on_the_pixels_its_cells_are_centred_on():
    # its stem and two stages are padded stride-2 convolutions: cell o of its 8 × 8 grid is centred
    # on pixel 8·o of its 64, and the map is the grid interpolated linearly between those pixels
    # (held beyond pixel 56); stretched over the frame it sat 3.5 pixels down and to the right
    demo = vx.load_model("demo-cnn")
    x = torch.rand(demo.num_frames, 3, *demo.input_size, generator=torch.Generator().manual_seed(0))
    exp = vx.explain(demo, x, "gradcam", target=0, refine=False)
    raw = exp.raw.astype(np.float64)
    assert raw.shape == (demo.num_frames, 8, 8)
    pixels, centres = np.arange(64), 8.0 * np.arange(8)
    rows = np.apply_along_axis(lambda v: np.interp(pixels, centres, v), 1, raw)
    laid = np.apply_along_axis(lambda v: np.interp(pixels, centres, v), 2, rows)
    lo = laid[laid > 0].min()                            # vx.explain's scaling of the evidence region
    expected = np.where(laid > 0, (laid - lo) / (laid.max() - lo), 0.0)
    np.testing.assert_allclose(exp.spatial, expected, atol=1e-5)
    # time is not strided: a feature frame per input frame, its mass that frame's score
    np.testing.assert_allclose(exp.temporal, raw.sum((1, 2)) / raw.sum(), atol=1e-6)
    # placement="stretch" is the stretch an image resize makes: align_corners=False, no footprint
    stretched = vx.explain(demo, x, "gradcam", target=0, refine=False, placement="stretch")
    np.testing.assert_array_equal(stretched.raw, exp.raw)
    up = torch.nn.functional.interpolate(torch.from_numpy(exp.raw)[None], size=(64, 64), mode="bilinear",
                                         align_corners=False)[0].numpy().astype(np.float64)
    lo = up[up > 0].min()
    np.testing.assert_allclose(stretched.spatial, np.where(up > 0, (up - lo) / (up.max() - lo), 0.0), atol=1e-5)
    assert stretched.options["placement"] == "stretch" and exp.options["placement"] == "centres"
