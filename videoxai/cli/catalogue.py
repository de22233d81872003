"""``videoxai methods [NAME]`` and ``videoxai metrics [NAME]``: what there is, and one in full.

The listings are read from the registries and the classes themselves — the summary from the
module docstring, the options from the ``__init__`` signature (type, default) and the class
docstring's ``Args:`` / ``Options:`` section (help) — so a new method or metric describes itself.
Every table folds long cells instead of cutting them, so nothing is lost in an 80-column terminal.
"""

from __future__ import annotations

import inspect
import re
import sys
from dataclasses import dataclass
from typing import Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table


def console() -> Console:
    """A console made per command, so that it takes the terminal's width (``COLUMNS``) of now."""
    return Console()


#: what a method's ``requires`` entries ask of a model (or a metric's of a clip), in words
_NEEDS = {"attention": "attention", "token_grid": "a token grid", "cam_layer": "a CAM layer",
          "ground_truth": "annotated masks or boxes", "window": "an annotated evidence window"}


@dataclass
class OptionInfo:
    """One keyword option of a method or metric."""

    name: str
    type: str       # the annotation as written, "" if none
    default: str    # repr of the default, "" if required
    help: str       # from the docstring, "" if undocumented


def table(title: str | None = None, *columns: str) -> Table:
    """A table whose cells wrap, and fold words longer than their column, instead of cutting them."""
    t = Table(title=title)
    for col in columns:
        t.add_column(col, overflow="fold")
    return t


def _first_paragraph(doc: str | None) -> str:
    return " ".join(inspect.cleandoc(doc or "").split("\n\n")[0].split())


#: reStructuredText a terminal shows as markup: roles (:class:`~a.b.C` → C) and literals (``x`` → x)
_ROLE = re.compile(r":[a-z]+:`~?([^`<]*?)(?:\s*<[^>]*>)?`")
_LITERAL = re.compile(r"``([^`]+)``")


def plain(text: str) -> str:
    """Docstring text as a terminal should show it: roles reduced to the name they show (the last
    part of a ``~``-path), double-backquoted literals without their quotes. Rich markup in the
    text is escaped (``[B, T]`` is not a style)."""
    text = _ROLE.sub(lambda m: m.group(1).rsplit(".", 1)[-1] if m.group(0).count("~") else m.group(1), text)
    return escape(_LITERAL.sub(r"\1", text))


def summary(cls: type) -> str:
    """One paragraph on what ``cls`` is, as plain text: its own docstring's first, unless that only
    points at the module docstring (``"Grad-CAM; see the module docstring."``), then the module's
    first. A module docstring that opens with the method's own name (``"``stabn`` — …"``) loses it:
    the listing already shows the name."""
    own = _first_paragraph(cls.__dict__.get("__doc__"))
    text = own if own and "module doc" not in own else (_first_paragraph(sys.modules[cls.__module__].__doc__) or own)
    name = getattr(cls, "name", "")
    for lead in (f"``{name}`` — ", f"``{name}`` - ", f"{name} — "):
        if name and text.startswith(lead):
            text = text[len(lead):]
            text = text[:1].upper() + text[1:]
    return plain(text)


def models_text(cls: type) -> str:
    """The models a method explains, in words: its own :attr:`applies_to`, else its requirements."""
    return getattr(cls, "applies_to", "") or needs(cls.requires)


def options(cls: type) -> list[OptionInfo]:
    """The options of ``cls`` as declared (:mod:`videoxai.options`): type and range in words,
    default, and the help line (``Opt(help=…)`` or the docstring's ``Args:`` entry)."""
    from ..options import format_value

    def help_of(o) -> str:
        also = f" (also read as {', '.join(o.aliases)})" if o.aliases else ""
        return plain(o.help) + also

    return [OptionInfo(o.name, o.describe(), "" if o.required else format_value(o.default), help_of(o))
            for o in cls.declared_options().values()]


def needs(requires: tuple[str, ...], of: str = "model") -> str:
    """What a model (or, for a metric, a clip) must provide, in words."""
    if not requires:
        return f"any {of}"
    words = f"{of}s with " + " and ".join(_NEEDS.get(r, r) for r in requires)
    return words + (" (video transformers)" if "attention" in requires else "")


def _options_table(title: str, opts: list[OptionInfo]) -> Table:
    t = table(title, "option", "type", "default", "help")
    for o in opts:
        t.add_row(o.name, o.type, o.default, o.help)
    return t


