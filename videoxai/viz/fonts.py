"""The caption font: DejaVu Sans, and installed fonts for the characters it lacks.

Captions burned into overlay videos show the user's class names, which may be in any script.
DejaVu Sans (shipped with matplotlib, so always there) covers Latin, Greek, Cyrillic and much
more but no CJK: a class named "跳绳" was drawn as two empty boxes. A text is therefore drawn in
runs, each character in the first font that has a glyph for it: DejaVu Sans, then the fonts
matplotlib's font manager knows (the system's and its own; e.g. Noto Sans CJK where installed).
A character no font covers is drawn by DejaVu Sans (a box) with one warning naming it.
Figures (matplotlib) get the same fonts as a family list, along which matplotlib falls back
glyph by glyph (:func:`figure_families`).
"""

from __future__ import annotations

import warnings
from functools import lru_cache
from pathlib import Path

__all__ = ["CaptionFont", "figure_families"]

#: Fonts whose glyphs are placeholders (a box labelled with the Unicode block), not characters:
#: matplotlib ships "LastResortHE", which maps every code point.
_PLACEHOLDER_FONTS = ("lastresort",)


@lru_cache(maxsize=None)
def _coverage(path: str) -> frozenset[int]:
    """The code points ``path``'s character map has glyphs for (empty if it cannot be read)."""
    from fontTools.ttLib import TTFont

    try:
        with TTFont(path, lazy=True, fontNumber=0) as font:
            return frozenset(font.getBestCmap() or ())
    except Exception:  # an unreadable or unusual font file is simply not a candidate
        return frozenset()


@lru_cache(maxsize=1)
def _primary_path() -> str | None:
    import matplotlib

    dejavu = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
    return str(dejavu) if dejavu.is_file() else None


@lru_cache(maxsize=1)
def _candidates() -> tuple[str, ...]:
    """Installed fonts, upright regular sans faces first (they look like the primary font)."""
    from matplotlib import font_manager

    entries = {e.fname: e for e in font_manager.fontManager.ttflist
               if not any(p in Path(e.fname).name.lower() for p in _PLACEHOLDER_FONTS)}

    def rank(path: str) -> tuple:
        e = entries[path]
        upright = e.style == "normal"
        regular = e.weight in (400, "normal", "regular", "book")
        sans = "sans" in e.name.lower() and "mono" not in e.name.lower()
        return (not upright, not regular, not sans, path)

    return tuple(sorted(entries, key=rank))


@lru_cache(maxsize=None)
def _font_for(codepoint: int) -> str | None:
    """The first installed font with a glyph for ``codepoint``, or ``None``."""
    return next((p for p in _candidates() if codepoint in _coverage(p)), None)


@lru_cache(maxsize=64)
def _load(path: str | None, size: int):
    from PIL import ImageFont

    return ImageFont.truetype(path, size=size) if path else ImageFont.load_default(size=size)


_warned: set[str] = set()


class CaptionFont:
    """Measure and draw one line of text at ``size`` pixels, each character in a font that has it.

    Text the primary font covers entirely (the usual case) is one run in that font.
    """

    def __init__(self, size: int):
        self.size = int(size)
        self._primary = _primary_path()
        self._covered = _coverage(self._primary) if self._primary else frozenset(range(0x20, 0x7F))

    @property
    def font(self):
        """The primary font (a Pillow font object)."""
        return _load(self._primary, self.size)

    def runs(self, text: str) -> list[tuple[str, object]]:
        """``text`` cut into ``(part, Pillow font)`` runs, in order."""
        runs: list[tuple[str, str | None]] = []
        missing = []
        for ch in text:
            path = self._primary
            if ord(ch) not in self._covered and not ch.isspace():
                path = _font_for(ord(ch))
                if path is None:
                    missing.append(ch)
                    path = self._primary
            if runs and runs[-1][1] == path:
                runs[-1] = (runs[-1][0] + ch, path)
            else:
                runs.append((ch, path))
        new = "".join(dict.fromkeys(c for c in missing if c not in _warned))
        if new:
            _warned.update(new)
            warnings.warn(f"no installed font has glyphs for {new!r}: the caption shows them as boxes "
                          "(install a font that covers them, e.g. Noto Sans CJK for Chinese, Japanese "
                          "and Korean)", stacklevel=3)
        return [(part, _load(path, self.size)) for part, path in runs]

    def length(self, draw, text: str) -> float:
        """Width of ``text`` in pixels, as :meth:`draw` draws it."""
        return sum(draw.textlength(part, font=font) for part, font in self.runs(text))

    def draw(self, draw, xy: tuple[float, float], text: str, fill) -> None:
        """Draw ``text`` with the top of the primary font's ascender at ``xy``.

        Runs share the primary font's baseline, so a fallback font with other metrics does not
        move its characters up or down the line."""
        x, y = xy
        baseline = y + self.font.getmetrics()[0]
        for part, font in self.runs(text):
            draw.text((x, baseline), part, fill=fill, font=font, anchor="ls")
            x += draw.textlength(part, font=font)


def figure_families(*texts: str) -> list[str] | None:
    """matplotlib's ``fontfamily`` for text showing ``texts``: DejaVu Sans, then the installed
    fonts with glyphs for the characters it lacks; ``None`` (the user's rcParams) where DejaVu Sans
    has them all, so figures are unchanged for the usual class names."""
    primary = _primary_path()
    covered = _coverage(primary) if primary else frozenset()
    paths = dict.fromkeys(_font_for(ord(c)) for text in texts for c in str(text)
                          if ord(c) not in covered and not c.isspace())
    paths.pop(None, None)   # no font has them: matplotlib warns about the glyph itself
    if not paths:
        return None
    from matplotlib import font_manager

    names = [font_manager.FontProperties(fname=p).get_name() for p in paths]
    return list(dict.fromkeys(["DejaVu Sans", *names]))
