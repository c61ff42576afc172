"""Turning HTML, SVG and markdown a student controls into markup that cannot run anything.

Everything goes through nh3 (the Ammonia sanitizer) with allowlists: tags,
attributes and URL schemes not listed here are removed, script and style
elements with their content. Markdown is sanitized as the HTML fragment it
may contain, then rendered with nbconvert's own markdown renderer (the one the
feedback and formgrader pages use) to catch what markdown itself turns into
links, such as `[x](javascript:...)`; such an answer is shown as plain text.
"""
from __future__ import annotations

import re
from html.parser import HTMLParser

import nh3

# Schemes a link or image in student content may use; everything else (javascript:,
# vbscript:, data: except images, file:) is dropped.
LINK_SCHEMES = frozenset({"http", "https", "mailto"})
IMAGE_DATA_URL = re.compile(r"data:image/(?:png|jpeg|gif);base64,[A-Za-z0-9+/=\s]*\Z", re.IGNORECASE)
# nh3's default tags (text formatting, lists, tables, links, images: none can run
# script), and no class, id or style attributes, so student content can neither
# restyle the page nor clobber names the page's own scripts use.
HTML_TAGS = frozenset(nh3.ALLOWED_TAGS)
HTML_ATTRIBUTES = {tag: set(names) for tag, names in nh3.ALLOWED_ATTRIBUTES.items()} | {"*": {"title", "lang"}}
# Enough SVG for plots (matplotlib, seaborn): shapes, paths, text, gradients and
# references to the drawing's own definitions; no script, style, animation or foreignObject.
SVG_TAGS = frozenset({
    "svg", "g", "defs", "symbol", "use", "path", "rect", "circle", "ellipse", "line", "polyline", "polygon",
    "text", "tspan", "title", "desc", "clipPath", "clippath", "mask", "pattern", "linearGradient",
    "lineargradient", "radialGradient", "radialgradient", "stop", "marker", "image",
})
SVG_ATTRIBUTES = {"*": {
    "id", "x", "y", "x1", "y1", "x2", "y2", "cx", "cy", "r", "rx", "ry", "d", "points", "width", "height",
    "viewBox", "viewbox", "transform", "fill", "fill-opacity", "fill-rule", "stroke", "stroke-width",
    "stroke-opacity", "stroke-linecap", "stroke-linejoin", "stroke-dasharray", "stroke-miterlimit", "opacity",
    "clip-path", "clip-rule", "mask", "font-family", "font-size", "font-weight", "font-style", "text-anchor",
    "dominant-baseline", "offset", "stop-color", "stop-opacity", "gradientUnits", "gradientTransform",
    "patternUnits", "markerWidth", "markerHeight", "refX", "refY", "orient", "preserveAspectRatio",
    "version", "xmlns", "xmlns:xlink", "href", "xlink:href",
}}
# `x<y`, `$a<b$`: a `<` glued to the text before it is almost always a comparison. Escaping
# it keeps the text (nh3 would take `<y ...>` for a tag and drop it), and escaping is always safe.
GLUED_LESS_THAN = re.compile(r"(?<=[\w$`)\]])<(?=[A-Za-z])")
# Only a `<` before a letter, `/`, `!` or `?` starts a tag, comment, autolink or declaration,
# for the browser's HTML tokenizer and for markdown parsers alike; any other `<` is plain text.
NOT_MARKUP_LESS_THAN = re.compile(r"&lt;(?![A-Za-z/!?])")
# The only style the markdown renderer writes itself: a table column's alignment.
TABLE_ALIGNMENT = re.compile(r"text-align:\s*(?:left|right|center);?")
PLAIN_TEXT_NOTE = "*(coursekit: this answer contained a link or markup that could run code; it is shown as plain text.)*"
# Rendering markdown takes time quadratic in nested brackets (60,000 characters of `[`/`](`: over 20 s, in the
# sanitizer and again in the feedback); an answer of this exercise is a few thousand characters.
MARKDOWN_RENDER_LIMIT = 8_000
LONG_TEXT_NOTE = f"*(coursekit: this answer is longer than {MARKDOWN_RENDER_LIMIT:,} characters; it is shown as plain text.)*"


def _valid_text(text: str) -> str:
    """The text without lone surrogates (JSON allows them, nh3 cannot take them), each replaced by '?'."""
    return text.encode("utf-8", "replace").decode("utf-8")


def _keep_safe_urls(tag: str, attribute: str, value: str) -> str | None:
    """nh3 attribute filter: data: URLs only as raster images of <img>; nh3 itself checks other schemes."""
    if attribute in ("href", "xlink:href") and tag in ("use", "image"):
        # SVG references stay inside the drawing.
        return value if value.startswith("#") else None
    if attribute in ("src", "href", "cite", "xlink:href"):
        stripped = value.strip()
        if stripped.lower().startswith("data:"):
            return value if tag == "img" and attribute == "src" and IMAGE_DATA_URL.match(stripped) else None
    return value


