"""Similar answers between teams (coursekit/similarity, coursekit/reports/similarity_report.py): fast, no kernel.

The class is synthetic (tests/similarity_class.py): 40 teams answering with the labelled
corpus's forms, each in its own words, and planted copies. Recall (planted pairs found)
and false pairs (independent pairs flagged) are printed and checked at the threshold in
nbgrader_config.py.
"""
from __future__ import annotations

import csv
import os
import subprocess
import sys
from dataclasses import replace
from html.parser import HTMLParser

import pytest

from coursekit import cli, demo
from coursekit.engine.workflow import course_config
from coursekit.errors import CourseKitError
from coursekit.reports import similarity_report
from coursekit.reports.reporting import write_report
from coursekit.similarity import answers as answer_reading
from coursekit.similarity.compare import compare_answers, compare_course, settings_from
from coursekit.similarity.records import Answer, AnswerKind, PairScore, Settings
from conftest import REPOSITORY
from similarity_class import (COPY_KINDS, build_class, change_comments, rename_variables, reorder_lines,
                              write_autograded)
from test_exporting import PAIR, SINGLE

SETTINGS = settings_from(course_config(REPOSITORY))
UNUSUAL_NET = '''class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.lookup = nn.Embedding(8, 6)
        self.hidden = nn.Linear(6, 10)
        self.scores = nn.Linear(10, 4)
        self.activation = nn.ReLU()

    def forward(self, tokens):
        vectors = self.lookup(tokens)
        activated = self.activation(self.hidden(vectors))
        logits = self.scores(activated)
        return logits
'''


@pytest.fixture(scope="module")
def release():
    return answer_reading.release_notebook(REPOSITORY)


def answer(team, cell, text, failures=(), kind=AnswerKind.CODE):
    return Answer(team, cell, kind, text, tuple(failures))


def compare(release, class_answers, settings=SETTINGS):
    return compare_answers(answers=class_answers, release=release, settings=settings)


def pair_of(report, team_a, team_b) -> PairScore | None:
    key = tuple(sorted((team_a, team_b)))
    return next((pair for pair in report.pairs if (pair.team_a, pair.team_b) == key), None)


def score(report, team_a, team_b) -> float:
    pair = pair_of(report, team_a, team_b)
    return pair.score if pair else 0.0


@pytest.mark.parametrize("seed", [2, 3, 4])
def test_every_planted_copy_is_found_and_no_independent_pair_is_flagged(release, seed):
    synthetic = build_class(teams=40, seed=seed)
    report = compare(release, synthetic.answers)
    flagged = {(pair.team_a, pair.team_b) for pair in report.flagged}
    planted = synthetic.planted_keys
    found, false = planted & flagged, flagged - planted
    weakest = min(score(report, *key) for key in planted)
    strongest_independent = max((pair.score for pair in report.pairs if (pair.team_a, pair.team_b) not in planted),
                                default=0.0)
    print(f"\nseed {seed}, threshold {SETTINGS.threshold}: recall {len(found)}/{len(planted)} planted pairs, "
          f"{len(false)} of {40 * 39 // 2 - len(planted)} independent pairs flagged; weakest planted "
          f"{weakest:.2f}, strongest independent {strongest_independent:.2f}")
    missed = {pair.kind: score(report, *pair.key) for pair in synthetic.planted if pair.key not in flagged}
    assert missed == {}
    assert false == set(), [pair_of(report, *key) for key in false]
    assert {kind for kind in COPY_KINDS} == {pair.kind for pair in synthetic.planted}


def test_a_trio_is_one_cluster(release):
    synthetic = build_class(teams=40)
    report = compare(release, synthetic.answers)
    trio = sorted({team for pair in synthetic.planted if pair.kind == "trio" for team in (pair.team_a, pair.team_b)})
    assert [list(cluster.teams) for cluster in report.clusters] == [trio]
    assert len(report.clusters[0].pairs) == 3
    rows = similarity_report.attention_rows(report)
    assert sum(all(team in row["who"] for team in trio) for row in rows) == 1
    assert len(rows) == len(report.flagged) - 3 + 1


@pytest.mark.parametrize("change", [rename_variables, change_comments, reorder_lines,
                                    lambda code: change_comments(reorder_lines(rename_variables(code)))])
