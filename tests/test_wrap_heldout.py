"""vx.wrap with held-out networks a user brings: one that takes a single clip per forward pass,
scripted and traced ones whose classes must be read from their layers."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import videoxai as vx
from videoxai.errors import InputError, UnsupportedModelError

T, S, K = 4, 16, 3

# torch.jit is deprecated in favour of torch.compile, but users still have scripted models
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit:FutureWarning")


class Net(nn.Module):
    """``(B, 3, T, H, W)`` → ``(B, K)``: a 3D convolution, global average pool, linear, plus a
    term on the red channel of frames 1–2's top-left quarter (so that perturbation maps have
    something to find). ``one_clip``: fails on a batch of several clips, as a network that
    reshapes to batch 1 does (``"view"``) or asserts it (``"assert"``)."""

    def __init__(self, one_clip: str = "") -> None:
        super().__init__()
        torch.manual_seed(0)
        self.one_clip = one_clip
        self.conv = nn.Conv3d(3, 6, 3, padding=1)
        self.fc = nn.Linear(6, K)
        self.register_buffer("red_weight", torch.tensor([1.0, 0.0, -1.0]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.one_clip == "assert":
            assert x.shape[0] == 1, "one clip at a time"
        f = self.conv(x).relu().mean((2, 3, 4))
        if self.one_clip == "view":
            f = f.view(1, 6)  # the batch of one, written into the network
        red = x[:, 0, 1:3, : x.shape[3] // 2, : x.shape[4] // 2].mean((1, 2, 3))
        return self.fc(f) + 3 * red[:, None] * self.red_weight


def clip() -> torch.Tensor:
    return torch.rand(T, 3, S, S, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("one_clip", ["view", "assert"])
def test_a_network_that_takes_one_clip_at_a_time_is_told_to_give_batch_size_1(one_clip):
    # occlusion sends 8 clips per pass: the network's own "shape '[1, 6]' is invalid" (or a bare
    # AssertionError over two lines) named no option
    single = vx.wrap(Net(one_clip), num_frames=T, input_size=S)
    with pytest.raises(InputError, match=r"^custom failed on a batch of 8 clips: [^\n]*\. It runs on one clip "
                                         r"at a time: give the method or metric batch_size=1 [^\n]*$"):
        vx.explain(single, clip(), "occlusion", target=0)
    exp = vx.explain(single, clip(), "saliency", target=0)
    with pytest.raises(InputError, match=r"failed on a batch of 16 clips: .* give the method or metric batch_size=1"):
        vx.metrics.evaluate("deletion", single, clip(), exp)
    assert 0 <= vx.metrics.evaluate("deletion", single, clip(), exp, batch_size=1).value <= 1
    assert vx.explain(single, clip(), "saliency", target=0).spatial.max() > 0  # one clip: no hint


def test_a_one_clip_network_on_three_frames_is_told_its_batch_not_its_layout():
    """With 3 frames of 3 channels the layout probe (one clip, frames and channels swapped) has the
    very shape of one clip: it ran, and the network that takes one clip at a time was told to wrap
    itself with layout='BCTHW'. One clip as laid out runs, so the layout is not the cause."""
    single = vx.wrap(Net("assert"), num_frames=3, input_size=S)
    three = torch.rand(3, 3, S, S, generator=torch.Generator().manual_seed(1))
    with pytest.raises(InputError, match=r"failed on a batch of \d+ clips: .* give the method or metric batch_size=1"):
        vx.explain(single, three, "occlusion", target=0)


class Pooled(nn.Module):
    """A network whose last pooling needs frames of at least 112 × 112 (as S3D's and the
    torchvision ResNets' fixed late poolings need their input size)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv3d(3, 4, 3, stride=(1, 4, 4), padding=1)
        self.pool = nn.AvgPool3d((1, 28, 28))
        self.fc = nn.Linear(4, K)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.conv(x)).amax((2, 3, 4)))


