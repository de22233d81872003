"""The ``ucf24:`` dataset kind: videos with UCF101-24-style per-frame boxes, read from JSON.

The JSON layout and how to convert the corrected annotations' pickle are documented in
:mod:`videoxai.data.datasets`. Every tube is checked when the dataset is opened, so a bad
annotation is named before the run rather than ending it, or passing as 'no ground truth'.

A key's video is ``ROOT/<key>.avi`` or ``.mp4``, else the folder ``ROOT/<key>/`` of its numbered
pictures (``00001.jpg`` …: the release's ``rgb-images``, read by :mod:`~videoxai.data.frame_folder`).
The annotations' 0-based frames count the pictures in the order of their numbers, as they count a
file's frames: picture ``00001.jpg`` is frame 0, and its boxes are those of ``sf`` 0.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ...errors import InputError
from ..datasets import BoxesDataset, EvalDataset, _Entry, _label_index, _read_json, register_dataset


@register_dataset("ucf24")
def _ucf24(argument: str, *, num_frames: int, classes=None, annotations: str | None = None,
           split: str | None = None) -> EvalDataset:
    """ucf24:ROOT[,annotations=FILE.json][,split=FILE.txt] — UCF101-24-style per-frame boxes.

    A key's video is ``ROOT/<key>.avi`` or ``.mp4``, else the folder of its frames ``ROOT/<key>/``.
    """
    root = Path(argument).expanduser()
    if not root.is_dir():
        raise InputError(f"ucf24: {root} is not a directory")
    ann_path = Path(annotations).expanduser() if annotations else root / "annotations.json"
    data = _read_json(ann_path, "ucf24")
    if not isinstance(data, dict):
        raise InputError(f"{ann_path}: expected a JSON object mapping video keys to annotations")
    keys = sorted(data)
    if not keys:   # was "the dataset has no videos", naming no file
        raise InputError(f"{ann_path}: annotates no videos (an empty JSON object)")
    if split is not None:
        split_path = Path(split).expanduser()
        if not split_path.is_file():
            raise InputError(f"ucf24: no split file {split_path}")
        try:   # a byte-order mark stuck to the first key ('\ufeffBasketball/…': 'no annotation')
            lines = split_path.read_text(encoding="utf-8-sig").splitlines()
        except UnicodeDecodeError as e:
            raise InputError(f"{split_path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
        wanted = [ln.strip().rsplit(".", 1)[0] if ln.strip().endswith((".avi", ".mp4")) else ln.strip()
                  for ln in lines if ln.strip()]
        missing = [k for k in wanted if k not in data]
        if missing:
            raise InputError(f"{split_path}: {len(missing)} keys have no annotation, e.g. {missing[0]!r}")
        keys = wanted
    entries, tubes = [], {}
    for key in keys:
        rec = data[key]
        where = f"{ann_path}: {key}"
        if not isinstance(rec, dict) or not isinstance(rec.get("annotations"), list):
            raise InputError(f"{where}: expected {{'label', 'annotations': [...]}}")
        path = next((root / f"{key}{s}" for s in (".avi", ".mp4") if (root / f"{key}{s}").is_file()), None)
        if path is None and key and (root / key).is_dir():
            # the release's rgb-images/<class>/<video>/00001.jpg …: its pictures are the video's frames
            path = root / key
        if path is None:
            raise InputError(f"{where}: no video {root / key}.avi or .mp4, nor a folder of its frames {root / key}/")
        for a in rec["annotations"]:
            _check_tube(a, where, rec.get("numf"))
        # the class is the key's folder when the model knows it by that name, else the index
        name = key.split("/")[0] if "/" in key else None
        if classes is not None and name is not None and name.lower() in {n.lower() for n in classes}:
            label, name = _label_index(name, classes, where)
        elif rec.get("label") is not None:
            label, _ = _label_index(rec["label"], classes, where)
        else:
            label = None
        entries.append(_Entry(key, path, label, name))
        tubes[key] = rec["annotations"]
    return BoxesDataset(entries, tubes, num_frames)


def _check_tube(a, where: str, numf=None) -> None:
    """One annotation of a ucf24 record: checked here, since a bad one found while loading the
    clip would end the whole evaluation (only unreadable videos become error rows). A box whose
    corners are swapped (``x2 < x1``: often ``[x, y, w, h]`` taken for corners) or a tube that
    starts before the first frame or after the video's ``numf`` frames covered no pixel or frame,
    and the localisation metrics then said 'no ground truth' for a clip that has one."""
    if not isinstance(a, dict) or not {"sf", "boxes"} <= set(a):
        raise InputError(f"{where}: each annotation needs 'sf' and 'boxes'")
    sf = a["sf"]
    if isinstance(sf, bool) or not (isinstance(sf, int) or isinstance(sf, float) and sf.is_integer()):
        raise InputError(f"{where}: 'sf' must be an integer frame index, got {a['sf']!r}")
    try:
        b = np.asarray(a["boxes"], dtype=np.float64)
    except (TypeError, ValueError):
        b = np.empty((0, 0))
    if b.ndim != 2 or b.shape[1] != 4:
        raise InputError(f"{where}: boxes must be a list of [x1, y1, x2, y2]")
    if not np.isfinite(b).all():   # JSON's NaN (a box lost in a conversion): no pixel to cover
        k = int(np.flatnonzero(~np.isfinite(b).all(1))[0])
        raise InputError(f"{where}: box {b[k].tolist()} of frame {int(sf) + k} is not finite")
    swapped = np.flatnonzero((b[:, 2] < b[:, 0]) | (b[:, 3] < b[:, 1]))
    if swapped.size:
        k = int(swapped[0])
        raise InputError(f"{where}: box {b[k].tolist()} of frame {int(sf) + k} has x2 < x1 or y2 < y1; boxes are "
                         "[x1, y1, x2, y2] corners (convert [x, y, w, h] with x2 = x + w, y2 = y + h)")
    if sf < 0:
        raise InputError(f"{where}: 'sf' is {int(sf)}; frames are counted from 0")
    if sf >= 2**31:   # 1e300 was written out in 301 digits by the error row that said so
        raise InputError(f"{where}: 'sf' is {a['sf']!r}, past any video's frames")
    if isinstance(numf, int) and not isinstance(numf, bool) and sf >= numf:
        raise InputError(f"{where}: the tube starts at frame {int(sf)}, after the video's {numf} frames "
                         "('numf'; frames are counted from 0)")
