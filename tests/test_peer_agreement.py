"""Same model, same clip, same settings: our numbers equal Captum's and pytorch-grad-cam's.

* Captum (``IntegratedGradients``, ``Saliency``, ``InputXGradient``, ``NoiseTunnel``) runs on the
  very :class:`~videoxai.VideoModel` (pixels in, logits out), so the signed per-pixel attributions
  (``attribute_pixels``) must agree.
* pytorch-grad-cam runs on the wrapped network with the input the network sees; its maps come
  back upsampled with ``scipy.ndimage.zoom`` and min–max normalised, so ours (at feature
  resolution) are compared both there and after the same post-processing.
* Grad-CAM++: pytorch-grad-cam adds ``eps = 1e-6`` to the denominator, which dominates for the
  ~1e-3 gradients of a random 3D ResNet's last block; the comparison scales the classifier so that
  ``eps`` is negligible (the formula itself is checked against a hand-written reference in
  ``test_gradient_methods.py``).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision
from conftest import tiny_hf
from torch import nn

import videoxai as vx
from videoxai.core import baselines
from videoxai.methods import get
from videoxai.models.hf import from_hf_module

captum_attr = pytest.importorskip("captum.attr")
pytest.importorskip("pytorch_grad_cam")
from pytorch_grad_cam import GradCAM, GradCAMPlusPlus  # noqa: E402
from pytorch_grad_cam.utils.image import scale_cam_image  # noqa: E402
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget  # noqa: E402


def _video_resnet(arch: str, frames: int, size: int, **kw) -> vx.VideoModel:
    torch.manual_seed(0)
    net = getattr(torchvision.models.video, arch)(num_classes=5)
    return vx.wrap(net, num_frames=frames, input_size=size, cam_layer="layer4", **kw)


@pytest.fixture(scope="module")
def r3d_cropping():
    # frames larger than the input and not square: the model resizes and centre-crops inside,
    # so gradients land on original pixels (zero outside the crop) on both sides
    return _video_resnet("r3d_18", 8, 32, shortest_edge=32)


@pytest.fixture(scope="module")
def clip():
    return torch.rand(2, 8, 3, 36, 44, generator=torch.Generator().manual_seed(0))


def _close(ours: torch.Tensor, ref: torch.Tensor, rtol: float = 1e-5) -> None:
    scale = float(ref.abs().max())
    assert scale > 0
    torch.testing.assert_close(ours, ref, rtol=rtol, atol=rtol * scale)


# -- Captum -------------------------------------------------------------------------------------
@pytest.mark.parametrize("method, baseline", [("gausslegendre", "black"), ("gausslegendre", "mean"),
                                              ("riemann_trapezoid", "blur")])
def test_integrated_gradients_equals_captum(r3d_cropping, clip, method, baseline):
    target = torch.tensor([1, 3])
    ours = get("integrated_gradients")(r3d_cropping, n_steps=3, method=method, baseline=baseline,
                                       internal_batch_size=4).attribute_pixels(clip, target).values
    ref = captum_attr.IntegratedGradients(r3d_cropping).attribute(
        clip, baselines=baselines.get(baseline)(clip), target=target, n_steps=3, method=method,
        internal_batch_size=4)
    _close(ours, ref)
    # the model sees the central 36×36 of the 36×44 frames: the 4 columns each side get nothing
    assert float(ours[..., :4].abs().max()) == float(ours[..., 40:].abs().max()) == 0


def test_saliency_and_grad_x_input_equal_captum(r3d_cropping, clip):
    target = torch.tensor([0, 4])
    sal = get("saliency")(r3d_cropping).attribute_pixels(clip, target).values
    _close(sal, captum_attr.Saliency(r3d_cropping).attribute(clip, target=target, abs=False))
    _close(sal.abs(), captum_attr.Saliency(r3d_cropping).attribute(clip, target=target))
    gxi = get("grad_x_input")(r3d_cropping).attribute_pixels(clip, target).values
    _close(gxi, captum_attr.InputXGradient(r3d_cropping).attribute(clip, target=target))


@pytest.mark.parametrize("kind", ["smoothgrad", "smoothgrad_sq"])
def test_smoothgrad_equals_captum_noise_tunnel(r3d_cropping, clip, kind):
    x = clip[:1]
    x = (x - x.min()) / (x.max() - x.min())            # range 1: our relative σ is Captum's stdev
    ours = get(kind)(r3d_cropping, n_samples=3, noise_level=0.2, batch_size=2, seed=11).attribute_pixels(x, 2)
    torch.manual_seed(11)                              # NoiseTunnel draws from the global generator
    ref = captum_attr.NoiseTunnel(captum_attr.Saliency(r3d_cropping)).attribute(
        x, nt_type=kind, nt_samples=3, nt_samples_batch_size=2, stdevs=0.2, target=2, abs=False)
    _close(ours.values, ref)


# -- pytorch-grad-cam -----------------------------------------------------------------------------
def _peer_cam(cam_cls, net: nn.Module, layer: nn.Module, x_net: torch.Tensor, target: list[int], **kw):
    """pytorch-grad-cam's output and, from the same call, its layer tensors."""
    with cam_cls(model=net, target_layers=[layer], **kw) as cam:
        out = cam(input_tensor=x_net, targets=[ClassifierOutputTarget(t) for t in target])
        acts = cam.activations_and_grads.activations[0]
        grads = cam.activations_and_grads.gradients[0]
    return out, acts, grads


