"""What a clip's content was when its results were computed, so that a resumed evaluation
computes again the clips whose content changed under the same key; and what the model's weights
were, so that it refuses to add to results of other weights under the same model spec.

Results are stored by clip key, and a key names a clip, not its pixels: a list of in-memory
samples run again after a clip was edited (same ``key``, other frames), or a video file
re-encoded under its old name, kept every result of the old content. The fingerprint is cheap
and known without explaining anything: for samples in memory a hash of their arrays (frames and
the annotations the localisation metrics read), for videos on disk the file's size and
modification time (no decoding) and its annotations (window, boxes). Datasets that are neither
(``synthetic:``, whose clips are a function of their key, or a user's own dataset class) have
none and are resumed by key alone.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import torch

from ..data.datasets import EvalDataset, EvalSample, SamplesDataset
from ..errors import VideoXAIError


def fingerprints(dataset: EvalDataset, n_videos: int) -> dict[str, str]:
    """``key → fingerprint`` of the first ``n_videos`` clips, or ``{}`` where the dataset has none."""
    if isinstance(dataset, SamplesDataset):
        return {dataset.key(i): sample_fingerprint(dataset.load(i)) for i in range(n_videos)}
    entries = getattr(dataset, "entries", None)   # videos on disk (folder:, ssv2:, ucf24:)
    if not isinstance(entries, list) or len(entries) < n_videos:
        return {}
    tubes = getattr(dataset, "tubes", None)       # ucf24:'s boxes, by clip key
    out = {}
    for i in range(n_videos):
        path = getattr(entries[i], "path", None)
        if isinstance(path, Path):
            try:
                stat = path.stat()
            except OSError:
                continue   # gone or unreadable: the clip's load stores the error
            key = dataset.key(i)
            # the annotations the localisation metrics read: a window corrected in labels.csv
            # (or a box in the annotation file) kept the scores against the old one
            notes = [getattr(entries[i], "source_window", None), tubes.get(key) if isinstance(tubes, dict) else None]
            digest = hashlib.blake2b(json.dumps(notes, default=_plain).encode(), digest_size=8).hexdigest()
            out[key] = f"file:{stat.st_size}:{stat.st_mtime_ns}:{digest}"
    return out


def same_data(stored: str, now: str) -> bool:
    """Whether the data spec ``now`` names the clips whose results were stored under ``stored``
    (both canonical, as :func:`~videoxai.data.datasets.load_dataset` writes them): the same spec,
    two ``synthetic:`` specs that differ in their clip count only, or one folder written two ways.

    A synthetic clip is a pure function of its split, seed and index, and its key names all three
    (``synthetic:test:0/5``), whatever ``N`` it was drawn with: the first 6 clips of
    ``synthetic:8`` are the clips of ``synthetic:6``, pixel for pixel. Raising ``N`` (as
    ``clips=N`` or ``limit``) was refused as "a different evaluation"; it computes the added
    clips. Another split or seed is other clips, and still refused.

    ``folder:clips``, ``folder:clips/`` (a shell's completion adds the slash) and
    ``folder:./clips`` are one folder, and were refused as different evaluations; each video's
    content is compared on its own anyway (:func:`fingerprints`).
    """
    if stored == now:
        return True
    from ..data.datasets import parse_data_spec

    try:
        (kind_a, arg_a, options_a), (kind_b, arg_b, options_b) = parse_data_spec(stored), parse_data_spec(now)
    except VideoXAIError:   # not a spec (an old file's 'samples'): only the same text is the same data
        return False
    if kind_a != kind_b or options_a != options_b:
        return False
    if kind_a == "synthetic":
        return True
    return kind_a in PATH_KINDS and _folder(arg_a) == _folder(arg_b)


def wider_data(stored: str, now: str) -> str:
    """Of two specs of the same data (:func:`same_data`), the one a results file names: of two
    ``synthetic:N``, the larger ``N`` (the clips it may hold); else ``stored``, as first written."""
    from ..data.datasets import parse_data_spec

    (kind, arg_a, _), (_, arg_b, _) = parse_data_spec(stored), parse_data_spec(now)
    if kind == "synthetic" and int(arg_b) > int(arg_a):
        return now
    return stored


def same_folder_hint(stored: str, now: str) -> str:
    """``"; or, if … is the folder of …, give the data as stored: …"`` where two specs of a path
    kind differ in their path only (``folder:./clips`` and ``folder:/home/me/clips``: a relative
    path was stored, and which folder it named depends on where that run started); else ``""``."""
    from ..data.datasets import parse_data_spec

    try:
        (kind_a, arg_a, options_a), (kind_b, arg_b, options_b) = parse_data_spec(stored), parse_data_spec(now)
    except VideoXAIError:
        return ""
    if kind_a != kind_b or kind_a not in PATH_KINDS or options_a != options_b:
        return ""
    return f"; or, if {arg_b} is the folder stored as {arg_a}, give the data as stored: --data {stored!r}"


#: the built-in dataset kinds whose argument is a path
PATH_KINDS = ("folder", "ucf24", "ssv2")


def _folder(path: str) -> str:
    """``path`` as written, less what does not change the folder it names (``./``, a trailing ``/``)."""
    return os.path.normpath(os.path.expanduser(path))


def _plain(value):
    """Annotation values JSON does not take (numpy arrays and numbers) as lists and numbers."""
    return value.tolist() if hasattr(value, "tolist") else str(value)


def sample_fingerprint(sample: EvalSample) -> str:
    """A hash of an in-memory sample's frames and of its masks, boxes and window (its label is
    not in it: explaining the prediction does not depend on it, and a changed label is found
    by the runner on its own)."""
    h = hashlib.blake2b(digest_size=16)
    for part in (sample.clip.frames, sample.masks, sample.boxes,
                 None if sample.window is None else np.asarray(sample.window)):
        if part is None:
            h.update(b"-")
            continue
        a = np.ascontiguousarray(part)
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(a.reshape(-1).view(np.uint8))
    return "samples:" + h.hexdigest()


def weights_fingerprint(model: torch.nn.Module) -> str:
    """A hash of every parameter and buffer of ``model`` (names, dtypes, shapes, values).

    A results file names its model by the spec it was loaded from: a model directory trained or
    fine-tuned again in place (``videoxai stabn finetune --out`` run again with more edits) was
    the same model to a resumed evaluation, which reused every result of the old weights. About a
    second per GB of weights; a model with random weights is ``"random"`` (drawn afresh at each
    load, they would never match, and their results mean nothing anyway).
    """
    if getattr(model, "weights_source", None) == "random":
        return "random"
    h = hashlib.blake2b(digest_size=16)
    with torch.no_grad():
        for name, t in sorted(model.state_dict(keep_vars=False).items()):
            if not isinstance(t, torch.Tensor):
                continue
            t = t.detach()
            h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
            try:
                h.update(t.cpu().contiguous().reshape(-1).view(torch.uint8).numpy().data)
            except (RuntimeError, TypeError, NotImplementedError):  # quantised, or not materialised
                h.update(b"?")
    return "blake2b:" + h.hexdigest()


__all__ = ["fingerprints", "same_data", "sample_fingerprint", "same_folder_hint", "weights_fingerprint",
           "wider_data"]
