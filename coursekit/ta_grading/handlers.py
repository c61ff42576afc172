"""Tornado handlers of the question-by-question grading page, inside a Jupyter server.

They are jupyter-server handlers: the server's login (token or password)
guards them and POSTs need the server's XSRF token, as for its own API.
"""
from __future__ import annotations

import asyncio
import json
from pathlib import Path

import bleach
import mistune
from jinja2 import Environment, PackageLoader, select_autoescape
from jupyter_server.base.handlers import JupyterHandler
from jupyter_server.utils import url_path_join
from nbgrader.api import MissingEntry
from tornado import web
from traitlets import Float
from traitlets.config import Configurable

from coursekit.errors import CourseKitError
from coursekit.reports.math import KATEX_FOLDER, linked_katex
from coursekit.ta_grading.grades import TeamChange
from coursekit.ta_grading.questions import (QUESTION_ID, CoursePaths, QuestionRef, course_paths, grades_now,
                                            list_questions, load_question, save_changes)

URL_PREFIX = "/coursekit/questions"
API_URL = "/coursekit/api/grades"
# The page's script and KaTeX: public files, served without login like jupyter-server's own /static.
STATIC_URL = "/coursekit/static"
KATEX_URL = STATIC_URL + "/katex"
STATIC_FOLDER = Path(__file__).resolve().parent / "static"
PATHS_SETTING = "coursekit_ta_paths"
TEMPLATES_SETTING = "coursekit_ta_templates"
SETTINGS = "coursekit_ta_settings"


class TaGrading(Configurable):
    """Settings of the question page, from the Jupyter server's configuration (`c.TaGrading.…`)."""

    poll_seconds = Float(2.0, help="How often a question page asks for other TAs' saves.").tag(config=True)
    save_latency = Float(0.0, help="For tests only: seconds every save waits before it is written, "
                                   "as over a slow network or with a busy database.").tag(config=True)

# Reference answers and rubrics are the instructor's markdown; they are still
# sanitized, because a course folder may be shared by several people.
ALLOWED_TAGS = ["p", "ul", "ol", "li", "strong", "em", "code", "pre", "br", "h1", "h2", "h3", "h4",
                "blockquote", "table", "thead", "tbody", "tr", "th", "td", "hr", "a", "span", "sub", "sup"]
MARKDOWN = mistune.create_markdown(escape=True, plugins=["table", "strikethrough"])


def instructor_markdown(text: str) -> str:
    return bleach.clean(MARKDOWN(text), tags=ALLOWED_TAGS, attributes={"a": ["href", "title"]}, strip=True)


def template_environment() -> Environment:
    environment = Environment(loader=PackageLoader("coursekit.ta_grading", "templates"),
                              autoescape=select_autoescape(default=True, default_for_string=True))
    environment.filters["markdown"] = instructor_markdown
    environment.filters["points"] = lambda value: "" if value is None else f"{value:g}"
    return environment


class TaGradingHandler(JupyterHandler):
    @property
    def paths(self) -> CoursePaths:
        paths = self.settings.get(PATHS_SETTING)
        if paths is None:
            try:
                paths = course_paths(root_dir=Path(self.settings["server_root_dir"]).expanduser().resolve())
            except CourseKitError as error:
                raise web.HTTPError(500, str(error)) from None
            self.settings[PATHS_SETTING] = paths
        return paths

    def page(self, name: str, **values) -> str:
        environment = self.settings[TEMPLATES_SETTING]
        base_url = self.base_url.rstrip("/")
        return environment.get_template(name).render(
            base_url=base_url, prefix=URL_PREFIX, api_url=API_URL, static_prefix=STATIC_URL,
            math_head=linked_katex(base_url + KATEX_URL, selector=".math"),
            xsrf_token=self.xsrf_token.decode("ascii"), **values)


def question_from(assignment_id: str, notebook_id: str, grade_id: str) -> QuestionRef:
    for part in (assignment_id, notebook_id, grade_id):
        if not QUESTION_ID.match(part):
            raise web.HTTPError(404)
    return QuestionRef(assignment_id, notebook_id, grade_id)


class QuestionListHandler(TaGradingHandler):
    @web.authenticated
    def get(self) -> None:
        questions = list_questions(paths=self.paths)
        self.finish(self.page("questions.html", questions=questions))


class QuestionHandler(TaGradingHandler):
    @web.authenticated
    def get(self, assignment_id: str, notebook_id: str, grade_id: str) -> None:
        question = question_from(assignment_id, notebook_id, grade_id)
        try:
            page = load_question(paths=self.paths, question=question)
        except MissingEntry:
            raise web.HTTPError(404, f"no manually graded question {grade_id}") from None
        questions = list_questions(paths=self.paths)
        position = next((index for index, item in enumerate(questions) if item.question == question), 0)
        following = questions[position + 1].question if position + 1 < len(questions) else None
        teams_state = {answer.team_id: answer.grade.as_json() for group in page.groups for answer in group.answers}
        self.finish(self.page("question.html", page=page, question=question, following=following,
                              teams_state=teams_state, poll_seconds=self.settings[SETTINGS].poll_seconds))