def test_a_network_given_frames_smaller_than_it_needs_is_told_the_input_size():
    # the network's own "input image … smaller than kernel size" named no option of vx.wrap
    small = vx.wrap(Pooled(), num_frames=T, input_size=64)
    with pytest.raises(InputError, match=r"^custom failed on 64x64 frames: [^\n]*smaller than kernel size[^\n]*\. It runs "
                                         r"on 224x224: "
                                         r"wrap it with vx\.wrap\(\.\.\., input_size=224\)"):
        vx.explain(small, clip(), "saliency", target=0)
    exp = vx.explain(vx.wrap(Pooled(), num_frames=T, input_size=224), clip(), "saliency", target=0)
    assert exp.spatial.shape == (T, S, S)


def test_with_batch_size_1_perturbation_methods_explain_it_as_they_do_the_batched_network():
    # ep2d sent its two games' clips together (and the intact and blurred ends) even with
    # batch_size=1: it could not explain such a network at all
    single = vx.wrap(Net("view"), num_frames=T, input_size=S)
    batched = vx.wrap(Net(), num_frames=T, input_size=S)
    for method, opts in (("occlusion", {"window": (2, 8, 8), "strides": (2, 8, 8)}),
                         ("ep2d", {"iterations": 2, "areas": (0.1,), "min_evidence": 0})):
        one = vx.explain(single, clip(), method, target=0, batch_size=1, **opts)
        many = vx.explain(batched, clip(), method, target=0, **opts)
        np.testing.assert_allclose(one.spatial, many.spatial, atol=1e-5, err_msg=method)
        assert one.spatial.max() > 0, method


def test_the_classes_of_scripted_and_traced_networks_are_read_from_their_last_linear_or_pointwise_layer():
    # their layers are RecursiveScriptModules, not nn.Linear: every scripted network had to be
    # wrapped with num_classes=
    net = Net()
    expected = vx.explain(vx.wrap(net, num_frames=T, input_size=S), clip(), "saliency", target=2).raw
    for scripted in (torch.jit.script(net), torch.jit.trace(net, torch.rand(1, 3, T, S, S))):
        model = vx.wrap(scripted, num_frames=T, input_size=S)
        assert model.num_classes == K
        np.testing.assert_allclose(vx.explain(model, clip(), "saliency", target=2).raw, expected, rtol=1e-4, atol=1e-7)
    pointwise = nn.Sequential(nn.Conv3d(3, 6, 3), nn.ReLU(), nn.Conv3d(6, 7, 1), nn.AdaptiveAvgPool3d(1), nn.Flatten())
    assert vx.wrap(torch.jit.script(pointwise), num_frames=T, input_size=S).num_classes == 7
    with pytest.raises(InputError, match="cannot infer the number of classes"):
        vx.wrap(torch.jit.script(nn.Sequential(nn.Conv3d(3, 6, 3), nn.Flatten())), num_frames=T, input_size=S)


@pytest.mark.parametrize("method", ["saliency", "occlusion"])
def test_integer_outputs_are_refused_naming_them(method):
    # rounded logits: saliency said the network detaches its input, occlusion drew a blank map
    class Rounded(Net):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return super().forward(x).round().long()

    model = vx.wrap(Rounded(), num_frames=T, input_size=S)
    with pytest.raises(InputError, match=r"^custom returned int64 outputs, not float logits: .*before any rounding"):
        vx.explain(model, clip(), method, target=0)


def test_a_wrong_layout_named_under_a_network_error_of_several_lines_is_one_line():
    # the network's own message (TorchScript's span many lines) pushed the hint below it
    class Checked(Net):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if x.shape[1] != 3:
                raise RuntimeError("Arguments for call are not valid.\n  expected 3 channels\n")
            return super().forward(x)

    model = vx.wrap(Checked(), num_frames=T, input_size=S, layout="BTCHW")
    with pytest.raises(InputError) as err:
        vx.explain(model, clip(), "saliency", target=0)
    assert str(err.value) == ("custom failed on input laid out as BTCHW (1x4x3x16x16): Arguments for call are not "
                              "valid. expected 3 channels. It runs on BCTHW input: wrap it with "
                              "vx.wrap(..., layout='BCTHW')")


