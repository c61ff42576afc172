"""The IPython kernel that runs student code during grading.

It holds no judge, no reference and no secret: hidden test cells only record
the answers as data (coursekit.recorder.collect) and the grading process
decides the points. So the kernel need not defend itself against the code it
runs; the sandbox around it (coursekit.sandbox.kernel_manager) keeps that code
away from everything else, and shows it nothing of the kit but this package.

What it still does: import what the exercise and the recording use before the
working folder is on `sys.path`, so a student's file named `torch.py` or
`math.py` cannot break an honest notebook's recording.

Run as `python -m coursekit.recorder.kernel -f <connection file>`.
"""
from __future__ import annotations

import importlib
import os
import sys
import traceback

from ipykernel.ipkernel import IPythonKernel
from ipykernel.kernelapp import IPKernelApp
from ipykernel.zmqshell import ZMQInteractiveShell
from traitlets import Type

# What the exercise and the recording import, directly or through torch.
PROTECTED_MODULES = (
    "math", "numbers", "json", "numpy", "torch", "torch.nn", "torch.nn.functional", "safetensors.numpy",
    "coursekit.recorder.wire", "coursekit.recorder.challenges", "coursekit.recorder.collect",
    "coursekit.recorder.receive",
)


class GradingShell(ZMQInteractiveShell):
    """IPython's kernel shell, minus a second, unseen formatting of every traceback.

    IPython (9.x) formats each error twice: once for the cell's error output, and
    once more for `history_manager.exceptions`, which only the `%notebook` magic
    reads. With torch imported a traceback in "Context" mode costs tens of
    milliseconds (inspect.getmodule scans sys.modules, pygments builds a lexer
    class per frame; ipython/ipython#13731), and a blank or half-done notebook
    raises in most of its cells. The stored copy is made with the standard
    library's traceback module instead, IPython's own fallback format; the error
    output students and graders see is unchanged.
    """

    def _format_exception_for_storage(self, exception, filename=None, running_compiled_code=False):
        if isinstance(exception, SyntaxError):
            return super()._format_exception_for_storage(exception, filename, running_compiled_code)
        return {"ename": type(exception).__name__, "evalue": str(exception),
                "traceback": traceback.format_exception(type(exception), exception, exception.__traceback__)}


class HardenedKernel(IPythonKernel):
    implementation = "coursekit-grading"
    shell_class = Type(GradingShell)


def warm_up_tracebacks() -> None:
    """Fill, once in the fork server, the caches every kernel's first traceback would fill.

    The first error a fresh kernel formats imports stack_data's and pygments'
    helpers and makes inspect.getmodule map the file of every module torch
    loaded (~0.2 s); forks of a warmed server inherit all of it.
    """
    from IPython.core import ultratb
    from IPython.core.interactiveshell import InteractiveShell

    formatter = ultratb.AutoFormattedTB(mode=InteractiveShell.xmode.default_value,
                                        theme_name=InteractiveShell.colors.default_value, tb_offset=1)
    code = compile("def warm_up():\n    raise ValueError('warm-up')\nwarm_up()\n", "<coursekit-warm-up>", "exec")
    try:
        exec(code, {})
    except ValueError:
        formatter.structured_traceback(*sys.exc_info())


def preimport_protected_modules() -> None:
    """Import what the recording uses before student files in the working folder can shadow it."""
    working_folder = ("", ".", os.getcwd())  # `python -m` puts the working folder first
    saved_path = list(sys.path)
    sys.path[:] = [entry for entry in sys.path if entry not in working_folder]
    try:
        for name in PROTECTED_MODULES:
            importlib.import_module(name)
    finally:
        # Student modules stay importable, but behind the installed packages.
        sys.path[:] = [entry for entry in saved_path if entry not in working_folder] + [""]


def main() -> None:
    preimport_protected_modules()
    IPKernelApp.launch_instance(kernel_class=HardenedKernel)


if __name__ == "__main__":
    main()
