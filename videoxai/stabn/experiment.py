"""The human-knowledge experiment: a confounded training split, a simulated person, and
fine-tuning with and without ``L_temp`` (Noguchi et al., seed 003, on the synthetic benchmark).

Edits can only help where the model attends to the wrong frames. Here it is made to: in the
**training** split, most clips of a *confounded class* also show its **confound** — an object of
a colour and shape no class uses — for a few frames *outside* the evidence window. It is easier
to see than the class's own colour-and-shape conjunction, so a model trained there learns
"green diamond → red triangle" and looks at the confound's frames. In the **validation and
test** splits every confound appears in a share of the clips of *every* class, as a true
distractor: the shortcut now costs accuracy. :data:`CONFOUNDS` has two (a green diamond with
"red triangle", a magenta ring with "blue square"), so that the confounded classes — whose
clips the person edits — pay for the shortcut too (a red triangle beside a magenta ring looks
like "blue square"); ``make_splits(confounds=CONFOUNDS[:1])`` is the one-confound experiment.

The experiment (:func:`run`), for each seed:

1. trains an ST-ABN of the chosen design (:mod:`.designs`; default ``localising``, the bundled
   ``demo-stabn``'s: its plain backbone first, then the ST-ABN from it) on the confounded
   training split (the seed seeds the initialisation);
2. collects the misclassified training clips, and a **simulated person** edits each one from
   its true window (:func:`simulated_levels`: 1.0 inside, 0.0 outside), as the paper's person
   does by looking at the clip;
3. fine-tunes twice from that model with the same seed, data, schedule and frozen feature
   extractor: with ``γ_t · L_temp`` and with ``γ_t = 0`` (the control: the same clips and
   steps, no human knowledge);
4. scores the three models on the test split: accuracy on the **edited classes** (the classes
   with the most edits, covering at least half of them), on the others, overall, and the
   temporal attention's hit rate (top frame inside the window). A start model that makes no
   mistakes on its training clips gets no edits and no fine-tuning: both arms are scored as the
   start model, and it has no edited classes (:func:`summary` averages those over the other seeds).

Fine-tuning settings are chosen by :func:`choose_settings` on the **validation** split only.
"""

from __future__ import annotations

import copy
import hashlib
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..data.synthetic import COLOURS, SHAPES, shape_masks
from ..errors import InputError
from .config import STABNConfig
from .data import ClipSet, open_dataset
from .designs import design
from .evaluate import evaluate, predict
from .knowledge import TemporalEdit, finetune, finetune_config
from .loader import load_stabn, save_stabn
from .loop import fit
from .model import STABNVideoModel
from .recipe import TrainConfig
from .train import warm_started


def simulated_levels(window: tuple[int, int], num_frames: int, border: bool = False) -> list[float]:
    """A simulated person's edit: 1.0 inside ``[start, end)``, 0.0 outside; with ``border``, 0.5 on
    the frame either side of the window."""
    start, end = int(window[0]), int(window[1])
    levels = [1.0 if start <= t < end else 0.0 for t in range(num_frames)]
    if border:
        for t in (start - 1, end):
            if 0 <= t < num_frames:
                levels[t] = 0.5
    return levels


@dataclass(frozen=True)
class Confound:
    """An object shown outside the evidence window.

    Attributes:
        shape, colour: its look (a pair no class and no distractor of the benchmark uses).
        label: the class it co-occurs with in training.
        train_rate: share of that class's training clips that show it (no other training clip does).
        test_rate: share of *all* validation / test clips that show it, whatever their class.
        frames: ``(min, max)`` frames it is visible, all outside the window.
        size: side of its bounding square, as a fraction of the frame side.
    """

    shape: str = "diamond"
    colour: str = "green"
    label: int = 1
    train_rate: float = 0.9
    test_rate: float = 0.5
    frames: tuple[int, int] = (2, 3)
    size: float = 0.2

    def __post_init__(self) -> None:
        if self.shape not in SHAPES or self.colour not in COLOURS:
            raise InputError(f"confound {self.colour} {self.shape}: shapes {SHAPES}, colours {tuple(COLOURS)}")