def test_a_network_run_under_inference_mode_is_explained_by_perturbations_and_refused_by_gradients_in_one_line():
    # a deployed forward decorated with @torch.inference_mode(): the CAM layer search read the
    # version of its outputs, which inference tensors do not have, and gradcam (and its
    # supports(), which `videoxai methods --model` asks) raised torch's RuntimeError
    class Deployed(Net):
        @torch.inference_mode()
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return super().forward(x)

    model = vx.wrap(Deployed(), num_frames=T, input_size=S)
    assert vx.methods.get("gradcam").supports(model)
    with pytest.raises(UnsupportedModelError, match=r"do not depend on layer 'conv' \(found .*torch.inference_mode\(\)"):
        vx.explain(model, clip(), "gradcam", target=0)
    with pytest.raises(UnsupportedModelError, match=r"do not depend on the pixels .*torch.inference_mode\(\)"):
        vx.explain(model, clip(), "saliency", target=0)
    expected = vx.explain(vx.wrap(Net(), num_frames=T, input_size=S), clip(), "occlusion", target=0).spatial
    np.testing.assert_allclose(vx.explain(model, clip(), "occlusion", target=0).spatial, expected, atol=1e-6)


@pytest.mark.parametrize("labels", [{0: "walk", 1: "run", 2: "jump"}, {"2": "jump", "0": "walk", "1": "run"},
                                    np.array(["walk", "run", "jump"]), iter(["walk", "run", "jump"])])
def test_class_names_given_as_id2label_an_array_or_an_iterator_name_the_classes(labels):
    # a config's id2label, taken as a sequence, gave its keys: every class was called 0, 1, 2
    model = vx.wrap(Net(), num_frames=T, input_size=S, labels=labels)
    assert model.labels == ["walk", "run", "jump"] and all(type(name) is str for name in model.labels)
    exp = vx.explain(model, clip(), "saliency", target="jump")
    assert (exp.target, exp.label) == (2, "jump")


@pytest.mark.parametrize("labels, match", [
    ("wrj", r"labels is one string, 'wrj'; give one name per class"),
    (["walk", "run", "walk"], r"labels name 'walk' twice \(classes 0 and 2\)"),
    (["walk", None, "jump"], r"class names must be strings, got None \(NoneType\) for class 1"),
    ({1: "walk", 2: "run", 3: "jump"}, r"labels given as a dict must map the class indices 0 to 2 to names"),
])
def test_class_names_that_name_no_class_or_two_are_refused(labels, match):
    with pytest.raises(InputError, match=f"^vx.wrap: {match}"):
        vx.wrap(Net(), num_frames=T, input_size=S, labels=labels)
    assert vx.wrap(Net(), num_frames=T, input_size=S, labels=[0, 1, 2]).labels == ["0", "1", "2"]  # class ids


@pytest.mark.skipif(not hasattr(torch.compiler, "set_stance"), reason="torch < 2.6 compiles the search's pass")
def test_the_layer_search_on_a_compiled_network_runs_it_eagerly():
    # the compiler traced each of the search's hooks and recompiled the network once per hook, past
    # its limit: a page of warnings and seconds for a pass that only reads shapes
    torch._dynamo.reset()
    model = vx.wrap(torch.compile(Net(), backend="eager"), num_frames=T, input_size=S)
    torch._dynamo.utils.counters.clear()
    assert model.locate_cam_layer() == "_orig_mod.conv"
    assert not torch._dynamo.utils.counters["stats"]["unique_graphs"]


