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

Import these names from here; the modules, lowest first, are:

* :mod:`~videoxai.options.spec`: the spec grammar (``name(key=value, ...)``), text only;
* :mod:`~videoxai.options.annotation`: :class:`Opt` and the normalisations :func:`triple`,
  :func:`as_list`;
* :mod:`~videoxai.options.coercion`: one value read as a type, and the type in words;
* :mod:`~videoxai.options.declaration`: :class:`Option`, :class:`OptionError`,
  :func:`declared_options`;
* :mod:`~videoxai.options.parsing`: :func:`parse_options`, :func:`parse_value`,
  :func:`canonical_names` (with "did you mean" for unknown names);
* :mod:`~videoxai.options.configurable`: :class:`Configurable`.

This package is at the bottom of videoxai: it imports nothing from videoxai but the errors.
"""

from __future__ import annotations

from .annotation import Opt, as_list, triple
from .coercion import describe as describe
from .configurable import Configurable
from .declaration import Option, OptionError, declared_options
from .declaration import documented_args as documented_args
from .parsing import canonical_names, parse_options, parse_value
from .spec import format_spec, parse_assignments, parse_spec, split_top_level
from .spec import format_value as format_value

__all__ = ["Opt", "Option", "OptionError", "Configurable", "declared_options", "parse_value",
           "parse_options", "canonical_names", "parse_spec", "format_spec", "split_top_level",
           "parse_assignments", "triple", "as_list"]