def add_confound(data: ClipSet, confound: Confound, seed: int = 0, index: int = 0) -> tuple[ClipSet, np.ndarray]:
    """A copy of ``data`` with the confound painted into some clips, and which ones ``(N,)`` bool.

    Training splits show it in ``train_rate`` of the confounded class's clips; other splits in
    ``test_rate`` of every clip. Its frames are consecutive and outside the window (a clip
    without enough such frames keeps none); its position is random and fixed. Evidence masks
    are untouched (the evidence is not visible outside the window). ``index`` numbers the
    confounds of one experiment, so that each draws its own clips.
    """
    if data.windows is None:
        raise InputError("a confound needs clips with known windows")
    # (index 0 adds nothing to the seed: the draws of the one-confound experiment as first run)
    rng = np.random.default_rng([seed, len(data), sum(map(ord, data.split))] + ([index] if index else []))
    frames = data.frames.copy()
    n, t, h, w, _ = frames.shape
    shown = np.zeros(n, dtype=bool)
    rgb = np.array(COLOURS[confound.colour], dtype=np.uint8)
    side = confound.size * min(h, w)
    for i in range(n):
        rate = (confound.train_rate if data.labels[i] == confound.label else 0.0) \
            if data.split == "train" else confound.test_rate
        if rng.random() >= rate:
            continue
        a, b = data.windows[i]
        length = int(rng.integers(confound.frames[0], confound.frames[1] + 1))
        starts = [s for s in range(t - length + 1) if s + length <= a or s >= b]
        if not starts:
            continue
        s = int(rng.choice(starts))
        cy, cx = rng.uniform(side / 2 + 1, h - side / 2 - 1), rng.uniform(side / 2 + 1, w - side / 2 - 1)
        m = shape_masks(confound.shape, np.full(length, cy), np.full(length, cx), side, h, w)
        frames[i, s:s + length][m] = rgb
        shown[i] = True
    out = copy.copy(data)
    out.frames = frames
    return out, shown


#: the experiment's confounds: a green diamond with "red triangle" and a magenta ring with "blue
#: square" (shapes and colours no class or distractor combines). With two, each confounded class
#: also shows the *other* class's confound at test time, so the shortcut costs the very classes
#: whose clips the person edits (with one, the confounded class keeps its accuracy and the others
#: pay); ``CONFOUNDS[:1]`` is the one-confound experiment.
CONFOUNDS: tuple[Confound, ...] = (Confound(), Confound(shape="ring", colour="magenta", label=2))


@dataclass
class Splits:
    """The confounded training split and the decorrelated validation and test splits.

    ``shown[split]`` ``(N,)`` bool: clips showing at least one confound."""

    train: ClipSet
    val: ClipSet
    test: ClipSet
    confounds: tuple[Confound, ...]
    shown: dict[str, np.ndarray]


def make_splits(train: int = 4000, val: int = 400, test: int = 1000,
                confounds: tuple[Confound, ...] = CONFOUNDS, seed: int = 0, num_frames: int = 8,
                size: int = 64) -> Splits:
    """The synthetic benchmark's three disjoint streams, with the confounds (module docstring)."""
    if not confounds:
        raise InputError("the experiment needs at least one confound")
    spec = f"synthetic:{train},val={val},test={test},seed={seed}"
    sets, shown = {}, {}
    for split in ("train", "val", "test"):
        clips = open_dataset(spec, split, num_frames=num_frames, frame_size=(size, size))
        shown[split] = np.zeros(len(clips), dtype=bool)
        for i, confound in enumerate(confounds):
            clips, painted = add_confound(clips, confound, seed, index=i)
            shown[split] |= painted
        sets[split] = clips
    return Splits(sets["train"], sets["val"], sets["test"], tuple(confounds), shown)


@dataclass
class Settings:
    """What the experiment trains and fine-tunes with."""

    #: the start models' design, a key of :data:`.designs.DESIGNS`
    design: str = "localising"
    train: TrainConfig = field(default_factory=lambda: TrainConfig.recipe("demo", epochs=3, batch_size=16))
    # chosen on the validation split by choose_settings (docs/experiments/stabn.md, "Human knowledge")
    gamma_t: float = 10.0
    finetune: TrainConfig = field(default_factory=finetune_config)
    frozen: tuple[str, ...] = ("feature_extractor",)
    #: unedited training clips (drawn at random, per edited clip) fine-tuned on beside the edited
    #: ones, so that fine-tuning on a few clips of a few classes does not forget the others
    replay: float = 2.0
    #: which training clips the simulated person edits: ``"misclassified"`` (the clips the model
    #: gets wrong) or ``"attention"`` (also the clips it gets right while its temporal attention's
    #: top frame lies outside the true window: a model that learnt a shortcut makes no mistakes on
    #: its training clips, but its attention shows the shortcut; the default, since a shortcut
    #: model usually has no misclassified training clip at all)
    select: str = "attention"
    #: with ``select="attention"``: at most this many edits (the misclassified clips first, then a
    #: seeded draw of the others) — the simulated person's budget; with two confounds 300 edits
    #: left the validation window hit at 0.68 where 1000 reached 0.99 (docs/experiments/stabn.md, "Human knowledge")
    max_edits: int = 1000
    #: ``L_temp``'s form (:func:`.losses.temporal_loss`): ``"auto"`` is the KL for the softmax
    #: attention of the ``localising`` design, the paper's MSE for a sigmoid one
    temporal_loss: str = "auto"


