"""The similarity step's time at 40 and 400 teams (target: 400 teams in under 60 s on 2 cores).

Each class is the synthetic one of the tests (tests/similarity_class.py): teams answering
with the labelled corpus's forms in their own words, and planted copies; 400 teams are the
40-team recipe dealt to ten times as many teams, with ten rounds of copies. The teams'
answers are written as autograded notebooks into a throwaway course, then timed:

- `coursekit similarity` as an instructor runs it (Python start, imports, reading the
  notebooks, comparing, writing similarity.csv and the pages): wall time, and CPU time of
  its process tree from a cgroup made for the run;
- the step alone inside one process (what `coursekit grade` adds): wall and CPU seconds.

Recall and false pairs at the configured threshold are printed beside them.

    .venv/bin/python benchmarks/bench_similarity.py [--sizes 40,400]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPOSITORY))
sys.path.insert(0, str(REPOSITORY / "tests"))

from bench_grading import BIN, fmt, timed  # noqa: E402
from coursekit import demo  # noqa: E402
from coursekit.engine.workflow import course_config  # noqa: E402
from coursekit.reports.similarity_report import write_similarity  # noqa: E402
from coursekit.similarity.answers import release_notebook  # noqa: E402
from coursekit.similarity.compare import compare_course, settings_from  # noqa: E402
from similarity_class import build_class, write_autograded  # noqa: E402

TARGET_SECONDS_AT_400 = 60.0


def measure(work: Path, size: int) -> dict:
    course = work / f"course-{size}"
    demo.copy_course(course_root=REPOSITORY, destination=course)
    synthetic = build_class(teams=size)
    write_autograded(course, release_notebook(course), synthetic.answers)
    command = timed([str(BIN / "coursekit"), "--course", str(course), "similarity", "--output", str(work / f"cli-{size}")],
                    name=f"similarity-{size}", cwd=work)
    settings = settings_from(course_config(course))
    wall, cpu = time.perf_counter(), time.process_time()
    report = compare_course(course_root=course, settings=settings)
    write_similarity(report=report, output_folder=work / f"step-{size}")
    step_wall, step_cpu = time.perf_counter() - wall, time.process_time() - cpu
    flagged = {(pair.team_a, pair.team_b) for pair in report.flagged}
    planted = synthetic.planted_keys
    return {"size": size, "command": command, "step_wall": step_wall, "step_cpu": step_cpu,
            "recall": f"{len(planted & flagged)}/{len(planted)}", "false": len(flagged - planted),
            "candidates": len(report.pairs), "threshold": settings.threshold}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="40,400", help="class sizes, comma-separated (default: 40,400)")
    arguments = parser.parse_args()
    sizes = sorted(int(size) for size in arguments.sizes.split(","))
    with tempfile.TemporaryDirectory(prefix="coursekit-bench-similarity-") as folder:
        rows = [measure(Path(folder), size) for size in sizes]
    print("similarity of answers between teams: `coursekit similarity` (whole command, CPU of its process tree) "
          "and the step alone in one process")
    print(f"{'teams':>5}  {'command wall':>12}  {'command CPU':>11}  {'step wall':>9}  {'step CPU':>8}  "
          f"{'recorded pairs':>14}  {'planted found':>13}  {'false pairs':>11}")
    for row in rows:
        print(f"{row['size']:>5}  {fmt(row['command'].wall, 's'):>12}  {fmt(row['command'].cpu, 's'):>11}  "
              f"{fmt(row['step_wall'], 's'):>9}  {fmt(row['step_cpu'], 's'):>8}  {row['candidates']:>14}  "
              f"{row['recall']:>13}  {row['false']:>11}")
    largest = rows[-1]
    print(f"threshold {largest['threshold']:g} (nbgrader_config.py); target at 400 teams: under "
          f"{TARGET_SECONDS_AT_400:g} s wall on 2 cores")


if __name__ == "__main__":
    main()
