"""The unit of work of an evaluation, and the code every backend runs on a worker.

A :class:`Task` is one video with the methods still to run on it and, per method, the metrics
still missing. :func:`run_task` explains the clip with each method and scores the explanation
with each metric, yielding a row as soon as it is computed, so the parent can store it at once.

A failure of one method on one clip (or of one metric on one explanation) becomes an ``error``
row with the message, not the end of a long evaluation; a resumed run computes it again. A method
that raises :class:`~videoxai.errors.UnsupportedModelError` while running (it can only tell from
the model's behaviour) gives ``n/a`` rows instead, which are not retried.

Besides the registered methods, evaluations know one reference explanation, ``random``: a
uniform random map (seeded by the clip's key) inside the region the model sees. It is the
control that the reliability measure α weights videos by (``videoxai.metrics.reliability``) and
that every method should beat.
"""

from __future__ import annotations

import logging
import math
import time
import traceback
import zlib
from dataclasses import dataclass, field

import numpy as np
import torch

from ..core.align import crop_mask
from ..cost import CostMeter
from ..data.datasets import EvalSample
from ..errors import UnsupportedModelError, VideoXAIError
from ..explain import explain
from ..explanation import Explanation
from ..metrics import MissingGroundTruth, build
from ..metrics.sanity import as_clip
from ..models.base import VideoModel
from ..models.forward_cache import ForwardCache, sharing
from ..options import parse_spec
from .store import ExplanationRow, ResultRow

#: the reference explanation evaluations know besides the registered methods
RANDOM = "random"


@dataclass
class Task:
    """One video and, per method spec, the metric specs still to compute."""

    id: int
    index: int
    key: str
    work: dict[str, list[str]]
    sample: EvalSample | None = None

    @property
    def size(self) -> int:
        return sum(len(v) for v in self.work.values())

    def split(self) -> list["Task"]:
        """One task per method (finer load balancing on a process pool)."""
        return [Task(self.id * 1000 + i, self.index, self.key, {m: ms}, self.sample)
                for i, (m, ms) in enumerate(self.work.items())]


@dataclass(frozen=True)
class RunSettings:
    """What a worker needs to know, picklable (the model by spec, so workers load their own)."""

    model: str
    metrics: tuple[str, ...]
    device: str = "cpu"
    target: str = "label"
    refine: bool | None = None
    seed: int = 0
    threads: int = 1


@dataclass
class WorkerContext:
    """A worker's loaded state: the model, the metric objects, and the logits of the perturbed
    clips the metrics have run (shared between metrics and the methods of a clip, see
    :mod:`videoxai.models.forward_cache`)."""

    settings: RunSettings
    model: VideoModel
    metrics: dict = field(default_factory=dict)
    forwards: ForwardCache | None = None

    @classmethod
    def create(cls, settings: RunSettings, model: VideoModel | None = None) -> "WorkerContext":
        from ..models import load_model

        torch.set_num_threads(max(1, int(settings.threads)))
        if model is None:
            # the driver loaded the same spec first and already warned (e.g. "RANDOM weights"):
            # one line per worker would only repeat it
            models_log = logging.getLogger("videoxai.models")
            level = models_log.level
            models_log.setLevel(logging.ERROR)
            try:
                model = load_model(settings.model, device=settings.device)
            finally:
                models_log.setLevel(level)
        return cls(settings, model, {spec: build(spec) for spec in settings.metrics}, ForwardCache(model))


def random_explanation(model: VideoModel, sample: EvalSample, target: int | None, seed: int) -> Explanation:
    """The ``random`` reference: i.i.d. uniform values on the pixels the model sees."""
    clip = sample.clip
    t, h, w = clip.num_frames, clip.height, clip.width
    # checked as explain() checks it: a label past the model's classes was an IndexError from
    # labels[target], and a negative one silently named a class counted from the end
    target = None if target is None else model.class_index(target)
    with CostMeter(model) as meter:
        with torch.no_grad():
            probs = model.predict(clip.to_tensor(model.device))[0].cpu().numpy()
        rng = np.random.default_rng([seed, zlib.crc32(sample.key.encode())])
        spatial = rng.random((t, h, w), dtype=np.float32) * crop_mask(model.preprocess, (h, w)).numpy()
    tgt = int(np.argmax(probs)) if target is None else target
    mass = spatial.reshape(t, -1).sum(1)
    return Explanation(spatial=spatial, temporal=mass / mass.sum(), target=tgt, label=model.labels[tgt],
                       score=float(probs[tgt]), probs=probs, method=RANDOM, options={"seed": seed},
                       cost=meter.cost, frame_indices=clip.indices.copy())


