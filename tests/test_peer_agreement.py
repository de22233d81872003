"""Same model, same clip, same settings: our numbers equal Captum's and pytorch-grad-cam's.

* Captum (``IntegratedGradients``, ``Saliency``, ``InputXGradient``, ``NoiseTunnel``) runs on the
  very :class:`~videoxai.VideoModel` (pixels in, logits out), so the signed per-pixel attributions
  (``attribute_pixels``) must agree.
* Captum's ``Occlusion``, ``ShapleyValues`` (every ordering: exact) and ``Lime`` (with
  scikit-learn's ``Ridge``, given the coalitions our LIME draws) run on clips at the model's
  input size, where our perturbation canvas is the input itself: same perturbed clips, same
  numbers (ours keep the positive part of the map).
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
from torchvision.models.video.swin_transformer import SwinTransformer3d

import videoxai as vx
from videoxai.core import baselines
from videoxai.methods import get
from videoxai.models.hf import from_hf_module
from videoxai.models.torchvision_zoo import MODELS

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


@pytest.mark.parametrize("kind, clips", [("smoothgrad", 1), ("smoothgrad_sq", 1), ("smoothgrad", 2)])
def test_smoothgrad_equals_captum_noise_tunnel(r3d_cropping, clip, kind, clips):
    x = clip[:clips]
    lo, hi = x.flatten(1).amin(1).view(-1, 1, 1, 1, 1), x.flatten(1).amax(1).view(-1, 1, 1, 1, 1)
    x = (x - lo) / (hi - lo)                           # range 1: our relative σ is Captum's stdev
    ours = get(kind)(r3d_cropping, n_samples=3, noise_level=0.2, batch_size=2 * clips,
                     seed=11).attribute_pixels(x, 2)
    refs = []
    for i in range(clips):                             # each clip's noise is its own seed's stream
        torch.manual_seed(11)                          # NoiseTunnel draws from the global generator
        refs.append(captum_attr.NoiseTunnel(captum_attr.Saliency(r3d_cropping)).attribute(
            x[i:i + 1], nt_type=kind, nt_samples=3, nt_samples_batch_size=2, stdevs=0.2, target=2, abs=False))
    _close(ours.values, torch.cat(refs))


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


def test_the_layer_found_in_a_wrapped_video_resnet_is_its_last_block():
    # torchvision's BasicBlock adds the residual and applies its ReLU in place on conv2's output:
    # conv2 and the block return the same tensor object, and the deepest, layer4.1.conv2 (the
    # batch-norm output before the residual), was chosen; the tensor's version tells them apart
    torch.manual_seed(0)
    net = torchvision.models.video.r3d_18(num_classes=5)
    model = vx.wrap(net, num_frames=8, input_size=32)             # no cam_layer: Grad-CAM finds one
    x = torch.rand(2, 8, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    _, acts, grads = _peer_cam(GradCAM, net, net.layer4, model.preprocess(x).transpose(1, 2), [2, 3])
    peer_raw = torch.relu((acts * grads.mean((2, 3, 4), keepdim=True)).sum(1))
    method = get("gradcam")(model)
    assert method.layer in ("layer4", "layer4.1")
    _close(method.attribute(x, [2, 3]).maps, peer_raw)


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


def _channels_first(t: torch.Tensor) -> torch.Tensor:       # (B, T', H', W', C) → (B, C, T', H', W')
    return t.permute(0, 4, 1, 2, 3)


def test_swin3d_gradcam_on_its_channels_last_stage_equals_pytorch_grad_cam():
    """Swin3D's stages output ``(B, T', H', W', C)``: read as channels-first they are a 5-D tensor
    all the same, and Grad-CAM gave a "map" over ``(H', W', C)``, upsampled without a word (a
    wrapped Swin3D's automatic layer, its final ``norm``, did that). Such a layer is refused with the
    reshape to give; with it, and with ``torchvision:swin3d_t``'s layer and reshape, the maps are the
    peer's."""
    torch.manual_seed(0)                     # swin3d_t's design, narrow and shallow (built in 0.1 s, not 2)
    net = SwinTransformer3d(patch_size=[2, 4, 4], embed_dim=16, depths=[1, 1, 1, 1], num_heads=[1, 1, 2, 2],
                            window_size=[2, 4, 4], num_classes=5).eval()
    plain = vx.wrap(net, num_frames=4, input_size=(32, 64))
    x = torch.rand(2, 4, 3, 32, 64, generator=torch.Generator().manual_seed(7))
    target = [1, 2]
    # the stage by its size against the input; the automatic layer, the final LayerNorm, by its
    # normalised axis (5604e43: supports() refuses it as explain does)
    for layer, why in (("features.6", r"larger than the 4×32×64 input, so it is not laid out channels-first"),
                       (None, r"layer 'norm' of custom is a LayerNorm over the last axis .* laid out channels-last")):
        with pytest.raises(vx.UnsupportedModelError, match=why + r".*cam_reshape=lambda t: t\.permute"):
            get("gradcam")(plain, layer=layer).attribute(x, target)
    spec = MODELS["swin3d_t"]                                  # torchvision:swin3d_t's layer and reshape
    wrapped = vx.wrap(net, num_frames=4, input_size=(32, 64), cam_reshape=_channels_first)
    zoo = vx.wrap(net, num_frames=4, input_size=(32, 64), cam_layer=spec.cam_layer, cam_reshape=spec.cam_reshape)
    out, acts, grads = _peer_cam(GradCAM, net, net.features[6], plain.preprocess(x).transpose(1, 2), target,
                                 reshape_transform=_channels_first)
    peer_raw = torch.relu((acts * grads.mean((2, 3, 4), keepdim=True)).sum(1))
    assert peer_raw.shape == (2, 2, 1, 2) and acts.shape[1] == 128 and float(peer_raw.max()) > 0
    for model in (wrapped, zoo):
        _close(get("gradcam")(model, layer="features.6" if model is wrapped else None).attribute(x, target).maps,
               peer_raw)


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
        videos = self.net.config.model_type in ("vjepa2", "videoprism_vision_model")
        logits = self.net(**{"pixel_values_videos" if videos else "pixel_values": x.transpose(1, 2)}).logits
        return logits.reshape(len(x), -1)   # VideoPrism's pooling head keeps its query's axis


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


# -- Captum's perturbation methods ---------------------------------------------------------------
@pytest.fixture(scope="module")
def r3d_at_input_size():
    """Frames at the model's input size: the perturbation canvas is the input itself, which is
    what Captum perturbs, so both sides score exactly the same perturbed clips."""
    return _video_resnet("r3d_18", 8, 32)


def _probabilities(model: vx.VideoModel):
    return lambda x: model(x).double().softmax(-1)


@pytest.mark.parametrize("output", ["probability", "logit"])
def test_occlusion_equals_captum_occlusion(r3d_at_input_size, output):
    model = r3d_at_input_size
    x = torch.rand(2, 8, 3, 32, 32, generator=torch.Generator().manual_seed(4))
    target = torch.tensor([1, 3])
    ours = get("occlusion")(model, window=(2, 8, 8), strides=(2, 4, 4), baseline="black",
                            output=output, batch_size=5).attribute(x, target)
    forward = _probabilities(model) if output == "probability" else (lambda v: model(v).double())
    ref = captum_attr.Occlusion(forward).attribute(
        x, sliding_window_shapes=(2, 3, 8, 8), strides=(2, 3, 4, 4), baselines=0.0, target=target,
        perturbations_per_eval=7)
    # the box covers all three channels, so Captum's map is the same in each; ours keeps the
    # positive part (the drops where occluding lowers the score)
    assert torch.equal(ref[:, :, 0], ref[:, :, 2])
    peer = ref[:, :, 0].clamp_min(0).float()
    assert float(peer.max()) > 0 and float((ref < 0).float().mean()) > 0.05   # both signs occur
    _close(ours.maps, peer)
    # strides that do not tile the axis differ by design: Captum's last window hangs over the
    # edge (a smaller box), ours is moved back flush with it (every box has the same size)


def test_temporal_shap_equals_captum_shapley_values(r3d_at_input_size):
    model = r3d_at_input_size
    x = torch.rand(1, 8, 3, 32, 32, generator=torch.Generator().manual_seed(5))
    attr = get("shap_temporal")(model, n_segments=4, baseline="mean", batch_size=6).attribute(x, 2)
    ours = attr.extras["segment_values"][0]
    segment_of_frame = torch.arange(8) // 2                                # 4 segments of 2 frames
    mask = segment_of_frame[None, :, None, None, None].expand(1, 8, 3, 32, 32).contiguous()
    ref = captum_attr.ShapleyValues(_probabilities(model)).attribute(   # every ordering: exact
        x, baselines=baselines.get("mean")(x), target=2, feature_mask=mask, perturbations_per_eval=6)
    peer = ref[0, ::2, 0, 0, 0]                                            # one value per segment
    assert float(peer.abs().max()) > 1e-4
    _close(ours.double(), peer.double())


def test_lime_equals_captum_lime_with_the_same_samples(r3d_at_input_size):
    """Same superpixels and the same coalitions (drawn the way our LIME draws them from its seed):
    Captum's ``Lime`` with scikit-learn's ``Ridge`` fits the same surrogate — the kernel on the
    cosine distance, the weighted ridge with an unpenalised intercept, the painting onto
    supervoxels. Ours keeps the positive coefficients."""
    pytest.importorskip("sklearn")                  # Captum's SkLearnRidge fits with it
    from captum._utils.models.linear_model import SkLearnRidge

    from videoxai.methods.perturbation import Canvas
    from videoxai.methods.segments import superpixels

    model = r3d_at_input_size
    x = torch.rand(1, 8, 3, 32, 32, generator=torch.Generator().manual_seed(6))
    x[:, 2:6, :, 8:20, 10:22] = torch.tensor([0.9, 0.1, 0.1])[:, None, None]  # something to segment
    n_samples, n_segments, seed, width = 60, 24, 7, 0.25
    attr = get("lime")(model, n_samples=n_samples, n_segments=n_segments, kernel_width=width,
                       baseline="mean", seed=seed, batch_size=8).attribute(x, 1)

    labels = superpixels(Canvas.of(model, x).to_grid(x)[0], n_segments, mode="clip")   # (T, h, w)
    n_features = int(labels.max()) + 1
    assert n_features == int(attr.extras["n_features"][0]) > 10
    z = torch.randint(0, 2, (n_samples, n_features), generator=torch.Generator().manual_seed(seed)).bool()
    z[0] = True                                     # LIME's first sample is the clip itself

    def coalitions(original, **kwargs):
        for row in z:
            yield row[None].float()

    def kernel(original, perturbed, interpretable, **kwargs):
        # LIME's own kernel (lime_image's default), on the cosine distance to the all-ones vector
        distance = 1 - (interpretable.sum() / n_features).sqrt()
        return torch.sqrt(torch.exp(-(distance ** 2) / width ** 2))

    lime = captum_attr.Lime(_probabilities(model), interpretable_model=SkLearnRidge(alpha=1.0),
                            similarity_func=kernel, perturb_func=coalitions)
    ref = lime.attribute(x, baselines=baselines.get("mean")(x), target=1, n_samples=n_samples,
                         feature_mask=labels[None, :, None].expand(1, 8, 3, 32, 32).contiguous(),
                         perturbations_per_eval=8)
    peer = ref[:, :, 0].clamp_min(0).float()
    assert float(peer.max()) > 0 and float((ref < 0).float().mean()) > 0.05
    _close(attr.maps, peer, rtol=1e-4)       # scikit-learn fits in float32, ours in float64


# -- held-out architectures ----------------------------------------------------------------------
class _SmallCNN(nn.Module):
    """A user's 3D CNN, wrapped without a cam_layer: the layer search picks ``block``."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv3d(3, 8, 3, padding=1), nn.BatchNorm3d(8), nn.ReLU())
        self.block = nn.Sequential(nn.Conv3d(8, 16, 3, stride=(1, 2, 2), padding=1), nn.ReLU(inplace=True))
        self.head = nn.Linear(16, 5)

    def forward(self, x):
        return self.head(self.block(self.stem(x)).mean((2, 3, 4)))


def _tiny_mvit() -> tuple[nn.Module, vx.VideoModel]:
    """torchvision's MViT, two blocks on 8 × 32 × 32 (4 × 4 × 4 tokens after the first), with the
    zoo's token reshape at its last block's ``norm1``."""
    from torchvision.models.video.mvit import MSBlockConfig, MViT

    from videoxai.models.token_grid import TokenGrid
    from videoxai.models.torchvision_zoo import ClsTokensToVolume

    torch.manual_seed(0)
    blocks = [MSBlockConfig(1, 16, 32, [3, 3, 3], [3, 3, 3], [1, 2, 2], [1, 2, 2]),
              MSBlockConfig(2, 32, 32, [3, 3, 3], [3, 3, 3], [1, 1, 1], [1, 1, 1])]
    net = MViT(spatial_size=(32, 32), temporal_size=8, block_setting=blocks, residual_pool=False,
               residual_with_cls_embed=False, rel_pos_embed=False, proj_after_attn=False, num_classes=5).eval()
    grid = TokenGrid(frames=4, rows=4, cols=4, tubelet=2, patch=(8, 8), prefix_tokens=1, order="thw")
    return net, vx.wrap(net, num_frames=8, input_size=32, cam_layer="blocks.1.norm1",
                        cam_reshape=ClsTokensToVolume(grid), token_grid=grid, fixed_num_frames=True)


def _held_out(name: str) -> tuple[vx.VideoModel, nn.Module, nn.Module, nn.Linear, object]:
    """``(model, the network pytorch-grad-cam runs, its CAM layer, its classifier, its
    reshape_transform)`` for a network the other peer tests do not cover."""
    if name == "mc3_18":
        model = _video_resnet("mc3_18", 8, 32)
        return model, model.net, model.net.layer4, model.net.fc, None
    if name == "custom":
        torch.manual_seed(0)
        model = vx.wrap(_SmallCNN().eval(), num_frames=4, input_size=16, num_classes=5)
        return model, model.net, model.net.block, model.net.head, None
    if name == "mvit":
        net, model = _tiny_mvit()
        return (model, net, net.blocks[1].norm1, net.head[1],
                lambda t: t[:, 1:].reshape(len(t), 4, 4, 4, -1).permute(0, 4, 1, 2, 3))
    net = tiny_hf(name)            # vivit: [CLS] + (frame/2, row, col) tokens; vjepa2: no [CLS]
    model = from_hf_module(net)
    if name == "videoprism":       # the temporal layers' norm: a sequence of 8 frames per patch position
        return (model, _PixelValues(net), model.submodule(model.cam_layer), net.classifier,
                lambda t: t.reshape(len(t) // 16, 4, 4, 8, -1).permute(0, 4, 3, 1, 2))
    prefix = 1 if name == "vivit" else 0
    return (model, _PixelValues(net), model.submodule(model.cam_layer), net.classifier,
            lambda t: t[:, prefix:].reshape(len(t), 4, 4, 4, -1).permute(0, 4, 1, 2, 3))


@pytest.mark.parametrize("name", ["videomae", "vivit", "timesformer", "vjepa2", "videoprism", "custom", "mvit"])
def test_input_gradients_equal_captum_on_held_out_networks(name):
    # frames larger than the input and not square: the models resize and crop inside their forward
    hf = ("videomae", "vivit", "timesformer", "vjepa2", "videoprism")
    model = from_hf_module(tiny_hf(name)) if name in hf else (
        _tiny_mvit()[1] if name == "mvit" else _held_out(name)[0])
    t, size = model.num_frames, model.input_size[0]
    x = torch.rand(2, t, 3, size + 8, size + 4, generator=torch.Generator().manual_seed(0))
    target = torch.tensor([1, 3])
    sal = get("saliency")(model).attribute_pixels(x, target).values
    _close(sal, captum_attr.Saliency(model).attribute(x, target=target, abs=False))
    gxi = get("grad_x_input")(model).attribute_pixels(x, target).values
    _close(gxi, captum_attr.InputXGradient(model).attribute(x, target=target))
    ig = get("integrated_gradients")(model, n_steps=2, baseline="blur", internal_batch_size=4).attribute_pixels(x, target)
    _close(ig.values, captum_attr.IntegratedGradients(model).attribute(
        x, baselines=baselines.get("blur")(x), target=target, n_steps=2, internal_batch_size=4), rtol=1e-4)
    one = (x[:1] - x[:1].min()) / (x[:1].max() - x[:1].min())    # range 1: our relative σ is Captum's stdev
    sg = get("smoothgrad")(model, n_samples=2, noise_level=0.2, batch_size=2, seed=5).attribute_pixels(one, 1)
    torch.manual_seed(5)
    _close(sg.values, captum_attr.NoiseTunnel(captum_attr.Saliency(model)).attribute(
        one, nt_type="smoothgrad", nt_samples=2, nt_samples_batch_size=2, stdevs=0.2, target=1, abs=False))


@pytest.mark.parametrize("name", ["mc3_18", "custom", "vivit", "vjepa2", "videoprism", "mvit"])
def test_gradcam_and_gradcam_pp_equal_pytorch_grad_cam_on_held_out_networks(name):
    model, net, layer, head, reshape = _held_out(name)
    with torch.no_grad():
        head.weight.mul_(1e3)                # Grad-CAM++: pytorch-grad-cam's eps = 1e-6 negligible
    size, t = model.input_size[0], model.num_frames
    x = torch.rand(2, t, 3, size, size, generator=torch.Generator().manual_seed(1))
    x_net = model.preprocess(x).transpose(1, 2).contiguous()   # (a transposed one: a slow conv3d path)
    target = [2, 4]
    method = get("gradcam")(model)
    assert method.layer == next(n for n, m in model.net.named_modules() if m is layer)
    ours = method.attribute(x, target)
    out, acts, grads = _peer_cam(GradCAM, net, layer, x_net, target, reshape_transform=reshape)
    assert float(grads.abs().max()) > 0.1
    _close(ours.maps, torch.relu((acts * grads.mean((2, 3, 4), keepdim=True)).sum(1)), rtol=1e-4)
    np.testing.assert_allclose(_peer_postprocess(ours.maps.numpy(), (size, size, t)), out, atol=1e-4)
    ours_pp = get("gradcam_pp")(model).attribute(x, target).maps
    out_pp, acts, grads = _peer_cam(GradCAMPlusPlus, net, layer, x_net, target, reshape_transform=reshape)
    if reshape is None:
        # a CNN's ReLU features sum to ≥ 0 on the grid, so α's denominator 2g² + g³·ΣA is ≥ 2g² and the
        # peer's eps is negligible
        np.testing.assert_allclose(_peer_postprocess(ours_pp.numpy(), (size, size, t)), out_pp, atol=1e-3)
    else:
        # a transformer's LayerNorm features take both signs: where 2 + g·ΣA nears 0 (2e-3 on the
        # MViT), the peer's eps moves α by a few per cent, so the peer's tensors go through the formula
        g3 = grads.pow(3)
        den = 2 * grads.square() + acts.sum((2, 3, 4), keepdim=True) * g3
        # a gradient so small that its square underflows (VideoPrism's sharpened pooling attention
        # leaves ~1e-30 on most tokens) is 0/0 here: α 0 there, as the peer's eps makes it
        alpha = torch.where(den != 0, grads.square() / den, 0)
        weights = (torch.where(grads != 0, alpha, 0) * grads.clamp_min(0)).sum((2, 3, 4), keepdim=True)
        _close(ours_pp, torch.relu((weights * acts).sum(1)), rtol=1e-3)


class _PerFrameCNN(nn.Module):
    """A TSN-style network: a 2D CNN on every frame (frames folded into the batch), its frames'
    scores weighed by a fixed consensus in which one frame counts against the class."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.frame = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(),
                                   nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.ReLU())
        self.fc = nn.Linear(16, 5)
        self.register_buffer("consensus", torch.tensor([1.0, -0.5, 2.0, 0.5]))

    def forward(self, x):                                   # (B, T, 3, H, W)
        b, t = x.shape[:2]
        scores = self.fc(self.frame(x.flatten(0, 1)).mean((2, 3))).view(b, t, -1)
        return (scores * self.consensus[:t, None]).sum(1)


