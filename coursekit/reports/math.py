"""Formulas without a network: KaTeX, from the kit instead of a CDN.

The files in `static/katex/` are KaTeX's distribution from its npm package
(`katex`, MIT licence; `make vendor-katex` fetches the version below again):
the script, its auto-render extension, its stylesheet and its fonts in woff2.
Feedback pages are files students open from OLAT, so they get all of it
inline, the fonts as data URIs; the TAs' pages load the same files from the
Jupyter server (coursekit.ta_grading serves this folder).

KaTeX renders `$…$`, `$$…$$`, `\\(…\\)` and `\\[…\\]` in the page's text and
skips code, outputs (`pre`) and text fields. With `trust` off it makes no
links, classes or styles from what a formula says, so a student's formula
cannot run code or reach the network either; a formula it cannot parse stays
as its TeX source.
"""
from __future__ import annotations

import base64
import json
import re
from functools import lru_cache
from pathlib import Path

KATEX_VERSION = "0.19.1"
KATEX_FOLDER = Path(__file__).resolve().parent / "static" / "katex"
SCRIPT, AUTO_RENDER, STYLESHEET = "katex.min.js", "contrib/auto-render.min.js", "katex.min.css"

RENDER_OPTIONS = {
    "delimiters": [
        {"left": "$$", "right": "$$", "display": True},
        {"left": "\\[", "right": "\\]", "display": True},
        {"left": "$", "right": "$", "display": False},
        {"left": "\\(", "right": "\\)", "display": False},
    ],
    "ignoredTags": ["script", "noscript", "style", "textarea", "pre", "code", "option", "input"],
    "throwOnError": False,
    "trust": False,
    # Bounds for formulas written to hurt: huge sizes and macros that expand forever.
    "maxSize": 20,
    "maxExpand": 1000,
}

# Wide formulas scroll inside their own box instead of widening the page.
EXTRA_STYLE = ".katex-display { overflow-x: auto; overflow-y: hidden; }"


def render_script(*, selector: str | None = "body") -> str:
    """Defines window.renderFormulas(element), and renders the formulas inside `selector` once
    the page is read (None: the page calls it itself)."""
    options = json.dumps(RENDER_OPTIONS)
    render_now = ("" if selector is None else
                  "  function renderPage() {\n"
                  f"    document.querySelectorAll({json.dumps(selector)}).forEach(window.renderFormulas);\n"
                  "  }\n"
                  "  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', renderPage);\n"
                  "  else renderPage();\n")
    return ("(function () {\n"
            "  window.renderFormulas = function (element) {\n"
            f"    window.renderMathInElement(element || document.body, {options});\n"
            "  };\n"
            f"{render_now}"
            "})();")


def read_text(name: str) -> str:
    return (KATEX_FOLDER / name).read_text(encoding="utf-8")


@lru_cache(maxsize=1)
def stylesheet_with_embedded_fonts() -> str:
    """KaTeX's stylesheet with each font as a woff2 data URI (every browser KaTeX supports reads woff2)."""
    def embedded(match: re.Match) -> str:
        font = (KATEX_FOLDER / "fonts" / f"{match.group(1)}.woff2").read_bytes()
        return f'src:url(data:font/woff2;base64,{base64.b64encode(font).decode("ascii")}) format("woff2")'

    return re.sub(r'src:url\(fonts/([A-Za-z0-9_-]+)\.woff2\) format\("woff2"\)[^;}]*', embedded, read_text(STYLESHEET))


@lru_cache(maxsize=1)
def inline_katex() -> str:
    """Everything a standalone page needs to show formulas, for its <head>."""
    return (f"<style>{stylesheet_with_embedded_fonts()}\n{EXTRA_STYLE}</style>\n"
            f"<script>{without_module_loaders(read_text(SCRIPT))}</script>\n"
            f"<script>{without_module_loaders(read_text(AUTO_RENDER))}</script>\n"
            f"<script>{render_script()}</script>\n")


def without_module_loaders(script: str) -> str:
    """KaTeX's bundles register as AMD or CommonJS modules where a page has a module loader; hiding
    the loader's names makes them set window.katex and window.renderMathInElement in any page."""
    return "(function (define, module, exports) {\n" + script + "\n}).call(window);"


def linked_katex(url_prefix: str, *, selector: str | None = "body") -> str:
    """The same for a page of the Jupyter server: the files from `url_prefix` (where this folder is served)."""
    return (f'<link rel="stylesheet" href="{url_prefix}/{STYLESHEET}">\n<style>{EXTRA_STYLE}</style>\n'
            f'<script src="{url_prefix}/{SCRIPT}"></script>\n'
            f'<script src="{url_prefix}/{AUTO_RENDER}"></script>\n'
            f"<script>{render_script(selector=selector)}</script>\n")
