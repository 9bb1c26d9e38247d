"""Render the report's blocks: Markdown, and one self-contained HTML page.

A block is a tuple: ``("h1", text)``, ``("h2", text)``, ``("p", text)``,
``("ul", [items])``, ``("table", header, rows)`` or ``("img", key, alt)``.
Text may hold ``**bold**`` and ```code``` (the only inline markup used).
"""

from __future__ import annotations

import base64
import html

__all__ = ["markdown", "html_page"]


def _md_table(head: list, rows: list) -> str:
    esc = [[str(c).replace("|", "\\|") for c in r] for r in rows]
    return "\n".join(["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
                     + ["| " + " | ".join(r) + " |" for r in esc])


_MD = {
    "h1": lambda b: f"# {b[1]}",
    "h2": lambda b: f"## {b[1]}",
    "p": lambda b: b[1],
    "ul": lambda b: "\n".join(f"- {item}" for item in b[1]),
    "table": lambda b: _md_table(b[1], b[2]),
    "img": lambda b: f"![{b[2]}]({b[1]}.png)",
}


def markdown(blocks) -> str:
    """The blocks as Markdown (images referenced as ``KEY.png`` beside the file)."""
    return "\n\n".join(_MD[b[0]](b) for b in blocks) + "\n"


def _inline(text: str) -> str:
    """Escape, then render **bold** and `code`."""
    t = html.escape(text)
    parts = t.split("**")
    t = "".join(f"<strong>{p}</strong>" if i % 2 else p for i, p in enumerate(parts))
    parts = t.split("`")
    return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(parts))


_CSS = ("body{font-family:sans-serif;max-width:60em;margin:2em auto;line-height:1.45;"
        "color:#222}table{border-collapse:collapse;margin:1em 0;font-size:90%}"
        "td,th{border:1px solid #bbb;padding:3px 8px;text-align:left}th{background:#eee}"
        "img{max-width:100%;border:1px solid #ddd;margin:0.5em 0}code{background:#f3f3f3}")


def _html_table(head: list, rows: list) -> str:
    top = "".join(f"<th>{_inline(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{_inline(str(c))}</td>" for c in r) + "</tr>"
                   for r in rows)
    return f"<table><tr>{top}</tr>{body}</table>"


def _html_img(block, images: dict[str, bytes]) -> str:
    data = base64.b64encode(images[block[1]]).decode("ascii")
    return f"<p><img alt='{html.escape(block[2])}' src='data:image/png;base64,{data}'></p>"


def _html_block(block, images: dict[str, bytes]) -> str:
    kind = block[0]
    if kind in ("h1", "h2"):
        return f"<{kind}>{_inline(block[1])}</{kind}>"
    if kind == "p":
        return f"<p>{_inline(block[1])}</p>"
    if kind == "ul":
        return "<ul>" + "".join(f"<li>{_inline(i)}</li>" for i in block[1]) + "</ul>"
    if kind == "table":
        return _html_table(block[1], block[2])
    return _html_img(block, images)


def html_page(blocks, images: dict[str, bytes], title: str) -> str:
    """The blocks as one HTML page, PNGs embedded as data URIs (no file beside it needed)."""
    out = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}"
           f"</title><style>{_CSS}</style></head><body>"]
    out += [_html_block(b, images) for b in blocks]
    out.append("</body></html>")
    return "\n".join(out)
