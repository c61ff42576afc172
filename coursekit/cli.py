"""The `coursekit` command: a thin layer over the kit's functions."""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from coursekit.errors import CourseKitError
from coursekit.lazy_imports import defer_iri_grammar

# Before anything imports jsonschema (through nbformat): saves ~0.8 s per run, see coursekit.lazy_imports.
defer_iri_grammar()

COURSE_ROOT = Path(__file__).resolve().parent.parent


def default_workers() -> int:
    return os.cpu_count() or 1


def command_accuracy(arguments: argparse.Namespace) -> int:
    from coursekit.accuracy import evaluate, format_table

    with tempfile.TemporaryDirectory(prefix="coursekit-accuracy-") as work_dir:
        outcomes = evaluate(course_root=arguments.course, corpus=arguments.corpus,
                            work_dir=Path(work_dir), workers=arguments.workers)
    print(format_table(outcomes))
    return 0 if all(o.graded_correctly for o in outcomes) else 1


def command_demo(arguments: argparse.Namespace) -> int:
    from coursekit.demo import run_demo

    print(run_demo(course_root=arguments.course, work_dir=arguments.output, workers=arguments.workers))
    return 0


def command_grade(arguments: argparse.Namespace) -> int:
    from coursekit.engine.workflow import grade_download

    summary = grade_download(download=arguments.download, course_root=arguments.course.resolve(),
                             output_folder=arguments.output.resolve(), workers=arguments.workers,
                             roster=arguments.roster, accepted_uploads=tuple(arguments.accept_upload_for_other_team),
                             scheduler=arguments.scheduler)
    print("\n".join(summary.lines()))
    return 0


def command_similarity(arguments: argparse.Namespace) -> int:
    from coursekit.engine.workflow import course_config
    from coursekit.reports.similarity_report import write_similarity
    from coursekit.similarity.compare import compare_course, settings_from

    course = arguments.course.resolve()
    report = compare_course(course_root=course, settings=settings_from(course_config(course)))
    if not report.teams:
        raise CourseKitError(f"{course} has no autograded notebooks; grade the class first (coursekit grade).")
    files = write_similarity(report=report, output_folder=arguments.output.resolve())
    print(f"teams compared: {len(report.teams)}   pairs to compare: {len(report.flagged)} "
          f"(score {report.settings.threshold:g} or more), in {len(report.clusters)} groups of three or more teams")
    print(f"similarity: {files.csv}")
    print(f"pages:      {files.index}")
    return 0


def uploader_and_team(text: str) -> tuple[str, str]:
    uploader, separator, team = text.partition(":")
    if not separator or not uploader.strip() or not team.strip():
        raise argparse.ArgumentTypeError(f"{text!r} is not UPLOADER:TEAM, e.g. jdoe:anna_bob")
    return uploader.strip().lower(), team.strip()


def command_ta_grade(arguments: argparse.Namespace) -> int:
    from coursekit.ta_grading.server import serve

    serve(course_root=arguments.course.resolve(), port=arguments.port, on_ready=lambda text: print(text, flush=True))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="coursekit", description="Grade Exercise 2 (PyTorch) with nbgrader.")
    parser.add_argument("--course", type=Path, default=COURSE_ROOT,
                        help="course root with nbgrader_config.py (default: this repository)")
    commands = parser.add_subparsers(dest="command", required=True)

    grade = commands.add_parser(
        "grade", help="import an OLAT download, autograde it in parallel, write grades, feedback and a report")
    grade.add_argument("download", type=Path, help="the OLAT bulk download: a .zip or the folder it unpacks to")
    grade.add_argument("--roster", type=Path, help="CSV of OLAT user name, first name, last name, email")
    grade.add_argument("--output", type=Path, default=Path("results"),
                       help="folder for grades.csv, feedback/, integrity and report.html (default: results)")
    grade.add_argument("--workers", type=int, default=default_workers(), help="parallel graders (default: cores)")
    grade.add_argument("--scheduler", metavar="tcp://HOST:PORT",
                       help="grade on the Dask cluster of this scheduler instead of this machine's cores "
                            "(every worker needs the same coursekit installed; see README)")
    grade.add_argument("--accept-upload-for-other-team", metavar="UPLOADER:TEAM", action="append", default=[],
                       type=uploader_and_team,
                       help="grade a notebook that OLAT user UPLOADER uploaded for TEAM (e.g. jdoe:anna_bob) although"
                            " UPLOADER is not in that team; repeat for several. Without it such uploads are reported"
                            " and not graded")
    grade.set_defaults(handler=command_grade)

    similarity = commands.add_parser(
        "similarity", help="compare the answers of the course's autograded teams and list pairs with similar answers")
    similarity.add_argument("--output", type=Path, default=Path("results"),
                            help="folder for similarity.csv and the pages in similarity/ (default: results)")
    similarity.set_defaults(handler=command_similarity)

    accuracy = commands.add_parser("accuracy", help="grade the labelled answer corpus and print the accuracy table")
    accuracy.add_argument("--corpus", type=Path, default=COURSE_ROOT / "tests" / "corpus" / "variants.toml",
                          help="TOML file of labelled variants (default: tests/corpus/variants.toml)")
    accuracy.add_argument("--workers", type=int, default=default_workers(), help="parallel graders (default: cores)")
    accuracy.set_defaults(handler=command_accuracy)

    demo = commands.add_parser("demo", help="grade the bundled sample class and print its table")
    demo.add_argument("--output", type=Path, default=COURSE_ROOT / ".demo",
                      help="where the demo course is built (default: .demo, git-ignored)")
    demo.add_argument("--workers", type=int, default=default_workers(), help="parallel graders (default: cores)")
    demo.set_defaults(handler=command_demo)

    ta_grade = commands.add_parser(
        "ta-grade", help="start the question-by-question grading page for TAs on 127.0.0.1 and print its URL")
    ta_grade.add_argument("--port", type=int, default=8890, help="port on 127.0.0.1 (default: 8890; 0: any free port)")
    ta_grade.set_defaults(handler=command_ta_grade)
    return parser


def main(argv: list[str] | None = None) -> int:
    arguments = build_parser().parse_args(argv)
    if getattr(arguments, "workers", 1) < 1:
        print("coursekit: --workers must be at least 1", file=sys.stderr)
        return 2
    try:
        return arguments.handler(arguments)
    except CourseKitError as error:
        print(f"coursekit: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("coursekit: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
