"""The evaluation runner: SQLite results, resume after a killed run (local worker processes),
the Ray backend, the report, datasets and the CLI."""

from __future__ import annotations

import csv
import json
import math
import os
import re
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from videoxai.data.datasets import EvalSample, load_dataset
from videoxai.data.synthetic import SyntheticVideos
from videoxai.errors import InputError, UnknownMethodError
from videoxai.evaluation import ResultRow, ResultStore, evaluate, summarise, write_report
from videoxai.evaluation.report import confidence_interval
from videoxai.evaluation.runner import rerun_clips, resolve_metrics

METRICS = "deletion(unit=frame, n_steps=4),insertion(unit=frame, n_steps=4),energy,temporal_grounding"
FEW = "deletion(unit=frame, n_steps=4),temporal_grounding"
TESTS = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A tiny TimeSformer saved like any checkpoint, with the synthetic benchmark's 4 classes."""
    from conftest import tiny_hf

    labels = SyntheticVideos(1).labels
    net = tiny_hf("timesformer", num_labels=4, id2label=dict(enumerate(labels)),
                  label2id={name: i for i, name in enumerate(labels)})
    d = tmp_path_factory.mktemp("tiny_synthetic_timesformer")
    net.save_pretrained(d)
    (d / "preprocessor_config.json").write_text(json.dumps({
        "size": {"shortest_edge": 32}, "crop_size": {"height": 32, "width": 32},
        "image_mean": [0.45] * 3, "image_std": [0.225] * 3}))
    return str(d)


def keys(db: Path) -> list[tuple]:
    with sqlite3.connect(db) as c:
        return c.execute("SELECT video, method, metric FROM results").fetchall()


def values(db: Path) -> dict[tuple, float | None]:
    with sqlite3.connect(db) as c:
        return {(v, m, k): x for v, m, k, x in c.execute(
            "SELECT video, method, metric, value FROM results WHERE metric != 'cost'")}


@contextmanager
def _run_store(db: Path, *metrics: str) -> Iterator[ResultStore]:
    """A results store at ``db`` bound to a stand-in run (model ``m`` on data ``d``) with
    ``metrics`` registered and a run started: rows written by hand, as the runner would."""
    from videoxai.metrics import build

    with ResultStore(db) as store:
        store.bind({"model": "m", "data": "d", "target": "label", "refine": None, "seed": 0})
        store.register_metrics([build(m) for m in metrics])
        store.start_run({})
        yield store


def assert_same_results(a, b):
    """Same keys and values (cost aside) in two evaluations' results files."""
    va, vb = values(a.database), values(b.database)
    assert va.keys() == vb.keys() and va
    for k in va:
        assert (va[k] is None and vb[k] is None) or va[k] == pytest.approx(vb[k], abs=1e-5), k


# -- runner, inline ---------------------------------------------------------------------------------
def test_inline_run_stores_every_key_once_and_resumes_without_recomputing(model_dir, tmp_path):
    out = tmp_path / "eval"
    first = evaluate(model_dir, "synthetic:3", "staa,random", METRICS, out, backend="inline", progress=False)
    total = 3 * 2 * 4
    assert (first.computed, first.skipped, first.errors) == (total, 0, 0)
    assert len(keys(out / "results.sqlite")) == total
    assert all(first.report[k].is_file() for k in ("markdown", "csv", "html", "curves", "methods_metrics"))
    before = values(out / "results.sqlite")

    again = evaluate(model_dir, "synthetic:3", "staa,random", METRICS, out, backend="inline", progress=False)
    assert (again.computed, again.skipped) == (0, total)
    # a new metric is one new column: only it is computed
    more = evaluate(model_dir, "synthetic:3", "staa,random", METRICS + ",sparseness", out, backend="inline",
                    progress=False)
    assert (more.computed, more.skipped) == (3 * 2, total)
    after = values(out / "results.sqlite")
    assert {k: v for k, v in after.items() if k[2] != "sparseness"} == before
    # the explanations were made for the clips' labels (target="label")
    with ResultStore(out / "results.sqlite") as store:
        ex = store.explanations()
    assert len(ex) == 6 and all(e.target == e.label for e in ex)


def test_clips_limits_a_method_or_metric_to_the_first_clips_and_can_be_raised_later(model_dir, tmp_path):
    out = tmp_path / "eval"
    first = evaluate(model_dir, "synthetic:4", "staa,random(clips=2)", "energy,temporal_grounding(clips=1)",
                     out, backend="inline", progress=False)
    # staa: 4 clips × energy + 1 × grounding; random: 2 clips × energy + 1 × grounding
    assert first.computed == 4 + 1 + 2 + 1 and first.clips == {"random": 2, "temporal_grounding": 1}
    assert first.methods == ["staa", "random"] and first.metrics == ["energy", "temporal_grounding"]
    got = {(v.split("/")[-1], m, k) for v, m, k in keys(out / "results.sqlite")}
    assert ("2", "random", "energy") not in got and ("1", "staa", "temporal_grounding") not in got
    assert ("1", "random", "energy") in got and ("3", "staa", "energy") in got
    # the limit is part of the plan, not of the result: raising it computes only the added clips
    more = evaluate(model_dir, "synthetic:4", "staa,random(clips=3)", "energy,temporal_grounding(clips=1)",
                    out, backend="inline", progress=False)
    assert (more.computed, more.skipped) == (1, 8)
    with ResultStore(out / "results.sqlite") as store:
        s = summarise(store)
    assert s.cells[("random", "energy")].n == 3 and s.cells[("staa", "energy")].n == 4
    assert "(n=3)" in more.report["markdown"].read_text()
    # `all` runs the slow methods on their first clips; a repeat of a spec keeps the wider scope
    from videoxai.evaluation import resolve_methods, resolve_metrics
    from videoxai.models import load_model

    sel = resolve_methods("all", load_model(model_dir))
    assert sel.clips.get("ep2d") == 10 and "staa" in sel.specs and "staa" not in sel.clips
    assert resolve_metrics("all").clips == {"randomisation": 5, "class_sensitivity": 20, "max_sensitivity": 5}
    assert resolve_metrics("energy(clips=2),energy").clips == {}
    # ... and the metrics that re-run a slow method of `all` spend at most its own explanations
    assert sel.rerun_budget.get("ep2d") == 10 and "staa" not in sel.rerun_budget
    suite_sel = resolve_metrics("all")
    suite = dict(zip(suite_sel.specs, suite_sel.metrics))
    assert [rerun_clips(10, suite[s]) for s in ("randomisation", "max_sensitivity", "class_sensitivity",
                                                 "energy")] == [1, 2, 10, 10]
    assert "ep2d" not in resolve_methods("all,ep2d", load_model(model_dir)).rerun_budget  # named: no budget
    assert resolve_metrics("energy(clips=2),energy(clips=5)").clips == {"energy": 5}
    for bad in ("energy(clips=0)", "energy(clips=two)", "energy(clips=true)"):
        with pytest.raises(InputError, match="metric 'energy': option clips must be an integer ≥ 1"):
            resolve_metrics(bad)


def test_the_rerun_budget_limits_only_the_metrics_that_re_run_the_method():
    from videoxai.evaluation.runner import Selection, plan

    class Keys:
        def key(self, i):
            return f"clip{i}"

    metrics = resolve_metrics("energy,max_sensitivity(n_samples=2),randomisation(stages=2,seeds=1),"
                              "randomisation(stages=null)")
    slow = Selection(["slow"], clips={"slow": 3}, rerun_budget={"slow": 3})
    tasks = list(plan(Keys(), 4, slow, metrics, set()).tasks)
    energy, robust, rand2, rand_all = metrics.specs
    assert [t.work["slow"] for t in tasks] == [[energy, robust, rand2, rand_all], [energy], [energy]]
    # a method without a budget (named by the user, or fast) gets every metric on every clip
    tasks = list(plan(Keys(), 2, Selection(["fast"]), metrics, set()).tasks)
    assert [t.work["fast"] for t in tasks] == [metrics.specs, metrics.specs]


def test_a_different_evaluation_in_the_same_directory_is_refused(model_dir, tmp_path):
    evaluate(model_dir, "synthetic:1", "random", "energy", tmp_path, backend="inline", progress=False,
             report=False)
    with pytest.raises(InputError, match="different evaluation.*data"):
        evaluate(model_dir, "synthetic:1,seed=3", "random", "energy", tmp_path, backend="inline",
                 progress=False, report=False)
    # the same data written another way is the same evaluation: it resumes instead of refusing
    again = evaluate(model_dir, " synthetic:1, seed=0 ,split=test", "random", "energy", tmp_path, backend="inline",
                     progress=False, report=False)
    assert (again.computed, again.skipped) == (0, 1)


def test_more_synthetic_clips_in_the_same_directory_computes_only_the_added_ones(model_dir, tmp_path):
    """`--data synthetic:2` then `--data synthetic:3` on one --out was refused as "a different
    evaluation"; clip i of synthetic:N is the same clip for every N (checked here by content), so
    the larger run computes the added clip only, and its results equal a fresh run's."""
    first = evaluate(model_dir, "synthetic:2", "random", "energy", tmp_path, backend="inline", progress=False,
                     report=False)
    assert first.computed == 2
    a, b = load_dataset("synthetic:2"), load_dataset("synthetic:3")
    for i in range(2):
        assert a.key(i) == b.key(i)
        np.testing.assert_array_equal(a[i].clip.frames, b[i].clip.frames)
        np.testing.assert_array_equal(a[i].masks, b[i].masks)
    more = evaluate(model_dir, "synthetic:3", "random", "energy", tmp_path, backend="inline", progress=False,
                    report=False)
    assert (more.computed, more.skipped) == (1, 2)
    fresh = evaluate(model_dir, "synthetic:3", "random", "energy", tmp_path / "fresh", backend="inline",
                     progress=False, report=False)
    assert_same_results(more, fresh)
    # fewer clips again: nothing to compute, and the file still names the clips it holds
    fewer = evaluate(model_dir, "synthetic:1", "random", "energy", tmp_path, backend="inline", progress=False,
                     report=False)
    assert (fewer.computed, fewer.skipped) == (0, 1)
    with ResultStore(more.database) as store:
        assert store.meta()["data"] == "synthetic:3"
    # another seed or split is other clips under other keys: still refused
    for other in ("synthetic:3,seed=1", "synthetic:3,split=val"):
        with pytest.raises(InputError, match=re.escape(f"(data: stored 'synthetic:3', now '{other}')")):
            evaluate(model_dir, other, "random", "energy", tmp_path, backend="inline", progress=False, report=False)


def test_a_cluster_address_nobody_listens_on_is_one_line_at_once(tmp_path, monkeypatch):
    """`--backend ray --address HOST:PORT` with a wrong port (or a head node not started) kept
    ray.init trying for minutes, printing Ray's connection warnings every few seconds. The model
    does not exist: the address is checked before it loads."""
    import socket

    with socket.socket() as s:   # a port that was free a moment ago: nobody listens on it
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    for address in (f"127.0.0.1:{port}", f"ray://127.0.0.1:{port}"):
        with pytest.raises(InputError, match=re.escape(f"cannot reach the Ray cluster at {address}: Connection "
                                                       "refused; is it running (ray start --head)")):
            evaluate(str(tmp_path / "no-model"), "synthetic:1", "random", "energy", tmp_path, backend="ray",
                     address=address)

    # RAY_ADDRESS, Ray's own way to name a cluster, is the default address: ray.init(num_cpus=…) on it
    # failed with 'When connecting to an existing cluster, num_cpus and num_gpus must not be provided'
    monkeypatch.setenv("RAY_ADDRESS", f"127.0.0.1:{port}")
    with pytest.raises(InputError, match=re.escape(f"cannot reach the Ray cluster at 127.0.0.1:{port} (RAY_ADDRESS): "
                                                   "Connection refused")):
        evaluate(str(tmp_path / "no-model"), "synthetic:1", "random", "energy", tmp_path, backend="ray")
    with pytest.raises(InputError, match=re.escape("on a cluster (RAY_ADDRESS) its own CPUs decide")):
        evaluate(str(tmp_path / "no-model"), "synthetic:1", "random", "energy", tmp_path, backend="ray", workers=2)


