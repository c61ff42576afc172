"""HTML pages from the Jinja2 templates in coursekit/reports/templates, always autoescaped.

Team ids, reasons, file names and code come from students' uploads: with
autoescaping, a template cannot forget to escape them.
"""
from __future__ import annotations

from functools import cache

import jinja2


@cache
def environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("coursekit.reports", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,  # a misspelt name fails loudly instead of printing nothing
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def render(template_name: str, **context) -> str:
    return environment().get_template(template_name).render(**context)
