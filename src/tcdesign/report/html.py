"""A small, self-contained HTML writer: every value from data is escaped, images are embedded as
base64 data URIs, the style sheet is inline, and there is no script, font or external resource,
so the page works offline and as an e-mail attachment."""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np


class Markup(str):
    """HTML that is already safe (built by this module); everything else gets escaped."""


def escape(value: object) -> Markup:
    """``value`` as text safe inside HTML elements and quoted attributes."""
    if isinstance(value, Markup):
        return value
    return Markup(html.escape(str(value), quote=True))


def fmt(value: object, digits: int = 2, missing: str = "–") -> str:
    """A number with ``digits`` decimals; NaN/None as ``missing``; other values as text."""
    if value is None:
        return missing
    if isinstance(value, bool | np.bool_):
        return "yes" if value else "no"
    if isinstance(value, int | np.integer):
        return str(value)
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        text = str(value)
        return text if text.strip() else missing
    if not math.isfinite(number):
        return missing
    return f"{number:.{digits}f}"


def element(tag: str, content: object = "", **attributes: object) -> Markup:
    """``<tag attr="...">content</tag>``; attribute names ending in ``_`` lose it (``class_``)."""
    attrs = "".join(
        f' {name.rstrip("_").replace("_", "-")}="{escape(value)}"'
        for name, value in attributes.items()
        if value is not None
    )
    return Markup(f"<{tag}{attrs}>{escape(content)}</{tag}>")


def join(parts: Iterable[object]) -> Markup:
    return Markup("".join(escape(p) for p in parts))


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def image(png: bytes, alt: str, width: int | None = None) -> Markup:
    """An ``<img>`` holding the PNG itself."""
    width_attr = f' width="{int(width)}"' if width else ""
    return Markup(f'<img src="{data_uri(png)}" alt="{escape(alt)}"{width_attr}>')


def link(href: str, text: object) -> Markup:
    return element("a", text, href=href)


@dataclass
class Figure:
    """A rendered figure: file stem in figures/, PNG bytes and the caption (plain text)."""

    name: str
    png: bytes
    caption: str
    title: str

    def html(self, number: int) -> Markup:
        caption = join([element("b", f"Figure {number}. {self.title}. "), self.caption])
        return element(
            "figure",
            join([image(self.png, self.title), element("figcaption", caption)]),
            id=self.name,
        )


def table(
    header: Sequence[object], rows: Iterable[Sequence[object]], class_: str | None = None
) -> Markup:
    """A table; cells are escaped unless they are :class:`Markup`."""
    head = element("thead", element("tr", join(element("th", h) for h in header)))
    body = element(
        "tbody", join(element("tr", join(element("td", cell) for cell in row)) for row in rows)
    )
    return element("table", join([head, body]), class_=class_)


def key_values(pairs: Iterable[tuple[object, object]]) -> Markup:
    """A two-column table of names and values."""
    rows = join(element("tr", join([element("th", k), element("td", v)])) for k, v in pairs)
    return element("table", element("tbody", rows), class_="kv")


STYLE = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 0 auto;
       max-width: 1180px; padding: 1em 1.5em; color: #222; line-height: 1.45; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; }
h2 { font-size: 1.25em; border-bottom: 1px solid #ccc; padding-bottom: 0.2em; margin-top: 1.8em; }
figure { margin: 1em 0; }
figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { font-size: 0.9em; color: #333; max-width: 1000px; }
table { border-collapse: collapse; margin: 0.6em 0; font-size: 0.88em; }
th, td { border: 1px solid #ddd; padding: 0.25em 0.55em; text-align: left; vertical-align: top; }
thead th { background: #f3f3f3; }
td.num, th.num { text-align: right; }
table.kv th { background: #f8f8f8; font-weight: 600; }
.notes { background: #fff8e1; border: 1px solid #f0d890; padding: 0.5em 1em; }
.gallery { display: flex; flex-wrap: wrap; gap: 0.8em; }
.gallery figure { margin: 0; width: 300px; }
.small { font-size: 0.85em; color: #555; }
"""


def document(title: str, body: Sequence[object]) -> str:
    """The whole page."""
    head = join(
        [
            Markup('<meta charset="utf-8">'),
            Markup('<meta name="viewport" content="width=device-width, initial-scale=1">'),
            element("title", title),
            Markup(f"<style>{STYLE}</style>"),
        ]
    )
    return (
        "<!DOCTYPE html>\n"
        + element("html", join([element("head", head), element("body", join(body))]), lang="en")
        + "\n"
    )
