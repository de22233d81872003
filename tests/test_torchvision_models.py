"""torchvision video families: registry, preprocessing against torchvision's presets, forward and
CAM layers of every family (random weights, no downloads), and every way of finding weights."""

from __future__ import annotations

import functools
import json
import logging

import pytest
import torch
from torchvision.models import video as tv_video

import videoxai as vx
from videoxai.errors import InputError, UnknownModelError
from videoxai.models.torchvision_zoo import MODELS, MVIT_GRID, preprocess_from_weights


@functools.lru_cache(maxsize=None)
def random_model(name: str):
    """One random-weight model per family for the whole module (building MViT/Swin takes seconds)."""
    torch.manual_seed(0)
    return vx.load_model(f"torchvision:{name}", weights=None)


def clip(frames: int, height: int, width: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(1, frames, 3, height, width, generator=torch.Generator().manual_seed(seed))


def torchvision_reference(weights, net: torch.nn.Module, pixels: torch.Tensor) -> torch.Tensor:
    """torchvision's own pipeline: the weights' preset transform, then the network."""
    with torch.no_grad():
        return net(weights.transforms()(pixels))


# -- the registry ----------------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(MODELS))
def test_every_entry_builds_with_its_cam_layer_and_head(name):
    spec = MODELS[name]
    with torch.device("meta"):  # structure only: no memory, no initialisation
        net = spec.build(400)
    net.get_submodule(spec.cam_layer)
    assert net.state_dict()[spec.head].shape[0] == 400
    assert len(spec.weights_enum().meta["categories"]) == 400


@pytest.mark.parametrize("weights, expected", [
    # a fixed [h, w] resize stretches the frame to that shape, a [s] one scales its shorter side
    ("R3D_18_Weights", dict(size=(112, 112), resize=(128, 171), mean=(0.43216, 0.394666, 0.37645),
                            std=(0.22803, 0.22145, 0.216989))),
    ("S3D_Weights", dict(size=(224, 224), resize=(256, 256), mean=(0.43216, 0.394666, 0.37645),
                         std=(0.22803, 0.22145, 0.216989))),
    ("MViT_V2_S_Weights", dict(size=(224, 224), shortest_edge=256, mean=(0.45,) * 3, std=(0.225,) * 3)),
    ("Swin3D_T_Weights", dict(size=(224, 224), shortest_edge=256, mean=(0.485, 0.456, 0.406),
                              std=(0.229, 0.224, 0.225))),
])
def test_preprocess_read_from_weights(weights, expected):
    # with torchvision's crop arithmetic (the longer side truncated, the crop's offset rounded) and
    # its video presets' resize without antialiasing
    assert preprocess_from_weights(getattr(tv_video, weights).DEFAULT) == vx.models.Preprocess(
        **expected, crop_offset="round", antialias=False)


@pytest.mark.parametrize("weights, frame", [
    ("R3D_18_Weights", (128, 171)),  # the fixed (128, 171) resize is the identity: only the crop acts
    ("S3D_Weights", (256, 256)),
    ("MViT_V1_B_Weights", (256, 320)),
    ("Swin3D_T_Weights", (256, 341)),
])
def test_preprocess_equals_torchvision_preset_where_resize_is_identity(weights, frame):
    w = getattr(tv_video, weights).DEFAULT
    x = clip(2, *frame)
    ours = preprocess_from_weights(w)(x).transpose(1, 2)  # (B, C, T, h, w) like the preset
    torch.testing.assert_close(ours, w.transforms()(x), rtol=0, atol=0)


@pytest.mark.parametrize("weights", ["R3D_18_Weights", "MViT_V1_B_Weights"])
def test_preprocess_close_to_torchvision_preset_on_4_by_3_frames(weights):
    # A smooth 240x320 clip: the preset resizes to (128, 171) / shorter side 256 as we do; ours
    # antialiases and crops before shrinking, so values differ by resampling only.
    w = getattr(tv_video, weights).DEFAULT
    low = torch.rand(2, 3, 6, 8, generator=torch.Generator().manual_seed(0))
    x = torch.nn.functional.interpolate(low, size=(240, 320), mode="bicubic").clamp(0, 1)[None]
    ours = preprocess_from_weights(w)(x).transpose(1, 2)
    assert (ours - w.transforms()(x)).abs().mean() < 0.06  # normalised units; pixels differ by < 0.015


@pytest.mark.parametrize("frame", [(120, 160), (720, 1280), (300, 200)])
def test_crop_box_is_where_torchvisions_preset_crops(frame):
    # An independent reading of the preset's geometry: frames whose channels are the row and the
    # column of each pixel (linear ramps, which bilinear resampling reproduces exactly away from
    # the borders); the preset's output at two interior pixels says which original coordinates it
    # sampled there, i.e. the scale and offset of its crop in the frame. 16:9 and portrait frames
    # are stretched to (128, 171) for the ResNets, as the preset does, not cropped square.
    h, w = frame
    rows = torch.arange(h, dtype=torch.float64).view(h, 1).expand(h, w)
    cols = torch.arange(w, dtype=torch.float64).view(1, w).expand(h, w)
    ramp = torch.stack([rows, cols, rows]).view(1, 1, 3, h, w)
    for name in ("r3d_18", "s3d", "mvit_v2_s", "swin3d_t"):
        weights = MODELS[name].weights_enum()
        t = weights.transforms()
        seen = tv_video_transforms_geometry(t, ramp)  # the preset's resize and crop, not its normalisation
        box = preprocess_from_weights(weights).crop_box(h, w)
        for axis, (start, extent, n) in enumerate(((box.top, box.height, h), (box.left, box.width, w))):
            line = (seen[axis, :, 3] if axis == 0 else seen[axis, 3, :]).tolist()
            step = (line[-3] - line[2]) / (len(line) - 5)  # original pixels per model pixel
            offset = line[2] + 0.5 - 2.5 * step            # where the crop's first pixel starts
            assert extent == pytest.approx(step * len(line), abs=1e-6), (name, frame, axis)
            assert start == pytest.approx(offset, abs=1e-6), (name, frame, axis)
            assert 0 <= start and start + extent <= n + 1e-9


def tv_video_transforms_geometry(t, ramp: torch.Tensor) -> torch.Tensor:
    """torchvision's ``VideoClassification`` resize and centre crop of ``ramp`` ``(1, 1, 3, H, W)``
    (float64, not normalised) → ``(3, h, w)``."""
    import torchvision.transforms.functional as TF
    x = TF.resize(ramp[0], list(t.resize_size), interpolation=t.interpolation, antialias=False)
    return TF.center_crop(x, list(t.crop_size))[0]


# -- every family: forward and CAM layer -----------------------------------------------------------
# name: (frames fed, CAM channels, temporal stride, spatial stride of the CAM layer w.r.t. the crop)
FAMILIES = {
    "r3d_18": (16, 512, 8, 16),
    "mc3_18": (16, 512, 1, 16),  # only the stem convolves over time, nothing strides it
    "r2plus1d_18": (16, 512, 8, 16),
    "s3d": (16, 1024, 8, 32),
    "mvit_v1_b": (16, 768, 2, 32),
    "mvit_v2_s": (16, 768, 2, 32),
    "swin3d_t": (4, 768, 2, 32),  # any length: 4 frames keeps the test fast
}


HEAVY = {"mvit_v1_b", "mvit_v2_s", "swin3d_t"}  # seconds per forward on a CPU


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in HEAVY else n for n in FAMILIES])
def test_forward_and_cam_layer(name):
    frames, channels, t_stride, s_stride = FAMILIES[name]
    model = random_model(name)
    assert model.cam_layer == MODELS[name].cam_layer and model.layout == "BCTHW"
    assert model.labels[0] == "abseiling" and model.num_classes == 400

    layers = [model.cam_layer] + (["blocks.15"] if model.family == "mvit" else [])
    outs = {}
    hooks = [model.submodule(layer).register_forward_hook(lambda m, i, o, k=layer: outs.__setitem__(k, o))
             for layer in layers]
    try:
        logits = model(clip(frames, 120, 160))  # non-square frames: centre crop, then resize
    finally:
        for h in hooks:
            h.remove()
    assert logits.shape == (1, 400) and torch.isfinite(logits).all()

    # the activation volume has the shape the input implies
    crop = model.input_size[0]
    expected = (1, channels, frames // t_stride, crop // s_stride, crop // s_stride)
    reshape = model.cam_reshape or (lambda o: o)
    raw = {k: o[0] if isinstance(o, tuple) else o for k, o in outs.items()}
    volume = reshape(outs[model.cam_layer])
    assert volume.ndim == 5 and tuple(volume.shape) == expected

    # Grad-CAM is not degenerate there: the target's gradient reaches every (t, h, w) position
    grads = dict(zip(raw, torch.autograd.grad(logits[0, 7], list(raw.values()))))

    def as_volume(layer):
        o = outs[layer]
        return reshape((grads[layer], o[1]) if isinstance(o, tuple) else grads[layer])

    assert (as_volume(model.cam_layer).abs().sum(1) > 0).all()

    if model.family == "mvit":
        assert model.token_grid == MVIT_GRID
        assert (MVIT_GRID.frames, MVIT_GRID.rows, MVIT_GRID.cols) == expected[2:]
        # a block's output is a (tokens, thw) tuple; its patch tokens never reach the head (only CLS
        # does), which is why the default CAM layer is the last block's norm1
        assert tuple(reshape(outs["blocks.15"]).shape) == expected
        assert as_volume("blocks.15").abs().max() == 0


def test_s3d_rejects_clips_shorter_than_its_pooling():
    with pytest.raises(InputError, match="at least 14 frames"):
        random_model("s3d")(clip(8, 120, 160))


def test_mvit_takes_exactly_16_frames():
    with pytest.raises(InputError, match="exactly 16"):
        random_model("mvit_v2_s")(clip(8, 120, 160))
    with pytest.raises(InputError, match="exactly 16"):
        vx.load_model("torchvision:mvit_v2_s", weights=None, num_frames=8)


def test_num_frames_option():
    assert vx.load_model("torchvision:r3d_18", weights=None, num_frames=8).num_frames == 8
    with pytest.raises(InputError, match="at least 14"):
        vx.load_model("torchvision:s3d", weights=None, num_frames=8)


# -- finding weights -------------------------------------------------------------------------------
MC3 = tv_video.MC3_18_Weights.DEFAULT


@pytest.fixture(scope="module")
def mc3_file(tmp_path_factory):
    """A random mc3_18 saved as torchvision's cache would hold it: (net, path)."""
    torch.manual_seed(1)
    net = tv_video.mc3_18().eval()
    path = tmp_path_factory.mktemp("hub") / "checkpoints" / "mc3_18-a90a0ba3.pth"
    path.parent.mkdir()
    torch.save(net.state_dict(), path)
    return net, path


def assert_same_weights(model, net):
    theirs = net.state_dict()
    ours = model.net.state_dict()
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)


