"""The README's commands are true: make targets exist, coursekit commands parse."""
import re

from coursekit import cli
from conftest import REPOSITORY

README = (REPOSITORY / "README.md").read_text(encoding="utf-8")
MAKEFILE = (REPOSITORY / "Makefile").read_text(encoding="utf-8")


def test_the_two_commands_come_first():
    first_block = README.split("```sh", 1)[1].split("```", 1)[0]
    assert "make demo" in first_block and "make test" in first_block


def test_every_make_target_in_the_readme_exists():
    targets = set(re.findall(r"^make ([\w-]+)", README, re.M)) | set(re.findall(r"`make ([\w-]+)`", README))
    assert {"demo", "test", "setup", "release", "accuracy", "benchmark"} <= targets
    for target in targets:
        assert re.search(rf"^{target}:", MAKEFILE, re.M), target


def test_every_coursekit_command_in_the_readme_exists():
    commands = set(re.findall(r"coursekit (\w[\w-]*)", README))
    assert {"grade", "accuracy"} <= commands
    subcommands = cli.build_parser()._subparsers._group_actions[0].choices
    for command in commands:
        assert command in subcommands, command


def test_the_readme_grade_command_parses():
    line = next(line for line in README.splitlines() if "coursekit grade" in line and "--roster" in line)
    arguments = line.split("coursekit ", 1)[1].split()
    parsed = cli.build_parser().parse_args(arguments)
    assert parsed.command == "grade" and parsed.roster is not None


def test_ci_runs_the_readme_test_command():
    ci = (REPOSITORY / ".ci" / "run").read_text(encoding="utf-8")
    assert "make test" in ci and "make setup" in ci


def test_every_readme_grade_command_parses():
    lines = [line for line in README.splitlines() if ".venv/bin/coursekit grade" in line]
    assert any("--scheduler" in line for line in lines)
    for line in lines:
        arguments = line.split("coursekit ", 1)[1].split("#", 1)[0].split()
        parsed = cli.build_parser().parse_args(arguments)
        assert parsed.command == "grade"
