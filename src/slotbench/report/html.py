"""HTML building blocks of the report: a static page, no scripts and no external resources.

Every text is escaped here; images are ``data:`` URIs made by :mod:`slotbench.report.media`.
"""

from __future__ import annotations

from html import escape

STYLE = """
body { font-family: system-ui, sans-serif; margin: 0 auto; max-width: 1200px; padding: 1em 2em; color: #222; }
nav a { margin-right: 1em; }
h2 { border-bottom: 1px solid #ccc; padding-top: 0.5em; }
table { border-collapse: collapse; font-size: 0.9em; margin: 0.5em 0; }
th, td { border: 1px solid #ddd; padding: 2px 6px; text-align: right; }
th { background: #f3f3f3; }
td:last-child, th:first-child { text-align: left; }
figure { margin: 0.8em 0; overflow-x: auto; }
figure img { image-rendering: pixelated; max-width: none; }
figcaption, .note { color: #555; font-size: 0.9em; }
pre { background: #f7f7f7; padding: 0.5em; overflow-x: auto; font-size: 0.85em; }
"""


def page(title: str, intro: str, sections: list[tuple[str, str, str]]) -> str:
    """The whole document: ``sections`` are ``(anchor, heading, body html)``."""
    nav = " ".join(f'<a href="#{escape(a)}">{escape(h)}</a>' for a, h, _ in sections)
    body = "\n".join(f'<section id="{escape(a)}"><h2>{escape(h)}</h2>\n{b}\n</section>' for a, h, b in sections)
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        f"<title>{escape(title)}</title>\n"
        '<link rel="icon" href="data:,">\n'
        f"<style>{STYLE}</style>\n</head>\n<body>\n<h1>{escape(title)}</h1>\n"
        f"<p>{intro}</p>\n<nav>{nav}</nav>\n{body}\n</body>\n</html>\n"
    )


def figure(uri: str, caption: str, alt: str) -> str:
    """An image with a caption."""
    return f'<figure><img src="{uri}" alt="{escape(alt)}"><figcaption>{escape(caption)}</figcaption></figure>'


def note(text: str) -> str:
    """A grey remark (e.g. why something is missing)."""
    return f'<p class="note">{escape(text)}</p>'


def links(label: str, items: list[tuple[str, str]]) -> str:
    """A line ``label: text, text, ...`` of links ``(href, text)`` (e.g. to files beside the page)."""
    anchors = ", ".join(f'<a href="{escape(href)}">{escape(text)}</a>' for href, text in items)
    return f"<p>{escape(label)}: {anchors}</p>"


def key_values(mapping: dict) -> str:
    """A two-column table of ``mapping`` (floats to 4 significant digits)."""
    cells = ((k, f"{v:.4g}" if isinstance(v, float) else str(v)) for k, v in mapping.items())
    rows = "".join(f"<tr><th>{escape(str(k))}</th><td>{escape(v)}</td></tr>" for k, v in cells)
    return f"<table>{rows}</table>"


def details(summary: str, text: str) -> str:
    """A collapsed block of preformatted text."""
    return f"<details><summary>{escape(summary)}</summary><pre>{escape(text)}</pre></details>"
