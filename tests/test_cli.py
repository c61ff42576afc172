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


def test_accepting_an_upload_for_another_team_takes_uploader_and_team():
    arguments = cli.build_parser().parse_args(
        ["grade", "d.zip", "--accept-upload-for-other-team", "Eve:anna_bob", "--accept-upload-for-other-team", "x:y"])
    assert arguments.accept_upload_for_other_team == [("eve", "anna_bob"), ("x", "y")]
    assert cli.build_parser().parse_args(["grade", "d.zip"]).accept_upload_for_other_team == []


@pytest.mark.parametrize("value", ["eve", ":anna", "eve:", ""])
def test_a_malformed_acceptance_is_a_usage_error(value, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["grade", "d.zip", "--accept-upload-for-other-team", value])
    assert exit_.value.code == 2 and "UPLOADER:TEAM" in capsys.readouterr().err
