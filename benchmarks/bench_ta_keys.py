"""Key presses and page loads to grade one free-text question for 40 teams: grading page vs formgrader.

Grades a class of 40 teams with real `coursekit grade`, then grades
squeeze_explain twice in a real headless Chromium, each time on a fresh copy
of the same gradebook, counting every key press, click and page load:

1. the question page (`coursekit ta-grade`): from the question list, one
   digit and Enter per answer group, `--key-delay` ms apart (150: a TA's
   normal pace). A page that moves on only once a save is answered (before
   issue 20) makes the TA wait for it after each Enter, or the next keys land
   on the answer just saved; the page that moves on at once and saves in the
   background does not, and the run ends when its last save is confirmed;
2. nbgrader's formgrader, driven by its own keyboard shortcuts (they work
   offline only with coursekit's MathJax stand-in): one click into the score
   field on the first submission, then a digit and Ctrl+. (save, next
   submission, same field) per team; Ctrl+. alone past a blank answer.

Both runs are checked against the gradebook afterwards: a run that loses a
score says so. Comments are left out of both (they cost the same typing in
each, but one comment per group here versus one per team there).

    python benchmarks/bench_ta_keys.py [--work /tmp/ta-bench] [--key-delay 150] [--only "question page"]
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from nbgrader.api import Gradebook  # noqa: E402

import test_ta_grading as ta  # noqa: E402  (the browser test's class builder and server)
from coursekit.course import ASSIGNMENT_ID, NOTEBOOK_NAME  # noqa: E402

QUESTION = "squeeze_explain"
TEAMS = 40

# 40 teams: 4 hand in nothing (nbgrader scores them 0 itself), 24 write their own
# answer, 12 write one of 4 answers three times each (differing in case and spacing,
# as copied or jointly written answers do).
SHARED = [
    "Squeeze removes dimensions of size 1, unsqueeze adds one at the given position.",
    "squeeze drops all size-1 axes; unsqueeze(0) adds one in front and unsqueeze(-1) at the end.",
    "Block 1 removes the ones, block 2 adds a dimension at the front and at the back, block 3 moves it.",
    "The shape changes but the values stay the same.",
]


def class_answers() -> dict[str, str]:
    answers: dict[str, str] = {}
    for number in range(24):
        answers[f"solo{number:02d}"] = (f"Squeeze takes away dimension(s) of size one ({number} ways to say it); "
                                        f"unsqueeze puts a new one in at index {number % 3 - 1}.")
    for group, text in enumerate(SHARED):
        for copy in range(3):
            variant = [text, text.upper(), "  " + text.replace(" ", "   ")][copy]
            answers[f"pair{group}{copy}"] = variant
    for number in range(4):
        answers[f"blank{number}"] = ""
    assert len(answers) == TEAMS
    return answers


def score_for(text: str) -> int:
    return sum(map(ord, " ".join(text.split()).casefold())) % 5


class Counter:
    def __init__(self, page, key_delay_ms: int = 0) -> None:
        self.page, self.keys, self.clicks, self.loads = page, 0, 0, 0
        self.key_delay_ms = key_delay_ms
        self.seconds = 0.0
        self.last_key_seconds = 0.0
        page.on("load", lambda: self.count_load())

    def count_load(self) -> None:
        self.loads += 1

    def press(self, key: str) -> None:
        self.keys += 1
        self.page.keyboard.press(key)
        if self.key_delay_ms:
            self.page.wait_for_timeout(self.key_delay_ms)


def manual_scores(course: Path) -> dict[str, float | None]:
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}", "ml-ex2") as gradebook:
        notebook = gradebook.find_notebook(NOTEBOOK_NAME, ASSIGNMENT_ID)
        return {submitted.student.id: next(g.manual_score for g in submitted.grades if g.name == QUESTION)
                for submitted in notebook.submissions}


# The page after issue 20 says how many saves are still on their way; the one before had no such count.
SAVES_PENDING = "document.body.dataset.savesPending"


def grade_with_question_page(server, browser, answers: dict[str, str], *, key_delay_ms: int,
                             never_wait: bool = False) -> Counter:
    page = browser.new_page()
    counter = Counter(page, key_delay_ms)
    page.goto(server.url)
    first = page.locator("a.question").first
    assert first.text_content() == QUESTION
    started = time.monotonic()
    counter.press("Enter")
    page.wait_for_url(f"**/{QUESTION}")
    page.wait_for_selector(".target.current")
    background_saves = page.evaluate(SAVES_PENDING) is not None
    for _ in range(3 * len(answers)):  # a page that loses keys may never get every answer graded
        current = page.locator(".target.current")
        if current.count() == 0 or current.get_attribute("data-graded") == "true":
            break  # every answer is graded (or saving): the page found no ungraded one to go to
        team = current.get_attribute("data-teams").split('"')[1]
        graded_before = page.locator("#progress").text_content()
        counter.press(str(score_for(answers[team])))
        counter.press("Enter")
        if not background_saves and not never_wait:
            # The TA waits until the page has moved on; keys typed before would land on the answer just saved.
            page.wait_for_function("text => document.getElementById('progress').textContent !== text", arg=graded_before)
    counter.last_key_seconds = time.monotonic() - started
    if background_saves:
        page.wait_for_function(f"{SAVES_PENDING} === '0'", timeout=120_000)
    elif never_wait:
        page.wait_for_timeout(3000)  # the last saves on their way
    counter.seconds = time.monotonic() - started
    page.close()
    return counter


def grade_with_formgrader(server, browser, course: Path) -> Counter:
    # The formgrader's Ctrl+. walks the submissions in the gradebook's order: start at its first.
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}", "ml-ex2") as gradebook:
        first_id = gradebook.notebook_submissions(NOTEBOOK_NAME, ASSIGNMENT_ID)[0].id
    page = browser.new_page()
    page.goto(server.url)  # logs in with the token; not counted below
    counter = Counter(page)
    page.goto(f"{server.root}/formgrader/submissions/{first_id}/?index=0")
    page.wait_for_function("window.MathJax && window.MathJax.loaded === true")
    counter.clicks += 1
    page.locator(f"input.score#{QUESTION}").click()
    page.wait_for_timeout(300)
    while True:
        answer = page.locator(f"#{QUESTION}-comment").locator(
            "xpath=ancestor::div[contains(@class,'nbgrader_cell')]").locator(".text_cell_render").inner_text()
        if answer.strip() != "YOUR ANSWER HERE":  # nbgrader scored a blank answer itself: just move on
            counter.press(str(score_for(answer)))
        loads = counter.loads
        # Saves the page, then opens the next submission with the same field selected.
        counter.press("Control+.")
        deadline = time.monotonic() + 90  # nbconvert renders each page: slow on a busy machine
        while counter.loads == loads and time.monotonic() < deadline:
            page.wait_for_timeout(100)
        if counter.loads == loads or "/formgrader/submissions/" not in page.url:
            print(f"formgrader stopped after {counter.loads} page loads at {page.url}", file=sys.stderr)
            break  # past the last submission, Ctrl+. leads back to the list
        page.wait_for_function("window.MathJax && window.MathJax.loaded === true")
    page.close()
    return counter


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=None, help="folder for the class (default: a temporary one)")
    parser.add_argument("--only", choices=("question page", "formgrader"), help="run one of the two")
    parser.add_argument("--key-delay", type=int, default=150, help="milliseconds between key presses on the question page")
    parser.add_argument("--never-wait", action="store_true",
                        help="type on without waiting for the page to move on, even where it only moves once a save is answered")
    arguments = parser.parse_args()
    work = arguments.work or Path(tempfile.mkdtemp(prefix="ta-bench-"))
    answers = class_answers()
    teams = {team: ("Team members: " + team, {QUESTION: text} if text else {}) for team, text in answers.items()}
    started = time.monotonic()
    course = work / "course"
    if not (course / "gradebook.db").exists():
        ta.graded_class(folder=work, teams=teams, roster="username,first_name,last_name,email\n")
    print(f"class of {TEAMS} teams graded in {time.monotonic() - started:.0f} s")
    pristine = work / "gradebook.pristine.db"
    if not pristine.exists():
        shutil.copy(course / "gradebook.db", pristine)

    from playwright.sync_api import sync_playwright

    groups = len({" ".join(text.split()).casefold() for text in answers.values() if text})
    results = {}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=ta.CHROMIUM, args=ta.CHROMIUM_ARGS)
        for name in [arguments.only] if arguments.only else ["question page", "formgrader"]:
            shutil.copy(pristine, course / "gradebook.db")
            server = ta.GradingServer(course)
            try:
                if name == "question page":
                    counter = grade_with_question_page(server, browser, answers, key_delay_ms=arguments.key_delay,
                                                       never_wait=arguments.never_wait)
                else:
                    counter = grade_with_formgrader(server, browser, course)
            finally:
                server.stop()
            scores = manual_scores(course)
            expected = {team: float(score_for(text)) for team, text in answers.items() if text}
            saved = sum(scores.get(team) == score for team, score in expected.items())
            results[name] = (counter, saved, len(expected))
        browser.close()

    print(f"{QUESTION}: {TEAMS} teams, {len([t for t in answers.values() if t])} answers, "
          f"{groups} distinct after normalizing case and whitespace")
    print(f"{'measured':15} {'key presses':>11} {'clicks':>6} {'page loads':>10} {'seconds':>8} {'scores saved':>13}")
    for name, (counter, saved, expected) in results.items():
        seconds = f"{counter.seconds:.1f}" if counter.seconds else "-"
        print(f"{name:15} {counter.keys:>11} {counter.clicks:>6} {counter.loads:>10} {seconds:>8} {saved:>7} / {expected}")
    if "question page" in results:
        counter = results["question page"][0]
        print(f"question page: {arguments.key_delay} ms between keys; seconds from opening the question to the last "
              f"save confirmed (the last key after {counter.last_key_seconds:.1f} s)")
    answered = sum(1 for text in answers.values() if text)
    blank = TEAMS - answered
    print("formgrader, counted from its page (one submission per page, nothing grouped):")
    print(f"  with shortcuts (digit, Ctrl+. per team): {2 * answered + blank} key presses, 1 click, "
          f"{TEAMS + 1} page loads")
    print(f"  offline without coursekit (no MathJax, no shortcuts): {answered} key presses, "
          f"{2 * answered + blank} clicks (score field, Next), {answered} scrolls to the question, {TEAMS} page loads")
    return 0


if __name__ == "__main__":
    sys.exit(main())
