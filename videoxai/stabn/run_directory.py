"""A training run's output directory: what :func:`~.loop.fit` writes there, how a run resumes
from it, and one run at a time.

A run writes to its output directory after every epoch:

* ``checkpoint.pt`` — model, optimizer, epoch and history (``torch.save`` of plain state dicts,
  read back with ``weights_only=True``); a run started again on the same directory resumes from
  it (same result as an uninterrupted run: every epoch's shuffling and dropout are seeded from
  ``(seed, epoch)``);
* ``history.json`` — one record per epoch: losses, train accuracy, validation accuracy of both
  branches and temporal agreement;
* ``model/`` — the latest weights as a loadable model directory (``vx.load_model(out / "model")``).

Each file is replaced whole (written aside, then renamed), and a resumed run writes
``history.json`` and ``model/`` again from its checkpoint. One run at a time per directory: a
second one fails at once, naming the first (``.lock``, :class:`~videoxai.core.folder_lock.FolderLock`);
the run that holds it removes the files a killed run left written aside (``.checkpoint.pt.<hex>.tmp``).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from ..core.folder_lock import FolderLock
from ..errors import InputError
from .atomic import STALE_AFTER, remove_stale_temporaries, write_atomically
from .data import ClipSet
from .loader import save_stabn
from .model import STABNVideoModel
from .recipe import FreezeSchedule, TemporalTargets, TrainConfig

log = logging.getLogger("videoxai.stabn")

CHECKPOINT = "checkpoint.pt"
HISTORY = "history.json"
MODEL_DIR = "model"
WARM_START_DIR = "warm-start"


@dataclass
class EpochRecord:
    """What one epoch did (one line of ``history.json``)."""

    epoch: int
    lr: float
    loss: float
    loss_perception: float
    loss_attention: float
    loss_temporal: float
    train_accuracy: float
    seconds: float
    frozen: list[str] = field(default_factory=list)
    val: dict | None = None
    epochs: int | None = None  # of the run (None: not recorded, as in histories written before it was)
    stage: str | None = None  # "warm-start" for the plain backbone's epochs before an ST-ABN's

    def __str__(self) -> str:
        which = f"{self.stage} epoch" if self.stage else "epoch"
        count = f"{self.epoch}/{self.epochs}" if self.epochs else f"{self.epoch}"
        s = (f"{which} {count}: lr {self.lr:.2g}, loss {self.loss:.3f} (per {self.loss_perception:.3f}, "
             f"att {self.loss_attention:.3f}, temp {self.loss_temporal:.4f}), "
             f"train acc {self.train_accuracy:.3f}")
        if self.val:
            s += f", val acc {self.val['accuracy']:.3f}"
            if self.val.get("attention_accuracy") is not None:
                s += f" / att {self.val['attention_accuracy']:.3f}"
            if self.val.get("window_hit") is not None:
                s += f", window hit {self.val['window_hit']:.3f}"
        return s + f" [{self.seconds:.0f}s]"


#: output directories this process trains into now, with the thread that does
_TRAINING: dict[Path, int] = {}


@contextlib.contextmanager
def output_lock(out: Path) -> Iterator[None]:
    """Hold ``out`` (an existing directory) for this run: a second run on it, in another process
    or thread, fails at once naming this one; what a killed run left half-written there (see
    :func:`~.atomic.remove_stale_temporaries`) is removed. Re-entrant in one thread: :func:`train`
    holds the directory across its warm start and the :func:`fit` that follows."""
    key = out.resolve()
    if _TRAINING.get(key) == threading.get_ident():
        yield
        return
    with contextlib.ExitStack() as held:
        try:
            held.enter_context(FolderLock(out, "another ST-ABN training",
                                          "wait for it to finish or choose another --out"))
            alone = True
        except OSError as e:
            # a file system without locks (Lustre mounted without -o flock answers ENOSYS): train
            # as before the lock existed rather than not at all
            log.warning("cannot lock %s (%s): a second run on it would not be refused", out, e.strerror or e)
            alone = False
        # a run killed mid-write (SIGKILL, the OOM killer, a power cut) left its checkpoint's
        # temporary file (.checkpoint.pt.<hex>.tmp, as large as the model) for good: holding the
        # directory, every such file is a dead run's, however young (without the lock, only an old one)
        removed = remove_stale_temporaries(out, older_than=0.0 if alone else STALE_AFTER)
        if removed:
            log.info("removed %d temporary files a stopped run left in %s", len(removed), out)
        _TRAINING[key] = threading.get_ident()
        try:
            yield
        finally:
            del _TRAINING[key]


def check_out_dir(out: str | Path) -> None:
    """Refuse an output directory that is a file or lies below one, a link to nothing, or that
    cannot be written (a read-only file system, no write permission), before any clip is
    decoded: ``mkdir`` failed only then, after the whole data set was read, and in an existing
    read-only directory the first write was the first epoch's model, after that epoch trained."""
    for path in (Path(out), *Path(out).parents):
        where = "" if path == Path(out) else f" (where the output directory {out} would be)"
        if path.is_symlink() and not path.exists():  # mkdir failed on it as "File exists"
            raise InputError(f"{path} is a link to {os.readlink(path)}, which does not exist{where}; create that "
                             "directory or give another output directory")
        if path.exists():
            if not path.is_dir():
                raise InputError(f"{path} is a file, not a directory{where}; give another output directory")
            # os.access: a read-only file system answers EROFS even to root; Windows takes every
            # directory for writable (its read-only attribute does not stop writes into one)
            if not os.access(path, os.W_OK | os.X_OK):
                raise InputError(f"{path} cannot be written (a read-only file system or no write permission)"
                                 f"{where}; give another output directory")
            return


