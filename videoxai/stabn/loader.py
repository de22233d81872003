"""Save and load ST-ABN model directories.

A model directory holds ``model.safetensors`` (the weights; no pickle) and ``videoxai.json``::

    {"loader": "stabn", "format": 1, "config": {...STABNConfig...}, "name": "...",
     "metrics": {...}, "training": {...}}

``vx.load_model(directory)`` finds the ``"loader"`` key and comes here, as does
``vx.load_model("stabn:<directory>")`` and the bundled ``vx.load_model("demo-stabn")``: this module
registers the ``stabn`` loader with :mod:`videoxai.models` (the models layer knows nothing of
ST-ABN; the package's ``__init__`` imports this module, so the names exist whenever videoxai does).
"""

from __future__ import annotations

import json
import os
import re
import warnings
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from ..errors import InputError, UnknownModelError
from ..models import ASSETS, register_bundled, register_loader
from .config import STABNConfig
from .model import STABNVideoModel
from .network import STABN

WEIGHTS = "model.safetensors"
META = "videoxai.json"
FORMAT = 1


def save_stabn(model: STABNVideoModel, directory: str | Path, *, metrics: dict | None = None,
               training: dict | None = None) -> Path:
    """Write ``model`` to ``directory`` (created if needed); returns the directory."""
    if not isinstance(model, STABNVideoModel):
        raise InputError(f"save_stabn needs an ST-ABN model, got {type(model).__name__}")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.net.state_dict().items()}
    meta = {"loader": "stabn", "format": FORMAT, "name": model.name, "config": model.config.to_dict(),
            "metrics": metrics or {}, "training": training or {}}
    # both files are written to temporary names first and then renamed one after the other: a
    # failure or Ctrl-C while writing either (a metric JSON cannot hold, a full disk) leaves the
    # previous model whole — the weights were renamed before the JSON was written, so such a
    # failure paired the new weights with the old videoxai.json
    text = json.dumps(meta, indent=2) + "\n"
    tmp_weights, tmp_meta = directory / (WEIGHTS + ".tmp"), directory / (META + ".tmp")
    try:
        _save_weights(state, tmp_weights, directory / WEIGHTS)
        tmp_weights.chmod(0o644)  # safetensors writes 0600; a model is meant to be shared
        tmp_meta.write_text(text)
        tmp_weights.replace(directory / WEIGHTS)
        tmp_meta.replace(directory / META)
    finally:
        tmp_weights.unlink(missing_ok=True)
        tmp_meta.unlink(missing_ok=True)
    return directory


def _save_weights(state: dict[str, torch.Tensor], path: Path, final: Path) -> None:
    """``save_file`` to ``path``; a failure of the file system (a full disk) as the ``OSError`` it
    is, naming ``final``: safetensors reports it as ``SafetensorError: … I/O error: No space left
    on device (os error 28)``, which the CLI showed as an unexpected error without the file."""
    from safetensors import SafetensorError

    try:
        save_file(state, str(path), metadata={"format": "pt"})
    except SafetensorError as e:
        code = re.search(r"\(os error (\d+)\)", str(e))
        if code is None:
            raise
        raise OSError(int(code.group(1)), os.strerror(int(code.group(1))), str(final)) from e


def read_meta(directory: str | Path) -> dict:
    """The parsed ``videoxai.json`` of an ST-ABN model directory."""
    directory = Path(directory)
    path = directory / META
    if not path.is_file():
        raise UnknownModelError(f"{directory} is not an ST-ABN model directory (no {META})")
    try:
        meta = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise UnknownModelError(f"{path} is not valid JSON: {e}") from None
    if meta.get("loader") != "stabn":
        raise UnknownModelError(f"{path} is for loader {meta.get('loader')!r}, not 'stabn'")
    if isinstance(meta.get("format", FORMAT), bool) or not isinstance(meta.get("format", FORMAT), int):
        raise UnknownModelError(f"{path} has format {meta['format']!r}, not a whole number")
    if meta.get("format", FORMAT) > FORMAT:
        raise UnknownModelError(f"{path} has format {meta['format']}; this videoxai reads ≤ {FORMAT}")
    return meta


def load_stabn(directory: str | Path, device: str | torch.device = "cpu",
               name: str | None = None) -> STABNVideoModel:
    """Load an ST-ABN model directory as a :class:`STABNVideoModel` in eval mode."""
    directory = Path(directory)
    meta = read_meta(directory)
    try:
        config = STABNConfig.from_dict(meta["config"])
    except (InputError, TypeError, KeyError) as e:
        raise UnknownModelError(f"{directory / META}: bad ST-ABN config: {e}") from None
    weights = directory / WEIGHTS
    if not weights.is_file():
        raise UnknownModelError(f"{directory} has no {WEIGHTS}")
    net = STABN(config)
    from safetensors import SafetensorError

    try:
        state = load_file(str(weights))
    except (OSError, SafetensorError) as e:  # truncated or not a safetensors file: name it, in one line
        raise UnknownModelError(f"cannot read {weights}: {e}") from None
    try:
        missing, unexpected = net.load_state_dict(state, strict=False)
    except RuntimeError as e:  # shape mismatches
        raise UnknownModelError(f"{weights} does not match its config: {e}") from None
    if missing or unexpected:
        raise UnknownModelError(f"{weights} does not match its config: missing {sorted(missing)[:5]}, "
                                f"unexpected {sorted(unexpected)[:5]}")
    model = STABNVideoModel(net, name=name or meta.get("name") or directory.name)
    model.metadata = meta
    _warn_if_unfinished(directory, meta)
    return model.to(device).eval()


def _warn_if_unfinished(directory: Path, meta: dict) -> None:
    """Say so when ``directory`` holds a training run's weights before its last epoch: training
    writes ``model/`` after every epoch, so a run stopped by Ctrl-C leaves a directory that loads
    like a finished model."""
    training = meta.get("training") if isinstance(meta.get("training"), dict) else {}
    done = training.get("epochs_done")
    total = (training.get("train_config") or {}).get("epochs") if isinstance(training.get("train_config"), dict) else None
    if isinstance(done, int) and isinstance(total, int) and done < total:
        command = training.get("command")
        warnings.warn(f"{directory} holds the weights after epoch {done} of {total}: its training stopped before "
                      f"the end (or is still running); "
                      + (f"run `{command}` again to finish it" if command else "resume it to finish it"),
                      UnfinishedTrainingWarning, stacklevel=2)


class UnfinishedTrainingWarning(UserWarning):
    """A model directory holds the weights of an epoch before its training run's last."""



@register_loader("stabn")
def _stabn(rest: str, device: torch.device, **options) -> STABNVideoModel:
    """ST-ABN model directory (model.safetensors + videoxai.json), e.g. from `videoxai stabn train`."""
    return load_stabn(rest, device=device, **options)


register_bundled("demo-stabn", f"stabn:{ASSETS / 'demo_stabn'}",
                 "tiny ST-ABN trained on the synthetic benchmark (bundled)")
register_bundled("demo-stabn-backbone", f"stabn:{ASSETS / 'demo_stabn_backbone'}",
                 "demo-stabn's plain backbone, no attention branch (bundled baseline)")

__all__ = ["save_stabn", "load_stabn", "read_meta", "UnfinishedTrainingWarning", "WEIGHTS", "META"]
