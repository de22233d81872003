"""The base of plug-ins (methods, metrics) whose ``__init__`` keyword parameters are their options.

Constructing one parses its options first, so the subclass's ``__init__`` sees typed, checked
values; the options are recorded and give the canonical :attr:`Configurable.spec`, the key that
results are stored under.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
from typing import ClassVar

from ..errors import InputError, VideoXAIError
from .declaration import Option, OptionError, declared_options, documented_args
from .parsing import canonical_names, parse_options
from .spec import format_spec


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
