"""The IPython kernel that runs student code during grading.

Before every message it handles, the kernel puts back what student code may
have changed to fool the tests that run after it: IPython's input and AST
transformers, event callbacks, custom exception handlers, magics and display
hook; the tracing hooks of `sys`; the import machinery; and the functions and
classes of the modules the hidden tests rely on (builtins, math, numpy, torch,
...). A cell can still do anything to its own variables, which is what is
graded.

The restore runs in `shell_main`, which ipykernel binds once at start-up, so
replacing the kernel's methods from a cell does not switch it off.

Run as `python -m coursekit.hardened_kernel -f <connection file>`.
"""
from __future__ import annotations

import importlib
import os
import sys
from dataclasses import dataclass, field
from typing import Any

from ipykernel.ipkernel import IPythonKernel
from ipykernel.kernelapp import IPKernelApp

# What the hidden tests import, directly or through torch.
PROTECTED_MODULES = (
    "builtins", "sys", "os", "io", "re", "ast", "math", "numbers", "warnings", "contextlib", "dataclasses",
    "typing", "json", "numpy", "torch", "torch.nn", "torch.nn.functional", "torch.random", "torch.autograd",
    "torch.nn.modules.module", "torch.nn.modules.linear", "torch.nn.modules.sparse", "torch.nn.modules.loss",
    "coursekit", "coursekit.checks",
)
SYS_HOOKS = ("displayhook", "excepthook", "breakpointhook", "meta_path", "path_hooks", "path_importer_cache")


def protected_classes(kernel: IPythonKernel) -> list[type]:
    import torch

    classes = [torch.Tensor, torch.nn.Module, torch.nn.Parameter, torch.Size, torch.Generator]
    for cls in (type(kernel), type(kernel.shell), type(kernel.shell.displayhook), type(kernel.shell.events)):
        classes.extend(c for c in cls.__mro__ if c is not object)
    return classes


def is_function_like(value: Any) -> bool:
    return callable(value) or isinstance(value, (staticmethod, classmethod, property))