def clean_html(fragment: str) -> str:
    """An HTML fragment (an output's text/html) without anything that can run or restyle the page."""
    return nh3.clean(
        _valid_text(fragment), tags=set(HTML_TAGS), attributes=HTML_ATTRIBUTES,
        url_schemes=set(LINK_SCHEMES) | {"data"}, attribute_filter=_keep_safe_urls, strip_comments=True,
        link_rel="noopener noreferrer nofollow",
    )


def clean_svg(drawing: str) -> str:
    """An SVG image with shapes and text only: no script, event handlers, style or outside references."""
    return nh3.clean(
        _valid_text(drawing), tags=set(SVG_TAGS), attributes=SVG_ATTRIBUTES, url_schemes=set(LINK_SCHEMES),
        attribute_filter=_keep_safe_urls, strip_comments=True, link_rel=None,
    )


def clean_markdown(source: str) -> str:
    """Markdown whose raw HTML is sanitized and whose markdown links cannot run code.

    nh3 escapes the text it keeps (`>` as `&gt;`, `&` as `&amp;`); those escapes
    are undone where a markdown reader would see a difference (a `>` quote, `&`),
    which is safe because neither character can start a tag. A `<` stays escaped
    unless what follows it cannot start markup.
    """
    source = _valid_text(source)
    if len(source) > MARKDOWN_RENDER_LIMIT:
        return as_plain_text(source, note=LONG_TEXT_NOTE)
    protected = GLUED_LESS_THAN.sub("&lt;", source)
    cleaned = clean_html(protected).replace("&gt;", ">").replace("&amp;", "&")
    cleaned = NOT_MARKUP_LESS_THAN.sub("<", cleaned)
    if renders_safely(cleaned):
        return cleaned
    # A markdown link or image with a harmful URL (`[x](javascript:...)`), which is
    # not HTML for nh3: the whole answer becomes a code block, which shows text only.
    fenced = as_plain_text(source)
    return fenced if renders_safely(fenced) else PLAIN_TEXT_NOTE


def as_plain_text(source: str, note: str = PLAIN_TEXT_NOTE) -> str:
    """`source` as a fenced code block (text only, whatever it holds) after `note`."""
    fence = "`" * max(3, 1 + max((len(run) for run in re.findall(r"`+", source)), default=0))
    return f"{note}\n\n{fence}text\n{source}\n{fence}\n"


class _RenderedMarkup(HTMLParser):
    """Finds what a rendered page must not contain: script-capable tags, handlers, unsafe URLs."""

    UNSAFE_TAGS = frozenset({"script", "style", "iframe", "object", "embed", "frame", "frameset", "form", "input",
                             "button", "textarea", "select", "meta", "base", "link", "svg", "math", "template",
                             "noscript", "xmp", "plaintext"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.unsafe: list[str] = []

    def handle_starttag(self, tag: str, attributes: list[tuple[str, str | None]]) -> None:
        # Task-list checkboxes are the renderer's own disabled inputs.
        if tag in self.UNSAFE_TAGS and not (tag == "input" and ("disabled", None) in attributes):
            self.unsafe.append(tag)
        for name, value in attributes:
            if name.startswith("on") or name in ("srcdoc", "formaction") or (
                    name == "style" and not TABLE_ALIGNMENT.fullmatch(value or "")):
                self.unsafe.append(f"{tag} {name}")
            elif name in ("href", "src", "action", "xlink:href") and value and not _safe_url(tag, name, value):
                self.unsafe.append(f"{tag} {name}={value!r}")


def _safe_url(tag: str, attribute: str, value: str) -> bool:
    # The browser ignores control characters and blanks inside the scheme: "java\tscript:".
    compact = re.sub(r"[\x00-\x20]", "", value).lower()
    scheme = re.match(r"([a-z][a-z0-9+.-]*):", compact)
    if scheme is None:
        return True  # relative URL or fragment
    if scheme.group(1) == "data":
        return tag == "img" and attribute == "src" and IMAGE_DATA_URL.match(value.strip()) is not None
    return scheme.group(1) in LINK_SCHEMES


def renders_safely(source: str) -> bool:
    """Whether nbconvert's markdown renderer makes `source` into HTML without anything that can run."""
    from nbconvert.filters.markdown_mistune import markdown2html_mistune

    parser = _RenderedMarkup()
    parser.feed(markdown2html_mistune(source))
    parser.close()
    return not parser.unsafe
