"""What a layer reads of its input (videoxai.core.footprint): the rules checked against autograd."""

from __future__ import annotations

import pytest
import torch
import torch._dynamo  # noqa: F401  (a dispatch mode's first use imports it, 3 s; CAM explanations import it anyway)
import torch.nn.functional as F
from torch import nn

from videoxai.core.footprint import Footprint, FootprintTracker

BCTHW = {"T": 2, "H": 3, "W": 4}


def by_gradient(net: nn.Module, layer: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    """What each cell of ``layer``'s ``(B, C, T', H', W')`` output reads of ``x`` ``(1, C, T, H, W)``,
    from autograd: cell k along an axis reads index t where ``∂ Σ out[..k..] / ∂ x[..t..] ≠ 0``. Exact
    for networks of random float64 weights without ReLU or max-pooling (no gradient is zero by chance)."""
    x = x.clone().requires_grad_(True)
    held = {}
    handle = layer.register_forward_hook(lambda m, i, o: held.setdefault("out", o))
    try:
        net(x)
    finally:
        handle.remove()
    out = held["out"]
    mats = []
    for dim in (2, 3, 4):
        rows = []
        for k in range(out.shape[dim]):
            (g,) = torch.autograd.grad(out.select(dim, k).sum(), x, retain_graph=True)
            rows.append(g.abs().sum([d for d in range(5) if d != dim]) > 0)
        mats.append(torch.stack(rows))
    return mats


def tracked(net: nn.Module, layer: nn.Module, x: torch.Tensor, axes=BCTHW) -> Footprint | None:
    with torch.no_grad(), FootprintTracker(net, layer, axes) as tracker:
        net(x)
    return tracker.footprint()


class Residual(nn.Module):
    """A ResNet block: two 3-convs (the first strided) and a 1×1 strided shortcut, added."""

    def __init__(self, stride: int, pad: int) -> None:
        super().__init__()
        self.a = nn.Conv3d(4, 4, 3, stride=stride, padding=pad)
        self.b = nn.Conv3d(4, 4, 3, padding=1)
        self.short = nn.Conv3d(4, 4, 1, stride=stride)

    def forward(self, x):
        out = self.b(torch.tanh(self.a(x)))
        short = self.short(x)
        return out + short[:, :, :out.shape[2], :out.shape[3], :out.shape[4]]


class TwoPaths(nn.Module):
    """Two branches concatenated along time and channels, with avg pooling, padding and a dilation."""

    def __init__(self) -> None:
        super().__init__()
        self.slow = nn.Conv3d(3, 4, (2, 3, 3), stride=(2, 1, 1), padding=(0, 1, 1))
        self.fast = nn.Conv3d(3, 4, 3, dilation=(2, 1, 1), padding=(0, 1, 1))
        self.pool = nn.AvgPool3d((1, 2, 2), stride=(1, 2, 2))
        self.out = nn.Conv3d(4, 4, (1, 3, 3))

    def forward(self, x):
        slow = self.slow(x)
        fast = self.fast(F.pad(x, (0, 0, 0, 0, 1, 0)))[:, :, ::2]
        both = torch.cat([slow, fast], dim=2)
        return self.out(self.pool(both * torch.sigmoid(both.mean(1, keepdim=True))))


CASES = {
    "strided chain": lambda: nn.Sequential(nn.Conv3d(3, 4, (2, 4, 4), stride=2), nn.Tanh(),
                                           nn.Conv3d(4, 4, 2, stride=(1, 2, 2))),
    "residual, unpadded": lambda: nn.Sequential(nn.Conv3d(3, 4, 1), Residual(2, 0)),
    "residual, padded": lambda: nn.Sequential(nn.Conv3d(3, 4, 1), Residual(2, 1)),
    "branches joined": TwoPaths,
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_footprint_is_what_autograd_says_each_cell_reads(case):
    torch.manual_seed(0)
    net = CASES[case]().double().eval()
    x = torch.rand(1, 3, 9, 11, 10, dtype=torch.float64)
    layer = net if not isinstance(net, nn.Sequential) else net[-1]
    seen = tracked(net, layer, x)
    assert seen is not None
    for mine, truth in zip((seen.frames, seen.rows, seen.cols), by_gradient(net, layer, x)):
        assert torch.equal(mine, truth)
    if case == "strided chain":   # by hand: kernel 2 stride 2 on 9 frames, then kernel 2 stride 1
        assert seen.frames.tolist() == [[t in range(2 * k, 2 * k + 4) for t in range(9)] for k in range(3)]
        assert not seen.reads_every_frame and not seen.reads_every_pixel
    if case == "residual, padded":
        assert seen.reads_everything


def test_a_max_pools_window_is_read_whole_and_a_btchw_network_is_followed_through_its_permute():
    # autograd says a max-pool reads its winners only; the structure reads the window
    pool = nn.MaxPool3d((3, 2, 2), stride=(2, 2, 2), padding=(1, 0, 0))
    net = nn.Sequential(pool)
    x = torch.rand(1, 2, 6, 5, 5)
    seen = tracked(net, pool, x)
    assert seen.frames.tolist() == [[t in (0, 1) for t in range(6)], [t in (1, 2, 3) for t in range(6)],
                                    [t in (3, 4, 5) for t in range(6)]]
    assert seen.rows.tolist() == [[r in (0, 1) for r in range(5)], [r in (2, 3) for r in range(5)]]

    class Permuted(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv3d(3, 4, 2, stride=2)

        def forward(self, x):   # (B, T, C, H, W)
            return self.conv(x.permute(0, 2, 1, 3, 4))
    net = Permuted()
    seen = tracked(net, net.conv, torch.rand(1, 5, 3, 8, 8), axes={"T": 1, "H": 3, "W": 4})
    assert seen.frames.tolist() == [[t in (0, 1) for t in range(5)], [t in (2, 3) for t in range(5)]]
    assert seen.reads_every_pixel


class Folded(nn.Module):
    """A per-frame 2D CNN: frames folded into the batch, then unfolded."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, x):   # (B, C, T, H, W)
        b, c, t = x.shape[:3]
        y = self.conv(x.transpose(1, 2).flatten(0, 1))
        return y.view(b, t, *y.shape[1:]).transpose(1, 2)


class Upsampled(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv3d(3, 4, 2, stride=2)

    def forward(self, x):
        return self.conv(F.interpolate(x, scale_factor=(1, 2, 2)))


class WritesIntoAView(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv3d(3, 4, 2, stride=2)

    def forward(self, x):
        y = x.clone()
        y[:, :, -1] = x[:, :, 0]   # the last frame's values are the first's
        return self.conv(y)


@pytest.mark.parametrize("net, batch", [(Folded, 2), (Upsampled, 1), (WritesIntoAView, 1)],
                         ids=["folded", "upsampled", "written into a view"])
def test_a_path_the_rules_do_not_follow_gives_no_footprint(net, batch):
    # frames folded into a batch of several clips, an upsampling, a write into a view: unknown, never
    # a guess (the maps are then stretched over the clip, as before)
    net = net()
    assert tracked(net, net.conv, torch.rand(batch, 3, 5, 8, 8)) is None


def test_frames_folded_into_a_batch_of_one_clip_are_followed():
    # (B·T) with B = 1 is T itself: each frame's 2D convolution reads that frame only
    net = Folded()
    seen = tracked(net, net, torch.rand(1, 3, 5, 8, 8))
    assert torch.equal(seen.frames, torch.eye(5, dtype=torch.bool)) and seen.reads_everything


def test_the_tracker_only_watches_and_removes_its_hooks_when_the_network_raises():
    net = nn.Sequential(nn.Conv3d(3, 4, 2, stride=2), nn.Flatten(), nn.Linear(4, 2))
    x = torch.rand(1, 3, 4, 6, 6)
    with pytest.raises(RuntimeError) as bare:
        net(x)
    with pytest.raises(RuntimeError) as watched:
        tracked(net, net[0], x)
    assert str(watched.value) == str(bare.value)
    assert not net._forward_pre_hooks and not net[0]._forward_hooks
    good = nn.Sequential(nn.Conv3d(3, 4, 2, stride=2), nn.Tanh())
    with torch.no_grad():
        plain = good(x)
        with FootprintTracker(good, good[0], BCTHW):
            assert torch.equal(good(x), plain)


def test_maps_are_laid_on_the_frames_and_pixels_read():
    # 2 feature frames reading frames 0-1 and 2-3 of 5; rows 0-3 of 5; every column of 4
    eye = torch.eye
    fp = Footprint(frames=torch.tensor([[1, 1, 0, 0, 0], [0, 0, 1, 1, 0]], dtype=torch.bool),
                   rows=torch.tensor([[1, 1, 1, 0, 0], [0, 1, 1, 1, 0]], dtype=torch.bool),
                   cols=eye(4, dtype=torch.bool))
    maps = torch.tensor([[[[1.0] * 4] * 2, [[3.0] * 4] * 2]])          # (1, 2, 2, 4)
    torch.testing.assert_close(fp.frames_on_input(maps.flatten(2).sum(-1)), torch.tensor([[4.0, 4, 12, 12, 0]]))
    placed = fp.maps_on_input(maps)
    assert placed.shape == (1, 5, 5, 4)
    torch.testing.assert_close(placed[0, :, :4, 0], torch.tensor([[0.5] * 4, [0.5] * 4, [1.5] * 4, [1.5] * 4, [0.0] * 4]))
    assert (placed[0, :, 4] == 0).all()
