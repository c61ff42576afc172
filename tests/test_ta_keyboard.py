"""The question page under a TA's fingers: keys faster than the server, answer groups, two TAs.

A class of eight teams (answer groups of three and two, three single
answers, one blank) is graded once with real `coursekit grade`; every test
runs on its SQLite gradebook and on a copy of it in a real PostgreSQL server
(tests/postgres.py; test_postgres_gradebook.py grades on PostgreSQL itself).
`coursekit ta-grade` then serves the page with a fake
save latency of 300 ms (a test-only setting; off by default), and headless
Chromium types as a TA does. Every check reads nbgrader's gradebook, never
the page's own word. Each test grades questions of its own; the last one
talks to the page's API directly.
"""
from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
from nbgrader.api import Base, Gradebook
from sqlalchemy import create_engine, insert, select

from coursekit.course import ASSIGNMENT_ID, NOTEBOOK_NAME
from test_ta_grading import CHROMIUM, GradingServer, browser, graded_class  # noqa: F401 (browser: a fixture)

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium at /usr/bin/chromium")

FAST, PACED, EMPTY_ENTER, ALONE, TWO_TAS, SCORE_ONLY, ALONE_MEANWHILE, FAILING = (
    "bmm_why_d", "bmm_context", "embedding_purpose", "embedding_args", "learning_rate_issues", "params_vs_hyperparams",
    "embedding_out_of_range", "net_no_output_activation")
QUESTIONS = (FAST, PACED, EMPTY_ENTER, ALONE, TWO_TAS, SCORE_ONLY, ALONE_MEANWHILE, FAILING)
SAVE_LATENCY = 0.3
THREE = "Shapes must agree: the inner dimensions of the product are equal."
TWO = "Because bmm multiplies batches of matrices."
# team -> its answer to every question above ("" leaves the stub: nbgrader scores it 0 itself)
ANSWERS = {
    "ann_ben": THREE, "cai_cem": THREE.upper(), "dan": "  " + THREE.replace(" ", "   "),
    "eli_eva": TWO, "fay": TWO.lower(),
    "gus": "The batch sizes are the same.", "hal_hus": "No idea, sorry.", "ida": "",
}
GROUP_OF_THREE, GROUP_OF_TWO = ["ann_ben", "cai_cem", "dan"], ["eli_eva", "fay"]
HALF_RIGHT = "Half right: the inner dimensions, but not why."
PRISTINE = "gradebook-as-graded.db"


@dataclass(frozen=True)
class Backend:
    name: str
    course: Path
    db_url: str


@pytest.fixture(scope="module")
def graded_on_sqlite(tmp_path_factory) -> Path:
    teams = {team: (f"Team members: {team}", {question: text for question in QUESTIONS} if text else {})
             for team, text in ANSWERS.items()}
    course, *_ = graded_class(folder=tmp_path_factory.mktemp("keys-sqlite"), teams=teams,
                              roster="username,first_name,last_name,email\n")
    # As graded, before the tests on SQLite grade anything: what the copy on PostgreSQL starts from.
    shutil.copyfile(course / "gradebook.db", course.parent / PRISTINE)
    return course


def copy_gradebook(source: str, target: str) -> None:
    """Every row of an nbgrader gradebook into an empty database, whose tables nbgrader makes itself."""
    Gradebook(target, "ml-ex2").close()   # tables, migration stamp and the course's row
    reading_engine, writing_engine = create_engine(source), create_engine(target)
    with reading_engine.connect() as reading, writing_engine.begin() as writing:
        for table in Base.metadata.sorted_tables:   # referenced tables first
            rows = [dict(row._mapping) for row in reading.execute(select(table))]
            if rows and table.name != "course":
                writing.execute(insert(table), rows)
    reading_engine.dispose()
    writing_engine.dispose()


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def backend(request, graded_on_sqlite, tmp_path_factory) -> Backend:
    sqlite_url = f"sqlite:///{graded_on_sqlite / 'gradebook.db'}"
    if request.param == "sqlite":
        return Backend("sqlite", graded_on_sqlite, sqlite_url)
    course = tmp_path_factory.mktemp("keys-postgresql") / "course"
    shutil.copytree(graded_on_sqlite, course)
    db_url = request.getfixturevalue("postgres_database")("keys")
    copy_gradebook(f"sqlite:///{graded_on_sqlite.parent / PRISTINE}", db_url)
    (course / "gradebook.db").unlink()
    with open(course / "nbgrader_config.py", "a", encoding="utf-8") as config:
        config.write(f'\nc.CourseDirectory.db_url = "{db_url}"\n')
    return Backend("postgresql", course, db_url)