def test_code_still_matches_after_renaming_comments_and_reordering(release, change):
    others = {f"other{number}": [answer(f"other{number}", "net_model", code)]
              for number, code in enumerate(form for form, _ in _net_forms())}
    copied = change(UNUSUAL_NET)
    assert copied != UNUSUAL_NET
    report = compare(release, {**others, "anna": [answer("anna", "net_model", UNUSUAL_NET)],
                               "bob": [answer("bob", "net_model", copied)]}, Settings(threshold=0.45, record_threshold=0.0))
    match = pair_of(report, "anna", "bob").matches[0]
    assert match.grade_id == "net_model" and match.similarity >= 0.5, match
    assert match.spans_a and match.spans_b
    # The other forms of the same model share far less with it.
    others_alike = [pair.matches[0].similarity for pair in report.pairs if "anna" in (pair.team_a, pair.team_b)
                    and "bob" not in (pair.team_a, pair.team_b) and pair.matches]
    assert max(others_alike, default=0.0) < match.similarity - 0.2


def _net_forms():
    from similarity_class import code_forms
    return code_forms()["net_model"]


def test_a_common_answer_is_no_evidence_and_a_rare_wrong_one_is(release):
    common = "x = x_start.squeeze(1).unsqueeze(0).unsqueeze(-1)\nx.shape\n"
    rare_wrong = "sizes = [236, 472, 472, 10]\nn_params = sum(a * b + b for a, b in zip(sizes, sizes[1:])) - 3\n"
    failure = ("[FAILED] n_params: `n_params` is not the number of weights",)
    class_answers = {f"team{number:02d}": [answer(f"team{number:02d}", "squeeze_target", common)] for number in range(12)}
    class_answers["team00"].append(answer("team00", "param_count", rare_wrong, failure))
    class_answers["team01"].append(answer("team01", "param_count", rare_wrong, failure))
    report = compare(release, class_answers)
    assert [(pair.team_a, pair.team_b) for pair in report.flagged] == [("team00", "team01")]
    assert report.flagged[0].matches[0].same_failure == failure
    # The same rare code, right this time: less evidence than the same rare wrong answer.
    right = {team: [replace(item, failures=()) for item in items] for team, items in class_answers.items()}
    assert score(compare(release, right, Settings(threshold=0.45, record_threshold=0.0)), "team00", "team01") \
        < report.flagged[0].score


def test_the_same_wrong_value_found_by_the_judge_counts_even_in_other_code(release):
    failure = ("[FAILED] x_shape is the shape of x: `x_shape` = (64, 512, 128) is not the shape of x",)
    class_answers = {
        "anna": [answer("anna", "bmm_x_shape", "x_shape = (64, 512, 128)\n", failure)],
        "bob": [answer("bob", "bmm_x_shape", "rows, cols = 512, 128\nx_shape = tuple([64, rows, cols])\n", failure)],
        **{f"team{n}": [answer(f"team{n}", "bmm_x_shape", "x_shape = x.shape\n")] for n in range(8)},
    }
    assert pair_of(compare(release, class_answers), "anna", "bob").flagged


def test_a_failure_most_of_the_class_shares_is_no_evidence(release):
    """A cell that ran for no one (the same [FAILED] line for every team) says nothing about who copied."""
    not_run = ("[FAILED] x_shape is the shape of x: the hidden tests of this cell did not run to the end",)
    cells = ("bmm_x_shape", "bmm_d", "param_count", "attention_qk", "attention_softmax", "optimizer_choice")
    class_answers = {team: [answer(team, cell, f"# {team}'s own way\n{cell}_value = {number} * {index + 2}\n", not_run)
                            for index, cell in enumerate(cells)]
                     for number, team in enumerate(("anna", "bob", "carl", "dora"))}
    assert compare(release, class_answers).flagged == ()


def test_what_the_release_gave_is_no_evidence(release):
    given = "# YOUR CODE HERE\nraise NotImplementedError()\ny = torch.bmm(x, d)      # (64, 128, 9)\n"
    stub = "YOUR ANSWER HERE"
    class_answers = {team: [answer(team, "bmm_d", given), answer(team, "bmm_why_d", stub, kind=AnswerKind.TEXT)]
                     for team in ("anna", "bob", "carl")}
    assert compare(release, class_answers, Settings(threshold=0.45, record_threshold=0.0)).pairs == ()


def test_free_text_is_compared_after_the_question_pages_normalization(release):
    text = "Because bmm multiplies each of the 64 matrices separately, d needs 512 rows to fit the 512 columns of x."
    shouted = "  BECAUSE bmm   multiplies each of the 64 MATRICES separately,\n\nd needs 512 rows to fit the 512 columns of x."
    others = {f"team{n}": [answer(f"team{n}", "bmm_why_d", f"My own words number {n}: shapes must agree for bmm.",
                                  kind=AnswerKind.TEXT)] for n in range(6)}
    report = compare(release, {**others, "anna": [answer("anna", "bmm_why_d", text, kind=AnswerKind.TEXT)],
                               "bob": [answer("bob", "bmm_why_d", shouted, kind=AnswerKind.TEXT)]})
    match = pair_of(report, "anna", "bob").matches[0]
    assert match.similarity == 1.0 and match.kind == AnswerKind.TEXT


