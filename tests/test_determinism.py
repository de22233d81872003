"""Same input and seed → same explanation (SPEC §8), down to the file :meth:`Explanation.save` writes.

The maps, scores, options and metadata of an explanation are the same bits in a fresh process, in
whichever order the methods run there; the one part of the file that differs is ``cost`` (wall
time and memory are measured, never the same twice). The zip entries carry numpy's fixed date,
so no clock reaches the file.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile

import numpy as np
import pytest
import torch

import videoxai as vx

#: a sampling method of each kind, a seeded gradient one and a deterministic one
CASES = [("rise", {"n_samples": 6, "seed": 3}), ("lime", {"n_samples": 6, "seed": 3}),
         ("smoothgrad", {"n_samples": 2, "seed": 3}), ("gradcam", {})]

_FRESH_PROCESS = """
import sys
import numpy as np, torch
torch.set_num_threads(1)
import videoxai as vx
model = vx.load_model("demo-cnn")
clip = vx.Clip.from_array(np.random.default_rng(0).random((8, 24, 20, 3), dtype=np.float32))
for name, options in reversed({cases!r}):   # each after another method than here
    vx.explain(model, clip, name, **options).save(f"{{sys.argv[1]}}/{{name}}.npz")
"""


def _contents(path) -> tuple[list[str], dict, dict]:
    """The archive's entry names in order, its arrays (dtype, shape, bytes) and its metadata."""
    names = [i.filename for i in zipfile.ZipFile(path).infolist()]
    with np.load(path) as z:
        arrays = {k: (z[k].dtype.str, z[k].shape, z[k].tobytes()) for k in z.files if k != "metadata"}
        meta = json.loads(bytes(z["metadata"]).decode())
    return names, arrays, meta


@pytest.mark.usefixtures("one_thread")
def test_an_explanation_saved_in_a_fresh_process_differs_only_in_its_cost(tmp_path):
    model = vx.load_model("demo-cnn")
    clip = vx.Clip.from_array(np.random.default_rng(0).random((8, 24, 20, 3), dtype=np.float32))
    here, fresh = tmp_path / "here", tmp_path / "fresh"
    for name, options in CASES:
        vx.explain(model, clip, name, **options).save(here / f"{name}.npz")
    fresh.mkdir()
    # glibc fills fresh heap memory with this byte: a map that read memory it never wrote would differ
    env = {**os.environ, "MALLOC_PERTURB_": "85", "VIDEOXAI_PROGRESS": "0"}
    subprocess.run([sys.executable, "-c", _FRESH_PROCESS.format(cases=CASES), str(fresh)], env=env,
                   check=True, capture_output=True, timeout=300)
    for name, _ in CASES:
        names, arrays, meta = _contents(here / f"{name}.npz")
        fresh_names, fresh_arrays, fresh_meta = _contents(fresh / f"{name}.npz")
        assert names == fresh_names and {"raw", "spatial", "temporal", "probs"} <= set(arrays)
        assert arrays == fresh_arrays, name
        cost, fresh_cost = meta.pop("cost"), fresh_meta.pop("cost")
        assert meta == fresh_meta, name
        assert cost["forward_passes"] == fresh_cost["forward_passes"] > 0
        assert cost["backward_passes"] == fresh_cost["backward_passes"]
    # the seed is what the draws depend on: another one gives another map
    other = vx.explain(model, clip, "rise", n_samples=6, seed=4).raw
    assert not np.array_equal(other, vx.Explanation.load(here / "rise.npz").raw)


def test_a_set_in_an_explanations_metadata_is_saved_in_one_order(tmp_path):
    # a set was written in the order of its members' hashes, which for text differ from process
    # to process (PYTHONHASHSEED): the same explanation made different files; a frozenset was
    # written as its repr, the text "frozenset({...})"
    tags = {f"tag{i}" for i in range(20)}
    exp = vx.Explanation(spatial=np.zeros((2, 4, 4), np.float32), temporal=np.full(2, 0.5, np.float32),
                         target=0, label="a", score=1.0, probs=np.ones(1, np.float32), method="saliency",
                         meta={"tags": tags, "frozen": frozenset({3, 1, 2}), "mixed": {2, "b", 1}})
    meta = vx.Explanation.load(exp.save(tmp_path / "e.npz")).meta
    assert meta["tags"] == sorted(tags) and meta["frozen"] == [1, 2, 3]
    assert meta["mixed"] == ["b", 1, 2]   # what does not compare is ordered by its repr ("'b'" < "1")
    assert exp.to_dict()["meta"]["tags"] == sorted(tags)


@pytest.mark.usefixtures("one_thread")
def test_a_cam_method_built_for_another_network_chooses_its_layer_on_the_one_it_explains():
    # the layer found on the first network was kept as if given: demo-cnn's 'layer3' was explained
    # on demo-stabn (whose default is 'layer4'), a map unlike the same method named by text, and
    # demo-stabn's 'layer4' made 'option layer: demo-cnn has no layer ...' (no layer was given)
    from videoxai.methods import get

    cnn, stabn = vx.load_model("demo-cnn"), vx.load_model("demo-stabn")
    clip = np.random.default_rng(0).random((8, 24, 20, 3), dtype=np.float32)
    for source, model in ((cnn, stabn), (stabn, cnn)):
        for name in ("gradcam", "gradcam_pp"):
            built = get(name)(source)
            exp, by_name = vx.explain(model, clip, built), vx.explain(model, clip, name)
            assert exp.options == by_name.options and exp.options["layer"] == model.cam_layer
            assert np.array_equal(exp.raw, by_name.raw)
            assert built.options["layer"] == source.cam_layer   # the caller's method is left as it was
    named = vx.explain(stabn, clip, get("gradcam")(cnn, layer="layer2"))   # a layer given stays given
    assert named.options["layer"] == "layer2"
    assert np.array_equal(named.raw, vx.explain(stabn, clip, "gradcam", layer="layer2").raw)


