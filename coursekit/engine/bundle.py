"""What a worker needs to grade for a course, as bytes: no shared filesystem needed.

A bundle is the course's nbgrader configuration, its source assignment and
the course secret the grader draws the given values from
(coursekit.exercise.given), plus the kit version that wrote it. A worker builds its own prototype course
from it once (`nbgrader generate_assignment`) and reuses it for every team of
the same bundle.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import coursekit
from coursekit.errors import CourseKitError
from coursekit.course import ASSIGNMENT_ID
from coursekit.exercise.given import SECRET_FILE, course_secret

# The files of the source assignment that may travel to a worker: the exercise is one notebook
# and its data; anything bigger is a mistake in the course folder, not something to ship per run.
BUNDLE_LIMIT_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class CourseBundle:
    files: tuple[tuple[str, bytes], ...]   # (path relative to the course root, content)
    kit_version: str

    @property
    def key(self) -> str:
        digest = hashlib.sha256(self.kit_version.encode())
        for name, content in self.files:
            digest.update(name.encode() + b"\0" + hashlib.sha256(content).digest())
        return digest.hexdigest()

    def write(self, course_root: Path) -> None:
        for name, content in self.files:
            path = course_root / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch(mode=0o600 if name == str(SECRET_FILE) else 0o644)
            path.write_bytes(content)


def bundle_course(*, course_root: Path) -> CourseBundle:
    """The bundle of the course in `course_root` (its nbgrader_config.py and source/<assignment>/)."""
    config = course_root / "nbgrader_config.py"
    source = course_root / "source" / ASSIGNMENT_ID
    if not config.is_file() or not source.is_dir():
        raise CourseKitError(f"{course_root} has no nbgrader_config.py and source/{ASSIGNMENT_ID}; "
                             "pass --course with the course folder.")
    paths = [config] + sorted(path for path in source.rglob("*")
                              if path.is_file() and ".ipynb_checkpoints" not in path.parts)
    if sum(path.stat().st_size for path in paths) > BUNDLE_LIMIT_BYTES:
        raise CourseKitError(f"source/{ASSIGNMENT_ID} holds more than {BUNDLE_LIMIT_BYTES // 2**20} MiB; "
                             "keep large data out of the assignment folder.")
    files = tuple((str(path.relative_to(course_root)), path.read_bytes()) for path in paths)
    # Workers draw the same values as plain `nbgrader autograde` in the course folder would.
    secret = ((str(SECRET_FILE), course_secret(course_root)),)
    return CourseBundle(files=files + secret, kit_version=coursekit.__version__)
