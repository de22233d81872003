"""Progress bars for long work (Rich), silent for short work and when not on a terminal.

Every step of a tracked loop is also a cancellation point (:func:`videoxai.work.checkpoint`).
"""

from __future__ import annotations

import os
import sys
from typing import Iterable, Iterator, TypeVar

T = TypeVar("T")

#: below this many steps no bar is drawn; set VIDEOXAI_PROGRESS=0 to silence every bar
MIN_STEPS = 8


def enabled() -> bool:
    flag = os.environ.get("VIDEOXAI_PROGRESS")
    if flag is not None:
        # as the evaluation's heartbeat reads it: VIDEOXAI_PROGRESS=False or OFF silenced it and drew the bars
        return flag.strip().lower() not in ("0", "false", "no", "off")
    return sys.stderr.isatty()


def track(items: Iterable[T], total: int, description: str) -> Iterator[T]:
    """Yield ``items``, drawing a Rich progress bar on stderr when ``total`` is large enough.

    Before each item it checks for cancellation and the work limit (:mod:`videoxai.work`).
    """
    from .work import checkpoint

    if total < MIN_STEPS or not enabled():
        for item in items:
            checkpoint()
            yield item
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
    from rich.console import Console

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeRemainingColumn(), console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(description, total=total)
        for item in items:
            checkpoint()
            yield item
            bar.advance(task)