def run_task(ctx: WorkerContext, task: Task):
    """Explain ``task.sample`` with each method and yield an :class:`ExplanationRow` then one
    :class:`ResultRow` per metric, each as soon as it is computed."""
    s, model, sample = ctx.settings, ctx.model, task.sample
    target = sample.label if s.target == "label" else None
    for method_spec, metric_specs in task.work.items():
        name, options = parse_spec(method_spec)

        def make(m: VideoModel, tgt=target, clip=None, name=name, options=options) -> Explanation:
            if name == RANDOM:      # seeded by the clip's key: the same map on a perturbed clip
                return random_explanation(m, sample, tgt, s.seed)
            return explain(m, sample.clip if clip is None else clip, name, target=tgt, refine=s.refine,
                           **options)

        try:
            if ctx.forwards is None:
                exp = make(model)
            else:  # recorded, not looked up: its cost and values stay those of a standalone call
                with sharing(model, ctx.forwards, lookup=False):
                    exp = make(model)
        except Exception as e:  # one method failing on one clip must not end the evaluation
            # a method that finds out only while running that it cannot explain this model is not
            # applicable (stored as done, not retried); anything else is an error (retried)
            status = "n/a" if isinstance(e, UnsupportedModelError) else "error"
            msg = _message(e)
            yield ExplanationRow(task.key, method_spec, status=status, label=sample.label, error=msg)
            for spec in metric_specs:
                yield ResultRow(task.key, method_spec, spec, None, status,
                                details={"reason" if status == "n/a" else "error": msg})
            continue
        c = exp.cost
        yield ExplanationRow(task.key, method_spec, target=exp.target, predicted=int(np.argmax(exp.probs)),
                             label=sample.label, score=exp.score, seconds=c.seconds,
                             forward_passes=c.forward_passes, backward_passes=c.backward_passes,
                             peak_memory_mb=c.peak_memory_mb)
        # metrics that re-explain: on randomised copies of the model, for another class, on a
        # perturbed clip (see videoxai.metrics.sanity.default_explainer)
        def rerun(m: VideoModel, target: int = exp.target, clip: torch.Tensor | None = None,
                  make=make) -> Explanation:
            return make(m, target, None if clip is None else as_clip(clip))
        for spec in metric_specs:
            yield score_one(ctx.metrics[spec], model, sample, exp, task.key, method_spec, spec, rerun,
                            ctx.forwards)


def score_one(metric, model, sample: EvalSample, exp: Explanation, video: str, method: str, spec: str,
              rerun, forwards: ForwardCache | None = None) -> ResultRow:
    """One metric on one explanation, as a row (``n/a`` without the ground truth it needs);
    perturbed clips already in ``forwards`` are not run again."""
    if "ground_truth" in metric.requires and not sample.has_ground_truth:
        return ResultRow(video, method, spec, None, "n/a",
                         details={"reason": "no ground truth: the data has no object boxes or masks"})
    if "window" in metric.requires and not sample.has_window:
        return ResultRow(video, method, spec, None, "n/a",
                         details={"reason": "no ground truth: the data has no evidence frame windows"})
    t0 = time.perf_counter()
    try:
        if forwards is None:
            score = metric(model, sample.clip, exp, sample=sample, explain_fn=rerun)
        else:
            with sharing(model, forwards):
                score = metric(model, sample.clip, exp, sample=sample, explain_fn=rerun)
    except MissingGroundTruth as e:
        return ResultRow(video, method, spec, None, "n/a", details={"reason": str(e)})
    except Exception as e:  # recorded, and computed again on resume
        return ResultRow(video, method, spec, None, "error", details={"error": _message(e)},
                         seconds=time.perf_counter() - t0)
    value = score.value if math.isfinite(score.value) else None
    curve = score.curve.tolist() if score.curve is not None else None
    return ResultRow(video, method, spec, value, "ok", curve, score.details, time.perf_counter() - t0)


def _message(e: Exception) -> str:
    if isinstance(e, VideoXAIError):
        return f"{type(e).__name__}: {e}"
    where = traceback.extract_tb(e.__traceback__)[-1] if e.__traceback__ else None
    loc = f" ({where.filename.rsplit('/', 1)[-1]}:{where.lineno})" if where else ""
    return f"{type(e).__name__}: {e}{loc}"
