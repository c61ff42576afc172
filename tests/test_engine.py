"""The grading engine on local workers: the unit of work, the writer, a worker that dies."""
import os
import subprocess
import sys

import nbformat
from nbgrader.api import Gradebook

from coursekit.course import NOTEBOOK_NAME
from coursekit.engine import grading
from coursekit.engine.bundle import bundle_course
from coursekit.engine.run import executor_for, grade_teams
from coursekit.notebooks import fill_answers, master_answers
from coursekit.nbgrader_plugins.keep_reviews import record_graded_answers

# Kills the first worker of the grading process given as argv[1] that has a kernel running.
KILL_A_BUSY_WORKER = """
import sys, time, psutil
grader = psutil.Process(int(sys.argv[1]))
deadline = time.monotonic() + 600
while time.monotonic() < deadline:
    for worker in grader.children():
        try:
            if any("kernel_relay" in " ".join(p.cmdline()) for p in worker.children(recursive=True)):
                worker.kill()
                print(worker.pid, flush=True)
                sys.exit(0)
        except psutil.Error:
            pass
    time.sleep(0.05)
sys.exit(1)
"""


def submit(course, team, notebook):
    path = grading.submission_path(course, team)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(nbformat.writes(notebook))


def test_a_local_worker_killed_mid_run_is_replaced_and_nothing_is_lost(course, master, release):
    teams = ["t1", "t2", "t3"]
    for team in teams:
        submit(course, team, fill_answers(release, master_answers(master)))
    killer = subprocess.Popen([sys.executable, "-c", KILL_A_BUSY_WORKER, str(os.getpid())],
                              stdout=subprocess.PIPE, text=True)
    merged = []
    database = f"sqlite:///{course / 'gradebook.db'}"
    grade_teams(course_root=course, database=database, teams=teams, executor=executor_for(workers=2),
                on_outcome=merged.append)
    killed = killer.communicate(timeout=60)[0].strip()
    assert killer.returncode == 0 and killed, "no worker was killed while grading"
    assert sorted(outcome.team_id for outcome in merged) == teams
    scores = grading.read_scores(course_root=course, student_ids=teams)
    totals = {team: sum(cell.score for cell in scores[team].autograded().values()) for team in teams}
    assert totals == {team: 56 for team in teams}


def test_the_unit_of_work_is_data_and_the_bundle_names_the_kit(course):
    bundle = bundle_course(course_root=course)
    names = [name for name, _ in bundle.files]
    assert names[0] == "nbgrader_config.py" and "source/ex2/ml_ex2.ipynb" in names
    assert bundle.key == bundle_course(course_root=course).key
    (course / "source" / "ex2" / "ml_ex2.ipynb").write_bytes(b"{}")
    assert bundle_course(course_root=course).key != bundle.key


def test_a_ta_grade_of_an_unchanged_answer_stays_graded_when_the_team_is_graded_again(course, master, release):
    answers = master_answers(master)
    submit(course, "carl", fill_answers(release, answers))
    database = f"sqlite:///{course / 'gradebook.db'}"
    grade_teams(course_root=course, database=database, teams=["carl"], executor=executor_for(workers=1))
    with Gradebook(database) as gradebook:
        for grade_id in ("squeeze_explain", "bmm_why_d"):
            grade = gradebook.find_grade(grade_id, NOTEBOOK_NAME, "ex2", "carl")
            assert grade.needs_manual_grade
            grade.manual_score, grade.needs_manual_grade = 2.0, False
        gradebook.db.commit()
    record_graded_answers(course_root=course, student_id="carl", notebook_id=NOTEBOOK_NAME,
                          answers={grade_id: answers[grade_id] for grade_id in ("squeeze_explain", "bmm_why_d")})

    answers["bmm_why_d"] = "Because the batch dimensions must match; the new text a TA has not seen."
    submit(course, "carl", fill_answers(release, answers))
    grade_teams(course_root=course, database=database, teams=["carl"], executor=executor_for(workers=1))
    with Gradebook(database) as gradebook:
        unchanged = gradebook.find_grade("squeeze_explain", NOTEBOOK_NAME, "ex2", "carl")
        changed = gradebook.find_grade("bmm_why_d", NOTEBOOK_NAME, "ex2", "carl")
        assert (unchanged.manual_score, unchanged.needs_manual_grade) == (2.0, False)
        assert (changed.manual_score, changed.needs_manual_grade) == (2.0, True)