@pytest.mark.usefixtures("one_thread")
def test_an_explanation_in_the_callers_autocast_region_is_made_at_the_models_precision():
    # a mixed-precision loop's torch.autocast reached the network: every pass ran in bfloat16, and
    # the same clip gave another map (21 % of the maximum apart for saliency) that nothing recorded
    import torch

    model = vx.load_model("demo-cnn")
    clip = np.random.default_rng(0).random((8, 24, 20, 3), dtype=np.float32)
    for name in ("saliency", "rise(n_samples=4)"):
        plain = vx.explain(model, clip, name)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            inside = vx.explain(model, clip, name)
            assert torch.is_autocast_enabled("cpu")   # the caller's region is theirs again after
        assert np.array_equal(inside.raw, plain.raw) and inside.score == plain.score


@pytest.mark.usefixtures("one_thread")
def test_a_float64_default_dtype_of_the_callers_leaves_the_map_as_it_is():
    # torch.set_default_dtype(torch.float64) (a notebook's) reached tensors made without a dtype:
    # RISE failed ('expected scalar type Double but found Float'), and its masks drawn in float64
    # were other numbers from the same seed; occlusion's clips were float64, its map other bits
    import torch

    model = vx.load_model("demo-cnn")
    clip = np.random.default_rng(0).random((8, 24, 20, 3), dtype=np.float32)
    specs = ("rise(n_samples=4)", "occlusion", "ep3d(iterations=3)", "step(iterations=3)")
    plain = [vx.explain(model, clip, spec) for spec in specs]
    before = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        in_float64 = [vx.explain(model, clip, spec) for spec in specs]
    finally:
        torch.set_default_dtype(before)
    for a, b in zip(plain, in_float64):
        assert np.array_equal(a.raw, b.raw) and a.raw.max() > 0


class _MonteCarloDropout(torch.nn.Module):
    """Dropout that stays on in eval mode (Monte-Carlo dropout, ``F.dropout(x, training=True)``)."""

    def forward(self, x):
        return torch.nn.functional.dropout(x, 0.5, training=True)


class _RandomInEvalNet(torch.nn.Module):
    """A 3D CNN whose features pass Monte-Carlo dropout: every forward pass draws from torch's generator."""

    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.conv, self.act = torch.nn.Conv3d(3, 6, 3, padding=1), torch.nn.ReLU()
        self.drop, self.head = _MonteCarloDropout(), torch.nn.Linear(6, 3)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)

    def forward(self, x):  # (B, 3, T, H, W)
        return self.head(self.drop(self.act(self.conv(x))).mean((2, 3, 4)))


def _random_models() -> list[vx.VideoModel]:
    """A CNN and a TimeSformer (for the attention methods) drawing random numbers in eval mode."""
    from conftest import tiny_hf
    from videoxai.models.hf import from_hf_module

    net = tiny_hf("timesformer")
    net.classifier = torch.nn.Sequential(_MonteCarloDropout(), net.classifier)
    return [vx.wrap(_RandomInEvalNet(), num_frames=8, input_size=16, cam_layer="drop", labels=["a", "b", "c"]),
            from_hf_module(net)]


@pytest.mark.usefixtures("one_thread")
def test_a_model_with_random_layers_in_eval_mode_gives_every_method_the_same_map_and_leaves_the_callers_draws():
    # Monte-Carlo dropout draws from torch's generator in eval mode: each call gave another map
    # and another score for the same clip and seed (SPEC §8), and consumed the caller's random
    # stream. The forward passes are now seeded with the method's seed and the generator put back
    from test_model_invariants import fast_options
    from videoxai.methods import available, get

    explained = set()
    for model in _random_models():
        clip = np.random.default_rng(0).random((8, *model.input_size, 3), dtype=np.float32)
        for name in available():
            cls = get(name)
            if not cls.supports(model):
                continue
            options = fast_options(cls)
            torch.manual_seed(7)
            first = vx.explain(model, clip, name, **options)
            after_first = torch.rand(4)
            again = vx.explain(model, clip, name, **options)
            torch.manual_seed(7)
            assert torch.equal(torch.rand(4), after_first), name   # the caller's stream as if not called
            assert np.array_equal(first.raw, again.raw) and np.array_equal(first.temporal, again.temporal), name
            assert np.array_equal(first.probs, again.probs), name
            explained.add(name)
            if "seed" in cls.declared_options():   # the draws follow the seed
                other = vx.explain(model, clip, name, **options, seed=5)
                assert not (np.array_equal(other.raw, first.raw) and np.array_equal(other.probs, first.probs)), name
    assert explained == set(available()) - {"stabn"}
