"""The unit of work: one team's submission in, its grading as data out.

A TeamWork carries the submitted files, a TeamOutcome everything the course
needs afterwards: the autograded notebook, the feedback page, the gradebook's
automatic scores and comments for each cell, the grading status and timings.
Both cross process and machine boundaries (local workers, Dask), so they are
plain frozen records of bytes, strings and numbers.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from coursekit.statuses import GradingStatus

@dataclass(frozen=True)
class TeamWork:
    team_id: str
    files: tuple[tuple[str, bytes], ...]   # the team's submitted/<team>/<assignment>/ folder, relative paths

    @classmethod
    def from_folder(cls, *, team_id: str, folder: Path) -> "TeamWork":
        files = tuple((str(path.relative_to(folder)), path.read_bytes())
                      for path in sorted(folder.rglob("*")) if path.is_file() and not path.is_symlink())
        return cls(team_id=team_id, files=files)

    def write(self, folder: Path) -> None:
        for name, content in self.files:
            path = folder / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content)


@dataclass(frozen=True)
class GradeRow:
    name: str                 # the cell's grade_id
    auto_score: float | None
    max_score: float
    needs_manual_grade: bool


@dataclass(frozen=True)
class CommentRow:
    name: str
    auto_comment: str | None


@dataclass(frozen=True)
class TeamOutcome:
    team_id: str
    status: GradingStatus
    reason: str
    autograded_notebook: bytes | None     # autograded/<team>/<assignment>/<notebook>.ipynb
    feedback_page: bytes | None           # feedback/<team>/<assignment>/<notebook>.html
    timestamp: str | None                 # the submission's timestamp as nbgrader recorded it
    grades: tuple[GradeRow, ...]
    comments: tuple[CommentRow, ...]
    seconds: float
    worker: str                           # which worker graded it (host and process), for the log
    late_penalty: float | None = None     # the submitted notebook's late_submission_penalty as nbgrader set it

    @property
    def graded(self) -> bool:
        return bool(self.grades)

