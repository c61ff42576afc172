"""Tornado handlers of the question-by-question grading page, inside a Jupyter server.

They are jupyter-server handlers: the server's login (token or password)
guards them and POSTs need the server's XSRF token, as for its own API.
"""
from __future__ import annotations

import json
from pathlib import Path

import bleach
import mistune
from jinja2 import Environment, PackageLoader, select_autoescape
from jupyter_server.base.handlers import JupyterHandler
from jupyter_server.utils import url_path_join
from nbgrader.api import MissingEntry
from tornado import web

from coursekit.errors import CourseKitError
from coursekit.ta_grading.questions import QUESTION_ID, CoursePaths, QuestionRef, course_paths, list_questions, load_question, save_grades

URL_PREFIX = "/coursekit/questions"
API_URL = "/coursekit/api/grades"
PATHS_SETTING = "coursekit_ta_paths"
TEMPLATES_SETTING = "coursekit_ta_templates"

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
        return environment.get_template(name).render(
            base_url=self.base_url.rstrip("/"), prefix=URL_PREFIX, api_url=API_URL,
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
        teams_state = {answer.team_id: {"score": answer.score, "comment": answer.comment,
                                        "graded": not answer.needs_manual_grade,
                                        "autoScored": answer.auto_score is not None}
                       for group in page.groups for answer in group.answers}
        self.finish(self.page("question.html", page=page, question=question, following=following,
                              teams_state=teams_state))


class GradesApiHandler(TaGradingHandler):
    """POST one score and comment for some teams' answers to one question."""

    @web.authenticated
    def post(self) -> None:
        try:
            body = json.loads(self.request.body or b"{}")
            question = question_from(str(body["assignment"]), str(body["notebook"]), str(body["question"]))
            teams = [str(team) for team in body["teams"]]
            score = body.get("manual_score")
            score = None if score is None else float(score)
            comment = str(body.get("comment") or "")
        except (ValueError, KeyError, TypeError):
            raise web.HTTPError(400, "expected assignment, notebook, question, teams, manual_score, comment") from None
        if not teams:
            raise web.HTTPError(400, "no team to grade")
        try:
            saved, progress = save_grades(paths=self.paths, question=question, team_ids=teams,
                                          manual_score=score, comment=comment)
        except MissingEntry as error:
            raise web.HTTPError(404, f"not in the gradebook: {error}") from None
        except ValueError as error:
            raise web.HTTPError(400, str(error)) from None
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({
            "saved": [{"team": item.team_id, "manual_score": item.manual_score, "comment": item.comment}
                      for item in saved],
            "graded": progress.graded, "total": progress.total,
        }))


def register_handlers(server_app) -> None:
    web_app = server_app.web_app
    web_app.settings[TEMPLATES_SETTING] = template_environment()
    base_url = web_app.settings["base_url"]
    name = r"([A-Za-z0-9_.\-]+)"
    handlers = [
        (URL_PREFIX + r"/?", QuestionListHandler),
        (URL_PREFIX + f"/{name}/{name}/{name}/?", QuestionHandler),
        (API_URL, GradesApiHandler),
    ]
    web_app.add_handlers(".*$", [(url_path_join(base_url, pattern), handler) for pattern, handler in handlers])
