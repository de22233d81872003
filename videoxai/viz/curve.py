"""The temporal importance of a clip's frames as a figure.

Figures are built on :class:`matplotlib.figure.Figure` with the Agg canvas directly, never
through ``pyplot``: no GUI backend is touched, no global figure state is kept, and the functions
are safe to call from a server's worker threads.
"""

from __future__ import annotations

import numbers
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..explanation import Explanation
from .fonts import figure_families
from .overlay import check_scores
from .page import plain

__all__ = ["temporal_curve", "check_window", "PALETTE"]

#: Method colours (colour-blind-safe, Okabe–Ito), shared by the report so each method keeps its colour.
PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000")
_BAR = "#9AA5B8"
_TOP = "#D55E00"
_WINDOW = "#2CA02C"
_MOST = 60  # characters of a class or method name drawn in a figure (the rest: "…")


def temporal_curve(exp: Explanation | Sequence[Explanation], path: str | Path | None = None, *,
                   window: tuple[float, float] | None = None, ax=None, top_k: int = 3,
                   title: str | None = None, names: Sequence[str] | None = None, dpi: int = 150):
    """Plot per-frame temporal importance against source frame indices.

    One explanation is drawn as bars with its ``top_k`` frames highlighted and labelled;
    several (methods compared on one clip) as lines with markers, each method's top frame
    ringed. A dashed line marks the uniform level ``1/T`` (no temporal preference).

    Args:
        exp: an :class:`~videoxai.Explanation` or a list of them (same clip).
        path: if given, write the figure there and return its path: in the format its suffix
            names (``.png``, ``.svg``, ``.pdf``, …; PNG without a suffix).
        window: optional ground-truth ``(start, end)`` in source frame indices, ``start``
            included and ``end`` excluded; shaded.
        ax: draw into this matplotlib ``Axes`` instead of a new figure.
        top_k: frames to highlight (single explanation).
        title: figure title, matplotlib text (``$…$`` is mathtext); default: method and label,
            drawn as written.
        names: legend names, one per explanation (default: their method names), drawn as written.
        dpi: resolution of the PNG.

    Returns:
        The image's :class:`~pathlib.Path` if ``path`` is given, else the matplotlib ``Figure``.
    """
    exps = [exp] if isinstance(exp, Explanation) else list(exp)
    if not exps or not all(isinstance(e, Explanation) for e in exps):
        raise InputError("temporal_curve needs an Explanation or a non-empty list of them")
    image_format = None if path is None else _image_format(path)
    check_count("top_k", top_k, 0)
    window = check_window(window)
    if isinstance(dpi, bool) or not isinstance(dpi, numbers.Real) or not 0 < dpi < float("inf"):
        raise InputError(f"dpi must be a positive number, got {dpi!r}")
    for e in exps:
        check_scores(e)
    from matplotlib.ticker import MaxNLocator

    if ax is None:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        fig = Figure(figsize=(7.0, 2.9), layout="constrained")
        FigureCanvasAgg(fig)
        ax = fig.add_subplot()
    else:
        fig = ax.figure

    x0 = np.asarray(exps[0].frame_indices, dtype=np.float64)
    spacing = float(np.min(np.diff(np.unique(x0)))) if np.unique(x0).size > 1 else 1.0
    names = [e.method for e in exps] if names is None else [str(n) for n in names]
    if len(names) != len(exps):
        raise InputError(f"names has {len(names)} entries for {len(exps)} explanations")
    # drawn as written: no mathtext from a name's "$"; the keys share one row above the plot
    names = [plain(n, max(12, _MOST * 2 // (len(names) + 1))) for n in names]
    handles = (_bars(ax, exps[0], names[0], top_k, spacing) if len(exps) == 1
               else _lines(ax, exps, names))
    if window is not None:
        start, end = window
        # frame k covers [k - 1/2, k + 1/2) on the axis
        handles.append(ax.axvspan(start - 0.5, end - 0.5, color=_WINDOW, alpha=0.13, lw=0,
                                  label="ground truth", zorder=0))
    frames = np.unique(x0).size   # the video's frames, each once
    handles.append(ax.axhline(1.0 / frames, color="#666", lw=0.8, ls=(0, (4, 3)), label="uniform"))

    ax.set_xlabel("source frame" if not np.array_equal(x0, np.arange(len(x0))) else "frame")
    ax.set_ylabel("temporal importance")
    ax.set_ylim(0, max(float(max(_per_source_frame(e)[1].max() for e in exps)) * 1.22, 1.5 / frames))
    ax.set_xlim(x0.min() - spacing * 0.7, x0.max() + spacing * 0.7)
    # frames are whole numbers: a clip of one or a few frames was ticked -0.6, -0.4, …, 0.6
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
    ax.spines[["top", "right"]].set_visible(False)
    ax.grid(axis="y", color="#e5e7eb", lw=0.6)
    ax.set_axisbelow(True)
    if title is None:
        # the class name is the model's: drawn as written
        label = plain(exps[0].label, _MOST)
        title = (f"{plain(exps[0].method, _MOST)} — {label} ({exps[0].score:.0%})" if len(exps) == 1
                 else f"temporal importance — {label}")
    # keys above the plot, where they cannot hide a bar or a line: one row, or as many as their
    # text needs (eight methods with long names in one row left the plot no width at all)
    chars = sum(len(h.get_label()) + 6 for h in handles)
    rows = -(-chars // 120)
    # class and method names in any script: DejaVu Sans, then installed fonts that have the glyphs
    ax.set_title(title, fontsize=10, loc="left", pad=6 + 12 * rows,   # above the keys
                 fontfamily=figure_families(title))
    ax.legend(handles=handles, loc="lower right", bbox_to_anchor=(1.0, 1.0),
              prop={"size": 7, "family": figure_families(*(h.get_label() for h in handles))}, frameon=False, ncols=-(-len(handles) // rows), borderaxespad=0.1, handlelength=1.6,
              columnspacing=1.2)
    if path is None:
        return fig
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, format=image_format, facecolor="white")
    return path


def _image_format(path: str | Path) -> str:
    """The image format ``path``'s suffix names (``"png"`` without one), checked before anything is
    drawn: every curve was PNG, so ``curve.svg`` and ``curve.pdf`` were PNG files under those
    names, and a folder failed as Python's IsADirectoryError after the drawing."""
    from matplotlib.backend_bases import FigureCanvasBase

    text = os.fspath(path)
    if Path(path).is_dir() or str(text).endswith(("/", os.sep)):
        raise InputError(f"cannot write the curve to {text}: it is a folder; give a file such as "
                         f"{Path(path) / 'curve.png'}")
    suffix = Path(path).suffix.lower()
    supported = FigureCanvasBase.get_supported_filetypes()
    if suffix and suffix[1:] not in supported:
        raise InputError(f"cannot write the curve to {text}: unknown image suffix {suffix!r}; use one of "
                         f"{', '.join('.' + k for k in sorted(supported))}")
    return suffix[1:] or "png"


def check_window(window) -> tuple[float, float] | None:
    """A ground-truth window as two finite numbers ``(start, end)``, ``start < end``, or ``None``.

    A NaN or infinite end shaded nothing without a word (matplotlib draws a span to infinity as
    NaN), and a window of one number or of text failed with Python's unpacking errors."""
    if window is None:
        return None
    try:
        start, end = (float(v) for v in window)
    except (TypeError, ValueError):
        start = end = float("nan")
    if not (np.isfinite(start) and np.isfinite(end) and start < end) or any(isinstance(v, bool) for v in window):
        raise InputError(f"window must be (start, end), two finite frame indices with start < end, got {window!r}")
    return start, end


def check_count(name: str, value, least: int) -> int:
    """``value`` as a whole number of at least ``least``, or a one-line error naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < least:
        raise InputError(f"{name} must be a whole number of at least {least}, got {value!r}")
    return int(value)


def _per_source_frame(e: Explanation) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(x, y, order)``: the video's frames, their temporal scores and their places from the most
    important. A video shorter than the model's clip fills its places with repeats (one frame, all
    8): a frame's score is the sum over its places, drawn once (eight bars of 1/8 were stacked on
    frame #0 under a 'uniform' line at 1/8)."""
    x = np.asarray(e.frame_indices, dtype=np.float64)
    y = np.asarray(e.temporal, dtype=np.float64)
    if np.unique(x).size == x.size:
        return x, y, np.asarray(e.top_frames(len(y)))
    ux, inverse = np.unique(x, return_inverse=True)
    uy = np.bincount(inverse, weights=y, minlength=ux.size)
    return ux, uy, np.argsort(-uy, kind="stable")


def _bars(ax, exp: Explanation, name: str, top_k: int, spacing: float) -> list:
    from matplotlib.patches import Patch

    x, y, order = _per_source_frame(exp)
    top = order[:min(top_k, len(y))]
    colors = np.array([_BAR] * len(y), dtype=object)
    colors[top] = _TOP
    ax.bar(x, y, width=spacing * 0.8, color=list(colors))
    for k in top:
        ax.annotate(f"#{int(x[k])}", (x[k], y[k]), xytext=(0, 2), textcoords="offset points",
                    ha="center", va="bottom", fontsize=7, color=_TOP)
    return [Patch(color=_BAR, label=name), Patch(color=_TOP, label=f"top {len(top)}")]


def _lines(ax, exps: Sequence[Explanation], names: Sequence[str]) -> list:
    handles = []
    for i, (e, name) in enumerate(zip(exps, names)):
        x, y, order = _per_source_frame(e)
        c = PALETTE[i % len(PALETTE)]
        # past the palette's eight colours a method's line is told apart by its dashes and marker
        # (the ninth method was drawn exactly as the first, and its key with it)
        cycle = i // len(PALETTE)
        handles += ax.plot(x, y, marker="osD^v"[cycle % 5], ms=3.5, lw=1.5, color=c, label=name,
                           linestyle=("-", "--", ":", "-.")[cycle % 4])
        k = int(order[0])  # ring each method's most important frame
        ax.plot([x[k]], [y[k]], marker="o", ms=9, mfc="none", mec=c, mew=1.5)
    return handles
