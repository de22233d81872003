"""Evaluate attribution methods with objective metrics over a dataset, locally or on Ray.

:func:`evaluate` runs methods × metrics, stores each result in SQLite as it is computed and
resumes where it stopped; :func:`write_report` turns the results file into a ranked table with
confidence intervals, plots and an HTML page. The CLI is ``videoxai evaluate``.
"""

from __future__ import annotations

from .report import Summary, summarise, write_report
from .runner import EvalSummary, Selection, evaluate, resolve_methods, resolve_metrics
from .store import ExplanationRow, ResultRow, ResultStore
from .tasks import RANDOM, Task

__all__ = ["evaluate", "EvalSummary", "write_report", "summarise", "Summary", "ResultStore", "ResultRow",
           "ExplanationRow", "resolve_methods", "resolve_metrics", "Selection", "RANDOM", "Task"]
