"""Cooperative cancellation and work limits for long explanations.

An explanation can run for minutes (RISE with 20 000 masks, occlusion with a one-pixel box). A
caller that may have to stop it (the service: a client deleted its job, a stream went away, the
server is shutting down) or that must bound the work one request causes runs it inside
:func:`work_scope`. The loops every method goes through (:func:`videoxai.core.batching.batched`
and :func:`videoxai.progress.track`) call :func:`checkpoint` between batches, which raises
:class:`Cancelled` or :class:`WorkLimitExceeded`; so a running explanation stops within one
batch, without any method knowing about it. Outside a scope a checkpoint costs one lookup.

>>> budget = WorkBudget(max_forward_passes=5000)
>>> with work_scope(model, cancel=event, budget=budget):
...     vx.explain(model, clip, method="rise")
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Iterator

from .errors import VideoXAIError


class Cancelled(VideoXAIError):
    """The explanation was cancelled (the caller set the scope's cancel event)."""


class WorkLimitExceeded(VideoXAIError):
    """The explanation sent more clips through the model than its budget allows."""


@dataclass
class WorkBudget:
    """Forward passes one piece of work (a job of many windows) may spend, across scopes.

    Attributes:
        max_forward_passes: the limit (clips through the model's forward; a batch of 8 counts 8).
        used: passes spent by scopes that have ended.
    """

    max_forward_passes: int
    used: int = 0


@dataclass
class _Scope:
    counter: object                  # the model's PassCounter (``.forward``)
    cancel: threading.Event | None
    budget: WorkBudget | None
    start: int = field(init=False)

    def __post_init__(self) -> None:
        self.start = self.counter.forward

    def spent(self) -> int:
        return self.counter.forward - self.start

    def check(self) -> None:
        if self.cancel is not None and self.cancel.is_set():
            raise Cancelled("the explanation was cancelled")
        if self.budget is not None:
            total = self.budget.used + self.spent()
            if total > self.budget.max_forward_passes:
                raise WorkLimitExceeded(f"the explanation used {total} forward passes, over its limit of "
                                        f"{self.budget.max_forward_passes}")


_current: ContextVar[_Scope | None] = ContextVar("videoxai_work_scope", default=None)


@contextmanager
def work_scope(model, cancel: threading.Event | None = None, budget: WorkBudget | None = None) -> Iterator[None]:
    """Run the body cancellable by ``cancel`` and within ``budget`` (both optional).

    Args:
        model: the :class:`~videoxai.models.base.VideoModel` whose forward passes count.
        cancel: once set, the next checkpoint raises :class:`Cancelled`.
        budget: the next checkpoint after its limit is passed raises :class:`WorkLimitExceeded`;
            the passes spent inside the scope are added to ``budget.used`` on exit.

    The scope belongs to the thread (context) that enters it, so the explanation must run on it.
    It holds the model's lock (:meth:`~videoxai.models.base.VideoModel.exclusive`, re-entrant) for
    its length: the passes it counts are the model's, and another thread's explanation running
    when the scope began would otherwise have counted against this budget.
    """
    with model.exclusive():
        scope = _Scope(model.passes, cancel, budget)
        token = _current.set(scope)
        try:
            scope.check()  # cancelled before it began: do not begin
            yield
        finally:
            _current.reset(token)
            if budget is not None:
                budget.used += scope.spent()


def checkpoint() -> None:
    """Raise :class:`Cancelled` / :class:`WorkLimitExceeded` if the current scope says so."""
    scope = _current.get()
    if scope is not None:
        scope.check()
