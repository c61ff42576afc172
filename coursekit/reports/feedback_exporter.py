"""The HTML exporter feedback pages are made with: nbconvert's, faster, bounded, and readable offline.

Enabled for `nbgrader generate_feedback` (and so `coursekit grade`) in
nbgrader_config.py as `c.GenerateFeedback.exporter_class`. Students open
their feedback as a file from OLAT, often offline, so a page needs nothing
from the network: nbgrader's feedback template loads MathJax from a CDN,
which this exporter replaces by KaTeX inline (coursekit.reports.math), and
long lines wrap instead of widening the page (one 5,000-character line made
it 35,000 px wide). What nbconvert's HTMLExporter spends per page, and what
is left of it here:

- After rendering, HTMLExporter re-parses the whole page into a BeautifulSoup
  tree to mark a few elements and serializes it again; here the page streams
  through BeautifulSoup's parser into BeautifulSoup's own serialization
  (coursekit.reports.page_serializer): the same bytes at a third of the cost.
- Syntax highlighting and markdown rendering are memoized per exporter: the
  cells of the release are the same on every page of a run. What a page may
  render at all is bounded (RenderBudget), memoized or not.
- Every grading process compiles nbconvert's and nbgrader's Jinja templates
  again (~0.5 s). Here the compiled templates are kept in Jinja's bytecode
  cache, in a folder only this user can use (jinja2.FileSystemBytecodeCache),
  keyed by each template's source: an edited template is compiled afresh.
"""
from __future__ import annotations

import json
import re
from collections import OrderedDict
from html import escape
from typing import Any

from jinja2 import FileSystemBytecodeCache, pass_context
from nbconvert.exporters.html import HTMLExporter
from nbconvert.exporters.templateexporter import TemplateExporter
from nbconvert.filters.ansi import ansi2html, strip_ansi
from nbconvert.filters.highlight import Highlight2HTML
from nbconvert.filters.widgetsdatatypefilter import WidgetsDataTypeFilter
from nbformat import NotebookNode

from coursekit.reports.math import inline_katex
from coursekit.reports.page_serializer import mark_page

MEMO_ENTRIES = 4096
MEMO_LARGEST_SOURCE = 64 * 1024  # longer sources (students' own, once) are not worth keeping
# Highlighting code, rendering markdown and turning coloured text into HTML cost time (about a
# millisecond per highlighted token; nbconvert's ansi2html is quadratic in a text's length) and make
# page elements every later pass handles: a student's cells and outputs of megabytes would keep a
# grading worker busy for an hour and make pages of millions of elements. So each page renders at most
# RENDER_BUDGET characters of them into at most ELEMENT_BUDGET elements, and no single text over its
# limit; the rest is shown as plain, escaped text. An honest notebook renders ~60,000 characters into
# ~4,000 elements.
RENDER_BUDGET = 200_000
ELEMENT_BUDGET = 20_000
HIGHLIGHT_LIMIT = 20_000
COLOURED_TEXT_LIMIT = 50_000
# nbgrader's template loads MathJax from a CDN in the page's head: the template's own markup (a
# student's text is escaped or sanitized before it reaches a page), found in the head only.
NETWORK_MATH_SCRIPT = re.compile(
    r"<script\b[^>]*(?:mathjax|text/x-mathjax-config)[^>]*>.*?</script>", re.IGNORECASE | re.DOTALL)


class RenderBudget:
    """What is left of one page's RENDER_BUDGET and ELEMENT_BUDGET."""

    def __init__(self) -> None:
        self.characters, self.elements = RENDER_BUDGET, ELEMENT_BUDGET

    def render(self, text: str, limit: int, make, fallback) -> str:
        """make(text) if the budget allows it and the result's elements fit, else fallback(text)."""
        if len(text) > limit or len(text) > self.characters or self.elements <= 0:
            return fallback(text)
        self.characters -= len(text)
        rendered = make(text)
        elements = rendered.count("<") - rendered.count("</")
        if elements > self.elements:
            self.elements = 0
            return fallback(text)
        self.elements -= elements
        return rendered


def plain_block(text: str) -> str:
    return f"<pre>{escape(text)}</pre>"


class Memo(OrderedDict):
    """A small LRU memo for filters whose output depends only on their arguments."""

    def remember(self, key, compute):
        if len(key[0]) > MEMO_LARGEST_SOURCE:
            return compute()
        try:
            self.move_to_end(key)
            return self[key]
        except KeyError:
            value = self[key] = compute()
            if len(self) > MEMO_ENTRIES:
                self.popitem(last=False)
            return value


