"""The ``videoxai`` command line (Typer + Rich).

Each module of this package adds its commands with a ``register(app)`` function, so a capability
(explain, evaluate, serve, stabn, …) brings its own commands without touching this file.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys

import typer

from ..errors import VideoXAIError

app = typer.Typer(name="videoxai", no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  help="Explain video classifiers: where and when the evidence for a prediction lies.")

def _fold_long_words_in_help() -> None:
    """Typer puts option help in table cells whose default overflow cuts a word longer than the
    column ("ucf24:ROOT[,annotations=FILE.j…" at 80 columns): fold such words onto the next line."""
    from rich.text import Text
    from typer import rich_utils

    make = getattr(rich_utils, "_make_rich_text", None)
    if make is None or getattr(make, "folds", False):  # another Typer, or already done
        return

    def folding(*args, **kwargs):
        out = make(*args, **kwargs)
        if isinstance(out, Text):
            out.overflow = "fold"
        return out

    folding.folds = True
    rich_utils._make_rich_text = folding


_fold_long_words_in_help()

for _info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
    _mod = importlib.import_module(f"{__name__}.{_info.name}")
    if hasattr(_mod, "register"):
        _mod.register(app)


def main() -> None:
    """Entry point: user errors become one red line and exit code 2, not a traceback."""
    from rich.console import Console

    try:
        app(standalone_mode=True)
    except VideoXAIError as e:
        Console(stderr=True, soft_wrap=True).print(f"[bold red]error:[/] {e}")  # one line, never wrapped
        sys.exit(2)
