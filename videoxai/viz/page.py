"""The page shell of both HTML reports — explanation reports (:mod:`videoxai.viz.report`) and
evaluation reports (:mod:`videoxai.evaluation.report`): one template (``templates/report.html``:
palette, type, cards, footer, the clip synchroniser) and one way to embed images and videos, so
the two pages look alike and each stays one self-contained file; and :func:`plain`, how both
reports hand the strings they show to matplotlib.
"""

from __future__ import annotations

import base64
import hashlib
import html
import io
import re
from importlib import resources
from string import Template

import numpy as np

from ..version import __version__

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
