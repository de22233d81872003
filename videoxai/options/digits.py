"""Numbers written with digits other than 0-9, which Python reads as numbers.

``int("٣")`` is 3, ``float("１.5")`` 1.5 and the pattern ``\\d`` matches '٣', '३', '３' and '²':
a value typed on another keyboard layout (or pasted) was read as a number nobody could check by
reading the command or the request. Every reader of numbers as text refuses them in one line
worded by :func:`digit_message`: the command line's options, method options from any source
(:mod:`~videoxai.options.coercion`) and positions in a video
(:func:`~videoxai.data.times.parse_time`).
"""

from __future__ import annotations

import unicodedata

__all__ = ["foreign_digit", "digit_message", "digit_reason"]


def foreign_digit(text: str) -> str | None:
    """The first digit of ``text`` that is not 0-9 ('٣', '३', '３', '²'), else ``None``."""
    return next((c for c in text if c.isdigit() and not c.isascii()), None)


def digit_reason(digit: str) -> str:
    """``holds the digit '٣' (arabic-indic digit three); write numbers with the digits 0-9``."""
    return f"holds the digit {digit!r} ({unicodedata.name(digit, 'not 0-9').lower()}); write numbers with the digits 0-9"


def digit_message(value: str, digit: str) -> str:
    """``'٣٠' holds the digit '٣' (arabic-indic digit three); write numbers with the digits 0-9``."""
    return f"{value!r} {digit_reason(digit)}"
