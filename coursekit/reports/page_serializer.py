"""Feedback pages serialized as BeautifulSoup would, without building its tree.

nbconvert's HTMLExporter parses every page it renders into a BeautifulSoup tree
(html.parser), finds `img:not([alt])` and two CSS selectors with soupsieve, sets
attributes on what they find and serializes the tree again (jupyter/nbconvert#2021;
jupyter/nbconvert#2234 asks to replace BeautifulSoup for its cost): ~0.25 CPU-s per
page of this exercise, a quarter of what grading a team cost. Here the page goes
through BeautifulSoup's own parser (BeautifulSoupHTMLParser, so every quirk of how
it reads HTML stays), but straight into BeautifulSoup's own serialization of each
tag and string as the parser reports them: the same bytes at a third of the cost
(tests/test_feedback_exporter.py compares them with BeautifulSoup's).
"""
from __future__ import annotations

import re
from collections import Counter

from bs4 import BeautifulSoup
from bs4.builder._htmlparser import BeautifulSoupHTMLParser, HTMLParserTreeBuilder
from bs4.element import NavigableString, Tag
from bs4.exceptions import ParserRejectedMarkup
from bs4.formatter import HTMLFormatter

MISSING_ALT_TEXT = "No description has been provided for this image"
FOCUSABLE_CLASSES = ("jp-Cell-inputWrapper", "jp-OutputArea-output")
OUTPUT_ENCODING = "utf-8"  # what str(soup) substitutes into <meta charset>
# Where a page is cut into segments that repeat from page to page: before each line that opens a div.
SEGMENT_START = re.compile(r"(?=\n<div )")
VOID_END_TAG = re.compile(r"</\s*(?:" + "|".join(sorted(HTMLParserTreeBuilder().empty_element_tags)) + r")\b",
                          re.IGNORECASE)
# Segments longer than this (a student's own outputs, seen once) are fed, never remembered, and all
# remembered segments together hold at most SEGMENT_CHARACTERS: a class of hostile pages cannot grow
# a worker's memory through the memo.
LARGEST_REMEMBERED_SEGMENT = 64 * 1024
SEGMENT_CHARACTERS = 32_000_000


def has_class(element: Tag, name: str) -> bool:
    return name in (element.get("class") or ())