class BoundedHighlight:
    """nbconvert's code highlighting within the page's render budget, each (source, language, cell
    metadata) highlighted once per exporter; code over the budget as plain text."""

    def __init__(self, highlight: Highlight2HTML, memo: Memo, exporter: "FeedbackHTMLExporter") -> None:
        self.highlight, self.memo, self.exporter = highlight, memo, exporter

    def __call__(self, source, language=None, metadata=None):
        # Of the cell's metadata nbconvert's highlighting reads only magics_language; the rest (nbclient's
        # execution timestamps among it) differs on every page and would make every code cell a miss.
        magics = metadata.get("magics_language") if isinstance(metadata, dict) else None
        key = (source, self.highlight.pygments_lexer, language, repr(magics))
        return self.exporter.render_budget.render(
            source, HIGHLIGHT_LIMIT, lambda text: self.memo.remember(key, lambda: self.highlight(text, language, metadata)),
            lambda text: f"<div class=\"highlight\">{plain_block(text)}</div>")


# Code, outputs and text wrap at the page's width; tables and wide images scroll in their own box.
WRAPPING_STYLE = """<style>
pre, .highlight pre, div.output_area pre, div.input_area pre { white-space: pre-wrap; overflow-wrap: anywhere; }
.rendered_html, .text_cell_render, div.output_subarea, div.input_area, .panel-body { overflow-wrap: anywhere; min-width: 0; }
div.output_subarea, div.inner_cell, div.input_area { max-width: 100%; }
.rendered_html table { display: block; max-width: 100%; overflow-x: auto; }
.rendered_html img, div.output_subarea img { max-width: 100%; height: auto; }
</style>
"""


def drop_network_math(page: str) -> str:
    """The page without MathJax from a CDN and its configuration: KaTeX takes their place."""
    head_end = page.find("</head>")
    if head_end < 0:
        return page
    return NETWORK_MATH_SCRIPT.sub("", page[:head_end]) + page[head_end:]


class FeedbackHTMLExporter(HTMLExporter):
    """nbconvert's HTMLExporter: the same page without its tree re-parse, memoizing what repeats between
    pages, rendering a bounded amount per page, with KaTeX instead of MathJax from the network."""

    def __init__(self, *arguments: Any, **keywords: Any) -> None:
        super().__init__(*arguments, **keywords)
        self._highlight_memo, self._markdown_memo = Memo(), Memo()
        self.render_budget = RenderBudget()

    def _create_environment(self):
        environment = super()._create_environment()
        environment.bytecode_cache = FileSystemBytecodeCache()
        return environment

    @pass_context
    def markdown2html(self, context, source):
        cell = context.get("cell", {})
        # The path only matters for images embedded from files (embed_images).
        path = context.get("resources", {}).get("metadata", {}).get("path", "") if self.embed_images else ""
        key = (source, json.dumps(cell.get("attachments", {}), sort_keys=True, default=repr), path)
        return self.render_budget.render(source, RENDER_BUDGET, lambda text: self._markdown_memo.remember(
            key, lambda: HTMLExporter.markdown2html(self, context, text)), plain_block)

    def bounded_ansi2html(self, text: str) -> str:
        # The plain form goes inside the template's own <pre>.
        return self.render_budget.render(text, COLOURED_TEXT_LIMIT, ansi2html, lambda text: escape(strip_ansi(text)))

    def from_notebook_node(self, nb: NotebookNode, resources: dict[str, Any] | None = None,
                           **kw: Any) -> tuple[str, dict[str, Any]]:
        # HTMLExporter.from_notebook_node (nbconvert 7.x), up to the page's re-parse.
        langinfo = nb.metadata.get("language_info", {})
        lexer = langinfo.get("pygments_lexer", langinfo.get("name", None))
        highlight_code = self.filters.get("highlight_code")
        if highlight_code is None:
            highlight_code = BoundedHighlight(Highlight2HTML(pygments_lexer=lexer, parent=self), self._highlight_memo,
                                              self)
        resources = self._init_resources(resources)
        self.render_budget = RenderBudget()
        self.register_filter("ansi2html", self.bounded_ansi2html)
        filter_data_type = WidgetsDataTypeFilter(notebook_metadata=self._nb_metadata, parent=self,
                                                 resources=resources)
        self.register_filter("highlight_code", highlight_code)
        self.register_filter("filter_data_type", filter_data_type)
        html, resources = TemplateExporter.from_notebook_node(self, nb, resources, **kw)
        page, missing_alt = mark_page(html)
        if missing_alt:
            self.log.warning("Alternative text is missing on %s image(s).", missing_alt)
        # After serializing, as BeautifulSoup's decompose() would leave the page; KaTeX and its fonts are
        # ~0.6 MB, which the serializer need not read.
        page = drop_network_math(page)
        return page.replace("</head>", WRAPPING_STYLE + inline_katex() + "</head>", 1), resources