def test_the_same_answers_give_the_same_pairs_in_every_process(tmp_path):
    """copydetect hashes with Python's salted hash(); the kit's fingerprints must not depend on the salt."""
    code = ("import sys; sys.path.insert(0, 'tests')\n"
            "from pathlib import Path\n"
            "from similarity_class import build_class\n"
            "from coursekit.similarity.compare import compare_answers\n"
            "from coursekit.similarity.answers import release_notebook\n"
            "from coursekit.similarity.records import Settings\n"
            "report = compare_answers(answers=build_class(teams=40).answers, release=release_notebook(Path('.')),"
            " settings=Settings(threshold=0.45, record_threshold=0.1))\n"
            "for pair in report.pairs: print(pair.team_a, pair.team_b, pair.score, pair.answers,"
            " [m.spans_a for m in pair.matches])\n")
    outputs = [subprocess.run([sys.executable, "-c", code], cwd=REPOSITORY, capture_output=True, text=True,
                              env={**os.environ, "PYTHONHASHSEED": seed}, check=True).stdout for seed in ("1", "2")]
    assert outputs[0] == outputs[1] and outputs[0].count("\n") > 10


def test_the_grader_verdict_is_read_from_the_first_outputs_only():
    import nbformat

    cell = nbformat.v4.new_code_cell("", metadata={"nbgrader": {"grade_id": "param_count_test", "grade": True}})
    cell.outputs = [nbformat.v4.new_output("execute_result", data={"text/plain": "5.0"}, execution_count=1),
                    nbformat.v4.new_output("stream", name="stdout", text="Autograder: 5 of 5 points\n[passed] n_params\n"),
                    nbformat.v4.new_output("stream", name="stdout", text="Autograder: 0\n[FAILED] forged by the student\n")]
    assert answer_reading.verdict_failures(cell) == ()
    cell.outputs[1] = nbformat.v4.new_output("stream", name="stdout",
                                             text="Autograder: 0 of 5 points\n[FAILED] n_params: wrong\n")
    assert answer_reading.verdict_failures(cell) == ("[FAILED] n_params: wrong",)
    cell.outputs = [nbformat.v4.new_output("error", ename="NotRun", evalue="", traceback=[])]
    assert answer_reading.verdict_failures(cell) == ()


@pytest.fixture(scope="module")
def written_course(tmp_path_factory, release):
    course = tmp_path_factory.mktemp("similarity") / "course"
    demo.copy_course(course_root=REPOSITORY, destination=course)
    synthetic = build_class(teams=40)
    write_autograded(course, release, synthetic.answers)
    return course, synthetic


def test_the_course_gives_what_the_answers_give(written_course, release):
    course, synthetic = written_course
    assert answer_reading.autograded_teams(course) == sorted(synthetic.answers)
    from_notebooks = compare_course(course_root=course, settings=SETTINGS)
    from_answers = compare(release, synthetic.answers)
    assert [(p.team_a, p.team_b, p.score) for p in from_notebooks.pairs] == \
           [(p.team_a, p.team_b, p.score) for p in from_answers.pairs]
    assert {(p.team_a, p.team_b) for p in from_notebooks.flagged} == synthetic.planted_keys


def test_coursekit_similarity_writes_the_csv_and_a_page_per_pair(written_course, capsys):
    course, synthetic = written_course
    output = course.parent / "results"
    assert cli.main(["--course", str(course), "similarity", "--output", str(output)]) == 0
    printed = capsys.readouterr().out
    assert f"pairs to compare: {len(synthetic.planted_keys)}" in printed
    with open(output / "similarity.csv", encoding="utf-8", newline="") as file:
        rows = list(csv.DictReader(file))
    assert list(rows[0]) == ["team_a", "team_b", "score", "answers", "flagged"]
    flagged = {(row["team_a"], row["team_b"]) for row in rows if row["flagged"] == "yes"}
    assert flagged == synthetic.planted_keys
    assert all(0 <= float(row["score"]) <= 1 and row["answers"] for row in rows)
    assert all(set(row["answers"].split(";")) <= set(answer_reading.cell_order(
        answer_reading.release_notebook(course))) for row in rows)
    pages = sorted((output / "similarity").glob("pair-*.html"))
    assert len(pages) == len(rows)
    index = (output / "similarity" / "index.html").read_text(encoding="utf-8")
    assert all(page.name in index for page in pages)


