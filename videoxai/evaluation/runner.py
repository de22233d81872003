"""The evaluation runner: methods × metrics over a dataset, stored as computed, resumable.

>>> from videoxai.evaluation import evaluate
>>> summary = evaluate("demo", "synthetic:100", methods="all", metrics="all", out="eval")
>>> summary.report["markdown"]          # eval/report.md; eval/results.sqlite holds every value

For every video, every method explains it (the ``target`` is the clip's label when known, else
the prediction) and every metric scores the explanation; each result is written to
``OUT/results.sqlite`` the moment it arrives (:mod:`videoxai.evaluation.store`). Running the same
command again skips every ``(video, method, metric)`` already stored and computes only the rest,
so an interrupted evaluation resumes where it stopped, without duplicates. Adding a method or a
metric to a finished evaluation computes just the new column. A clip whose label or content
changed since (a corrected labels CSV, a video rewritten, an in-memory sample edited under its old
key: :mod:`videoxai.evaluation.fingerprint`) is computed again.

Methods are given by name with options (``"occlusion(window=4)"``) or ``"all"``: every
registered method that supports the model, plus the ``random`` reference map. Metrics are specs
(``"deletion(unit=frame)"``, see :mod:`videoxai.metrics`) or ``"all"``
(:data:`videoxai.metrics.SUITE`).

Any method or metric spec also takes ``clips=N``: compute it on the first ``N`` clips only. It
belongs to the plan, not to the result (the stored spec leaves it out), so raising ``N`` later
computes just the added clips. ``all`` uses it for the methods that take tens of seconds per
clip (their ``evaluation_clips``) and the suite for the metrics that re-run the method (the
randomisation check, max-sensitivity, class sensitivity). On the slow methods of ``all`` those
metrics keep within the method's own cost (:func:`rerun_clips`). The report gives ``n``
wherever a cell has fewer clips.

Where the work runs is the ``backend`` (:mod:`videoxai.evaluation.backends`); the ``local``
backend spawns worker processes, so a script that calls :func:`evaluate` must do so under
``if __name__ == "__main__":``.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import numbers
import os
import sys
import threading
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Callable, Collection, Iterable, Iterator, Sequence

import torch

from ..data.datasets import EvalDataset, EvalSample, load_dataset
from ..errors import InputError, UnsupportedModelError, VideoXAIError
from ..explain import weights_meta
from ..metrics import SUITE, Metric, build
from ..models.base import VideoModel
from ..options import Opt, parse_spec, parse_value, split_top_level
from . import backends
from ..core.folder_lock import FolderLock
from ..core.output_folder import make_directory, remove_if_empty
from .fingerprint import fingerprints, weights_fingerprint
from .store import ExplanationRow, ResultRow, ResultStore
from .tasks import RANDOM, RunSettings, Task

DATABASE = "results.sqlite"


@dataclass
class EvalSummary:
    """What one call of :func:`evaluate` did.

    Attributes:
        out: the output directory; ``database`` the SQLite file in it.
        computed: results computed (and stored) by this call, errors included.
        skipped: results that were already stored and were not computed again.
        errors: results of this call whose status is ``error``.
        methods, metrics: the canonical specs evaluated.
        clips: the specs computed on the first ``N`` clips only, with ``N``.
        dropped_methods: methods of ``"all"`` that cannot run on the model, with the reason.
        videos: clips in the dataset (after ``limit``).
        seconds: wall time of the call.
        report: paths of the report files (``markdown``, ``csv``, ``html``, plots), if written.
    """

    out: Path
    database: Path
    computed: int
    skipped: int
    errors: int
    methods: list[str]
    metrics: list[str]
    videos: int
    seconds: float
    clips: dict[str, int] = field(default_factory=dict)
    dropped_methods: dict[str, str] = field(default_factory=dict)
    report: dict[str, Path] | None = None


@dataclass
class Selection:
    """Resolved method or metric specs: canonical, without the ``clips`` option, which is kept
    in :attr:`clips` (spec → how many of the first clips it runs on).

    Attributes:
        specs: the canonical specs, in the order given.
        clips: the specs limited to the first ``N`` clips.
        dropped: (methods of ``"all"``) the methods the model cannot run, with the reason.
        metrics: (metrics) the metric objects, in the order of :attr:`specs`.
        rerun_budget: (methods of ``"all"`` limited to their first N clips) N, the re-runs
            each metric that re-runs the method may spend on it (:func:`rerun_clips`).
    """

    specs: list[str]
    clips: dict[str, int] = field(default_factory=dict)
    dropped: dict[str, str] = field(default_factory=dict)
    metrics: list[Metric] = field(default_factory=list)
    rerun_budget: dict[str, int] = field(default_factory=dict)

    def covers(self, spec: str, index: int) -> bool:
        """Whether ``spec`` runs on the clip at ``index``."""
        return index < self.clips.get(spec, index + 1)

    def add(self, spec: str, clips: int | None) -> bool:
        """Add ``spec`` (given twice, the wider scope wins); whether it was new."""
        new = spec not in self.specs
        if new:
            self.specs.append(spec)
            if clips is not None:
                self.clips[spec] = clips
        elif spec in self.clips:
            if clips is None:
                del self.clips[spec]
            else:
                self.clips[spec] = max(clips, self.clips[spec])
        return new


def evaluate(model: str | VideoModel, data: str | EvalDataset | Sequence[EvalSample],
             methods: str | Sequence[str] = "all", metrics: str | Sequence[str] = "all",
             out: str | Path = "videoxai_eval", *, backend: str = "local", workers: int | None = None,
             address: str | None = None, device: str = "cpu", target: str = "label",
             refine: bool | None = None, seed: int = 0, limit: int | None = None,
             progress: bool | None = None, report: bool = True) -> EvalSummary:
    """Evaluate ``methods`` with ``metrics`` on ``data`` for ``model``; see the module docs.

    Args:
        model: a model spec (``"demo"``, ``"hf:…"``, a directory; needed by the ``local`` and
            ``ray`` backends, whose workers load their own copy) or a loaded model (``inline``).
        data: a dataset spec (:mod:`videoxai.data.datasets`), a dataset, or a list of samples.
        methods: method specs, a comma-separated string, or ``"all"``.
        metrics: metric specs (or :class:`~videoxai.metrics.Metric` objects), a comma-separated string,
            or ``"all"``.
        out: output directory (created); results go to ``out/results.sqlite``.
        backend: ``"local"`` (worker processes), ``"ray"`` or ``"inline"`` (this process).
        workers: worker processes (local) or CPUs of a local Ray instance, from 1 to 4 × the
            machine's CPUs; default: the CPUs (at most 8). Refused with ``address``.
        address: a Ray cluster's address (``"auto"``, ``"ray://host:10001"``; ``backend="ray"``
            only); default: the ``RAY_ADDRESS`` environment variable, else start a local instance.
        device: where the model runs.
        target: ``"label"`` explains the annotated class (the prediction when a clip has none),
            ``"predicted"`` the model's prediction.
        refine: the explanations' refinement (``None``: each method's default).
        seed: seeds the ``random`` reference map.
        limit: use only the first ``limit`` clips.
        progress: draw a progress bar (default: when on a terminal).
        report: write the report (Markdown, CSV, plots, HTML) when done.
    """
    backends.refuse_in_a_starting_worker()  # a script without a main guard, imported by a worker
    t0 = time.perf_counter()
    metric_sel = resolve_metrics(metrics)  # before loading anything: a typo fails at once
    if target not in ("label", "predicted"):
        raise InputError(f"target must be 'label' or 'predicted', got {target!r}")
    if backend not in backends.BACKENDS:
        raise InputError(f"backend must be one of {', '.join(backends.BACKENDS)}, got {backend!r}")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        # checked before the model loads; a limit below 1 read as "the dataset is empty"
        raise InputError(f"limit must be an integer ≥ 1 (the first clips to use), got {limit!r}")
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or not 0 <= seed <= 2 ** 64 - 1:
        # numpy's generators take no negative seed: --seed -1 made every result of the random
        # reference an error ('ValueError: expected non-negative integer'), found after the run
        raise InputError(f"seed (--seed) must be an integer from 0 to 2^64 - 1 (it seeds the random reference "
                         f"map), got {seed!r}")
    if refine is not None and not isinstance(refine, bool):
        # explain() refused it on every clip: each explanation an error row, found after the run
        raise InputError(f"refine must be None (each method's default), True or False, got {refine!r}; settings "
                         "for one method go in its spec, e.g. 'rise(refine=false)'")
    if address is not None and backend != "ray":
        # was ignored: the run went on in local processes while the user watched the cluster idle
        raise InputError(f"address (--address) is a Ray cluster's: it needs backend='ray' (--backend ray), "
                         f"got backend {backend!r}")
    given_as = ""
    if backend == "ray" and address is None and os.environ.get("RAY_ADDRESS"):
        # Ray's own way to name the cluster: ray.init(num_cpus=…) on it failed with 'When connecting
        # to an existing cluster, num_cpus and num_gpus must not be provided'
        address, given_as = os.environ["RAY_ADDRESS"], "RAY_ADDRESS"
    if workers not in (None, 0) and backend == "inline":   # was ignored: one process, one clip at a time
        raise InputError(f"workers (--workers/-j) is for the local and ray backends; inline runs in this process, "
                         f"got {workers!r}")
    if workers is not None and backend == "ray" and address:
        raise InputError("workers (--workers/-j) sets the CPUs of the local Ray instance a run starts; on a "
                         f"cluster ({given_as or 'address/--address'}) its own CPUs decide: drop workers")
    if backend == "ray":
        backends.check_address(address, given_as)   # ray.init kept trying a dead address for minutes
    if workers is not None and (backend == "local" or backend == "ray" and not address):
        workers = backends.check_workers(workers)   # before the model loads: -j 0, -j 1000000000
    if isinstance(out, str) and not out.strip():
        # Path("") is the working directory: an unset variable ('--out "$OUT"') wrote the results there
        raise InputError("out (--out) is empty: name the output directory ('.' for this one)")
    out = Path(out)
    if out.exists() and not out.is_dir():   # before the model loads; mkdir said only 'File exists'
        raise InputError(f"the output directory {out} is a file")
    try:
        created = make_directory(out)
    except OSError as e:
        raise InputError(f"cannot create the output directory {out}: {e.strerror or e}") from None
    try:
        vm, model_id, dataset, n_videos, method_sel = _load_the_run(model, data, methods, backend, device, limit)
    except BaseException:
        # a bad model, data or method spec left an empty folder behind under the name the
        # user chose (`--data synthetic:1e9 --out X`): the run never started
        remove_if_empty(created)
        raise
    method_specs, metric_specs = method_sel.specs, metric_sel.specs

    n_workers = backends.default_workers() if workers is None else int(workers)
    identity = {"model": model_id, "data": getattr(dataset, "spec", "samples"), "target": target,
                "refine": refine, "seed": int(seed), "model_weights": weights_fingerprint(vm)}

    with _folder_held(out):  # a second run on this folder fails at once, naming this one
        with ResultStore(out / DATABASE) as store:
            store.bind(identity)
            store.register_metrics(metric_sel.metrics)
            if isinstance(dataset, EvalDataset):
                store.forget_errors(lambda key: dataset.index_of(key) is not None)
            done = _forget_changed(store, dataset, n_videos, store.done())
            _mark_gone(store, dataset)
            if target == "label":
                done = _forget_relabelled(store.labels(), dataset, n_videos, done)
            work = plan(dataset, n_videos, method_sel, metric_sel, done, last=store.died_clips())
            clips = {**method_sel.clips, **metric_sel.clips}
            store.start_run({**identity, "methods": method_specs, "metrics": metric_specs, "clips": clips,
                             "backend": backend, "workers": n_workers, "address": address,
                             **weights_meta(vm)})
            counts = {"computed": 0, "errors": 0}
            bar = _Progress(work.total, progress)

            # a task that Ray re-runs after losing its node yields its rows again: store each once.
            # Only Ray repeats rows; elsewhere the set would only grow with every row of a long run
            seen: set[tuple] | None = set() if backend == "ray" else None

            def emit(row: ResultRow | ExplanationRow) -> None:
                if seen is not None:
                    key = (row.video, row.method) if isinstance(row, ExplanationRow) else row.key
                    if key in seen:
                        return
                    seen.add(key)
                if isinstance(row, ExplanationRow):
                    store.write_explanation(row)
                    return
                store.write(row)
                counts["computed"] += 1
                counts["errors"] += row.status == "error"
                bar.advance()

            # a worker loads the model: none for clips that do not exist (-j 8 on 2 clips)
            started = min(n_workers, work.most_tasks) if backend == "local" else n_workers
            if backend == "inline":
                threads = torch.get_num_threads()
            else:
                # the CPUs shared by the workers that start, not by those asked for: the default -j
                # (the CPUs) on 2 clips, or a resume with one clip left, ran 1 thread a worker on an
                # otherwise idle machine
                threads = max(1, (os.cpu_count() or 1) // max(1, started)) if backend == "local" else 1
            settings = RunSettings(model=model_id, metrics=tuple(metric_specs), device=device, target=target,
                                   refine=refine, seed=int(seed), threads=threads)
            try:
                if work.total:
                    # resumed: the clips whose workers died before come first, and are no sign of a
                    # model that kills every worker (it explained clips here before)
                    backends.run(backend, _with_samples(dataset, work.tasks, emit), settings, emit,
                                 workers=started, model=vm if backend == "inline" else None, address=address,
                                 proven=store.explained_any())
            finally:
                bar.close()
                store.finish_run(counts["computed"])
            summary = EvalSummary(out=out, database=store.path, computed=counts["computed"], skipped=work.skipped,
                                  errors=counts["errors"], methods=method_specs, metrics=metric_specs,
                                  videos=n_videos, seconds=0.0, clips=clips, dropped_methods=method_sel.dropped)
        if report:
            from .report import write_report
            summary.report = write_report(out / DATABASE, out)
    summary.seconds = time.perf_counter() - t0
    return summary


def _load_the_run(model: str | VideoModel, data, methods, backend: str, device: str,
                  limit: int | None) -> tuple[VideoModel, str, object, int, Selection]:
    """The model (and its id), the dataset, how many of its clips to use, and the methods: what
    :func:`evaluate` checks before it holds the output folder."""
    if isinstance(model, VideoModel):
        if backend != "inline":
            raise InputError(f"the {backend} backend loads the model in its workers: pass a model "
                             "spec (e.g. 'demo' or a directory), or use backend='inline'")
        vm, model_id = model, model.name
    elif isinstance(model, str):
        from ..models import load_model
        vm, model_id = load_model(model, device=device), model
    else:
        raise InputError(f"model must be a spec string or a loaded model, got {type(model).__name__}")

    dataset = load_dataset(data, num_frames=vm.num_frames, labels=vm.labels)
    n_videos = len(dataset) if limit is None else min(int(limit), len(dataset))
    if n_videos < 1:
        raise InputError("the dataset is empty")
    method_sel = resolve_methods(methods, vm)
    return vm, model_id, dataset, n_videos, method_sel


@contextlib.contextmanager
def _folder_held(out: Path) -> Iterator[None]:
    """Hold ``out`` for this run (:class:`FolderLock`); where its file system has no locks
    (Lustre mounted without ``-o flock`` answers ENOSYS), run unguarded with a warning rather
    than not at all."""
    with contextlib.ExitStack() as held:
        try:
            held.enter_context(FolderLock(out))
        except OSError as e:
            if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
                # a folder this process cannot write: was a warning that locks are missing, then
                # '… is not a videoxai results database: unable to open database file'
                raise InputError(f"cannot write in the output directory {out} ({e.strerror}): choose "
                                 "another output directory") from None
            warnings.warn(f"cannot lock {out} ({e.strerror or e}): a second evaluation on it at the same "
                          "time would not be refused", stacklevel=4)
        yield


def resolve_methods(methods: str | Sequence[str], model: VideoModel) -> Selection:
    """The method specs, with the methods of ``"all"`` the model cannot run dropped (and why).

    Every named method is constructed once with its options, so an unknown name, a bad option or
    a method the model cannot support fails here, before any work starts.
    """
    from ..methods import available, get

    items = split_top_level(methods) if isinstance(methods, str) else list(methods)
    if not items:
        raise InputError("no methods given")
    for item in items:
        if not isinstance(item, str):   # was 'empty spec 3'
            raise InputError(f"methods must be specs, text such as 'occlusion(window=4)', got {item!r} "
                             f"({type(item).__name__})")
    sel = Selection([])
    for item in items:
        if item == "all":
            for name in available() + [RANDOM]:
                if name in sel.specs:
                    continue
                limit = None
                if name != RANDOM:
                    cls = get(name)
                    try:
                        if not cls.supports(model):
                            raise UnsupportedModelError(cls.unsupported(model))
                        cls(model)  # a need the declaration cannot see (e.g. no linear head)
                    except (UnsupportedModelError, InputError) as e:
                        sel.dropped[name] = str(e)
                        continue
                    limit = cls.evaluation_clips
                if sel.add(name, limit) and limit is not None:
                    sel.rerun_budget[name] = limit
            continue
        name, options = parse_spec(item)
        limit = _pop_clips(options, f"method {name!r}")
        if name != RANDOM:
            cls = get(name)
            cls(model, **options)  # raises UnknownMethodError / InputError / UnsupportedModelError
            spec = cls.spec_for(options)
            sel.add(spec, limit)
            sel.rerun_budget.pop(spec, None)   # named by the user: the metrics' own scope applies
        elif options:
            raise InputError("the random reference takes no options (its seed is the run's seed)")
        else:
            sel.add(name, limit)
    return sel


def resolve_metrics(metrics: str | Sequence[str]) -> Selection:
    """The metric specs and objects (``"all"``: :data:`videoxai.metrics.SUITE`), duplicates removed."""

    items = split_top_level(metrics) if isinstance(metrics, str) else list(metrics)
    if not items:
        raise InputError("no metrics given")
    # a metric object (vx.metrics.Deletion(unit="frame")) is its spec, as metrics.build takes it; it
    # was 'empty spec Deletion(unit='frame', …)'
    items = [m.spec if isinstance(m, Metric) else m for m in items]
    for item in items:
        if not isinstance(item, str):
            raise InputError(f"metrics must be specs, text such as 'deletion(unit=frame)', or Metric objects, got "
                             f"{item!r} ({type(item).__name__})")
    sel = Selection([])
    for item in items:
        for spec in (SUITE if item == "all" else [item]):
            name, options = parse_spec(spec)
            limit = _pop_clips(options, f"metric {name!r}")
            m = build(name, **options)
            if sel.add(m.spec, limit):
                sel.metrics.append(m)
    return sel


def _pop_clips(options: dict, owner: str) -> int | None:
    """The ``clips=N`` of a spec (removed from ``options``): compute on the first N clips only."""
    if "clips" not in options:
        return None
    return parse_value(options.pop("clips"), Annotated[int, Opt(ge=1)], owner, "clips")


@dataclass
class Plan:
    """What an evaluation will compute, known before the first clip is looked at.

    Attributes:
        total: results still to compute.
        skipped: results of the plan already stored (not computed again).
        tasks: the tasks, made one at a time as the backend pulls them (a plan over
            ``synthetic:1000000000`` holds no list of a billion clips).
        most_tasks: at most how many tasks there are (each has a clip below the largest scope and
            at least one result to compute): no more workers than this are started.
    """

    total: int
    skipped: int
    tasks: Iterator[Task]
    most_tasks: int = 0


def plan(dataset: EvalDataset, n_videos: int, methods: Selection, metrics: Selection,
         done: set[tuple[str, str, str]], last: Collection[str] = ()) -> Plan:
    """The tasks still to do (by the clips' keys, without loading them), how many results they
    compute and how many are already stored. The clips of ``last`` (whose workers died before:
    :meth:`~videoxai.evaluation.store.ResultStore.died_clips`) come after the others, so that a
    run whose first clips kill every worker they meet gets past them on resume.

    Every scope (``clips=N``, the re-run budget, ``limit``) is a number of first clips, so the
    (method, metric) pair ``(m, s)`` runs on the clips ``[0, scope[m, s])``: the totals are
    sums over the pairs and over the stored results, not over the clips, and the tasks are
    generated lazily. Planning costs the same for 10 clips and for 10^12.
    """
    scope = scopes(n_videos, methods, metrics)
    skipped = 0
    if done:
        index_of = _key_index(dataset, n_videos)
        for key, m, s in done:
            if scope.get((m, s), 0) > 0:
                i = index_of(key)
                skipped += i is not None and i < scope[(m, s)]
    total = sum(scope.values()) - skipped
    return Plan(total, skipped, _tasks(dataset, methods, metrics, done, scope, last),
                most_tasks=min(total, max(scope.values(), default=0)))


def scopes(n_videos: int, methods: Selection, metrics: Selection) -> dict[tuple[str, str], int]:
    """On how many first clips each (method, metric) pair runs: the data's ``n_videos``, the
    ``clips=N`` of either spec and, for the slow methods of ``"all"``, the re-run budget
    (:func:`rerun_clips`), whichever is smallest."""
    rerun_scope = {(m, s): rerun_clips(budget, metric) for m, budget in methods.rerun_budget.items()
                   for s, metric in zip(metrics.specs, metrics.metrics)}
    return {(m, s): min(n_videos, methods.clips.get(m, n_videos), metrics.clips.get(s, n_videos),
                        rerun_scope.get((m, s), n_videos))
            for m in methods.specs for s in metrics.specs}


def _tasks(dataset, methods: Selection, metrics: Selection, done: set[tuple[str, str, str]],
           scope: dict[tuple[str, str], int], last: Collection[str] = ()) -> Iterator[Task]:
    """The tasks in clip order, those of the clips in ``last`` after all the others."""
    end = max(scope.values(), default=0)      # no clip at or past it has any work
    ids = itertools.count()
    deferred: list[tuple[int, str]] = []

    def task(i: int, key: str) -> Task | None:
        work = {}
        for m in methods.specs:
            missing = [s for s in metrics.specs if i < scope[(m, s)] and (key, m, s) not in done]
            if missing:
                work[m] = missing
        return Task(id=next(ids), index=i, key=key, work=work) if work else None

    for i in range(end):
        key = dataset.key(i)
        if key in last:
            deferred.append((i, key))
        elif (t := task(i, key)) is not None:
            yield t
    for i, key in deferred:
        if (t := task(i, key)) is not None:
            yield t


def _forget_changed(store: ResultStore, dataset, n_videos: int,
                    done: set[tuple[str, str, str]]) -> set[tuple[str, str, str]]:
    """``done`` without the results of clips whose content changed since they were computed (an
    in-memory clip edited under its old key, a video re-encoded under its old name: the old
    results were reused). Their rows are deleted before the new fingerprints are recorded, so a
    run killed in between cannot pair the old rows with the new content. A warning says how
    many clips."""
    if not isinstance(dataset, EvalDataset):
        return done
    now = fingerprints(dataset, n_videos)
    stored = store.fingerprints()
    changed = sorted(key for key, fp in now.items() if stored.get(key, fp) != fp)
    if changed:
        store.forget_clips(changed)
        warnings.warn(f"{len(changed)} clip{'s' if len(changed) > 1 else ''} (e.g. {changed[0]!r}) "
                      f"{'have' if len(changed) > 1 else 'has'} other content or annotations than when "
                      f"{'their' if len(changed) > 1 else 'its'} stored results were computed: computed again", stacklevel=3)
    store.record_fingerprints({k: fp for k, fp in now.items() if stored.get(k) != fp})
    gone = set(changed)
    return {k for k in done if k[0] not in gone}


def _mark_gone(store: ResultStore, dataset) -> None:
    """Record the clips whose content was tracked and that the data no longer has (a video deleted
    from a ``folder:``): their results stayed in every resumed report as if they were the data's.
    Their rows are kept (the clip may come back); the report leaves them out, and a warning says
    how many."""
    if not isinstance(dataset, EvalDataset):
        return
    results, clips = store.mark_gone(lambda key: dataset.index_of(key) is not None)
    if results:
        warnings.warn(f"{results} stored result{'s' if results > 1 else ''} of {len(clips)} clip"
                      f"{'s' if len(clips) > 1 else ''} no longer in the data (e.g. {clips[0]!r}) "
                      f"{'are' if results > 1 else 'is'} left out of the report; kept in {store.path.name}",
                      stacklevel=3)


def _forget_relabelled(stored: dict[tuple[str, str], int | None], dataset, n_videos: int,
                       done: set[tuple[str, str, str]]) -> set[tuple[str, str, str]]:
    """``done`` without the results of explanations computed for another label than the clip's
    now: a corrected labels CSV, run again, kept every result explained for the old class (the
    identity names the data by its spec, not its labels). A warning says how many clips."""
    if not stored or not isinstance(dataset, EvalDataset):
        return done
    index_of, changed = _key_index(dataset, n_videos), set()
    for (key, method), label in stored.items():
        i = index_of(key)
        if i is not None and i < n_videos:
            now = dataset.label_of(i)
            if now is not NotImplemented and now != label:
                changed.add((key, method))
    if not changed:
        return done
    clips = sorted({key for key, _ in changed})
    warnings.warn(f"{len(clips)} clip{'s' if len(clips) > 1 else ''} (e.g. {clips[0]!r}) now "
                  f"{'have' if len(clips) > 1 else 'has'} another label than their stored results "
                  "were computed for: computed again", stacklevel=3)
    return {k for k in done if k[:2] not in changed}


def _key_index(dataset, n_videos: int) -> Callable[[str], int | None]:
    """``key → index`` of the dataset's clips (``None`` for a key it does not have)."""
    if isinstance(dataset, EvalDataset):
        return dataset.index_of
    index = {dataset.key(i): i for i in range(n_videos)}   # a bare sequence of keys (tests)
    return index.get


def rerun_clips(budget: int, metric: Metric) -> int:
    """On how many of its first clips ``metric`` scores a slow method of ``--methods all`` that
    explains ``budget`` clips (its ``evaluation_clips``): as many as keep the metric's re-runs
    of the method within the method's own ``budget`` explanations, and at least one. The
    metrics that only read the map score every clip the method explains.

    Without it the metrics that re-run the method would cost a slow method ten times its own
    explanations: the randomisation check (4 stages × 3 seeds) on 5 clips, max-sensitivity
    (5 noisy copies) on 5 and class sensitivity on 10 are 95 re-runs of an extremal method
    that explains 10 clips (on the demo model about 75 CPU-minutes for each of the three).
    With the budget they are 12 + 10 + 10 = 32 re-runs: the randomisation check on the first
    clip, max-sensitivity on the first 2, class sensitivity on all 10.
    """
    per_clip = metric.reruns_per_clip
    if per_clip == 0:
        return budget
    return max(1, budget // per_clip) if per_clip is not None else 1


def _with_samples(dataset: EvalDataset, tasks: Iterable[Task], emit: Callable[[ResultRow | ExplanationRow], None]
                  ) -> Iterator[Task]:
    """Load each task's sample just before it is handed out (backends pull lazily).

    A video that cannot be read (empty, truncated, not a video) does not end the run: each of its
    results is stored as an error naming the file and the cause, which the report counts and a
    resumed run tries again (once the file is fixed).
    """
    for task in tasks:
        try:
            sample = dataset[task.index]
        except (VideoXAIError, OSError) as e:
            for method, specs in task.work.items():
                emit(ExplanationRow(task.key, method, status="error", error=str(e)))
                for spec in specs:
                    emit(ResultRow(task.key, method, spec, None, "error", details={"error": str(e)}))
            continue
        if sample.key != task.key:
            raise InputError(f"dataset key changed while running: {task.key!r} became {sample.key!r}")
        task.sample = sample
        yield task


class _Progress:
    """Progress over the results to compute: a Rich bar on a terminal; off a terminal (a log file,
    CI, ``nohup``) one plain line on stderr every :attr:`every` seconds, from a background thread
    (one result can take minutes: the extremal methods' randomisation check), so a run of hours is
    never silent. ``show=False`` or ``VIDEOXAI_PROGRESS=0`` silences both."""

    every = 60.0

    def __init__(self, total: int, show: bool | None) -> None:
        from ..progress import enabled

        self._bar = None
        self.total, self.done = total, 0
        self._t0 = time.perf_counter()
        silenced = os.environ.get("VIDEOXAI_PROGRESS", "").strip().lower() in ("0", "false", "no", "off")
        self._lines = bool(total) and show is None and not silenced and not enabled()
        self._stop = threading.Event()
        self._beat = None
        if self._lines:
            self._beat = threading.Thread(target=self._heartbeat, name="videoxai-progress", daemon=True)
            self._beat.start()
        if total and (enabled() if show is None else show):
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self._bar = Progress(TextColumn("evaluating"), BarColumn(), MofNCompleteColumn(),
                                 TimeRemainingColumn(), console=Console(stderr=True))
            self._bar.start()
            self._task = self._bar.add_task("results", total=total)

    def advance(self) -> None:
        self.done += 1
        if self._bar is not None:
            self._bar.advance(self._task)

    def _heartbeat(self) -> None:
        while not self._stop.wait(self.every):
            print(self.line(time.perf_counter() - self._t0), file=sys.stderr, flush=True)

    def line(self, elapsed: float) -> str:
        """``evaluating: 335/1340 results (25.0 %), 15 min elapsed, about 45 min left`` (no estimate
        before a tenth of the results)."""
        head = (f"evaluating: {self.done}/{self.total} results ({100 * self.done / self.total:.1f} %), "
                f"{_duration(elapsed)} elapsed")
        # the first clips carry the re-running metrics and the clip-limited slow methods, so an
        # estimate from the first few percent of results overshoots many times over
        if self.done < 0.1 * self.total:
            return head
        return f"{head}, about {_duration(elapsed * (self.total - self.done) / self.done)} left"

    def close(self) -> None:
        self._stop.set()
        if self._beat is not None:  # no line after the run has returned
            self._beat.join(timeout=5)
        if self._bar is not None:
            self._bar.stop()


def _duration(seconds: float) -> str:
    """``45 s``, ``15 min``, ``2 h 55 min``."""
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"