def test_a_per_frame_2d_cnn_is_explained_as_the_peers_explain_its_frames():
    # a family the other peer tests do not use: frames folded into the batch, CAM layers laid out
    # per frame (cam_reshape="per_frame"); pytorch-grad-cam runs on it as on B·T images
    net = _PerFrameCNN().eval()
    model = vx.wrap(net, num_frames=4, input_size=16, layout="BTCHW", cam_reshape="per_frame", num_classes=5)
    x = torch.rand(2, 4, 3, 20, 16, generator=torch.Generator().manual_seed(3))   # resized inside
    target = [1, 3]
    with GradCAM(model=net, target_layers=[net.frame[3]]) as cam:
        cam.get_target_width_height = lambda t: (t.size(-1), t.size(-2))      # its frames', not (T, H, W)
        out = cam(input_tensor=model.preprocess(x), targets=[ClassifierOutputTarget(t) for t in target])
        acts = cam.activations_and_grads.activations[0].view(2, 4, 16, 8, 8)
        grads = cam.activations_and_grads.gradients[0].view(2, 4, 16, 8, 8)
    per_frame = get("gradcam")(model, per_frame_weights=True)
    assert per_frame.layer == "frame"                     # the block, whose output is its last ReLU's
    maps = per_frame.attribute(x, target).maps                                 # (B, T, h, w)
    _close(maps, torch.relu((acts * grads.mean((3, 4), keepdim=True)).sum(2)))
    np.testing.assert_allclose(_peer_postprocess(maps.flatten(0, 1).numpy(), (16, 16)), out, atol=1e-5)
    # by default one weight per channel for the whole clip (3-D Grad-CAM): the peer's gradients pooled
    # over every frame
    clip_weights = grads.mean((1, 3, 4))
    _close(get("gradcam")(model).attribute(x, target).maps,
           torch.relu(torch.einsum("btchw,bc->bthw", acts, clip_weights)))
    target_t = torch.tensor(target)
    _close(get("saliency")(model).attribute_pixels(x, target_t).values,
           captum_attr.Saliency(model).attribute(x, target=target_t, abs=False))
    _close(get("integrated_gradients")(model, n_steps=3, baseline="black", internal_batch_size=4)
           .attribute_pixels(x, target_t).values,
           captum_attr.IntegratedGradients(model).attribute(x, baselines=torch.zeros_like(x), target=target_t,
                                                           n_steps=3, internal_batch_size=4), rtol=1e-4)
