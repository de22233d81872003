"""Typed options, declared once, and the one parser that reads them from any source.

A method, a metric or a dataset declares its options as the keyword parameters of its
``__init__`` (or factory function): the annotation is the type, the default is the default, and an
:class:`Opt` in ``typing.Annotated`` adds a range, a normalisation and a one-line help::

    def __init__(self, model, n_samples: Annotated[int, Opt(ge=1, help="random masks")] = 1000,
                 p_keep: Annotated[float, Opt(gt=0, lt=1, help="share of cells kept")] = 0.5,
                 output: Literal["probability", "logit"] = "probability") -> None:

:func:`parse_value` turns what a user typed into that type, whatever the source: text from the
CLI (``-O n_samples=500``), from a spec (``rise(n_samples=500)``) or a dataset spec, JSON values
from the service, or Python values from the library. The rules are the same everywhere:
booleans are ``true/false/1/0/yes/no`` and nothing else, numbers are finite (no NaN, no ``inf``,
no ``1e400``), lists are ``[a, b]`` (or ``a,b`` on the command line), ``Literal`` types list the
choices, and every mistake is an :class:`OptionError` of one form::

    method 'rise': option n_samples must be an integer ≥ 1, got 'abc'

:class:`Configurable` is the base of methods and metrics: it parses the options before the
subclass's ``__init__`` runs (so the subclass sees typed, checked values), records them in
``options`` and gives the canonical :attr:`~Configurable.spec` (non-default options, sorted,
normalised), the key that results are stored under. The spec grammar (:func:`parse_spec`,
:func:`format_spec`) lives here too.

This module is at the bottom of the package: it imports nothing from videoxai but the errors.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import difflib
import functools
import inspect
import json
import math
import re
import types
import typing
from dataclasses import dataclass
from typing import Annotated, Any, Callable, ClassVar, Literal, Union, get_args, get_origin

import numpy as np

from .errors import InputError, VideoXAIError

__all__ = ["Opt", "Option", "OptionError", "Configurable", "declared_options", "parse_value",
           "parse_options", "canonical_names", "parse_spec", "format_spec", "split_top_level",
           "parse_assignments", "triple", "as_list"]


class OptionError(InputError):
    """An option is unknown or its value has the wrong type or range (one message form)."""


@dataclass(frozen=True)
class Opt:
    """What ``typing.Annotated`` adds to an option's type.

    Attributes:
        help: one line for ``videoxai methods`` / ``metrics`` and the service's info.
        ge, gt, le, lt: bounds of a number (of every number in a list).
        normalise: applied to the parsed value, to make equivalent values equal (``4`` and
            ``[4, 4, 4]`` for a box size); the canonical spec stores its result.
        aliases: other names the option is read under (a former name, a peer library's name);
            values given under one are stored under the option's own name, so
            ``deletion(steps=64)`` and ``deletion(n_steps=64)`` are one spec.
    """

    help: str = ""
    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    normalise: Callable[[Any], Any] | None = None
    aliases: tuple[str, ...] = ()

    def range_text(self) -> str:
        def g(v):  # an int bound as it is: 2**64 - 1 is not 1.84467e+19
            return str(v) if isinstance(v, int) else f"{v:g}"
        lo = (f"[{g(self.ge)}" if self.ge is not None else f"({g(self.gt)}" if self.gt is not None else None)
        hi = (f"{g(self.le)}]" if self.le is not None else f"{g(self.lt)})" if self.lt is not None else None)
        if lo and hi:
            return f"in {lo}, {hi}"
        if lo:
            return f"≥ {g(self.ge)}" if self.ge is not None else f"> {g(self.gt)}"
        if hi:
            return f"≤ {g(self.le)}" if self.le is not None else f"< {g(self.lt)}"
        return ""

    def in_range(self, v: float) -> bool:
        return not ((self.ge is not None and v < self.ge) or (self.gt is not None and v <= self.gt)
                    or (self.le is not None and v > self.le) or (self.lt is not None and v >= self.lt))


_PLAIN = Opt()


def triple(v: int | tuple[int, int, int] | None) -> tuple[int, int, int] | None:
    """Normalisation of a ``(frames, rows, cols)`` size given as one int or three."""
    return (v, v, v) if isinstance(v, int) else v


def as_list(v):
    """Normalisation of "one value or a list of them": always a list."""
    return list(v) if isinstance(v, (list, tuple)) else [v]


class _Mismatch(Exception):
    pass


_TRUE, _FALSE = ("true", "1", "yes"), ("false", "0", "no")
_INT = re.compile(r"^[+-]?\d+$")


def _is_none(v) -> bool:
    return v is None or (isinstance(v, str) and v.strip().lower() in ("none", "null"))


def _items(v) -> list:
    """A list value from a Python sequence, a 1-D array or text (``[a, b]``, ``(a, b)`` or
    ``a,b``); one value alone is a list of one, as the text ``a`` is (``layers=-1`` from Python
    is ``layers="-1"`` from the command line)."""
    if isinstance(v, (list, tuple)):
        return list(v)
    if isinstance(v, np.ndarray):
        if v.ndim > 1:
            raise _Mismatch
        return v.tolist() if v.ndim else [v.item()]
    if isinstance(v, str):
        s = v.strip()
        if s[:1] in "[(" and s[-1:] in "])":
            s = s[1:-1]
        return [_unquote(p) for p in split_top_level(s, ",")] if s.strip() else []
    if isinstance(v, (bool, int, float)):
        return [v]
    raise _Mismatch


def _unquote(text: str) -> str:
    """``"blur"`` (a JSON string) → ``blur``; anything else as is."""
    t = text.strip()
    if len(t) >= 2 and t[0] == t[-1] == '"':
        try:
            return json.loads(t)
        except json.JSONDecodeError:
            pass
    return t


def _loose(v):
    """An undeclared type: text is read as JSON if it is JSON, else kept as text."""
    if isinstance(v, str):
        try:
            out = json.loads(v)
        except json.JSONDecodeError:
            return v
        if isinstance(out, float) and not math.isfinite(out):
            raise _Mismatch
        return out
    return v


def _coerce(v, tp, opt: Opt):
    if isinstance(v, np.generic):
        # np.int64(8) from an argmax or a NumPy config is the number 8 (was "must be an integer")
        v = v.item()
    if tp is Any or tp is inspect.Parameter.empty:
        return _loose(v)
    origin = get_origin(tp)
    if origin is Annotated:  # a nested declaration: its own range
        return _coerce(v, get_args(tp)[0], _inner_opt(tp, opt))
    if origin is Union or origin is types.UnionType:
        members = get_args(tp)
        if type(None) in members and _is_none(v):
            return None
        # text is tried against the typed members first: "4" is an int before it is a string
        for m in sorted((m for m in members if m is not type(None)), key=lambda m: m is str):
            try:
                return _coerce(v, m, opt)
            except _Mismatch:
                pass
        raise _Mismatch
    if tp is type(None):
        if _is_none(v):
            return None
        raise _Mismatch
    if origin is Literal:
        for c in get_args(tp):
            if (type(v) is type(c) and v == c) or (isinstance(v, str) and not isinstance(c, str) and v.strip() == str(c)):
                return c
        raise _Mismatch
    if tp is bool:
        if isinstance(v, bool):
            return v
        if isinstance(v, int) and v in (0, 1):
            return bool(v)
        if isinstance(v, str) and v.strip().lower() in _TRUE + _FALSE:
            return v.strip().lower() in _TRUE
        raise _Mismatch
    if tp is int:
        if isinstance(v, bool):
            raise _Mismatch
        if isinstance(v, int):
            out = v
        elif isinstance(v, float) and math.isfinite(v) and v.is_integer():
            out = int(v)
        elif isinstance(v, str) and _INT.match(v.strip()):
            out = int(v.strip())
        else:
            raise _Mismatch
        if not opt.in_range(out):
            raise _Mismatch
        return out
    if tp is float:
        if isinstance(v, bool):
            raise _Mismatch
        if isinstance(v, (int, float)):
            out = float(v) if abs(v) < 1e308 or isinstance(v, float) else math.inf
        elif isinstance(v, str):
            try:
                out = float(v.strip())
            except ValueError:
                raise _Mismatch from None
        else:
            raise _Mismatch
        if not math.isfinite(out) or not opt.in_range(out):
            raise _Mismatch
        return out
    if tp is str:
        if isinstance(v, str):
            return v
        raise _Mismatch
    if origin in (list, tuple, collections.abc.Sequence) or tp in (list, tuple):
        items, args = _items(v), get_args(tp)
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(items) != len(args):
                raise _Mismatch
            return tuple(_coerce(i, a, opt) for i, a in zip(items, args))
        out = [_coerce(i, args[0] if args else Any, opt) for i in items]
        return tuple(out) if (origin is tuple or tp is tuple) else out
    if tp is dict or origin is dict:
        if isinstance(v, str):
            try:
                v = json.loads(v)
            except json.JSONDecodeError:
                raise _Mismatch from None
        if isinstance(v, dict):
            return v
        raise _Mismatch
    if origin is collections.abc.Callable or tp is collections.abc.Callable or tp is typing.Callable:
        if callable(v) and not isinstance(v, (str, type)):
            return v
        raise _Mismatch
    if isinstance(tp, type):
        if isinstance(v, tp):
            return v
        raise _Mismatch
    return v


def _inner_opt(tp, outer: Opt) -> Opt:
    return next((m for m in get_args(tp)[1:] if isinstance(m, Opt)), outer)


_NOUNS = {int: ("an integer", "integers"), float: ("a number", "numbers"), str: ("a string", "strings"),
          bool: ("true or false", "booleans"), type(None): ("none", "none")}


def describe(tp, opt: Opt = _PLAIN, plural: bool = False) -> str:
    """What a value of type ``tp`` must be, in words: ``"an integer ≥ 1"``."""
    origin = get_origin(tp)
    if origin is Annotated:
        return describe(get_args(tp)[0], _inner_opt(tp, opt), plural)
    if origin is Union or origin is types.UnionType:
        members = sorted(get_args(tp), key=lambda m: m is type(None))
        return " or ".join(describe(m, opt, plural) for m in members)
    if origin is Literal:
        return ("one of " if not plural else "values from ") + ", ".join(str(c) for c in get_args(tp))
    if tp in (int, float):
        rng = opt.range_text()
        return _NOUNS[tp][plural] + (f" {rng}" if rng else "")
    if tp in _NOUNS:
        return _NOUNS[tp][plural]
    if origin in (list, tuple, collections.abc.Sequence) or tp in (list, tuple):
        args = get_args(tp)
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(set(args)) == 1:
                return f"a list of {len(args)} {describe(args[0], opt, True)}"
            return f"a list ({', '.join(describe(a, opt) for a in args)})"
        return f"a list of {describe(args[0], opt, True)}" if args else "a list"
    if tp is dict or origin is dict:
        return "a JSON object"
    if origin is collections.abc.Callable or tp in (collections.abc.Callable, typing.Callable):
        return "a function"
    if isinstance(tp, type):
        return f"a {tp.__name__}"
    return "a value"


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
        except _Mismatch:
            name = self.name if given_as in (None, self.name) else f"{self.name} (given as {given_as})"
            raise OptionError(f"{owner}: option {name} must be {self.describe()}, got {value!r}") from None
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


def parse_value(value, tp, owner: str, name: str, opt: Opt = _PLAIN):
    """Parse one value of type ``tp`` (see the module docs); :class:`OptionError` naming ``owner``."""
    return Option(name, tp, opt=opt).parse(value, owner)


def canonical_names(declared: dict[str, Option], given: dict, owner: str) -> dict:
    """``given`` with each option under its own name, not an alias (:attr:`Opt.aliases`).

    An option given under two of its names is an :class:`OptionError`: which value was meant is
    not for the parser to guess.
    """
    return _renamed(declared, given, owner)[0]


def _renamed(declared: dict[str, Option], given: dict, owner: str) -> tuple[dict, dict[str, str]]:
    """:func:`canonical_names`, and the name each option was given as."""
    alias_of = {a: o.name for o in declared.values() for a in o.aliases if a not in declared}
    out: dict = {}
    given_as: dict[str, str] = {}
    for k, v in given.items():
        name = alias_of.get(k, k)
        if name in out:
            raise OptionError(f"{owner}: option {name} given twice (as {given_as[name]} and {k})")
        out[name], given_as[name] = v, k
    return out, given_as


def parse_options(declared: dict[str, Option], given: dict, owner: str, *, defaults: bool = True,
                  extra: bool = False) -> dict:
    """Check and type ``given`` against ``declared``.

    Options given under an alias come back under their own names (:func:`canonical_names`).

    Args:
        defaults: also return the options that were not given, with their (parsed) defaults.
        extra: accept undeclared names (a ``**kwargs`` plug-in), their values read loosely.
    """
    given, given_as = _renamed(declared, given, owner)
    unknown = [k for k in given if k not in declared]
    if unknown and not extra:
        # a typo (unti=frame, n_sample=500) is told the name it is closest to
        names = [*declared, *(a for o in declared.values() for a in o.aliases)]
        close = [m for k in unknown for m in difflib.get_close_matches(k, names, n=1, cutoff=0.6)]
        hint = f"did you mean {', '.join(map(repr, dict.fromkeys(close)))}? " if close else ""
        raise OptionError(f"{owner}: no option {', '.join(map(repr, unknown))}; {hint}its options are: "
                          f"{', '.join(declared) or '(none)'}")
    out = {}
    for name, o in declared.items():
        if name in given:
            out[name] = o.parse(given[name], owner, given_as[name])
        elif o.required:
            raise OptionError(f"{owner}: option {name} is required ({o.describe()})")
        elif defaults:
            out[name] = o.parse(o.default, owner) if o.default is not None else None
    for name in unknown:
        try:
            out[name] = _loose(given[name])
        except _Mismatch:
            raise OptionError(f"{owner}: option {name} must be finite, got {given[name]!r}") from None
    return out


class Configurable:
    """Base of the plug-ins whose ``__init__`` keyword parameters are their options.

    Subclasses set :attr:`kind` (for messages) and :attr:`arguments` (leading ``__init__``
    parameters that are not options, e.g. ``("model",)``). Constructing an object parses its
    options first (a subclass's ``__init__`` receives typed, checked values), then records them,
    with defaults filled in, in :attr:`options`.
    """

    kind: ClassVar[str] = "plug-in"
    name: ClassVar[str]
    arguments: ClassVar[tuple[str, ...]] = ()
    options: dict

    def __init_subclass__(cls, **kw) -> None:
        super().__init_subclass__(**kw)
        init = cls.__dict__.get("__init__")
        if init is None:
            return

        @functools.wraps(init)
        def parsed_init(self, *args, **kwargs):
            # only the __init__ the object's class resolves to parses and records; the ones it
            # reaches through super() get typed values already
            if next(c for c in type(self).__mro__ if "__init__" in c.__dict__) is not cls:
                return init(self, *args, **kwargs)
            me = type(self)
            n = len(me.arguments)
            lead, rest = args[:n], args[n:]
            declared = me.declared_options()
            if len(rest) > len(declared):
                raise OptionError(f"{me._owner()}: takes {len(declared)} options, got {len(rest)} "
                                  "positional values; name them (KEY=VALUE)")
            given = dict(zip(declared, rest))
            for k in canonical_names(declared, kwargs, me._owner()):
                if k in given:
                    raise OptionError(f"{me._owner()}: option {k} given twice")
            missing = [a for a in me.arguments[len(lead):] if a not in kwargs]
            if missing:
                raise InputError(f"{me._owner()}: missing {', '.join(missing)}")
            lead = lead + tuple(kwargs.pop(a) for a in me.arguments[len(lead):])
            given.update(kwargs)
            typed = parse_options(declared, given, me._owner(), extra=me._takes_extra())
            try:
                init(self, *lead, **typed)
            except VideoXAIError:
                raise
            except (TypeError, ValueError, ArithmeticError) as e:  # a value the plug-in cannot use
                raise InputError(f"{me._owner()}: invalid options {given}: {e}") from None
            self.options = typed

        parsed_init.__signature__ = inspect.signature(init)
        cls.__init__ = parsed_init

    # -- declarations ---------------------------------------------------------------------------
    @classmethod
    def _own_init(cls):
        init = next(c for c in cls.__mro__ if "__init__" in c.__dict__).__dict__["__init__"]
        return getattr(init, "__wrapped__", init)

    @classmethod
    def declared_options(cls) -> dict[str, Option]:
        """The options (name → :class:`Option`) of this class's ``__init__``.

        An option without ``Opt(help=...)`` takes its help from the first line that documents it
        in the class docstring's ``Args:`` / ``Options:`` section (searched along the MRO).
        """
        cache = cls.__dict__.get("_declared")
        if cache is None:
            cache = declared_options(cls._own_init(), skip=1 + len(cls.arguments))
            docs: dict[str, str] = {}
            for c in reversed(cls.__mro__):
                docs.update(documented_args(c.__dict__.get("__doc__")))
            cache = {k: (o if o.help or k not in docs else
                         Option(o.name, o.type, o.default, dataclasses.replace(o.opt, help=docs[k])))
                     for k, o in cache.items()}
            cls._declared = cache
        return cache

    @classmethod
    def _takes_extra(cls) -> bool:
        return any(p.kind is inspect.Parameter.VAR_KEYWORD
                   for p in inspect.signature(cls._own_init()).parameters.values())

    @classmethod
    def _owner(cls) -> str:
        return f"{cls.kind} {getattr(cls, 'name', cls.__name__)!r}"

    @classmethod
    def parse_options(cls, given: dict, *, defaults: bool = True) -> dict:
        """``given`` (text, JSON or Python values) checked and typed, without constructing."""
        return parse_options(cls.declared_options(), given, cls._owner(), defaults=defaults,
                             extra=cls._takes_extra())

    @classmethod
    def canonical_names(cls, given: dict) -> dict:
        """``given`` with aliases replaced by the options' own names (:func:`canonical_names`)."""
        return canonical_names(cls.declared_options(), given, cls._owner())

    @classmethod
    def canonical_options(cls, given: dict) -> dict:
        """The options of ``given`` that differ from the defaults, typed and normalised."""
        full = cls.parse_options(given)
        declared = cls.declared_options()
        out = {}
        for k, v in full.items():
            o = declared.get(k)
            if o is None or o.required or v != (o.parse(o.default, cls._owner()) if o.default is not None else None):
                out[k] = v
        return out

    @classmethod
    def spec_for(cls, given: dict) -> str:
        """The canonical spec of this class with options ``given``."""
        return format_spec(cls.name, cls.canonical_options(given))

    @property
    def spec(self) -> str:
        """Canonical ``name(option=value, ...)``: the non-default options, sorted, normalised."""
        return type(self).spec_for(self.options)


# -- the spec grammar -------------------------------------------------------------------------------
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def parse_spec(spec: str) -> tuple[str, dict[str, str]]:
    """``"name(a=1, b=blur)"`` → ``("name", {"a": "1", "b": "blur"})``; ``"name"`` → ``("name", {})``.

    Values stay text (a JSON string's quotes removed); the declaration types them.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise InputError(f"empty spec {spec!r}")
    s = spec.strip()
    name, paren, rest = s.partition("(")
    name = name.strip()
    if not _NAME.match(name):
        raise InputError(f"bad spec {spec!r}: {name!r} is not a name")
    if not paren:
        return name, {}
    if not rest.endswith(")"):
        raise InputError(f"bad spec {spec!r}: missing ')'")
    body = rest[:-1].strip()
    return name, parse_assignments(split_top_level(body, ",") if body else [], where=f"bad spec {spec!r}")


def parse_assignments(pairs: list[str], where: str = "option") -> dict[str, str]:
    """``["n_steps=32", "baseline=blur"]`` → ``{"n_steps": "32", "baseline": "blur"}`` (text values)."""
    out: dict[str, str] = {}
    for part in pairs:
        key, eq, value = part.partition("=")
        key = key.strip()
        if not eq or not _KEY.match(key):
            raise InputError(f"{where}: {part.strip()!r} is not KEY=VALUE")
        if key in out:
            raise InputError(f"{where}: option {key} given twice")
        out[key] = _unquote(value)
    return out


def format_spec(name: str, options: dict) -> str:
    """Inverse of :func:`parse_spec`, options sorted (a canonical key)."""
    if not options:
        return name
    body = ", ".join(f"{k}={format_value(v)}" for k, v in sorted(options.items()))
    return f"{name}({body})"


def format_value(v) -> str:
    """A typed value as spec text: bare words, JSON for the rest (``true``, ``[4, 4, 4]``)."""
    if isinstance(v, str) and _KEY.match(v) and v.lower() not in ("true", "false", "null", "none", "yes", "no"):
        return v
    if isinstance(v, tuple):
        v = list(v)
    try:
        return json.dumps(v)
    except TypeError:
        return json.dumps(repr(v))


def split_top_level(text: str, sep: str = ",") -> list[str]:
    """Split on ``sep`` outside parentheses and brackets: ``"a(x=1,y=2),b"`` → ``["a(x=1,y=2)", "b"]``."""
    parts, depth, cur, quoted = [], 0, [], False
    for ch in text:
        if ch == '"':
            quoted = not quoted
        elif not quoted and ch in "([{":
            depth += 1
        elif not quoted and ch in ")]}":
            depth -= 1
            if depth < 0:
                raise InputError(f"unbalanced brackets in {text!r}")
        if ch == sep and depth == 0 and not quoted:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    if depth != 0:
        raise InputError(f"unbalanced brackets in {text!r}")
    parts.append("".join(cur))
    return [p.strip() for p in parts if p.strip()]