class GradesApiHandler(TaGradingHandler):
    """GET: every team's grade of one question (what pages poll). POST: a TA's changes to some teams' grades.

    A POST body names the question, whether the values were set for an answer
    group ("as": "group") or for one team alone ("team"), and the changes:
    per team a new `score` and/or `comment`, each with the version of the
    field the page showed (`score_seen`, `comment_seen`). A score cannot be
    emptied. Fields changed since the page saw them are not written and come
    back as conflicts, with the value saved in the meantime; so do a group's
    values for a team graded alone, unless the TA gave them to it on purpose
    ("explicit": true).
    """

    @web.authenticated
    def get(self) -> None:
        question = question_from(self.get_query_argument("assignment", ""), self.get_query_argument("notebook", ""),
                                 self.get_query_argument("question", ""))
        try:
            grades, progress = grades_now(paths=self.paths, question=question)
        except MissingEntry:
            raise web.HTTPError(404, f"no manually graded question {question.grade_id}") from None
        self.set_header("Cache-Control", "no-store")
        self.reply({"teams": {team: grade.as_json() for team, grade in grades.items()},
                    "graded": progress.graded, "total": progress.total})

    @web.authenticated
    async def post(self) -> None:
        question, changes, as_group, explicit = self.read_changes()
        latency = self.settings[SETTINGS].save_latency
        if latency > 0:
            await asyncio.sleep(latency)
        try:
            outcome, progress = save_changes(paths=self.paths, question=question, changes=changes, as_group=as_group,
                                             explicit=explicit)
        except MissingEntry as error:
            raise web.HTTPError(404, f"not in the gradebook: {error}") from None
        except ValueError as error:
            raise web.HTTPError(400, str(error)) from None
        self.reply({"saved": [grade.as_json() for grade in outcome.saved],
                    "conflicts": [conflict.as_json() for conflict in outcome.conflicts],
                    "graded": progress.graded, "total": progress.total})

    def read_changes(self) -> tuple[QuestionRef, list[TeamChange], bool, bool]:
        try:
            body = json.loads(self.request.body or b"{}")
            question = question_from(str(body["assignment"]), str(body["notebook"]), str(body["question"]))
            as_group = {"group": True, "team": False}[body["as"]]
            explicit = body.get("explicit", False) is True
            changes = [change_from(item) for item in body["changes"]]
        except (ValueError, KeyError, TypeError, AttributeError):
            raise web.HTTPError(400, "expected assignment, notebook, question, as (group or team) and changes: "
                                     "[{team, score, score_seen, comment, comment_seen}]") from None
        if not changes:
            raise web.HTTPError(400, "no team to grade")
        return question, changes, as_group, explicit

    def reply(self, value: dict) -> None:
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(value))


def change_from(item: dict) -> TeamChange:
    if "score" in item and item["score"] is None:
        # An empty score field means "not scored yet", never "take the score away".
        raise web.HTTPError(400, "a score cannot be emptied; leave out `score` to keep it")
    score = item.get("score")
    if score is not None and (isinstance(score, bool) or not isinstance(score, (int, float))):
        raise ValueError("score is not a number")
    comment = item.get("comment")
    if comment is not None and not isinstance(comment, str):
        raise ValueError("comment is not text")
    return TeamChange(team_id=str(item["team"]), score=None if score is None else float(score),
                      score_seen=optional_text(item.get("score_seen")), comment=comment,
                      comment_seen=optional_text(item.get("comment_seen")))


def optional_text(value) -> str | None:
    return None if value is None else str(value)


def register_handlers(server_app) -> None:
    web_app = server_app.web_app
    web_app.settings[TEMPLATES_SETTING] = template_environment()
    web_app.settings[SETTINGS] = TaGrading(config=server_app.config)
    base_url = web_app.settings["base_url"]
    name = r"([A-Za-z0-9_.\-]+)"
    handlers = [
        (URL_PREFIX + r"/?", QuestionListHandler),
        (URL_PREFIX + f"/{name}/{name}/{name}/?", QuestionHandler),
        (API_URL, GradesApiHandler),
        (KATEX_URL + "/(.*)", web.StaticFileHandler, {"path": str(KATEX_FOLDER)}),
        (STATIC_URL + "/(.*)", web.StaticFileHandler, {"path": str(STATIC_FOLDER)}),
    ]
    web_app.add_handlers(".*$", [(url_path_join(base_url, pattern), *rest) for pattern, *rest in handlers])
