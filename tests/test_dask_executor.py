"""Grading on a real Dask cluster (`dask scheduler` + two `dask worker` on 127.0.0.1).

The cluster grades through the same engine and writer as local workers, so a
download gives the same grades either way; a worker killed mid-run has its
team graded by the other worker, and every team is merged exactly once.
"""
import csv
import re
import shutil
import threading
import time

import psutil
import pytest
from nbgrader.api import Gradebook

from coursekit import demo
from coursekit.engine import grading
from coursekit.engine.run import executor_for, grade_teams
from coursekit.engine.workflow import grade_download
from coursekit.errors import CourseKitError
from coursekit.exercise.given import SECRET_FILE
from conftest import REPOSITORY
from dask_cluster import start_cluster
from conftest import fresh_course
from test_workflow import per_cell


@pytest.fixture(scope="module")
def samples():
    return demo.sample_notebooks(REPOSITORY)


@pytest.fixture
def cluster(tmp_path):
    running = start_cluster(tmp_path / "dask")
    yield running
    running.stop()


def grades_rows(path):
    with open(path, newline="") as file:
        return list(csv.reader(file))


def test_a_download_gets_the_same_grades_on_dask_as_on_local_workers(tmp_path, sample_class, cluster):
    # The same download, roster and course secret (so the grader draws the same values) as the session's
    # class, which local workers graded.
    runs = {"local": sample_class.summary}
    course = fresh_course(tmp_path, "dask")
    (course / SECRET_FILE).parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(sample_class.course / SECRET_FILE, course / SECRET_FILE)
    runs["dask"] = grade_download(download=sample_class.download, course_root=course,
                                  output_folder=tmp_path / "results-dask", workers=2, roster=sample_class.roster,
                                  scheduler=cluster.address)
    local_results = sample_class.results
    assert per_cell(runs["dask"]) == per_cell(runs["local"])
    assert {r.team_id: r.status for r in runs["dask"].results} == {r.team_id: r.status for r in runs["local"].results}
    assert sum(r.total for r in runs["dask"].results) > 0
    assert grades_rows(tmp_path / "results-dask" / "grades.csv") == grades_rows(local_results / "grades.csv")
    for result in runs["dask"].results:
        local_page = (local_results / "feedback" / f"{result.team_id}.html").read_text()
        dask_page = (tmp_path / "results-dask" / "feedback" / f"{result.team_id}.html").read_text()
        assert page_text(dask_page) == page_text(local_page)


def page_text(page):
    """A page's text without markup or spacing: how the kernel's stream messages happened to be
    split (one output block or two) differs from run to run, on any executor."""
    return "".join(re.sub(r"<[^>]+>", " ", page).split())


def grading_service_busy(worker_pid: int) -> bool:
    """The worker's grading service has a kernel running: a team is being graded right now."""
    try:
        children = psutil.Process(worker_pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return False
    return any(kernel_relay(child) for child in children)


def kernel_relay(process) -> bool:
    try:
        return "kernel_relay" in " ".join(process.cmdline())
    except psutil.Error:  # it ended (or became a zombie) while we looked
        return False


def test_a_worker_killed_mid_run_loses_nothing_and_counts_nothing_twice(tmp_path, samples, release, cluster):
    course = tmp_path / "course"
    grading.prepare_course(template_root=REPOSITORY, course_root=course)
    kinds = ["all_correct", "blank", "partly_right", "all_correct", "blank", "partly_right"]
    teams = [f"team{number}_{kind}" for number, kind in enumerate(kinds)]
    for team, kind in zip(teams, kinds):
        path = grading.submission_path(course, team)
        path.parent.mkdir(parents=True)
        path.write_bytes(samples[kind])
    victim = cluster.workers[0]
    killed_at = []

    def kill_when_busy():
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and not grading_service_busy(victim.pid):
            time.sleep(0.05)
        cluster.kill_worker(0)
        killed_at.append(time.monotonic())

    killer = threading.Thread(target=kill_when_busy)
    killer.start()
    merged = []
    database = f"sqlite:///{course / 'gradebook.db'}"
    outcomes = grade_teams(course_root=course, database=database, teams=teams,
                           executor=executor_for(workers=2, scheduler=cluster.address),
                           on_outcome=lambda outcome: merged.append((time.monotonic(), outcome)))
    killer.join()
    assert killed_at and victim.poll() is not None
    assert any(moment > killed_at[0] for moment, _ in merged), "the kill came after the run"
    assert sorted(outcome.team_id for _, outcome in merged) == sorted(teams)   # each team merged once
    assert [outcome.team_id for outcome in outcomes] == teams
    scores = grading.read_scores(course_root=course, student_ids=teams, database=database)
    totals = {team: sum(cell.score for cell in scores[team].autograded().values()) for team in teams}
    for kind in set(kinds):
        same_kind = {totals[team] for team, team_kind in zip(teams, kinds) if team_kind == kind}
        assert len(same_kind) == 1, (kind, totals)
    full = sum(cell.max_score for cell in scores[teams[0]].autograded().values())
    assert totals[teams[0]] == full > 0
    assert totals[teams[1]] == 0
    with Gradebook(database) as gradebook:
        assert sorted(s.student.id for s in gradebook.assignment_submissions("ex2")) == sorted(teams)


def test_an_unreachable_scheduler_is_a_one_line_error(tmp_path, course):
    with pytest.raises(CourseKitError, match="cannot reach the Dask scheduler at tcp://127.0.0.1:9"):
        grade_teams(course_root=course, database=f"sqlite:///{course / 'gradebook.db'}", teams=["nobody"],
                    executor=executor_for(workers=1, scheduler="tcp://127.0.0.1:9"))
