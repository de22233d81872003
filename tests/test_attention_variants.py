"""The attention methods on Hugging Face configurations beyond the tiny defaults: tubelets of 3
and 4, one head, one layer, no qkv bias, odd patch grids, frame counts and image sizes that the
tokens do not tile. Each is loaded through ``vx.load_model`` from a ``save_pretrained`` directory
and checked against the model's own eager attention (``output_attentions=True``), with the token
layout decoded by hand, and on a model whose attention is steered onto one known token."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import TINY

import videoxai as vx
from videoxai.methods import get

VARIANTS = {
    "videomae_tubelet3": ("videomae", dict(tubelet_size=3, num_frames=9, qkv_bias=False)),
    "videomae_first_one_head": ("videomae", dict(use_mean_pooling=False, num_attention_heads=1, tubelet_size=3,
                                                 num_frames=6)),
    "vivit_tubelet4_odd_grid": ("vivit", dict(tubelet_size=[4, 8, 8], image_size=40, hidden_act="gelu")),
    "vivit_one_layer_1x16": ("vivit", dict(tubelet_size=[1, 16, 16], num_hidden_layers=1)),
    "vivit_wide_patches": ("vivit", dict(tubelet_size=[2, 8, 16])),
    "timesformer_joint_2_frames": ("timesformer", dict(attention_type="joint_space_time", num_frames=2,
                                                       num_attention_heads=1, image_size=40)),
    # rotary position embeddings: the maps must come from the rotated queries and keys
    "vjepa2_rope_odd_grid": ("vjepa2", dict(image_size=40, num_frames=6)),
}


def tiny_hf(family: str, **overrides):
    """conftest's tiny model, with ``num_frames``, ``image_size`` and ``tubelet_size`` free too."""
    from transformers import (TimesformerConfig, TimesformerForVideoClassification, VideoMAEConfig,
                              VideoMAEForVideoClassification, VivitConfig, VivitForVideoClassification)

    torch.manual_seed(0)
    kw = {"num_frames": 8, "image_size": 32, **TINY, **overrides}
    if family == "vjepa2":  # its own names
        from transformers import VJEPA2Config, VJEPA2ForVideoClassification

        kw.update(frames_per_clip=kw.pop("num_frames"), crop_size=kw.pop("image_size"),
                  mlp_ratio=kw.pop("intermediate_size") / kw["hidden_size"])
        net = VJEPA2ForVideoClassification(VJEPA2Config(**{"patch_size": 8, "tubelet_size": 2, "num_pooler_layers": 1,
                                                           "pred_hidden_size": 16, "pred_num_hidden_layers": 1,
                                                           "pred_num_attention_heads": 2, **kw}))
    elif family == "timesformer":
        net = TimesformerForVideoClassification(TimesformerConfig(**{"patch_size": 8, **kw}))
    elif family == "videomae":
        net = VideoMAEForVideoClassification(VideoMAEConfig(**{"patch_size": 8, "tubelet_size": 2, **kw}))
    else:
        net = VivitForVideoClassification(VivitConfig(**{"tubelet_size": [2, 8, 8], **kw}))
    with torch.no_grad():  # sharper than random attention, as conftest's
        for name, p in net.named_parameters():
            if any(k in name for k in ("qkv", "query", "key", "q_proj", "k_proj")) and p.ndim == 2:
                p.mul_(25.0)
    return net.eval()


def _loaded(variant, tmp_path):
    """The variant saved and loaded by ``vx.load_model`` (default attention), and the same
    weights on the eager attention as the reference."""
    family, kw = VARIANTS[variant]
    tiny_hf(family, **kw).save_pretrained(tmp_path)
    ref = tiny_hf(family, **kw)
    ref.config._attn_implementation = "eager"
    return vx.load_model(str(tmp_path)), ref