def _peer_postprocess(maps: np.ndarray, size_whd: tuple[int, int, int]) -> np.ndarray:
    """pytorch-grad-cam's post-processing of one layer's maps: normalise, zoom, clip, normalise."""
    return scale_cam_image(np.maximum(scale_cam_image(maps, size_whd), 0))


@pytest.mark.parametrize("arch", ["r3d_18", "r2plus1d_18"])
def test_gradcam_equals_pytorch_grad_cam(arch):
    model = _video_resnet(arch, 16, 32)
    x = torch.rand(2, 16, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    target = [2, 3]
    attr = get("gradcam")(model).attribute(x, target)
    x_net = model.preprocess(x).transpose(1, 2)                       # what the network sees
    out, acts, grads = _peer_cam(GradCAM, model.net, model.net.layer4, x_net, target)
    peer_raw = torch.relu((acts * grads.mean((2, 3, 4), keepdim=True)).sum(1))
    assert attr.maps.shape == peer_raw.shape == (2, 2, 2, 2)
    _close(attr.maps, peer_raw)
    assert out.shape == (2, 16, 32, 32)
    np.testing.assert_allclose(_peer_postprocess(attr.maps.numpy(), (32, 32, 16)), out, atol=1e-5)


def test_gradcam_pp_equals_pytorch_grad_cam_where_its_eps_is_negligible():
    model = _video_resnet("r2plus1d_18", 16, 32)
    with torch.no_grad():
        model.net.fc.weight.mul_(1e3)          # gradients ~1: eps = 1e-6 no longer matters
    x = torch.rand(2, 16, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    target = [0, 4]
    attr = get("gradcam_pp")(model).attribute(x, target)
    out, acts, grads = _peer_cam(GradCAMPlusPlus, model.net, model.net.layer4,
                                 model.preprocess(x).transpose(1, 2), target)
    assert float(grads.abs().max()) > 0.1
    np.testing.assert_allclose(_peer_postprocess(attr.maps.numpy(), (32, 32, 16)), out, atol=1e-3)


class _TensorOut(nn.Module):
    """What a pytorch-grad-cam user must add to hook a Hugging Face TimeSformer layer: the layer
    returns a tuple, on which grad-cam can neither register a gradient hook nor reshape."""

    def __init__(self, layer: nn.Module) -> None:
        super().__init__()
        self.layer, self.out = layer, nn.Identity()

    def forward(self, *args, **kwargs):
        out = self.layer(*args, **kwargs)
        return (self.out(out[0]), *out[1:])


class _PixelValues(nn.Module):
    """HF classifier behind grad-cam's conventions: (B, C, T, H, W) in, a logits tensor out."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(pixel_values=x.transpose(1, 2)).logits


@pytest.mark.parametrize("family", ["timesformer", "videomae"])
def test_transformer_gradcam_equals_pytorch_grad_cam_with_a_hand_written_reshape(family):
    net = tiny_hf(family)
    model = from_hf_module(net)
    x = torch.rand(2, 8, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    n = 4
    if family == "timesformer":
        index = int(model.cam_layer.rsplit(".", 1)[1])
        net.timesformer.encoder.layer[index] = _TensorOut(net.timesformer.encoder.layer[index])
        layer = net.timesformer.encoder.layer[index].out

        def reshape(tokens):              # [CLS] + (row, col, frame) tokens
            return tokens[:, 1:].reshape(tokens.shape[0], n, n, 8, -1).permute(0, 4, 3, 1, 2)
    else:
        layer = model.submodule(model.cam_layer)

        def reshape(tokens):              # (frame/2, row, col) tokens, no CLS
            return tokens.reshape(tokens.shape[0], 4, n, n, -1).permute(0, 4, 1, 2, 3)

    target = [1, 3]
    attr = get("gradcam")(model).attribute(x, target)
    x_net = model.preprocess(x).transpose(1, 2)
    out, acts, grads = _peer_cam(GradCAM, _PixelValues(net), layer, x_net, target, reshape_transform=reshape)
    peer_raw = torch.relu((acts * grads.mean((2, 3, 4), keepdim=True)).sum(1))
    _close(attr.maps, peer_raw, rtol=1e-4)
    frames = attr.maps.shape[1]
    np.testing.assert_allclose(_peer_postprocess(attr.maps.numpy(), (32, 32, frames)),
                               _peer_postprocess(peer_raw.numpy(), (32, 32, frames)), atol=1e-4)