class StreamingSoup:
    """What BeautifulSoupHTMLParser talks to instead of a BeautifulSoup: it writes each tag and string out
    as `str(BeautifulSoup(page, "html.parser"))` would, as soon as the parser reports it.

    The tree-building rules that decide the output are BeautifulSoup's (bs4 4.x, BeautifulSoup.handle_*,
    endData, _popToTag): an end tag closes every tag opened after the most recent open tag of its name
    and is ignored without one; a string of ASCII whitespace outside <pre>/<textarea> becomes one
    newline or space; strings directly inside <script>/<style> are not escaped. Tags are bs4 Tags (so
    attribute lists, charset substitution and void elements are bs4's) formatted by bs4, but never
    linked into a tree; a tag seen before with the same attributes is not formatted again.
    The page's edits are HTMLExporter's: alt text for images without one, tabindex on the cells' input
    and output areas inside the notebook.
    """

    ASCII_SPACES = BeautifulSoup.ASCII_SPACES
    builder = HTMLParserTreeBuilder()
    formatter = HTMLFormatter.REGISTRY["minimal"]
    # (name, prefix, attributes, a div inside the notebook) -> (Tag, its opening tag); bounded below.
    formatted: dict[tuple, tuple[Tag, str]] = {}
    FORMATTED_ENTRIES = 20_000
    formatted_generation = 0  # counts the clearings of `formatted`: segments remembered before one are dropped
    # (segment, ids of the open Tags, pending text) -> what feeding it gave; bounded below.
    segments: dict[tuple, tuple] = {}
    SEGMENT_ENTRIES = 50_000
    segment_characters = 0  # of the segments and pending texts in `segments`

    def __init__(self) -> None:
        self.formatted_generation = StreamingSoup.formatted_generation
        self.pieces: list[str] = []
        self.stack: list[Tag] = []
        self.open_names: Counter[str] = Counter()
        self.notebooks_open = 0  # open tags of class jp-Notebook
        self.preserving_whitespace = 0
        self.string_containers: list[str] = []
        self.current_data: list[str] = []
        self.missing_alt = 0
        self.contains_replacement_characters = False

    def serialize(self, page: str) -> str:
        parser = BeautifulSoupHTMLParser(self, convert_charrefs=False)
        try:
            for segment in SEGMENT_START.split(page):
                self.feed(parser, segment)
            parser.close()
        except AssertionError as error:  # as HTMLParserTreeBuilder.feed
            raise ParserRejectedMarkup(error) from None
        self.endData()
        while self.stack:
            self.pop()
        return "".join(self.pieces)

    def feed(self, parser: BeautifulSoupHTMLParser, segment: str) -> None:
        """Feed a segment of the page, or replay what it gave the last time it came in the same state.

        Most of a page is the same on every page of a run (the release's cells). A segment's output
        and the state it leaves depend only on the segment and the state it starts in, when the parser
        has nothing pending: the open tags (Tag objects are shared, see `formatted`) and the text not
        yet written. A segment with an end tag of a void element also depends on which void elements
        the parser closed itself (already_closed_empty_element), so it is always fed.
        """
        size = len(segment) + sum(map(len, self.current_data))
        memorable = (size <= LARGEST_REMEMBERED_SEGMENT and not parser.rawdata and parser.cdata_elem is None
                     and not VOID_END_TAG.search(segment))
        if memorable:
            key = (segment, tuple(map(id, self.stack)), tuple(self.current_data))
            known = self.segments.get(key)
            if known is not None:
                output, stack, pending, voids, missing_alt, _ = known
                self.pieces.append(output)
                self.restore(stack, pending)
                parser.already_closed_empty_element.extend(voids)
                self.missing_alt += missing_alt
                return
            pieces, voids, missing_alt = len(self.pieces), len(parser.already_closed_empty_element), self.missing_alt
            kept_alive = tuple(self.stack)
        parser.feed(segment)
        if memorable and not parser.rawdata and parser.cdata_elem is None and self.formatted_generation == \
                StreamingSoup.formatted_generation:
            if (len(self.segments) >= self.SEGMENT_ENTRIES
                    or StreamingSoup.segment_characters + size > SEGMENT_CHARACTERS):
                self.segments.clear()
                StreamingSoup.segment_characters = 0
            StreamingSoup.segment_characters += size
            self.segments[key] = ("".join(self.pieces[pieces:]), tuple(self.stack), tuple(self.current_data),
                                  tuple(parser.already_closed_empty_element[voids:]), self.missing_alt - missing_alt,
                                  kept_alive)  # the Tags whose ids are in the key stay alive with it

    def restore(self, stack: tuple[Tag, ...], pending: tuple[str, ...]) -> None:
        self.stack = list(stack)
        self.open_names = Counter(tag.name for tag in stack)
        self.notebooks_open = sum(has_class(tag, "jp-Notebook") for tag in stack)
        self.preserving_whitespace = sum(tag.name in self.builder.preserve_whitespace_tags for tag in stack)
        self.string_containers = [tag.name for tag in stack if tag.name in self.builder.string_containers]
        self.current_data = list(pending)

    # BeautifulSoup's tree-building interface, as BeautifulSoupHTMLParser calls it.

    def handle_starttag(self, name, namespace, nsprefix, attrs, sourceline=None, sourcepos=None,
                        namespaces=None) -> Tag:
        self.endData()
        if name == "img" and "alt" not in attrs:
            self.missing_alt += 1
        key = (name, nsprefix, tuple(attrs.items()), name == "div" and self.notebooks_open > 0)
        known = self.formatted.get(key)
        if known is None:
            known = self.format(key, Tag(None, self.builder, name, namespace, nsprefix, attrs, namespaces=namespaces))
        tag, opening = known
        self.pieces.append(opening)
        self.stack.append(tag)
        self.open_names[name] += 1
        if has_class(tag, "jp-Notebook"):
            self.notebooks_open += 1
        if name in self.builder.preserve_whitespace_tags:
            self.preserving_whitespace += 1
        if name in self.builder.string_containers:
            self.string_containers.append(name)
        return tag

    def format(self, key: tuple, tag: Tag) -> tuple[Tag, str]:
        if tag.name == "img" and "alt" not in tag.attrs:
            tag.attrs["alt"] = MISSING_ALT_TEXT
        if key[-1] and any(has_class(tag, wanted) for wanted in FOCUSABLE_CLASSES):
            tag.attrs["tabindex"] = "0"
        if len(self.formatted) >= self.FORMATTED_ENTRIES:
            # New Tags could reuse the ids of dropped ones: what was remembered by id goes too.
            self.formatted.clear()
            self.segments.clear()
            StreamingSoup.segment_characters = 0
            StreamingSoup.formatted_generation += 1
        self.formatted[key] = known = (tag, tag._format_tag(OUTPUT_ENCODING, self.formatter, opening=True))
        return known

    def handle_endtag(self, name, nsprefix=None) -> None:
        self.endData()
        if not self.open_names.get(name):
            return
        while self.stack:
            tag = self.pop()
            if tag.name == name and tag.prefix == nsprefix:
                return

    def pop(self) -> Tag:
        tag = self.stack.pop()
        self.open_names[tag.name] -= 1
        if has_class(tag, "jp-Notebook"):
            self.notebooks_open -= 1
        if tag.name in self.builder.preserve_whitespace_tags:
            self.preserving_whitespace -= 1
        if tag.name in self.builder.string_containers:
            self.string_containers.pop()
        self.pieces.append(self.formatted_closing(tag))
        return tag

    @staticmethod
    def formatted_closing(tag: Tag) -> str:
        if tag.can_be_empty_element:  # a void element was written as <x/> when it opened
            return ""
        return "</" + (tag.prefix + ":" if tag.prefix else "") + tag.name + ">"  # as Tag._format_tag

    def handle_data(self, data: str) -> None:
        self.current_data.append(data)

    def endData(self, containerClass=None) -> None:
        if not self.current_data:
            return
        data = "".join(self.current_data)
        self.current_data = []
        if not self.preserving_whitespace and all(character in self.ASCII_SPACES for character in data):
            data = "\n" if "\n" in data else " "
        container = containerClass or NavigableString
        if self.string_containers and container is NavigableString:
            container = self.builder.string_containers.get(self.string_containers[-1], container)
        string = container(data)
        string.parent = self.stack[-1] if self.stack else None  # the formatter leaves <script>/<style> text as it is
        self.pieces.append(string.output_ready(self.formatter))


def mark_page(page: str) -> tuple[str, int]:
    """HTMLExporter's page edits and serialization, without the tree; and how many images lacked alt text."""
    soup = StreamingSoup()
    return soup.serialize(page), soup.missing_alt