def _layout(scores: torch.Tensor, frames: int, rows: int, cols: int, timesformer: bool) -> torch.Tensor:
    """HF's patch token order, written out by hand: VideoMAE and ViViT flatten their patch
    embedding's (T', rows, cols) volume, token ``t·rows·cols + r·cols + c``; TimeSformer keeps each
    patch position's frames together, token ``(r·cols + c)·T + t``."""
    out = torch.zeros(scores.shape[0], frames, rows, cols)
    for t in range(frames):
        for r in range(rows):
            for c in range(cols):
                i = (r * cols + c) * frames + t if timesformer else t * rows * cols + r * cols + c
                out[:, t, r, c] = scores[:, i]
    return out


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_attention_methods_match_the_eager_attention_of_variants(variant, tmp_path):
    model, net = _loaded(variant, tmp_path)
    cfg, grid = net.config, model.token_grid
    tube = getattr(cfg, "tubelet_size", 1)       # ViViT: [t, h, w]; VideoMAE, V-JEPA 2: t; TimeSformer: none
    tubelet, patch = (tube[0], tube[1:]) if isinstance(tube, list) else (tube, [cfg.patch_size] * 2)
    size, num_frames = getattr(cfg, "image_size", None) or cfg.crop_size, model.num_frames
    rows, cols = size // patch[0], size // patch[1]
    frames = num_frames // tubelet
    x = torch.rand(1, num_frames, 3, size, size, generator=torch.Generator().manual_seed(1))
    pixels = {"pixel_values_videos" if variant.startswith("vjepa2") else "pixel_values": model.preprocess(x)}
    out = net(**pixels, output_attentions=True)
    for a in out.attentions:
        a.retain_grad()
    target = int(out.logits[0].argmin())          # not the predicted class
    out.logits[0, target].backward()
    atts = [a.detach()[0] for a in out.attentions]  # (heads, N, N)
    first = grid.readout == "first"
    prefix = 1 if variant.startswith(("vivit", "timesformer")) else 0
    pick = (lambda m: m[0]) if first else (lambda m: m.mean(0))
    n = atts[0].shape[-1]
    roll, rel = torch.eye(n), torch.eye(n)
    for a, g in zip(atts, out.attentions):
        m = a.mean(0) + torch.eye(n)
        roll = (m / m.sum(-1, keepdim=True)) @ roll
        rel = rel + (g.grad[0] * a).clamp_min(0).mean(0) @ rel
    weighted = atts[-1] * out.attentions[-1].grad[0].clamp_min(0)
    refs = {"staa": pick(atts[-1].mean(0)), "staa_weighted": pick(weighted.mean(0)), "rollout": pick(roll),
            "attention_relevance": pick(rel - torch.eye(n))}   # R − I: see attention_relevance's docstring
    for name, scores in refs.items():
        ref = _layout(scores[None, prefix:], frames, rows, cols, variant.startswith("timesformer")).clamp_min(0)
        method = name.removesuffix("_weighted")
        options = {"staa": {"layers": 1}, "staa_weighted": {"layers": 1, "gradient_weighted": True}}.get(name, {})
        attr = get(method)(model, **options).attribute(x, target=torch.tensor([target]))
        torch.testing.assert_close(attr.maps, ref, rtol=1e-4, atol=1e-6, msg=f"{variant} {name}")
        assert int(attr.target[0]) == target
        assert attr.temporal.shape == (1, num_frames)


# -- a model whose attention is steered onto one token ------------------------------------------
def _steer(model, token: int) -> list:
    """Hooks that make every query of every joint attention attend to patch ``token`` (query 1
    on feature 0, a large key on feature 0 at that token only)."""
    handles = []
    for layer in model.attention.layers:
        call = layer["joint"]

        def query(_m, _i, out):
            q = torch.zeros_like(out)
            q[..., 0] = 1.0
            return q

        def key(_m, _i, out):
            out = out.clone()
            out[:, model.token_grid.prefix_tokens + token, 0] += 60.0
            return out
        handles += [call.q.register_forward_hook(query), call.k.register_forward_hook(key)]
    return handles


