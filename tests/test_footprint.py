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


class Linear3D(nn.Module):
    """A linear network of all-ones kernels (float64, no bias): every path from a cell to a pixel
    counts once, so the gradient of a cell whose windows stay inside the input is symmetric about
    the input index the cell is centred on. Strided padded convolutions, an even kernel, a dilation,
    a padded average pool, an asymmetric ``F.pad``, a strided 1×1 shortcut added, a slice and a
    concatenation along time."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv3d(1, 2, 3, stride=(1, 2, 2), padding=1, bias=False)
        self.b = nn.Conv3d(2, 2, (2, 4, 4), stride=(2, 2, 1), padding=(0, 1, 1), bias=False)
        self.c = nn.Conv3d(2, 2, 3, dilation=(1, 2, 1), padding=(1, 2, 1), bias=False)
        self.pool = nn.AvgPool3d(3, stride=(1, 2, 2), padding=1, count_include_pad=True)
        self.short = nn.Conv3d(2, 2, 1, stride=(1, 2, 2), bias=False)
        for conv in (self.a, self.b, self.c, self.short):
            nn.init.ones_(conv.weight)

    def forward(self, x):
        y = self.b(F.pad(self.a(x), (1, 0, 0, 0, 0, 0)))
        y = self.pool(self.c(y)) + self.short(y)
        return torch.cat([y[:, :, :2], y[:, :, 2:]], dim=2)


def test_each_cell_is_centred_where_its_gradient_is():
    # the tracked centre of every cell whose gradient stays clear of the input's edges is the
    # centroid of that gradient along each axis (zero padding truncates the others)
    net = Linear3D().double().eval()
    x = torch.rand(1, 1, 21, 61, 57, dtype=torch.float64)
    seen = tracked(net, net, x)
    assert seen is not None
    x = x.clone().requires_grad_(True)
    out = net(x)
    checked = 0
    for dim, centres, reads in ((2, seen.frame_centres, seen.frames), (3, seen.row_centres, seen.rows),
                                (4, seen.col_centres, seen.cols)):
        assert centres is not None and centres.shape == (out.shape[dim],)
        n = x.shape[dim]
        for k in range(out.shape[dim]):
            (g,) = torch.autograd.grad(out.select(dim, k).sum(), x, retain_graph=True)
            along = g.abs().sum([d for d in range(5) if d != dim])
            read = torch.nonzero(along > 0).flatten()
            assert torch.equal(read, torch.nonzero(reads[k]).flatten())
            if read[0] == 0 or read[-1] == n - 1:
                continue
            centroid = float((along * torch.arange(n)).sum() / along.sum())
            assert float(centres[k]) == pytest.approx(centroid, abs=1e-9), (dim, k)
            checked += 1
    assert checked >= 12


def test_a_padded_stride_2_grid_is_centred_on_even_pixels_and_laid_there():
    # a 3-convolution of stride 2 and padding 1, twice: cell o is centred on pixel 4·o (and frame
    # o), not on 4·o + 1.5 where stretching the grid over the input puts it
    net = nn.Sequential(nn.Conv3d(3, 4, 3, stride=(1, 2, 2), padding=1), nn.ReLU(),
                        nn.Conv3d(4, 4, 3, stride=(1, 2, 2), padding=1))
    seen = tracked(net, net, torch.rand(1, 3, 4, 16, 16))
    assert seen.reads_everything and not seen.stretched
    assert seen.row_centres.tolist() == seen.col_centres.tolist() == [0.0, 4.0, 8.0, 12.0]
    assert seen.frame_centres.tolist() == [0.0, 1.0, 2.0, 3.0]
    grid = torch.zeros(1, 4, 4, 4)
    grid[0, :, 1, 2] = 1.0                               # one cell: row 1, column 2
    placed = seen.maps_on_input(grid)
    assert placed.shape == (1, 4, 16, 16)
    peak = divmod(int(placed[0, 0].argmax()), 16)
    assert peak == (4, 8) and float(placed[0, 0, 4, 8]) == 1.0
    # linear between the centres, held beyond the last one (pixels 12-15)
    assert placed[0, 0, 4, 4:13].tolist() == pytest.approx([0, 0.25, 0.5, 0.75, 1, 0.75, 0.5, 0.25, 0])
    edge = torch.zeros(1, 4, 4, 4)
    edge[0, :, 3, 3] = 1.0
    assert (seen.maps_on_input(edge)[0, 0, 12:, 12:] == 1).all()


def test_a_grid_centred_where_the_stretch_puts_it_is_left_to_the_stretch():
    # stride 1 and padding 1 (cell o on pixel o), kernel = stride without padding (patches: cell o
    # on 2·o + 0.5): the stretch places them right already, and the footprint says so
    for net in (nn.Conv3d(3, 4, 3, padding=1), nn.Conv3d(3, 4, 2, stride=2)):
        seen = tracked(nn.Sequential(net), net, torch.rand(1, 3, 4, 8, 8))
        assert seen.reads_everything and seen.stretched
