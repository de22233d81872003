"""``videoxai evaluate`` (``metrics`` is in :mod:`.catalogue`)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from . import DEVICE_HELP, UsageError, check_device, printable

console = Console()

_DATA_HELP = ("Dataset spec KIND:ARGUMENT[,KEY=VALUE…], KIND one of synthetic:N, folder:DIR, "
              "ucf24:ROOT, ssv2:VIDEOS (a path with a comma in double quotes). `videoxai metrics` lists each kind's keys.")
_METHODS_HELP = ("Comma-separated method specs, e.g. staa,gradcam or occlusion(window=4), or 'all' "
                 "(every method the model supports plus the random reference map; the extremal "
                 "perturbation methods on the first 10 clips, and the metrics that re-run them on "
                 "fewer: randomisation 1, max_sensitivity 2). Any spec takes clips=N: only the first "
                 "N clips. `videoxai methods NAME` lists a method's options.")
_METRICS_HELP = ("Comma-separated metric specs, e.g. deletion,pointing_game or insertion(unit=frame), or "
                 "'all' (the standard suite; the metrics that re-run the method on the first clips: "
                 "randomisation 5, max_sensitivity 5, class_sensitivity 20). "
                 "`videoxai metrics` lists them, `videoxai metrics NAME` one in full.")


def evaluate_cmd(
    data: Optional[str] = typer.Option(None, "--data", "-d", help=_DATA_HELP + " Required unless --report-only."),
    model: str = typer.Option("demo", "--model", "-m", help="Model spec: demo, hf:<id|dir>, torchvision:<name>[,weights=download], or a directory."),
    methods: str = typer.Option("all", "--methods", help=_METHODS_HELP),
    metrics: str = typer.Option("all", "--metrics", help=_METRICS_HELP),
    # text, not a Path: typer makes '' the Path '.', and an unset variable ('--out "$OUT"') wrote here
    out: str = typer.Option("videoxai_eval", "--out", "-o", help="Output directory: results.sqlite, report.md/.html, summary.csv, plots."),
    backend: str = typer.Option("local", help="local (worker processes), ray, or inline (this process)."),
    address: Optional[str] = typer.Option(None, help="Ray cluster address (e.g. auto, ray://host:10001); default: a local Ray instance."),
    workers: Optional[int] = typer.Option(None, "--workers", "-j", help="Worker processes (local) or CPUs of a local Ray instance; default: the machine's CPUs."),
    device: str = typer.Option("cpu", help=DEVICE_HELP, callback=check_device),
    target: str = typer.Option("label", help="label: explain the annotated class (the prediction when a clip has none); predicted: the prediction."),
    refine: Optional[bool] = typer.Option(None, "--refine/--no-refine", help="Refine the maps (default: per method)."),
    seed: int = typer.Option(0, help="Seed of the random reference map."),
    limit: Optional[int] = typer.Option(None, min=1, help="Use only the first N clips."),
    report_only: bool = typer.Option(False, "--report-only", help="Only rewrite the report from OUT/results.sqlite."),
) -> None:
    """Compare attribution methods with objective metrics; results are stored as they are computed,
    and running the same command again resumes an interrupted evaluation.

    Example: videoxai evaluate --model demo --data synthetic:100 --methods all --metrics all --out eval
    """
    import warnings

    with warnings.catch_warnings():
        # one line each, as the command's errors are: Python's format added the line of library
        # source that called warn() ('ds = factory(argument, …)'), which means nothing to a user
        from . import show_warning

        warnings.showwarning = show_warning
        _evaluate(data, model, methods, metrics, out, backend, address, workers, device, target, refine, seed,
                  limit, report_only)


def _evaluate(data, model, methods, metrics, out, backend, address, workers, device, target, refine, seed,
              limit, report_only) -> None:
    from ..errors import InputError, VideoXAIError
    from ..evaluation import evaluate, summarise, write_report
    from ..evaluation.backends import WorkerFailed
    from ..evaluation.runner import DATABASE
    from ..evaluation.store import ResultStore

    if not out.strip():
        raise InputError("--out is empty: name the output directory ('.' for this one)")
    out = Path(out)
    if report_only:
        if not (out / DATABASE).is_file():
            raise InputError(f"no results file {out / DATABASE}")
        paths = write_report(out / DATABASE, out)
    else:
        if data is None:
            raise UsageError("Missing option '--data' / '-d': the dataset to evaluate on (only --report-only, "
                             "which rewrites the report from OUT/results.sqlite, needs none)")
        try:
            summary = evaluate(model, data, methods, metrics, out, backend=backend, workers=workers,
                               address=address, device=device, target=target, refine=refine, seed=seed, limit=limit)
        except WorkerFailed as e:
            # what a user needs is that nothing is lost, not a traceback: every row is stored as it comes
            raise VideoXAIError(f"{e}. The results computed so far are stored in {out / DATABASE}: run the same "
                                "command again to resume") from None
        except KeyboardInterrupt:
            # Ctrl-C said only 'aborted': nothing says that the rows computed are kept, or how to go on
            if (out / DATABASE).is_file():
                Console(stderr=True).print(f"interrupted: the results computed so far are stored in "
                                           f"{out / DATABASE}; run the same command again to resume",
                                           markup=False, highlight=False, soft_wrap=True)
            raise
        for name, reason in summary.dropped_methods.items():
            console.print(f"[yellow]skipped {escape(printable(name))}[/]: {escape(printable(str(reason)))}")
        if summary.clips:
            console.print("on the first clips only: " + ", ".join(f"{k} ({n})" for k, n in summary.clips.items()), markup=False)
        console.print(f"{summary.computed} results computed ({summary.errors} errors), {summary.skipped} already "
                      f"stored, in {summary.seconds:.1f} s")
        paths = summary.report
    with ResultStore(out / DATABASE) as store:
        stored = summarise(store)
    _print_table(stored)
    _print_errors(stored)
    console.print(f"report: [bold]{escape(printable(str(paths['html'])))}[/] ({escape(printable(paths['markdown'].name))}, "
                  f"{escape(printable(paths['csv'].name))})")
    if stored.counts.get("error", 0) and not stored.counts.get("ok", 0):
        # an evaluation of nothing but errors (a folder of broken files, a method failing on every
        # clip) exited 0, as a script or a scheduler reads "it worked"; one with results and some
        # errors (a resume recomputing a broken file) still does, its report has something to say
        raise VideoXAIError(f"every result in {out / DATABASE} is an error ({stored.counts['error']}; see above and "
                            "the report); the same command computes them again once the cause is fixed")


def _print_errors(s) -> None:
    """The commonest errors and where they happened (the report lists them too): "(2 errors)"
    alone sent the user to report.md to learn that a file was empty."""
    from ..evaluation.report import _places, _top_errors

    if s.errors:
        console.print("errors (the same command computes these results again):", markup=False, highlight=False)
        for message, where in _top_errors(s, most=5):
            console.print(printable(f"  {message} — {_places(where)}"), markup=False, highlight=False, soft_wrap=True)
        if len(s.errors) > 5:
            console.print(f"  and {len(s.errors) - 5} other errors: see the report", markup=False, highlight=False)


def _print_table(s) -> None:
    """The ranking and each metric's best method (the full table is in the report files)."""
    import math

    from ..evaluation.report import _arrow, _cell_text

    ranking = Table(title=f"ranking ({s.videos} clips)",
                    caption="mean rank over the faithfulness, localisation and randomisation metrics")
    for col in ("rank", "method", "mean rank"):
        ranking.add_column(col, overflow="fold")
    for i, m in enumerate(s.methods, start=1):
        ranking.add_row(str(i), m, f"{s.overall[m]:.2f}" if math.isfinite(s.overall[m]) else "–")
    console.print(ranking)
    best = Table(title="per metric")
    for col in ("metric", "best method", "mean, 95% CI", "α"):
        best.add_column(col, overflow="fold")
    for metric in s.metrics:
        ranked = sorted((r, m) for (m, k), r in s.ranks.items() if k == metric)
        if ranked:
            m = ranked[0][1]
            a = s.alpha.get(metric, math.nan)
            best.add_row(f"{metric} {_arrow(s, metric)}", m, _cell_text(s, m, metric),
                         f"{a:.2f}" if math.isfinite(a) else "–")
    console.print(best)
    from rich.text import Text

    # a metric asked for but missing from the table said nothing here (only the report said why)
    for metric, why in s.unavailable.items():
        console.print(Text.assemble(("no value: ", "yellow"), printable(f"{metric} ({why})")), highlight=False)
    for method, why in s.inapplicable.items():
        console.print(Text.assemble(("no value: ", "yellow"), printable(method + (f" ({why})" if why else ""))), highlight=False)


def register(app: typer.Typer) -> None:
    # the listing of `videoxai --help` shows the docstring's first paragraph with its line break
    app.command("evaluate", short_help=" ".join(evaluate_cmd.__doc__.split("\n\n")[0].split()))(evaluate_cmd)
