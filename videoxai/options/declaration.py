"""What an option is: :class:`Option` (name, type, default, :class:`Opt`) read from a signature.

:func:`declared_options` reads a function's keyword parameters (annotation = type, default =
default); :func:`documented_args` reads the help lines of a Google-style ``Args:`` section, for
options declared without ``Opt(help=...)``. :class:`OptionError` is the one error form every
option mistake takes.
"""

from __future__ import annotations

import inspect
import re
import typing
from dataclasses import dataclass
from typing import Annotated, Any, Callable, get_args, get_origin

from ..errors import InputError
from .annotation import _PLAIN, Opt
from .coercion import _coerce, _Mismatch, describe, shown
from .spec import format_value


class OptionError(InputError):
    """An option is unknown or its value has the wrong type or range (one message form)."""


@dataclass(frozen=True)
class Option:
    """One declared option: its name, type (without ``Annotated``), default and :class:`Opt`."""

    name: str
    type: Any
    default: Any = inspect.Parameter.empty
    opt: Opt = _PLAIN

    @property
    def required(self) -> bool:
        return self.default is inspect.Parameter.empty

    @property
    def help(self) -> str:
        return self.opt.help

    def describe(self) -> str:
        return describe(self.type, self.opt)

    def parse(self, value, owner: str, given_as: str | None = None):
        """``value`` (text, JSON or Python) as this option's type, checked and normalised.

        ``given_as``: the alias the user wrote, named in the error beside the option's name.
        """
        try:
            out = _coerce(value, self.type, self.opt)
        except _Mismatch as e:
            name = self.name if given_as in (None, self.name) else f"{self.name} (given as {given_as})"
            why = f", which {e}" if e.args else ""  # holds the digit '٣' …
            raise OptionError(f"{owner}: option {name} must be {self.describe()}, got {shown(value)}{why}") from None
        return self.opt.normalise(out) if self.opt.normalise is not None else out

    @property
    def aliases(self) -> tuple[str, ...]:
        return self.opt.aliases

    def line(self) -> str:
        """``n_samples=1000 (an integer ≥ 1): random masks`` for option listings."""
        head = self.name if self.required else f"{self.name}={format_value(self.default)}"
        short = re.split(r"(?<=[a-z0-9)])\. ", self.help)[0].rstrip(".")
        also = f"; also read as {', '.join(self.aliases)}" if self.aliases else ""
        return f"{head} ({self.describe()}{also})" + (f": {short}" if short else "")

    def to_dict(self) -> dict:
        """JSON-friendly description (for ``/api/info`` and ``videoxai methods``)."""
        d = {"name": self.name, "type": self.describe(), "help": self.help}
        if not self.required:
            d["default"] = _jsonable(self.default)
        if self.aliases:
            d["aliases"] = list(self.aliases)
        return d


def _jsonable(v):
    if isinstance(v, tuple):
        return [_jsonable(a) for a in v]
    if v is None or isinstance(v, (bool, int, float, str, list, dict)):
        return v
    return repr(v)


def declared_options(fn: Callable, skip: int = 0) -> dict[str, Option]:
    """The options declared by ``fn``'s parameters after the first ``skip`` (``self``, ``model``).

    ``*args`` / ``**kwargs`` declare nothing.
    """
    sig = inspect.signature(fn)
    try:
        hints = typing.get_type_hints(fn, include_extras=True)
    except Exception:  # an annotation that does not resolve: that option is untyped
        hints = {}
    out = {}
    for p in list(sig.parameters.values())[skip:]:
        if p.kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD):
            continue
        tp, opt = hints.get(p.name, Any), _PLAIN
        if get_origin(tp) is Annotated:
            tp, *meta = get_args(tp)
            opt = next((m for m in meta if isinstance(m, Opt)), _PLAIN)
        out[p.name] = Option(p.name, tp, p.default, opt)
    return out


_SECTION = re.compile(r"^\s*(Args|Arguments|Options|Parameters)\b.*:\s*$")
_ENTRY = re.compile(r"^(\s*)([A-Za-z_][A-Za-z0-9_]*(?:\s*,\s*[A-Za-z_][A-Za-z0-9_]*)*)\s*(?:\([^)]*\))?:\s*(.*)$")


def documented_args(doc: str | None) -> dict[str, str]:
    """``{name: its description}`` from a Google-style ``Args:`` / ``Options:`` section.

    ``a, b: text`` documents both; ``a: x; b: y`` on one line documents each.
    """
    out: dict[str, str] = {}
    lines = inspect.cleandoc(doc or "").splitlines()
    i = 0
    while i < len(lines):
        if not _SECTION.match(lines[i]):
            i += 1
            continue
        i += 1
        indent = None
        while i < len(lines) and (not lines[i].strip() or lines[i].startswith(" ")):
            m = _ENTRY.match(lines[i])
            if m and (indent is None or len(m.group(1)) == indent):
                indent = len(m.group(1))
                text = m.group(3)
                while i + 1 < len(lines) and len(lines[i + 1]) - len(lines[i + 1].lstrip()) > indent:
                    i += 1
                    text += " " + lines[i].strip()
                for part in re.split(r";\s*(?=[A-Za-z_][A-Za-z0-9_]*:)", m.group(2) + ": " + text):
                    names, _, line = part.partition(":")
                    line = re.sub(r":\w+:`~?([^`]+)`", r"\1", line).replace("``", "").strip()
                    for n in names.split(","):
                        out.setdefault(n.strip(), line)
            i += 1
    return out