def check_no_model_without_checkpoint(out: Path) -> None:
    """Refuse to resume into ``out`` when its ``model/`` is a model that no ``checkpoint.pt``
    continues (the checkpoint removed to save space, a model copied there): the run started over
    and replaced it at its first epoch without a word. A run in its warm start (``warm-start/``
    has a checkpoint: one begun with ``--no-resume`` keeps the old model until its first epoch)
    continues."""
    from .loader import META

    running = (out / CHECKPOINT).is_file() or (out / WARM_START_DIR / CHECKPOINT).is_file()
    if not running and (out / MODEL_DIR / META).is_file():
        raise InputError(f"{out / MODEL_DIR} holds a model that no {out / CHECKPOINT} continues (removed, or the "
                         f"model put there): this run would start over and replace it; give another output "
                         f"directory, or --no-resume to replace it")


def _run_facts(train: ClipSet, targets: TemporalTargets | None, freeze: FreezeSchedule) -> dict[str, str]:
    """What a run resumed from a checkpoint must share with it besides the model and the training
    settings: the training clips (ids, labels and decoded frames), the edited attention (fine-tuning) and the
    freezing. Without them, `stabn train --data B` on a finished run on A, or `stabn finetune`
    run again after more edits, printed the old model as if it were the new one."""
    clips = hashlib.sha256(json.dumps([list(train.ids), train.labels.tolist()]).encode()).hexdigest()[:16]
    # and their pixels: ids are file names, so another folder of videos named and labelled alike
    # (a re-extraction, another camera) resumed as the same run and was trained on without a word
    pixels = hashlib.sha256(np.ascontiguousarray(train.frames).data).hexdigest()[:16]
    facts = {"training clips": f"{len(train)} clips (ids and labels: sha256 {clips})",
             "training clips' frames": f"{len(train)} clips' decoded frames: sha256 {pixels}",
             "frozen groups": f"{list(freeze.frozen)} until epoch {freeze.until}"}
    if targets is not None:
        digest = hashlib.sha256(np.nan_to_num(targets.values, nan=-1.0).astype(np.float32).tobytes()
                                + targets.has_edit.tobytes()).hexdigest()[:16]
        facts["edits"] = (f"{int(targets.has_edit.sum())} edited clips, gamma_t {targets.gamma_t:g}, "
                          f"{targets.loss} (sha256 {digest})")
    return facts


