"""The HTML of detseg's evaluation reports: one self-contained page (inline CSS and a little inline
JavaScript, system fonts, images beside it in ``img/``) that opens from disk in any browser, offline.

Tables are plain HTML (readable without JavaScript); with it, a click on a column header sorts the
table by that column (cells carry their raw value in ``data-v``). Summary figures carry theirs in
``data-key`` / ``data-value`` so that tools (and tests) can read the page's numbers back.
"""

from __future__ import annotations

import html
import math
import os
from collections.abc import Sequence
from pathlib import Path

CSS = """
:root { --fg:#1d232b; --muted:#5d6670; --line:#d9dee4; --bg:#ffffff; --soft:#f4f6f8; --accent:#2257a8; }
* { box-sizing: border-box; }
body { margin:0; font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;
  color:var(--fg); background:var(--bg); }
header { background:#1d2a3a; color:#fff; padding:18px 28px 14px; }
header h1 { margin:0 0 4px; font-size:22px; font-weight:600; }
header p { margin:0; color:#c9d3df; font-size:13px; }
nav { position:sticky; top:0; z-index:2; background:#fff; border-bottom:1px solid var(--line);
  padding:8px 28px; font-size:14px; }
nav a { color:var(--accent); text-decoration:none; margin-right:18px; white-space:nowrap; }
main { max-width:1280px; margin:0 auto; padding:8px 28px 60px; }
section { margin-top:28px; }
h2 { font-size:19px; margin:0 0 10px; padding-bottom:4px; border-bottom:2px solid var(--line); }
h3 { font-size:16px; margin:18px 0 8px; }
p.note, .note { color:var(--muted); font-size:13px; max-width:900px; }
.cards { display:flex; flex-wrap:wrap; gap:12px; }
.card { border:1px solid var(--line); border-radius:8px; padding:10px 14px; min-width:150px;
  background:var(--soft); }
.card .v { font-size:24px; font-weight:600; font-variant-numeric:tabular-nums; }
.card .l { font-size:12px; color:var(--muted); }
.warn { background:#fff4e0; border:1px solid #f0c36d; border-radius:6px; padding:8px 12px; margin:10px 0; }
table { border-collapse:collapse; font-size:13px; margin:6px 0 8px; }
th, td { padding:4px 9px; border-bottom:1px solid var(--line); text-align:right; white-space:nowrap; }
th:first-child, td:first-child { text-align:left; }
thead th { background:var(--soft); font-weight:600; }
table.sortable thead th { cursor:pointer; }
table.sortable thead th[aria-sort=ascending]::after { content:" \\25B2"; font-size:10px; }
table.sortable thead th[aria-sort=descending]::after { content:" \\25BC"; font-size:10px; }
tbody tr:nth-child(even) { background:#fafbfc; }
td { font-variant-numeric:tabular-nums; }
td.na { color:#9aa3ad; }
.scroll { overflow-x:auto; max-width:100%; }
.plots { display:flex; flex-wrap:wrap; gap:16px; align-items:flex-start; }
.plots img { width:460px; max-width:100%; height:auto; border:1px solid var(--line); border-radius:4px; }
.bars { display:grid; grid-template-columns:max-content 1fr max-content; gap:4px 10px; align-items:center;
  max-width:720px; font-size:13px; }
.bar { height:16px; border-radius:3px; min-width:1px; }
.gallery { display:flex; flex-wrap:wrap; gap:10px; margin-bottom:6px; }
figure.item { margin:0; border:1px solid var(--line); border-radius:6px; padding:4px; background:var(--soft);
  max-width:340px; }
figure.item img { display:block; max-width:100%; height:auto; }
figure.item figcaption { font-size:12px; padding:3px 2px 0; overflow-wrap:anywhere; }
figure.item .file { color:var(--muted); }
figure.missing { min-width:200px; min-height:80px; display:flex; flex-direction:column;
  justify-content:center;
  border-style:dashed; }
figure.missing .msg { color:#a33; font-weight:600; font-size:13px; padding:6px; }
.legend { display:flex; flex-wrap:wrap; gap:6px 14px; font-size:13px; margin:6px 0 10px; }
.legend span.sw { display:inline-block; width:14px; height:14px; border-radius:3px; vertical-align:-2px;
  margin-right:5px; border:1px solid rgba(0,0,0,.25); }
details > summary { cursor:pointer; color:var(--accent); }
"""