def edited_classes(labels: np.ndarray, num_classes: int) -> list[int]:
    """The classes with the most edits that together hold at least half of them."""
    counts = np.bincount(labels, minlength=num_classes)
    order = np.argsort(-counts, kind="stable")
    chosen, total = [], 0
    for c in order:
        if counts[c] == 0 or total >= counts.sum() / 2:
            break
        chosen.append(int(c))
        total += counts[c]
    return sorted(chosen)


def scores(model: STABNVideoModel, data: ClipSet, classes: list[int]) -> dict:
    """Accuracy on ``classes``, on the others and overall, and the temporal hit, on ``data``."""
    p = predict(model, data, description="scoring")
    ev = evaluate(model, data, predictions=p)
    right = p.logits.argmax(1) == data.labels
    on = np.isin(data.labels, classes)
    return {"accuracy": ev.accuracy, "edited_classes": float(right[on].mean()) if on.any() else None,
            "other_classes": float(right[~on].mean()) if (~on).any() else None,
            "window_hit": ev.window_hit, "window_corr": ev.window_corr, "spatial_hit": ev.spatial_hit,
            "attention_accuracy": ev.attention_accuracy}


def edits_from_truth(model: STABNVideoModel, train: ClipSet, select: str = "misclassified",
                     max_edits: int | None = None, seed: int = 0) -> dict[str, TemporalEdit]:
    """Step 1 and 2 with a simulated person: the training clips ``select`` picks (see
    :class:`Settings`; with ``"attention"`` at most ``max_edits``), edited from their true windows."""
    if select not in ("misclassified", "attention"):
        raise InputError(f"select must be 'misclassified' or 'attention', got {select!r}")
    p = predict(model, train, description="collect")
    wrong = np.flatnonzero(p.logits.argmax(1) != train.labels)
    if select == "attention":  # the misclassified clips first, then a seeded draw of the others
        top = p.temporal.argmax(1)
        outside = np.array([not (s <= t < e) for t, (s, e) in zip(top, train.windows)])
        others = np.setdiff1d(np.flatnonzero(outside), wrong)
        room = len(others) if max_edits is None else max(0, max_edits - len(wrong))
        if room < len(others):
            others = np.sort(np.random.default_rng(seed).choice(others, size=room, replace=False))
        wrong = np.concatenate([wrong, others])[:max_edits]
    return {train.ids[i]: TemporalEdit(train.ids[i], simulated_levels(train.windows[i], train.num_frames),
                                       label=int(train.labels[i])) for i in wrong}


def _config(splits: Splits, settings: Settings) -> STABNConfig:
    d = design(settings.design)
    return STABNConfig(num_classes=splits.train.num_classes, num_frames=splits.train.num_frames,
                       input_size=splits.train.frame_size, backbone=d.backbone,
                       labels=splits.train.label_names, **d.options)


def base_model(splits: Splits, settings: Settings, seed: int, cache: Path | None = None) -> STABNVideoModel:
    """An ST-ABN trained on the confounded training split (initialisation seeded by ``seed``).

    With ``cache``, a model trained before with the same settings, data and seed is read back
    from ``cache`` instead of trained again (the validation sweep and the runs share them).
    """
    key = None
    if cache is not None:
        facts = json.dumps([settings_dict(settings)["train"], _config(splits, settings).to_dict(), seed,
                            design(settings.design).warm_start,
                            len(splits.train), splits.train.spec,
                            # one confound: the key the models of the first experiment were cached by
                            asdict(splits.confounds[0]) if len(splits.confounds) == 1 else
                            [asdict(c) for c in splits.confounds]], sort_keys=True)
        key = Path(cache) / f"base-{hashlib.sha256(facts.encode()).hexdigest()[:12]}"
        if (key / "model.safetensors").is_file():
            return load_stabn(key)
    config = TrainConfig(**{**settings.train.to_dict(), "seed": seed})
    model = warm_started(_config(splits, settings), splits.train, config, design(settings.design).warm_start)
    fit(model, splits.train, config)
    if key is not None:
        save_stabn(model, key)
    return model


def finetuned(model: STABNVideoModel, splits: Splits, edits: dict[str, TemporalEdit], settings: Settings,
              gamma_t: float, seed: int) -> STABNVideoModel:
    """A fine-tuned copy of ``model`` (``model`` itself is left as it was)."""
    tuned = copy.deepcopy(model)
    config = TrainConfig(**{**settings.finetune.to_dict(), "seed": seed})
    position = splits.train.index_of()
    edited = np.array(sorted(position[cid] for cid in edits))
    others = np.setdiff1d(np.arange(len(splits.train)), edited)
    count = min(len(others), int(round(settings.replay * len(edited))))
    replay = np.random.default_rng(seed).choice(others, size=count, replace=False)
    data = splits.train.subset(np.sort(np.concatenate([edited, replay])))
    finetune(tuned, data, edits, gamma_t=gamma_t, config=config, frozen=settings.frozen,
             temporal_loss=settings.temporal_loss)
    return tuned