@pytest.mark.parametrize("family", ["vivit", "videomae"])
@pytest.mark.parametrize("method", ["staa", "rollout", "attention_relevance"])
def test_tokens_that_do_not_tile_the_input_land_on_the_frames_and_pixels_they_cover(family, method, tmp_path):
    # 9 frames in tubelets of 2: the patch embedding drops frame 8; 36 pixels in 8-pixel patches:
    # it drops the last 4 rows and columns. The maps were stretched over all 9 frames (linear
    # interpolation of 4 token frames: frame 2's score on frames 0-2, frame 8 given the last
    # tubelet's) and all 36 pixels (every patch up to 4 pixels off).
    tiny_hf(family, num_frames=9, image_size=36, num_attention_heads=1).save_pretrained(tmp_path)
    model = vx.load_model(str(tmp_path))
    grid = model.token_grid
    assert (grid.frames, grid.rows, grid.cols, grid.tubelet) == (4, 4, 4, 2)
    t, r, c = 2, 1, 3                                  # frames 4-5, rows 8-15, columns 24-31
    handles = _steer(model, t * 16 + r * 4 + c)
    try:
        exp = vx.explain(model, np.random.default_rng(0).random((9, 36, 36, 3), dtype=np.float32), method)
    finally:
        for h in handles:
            h.remove()
    assert exp.temporal[8] == 0 and exp.spatial[8].max() == 0          # the frame the model never sees
    assert abs(exp.temporal.sum() - 1) < 1e-5
    assert exp.temporal[4] == exp.temporal[5]                          # one tubelet, one score
    if method == "attention_relevance":
        return  # steered by hooks on q and k, the attention carries no gradient to weigh
    assert exp.temporal[4] > 1.5 * exp.temporal[:8].mean()
    assert exp.spatial[:, 32:].max() == 0 and exp.spatial[:, :, 32:].max() == 0   # pixels never seen
    frame, y, x = np.unravel_index(exp.spatial.argmax(), exp.spatial.shape)
    assert frame in (4, 5) and 8 <= y < 16 and 24 <= x < 32, (frame, y, x)


@pytest.mark.parametrize("method", ["gradcam", "gradcam_pp"])
def test_cam_on_tokens_that_do_not_tile_the_input_lands_on_what_they_cover(method, tmp_path):
    # Grad-CAM on the token grid had the same stretch as the attention methods: the dropped 9th
    # frame got the last tubelet's score and the 4x4 grid covered all 36 pixels
    tiny_hf("vivit", num_frames=9, image_size=36).save_pretrained(tmp_path)
    model = vx.load_model(str(tmp_path))
    clip = np.random.default_rng(1).random((9, 36, 36, 3), dtype=np.float32)
    attr = get(method)(model).attribute(torch.from_numpy(clip).permute(0, 3, 1, 2)[None])
    assert attr.maps.shape == (1, 9, 36, 36)
    exp = vx.explain(model, clip, method)
    assert exp.temporal[8] == 0 and exp.spatial[8].max() == 0
    assert exp.spatial[:, 32:].max() == 0 and exp.spatial[:, :, 32:].max() == 0
    for k in range(4):                                                 # one tubelet, one map
        assert exp.temporal[2 * k] == exp.temporal[2 * k + 1]
        np.testing.assert_array_equal(exp.spatial[2 * k], exp.spatial[2 * k + 1])
    assert exp.spatial[:8, :32, :32].max() > 0


def test_tokens_that_tile_the_input_keep_the_token_grid(tmp_path):
    # the common case is unchanged: one map frame per tubelet, one cell per patch
    model = vx.load_model(str(_save(tiny_hf("videomae"), tmp_path)))
    x = torch.rand(1, 8, 3, 32, 32)
    for method in ("staa", "rollout", "attention_relevance", "gradcam"):
        assert get(method)(model).attribute(x).maps.shape == (1, 4, 4, 4)


def _save(net, path):
    net.save_pretrained(path)
    return path


