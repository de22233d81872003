"""The ``synthetic:`` dataset kind: the first ``N`` clips of the synthetic benchmark
(:mod:`videoxai.data.synthetic`), with their masks, boxes and evidence window.

Clips are rendered when used and keys name their index, so ``N`` up to 10^12 costs nothing up front.
"""

from __future__ import annotations

import inspect
from typing import Annotated

from ...errors import InputError
from ...options import Opt
from ..datasets import EvalDataset, EvalSample, register_dataset


class SyntheticDataset(EvalDataset):
    def __init__(self, size: int, split: str, seed: int, num_frames: int) -> None:
        from ..synthetic import SyntheticVideos

        self.videos = SyntheticVideos(size, split=split, seed=seed, num_frames=num_frames)
        self.class_names = list(self.videos.labels)
        self._prefix = f"synthetic:{split}:{seed}/"

    def __len__(self) -> int:
        return len(self.videos)

    def key(self, i: int) -> str:
        return f"{self._prefix}{i}"

    def index_of(self, key: str) -> int | None:
        # the key names the index: no table of a billion keys for synthetic:1000000000
        text = key[len(self._prefix):] if key.startswith(self._prefix) else ""
        if not (text.isascii() and text.isdigit() and len(text) <= 13) or text != str(int(text)):
            return None   # not this dataset's key, or not as key() writes it ('07')
        return int(text) if int(text) < len(self) else None

    def load(self, i: int) -> EvalSample:
        s = self.videos[i]
        return EvalSample(key=self.key(i), clip=s.clip, label=int(s.label), masks=s.masks, boxes=s.boxes,
                          window=tuple(s.window), label_name=self.class_names[s.label])


@register_dataset("synthetic")
def _synthetic(argument: str, *, num_frames: int, classes=None, split: str = "test",
               seed: Annotated[int, Opt(ge=0)] = 0) -> EvalDataset:  # numpy's seeds are ≥ 0
    """synthetic:N[,split=test][,seed=0] — the synthetic benchmark (masks, boxes, window)."""
    from ..synthetic import MAX_SIZE, SyntheticVideos

    # digits only: int() would also take '1_000' and '١٠', and '1e9' or '2.5' are typos to name;
    # any N up to MAX_SIZE costs nothing until a clip is drawn (the evaluation plans lazily)
    text = argument.strip()
    if not (text.isascii() and text.isdigit() and len(text) <= 13) or not 1 <= int(text) <= MAX_SIZE:
        raise InputError(f"synthetic:N: the clip count N must be an integer from 1 to {MAX_SIZE} (10^12), "
                         f"got {argument!r}")
    size = int(text)
    longest = inspect.signature(SyntheticVideos).parameters["window"].default[1]
    if num_frames < longest:   # was "window must satisfy … got (2, 4)", a window nobody gave
        raise InputError(f"synthetic: its clips need {longest} frames or more (the evidence lasts up to "
                         f"{longest} frames); the model takes {num_frames}")
    ds = SyntheticDataset(size, split, seed, num_frames)
    if classes is not None and list(classes) != ds.class_names:
        raise InputError(f"synthetic: the model's classes {list(classes)[:6]} are not the synthetic "
                         f"benchmark's {ds.class_names}; evaluate a model trained on it (e.g. demo)")
    return ds
