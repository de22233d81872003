"""STAA against the attention the models themselves compute (eager, output_attentions)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import tiny_hf

import videoxai as vx
from videoxai.errors import UnsupportedModelError
from videoxai.methods import get
from videoxai.models.hf import from_hf_module


def _pixels(rng, b=2):
    return torch.from_numpy(rng.random((b, 8, 3, 32, 32), dtype=np.float32))


def _tiny(family):
    # "timesformer_joint": TimeSformer with one joint attention over all tokens per layer
    if family == "timesformer_joint":
        return tiny_hf("timesformer", attention_type="joint_space_time")
    # "videomae_first": the head reads the first patch token instead of the mean of all tokens
    if family == "videomae_first":
        return tiny_hf("videomae", use_mean_pooling=False)
    return tiny_hf(family)


def _eager(family):
    net = _tiny(family)
    if not family.startswith("timesformer"):  # TimeSformer's own code is eager
        net.config._attn_implementation = "eager"
    return net


def test_timesformer_spatial_and_temporal_match_eager_attention(rng):
    net = _eager("timesformer")
    model = from_hf_module(net)
    x = _pixels(rng)
    attr = get("staa")(model, layers=1, temporal_weighting=True).attribute(x)
    plain = get("staa")(model, layers=1).attribute(x)
    grid = model.token_grid
    # reference: the spatial attention HF returns, and the temporal attention read by calling the
    # temporal attention module again on its captured input with output_attentions=True
    captured = {}
    last = net.timesformer.encoder.layer[-1]
    h = last.temporal_attention.attention.register_forward_pre_hook(lambda m, a: captured.setdefault("t", a[0]))
    with torch.no_grad():
        out = net(pixel_values=model.preprocess(x), output_attentions=True)
        h.remove()
        temporal_probs = last.temporal_attention.attention(captured["t"], output_attentions=True)[1]
    spatial = out.attentions[-1].mean(1)[:, 0, 1:].reshape(2, 8, grid.rows * grid.cols)      # (B, T, P)
    tau = temporal_probs.mean(1).mean(1).reshape(2, grid.rows * grid.cols, 8).transpose(1, 2)  # (B, T, P)
    ref = (spatial * tau).reshape(2, 8, grid.rows, grid.cols)
    # float32 tolerance: STAA reads the fused (sdpa) attention, the reference the eager one; their
    # sums are ordered differently with the thread count (6.6e-7 of 0.05 seen on a loaded machine)
    torch.testing.assert_close(attr.maps, ref, rtol=1e-4, atol=1e-6)
    # the default is the spatial CLS row alone (the reference's map)
    torch.testing.assert_close(plain.maps, spatial.reshape(2, 8, grid.rows, grid.cols), rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(attr.logits, out.logits)
    assert not torch.allclose(tau, torch.full_like(tau, 1 / 8), atol=1e-3), "temporal attention must not be trivial"


@pytest.mark.parametrize("family", ["videomae", "vivit", "timesformer_joint", "videomae_first"])
def test_joint_attention_matches_eager_attention(family, rng):
    net = _eager(family)
    x = _pixels(rng)
    model = from_hf_module(net)
    with torch.no_grad():
        out = net(pixel_values=model.preprocess(x), output_attentions=True)
    a = out.attentions[-1].mean(1)                     # (B, N, N), head mean
    # the CLS row, the first patch token's row (all tokens are patches), or the attention received
    scores = {"videomae": a.mean(1), "videomae_first": a[:, 0]}.get(family, a[:, 0, 1:])
    ref = model.token_grid.scores_to_volume(scores)
    # STAA on the *fast* (sdpa) model must give the eager model's map
    fast = _tiny(family)
    fast.config._attn_implementation = "sdpa"
    attr = get("staa")(from_hf_module(fast), layers=1).attribute(x)
    torch.testing.assert_close(attr.maps, ref, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("family", ["videomae", "vivit"])
def test_gradient_weighted_matches_eager_gradients(family, rng):
    net = _eager(family)
    model = from_hf_module(net)
    x = _pixels(rng, b=1)
    out = net(pixel_values=model.preprocess(x), output_attentions=True)
    att = out.attentions[-1]
    att.retain_grad()
    target = out.logits.argmax(-1)
    out.logits[0, target[0]].backward()
    w = (att * att.grad.clamp_min(0)).mean(1)
    scores = w[:, 0, 1:] if family == "vivit" else w.mean(1)
    ref = model.token_grid.scores_to_volume(scores)
    attr = get("staa")(from_hf_module(tiny_hf(family)), layers=1, gradient_weighted=True).attribute(x)
    torch.testing.assert_close(attr.maps, ref.detach(), rtol=1e-4, atol=1e-7)


def test_mean_of_last_layers(rng):
    model = from_hf_module(tiny_hf("vivit"))
    x = _pixels(rng, b=1)
    per_layer = [get("staa")(model, layers=[i]).attribute(x).maps for i in (0, 1)]
    both = get("staa")(model, layers=2).attribute(x).maps
    torch.testing.assert_close(both, (per_layer[0] + per_layer[1]) / 2)


def test_model_left_unmodified_even_on_error(hf_family, rng):
    model = from_hf_module(tiny_hf(hf_family))
    state = {k: v.clone() for k, v in model.state_dict().items()}
    flags = [p.requires_grad for p in model.parameters()]
    x = _pixels(rng, b=1)
    vx.explain(model, x[0].permute(0, 2, 3, 1).numpy(), "staa", gradient_weighted=True)
    with pytest.raises(vx.InputError):
        get("staa")(model, gradient_weighted=True).attribute(x[:, :5])  # wrong frame count
    hooks = [m for m in model.modules() if m._forward_hooks or m._forward_pre_hooks]
    assert hooks == []
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    assert [p.requires_grad for p in model.parameters()] == flags
    # gradient_weighted ran a backward through the model: it left a .grad on every parameter
    assert all(p.grad is None for p in model.parameters())
    assert not model.training


def test_staa_is_deterministic(rng):
    model = from_hf_module(tiny_hf("timesformer"))
    clip = vx.Clip.from_array(rng.random((8, 40, 40, 3), dtype=np.float32))
    a, b = vx.explain(model, clip, "staa"), vx.explain(model, clip, "staa", refine=True)
    np.testing.assert_array_equal(a.spatial, vx.explain(model, clip, "staa").spatial)
    np.testing.assert_array_equal(b.spatial, vx.explain(model, clip, "staa", refine=True).spatial)
    assert not np.array_equal(a.spatial, b.spatial)


def test_staa_needs_attention():
    cnn = torch.nn.Sequential(torch.nn.Conv3d(3, 4, 3), torch.nn.AdaptiveAvgPool3d(1), torch.nn.Flatten(),
                              torch.nn.Linear(4, 3))
    model = vx.wrap(cnn, num_frames=8, input_size=16)
    with pytest.raises(UnsupportedModelError, match="staa.*attention"):
        vx.explain(model, np.zeros((8, 16, 16, 3), np.float32), "staa")


def test_layer_choices_resolve_to_the_documented_layers():
    model = from_hf_module(tiny_hf("timesformer"))                 # 2 layers
    assert get("staa")(model).layers == [1]                        # "auto": the last half
    assert get("staa")(model, layers="all").layers == [0, 1]
    for family, auto in (("vivit", [2, 3]), ("videomae", [3])):   # CLS rows: half; received: last
        deeper = from_hf_module(tiny_hf(family, num_hidden_layers=4))
        assert get("staa")(deeper).layers == auto
    assert get("staa")(model, layers=[0]).layers == [0]
    with pytest.raises(vx.InputError, match="layers"):
        get("staa")(model, layers="most")
    with pytest.raises(vx.InputError, match="peak_share"):
        get("staa")(model, peak_share=0.0)


def test_temporal_score_is_the_mean_of_each_frames_peak_values():
    model = from_hf_module(tiny_hf("vivit"))                       # tubelet 2: 4 map frames for 8
    maps = torch.full((1, 4, 4, 5), 0.05)                          # 20 cells per map frame
    maps[0, 1] = 0.0
    maps[0, 1, 2, 3] = 0.6                                         # concentrated, less mass
    # peak_share 0.1 → the top 2 cells of each map frame
    scores = get("staa")(model, peak_share=0.1).peak_scores(maps, 8)
    expected = torch.tensor([0.05, 0.3, 0.05, 0.05]).repeat_interleave(2)
    torch.testing.assert_close(scores[0], expected)
    # peak_share 1 → the mean, i.e. the per-frame mass over the number of cells
    mass = get("staa")(model, peak_share=1.0).peak_scores(maps, 8)
    torch.testing.assert_close(mass[0], (maps.flatten(2).sum(-1) / 20).repeat_interleave(2, dim=1)[0])


def test_explanation_temporal_follows_the_peak_statistic(rng):
    model = from_hf_module(tiny_hf("timesformer"))
    x = _pixels(rng, b=1)
    method = get("staa")(model, peak_share=0.25)
    attr = method.attribute(x)
    exp = vx.explain(model, x[0].permute(0, 2, 3, 1).numpy(), method)
    expected = method.peak_scores(attr.maps, 8)[0]
    np.testing.assert_allclose(exp.temporal, (expected / expected.sum()).numpy(), rtol=1e-5)


def test_temporal_weighting_is_refused_where_the_attention_is_joint():
    # VideoMAE / ViViT / joint TimeSformer have no temporal attention: the option was ignored
    from videoxai.options import OptionError

    with pytest.raises(OptionError, match="option temporal_weighting applies to divided space-time attention"):
        get("staa")(from_hf_module(tiny_hf("videomae")), temporal_weighting=True)
    assert get("staa")(from_hf_module(tiny_hf("timesformer")), temporal_weighting=True).temporal_weighting


@pytest.mark.parametrize("method,options", [("staa", {}), ("staa", {"layers": 1}), ("staa", {"layers": "half"}),
                                            ("rollout", {}), ("attention_relevance", {"layers": 1})])
def test_the_layers_an_attention_method_chose_are_recorded_and_replay_the_map(method, options, rng, tmp_path):
    # Explanation.options said "auto" (or None, or a count): which layers were read depends on
    # the model's depth and could not be read back from the explanation
    model = from_hf_module(tiny_hf("timesformer", num_hidden_layers=4))
    clip = rng.random((8, 32, 32, 3), dtype=np.float32)
    exp = vx.explain(model, clip, method, **options)
    layers = exp.meta["resolved_options"]["layers"]
    expected = {"staa": {None: [2, 3], 1: [3], "half": [2, 3]}, "rollout": {None: [0, 1, 2, 3]},
                "attention_relevance": {1: [3]}}[method][options.get("layers")]
    assert layers == expected
    again = vx.explain(model, clip, method, layers=layers)
    np.testing.assert_array_equal(again.raw, exp.raw)
    assert "resolved_options" not in again.meta                  # a list is explicit: nothing chosen
    assert vx.Explanation.load(exp.save(tmp_path / "e.npz")).meta["resolved_options"] == {"layers": layers}
