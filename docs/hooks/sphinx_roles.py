"""MkDocs hook: the docstrings' Sphinx roles (``:func:`~videoxai.data.video.read_video```) as links.

The docstrings are written for ``help()`` and Sphinx alike, and mkdocstrings renders a role as its
name followed by a code span (":func:``~videoxai.Clip``"). After the build, every such pair in the
site's pages becomes the code span alone — ``~`` showing the last part of the name and
``title <name>`` the title, as Sphinx does — linked to the object's entry in the API reference where it has one: the full dotted name,
else the one entry whose name ends with it (``.road``, ``InputError``, ``Clip.subclip``).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

#: a role and its code span: ``~name``, ``name``, or Sphinx's explicit title ``title <name>``
_ROLE = re.compile(r":(?:func|class|meth|mod|attr|data|exc|obj|const|py:\w+):<code>"
                   r"(?:([^<&]+?) &lt;([\w.]+)&gt;|(~?)([\w.]+))</code>")
_ID = re.compile(r'\bid="(videoxai[\w.]*)"')


def _entries(site: Path) -> dict[str, Path]:
    """Every documented object's dotted name → the page that documents it (its first entry)."""
    entries: dict[str, Path] = {}
    for page in sorted(site.rglob("*.html")):
        for name in _ID.findall(page.read_text(encoding="utf-8")):
            entries.setdefault(name, page)
    return entries


def _resolve(target: str, entries: dict[str, Path], by_suffix: dict[str, list[str]]) -> str | None:
    name = target.lstrip(".")
    if name in entries:
        return name
    found = by_suffix.get(name, [])
    return found[0] if len(found) == 1 else None


def link_roles(html: str, page: Path, entries: dict[str, Path], by_suffix: dict[str, list[str]]) -> str:
    """``html`` with each role and its code span replaced by the code span, linked where it resolves."""
    def replace(m: re.Match) -> str:
        title, titled, tilde, target = m.groups()
        if title is not None:
            shown, target = title, titled
        else:
            shown = target.rsplit(".", 1)[-1] if tilde else target.lstrip(".")
        code = f"<code>{shown}</code>"
        name = _resolve(target, entries, by_suffix)
        if name is None:
            return code
        href = os.path.relpath(entries[name], page.parent).replace(os.sep, "/")
        return f'<a class="autorefs autorefs-internal" href="{href}#{name}">{code}</a>'

    return _ROLE.sub(replace, html)


def on_post_build(config, **kwargs) -> None:
    site = Path(config["site_dir"])
    entries = _entries(site)
    by_suffix: dict[str, list[str]] = {}
    for name in entries:
        parts = name.split(".")
        for i in range(1, len(parts)):
            by_suffix.setdefault(".".join(parts[i:]), []).append(name)
    for page in site.rglob("*.html"):
        html = page.read_text(encoding="utf-8")
        new = link_roles(html, page, entries, by_suffix)
        if new != html:
            page.write_text(new, encoding="utf-8")