@pytest.fixture(scope="module")
def server(backend):
    running = GradingServer(backend.course, settings={"save_latency": SAVE_LATENCY, "poll_seconds": 1})
    yield running
    running.stop()


def gradebook_grades(backend: Backend, question: str) -> dict[str, tuple[float | None, str | None]]:
    with Gradebook(backend.db_url, "ml-ex2") as gradebook:
        found = {}
        for team in ANSWERS:
            grade = gradebook.find_grade(question, NOTEBOOK_NAME, ASSIGNMENT_ID, team)
            comment = gradebook.find_comment(question, NOTEBOOK_NAME, ASSIGNMENT_ID, team)
            found[team] = (grade.manual_score, comment.manual_comment)
        return found


class TaPage:
    """One TA's question page in a browser context of its own."""

    def __init__(self, browser, server: GradingServer, question: str) -> None:
        self.context = browser.new_context()
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.page.on("pageerror", lambda error: self.errors.append(str(error)))
        self.page.goto(server.url)
        self.page.goto(f"{server.root}/coursekit/questions/{ASSIGNMENT_ID}/{NOTEBOOK_NAME}/{question}")
        self.page.wait_for_selector(".target.current")
        self.max = json.loads(self.page.locator("#config").text_content())["max"]

    def press(self, keys: list[str], *, delay_ms: int = 0) -> None:
        for key in keys:
            if key.startswith("type:"):
                self.page.keyboard.type(key.removeprefix("type:"))
            else:
                self.page.keyboard.press(key)
            if delay_ms:
                self.page.wait_for_timeout(delay_ms)

    def all_saved(self) -> None:
        self.page.wait_for_function("document.body.dataset.savesPending === '0'", timeout=60_000)

    def current_teams(self) -> list[str]:
        return json.loads(self.page.locator(".target.current").get_attribute("data-teams"))

    def target(self, teams: list[str], kind: str):
        return self.page.locator(f".target[data-kind='{kind}'][data-teams='{json.dumps(teams)}']")

    def select(self, teams: list[str], kind: str) -> None:
        """Click an answer by its title (not into its fields), as a TA picks one with the mouse."""
        self.target(teams, kind).locator("strong").first.click()

    def stop_polling(self) -> None:
        """As on a slow network: this page hears nothing of other TAs' saves."""
        self.page.route(re.compile(r"/coursekit/api/grades\?"), lambda route: route.abort())

    def close(self) -> None:
        assert self.errors == []
        self.context.close()


def ungraded_groups(page: TaPage) -> list[list[str]]:
    """The answer groups still to grade, in the page's order: where Enter goes next, one after another."""
    groups = page.page.locator(".group-target[data-graded='false']")
    return [json.loads(groups.nth(number).get_attribute("data-teams")) for number in range(groups.count())]


@pytest.mark.parametrize("question,delay_ms", [(FAST, 0), (PACED, 150)], ids=["0ms", "150ms"])
def test_keys_typed_during_slow_saves_land_on_the_answer_in_view(backend, server, browser, question, delay_ms):
    page = TaPage(browser, server, question)
    groups = ungraded_groups(page)
    assert groups == [GROUP_OF_THREE, GROUP_OF_TWO, ["gus"], ["hal_hus"]]  # the blank answer needs no TA
    keys, intended = [], {}
    for number, teams in enumerate(groups):
        points = 1 + number % min(3, int(page.max))
        keys.append(str(points))
        comment = None
        if number == 1:  # one comment on the way, typed as fast as the rest
            comment = f"Group comment at {delay_ms} ms."
            keys += ["c", f"type:{comment}"]
        keys.append("Enter")
        intended.update({team: (float(points), comment) for team in teams})
    # 300 ms per save, keys every 0 or 150 ms: Enter never waits for the save before it.
    page.press(keys, delay_ms=delay_ms)
    page.all_saved()
    assert page.page.locator("#saves").text_content() == "all saved"
    assert gradebook_grades(backend, question) == {**intended, "ida": (None, None)}
    assert page.page.locator("#progress").text_content() == "8 / 8 graded"
    page.close()