def test_one_folder_written_another_way_resumes_and_a_relative_one_is_told_how(model_dir, tmp_path, monkeypatch):
    """`--data folder:clips/` (a shell's completion adds the slash) after `--data folder:clips` was
    refused as a different evaluation; a path that may name another folder (relative against
    absolute) is still refused, and the message says how to resume if it is the same folder."""
    video(tmp_path / "clips" / "a.mp4")
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "eval"
    first = evaluate(model_dir, "folder:clips", "random", "sparseness", out, backend="inline", progress=False,
                     report=False)
    assert first.computed == 1
    for spelling in ("folder:clips/", "folder:./clips", "folder:clips//"):
        again = evaluate(model_dir, spelling, "random", "sparseness", out, backend="inline", progress=False,
                         report=False)
        assert (again.computed, again.skipped) == (0, 1), spelling
    absolute = f"folder:{tmp_path / 'clips'}"
    with pytest.raises(InputError, match=re.escape(
            f"(data: stored 'folder:clips', now '{absolute}'); use another output directory; or, if "
            f"{tmp_path / 'clips'} is the folder stored as clips, give the data as stored: --data 'folder:clips'")):
        evaluate(model_dir, absolute, "random", "sparseness", out, backend="inline", progress=False, report=False)


def test_bad_runner_arguments(model_dir, tmp_path):
    with pytest.raises(UnknownMethodError, match="unknown method 'nope'"):
        evaluate(model_dir, "synthetic:1", "nope", "energy", tmp_path, backend="inline")
    with pytest.raises(InputError, match="unknown metric"):
        evaluate(model_dir, "synthetic:1", "staa", "energi", tmp_path, backend="inline")
    with pytest.raises(InputError, match="backend must be"):
        evaluate(model_dir, "synthetic:1", "staa", "energy", tmp_path, backend="dask")
    with pytest.raises(InputError, match="unknown dataset kind"):
        evaluate(model_dir, "nosuchkind:1", "staa", "energy", tmp_path, backend="inline")
    with pytest.raises(InputError, match="model spec"):
        from videoxai.models import load_model
        evaluate(load_model(model_dir), "synthetic:1", "staa", "energy", tmp_path, backend="local")
    for seed in (-1, 2 ** 64, 1.5, True):   # -1 made every result of the random reference an error
        with pytest.raises(InputError, match=re.escape(f"seed (--seed) must be an integer from 0 to 2^64 - 1 (it "
                                                       f"seeds the random reference map), got {seed!r}")):
            evaluate(model_dir, "synthetic:1", "random", "energy", tmp_path, backend="inline", seed=seed)
    for refine in ("yes", 1, {"threshold": 0.5}):   # every explanation was an error row, after the run
        with pytest.raises(InputError, match=re.escape(f"refine must be None (each method's default), True or "
                                                       f"False, got {refine!r}")):
            evaluate(model_dir, "synthetic:1", "random", "energy", tmp_path, backend="inline", refine=refine)
    # a metric object is its spec, as metrics.build takes it; anything else but text is named ('empty spec 3')
    from videoxai.metrics import Deletion

    s = evaluate(model_dir, "synthetic:1", "random", [Deletion(unit="frame", n_steps=4)], tmp_path / "objects",
                 backend="inline", progress=False, report=False)
    assert s.metrics == ["deletion(n_steps=4, unit=frame)"] and (s.computed, s.errors) == (1, 0)
    with pytest.raises(InputError, match=re.escape("metrics must be specs, text such as 'deletion(unit=frame)', "
                                                   "or Metric objects, got 3 (int)")):
        evaluate(model_dir, "synthetic:1", "random", ["energy", 3], tmp_path, backend="inline")
    with pytest.raises(InputError, match=re.escape("methods must be specs, text such as 'occlusion(window=4)', got "
                                                   "None (NoneType)")):
        evaluate(model_dir, "synthetic:1", ["random", None], "energy", tmp_path, backend="inline")
    for limit in (0, -2):  # was "the dataset is empty"
        with pytest.raises(InputError, match=f"limit must be an integer ≥ 1 \\(the first clips to use\\), got {limit}"):
            evaluate(model_dir, "synthetic:3", "staa", "energy", tmp_path, backend="inline", limit=limit)


def test_options_the_backend_would_ignore_and_an_empty_out_are_refused(tmp_path, monkeypatch):
    """--address without --backend ray ran in local processes (the cluster idle), -j with
    --address or --backend inline was ignored, and --out "" (an unset variable) wrote the results
    into the working directory. The model does not exist: each is refused before it loads."""
    model = str(tmp_path / "no-model")
    with pytest.raises(InputError, match=re.escape("address (--address) is a Ray cluster's: it needs backend='ray' "
                                                   "(--backend ray), got backend 'local'")):
        evaluate(model, "synthetic:1", "random", "energy", tmp_path, address="auto")
    with pytest.raises(InputError, match=re.escape("workers (--workers/-j) sets the CPUs of the local Ray instance")):
        evaluate(model, "synthetic:1", "random", "energy", tmp_path, backend="ray", address="auto", workers=2)
    with pytest.raises(InputError, match=re.escape("workers (--workers/-j) is for the local and ray backends; "
                                                   "inline runs in this process, got 4")):
        evaluate(model, "synthetic:1", "random", "energy", tmp_path, backend="inline", workers=4)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InputError, match=re.escape("out (--out) is empty: name the output directory")):
        evaluate(model, "synthetic:1", "random", "energy", "", backend="inline")
    r = subprocess.run([sys.executable, "-m", "videoxai", "evaluate", "--model", model, "--data", "synthetic:1",
                        "--methods", "random", "--metrics", "energy", "--out", ""],
                       capture_output=True, text=True, timeout=120, cwd=tmp_path,
                       env={**os.environ, "PYTHONPATH": str(TESTS.parent)})
    assert r.returncode == 2 and r.stderr.strip().splitlines() == [
        "error: --out is empty: name the output directory ('.' for this one)"]
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_method_failures_become_error_rows_and_are_retried(model_dir, tmp_path):
    # a clip whose label is not one of the model's classes: the method fails, the run goes on
    clip = SyntheticVideos(1, split="test")[0]
    bad = EvalSample(key="bad", clip=clip.clip, label=7)
    good = EvalSample(key="good", clip=clip.clip, label=clip.label)
    s = evaluate(model_dir, [bad, good], "staa", "energy,temporal_grounding", tmp_path, backend="inline",
                 progress=False)
    assert s.errors == 2 and s.computed == 4
    with ResultStore(tmp_path / "results.sqlite") as store:
        rows = {r.key: r for r in store.rows()}
        # no masks on these samples: localisation is "n/a", not an error and not a fake zero
        assert rows[("good", "staa", "energy")].status == "n/a"
        assert "out of range" in rows[("bad", "staa", "energy")].details["error"]
        assert store.done() == {("good", "staa", "energy"), ("good", "staa", "temporal_grounding")}


@pytest.fixture
def picky_method():
    """A method that finds out only while running that it cannot explain the model."""
    from videoxai.errors import UnsupportedModelError
    from videoxai.methods import base

    class Picky(base.Method):
        name = "picky_test_method"

        def attribute(self, inputs, target=None):
            raise UnsupportedModelError("picky needs another architecture")

    base.register(Picky)
    yield Picky.name
    base.METHODS.unregister(Picky.name)


def test_a_method_unsupported_at_run_time_is_not_applicable_not_an_error(model_dir, tmp_path, picky_method):
    s = evaluate(model_dir, "synthetic:2", f"staa,{picky_method}", "energy", tmp_path, backend="inline",
                 progress=False)
    assert s.errors == 0
    with ResultStore(tmp_path / "results.sqlite") as store:
        assert {r.status for r in store.rows() if r.method == picky_method} == {"n/a"}
        summary = summarise(store)
    assert summary.methods == ["staa"] and "another architecture" in summary.inapplicable[picky_method]
    assert "picky_test_method (UnsupportedModelError: picky needs another architecture)" in \
        s.report["markdown"].read_text()
    again = evaluate(model_dir, "synthetic:2", f"staa,{picky_method}", "energy", tmp_path, backend="inline",
                     progress=False, report=False)
    assert again.computed == 0                      # not applicable is final, unlike an error


# -- resume after a killed run -------------------------------------------------------------------------
KILLED_RUN = textwrap.dedent("""
    import os, signal, sys
    from videoxai.evaluation import store, evaluate
    write = store.ResultStore.write
    def write_then_die(self, row):
        write(self, row)
        if self.count() >= int(sys.argv[3]):
            os.kill(os.getpid(), getattr(signal, sys.argv[5]))   # a crash (Ctrl-C, a scheduler's SIGTERM)
    store.ResultStore.write = write_then_die
    evaluate(sys.argv[1], "synthetic:3", "staa,random", sys.argv[4], sys.argv[2], backend="local",
             workers=1, progress=False)
""")


@pytest.mark.parametrize("signal_name", ["SIGKILL", "SIGTERM", "SIGINT"])
def test_resume_after_a_killed_run_loses_and_duplicates_nothing(model_dir, tmp_path, signal_name):
    """Killed between two committed rows (a crash, a scheduler's SIGTERM, Ctrl-C: SIGINT is a
    KeyboardInterrupt that ends the run through its cleanup), then resumed inline."""
    import psutil

    out = tmp_path / "eval"
    proc = subprocess.Popen([sys.executable, "-c", KILLED_RUN, model_dir, str(out), "5", FEW, signal_name],
                            cwd=TESTS.parent, stderr=subprocess.PIPE)
    workers = {}
    while proc.poll() is None:  # note the worker processes, to check they do not outlive the parent
        try:
            workers.update((c.pid, c) for c in psutil.Process(proc.pid).children(recursive=True))
        except psutil.Error:
            pass
        time.sleep(0.05)
    assert proc.returncode == -getattr(signal, signal_name), proc.stderr.read().decode()[-2000:]
    db = out / "results.sqlite"
    first = keys(db)
    assert len(first) == 5
    assert workers
    for w in workers.values():  # orphaned workers notice and exit (after their current task)
        try:
            w.wait(timeout=60)
        except psutil.NoSuchProcess:
            pass

    total = 3 * 2 * 2
    second = evaluate(model_dir, "synthetic:3", "staa,random", FEW, out, backend="inline", progress=False)
    assert second.computed == total - 5 and second.skipped == 5
    with sqlite3.connect(db) as c:
        rows = c.execute("SELECT video, method, metric, run FROM results").fetchall()
    assert len(rows) == total and len({r[:3] for r in rows}) == total
    assert sorted(r[:3] for r in rows if r[3] == 1) == sorted(first)   # the killed run's rows are kept
    assert sum(r[3] == 2 for r in rows) == total - 5
    # rows from the killed worker process plus rows of the resumed run = one clean inline run
    clean = evaluate(model_dir, "synthetic:3", "staa,random", FEW, tmp_path / "clean", backend="inline",
                     progress=False, report=False)
    assert_same_results(clean, second)



CRASHING_WORKER = textwrap.dedent("""
    import os, signal, sys
    from pathlib import Path
    from videoxai.evaluation import evaluate
    from videoxai.methods import base
    from videoxai.methods.saliency import Saliency

    class DiesOnce(Saliency):   # registered in the workers too: they import this script
        name = "dies_once_test_method"

        def attribute(self, inputs, target=None):
            flag = Path(sys.argv[3])
            if not flag.exists():   # the first clip's worker dies, as the out-of-memory killer ends it
                flag.write_text("died")
                os.kill(os.getpid(), signal.SIGKILL)
            return super().attribute(inputs, target)

    base.register(DiesOnce)
    if __name__ == "__main__":
        s = evaluate(sys.argv[1], "synthetic:2", "dies_once_test_method,random", "sparseness", sys.argv[2],
                     backend="local", workers=1, progress=False, report=False)
        print(s.computed, s.errors)
""")


