"""Smoke tests of ``benchmarks/`` and ``scripts/``: the README quotes what they print, and no other
test runs them, so a refactor of the package could break them silently.

Every script is imported (a name that moved fails here, also one imported inside a function or in
the code a script runs in a child process), and the cheapest run end to end at tiny settings; the
tests check the structure and sanity of what they print, never a time.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import json
import math
import os
import re
import runpy
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = sorted((ROOT / "benchmarks").glob("*.py")) + sorted((ROOT / "scripts").glob("*.py"))

pytestmark = pytest.mark.usefixtures("one_thread")


def _module(name: str) -> types.ModuleType | None:
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


def missing_names(source: str, where: str) -> list[str]:
    """Names ``source`` takes from ``videoxai`` that the package does not have: ``from videoxai.x
    import y`` anywhere (in functions too, and in string literals of code run in a child process)
    and ``alias.name`` on an imported videoxai module."""
    tree = ast.parse(source)
    problems, aliases = [], {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "videoxai":
            module = _module(node.module)
            if module is None:
                problems.append(f"{where}:{node.lineno}: no module {node.module}")
                continue
            for a in node.names:
                value = getattr(module, a.name, None) or _module(f"{node.module}.{a.name}")
                if value is None:
                    problems.append(f"{where}:{node.lineno}: {node.module} has no {a.name}")
                elif isinstance(value, types.ModuleType):
                    aliases[a.asname or a.name] = value
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.split(".")[0] == "videoxai":
                    module = _module(a.name)
                    if module is None:
                        problems.append(f"{where}:{node.lineno}: no module {a.name}")
                    else:
                        aliases[a.asname or "videoxai"] = module if a.asname else importlib.import_module("videoxai")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and "videoxai" in node.value:
            try:
                problems += missing_names(node.value, f"{where}:{node.lineno}, code in a string, line")
            except SyntaxError:  # prose, not code
                pass
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases
                and not hasattr(aliases[node.value.id], node.attr)):
            problems.append(f"{where}:{node.lineno}: {aliases[node.value.id].__name__} has no {node.attr}")
    return problems


def test_the_name_check_finds_names_that_moved(tmp_path):
    source = ('import videoxai as vx\nfrom videoxai.data import video as vio\n'
              'def f():\n    from videoxai.data.video import _open\n    return vio._open, vx.read_video\n'
              'RUN = "from videoxai.models.base import IMAGENET_MEAN"\n')
    found = missing_names(source, "s.py")
    assert found == ["s.py:4: videoxai.data.video has no _open",
                     "s.py:6, code in a string, line:1: videoxai.models.base has no IMAGENET_MEAN",
                     "s.py:5: videoxai.data.video has no _open"], found


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_scripts_name_only_what_the_package_has(script):
    assert missing_names(script.read_text(), script.name) == []


IMPORT_ALL = r"""
import importlib.util, sys
print("started", flush=True)
for path in sys.argv[1:]:
    name = "script_" + path.rsplit("/", 1)[1][:-3]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
