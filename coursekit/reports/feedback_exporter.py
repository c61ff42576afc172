"""The HTML exporter feedback pages are made with: nbconvert's, faster, and readable offline.

Enabled for `nbgrader generate_feedback` (and so `coursekit grade`) in
nbgrader_config.py as `c.GenerateFeedback.exporter_class`. Students open
their feedback as a file from OLAT, often offline, so a page needs nothing
from the network: nbgrader's feedback template loads MathJax from a CDN,
which this exporter replaces by KaTeX inline (coursekit.reports.math), and
long lines wrap instead of widening the page (one 5,000-character line made
it 35,000 px wide). Two costs of nbconvert's HTMLExporter go:

- After rendering, HTMLExporter re-parses the whole page with BeautifulSoup
  and looks for three CSS selectors with soupsieve, each a walk over every
  element (added by jupyter/nbconvert#2021; jupyter/nbconvert#2234 asks to
  replace BeautifulSoup for its cost). Here the same
  elements are found with BeautifulSoup's own element search, which is several
  times cheaper; they get the same attributes and the page is serialized by
  the same BeautifulSoup tree.
- Every grading process compiles nbconvert's and nbgrader's Jinja templates
  again (~0.5 s). Here the compiled templates are kept in Jinja's bytecode
  cache, in a folder only this user can use (jinja2.FileSystemBytecodeCache),
  keyed by each template's source: an edited template is compiled afresh.
"""
from __future__ import annotations

from html import escape
from typing import Any

from bs4 import BeautifulSoup
from jinja2 import FileSystemBytecodeCache, pass_context
from nbconvert.exporters.html import HTMLExporter
from nbconvert.exporters.templateexporter import TemplateExporter
from nbconvert.filters.ansi import ansi2html, strip_ansi
from nbconvert.filters.highlight import Highlight2HTML
from nbconvert.filters.widgetsdatatypefilter import WidgetsDataTypeFilter
from nbformat import NotebookNode

from coursekit.reports.math import inline_katex

MISSING_ALT_TEXT = "No description has been provided for this image"
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


class BoundedHighlight(Highlight2HTML):
    """nbconvert's code highlighting within the page's render budget; other code as plain text."""

    def __call__(self, source, language=None, metadata=None):
        budget = getattr(self.parent, "render_budget", None) or RenderBudget()
        return budget.render(source, HIGHLIGHT_LIMIT, lambda text: super(BoundedHighlight, self).__call__(
            text, language, metadata), lambda text: f"<div class=\"highlight\">{plain_block(text)}</div>")


# Code, outputs and text wrap at the page's width; tables and wide images scroll in their own box.
WRAPPING_STYLE = """<style>
pre, .highlight pre, div.output_area pre, div.input_area pre { white-space: pre-wrap; overflow-wrap: anywhere; }
.rendered_html, .text_cell_render, div.output_subarea, div.input_area, .panel-body { overflow-wrap: anywhere; min-width: 0; }
div.output_subarea, div.inner_cell, div.input_area { max-width: 100%; }
.rendered_html table { display: block; max-width: 100%; overflow-x: auto; }
.rendered_html img, div.output_subarea img { max-width: 100%; height: auto; }
</style>
"""


def has_class(element, name: str) -> bool:
    return name in (element.get("class") or ())


def inside_notebook(element) -> bool:
    """Whether an ancestor has class jp-Notebook (the selectors' `.jp-Notebook ` part)."""
    return any(has_class(parent, "jp-Notebook") for parent in element.parents if parent.name is not None)


class FeedbackHTMLExporter(HTMLExporter):
    """nbconvert's HTMLExporter with a cheaper search for the elements it marks, cached compiled templates
    and bounded code highlighting."""

    render_budget = RenderBudget()

    def _create_environment(self):
        environment = super()._create_environment()
        environment.bytecode_cache = FileSystemBytecodeCache()
        return environment

    @pass_context
    def markdown2html(self, context, source):
        return self.render_budget.render(source, RENDER_BUDGET, lambda text: super(FeedbackHTMLExporter, self)
                                         .markdown2html(context, text), plain_block)

    def bounded_ansi2html(self, text: str) -> str:
        # The plain form goes inside the template's own <pre>.
        return self.render_budget.render(text, COLOURED_TEXT_LIMIT, ansi2html, lambda text: escape(strip_ansi(text)))

    def from_notebook_node(self, nb: NotebookNode, resources: dict[str, Any] | None = None,
                           **kw: Any) -> tuple[str, dict[str, Any]]:
        # HTMLExporter.from_notebook_node (nbconvert 7.x) up to the page's re-parse.
        langinfo = nb.metadata.get("language_info", {})
        lexer = langinfo.get("pygments_lexer", langinfo.get("name", None))
        highlight_code = self.filters.get("highlight_code", BoundedHighlight(pygments_lexer=lexer, parent=self))
        resources = self._init_resources(resources)
        self.render_budget = RenderBudget()
        self.register_filter("ansi2html", self.bounded_ansi2html)
        filter_data_type = WidgetsDataTypeFilter(notebook_metadata=self._nb_metadata, parent=self,
                                                 resources=resources)
        self.register_filter("highlight_code", highlight_code)
        self.register_filter("filter_data_type", filter_data_type)
        html, resources = TemplateExporter.from_notebook_node(self, nb, resources, **kw)
        soup = BeautifulSoup(html, features="html.parser")
        # What HTMLExporter does with soup.select("img:not([alt])"), then
        # ".jp-Notebook div.jp-Cell-inputWrapper" and ".jp-Notebook div.jp-OutputArea-output".
        missing_alt = 0
        for element in soup.find_all("img"):
            if "alt" not in element.attrs:
                element.attrs["alt"] = MISSING_ALT_TEXT
                missing_alt += 1
        if missing_alt:
            self.log.warning("Alternative text is missing on %s image(s).", missing_alt)
        for wanted in ("jp-Cell-inputWrapper", "jp-OutputArea-output"):
            for element in soup.find_all("div", class_=wanted):
                if inside_notebook(element):
                    element.attrs["tabindex"] = "0"
        drop_network_math(soup)
        # After serializing: KaTeX and its fonts are ~0.6 MB, which BeautifulSoup need not parse.
        return str(soup).replace("</head>", WRAPPING_STYLE + inline_katex() + "</head>", 1), resources


def drop_network_math(soup) -> None:
    """MathJax from a CDN and its configuration: KaTeX takes their place."""
    for script in soup.find_all("script"):
        source = script.attrs.get("src", "")
        if "mathjax" in source.lower() or script.attrs.get("type") == "text/x-mathjax-config":
            script.decompose()