def test_weights_from_a_state_dict_file(mc3_file):
    net, path = mc3_file
    model = vx.load_model("torchvision:mc3_18", weights=path)
    assert model.weights_source == f"file:{path}"
    assert_same_weights(model, net)
    # a 128x171 clip is where our preprocessing equals torchvision's preset exactly
    x = clip(8, 128, 171)
    with torch.no_grad():
        torch.testing.assert_close(model(x), torchvision_reference(MC3, net, x), rtol=1e-5, atol=1e-5)


def test_weights_from_safetensors_and_from_a_training_checkpoint(mc3_file, tmp_path):
    from safetensors.torch import save_file

    net, _ = mc3_file
    save_file(net.state_dict(), str(tmp_path / "mc3.safetensors"))
    assert_same_weights(vx.load_model("torchvision:mc3_18", weights=tmp_path / "mc3.safetensors"), net)
    # torchvision's reference train.py nests the state dict under "model" (and DDP adds "module.")
    torch.save({"model": {f"module.{k}": v for k, v in net.state_dict().items()}, "epoch": 3},
               tmp_path / "checkpoint.pth")
    assert_same_weights(vx.load_model("torchvision:mc3_18", weights=str(tmp_path / "checkpoint.pth")), net)


def test_default_weights_come_from_torchvisions_cache(mc3_file, monkeypatch, caplog):
    net, path = mc3_file
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(path.parent.parent))
    with caplog.at_level(logging.WARNING):
        model = vx.load_model("torchvision:mc3_18")
    assert model.weights_source == f"cache:{path}" and not caplog.records
    assert_same_weights(model, net)