def test_a_worker_killed_on_one_clip_costs_that_clips_results_not_the_run(model_dir, tmp_path):
    """A clip whose explanation needs more memory than the machine has: the kernel kills its worker.
    The run ended with 'worker videoxai-eval-0 exited with code -9', and every resume died on the
    same clip, so the evaluation could never finish; now that clip's results are errors that say
    so (a resume computes them again, as any error), and a new worker goes on with the rest."""
    out, flag, script = tmp_path / "eval", tmp_path / "died", tmp_path / "crashing_eval.py"
    script.write_text(CRASHING_WORKER)   # a file: spawned workers import it (not so with -c)
    proc = subprocess.run([sys.executable, str(script), model_dir, str(out), str(flag)],
                          cwd=TESTS.parent, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.split()[-2:] == ["4", "1"] and flag.exists()
    with ResultStore(out / "results.sqlite") as store:
        errors = store.rows("error")
        assert len(errors) == 1 and store.count("ok") == 3
        died = errors[0]
        assert (died.video, died.method) == ("synthetic:test:0/0", "dies_once_test_method")
        assert died.details["error"] == ("worker videoxai-eval-0 was killed by SIGKILL (the kernel's "
                                         "out-of-memory killer sends it) while computing this")
        assert {e.video: e.status for e in store.explanations() if e.method == "dies_once_test_method"} == {
            "synthetic:test:0/0": "error", "synthetic:test:0/1": "ok"}


def test_a_script_without_a_main_guard_is_told_to_add_one(model_dir, tmp_path):
    # docs/evaluation.md's snippet, run as a script: the local backend's spawned workers import the
    # script, whose evaluate() call died in each on the results folder's lock ("in use by another
    # evaluation") and the run on "worker videoxai-eval-0 exited with code 1"
    script = tmp_path / "my_eval.py"
    script.write_text(textwrap.dedent(f"""
        from videoxai.evaluation import evaluate
        evaluate({model_dir!r}, "synthetic:1", methods="random", metrics="sparseness",
                 out={str(tmp_path / "eval")!r}, workers=1, progress=False, report=False)
    """))
    proc = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    last = proc.stderr.strip().splitlines()[-1]
    assert "my_eval.py calls evaluate() again when the worker imports it" in last, proc.stderr[-3000:]
    assert 'if __name__ == "__main__":' in last and "in use by another evaluation" not in proc.stderr


# -- backends agree ---------------------------------------------------------------------------------------
@pytest.fixture(scope="class")
def local_ray(tmp_path_factory):
    """A local one-CPU Ray whose workers misbehave where the test says so, in files: ``kill``
    names a clip in the middle of which the worker kills itself (a SIGKILL, as the kernel's
    out-of-memory killer ends a worker: after the clip's second row, before its third); where
    ``no_model`` exists, a worker cannot load the model (a path only the driver sees); where
    ``exits`` exists, the method ``exits_test_method`` (saliency otherwise) ends its worker with
    ``os._exit(1)`` on every clip. Class-scoped:
    Ray goes down after the tests of :class:`TestRayBackend`, not at the end of this module."""
    from types import SimpleNamespace

    ray = pytest.importorskip("ray")
    files = tmp_path_factory.mktemp("ray")
    kill, no_model, exits = files / "kill", files / "no_model", files / "exits"

    def setup() -> None:   # runs in every Ray worker as it starts (pickled by value: a local function)
        import os
        import signal

        from videoxai.errors import InputError
        from videoxai.evaluation import backends, tasks
        from videoxai.methods import base as methods
        from videoxai.methods.saliency import Saliency

        run_task, create = backends.run_task, tasks.WorkerContext.create

        def dies_on_the_named_clip(ctx, task):
            for i, row in enumerate(run_task(ctx, task)):
                if i == 2 and os.path.exists(str(kill)) and open(str(kill)).read() == task.key:
                    os.kill(os.getpid(), signal.SIGKILL)
                yield row

        def load(settings, model=None):
            if os.path.exists(str(no_model)):
                raise InputError(f"unknown model {settings.model!r}: not a directory")
            return create(settings, model)

        backends.run_task = dies_on_the_named_clip
        tasks.WorkerContext.create = staticmethod(load)

        class ExitsWhereTold(Saliency):   # a crash in native code, a library that calls exit()
            name = "exits_test_method"

            def attribute_pixels(self, inputs, target=None):
                if os.path.exists(str(exits)):
                    os._exit(1)
                return super().attribute_pixels(inputs, target)

        methods.register(ExitsWhereTold)

    ray.init(num_cpus=1, include_dashboard=False, logging_level="ERROR",
             runtime_env={"worker_process_setup_hook": setup})
    yield SimpleNamespace(kill=kill, no_model=no_model, exits=exits)
    ray.shutdown()


class TestRayBackend:
    """The ray backend on a local one-CPU Ray (:func:`local_ray`)."""

    def test_ray_backend_gives_the_same_results_as_inline(self, model_dir, local_ray, tmp_path):
        a = evaluate(model_dir, "synthetic:2", "staa,random", FEW, tmp_path / "inline", backend="inline",
                     progress=False, report=False)
        b = evaluate(model_dir, "synthetic:2", "staa,random", FEW, tmp_path / "ray", backend="ray",
                     workers=1, progress=False, report=False)
        assert b.computed == 8 and b.errors == 0
        assert_same_results(a, b)

    def test_a_ray_worker_killed_on_one_clip_costs_that_clips_results_not_the_run(self, model_dir, local_ray,
                                                                                    tmp_path, monkeypatch):
        """As on the local backend: a clip whose worker dies on every try (more memory than the node
        has) ended the run with 'a Ray task failed: The worker died unexpectedly', and every resume
        on the same clip; now its missing results are errors that say so, the other clips are
        computed, and a resume computes the errors again."""
        from videoxai.evaluation import backends

        monkeypatch.setattr(backends, "RAY_RETRIES", 0, raising=False)   # Ray's 3: 4 dead workers
        local_ray.kill.write_text("synthetic:test:0/0")
        try:
            s = evaluate(model_dir, "synthetic:3", "saliency,random", "sparseness", tmp_path, backend="ray",
                         workers=1, progress=False, report=False)
        finally:
            local_ray.kill.unlink()
        assert s.computed == 6 and s.errors >= 1
        with ResultStore(s.database) as store:
            errors = store.rows("error")
            assert {(e.video, e.method) for e in errors} in ({("synthetic:test:0/0", "random")},
                                                             {("synthetic:test:0/0", m) for m in ("saliency", "random")})
            assert len(errors) == s.errors and store.count("ok") == 6 - s.errors
            assert all(e.details["error"].startswith("the Ray worker died while computing this, on its only "
                                                     "try (WorkerCrashedError: ") for e in errors)
            assert {e.video for e in store.explanations() if e.status == "error"} == {"synthetic:test:0/0"}
        resumed = evaluate(model_dir, "synthetic:3", "saliency,random", "sparseness", tmp_path, backend="inline",
                           progress=False, report=False)
        assert (resumed.computed, resumed.errors, resumed.skipped) == (s.errors, 0, 6 - s.errors)
        clean = evaluate(model_dir, "synthetic:3", "saliency,random", "sparseness", tmp_path / "clean",
                         backend="inline", progress=False, report=False)
        assert_same_results(clean, resumed)

    def test_a_method_that_ends_its_ray_worker_on_every_clip_costs_its_own_results_not_the_run(
            self, model_dir, local_ray, tmp_path, monkeypatch):
        """A method that exits its worker process on every clip (os._exit, a crash in native code)
        took the other methods' results of each clip with it (one Ray task ran all the methods of a
        clip), and stopped the run after four clips ('4 Ray tasks in a row lost their worker on every
        try': on a fake Ray, which needs no worker per death, in
        test_a_method_that_kills_its_ray_worker_on_every_clip_does_not_stop_the_run). Now the clip
        costs that method's results, which say why; the other method is computed, and a resume
        computes the errors once."""
        from videoxai.evaluation import backends
        from videoxai.methods import base as methods
        from videoxai.methods.saliency import Saliency

        monkeypatch.setattr(backends, "RAY_RETRIES", 0, raising=False)   # Ray's 3: 4 dead workers a clip
        methods.register(type("ExitsWhereTold", (Saliency,), {"name": "exits_test_method"}))  # the driver's
        local_ray.exits.touch()
        try:
            s = evaluate(model_dir, "synthetic:1", "exits_test_method,random", "sparseness", tmp_path,
                         backend="ray", workers=1, progress=False, report=False)
            local_ray.exits.unlink()
            with ResultStore(s.database) as store:
                rows = store.rows()
                assert len({(r.video, r.method, r.metric) for r in rows}) == len(rows) == 2
                assert {(r.method, r.status) for r in rows} == {("exits_test_method", "error"), ("random", "ok")}
                assert all(r.details["error"].startswith("the Ray worker died while computing this, on its only "
                                                         "try (WorkerCrashedError: ") for r in rows if r.status == "error")
                assert {(e.method, e.status) for e in store.explanations()} == {("exits_test_method", "error"),
                                                                                ("random", "ok")}
            resumed = evaluate(model_dir, "synthetic:1", "exits_test_method,random", "sparseness", tmp_path,
                               backend="ray", workers=1, progress=False, report=False)
        finally:
            methods.METHODS.unregister("exits_test_method")
            local_ray.exits.unlink(missing_ok=True)
        assert (resumed.computed, resumed.errors, resumed.skipped) == (1, 0, 1)
        with ResultStore(resumed.database) as store:
            assert store.count("ok") == 2 and len(store.rows()) == 2

    def test_a_ray_worker_that_cannot_load_the_model_is_one_line_naming_why(self, model_dir, local_ray, tmp_path):
        """The run ended on 'a Ray task failed: ray::_ray_task() (pid=…) ctx = … ^^^^ File …', the
        worker's traceback flattened into the command's error line; the local backend says
        'worker could not start: InputError: …'."""
        from videoxai.evaluation.backends import WorkerFailed

        local_ray.no_model.touch()
        try:
            with pytest.raises(WorkerFailed) as e:
                # energy: a metric set no earlier test ran, so no worker has this model loaded yet
                evaluate(model_dir, "synthetic:1", "random", "energy", tmp_path, backend="ray", workers=1,
                         progress=False, report=False)
        finally:
            local_ray.no_model.unlink()
        assert str(e.value) == f"a Ray worker could not start: InputError: unknown model {model_dir!r}: not a directory"


def fake_ray(monkeypatch, dies) -> None:
    """A stand-in for Ray (a real one would start a worker per death) whose task for clip ``key``
    yields the rows run_task would (per method: the explanation, then one per metric), except that
    where ``dies(key, method)`` says ``"explanation"`` (``"metric"``) its worker dies before that
    method's explanation (first metric)."""
    import types

    from videoxai.evaluation.store import ExplanationRow

    class WorkerCrashedError(Exception):
        pass

    def rows(task):
        for method, specs in task.work.items():
            if dies(task.key, method) == "explanation":
                raise WorkerCrashedError("The worker died unexpectedly while executing this task.")
            yield ExplanationRow(task.key, method)
            for spec in specs:
                if dies(task.key, method) == "metric":
                    raise WorkerCrashedError("The worker died unexpectedly while executing this task.")
                yield ResultRow(task.key, method, spec, 0.5)

    class Generator:   # a streaming generator: each next() an object ref, here a function ray.get calls
        def __init__(self, task):
            self.rows = rows(task)

        def __iter__(self):
            return self

        def __next__(self):
            try:
                row = next(self.rows)
            except WorkerCrashedError as e:   # the task's next ref raises on ray.get, then it ends
                self.rows = iter(())
                return lambda e=e: (_ for _ in ()).throw(e)
            return lambda row=row: row

    exceptions = types.SimpleNamespace(WorkerCrashedError=WorkerCrashedError, RayError=Exception,
                                       OutOfMemoryError=type("OutOfMemoryError", (Exception,), {}),
                                       NodeDiedError=type("NodeDiedError", (Exception,), {}))
    fake = types.SimpleNamespace(
        is_initialized=lambda: True, exceptions=exceptions, cluster_resources=lambda: {"CPU": 1},
        remote=lambda **kw: (lambda fn: types.SimpleNamespace(remote=lambda settings, task: Generator(task))),
        wait=lambda gens, num_returns, timeout: (gens[:1], gens[1:]), get=lambda r: r())
    monkeypatch.setitem(sys.modules, "ray", fake)


def test_ray_clips_whose_workers_die_cost_their_results_and_only_deaths_before_any_progress_stop_the_run(
        monkeypatch):
    """The driver's side of the Ray backend on :func:`fake_ray`: a clip whose worker died costs
    what it had not sent, the next clip is computed. Four clips in a row that killed their worker
    (one long clip after another) ended the run, and every resume at the same clips; now only
    deaths before any method was done on a clip (a model that kills every worker), as many as the
    capacity and DEATHS_BEFORE_PROGRESS allow and one more, stop the run, with the death's reason."""
    from videoxai.evaluation import backends
    from videoxai.evaluation.store import ExplanationRow
    from videoxai.evaluation.tasks import RunSettings, Task

    monkeypatch.setattr(backends, "RAY_RETRIES", 1)
    settings = RunSettings(model="m", metrics=("energy", "sparseness"))
    tasks = [Task(i, i, f"a/{i}", {"saliency": ["energy", "sparseness"]}) for i in range(6)]
    # clip a/0 is fine, then four clips kill their worker, then a/5 is fine again
    fake_ray(monkeypatch, lambda key, method: "metric" if key in {"a/1", "a/2", "a/3", "a/4"} else None)
    got = []
    backends.run("ray", iter(tasks), settings, got.append, workers=1)
    results = {(r.video, r.metric): r for r in got if isinstance(r, ResultRow)}
    assert {k for k, r in results.items() if r.status == "ok"} == {(v, m) for v in ("a/0", "a/5")
                                                                   for m in ("energy", "sparseness")}
    died = [r for r in results.values() if r.status == "error"]
    assert {r.video for r in died} == {"a/1", "a/2", "a/3", "a/4"} and len(died) == 8 == len(results) - 4
    assert all(r.details["error"] == "the Ray worker died while computing this, on each of its 2 tries "
                                     "(WorkerCrashedError: The worker died unexpectedly while executing this task.)"
               for r in died)
    # the explanation arrived before the death: it is kept, not made an error
    assert all(r.status == "ok" for r in got if isinstance(r, ExplanationRow))

    fake_ray(monkeypatch, lambda key, method: "metric")   # every clip: the model, not a clip
    got = []
    with pytest.raises(backends.WorkerFailed, match=re.escape(
            f"{1 + backends.DEATHS_BEFORE_PROGRESS + 1} Ray tasks lost their worker on every try (2 each) before "
            "any method was done on a clip; the last: WorkerCrashedError: The worker died unexpectedly while "
            "executing this task.")):
        backends.run("ray", iter(tasks), settings, got.append, workers=1)
    # the last death is stored too: a resume computes those clips after the others
    assert {r.video for r in got if isinstance(r, ResultRow)} == {"a/0", "a/1", "a/2", "a/3"}
    assert all(r.details["worker_died"] for r in got if isinstance(r, ResultRow))


def test_local_workers_that_die_cost_their_tasks_and_only_deaths_before_any_progress_stop_the_run(monkeypatch):
    """The local backend's driver on worker threads in place of processes (a real worker per
    death would load the model each time): four tasks in a row whose worker died (one long clip
    explained by four methods, each out of memory) ended the run, and every resume at the same
    clip; now each costs its own results, and only deaths before any task was done (a model that
    kills every worker) stop the run."""
    import multiprocessing
    import threading
    import types

    from videoxai.evaluation import backends
    from videoxai.evaluation.tasks import RunSettings, Task

    class Killed(BaseException):
        pass

    def worker(dies):
        def main(settings, conn):
            conn.send(("ready", None))
            while (task := conn.recv()) is not None:
                (method, specs), = task.work.items()
                if dies(task.key, method):
                    conn.close()   # as the kernel ends a process: its end of the pipe closes
                    raise Killed
                for spec in specs:
                    conn.send(("row", ResultRow(task.key, method, spec, 0.5)))
                conn.send(("done", task.id))
        return main

    class Process:
        def __init__(self, target, args, daemon, name):
            self.name, self.exitcode = name, None
            self.thread = threading.Thread(target=self.run, args=(target, args), daemon=True)

        def run(self, target, args):
            try:
                target(*args)
                self.exitcode = 0
            except Killed:
                self.exitcode = -9

        def start(self):
            self.thread.start()

        def join(self, timeout=None):
            self.thread.join(timeout)

        def is_alive(self):
            return self.thread.is_alive()

    class Theirs:   # the worker's end: the parent's close() after start leaves it to the worker
        def __init__(self, conn):
            self.conn = conn

        def close(self):
            pass

    def pipe(duplex=True):
        mine, theirs = multiprocessing.Pipe(duplex=True)
        return mine, Theirs(theirs)

    def target(main):
        return lambda settings, theirs: main(settings, theirs.conn)

    context = types.SimpleNamespace(Pipe=pipe, Process=lambda target, args, daemon, name: Process(
        target, args, daemon, name))
    monkeypatch.setattr(backends.mp, "get_context", lambda method: context)
    settings = RunSettings(model="m", metrics=("energy",))
    methods = {m: ["energy"] for m in ("saliency", "occlusion", "rise", "staa")}
    tasks = [Task(i, i, f"a/{i}", dict(methods)) for i in range(3)]   # a/1: every method kills its worker

    monkeypatch.setattr(backends, "_worker_main", target(worker(lambda key, method: key == "a/1")))
    got = []
    backends.run("local", iter(tasks), settings, got.append, workers=1)
    rows = {(r.video, r.method): r for r in got if isinstance(r, ResultRow)}
    assert len(rows) == 12 and {k for k, r in rows.items() if r.status == "error"} == {("a/1", m) for m in methods}
    assert {r.details["error"] for r in rows.values() if r.status == "error"} == {
        "worker videoxai-eval-0 was killed by SIGKILL (the kernel's out-of-memory killer sends it) while computing this"}

    monkeypatch.setattr(backends, "_worker_main", target(worker(lambda key, method: True)))
    with pytest.raises(backends.WorkerFailed, match=re.escape(
            f"{1 + backends.DEATHS_BEFORE_PROGRESS + 1} workers died in the middle of a task before any task was "
            "done, the last one was killed by SIGKILL")):
        backends.run("local", iter(tasks), settings, [].append, workers=1)
    # a resumed run (the model explained clips here before): every death costs its own task only
    got = []
    backends.run("local", iter(tasks), settings, got.append, workers=1, proven=True)
    rows = [r for r in got if isinstance(r, ResultRow)]
    assert len(rows) == len({r.key for r in rows}) == 12 and all(r.status == "error" for r in rows)


def test_a_resumed_run_whose_first_clips_kill_their_workers_records_them_and_goes_on(model_dir, tmp_path,
                                                                                    monkeypatch):
    """A first run computes clip 0, then four clips kill their Ray worker on every try (longer
    clips than the node's memory holds), then clip 5: stored as errors, and the run goes on. The
    resumed run computes those four again first, before any clip is done, and took their deaths
    for a model that kills every worker: it stopped at the same place on every resume. Now a run
    of a folder where the model already explained a clip records them as errors again and
    finishes; each key is stored once."""
    from videoxai.evaluation import backends

    monkeypatch.setattr(backends, "RAY_RETRIES", 1)
    kills = {f"synthetic:test:0/{i}" for i in (1, 2, 3, 4)}
    fake_ray(monkeypatch, lambda key, method: "metric" if key in kills else None)
    run = lambda: evaluate(model_dir, "synthetic:6", "saliency", "energy,sparseness", tmp_path,  # noqa: E731
                           backend="ray", workers=1, progress=False, report=False)
    first = run()
    assert (first.computed, first.errors) == (12, 8)
    resumed = run()
    assert (resumed.computed, resumed.errors, resumed.skipped) == (8, 8, 4)
    with ResultStore(resumed.database) as store:
        rows = store.rows()
    assert len(rows) == len({r.key for r in rows}) == 12
    assert {r.video for r in rows if r.status == "error"} == kills
    assert {r.video for r in rows if r.status == "ok"} == {"synthetic:test:0/0", "synthetic:test:0/5"}


def test_local_workers_start_only_for_tasks(monkeypatch):
    """Tasks come from the parent's loads: a run whose clips all failed to load (a folder of broken
    files, or only those left on resume) started every worker and waited for each to load the
    model and stop (10 s for 2 clips on 2 busy cores, 0.4 s now). A worker starts when a task is
    there for it."""
    import types

    from videoxai.evaluation import backends
    from videoxai.evaluation.tasks import RunSettings

    started = []

    def process(**kwargs):
        started.append(kwargs["name"])
        raise AssertionError("a worker started without a task")

    monkeypatch.setattr(backends.mp, "get_context", lambda method: types.SimpleNamespace(
        Pipe=lambda duplex=True: (None, None), Process=process))
    backends.run("local", iter(()), RunSettings(model="m", metrics=("energy",)), [].append, workers=4)
    assert started == []


def test_a_first_run_stopped_by_clips_that_kill_their_workers_gets_past_them_on_resume(model_dir, tmp_path,
                                                                                      monkeypatch):
    """The first four clips of a folder kill their worker on every try (longer than a node's
    memory holds): before any clip is done that looks like a model that kills every worker, and
    the run stops. Every resume started with the same four clips and stopped there: the folder
    could never be evaluated. Now their results are stored as errors marked as lost with their
    worker, and a resume computes the other clips first, then those again (still errors), once each."""
    from videoxai.evaluation import backends

    monkeypatch.setattr(backends, "RAY_RETRIES", 1)
    kills = {f"synthetic:test:0/{i}" for i in range(4)}   # before their explanation: none of the run's is ok
    fake_ray(monkeypatch, lambda key, method: "explanation" if key in kills else None)
    run = lambda: evaluate(model_dir, "synthetic:6", "saliency", "energy,sparseness", tmp_path,  # noqa: E731
                           backend="ray", workers=1, progress=False, report=False)
    with pytest.raises(backends.WorkerFailed, match="4 Ray tasks lost their worker on every try"):
        run()
    with ResultStore(tmp_path / "results.sqlite") as store:
        assert store.died_clips() == kills and store.count("ok") == 0
    resumed = run()
    assert (resumed.computed, resumed.errors, resumed.skipped) == (12, 8, 0)
    with ResultStore(resumed.database) as store:
        rows = store.rows()
    assert len(rows) == len({r.key for r in rows}) == 12
    assert {r.video for r in rows if r.status == "error"} == kills
    assert {r.video for r in rows if r.status == "ok"} == {"synthetic:test:0/4", "synthetic:test:0/5"}


@pytest.mark.parametrize("first", [True, False])
def test_a_method_that_kills_its_ray_worker_on_every_clip_does_not_stop_the_run(monkeypatch, first):
    """One Ray task ran all the methods of a clip: a method that ended its worker on every clip
    took the other methods' results of the clip with it (or, run after them, still counted a dead
    task), and the fourth clip in a row ended the run. Now each clip costs that method's results,
    the clip's other methods are computed (in a new task), and every clip is run, each key once."""
    from videoxai.evaluation import backends
    from videoxai.evaluation.store import ExplanationRow
    from videoxai.evaluation.tasks import RunSettings, Task

    fake_ray(monkeypatch, lambda key, method: "explanation" if method == "exits" else None)
    work = {"exits": ["energy", "sparseness"], "random": ["energy", "sparseness"]}
    work = work if first else dict(reversed(work.items()))
    tasks = [Task(i, i, f"a/{i}", dict(work)) for i in range(8)]
    got = []
    backends.run("ray", iter(tasks), RunSettings(model="m", metrics=("energy", "sparseness")), got.append, workers=1)
    results = [r for r in got if isinstance(r, ResultRow)]
    assert len(results) == len({r.key for r in results}) == 8 * 2 * 2
    assert {(r.method, r.status) for r in results} == {("exits", "error"), ("random", "ok")}
    assert all(r.details["error"].startswith("the Ray worker died while computing this, on each of its 4 tries")
               for r in results if r.status == "error")
    assert sorted((r.video, r.method, r.status) for r in got if isinstance(r, ExplanationRow)) == sorted(
        (f"a/{i}", m, "error" if m == "exits" else "ok") for i in range(8) for m in work)


# -- report ---------------------------------------------------------------------------------------------
def test_confidence_interval_by_hand():
    mean, lo, hi = confidence_interval([1.0, 2.0, 3.0, np.nan])
    half = 4.302652729911275 / math.sqrt(3)          # t(0.975, 2) · s / √n with s = 1
    assert (mean, lo, hi) == pytest.approx((2.0, 2 - half, 2 + half))
    assert math.isnan(confidence_interval([5.0])[1])


def test_intervals_are_cut_at_the_values_the_metric_can_take(tmp_path):
    # pointing game hits 1, 1, 2/3 of 3 clips: the t interval [0.41, 1.37] reaches past any rate
    mean, lo, hi = confidence_interval([1.0, 1.0, 2 / 3])
    assert hi > 1
    assert confidence_interval([1.0, 1.0, 2 / 3], bounds=(0.0, 1.0)) == pytest.approx((mean, lo, 1.0))
    from videoxai.evaluation.report import _cell_text, _legend, metric_bounds

    assert metric_bounds("pointing_game") == (0, 1) and metric_bounds("temporal_grounding") == (0, 1)
    assert metric_bounds("randomisation") == (-1, 1) and metric_bounds("no_longer_registered") is None
    db = tmp_path / "r.sqlite"
    with _run_store(db, "pointing_game", "monotonicity") as store:
        for v, (hit, tau) in enumerate([(1.0, -0.9), (1.0, -1.0), (2 / 3, 0.1)]):
            store.write(ResultRow(f"v{v}", "a", "pointing_game", hit))
            store.write(ResultRow(f"v{v}", "a", "monotonicity", tau))
    with ResultStore(db) as store:
        s = summarise(store)
    cell = s.cells[("a", "pointing_game")]
    assert cell.high == 1.0 and cell.low == pytest.approx(lo) and not cell.symmetric
    assert _cell_text(s, "a", "pointing_game") == f"0.889 [{lo:.3f}, 1.000]"
    assert s.cells[("a", "monotonicity")].low == -1.0
    assert "cut at the values the metric can take" in _legend(s)
    md = write_report(db, tmp_path / "report")["markdown"].read_text()
    assert f"0.889 [{lo:.3f}, 1.000]" in md


def test_a_cost_of_milliseconds_is_not_shown_as_nothing(tmp_path):
    # 2 decimals for seconds: a method of 4 ms was "0.00 ± 0.00", as if it cost nothing
    from videoxai.evaluation.report import _cell_text

    db = tmp_path / "r.sqlite"
    with _run_store(db, "cost") as store:
        for v, (fast, slow) in enumerate([(0.0041, 12.5), (0.0043, 13.5)]):
            store.write(ResultRow(f"v{v}", "fast", "cost", fast))
            store.write(ResultRow(f"v{v}", "slow", "cost", slow))
    with ResultStore(db) as store:
        s = summarise(store)
    half = s.cells[("fast", "cost")].half_width
    assert _cell_text(s, "fast", "cost") == f"0.0042 ± {half:.4f}" and half > 0.001
    assert _cell_text(s, "slow", "cost") == f"13.00 ± {s.cells[('slow', 'cost')].half_width:.2f}"


def test_the_legend_says_what_the_order_averages_when_no_ranked_family_ran(tmp_path):
    # only complexity and cost: the order falls back to those metrics, and the legend must not
    # claim faithfulness, localisation and randomisation
    from videoxai.evaluation.report import _legend
    from videoxai.metrics import build

    db = tmp_path / "r.sqlite"
    with _run_store(db, "sparseness", "cost") as store:
        for v, (a, b) in enumerate([(0.2, 0.5), (0.3, 0.4)]):
            store.write(ResultRow(f"v{v}", "a", "sparseness", a))
            store.write(ResultRow(f"v{v}", "b", "sparseness", b))
            store.write(ResultRow(f"v{v}", "a", "cost", 1.0))
            store.write(ResultRow(f"v{v}", "b", "cost", 2.0))
    with ResultStore(db) as store:
        only = summarise(store)
    assert only.overall == {"a": 1.5, "b": 1.5}  # each first on one metric: ranked on both
    assert "over every metric shown (no faithfulness or localisation or randomisation metric was run)" in _legend(only)
    db2 = tmp_path / "r2.sqlite"
    with _run_store(db2, "pointing_game", "cost") as store:
        store.write(ResultRow("v0", "a", "pointing_game", 1.0))
        store.write(ResultRow("v0", "a", "cost", 1.0))
    with ResultStore(db2) as store:
        assert "over the faithfulness, localisation, randomisation metrics" in _legend(summarise(store))
    # run but without a value (no masks, or failed on every clip): it was run, it has no value
    with ResultStore(db) as store:
        store.register_metrics([build("energy")])
        store.write(ResultRow("v0", "a", "energy", None, "error", details={"error": "RuntimeError: boom"}))
    with ResultStore(db) as store:
        assert "over every metric shown (no faithfulness or localisation or randomisation metric has a value)" in \
            _legend(summarise(store))


def test_the_methods_metrics_plot_fits_one_long_metric_spec_and_one_method(tmp_path):
    # 2 x 1.3 inches for the cells alone left constrained layout no room: matplotlib warned
    import warnings

    from videoxai.evaluation.report import Cell, Summary, _plot_matrix
    from videoxai.viz.page import figure_png

    metric = "randomisation(seeds=1, stages=2)"
    s = Summary(["saliency"], [metric], {metric: {"name": "randomisation", "family": "randomisation",
                                                  "higher_is_better": False}},
                {("saliency", metric): Cell(2, 0.1, 0.0, 0.2)}, {}, {"saliency": 1.0}, {}, {}, 2, None)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert figure_png(_plot_matrix(s), dpi=110, bbox_inches="tight")


def filled_store(path: Path) -> None:

    with _run_store(path, "insertion", "deletion", "cost") as store:
        table = {  # video → (random, a, b) for insertion ↑ and deletion ↓
            "insertion": [[0.1, 0.5, 0.9], [0.2, 0.8, 0.6], [0.4, 0.3, 0.5]],
            "deletion": [[0.5, 0.4, 0.1], [0.5, 0.2, 0.3], [0.5, 0.3, 0.4]],
            "cost": [[0.0, 1.0, 2.0]] * 3,
        }
        for metric, rows in table.items():
            for v, row in enumerate(rows):
                for method, x in zip(("random", "a", "b"), row):
                    store.write(ResultRow(f"v{v}", method, metric, x, curve=[0.5, x, 0.0]))


def test_summary_ranks_by_direction_and_computes_alpha(tmp_path):
    db = tmp_path / "r.sqlite"
    filled_store(db)
    with ResultStore(db) as store:
        s = summarise(store)
    # insertion ↑ means: random .233, a .533, b .667 → b, a, random; deletion ↓: b .267, a .3, random .5
    assert [s.ranks[(m, "insertion")] for m in ("b", "a", "random")] == [1, 2, 3]
    assert [s.ranks[(m, "deletion")] for m in ("b", "a", "random")] == [1, 2, 3]
    assert s.methods == ["b", "a", "random"]           # cost is shown, not ranked on
    assert s.ranks[("random", "cost")] == 1
    # the hand-computed α of tests/test_metrics_reliability.py's table (insertion is that table)
    assert s.alpha["insertion"] == pytest.approx(0.25)
    assert s.cells[("a", "insertion")].n == 3
    # a method run on one clip of three (clips=1) is ranked, but left out of α, which would
    # otherwise be taken over that single clip (and be undefined)
    with ResultStore(db) as store:
        store.write(ResultRow("v0", "c", "insertion", 0.95, curve=[0.5, 0.95, 0.0]))
        s = summarise(store)
    assert s.ranks[("c", "insertion")] == 1 and s.cells[("c", "insertion")].n == 1
    assert s.alpha["insertion"] == pytest.approx(0.25)
    # a method whose metric is undefined on every clip (no value, only rows) is left out of α too:
    # its rows emptied the clip set, and α was undefined for the methods with values
    with ResultStore(db) as store:
        for v in ("v0", "v1", "v2"):
            store.write(ResultRow(v, "d", "insertion", None, details={"undefined": "the map is blank"}))
            store.write(ResultRow(v, "d", "deletion", 0.6))
        s = summarise(store)
    assert "d" in s.methods and ("d", "insertion") not in s.ranks
    assert s.alpha["insertion"] == pytest.approx(0.25)


def test_the_legend_says_why_an_alpha_is_undefined_where_one_is(tmp_path):
    from videoxai.evaluation.report import _legend

    db = tmp_path / "r.sqlite"
    filled_store(db)
    with ResultStore(db) as store:
        s = summarise(store)
    # cost ↓: the random map costs least on every clip, so every clip weighs 0
    assert math.isnan(s.alpha["cost"]) and "An α of \"–\" is undefined: fewer than 3 methods" in _legend(s)
    s.alpha["cost"] = 0.5
    assert "An α of" not in _legend(s)


def test_report_files_are_written_and_the_page_is_self_contained(tmp_path):
    db = tmp_path / "r.sqlite"
    filled_store(db)
    paths = write_report(db, tmp_path / "report")
    md = paths["markdown"].read_text()
    assert md.index("| b |") < md.index("| a |") < md.index("| random (reference) |")
    assert "insertion ↑" in md and "deletion ↓" in md and "α (reliability)" in md
    page = paths["html"].read_text()
    assert page.count("data:image/png;base64,") == 2 and "http" not in page.replace("http-equiv", "")
    # the explanation report's page shell (videoxai.viz.page): its style sheet and footer, then ours
    from videoxai.viz.page import page as shell
    shared_css = shell("t", "").split("<style>")[1].split("</style>")[0].strip()
    assert shared_css in page and page.index("td.best") > page.index(shared_css)
    assert "<footer>Generated by videoxai" in page
    with open(paths["csv"]) as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 9 and {r["metric"] for r in rows} == {"insertion", "deletion", "cost"}


def test_report_warns_of_random_weights_and_names_metrics_without_values(tmp_path):
    """A model with random weights and data without boxes or windows: the report says both, instead
    of a table that looks meaningful with the localisation columns silently missing."""
    import videoxai as vx

    video(tmp_path / "data" / "a.mp4")
    video(tmp_path / "data" / "b.mp4")
    model = vx.load_model("demo")
    model.weights_source = "random"  # as a loader that found no trained weights marks it
    evaluate(model, f"folder:{tmp_path / 'data'}", "random", "energy,temporal_grounding,sparseness",
             tmp_path / "out", backend="inline", progress=False)
    md = (tmp_path / "out" / "report.md").read_text()
    assert "**Warning:** demo has RANDOM weights" in md
    assert ("Metrics without any value: energy (no ground truth: the data has no object boxes or masks); "
            "temporal_grounding (no ground truth: the data has no evidence frame windows).") in md
    page = (tmp_path / "out" / "report.html").read_text()
    assert '<p class="warning"><strong>Warning:</strong> demo has RANDOM weights' in page
    assert "<li><code>energy</code>: no ground truth: the data has no object boxes or masks</li>" in page
    # a model with trained weights gets no warning
    evaluate(vx.load_model("demo"), f"folder:{tmp_path / 'data'}", "random", "sparseness", tmp_path / "out2",
             backend="inline", progress=False)
    assert "Warning" not in (tmp_path / "out2" / "report.md").read_text()


def test_an_unreadable_video_is_an_error_of_its_own_not_the_end_of_the_run(model_dir, tmp_path, capsys):
    """One empty file in a folder of videos: the other clips are evaluated, the empty one's results
    are errors naming the file and the cause (in the report too), and once the file is fixed the
    same command computes exactly those."""
    data = tmp_path / "data"
    video(data / "a.mp4")
    (data / "b.mp4").write_bytes(b"")
    video(data / "c.mp4")
    first = evaluate(model_dir, f"folder:{data}", "random", "sparseness", tmp_path / "out", backend="inline",
                     progress=False)
    assert (first.computed, first.errors) == (3, 1)
    with ResultStore(first.database) as store:
        rows = {r.video: r for r in store.rows()}
    assert rows["a.mp4"].status == rows["c.mp4"].status == "ok"
    assert rows["b.mp4"].status == "error" and "b.mp4: the file is empty" in rows["b.mp4"].details["error"]
    md = (tmp_path / "out" / "report.md").read_text()
    assert "Errors (running the same command again computes these results again):" in md
    assert "b.mp4: the file is empty — b.mp4 / random" in md
    from videoxai.cli import main   # the command says it too ("(1 errors)" alone sent the user to the report)
    main(["evaluate", "--model", str(model_dir), "--data", f"folder:{data}", "--methods", "random",
          "--metrics", "sparseness", "--out", str(tmp_path / "out"), "--backend", "inline"])
    said = " ".join(capsys.readouterr().out.split())
    assert "errors (the same command computes these results again): " in said
    assert "b.mp4: the file is empty — b.mp4 / random" in said
    video(data / "b.mp4")                                   # fixed
    again = evaluate(model_dir, f"folder:{data}", "random", "sparseness", tmp_path / "out", backend="inline",
                     progress=False)
    assert (again.computed, again.errors, again.skipped) == (1, 0, 2)
    assert "Errors" not in (tmp_path / "out" / "report.md").read_text()



def test_a_label_outside_the_models_classes_is_an_error_row_of_its_clip_for_the_random_reference_too(model_dir, tmp_path):
    """Samples labelled 9 and -1 for a 4-class model: their results are errors that say so, the
    other clip is evaluated; the random reference failed with IndexError from its own source for 9
    and took -1 as the last class."""
    ds = load_dataset("synthetic:3", num_frames=8)
    samples = [ds[0], EvalSample("nine", ds[1].clip, label=9), EvalSample("minus", ds[2].clip, label=-1)]
    r = evaluate(model_dir, samples, "random", "sparseness", tmp_path / "out", backend="inline",
                 progress=False, report=False)
    assert (r.computed, r.errors) == (3, 2)
    with ResultStore(r.database) as store:
        rows = {x.video: x for x in store.rows()}
        expl = {x.video: x for x in store.explanations()}
    assert rows[ds[0].key].status == "ok"
    for key, label in (("nine", 9), ("minus", -1)):
        assert expl[key].status == "error"
        assert expl[key].error == f"InputError: target {label} out of range for a model with 4 classes"


def test_a_metric_undefined_on_every_clip_is_named_with_why_and_no_nan_is_written(tmp_path):
    """monotonicity undefined on every clip (the output never changed) was a column of dashes with no
    word why, and summary.csv wrote 'nan' where there is no value (one clip's interval, its mean)."""

    db = tmp_path / "r.sqlite"
    why = "output does not change with the kept share"
    with _run_store(db, "deletion", "monotonicity") as store:
        for v, (a, b) in enumerate([(0.2, 0.4), (0.3, None)]):
            store.write(ResultRow(f"v{v}", "a", "deletion", a))
            store.write(ResultRow(f"v{v}", "b", "deletion", b, "ok" if b is not None else "error",
                                  details={} if b is not None else {"error": "RuntimeError: boom"}))
            for m in ("a", "b"):
                store.write(ResultRow(f"v{v}", m, "monotonicity", None, details={"undefined": why}))
    with ResultStore(db) as store:
        s = summarise(store)
    assert s.metrics == ["deletion"] and s.methods == ["a", "b"]
    assert s.unavailable == {"monotonicity": f"undefined: {why}"}
    paths = write_report(db, tmp_path / "report")
    assert f"Metrics without any value: monotonicity (undefined: {why})." in paths["markdown"].read_text()
    assert f"<li><code>monotonicity</code>: undefined: {why}</li>" in paths["html"].read_text()
    with open(paths["csv"]) as f:
        rows = {r["method"]: r for r in csv.DictReader(f)}
    assert set(rows) == {"a", "b"} and all(r["metric"] == "deletion" for r in rows.values())
    assert (rows["b"]["n"], rows["b"]["mean"], rows["b"]["ci_low"], rows["b"]["ci_high"]) == ("1", "0.4", "", "")
    assert rows["a"]["alpha"] == "" and float(rows["a"]["ci_low"]) < 0.25 < float(rows["a"]["ci_high"])
    assert "nan" not in paths["csv"].read_text().lower()


def test_a_cell_without_a_value_says_why_under_the_table(tmp_path):
    """Methods and metrics that each have values elsewhere, but not together: one method's maps are
    blank for another class (undefined), another's metric failed on one clip and had no ground truth
    on the other. Each such cell was a bare '–', as if a value were lost."""

    db = tmp_path / "r.sqlite"
    with _run_store(db, "deletion", "class_sensitivity") as store:
        for v in ("v0", "v1"):
            for m, x in (("a", 0.2), ("b", 0.3), ("c", 0.4)):
                store.write(ResultRow(v, m, "deletion", x + (v == "v1") / 10))
            store.write(ResultRow(v, "a", "class_sensitivity", 0.5 if v == "v0" else 0.6))
            store.write(ResultRow(v, "b", "class_sensitivity", None, details={"undefined": "a map is blank"}))
        store.write(ResultRow("v0", "c", "class_sensitivity", None, "error", details={"error": "RuntimeError: boom"}))
        store.write(ResultRow("v1", "c", "class_sensitivity", None, "n/a", details={"reason": "one class"}))
    with ResultStore(db) as store:
        s = summarise(store)
    assert s.metrics == ["deletion", "class_sensitivity"] and set(s.methods) == {"a", "b", "c"}
    assert s.empty == {("b", "class_sensitivity"): "undefined: a map is blank",
                       ("c", "class_sensitivity"): "RuntimeError: boom; one class"}
    paths = write_report(db, tmp_path / "report")
    md = paths["markdown"].read_text()
    row = {line.split(" | ")[1]: line for line in md.splitlines() if line.startswith("| ") and " | " in line}
    assert row["b"].endswith("| – |") and row["c"].endswith("| – |") and not row["a"].endswith("| – |")
    assert ("Cells without a value (– in the table): " + "; ".join(
        f"{m} × class_sensitivity ({s.empty[(m, 'class_sensitivity')]})" for m in s.methods if m != "a") + ".") in md
    page = paths["html"].read_text()
    assert "<li><code>b</code> × <code>class_sensitivity</code>: undefined: a map is blank</li>" in page


def test_a_metric_without_values_names_five_reasons_and_counts_the_rest(tmp_path):
    # each unreadable video of a folder is a reason of its own: the line listed every one of them

    db = tmp_path / "r.sqlite"
    with _run_store(db, "deletion", "energy") as store:
        store.write(ResultRow("ok.mp4", "a", "deletion", 0.5))
        for v in range(7):
            store.write(ResultRow(f"v{v}.mp4", "a", "energy", None, "error", details={"error": f"v{v}.mp4: the file is empty"}))
    with ResultStore(db) as store:
        s = summarise(store)
    assert s.unavailable == {"energy": "; ".join(f"v{v}.mp4: the file is empty" for v in range(5)) + "; and 2 more"}
    assert len(s.errors) == 7 and s.errors["v6.mp4: the file is empty"] == ["v6.mp4 / a"]


# -- datasets -------------------------------------------------------------------------------------------
def video(path: Path, t=16, h=24, w=32):
    from videoxai.data.video import write_video

    rng = np.random.default_rng(0)
    write_video(rng.integers(0, 255, (t, h, w, 3), dtype=np.uint8), path, fps=8)
    return path


def test_folder_with_csv_maps_names_and_windows(tmp_path):
    video(tmp_path / "a.mp4")
    video(tmp_path / "sub" / "b.mp4")
    (tmp_path / "labels.csv").write_text("video,label,start,end\na.mp4,Blue Square,4,10\nsub/b.mp4,1,,\n")
    ds = load_dataset(f"folder:{tmp_path}", num_frames=8, labels=["red square", "blue square"])
    assert ds.keys() == ["a.mp4", "sub/b.mp4"]
    a, b = ds[0], ds[1]
    # 8 of 16 frames: source indices 0 2 4 6 9 11 13 15; frames 4, 6, 9 lie in [4, 10)
    assert a.clip.indices.tolist() == [0, 2, 4, 6, 9, 11, 13, 15]
    assert (a.label, a.label_name, a.window) == (1, "blue square", (2, 5))
    assert (b.label, b.window) == (1, None)
    unlabelled = load_dataset(f"folder:{tmp_path / 'sub'}", num_frames=4)
    assert unlabelled.keys() == ["b.mp4"] and unlabelled[0].label is None
    (tmp_path / "other.csv").write_text("video,label\nsub/b.mp4,red square\n")
    named = load_dataset(f"folder:{tmp_path},labels={tmp_path / 'other.csv'}", num_frames=4,
                         labels=["red square", "blue square"])
    assert named.keys() == ["sub/b.mp4"] and named[0].label == 0
    with pytest.raises(InputError, match="dataset 'folder': no option 'colour'; its options are: labels, max_side"):
        load_dataset(f"folder:{tmp_path},colour=red", num_frames=4)
    with pytest.raises(InputError, match="dataset 'synthetic': no option 'splt'; did you mean 'split'[?] its options are: split, seed"):
        load_dataset("synthetic:2,splt=val", num_frames=8)


def test_a_folder_takes_an_animated_webp_as_a_video_and_a_still_one_as_a_picture(tmp_path):
    """A ``.webp`` is a video where it is animated (read through Pillow) and a still picture
    otherwise, left out as ``.png`` files are: a folder of stickers and thumbnails is its
    animations."""
    from PIL import Image

    video(tmp_path / "cats" / "jump.webp", t=4)                         # write_video: animated
    Image.new("RGB", (32, 24), (200, 10, 10)).save(tmp_path / "cats" / "thumb.webp")  # still
    video(tmp_path / "dogs" / "run.mp4", t=4)
    ds = load_dataset(f"folder:{tmp_path}", num_frames=4)
    assert ds.keys() == ["cats/jump.webp", "dogs/run.mp4"] and ds.class_names == ["cats", "dogs"]
    assert ds[0].clip.frames.shape == (4, 24, 32, 3) and ds[0].label == 0


def test_folder_of_class_subfolders_labels_each_clip(tmp_path):
    """``DIR/<class>/clip.mp4`` (UCF101's layout) without a labels.csv: the subfolder is the class —
    mapped onto the model's classes (case-insensitively), or defining them (sorted) when there is
    no model; a subfolder the model does not know leaves every clip unlabelled, with a warning;
    a video beside the class folders is unlabelled (a warning names it: it left every clip of
    the class folders unlabelled, silently); without model classes the folders are then not classes."""
    video(tmp_path / "Blue Square" / "a.mp4", t=4)
    video(tmp_path / "red square" / "b.mp4", t=4)
    video(tmp_path / "red square" / "takes" / "c.mp4", t=4)
    model_classes = ["red square", "blue square", "red triangle"]
    ds = load_dataset(f"folder:{tmp_path}", num_frames=4, labels=model_classes)
    assert ds.keys() == ["Blue Square/a.mp4", "red square/b.mp4", "red square/takes/c.mp4"]
    assert [(s.label, s.label_name) for s in ds] == [(1, "blue square"), (0, "red square"), (0, "red square")]
    assert ds.class_names == model_classes
    own = load_dataset(f"folder:{tmp_path}", num_frames=4)             # no model: the folders are the classes
    assert own.class_names == ["Blue Square", "red square"]
    assert [s.label for s in own] == [0, 1, 1]
    with pytest.warns(UserWarning, match=r"subfolder 'Blue Square' is not among the model's classes"):
        unknown = load_dataset(f"folder:{tmp_path}", num_frames=4, labels=["red square", "green"])
    assert [s.label for s in unknown] == [None, None, None] and unknown.class_names is None
    video(tmp_path / "loose.mp4", t=4)                                 # not every clip in a class folder
    with pytest.warns(UserWarning, match=r"1 video \('loose.mp4'\) lies beside the class subfolders"):
        mixed = load_dataset(f"folder:{tmp_path}", num_frames=4, labels=model_classes)
    assert [s.label for s in mixed] == [1, None, 0, 0] and mixed.class_names == model_classes
    unknown = load_dataset(f"folder:{tmp_path}", num_frames=4)
    assert [s.label for s in unknown] == [None] * 4 and unknown.class_names is None

    single = tmp_path / "single"                                       # DIR/videos/…: one folder, no class
    video(single / "videos" / "a.mp4", t=4)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load_dataset(f"folder:{single}", num_frames=4, labels=model_classes)[0].label is None
        assert load_dataset(f"folder:{single}", num_frames=4).class_names is None
    known = tmp_path / "known"                                         # … unless the model knows it
    video(known / "Red Square" / "b.mp4", t=4)
    assert load_dataset(f"folder:{known}", num_frames=4, labels=model_classes)[0].label == 0

    numbered = tmp_path / "numbered"
    video(numbered / "1" / "a.mp4", t=4)
    video(numbered / "0" / "b.mp4", t=4)
    assert {s.key: s.label for s in load_dataset(f"folder:{numbered}", num_frames=4)} == {"0/b.mp4": 0, "1/a.mp4": 1}
    cased = tmp_path / "cased"
    video(cased / "Cat" / "a.mp4", t=4)
    video(cased / "cat" / "b.mp4", t=4)
    with pytest.raises(InputError, match="subfolders 'Cat' and 'cat' differ only by case"):
        load_dataset(f"folder:{cased}", num_frames=4)



def test_folder_skips_hidden_files_and_folders(tmp_path):
    # a UCF-style folder copied from a Mac: '._a.mp4' AppleDouble files (not videos) and a cache
    # folder beside the clips must not become clips, or permanent error rows of every evaluation
    video(tmp_path / "red square" / "a.mp4", t=4)
    video(tmp_path / "blue square" / "b.mp4", t=4)
    (tmp_path / "red square" / "._a.mp4").write_bytes(b"\x00\x05\x16\x07" + bytes(60))
    video(tmp_path / ".thumbnails" / "red square" / "x.mp4", t=4)
    ds = load_dataset(f"folder:{tmp_path}", num_frames=4)
    assert ds.keys() == ["blue square/b.mp4", "red square/a.mp4"] and ds.class_names == ["blue square", "red square"]

def test_folder_names_that_are_not_utf8_become_keys_every_store_takes(tmp_path):
    # a Latin-1 'café.mp4' is a legal Linux name; its lone surrogates killed the run in SQLite
    import os

    root = os.fsencode(tmp_path)
    video(tmp_path / "tmp1.mp4", t=4)
    video(tmp_path / "tmp2.mp4", t=4)
    os.makedirs(root + b"/caf\xe9")
    os.makedirs(root + b"/tea")
    os.replace(root + b"/tmp1.mp4", root + b"/caf\xe9/v\xe9.mp4")
    os.replace(root + b"/tmp2.mp4", root + b"/tea/v.mp4")
    ds = load_dataset(f"folder:{tmp_path}", num_frames=4)
    assert ds.keys() == ["caf\\xe9/v\\xe9.mp4", "tea/v.mp4"] and ds.class_names == ["caf\\xe9", "tea"]
    assert ds[0].clip.num_frames == 4                                  # opened by its own path
    out = tmp_path / "eval"
    summary = evaluate("demo", f"folder:{tmp_path}", "random", "sparseness", out,
                       backend="inline", progress=False)
    assert (summary.computed, summary.errors) == (2, 0)
    again = evaluate("demo", f"folder:{tmp_path}", "random", "sparseness", out,
                     backend="inline", progress=False)
    assert (again.computed, again.skipped) == (0, 2)                   # the same keys on every run


@pytest.mark.parametrize("content, message", [
    ("file,label\na.mp4,0\n", "'video' column"),
    ("video,label\na.mp4,purple\n", "not one of the model's classes"),
    ("video,label\nmissing.mp4,0\n", "no video file"),
    ("video,label\na.mp4,9\n", "out of range"),
    ("video,label,start,end\na.mp4,0,5,2\n", "empty or negative"),
    ("video,label\na.mp4,0\na.mp4,1\n", "video 'a.mp4' is listed twice$"),
    ("video,label\na.mp4,0\n./a.mp4,1\n", r"video './a.mp4' is listed twice \(also as 'a.mp4'\)"),
])
def test_folder_csv_errors(tmp_path, content, message):
    video(tmp_path / "a.mp4", t=4)
    (tmp_path / "labels.csv").write_text(content)
    with pytest.raises(InputError, match=message):
        load_dataset(f"folder:{tmp_path}", num_frames=4, labels=["x", "y"])


def test_folder_csv_saved_by_a_spreadsheet(tmp_path):
    """Excel's "CSV UTF-8" starts with a byte-order mark: the header is still 'video'; a CSV in
    another encoding is one line naming the file, not a UnicodeDecodeError."""
    video(tmp_path / "a.mp4", t=4)
    (tmp_path / "labels.csv").write_bytes("\ufeffvideo,label\r\na.mp4,y\r\n".encode("utf-8"))
    ds = load_dataset(f"folder:{tmp_path}", num_frames=4, labels=["x", "y"])
    assert ds.keys() == ["a.mp4"] and ds[0].label == 1
    (tmp_path / "labels.csv").write_bytes("video,label\na.mp4,caf\xe9\n".encode("latin-1"))
    with pytest.raises(InputError, match=r"labels.csv:2: not UTF-8 text \(byte 0xe9"):
        load_dataset(f"folder:{tmp_path}", num_frames=4, labels=["x", "y"])


def test_ucf24_boxes_follow_the_sampled_frames(tmp_path):
    video(tmp_path / "Basketball" / "v_Basketball_g01_c01.mp4", t=16, h=24, w=32)
    boxes = [[4, 2, 12, 10]] * 8                          # x1 y1 x2 y2 on source frames 2 … 9
    (tmp_path / "annotations.json").write_text(json.dumps({"Basketball/v_Basketball_g01_c01": {
        "label": 0, "numf": 16, "annotations": [{"label": 0, "sf": 2, "ef": 10, "boxes": boxes}]}}))
    s = load_dataset(f"ucf24:{tmp_path}", num_frames=8)[0]
    # sampled source frames 0 2 4 6 9 11 13 15: 2, 4, 6, 9 are annotated → clip frames 1 … 4
    assert s.window == (1, 5) and s.label_name == "Basketball" and s.label == 0
    assert s.boxes[1].tolist() == [2, 4, 10, 12] and (s.boxes[[0, 5, 6, 7]] == -1).all()
    assert s.masks[1, 2:10, 4:12].all() and s.masks[1].sum() == 64 and not s.masks[0].any()
    with pytest.raises(InputError, match="not valid JSON"):
        (tmp_path / "bad.json").write_text("{")
        load_dataset(f"ucf24:{tmp_path},annotations={tmp_path / 'bad.json'}", num_frames=8)


def test_ssv2_templates_map_to_label_indices(tmp_path):
    video(tmp_path / "101.webm", t=4)
    (tmp_path / "val.json").write_text(json.dumps([{"id": "101", "template": "Putting [something] on a surface"}]))
    (tmp_path / "labels.json").write_text(json.dumps({"Putting something on a surface": "3"}))
    ds = load_dataset(f"ssv2:{tmp_path},annotations={tmp_path / 'val.json'},labels={tmp_path / 'labels.json'}",
                      num_frames=4)
    s = ds[0]
    assert (ds.keys(), s.label, s.label_name) == (["101"], 3, "Putting something on a surface")
    with pytest.raises(InputError, match="annotations="):
        load_dataset(f"ssv2:{tmp_path}", num_frames=4)


@pytest.mark.parametrize("annotation, message", [
    ({"sf": "x", "boxes": [[1, 2, 10, 12]]}, "'sf' must be an integer frame index, got 'x'"),
    (5, "each annotation needs 'sf' and 'boxes'"),
    ({"sf": 0, "boxes": [[1, 2, 10], [1, 2, 3, 4]]}, r"boxes must be a list of \[x1, y1, x2, y2\]"),
])
def test_ucf24_bad_annotations_are_found_before_the_run(tmp_path, annotation, message):
    # found while loading the clip instead, a ValueError or TypeError would end the whole evaluation
    video(tmp_path / "a.mp4", t=4)
    (tmp_path / "annotations.json").write_text(json.dumps({"a": {"label": 0, "annotations": [annotation]}}))
    with pytest.raises(InputError, match=message):
        load_dataset(f"ucf24:{tmp_path}", num_frames=4)


@pytest.mark.parametrize("index", ["x", -1, 1.5, True])
def test_ssv2_labels_file_needs_class_indices(tmp_path, index):
    video(tmp_path / "101.webm", t=4)
    (tmp_path / "val.json").write_text(json.dumps([{"id": "101", "template": "Putting [something] down"}]))
    (tmp_path / "labels.json").write_text(json.dumps({"Putting something down": index}))
    with pytest.raises(InputError, match="class index must be an integer ≥ 0"):
        load_dataset(f"ssv2:{tmp_path},annotations={tmp_path / 'val.json'},labels={tmp_path / 'labels.json'}",
                     num_frames=4)


def test_a_clip_listed_twice_is_an_error_not_a_dropped_clip(tmp_path):
    # results are stored by clip key: the second 'a' would have been skipped as already done
    video(tmp_path / "a.webm", t=4)
    (tmp_path / "val.json").write_text(json.dumps([{"id": "a"}, {"id": "a"}]))
    with pytest.raises(InputError, match="the dataset lists clip 'a' twice"):
        load_dataset(f"ssv2:{tmp_path},annotations={tmp_path / 'val.json'}", num_frames=4)


def test_synthetic_seed_below_zero_fails_when_the_spec_is_read():
    # numpy rejects it only when the first clip is drawn, which ended the run with a ValueError
    with pytest.raises(InputError, match="dataset 'synthetic': option seed must be an integer ≥ 0, got '-1'"):
        load_dataset("synthetic:2,seed=-1", num_frames=8)


def test_synthetic_dataset_keys_and_ground_truth():
    ds = load_dataset("synthetic:3,seed=1", num_frames=8)
    s = ds[2]
    assert ds.keys() == [f"synthetic:test:1/{i}" for i in range(3)] and s.key == ds.key(2)
    assert s.masks.shape == (8, 64, 64) and s.has_ground_truth and s.window[1] > s.window[0]
    with pytest.raises(InputError, match="not the synthetic"):
        load_dataset("synthetic:3", num_frames=8, labels=["a", "b"])
    with pytest.raises(InputError, match="must look like"):
        load_dataset("synthetic", num_frames=8)


# -- CLI --------------------------------------------------------------------------------------------------
def test_cli_evaluate_and_metrics(model_dir, tmp_path):
    from typer.testing import CliRunner

    from videoxai.cli import app

    args = ["evaluate", "--model", model_dir, "--data", "synthetic:2", "--methods", "staa,random",
            "--metrics", "energy,temporal_grounding", "--out", str(tmp_path), "--backend", "inline"]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    assert "8 results computed" in r.output and (tmp_path / "report.html").is_file()
    r = CliRunner().invoke(app, args)
    assert "0 results computed (0 errors), 8 already stored" in r.output
    r = CliRunner().invoke(app, ["evaluate", "--out", str(tmp_path), "--data", "x:1", "--report-only"])
    assert r.exit_code == 0 and "staa" in r.output
    r = CliRunner().invoke(app, ["evaluate", "--out", str(tmp_path), "--report-only"])   # no --data needed
    assert r.exit_code == 0 and "staa" in r.output, r.output
    r = CliRunner().invoke(app, ["evaluate", "--out", str(tmp_path), "--limit", "-2"])
    assert r.exit_code == 2 and "'--limit'" in r.output, r.output
    r = CliRunner().invoke(app, ["evaluate", "--out", str(tmp_path)])
    assert r.exit_code == 2 and "Missing option '--data'" in r.output, r.output
    r = CliRunner().invoke(app, ["metrics"])
    assert r.exit_code == 0 and "deletion" in r.output and "synthetic" in r.output
    r = CliRunner().invoke(app, ["evaluate", "--model", model_dir, "--data", "synthetic:1", "--metrics", "nope",
                                 "--out", str(tmp_path)])
    assert isinstance(r.exception, InputError) and str(r.exception).startswith("unknown metric 'nope'; available: ")



def test_cli_an_interrupted_evaluation_says_where_its_results_are_and_how_to_resume(tmp_path, monkeypatch, capsys):
    """Ctrl-C printed only 'aborted': not that the rows computed are kept, nor how to go on."""
    import videoxai.evaluation as evaluation
    from videoxai.cli import main

    def interrupted(model, data, methods, metrics, out, **kw):
        ResultStore(Path(out) / "results.sqlite").close()   # as a run that has started writing
        raise KeyboardInterrupt

    monkeypatch.setattr(evaluation, "evaluate", interrupted)
    with pytest.raises(SystemExit) as e:
        main(["evaluate", "--data", "synthetic:1", "--out", str(tmp_path / "eval")])
    err = " ".join(capsys.readouterr().err.split())
    assert e.value.code == 130 and err.endswith("aborted")
    assert (f"interrupted: the results computed so far are stored in {tmp_path / 'eval' / 'results.sqlite'}; "
            "run the same command again to resume") in err


# -- shared perturbation logits -------------------------------------------------------------------
def test_metrics_share_identical_perturbed_clips_and_keep_their_values(model_dir):
    """Deletion and insertion (frame unit, 4 steps of 8 frames) both hold the clean and the fully
    replaced clip; faithfulness (clean, 70 % kept) is two points of monotonicity's curve: of 22
    clips, 17 are distinct."""
    import videoxai as vx
    from videoxai.metrics import build
    from videoxai.models.forward_cache import ForwardCache, sharing

    model = vx.load_model(model_dir)
    sample = load_dataset("synthetic:1", num_frames=model.num_frames, labels=model.labels)[0]
    exp = vx.explain(model, sample.clip, "saliency", target=sample.label)
    specs = ["deletion(unit=frame, n_steps=4)", "insertion(unit=frame, n_steps=4)", "faithfulness", "monotonicity"]

    def run():
        before = model.passes.forward
        values = [build(s)(model, sample.clip, exp).value for s in specs]
        return values, model.passes.forward - before

    plain, plain_passes = run()
    with sharing(model) as cache:
        shared, shared_passes = run()
        again, again_passes = run()                         # a second method with the same map: all hits
    assert plain_passes == 22 and shared_passes == 17 and again_passes == 0
    assert cache.misses == 17 and cache.hits == 5 + 22
    assert shared == pytest.approx(plain, abs=1e-6) and again == shared
    other = vx.load_model(model_dir)                        # a cache serves only its own model
    with pytest.raises(ValueError, match="^the cache belongs to another model$"):
        with sharing(other, ForwardCache(model)):
            pass


def test_the_logits_cache_keeps_the_most_recent_clips_and_their_exact_logits(model_dir):
    """Beyond ``max_entries`` the least recently used clip's slot is reused: the recent clips are
    hits with the logits of a plain pass, the dropped one is run again."""
    import torch

    import videoxai as vx
    from videoxai.models.forward_cache import ForwardCache, sharing

    model = vx.load_model(model_dir)
    clips = torch.rand(5, model.num_frames, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        plain = model(clips).float()
    cache = ForwardCache(model, max_entries=3)
    with sharing(model, cache):
        first = cache.forward(5, lambda s: clips[s], batch_size=2)      # 5 misses; keeps 2, 3, 4
        assert (cache.misses, cache.hits, len(cache)) == (5, 0, 3)
        again = cache.forward(3, lambda s: clips[2:5][s], batch_size=2)  # all hits
        assert (cache.misses, cache.hits) == (5, 3)
        cache.forward(1, lambda s: clips[0:1][s], batch_size=2)          # dropped: run again, evicts 2
        assert (cache.misses, cache.hits) == (6, 3)
        cache.forward(1, lambda s: clips[2:3][s], batch_size=2)
        assert cache.misses == 7
    torch.testing.assert_close(first, plain, atol=1e-6, rtol=0)
    torch.testing.assert_close(again, plain[2:5], atol=1e-6, rtol=0)


@pytest.mark.parametrize("method, options", [("rise", {"n_samples": 40}), ("lime", {"n_samples": 24}),
                                             ("occlusion", {}), ("shap_temporal", {})])
def test_class_sensitivity_of_a_perturbation_method_runs_none_of_its_clips_again(model_dir, method, options):
    """RISE, LIME, occlusion and temporal SHAP perturb a clip the same way whatever the class:
    the runner records the method's own clips (a standalone call: same passes, same map) and the
    class-sensitivity check's second explanation finds them all, with the same value."""
    import videoxai as vx
    from videoxai.metrics import build
    from videoxai.models.forward_cache import ForwardCache, sharing

    model = vx.load_model(model_dir)
    sample = load_dataset("synthetic:1", num_frames=model.num_frames, labels=model.labels)[0]
    metric = build("class_sensitivity")
    exp = vx.explain(model, sample.clip, method, target=sample.label, **options)
    before = model.passes.forward
    plain = metric(model, sample.clip, exp).value
    plain_passes = model.passes.forward - before
    cache = ForwardCache(model)
    with sharing(model, cache, lookup=False):
        recorded = vx.explain(model, sample.clip, method, target=sample.label, **options)
    assert recorded.cost.forward_passes == exp.cost.forward_passes
    np.testing.assert_array_equal(recorded.spatial, exp.spatial)
    before = model.passes.forward
    with sharing(model, cache):
        shared = metric(model, sample.clip, recorded).value
    assert plain_passes >= exp.cost.forward_passes - 1
    assert model.passes.forward - before <= 1       # the clean clip's logits only
    assert shared == plain


def test_off_a_terminal_a_long_run_prints_plain_progress_lines(model_dir, tmp_path, monkeypatch, capsys):
    """A run in a log file or CI has no bar to draw; it still says how far it is (every minute,
    even while one result takes minutes; here every 10 ms), and VIDEOXAI_PROGRESS=0 or
    progress=False silences it."""
    from videoxai.evaluation import runner

    monkeypatch.setattr(runner._Progress, "every", 0.01)
    monkeypatch.delenv("VIDEOXAI_PROGRESS", raising=False)
    slow = "rise(n_samples=200)"   # tens of milliseconds or more per clip: several heartbeats
    evaluate(model_dir, "synthetic:2", slow, "sparseness", tmp_path / "a", backend="inline", report=False)
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("evaluating:")]
    assert len(lines) >= 2 and lines[0].split()[1] in ("0/2", "1/2")
    done = [int(ln.split()[1].split("/")[0]) for ln in lines]
    assert done == sorted(done)
    evaluate(model_dir, "synthetic:2", slow, "sparseness", tmp_path / "b", backend="inline", report=False,
             progress=False)
    monkeypatch.setenv("VIDEOXAI_PROGRESS", "0")
    evaluate(model_dir, "synthetic:2", slow, "sparseness", tmp_path / "c", backend="inline", report=False)
    assert "evaluating:" not in capsys.readouterr().err


def test_progress_line_durations():
    from videoxai.evaluation.runner import _Progress

    bar = _Progress(1340, show=False)
    bar.done = 335
    assert bar.line(900) == "evaluating: 335/1340 results (25.0 %), 15 min elapsed, about 45 min left"
    bar.done = 100                                          # under a tenth: no estimate yet
    assert bar.line(5) == "evaluating: 100/1340 results (7.5 %), 5 s elapsed"


def test_a_csv_window_past_the_video_is_an_error_row_not_na(tmp_path):
    video(tmp_path / "a.mp4", t=16)
    video(tmp_path / "b.mp4", t=16)
    (tmp_path / "labels.csv").write_text("video,label,start,end\na.mp4,0,100,200\nb.mp4,0,4,10\n")
    ds = load_dataset(f"folder:{tmp_path}", num_frames=8)
    with pytest.raises(InputError, match=r"a.mp4: window \[100, 200\) starts after the video's last sampled frame \(15\)"):
        ds[0]
    assert ds[1].window == (2, 5)
    import videoxai as vx
    model = vx.load_model("demo")
    s = evaluate(model, ds, "random", "temporal_grounding", tmp_path / "out", backend="inline", progress=False,
                 report=False)
    assert (s.computed, s.errors) == (2, 1)   # retried on resume, once the CSV is fixed


# -- sizes: huge, zero, negative, not integers -------------------------------------------------------------
def test_planning_is_lazy_whatever_the_clip_count(monkeypatch):
    """``synthetic:1000000000`` made a task per clip before the first result: minutes of silence
    while memory grew by gigabytes. The plan's totals come from the scopes (every scope is a
    number of first clips) and the stored results, and its tasks are made as they are pulled."""
    from videoxai.data.dataset_kinds.synthetic import SyntheticDataset
    from videoxai.evaluation.runner import Selection, plan

    n = 10**12
    ds = load_dataset(f"synthetic:{n}", num_frames=8)
    assert len(ds) == n
    key, calls = SyntheticDataset.key, []

    def counted(self, i):
        calls.append(i)
        assert len(calls) <= 100, "planning walked the clips"
        return key(self, i)

    monkeypatch.setattr(SyntheticDataset, "key", counted)
    metrics = resolve_metrics("energy,sparseness(clips=3)")
    energy, sparse = metrics.specs
    methods = Selection(["random", "saliency"], clips={"saliency": 2})
    done = {(key(ds, 0), "random", energy), (key(ds, 1), "saliency", sparse),  # in the plan: skipped
            (key(ds, 5), "saliency", energy),                                 # past saliency's 2 clips
            ("synthetic:test:0/07", "random", energy), ("elsewhere/0", "random", energy)}
    p = plan(ds, n, methods, metrics, done)
    assert calls == []
    assert (p.total, p.skipped) == (n + 3 + 2 + 2 - 2, 2)
    first = [next(p.tasks) for _ in range(4)]
    assert calls == [0, 1, 2, 3] and [t.index for t in first] == [0, 1, 2, 3]
    assert [t.work for t in first] == [{"random": [sparse], "saliency": [energy, sparse]},
                                       {"random": [energy, sparse], "saliency": [energy]},
                                       {"random": [energy, sparse]}, {"random": [energy]}]


def test_a_billion_clip_evaluation_starts_at_once_and_resumes(model_dir, tmp_path, monkeypatch):
    """End to end: the progress total is known at once and the first clips are computed (and
    stored) without walking the other 999 999 997; a second run skips them."""
    from videoxai.data.dataset_kinds.synthetic import SyntheticDataset
    from videoxai.evaluation import runner

    class Stop(Exception):
        pass

    key, load, calls, totals = SyntheticDataset.key, SyntheticDataset.load, [], []

    def counted(self, i):
        calls.append(i)
        assert len(calls) <= 100, "planning walked the clips"
        return key(self, i)

    def first_three(self, i):
        if i >= 3:
            raise Stop(i)
        return load(self, i)

    class Progress(runner._Progress):
        def __init__(self, total, show):
            totals.append(total)
            super().__init__(total, show)

    monkeypatch.setattr(SyntheticDataset, "key", counted)
    monkeypatch.setattr(SyntheticDataset, "load", first_three)
    monkeypatch.setattr(runner, "_Progress", Progress)
    for _ in range(2):
        calls.clear()
        with pytest.raises(Stop):
            evaluate(model_dir, "synthetic:1000000000", "random", "sparseness", tmp_path, backend="inline",
                     progress=False, report=False)
    assert totals == [10**9, 10**9 - 3]
    assert sorted(keys(tmp_path / "results.sqlite")) == [(f"synthetic:test:0/{i}", "random", "sparseness")
                                                         for i in range(3)]


@pytest.mark.parametrize("count", ["1e9", "0", "-1", "2.5", "1_000", "٣", "9" * 30, "1000000000001"])
def test_synthetic_clip_counts_outside_1_to_10_12_are_one_line_errors(count):
    # '9' * 30 was an OverflowError from len(); '1_000' and '٣' were read by int()
    with pytest.raises(InputError, match=r"^synthetic:N: the clip count N must be an integer from 1 to "
                                         r"1000000000000 \(10\^12\), got '" + count + "'$"):
        load_dataset(f"synthetic:{count}", num_frames=8)


def test_synthetic_keys_map_back_to_their_index():
    ds = load_dataset("synthetic:20,seed=2", num_frames=8)
    assert [ds.index_of(ds.key(i)) for i in (0, 7, 19)] == [0, 7, 19]
    for other in ("synthetic:test:2/20", "synthetic:test:2/07", "synthetic:test:0/7", "synthetic:test:2/",
                  "synthetic:test:2/-1", "x"):
        assert ds.index_of(other) is None, other
    assert load_dataset([EvalSample("a", ds[0].clip), EvalSample("b", ds[1].clip)]).index_of("b") == 1


@pytest.mark.parametrize("backend, workers", [("local", 0), ("local", -1), ("local", 10**9), ("local", 2.5),
                                              ("local", True), ("local", "4"), ("ray", 10**9), ("ray", 0)])
def test_bad_worker_counts_fail_before_the_model_loads(tmp_path, backend, workers):
    """-j 1000000000 spawned a process per worker until the machine gave out (after planning);
    -j 0 failed only once the model was loaded and the run recorded. The model here does not
    exist: the worker count is checked first."""
    with pytest.raises(InputError, match=r"^workers \(--workers/-j\) must be an integer from 1 to \d+ "
                                         rf"\(4 × this machine's \d+ CPUs\), got {re.escape(repr(workers))}$"):
        evaluate(str(tmp_path / "no-model"), "synthetic:2", "random", "energy", tmp_path, backend=backend,
                 workers=workers)


def test_cli_huge_sizes_are_one_line_errors(tmp_path):
    r = subprocess.run([sys.executable, "-m", "videoxai", "evaluate", "--data", "synthetic:" + "9" * 30,
                        "--methods", "random", "--metrics", "energy", "--out", str(tmp_path)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and r.stderr.strip().splitlines() == [
        f"error: synthetic:N: the clip count N must be an integer from 1 to 1000000000000 (10^12), got '{'9' * 30}'"]


def test_a_pipe_in_a_method_spec_keeps_the_markdown_table_whole(tmp_path):

    db = tmp_path / "results.sqlite"
    with _run_store(db, "sparseness") as store:
        for v in range(2):
            for m in ("random", 'rise(baseline="a|b")'):
                store.write(ResultRow(f"v{v}", m, "sparseness", 0.3 + v * 0.1))
    text = (tmp_path / "report" / "report.md").read_text() if write_report(db, tmp_path / "report") else ""
    table = [line for line in text.splitlines() if line.startswith("|")]
    # a cell's '|' is escaped: every row splits into the header's cells
    cells = lambda line: len(re.split(r"(?<!\\)\|", line))  # noqa: E731
    assert len(table) == 5 and len({cells(line) for line in table}) == 1
    assert 'rise(baseline="a\\|b")' in text


def test_no_more_local_workers_than_clips_with_work(tmp_path, monkeypatch):
    # each worker process loads the model: -j 4 on 2 clips started 4 of them
    from videoxai.evaluation import backends

    # ... and the machine's CPUs are shared by the workers started, not by those asked for: 2 of 8
    # CPUs did the work of -j 4 on 2 clips (threads = 8 // 4), 1 of them a resume with 1 clip left
    from dataclasses import replace

    asked, threads = [], []
    real = backends.run

    def run(backend, tasks, settings, emit, **k):
        asked.append(k["workers"])
        threads.append(settings.threads)
        return real(backend, tasks, replace(settings, threads=1), emit, **{**k, "workers": 1})

    monkeypatch.setattr(backends, "run", run)
    monkeypatch.setattr(os, "cpu_count", lambda: 8)
    evaluate("demo", "synthetic:3", "random(clips=2)", "sparseness", tmp_path / "a", backend="local", workers=4,
             progress=False)
    evaluate("demo", "synthetic:3", "random", "sparseness", tmp_path / "a", backend="local", workers=4, progress=False)
    assert asked == [2, 1]                                    # the resumed run has one clip left
    assert threads == [4, 8]


def test_a_run_refused_before_it_starts_leaves_no_output_folder(tmp_path):
    """``--data synthetic:1e9 --out X`` (or an unknown model, a method spec out of range) was
    refused but left an empty ``X``, and its missing parents, behind."""
    kept = tmp_path / "kept"
    kept.mkdir()
    for bad, said in (({"data": "synthetic:1e9"}, "the clip count N must be an integer from 1 to"),
                      ({"methods": "staa(clips=0)"}, "method 'staa': option clips must be an integer ≥ 1, got '0'"),
                      ({"model": "nosuch"}, "unknown model 'nosuch'")):
        args = {"model": "demo", "data": "synthetic:2", "methods": "saliency", "metrics": "cost",
                "out": tmp_path / "a" / "b", "backend": "inline", **bad}
        with pytest.raises(InputError, match=re.escape(said)):
            evaluate(**args)
        assert sorted(os.listdir(tmp_path)) == ["kept"]
    with pytest.raises(InputError, match="the clip count N"):  # a folder that was there before stays
        evaluate("demo", "synthetic:1e9", "saliency", "cost", out=kept, backend="inline")
    assert kept.is_dir()
    summary = evaluate("demo", "synthetic:1", "saliency", "cost", out=tmp_path / "a" / "b", backend="inline",
                       report=False)
    assert summary.computed == 1 and (tmp_path / "a" / "b" / "results.sqlite").is_file()
