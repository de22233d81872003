"""The one option parser (videoxai.options): types, ranges, one error form, canonical specs, and
results files written with the older, non-canonical keys."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
import pytest

import videoxai as vx
from videoxai.errors import InputError
from videoxai.evaluation.store import ResultStore
from videoxai.methods import get
from videoxai.metrics import build
from videoxai.options import Opt, OptionError, format_spec, parse_spec, parse_value

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="module")
def cnn():
    return vx.load_model("demo-cnn")


@pytest.fixture(scope="module")
def tiny_clip():
    import numpy as np
    return vx.Clip.from_array(np.random.default_rng(0).random((8, 32, 32, 3), dtype="float32"))


@pytest.mark.parametrize("text, value", [
    ("true", True), ("False", False), ("yes", True), ("no", False), ("1", True), ("0", False),
    (True, True), (0, False),
])
def test_booleans_are_true_false_1_0_yes_no(text, value):
    assert parse_value(text, bool, "method 'x'", "flag") is value


@pytest.mark.parametrize("text", ["maybe", "2", "", "on", 2, 0.5, None])
def test_anything_else_is_not_a_boolean(text):
    with pytest.raises(OptionError, match=r"^method 'x': option flag must be true or false, got "):
        parse_value(text, bool, "method 'x'", "flag")


@pytest.mark.parametrize("text", ["abc", "nan", "inf", "1e400", "-inf", "1.5", True, 2.5, "0"])
def test_integers_are_finite_whole_numbers_in_range(text):
    with pytest.raises(OptionError, match="must be an integer ≥ 1, got"):
        parse_value(text, Annotated[int, Opt(ge=1)], "method 'rise'", "n_samples")


@pytest.mark.parametrize("value", [1e308, 1e20, 2.0 ** 53 + 2, -1e300])
def test_a_float_beyond_exact_integers_is_not_an_integer(value):
    # 1e308 is_integer(): it was taken as n_samples=10**308 (and 1e20 as 100000000000000000000)
    said = rf"^method 'rise': option n_samples must be an integer, got {re.escape(repr(value))}$"
    with pytest.raises(OptionError, match=said):
        parse_value(value, int, "method 'rise'", "n_samples")
    assert parse_value(2.0 ** 53, int, "m", "n") == 2 ** 53 and parse_value(-8.0, int, "m", "n") == -8


@pytest.mark.parametrize("text", ["nan", "NaN", "inf", "1e400", 10 ** 400, float("nan"), "0", "1"])
def test_numbers_are_finite_and_in_range(text):
    with pytest.raises(OptionError, match=r"must be a number in \(0, 1\), got"):
        parse_value(text, Annotated[float, Opt(gt=0, lt=1)], "method 'rise'", "p_keep")


def test_values_of_every_kind_are_typed():
    assert parse_value("500", int, "m", "n") == 500 and parse_value(500.0, int, "m", "n") == 500
    assert parse_value("0.25", float, "m", "x") == 0.25 and parse_value(1, float, "m", "x") == 1.0
    assert parse_value("[4, 4, 4]", tuple[int, int, int], "m", "w") == (4, 4, 4)
    assert parse_value("4,5,6", tuple[int, int, int], "m", "w") == (4, 5, 6)
    assert parse_value([0.1, "0.5"], list[float], "m", "s") == [0.1, 0.5]
    assert parse_value("none", int | None, "m", "k") is None and parse_value("3", int | None, "m", "k") == 3
    # text tries the typed members first: a count, a list, then a word
    tp = int | list[int] | Literal["auto", "half"]
    assert parse_value("2", tp, "m", "layers") == 2
    assert parse_value("[1, 3]", tp, "m", "layers") == [1, 3]
    assert parse_value("half", tp, "m", "layers") == "half"
    with pytest.raises(OptionError, match="must be an integer or a list of integers or one of auto, half, got 'all'"):
        parse_value("all", tp, "m", "layers")
    with pytest.raises(OptionError, match="must be a list of 3 integers"):
        parse_value("[4, 4]", tuple[int, int, int], "m", "w")
    # NumPy values (an argmax, a config read with NumPy) are the numbers they hold
    assert parse_value(np.int64(8), int, "m", "n") == 8 and type(parse_value(np.int64(8), int, "m", "n")) is int
    assert parse_value(np.float32(0.5), float, "m", "x") == 0.5 and parse_value(np.bool_(True), bool, "m", "b") is True
    assert parse_value(np.array([0.1, 0.2]), list[float], "m", "s") == [0.1, 0.2]
    with pytest.raises(OptionError, match="must be a list of numbers"):
        parse_value(np.zeros((2, 2)), list[float], "m", "s")
    # one value where a list is taken is a list of one, from Python as from text
    assert parse_value(0.25, list[float], "m", "s") == parse_value("0.25", list[float], "m", "s") == [0.25]


def test_the_issue_message_form(cnn):
    with pytest.raises(OptionError) as e:
        get("rise")(cnn, n_samples="abc")
    assert str(e.value) == "method 'rise': option n_samples must be an integer ≥ 1, got 'abc'"
    assert isinstance(e.value, InputError)  # the CLI's exit 2, the service's 4xx
    with pytest.raises(OptionError, match="^method 'rise': no option 'n_sample'; did you mean 'n_samples'[?] its options are: n_samples, "):
        get("rise")(cnn, n_sample=5)
    with pytest.raises(OptionError, match="^metric 'deletion': option n_steps must be an integer ≥ 1, got 0$"):
        build("deletion", n_steps=0)


def test_an_alias_is_the_same_option_under_its_own_name(cnn, tiny_clip):
    # IG's quadrature rule had Captum's name, `method`, which vx.explain's own `method` hid: it is
    # `quadrature` now; `method` is still read where it cannot clash (a spec, the class's call)
    ig = get("integrated_gradients")
    assert ig(cnn, method="riemann_left").options["quadrature"] == "riemann_left"
    assert ig.spec_for({"method": "riemann_left"}) == ig.spec_for({"quadrature": "riemann_left"}) \
        == "integrated_gradients(quadrature=riemann_left)"
    # metrics took `steps` / `samples` where methods take `n_steps` / `n_samples`
    assert build("deletion(steps=8)").spec == build("deletion(n_steps=8)").spec == "deletion(n_steps=8)"
    assert build("max_sensitivity", samples=2).options["n_samples"] == 2
    with pytest.raises(OptionError, match=r"^metric 'deletion': option n_steps \(given as steps\) must be an "
                                          r"integer ≥ 1, got 0$"):
        build("deletion", steps=0)
    with pytest.raises(OptionError, match=r"^metric 'deletion': option n_steps given twice \(as n_steps and steps\)$"):
        build("deletion(n_steps=8, steps=4)")
    with pytest.raises(OptionError, match="given twice"):
        ig(cnn, 8, "gausslegendre", method="riemann_left")  # positionally and by its alias
    # vx.explain: the spec's alias and the argument are one option given twice
    with pytest.raises(InputError, match="option quadrature given both in the spec and as an argument"):
        vx.explain(cnn, tiny_clip, "integrated_gradients(method=riemann_left)", quadrature="riemann_right")
    exp = vx.explain(cnn, tiny_clip, "integrated_gradients", quadrature="riemann_trapezoid", n_steps=2)
    assert exp.options["quadrature"] == "riemann_trapezoid"
    assert exp.meta["spec"].startswith("integrated_gradients(")
    assert "quadrature=riemann_trapezoid" in exp.meta["spec"]
    # listed with the option, for `videoxai methods` and the service's info
    o = ig.declared_options()["quadrature"]
    assert o.to_dict()["aliases"] == ["method"] and "also read as method" in o.line()


def test_library_strings_are_parsed_like_the_cli(cnn):
    # the bug this replaces: "false" (a non-empty string) was True
    assert get("gradcam")(cnn, per_frame_weights="false").options["per_frame_weights"] is False
    assert get("gradcam")(cnn, per_frame_weights="no").per_frame_weights is False
    with pytest.raises(OptionError, match="per_frame_weights must be true or false, got 'maybe'"):
        get("gradcam")(cnn, per_frame_weights="maybe")
    m = get("rise")(cnn, n_samples="8", p_keep="0.25", cells="[1, 2, 2]")
    assert (m.n_samples, m.p_keep, m.cells) == (8, 0.25, (1, 2, 2))


def test_method_specs_are_canonical_like_metric_specs(cnn):
    occ = get("occlusion")
    specs = ["occlusion", "occlusion(baseline=blur)", "occlusion(window=4)", "occlusion(window=[4,4,4])",
             "occlusion(window=[4, 4, 4], output=probability)"]
    canon = {occ.spec_for(parse_spec(s)[1]) for s in specs}
    assert canon == {"occlusion", "occlusion(window=[4, 4, 4])"}
    assert occ(cnn, window=4).spec == occ(cnn, window=(4, 4, 4)).spec == "occlusion(window=[4, 4, 4])"
    from videoxai.evaluation import resolve_methods, resolve_metrics
    assert resolve_methods(", ".join(specs), cnn).specs == ["occlusion", "occlusion(window=[4, 4, 4])"]
    assert resolve_metrics("pointing_game(tolerance=0), pointing_game(tolerance=0.0)").specs == \
        ["pointing_game(tolerance=0.0)"]


def test_explanation_options_round_trip_through_a_spec(cnn):
    clip = vx.Clip.from_array(__import__("numpy").random.default_rng(0).random((8, 32, 32, 3), dtype="float32"))
    exp = vx.explain(cnn, clip, "occlusion", window="8, 32, 32", batch_size=64)  # 9 windows
    # Explanation.options = the method's options + vx.explain's own (refine, working size)
    options = {k: v for k, v in exp.options.items() if k in get("occlusion").declared_options()}
    assert set(exp.options) - set(options) <= {"refine", "working_size"}
    spec = format_spec(exp.method, options)
    name, text = parse_spec(spec)
    # the method parses the window as a tuple; the explanation records it as a list, as save() writes it
    assert get(name).parse_options(text) == {**options, "window": tuple(options["window"])}
    assert get(name).spec_for(text) == "occlusion(batch_size=64, window=[8, 32, 32])"


def test_declarations_have_help_and_every_default_parses():
    from videoxai.methods import available as methods
    from videoxai.metrics import available as metrics
    from videoxai.metrics import get as get_metric

    for cls in [get(n) for n in methods()] + [get_metric(n) for n in metrics()]:
        declared = cls.declared_options()
        full = cls.parse_options({})  # every default is a valid value of its own type
        assert set(full) == set(declared), cls.name
        for o in declared.values():
            assert o.help, f"{cls.name}.{o.name} has no help"
        assert cls.spec_for({}) == cls.name


def test_dataset_specs_use_the_same_parser():
    from videoxai.data.datasets import load_dataset

    assert load_dataset("synthetic:2,seed=3").key(0).startswith("synthetic:test:3/")
    with pytest.raises(OptionError, match="^dataset 'synthetic': option seed must be an integer ≥ 0, got 'x'$"):
        load_dataset("synthetic:2,seed=x")
    with pytest.raises(OptionError, match="^dataset 'synthetic': no option 'sed'"):
        load_dataset("synthetic:2,sed=1")


def test_cli_option_values_are_typed_by_the_method(tmp_path):
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-m", "videoxai", "explain", str(DATA / "bigbuckbunny.mp4"),
                        "--model", "demo-cnn", "--method", "gradcam", "-O", "per_frame_weights=maybe",
                        "-o", str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2, r.stderr
    assert "method 'gradcam': option per_frame_weights must be true or false, got 'maybe'" in r.stderr


def test_a_results_file_written_before_canonical_specs_is_migrated_on_open(tmp_path):
    # written by the code before this change: evaluate(demo-cnn, synthetic:2) with methods
    # occlusion(window=[4,4,4], batch_size=64), occlusion(window=4), gradcam,
    # gradcam(per_frame_weights=false) and metrics sparseness, pointing_game(tolerance=0),
    # deletion(unit=frame, steps=4)
    path = tmp_path / "results.sqlite"
    shutil.copy(DATA / "results_legacy_specs.sqlite", path)
    with ResultStore(path) as store:
        rows = store.rows()
        keys = {(r.method, r.metric) for r in rows}
        assert {m for m, _ in keys} == {"occlusion(batch_size=64, window=[4, 4, 4])",
                                       "occlusion(window=[4, 4, 4])", "gradcam"}
        # `steps` has since become `n_steps` (the old name an alias): the key follows the option
        assert {m for _, m in keys} == {"sparseness", "pointing_game(tolerance=0.0)", "deletion(n_steps=4, unit=frame)"}
        assert len(rows) == 2 * 3 * 3  # gradcam(per_frame_weights=false) was gradcam: merged, not doubled
        assert set(store.metric_info()) == {m for _, m in keys}
        assert {e.method for e in store.explanations()} == {m for m, _ in keys}
        assert all(r.status == "ok" for r in rows)
    with ResultStore(path) as store:  # idempotent
        assert len(store.rows()) == 18


# -- bad option values: an OptionError naming the plug-in, the option and what it may be ------------
@pytest.fixture(scope="module")
def small_clip():
    return vx.Clip.from_array(__import__("numpy").random.default_rng(0).random((8, 32, 32, 3), dtype="float32"))


@pytest.mark.parametrize("method, options, message", [
    # a baseline name, checked when the method is built (was an UnknownNameError naming neither)
    ("rise", {"baseline": "purple"}, "method 'rise': unknown baseline 'purple'; option baseline must be one of "
                                     "black, blur, fade, freeze, mean, mean_colour"),
    ("shap_temporal", {"baseline": "purple"}, "method 'shap_temporal': unknown baseline 'purple'"),
    ("integrated_gradients", {"baseline": "purple"}, "method 'integrated_gradients': unknown baseline 'purple'"),
    # ranges that depend on another option or on the clip (was an InputError, some without the method)
    ("integrated_gradients(quadrature=riemann_left)", {"n_steps": 1},
     "method 'integrated_gradients': option n_steps must be an integer ≥ 2 with quadrature=riemann_left, got 1"),
    ("rise", {"cells": [100, 7, 7], "n_samples": 2},
     "method 'rise': option cells: the mask grid spans 100 frames but the clip has only 8 frames on the model's "
     "grid (8 x 64 x 64); choose a smaller mask grid, at most 8 x 64 x 64"),
    ("occlusion", {"window": [1, 100, 1]}, "method 'occlusion': option window: the window spans 100 rows"),
    ("lime", {"smoothing": 1e9, "n_samples": 2}, "method 'lime': option smoothing: smoothing σ 1e+09 px is larger "
                                                 "than the frames SLIC cuts (64x64 px): it would blur each to one "
                                                 "colour; choose smoothing ≤ 64 or auto"),
    ("lime", {"n_segments": 10 ** 9, "n_samples": 2}, "lime: n_segments=1000000000 is more than the 32768 voxels"),
    ("shap_temporal", {"n_segments": 9}, "method 'shap_temporal': option n_segments: a clip of 8 frames cannot be split "
                                         "into 9 segments; choose n_segments ≤ 8"),
    ("ep3d", {"areas": []}, "method 'ep3d': option areas must be 'auto' or fractions in (0, 1), got none"),
    ("ep3d", {"step": 1000, "iterations": 1}, "ep3d: step 1000 is larger than the 64x64 frame the masks are drawn "
                                              "on; choose step ≤ 64"),
    ("step", {"kernel_frames": 9, "iterations": 1}, "method 'step': option kernel_frames / kernel_size: the L_K "
                                                    "kernel spans 9 frames"),
])
def test_bad_option_values_name_the_method_the_option_and_the_range(cnn, small_clip, method, options, message):
    import re

    with pytest.raises(OptionError, match=re.escape(message)):
        vx.explain(cnn, small_clip, method, **options)


def test_attention_methods_share_one_layers_option(small_clip):
    import re

    demo = vx.load_model("demo")  # 4 attention layers
    for name in ("rollout", "attention_relevance", "staa"):
        with pytest.raises(OptionError, match=f"^method '{name}': option layers must be an integer ≥ 1 or a list"):
            get(name)(demo, layers=1.5)
        with pytest.raises(OptionError, match=re.escape(
                f"method '{name}': option layers: asked for the last 5 layers of a 4-layer model (a 4-layer "
                "model takes a count in [1, 4], indices in [-4, 3] or all)")):
            vx.explain(demo, small_clip, name, layers=5)
        with pytest.raises(OptionError, match=f"method '{name}': option layers: layer 4 out of range"):
            get(name)(demo, layers=[4])
        # one vocabulary: "all" is every layer for each of them, and -1 the last
        assert get(name)(demo, layers="all").layers == [0, 1, 2, 3]
        assert get(name)(demo, layers=[-1]).layers == [3]
        # one index alone is a list of one, from Python as from text (`-O layers=-1`); NumPy
        # integers are integers
        for one in (-1, "-1", np.array([-1])):
            assert get(name)(demo, layers=one).layers == [3]
        assert get(name)(demo, layers=0).layers == get(name)(demo, layers="0").layers == [0]
        assert get(name)(demo, layers=np.int64(2)).layers == [2, 3]
        # a layer listed twice would weigh double in STAA's mean and be applied twice in a rollout
        with pytest.raises(OptionError, match=re.escape(
                f"method '{name}': option layers: layers [3, -1] name layer 3 twice (as 3 and -1)")):
            get(name)(demo, layers=[3, -1])
        # rollout and relevance multiply the layers bottom-up: the listed order does not matter
        assert get(name)(demo, layers=[3, 1]).layers == [1, 3]
    for name in ("rollout", "attention_relevance", "staa"):
        a, b = (vx.explain(demo, small_clip, name, layers=order) for order in ([3, 1], [1, 3]))
        np.testing.assert_array_equal(a.spatial, b.spatial)
    # where every layer is the default, "all" is that default: one canonical spec
    assert get("rollout").spec_for({"layers": "all"}) == "rollout"
    assert get("attention_relevance")(demo, layers="all").spec == "attention_relevance"
    assert get("staa").spec_for({"layers": "all"}) == "staa(layers=all)"  # staa's default is "auto"


def test_a_cam_layer_that_names_no_module_is_an_option_error(cnn, small_clip):
    for name in ("gradcam", "gradcam_pp", "saliency_tubes"):
        with pytest.raises(OptionError, match=f"^method '{name}': option layer: demo-cnn has no layer 'nope'; "
                                              "did you mean"):
            vx.explain(cnn, small_clip, name, layer="nope")
        # the layer is documented once, on the family's base, and shown for each
        assert "dotted module name" in get(name).declared_options()["layer"].help
    with pytest.raises(OptionError, match="^method 'saliency_tubes': option classifier: demo-cnn has no layer 'fc2'"):
        get("saliency_tubes")(cnn, classifier="fc2")


def test_every_option_has_a_help_line_of_its_own():
    """`videoxai methods NAME` / `metrics NAME` show each option's help: options documented
    together ("max_blur, step, sigma, final_sigma: pixel sizes …", "reward_weight, area_weight:
    w_r (1) and λ_0 (300)") or by reference ("as Faithfulness") left the reader to guess which
    value is which. Shared options are documented once on the family's base instead."""
    from collections import Counter

    from videoxai.methods import available as methods
    from videoxai.metrics import available as metrics
    from videoxai.metrics import get as get_metric

    for cls in [get(n) for n in methods()] + [get_metric(n) for n in metrics()]:
        helps = Counter(o.help for o in cls.declared_options().values())
        assert [h for h, n in helps.items() if n > 1] == [], cls.name
        for o in cls.declared_options().values():
            assert not o.help.lower().startswith(("as ", "see ")), (cls.name, o.name, o.help)
    # sizes say their unit
    ep3d = get("ep3d").declared_options()
    for name in ("max_blur", "step", "sigma", "final_sigma"):
        assert "pixels of the model's input grid" in ep3d[name].help, name
    assert "pixel values" in get_metric("max_sensitivity").declared_options()["radius"].help


def test_a_wrong_value_is_quoted_in_one_short_line():
    """A tensor or array given where a method takes text or a number was quoted whole: an error
    of hundreds of lines of zeros. It is named by its shape and dtype; a long text is cut."""
    import torch

    import videoxai as vx

    model, clip = vx.load_model("demo-cnn"), np.zeros((8, 64, 64, 3), np.uint8)
    for value, said in ((torch.zeros(1, 8, 3, 64, 64), "got Tensor of shape (1, 8, 3, 64, 64) and dtype torch.float32"),
                        (np.zeros((50, 50)), "got ndarray of shape (50, 50) and dtype float64"),
                        ("x" * 300, "got '" + "x" * 78 + "…")):
        with pytest.raises(OptionError) as error:
            vx.explain(model, clip, "occlusion", window=value)
        message = str(error.value)
        assert message.endswith(said) and "\n" not in message and len(message) < 200
    with pytest.raises(OptionError, match=r"got 1\.5$"):   # a short value is quoted as it is
        vx.explain(model, clip, "rise", n_samples=1.5)
