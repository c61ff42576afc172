"""Feedback pages from FeedbackHTMLExporter are byte for byte nbconvert's HTMLExporter's.

One small class (full marks, partly right with tracebacks, blank) is autograded
once with real nbgrader and the course's configuration; its feedback is then
generated with nbconvert's exporter and with the kit's, and compared. The
serialization without BeautifulSoup's tree is compared with BeautifulSoup's on
HTML that exercises every rule it follows.
"""
import shutil

import pytest
from bs4 import BeautifulSoup
from nbconvert.exporters import HTMLExporter

from coursekit import demo
from coursekit.engine import grading
from coursekit.course import ASSIGNMENT_ID, NOTEBOOK_NAME
from coursekit.reports.feedback_exporter import MISSING_ALT_TEXT, FeedbackHTMLExporter, mark_page

from conftest import REPOSITORY

SAMPLES = ("all_correct", "partly_right", "blank")


def feedback_pages(course):
    return {path.relative_to(course / "feedback"): path.read_bytes()
            for path in sorted((course / "feedback").glob(f"*/{ASSIGNMENT_ID}/{NOTEBOOK_NAME}.html"))}


def test_kit_exporter_writes_the_same_pages_as_nbconvert(course):
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
    assert feedback_pages(course) == expected
    assert any(b"Traceback" in page or b"Error" in page for page in expected.values())


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
    assert page == again == stock.from_notebook_node(release)[0]


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
