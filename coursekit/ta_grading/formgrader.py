"""nbgrader's formgrader, for TAs: the rubric beside each free-text answer, formulas without a CDN.

The formgrader renders a submission with an HTMLExporter kept in the server's
settings. Its submission page is served here by a subclass of nbgrader's own
handler whose exporter uses a template extending nbgrader's: the same page,
plus the master notebook's reference answer and rubric after each manually
graded answer, and KaTeX from the kit behind a stand-in for MathJax's interface. Only this page (the TAs')
changes: release and feedback are made by other exporters and never see it.
"""
from __future__ import annotations

from pathlib import Path

from jupyter_server.utils import url_path_join
from nbconvert.exporters import HTMLExporter
from nbgrader.server_extensions.formgrader import handlers as formgrader_handlers
from traitlets import Dict

from coursekit.reports.math import linked_katex
from coursekit.ta_grading.handlers import KATEX_URL, STATIC_URL, instructor_markdown
from coursekit.ta_grading.questions import CoursePaths, read_master
from coursekit.errors import CourseKitError
from coursekit.notebooks import SOLUTION_REGION
from coursekit.nbgrader_plugins.rebuild import grade_id_of, is_answer, source_of

HERE = Path(__file__).resolve().parent
TEMPLATES = HERE / "formgrade_templates"
EXPORTER_SETTING = "coursekit_formgrade_exporter"


class RubricFormgradeExporter(HTMLExporter):
    """nbgrader's formgrade page with every manually graded answer's reference and rubric."""

    references = Dict(help="grade_id -> reference answer and rubric (markdown), set per page")

    def from_filename(self, filename, resources=None, **kw):
        resources = dict(resources or {})
        resources["coursekit_references"] = self.references_for(resources)
        base_url = resources.get("base_url", "")
        resources["coursekit_mathjax_url"] = f"{base_url}{STATIC_URL}/mathjax-offline.js"
        resources["coursekit_katex"] = linked_katex(base_url + KATEX_URL, selector=None)
        return super().from_filename(filename, resources=resources, **kw)

    def references_for(self, resources: dict) -> dict[str, str]:
        paths = self.paths
        if paths is None:
            return {}
        try:
            master = read_master(paths, assignment_id=resources.get("assignment_id", ""),
                                 notebook_id=resources.get("notebook_id", ""))
        except CourseKitError:
            return {}
        references = {}
        for cell in master.cells:
            regions = SOLUTION_REGION.findall(source_of(cell))
            if is_answer(cell) and cell.get("cell_type") == "markdown" and regions:
                references[grade_id_of(cell)] = "\n".join(regions)
        return references

    paths: CoursePaths | None = None


class RubricSubmissionHandler(formgrader_handlers.SubmissionHandler):
    """nbgrader's submission page, rendered with RubricFormgradeExporter."""

    @property
    def exporter(self):
        exporter = self.settings.get(EXPORTER_SETTING)
        if exporter is None:
            original = self.settings["nbgrader_exporter"]
            # Keyword arguments, not attributes set afterwards: the template is looked up once, at init.
            exporter = RubricFormgradeExporter(
                config=original.config, template_name="coursekit_formgrade",
                extra_template_basedirs=[formgrader_handlers.template_path, str(TEMPLATES)],
                # So that 'formgrade/index.html.j2' names nbgrader's page, which ours extends.
                extra_template_paths=[formgrader_handlers.template_path],
                filters={"coursekit_markdown": instructor_markdown})
            self.settings[EXPORTER_SETTING] = exporter
        exporter.paths = self.course_paths()
        return exporter

    def course_paths(self) -> CoursePaths | None:
        from coursekit.ta_grading.questions import course_paths

        try:
            return course_paths(root_dir=Path(self.coursedir.root))
        except CourseKitError:
            return None


def formgrader_handlers_for(base_url: str) -> list[tuple]:
    """Registered before nbgrader's own (extensions load in name order), so these answer first."""
    return [
        (url_path_join(base_url, r"/formgrader/submissions/([^/]+)/?"), RubricSubmissionHandler),
    ]
