"""The sanitizer on its own: what it removes, and that ordinary answers come through unchanged."""
import copy

import nbformat
import pytest

from coursekit.reports.html_safety import PLAIN_TEXT_NOTE, clean_html, clean_markdown, clean_svg, renders_safely
from coursekit.nbgrader_plugins.preprocessors import SanitizeStudentContent, safe_output


@pytest.mark.parametrize("text", [
    "a < b and c > d, AT&T",
    "> a quoted line\n\n- a list\n- [x] a done task",
    "| a | b |\n|:--|--:|\n| 1 | 2 |",
    "`squeeze(x, 0)` and ```python\nif a < 3 and b > 2:\n    pass\n```",
    "$\\frac{QK^T}{\\sqrt{d_k}}$ and **bold** <b>too</b><br>",
    "[the docs](https://pytorch.org/docs) and ![a plot](plot.png)",
])
def test_ordinary_markdown_is_kept_as_written(text):
    assert clean_markdown(text) == text


def test_the_masters_markdown_comes_through_unchanged(master):
    for cell in master.cells:
        if cell.cell_type == "markdown":
            assert clean_markdown(cell.source) == cell.source


@pytest.mark.parametrize("text, gone", [
    ("Because <script>alert(1)</script> it is", "script"),
    ('<img src=x onerror="alert(1)">', "onerror"),
    ('<a href="javascript:alert(1)">x</a>', "javascript"),
    ('<iframe srcdoc="<script>alert(1)</script>"></iframe>', "iframe"),
    ("<style>body{display:none}</style><meta http-equiv=refresh content=0><base href=//evil><form>", "style"),
    ("<svg onload=alert(1)>", "svg"),
])
def test_raw_html_that_can_run_is_removed_and_the_text_stays(text, gone):
    cleaned = clean_markdown("Answer: " + text)
    assert gone not in cleaned.lower()
    assert cleaned.startswith("Answer: ")
    assert renders_safely(cleaned)


@pytest.mark.parametrize("text", [
    "[click](javascript:alert(1))",
    "[click](JaVaScRiPt:alert(1))",
    "&#91;x&#93;(javascript:alert(1))",        # entities that nh3 decodes into link syntax
    "[x][r]\n\n[r]: javascript:alert(1)",
    "![x](data:text/html;base64,PHNjcmlwdD4=)",
])
def test_markdown_links_that_can_run_make_the_answer_plain_text(text):
    cleaned = clean_markdown(text)
    assert renders_safely(cleaned)
    assert cleaned.startswith(PLAIN_TEXT_NOTE) and text in cleaned  # the TA still reads what was written


def test_sanitizing_twice_changes_nothing_more():
    for text in ("x<y, $a<b$ & <b>bold</b>", "[c](javascript:alert(1))", "```\n<b>\n```"):
        once = clean_markdown(text)
        assert clean_markdown(once) == once


def test_html_and_svg_outputs_keep_their_content_without_handlers():
    assert clean_html('<table><tr><td onclick="x()">1</td></tr></table>') == "<table><tbody><tr><td>1</td></tr></tbody></table>"
    assert clean_html('<img src="data:image/png;base64,iVBO" onerror="x()">') == '<img src="data:image/png;base64,iVBO">'
    assert "data:" not in clean_html('<img src="data:image/svg+xml;base64,PHN2Zz4=">')
    svg = clean_svg('<svg xmlns="http://www.w3.org/2000/svg" onload="x()"><script>x()</script>'
                    '<defs><path id="p" d="M0 0"/></defs><use xlink:href="#p"/><use href="http://evil/x.svg#p"/>'
                    '<foreignObject><img src=x onerror=x()></foreignObject></svg>')
    assert "onload" not in svg and "script" not in svg and "foreignObject" not in svg and "evil" not in svg
    assert '<path id="p" d="M0 0">' in svg and 'xlink:href="#p"' in svg


def display(data, metadata=None):
    return nbformat.v4.new_output("display_data", data=data, metadata=metadata or {})