@dataclass
class PristineState:
    """Everything the restore puts back, captured before any student code ran."""

    modules: dict[str, Any] = field(default_factory=dict)
    module_attributes: dict[str, dict[str, Any]] = field(default_factory=dict)
    class_attributes: list[tuple[type, dict[str, Any]]] = field(default_factory=list)
    sys_hooks: dict[str, Any] = field(default_factory=dict)
    shell_attributes: dict[str, Any] = field(default_factory=dict)
    kernel_attributes: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def capture(cls, kernel: IPythonKernel) -> "PristineState":
        state = cls()
        for name in PROTECTED_MODULES:
            module = sys.modules.get(name)
            if module is not None:
                state.modules[name] = module
                state.module_attributes[name] = dict(vars(module))
        for protected in protected_classes(kernel):
            state.class_attributes.append((protected, {k: v for k, v in vars(protected).items() if is_function_like(v)}))
        for name in SYS_HOOKS:
            value = getattr(sys, name)
            state.sys_hooks[name] = list(value) if isinstance(value, list) else dict(value) if isinstance(value, dict) else value
        shell = kernel.shell
        state.shell_attributes = {
            "input_transformers_cleanup": list(shell.input_transformers_cleanup),
            "input_transformers_post": list(shell.input_transformers_post),
            "ast_transformers": list(shell.ast_transformers),
            "custom_exceptions": shell.custom_exceptions,
            "CustomTB": shell.CustomTB,
            "displayhook": shell.displayhook,
            "display_pub": shell.display_pub,
            "events": {event: list(callbacks) for event, callbacks in shell.events.callbacks.items()},
            "line_magics": dict(shell.magics_manager.magics["line"]),
            "cell_magics": dict(shell.magics_manager.magics["cell"]),
            "line_transforms": list(shell.input_transformer_manager.line_transforms),
            "token_transformers": list(shell.input_transformer_manager.token_transformers),
            "instance": {k: v for k, v in vars(shell).items() if is_function_like(v)},
        }
        state.kernel_attributes = {
            "instance": {k: v for k, v in vars(kernel).items() if is_function_like(v)},
            "shell_handlers": dict(kernel.shell_handlers),
            "control_handlers": dict(kernel.control_handlers),
        }
        return state

    def restore(self, kernel: IPythonKernel) -> None:
        # Builtins first, with nothing but dict operations and syntax: until
        # they are back, `type`, `isinstance` and friends may be the student's.
        builtins_now = self.modules["builtins"].__dict__
        for name, value in self.module_attributes["builtins"].items():
            if builtins_now.get(name, _MISSING) is not value:
                builtins_now[name] = value
        sys.settrace(None)
        sys.setprofile(None)
        for name, value in self.sys_hooks.items():
            current = getattr(sys, name)
            if isinstance(value, (list, dict)) and type(current) is type(value):
                current.clear()
                current.update(value) if isinstance(value, dict) else current.extend(value)
            else:
                setattr(sys, name, value.copy() if isinstance(value, (list, dict)) else value)
        for name, module in self.modules.items():
            sys.modules[name] = module
            current = vars(module)
            for attribute, value in self.module_attributes[name].items():
                if current.get(attribute, _MISSING) is not value:
                    current[attribute] = value
        for protected, attributes in self.class_attributes:
            current = vars(protected)
            for attribute in [a for a, v in current.items() if is_function_like(v) and a not in attributes]:
                _try(delattr, protected, attribute)
            for attribute, value in attributes.items():
                if current.get(attribute, _MISSING) is not value:
                    _try(setattr, protected, attribute, value)
        self.restore_shell(kernel.shell)
        restore_instance(kernel, self.kernel_attributes["instance"])
        for name in ("shell_handlers", "control_handlers"):
            handlers = getattr(kernel, name, None)
            if not isinstance(handlers, dict):
                handlers = {}
                object.__setattr__(kernel, name, handlers)
            handlers.clear()
            handlers.update(self.kernel_attributes[name])

    def restore_shell(self, shell: Any) -> None:
        saved = self.shell_attributes
        restore_instance(shell, saved["instance"])
        shell.input_transformers_cleanup[:] = saved["input_transformers_cleanup"]
        shell.input_transformers_post[:] = saved["input_transformers_post"]
        shell.ast_transformers[:] = saved["ast_transformers"]
        shell.custom_exceptions = saved["custom_exceptions"]
        shell.CustomTB = saved["CustomTB"]
        shell.displayhook = saved["displayhook"]
        shell.display_pub = saved["display_pub"]
        sys.displayhook = saved["displayhook"]
        shell.events.callbacks.clear()
        shell.events.callbacks.update({event: list(callbacks) for event, callbacks in saved["events"].items()})
        shell.magics_manager.magics["line"].clear()
        shell.magics_manager.magics["line"].update(saved["line_magics"])
        shell.magics_manager.magics["cell"].clear()
        shell.magics_manager.magics["cell"].update(saved["cell_magics"])
        shell.input_transformer_manager.line_transforms[:] = saved["line_transforms"]
        shell.input_transformer_manager.token_transformers[:] = saved["token_transformers"]


_MISSING = object()


def _try(action, *arguments) -> None:
    try:
        action(*arguments)
    except (AttributeError, TypeError):  # immutable built-in types refuse, and cannot have been changed
        pass


def restore_instance(instance: Any, methods: dict[str, Any]) -> None:
    """Drop instance attributes that shadow the class's methods, and put back the original ones.

    Other attributes added later (ipykernel keeps its saved `input` and
    `getpass` there during a cell) are left alone.
    """
    current = vars(instance)
    cls = type(instance)
    shadowing = [n for n in current if n not in methods and is_function_like(getattr(cls, n, None))]
    for name in shadowing:
        del current[name]
    current.update(methods)


class HardenedKernel(IPythonKernel):
    implementation = "coursekit-hardened"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._pristine = PristineState.capture(self)

    def restore_pristine_state(self) -> None:
        self._pristine.restore(self)

    async def shell_main(self, subshell_id, msg):  # noqa: D401 (ipykernel's name)
        self._pristine.restore(self)
        return await super().shell_main(subshell_id, msg)

    async def do_execute(self, *args, **kwargs):
        try:
            return await super().do_execute(*args, **kwargs)
        finally:
            # Also straight after the cell, so the kernel's own reply is sent
            # with the real builtins even if the cell replaced them.
            self._pristine.restore(self)


def preimport_protected_modules() -> None:
    """Import what the tests use before student files in the working folder can shadow it."""
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
