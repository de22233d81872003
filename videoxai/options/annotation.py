"""What ``typing.Annotated[T, Opt(...)]`` adds to an option's type, and the normalisations it names.

:class:`Opt` carries a range, a normalisation, aliases and a help line; :func:`triple` and
:func:`as_list` are the normalisations plug-ins use most, kept beside it so a declaration needs one
import.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable


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