print("imported", len(sys.argv) - 1)
"""


def test_every_script_imports_once_without_running():
    """Importing a script runs nothing: gradients_vs_peers re-executed its importer (``execve``
    with the importer's own arguments) to set a malloc variable."""
    env = {k: v for k, v in os.environ.items() if k != "MALLOC_MMAP_THRESHOLD_"}
    done = subprocess.run([sys.executable, "-c", IMPORT_ALL, *map(str, SCRIPTS)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split("\n")[:2] == ["started", f"imported {len(SCRIPTS)}"], done.stdout


def _run(script: str, *args: str, capsys) -> str:
    """``script`` run as ``__main__`` in this process with ``args``; its stdout."""
    argv = sys.argv
    sys.argv = [str(ROOT / script), *args]
    try:
        runpy.run_path(str(ROOT / script), run_name="__main__")
    finally:
        sys.argv = argv
    return capsys.readouterr().out


def _number(text: str) -> float:
    value = float(text)
    assert math.isfinite(value), text
    return value


def test_long_video_reading_compares_both_paths_on_the_same_frames(capsys):
    out = _run("benchmarks/long_video_reading.py", "--seconds", "2", "--gop", "12", capsys=capsys)
    assert "decoding on the CPU" in out and "seek/order = seeking s / in order s" in out, out
    rows = [ln for ln in out.splitlines() if ln.startswith(("read_video", "first window"))]
    assert len(rows) == 3, out
    for row in rows:
        in_order, seeking, ratio, same = row[36:].split()
        in_order, seeking, ratio = _number(in_order), _number(seeking), _number(ratio)
        assert in_order > 0 and seeking > 0 and ratio > 0, row
        assert same == "True", row


@pytest.mark.skipif("libx265" not in __import__("av").codecs_available, reason="FFmpeg without libx265")
def test_hdr_reading_times_the_same_frames_tagged_sdr_and_hdr(capsys):
    out = _run("benchmarks/hdr_reading.py", "--frames", "3", "--repeat", "1", "--transfer", "pq", capsys=capsys)
    rows = {ln.split()[0]: ln.split() for ln in out.splitlines() if " read_video " in ln}
    assert set(rows) == {"sdr", "pq"}, out
    for row in rows.values():
        assert _number(row[2]) > 0 and 20 < _number(row[-1]) < 235, out       # seconds; mean level of real pictures
    assert re.search(r"hdr/sdr = \d+\.\d\d", out), out


def test_interlaced_reading_reads_the_same_file_woven_and_deinterlaced(capsys):
    out = _run("benchmarks/interlaced_reading.py", "--frames", "20", "--repeat", "1", capsys=capsys)
    rows = {ln.split(":")[0].strip(): ln for ln in out.splitlines() if "levels from the first field" in ln}
    assert set(rows) == {"woven", "deinterlaced"}, out
    levels = {k: _number(re.search(r"([\d.]+) levels", row).group(1)) for k, row in rows.items()}
    assert 0 < levels["deinterlaced"] < levels["woven"], out   # closer to the first field's frame
    assert re.search(r"deinterlaced / woven: whole file \d+\.\d\d, 8 frames \d+\.\d\d", out), out
    from videoxai.data import decoder, deinterlace, keyframes
    assert decoder.progressive is keyframes.progressive is deinterlace.progressive   # put back


def test_perturbation_quality_prints_a_row_per_method_with_the_device(capsys):
    out = _run("benchmarks/perturbation_quality.py", "--clips", "1", "--methods", "staa", "--threads", "1",
               capsys=capsys)
    assert re.search(r"^model demo \(timesformer.* on cpu, 1 held-out clips, .*, 1 threads, ", out, re.M), out
    row = next(ln for ln in out.splitlines() if ln.startswith("| staa |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1] == "1"                                    # clips
    assert 0 <= _number(cells[2]) <= 1 and 0 <= _number(cells[3]) <= 1    # temporal, spatial rates
    assert _number(cells[9]) > 0                              # s/clip
    assert (cells[10], cells[11]) == ("1", "0")               # one forward pass, no backward
    chance = next(ln for ln in out.splitlines() if ln.startswith("| chance |"))
    assert 0 < _number(chance.split("|")[3]) < 1


def test_perturbation_quality_runs_the_clips_named_by_only(capsys):
    """``--only 3,1`` explains clips 3 and 1 of the split, in that order (a clip's randomisation
    check over more seeds needs one clip, not the first N)."""
    out = _run("benchmarks/perturbation_quality.py", "--only", "3,1", "--methods", "staa", "--threads", "1",
               capsys=capsys)
    assert "2 held-out clips" in out and "(3, 1 of the split)" in out, out
    row = next(ln for ln in out.splitlines() if ln.startswith("| staa |"))
    assert [c.strip() for c in row.strip("|").split("|")][1] == "2", row


@pytest.fixture
def restore_determinism():
    """train_demo switches deterministic algorithms on for the process; put them back."""
    on, warn = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    yield
    torch.use_deterministic_algorithms(on, warn_only=warn)


def _train_demo():
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        return importlib.import_module("train_demo")
    finally:
        sys.path.remove(str(ROOT / "scripts"))


def test_train_demo_trains_saves_and_scores_a_tiny_model(tmp_path, restore_determinism, capsys):
    report = _train_demo().main(["--model", "cnn3d", "--out", str(tmp_path), "--steps", "1", "--batch-size", "2",
                                 "--threads", "1", "--test-clips", "2", "--explain-clips", "1",
                                 "--object-size", "0.3,0.45", "--window", "4,8"])
    assert report["steps"] == 1 and report["test_split"]["clips"] == 2
    assert report["data_options"] == {"object_size": [0.3, 0.45], "window": [4, 8]}
    assert 0 <= report["test_accuracy"] <= 1
    loc = report["localisation"]
    assert loc["clips"] == 1 and 0 <= loc["temporal_hit"] <= 1 and 0 < loc["temporal_chance"] < 1
    assert json.loads((tmp_path / "training.json").read_text())["test_accuracy"] == report["test_accuracy"]
    assert (tmp_path / "model.safetensors").is_file()


@pytest.mark.parametrize("model, flag", [("stabn", ["--steps", "10"]), ("stabn-backbone", ["--explain-clips", "5"]),
                                         ("stabn", ["--precision", "bf16"]), ("cnn3d", ["--warm-start", "2"]),
                                         ("stabn", ["--object-size", "0.3,0.45"]),
                                         ("timesformer", ["--temporal-strides", "1,2,2,1"])])
def test_train_demo_refuses_an_option_its_training_would_ignore(tmp_path, monkeypatch, capsys, model, flag):
    module = _train_demo()

    def trained(*args, **kwargs):
        raise AssertionError("trained with an option it does not use")

    monkeypatch.setattr(module, "train_stabn", trained)
    monkeypatch.setattr(module, "train", trained)
    with pytest.raises(SystemExit):
        module.main(["--model", model, "--out", str(tmp_path), *flag])
    assert f"{flag[0]}: not used by --model {model}" in capsys.readouterr().err


def test_flashing_shapes_writes_a_labelled_folder_dataset(tmp_path, capsys):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        flashing = importlib.import_module("flashing_shapes")
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    flashing.main([str(tmp_path), "--train", "2", "--val", "0", "--test", "1"])
    lines = (tmp_path / "train" / "labels.csv").read_text().splitlines()
    assert lines[0] == "video,label,start,end" and len(lines) == 3
    masks = np.load(tmp_path / "train" / "masks.npz")["masks"]
    assert masks.shape == (2, flashing.FRAMES, flashing.SIZE, flashing.SIZE)
    for line, mask in zip(lines[1:], masks):
        name, label, start, end = line.split(",")
        assert label in flashing.CLASSES and (tmp_path / "train" / name).is_file()
        shown = np.flatnonzero(mask.any(axis=(1, 2)))
        assert shown.tolist() == list(range(int(start), int(end)))   # the shape is there in its window only
    assert not (tmp_path / "val").exists() and (tmp_path / "test" / "clip_0000.mp4").is_file()


def test_reproduce_stabn_reads_the_recorded_experiment():
    spec = importlib.util.spec_from_file_location("reproduce_stabn", ROOT / "benchmarks" / "reproduce_stabn.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    records = json.loads(module.RESULTS.read_text())["records"]
    rows = module._hk_rows(records, "recorded run")
    assert [r["model"] for r in rows] == ["ST-ABN (confounded training)", "ST-ABN fine-tuned without L_temp (control)",
                                          "ST-ABN + human knowledge"]
    for r in rows:
        mean, sd = (float(v) for v in r["top1"].split(" ± "))
        assert 0 <= mean <= 100 and sd >= 0
    table = module.table(module.PAPER_ROWS + rows).splitlines()
    assert len(table) == 2 + len(module.PAPER_ROWS) + len(rows)
    assert len({line.count("|") for line in table}) == 1    # every row has every column


def test_service_soak_gives_no_verdict_on_too_few_measurements():
    spec = importlib.util.spec_from_file_location("service_soak", ROOT / "benchmarks" / "service_soak.py")
    soak = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(soak)
    # a worker pool that grew once between two measurements: on one measurement per half, a "leak"
    marks = [(c, {"threads": 12 if c < 30 else 13}) for c in (0, 10, 20, 30)]
    assert "2 measurements from cycle 20 on" in soak.no_verdict(marks, warm=20)
    many = [(c, {}) for c in range(0, 130, 10)]
    assert soak.no_verdict(many, warm=20) is None
    assert soak.no_verdict(many, warm=200).startswith("0 measurements")


def test_evaluation_cost_extrapolates_each_pair_over_its_own_clips(tmp_path, capsys):
    """A finished run's extrapolation is its recorded seconds; with a result missing, that pair's
    mean over its other clips stands in for it; the plan's scopes (clips=N) are the run's."""
    import re
    import sqlite3

    from videoxai.evaluation import evaluate

    methods, metrics = "saliency,rise(n_samples=20,clips=2),random", "deletion,sparseness(clips=1)"
    evaluate("demo", "synthetic:3", methods, metrics, tmp_path / "run", backend="inline", progress=False,
             report=False)
    args = ("benchmarks/evaluation_cost.py", str(tmp_path / "run"), "--methods", methods, "--metrics", metrics)

    def printed(out: str) -> tuple[int, int, float, float]:
        stored, planned, done = re.search(r"(\d+) of (\d+) results stored .*, (\d+) worker-s recorded", out).groups()
        whole = re.search(r"whole table, extrapolated: (\d+) worker-s", out).group(1)
        return int(stored), int(planned), float(done), float(whole)

    db = sqlite3.connect(tmp_path / "run" / "results.sqlite")
    recorded = (db.execute("SELECT SUM(seconds) FROM results").fetchone()[0]
                + db.execute("SELECT SUM(seconds) FROM explanations").fetchone()[0])
    # saliency and random: 3 clips × 1 deletion + 1 sparseness; rise: 2 deletion + 1 sparseness
    stored, planned, done, whole = printed(_run(*args, capsys=capsys))
    assert (stored, planned) == (11, 11) and done == round(recorded) and whole == round(recorded)
    pair = "method = 'rise(n_samples=20)' AND metric = 'deletion'"
    kept = [s for (s,) in db.execute(f"SELECT seconds FROM results WHERE {pair} ORDER BY video")]
    with db:
        db.execute(f"DELETE FROM results WHERE {pair} AND video LIKE '%/1'")
    stored, planned, done, whole = printed(_run(*args, capsys=capsys))
    assert (stored, planned) == (10, 11)
    assert done == round(recorded - kept[1]) and whole == round(recorded - kept[1] + kept[0])
    with pytest.raises(SystemExit, match="do not give the run's specs"):
        _run("benchmarks/evaluation_cost.py", str(tmp_path / "run"), "--methods", "saliency,random",
             "--metrics", metrics, capsys=capsys)


def test_evaluation_throughput_names_a_before_revision_that_is_not_there(monkeypatch):
    spec = importlib.util.spec_from_file_location("evaluation_throughput",
                                                  ROOT / "benchmarks" / "evaluation_throughput.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(sys, "argv", ["evaluation_throughput.py", "--before", "no-such-revision-0"])
    with pytest.raises(SystemExit, match=r"^--before no-such-revision-0: \S"):   # git's message, one line
        module.main()


@pytest.mark.parametrize("args, message", [
    (["--methods", "staa,nosuch"], "--methods: unknown nosuch; available: "),
    (["--methods", "staa", "--option", "stpe.iterations=3"], "'stpe' is not one of --methods (staa)"),
    (["--methods", "staa", "--option", "staa.layers"], "--option 'staa.layers': expected METHOD.KEY=VALUE"),
    (["--methods", "staa", "--clips", "0"], "--clips 0: at least 1"),
    (["--methods", "staa", "--object-size", "0.3"], "--object-size '0.3': expected MIN,MAX"),
    (["--methods", "staa", "--only", "4,x"], "--only '4,x': expected distinct clip indices ≥ 0"),
    (["--methods", "staa", "--only", "2,2"], "--only '2,2': expected distinct clip indices ≥ 0"),
])
def test_perturbation_quality_refuses_bad_arguments_before_it_starts(monkeypatch, capsys, args, message):
    """An option for a method not run was dropped (a misspelt method name went unnoticed); an
    unknown method failed with a traceback after the first clip's work."""
    import videoxai as vx

    monkeypatch.setattr(vx, "load_model", lambda *a, **k: pytest.fail("started before refusing"))
    with pytest.raises(SystemExit):
        _run("benchmarks/perturbation_quality.py", *args, capsys=capsys)
    assert message in capsys.readouterr().err


def test_reproduce_papers_refuses_a_section_it_does_not_have(monkeypatch, capsys):
    """A misspelt section was skipped without a word: the run printed the other sections only."""
    import videoxai as vx

    monkeypatch.setattr(vx, "load_model", lambda *a, **k: pytest.fail("started before refusing"))
    with pytest.raises(SystemExit):
        _run("benchmarks/reproduce_papers.py", "--sections", "staa,perturbaton", capsys=capsys)
    assert "--sections 'staa,perturbaton': one or more of staa, perturbation, stabn" in capsys.readouterr().err


def test_staa_overhead_refuses_a_family_it_cannot_build(monkeypatch, capsys):
    """An unknown family was a ValueError traceback after the table's header."""
    import videoxai.models.hf

    monkeypatch.setattr(videoxai.models.hf, "from_hf_module", lambda *a, **k: pytest.fail("started before refusing"))
    with pytest.raises(SystemExit):
        _run("benchmarks/staa_overhead.py", "--families", "timesformer-base 8x224,vivit", capsys=capsys)
    assert "--families: unknown 'vivit'; known: timesformer-base 8x224; " in capsys.readouterr().err


def test_reproduce_papers_leaves_the_first_calls_warm_up_out_of_the_times(monkeypatch, capsys):
    """The first explanation on a freshly loaded model costs 0.2 s more; counted in STAA's mean (it
    ran first), it made the others' "time / STAA's" ratios several times too low. Here the first
    call costs 1 s of a fake clock and every other 0.01 s."""
    spec = importlib.util.spec_from_file_location("reproduce_papers", ROOT / "benchmarks" / "reproduce_papers.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    clock = [0.0]

    def explain(model, clip, method, target=None, **options):
        clock[0] += 0.01 if clock[0] else 1.0

    monkeypatch.setattr(module, "time", types.SimpleNamespace(perf_counter=lambda: clock[0]))
    monkeypatch.setattr(module.vx, "explain", explain)
    monkeypatch.setattr(module.vx, "load_model", lambda name: types.SimpleNamespace(num_frames=8))
    monkeypatch.setattr(module, "evaluate", lambda *a, **k: 0.5)
    module.staa_section(2)
    rows = {ln.split("|")[1].strip(): [c.strip() for c in ln.split("|")[1:-1]]
            for ln in capsys.readouterr().out.splitlines() if ln.startswith("| ") and "paper" not in ln}
    assert [rows[m][6] for m in ("staa", "shap_temporal", "lime")] == ["0.010"] * 3
    assert [rows[m][8] for m in ("staa", "shap_temporal", "lime")] == ["1×"] * 3


def test_stabn_experiment_keeps_its_start_models_in_the_checkout_whatever_the_current_folder(
        monkeypatch, tmp_path, capsys):
    """--cache defaulted to runs/stabn_experiment relative to the current folder: a run started
    elsewhere trained its start models again (minutes a seed) and left a runs/ folder there."""
    spec = importlib.util.spec_from_file_location("stabn_experiment", ROOT / "scripts" / "stabn_experiment.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    caches = []
    monkeypatch.setattr(module, "base_model", lambda splits, settings, seed, cache=None: caches.append(cache))
    monkeypatch.chdir(tmp_path)
    module.main(["--bases-only", "--seeds", "0", "--train-clips", "4", "--val-clips", "2", "--test-clips", "2",
                 "--threads", "1"])
    assert caches == [ROOT / "runs" / "stabn_experiment"]
    with pytest.raises(SystemExit):
        module.main(["--help"])
    assert str(ROOT / "runs" / "stabn_experiment") in " ".join(capsys.readouterr().out.split())
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("args, message", [
    (["--seeds", "0,a"], "argument --seeds: '0,a': whole numbers separated by commas"),
    (["--seeds", "1,1"], "argument --seeds: '1,1': a seed twice"),
    (["--train-clips", "0"], "argument --train-clips: '0': at least 1"),
    (["--threads", "0"], "argument --threads: '0': at least 1"),
    (["--epochs", "0"], "epochs must be a whole number ≥ 1, got 0"),
    (["--lr", "-1"], "lr must be > 0, got -1.0"),
    (["--gamma-t", "-1"], "argument --gamma-t: -1: at least 0"),
])
def test_stabn_experiment_refuses_bad_arguments_before_it_makes_clips(monkeypatch, capsys, args, message):
    """A typo in --seeds was a ValueError traceback once the 5 400 clips were made; --train-clips 0,
    --epochs 0 or --lr -1 an InputError traceback, --threads 0 a RuntimeError one; a negative
    --gamma-t ran (rewarding attention outside the window)."""
    spec = importlib.util.spec_from_file_location("stabn_experiment", ROOT / "scripts" / "stabn_experiment.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(module, "make_splits", lambda **k: pytest.fail("started before refusing"))
    with pytest.raises(SystemExit):
        module.main([*args, "--bases-only"])
    assert message in capsys.readouterr().err


def test_randomisation_positional_prints_the_checks_rho_per_stage(capsys):
    """Its ρ column is the randomisation metric's curve on the same clip (seed 0, one seed), and
    the trained 3D CNN answers to the object far more than a copy with its classifier re-drawn."""
    import videoxai as vx
    from videoxai.data.synthetic import SyntheticVideos
    from videoxai.metrics.base import evaluate

    out = _run("benchmarks/randomisation_positional.py", "--model", "demo-cnn", "--method", "saliency",
               "--peer", "saliency", "--clip", "2", capsys=capsys)
    rows = [[c.strip() for c in ln.strip("|").split("|")] for ln in out.splitlines() if re.match(r"\| \d ", ln)]
    assert [r[0] for r in rows] == ["1", "2", "3", "4"] and rows[0][1] == "fc", out
    model = vx.load_model("demo-cnn")
    sample = SyntheticVideos(3, split="test", num_frames=model.num_frames)[2]
    exp = vx.explain(model, sample.clip, method="saliency", target=sample.label)
    curve = evaluate("randomisation", model, sample.clip, exp, seeds=1).curve
    assert [_number(r[2]) for r in rows] == pytest.approx(list(curve), abs=0.006)
    assert [r[7] for r in rows] == [r[2] for r in rows]          # the peer is the method itself
    trained = _number(re.search(r"object drop ([+-][\d.]+)", out).group(1))
    assert trained > 0.3 and _number(rows[0][6]) < trained / 3


def _extremal_margin():
    spec = importlib.util.spec_from_file_location("extremal_margin", ROOT / "benchmarks" / "extremal_margin.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_extremal_margin_frame_term_charges_nothing_outside_the_frame():
    """The variant's area term sees only the frame: a mask that keeps the padded margin alone
    costs what an empty mask costs, where the shipped (TorchRay's) term charges for it; inside
    the frame both charge the same mask, with the area rescaled to the same voxel count."""
    import videoxai as vx
    from videoxai.methods.extremal.masks import MaskGenerator

    module = _extremal_margin()
    model = vx.load_model("demo-cnn")
    gen = MaskGenerator((64, 64), 4, 6.3)
    t, (ho, wo) = 2, gen.shape_out
    shipped, frame = vx.methods.get("ep3d")(model), module.EP3DFrameArea(model)
    frame._frame_gen = gen
    orders = frame.draw_orders(torch.Generator().manual_seed(0), t, gen.shape_out)
    areas = torch.tensor([0.02])
    empty = torch.zeros(1, t, ho, wo)
    outside = torch.ones(1, t, ho, wo)
    top = gen.margin
    outside[..., top:top + 64, top:top + 64] = 0
    assert float(frame.regulariser(outside, areas, 0.0, orders)) == pytest.approx(
        float(frame.regulariser(empty, areas, 0.0, orders)), abs=1e-9)
    assert float(shipped.regulariser(outside, areas, 0.0, orders)) > 2 * float(
        shipped.regulariser(empty, areas, 0.0, orders))
    # a mask holding exactly the target's voxels inside the frame costs nothing in the variant
    core = torch.zeros(1, t, 64, 64)
    core.view(-1)[:round(0.02 * t * ho * wo)] = 1
    inside = empty.clone()
    inside[..., top:top + 64, top:top + 64] = core
    one_voxel = 300 / core.numel()                # λ_0 × one voxel off the count after rounding
    assert float(frame.regulariser(inside, areas, 0.0, orders)) <= one_voxel
    assert float(frame.regulariser(empty, areas, 0.0, orders)) > 100 * one_voxel


def test_extremal_margin_prints_both_variants_per_clip(capsys):
    out = _run("benchmarks/extremal_margin.py", "--model", "demo-cnn", "--clips", "1", "--threads", "1",
               "--option", "iterations=2", "--option", "fine_iterations=0", capsys=capsys)
    line = next(ln for ln in out.splitlines() if ln.startswith("  clip 0 "))
    assert re.search(r"shipped: (top frame .*, peak [\d.]+|blank map).*; frame: (top frame|blank map)", line), out
    rows = [ln for ln in out.splitlines() if ln.startswith(("| shipped |", "| frame |"))]
    assert len(rows) == 4, out                   # each variant: its border group and "all"


def test_extremal_margin_summary_leaves_blank_maps_out():
    """A blank map (the model's "nothing" class) has no IoU (nan): it is counted, not averaged."""
    row = {"temporal": 1.0, "peak": 1.0, "pointing": 1.0, "iou": 0.5, "margin": 0.01, "inside": 0.02,
           "seconds": 1.0, "blank": False}
    blank = {**row, "temporal": 0.0, "peak": 0.0, "pointing": float("nan"), "iou": float("nan"),
             "margin": 0.0, "inside": 0.0, "blank": True}
    lines = _extremal_margin().summary({"shipped": [{**row, "border": 2}, {**row, "border": 20},
                                                    {**blank, "border": 11}]})
    rows = {ln.split("|")[2].strip(): [c.strip() for c in ln.strip("|").split("|")] for ln in lines[2:]}
    assert rows["all (2; 1 blank left out)"][2:7] == ["1.00", "1.00", "1.00", "0.500", "0.50"], lines
    assert rows["object > 7 px (1; 1 blank left out)"][6] == "0.50"
    assert rows["object ≤ 7 px from the edge (1)"][6] == "–"


def test_extremal_decomposition_rules_replay_the_saved_masks_into_the_shipped_map(tmp_path, capsys):
    """``rules`` rebuilds each clip's map from the masks ``run`` saved: the shipped rule must give
    back the IoU of the map the method returned, or the other rules' rows compare with nothing."""
    script, out = "benchmarks/extremal_decomposition.py", str(tmp_path)
    ran = _run(script, "run", "--model", "demo-cnn", "--split", "val", "--clips", "2", "--out", out,
               "--option", "iterations=3", "--option", "fine_iterations=1", capsys=capsys)
    assert re.search(r"ep3d on [12] object clips", ran), ran
    printed = _run(script, "rules", "--model", "demo-cnn", "--split", "val", "--clips", "2", "--out", out,
                   "--option", "iterations=3", "--option", "fine_iterations=1", capsys=capsys)
    assert "replays IoU" not in printed, printed
    rows = {ln[:38].strip(): ln[38:].split() for ln in printed.splitlines() if ln.startswith("  ")}
    assert {"shipped (score / area)", "as they are (the recipe's sum)"} <= set(rows), printed
    saved = [float(np.load(f)["iou"]) for f in sorted(tmp_path.glob("demo-cnn_val_ep3d_*.npz"))]
    assert [float(v) for v in rows["shipped (score / area)"][7:]] == pytest.approx(saved, abs=0.006)


def test_cam_placement_prints_each_placement_and_the_peer_on_the_same_clips(capsys):
    # on 12 validation clips of the bundled 3D CNN the grid laid on its cells' centres puts
    # Grad-CAM's peak on the object more often than the stretch and the peer's zoom
    out = _run("benchmarks/cam_placement.py", "--clips", "12", "--methods", "gradcam", capsys=capsys)
    assert re.search(r"^model demo-cnn, split val: \d+ of 12 clips", out, re.M), out
    rows = {}
    for line in out.splitlines():
        parts = line.split()
        if parts and parts[0] == "gradcam":
            rows[parts[1]] = [float(v) for v in parts[2:]]   # temporal, peak, px, pointing, IoU
    assert set(rows) == {"centres", "stretch", "pytorch-grad-cam"}
    assert rows["centres"][0] == rows["stretch"][0]            # time is not strided: same top frame
    assert rows["centres"][1] > rows["stretch"][1] and rows["centres"][1] > rows["pytorch-grad-cam"][1]
    assert rows["centres"][4] > rows["stretch"][4]
