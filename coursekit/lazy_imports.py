"""Imports whose cost a `coursekit` run should not pay at start-up.

jsonschema (imported by nbformat, hence by nbgrader and nbconvert) imports
`rfc3987_syntax` for its "iri" format checker, and that module builds a Lark
grammar when it is imported: ~0.8 s of every run's start-up (more on a loaded
machine), for a format that neither the notebook schema nor nbgrader's uses.
Upstream: python-jsonschema/jsonschema#1428 ("Lazy import `rfc3987_syntax`").

`defer_iri_grammar()` puts a stand-in for `rfc3987_syntax` in `sys.modules`
before jsonschema is imported: jsonschema registers its "iri" checkers as
usual, and the real module (and its grammar) is imported the first time one of
them checks a value, so validation results do not change. Nothing installed is
modified.
"""
from __future__ import annotations

import importlib
import importlib.util
import sys
import types

IRI_MODULE = "rfc3987_syntax"


class _DeferredModule(types.ModuleType):
    """Stands in for a module until one of its names is used, then hands over to the real one."""

    def __getattr__(self, name: str):
        if name.startswith("__"):
            # The import system probes __path__ and the like: that is no use of the module.
            raise AttributeError(name)
        return getattr(_real_module(self), name)


def _real_module(stand_in: types.ModuleType) -> types.ModuleType:
    if sys.modules.get(stand_in.__name__) is stand_in:
        del sys.modules[stand_in.__name__]
        try:
            importlib.import_module(stand_in.__name__)
        except BaseException:
            sys.modules[stand_in.__name__] = stand_in
            raise
    return sys.modules[stand_in.__name__]


def defer_iri_grammar() -> None:
    """Defer `rfc3987_syntax` (and its Lark grammar) to the first IRI check; call before jsonschema is imported."""
    if "jsonschema" in sys.modules or IRI_MODULE in sys.modules:
        return  # too late, or done already
    spec = importlib.util.find_spec(IRI_MODULE)
    if spec is None:
        return  # not installed: jsonschema does without it
    stand_in = _DeferredModule(IRI_MODULE, "stand-in until the first IRI check (coursekit.lazy_imports)")
    stand_in.__spec__ = spec

    def is_valid_syntax(term: str, value: str) -> bool:
        return _real_module(stand_in).is_valid_syntax(term, value)

    # jsonschema does `from rfc3987_syntax import is_valid_syntax`: an attribute of its own,
    # so importing jsonschema does not load the real module.
    stand_in.is_valid_syntax = is_valid_syntax
    sys.modules[IRI_MODULE] = stand_in
