"""Feedback pages from FeedbackHTMLExporter are nbconvert's HTMLExporter's, made readable offline.

One small class (full marks, partly right with tracebacks, blank) is autograded
once with real nbgrader and the course's configuration; its feedback is then
generated with nbconvert's exporter and with the kit's, and compared: byte for
byte the same once nbconvert's page has its CDN MathJax replaced by the kit's
inline KaTeX and wrapping style. (tests/test_feedback_offline.py opens such
pages in a browser without a network.) The serialization without
BeautifulSoup's tree is compared with BeautifulSoup's on HTML that exercises
every rule it follows.
"""
import re
import shutil

import pytest
from bs4 import BeautifulSoup
from nbconvert.exporters import HTMLExporter

from coursekit import demo
from coursekit.engine import grading
from coursekit.course import ASSIGNMENT_ID, NOTEBOOK_NAME
from coursekit.reports.feedback_exporter import WRAPPING_STYLE, FeedbackHTMLExporter
from coursekit.reports.page_serializer import MISSING_ALT_TEXT, mark_page
from coursekit.reports.math import inline_katex
from conftest import REPOSITORY

SAMPLES = ("all_correct", "partly_right", "blank")


def feedback_pages(course):
    return {path.relative_to(course / "feedback"): path.read_bytes()
            for path in sorted((course / "feedback").glob(f"*/{ASSIGNMENT_ID}/{NOTEBOOK_NAME}.html"))}


def offline(page: bytes) -> bytes:
    """nbconvert's page as the kit makes it: no MathJax from a CDN, KaTeX and the wrapping style inline."""
    soup = BeautifulSoup(page.decode("utf-8"), features="html.parser")
    for script in soup.find_all("script"):
        if "mathjax" in script.attrs.get("src", "").lower() or script.attrs.get("type") == "text/x-mathjax-config":
            script.decompose()
    return str(soup).replace("</head>", WRAPPING_STYLE + inline_katex() + "</head>", 1).encode("utf-8")


def test_kit_exporter_writes_nbconverts_pages_made_offline(course):
    samples = demo.sample_notebooks(REPOSITORY)
    for name in SAMPLES:
        path = grading.submission_path(course, name)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(samples[name])
    assert grading.autograde(course_root=course).returncode == 0

    stock = grading.run_nbgrader(course, "generate_feedback", ASSIGNMENT_ID, "--force",
                                 "--GenerateFeedback.exporter_class=nbconvert.exporters.HTMLExporter")
    assert stock.returncode == 0, stock.stderr
    expected = feedback_pages(course)
    shutil.rmtree(course / "feedback")
    kit = grading.run_nbgrader(course, "generate_feedback", ASSIGNMENT_ID, "--force")  # nbgrader_config.py's
    assert kit.returncode == 0, kit.stderr
    assert len(expected) == len(SAMPLES)
    assert all(b"cdnjs.cloudflare.com/ajax/libs/mathjax" in page for page in expected.values())
    kit_pages = feedback_pages(course)
    assert kit_pages == {name: offline(page) for name, page in expected.items()}
    # Nothing the page loads comes from the network.
    assert not any(re.search(rb'<(?:script|link|img)\b[^>]*\b(?:src|href)="?(?:https?:)?//', page) for page in kit_pages.values())
    assert any(b"Traceback" in page or b"Error" in page for page in expected.values())


def test_code_too_long_to_highlight_is_shown_as_escaped_text():
    """Highlighting costs about a millisecond per token: a cell of megabytes is shown as plain text."""
    import nbformat

    from coursekit.reports.feedback_exporter import HIGHLIGHT_LIMIT, FeedbackHTMLExporter

    long_code = "x = (" + "1 + " * (HIGHLIGHT_LIMIT // 2) + "1)  # <script>alert(1)</script>"
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(long_code),
                                               nbformat.v4.new_code_cell("y = 2")])
    page, _ = FeedbackHTMLExporter().from_notebook_node(notebook)
    assert "1 + 1 + 1" in page and "&lt;script&gt;alert(1)" in page and "<script>alert(1)" not in page
    assert '<span class="n">y</span>' in page  # short cells are still highlighted


def test_a_page_renders_a_bounded_amount_of_student_code_and_output():
    """Many cells just under the highlight limit, coloured text and markdown outputs: each page renders at
    most RENDER_BUDGET characters of them, the rest is plain text, so it stays a page of few elements."""
    import re

    import nbformat

    from coursekit.reports.feedback_exporter import ELEMENT_BUDGET, RENDER_BUDGET, FeedbackHTMLExporter

    cells = [nbformat.v4.new_code_cell("a;" * 9_995) for _ in range(40)]
    coloured = nbformat.v4.new_code_cell("print()", outputs=[nbformat.v4.new_output(
        "stream", name="stdout", text="\x1b[1;31ma\x1b[0;32mb" * 100_000)])
    markdown = nbformat.v4.new_code_cell("show()", outputs=[nbformat.v4.new_output(
        "display_data", data={"text/markdown": "*a*" * 2_663}) for _ in range(150)])
    notebook = nbformat.v4.new_notebook(cells=[*cells, coloured, markdown, nbformat.v4.new_code_cell("y = 2")])
    exporter = FeedbackHTMLExporter()
    page, _ = exporter.from_notebook_node(notebook)
    elements = len(re.findall(r"<[a-zA-Z]", page))
    assert elements < ELEMENT_BUDGET + 5_000, elements  # the page's own elements: ~100 per cell
    assert page.count("a;a;a;") >= 40 and page.count("<em>a</em>") < RENDER_BUDGET // 3  # all there, little rendered
    assert "\x1b" not in page and "ab" * 100 in page
    again, _ = exporter.from_notebook_node(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("y = 2")]))
    assert '<span class="n">y</span>' in again  # every page has its own budget