@pytest.mark.skipif(not hasattr(torch.compiler, "set_stance"), reason="torch < 2.6 compiles the probe's pass")
def test_saliency_tubes_probes_a_compiled_network_whose_graph_was_compiled_without_its_hook():
    # the compiler does not guard on the hooks of submodules: once passes of several batch sizes had
    # compiled the network for any batch (an explanation's perturbations), saliency_tubes' probe of
    # the head ran that graph without its hook and failed with KeyError: 'a'
    class GapHead(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            torch.manual_seed(0)
            self.conv, self.act, self.fc = nn.Conv3d(3, 6, 3, padding=1), nn.ReLU(), nn.Linear(6, K)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(self.act(self.conv(x)).mean((2, 3, 4)))

    torch._dynamo.reset()
    compiled = vx.wrap(torch.compile(GapHead(), backend="eager"), num_frames=T, input_size=S)
    with torch.no_grad():
        for b in (1, 2, 3):
            compiled(torch.rand(b, T, 3, S, S))
    exp = vx.explain(compiled, clip(), "saliency_tubes")
    plain = vx.explain(vx.wrap(GapHead(), num_frames=T, input_size=S), clip(), "saliency_tubes")
    assert np.array_equal(exp.raw, plain.raw) and exp.raw.max() > 0


def test_the_default_cam_layer_may_be_given_as_the_layer_itself():
    # as a method's layer= takes it: vx.wrap said the network's own layer "is not a module" of it
    net = Net()
    model = vx.wrap(net, num_frames=T, input_size=S, cam_layer=net.conv)
    assert model.cam_layer == "conv"
    assert vx.explain(model, clip(), "gradcam", target=0).options["layer"] == "conv"
    with pytest.raises(InputError, match=r"^cam_layer \(a Linear\) is not a layer of Net"):
        vx.wrap(net, num_frames=T, input_size=S, cam_layer=nn.Linear(6, K))
    with pytest.raises(InputError, match=r"^cam_layer must be a layer's dotted name or the layer, got list"):
        vx.wrap(net, num_frames=T, input_size=S, cam_layer=["conv"])


def test_one_number_for_mean_and_std_is_every_channels_and_a_nan_or_a_name_is_refused():
    # std=0.5 was a TypeError ("object of type 'float' has no len()"), a NaN made every score NaN
    scalar = vx.wrap(Net(), num_frames=T, input_size=S, mean=0.5, std=0.25)
    listed = vx.wrap(Net(), num_frames=T, input_size=S, mean=(0.5, 0.5, 0.5), std=np.array([0.25] * 3))
    assert scalar.preprocess.mean == listed.preprocess.mean == (0.5, 0.5, 0.5)
    assert listed.preprocess.std == (0.25, 0.25, 0.25) and all(type(v) is float for v in listed.preprocess.std)
    x = clip()[None]
    torch.testing.assert_close(scalar(x), listed(x))
    with pytest.raises(InputError, match=r"^vx.wrap: mean must be finite for every channel, got \[0.4, 0.5, nan\]"):
        vx.wrap(Net(), num_frames=T, input_size=S, mean=(0.4, 0.5, float("nan")))
    with pytest.raises(InputError, match=r"^vx.wrap: std must be numbers, one per RGB channel, got 'imagenet'"):
        vx.wrap(Net(), num_frames=T, input_size=S, std="imagenet")


def test_a_hugging_face_transformer_given_to_wrap_is_told_which_adapter_reads_its_attention():
    # a TimeSformer fine-tuned in the session and given to vx.wrap: "custom exposes no attention"
    from conftest import tiny_hf
    from videoxai.models.hf import from_hf_module

    net = tiny_hf("timesformer")
    wrapped = vx.wrap(net, num_frames=8, input_size=32, layout="BTCHW", mean=0.5, std=0.5)
    with pytest.raises(UnsupportedModelError, match=r"it wraps a Hugging Face timesformer model, which "
                                                    r"videoxai.models.hf.from_hf_module\(net\) adapts"):
        vx.explain(wrapped, torch.rand(8, 3, 32, 32), "rollout")
    assert vx.explain(from_hf_module(net), torch.rand(8, 3, 32, 32), "rollout").spatial.shape == (8, 32, 32)
    assert "from_hf_module" not in vx.methods.get("rollout").unsupported(vx.wrap(Net(), num_frames=T, input_size=S))


def test_a_network_whose_train_override_returns_nothing_is_wrapped_with_its_own_mode_handling():
    # a train() override that keeps batch norm frozen and forgets `return self` makes eval()
    # return None: the model's network was None ("'NoneType' object is not callable")
    class FrozenNorm(Net):
        def __init__(self) -> None:
            super().__init__()
            self.norm = nn.BatchNorm3d(3)

        def train(self, mode: bool = True):
            super().train(mode)
            self.norm.eval()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return super().forward(self.norm(x))

    net = FrozenNorm()
    model = vx.wrap(net, num_frames=T, input_size=S)
    assert model.net is net
    model.train()
    assert net.training and not net.norm.training
    assert vx.explain(model, clip(), "saliency", target=0).spatial.max() > 0
    assert net.training and not net.norm.training  # its own mix, put back


class BatchStatsNet(Net):
    """:class:`Net` with a batch-norm layer built without running statistics after its convolution
    (``head_norm``: a ``BatchNorm1d`` of the same kind after the pooling, which one clip cannot run)."""

    def __init__(self, head_norm: bool = False) -> None:
        super().__init__()
        self.bn = nn.BatchNorm3d(6, track_running_stats=False)
        self.head_norm = nn.BatchNorm1d(6, track_running_stats=False) if head_norm else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.head_norm(self.bn(self.conv(x)).relu().mean((2, 3, 4)))
        red = x[:, 0, 1:3, : x.shape[3] // 2, : x.shape[4] // 2].mean((1, 2, 3))
        return self.fc(f) + 3 * red[:, None] * self.red_weight


def test_a_network_normalising_with_its_batchs_statistics_scores_each_clip_on_its_own():
    # batch norm without running statistics normalises with the batch's even in eval mode: the
    # perturbed clips of a batch were normalised together and RISE's map changed with batch_size
    # (correlation −0.07 between 1 and 16); the network now runs one clip at a time
    model = vx.wrap(BatchStatsNet(), num_frames=T, input_size=S, cam_layer="bn")
    assert model.batch_statistics_layers() == ["bn"]
    x = torch.rand(3, T, 3, S, S, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(model(x), torch.cat([model(x[i:i + 1]) for i in range(3)]))
    maps = [vx.explain(model, clip(), "rise", target=0, n_samples=8, batch_size=b).spatial for b in (1, 8)]
    assert maps[0].max() > 0
    np.testing.assert_allclose(maps[0], maps[1], atol=1e-5)
    cam = vx.methods.get("gradcam")(model)   # its layer runs once per clip in a forward of three
    torch.testing.assert_close(cam.attribute(x, [0, 1, 2]).maps,
                               torch.cat([cam.attribute(x[i:i + 1], i).maps for i in range(3)]))


def test_a_batch_norm_without_running_statistics_that_one_clip_cannot_run_is_named():
    model = vx.wrap(BatchStatsNet(head_norm=True), num_frames=T, input_size=S)
    with pytest.raises(InputError, match=r"^custom cannot score a clip on its own: its batch-norm layers 'bn', "
                                         r"'head_norm' have no running statistics [^\n]*$"):
        vx.explain(model, clip(), "saliency", target=0)


@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore:.*quantiz:UserWarning",
                            "ignore:.*autograd kernel was not registered:UserWarning")
def test_a_dynamically_quantized_network_is_explained_by_perturbations_and_refused_by_gradients_in_one_line():
    # torch.ao.quantization.quantize_dynamic (CPU deployment): its Linear is no nn.Linear, so wrap
    # asked for num_classes=; autograd drops the gradient through it, so saliency gave the gradient
    # of the float path beside it (Net's red term) alone, and Grad-CAM (whose layer feeds only the
    # quantized head) was told the network runs under no_grad or detaches a tensor
    net = torch.ao.quantization.quantize_dynamic(Net().eval(), {nn.Linear}, dtype=torch.qint8)
    model = vx.wrap(net, num_frames=T, input_size=S, cam_layer="conv")
    assert model.num_classes == K
    assert vx.explain(model, clip(), "occlusion", target=0).spatial.max() > 0
    for method in ("saliency", "integrated_gradients", "gradcam", "ep2d", "ep3d", "step"):
        assert not vx.methods.get(method).supports(model)
        with pytest.raises(UnsupportedModelError, match=rf"^method '{method}' needs the gradient of custom's logits, "
                                                        r"which its quantized layers 'fc' \(torch.ao.nn.quantized."
                                                        r"dynamic.Linear\) do not pass; explain the float network [^\n]*$"):
            vx.explain(model, clip(), method, target=0)


def test_a_network_built_for_another_clip_length_than_num_frames_is_told_the_length_it_runs_on():
    # an MViT built for 4-frame clips (its position embedding) wrapped with num_frames=8: every
    # method failed with the network's own "The size of tensor a (257) must match the size of
    # tensor b (129) at non-singleton dimension 1", which names no option
    from torchvision.models.video.mvit import MSBlockConfig, MViT

    torch.manual_seed(0)
    block = MSBlockConfig(num_heads=1, input_channels=16, output_channels=16, kernel_q=[3, 3, 3],
                          kernel_kv=[3, 3, 3], stride_q=[1, 1, 1], stride_kv=[1, 2, 2])
    net = MViT(spatial_size=(32, 32), temporal_size=4, block_setting=[block, block], residual_pool=False,
               residual_with_cls_embed=True, rel_pos_embed=False, proj_after_attn=False, num_classes=3)
    wrong = vx.wrap(net, num_frames=8, input_size=32, fixed_num_frames=True)
    for method in ("saliency", "rise"):
        with pytest.raises(vx.InputError, match=r"^custom failed on a clip of 8 frames: The size of tensor a \(257\) .*"
                                                r"It runs on clips of 4 frames: wrap it with "
                                                r"vx\.wrap\(\.\.\., num_frames=4, fixed_num_frames=True\)"):
            vx.explain(wrong, torch.rand(8, 3, 32, 32), method)
    right = vx.wrap(net, num_frames=4, input_size=32, fixed_num_frames=True)
    assert vx.explain(right, torch.rand(4, 3, 32, 32), "saliency").raw.shape == (4, 32, 32)


def test_saliency_tubes_refuses_a_network_whose_logits_are_not_finite_in_one_line():
    # its head probe compared the head's map of the pooled layer with NaN logits: supports()
    # raised torch's "atol must be greater than or equal to zero, but got nan"
    class Broken(Net):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return super().forward(x) * float("nan")

    model = vx.wrap(Broken(), num_frames=T, input_size=S)
    assert not vx.methods.get("saliency_tubes").supports(model)
    with pytest.raises(UnsupportedModelError, match=r"^method 'saliency_tubes' checks that custom's logits are a "
                                                    r"linear classifier on the global average of layer 'conv', but on "
                                                    r"a random clip they are not finite \(NaN or infinite\)$"):
        vx.explain(model, clip(), "saliency_tubes")


def test_a_network_whose_grid_layers_run_twice_is_told_so_not_that_it_has_no_grid():
    # a network that runs its convolution on the clip and on the clip reversed in time: the layer
    # search said "no layer of custom outputs a (B, C, T', H', W') grid", which it plainly has
    class TwoViews(Net):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return super().forward(x) + super().forward(x.flip(2))

    model = vx.wrap(TwoViews(), num_frames=T, input_size=S)
    with pytest.raises(UnsupportedModelError, match=r"the layers of custom with a \(T', H', W'\) grid \('conv'\) run "
                                                    r"more than once per forward pass, so no one output is the map; "
                                                    r"pass layer=<a layer that runs once>, or give each use"):
        vx.explain(model, clip(), "gradcam", target=0)
    assert vx.explain(model, clip(), "saliency", target=0).spatial.max() > 0