def test_coursekit_similarity_help_and_a_course_without_grades(tmp_path):
    result = subprocess.run([sys.executable, "-m", "coursekit.cli", "similarity", "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "usage: coursekit similarity" in result.stdout
    demo.copy_course(course_root=REPOSITORY, destination=tmp_path / "course")
    result = subprocess.run([sys.executable, "-m", "coursekit.cli", "--course", str(tmp_path / "course"), "similarity"],
                            capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 1 and result.stderr.count("\n") == 1 and "grade the class first" in result.stderr


@pytest.mark.parametrize("value", ["high", 1.5, -0.1, True])
def test_a_bad_threshold_is_a_one_line_error(value):
    from traitlets.config import Config

    config = Config()
    config.Similarity.threshold = value
    with pytest.raises(CourseKitError, match="c.Similarity.threshold"):
        settings_from(config)


HOSTILE = '<script>alert(1)</script><img src=x onerror=alert(2)> [a](javascript:alert(3)) \x1b[2J\u202e'


def test_pages_and_csv_show_student_text_as_text(release, tmp_path):
    hostile_team = "=HYPERLINK(\"http://x\")"
    class_answers = {team: [answer(team, "bmm_why_d", HOSTILE + " the shapes of bmm must fit together", kind=AnswerKind.TEXT),
                            answer(team, "net_model", UNUSUAL_NET + "# </pre><script>alert(4)</script>\n")]
                     for team in (hostile_team, "bob")}
    class_answers["carl"] = [answer("carl", "bmm_why_d", "Something else entirely.", kind=AnswerKind.TEXT)]
    report = compare(release, class_answers)
    assert report.flagged
    files = similarity_report.write_similarity(report=report, output_folder=tmp_path)
    page = next(iter(files.pages.values())).read_text(encoding="utf-8")
    parser = TagCollector()
    parser.feed(page)
    assert "script" not in parser.tags and "img" not in parser.tags
    assert not any(name.startswith("on") for name in parser.attributes)
    shown = "".join(parser.text)
    assert "<script>alert(1)</script><img src=x onerror=alert(2)>" in shown and "</pre><script>alert(4)</script>" in shown
    assert "\x1b" not in page and "\u202e" not in page
    assert "<mark>" in page and 'class="given"' in page   # matches highlighted, the release's skeleton grey
    assert "not proof of copying" in page and "No grade changes" in page
    row = next(csv.DictReader(open(files.csv, encoding="utf-8", newline="")))
    assert row["team_a"] == "'" + hostile_team


class TagCollector(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags, self.attributes, self.text = [], [], []

    def handle_data(self, data):
        self.text.append(data)

    def handle_starttag(self, tag, attributes):
        self.tags.append(tag)
        self.attributes += [name for name, _ in attributes]


def test_report_html_lists_flagged_pairs_and_links_their_pages(release, tmp_path):
    class_answers = {team.team_id: [answer(team.team_id, "net_model", UNUSUAL_NET)] for team in (PAIR, SINGLE)}
    class_answers["carl"] = [answer("carl", "net_model", _net_forms()[0][0])]
    report = compare(release, class_answers)
    similarity_report.write_similarity(report=report, output_folder=tmp_path)
    page = write_report(results=[PAIR, SINGLE], problems=(), missing=(), output_folder=tmp_path,
                        similarity=report).read_text(encoding="utf-8")
    attention = page.split('id="attention"', 1)[1].split("</table>", 1)[0]
    assert "similar answers" in attention and 'href="similarity/pair-001.html"' in attention
    assert (tmp_path / "similarity" / "pair-001.html").exists()


def test_a_failure_reads_the_same_for_every_team_up_to_the_graders_values():
    """The same wrong answer, judged on two teams' own given values, gives the same failure to compare."""
    import nbformat

    from coursekit.similarity.answers import verdict_failures

    def test_cell(found):
        return nbformat.v4.new_code_cell("", outputs=[
            nbformat.v4.new_output("execute_result", data={"text/plain": "0.0"}, execution_count=1),
            nbformat.v4.new_output("stream", name="stdout", text=(
                "Autograder: 0 of 3 points\n[FAILED] Q: `Q` is not the projection of `x_words` asked for. "
                f"On the grader's values: expected [[1.0, 2.0]], found {found}.\n[passed] K\n"))])

    first, second = verdict_failures(test_cell("[[3.0, 4.0]]")), verdict_failures(test_cell("[[5.5, 6.5]]"))
    assert first == second == ("[FAILED] Q: `Q` is not the projection of `x_words` asked for.",)
