import subprocess
import sys

import pytest

from coursekit import cli


def run_cli(*arguments):
    return subprocess.run([sys.executable, "-m", "coursekit.cli", *arguments], capture_output=True, text=True)


@pytest.mark.parametrize("command", [[], ["accuracy"], ["demo"], ["grade"]])
def test_every_command_has_help(command):
    result = run_cli(*command, "--help")
    assert result.returncode == 0
    assert "usage: coursekit" in result.stdout


def test_user_errors_are_one_line_without_traceback(tmp_path):
    result = run_cli("accuracy", "--corpus", str(tmp_path / "missing.toml"))
    assert result.returncode == 1
    assert result.stderr.strip().count("\n") == 0
    assert result.stderr.startswith("coursekit: ") and "Traceback" not in result.stderr


def test_workers_must_be_positive(capsys):
    assert cli.main(["demo", "--workers", "0"]) == 2
    assert "--workers must be at least 1" in capsys.readouterr().err