def test_no_cached_weights_gives_random_init_and_a_warning(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    with caplog.at_level(logging.WARNING):
        model = vx.load_model("torchvision:mc3_18")
    assert model.weights_source == "random"
    [record] = caplog.records
    assert record.levelno == logging.WARNING and "RANDOM" in record.getMessage()
    assert str(tmp_path / "checkpoints" / "mc3_18-a90a0ba3.pth") in record.getMessage()
    caplog.clear()
    with caplog.at_level(logging.WARNING):  # asked for on purpose: no warning
        assert vx.load_model("torchvision:mc3_18", weights=None).weights_source == "random"
    assert not caplog.records


def test_download_only_when_asked(mc3_file, monkeypatch):
    net, _ = mc3_file
    urls = []

    def fake_download(url, **kwargs):
        urls.append(url)
        return net.state_dict()

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", fake_download)
    vx.load_model("torchvision:mc3_18", weights=None)
    assert urls == []
    model = vx.load_model("torchvision:mc3_18", weights="download")
    assert urls == [MC3.url] and model.weights_source == f"download:{MC3.url}"
    assert_same_weights(model, net)

    def offline(url, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    with pytest.raises(UnknownModelError, match="cannot download.*network is unreachable.*weights="):
        vx.load_model("torchvision:mc3_18", weights="download")


def test_fine_tuned_model_directory(tmp_path):
    from safetensors.torch import save_file

    torch.manual_seed(2)
    net = tv_video.mc3_18(num_classes=3).eval()
    save_file(net.state_dict(), str(tmp_path / "model.safetensors"))
    (tmp_path / "videoxai.json").write_text(json.dumps(
        {"loader": "torchvision", "model": "mc3_18", "weights": "model.safetensors",
         "labels": ["a", "b", "c"], "num_frames": 8}))
    model = vx.load_model(str(tmp_path))
    assert (model.labels, model.num_classes, model.num_frames) == (["a", "b", "c"], 3, 8)
    x = clip(8, 128, 171)
    with torch.no_grad():
        torch.testing.assert_close(model(x), torchvision_reference(MC3, net, x), rtol=1e-5, atol=1e-5)


def test_a_model_directorys_labels_may_be_an_id2label_dict(tmp_path):
    # taken as a sequence, the dict gave its keys: every class was called "0", "1", "2"
    (tmp_path / "videoxai.json").write_text(json.dumps(
        {"loader": "torchvision", "model": "mc3_18", "weights": None, "labels": {"1": "b", "0": "a", "2": "c"}}))
    model = vx.load_model(str(tmp_path))
    assert (model.labels, model.num_classes) == (["a", "b", "c"], 3)
    with pytest.raises(InputError, match="torchvision:mc3_18: labels name 'a' twice"):
        vx.load_model("torchvision:mc3_18", weights=None, labels=["a", "b", "a"])


def test_bad_weights_give_clear_errors(mc3_file, tmp_path):
    _, path = mc3_file
    with pytest.raises(InputError, match="nope.pth.*does not exist"):
        vx.load_model("torchvision:mc3_18", weights=tmp_path / "nope.pth")
    (tmp_path / "notes.txt").write_text("not weights")
    with pytest.raises(InputError, match="cannot read"):
        vx.load_model("torchvision:mc3_18", weights=tmp_path / "notes.txt")
    torch.save({"fc.weight": torch.zeros(400, 512), "fc.bias": torch.zeros(400)}, tmp_path / "head.pth")
    with pytest.raises(InputError, match=r"do not fit torchvision:mc3_18: missing keys stem\.0\.weight"):
        vx.load_model("torchvision:mc3_18", weights=tmp_path / "head.pth")
    with pytest.raises(InputError, match="2 labels .* 400 classes"):
        vx.load_model("torchvision:mc3_18", weights=path, labels=["a", "b"])


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(UnknownModelError) as err:
        vx.load_model("torchvision:resnet50")
    assert "resnet50" in str(err.value)
    assert all(name in str(err.value) for name in FAMILIES)


def test_mvit_token_reshape_orders_tokens_thw_and_drops_cls():
    reshape = MODELS["mvit_v2_s"].cam_reshape
    t, h, w = 8, 14, 14  # an earlier stage than the last: twice the rows and columns
    index = torch.arange(1 + t * h * w, dtype=torch.float32)
    tokens = torch.stack([index, -index], -1)[None]  # (1, 1 + N, 2): channel 0 = token index
    volume = reshape(tokens)
    assert volume.shape == (1, 2, t, h, w)
    ti, hi, wi = torch.meshgrid(torch.arange(t), torch.arange(h), torch.arange(w), indexing="ij")
    torch.testing.assert_close(volume[0, 0], (1 + ti * h * w + hi * w + wi).float())  # CLS (0) dropped
    torch.testing.assert_close(reshape((tokens, (t, h, w))), volume)  # a block's (tokens, thw) output
    with pytest.raises(InputError, match="do not form"):
        reshape(tokens[:, :-3])


def test_loader_options_in_the_spec_reach_the_loader_as_keywords_do(mc3_file, monkeypatch, tmp_path, caplog):
    # the command line and evaluation workers know a model by its spec only: the warning told
    # them to pass weights='download', which they had no way to do
    net, path = mc3_file
    urls = []
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", lambda url, **kw: urls.append(url) or net.state_dict())
    model = vx.load_model("torchvision:mc3_18,weights=download,num_frames=8")
    assert urls == [MC3.url] and model.num_frames == 8 and model.name == "torchvision:mc3_18"
    assert_same_weights(model, net)
    assert vx.load_model(f"torchvision:mc3_18,weights={path}").weights_source == f"file:{path}"
    assert vx.load_model("torchvision:mc3_18, weights=none").weights_source == "random"
    for bad, match in [("torchvision:mc3_18,weights", "not KEY=VALUE"),
                       ("torchvision:mc3_18,colour=red", "no option 'colour'; its options are: weights"),
                       ("torchvision:mc3_18,num_frames=abc", "num_frames must be an integer")]:
        with pytest.raises(InputError, match=match):
            vx.load_model(bad)
    # the random-weights warning says how to ask for the weights on the command line
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    with caplog.at_level(logging.WARNING):
        vx.load_model("torchvision:mc3_18")
    assert "--model torchvision:mc3_18,weights=download" in caplog.records[-1].getMessage()


def test_a_directory_with_a_comma_is_not_split_into_options(tmp_path):
    from conftest import tiny_hf

    d = tmp_path / "run 3, final"
    tiny_hf("videomae").save_pretrained(d)
    assert vx.load_model(f"hf:{d}").num_classes == 5


def _tiny_mvit() -> torch.nn.Module:
    """torchvision's MViT at toy size: 4×16×16 clips, a 1-head block pooling its keys and values,
    then a 2-head block pooling its queries (each pooling a Conv3d on (B·heads, C, T', H', W'))."""
    from torchvision.models.video.mvit import MSBlockConfig, MViT

    torch.manual_seed(0)
    return MViT(spatial_size=(16, 16), temporal_size=4, block_setting=[
        MSBlockConfig(1, 8, 8, [3, 3, 3], [3, 3, 3], [1, 1, 1], [1, 2, 2]),
        MSBlockConfig(2, 8, 16, [3, 3, 3], [3, 3, 3], [1, 2, 2], [1, 1, 1])],
        residual_pool=True, residual_with_cls_embed=False, rel_pos_embed=True, proj_after_attn=True,
        num_classes=3)


def test_the_layer_search_on_a_wrapped_mvit_does_not_return_an_attention_pooling():
    # MViT wrapped without its adapter: the search returned a grid inside an attention block: here
    # the last block's skip pooling (mapped without a word), on mvit_v2_s its query pooling, whose
    # (B·heads, C, T', H', W') output made one map per head ("method gradcam returned maps of shape
    # (8, …)", a RuntimeError naming no layer). Those grids are steps of a token block, no map of
    # the clip: the patch embedding is the only one, and the search says what to give instead
    import numpy as np

    from videoxai.errors import UnsupportedModelError

    model = vx.wrap(_tiny_mvit(), num_frames=4, input_size=16)
    clip = np.random.default_rng(0).random((4, 16, 16, 3), dtype=np.float32)
    with pytest.raises(UnsupportedModelError, match=r"is 'conv_proj', the patch embedding of a transformer: later "
                                                    r"layers \(pos_encoding, blocks\.0\.norm1"):
        vx.explain(model, clip, "gradcam")
    assert not vx.methods.get("gradcam").supports(model)
    # named by the caller, a pooling over heads is refused in one line naming it
    with pytest.raises(UnsupportedModelError, match=r"layer 'blocks\.1\.attn\.pool_q\.pool' of custom gives "
                                                    r"\(2, 8, 2, 2, 2\) .* for 1 clip: its first axis is not the batch"):
        vx.explain(model, clip, "gradcam", layer="blocks.1.attn.pool_q.pool")


@pytest.mark.parametrize("arch", ["mvit_v1_b", "mvit_v2_s"])
def test_mvit_token_centres_compose_its_embedding_and_poolings(arch):
    # composed from the network's own modules, not from the grid's numbers: the embedding and the
    # query poolings of the blocks that halve the grid (their skip paths' poolings agree), in order
    net = getattr(tv_video, arch)()

    def window(m):
        k, s, p = (getattr(m, a) for a in ("kernel_size", "stride", "padding"))
        k, s, p = ([v] * 3 if isinstance(v, int) else list(v) for v in (k, s, p))
        return k, s, p

    step, offset = [1.0] * 3, [0.0] * 3          # input index of cell o: offset + step·o

    def compose(m):
        k, s, p = window(m)
        return ([step[a] * s[a] for a in range(3)],
                [offset[a] + step[a] * (-p[a] + (k[a] - 1) / 2) for a in range(3)])

    step, offset = compose(net.conv_proj)
    for block in net.blocks:
        pool = getattr(block.attn, "pool_q", None)
        if pool is None or max(window(pool.pool)[1]) == 1:
            continue
        skipped = compose(block.pool_skip.pool)
        step, offset = compose(pool.pool)
        assert (step, offset) == skipped
    assert step == [MVIT_GRID.tubelet, *MVIT_GRID.patch]
    assert tuple(offset) == MVIT_GRID.centred == (0.0, 0.0, 0.0)


def test_mvit_token_maps_are_laid_on_the_tokens_centres():
    # token (t, o, o') on frame 2·t and pixel (32·o, 32·o'), linear between, held past the last
    from videoxai.core.token_layout import token_frames_on_input, token_maps_on_input

    maps = torch.zeros(1, 8, 7, 7)
    maps[0, 3, 2, 5] = 1.0
    placed = token_maps_on_input(maps, MVIT_GRID, (224, 224), 16)
    assert placed.shape == (1, 16, 224, 224)
    peak = tuple(int(i) for i in torch.unravel_index(placed[0].argmax(), placed.shape[1:]))
    assert peak == (6, 64, 160) and float(placed[0, 6, 64, 160]) == 1.0
    assert float(placed[0, 7, 64, 160]) == pytest.approx(0.5) and float(placed[0, 6, 80, 160]) == pytest.approx(0.5)
    frames = token_frames_on_input(torch.eye(8)[None, 7], MVIT_GRID, 16)
    assert frames[0, 14:].tolist() == [1.0, 1.0] and float(frames[0, 13]) == pytest.approx(0.5)