# HTML the streaming serialization must write exactly as BeautifulSoup does: nesting repaired by end tags,
# stray end tags, whitespace-only strings inside and outside <pre>, script and style text, every kind of
# character reference, duplicate and multi-valued attributes, quotes, charset declarations, void and
# self-closed elements, comments, CDATA, processing instructions, declarations, the cells' focusable areas
# and images without alt text, inside and outside the notebook.
MARKUP = [
    "<p>a<b>b<i>c</b>d</i>e</p>", "</div>stray<div>x", "<pre>\n\n   </pre><div>   \n  </div><span>  </span>",
    "<script>if (a < b && c > d) { x = '&amp;' }</script><style>a>b{}</style>",
    "&amp;&lt;&gt;&quot;&#39;&#x27;&#0;&#150;&nosuch;&copy &notin; &#xZZ;",
    "<a href='x' href='y' class='  a   b  ' title=\"q'uote\" data-x='d\"q' data-y='both\"and&#39;'>t</a>",
    "<meta charset='UTF-8'><meta http-equiv='Content-Type' content='text/html; charset=ISO-8859-1'>",
    "<br></br><br/><div/>after<img src=x><img src=y alt=''><IMG SRC=z>",
    "<!-- c --><!--   --><![CDATA[x<y]]><?pi x?><!DOCTYPE html><!ELEMENT br EMPTY>",
    "<div class='jp-Notebook'><div class='x jp-Cell-inputWrapper'>a</div><section><div class='jp-OutputArea-output'/>"
    "</section></div><div class='jp-OutputArea-output'>out</div>",
    "<textarea>  \n </textarea><table><tr><td>1<td>2</table>", "<p>unclosed <b>bold <i>it",
    "<svg><path d='M0'/><circle/></svg>", "x < y > z & w", "<a b c=>x</a><a =x>y</a>",
    "<template><p>t</p></template><rt>r</rt>", "<body onload=x><p id=a id=b>",
]


def beautifulsoup_page(page: str) -> tuple[str, int]:
    """What nbconvert's HTMLExporter does after rendering (nbconvert 7.x), with BeautifulSoup and soupsieve."""
    soup = BeautifulSoup(page, features="html.parser")
    missing = 0
    for element in soup.select("img:not([alt])"):
        element.attrs["alt"] = MISSING_ALT_TEXT
        missing += 1
    for element in soup.select(".jp-Notebook div.jp-Cell-inputWrapper"):
        element.attrs["tabindex"] = "0"
    for element in soup.select(".jp-Notebook div.jp-OutputArea-output"):
        element.attrs["tabindex"] = "0"
    return str(soup), missing


@pytest.mark.parametrize("markup", MARKUP)
def test_pages_are_serialized_as_beautifulsoup_serializes_them(markup):
    assert mark_page(markup) == beautifulsoup_page(markup)


def test_memoized_filters_give_what_nbconvert_gives(release):
    exporter = FeedbackHTMLExporter()
    stock = HTMLExporter()
    page, _ = exporter.from_notebook_node(release)
    again, _ = exporter.from_notebook_node(release)  # from the memo now
    assert page == again == offline(stock.from_notebook_node(release)[0].encode("utf-8")).decode("utf-8")


def test_segments_remembered_from_other_pages_give_beautifulsoups_output():
    # Lines opening a div are where pages are cut and remembered; the same segments come again inside
    # other open tags, after pending text, after self-closed void elements, inside <pre> and <script>.
    segments = ["\n<div class='jp-Cell-inputWrapper'>in</div>", "\n<div class='jp-Notebook'>", "\n<div>a<br>b",
                "\n<div>  </div>\n  ", "\n<div><img src=x></div>", "</div>", "\n<div></br></div>", "<pre>",
                "\n<div>x & y</div>", "<script>", "\n<div>in a script</div>", "</script>", "</pre>"]
    import itertools
    pages = ["".join(order) for order in itertools.permutations(segments[:6], 4)]
    pages += ["".join(segments), "".join(reversed(segments)), "".join(segments[6:] + segments[:6])]
    for page in pages + pages:  # the second time from what the first left remembered
        assert mark_page(page) == beautifulsoup_page(page), page
