"""One value, whatever its source, read as a declared type, and the type described in words.

:func:`_coerce` holds the rules shared by every source (text from the CLI or a spec, JSON from
the service, Python and NumPy values from the library): booleans are ``true/false/1/0/yes/no``,
numbers are finite and in the :class:`~videoxai.options.annotation.Opt` range, lists are
``[a, b]`` or ``a,b``. A value that does not fit raises :class:`_Mismatch`, which the caller turns
into one :class:`~videoxai.options.declaration.OptionError` worded by :func:`describe`.
"""

from __future__ import annotations

import collections.abc
import inspect
import json
import math
import re
import types
import typing
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import numpy as np

from .annotation import _PLAIN, Opt
from .digits import digit_reason, foreign_digit
from .spec import _unquote, split_top_level


class _Mismatch(Exception):
    """A value that does not fit its type; its argument, if any, says why in words."""


def _ascii_number(v: str) -> str:
    """``v`` (text read as a number), :class:`_Mismatch` saying why where it holds a digit other
    than 0-9, which Python reads as one (:mod:`~videoxai.options.digits`)."""
    digit = foreign_digit(v)
    if digit is not None:
        raise _Mismatch(digit_reason(digit))
    return v


_TRUE, _FALSE = ("true", "1", "yes"), ("false", "0", "no")
_INT = re.compile(r"^[+-]?\d+$")


#: characters of a wrong value's repr an error quotes, at most
SHOWN_CHARS = 80


def shown(value) -> str:
    """``value`` as an error quotes it: an array or tensor by its shape and dtype (its repr is
    many lines of numbers), anything else by a repr cut to :data:`SHOWN_CHARS`."""
    shape, dtype = getattr(value, "shape", None), getattr(value, "dtype", None)
    if shape is not None and dtype is not None and not isinstance(value, (np.generic, str)):
        return f"{type(value).__name__} of shape {tuple(shape)} and dtype {dtype}"
    text = repr(value)
    return text if len(text) <= SHOWN_CHARS else f"{text[:SHOWN_CHARS - 1]}…"


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
        why = None
        for m in sorted((m for m in members if m is not type(None)), key=lambda m: m is str):
            try:
                return _coerce(v, m, opt)
            except _Mismatch as e:
                why = why or e
        raise why or _Mismatch()
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
        elif isinstance(v, float) and v.is_integer() and abs(v) <= 2 ** 53:
            # 500.0 (a JSON number, a division) is the count 500; beyond 2**53 a float holds no exact
            # integer, and n_samples=1e308 was taken as a count of 10**308 samples
            out = int(v)
        elif isinstance(v, str) and _INT.match(_ascii_number(v).strip()):
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
                out = float(_ascii_number(v).strip())
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