# -- methods ------------------------------------------------------------------------------------
def methods_cmd(name: Optional[str] = typer.Argument(None, help="A method: show its summary, paper, options "
                                                            "and the models it applies to."),
                model: Optional[str] = typer.Option(None, "--model", "-m", help="Only the methods that can "
                                                    "explain this model (a model spec, as for explain).")) -> None:
    """List the attribution methods, or describe one (videoxai methods gradcam)."""
    from ..methods import available, get

    out = console()

    if name is None:
        vm, skipped = None, {}
        if model is not None:
            from ..models import load_model

            vm = load_model(model)
        title = "methods (videoxai methods NAME for one in full)"
        t = table(title if vm is None else f"methods for {escape(vm.name)} ({vm.family})", "name", "what", "models")
        for n in available():
            cls = get(n)
            if vm is not None and not cls.supports(vm):
                skipped[n] = cls.unsupported(vm)
                continue
            t.add_row(n, summary(cls), models_text(cls))
        out.print(t)
        for why in skipped.values():
            out.print(f"not applicable: {escape(why)}")
        return
    cls = get(name)  # an unknown name: one line naming the alternatives
    vm = None
    if model is not None:  # loaded first: an unknown model is one line, not a description and then the error
        from ..models import load_model

        vm = load_model(model)
    out.print(f"[bold]{name}[/] — {summary(cls)}")
    out.print(f"paper: {cls.paper or '–'}")
    out.print(f"models: {models_text(cls)}")
    if vm is not None:  # was ignored with a NAME: say whether it applies to that model
        why = cls.unsupported(vm)
        # a model's name is its directory's: text, not Rich markup ('m[red]x' printed as 'mx')
        from . import printable

        out.print(escape(printable(f"{vm.name} ({vm.family}): " + ("applicable" if why is None else f"not applicable: {why}"))))
    if cls.evaluation_clips:
        out.print(f"evaluation: `--methods all` runs it on the first {cls.evaluation_clips} clips")
    out.print(_options_table("options (videoxai explain … -O NAME=VALUE; vx.explain(…, NAME=VALUE))",
                                 options(cls)))


# -- metrics ------------------------------------------------------------------------------------
def metrics_cmd(name: Optional[str] = typer.Argument(None, help="A metric: show its summary, which way is "
                                                            "better, and its options.")) -> None:
    """List the metrics (family, which way is better, options) and the dataset kinds, or describe one."""
    from .. import metrics as vm
    from ..data.datasets import dataset_kinds

    out = console()

    if name is not None:
        cls = vm.get(name)
        what = summary(cls)
        out.print(f"[bold]{name}[/] ({cls.family}) — {what}")
        out.print(f"better: {_better(name, cls)}")
        if cls.bounds is not None:  # the values it can take: a rate, a correlation, a distance
            out.print(f"range: {_range(cls.bounds)}")
        if cls.requires:
            out.print(f"needs: {needs(cls.requires, of='clip')}")
        about = plain(_first_paragraph(sys.modules[cls.__module__].__doc__))
        if about and about != what:  # deletion's summary is its module's: not twice
            out.print(f"about: {about}")
        out.print(_options_table(f"options (spec: {name}(option=value, …))", options(cls)))
        return
    t = table("metrics (spec: name(option=value, …); videoxai metrics NAME for one in full)",
              "name", "family", "better", "options (defaults)")
    for n in vm.available():
        cls = vm.get(n)
        opts = ", ".join(f"{o.name}={o.default}" for o in options(cls))
        t.add_row(n, cls.family, _better(n, cls), opts or "–")
    out.print(t)
    out.print("--metrics all = " + ", ".join(vm.SUITE))
    kinds = table("datasets (--data kind:argument[,key=value…])", "kind", "spec")
    for kind, help_line in dataset_kinds().items():
        kinds.add_row(kind, help_line)
    out.print(kinds)


def _range(bounds: tuple[float, float]) -> str:
    lo, hi = (f"{b:g}".replace("inf", "∞") for b in bounds)
    return f"[{lo}, {hi}" + (")" if hi.endswith("∞") else "]")


def _better(name: str, cls: type) -> str:
    better = "higher" if cls().higher_is_better else "lower"
    return better + (" (order=morf)" if name in ("deletion", "insertion") else "")


def register(app: typer.Typer) -> None:
    app.command("methods")(methods_cmd)
    app.command("metrics")(metrics_cmd)
