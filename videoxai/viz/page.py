"""The page shell of both HTML reports — explanation reports (:mod:`videoxai.viz.report`,
:mod:`videoxai.viz.timeline_report`) and evaluation reports (:mod:`videoxai.evaluation.report`):
one template (``templates/report.html``: palette, type, cards, footer, the clip synchroniser) and
one way to embed images and videos, so the pages look alike and each stays one self-contained
file; and :func:`plain`, how the reports hand the strings they show to matplotlib.

Videos are embedded twice, as VP9 WebM and as H.264 MP4 ``<source>`` elements: the browser plays
the first it can (WebM in Chromium and Firefox builds without H.264, MP4 in Safari); both were
checked to play in Debian's headless Chromium (``tests/test_viz.py`` checks it again where a
``chromium`` binary is installed). An FFmpeg build with neither encoder gets an animated GIF
instead.
"""

from __future__ import annotations

import base64
import hashlib
import html
import io
import math
import re
import tempfile
from importlib import resources
from pathlib import Path
from string import Template

import numpy as np

from ..clip import Clip
from ..version import __version__
from .overlay import playback_fps

_SURROGATE = re.compile("[\ud800-\udfff]")  # a lone one cannot be written as UTF-8


def plain(text, most: int | None = None) -> str:
    """``text`` for matplotlib to draw as it is written: class names, method specs and file names
    are the user's, and a pair of ``$`` in them starts mathtext there (``a $x$`` was typeset as
    math; ``$\\frac$`` failed to parse and took the figure, and the report, down). An escaped
    ``\\$`` is drawn as ``$``, and a string without a pair of unescaped ``$`` is never mathtext.
    A lone surrogate (``"\\ud800"`` in a JSON config's class name), which matplotlib's font code
    refuses, is drawn as U+FFFD. With ``most``, a longer text is cut to that many characters
    with an ellipsis (a class name of a few hundred characters left no room for the plot: the
    layout gave up and cut the axis labels off)."""
    text = str(text)
    if most is not None and len(text) > most:
        text = text[:max(0, most - 1)] + "…"
    return _SURROGATE.sub("\ufffd", text).replace("$", r"\$")


def data_uri(data: bytes, mime: str) -> str:
    """``data:<mime>;base64,…``: a file embedded in the page."""
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def figure_png(fig, dpi: int = 150, **savefig) -> bytes:
    """A matplotlib figure as PNG bytes (white background unless ``savefig`` says otherwise)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, **{"facecolor": "white", **savefig})
    return buf.getvalue()


def jpeg(rgb: np.ndarray, quality: int = 88) -> bytes:
    """uint8 ``(H, W, 3)`` as JPEG bytes."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def page(title: str, body: str, css: str = "") -> str:
    """The whole HTML page: ``body`` (HTML) in the shared shell, with ``css`` (rules of the caller's
    own elements) after the shared style sheet."""
    shell = resources.files(__package__).joinpath("templates/report.html").read_text("utf-8")
    text = Template(shell).substitute(title=html.escape(str(title), quote=True), body=body, css=css,
                                      version=__version__, csp=_policy(shell))
    # A file name that is not UTF-8 (a Latin-1 "café.mp4": Python reads its odd bytes as lone
    # surrogates) could not be written to the UTF-8 page, and the report failed after every
    # explanation had been computed: each such character shows as U+FFFD, as terminals show it.
    return _SURROGATE.sub("\ufffd", text)


def _policy(shell: str) -> str:
    """The page's Content-Security-Policy: the shell's own script (by its hash), the embedded
    ``data:`` images and videos, inline styles, and nothing else. The page shows the user's
    strings (class names, file names, specs), each escaped where it is inserted; should one ever
    slip through unescaped, no script of it runs and no request leaves the page."""
    script = shell.rsplit("<script>", 1)[1].split("</script>", 1)[0]
    digest = base64.b64encode(hashlib.sha256(script.encode("utf-8")).digest()).decode("ascii")
    return ("default-src 'none'; img-src data:; media-src data:; style-src 'unsafe-inline'; "
            f"script-src 'sha256-{digest}'; base-uri 'none'; form-action 'none'")


# ----------------------------------------------------------------------------------------------
# embedded videos


_VIDEO_FORMATS = ((".webm", "video/webm"), (".mp4", "video/mp4"))


def display_size(h: int, w: int, max_side: int, min_side: int) -> tuple[int, int]:
    """Size to draw the embedded videos at: longer side within ``[min_side, max_side]``."""
    longest = max(h, w)
    if longest > max_side:
        s = max_side / longest
        return max(1, round(h * s)), max(1, round(w * s))
    if longest < min_side:
        # whole factor: each pixel becomes a k×k block; never past max_side (a min_side above a
        # small max_side enlarged a 64-pixel clip to 320 under max_side=200)
        k = max(1, min(math.ceil(min_side / longest), max_side // longest))
        return h * k, w * k
    return h, w


#: seconds an embedded video lasts at least: Chromium never showed a frame of one of a few
#: hundredths of a second (2 frames at 120 fps, 8 at 240: readyState stayed HAVE_METADATA)
_LEAST_SECONDS = 0.25


def page_fps(clip: Clip) -> float:
    """:func:`playback_fps`, slowed where the clip would play in under :data:`_LEAST_SECONDS`."""
    return min(playback_fps(clip), clip.num_frames / _LEAST_SECONDS)


def video_html(frames: np.ndarray, fps: float) -> str:
    """A looping ``<video>`` with a WebM and an MP4 source; an animated GIF if this FFmpeg build
    has neither encoder."""
    from ..data.video import write_video
    from ..errors import VideoXAIError

    if len(frames) == 1:
        # a one-frame video never shows its frame in Chromium (readyState stays HAVE_METADATA):
        # the report of a one-frame clip had empty boxes where its overlays were
        return f'<img alt="frame" src="{data_uri(jpeg(frames[0], quality=92), "image/jpeg")}">'
    sources = []
    with tempfile.TemporaryDirectory(prefix="videoxai-report-") as tmp:
        for suffix, mime in _VIDEO_FORMATS:
            try:
                f = write_video(frames, Path(tmp) / f"v{suffix}", fps=fps, quality=20)
            except VideoXAIError:  # no such encoder in this FFmpeg build
                continue
            sources.append(f'<source type="{mime}" src="{data_uri(f.read_bytes(), mime)}">')
        if sources:
            return ('<video autoplay muted loop playsinline preload="auto">' + "".join(sources)
                    + "</video>")
        gif = write_video(frames, Path(tmp) / "v.gif", fps=fps)
        return f'<img alt="animation" src="{data_uri(gif.read_bytes(), "image/gif")}">'