def run(splits: Splits, settings: Settings, seeds: tuple[int, ...] = (0, 1, 2), *,
        cache: Path | None = None, on_result=None) -> list[dict]:
    """The experiment (module docstring), one record per seed: the start model, the control
    (``γ_t = 0``) and the fine-tuning with human knowledge, scored on the test split."""
    records = []
    for seed in seeds:
        t0 = time.perf_counter()
        start = base_model(splits, settings, seed, cache)
        edits = edits_from_truth(start, splits.train, settings.select, settings.max_edits, seed)
        labels = np.array([e.label for e in edits.values()], dtype=int)
        classes = edited_classes(labels, splits.train.num_classes)
        rec = {"seed": seed, "edits": len(edits), "edited_classes": classes,
               "edits_per_class": np.bincount(labels, minlength=splits.train.num_classes).tolist(),
               "start": scores(start, splits.test, classes)}
        for name, gamma in (("control", 0.0), ("human_knowledge", settings.gamma_t)):
            # no misclassified training clip: the person has nothing to edit and nothing is
            # fine-tuned; both arms are the start model (its edited-class accuracy is undefined)
            rec[name] = scores(finetuned(start, splits, edits, settings, gamma, seed), splits.test, classes) \
                if edits else rec["start"]
        rec["seconds"] = time.perf_counter() - t0
        records.append(rec)
        if on_result is not None:
            on_result(rec)
    return records


def choose_settings(splits: Splits, settings: Settings, start: STABNVideoModel,
                    grid: dict[str, list], seed: int = 0) -> tuple[Settings, list[dict]]:
    """The fine-tuning settings of ``grid`` (``{"gamma_t": [...], "lr": [...], "epochs": [...]}``)
    that score best on the **validation** split (overall accuracy, then the edited classes', then
    the window hit)."""
    edits = edits_from_truth(start, splits.train, settings.select, settings.max_edits, settings.train.seed)
    if not edits:
        raise InputError(f"seed {seed}: the model makes no mistakes on its training clips; nothing to edit")
    classes = edited_classes(np.array([e.label for e in edits.values()]), splits.train.num_classes)
    tried = []
    for gamma in grid.get("gamma_t", [settings.gamma_t]):
        for lr in grid.get("lr", [settings.finetune.lr]):
            for epochs in grid.get("epochs", [settings.finetune.epochs]):
                s = copy.deepcopy(settings)
                s.gamma_t = gamma
                s.finetune = TrainConfig(**{**s.finetune.to_dict(), "lr": lr, "epochs": epochs})
                val = scores(finetuned(start, splits, edits, s, gamma, seed), splits.val, classes)
                tried.append({"gamma_t": gamma, "lr": lr, "epochs": epochs, **val})
    # the overall accuracy first: fine-tuning must not buy the edited classes with the others;
    # then the edited classes', then the attention the edits asked for
    best = max(range(len(tried)), key=lambda i: (tried[i]["accuracy"], tried[i]["edited_classes"],
                                                 tried[i]["window_hit"]))
    s = copy.deepcopy(settings)
    s.gamma_t = tried[best]["gamma_t"]
    s.finetune = TrainConfig(**{**s.finetune.to_dict(), "lr": tried[best]["lr"], "epochs": tried[best]["epochs"]})
    return s, tried


def summary(records: list[dict]) -> dict:
    """Mean and sample standard deviation over seeds of every score of every model."""
    out = {}
    for model in ("start", "control", "human_knowledge"):
        out[model] = {}
        for key in records[0][model]:
            values = np.array([r[model][key] for r in records if r[model][key] is not None], dtype=float)
            if len(values):
                out[model][key] = (float(values.mean()), float(values.std(ddof=1)) if len(values) > 1 else 0.0)
    return out


def settings_dict(settings: Settings) -> dict:
    """``settings`` as plain JSON-able data (for reports)."""
    return {"design": settings.design, "train": settings.train.to_dict(), "gamma_t": settings.gamma_t,
            "finetune": settings.finetune.to_dict(), "frozen": list(settings.frozen),
            "replay": settings.replay, "select": settings.select, "max_edits": settings.max_edits,
            "temporal_loss": settings.temporal_loss}


__all__ = ["CONFOUNDS", "Confound", "Settings", "Splits", "add_confound", "base_model", "choose_settings", "edited_classes",
           "edits_from_truth", "finetuned", "make_splits", "run", "scores", "settings_dict", "simulated_levels",
           "summary"]
