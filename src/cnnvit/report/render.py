"""Rendering: a report is a list of plain blocks, rendered once to Markdown and once to HTML.

Both renderings come from the same blocks, so they always say the same thing. The HTML is one
self-contained file (figures embedded as data URIs) that can be mailed around.
"""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path
from typing import Any

from ..errors import CnnvitError
from ..runs import write_atomic

Block = tuple[Any, ...]  # ("h1"|"h2"|"h3"|"p"|"pre", text), ("ul", items),
# ("table", header, rows, alignments), ("figure", name, caption)


def write_report(folder: Path, blocks: list[Block], pngs: dict[str, bytes]) -> Path:
    """figures/*.png, report.md and report.html in `folder`, atomically; report.html's path."""
    try:
        (folder / "figures").mkdir(exist_ok=True)
        for name, data in pngs.items():
            write_atomic(folder / "figures" / f"{name}.png", data)
        write_atomic(folder / "report.md", markdown(blocks).encode("utf-8"))
        write_atomic(folder / "report.html", html_page(blocks, pngs).encode("utf-8"))
    except OSError as err:
        raise CnnvitError(f"cannot write the report into {folder}: {err}") from None
    return folder / "report.html"


def markdown(blocks: list[Block]) -> str:
    """The blocks as Markdown."""
    out: list[str] = []
    for kind, *rest in blocks:
        if kind in ("h1", "h2", "h3"):
            out.append(f"{'#' * int(kind[1])} {rest[0]}")
        elif kind == "p":
            out.append(rest[0])
        elif kind == "ul":
            out.append("\n".join(f"- {item}" for item in rest[0]))
        elif kind == "table":
            header, rows, align = rest
            rule = ["---:" if a == "r" else "---" for a in align]
            out.append(
                "\n".join(
                    "| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |"
                    for row in [header, rule, *rows]
                )
            )
        elif kind == "figure":
            out.append(f"![{rest[1]}](figures/{rest[0]}.png)\n\n*{rest[1]}*")
        elif kind == "pre":
            out.append(f"```text\n{rest[0]}\n```")
    return "\n\n".join(out) + "\n"


def _inline(text: str) -> str:
    """Escape text for HTML; `**x**` (the only markup the content uses) becomes bold."""
    return re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", html.escape(str(text)))


CSS = """
body{font:16px/1.6 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1a202c;
 max-width:1000px;margin:0 auto;padding:2rem 1.5rem 4rem;background:#fff}
h1{font-size:2rem;margin:0 0 1rem}h3{margin:1.6rem 0 .4rem;color:#2d3748}
h2{margin-top:2.5rem;border-bottom:2px solid #e2e8f0;padding-bottom:.3rem}
.scroll{overflow-x:auto;margin:1rem 0}table{border-collapse:collapse;font-size:.93rem}
th,td{padding:.4rem .8rem;border-bottom:1px solid #e2e8f0;text-align:left;vertical-align:top}
th{background:#edf2f7;font-weight:600}tr:nth-child(even) td{background:#f7fafc}
td.r,th.r{text-align:right;font-variant-numeric:tabular-nums}
figure{margin:2rem 0}img{max-width:100%;height:auto;border:1px solid #e2e8f0;border-radius:4px}
figcaption{color:#4a5568;font-size:.92rem;margin-top:.4rem}li{margin:.4rem 0}
pre{background:#f7fafc;border:1px solid #e2e8f0;border-radius:4px;padding:1rem;overflow-x:auto}
"""


def _cells(row: list, cls: list[str], tag: str) -> str:
    return "".join(f"<{tag}{c}>{_inline(v)}</{tag}>" for c, v in zip(cls, row, strict=True))


def html_page(blocks: list[Block], pngs: dict[str, bytes]) -> str:
    """The blocks as one self-contained HTML page."""
    out: list[str] = []
    for kind, *rest in blocks:
        if kind in ("h1", "h2", "h3", "p"):
            out.append(f"<{kind}>{_inline(rest[0])}</{kind}>")
        elif kind == "ul":
            out.append("<ul>" + "".join(f"<li>{_inline(i)}</li>" for i in rest[0]) + "</ul>")
        elif kind == "table":
            header, rows, align = rest
            cls = [' class="r"' if a == "r" else "" for a in align]
            body = "".join(f"<tr>{_cells(row, cls, 'td')}</tr>" for row in rows)
            out.append(
                f'<div class="scroll"><table><thead><tr>{_cells(header, cls, "th")}</tr>'
                f"</thead><tbody>{body}</tbody></table></div>"
            )
        elif kind == "figure":  # embedded, so the page is one file that can be mailed around
            data = base64.b64encode(pngs[rest[0]]).decode("ascii")
            out.append(
                f'<figure><img src="data:image/png;base64,{data}" alt="{rest[0]}">'
                f"<figcaption>{_inline(rest[1])}</figcaption></figure>"
            )
        elif kind == "pre":
            out.append(f"<pre>{html.escape(rest[0])}</pre>")
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>{html.escape(blocks[0][1])}</title><style>{CSS}</style></head>\n<body>\n"
        + "\n".join(out)
        + "\n</body></html>\n"
    )
