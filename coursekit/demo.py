"""`make demo`: grade the bundled sample class with real nbgrader and print a table."""
from __future__ import annotations

import shutil
import tomllib
from pathlib import Path

from nbformat import NotebookNode

from .grading import grade_notebooks
from .notebooks import ASSIGNMENT_ID, NOTEBOOK_NAME, fill_answers, master_answers, read_notebook

SAMPLES = Path(__file__).parent / "demo_class"


def sample_submissions(course_root: Path) -> dict[str, tuple[str, NotebookNode]]:
    master = read_notebook(course_root / "source" / ASSIGNMENT_ID / f"{NOTEBOOK_NAME}.ipynb")
    release = read_notebook(course_root / "release" / ASSIGNMENT_ID / f"{NOTEBOOK_NAME}.ipynb")
    samples = {}
    for path in sorted(SAMPLES.glob("*.toml")):
        spec = tomllib.loads(path.read_text(encoding="utf-8"))
        answers = master_answers(master) if spec.get("start_from") == "solution" else {}
        answers.update(spec.get("answers", {}))
        samples[path.stem] = (spec.get("description", ""), fill_answers(release, answers))
    return samples


def run_demo(*, course_root: Path, work_dir: Path, workers: int) -> str:
    shutil.rmtree(work_dir, ignore_errors=True)
    samples = sample_submissions(course_root)
    scores = grade_notebooks(template_root=course_root, work_dir=work_dir,
                             submissions={sid: nb for sid, (_, nb) in samples.items()}, workers=workers)
    lines = [f"{'student':<16} {'autograded':>10}  {'status':<12} description", "-" * 72]
    for student_id, (description, _) in samples.items():
        result = scores.get(student_id)
        if result is None or not result.autograded():
            points, status = "-", "not graded"
        else:
            cells = result.autograded().values()
            points = f"{sum(c.score for c in cells):g}/{sum(c.max_score for c in cells):g}"
            status = "graded"
        lines.append(f"{student_id:<16} {points:>10}  {status:<12} {description}")
    lines.append(f"\nGraded courses are in {work_dir} (git-ignored).")
    return "\n".join(lines)