def test_outputs_that_can_only_run_code_are_dropped():
    assert safe_output(display({"application/javascript": "alert(1)"})) is None
    assert safe_output(display({"application/vnd.jupyter.widget-view+json": {"model_id": "m"}})) is None
    assert safe_output(display({"application/x-unknown": "?"})) is None
    kept = safe_output(display({"text/plain": "Net()", "application/vnd.bokehjs_exec.v0+json": "",
                                "text/javascript": "alert(1)"}))
    assert dict(kept.data) == {"text/plain": "Net()"}


def test_images_keep_numeric_sizes_only():
    output = safe_output(display({"image/png": "iVBORw0KGgo=", "image/jpeg": "not base64 <img>"},
                                 {"image/png": {"width": "1 onerror=alert(1)", "height": 40},
                                  "text/html": {"isolated": True}}))
    assert dict(output.data) == {"image/png": "iVBORw0KGgo="}
    assert output.metadata == {"image/png": {"height": 40}}


def test_preprocessor_leaves_locked_cells_and_scores_alone(release):
    notebook = copy.deepcopy(release)
    answer = next(cell for cell in notebook.cells if cell.cell_type == "markdown"
                  and cell.metadata.get("nbgrader", {}).get("solution"))
    answer.source = "<script>alert(1)</script>Because."
    code = next(cell for cell in notebook.cells if cell.cell_type == "code")
    code.outputs = [nbformat.v4.new_output("stream", name="stdout", text="<b>printed</b>"),
                    display({"text/html": "<b onclick=x()>shown</b>"})]
    notebook.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {}}
    locked_before = [cell.source for cell in notebook.cells if cell.metadata.get("nbgrader", {}).get("locked")]
    cleaned, _ = SanitizeStudentContent().preprocess(notebook, {})
    assert answer.source == "Because."
    assert code.outputs[0].text == "<b>printed</b>"  # stream text is always escaped when shown
    assert code.outputs[1].data["text/html"] == "<b>shown</b>"
    assert "widgets" not in cleaned.metadata
    assert [cell.source for cell in cleaned.cells if cell.metadata.get("nbgrader", {}).get("locked")] == locked_before


def test_text_json_allows_but_nh3_cannot_take_is_replaced_not_fatal():
    assert clean_markdown("a\ud800b <script>x</script>") == "a?b "
    assert safe_output(display({"text/html": "<b>\ud800</b>"})).data["text/html"] == "<b>?</b>"


def test_an_answer_too_long_to_render_is_plain_text_and_cheap():
    """Nested brackets make markdown rendering quadratic; past the limit nothing is rendered, nothing lost."""
    import time

    from coursekit.reports.html_safety import LONG_TEXT_NOTE, MARKDOWN_RENDER_LIMIT

    brackets = "[" * 30_000 + "x" + "](" * 30_000
    started = time.process_time()
    cleaned = clean_markdown(brackets)
    assert cleaned.startswith(LONG_TEXT_NOTE) and brackets in cleaned and renders_safely(cleaned)
    assert time.process_time() - started < 30  # a bound on the work, far above the milliseconds it takes
    assert clean_markdown("word " * (MARKDOWN_RENDER_LIMIT // 5)) == "word " * (MARKDOWN_RENDER_LIMIT // 5)
    script = "<script>alert(1)</script>" + "a" * MARKDOWN_RENDER_LIMIT
    assert "```text\n<script>" in clean_markdown(script) and renders_safely(clean_markdown(script))


def test_a_notebooks_rich_outputs_are_bounded_together():
    from coursekit.nbgrader_plugins.preprocessors import RICH_OUTPUT_BUDGET

    outputs = [nbformat.v4.new_output("display_data", data={"text/html": "<i>a</i>" * 10_000, "text/plain": "<HTML>"})
               for _ in range(20)]
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("show()", outputs=outputs)])
    cleaned, _ = SanitizeStudentContent().preprocess(notebook, {})
    kept = [output for output in cleaned.cells[0].outputs if "text/html" in output.data]
    assert len(kept) == RICH_OUTPUT_BUDGET // 80_000
    assert all(output.data["text/plain"] == "<HTML>" for output in cleaned.cells[0].outputs)
