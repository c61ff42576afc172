"""The sandbox's settings and its refusal to grade without bubblewrap (no kernel started here)."""
import os
import shutil

import pytest
from traitlets.config import Config

from coursekit.errors import CourseKitError
from coursekit.sandbox import SandboxedKernelManager, SandboxUnavailable
from coursekit.workflow import require_sandbox


@pytest.fixture
def manager_factory():
    managers = []

    def make(**settings):
        manager = SandboxedKernelManager(**settings)
        managers.append(manager)
        return manager

    yield make
    for manager in managers:
        shutil.rmtree(manager._private_folder, ignore_errors=True)


def test_missing_bwrap_stops_grading_with_a_one_line_install_hint(manager_factory):
    manager = manager_factory(bwrap_path="/nonexistent/bwrap")
    with pytest.raises(SandboxUnavailable) as stop:
        manager.bwrap()
    message = str(stop.value)
    assert "apt-get install bubblewrap" in message and "allow_grading_without_sandbox" in message
    assert "\n" not in message


def test_opting_out_is_explicit(manager_factory):
    assert manager_factory(bwrap_path="/nonexistent/bwrap", allow_grading_without_sandbox=True).bwrap() is None


def test_the_kernel_command_is_sandboxed_and_limited(manager_factory, tmp_path):
    (tmp_path / "data.csv").write_text("1,2")
    (tmp_path / "ml_ex2.ipynb").write_text("{}")
    manager = manager_factory(memory_limit_mib=512, process_limit=32)
    manager._launch_args = {"cwd": str(tmp_path)}
    manager.write_connection_file()
    command = manager.format_kernel_cmd()
    assert command[0] == "prlimit" and f"--data={512 * 1024 * 1024}" in command
    nproc = int(next(a for a in command if a.startswith("--nproc=")).split("=")[1])
    assert nproc == 32 if os.geteuid() == 0 else nproc > 32  # non-root: on top of the user's own processes
    if os.geteuid() == 0:
        assert "setpriv" in command and "--no-new-privs" in command
    assert "--unshare-net" in command and "--unshare-pid" in command and "--die-with-parent" in command
    assert command[-5:-1] == ["-I", "-m", "coursekit.hardened_kernel", "-f"]
    work_copy = manager._private_folder / "home"
    assert (work_copy / "data.csv").exists() and not (work_copy / "ml_ex2.ipynb").exists()


def test_grade_command_refuses_without_bwrap():
    config = Config()
    config.SandboxedKernelManager.bwrap_path = "/nonexistent/bwrap"
    with pytest.raises(CourseKitError, match="apt-get install bubblewrap"):
        require_sandbox(config)
    config.SandboxedKernelManager.allow_grading_without_sandbox = True
    require_sandbox(config)  # the explicit opt-out lets it through
