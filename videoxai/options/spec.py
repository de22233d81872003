"""The spec grammar: ``name(key=value, ...)`` as text, read and written.

A spec names a method or a metric with its options (``rise(n_samples=500)``); the same
``KEY=VALUE`` pairs come from the command line (``-O n_samples=500``). This module only splits and
joins text: values stay text here, and the declarations (:mod:`videoxai.options.coercion`) type
them. :func:`format_spec` writes the canonical form that results are stored under.
"""

from __future__ import annotations

import json
import re

from ..errors import InputError


def _unquote(text: str) -> str:
    """``"blur"`` (a JSON string) → ``blur``; anything else as is."""
    t = text.strip()
    if len(t) >= 2 and t[0] == t[-1] == '"':
        try:
            return json.loads(t)
        except json.JSONDecodeError:
            pass
    return t



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
