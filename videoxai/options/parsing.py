"""Given options checked against the declared ones: typed, defaults filled, aliases resolved.

This is the one parser every source goes through (the CLI, specs, dataset specs, the service,
:class:`~videoxai.options.configurable.Configurable`); an unknown name is told the declared name
or alias closest to it (``unti``: did you mean ``unit``?).
"""

from __future__ import annotations

import difflib

from .annotation import _PLAIN, Opt
from .coercion import _loose, _Mismatch, shown
from .declaration import Option, OptionError


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
            raise OptionError(f"{owner}: option {name} must be finite, got {shown(given[name])}") from None
    return out
