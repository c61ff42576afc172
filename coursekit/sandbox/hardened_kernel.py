"""The IPython kernel that runs student code during grading.

It holds no judge and no secret: hidden test cells only record the answers as
data (coursekit.exercise.collect) and the grading process decides the points. So the
kernel need not defend itself against the code it runs; the sandbox around it
(coursekit.sandbox.kernel_manager) keeps that code away from everything else.

What it still does: import what the exercise and the recording use before the
working folder is on `sys.path`, so a student's file named `torch.py` or
`math.py` cannot break an honest notebook's recording.

Run as `python -m coursekit.sandbox.hardened_kernel -f <connection file>`.
"""
from __future__ import annotations

import importlib
import os
import sys

from ipykernel.ipkernel import IPythonKernel
from ipykernel.kernelapp import IPKernelApp

# What the exercise and the recording import, directly or through torch.
PROTECTED_MODULES = (
    "math", "numbers", "json", "numpy", "torch", "torch.nn", "torch.nn.functional", "safetensors.numpy",
    "coursekit", "coursekit.protocol", "coursekit.exercise", "coursekit.exercise.challenges",
    "coursekit.exercise.collect", "coursekit.exercise.repairs",
)


class HardenedKernel(IPythonKernel):
    implementation = "coursekit-grading"


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
