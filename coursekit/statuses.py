"""How grading a team's notebook ended: one enum for every step that reports it.

A StrEnum, so the value is what the autograded notebook's metadata, the grades
CSV and the report show.
"""
from __future__ import annotations

from enum import StrEnum


class GradingStatus(StrEnum):
    GRADED = "graded"
    CRASHED = "kernel crashed"        # points earned before the crash are kept
    TIMED_OUT = "timed out"           # points earned before the limit are kept
    UNREADABLE = "unreadable"         # not a notebook: graded as a blank one
    MISSING = "missing"               # no notebook of the expected name in the submission
    NOT_GRADED = "not graded"         # nbgrader itself failed on it


# The grader stopped the notebook early; the points of the cells judged before still count.
STOPPED_EARLY = frozenset({GradingStatus.CRASHED, GradingStatus.TIMED_OUT})
