"""An output folder made for a run, and taken away again if the run is refused before it writes.

``explain``, ``demo`` and ``evaluate`` create their ``--out`` (and its missing parents) before
checking the model, the data and the methods, so that a folder they cannot create fails first;
a run refused after that left an empty folder under the name the user chose.
"""

from __future__ import annotations

from pathlib import Path


def make_directory(out: Path) -> list[Path]:
    """Create ``out`` and its missing parents; the directories this created, innermost first."""
    missing, folder = [], out
    while not folder.exists() and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    out.mkdir(parents=True, exist_ok=True)
    return missing


def remove_if_empty(created: list[Path]) -> None:
    """Remove the directories :func:`make_directory` created, innermost first, while empty."""
    for folder in created:
        try:
            folder.rmdir()
        except OSError:
            return
