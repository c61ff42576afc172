"""`make demo`: a synthetic OLAT download of a small class, graded end to end.

The class is built from the answer files in `demo_class/` (each describes one
kind of submission) and packed the way OLAT's bulk download and students
really do it: pairs and singles, a team's own zip, a copy suffix, a wrong file
name, a resubmission, a crash and a loop that ignores interrupts.
"""
from __future__ import annotations

import io
import shutil
import tomllib
import zipfile
from datetime import datetime
from pathlib import Path

import nbformat

from coursekit.course import is_autograded
from coursekit.course import ASSIGNMENT_ID, NOTEBOOK_NAME
from coursekit.notebooks import fill_answers, master_answers, read_notebook
from coursekit.safe_text import printable
from coursekit.engine.workflow import RunSummary, grade_download

SAMPLES = Path(__file__).parent / "demo_class"

# (path in the download, sample, upload time); a path with " › " is inside a team's zip.
UPLOADS = [
    ("Gruppe 01/anna.muster_jdoe_ml_ex2.ipynb", "all_correct", "2024-11-08 10:02"),
    ("Gruppe 02/mmeier_ml_ex2.ipynb", "partly_right", "2024-11-08 11:30"),
    ("Gruppe 03/lkeller_tbrun_ml_ex2 (1).ipynb", "all_correct", "2024-11-07 22:15"),
    ("Gruppe 04/abgabe.zip › SWeber_PKoch_ML_EX2.ipynb", "half_done", "2024-11-08 12:01"),
    ("Gruppe 05/hmueller_ml_ex2.ipynb", "kernel_crash", "2024-11-08 09:45"),
    ("Gruppe 06/rfischer_ml_ex2.ipynb", "stubborn_loop", "2024-11-08 12:10"),
    ("Gruppe 07/ckrause_ml_ex2.ipynb", "blank", "2024-11-06 18:00"),
    ("Gruppe 08/dvogel_ml_ex2.ipynb", "partly_right", "2024-11-05 14:00"),
    ("Gruppe 08/dvogel_ml_ex2-2.ipynb", "all_correct", "2024-11-08 08:30"),
    ("Gruppe 09/My Notebook.ipynb", "all_correct", "2024-11-08 07:00"),
    ("Gruppe 10/ewolf_ml_ex2.ipynb", "attention_mixups", "2024-11-08 11:59"),
    ("Gruppe 11/fschulz_gzimmer_ml_ex2.ipynb", "infinite_loop", "2024-11-08 10:40"),
]
ROSTER = """Benutzername;Vorname;Nachname;E-Mail
anna.muster;Anna;Muster;anna.muster@example.org
jdoe;Jane;Doe;jane.doe@example.org
mmeier;Max;Meier;max.meier@example.org
lkeller;Lena;Keller;lena.keller@example.org
tbrun;Tim;Brun;tim.brun@example.org
sweber;Sara;Weber;sara.weber@example.org
pkoch;Paul;Koch;paul.koch@example.org
hmueller;Hans;Müller;hans.mueller@example.org
rfischer;Rita;Fischer;rita.fischer@example.org
ckrause;Carl;Krause;carl.krause@example.org
dvogel;Dana;Vogel;dana.vogel@example.org
ewolf;Eva;Wolf;eva.wolf@example.org
fschulz;Finn;Schulz;finn.schulz@example.org
gzimmer;Greta;Zimmer;greta.zimmer@example.org
inactive;Ida;Nosub;ida.nosub@example.org
"""


def sample_notebooks(course_root: Path) -> dict[str, bytes]:
    master = read_notebook(course_root / "source" / ASSIGNMENT_ID / f"{NOTEBOOK_NAME}.ipynb")
    release = read_notebook(course_root / "release" / ASSIGNMENT_ID / f"{NOTEBOOK_NAME}.ipynb")
    samples = {}
    for path in sorted(SAMPLES.glob("*.toml")):
        spec = tomllib.loads(path.read_text(encoding="utf-8"))
        answers = master_answers(master) if spec.get("start_from") == "solution" else {}
        answers.update(spec.get("answers", {}))
        samples[path.stem] = nbformat.writes(fill_answers(release, answers)).encode()
    return samples


def zip_time(text: str) -> tuple[int, int, int, int, int, int]:
    moment = datetime.strptime(text, "%Y-%m-%d %H:%M")
    return (moment.year, moment.month, moment.day, moment.hour, moment.minute, 0)


def build_download(*, course_root: Path, destination: Path) -> Path:
    """Write the synthetic OLAT bulk download (a zip) and return its path."""
    samples = sample_notebooks(course_root)
    destination.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(destination, "w") as download:
        for path, sample, uploaded in UPLOADS:
            if " › " in path:
                outer, inner = path.split(" › ")
                buffer = io.BytesIO()
                with zipfile.ZipFile(buffer, "w") as team_zip:
                    team_zip.writestr(zipfile.ZipInfo(inner, zip_time(uploaded)), samples[sample])
                download.writestr(zipfile.ZipInfo(outer, zip_time(uploaded)), buffer.getvalue())
            else:
                download.writestr(zipfile.ZipInfo(path, zip_time(uploaded)), samples[sample])
    return destination


def copy_course(*, course_root: Path, destination: Path) -> None:
    """A copy of the course to grade a sample class in, with its own SQLite gradebook."""
    destination.mkdir(parents=True, exist_ok=True)
    config = (course_root / "nbgrader_config.py").read_text(encoding="utf-8")
    # Whatever gradebook the course names (PostgreSQL for its TAs, say), sample teams never go into it.
    # Named relative to this file, so every copy has the same configuration: one course version whose
    # workers' course is built once (coursekit.engine.worker.ensure_prototype).
    config += ('\n# Added by coursekit: this copy has its own gradebook.\nimport os as _os\n'
               'c.CourseDirectory.db_url = "sqlite:///" + _os.path.join(_os.path.dirname(_os.path.abspath(__file__)), '
               '"gradebook.db")\n')
    (destination / "nbgrader_config.py").write_text(config, encoding="utf-8")
    for folder in ("source", "release"):
        shutil.copytree(course_root / folder, destination / folder, dirs_exist_ok=True)


def run_demo(*, course_root: Path, work_dir: Path, workers: int) -> str:
    shutil.rmtree(work_dir, ignore_errors=True)
    demo_course = work_dir / "course"
    copy_course(course_root=course_root, destination=demo_course)
    download = build_download(course_root=course_root, destination=work_dir / "olat-download.zip")
    roster = work_dir / "roster.csv"
    roster.write_text(ROSTER, encoding="utf-8")
    summary = grade_download(download=download, course_root=demo_course, output_folder=work_dir / "results",
                             workers=workers, roster=roster)
    return format_class_table(summary)


def format_class_table(summary: RunSummary) -> str:
    lines = [f"{'team':<24} {'autograded':>10}  {'status':<15} reason", "-" * 78]
    for result in summary.results:
        autograded = [cell for cell in result.cells if is_autograded(cell)]
        points = f"{sum(c.score for c in autograded):g}/{sum(c.max_score for c in autograded):g}" if autograded else "-"
        lines.append(f"{result.team_id:<24} {points:>10}  {result.status:<15} {result.reason[:40]}")
    for problem in summary.problems:
        lines.append(printable(f"! {problem.kind}: {problem.message}"))
    for username in summary.missing:
        lines.append(f"! no submission: {username}")
    return "\n".join(lines + [""] + summary.lines())