def test_enter_on_an_empty_group_field_changes_nothing_and_teams_graded_alone_keep_their_grade(backend, server, browser):
    page = TaPage(browser, server, EMPTY_ENTER)
    assert page.current_teams() == GROUP_OF_THREE
    # The first team of the group, graded alone: j goes to it.
    page.press(["j", "1", "c", f"type:{HALF_RIGHT}", "Enter"])
    page.all_saved()
    alone = page.target(["ann_ben"], "team")
    assert "graded-alone" in alone.get_attribute("class")
    # Back on the group: its field is empty (no team that follows it has points); Enter saves nothing.
    page.select(GROUP_OF_THREE, "group")
    assert page.target(GROUP_OF_THREE, "group").locator("input.score").input_value() == ""
    before = gradebook_grades(backend, EMPTY_ENTER)
    page.press(["Enter"])
    page.all_saved()
    assert gradebook_grades(backend, EMPTY_ENTER) == before
    assert before["ann_ben"] == (1.0, HALF_RIGHT) and before["cai_cem"] == before["dan"] == (None, None)
    # Points for the group: the two teams that follow it get them, ann_ben keeps its own score and comment.
    page.select(GROUP_OF_THREE, "group")
    page.press(["3", "c", "type:Clear.", "Enter"])
    page.all_saved()
    after = gradebook_grades(backend, EMPTY_ENTER)
    assert after["ann_ben"] == (1.0, HALF_RIGHT)
    assert after["cai_cem"] == after["dan"] == (3.0, "Clear.")
    assert "2 of 3 teams" in page.target(GROUP_OF_THREE, "group").locator(".applies").text_content()
    page.close()


def test_a_team_graded_alone_gets_the_groups_grade_only_when_the_ta_says_so(backend, server, browser):
    page = TaPage(browser, server, ALONE)
    page.press(["j", "1", "c", f"type:{HALF_RIGHT}", "Enter"])        # ann_ben alone
    page.all_saved()
    page.select(GROUP_OF_THREE, "group")
    page.press(["2", "Enter"])                                         # the group: cai_cem and dan
    page.all_saved()
    assert gradebook_grades(backend, ALONE)["ann_ben"] == (1.0, HALF_RIGHT)
    # g on ann_ben: the group's grade, on purpose; ann_ben follows the group from then on.
    page.select(["ann_ben"], "team")
    page.press(["g"])
    page.all_saved()
    assert gradebook_grades(backend, ALONE)["ann_ben"] == (2.0, None)
    assert "graded-alone" not in page.target(["ann_ben"], "team").get_attribute("class")
    page.select(GROUP_OF_THREE, "group")
    page.press(["3", "Enter"])
    page.all_saved()
    grades = gradebook_grades(backend, ALONE)
    assert [grades[team] for team in GROUP_OF_THREE] == [(3.0, None)] * 3
    page.close()


def test_two_tas_saving_the_same_answer_see_a_conflict_and_lose_nothing(backend, server, browser):
    first, second = TaPage(browser, server, TWO_TAS), TaPage(browser, server, TWO_TAS)
    second.stop_polling()
    first.press(["2", "c", "type:Right idea.", "Enter"])
    first.all_saved()
    assert gradebook_grades(backend, TWO_TAS)["cai_cem"] == (2.0, "Right idea.")
    # The second TA saw the group ungraded and saves 3 over it: refused, both values shown.
    second.press(["3", "Enter"])
    second.all_saved()
    group = second.target(GROUP_OF_THREE, "group")
    conflict = group.locator(".conflict")
    conflict.wait_for()
    text = conflict.text_content()
    assert "another TA saved 2 points" in text and "yours: 3 points" in text and "m keeps mine, t keeps theirs" in text
    assert second.page.evaluate("document.body.dataset.conflicts") == "1"
    assert gradebook_grades(backend, TWO_TAS)["cai_cem"] == (2.0, "Right idea.")
    # t: theirs stays, and the page shows it.
    second.select(GROUP_OF_THREE, "group")
    second.press(["t"])
    second.all_saved()
    assert group.locator("input.score").input_value() == "2"
    assert [gradebook_grades(backend, TWO_TAS)[team] for team in GROUP_OF_THREE] == [(2.0, "Right idea.")] * 3
    # Again, and m: mine replaces theirs, knowingly; the comment nobody changed stays.
    first.select(GROUP_OF_THREE, "group")
    first.press(["1", "Enter"])
    first.all_saved()
    second.select(GROUP_OF_THREE, "group")
    second.press(["3", "Enter"])
    second.all_saved()
    group.locator(".conflict").wait_for()
    second.press(["m"])
    second.all_saved()
    assert [gradebook_grades(backend, TWO_TAS)[team] for team in GROUP_OF_THREE] == [(3.0, "Right idea.")] * 3
    # The first TA's page shows the other TA's save by itself, within seconds.
    first.page.wait_for_function(
        "teams => document.querySelector(`.group-target[data-teams='${teams}'] input.score`).value === '3'",
        arg=json.dumps(GROUP_OF_THREE), timeout=15_000)
    first.close()
    second.close()