# Sort a table by a clicked header; numbers by value (cells hold it in data-v), text alphabetically.
JS = """
document.querySelectorAll('table.sortable').forEach(function (table) {
  var heads = table.tHead.rows[0].cells;
  Array.prototype.forEach.call(heads, function (th, col) {
    th.addEventListener('click', function () {
      var asc = th.getAttribute('aria-sort') !== 'descending';
      if (!th.hasAttribute('aria-sort')) asc = th.dataset.type === 'text';
      Array.prototype.forEach.call(heads, function (h) { h.removeAttribute('aria-sort'); });
      th.setAttribute('aria-sort', asc ? 'ascending' : 'descending');
      var body = table.tBodies[0];
      var rows = Array.prototype.slice.call(body.rows);
      rows.sort(function (a, b) {
        var x = a.cells[col].dataset.v, y = b.cells[col].dataset.v;
        var nx = parseFloat(x), ny = parseFloat(y), r;
        if (isNaN(nx) || isNaN(ny)) {
          if (isNaN(nx) && !isNaN(ny)) return 1;
          if (!isNaN(nx) && isNaN(ny)) return -1;
          r = String(x).localeCompare(String(y));
        } else { r = nx - ny; }
        return asc ? r : -r;
      });
      rows.forEach(function (r) { body.appendChild(r); });
    });
  });
});
"""


def esc(value) -> str:
    return html.escape(str(value), quote=True)


def is_number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def fmt(value, digits: int = 3, percent: bool = False) -> str:
    """A number for a table: NaN/None as an em dash, floats with ``digits`` decimals."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "\u2014"
    if isinstance(value, int | bool) and not isinstance(value, float):
        return str(int(value))
    return f"{value * 100:.{max(digits - 2, 1)}f}" if percent else f"{value:.{digits}f}"


def cell(value, text: str | None = None, digits: int = 3) -> str:
    """A ``<td>`` with its sort value in ``data-v`` (the raw number, or the text)."""
    if is_number(value):
        finite = math.isfinite(value)
        shown = fmt(value, digits) if text is None else text
        cls = "" if finite else ' class="na"'
        return f'<td data-v="{value if finite else ""}"{cls}>{esc(shown)}</td>'
    shown = "" if value is None else str(value) if text is None else text
    return f'<td data-v="{esc(shown)}">{esc(shown)}</td>'


def table(headers: Sequence[str], rows: Sequence[Sequence], digits: int = 3, sortable: bool = True,
          html_rows: bool = False, cls: str = "") -> str:  # fmt: skip
    """An HTML table; ``rows`` hold raw values (or ready ``<td>`` strings with ``html_rows``). The first
    column is text, the others are sorted as numbers."""
    head = "".join(
        f'<th data-type="{"text" if i == 0 else "num"}">{esc(h)}</th>' for i, h in enumerate(headers)
    )
    body = []
    for row in rows:
        tds = "".join(row) if html_rows else "".join(cell(v, digits=digits) for v in row)
        body.append(f"<tr>{tds}</tr>")
    classes = " ".join(c for c in ("sortable" if sortable else "", cls) if c)
    return (
        f'<div class="scroll"><table class="{classes}"><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table></div>"
    )


def card(label: str, value, key: str, text: str | None = None, digits: int = 3) -> str:
    """A summary figure; ``data-key`` names it, ``data-value`` holds the exact number."""
    raw = "" if value is None or (isinstance(value, float) and not math.isfinite(value)) else repr(value)
    shown = text if text is not None else fmt(value, digits)
    return (
        f'<div class="card"><div class="v" data-key="{esc(key)}" data-value="{esc(raw)}">{esc(shown)}</div>'
        f'<div class="l">{esc(label)}</div></div>'
    )


def image(src: str, alt: str, width: int | None = None, height: int | None = None) -> str:
    size = f' width="{width}" height="{height}"' if width and height else ""
    return f'<img src="{esc(src)}" alt="{esc(alt)}"{size} loading="lazy">'


def legend(entries: Sequence[tuple[str, tuple[int, int, int]]]) -> str:
    items = "".join(
        f'<span><span class="sw" style="background:rgb({r},{g},{b})"></span>{esc(name)}</span>'
        for name, (r, g, b) in entries
    )
    return f'<div class="legend">{items}</div>'


def page(title: str, subtitle: str, sections: Sequence[tuple[str, str, str]]) -> str:
    """The whole document: ``sections`` are (id, heading, inner HTML)."""
    nav = "".join(f'<a href="#{esc(i)}">{esc(h)}</a>' for i, h, _ in sections)
    body = "".join(f'<section id="{esc(i)}"><h2>{esc(h)}</h2>{inner}</section>' for i, h, inner in sections)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)}</title><style>{CSS}</style></head><body>"
        f"<header><h1>{esc(title)}</h1><p>{esc(subtitle)}</p></header><nav>{nav}</nav>"
        f"<main>{body}</main><script>{JS}</script></body></html>\n"
    )


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write via a temporary file and rename, so a reader never sees half a page."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return path