@pytest.mark.parametrize("frames", [1, 2])
def test_divided_attention_on_an_odd_grid_matches_hugging_faces_attention(frames, tmp_path):
    # a 5×5 patch grid, one head: the spatial CLS rows HF returns, times the temporal attention
    # computed from the temporal module's own eager code on its captured input (HF never returns it)
    tiny_hf("timesformer", num_frames=frames, image_size=40, num_attention_heads=1).save_pretrained(tmp_path)
    model = vx.load_model(str(tmp_path))
    net = tiny_hf("timesformer", num_frames=frames, image_size=40, num_attention_heads=1)
    x = torch.rand(2, frames, 3, 40, 40, generator=torch.Generator().manual_seed(2))
    last = net.timesformer.encoder.layer[-1].temporal_attention.attention
    captured = []
    handle = last.register_forward_pre_hook(lambda _m, a: captured.append(a[0]))
    with torch.no_grad():
        out = net(pixel_values=model.preprocess(x), output_attentions=True)
        handle.remove()
        tau = last(captured[0], output_attentions=True)[1][:, 0].mean(1)    # (B·P, T): received, over queries
    spatial = out.attentions[-1][:, 0, 0, 1:]                                # (B·T, P): CLS row of each frame
    ref = torch.zeros(2, frames, 5, 5)
    for b in range(2):
        for t in range(frames):
            for p in range(25):        # frame rows b·T + t; temporal rows b·P + p (patches in (row, col) order)
                ref[b, t, p // 5, p % 5] = spatial[b * frames + t, p] * tau[b * 25 + p, t]
    attr = get("staa")(model, layers=1, temporal_weighting=True).attribute(x)
    torch.testing.assert_close(attr.maps, ref, rtol=1e-4, atol=1e-6)
    assert attr.temporal.shape == (2, frames)


def test_a_grid_whose_patch_or_tubelet_does_not_describe_the_input_stays_over_the_crop():
    # a hand-made adapter's grid (default 16-pixel patches on a 32-pixel input, 4×4 tokens) is not
    # cut to the pixels its patches would cover (a negative pad cropped the map to its top-left
    # quarter), nor are its frames placed by a tubelet that does not fit them
    from dataclasses import replace

    from videoxai.models.hf import from_hf_module

    model = from_hf_module(tiny_hf("vivit"))
    x = torch.rand(1, 8, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    expected = get("rollout")(model).attribute(x)
    model.token_grid = replace(model.token_grid, patch=(16, 16), tubelet=3)
    attr = get("rollout")(model).attribute(x)
    torch.testing.assert_close(attr.maps, expected.maps)
    assert attr.temporal.shape == (1, 8) and torch.isfinite(attr.temporal).all()


def test_attention_read_from_the_modules_input_equals_attention_read_from_its_projections():
    # transformers 4's VideoMAE applies its projections' weights itself (with its own q/v biases)
    # and never calls the modules, so the tap computes q, k, v from the attention's input there
    # (checked by hand against transformers 4.46's eager attention); here the same path on a
    # transformers 5 model must give what its projection hooks give, with and without gradients
    from dataclasses import replace

    import torch.nn.functional as F

    from videoxai.models.attention import AttentionSites
    from videoxai.models.hf import from_hf_module

    model = from_hf_module(tiny_hf("videomae", use_mean_pooling=False))
    x = torch.rand(1, 8, 3, 32, 32, generator=torch.Generator().manual_seed(4))
    expected = {name: get(name)(model).attribute(x, target=torch.tensor([1])).maps
                for name in ("staa", "rollout", "attention_relevance")}
    expected["weighted"] = get("staa")(model, gradient_weighted=True).attribute(x, target=torch.tensor([1])).maps

    def from_input(call):
        return lambda h: tuple(F.linear(h, m.weight, m.bias) for m in (call.q, call.k, call.v))
    # projections that the network never calls, as in transformers 4: only the input path sees q, k, v
    idle = torch.nn.Identity()
    model.attention = AttentionSites([{"joint": replace(layer["joint"], q=idle, k=idle, v=idle,
                                                        project=from_input(layer["joint"]))}
                                      for layer in model.attention.layers])
    for name in ("staa", "rollout", "attention_relevance"):
        got = get(name)(model).attribute(x, target=torch.tensor([1])).maps
        torch.testing.assert_close(got, expected[name], rtol=1e-5, atol=1e-7, msg=name)
    got = get("staa")(model, gradient_weighted=True).attribute(x, target=torch.tensor([1])).maps
    torch.testing.assert_close(got, expected["weighted"], rtol=1e-5, atol=1e-9)
    assert not idle._forward_hooks and not any(m._forward_pre_hooks for m in model.modules())


@pytest.mark.parametrize("family", ["timesformer", "videomae", "vivit"])
def test_a_forward_that_raises_leaves_the_model_as_it_was(family):
    # taps (projection hooks, grad-mode substitution, input pre-hooks), TimeSformer's fused
    # attention, frozen parameters and a return_dict=False config are all put back
    from videoxai.models.hf import from_hf_module

    net = tiny_hf(family, return_dict=False)
    model = from_hf_module(net)
    impl = net.config._attn_implementation

    def fail(*_):
        raise RuntimeError("a forward that raises")
    handle = net.classifier.register_forward_hook(fail)
    x = torch.rand(1, 8, 3, 32, 32)
    for method, options in (("staa", {}), ("staa", {"gradient_weighted": True}), ("rollout", {}),
                            ("attention_relevance", {})):
        with pytest.raises(RuntimeError, match="a forward that raises"):
            get(method)(model, **options).attribute(x)
    handle.remove()
    assert all(not m._forward_hooks and not m._forward_pre_hooks and "forward" not in m.__dict__
               for m in net.modules())
    assert all(p.requires_grad and p.grad is None for p in net.parameters())
    assert net.config.return_dict is False and net.config._attn_implementation == impl