def test_a_score_only_save_keeps_the_comment_another_ta_wrote(backend, server, browser):
    first, second = TaPage(browser, server, SCORE_ONLY), TaPage(browser, server, SCORE_ONLY)
    second.stop_polling()
    first.select(["gus"], "group")
    first.press(["c", "type:Names the batch, not the inner dimensions.", "Enter"])   # a comment, no points
    first.all_saved()
    second.select(["gus"], "group")
    second.press(["2", "Enter"])                                                      # points, no comment
    second.all_saved()
    assert second.page.evaluate("document.body.dataset.conflicts") == "0"
    assert gradebook_grades(backend, SCORE_ONLY)["gus"] == (2.0, "Names the batch, not the inner dimensions.")
    first.close()
    second.close()


def test_an_answer_of_one_team_graded_elsewhere_is_graded_again_on_the_page(backend, server, browser):
    """gus's answer is a group of its own: graded alone first (as in the formgrader), Enter grades it again."""
    server.save(FAILING, ["gus"], score=1, comment="From the formgrader.", as_group=False)
    page = TaPage(browser, server, FAILING)
    page.select(["gus"], "group")
    assert page.target(["gus"], "group").locator("input.score").input_value() == "1"
    page.press(["3", "Enter"])
    page.all_saved()
    assert page.page.evaluate("document.body.dataset.conflicts") == "0"
    assert gradebook_grades(backend, FAILING)["gus"] == (3.0, "From the formgrader.")
    page.close()


def test_a_failed_save_says_so_at_the_answer_and_keeps_the_value(backend, server, browser):
    page = TaPage(browser, server, FAILING)
    saves = re.compile(r"/coursekit/api/grades$")
    page.page.route(saves, lambda route: route.abort() if route.request.method == "POST" else route.continue_())
    page.press(["2", "c", "type:Says why.", "Enter"])
    page.all_saved()
    group = page.target(GROUP_OF_THREE, "group")
    assert "not saved" in group.locator(".state").text_content()
    assert group.locator("input.score").input_value() == "2"
    assert group.locator("textarea.comment").input_value() == "Says why."
    assert group.get_attribute("data-graded") == "false" and "1 not saved" in page.page.locator("#saves").text_content()
    assert [gradebook_grades(backend, FAILING)[team] for team in GROUP_OF_THREE] == [(None, None)] * 3
    # The server is back: Enter on the answer saves what its fields still hold.
    page.page.unroute(saves)
    page.select(GROUP_OF_THREE, "group")
    page.press(["Enter"])
    page.all_saved()
    assert group.locator(".state").text_content() == "saved"
    assert [gradebook_grades(backend, FAILING)[team] for team in GROUP_OF_THREE] == [(2.0, "Says why.")] * 3
    page.close()


def test_a_group_save_skips_a_team_graded_alone_since_the_page_saw_it(backend, server):
    """Through the page's API: the first TA's page saw the group ungraded; meanwhile a second TA gave
    one team a comment of its own (no score, so no score version changed)."""
    seen = server.grades(ALONE_MEANWHILE)
    assert all(seen[team]["follows"] for team in GROUP_OF_THREE)
    server.save(ALONE_MEANWHILE, ["cai_cem"], comment="Own words, but only half of it.", as_group=False)
    body = {"assignment": ASSIGNMENT_ID, "notebook": NOTEBOOK_NAME, "question": ALONE_MEANWHILE, "as": "group",
            "changes": [{"team": team, "score": 2, "score_seen": seen[team]["scoreVersion"]} for team in GROUP_OF_THREE]}
    answer = server.post_grades(body)
    assert sorted(item["team"] for item in answer["saved"]) == ["ann_ben", "dan"]
    assert [(item["team"], item["field"], item["theirs"]["follows"]) for item in answer["conflicts"]] == [
        ("cai_cem", "score", False)]
    assert gradebook_grades(backend, ALONE_MEANWHILE)["cai_cem"] == (None, "Own words, but only half of it.")
    # Given on purpose (g, or m after the conflict), the group's grade reaches it, and it follows the group again.
    answer = server.post_grades({**body, "explicit": True, "changes": [
        {"team": "cai_cem", "score": 2, "score_seen": answer["conflicts"][0]["theirs"]["scoreVersion"]}]})
    assert answer["conflicts"] == [] and answer["saved"][0]["follows"] is True
    assert gradebook_grades(backend, ALONE_MEANWHILE)["cai_cem"] == (2.0, "Own words, but only half of it.")