def _save_checkpoint(path: Path, model: STABNVideoModel, opt: torch.optim.Optimizer, config: TrainConfig,
                     epoch: int, history: list[EpochRecord], run: dict[str, str] | None = None) -> None:
    state = {"epoch": epoch, "model": model.net.state_dict(), "optimizer": opt.state_dict(),
             "model_config": model.config.to_dict(), "train_config": config.to_dict(),
             "history": json.dumps([asdict(r) for r in history]), "run": json.dumps(run or {})}
    buffer = io.BytesIO()
    torch.save(state, buffer)
    write_atomically(path, buffer.getvalue())  # a crash mid-write keeps the previous checkpoint


def _save_model(out: Path, model: STABNVideoModel, config: TrainConfig, epochs_done: int,
                history: list[EpochRecord], training_meta: dict | None) -> None:
    meta = {**(training_meta or {}), "train_config": config.to_dict(), "epochs_done": epochs_done}
    save_stabn(model, out / MODEL_DIR, metrics=history[-1].val or {}, training=meta)


def _save_history(path: Path, history: list[EpochRecord]) -> None:
    # atomically: a run killed while writing left a truncated history.json behind
    write_atomically(path, json.dumps([asdict(r) for r in history], indent=1) + "\n")


def _load_checkpoint(path: Path, model: STABNVideoModel, opt: torch.optim.Optimizer,
                     config: TrainConfig, run: dict[str, str] | None = None) -> tuple[int, list[EpochRecord]]:
    try:
        state = torch.load(path, map_location=model.device, weights_only=True)
    except Exception as e:  # a truncated or foreign file: say which one
        raise InputError(f"cannot read checkpoint {path}: {e}") from None
    recorded = json.loads(state.get("run", "{}"))  # checkpoints written before it record none
    if recorded and run is not None and ("edits" in recorded) != ("edits" in run):
        # `stabn finetune --out` on the training run's own directory was refused over its learning
        # rate and warm-up, and pointed at --no-resume, which replaces the model being fine-tuned
        kind = lambda facts: ("a fine-tuning (with edits: stabn finetune)" if "edits" in facts  # noqa: E731
                              else "a training (no edits: stabn train)")
        raise InputError(f"{path} holds {kind(recorded)}, and this run is {kind(run)}: give another output "
                         "directory (--no-resume would replace that run and its model/)")
    if state["model_config"] != model.config.to_dict():
        raise InputError(f"{path} was written for a different model "
                         f"({_changes(state['model_config'], model.config.to_dict())}); "
                         "use another output directory or --no-resume")
    saved = TrainConfig.from_dict(state["train_config"])
    if {**saved.to_dict(), "epochs": 0} != {**config.to_dict(), "epochs": 0}:
        raise InputError(f"{path} was written with other training settings "
                         f"({_changes({**saved.to_dict(), 'epochs': 0}, {**config.to_dict(), 'epochs': 0})}); "
                         "use another output directory or --no-resume")
    for what in sorted(set(recorded) & set(run or {})):
        if recorded[what] != run[what]:
            raise InputError(f"{path} continues a run with other {what} ({recorded[what]}; now {run[what]}); "
                             "use another output directory or --no-resume")
    model.net.load_state_dict(state["model"])
    opt.load_state_dict(state["optimizer"])
    history = [EpochRecord(**r) for r in json.loads(state["history"])]
    return int(state["epoch"]), history


def _changes(saved: dict, now: dict) -> str:
    """The fields where ``now`` differs from ``saved``, as ``"name saved → now"``: the whole
    config (19 model fields) left the user to find the one that changed."""
    missing = "(none)"  # a field one of the two configs does not have
    return ", ".join(f"{k} {saved.get(k, missing)!r} → {now.get(k, missing)!r}"
                     for k in {**saved, **now} if saved.get(k, missing) != now.get(k, missing))


__all__ = ["CHECKPOINT", "HISTORY", "MODEL_DIR", "WARM_START_DIR", "EpochRecord", "check_no_model_without_checkpoint",
           "check_out_dir", "output_lock"]
