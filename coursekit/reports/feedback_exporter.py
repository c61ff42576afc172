"""The feedback page exporter: nbconvert's HTMLExporter, its compiled templates kept between runs.

nbgrader builds a new exporter for every `generate_feedback` run, and with it
a Jinja environment that compiles the feedback templates again: ~0.25 CPU-s a
run (measured). A grading worker runs generate_feedback once per team, so the
compiled templates go into a bytecode cache that the worker's forked runs
share: a private folder made before the first fork (`share_with_forks`), or
else one per process. Jinja checks each cached template against its source,
so a changed template is compiled again.
Enabled by `c.GenerateFeedback.exporter_class` in nbgrader_config.py.
"""
from __future__ import annotations

import atexit
import os
import shutil
import tempfile

import jinja2
from nbconvert.exporters import HTMLExporter

_cache: jinja2.FileSystemBytecodeCache | None = None


def template_cache() -> jinja2.FileSystemBytecodeCache:
    """This process's cache (its parent's, when the parent made one before forking)."""
    global _cache
    if _cache is None:
        folder = tempfile.mkdtemp(prefix="coursekit-templates-")  # mode 0700: only the grader loads from it
        owner = os.getpid()
        atexit.register(lambda: os.getpid() == owner and shutil.rmtree(folder, ignore_errors=True))
        _cache = jinja2.FileSystemBytecodeCache(folder)
    return _cache


def share_with_forks() -> None:
    """Make the cache now, so every fork of this process compiles the templates at most once in all."""
    template_cache()


def remove_shared_cache() -> None:
    global _cache
    if _cache is not None:
        shutil.rmtree(_cache.directory, ignore_errors=True)
        _cache = None


class FeedbackHTMLExporter(HTMLExporter):
    """HTMLExporter (configured as nbgrader configures it for feedback) with a template bytecode cache."""

    def _create_environment(self):
        environment = super()._create_environment()
        environment.bytecode_cache = template_cache()
        return environment
