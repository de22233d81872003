"""Where torchvision's video CNNs centre their Grad-CAM cells (videoxai.core.footprint), measured.

The CAM methods lay a CNN's grid on the input pixel and frame each cell is centred on, which the
footprint composes from every operation of the network's forward pass. Here that is checked on
torchvision's own R3D, R(2+1)D and MC3 blocks and stems against what the network itself computes.
Each network is made linear without changing its geometry (ReLU and batch norm → identity, every
kernel a positive constant, no bias): a cell's output is then a weighted sum of the pixels it
reads, whose weights are symmetric about the index it is centred on wherever its windows stay
inside the input (zero padding truncates the others). Along an axis, ``Σ w(t)`` and ``Σ t·w(t)``
are the cell's output for an input of ones and for an input ramp ``x(t) = t``: two forward passes
give every cell's centroid, and inputs lit only at the first or last index say which cells reach
the edge. One stage per block ([1, 1, 1, 1]) keeps the receptive fields (99 pixels, 49 frames)
small enough for cells clear of the edges, at a few seconds of CPU. S3D (max pooling made average
pooling over the same windows) is checked along its rows.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

torchvision = pytest.importorskip("torchvision")
from torchvision.models.video import resnet  # noqa: E402

from videoxai.core.footprint import FootprintTracker  # noqa: E402

ARCHS = {  # torchvision's builders' blocks, stems and per-stage convolutions, one block a stage
    "r3d_18": (resnet.BasicBlock, [resnet.Conv3DSimple] * 4, resnet.BasicStem),
    "mc3_18": (resnet.BasicBlock, [resnet.Conv3DSimple] + [resnet.Conv3DNoTemporal] * 3, resnet.BasicStem),
    "r2plus1d_18": (resnet.BasicBlock, [resnet.Conv2Plus1D] * 4, resnet.R2Plus1dStem),
}


def linear(net: nn.Module) -> nn.Module:
    """``net`` with its geometry and none of its non-linearity: ReLU and batch norm → identity,
    max pooling → average pooling over the same windows (padding counted), every convolution
    kernel a positive constant (each output the mean of its window: no overflow), no bias."""
    for module in list(net.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, (nn.ReLU, nn.BatchNorm3d)):
                setattr(module, name, nn.Identity())
            elif isinstance(child, nn.MaxPool3d):
                setattr(module, name, nn.AvgPool3d(child.kernel_size, child.stride, child.padding,
                                                   ceil_mode=child.ceil_mode, count_include_pad=True))
            elif isinstance(child, nn.Conv3d):
                nn.init.constant_(child.weight, 1 / child.weight[0].numel())
                if child.bias is not None:
                    nn.init.zeros_(child.bias)
    return net.eval().double()


def along(body: nn.Module, layer: nn.Module, shape: tuple[int, int, int], dim: int,
          values: torch.Tensor) -> torch.Tensor:
    """``layer``'s output for an input that is ``values`` along ``dim`` (2, 3, 4) and constant
    across the rest, summed over everything but ``dim``: ``(n',)``."""
    held = {}
    handle = layer.register_forward_hook(lambda m, i, o: held.setdefault("out", o))
    view = [1, 1, 1, 1, 1]
    view[dim] = -1
    try:
        with torch.no_grad():
            body(values.double().view(view).expand(1, 3, *shape).contiguous())
    finally:
        handle.remove()
    out = held["out"]
    return out.sum([d for d in range(5) if d != dim])


def checked_centres(body: nn.Module, layer: nn.Module, shape: tuple[int, int, int], dims: tuple[int, ...]):
    """For each of ``dims``: the footprint's centres of ``layer``'s cells, each compared with the
    centroid of the weights the linear ``body`` gives that cell's inputs where the cell is clear of
    the input's edges; which cells reach the edges compared with the footprint's reads. Returns
    the footprint and how many centres were compared."""
    torch.manual_seed(0)
    with torch.no_grad(), FootprintTracker(body, layer, {"T": 2, "H": 3, "W": 4}) as tracker:
        body(torch.rand(1, 3, *shape, dtype=torch.float64))
    footprint = tracker.footprint()
    assert footprint is not None
    checked = 0
    for dim in dims:
        centres = (footprint.frame_centres, footprint.row_centres, footprint.col_centres)[dim - 2]
        reads = (footprint.frames, footprint.rows, footprint.cols)[dim - 2]
        n = shape[dim - 2]
        index = torch.arange(n, dtype=torch.float64)
        weight, moment = (along(body, layer, shape, dim, v) for v in (torch.ones(n), index))
        first, last = (along(body, layer, shape, dim, (index == i).double()) for i in (0, n - 1))
        assert torch.equal(first > 0, reads[:, 0]) and torch.equal(last > 0, reads[:, -1])  # who reaches the edges
        for k in range(len(centres)):
            if first[k] > 0 or last[k] > 0:  # truncated by the zero padding: its centroid moves inwards
                continue
            assert float(centres[k]) == pytest.approx(float(moment[k] / weight[k]), abs=1e-6), (dim, k)
            checked += 1
    return footprint, checked


@pytest.mark.parametrize("arch", sorted(ARCHS))
@pytest.mark.parametrize("shape, dims", [((4, 160, 160), (3, 4)), ((72, 32, 32), (2,))])
def test_cam_cells_are_centred_where_the_network_weighs_their_pixels(arch, shape, dims):
    block, convs, stem = ARCHS[arch]
    net = linear(resnet.VideoResNet(block, convs, [1, 1, 1, 1], stem, num_classes=3))
    footprint, checked = checked_centres(net, net.layer4, shape, dims)
    # frames: layer4 strides time by 8 in R3D and R(2+1)D (cells 32 and 40 clear of a 72-frame
    # clip's ends), by 1 in MC3, which convolves time in its first stage only; rows and columns
    # by 16 (cells at 64, 80 and 96 of 160)
    expected = {(3, 4): 6, (2,): {"mc3_18": 64, "r3d_18": 2, "r2plus1d_18": 2}[arch]}[dims]
    assert checked >= expected
    if dims == (3, 4):
        assert footprint.row_centres.tolist() == [16.0 * o for o in range(10)]  # a padded stride 2, four times


def test_s3d_rows_are_centred_where_the_network_weighs_them():
    """S3D's CAM layer (``features.15``: separable convolutions, inception branches joined, padded
    poolings) reads 379 rows a cell: a frame 640 rows tall and 96 wide leaves its middle cells
    clear of the edges (the rows' centroid does not depend on the columns' truncation: the
    kernels are separable)."""
    body = linear(torchvision.models.video.s3d(num_classes=3)).features
    footprint, checked = checked_centres(body, body[15], (24, 640, 96), (3,))
    assert checked >= 6
    assert footprint.row_centres[:3].tolist() == [8.0, 40.0, 72.0]
