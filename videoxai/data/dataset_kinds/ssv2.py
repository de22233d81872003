"""The ``ssv2:`` dataset kind: Something-Something-style JSON, a list of ``{id, template}``
records and a labels file mapping each template to its class index."""

from __future__ import annotations

from pathlib import Path

from ...errors import InputError
from ..datasets import ClassNames, EvalDataset, VideoListDataset, _Entry, _label_index, _read_json, register_dataset


@register_dataset("ssv2")
def _ssv2(argument: str, *, num_frames: int, classes=None, annotations: str | None = None,
          labels: str | None = None) -> EvalDataset:
    """ssv2:VIDEOS,annotations=FILE.json[,labels=FILE.json] — Something-Something-style JSON labels."""
    root = Path(argument).expanduser()
    if not root.is_dir():
        raise InputError(f"ssv2: {root} is not a directory")
    if annotations is None:
        raise InputError("ssv2: give annotations=FILE.json (the list of {id, template} records)")
    records = _read_json(Path(annotations).expanduser(), "ssv2")
    if not isinstance(records, list):
        raise InputError(f"{annotations}: expected a JSON list of {{id, template}} records")
    if not records:   # was "the dataset has no videos", naming no file
        raise InputError(f"{annotations}: lists no videos (an empty JSON list)")
    index = None
    if labels is not None:
        mapping = _read_json(Path(labels).expanduser(), "ssv2")
        if not isinstance(mapping, dict):
            raise InputError("ssv2: the labels file must map template → class index")
        index = {_template(k): _class_index(v, f"{labels}: {k!r}") for k, v in mapping.items()}
    entries = []
    for n, rec in enumerate(records):
        where = f"{annotations}[{n}]"
        if not isinstance(rec, dict) or "id" not in rec:
            raise InputError(f"{where}: each record needs an 'id'")
        vid = str(rec["id"])
        path = next((root / f"{vid}{s}" for s in (".webm", ".mp4") if (root / f"{vid}{s}").is_file()), None)
        if path is None:
            raise InputError(f"{where}: no video {root / vid}.webm or .mp4")
        text = rec.get("template") or rec.get("label")
        label, name = None, None
        if text is not None:
            name = _template(text)
            if index is not None:
                if name not in index:
                    raise InputError(f"{where}: template {name!r} is not in the labels file")
                label = index[name]
                if classes is not None and label >= len(classes):
                    raise InputError(f"{where}: label {label} is out of range for {ClassNames.of(classes).counted}")
            elif classes is not None:
                label, name = _label_index(name, classes, where)
        entries.append(_Entry(vid, path, label, name))
    return VideoListDataset(entries, num_frames)


def _class_index(value, where: str) -> int:
    """A class index of a labels file: an integer ≥ 0 (SSv2 writes them as strings, "12"), in ASCII
    digits (str.isdigit() also holds for '²', which int() refuses: a raw ValueError)."""
    text = str(value).strip()
    if isinstance(value, bool) or not (text.isascii() and text.isdigit()):
        raise InputError(f"{where}: class index must be an integer ≥ 0, got {value!r}")
    return int(text)


def _template(text: str) -> str:
    """``"Putting [something] on a surface"`` → ``"Putting something on a surface"``."""
    return str(text).replace("[", "").replace("]", "").strip()
